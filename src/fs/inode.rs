//! In-memory inodes: attributes, the region holding the data, and what is not yet durable.

use parking_lot::RwLock;

use super::dirty::DirtyRanges;
use crate::pmem::Oid;
use crate::store::records::{InodeRecord, Timestamp};

pub const ROOT_INO: u64 = 1;
/// Inode numbers of Warabi regions that have no inode record yet: this bit plus the
/// region's offset, so they are stable across mounts and never meet counter numbers.
pub const RAW_REGION_INO_BIT: u64 = 1 << 62;

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
    pub xattrs: Vec<Xattr>,
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
            xattrs: Vec::new(),
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
            rdev: self.meta.rdev as u32,
            atime: self.meta.atime,
            mtime: self.meta.mtime,
            ctime: self.meta.ctime,
        }
    }

    /// Records a content change: mtime and ctime move to now.
    pub fn touch_modified(&mut self) {
        let now = Timestamp::now();
        self.meta.mtime = now;
        self.meta.ctime = now;
    }
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
