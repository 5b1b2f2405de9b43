//! The on-pool format: opening a pool with Warabi's rules, the superblock, inode and
//! directory-entry records, and file data held in Warabi regions (type-0 objects).
//!
//! Its verbs mirror Warabi's backend: regions are created, read, written, persisted and
//! erased; metadata changes go through [`StoreTx`], one libpmemobj transaction each.

mod backing;
pub mod poolset;
mod probe;
pub mod records;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard, RwLock};

use crate::pmem::{self, Oid, PmemError, Pool, Tx, TxAlloc};
pub use backing::is_memory_backed;
use probe::ProbeError;
pub use probe::{PoolHeader, PoolKind};
use records::{
    DentryRecord, DentryView, InodeRecord, Superblock, XattrRecord, BASE_FORMAT_VERSION,
    COUNTED_INO_LIMIT, FORMAT_VERSION, INODE_HEADER_SIZE, MAGIC, SUPERBLOCK_NEXT_INO,
    SUPERBLOCK_SIZE, TYPE_DENTRY, TYPE_INODE, TYPE_REGION, TYPE_XATTR, ZERO_TAIL_VERSION,
};

/// Warabi's pmem backend configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolConfig {
    pub path: PathBuf,
    pub create_if_missing_with_size: Option<u64>,
    pub override_if_exists: bool,
}

