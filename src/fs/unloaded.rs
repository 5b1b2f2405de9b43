//! Inodes whose state is still only their record on the pool.
//!
//! A file nothing has opened or changed since the mount is exactly its inode record, so
//! the daemon keeps just where that record is: 16 bytes per inode instead of an
//! in-memory inode (about 240 bytes). `getattr` (and so `ls -l`) decodes the record in
//! place; the first operation that needs the inode's state (open, any change, xattrs)
//! loads it into the inode map for good and takes it out of here. So after the mount
//! this set only shrinks, and it is a sorted array rather than a hash map.

/// Inode numbers and record offsets, sorted by number. A loaded inode's slot keeps its
/// number with a record offset of 0 (no object lives at offset 0).
#[derive(Debug, Default)]
pub(super) struct UnloadedInodes {
    slots: Vec<(u64, u64)>,
    unloaded: usize,
}

impl UnloadedInodes {
    /// `slots` are (inode number, record offset) pairs with distinct numbers, any order.
    pub(super) fn new(mut slots: Vec<(u64, u64)>) -> UnloadedInodes {
        slots.sort_unstable();
        slots.shrink_to_fit();
        UnloadedInodes {
            unloaded: slots.len(),
            slots,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.unloaded
    }

    fn index_of(&self, ino: u64) -> Option<usize> {
        let index = self.slots.binary_search_by_key(&ino, |&(i, _)| i).ok()?;
        (self.slots[index].1 != 0).then_some(index)
    }

    /// The record offset of inode `ino` if it is not loaded.
    pub(super) fn record_of(&self, ino: u64) -> Option<u64> {
        self.index_of(ino).map(|i| self.slots[i].1)
    }

    /// Whether some unloaded inode's number satisfies `pred`.
    pub(super) fn any_ino(&self, pred: impl Fn(u64) -> bool) -> bool {
        self.slots.iter().any(|&(ino, off)| off != 0 && pred(ino))
    }

    /// Takes inode `ino` out (it is being loaded, or freed); returns its record offset.
    pub(super) fn take(&mut self, ino: u64) -> Option<u64> {
        let index = self.index_of(ino)?;
        self.unloaded -= 1;
        Some(std::mem::replace(&mut self.slots[index].1, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_inodes_are_gone_and_others_stay() {
        let mut set = UnloadedInodes::new(vec![(9, 0x900), (2, 0x200), (5, 0x500)]);
        assert_eq!(set.len(), 3);
        assert_eq!(set.record_of(5), Some(0x500));
        assert_eq!(set.take(5), Some(0x500));
        assert_eq!(set.take(5), None);
        assert_eq!(set.record_of(5), None);
        assert_eq!(set.record_of(4), None);
        assert_eq!(set.record_of(9), Some(0x900));
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn an_empty_set_holds_nothing() {
        let mut set = UnloadedInodes::new(Vec::new());
        assert_eq!(set.len(), 0);
        assert_eq!(set.record_of(1), None);
        assert_eq!(set.take(1), None);
        assert!(!set.any_ino(|_| true));
        assert_eq!(set.len(), 0);
    }

    #[test]
    fn any_ino_sees_only_the_inodes_still_unloaded() {
        let mut set = UnloadedInodes::new(vec![(3, 0x300), (8, 0x800)]);
        assert!(set.any_ino(|ino| ino == 8));
        assert!(!set.any_ino(|ino| ino > 8));
        set.take(8);
        assert!(!set.any_ino(|ino| ino == 8));
        assert!(set.any_ino(|ino| ino == 3));
    }

    #[test]
    fn inode_numbers_and_offsets_at_the_extremes() {
        let mut set = UnloadedInodes::new(vec![(u64::MAX, u64::MAX), (1, 1), (u64::MAX - 1, 0x40)]);
        assert_eq!(set.record_of(u64::MAX), Some(u64::MAX));
        assert_eq!(set.record_of(u64::MAX - 1), Some(0x40));
        assert_eq!(set.record_of(1), Some(1));
        assert_eq!(set.record_of(0), None);
        assert_eq!(set.take(u64::MAX), Some(u64::MAX));
        assert_eq!(set.record_of(u64::MAX), None);
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn taking_every_inode_in_any_order_empties_the_set() {
        let inos: Vec<u64> = (1..=100).map(|i| i * 7919 % 1000 + 1).collect();
        let slots: Vec<(u64, u64)> = inos.iter().map(|&ino| (ino, ino << 12)).collect();
        let mut set = UnloadedInodes::new(slots);
        assert_eq!(set.len(), 100);
        for &ino in inos.iter().rev() {
            assert_eq!(set.record_of(ino), Some(ino << 12), "inode {ino}");
            assert_eq!(set.take(ino), Some(ino << 12));
        }
        assert_eq!(set.len(), 0);
        assert!(!set.any_ino(|_| true));
    }
}
