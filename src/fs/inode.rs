//! In-memory inodes: attributes, the region holding the data, and what is not yet durable.

use parking_lot::RwLock;

use super::dirty::DirtyRanges;
use crate::store::records::{InodeRecord, Timestamp};
use crate::store::{Oid, Store, StoreError, StoreTx};

pub use crate::store::records::{RAW_REGION_INO_BIT, ROOT_INO};

/// st_blksize of files: a page.
const FILE_BLKSIZE: u32 = 4096;
/// st_blksize of directories. glibc sizes its readdir buffer by it (from 32 KiB up to
/// 1 MiB), and the kernel then asks for as many entries per FUSE request (up to
/// max_pages): a directory of a million names lists in about 200 requests, not 6000.
pub const DIRECTORY_BLKSIZE: u32 = 1 << 20;

/// What kind of file an inode is (from the S_IFMT bits of its mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileKind {
    pub fn from_mode(mode: u32) -> Option<FileKind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::Regular,
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            libc::S_IFCHR => FileKind::CharDevice,
            libc::S_IFBLK => FileKind::BlockDevice,
            _ => return None,
        })
    }
}

/// A snapshot of an inode's attributes, as stat(2) reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: FileKind,
    /// Permission bits (mode & 07777).
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// 512-byte blocks the file's region occupies.
    pub blocks: u64,
    /// st_blksize: the I/O size the file system prefers.
    pub blksize: u32,
    pub rdev: u32,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
}

/// Mutable state of one inode, behind its lock.
#[derive(Debug)]
pub struct InodeState {
    /// The record as it should be on the pool (size and times may be ahead of it).
    pub meta: InodeRecord,
    /// Where the record lives; `None` for a Warabi region not adopted yet.
    pub record: Option<Oid>,
    /// Bytes the region can hold.
    pub capacity: u64,
    /// Data written but not yet persisted.
    pub dirty: DirtyRanges,
    /// Size or times changed in `meta` but not yet in the record.
    pub meta_dirty: bool,
    /// Open file handles; an unlinked inode lives until the last one closes.
    pub open_handles: u32,
    /// Extended attributes and the records holding them.
    pub xattrs: Xattrs,
    /// Set by fallocate: the capacity is a reservation the last close must keep.
    pub reserved: bool,
}

/// One extended attribute.
#[derive(Debug)]
pub struct Xattr {
    pub name: Box<[u8]>,
    pub value: Box<[u8]>,
    pub record: Oid,
}

/// An inode's extended attributes. Most inodes have none, so an empty list is one null
/// pointer instead of an empty Vec's three words, in each of 100,000s of inodes.
#[derive(Debug, Default)]
#[expect(clippy::box_collection, reason = "one word when empty, in every inode")]
pub struct Xattrs(Option<Box<Vec<Xattr>>>);

impl Xattrs {
    pub fn iter(&self) -> std::slice::Iter<'_, Xattr> {
        self.0.as_deref().map_or(&[][..], Vec::as_slice).iter()
    }

    /// Where the attribute called `name` is.
    fn position(&self, name: &[u8]) -> Option<usize> {
        self.iter().position(|x| *x.name == *name)
    }

    pub fn find(&self, name: &[u8]) -> Option<&Xattr> {
        self.iter().find(|x| *x.name == *name)
    }

    /// Adds `xattr`, replacing the attribute of the same name if there is one.
    pub fn put(&mut self, xattr: Xattr) {
        match self.position(&xattr.name) {
            Some(i) => self.0.as_mut().expect("not empty")[i] = xattr,
            None => self.push(xattr),
        }
    }

    /// Adds `xattr` as it is (the mount's scan: every record found must stay known so
    /// that freeing the inode frees it too).
    pub fn push(&mut self, xattr: Xattr) {
        self.0.get_or_insert_with(Box::default).push(xattr);
    }

    /// Removes the attribute called `name`, if there is one.
    pub fn remove(&mut self, name: &[u8]) {
        let (Some(i), Some(list)) = (self.position(name), self.0.as_mut()) else {
            return;
        };
        list.remove(i);
        if list.is_empty() {
            self.0 = None;
        }
    }
}

impl<'a> IntoIterator for &'a Xattrs {
    type Item = &'a Xattr;
    type IntoIter = std::slice::Iter<'a, Xattr>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl InodeState {
    /// A closed inode with nothing pending.
    pub fn new(meta: InodeRecord, record: Option<Oid>, capacity: u64) -> InodeState {
        InodeState {
            meta,
            record,
            capacity,
            dirty: DirtyRanges::default(),
            meta_dirty: false,
            open_handles: 0,
            xattrs: Xattrs::default(),
            reserved: false,
        }
    }

    pub fn kind(&self) -> FileKind {
        FileKind::from_mode(self.meta.mode).unwrap_or(FileKind::Regular)
    }

    pub fn region(&self) -> Oid {
        self.meta.region
    }

    pub fn attr(&self) -> Attr {
        Attr {
            ino: self.meta.ino,
            kind: self.kind(),
            perm: (self.meta.mode & 0o7777) as u16,
            nlink: self.meta.nlink,
            uid: self.meta.uid,
            gid: self.meta.gid,
            size: self.meta.size,
            blocks: self.capacity.div_ceil(512),
            blksize: match self.kind() {
                FileKind::Directory => DIRECTORY_BLKSIZE,
                _ => FILE_BLKSIZE,
            },
            rdev: self.meta.rdev as u32,
            atime: self.meta.atime,
            mtime: self.meta.mtime,
            ctime: self.meta.ctime,
        }
    }

    /// Persists written data (only the ranges that changed).
    pub fn persist_data(&mut self, store: &Store) {
        let ranges = self.dirty.take();
        if ranges.is_empty() {
            return;
        }
        for (start, end) in ranges {
            store.flush(self.region(), start, end - start);
        }
        store.drain();
    }

    /// Frees everything the inode holds on the pool (region, record, extended
    /// attributes) inside `tx`.
    pub fn free_records(&self, tx: &mut StoreTx<'_>) -> Result<(), StoreError> {
        let xattrs = self.xattrs.iter().map(|x| x.record);
        tx.free_inode(self.record, self.region(), xattrs)
    }

    /// Records a content change: mtime and ctime move to now.
    pub fn touch_modified(&mut self) {
        touch_modified(&mut self.meta);
    }
}

/// Moves a record's mtime and ctime to now, as a content change does.
pub(super) fn touch_modified(meta: &mut InodeRecord) {
    let now = Timestamp::now();
    meta.mtime = now;
    meta.ctime = now;
}

/// One inode: its number and its locked state.
#[derive(Debug)]
pub struct Inode {
    pub ino: u64,
    pub state: RwLock<InodeState>,
}

impl Inode {
    pub fn new(state: InodeState) -> Inode {
        Inode {
            ino: state.meta.ino,
            state: RwLock::new(state),
        }
    }
}
