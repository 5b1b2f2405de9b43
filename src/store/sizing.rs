//! The region sizing policy: how big a file's region is when it is made, grows and is
//! trimmed at close; the space kept free for transactions; and the free and available
//! bytes a pool reports.

use std::sync::atomic::Ordering;

use super::Store;
use crate::pmem;

/// Per-object overhead libpmemobj adds to each allocation (its allocation header).
pub(super) const OBJECT_OVERHEAD: u64 = 16;
/// The largest region a file can have: libpmemobj's largest allocation. A file's stored
/// bytes are bounded by it.
pub const MAX_REGION_SIZE: u64 = pmem::MAX_ALLOC_SIZE;
/// libpmemobj's chunk: allocations of whole chunks (header included) take exactly those
/// chunks, while other sizes above a few KiB come from "runs" that reserve up to
/// 4 MiB per size class, which would fill small pools long before their data does.
pub const REGION_CHUNK: u64 = 256 << 10;
/// Regions up to this size come from libpmemobj's small classes, whose runs share a
/// single chunk.
const SMALL_REGION_MAX: u64 = (8 << 10) - OBJECT_OVERHEAD;
/// Smallest region: below this, appends would reallocate too often.
const MIN_REGION: u64 = 256;

/// Medium regions, in pools big enough for it, come from power-of-two run classes.
const MEDIUM_REGION_MAX: u64 = (128 << 10) - OBJECT_OVERHEAD;
/// Pools from this size on afford the runs medium sizes reserve (at worst a few percent
/// of the pool); smaller pools give every region past SMALL_REGION_MAX whole chunks,
/// which wastes more per file but never strands free space in half-used runs.
const DENSE_POOL_MIN: u64 = 256 << 20;

/// The region size to allocate for `bytes` of file data in a pool of `pool_bytes`:
/// small sizes as they are, medium ones as powers of two in big pools, the rest as
/// whole chunks, never past libpmemobj's largest allocation.
pub fn region_size_for(bytes: u64, pool_bytes: u64) -> u64 {
    if bytes <= SMALL_REGION_MAX {
        return bytes.max(MIN_REGION);
    }
    if bytes <= MEDIUM_REGION_MAX && pool_bytes >= DENSE_POOL_MIN {
        return (bytes + OBJECT_OVERHEAD).next_power_of_two() - OBJECT_OVERHEAD;
    }
    let chunks = (bytes + OBJECT_OVERHEAD).div_ceil(REGION_CHUNK);
    (chunks * REGION_CHUNK - OBJECT_OVERHEAD).min(MAX_REGION_SIZE)
}

/// A region that a write outgrows asks for this many times its capacity. Growth costs
/// the copy of the file, while a reserve nobody has written yet costs no memory, so a
/// large factor keeps the bytes an append copies to about a seventh of the final size.
const GROWTH_FACTOR: u64 = 8;
/// The factor in pools smaller than DENSE_POOL_MIN, where a big reserve would more
/// often leave no contiguous room for the next region of another file (or of the
/// same one, after a fallback to the exact size).
const SMALL_POOL_GROWTH_FACTOR: u64 = 2;
/// A closed file is moved to a smaller region when its capacity exceeds its fitted size
/// by this fraction (1/N) of its size, and at least a chunk...
const TRIM_WASTE_SHARE: u64 = 8;
/// ...and keeps this fraction (1/N) of its size as headroom, so that a file reopened
/// for appending does not move back and forth at each close.
const TRIM_HEADROOM_SHARE: u64 = 16;

/// Geometric growth stops at this fraction (1/N) of the space the file could have (the
/// free space plus its own region). A file that outgrows that moves once into the
/// largest region that fits: any later move would need room for the old region and the
/// new one at once, which is what kept a file written from start to end under half of
/// the pool. The regions it had before stay free in front of the new one (about 8/7 of
/// the last, or twice it where growth doubles), and so does LARGEST_KEEP_FACTOR times
/// it: the file then reaches about nine tenths of the space.
const GEOMETRIC_REACH_SHARE: u64 = 64;
/// The largest region is taken only where geometric growth stops at this size or more
/// (pools of about 512 MiB and up). In smaller pools a file that moved there while a
/// few MiB long could not be copied back at close, and would keep nearly the whole
/// pool; there files grow geometrically all the way (as two regions held at once
/// allow, about half the free space for one file).
const LARGEST_MIN_STEP: u64 = 8 << 20;
/// A file moving into the largest region leaves this many times its old capacity free:
/// room to move it back into a fitting region when it is closed (up to about five
/// times that capacity, counting the regions it left), and for other files meanwhile.
const LARGEST_KEEP_FACTOR: u64 = 4;

