//! File-system semantics over the store, without FUSE: the namespace, inodes, open
//! handles, and the errno of every failure. Unit-testable on a real pool.
//!
//! Locking: every namespace change (create, link, unlink, rename, ...) holds the
//! namespace guard (`namespace::NamespaceGuard`), then the inode locks it needs, taken
//! through the guard; data operations hold the lock of the inode they change (two, in
//! inode order, for copy_file_range between files) and no guard. So namespace changes
//! are atomic to each other and data I/O on different files runs in parallel. Every
//! metadata change is written through `change::Change`.
//!
//! The files: `namespace` (names and directories, and their lock), `tree` (lookup,
//! listing and the operations that change names), `data` (handles, read, write,
//! growth, truncate, fsync), `ranges` (fallocate, lseek, copy_file_range), `xattr`,
//! `load` (the namespace built from the pool at mount), `change` (the commit path).

mod change;
mod data;
mod dirty;
mod error;
mod gate;
mod inode;
mod load;
mod names;
mod namespace;
mod ranges;
mod regions;
mod tree;
mod unloaded;
mod xattr;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::RwLock;

pub use data::{SetAttr, SetTime};
pub use error::{Errno, FsError, FsResult};
pub use gate::{Deferred, WriteGate, Writer};
pub use inode::{Attr, FileKind, DIRECTORY_BLKSIZE, RAW_REGION_INO_BIT, ROOT_INO};
use inode::{Inode, InodeState};
use names::Entry;
use namespace::Namespace;
use regions::ListedRegion;
pub use tree::{DirEntry, RenameMode};
pub use xattr::REGION_ID_XATTR;

use crate::store::records::{InodeRecord, Timestamp, NAME_MAX};
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

/// The number of an open handle, as the kernel passes it back with each request on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fh(pub u64);

/// An open file or directory: the inode it opened, and what it may do.
#[derive(Debug)]
struct Handle {
    inode: Arc<Inode>,
    access: Access,
}

/// What a handle may do: read, or read and write as one of the file's writers at the
/// push gate, from its open until it is released (dropped).
#[derive(Debug)]
enum Access {
    Read,
    /// Held, never read: dropping it is the handle leaving the gate.
    Write {
        _writer: Writer,
    },
}

/// A name, stored once and shared by the name map's key and the directory's listing.
type Name = Arc<[u8]>;
type NameKey = (u64, Name);

/// The file system's concurrent maps. foldhash (seeded per process) instead of SipHash:
/// a mount of a million names hashes each a few times, and SipHash was a good part of
/// it.
type Map<K, V> = DashMap<K, V, foldhash::fast::RandomState>;

/// The mounted file system.
pub struct WarabiFs {
    store: Store,
    /// Whether changes are refused, as mounted or as last remounted.
    read_only: AtomicBool,
    opts: FsOptions,
    /// Inodes with state in memory: those something has needed the state of since the
    /// mount (opened, changed), or made. The others are in `unloaded` or `regions`.
    inodes: Map<u64, Arc<Inode>>,
    /// Inodes whose state is still only their record on the pool (unloaded.rs).
    unloaded: RwLock<unloaded::UnloadedInodes>,
    /// Names, directories, and the Warabi regions the root lists by RegionID.
    ns: Namespace,
    /// Times shown for Warabi regions, which have none of their own.
    mounted_at: Timestamp,
    next_ino: AtomicU64,
    handles: Map<Fh, Handle>,
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

    /// The inode `ino`, with its state in memory: an inode known only by its record, or
    /// a listed Warabi region, is loaded here the first time something needs it.
    fn inode(&self, ino: u64) -> FsResult<Arc<Inode>> {
        if let Some(inode) = self.inodes.get(&ino) {
            return Ok(Arc::clone(&inode));
        }
        if let Some(inode) = self.load_inode(ino)? {
            return Ok(inode);
        }
        self.ns
            .with_listed_region(ino, |region| {
                let mut made = false;
                let inode = self.inodes.entry(ino).or_insert_with(|| {
                    made = true;
                    Arc::new(Inode::new(self.region_state(ino, region)))
                });
                (Arc::clone(&inode), made)
            })
            .ok_or(Errno::ENOENT.into())
    }

