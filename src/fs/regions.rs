//! The Warabi-made regions the root directory lists under their RegionID, held as their
//! offsets alone.
//!
//! A region Warabi made has no record: its name (the RegionID), inode number
//! (`RAW_REGION_INO_BIT | off`), size (its usable size), mode, owner and times (the mount
//! options and the mount time) all follow from its offset. So the daemon keeps 8 bytes
//! and a bit per region instead of an inode and a directory entry; the inode of one is
//! made only when something needs its state (open, write, xattr, adoption), and lives in
//! the inode map from then on. A busy provider's pool of a million regions then costs
//! about 8 MiB here.
//!
//! Regions that cannot be listed this way (their RegionID name or their inode number is
//! taken by a file) are given an inode and an entry at mount, as files are.

use super::inode::RAW_REGION_INO_BIT;
use crate::pmem::Oid;

/// Offsets of listed regions, ascending, and which of them have left the listing since
/// the mount (adopted into a record, or deleted).
#[derive(Debug, Default)]
pub(super) struct ListedRegions {
    /// The pool's `uuid_lo`: every listed RegionID carries it.
    uuid_lo: u64,
    offsets: Vec<u64>,
    /// One bit per offset: set once the region left the listing.
    gone: Vec<u64>,
    listed: usize,
}

impl ListedRegions {
    /// `offsets` must be ascending and distinct.
    pub(super) fn new(uuid_lo: u64, offsets: Vec<u64>) -> ListedRegions {
        debug_assert!(offsets.windows(2).all(|w| w[0] < w[1]));
        ListedRegions {
            uuid_lo,
            gone: vec![0; offsets.len().div_ceil(64)],
            listed: offsets.len(),
            offsets,
        }
    }

    /// How many regions are listed.
    pub(super) fn len(&self) -> usize {
        self.listed
    }

    fn is_gone(&self, index: usize) -> bool {
        self.gone[index / 64] & (1 << (index % 64)) != 0
    }

    /// Where `off` is among the listed offsets.
    fn index_of(&self, off: u64) -> Option<usize> {
        let index = self.offsets.binary_search(&off).ok()?;
        (!self.is_gone(index)).then_some(index)
    }

    /// The listed region with inode number `ino`, if any.
    pub(super) fn by_ino(&self, ino: u64) -> Option<Oid> {
        if ino & RAW_REGION_INO_BIT == 0 {
            return None;
        }
        self.by_offset(ino & !RAW_REGION_INO_BIT)
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

    /// Up to `limit` listed regions after offset `cookie`, in offset order.
    pub(super) fn after(&self, cookie: u64, limit: usize) -> Vec<Oid> {
        let start = self.offsets.partition_point(|&off| off <= cookie);
        (start..self.offsets.len())
            .filter(|&i| !self.is_gone(i))
            .take(limit)
            .map(|i| self.oid(self.offsets[i]))
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
    use super::*;

    fn listing() -> ListedRegions {
        ListedRegions::new(0xabcd_ef01, vec![0x100, 0x200, 0x300, 0x400])
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
        assert_eq!(regions.by_ino(RAW_REGION_INO_BIT | 0x200), Some(oid));
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
        assert_eq!(offs(regions.after(0x100, 1)), [0x300]);
        assert_eq!(offs(regions.after(0x250, 10)), [0x300, 0x400]);
        assert_eq!(offs(regions.after(0x400, 10)), Vec::<u64>::new());
    }
}
