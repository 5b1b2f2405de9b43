//! Metadata transactions: [`StoreTx`], typed record operations over one libpmemobj
//! transaction, and the bookkeeping (allocated bytes, format version, next inode
//! number) that follows its commit.

use std::sync::atomic::Ordering;

use parking_lot::MutexGuard;

use super::error::pmem_err;
use super::records::{
    DentryRecord, InodeRecord, Superblock, XattrRecord, COUNTED_INO_LIMIT, INODE_HEADER_SIZE,
    SUPERBLOCK_NEXT_INO, TYPE_DENTRY, TYPE_INODE, TYPE_REGION, TYPE_XATTR, ZERO_TAIL_VERSION,
};
use super::sizing::OBJECT_OVERHEAD;
use super::{Oid, Store, StoreError};
use crate::pmem::{PmemError, Tx, TxAlloc};

/// Inode numbers a create that writes the superblock's `next_ino` claims past its own:
/// the next this many creates leave the superblock alone.
pub const INO_CLAIM_AHEAD: u64 = 255;

impl Store {
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
}

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

    /// Frees everything an inode holds on the pool when the transaction commits: its
    /// region, its record (None: it has none yet) and its extended attributes' records.
    /// What the file system does to forget an inode, and what a repair does to an orphan.
    pub fn free_inode(
        &mut self,
        record: Option<Oid>,
        region: Oid,
        xattr_records: impl IntoIterator<Item = Oid>,
    ) -> Result<(), StoreError> {
        self.free(region)?;
        if let Some(record) = record {
            self.free(record)?;
        }
        for xattr in xattr_records {
            self.free(xattr)?;
        }
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
    /// even once its inode is gone. The record claims [`INO_CLAIM_AHEAD`] numbers past
    /// it as well, so that most creates need not write the superblock (a later mount
    /// starts past them, which only skips numbers). Creates run one at a time (the
    /// namespace lock), so the numbers claimed only go up.
    fn claim_ino(&mut self, ino: u64) -> Result<(), StoreError> {
        if ino >= COUNTED_INO_LIMIT || ino < self.store.next_ino() {
            return Ok(());
        }
        let root = self
            .store
            .pool
            .root()
            .expect("a formatted pool has a superblock");
        let next = ino
            .saturating_add(1 + INO_CLAIM_AHEAD)
            .min(COUNTED_INO_LIMIT);
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

    pub fn create_inode(&mut self, rec: &InodeRecord) -> Result<Oid, StoreError> {
        self.allow(rec)?;
        self.claim_ino(rec.ino)?;
        self.create_record(&rec.encode(), TYPE_INODE)
    }

    /// A new record of type `type_num` holding `bytes`.
    fn create_record(&mut self, bytes: &[u8], type_num: u64) -> Result<Oid, StoreError> {
        let oid = self.alloc(bytes.len() as u64, type_num, TxAlloc::Zeroed)?;
        self.tx.write(oid, 0, bytes).map_err(|e| self.fail(e))?;
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
        self.create_record(&rec.encode(), TYPE_DENTRY)
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
        self.create_record(&rec.encode(), TYPE_XATTR)
    }

    /// A new region of at least `size` bytes whose contents are left undefined and not
    /// flushed: the caller fills and persists the bytes it uses.
    pub fn create_region(&mut self, size: u64) -> Result<Oid, StoreError> {
        self.alloc(size, TYPE_REGION, TxAlloc::Unflushed)
    }

    pub fn commit(self) -> Result<(), StoreError> {
        let delta = self.allocated_delta;
        let store = self.store;
        let upgrade = self.upgrade;
        let next_ino = self.next_ino;
        let heap_touched = self.heap_touched;
        crate::fault::point("tx.before_commit");
        {
            // Committing frees, and may extend the redo log: the heap changes.
            let _shared = store.allocations.read();
            self.tx.commit().map_err(pmem_err(store.path()))?;
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
