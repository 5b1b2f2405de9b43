//! The one path by which metadata changes on the pool: stage the new records of the
//! inodes the caller has locked, write them and whatever else the change makes or frees
//! in one transaction, and adopt the new records in memory only once it has committed.
//! A change that fails (or is dropped) before its commit leaves the pool as it was
//! (libpmemobj aborts the transaction) and the inodes in memory untouched.

use super::inode::InodeState;
use super::names::Entry;
use crate::pmem::Oid;
use crate::store::records::{DentryRecord, InodeRecord};
use crate::store::{Store, StoreError, StoreTx};

/// A metadata change under way: one transaction, and the records staged for the locked
/// inodes it changes. `'a` is how long the caller holds those inodes' locks.
pub(super) struct Change<'s, 'a> {
    store: &'s Store,
    tx: StoreTx<'s>,
    staged: Vec<(&'a mut InodeState, InodeRecord)>,
}

impl<'s, 'a> Change<'s, 'a> {
    pub(super) fn begin(store: &'s Store) -> Result<Change<'s, 'a>, StoreError> {
        Ok(Change {
            store,
            tx: store.begin()?,
            staged: Vec::new(),
        })
    }

    /// The transaction, for the records the change makes or frees besides inode
    /// records (regions, dentries, extended attributes).
    pub(super) fn tx(&mut self) -> &mut StoreTx<'s> {
        &mut self.tx
    }

    /// Writes a directory entry record naming `ino` as `name` in `parent`.
    pub(super) fn create_dentry(
        &mut self,
        parent: u64,
        ino: u64,
        name: &[u8],
    ) -> Result<Oid, StoreError> {
        let name = name.to_vec();
        self.tx.create_dentry(&DentryRecord { parent, ino, name })
    }

    /// Frees the directory entry record behind `entry`, if it has one (a listed Warabi
    /// region has none).
    pub(super) fn free_dentry(&mut self, entry: Entry) -> Result<(), StoreError> {
        match entry.has_record {
            true => self.tx.free(self.store.pool().oid_at(entry.cookie)),
            false => Ok(()),
        }
    }

    /// Writes `meta` as the inode's record inside the transaction, and adopts it in
    /// memory at the commit. The file's written data is persisted first, so that a
    /// durable size never covers bytes that are not. An inode without a record (a
    /// Warabi region not adopted) cannot change ([`StoreError::NoRecord`], EROFS).
    pub(super) fn stage(
        &mut self,
        state: &'a mut InodeState,
        meta: InodeRecord,
    ) -> Result<(), StoreError> {
        let record = state.record.ok_or(StoreError::NoRecord(meta.ino))?;
        state.persist_data(self.store);
        self.tx.update_inode(record, &meta)?;
        self.staged.push((state, meta));
        Ok(())
    }

    /// Commits, then adopts every staged record: each inode's metadata is then what the
    /// pool holds, all of it durable.
    pub(super) fn commit(self) -> Result<(), StoreError> {
        let Change { tx, staged, .. } = self;
        tx.commit()?;
        for (state, meta) in staged {
            state.meta = meta;
            state.meta_dirty = false;
        }
        Ok(())
    }
}
