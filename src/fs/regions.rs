//! The Warabi-made regions the root directory lists under their RegionID, held as their
//! offsets alone.
//!
//! A region Warabi made has no record: its name (the RegionID), inode number
//! (`RAW_REGION_INO_BIT | off`), size (its usable size), mode, owner and times (the mount
//! options and the mount time) all follow from its offset. So the daemon keeps its
//! offset, its usable size (read once, by the mount's scan) and a bit per region, 12
//! bytes, instead of an inode and a directory entry; the inode of one is made only when
//! something needs its state (open, write, xattr, adoption), and lives in the inode map
//! from then on. A busy provider's pool of a million regions then costs about 12 MiB
//! here.
//!
//! The size is held because reading it from the pool costs a cache miss, and often a
//! page fault, per region: the listing goes in RegionID order, which spells the offset
//! from its low byte, so consecutive entries lie all over the pool, and `ls -l` of a
//! million regions read a million allocation headers (and mapped 125 MiB of the pool
//! into the daemon) for the sizes readdirplus returns.
//!
//! The root lists them after its directory entries, in RegionID order.
//!
//! Regions that cannot be listed this way (their RegionID name or their inode number is
//! taken by a file) are given an inode and an entry at mount, as files are.

use super::inode::RAW_REGION_INO_BIT;
use crate::store::Oid;

/// The cookies of listed regions: this bit, above every pool offset (the cookies of
/// directory entries), so the root lists its files first and its listed regions after
/// them, and below the sign bit of the kernel's directory position.
const LISTED_COOKIE_BIT: u64 = 1 << 62;

/// Where a region's name sorts among RegionIDs that share the pool's `uuid_lo`: the
/// offset's little-endian bytes, which the name spells in order, read as one number.
fn name_key(off: u64) -> u64 {
    u64::from_be_bytes(off.to_le_bytes())
}

fn off_of_key(key: u64) -> u64 {
    u64::from_le_bytes(key.to_be_bytes())
}

/// The readdir cookie of the listed region at `off`. A name key's two low bits are the
/// two high bits of an offset, which no pool reaches, so the shift loses nothing.
pub(super) fn listed_cookie(off: u64) -> u64 {
    debug_assert!(off >> 62 == 0, "offset {off:#x} past any pool");
    LISTED_COOKIE_BIT | name_key(off) >> 2
}

/// Listed regions in RegionID order (as `ls` sorts them: a listing that comes sorted
/// sorts several times faster), held as the name keys of their offsets, and which of
/// them have left the listing since the mount (adopted into a record, or deleted).
#[derive(Debug, Default)]
pub(super) struct ListedRegions {
    /// The pool's `uuid_lo`: every listed RegionID carries it.
    uuid_lo: u64,
    /// [`name_key`]s of the offsets, ascending.
    keys: Vec<u64>,
    /// The usable size of each region, by the index of its key; [`SIZE_IN_POOL`] for
    /// one too large to hold here.
    sizes: Vec<u32>,
    /// One bit per key: set once the region left the listing.
    gone: Vec<u64>,
    listed: usize,
}

/// A held size that says "ask the pool": regions of 4 GiB or more are rare, and their
/// size is read from the pool rather than widening every entry.
const SIZE_IN_POOL: u32 = u32::MAX;

/// A listed region as lookups hand it out: where it is, and its usable size when the
/// listing holds it (None: read it from the pool).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ListedRegion {
    pub(super) oid: Oid,
    pub(super) size: Option<u64>,
}

impl ListedRegions {
    /// `regions` are (offset, usable size) pairs with distinct offsets.
    pub(super) fn new(uuid_lo: u64, mut regions: Vec<(u64, u64)>) -> ListedRegions {
        for region in &mut regions {
            region.0 = name_key(region.0);
        }
        // The keys are distinct, so the sizes never decide the order.
        regions.sort_unstable();
        let keys: Vec<u64> = regions.iter().map(|&(key, _)| key).collect();
        debug_assert!(keys.windows(2).all(|w| w[0] < w[1]));
        let sizes = regions
            .iter()
            .map(|&(_, size)| u32::try_from(size).unwrap_or(SIZE_IN_POOL))
            .collect();
        ListedRegions {
            uuid_lo,
            gone: vec![0; keys.len().div_ceil(64)],
            listed: keys.len(),
            keys,
            sizes,
        }
    }