/// Why a pool could not be opened or changed. Each message is one line naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("create_if_missing_with_size is {0} bytes; it must be at least 8388608 (8 MiB)")]
    SizeTooSmall(u64),
    #[error("File {0} does not exist but \"create_if_missing_with_size\" was not specified in configuration")]
    Missing(PathBuf),
    #[error(
        "\"override_if_exists\" set to true but \"create_if_missing_with_size\" not specified"
    )]
    OverrideWithoutSize,
    #[error("{0} is a directory, not a pool file")]
    IsDirectory(PathBuf),
    #[error("{0} is not a libpmemobj pool")]
    NotAPool(PathBuf),
    #[error("pool set {path}: {reason}")]
    PoolSet { path: PathBuf, reason: String },
    #[error("pool {path} is truncated: the file has {len} bytes but the pool needs at least {expected}; restore the pool file from a copy")]
    Truncated {
        path: PathBuf,
        len: u64,
        expected: u64,
    },
    #[error("pool {path} is corrupted: {what} does not match, so libpmemobj cannot open it; restore the pool file from a copy")]
    Corrupt { path: PathBuf, what: &'static str },
    #[error("pool {path}: permission denied: {detail}")]
    PermissionDenied { path: PathBuf, detail: String },
    #[error("{path} is a libpmemobj pool of layout \"{layout}\", not a Warabi pool (Warabi pools have no layout)")]
    ForeignLayout { path: PathBuf, layout: String },
    #[error("{0} has a root object that is not warabifs metadata; refusing to use it")]
    ForeignRoot(PathBuf),
    #[error("{path} has warabifs format version {found}; this warabifs reads version {FORMAT_VERSION} at most")]
    NewerFormat { path: PathBuf, found: u32 },
    #[error("pool {0} is in use by another process (libpmemobj holds its lock)")]
    InUse(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pool {path}: {source}")]
    Pmem { path: PathBuf, source: PmemError },
    /// A change of an inode that has no record (a Warabi region not adopted, or the
    /// stand-in root of a pool without warabifs metadata): nothing to write it to.
    #[error("inode {0} has no record on the pool to change")]
    NoRecord(u64),
}

impl StoreError {
    /// The errno a file-system operation reports for this failure.
    pub fn errno(&self) -> i32 {
        match self {
            StoreError::Pmem { source, .. } => errno_of(source),
            StoreError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            StoreError::NoRecord(_) => libc::EROFS,
            _ => libc::EIO,
        }
    }
}

/// libpmemobj reports a full pool as ENOMEM; to a file system that is ENOSPC.
pub fn errno_of(e: &PmemError) -> i32 {
    match e.errno {
        libc::ENOMEM => libc::ENOSPC,
        0 => libc::EIO,
        errno => errno,
    }
}

/// Everything a mount-time scan finds in the pool.
#[derive(Debug, Default)]
pub struct Scan {
    pub inodes: Vec<(Oid, InodeRecord)>,
    pub dentries: Vec<(Oid, DentryRecord)>,
    pub xattrs: Vec<(Oid, XattrRecord)>,
    /// Type-0 objects: Warabi regions, owned by an inode or not.
    pub regions: Vec<Oid>,
    /// Records that could not be decoded, and objects of type numbers no one here uses.
    pub unreadable: Vec<Oid>,
}

/// One object as [`Store::scan_each`] meets it.
#[derive(Debug)]
pub enum Found<'p> {
    /// A type-0 object: a Warabi region, owned by an inode or not, and its usable size.
    Region(Oid, u64),
    Inode(Oid, InodeRecord),
    /// A directory entry record, its name borrowed from the pool.
    Dentry(Oid, DentryView<'p>),
    Xattr(Oid, XattrRecord),
    /// A record that could not be decoded, or an object of a type number no one here uses.
    Unreadable(Oid),
}

/// An open pool holding (or about to hold) warabifs metadata.
pub struct Store {
    pool: Pool,
    /// Whether the pool has a superblock (false for a Warabi pool mounted read-only).
    formatted: bool,
    /// Bytes of the pool's address space (see [`PoolHeader::pool_bytes`]).
    file_size: u64,
    /// The pool file's header, read before libpmemobj opened the pool.
    header: PoolHeader,
    /// Bytes held by objects, kept up to date by committed transactions.
    allocated: AtomicI64,
    /// The format version in the superblock (0 before the pool is formatted).
    version: AtomicU32,
    /// Held by the transaction that raises the version, until it ends, so that no
    /// other one writes a record of the new version before the superblock says so.
    upgrading: Mutex<()>,
    /// The superblock's next inode number as committed (see [`Superblock::next_ino`]).
    next_ino: AtomicU64,
    /// Allocations share it; a probe of what the allocator would give
    /// ([`Store::largest_region`]) takes it alone, since its reservation makes the
    /// space look taken while it lasts.
    allocations: RwLock<()>,
    /// Counts committed changes of the heap, so that a probe's answer is reused until
    /// the heap changes.
    heap_changes: AtomicU64,
    /// (heap_changes, largest region) of the last probe for statfs.
    last_probe: Mutex<Option<(u64, u64)>>,
}

/// Per-object overhead libpmemobj adds to each allocation (its allocation header).
const OBJECT_OVERHEAD: u64 = 16;
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
    (chunks * REGION_CHUNK - OBJECT_OVERHEAD).min(pmem::MAX_ALLOC_SIZE)
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

fn pmem_err(path: &Path) -> impl Fn(PmemError) -> StoreError + '_ {
    move |source| StoreError::Pmem {
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    /// Opens or creates the pool with Warabi's rules; formats it for warabifs unless
    /// `read_only` (a read-only mount never writes metadata).
    pub fn open(config: &PoolConfig, read_only: bool) -> Result<Store, StoreError> {
        let (pool, header) = open_or_create(config)?;
        let file_size = header.pool_bytes;
        let blank_root = header.blank_root;
        let mut store = Store {
            pool,
            formatted: false,
            file_size,
            header,
            allocated: AtomicI64::new(0),
            version: AtomicU32::new(0),
            upgrading: Mutex::new(()),
            next_ino: AtomicU64::new(0),
            allocations: RwLock::new(()),
            heap_changes: AtomicU64::new(0),
            last_probe: Mutex::new(None),
        };
        store.formatted = !blank_root && store.check_superblock()?;
        if !store.formatted && !read_only {
            store.format()?;
        }
        Ok(store)
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Gives back the memory a full scan of the pool brought in.
    pub fn release_resident_pages(&self) {
        self.pool.release_resident_pages(self.file_size);
    }

    /// The pool file's header as it was before libpmemobj opened the pool (its
    /// shutdown state, for one, changes once the pool is open).
    pub fn header(&self) -> &PoolHeader {
        &self.header
    }

    pub fn is_formatted(&self) -> bool {
        self.formatted
    }

    /// Ok(true) when the root object is a warabifs superblock of a version we read.
    fn check_superblock(&self) -> Result<bool, StoreError> {
        let Some(root) = self.pool.root() else {
            return Ok(false);
        };
        let path = self.pool.path().to_path_buf();
        if self.pool.usable_size(root) < SUPERBLOCK_SIZE as u64 {
            return Err(StoreError::ForeignRoot(path));
        }
        let sb = Superblock::decode(self.pool.bytes(root, 0, SUPERBLOCK_SIZE));
        if sb.magic != MAGIC {
            return Err(StoreError::ForeignRoot(path));
        }
        if sb.version > FORMAT_VERSION {
            return Err(StoreError::NewerFormat {
                path,
                found: sb.version,
            });
        }
        self.version.store(sb.version, Ordering::Relaxed);
        self.next_ino.store(sb.next_ino, Ordering::Relaxed);
        Ok(true)
    }

    /// The lowest inode number never given out, as the superblock records it (0 when
    /// the pool's builds did not record it): a mount counts from at least here.
    pub fn next_ino(&self) -> u64 {
        self.next_ino.load(Ordering::Relaxed)
    }

    /// Writes the superblock. The root directory's inode is made by the file system.
    fn format(&mut self) -> Result<(), StoreError> {
        let root = self
            .pool
            .root_with_size(SUPERBLOCK_SIZE)
            .map_err(pmem_err(self.pool.path()))?;
        let mut tx = self.pool.tx().map_err(pmem_err(self.pool.path()))?;
        tx.write(
            root,
            0,
            &Superblock::of_version(BASE_FORMAT_VERSION).encode(),
        )
        .map_err(pmem_err(self.pool.path()))?;
        tx.commit().map_err(pmem_err(self.pool.path()))?;
        self.formatted = true;
        self.version.store(BASE_FORMAT_VERSION, Ordering::Relaxed);
        Ok(())
    }

    /// Reads every object of the pool once, sorted by kind.
    pub fn scan(&self) -> Scan {
        self.scan_with_progress(|_| {})
    }

    /// [`Store::scan`], calling `progress` with the count of objects read so far every
    /// few thousand objects (for a progress display on big pools).
    pub fn scan_with_progress(&self, mut progress: impl FnMut(u64)) -> Scan {
        let mut scan = Scan::default();
        let mut count = 0u64;
        self.scan_each(|found| {
            if count % 4096 == 0 {
                progress(count);
            }
            count += 1;
            match found {
                Found::Region(oid, _) => scan.regions.push(oid),
                Found::Inode(oid, rec) => scan.inodes.push((oid, rec)),
                Found::Dentry(oid, view) => {
                    let rec = DentryRecord {
                        parent: view.parent,
                        ino: view.ino,
                        name: view.name.to_vec(),
                    };
                    scan.dentries.push((oid, rec));
                }
                Found::Xattr(oid, rec) => scan.xattrs.push((oid, rec)),
                Found::Unreadable(oid) => scan.unreadable.push(oid),
            }
        });
        scan
    }

    /// One pass over the pool's objects, handing each to `visit` decoded, in pool order,
    /// without collecting them: a mount keeps only what it needs of each. Sets the
    /// space accounting (see [`Store::free_bytes`]).
    pub fn scan_each(&self, mut visit: impl FnMut(Found<'_>)) {
        let mut allocated = 0u64;
        for oid in self.pool.objects() {
            let type_num = self.pool.type_num(oid);
            if type_num == TYPE_REGION {
                // A region's bytes are file data: the scan does not read them.
                let size = self.pool.usable_size(oid);
                allocated += size + OBJECT_OVERHEAD;
                visit(Found::Region(oid, size));
                continue;
            }
            let bytes = self.pool.object_bytes(oid);
            allocated += bytes.len() as u64 + OBJECT_OVERHEAD;
            let found = match type_num {
                TYPE_INODE => InodeRecord::decode(bytes).map(|rec| Found::Inode(oid, rec)),
                TYPE_DENTRY => DentryView::decode(bytes).map(|view| Found::Dentry(oid, view)),
                TYPE_XATTR => XattrRecord::decode(bytes).map(|rec| Found::Xattr(oid, rec)),
                _ => None,
            };
            visit(found.unwrap_or(Found::Unreadable(oid)));
        }
        self.allocated.store(allocated as i64, Ordering::Relaxed);
    }

    /// The directory entry record at `record`, read in place; None if it does not decode.
    pub fn dentry_record(&self, record: Oid) -> Option<DentryView<'_>> {
        DentryView::decode(self.pool.object_bytes(record))
    }

    /// The inode record at `record`, read from the pool; None if it does not decode.
    pub fn inode_record(&self, record: Oid) -> Option<InodeRecord> {
        InodeRecord::decode(self.pool.object_bytes(record))
    }

    /// Pool size in bytes (what `df` shows as the size): the pool file's length, or the
    /// master replica's parts of a pool set.
    pub fn total_bytes(&self) -> u64 {
        self.file_size
    }

    /// The format version the superblock says (0 for a pool not formatted).
    pub fn format_version(&self) -> u32 {
        self.version.load(Ordering::Relaxed)
    }

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
                let largest = self.largest_region(pmem::MAX_ALLOC_SIZE);
                *self.last_probe.lock() = Some((changes, largest));
                largest
            }
        };
        if largest >= region_size_for(pmem::MAX_ALLOC_SIZE, self.file_size) {
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
        let most = at_most
            .min(pmem::MAX_ALLOC_SIZE)
            .saturating_add(OBJECT_OVERHEAD)
            / REGION_CHUNK;
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
        let largest = self.largest_region(pmem::MAX_ALLOC_SIZE);
        largest_share(largest, writers, keep, self.file_size)
    }

    /// The region size to trim a closed file to, if any (see [`trim_size`]).
    pub fn trim_size(&self, size: u64, capacity: u64) -> Option<u64> {
        trim_size(size, capacity, self.file_size)
    }

    /// Bytes of a region that may hold file data.
    pub fn capacity(&self, region: Oid) -> u64 {
        self.pool.usable_size(region)
    }

    pub fn read_with<R>(
        &self,
        region: Oid,
        off: u64,
        len: usize,
        with: impl FnOnce(&[u8]) -> R,
    ) -> R {
        self.pool.read_with(region, off, len, with)
    }

    pub fn read_into(&self, region: Oid, off: u64, buf: &mut [u8]) {
        self.pool.read_into(region, off, buf)
    }

    pub fn write(&self, region: Oid, off: u64, data: &[u8]) {
        self.pool.write(region, off, data);
    }

    /// Copies bytes between regions (or within one; the ranges may overlap).
    pub fn copy(&self, from: Oid, from_off: u64, to: Oid, to_off: u64, len: u64) {
        self.pool.copy(from, from_off, to, to_off, len as usize);
    }

    pub fn zero(&self, region: Oid, off: u64, len: u64) {
        self.pool.zero(region, off, len as usize);
    }

    pub fn flush(&self, region: Oid, off: u64, len: u64) {
        self.pool.flush(region, off, len as usize);
    }

    pub fn drain(&self) {
        self.pool.drain();
    }

    /// Starts one metadata transaction.
    pub fn begin(&self) -> Result<StoreTx<'_>, StoreError> {
        let tx = self.pool.tx().map_err(pmem_err(self.pool.path()))?;
        Ok(StoreTx {
            store: self,
            tx,
            allocated_delta: 0,
            heap_touched: false,
            upgrade: None,
            next_ino: None,
        })
    }

    pub fn path(&self) -> &Path {
        self.pool.path()
    }
}

