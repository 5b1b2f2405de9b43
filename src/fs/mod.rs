//! File-system semantics over the store, without FUSE: the namespace, inodes, open
//! handles, and the errno of every failure. Unit-testable on a real pool.
//!
//! Locking: every namespace change (create, link, unlink, rename, ...) holds the
//! namespace mutex, then the inode locks it needs; data operations hold one inode lock
//! only. So namespace changes are atomic to each other and data I/O on different files
//! runs in parallel.

mod data;
mod dirty;
mod error;
mod gate;
mod inode;
mod load;
mod namespace;
mod ranges;
mod xattr;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::Mutex;

pub use data::{SetAttr, SetTime};
pub use error::{Errno, FsResult};
pub use gate::{Deferred, WriteGate};
use inode::Inode;
pub use inode::{Attr, FileKind, RAW_REGION_INO_BIT, ROOT_INO};
pub use namespace::{DirEntry, RenameMode};
pub use xattr::REGION_ID_XATTR;

use crate::pmem::Oid;
use crate::store::records::NAME_MAX;
use crate::store::{PoolConfig, Store, StoreError};

/// How the file system behaves, from the mount options.
#[derive(Clone, Debug)]
pub struct FsOptions {
    /// Refuse every change with EROFS (at mount; a remount changes
    /// [`WarabiFs::set_read_only`]).
    pub read_only: bool,
    /// Persist every write before it returns (`-o sync`).
    pub sync: bool,
    /// Make each write all-or-nothing across a crash, and durable when it returns
    /// (`-o atomic_writes`): one transaction per write.
    pub atomic_writes: bool,
    /// Bypass the kernel's page cache for file data (`-o direct_io`): each read and
    /// write goes to the pool as it is asked.
    pub direct_io: bool,
    /// Let the kernel cache writes and send them later (`-o writeback_cache`): faster
    /// small writes, but ENOSPC and EFBIG then surface at fsync or close, not at write.
    pub writeback_cache: bool,
    /// Owner shown for Warabi regions that have no inode record, and for a new root.
    pub uid: u32,
    pub gid: u32,
}

impl FsOptions {
    /// Whether every open bypasses the kernel's page cache (`-o direct_io`, and
    /// `-o atomic_writes`, whose writes must each reach warabifs whole). The kernel
    /// then keeps no file data to push into, and writeback_cache does not apply.
    pub fn every_open_direct(&self) -> bool {
        self.direct_io || self.atomic_writes
    }
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            read_only: false,
            sync: false,
            atomic_writes: false,
            direct_io: false,
            writeback_cache: false,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        }
    }
}

/// Who asks: the caller's credentials, for the owner of new files.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

/// Capacity figures for statfs.
#[derive(Clone, Copy, Debug)]
pub struct FsStats {
    pub total_bytes: u64,
    /// Bytes no object holds (df's "used" is the rest).
    pub free_bytes: u64,
    /// Bytes a new file can get (df's "available"): less than free, by what the
    /// allocator cannot give one region (partly used runs, scattered chunks) and the
    /// reserve kept for transactions.
    pub available_bytes: u64,
    pub files: u64,
    pub block_size: u32,
    pub name_max: u32,
}

/// A directory entry in memory: the inode it names and where its record is. One per
/// name, so it is kept to three words.
#[derive(Clone, Copy, Debug)]
struct Entry {
    ino: u64,
    /// Position in the directory listing (the dentry record's offset): stable across
    /// mounts and unique, so readdir offsets survive concurrent changes.
    cookie: u64,
    /// Whether a dentry record sits at offset `cookie`; a Warabi region listed under its
    /// RegionID has none (its cookie is the region's offset).
    has_record: bool,
}

impl Entry {
    /// The entry of a dentry record.
    fn recorded(ino: u64, dentry: Oid) -> Entry {
        Entry {
            ino,
            cookie: dentry.off,
            has_record: true,
        }
    }
}

/// A directory's children in listing order, and its parent for "..".
#[derive(Debug, Default)]
struct Dir {
    parent: u64,
    children: BTreeMap<u64, Name>,
}

/// An open file.
#[derive(Clone, Copy, Debug)]
struct Handle {
    ino: u64,
    /// Opened for writing (or truncating): a writer of the gate until released.
    writes: bool,
}

/// A name, stored once and shared by the name map's key and the directory's listing.
type Name = Arc<[u8]>;
type NameKey = (u64, Name);