/// Where a file that outgrows its region moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Growth {
    /// A region of this size.
    To(u64),
    /// The largest region the allocator gives, less the transaction reserve and `keep`
    /// bytes left free, shared with the other files being written, but at least
    /// `at_least` bytes.
    Largest { at_least: u64, keep: u64 },
}

/// The region a file of logical `size` outgrowing `capacity` moves to when it needs
/// `needed` bytes. A write inside the size (into a zero tail: the file was sized first)
/// gets a region for the whole size, if that takes at most half of what the file could
/// reach. Otherwise a first region just fits; then GROWTH_FACTOR times the capacity, up
/// to a 64th of the space the file could reach; past that, the largest region that fits.
pub fn growth(needed: u64, capacity: u64, size: u64, free_bytes: u64, pool_bytes: u64) -> Growth {
    let reach = free_bytes.saturating_add(capacity);
    if needed <= size && size <= reach / 2 {
        return Growth::To(region_size_for(size, pool_bytes));
    }
    if capacity == 0 {
        return Growth::To(region_size_for(needed, pool_bytes));
    }
    let factor = match pool_bytes >= DENSE_POOL_MIN {
        true => GROWTH_FACTOR,
        false => SMALL_POOL_GROWTH_FACTOR,
    };
    let geometric = needed.max(capacity.saturating_mul(factor));
    let limit = (reach / GEOMETRIC_REACH_SHARE).max(REGION_CHUNK);
    if needed <= limit {
        return Growth::To(region_size_for(geometric.min(limit), pool_bytes));
    }
    if limit < LARGEST_MIN_STEP {
        // A small pool: a file of a few MiB in the largest region would keep most of
        // the pool when its copy does not fit at close. Keep growing geometrically,
        // with room for a quarter of the free space beyond what the write needs.
        let step = geometric.min(needed.saturating_add(free_bytes / 4));
        return Growth::To(region_size_for(step, pool_bytes));
    }
    Growth::Largest {
        at_least: region_size_for(needed, pool_bytes),
        keep: capacity.saturating_mul(LARGEST_KEEP_FACTOR),
    }
}

/// Space kept free for transactions when a file takes the largest region, and left
/// out of the available figure: new records of other files come from runs that need
/// whole chunks, and large transactions extend their logs from the heap. A 64th of the
/// pool, from 2 to 16 chunks (512 KiB to 4 MiB).
pub fn transaction_reserve(pool_bytes: u64) -> u64 {
    (pool_bytes / 64).clamp(2 * REGION_CHUNK, 16 * REGION_CHUNK) / REGION_CHUNK * REGION_CHUNK
}

/// The size of `writers` files' share of a largest region of `largest` bytes: whole
/// chunks, less the reserve and `keep`.
pub fn largest_share(largest: u64, writers: u64, keep: u64, pool_bytes: u64) -> u64 {
    let usable = largest
        .saturating_sub(transaction_reserve(pool_bytes))
        .saturating_sub(keep);
    let share = usable / writers.max(1);
    ((share + OBJECT_OVERHEAD) / REGION_CHUNK * REGION_CHUNK).saturating_sub(OBJECT_OVERHEAD)
}

/// The region size a closed file of `size` bytes moves to when its region of `capacity`
/// bytes holds much more than the file (see TRIM_WASTE_SHARE); None to leave it.
pub fn trim_size(size: u64, capacity: u64, pool_bytes: u64) -> Option<u64> {
    let fitted = region_size_for(size, pool_bytes);
    let waste = capacity.saturating_sub(fitted);
    if waste < REGION_CHUNK.max(size / TRIM_WASTE_SHARE) {
        return None;
    }
    let trimmed = region_size_for(size + size / TRIM_HEADROOM_SHARE, pool_bytes);
    (trimmed < capacity).then_some(trimmed)
}

impl Store {
    /// Bytes still free for objects: the heap less what objects hold. libpmemobj's own
    /// fragmentation makes the real figure somewhat lower for large allocations.
    pub fn free_bytes(&self) -> u64 {
        let heap = self.file_size.saturating_sub(self.header.heap_offset);
        let used = self.allocated.load(Ordering::Relaxed).max(0) as u64;
        heap.saturating_sub(used)
    }

    /// The free space counted, less the transaction reserve: what
    /// [`Store::available_bytes`] shows where no probe can say more.
    pub fn counted_available_bytes(&self) -> u64 {
        self.free_bytes()
            .saturating_sub(transaction_reserve(self.file_size))
    }