fn probe_error(path: &Path, e: ProbeError) -> StoreError {
    match e {
        ProbeError::NotAPool => StoreError::NotAPool(path.to_path_buf()),
        ProbeError::Truncated { len, expected } => StoreError::Truncated {
            path: path.to_path_buf(),
            len,
            expected,
        },
        ProbeError::Corrupt(what) => StoreError::Corrupt {
            path: path.to_path_buf(),
            what,
        },
        ProbeError::Set(reason) => StoreError::PoolSet {
            path: path.to_path_buf(),
            reason,
        },
        ProbeError::Io(source) => io_error(path, source),
    }
}

/// An I/O error on the pool file; a permission error gets a line that says what to do.
fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    match source.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => permission_denied(path, false),
        _ => StoreError::Io {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// The pool file cannot be read (`write` false) or opened for writing (`write` true).
fn permission_denied(path: &Path, write: bool) -> StoreError {
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::geteuid();
    let file = match std::fs::metadata(path) {
        Ok(m) => format!(
            "the pool file (owner {}:{}, mode {:04o})",
            m.uid(),
            m.gid(),
            m.mode() & 0o7777
        ),
        Err(_) => "the pool file (or a directory above it)".to_string(),
    };
    let detail = if write {
        format!(
            "user {uid} cannot write {file}, and libpmemobj opens a pool for writing even for a read-only mount (-o ro); run warabifs as a user who can write the file, or give this user write permission"
        )
    } else {
        format!(
            "user {uid} cannot read {file}; run warabifs as a user who can read and write the file, or give this user read and write permission"
        )
    };
    StoreError::PermissionDenied {
        path: path.to_path_buf(),
        detail,
    }
}

/// Warabi's open-or-create, with its validation, plus checks that refuse a file that is
/// not ours before libpmemobj writes to it.
/// Returns the pool and its header, read before libpmemobj opened it.
fn open_or_create(config: &PoolConfig) -> Result<(Pool, PoolHeader), StoreError> {
    let path = config.path.as_path();
    if let Some(size) = config.create_if_missing_with_size {
        if size < pmem::MIN_POOL_SIZE {
            return Err(StoreError::SizeTooSmall(size));
        }
    }
    if config.override_if_exists && config.create_if_missing_with_size.is_none() {
        return Err(StoreError::OverrideWithoutSize);
    }
    // A path we may not look at is not "missing": say why instead of creating it.
    let exists = match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => return Err(StoreError::IsDirectory(path.to_path_buf())),
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_error(path, e)),
    };
    if exists && config.override_if_exists {
        // The one place warabifs deletes a pool file: the user asked for it. As in
        // Warabi's backend, `path` itself goes, a pool set file too, and a single-file
        // pool is created in its place; the parts a pool set named are left alone.
        warn_parts_left(path);
        std::fs::remove_file(path).map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    } else if exists {
        return open_existing(path);
    }
    let Some(size) = config.create_if_missing_with_size else {
        return Err(StoreError::Missing(path.to_path_buf()));
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let pool = Pool::create(path, size).map_err(pmem_err(path))?;
    let header = PoolHeader::read(path).map_err(|e| probe_error(path, e))?;
    Ok((pool, header))
}

