//! The on-pool format: the superblock, inode and directory-entry records, and file
//! data held in Warabi regions (type-0 objects).
//!
//! Its verbs mirror Warabi's backend: regions are created, read, written, persisted and
//! erased; metadata changes go through [`StoreTx`], one libpmemobj transaction each.
//! [`Store`] here is the open pool and its region I/O; the jobs around it live in their
//! own modules: [`open`] (opening and validating pools), [`sizing`] (the region sizing
//! policy and the space figures), [`tx`] (transactions), [`scan`] (reading the records),
//! [`records`] (their encoding), [`error`] (why something failed).

mod backing;
mod error;
mod open;
pub mod poolset;
mod probe;
pub mod records;
mod scan;
mod sizing;
mod tx;

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

pub use crate::pmem::Oid;
use crate::pmem::Pool;
pub use backing::is_memory_backed;
use backing::memory_is_the_medium;
pub use error::{errno_of, StoreError};
pub use open::PoolConfig;
pub use probe::{PoolHeader, PoolKind};
pub use scan::{Found, Scan};
pub use sizing::{
    growth, largest_share, region_size_for, transaction_reserve, trim_size, Growth,
    MAX_REGION_SIZE, REGION_CHUNK,
};
pub use tx::StoreTx;

/// An open pool holding (or about to hold) warabifs metadata.
pub struct Store {
    pool: Pool,
    /// Whether the pool has a superblock (false for a Warabi pool mounted read-only).
    formatted: bool,
    /// Bytes of the pool's address space (see [`PoolHeader::pool_bytes`]).
    file_size: u64,
    /// The pool file's header, read before libpmemobj opened the pool.
    header: PoolHeader,
    /// Whether flushes of file data are left out: see [`Store::flush`].
    skips_data_flushes: bool,
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

impl Store {
    /// The object of this pool at offset `off`: a record or region the namespace
    /// knows by its offset alone (a directory entry's cookie, an unloaded inode).
    pub fn oid_at(&self, off: u64) -> Oid {
        self.pool.oid_at(off)
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

    /// The lowest inode number never given out, as the superblock records it (0 when
    /// the pool's builds did not record it): a mount counts from at least here.
    pub fn next_ino(&self) -> u64 {
        self.next_ino.load(Ordering::Relaxed)
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

    /// Writes into a region allocated in the running transaction (see
    /// [`Pool::write_new`]).
    pub fn write_new(&self, region: Oid, off: u64, data: &[u8]) {
        self.pool.write_new(region, off, data);
    }

    /// Copies bytes between regions (or within one; the ranges may overlap).
    pub fn copy(&self, from: Oid, from_off: u64, to: Oid, to_off: u64, len: u64) {
        self.pool.copy(from, from_off, to, to_off, len as usize);
    }

    pub fn zero(&self, region: Oid, off: u64, len: u64) {
        self.pool.zero(region, off, len as usize);
    }

    /// Flushes written bytes of a region to the media, without waiting for them.
    ///
    /// Nothing to do on a pool whose every file lives in memory (tmpfs, ramfs) and which
    /// has no replica: there the memory is the medium. A CPU cache flush moves bytes
    /// from the caches into the same memory that the kernel and every process already
    /// see through the caches, a crash of the daemon leaves them there either way, and
    /// power loss takes the whole pool either way. What the flush did cost there was
    /// the flush of every cache line and a page fault per page the daemon had not
    /// mapped (written through the pool file): a 512 MiB `dd conv=fsync` ran at
    /// 1386 MB/s with the flushes, 1971 MB/s without. A replica gets its copy of the
    /// bytes inside libpmemobj's flush, so a pool set with replicas is always flushed.
    pub fn flush(&self, region: Oid, off: u64, len: u64) {
        if !self.skips_data_flushes {
            self.pool.flush(region, off, len as usize);
        }
    }

    pub fn drain(&self) {
        self.pool.drain();
    }

    /// Flushes a range of a region and waits for it: [`Store::flush`] then
    /// [`Store::drain`].
    pub fn persist(&self, region: Oid, off: u64, len: u64) {
        self.flush(region, off, len);
        self.drain();
    }

    pub fn path(&self) -> &Path {
        self.pool.path()
    }
}
