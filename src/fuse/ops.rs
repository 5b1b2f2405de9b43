//! The request layer's interface: one method per FUSE operation, in terms that belong to
//! no transport. Both transports reach a file system only through it: fuser's
//! `Filesystem` implementation ([`super::adapter`]) for requests read from /dev/fuse, and
//! the ring decoder ([`super::uring`]) for requests that come over FUSE-over-io_uring.
//! Each operation's logic (argument checks, the call into the file system, the shape of
//! the reply) is written once, in an implementation of [`Operations`]; a transport only
//! decodes arguments and encodes results.
//!
//! Every method has a default that answers ENOSYS, as the kernel expects of an operation
//! a file system does not implement (it then stops asking, or falls back).

use std::time::SystemTime;

use crate::fs::{Attr, Errno, FileKind, FsOptions};

/// Who sent a request.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo {
    pub unique: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// A reply that may be sent later, from another thread: operations that change a
/// file's data wait for a read push of that file to end (see [`crate::fs::WriteGate`]).
pub type Deferred<T> = Box<dyn FnOnce(Result<T, Errno>) + Send>;

/// What an open (or opendir) hands back: the handle and the `FOPEN_*` flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    pub fh: u64,
    pub flags: u32,
}

/// A time a setattr sets.
#[derive(Clone, Copy, Debug)]
pub enum TimeArg {
    Now,
    At(SystemTime),
}

/// The changes of one setattr request, as the kernel sends them.
#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttrArgs {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeArg>,
    pub mtime: Option<TimeArg>,
    pub ctime: Option<SystemTime>,
    pub fh: Option<u64>,
    /// FATTR_KILL_SUIDGID: the kernel asks for set-user-ID and set-group-ID to go.
    pub kill_suidgid: bool,
}

/// The FUSE_WRITE_KILL_SUIDGID bit of a write's flags.
pub const WRITE_KILL_SUIDGID: u32 = 1 << 2;

/// A write request's arguments besides the bytes.
#[derive(Clone, Copy, Debug)]
pub struct WriteArgs {
    pub fh: u64,
    pub offset: u64,
    /// `FUSE_WRITE_*` bits.
    pub write_flags: u32,
    /// The open flags of the file (O_SYNC, O_DSYNC...).
    pub open_flags: i32,
}

/// A copy_file_range request.
#[derive(Clone, Copy, Debug)]
pub struct CopyRange {
    pub ino_in: u64,
    pub fh_in: u64,
    pub offset_in: u64,
    pub ino_out: u64,
    pub fh_out: u64,
    pub offset_out: u64,
    pub len: u64,
    pub flags: u64,
}

/// statfs figures, as struct statvfs carries them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statfs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// The answer to getxattr or listxattr: the size alone when the caller asked for it
/// (a buffer size of 0), else the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XattrReply {
    Size(u32),
    Data(Vec<u8>),
}

impl XattrReply {
    /// The reply for a caller whose buffer holds `size` bytes: the size when it asked
    /// for the size, ERANGE when the value does not fit.
    pub fn fitting(size: u32, value: Vec<u8>) -> Result<XattrReply, Errno> {
        match size {
            0 => Ok(XattrReply::Size(value.len() as u32)),
            _ if value.len() > size as usize => Err(Errno::ERANGE),
            _ => Ok(XattrReply::Data(value)),
        }
    }
}

/// Where readdir puts its entries; `add` returns true once the reply buffer is full
/// (the entry was then not added).
pub trait DirSink {
    fn add(&mut self, ino: u64, cookie: u64, kind: FileKind, name: &[u8]) -> bool;
}

/// Where readdirplus puts its entries, each with the attributes of the inode it names.
pub trait DirPlusSink {
    fn add(&mut self, attr: &Attr, cookie: u64, name: &[u8]) -> bool;
}

/// A lookup's answer: an inode, or a name known not to exist, which the kernel may
/// cache as a negative entry for as long as it caches positive ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(Attr),
    Missing,
}