    /// How many regions are listed.
    pub(super) fn len(&self) -> usize {
        self.listed
    }

    fn is_gone(&self, index: usize) -> bool {
        self.gone[index / 64] & (1 << (index % 64)) != 0
    }

    /// Where `off` is among the listed regions.
    fn index_of(&self, off: u64) -> Option<usize> {
        let index = self.keys.binary_search(&name_key(off)).ok()?;
        (!self.is_gone(index)).then_some(index)
    }

    /// The listed region with inode number `ino`, and its size, if any.
    pub(super) fn by_ino(&self, ino: u64) -> Option<ListedRegion> {
        if ino & RAW_REGION_INO_BIT == 0 {
            return None;
        }
        let off = ino & !RAW_REGION_INO_BIT;
        let index = self.index_of(off)?;
        let size = Some(self.sizes[index]).filter(|&s| s != SIZE_IN_POOL);
        Some(ListedRegion {
            oid: self.oid(off),
            size: size.map(u64::from),
        })
    }

    /// The listed region at offset `off`, if any.
    pub(super) fn by_offset(&self, off: u64) -> Option<Oid> {
        self.index_of(off).map(|_| self.oid(off))
    }

    /// The listed region named `name` (its RegionID, as readdir shows it), if any.
    pub(super) fn by_name(&self, name: &[u8]) -> Option<Oid> {
        let oid: Oid = std::str::from_utf8(name).ok()?.parse().ok()?;
        // The RegionID spelling is lowercase: an uppercase name is another name.
        if oid.pool_uuid_lo != self.uuid_lo || region_name(oid) != name {
            return None;
        }
        self.by_offset(oid.off)
    }

    /// Takes the region at `off` out of the listing; false if it was not listed.
    pub(super) fn remove(&mut self, off: u64) -> bool {
        let Some(index) = self.index_of(off) else {
            return false;
        };
        self.gone[index / 64] |= 1 << (index % 64);
        self.listed -= 1;
        true
    }

    /// Up to `limit` listed regions whose cookie ([`listed_cookie`]) is past `cookie`,
    /// in RegionID order.
    pub(super) fn after(&self, cookie: u64, limit: usize) -> Vec<Oid> {
        let start = match cookie.checked_sub(LISTED_COOKIE_BIT) {
            None => 0,
            Some(shifted) => self.keys.partition_point(|&key| key >> 2 <= shifted),
        };
        (start..self.keys.len())
            .filter(|&i| !self.is_gone(i))
            .take(limit)
            .map(|i| self.oid(off_of_key(self.keys[i])))
            .collect()
    }

    fn oid(&self, off: u64) -> Oid {
        Oid {
            pool_uuid_lo: self.uuid_lo,
            off,
        }
    }
}