    /// Loads inode `ino` from its record, unless it is loaded already or has no record.
    /// Under the unloaded set's write lock, so that an inode is loaded once and never
    /// missing from both the set and the map.
    fn load_inode(&self, ino: u64) -> FsResult<Option<Arc<Inode>>> {
        let mut unloaded = self.unloaded.write();
        if let Some(inode) = self.inodes.get(&ino) {
            return Ok(Some(Arc::clone(&inode)));
        }
        let Some(off) = unloaded.record_of(ino) else {
            return Ok(None);
        };
        let state = self.unloaded_state(off).ok_or(Errno::EIO)?;
        unloaded.take(ino);
        let inode = Arc::new(Inode::new(state));
        self.inodes.insert(ino, Arc::clone(&inode));
        Ok(Some(inode))
    }

    /// The state of an unloaded inode, from its record at offset `off`.
    fn unloaded_state(&self, off: u64) -> Option<InodeState> {
        let record = self.store.oid_at(off);
        let meta = self.store.inode_record(record)?;
        let capacity = self.store.capacity(meta.region);
        Some(InodeState::new(meta, Some(record), capacity))
    }

    /// Whether inode `ino` exists (loaded, unloaded or a listed Warabi region).
    fn exists(&self, ino: u64) -> bool {
        self.inodes.contains_key(&ino)
            || self.unloaded.read().record_of(ino).is_some()
            || self.ns.listed_region(ino).is_some()
    }

    /// The state of a Warabi region without a record, as its offset and the mount
    /// options give it: sized by its usable size, as Warabi records no size.
    fn region_state(&self, ino: u64, listed: ListedRegion) -> InodeState {
        let region = listed.oid;
        let capacity = listed.size.unwrap_or_else(|| self.store.capacity(region));
        let meta = InodeRecord {
            size: capacity,
            region,
            ..InodeRecord::new(
                ino,
                libc::S_IFREG | 0o644,
                self.opts.uid,
                self.opts.gid,
                self.mounted_at,
            )
        };
        InodeState::new(meta, None, capacity)
    }

    /// The entry `name` of directory `parent`: a named one, or a listed Warabi region.
    fn entry(&self, parent: u64, name: &[u8]) -> Option<Entry> {
        self.ns.entry(&self.store, parent, name)
    }

    fn writable(&self) -> FsResult<()> {
        if self.is_read_only() {
            return Err(Errno::EROFS.into());
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
        if let Some(inode) = self.inodes.get(&ino).map(|i| Arc::clone(&i)) {
            return Ok(inode.state.read().attr());
        }
        // Nothing has needed the inode's state yet: its attributes from its record (read
        // under the lock that keeps it from being loaded and freed meanwhile), or from a
        // listed region, without loading it.
        {
            let unloaded = self.unloaded.read();
            if let Some(off) = unloaded.record_of(ino) {
                let state = self.unloaded_state(off).ok_or(Errno::EIO)?;
                return Ok(state.attr());
            }
        }
        let region = self.ns.listed_region(ino).ok_or(Errno::ENOENT)?;
        Ok(self.region_state(ino, region).attr())
    }

    pub fn statfs(&self) -> FsStats {
        FsStats {
            total_bytes: self.store.total_bytes(),
            free_bytes: self.store.free_bytes(),
            available_bytes: match self.is_read_only() {
                true => self.store.counted_available_bytes(),
                false => self.store.available_bytes(),
            },
            files: self.file_count() as u64,
            block_size: 4096,
            name_max: NAME_MAX as u32,
        }
    }

    /// Inodes, counting each listed Warabi region once whether it has an inode or not.
    fn file_count(&self) -> usize {
        self.inodes.len() + self.unloaded.read().len() + self.ns.listed_without_inode()
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
        return Err(Errno::ENAMETOOLONG.into());
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(Errno::EINVAL.into());
    }
    Ok(())
}

fn key(parent: u64, name: &[u8]) -> NameKey {
    (parent, name.into())
}