/// The mounted file system.
pub struct WarabiFs {
    store: Store,
    /// Whether changes are refused, as mounted or as last remounted.
    read_only: AtomicBool,
    opts: FsOptions,
    inodes: DashMap<u64, Arc<Inode>>,
    names: DashMap<NameKey, Entry>,
    dirs: DashMap<u64, Dir>,
    namespace: Mutex<()>,
    next_ino: AtomicU64,
    handles: DashMap<u64, Handle>,
    next_fh: AtomicU64,
    gate: WriteGate,
    /// Files holding headroom or reserves that a full pool asks back (see [`data::Reserves`]).
    reserves: data::Reserves,
}

impl WarabiFs {
    /// Opens (or creates) the pool and loads its namespace.
    pub fn open_pool(config: &PoolConfig, opts: FsOptions) -> Result<WarabiFs, StoreError> {
        let store = Store::open(config, opts.read_only)?;
        load::load(store, opts)
    }

    pub fn options(&self) -> &FsOptions {
        &self.opts
    }

    /// Who may change which file, against pushes into the kernel's page cache.
    pub fn gate(&self) -> &WriteGate {
        &self.gate
    }

    fn inode(&self, ino: u64) -> FsResult<Arc<Inode>> {
        self.inodes
            .get(&ino)
            .map(|i| Arc::clone(&i))
            .ok_or(Errno::ENOENT)
    }

    /// The dentry record behind `entry`, if it has one.
    fn dentry_record(&self, entry: Entry) -> Option<Oid> {
        entry
            .has_record
            .then(|| self.store.pool().oid_at(entry.cookie))
    }

    fn writable(&self) -> FsResult<()> {
        if self.is_read_only() {
            return Err(Errno::EROFS);
        }
        Ok(())
    }

    /// Whether every change is refused with EROFS.
    pub fn is_read_only(&self) -> bool {
        self.read_only.load(Ordering::Acquire)
    }

    /// Switches between read-only and read-write (a remount). Going read-only persists
    /// every file first: the caller has made the kernel refuse writes before, so none
    /// arrive after. Going read-write needs a pool that has warabifs metadata (a pool
    /// only Warabi has used, mounted read-only, has none).
    pub fn set_read_only(&self, read_only: bool) -> Result<(), String> {
        if read_only {
            self.persist_all()
                .map_err(|e| format!("cannot persist every file: {e}"))?;
        } else if !self.store.is_formatted() {
            return Err("the pool has no warabifs metadata yet (only Warabi has used it); unmount it and mount it read-write once to add it".into());
        }
        self.read_only.store(read_only, Ordering::Release);
        tracing::info!(
            "file system now {}",
            if read_only { "read-only" } else { "read-write" }
        );
        Ok(())
    }

    fn allocate_ino(&self) -> u64 {
        self.next_ino.fetch_add(1, Ordering::Relaxed)
    }

    pub fn getattr(&self, ino: u64) -> FsResult<Attr> {
        Ok(self.inode(ino)?.state.read().attr())
    }

    pub fn statfs(&self) -> FsStats {
        FsStats {
            total_bytes: self.store.total_bytes(),
            free_bytes: self.store.free_bytes(),
            available_bytes: match self.opts.read_only {
                true => self.store.counted_available_bytes(),
                false => self.store.available_bytes(),
            },
            files: self.inodes.len() as u64,
            block_size: 4096,
            name_max: NAME_MAX as u32,
        }
    }

    /// Makes everything durable: called at unmount. Failures are logged.
    pub fn sync_all(&self) {
        let _ = self.persist_all();
    }

    /// Makes everything durable, trying every inode; returns the first failure (each
    /// is logged).
    pub fn persist_all(&self) -> FsResult<()> {
        let inodes: Vec<Arc<Inode>> = self.inodes.iter().map(|i| Arc::clone(&i)).collect();
        let mut first_error = Ok(());
        for inode in inodes {
            let mut state = inode.state.write();
            if let Err(e) = self.persist(&mut state) {
                tracing::error!("could not persist inode {}: {e}", inode.ino);
                first_error = first_error.and(Err(e));
            }
        }
        first_error
    }
}

/// Checks a new name: not empty, not "." or "..", no '/', at most NAME_MAX bytes.
fn check_name(name: &[u8]) -> FsResult<()> {
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

fn key(parent: u64, name: &[u8]) -> NameKey {
    (parent, name.into())
}