    /// Bytes a new file can get: the largest region the allocator gives now, less the
    /// transaction reserve. Past libpmemobj's largest allocation (pools above 16 GiB),
    /// where one file cannot hold it all, the free space counted less the reserve.
    /// The probe splits and rejoins free chunks in libpmemobj's heap metadata, so a
    /// read-only mount asks [`Store::counted_available_bytes`] instead.
    pub fn available_bytes(&self) -> u64 {
        let changes = self.heap_changes.load(Ordering::Acquire);
        let cached = *self.last_probe.lock();
        let largest = match cached {
            Some((at, largest)) if at == changes => largest,
            _ => {
                let largest = self.largest_region(MAX_REGION_SIZE);
                *self.last_probe.lock() = Some((changes, largest));
                largest
            }
        };
        if largest >= region_size_for(MAX_REGION_SIZE, self.file_size) {
            return self.counted_available_bytes().max(largest);
        }
        largest.saturating_sub(transaction_reserve(self.file_size))
    }

    /// The largest region, in whole chunks less the allocation header and at most
    /// `at_most` bytes, that libpmemobj would allocate now: found by reserving and
    /// cancelling (a binary search over chunk counts), so runs, chunk rounding and
    /// fragmentation all count as the allocator sees them. 0 if not even one chunk.
    pub fn largest_region(&self, at_most: u64) -> u64 {
        let size_of = |chunks: u64| (chunks * REGION_CHUNK).saturating_sub(OBJECT_OVERHEAD);
        let _alone = self.allocations.write();
        let fits = |chunks: u64| chunks == 0 || self.pool.can_reserve(size_of(chunks));
        let most = at_most.min(MAX_REGION_SIZE).saturating_add(OBJECT_OVERHEAD) / REGION_CHUNK;
        if fits(most) {
            return size_of(most);
        }
        // Invariant: `fits` holds for `lo` chunks and not for `hi`.
        let (mut lo, mut hi) = (0, most);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            match fits(mid) {
                true => lo = mid,
                false => hi = mid,
            }
        }
        size_of(lo)
    }

    /// The region size to allocate for `bytes` of file data in this pool.
    pub fn region_size_for(&self, bytes: u64) -> u64 {
        region_size_for(bytes, self.file_size)
    }

    /// Where a file outgrowing `capacity` moves (see [`growth`]).
    pub fn growth(&self, needed: u64, capacity: u64, size: u64) -> Growth {
        growth(needed, capacity, size, self.free_bytes(), self.file_size)
    }

    /// A region for one of `writers` files being written: its share of the largest
    /// region that fits, leaving `keep` bytes (see [`largest_share`]).
    pub fn largest_share(&self, writers: u64, keep: u64) -> u64 {
        let largest = self.largest_region(MAX_REGION_SIZE);
        largest_share(largest, writers, keep, self.file_size)
    }

    /// The region size to trim a closed file to, if any (see [`trim_size`]).
    pub fn trim_size(&self, size: u64, capacity: u64) -> Option<u64> {
        trim_size(size, capacity, self.file_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_regions_keep_their_size_and_large_ones_fill_whole_chunks() {
        let small_pool = 64 << 20;
        assert_eq!(region_size_for(1, small_pool), MIN_REGION);
        assert_eq!(region_size_for(5000, small_pool), 5000);
        assert_eq!(
            region_size_for(SMALL_REGION_MAX, small_pool),
            SMALL_REGION_MAX
        );
        assert_eq!(
            region_size_for(SMALL_REGION_MAX + 1, small_pool),
            REGION_CHUNK - 16
        );
        assert_eq!(
            region_size_for(REGION_CHUNK - 16, small_pool),
            REGION_CHUNK - 16
        );
        assert_eq!(
            region_size_for(REGION_CHUNK, small_pool),
            2 * REGION_CHUNK - 16
        );
        assert_eq!(
            region_size_for(MAX_REGION_SIZE, small_pool),
            MAX_REGION_SIZE
        );
    }

    #[test]
    fn growth_multiplies_the_capacity_then_takes_the_largest_region() {
        let pool = 2 << 30;
        let (mib, free) = (1u64 << 20, 1u64 << 30);
        assert_eq!(
            growth(mib + 1, mib - 16, 0, free, pool),
            Growth::To(region_size_for(8 * mib - 128, pool))
        );
        // Geometric steps stop at a 64th of what the file could reach...
        let limit = (free + 8 * mib - 16) / 64;
        assert_eq!(
            growth(8 * mib, 8 * mib - 16, 0, free, pool),
            Growth::To(region_size_for(limit, pool))
        );
        // ...past which it moves into the largest region that fits.
        assert_eq!(
            growth(limit + 200 * mib, limit, 0, free, pool),
            Growth::Largest {
                at_least: region_size_for(limit + 200 * mib, pool),
                keep: 4 * limit
            }
        );
        // A full pool still gets asked for what the write needs (then fails as ENOSPC).
        assert_eq!(
            growth(3 * mib, mib, 0, 0, pool),
            Growth::To(region_size_for(3 * mib, pool))
        );
        // Where geometric growth would stop below LARGEST_MIN_STEP (a pool of 256 MiB),
        // a file keeps growing geometrically by at most a quarter of the free space more than the write needs.
        let (small_pool, small_free) = (256 * mib, 250 * mib);
        match growth(4 * mib, 4 * mib - 16, 0, small_free, small_pool) {
            Growth::To(size) => assert!(size > 4 * mib && size <= small_free / 4, "{size}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(growth(100, 0, 0, free, pool), Growth::To(MIN_REGION));
        // A first region just fits, however big.
        assert_eq!(
            growth(900 * mib, 0, 0, free, pool),
            Growth::To(region_size_for(900 * mib, pool))
        );
        // A write into a zero tail gets a region for the whole size, if it is small
        // enough against what the file could reach.
        assert_eq!(
            growth(64 * 1024, 0, 300 * mib, free, pool),
            Growth::To(region_size_for(300 * mib, pool))
        );
        assert_eq!(
            growth(64 * 1024, 0, 600 * mib, free, pool),
            Growth::To(region_size_for(64 * 1024, pool))
        );
        assert_eq!(
            growth(301 * mib, 300 * mib, 300 * mib, free, pool),
            Growth::Largest {
                at_least: region_size_for(301 * mib, pool),
                keep: 1200 * mib
            }
        );
        // Small pools double.
        let small_pool = 64 * mib;
        assert_eq!(
            growth(256 * 1024 + 1, 256 * 1024 - 16, 0, 60 * mib, small_pool),
            Growth::To(region_size_for(512 * 1024 - 32, small_pool))
        );
    }

    #[test]
    fn the_largest_region_is_shared_in_whole_chunks_less_the_reserve() {
        let pool = 1 << 30;
        let reserve = transaction_reserve(pool);
        assert_eq!(reserve, 16 * REGION_CHUNK);
        assert_eq!(transaction_reserve(16 << 20), 2 * REGION_CHUNK);
        let largest = 1000 * REGION_CHUNK - 16;
        assert_eq!(
            largest_share(largest, 1, 0, pool),
            984 * REGION_CHUNK - 16,
            "1000 chunks less 16 reserved"
        );
        assert_eq!(largest_share(largest, 2, 0, pool), 492 * REGION_CHUNK - 16);
        assert_eq!(
            largest_share(largest, 1, 84 * REGION_CHUNK, pool),
            900 * REGION_CHUNK - 16
        );
        assert_eq!(largest_share(reserve, 1, 0, pool), 0);
    }

    #[test]
    fn trimming_gives_back_big_reserves_and_keeps_some_headroom() {
        let pool = 2 << 30;
        let mib = 1u64 << 20;
        // Less than a chunk, or less than an eighth of the size, beyond the fit: kept.
        assert_eq!(
            trim_size(mib, region_size_for(mib, pool) + REGION_CHUNK - 1, pool),
            None
        );
        assert_eq!(trim_size(512 * mib, 560 * mib, pool), None);
        assert_eq!(
            trim_size(512 * mib, 640 * mib, pool),
            Some(region_size_for(544 * mib, pool))
        );
        assert_eq!(
            trim_size(mib, 80 * mib, pool),
            Some(region_size_for(mib + mib / 16, pool))
        );
        assert_eq!(trim_size(0, 80 * mib, pool), Some(MIN_REGION));
    }

    #[test]
    fn big_pools_give_medium_files_power_of_two_regions() {
        let big_pool = 1 << 30;
        assert_eq!(region_size_for(5000, big_pool), 5000);
        assert_eq!(region_size_for(14_000, big_pool), (16 << 10) - 16);
        assert_eq!(
            region_size_for(MEDIUM_REGION_MAX, big_pool),
            MEDIUM_REGION_MAX
        );
        assert_eq!(
            region_size_for(MEDIUM_REGION_MAX + 1, big_pool),
            REGION_CHUNK - 16
        );
    }
}