/// One file system as the request layer serves it. Methods take the request's
/// arguments decoded, and return (or hand to a [`Deferred`]) the reply's contents.
#[allow(unused_variables)]
pub trait Operations: Send + Sync + 'static {
    /// The mount's options, from which INIT settings and open flags follow.
    fn options(&self) -> &FsOptions;

    /// INIT was answered; `granted` are the capabilities both sides agreed on.
    fn initialized(&self, granted: u64) {}

    /// The session ends: make everything durable.
    fn destroy(&self) {}

    fn lookup(&self, req: &RequestInfo, parent: u64, name: &[u8]) -> Result<Lookup, Errno> {
        Err(Errno::ENOSYS)
    }
    fn getattr(&self, req: &RequestInfo, ino: u64, fh: Option<u64>) -> Result<Attr, Errno> {
        Err(Errno::ENOSYS)
    }
    fn setattr(&self, req: &RequestInfo, ino: u64, change: SetAttrArgs, reply: Deferred<Attr>) {
        reply(Err(Errno::ENOSYS))
    }
    fn readlink(&self, req: &RequestInfo, ino: u64) -> Result<Vec<u8>, Errno> {
        Err(Errno::ENOSYS)
    }
    #[allow(clippy::too_many_arguments)]
    fn mknod(
        &self,
        req: &RequestInfo,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> Result<Attr, Errno> {
        Err(Errno::ENOSYS)
    }
    fn mkdir(
        &self,
        req: &RequestInfo,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
    ) -> Result<Attr, Errno> {
        Err(Errno::ENOSYS)
    }
    fn unlink(&self, req: &RequestInfo, parent: u64, name: &[u8]) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }
    fn rmdir(&self, req: &RequestInfo, parent: u64, name: &[u8]) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }
    fn symlink(
        &self,
        req: &RequestInfo,
        parent: u64,
        name: &[u8],
        target: &[u8],
    ) -> Result<Attr, Errno> {
        Err(Errno::ENOSYS)
    }
    #[allow(clippy::too_many_arguments)]
    fn rename(
        &self,
        req: &RequestInfo,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        flags: u32,
    ) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }
    fn link(
        &self,
        req: &RequestInfo,
        ino: u64,
        newparent: u64,
        newname: &[u8],
    ) -> Result<Attr, Errno> {
        Err(Errno::ENOSYS)
    }
    fn open(&self, req: &RequestInfo, ino: u64, flags: i32, reply: Deferred<Opened>) {
        reply(Err(Errno::ENOSYS))
    }
    /// Reads up to `size` bytes at `offset`, handing them to `reply` (at most once, and
    /// only on success).
    fn read(
        &self,
        req: &RequestInfo,
        ino: u64,
        fh: u64,
        offset: u64,
        size: u32,
        reply: &mut dyn FnMut(&[u8]),
    ) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }
    /// Reads up to `buf.len()` bytes at `offset` into `buf`; returns how many. For a
    /// transport that has a buffer to fill (the ring's payload), which calls
    /// [`Operations::read_answered`] once the reply is with the kernel. By default a
    /// copy of what [`Operations::read`] replies.
    fn read_into(
        &self,
        req: &RequestInfo,
        ino: u64,
        fh: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, Errno> {
        let mut replied = 0;
        self.read(req, ino, fh, offset, buf.len() as u32, &mut |bytes| {
            let n = bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            replied = n;
        })?;
        Ok(replied)
    }
    /// The reply of a [`Operations::read_into`] of `size` bytes at `offset`, `replied`
    /// bytes long, has been sent.
    fn read_answered(&self, ino: u64, offset: u64, size: u32, replied: usize) {}
    fn write(
        &self,
        req: &RequestInfo,
        ino: u64,
        args: WriteArgs,
        data: &[u8],
    ) -> Result<u32, Errno> {
        Err(Errno::ENOSYS)
    }
    fn flush(&self, req: &RequestInfo, ino: u64, fh: u64) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }
    fn release(&self, req: &RequestInfo, ino: u64, fh: u64) -> Result<(), Errno> {
        Ok(())
    }
    fn fsync(&self, req: &RequestInfo, ino: u64, fh: u64, datasync: bool) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }
    fn opendir(&self, req: &RequestInfo, ino: u64, flags: i32) -> Result<Opened, Errno> {
        Ok(Opened { fh: 0, flags: 0 })
    }
    fn readdir(
        &self,
        req: &RequestInfo,
        ino: u64,
        fh: u64,
        offset: u64,
        sink: &mut dyn DirSink,
    ) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }
    fn readdirplus(
        &self,
        req: &RequestInfo,
        ino: u64,
        fh: u64,
        offset: u64,
        sink: &mut dyn DirPlusSink,
    ) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }
    fn releasedir(&self, req: &RequestInfo, ino: u64, fh: u64) -> Result<(), Errno> {
        Ok(())
    }
    fn fsyncdir(&self, req: &RequestInfo, ino: u64, fh: u64, datasync: bool) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }
    fn statfs(&self, req: &RequestInfo, ino: u64) -> Result<Statfs, Errno> {
        Err(Errno::ENOSYS)
    }
    fn setxattr(
        &self,
        req: &RequestInfo,
        ino: u64,
        name: &[u8],
        value: &[u8],
        flags: i32,
    ) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }
    fn getxattr(
        &self,
        req: &RequestInfo,
        ino: u64,
        name: &[u8],
        size: u32,
    ) -> Result<XattrReply, Errno> {
        Err(Errno::ENOSYS)
    }
    fn listxattr(&self, req: &RequestInfo, ino: u64, size: u32) -> Result<XattrReply, Errno> {
        Err(Errno::ENOSYS)
    }
    fn removexattr(&self, req: &RequestInfo, ino: u64, name: &[u8]) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }
    fn access(&self, req: &RequestInfo, ino: u64, mask: u32) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }
    #[allow(clippy::too_many_arguments)]
    fn create(
        &self,
        req: &RequestInfo,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> Result<(Attr, Opened), Errno> {
        Err(Errno::ENOSYS)
    }
    #[allow(clippy::too_many_arguments)]
    fn fallocate(
        &self,
        req: &RequestInfo,
        ino: u64,
        fh: u64,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }
    fn lseek(
        &self,
        req: &RequestInfo,
        ino: u64,
        fh: u64,
        offset: i64,
        whence: i32,
    ) -> Result<i64, Errno> {
        Err(Errno::ENOSYS)
    }
    /// ioctls: none is supported unless a file system says otherwise.
    fn ioctl(&self, req: &RequestInfo, ino: u64, cmd: u32) -> Errno {
        Errno::ENOSYS
    }
    fn copy_file_range(&self, req: &RequestInfo, range: CopyRange) -> Result<u32, Errno> {
        Err(Errno::ENOSYS)
    }
}
