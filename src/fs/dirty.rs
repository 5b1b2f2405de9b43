//! Byte ranges of a file written since its last persist, so that fsync flushes only
//! what changed instead of the whole region.

use std::collections::BTreeMap;

/// Past this many separate ranges they are merged into one span: flushing a few clean
/// bytes costs less than tracking an unbounded set.
const MAX_RANGES: usize = 4096;

/// Every inode has one and most are clean, so an empty set is a single null pointer
/// (an empty BTreeMap would take three words in each of 100,000s of inodes).
#[derive(Debug, Default)]
pub struct DirtyRanges {
    /// start -> end (exclusive), non-overlapping and non-adjacent; `None` when empty.
    #[expect(clippy::box_collection, reason = "one word when empty, in every inode")]
    ranges: Option<Box<BTreeMap<u64, u64>>>,
}

impl DirtyRanges {
    /// Marks [start, end) dirty, merging with every range it touches.
    pub fn add(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let ranges = self.ranges.get_or_insert_with(Box::default);
        let (mut start, mut end) = (start, end);
        if let Some((&s, &e)) = ranges.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
            }
        }
        let touching: Vec<u64> = ranges.range(start..=end).map(|(&s, _)| s).collect();
        for s in touching {
            let e = ranges.remove(&s).expect("present");
            end = end.max(e);
        }
        ranges.insert(start, end);
        if ranges.len() > MAX_RANGES {
            collapse(ranges);
        }
    }

    /// Forgets everything at or past `len` (the file was truncated).
    pub fn truncate(&mut self, len: u64) {
        let Some(ranges) = self.ranges.as_mut() else {
            return;
        };
        ranges.retain(|&s, _| s < len);
        for end in ranges.values_mut() {
            *end = (*end).min(len);
        }
        if ranges.is_empty() {
            self.ranges = None;
        }
    }

    /// Takes all ranges, leaving none.
    pub fn take(&mut self) -> Vec<(u64, u64)> {
        self.ranges
            .take()
            .map(|ranges| ranges.into_iter().collect())
            .unwrap_or_default()
    }
}

/// Replaces the ranges by the one span that covers them all.
fn collapse(ranges: &mut BTreeMap<u64, u64>) {
    let first = *ranges.keys().next().expect("non-empty");
    let last = *ranges.values().next_back().expect("non-empty");
    ranges.clear();
    ranges.insert(first, last);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_and_adjacent_ranges_merge() {
        let mut d = DirtyRanges::default();
        d.add(10, 20);
        d.add(30, 40);
        d.add(20, 30);
        d.add(100, 110);
        d.add(5, 12);
        assert_eq!(d.take(), vec![(5, 40), (100, 110)]);
        assert_eq!(d.take(), vec![]);
    }

    #[test]
    fn truncate_cuts_ranges() {
        let mut d = DirtyRanges::default();
        d.add(0, 10);
        d.add(20, 30);
        d.truncate(25);
        assert_eq!(d.take(), vec![(0, 10), (20, 25)]);
    }

    #[test]
    fn truncating_below_every_range_leaves_none() {
        let mut d = DirtyRanges::default();
        d.add(10, 20);
        d.truncate(5);
        assert!(d.ranges.is_none());
        assert_eq!(d.take(), vec![]);
    }

    #[test]
    fn too_many_ranges_collapse_to_one_span() {
        let mut d = DirtyRanges::default();
        for i in 0..=MAX_RANGES as u64 {
            d.add(i * 10, i * 10 + 1);
        }
        assert_eq!(d.take(), vec![(0, MAX_RANGES as u64 * 10 + 1)]);
    }

    #[test]
    fn empty_and_reversed_ranges_mark_nothing_and_allocate_nothing() {
        let mut d = DirtyRanges::default();
        d.add(7, 7);
        d.add(9, 3);
        d.add(u64::MAX, u64::MAX);
        assert!(d.ranges.is_none());
        assert_eq!(d.take(), vec![]);
    }

    #[test]
    fn a_range_inside_another_or_covering_several_leaves_one() {
        let mut d = DirtyRanges::default();
        d.add(10, 100);
        d.add(20, 30);
        assert_eq!(d.take(), vec![(10, 100)]);
        d.add(10, 20);
        d.add(30, 40);
        d.add(50, 60);
        d.add(0, 55);
        assert_eq!(d.take(), vec![(0, 60)]);
    }

    #[test]
    fn ranges_merge_when_touching_on_either_side_and_not_across_a_gap() {
        let mut d = DirtyRanges::default();
        d.add(10, 20);
        d.add(0, 10);
        d.add(20, 25);
        d.add(26, 30);
        assert_eq!(d.take(), vec![(0, 25), (26, 30)]);
    }

    #[test]
    fn ranges_reach_the_top_of_the_offsets() {
        let mut d = DirtyRanges::default();
        d.add(u64::MAX - 10, u64::MAX);
        d.add(0, 1);
        d.add(u64::MAX - 20, u64::MAX - 10);
        assert_eq!(d.take(), vec![(0, 1), (u64::MAX - 20, u64::MAX)]);
        d.add(u64::MAX - 1, u64::MAX);
        d.truncate(u64::MAX);
        assert_eq!(d.take(), vec![(u64::MAX - 1, u64::MAX)]);
    }

    #[test]
    fn truncating_at_a_range_boundary_keeps_what_is_below() {
        let mut d = DirtyRanges::default();
        d.add(0, 10);
        d.add(20, 30);
        // At a range's start the range goes; at its end it stays whole.
        d.truncate(20);
        assert_eq!(d.take(), vec![(0, 10)]);
        d.add(0, 10);
        d.truncate(10);
        assert_eq!(d.take(), vec![(0, 10)]);
    }

    #[test]
    fn truncating_to_zero_or_an_empty_set_leaves_none() {
        let mut d = DirtyRanges::default();
        d.truncate(100);
        assert!(d.ranges.is_none());
        d.add(0, 10);
        d.truncate(0);
        assert!(d.ranges.is_none());
        assert_eq!(d.take(), vec![]);
    }

    #[test]
    fn taking_leaves_an_empty_set_that_marks_again() {
        let mut d = DirtyRanges::default();
        d.add(1, 2);
        assert_eq!(d.take(), vec![(1, 2)]);
        assert!(d.ranges.is_none());
        d.add(3, 4);
        assert_eq!(d.take(), vec![(3, 4)]);
    }

    #[test]
    fn up_to_max_ranges_stay_apart() {
        let mut d = DirtyRanges::default();
        for i in 0..MAX_RANGES as u64 {
            d.add(i * 10, i * 10 + 1);
        }
        let ranges = d.take();
        assert_eq!(ranges.len(), MAX_RANGES);
        assert_eq!(
            ranges[MAX_RANGES - 1],
            (
                (MAX_RANGES as u64 - 1) * 10,
                (MAX_RANGES as u64 - 1) * 10 + 1
            )
        );
    }
}