/// A region's RegionID as a name: 32 lowercase hex digits, without an allocation.
pub(super) fn region_name(region: Oid) -> [u8; 32] {
    region.region_id_hex()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Each offset with a size of its own (the offset plus 100).
    fn sized(offsets: &[u64]) -> Vec<(u64, u64)> {
        offsets.iter().map(|&off| (off, off + 100)).collect()
    }

    fn listing() -> ListedRegions {
        ListedRegions::new(0xabcd_ef01, sized(&[0x100, 0x200, 0x300, 0x400]))
    }

    #[test]
    fn region_names_are_the_region_id() {
        let oid = Oid {
            pool_uuid_lo: 0x0102030405060708,
            off: 0x10,
        };
        assert_eq!(&region_name(oid), oid.to_string().as_bytes());
    }

    #[test]
    fn listed_regions_are_found_by_number_offset_and_name() {
        let regions = listing();
        let oid = Oid {
            pool_uuid_lo: 0xabcd_ef01,
            off: 0x200,
        };
        assert_eq!(
            regions.by_ino(RAW_REGION_INO_BIT | 0x200).map(|r| r.oid),
            Some(oid)
        );
        assert_eq!(regions.by_ino(0x200), None);
        assert_eq!(regions.by_offset(0x250), None);
        assert_eq!(regions.by_name(&region_name(oid)), Some(oid));
        let upper = oid.to_string().to_uppercase();
        assert_eq!(regions.by_name(upper.as_bytes()), None);
        let other_pool = Oid {
            pool_uuid_lo: 0xabcd_ef02,
            ..oid
        };
        assert_eq!(regions.by_name(&region_name(other_pool)), None);
    }

    #[test]
    fn removed_regions_leave_the_listing_and_resuming_skips_them() {
        let mut regions = listing();
        assert!(regions.remove(0x200));
        assert!(!regions.remove(0x200));
        assert_eq!(regions.len(), 3);
        assert_eq!(regions.by_offset(0x200), None);
        let offs = |v: Vec<Oid>| v.into_iter().map(|o| o.off).collect::<Vec<_>>();
        assert_eq!(offs(regions.after(0, 10)), [0x100, 0x300, 0x400]);
        assert_eq!(offs(regions.after(listed_cookie(0x100), 1)), [0x300]);
        assert_eq!(
            offs(regions.after(listed_cookie(0x200), 10)),
            [0x300, 0x400]
        );
        assert_eq!(
            offs(regions.after(listed_cookie(0x400), 10)),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn regions_are_listed_in_region_id_order_after_every_entry_cookie() {
        let offsets = vec![0x10_0000, 0x1f0, 0x2_0040, 0x40, 0xff_ff80, 0x1_0000_0000];
        let regions = ListedRegions::new(7, sized(&offsets));
        let listed = regions.after(0, 100);
        let names: Vec<[u8; 32]> = listed.iter().map(|&o| region_name(o)).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(listed.len(), offsets.len());
        // Cookies grow along the listing, each past any pool offset.
        let cookies: Vec<u64> = listed.iter().map(|o| listed_cookie(o.off)).collect();
        assert!(cookies.windows(2).all(|w| w[0] < w[1]));
        assert!(cookies.iter().all(|&c| c > 1 << 56 && c < 1 << 63));
        // A directory entry's cookie (a pool offset) resumes before every region.
        assert_eq!(regions.after(0x7fff_ffff_ffff, 100).len(), offsets.len());
        for (i, &c) in cookies.iter().enumerate() {
            assert_eq!(regions.after(c, 100), listed[i + 1..]);
        }
    }

    #[test]
    fn an_empty_listing_lists_and_finds_nothing() {
        let mut regions = ListedRegions::new(1, Vec::new());
        assert_eq!(regions.len(), 0);
        assert_eq!(regions.after(0, 10), []);
        assert_eq!(regions.after(listed_cookie(0x100), 10), []);
        assert_eq!(regions.by_offset(0), None);
        assert_eq!(regions.by_ino(RAW_REGION_INO_BIT), None);
        assert!(!regions.remove(0x100));
        assert_eq!(regions.len(), 0);
    }

    #[test]
    fn a_limit_of_zero_lists_nothing_and_a_limit_cuts_the_listing() {
        let regions = listing();
        assert_eq!(regions.after(0, 0), []);
        let first_two: Vec<u64> = regions.after(0, 2).iter().map(|o| o.off).collect();
        assert_eq!(first_two.len(), 2);
        let rest = regions.after(listed_cookie(first_two[1]), usize::MAX);
        assert_eq!(rest.len(), 2);
        assert!(rest.iter().all(|o| !first_two.contains(&o.off)));
    }

    #[test]
    fn names_that_are_no_region_id_find_nothing() {
        let regions = listing();
        let name = region_name(Oid {
            pool_uuid_lo: 0xabcd_ef01,
            off: 0x100,
        });
        assert!(regions.by_name(&name).is_some());
        assert_eq!(regions.by_name(b""), None);
        assert_eq!(regions.by_name(&name[..31]), None);
        assert_eq!(regions.by_name(&[name.as_slice(), b"0"].concat()), None);
        assert_eq!(regions.by_name(b"\xff\xfe"), None);
        let mut not_hex = name;
        not_hex[0] = b'g';
        assert_eq!(regions.by_name(&not_hex), None);
        // The name of an offset that is not listed.
        let unlisted = region_name(Oid {
            pool_uuid_lo: 0xabcd_ef01,
            off: 0x180,
        });
        assert_eq!(regions.by_name(&unlisted), None);
    }

    #[test]
    fn only_raw_region_inode_numbers_of_listed_offsets_are_found() {
        let mut regions = listing();
        assert!(regions.by_ino(RAW_REGION_INO_BIT | 0x100).is_some());
        assert_eq!(regions.by_ino(RAW_REGION_INO_BIT | 0x180), None);
        assert_eq!(regions.by_ino(0x100), None);
        assert_eq!(regions.by_ino(1), None);
        assert!(regions.remove(0x100));
        assert_eq!(regions.by_ino(RAW_REGION_INO_BIT | 0x100), None);
    }

    #[test]
    fn each_region_keeps_its_own_size_and_sizes_past_u32_are_left_to_the_pool() {
        let huge = u64::from(u32::MAX);
        let regions = ListedRegions::new(5, vec![(0x300, 96), (0x100, 4 << 20), (0x200, huge)]);
        let size = |off: u64| regions.by_ino(RAW_REGION_INO_BIT | off).map(|r| r.size);
        assert_eq!(size(0x100), Some(Some(4 << 20)));
        assert_eq!(size(0x300), Some(Some(96)));
        assert_eq!(size(0x200), Some(None));
        assert_eq!(size(0x180), None);
        let region = regions.by_ino(RAW_REGION_INO_BIT | 0x300).unwrap();
        assert_eq!(region.oid, regions.by_offset(0x300).unwrap());
    }

    #[test]
    fn removals_across_bitmap_words_leave_the_rest_listed() {
        let offsets: Vec<u64> = (1..=130).map(|i| i * 0x40).collect();
        let mut regions = ListedRegions::new(9, sized(&offsets));
        assert_eq!(regions.len(), 130);
        let removed = [
            0x40,
            63 * 0x40,
            64 * 0x40,
            65 * 0x40,
            128 * 0x40,
            130 * 0x40,
        ];
        for off in removed {
            assert!(regions.remove(off), "{off:#x}");
        }
        assert_eq!(regions.len(), 130 - removed.len());
        let listed: BTreeSet<u64> = regions.after(0, 1000).iter().map(|o| o.off).collect();
        let expected: BTreeSet<u64> = offsets
            .iter()
            .copied()
            .filter(|off| !removed.contains(off))
            .collect();
        assert_eq!(listed, expected);
        for off in offsets {
            assert_eq!(regions.by_offset(off).is_some(), !removed.contains(&off));
        }
    }

    #[test]
    fn removing_every_region_empties_the_listing() {
        let mut regions = listing();
        for off in [0x400, 0x100, 0x300, 0x200] {
            assert!(regions.remove(off));
        }
        assert_eq!(regions.len(), 0);
        assert_eq!(regions.after(0, 10), []);
    }

    #[test]
    fn name_keys_round_trip_and_cookies_stay_between_the_bits_at_the_extremes() {
        for off in [0, 1, 0x40, 0xff, 0x100, 1 << 40, (1 << 62) - 1] {
            assert_eq!(off_of_key(name_key(off)), off, "{off:#x}");
            let cookie = listed_cookie(off);
            assert!((LISTED_COOKIE_BIT..1 << 63).contains(&cookie), "{off:#x}");
        }
        assert_eq!(off_of_key(name_key(u64::MAX)), u64::MAX);
        // The cookie of the highest offset still resumes after every region below it.
        let top = (1 << 62) - 0x40;
        let regions = ListedRegions::new(3, sized(&[0x40, top]));
        assert_eq!(regions.after(listed_cookie(top), 10), []);
        assert_eq!(regions.after(listed_cookie(0x40), 10).len(), 1);
    }
}