/// Before `override_if_exists` replaces a pool set file, says which parts stay behind.
fn warn_parts_left(path: &Path) {
    let Ok(set) = poolset::read(path) else {
        return;
    };
    let parts: Vec<String> = set
        .replicas
        .iter()
        .flat_map(|r| &r.parts)
        .map(|p| p.path.display().to_string())
        .collect();
    tracing::warn!(
        "override_if_exists: replacing pool set {} with a single-file pool, as Warabi does; its parts are left as they are: {}",
        path.display(),
        parts.join(", ")
    );
}

fn open_existing(path: &Path) -> Result<(Pool, PoolHeader), StoreError> {
    let header = PoolHeader::read(path).map_err(|e| probe_error(path, e))?;
    if !header.layout.is_empty() {
        return Err(StoreError::ForeignLayout {
            path: path.to_path_buf(),
            layout: String::from_utf8_lossy(&header.layout).into_owned(),
        });
    }
    // Refuse a root that is not ours here: pmemobj_open writes to the file (its run id)
    // and a refused file must stay byte-for-byte unchanged.
    if header.root_size > 0 && !header.blank_root {
        match header.superblock {
            Some(sb) if sb.magic == MAGIC && sb.version > FORMAT_VERSION => {
                return Err(StoreError::NewerFormat {
                    path: path.to_path_buf(),
                    found: sb.version,
                });
            }
            Some(sb) if sb.magic == MAGIC => {}
            _ => return Err(StoreError::ForeignRoot(path.to_path_buf())),
        }
    }
    // A daemon that was just unmounted closes its pool a moment after umount returns;
    // wait a little for its lock before calling the pool in use.
    let deadline = Instant::now() + IN_USE_WAIT;
    loop {
        match Pool::open(path) {
            Ok(pool) => return Ok((pool, header)),
            Err(e) if e.errno == libc::EAGAIN && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) if e.errno == libc::EAGAIN => return Err(StoreError::InUse(path.to_path_buf())),
            // libpmemobj opens the file O_RDWR, even in its copy-on-write mode.
            Err(e) if matches!(e.errno, libc::EACCES | libc::EPERM) => {
                return Err(permission_denied(path, true))
            }
            Err(source) => {
                return Err(StoreError::Pmem {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// How long opening waits for another process to release the pool's lock.
const IN_USE_WAIT: Duration = Duration::from_secs(2);

/// One metadata transaction: typed record operations over a libpmemobj transaction.
/// Dropped without [`StoreTx::commit`], nothing it did happens.
pub struct StoreTx<'s> {
    store: &'s Store,
    tx: Tx<'s>,
    allocated_delta: i64,
    /// Whether it allocates or frees anything.
    heap_touched: bool,
    /// Held while this transaction raises the format version (see [`Store::upgrading`]).
    upgrade: Option<MutexGuard<'s, ()>>,
    /// The next inode number this transaction writes into the superblock.
    next_ino: Option<u64>,
}

impl StoreTx<'_> {
    fn fail(&self, e: PmemError) -> StoreError {
        pmem_err(self.store.path())(e)
    }

    fn alloc(&mut self, size: u64, type_num: u64, init: TxAlloc) -> Result<Oid, StoreError> {
        let allocated = {
            let _shared = self.store.allocations.read();
            self.tx.alloc(size, type_num, init)
        };
        let oid = allocated.map_err(|e| self.fail(e))?;
        self.heap_touched = true;
        self.allocated_delta += (self.store.pool.usable_size(oid) + OBJECT_OVERHEAD) as i64;
        Ok(oid)
    }

    /// Frees any object (record or region) when the transaction commits.
    pub fn free(&mut self, oid: Oid) -> Result<(), StoreError> {
        if oid.is_null() {
            return Ok(());
        }
        let size = self.store.pool.usable_size(oid);
        self.tx.free(oid).map_err(|e| self.fail(e))?;
        self.heap_touched = true;
        self.allocated_delta -= (size + OBJECT_OVERHEAD) as i64;
        Ok(())
    }

    /// Raises the pool's format version, in this transaction, to the one `rec` needs.
    fn allow(&mut self, rec: &InodeRecord) -> Result<(), StoreError> {
        if rec.zero_tail == 0 || self.upgrade.is_some() {
            return Ok(());
        }
        if self.store.format_version() >= ZERO_TAIL_VERSION {
            return Ok(());
        }
        let guard = self.store.upgrading.lock();
        // Another transaction may have raised it while this one waited.
        if self.store.format_version() < ZERO_TAIL_VERSION {
            let root = self
                .store
                .pool
                .root()
                .expect("a formatted pool has a superblock");
            // The magic and the version only: the rest of the superblock (the next
            // inode number) may be changing in this very transaction.
            let superblock = Superblock::of_version(ZERO_TAIL_VERSION).encode();
            self.tx
                .write(root, 0, &superblock[..12])
                .map_err(|e| self.fail(e))?;
            self.upgrade = Some(guard);
        }
        Ok(())
    }

    /// Records in the superblock that `ino` has been given out, when it is a counted
    /// number at or past the recorded next one: no later mount hands it out again,
    /// even once its inode is gone. Creates run one at a time (the namespace lock), so
    /// the numbers claimed only go up.
    fn claim_ino(&mut self, ino: u64) -> Result<(), StoreError> {
        if ino >= COUNTED_INO_LIMIT || ino < self.store.next_ino() {
            return Ok(());
        }
        let root = self
            .store
            .pool
            .root()
            .expect("a formatted pool has a superblock");
        let next = ino + 1;
        self.tx
            .write(root, SUPERBLOCK_NEXT_INO, &next.to_le_bytes())
            .map_err(|e| self.fail(e))?;
        self.next_ino = Some(next);
        Ok(())
    }

    /// Records that every counted number below `next` has been given out.
    pub fn claim_inos_below(&mut self, next: u64) -> Result<(), StoreError> {
        match next.checked_sub(1) {
            Some(last) => self.claim_ino(last),
            None => Ok(()),
        }
    }

    /// The lowest inode number not given out yet, counting this transaction's claims.
    pub fn next_free_ino(&self) -> u64 {
        self.next_ino.unwrap_or_else(|| self.store.next_ino())
    }

    pub fn create_inode(&mut self, rec: &InodeRecord) -> Result<Oid, StoreError> {
        self.allow(rec)?;
        self.claim_ino(rec.ino)?;
        let oid = self.alloc(rec.encoded_len() as u64, TYPE_INODE, TxAlloc::Zeroed)?;
        self.tx
            .write(oid, 0, &rec.encode())
            .map_err(|e| self.fail(e))?;
        Ok(oid)
    }

    /// Rewrites an inode record's fixed header (all attributes and its region).
    pub fn update_inode(&mut self, oid: Oid, rec: &InodeRecord) -> Result<(), StoreError> {
        debug_assert!(self.store.pool.usable_size(oid) >= INODE_HEADER_SIZE as u64);
        self.allow(rec)?;
        self.tx
            .write(oid, 0, &rec.encode_header())
            .map_err(|e| self.fail(e))
    }

    pub fn create_dentry(&mut self, rec: &DentryRecord) -> Result<Oid, StoreError> {
        let bytes = rec.encode();
        let oid = self.alloc(bytes.len() as u64, TYPE_DENTRY, TxAlloc::Zeroed)?;
        self.tx.write(oid, 0, &bytes).map_err(|e| self.fail(e))?;
        Ok(oid)
    }

    /// Snapshots bytes of a region so that the transaction can undo changes to them.
    pub fn snapshot(&mut self, region: Oid, off: u64, len: u64) -> Result<(), StoreError> {
        // A large snapshot extends the undo log from the heap: an allocation.
        let _shared = self.store.allocations.read();
        self.tx
            .add_range(region, off, len as usize)
            .map_err(|e| self.fail(e))
    }

    pub fn create_xattr(&mut self, rec: &XattrRecord) -> Result<Oid, StoreError> {
        let bytes = rec.encode();
        let oid = self.alloc(bytes.len() as u64, TYPE_XATTR, TxAlloc::Zeroed)?;
        self.tx.write(oid, 0, &bytes).map_err(|e| self.fail(e))?;
        Ok(oid)
    }

    /// A new region of at least `size` bytes whose contents are left undefined and not
    /// flushed: the caller fills and persists the bytes it uses.
    pub fn create_region(&mut self, size: u64) -> Result<Oid, StoreError> {
        self.alloc(size, TYPE_REGION, TxAlloc::Unflushed)
    }

    pub fn commit(self) -> Result<(), StoreError> {
        let path = self.store.path().to_path_buf();
        let delta = self.allocated_delta;
        let store = self.store;
        let upgrade = self.upgrade;
        let next_ino = self.next_ino;
        let heap_touched = self.heap_touched;
        crate::fault::point("tx.before_commit");
        {
            // Committing frees, and may extend the redo log: the heap changes.
            let _shared = store.allocations.read();
            self.tx.commit().map_err(pmem_err(&path))?;
        }
        crate::fault::point("tx.after_commit");
        store.allocated.fetch_add(delta, Ordering::Relaxed);
        if heap_touched {
            store.heap_changes.fetch_add(1, Ordering::Release);
        }
        if upgrade.is_some() {
            store.version.store(ZERO_TAIL_VERSION, Ordering::Relaxed);
        }
        if let Some(next) = next_ino {
            store.next_ino.fetch_max(next, Ordering::Relaxed);
        }
        drop(upgrade);
        Ok(())
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
            region_size_for(pmem::MAX_ALLOC_SIZE, small_pool),
            pmem::MAX_ALLOC_SIZE
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
