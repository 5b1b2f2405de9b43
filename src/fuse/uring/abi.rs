//! The FUSE requests that come over the rings, decoded, handed to the request layer,
//! and their replies encoded: the ring's own decoder (fuser keeps its parser private).
//!
//! A ring entry holds a request in three parts (Documentation/filesystems/
//! fuse-io-uring.rst, include/uapi/linux/fuse.h): the `fuse_in_header`, the operation's
//! fixed header (`fuse_*_in`, which some operations do not have) in a 128-byte area of
//! its own, and everything else (names, written bytes) in the payload buffer, whose
//! length the kernel states. The reply is the `fuse_out_header` in the first area and
//! every reply argument, one after the other, in the payload.
//!
//! Everything here is safe code over byte slices: each length the kernel hands over is
//! checked, and a request that cannot be parsed is answered with an errno (EINVAL for a
//! malformed one, ENOSYS for an unknown operation), never a panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::fs::{Attr, Errno, FileKind};
use crate::fuse::ops::{
    CopyRange, DirPlusSink, DirSink, Lookup, Opened, Operations, RequestInfo, SetAttrArgs, TimeArg,
    WriteArgs, XattrReply,
};
use crate::fuse::TTL;

/// Size of `fuse_in_header`.
pub const IN_HEADER_LEN: usize = 40;
/// Size of `fuse_out_header`.
pub const OUT_HEADER_LEN: usize = 16;

mod opcode {
    pub const LOOKUP: u32 = 1;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const READLINK: u32 = 5;
    pub const SYMLINK: u32 = 6;
    pub const MKNOD: u32 = 8;
    pub const MKDIR: u32 = 9;
    pub const UNLINK: u32 = 10;
    pub const RMDIR: u32 = 11;
    pub const RENAME: u32 = 12;
    pub const LINK: u32 = 13;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const FSYNC: u32 = 20;
    pub const SETXATTR: u32 = 21;
    pub const GETXATTR: u32 = 22;
    pub const LISTXATTR: u32 = 23;
    pub const REMOVEXATTR: u32 = 24;
    pub const FLUSH: u32 = 25;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const FSYNCDIR: u32 = 30;
    pub const ACCESS: u32 = 34;
    pub const CREATE: u32 = 35;
    pub const DESTROY: u32 = 38;
    pub const IOCTL: u32 = 39;
    pub const FALLOCATE: u32 = 43;
    pub const READDIRPLUS: u32 = 44;
    pub const RENAME2: u32 = 45;
    pub const LSEEK: u32 = 46;
    pub const COPY_FILE_RANGE: u32 = 47;
}

/// `valid` bits of `fuse_setattr_in`.
mod fattr {
    pub const MODE: u32 = 1 << 0;
    pub const UID: u32 = 1 << 1;
    pub const GID: u32 = 1 << 2;
    pub const SIZE: u32 = 1 << 3;
    pub const ATIME: u32 = 1 << 4;
    pub const MTIME: u32 = 1 << 5;
    pub const FH: u32 = 1 << 6;
    pub const ATIME_NOW: u32 = 1 << 7;
    pub const MTIME_NOW: u32 = 1 << 8;
    pub const CTIME: u32 = 1 << 10;
    pub const KILL_SUIDGID: u32 = 1 << 11;
}

/// FUSE_GETATTR_FH: the getattr names an open file.
const GETATTR_FH: u32 = 1;
/// FUSE_FSYNC_FDATASYNC.
const FSYNC_FDATASYNC: u32 = 1;

/// The request header every request starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InHeader {
    pub len: u32,
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

impl InHeader {
    pub fn parse(bytes: &[u8]) -> Result<InHeader, Errno> {
        let mut r = Reader::new(bytes);
        Ok(InHeader {
            len: r.u32()?,
            opcode: r.u32()?,
            unique: r.u64()?,
            nodeid: r.u64()?,
            uid: r.u32()?,
            gid: r.u32()?,
            pid: r.u32()?,
        })
    }
}

/// Encodes the reply header: `payload_len` bytes of reply arguments follow, or an
/// error (`payload_len` is then 0).
pub fn encode_out_header(out: &mut [u8], unique: u64, result: Result<usize, Errno>) {
    let (error, len) = match result {
        Ok(n) => (0, OUT_HEADER_LEN + n),
        Err(e) => (-e.0, OUT_HEADER_LEN),
    };
    let mut w = Writer::new(out);
    // The area is 128 bytes, far more than the 16 written.
    let _ = w
        .u32(len as u32)
        .and_then(|w| w.i32(error))
        .and_then(|w| w.u64(unique));
}

/// Reads little-endian fields and NUL-terminated names off a request; running short is
/// EINVAL.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Errno> {
        if self.bytes.len() < n {
            return Err(Errno::EINVAL);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, Errno> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self) -> Result<i32, Errno> {
        self.u32().map(|v| v as i32)
    }

    fn u64(&mut self) -> Result<u64, Errno> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn skip(&mut self, n: usize) -> Result<(), Errno> {
        self.take(n).map(|_| ())
    }

    /// A name up to its terminating NUL, which is consumed.
    fn name(&mut self) -> Result<&'a [u8], Errno> {
        let end = self
            .bytes
            .iter()
            .position(|&b| b == 0)
            .ok_or(Errno::EINVAL)?;
        let name = self.take(end)?;
        self.skip(1)?;
        Ok(name)
    }
}

/// Writes little-endian fields into the reply payload; running out of room is EIO
/// (the payload is max_write bytes, more than any fixed reply needs).
struct Writer<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl<'a> Writer<'a> {
    fn new(out: &'a mut [u8]) -> Writer<'a> {
        Writer { out, len: 0 }
    }

    fn room(&self) -> usize {
        self.out.len() - self.len
    }

    fn bytes(&mut self, b: &[u8]) -> Result<&mut Self, Errno> {
        if self.room() < b.len() {
            return Err(Errno::EIO);
        }
        self.out[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
        Ok(self)
    }

    fn u32(&mut self, v: u32) -> Result<&mut Self, Errno> {
        self.bytes(&v.to_le_bytes())
    }

    fn i32(&mut self, v: i32) -> Result<&mut Self, Errno> {
        self.bytes(&v.to_le_bytes())
    }

    fn u64(&mut self, v: u64) -> Result<&mut Self, Errno> {
        self.bytes(&v.to_le_bytes())
    }

    fn zeros(&mut self, n: usize) -> Result<&mut Self, Errno> {
        if self.room() < n {
            return Err(Errno::EIO);
        }
        self.out[self.len..self.len + n].fill(0);
        self.len += n;
        Ok(self)
    }
}

const ATTR_LEN: usize = 88;
const ENTRY_OUT_LEN: usize = 40 + ATTR_LEN;
const DIRENT_LEN: usize = 24;

fn mode_bits(kind: FileKind) -> u32 {
    match kind {
        FileKind::Regular => libc::S_IFREG,
        FileKind::Directory => libc::S_IFDIR,
        FileKind::Symlink => libc::S_IFLNK,
        FileKind::Fifo => libc::S_IFIFO,
        FileKind::Socket => libc::S_IFSOCK,
        FileKind::CharDevice => libc::S_IFCHR,
        FileKind::BlockDevice => libc::S_IFBLK,
    }
}

/// `fuse_attr`.
fn put_attr(w: &mut Writer, a: &Attr) -> Result<(), Errno> {
    w.u64(a.ino)?.u64(a.size)?.u64(a.blocks)?;
    w.u64(a.atime.secs as u64)?
        .u64(a.mtime.secs as u64)?
        .u64(a.ctime.secs as u64)?;
    w.u32(a.atime.nanos)?
        .u32(a.mtime.nanos)?
        .u32(a.ctime.nanos)?;
    w.u32(mode_bits(a.kind) | u32::from(a.perm))?
        .u32(a.nlink)?
        .u32(a.uid)?
        .u32(a.gid)?
        .u32(a.rdev)?
        .u32(a.blksize)?
        .u32(0)?;
    Ok(())
}

/// `fuse_entry_out`; inode 0 (no attributes) is a negative entry.
fn put_entry(w: &mut Writer, attr: Option<&Attr>) -> Result<(), Errno> {
    let (secs, nanos) = (TTL.as_secs(), TTL.subsec_nanos());
    w.u64(attr.map_or(0, |a| a.ino))?.u64(0)?;
    w.u64(secs)?.u64(secs)?.u32(nanos)?.u32(nanos)?;
    match attr {
        Some(a) => put_attr(w, a),
        None => w.zeros(ATTR_LEN).map(|_| ()),
    }
}

fn put_open(w: &mut Writer, o: &Opened) -> Result<(), Errno> {
    w.u64(o.fh)?.u32(o.flags)?.i32(0)?;
    Ok(())
}

/// `fuse_attr_out`.
fn put_attr_out(w: &mut Writer, a: &Attr) -> Result<(), Errno> {
    w.u64(TTL.as_secs())?.u32(TTL.subsec_nanos())?.u32(0)?;
    put_attr(w, a)
}

/// Directory entry type, as `fuse_dirent.type` carries it (the DT_* numbers).
fn dirent_type(kind: FileKind) -> u32 {
    mode_bits(kind) >> 12
}

fn padded(len: usize) -> usize {
    (len + 7) & !7
}

/// `fuse_dirent`, or false when it does not fit in the room left.
fn put_dirent(w: &mut Writer, ino: u64, cookie: u64, kind: FileKind, name: &[u8]) -> bool {
    let len = DIRENT_LEN + name.len();
    if w.room() < padded(len) {
        return false;
    }
    let written = w
        .u64(ino)
        .and_then(|w| w.u64(cookie))
        .and_then(|w| w.u32(name.len() as u32))
        .and_then(|w| w.u32(dirent_type(kind)))
        .and_then(|w| w.bytes(name))
        .and_then(|w| w.zeros(padded(len) - len));
    written.is_ok()
}

struct DirBuf<'a>(Writer<'a>);

impl DirSink for DirBuf<'_> {
    fn add(&mut self, ino: u64, cookie: u64, kind: FileKind, name: &[u8]) -> bool {
        !put_dirent(&mut self.0, ino, cookie, kind, name)
    }
}

struct DirPlusBuf<'a>(Writer<'a>);

impl DirPlusSink for DirPlusBuf<'_> {
    fn add(&mut self, attr: &Attr, cookie: u64, name: &[u8]) -> bool {
        let need = ENTRY_OUT_LEN + padded(DIRENT_LEN + name.len());
        if self.0.room() < need {
            return true;
        }
        let w = &mut self.0;
        put_entry(w, Some(attr)).is_err() || !put_dirent(w, attr.ino, cookie, attr.kind, name)
    }
}

fn time_at(secs: u64, nanos: u32) -> SystemTime {
    let secs = secs as i64;
    let nanos = Duration::new(0, nanos.min(999_999_999));
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + nanos
    }
}

fn set_time(valid: u32, set: u32, now: u32, secs: u64, nanos: u32) -> Option<TimeArg> {
    match (valid & set != 0, valid & now != 0) {
        (_, true) => Some(TimeArg::Now),
        (true, false) => Some(TimeArg::At(time_at(secs, nanos))),
        (false, false) => None,
    }
}

/// `fuse_setattr_in`.
fn parse_setattr(op: &[u8]) -> Result<SetAttrArgs, Errno> {
    let mut r = Reader::new(op);
    let valid = r.u32()?;
    r.skip(4)?;
    let fh = r.u64()?;
    let size = r.u64()?;
    r.skip(8)?; // lock_owner
    let (atime, mtime, ctime) = (r.u64()?, r.u64()?, r.u64()?);
    let (atimensec, mtimensec, ctimensec) = (r.u32()?, r.u32()?, r.u32()?);
    let mode = r.u32()?;
    r.skip(4)?;
    let (uid, gid) = (r.u32()?, r.u32()?);
    let given = |bit: u32| valid & bit != 0;
    Ok(SetAttrArgs {
        mode: given(fattr::MODE).then_some(mode),
        uid: given(fattr::UID).then_some(uid),
        gid: given(fattr::GID).then_some(gid),
        size: given(fattr::SIZE).then_some(size),
        atime: set_time(valid, fattr::ATIME, fattr::ATIME_NOW, atime, atimensec),
        mtime: set_time(valid, fattr::MTIME, fattr::MTIME_NOW, mtime, mtimensec),
        ctime: given(fattr::CTIME).then(|| time_at(ctime, ctimensec)),
        fh: given(fattr::FH).then_some(fh),
        kill_suidgid: given(fattr::KILL_SUIDGID),
    })
}

/// A request's parts as the ring entry holds them.
pub struct Request<'a> {
    pub header: InHeader,
    /// The operation's fixed header area (128 bytes, of which the operation's header
    /// is the start).
    pub op: &'a [u8],
}

impl Request<'_> {
    fn info(&self) -> RequestInfo {
        RequestInfo {
            unique: self.header.unique,
            uid: self.header.uid,
            gid: self.header.gid,
            pid: self.header.pid,
        }
    }
}

/// A reply the request layer sends later, maybe from another thread: operations that
/// change a file's data wait for a read push of that file to end. The ring's thread
/// must not wait for it (the push may itself wait for a read queued behind it), so the
/// reply is committed whenever it comes.
pub enum Late {
    Attr(Result<Attr, Errno>),
    Opened(Result<Opened, Errno>),
}

impl Late {
    /// Encodes the reply's arguments into `payload`; returns their length.
    pub fn encode(self, payload: &mut [u8]) -> Result<usize, Errno> {
        match self {
            Late::Attr(result) => attr_reply(payload, &result?),
            Late::Opened(result) => open_reply(payload, &result?),
        }
    }
}

/// Where a reply that comes later goes.
pub type LateSender = Box<dyn FnOnce(Late) + Send>;

/// What serving a request gave: the length of the reply arguments written into the
/// payload, or a reply that comes through the [`LateSender`].
#[derive(Debug, PartialEq, Eq)]
pub enum Served {
    Now(usize),
    Later,
    /// A read, whose reply is the payload's first `replied` bytes: the transport calls
    /// [`Operations::read_answered`] once it has committed it.
    Read {
        ino: u64,
        offset: u64,
        size: u32,
        replied: usize,
    },
}

/// Serves one request: decodes it from `req` and the first `in_len` bytes of
/// `payload`, calls `ops`, and writes the reply arguments into `payload`, or hands the
/// reply to a sender made by `later`. Returns the errno to answer with on failure.
pub fn serve<O: Operations>(
    ops: &O,
    req: &Request,
    payload: &mut [u8],
    in_len: usize,
    later: &mut dyn FnMut() -> LateSender,
) -> Result<Served, Errno> {
    let info = req.info();
    let ino = req.header.nodeid;
    match req.header.opcode {
        opcode::SETATTR => {
            let change = parse_setattr(req.op)?;
            let send = later();
            ops.setattr(&info, ino, change, Box::new(move |r| send(Late::Attr(r))));
            Ok(Served::Later)
        }
        opcode::OPEN => {
            let flags = Reader::new(req.op).i32()?;
            let send = later();
            ops.open(&info, ino, flags, Box::new(move |r| send(Late::Opened(r))));
            Ok(Served::Later)
        }
        opcode::READ => {
            let mut op = Reader::new(req.op);
            let (fh, offset, size) = (op.u64()?, op.u64()?, op.u32()?);
            // Straight into the payload, which the kernel copies to the reader.
            let room = (size as usize).min(payload.len());
            let replied = ops.read_into(&info, ino, fh, offset, &mut payload[..room])?;
            Ok(Served::Read {
                ino,
                offset,
                size,
                replied,
            })
        }
        _ => serve_now(ops, req, payload, in_len).map(Served::Now),
    }
}

/// The size a READ request asks for, or None for any other request (or one too short
/// to say).
pub fn read_size(header: &InHeader, op: &[u8]) -> Option<u32> {
    if header.opcode != opcode::READ {
        return None;
    }
    let mut op = Reader::new(op);
    op.skip(16).ok()?; // fh, offset
    op.u32().ok()
}

/// Serves a request whose reply is ready when the call into `ops` returns: writes the
/// reply arguments into `payload` and returns their length.
fn serve_now<O: Operations>(
    ops: &O,
    req: &Request,
    payload: &mut [u8],
    in_len: usize,
) -> Result<usize, Errno> {
    if in_len > payload.len() {
        return Err(Errno::EINVAL);
    }
    let info = req.info();
    let ino = req.header.nodeid;
    let mut op = Reader::new(req.op);
    match req.header.opcode {
        opcode::LOOKUP => {
            let result = ops.lookup(&info, ino, Reader::new(&payload[..in_len]).name()?)?;
            let mut w = Writer::new(payload);
            match result {
                Lookup::Found(attr) => put_entry(&mut w, Some(&attr))?,
                Lookup::Missing => put_entry(&mut w, None)?,
            }
            Ok(w.len)
        }
        opcode::GETATTR => {
            let (flags, _, fh) = (op.u32()?, op.u32()?, op.u64()?);
            let fh = (flags & GETATTR_FH != 0).then_some(fh);
            let attr = ops.getattr(&info, ino, fh)?;
            attr_reply(payload, &attr)
        }
        opcode::READLINK => {
            let target = ops.readlink(&info, ino)?;
            let mut w = Writer::new(payload);
            w.bytes(&target)?;
            Ok(w.len)
        }
        opcode::SYMLINK => {
            let mut args = Reader::new(&payload[..in_len]);
            let (name, target) = (args.name()?, args.name()?);
            let attr = ops.symlink(&info, ino, name, target)?;
            entry_reply(payload, &attr)
        }
        opcode::MKNOD => {
            let (mode, rdev, umask) = (op.u32()?, op.u32()?, op.u32()?);
            let name = Reader::new(&payload[..in_len]).name()?;
            let attr = ops.mknod(&info, ino, name, mode, umask, rdev)?;
            entry_reply(payload, &attr)
        }
        opcode::MKDIR => {
            let (mode, umask) = (op.u32()?, op.u32()?);
            let name = Reader::new(&payload[..in_len]).name()?;
            let attr = ops.mkdir(&info, ino, name, mode, umask)?;
            entry_reply(payload, &attr)
        }
        opcode::UNLINK => {
            ops.unlink(&info, ino, Reader::new(&payload[..in_len]).name()?)?;
            Ok(0)
        }
        opcode::RMDIR => {
            ops.rmdir(&info, ino, Reader::new(&payload[..in_len]).name()?)?;
            Ok(0)
        }
        opcode::RENAME | opcode::RENAME2 => {
            let newdir = op.u64()?;
            let flags = match req.header.opcode {
                opcode::RENAME2 => op.u32()?,
                _ => 0,
            };
            let mut names = Reader::new(&payload[..in_len]);
            let (name, newname) = (names.name()?, names.name()?);
            ops.rename(&info, ino, name, newdir, newname, flags)?;
            Ok(0)
        }
        opcode::LINK => {
            let oldnodeid = op.u64()?;
            let name = Reader::new(&payload[..in_len]).name()?;
            let attr = ops.link(&info, oldnodeid, ino, name)?;
            entry_reply(payload, &attr)
        }
        opcode::OPENDIR => {
            let flags = op.i32()?;
            let opened = ops.opendir(&info, ino, flags)?;
            open_reply(payload, &opened)
        }
        opcode::WRITE => {
            let (fh, offset, size) = (op.u64()?, op.u64()?, op.u32()?);
            let write_flags = op.u32()?;
            op.skip(8)?; // lock_owner
            let open_flags = op.i32()?;
            let data = payload[..in_len]
                .get(..size as usize)
                .ok_or(Errno::EINVAL)?;
            let args = WriteArgs {
                fh,
                offset,
                write_flags,
                open_flags,
            };
            let written = ops.write(&info, ino, args, data)?;
            write_reply(payload, written)
        }
        opcode::STATFS => {
            let s = ops.statfs(&info, ino)?;
            let mut w = Writer::new(payload);
            w.u64(s.blocks)?.u64(s.bfree)?.u64(s.bavail)?;
            w.u64(s.files)?.u64(s.ffree)?;
            w.u32(s.bsize)?
                .u32(s.namelen)?
                .u32(s.frsize)?
                .zeros(4 + 24)?;
            Ok(w.len)
        }
        opcode::RELEASE => {
            ops.release(&info, ino, op.u64()?)?;
            Ok(0)
        }
        opcode::RELEASEDIR => {
            ops.releasedir(&info, ino, op.u64()?)?;
            Ok(0)
        }
        opcode::FLUSH => {
            ops.flush(&info, ino, op.u64()?)?;
            Ok(0)
        }
        opcode::FSYNC | opcode::FSYNCDIR => {
            let (fh, flags) = (op.u64()?, op.u32()?);
            let datasync = flags & FSYNC_FDATASYNC != 0;
            match req.header.opcode {
                opcode::FSYNC => ops.fsync(&info, ino, fh, datasync)?,
                _ => ops.fsyncdir(&info, ino, fh, datasync)?,
            }
            Ok(0)
        }
        opcode::SETXATTR => {
            // fuse_setxattr_in without FUSE_SETXATTR_EXT, which is not negotiated.
            let (size, flags) = (op.u32()?, op.i32()?);
            let mut args = Reader::new(&payload[..in_len]);
            let name = args.name()?;
            let value = args.take(size as usize)?;
            ops.setxattr(&info, ino, name, value, flags)?;
            Ok(0)
        }
        opcode::GETXATTR => {
            let size = op.u32()?;
            let name = Reader::new(&payload[..in_len]).name()?;
            let reply = ops.getxattr(&info, ino, name, size)?;
            xattr_reply(payload, reply)
        }
        opcode::LISTXATTR => {
            let reply = ops.listxattr(&info, ino, op.u32()?)?;
            xattr_reply(payload, reply)
        }
        opcode::REMOVEXATTR => {
            ops.removexattr(&info, ino, Reader::new(&payload[..in_len]).name()?)?;
            Ok(0)
        }
        opcode::ACCESS => {
            ops.access(&info, ino, op.u32()?)?;
            Ok(0)
        }
        opcode::CREATE => {
            let (flags, mode, umask) = (op.i32()?, op.u32()?, op.u32()?);
            let name = Reader::new(&payload[..in_len]).name()?;
            let (attr, opened) = ops.create(&info, ino, name, mode, umask, flags)?;
            let mut w = Writer::new(payload);
            put_entry(&mut w, Some(&attr))?;
            put_open(&mut w, &opened)?;
            Ok(w.len)
        }
        opcode::READDIR | opcode::READDIRPLUS => readdir(ops, req, &info, payload),
        opcode::FALLOCATE => {
            let (fh, offset, length, mode) = (op.u64()?, op.u64()?, op.u64()?, op.i32()?);
            ops.fallocate(&info, ino, fh, offset, length, mode)?;
            Ok(0)
        }
        opcode::LSEEK => {
            let (fh, offset, whence) = (op.u64()?, op.u64()? as i64, op.i32()?);
            let position = ops.lseek(&info, ino, fh, offset, whence)?;
            let mut w = Writer::new(payload);
            w.u64(position as u64)?;
            Ok(w.len)
        }
        opcode::COPY_FILE_RANGE => {
            let (fh_in, offset_in, ino_out) = (op.u64()?, op.u64()?, op.u64()?);
            let (fh_out, offset_out, len, flags) = (op.u64()?, op.u64()?, op.u64()?, op.u64()?);
            let range = CopyRange {
                ino_in: ino,
                fh_in,
                offset_in,
                ino_out,
                fh_out,
                offset_out,
                len,
                flags,
            };
            let copied = ops.copy_file_range(&info, range)?;
            write_reply(payload, copied)
        }
        opcode::IOCTL => {
            op.skip(12)?;
            Err(ops.ioctl(&info, ino, op.u32()?))
        }
        // Sent only for block-device mounts; the session's end makes everything durable.
        opcode::DESTROY => Ok(0),
        _ => Err(Errno::ENOSYS),
    }
}

fn entry_reply(payload: &mut [u8], attr: &Attr) -> Result<usize, Errno> {
    let mut w = Writer::new(payload);
    put_entry(&mut w, Some(attr))?;
    Ok(w.len)
}

fn attr_reply(payload: &mut [u8], attr: &Attr) -> Result<usize, Errno> {
    let mut w = Writer::new(payload);
    put_attr_out(&mut w, attr)?;
    Ok(w.len)
}

fn open_reply(payload: &mut [u8], opened: &Opened) -> Result<usize, Errno> {
    let mut w = Writer::new(payload);
    put_open(&mut w, opened)?;
    Ok(w.len)
}

/// `fuse_write_out`, also the reply of copy_file_range.
fn write_reply(payload: &mut [u8], size: u32) -> Result<usize, Errno> {
    let mut w = Writer::new(payload);
    w.u32(size)?.u32(0)?;
    Ok(w.len)
}

fn xattr_reply(payload: &mut [u8], reply: XattrReply) -> Result<usize, Errno> {
    let mut w = Writer::new(payload);
    match reply {
        XattrReply::Size(size) => w.u32(size)?.u32(0)?,
        XattrReply::Data(value) => w.bytes(&value)?,
    };
    Ok(w.len)
}

fn readdir<O: Operations>(
    ops: &O,
    req: &Request,
    info: &RequestInfo,
    payload: &mut [u8],
) -> Result<usize, Errno> {
    let mut op = Reader::new(req.op);
    let (fh, offset, size) = (op.u64()?, op.u64()?, op.u32()?);
    let room = (size as usize).min(payload.len());
    let ino = req.header.nodeid;
    if req.header.opcode == opcode::READDIRPLUS {
        let mut sink = DirPlusBuf(Writer::new(&mut payload[..room]));
        ops.readdirplus(info, ino, fh, offset, &mut sink)?;
        Ok(sink.0.len)
    } else {
        let mut sink = DirBuf(Writer::new(&mut payload[..room]));
        ops.readdir(info, ino, fh, offset, &mut sink)?;
        Ok(sink.0.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::FsOptions;
    use crate::fuse::ops::Deferred;
    use crate::store::records::Timestamp;

    struct Echo {
        opts: FsOptions,
        /// Directory handles released, in order.
        released_dirs: std::sync::Mutex<Vec<u64>>,
    }

    fn attr(ino: u64) -> Attr {
        let t = Timestamp { secs: 5, nanos: 6 };
        Attr {
            ino,
            kind: FileKind::Regular,
            perm: 0o644,
            nlink: 1,
            uid: 7,
            gid: 8,
            size: 9,
            blocks: 1,
            rdev: 0,
            blksize: 4096,
            atime: t,
            mtime: t,
            ctime: t,
        }
    }

    impl Operations for Echo {
        fn options(&self) -> &FsOptions {
            &self.opts
        }
        fn lookup(&self, _: &RequestInfo, parent: u64, name: &[u8]) -> Result<Lookup, Errno> {
            match name {
                b"missing" => Ok(Lookup::Missing),
                _ => Ok(Lookup::Found(attr(parent + name.len() as u64))),
            }
        }
        fn setattr(&self, _: &RequestInfo, ino: u64, c: SetAttrArgs, reply: Deferred<Attr>) {
            let mut a = attr(ino);
            a.size = c.size.unwrap_or(0);
            std::thread::spawn(move || reply(Ok(a)));
        }
        fn write(&self, _: &RequestInfo, _: u64, _: WriteArgs, data: &[u8]) -> Result<u32, Errno> {
            Ok(data.len() as u32)
        }
        fn opendir(&self, _: &RequestInfo, ino: u64, _: i32) -> Result<Opened, Errno> {
            Ok(Opened {
                fh: ino + 100,
                flags: 0,
            })
        }
        fn releasedir(&self, _: &RequestInfo, _: u64, fh: u64) -> Result<(), Errno> {
            self.released_dirs.lock().unwrap().push(fh);
            Ok(())
        }
        fn readdir(
            &self,
            _: &RequestInfo,
            _: u64,
            _: u64,
            offset: u64,
            sink: &mut dyn DirSink,
        ) -> Result<(), Errno> {
            for i in offset..1000 {
                if sink.add(i + 10, i + 1, FileKind::Regular, format!("f{i}").as_bytes()) {
                    break;
                }
            }
            Ok(())
        }
    }

    fn echo() -> Echo {
        Echo {
            opts: FsOptions::default(),
            released_dirs: Default::default(),
        }
    }

    fn header(opcode: u32) -> InHeader {
        InHeader {
            len: 0,
            opcode,
            unique: 2,
            nodeid: 1,
            uid: 0,
            gid: 0,
            pid: 1,
        }
    }

    fn serve_with(opcode: u32, op: &[u8], payload_in: &[u8]) -> (Result<usize, Errno>, Vec<u8>) {
        let mut payload = vec![0; 4096];
        payload[..payload_in.len()].copy_from_slice(payload_in);
        let mut op_area = [0u8; 128];
        op_area[..op.len()].copy_from_slice(op);
        let req = Request {
            header: header(opcode),
            op: &op_area,
        };
        let result = serve_now(&echo(), &req, &mut payload, payload_in.len());
        (result, payload)
    }

    #[test]
    fn a_lookup_replies_an_entry_and_a_missing_name_a_negative_one() {
        let (n, out) = serve_with(opcode::LOOKUP, &[], b"abc\0");
        assert_eq!(n, Ok(ENTRY_OUT_LEN));
        assert_eq!(u64::from_le_bytes(out[..8].try_into().unwrap()), 4);
        assert_eq!(u64::from_le_bytes(out[40..48].try_into().unwrap()), 4);
        let (n, out) = serve_with(opcode::LOOKUP, &[], b"missing\0");
        assert_eq!(n, Ok(ENTRY_OUT_LEN));
        assert_eq!(&out[..8], &[0; 8]);
        assert_eq!(
            u64::from_le_bytes(out[16..24].try_into().unwrap()),
            TTL.as_secs()
        );
    }

    #[test]
    fn a_lookup_of_dot_asks_for_the_node_itself() {
        // What the kernel sends to decode a file handle: "." of the handle's node.
        let mut h = header(opcode::LOOKUP);
        h.nodeid = 41;
        let mut payload = vec![0; 4096];
        payload[..2].copy_from_slice(b".\0");
        let req = Request { header: h, op: &[] };
        assert_eq!(serve_now(&echo(), &req, &mut payload, 2), Ok(ENTRY_OUT_LEN));
        // Echo answers parent + name length: node 41's "." is node 42.
        assert_eq!(u64::from_le_bytes(payload[..8].try_into().unwrap()), 42);
    }

    #[test]
    fn releasedir_hands_back_the_handle_opendir_gave() {
        let ops = echo();
        let mut h = header(opcode::OPENDIR);
        h.nodeid = 7;
        let mut payload = vec![0; 4096];
        let req = Request {
            header: h,
            op: &[0; 8],
        };
        assert_eq!(serve_now(&ops, &req, &mut payload, 0), Ok(16));
        let fh = u64::from_le_bytes(payload[..8].try_into().unwrap());
        assert_eq!(fh, 107);
        let mut release_in = [0u8; 24];
        release_in[..8].copy_from_slice(&fh.to_le_bytes());
        let mut h = header(opcode::RELEASEDIR);
        h.nodeid = 7;
        let req = Request {
            header: h,
            op: &release_in,
        };
        assert_eq!(serve_now(&ops, &req, &mut payload, 0), Ok(0));
        assert_eq!(*ops.released_dirs.lock().unwrap(), vec![107]);
    }

    #[test]
    fn malformed_requests_get_einval_and_unknown_ones_enosys() {
        // A name without its terminating NUL, and a write longer than its payload.
        assert_eq!(
            serve_with(opcode::LOOKUP, &[], b"abc").0,
            Err(Errno::EINVAL)
        );
        let mut write_in = vec![0u8; 40];
        write_in[16..20].copy_from_slice(&100u32.to_le_bytes());
        assert_eq!(
            serve_with(opcode::WRITE, &write_in, &[1; 10]).0,
            Err(Errno::EINVAL)
        );
        assert_eq!(serve_with(9999, &[], &[]).0, Err(Errno::ENOSYS));
        let mut payload = vec![0; 8];
        let req = Request {
            header: header(opcode::LOOKUP),
            op: &[],
        };
        assert_eq!(
            serve_now(&echo(), &req, &mut payload, 9),
            Err(Errno::EINVAL)
        );
        // A getattr whose header area is short.
        let req = Request {
            header: header(opcode::GETATTR),
            op: &[0; 4],
        };
        assert_eq!(
            serve_now(&echo(), &req, &mut payload, 0),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn a_write_reports_its_length_and_a_deferred_setattr_its_attributes() {
        let mut write_in = vec![0u8; 40];
        write_in[16..20].copy_from_slice(&10u32.to_le_bytes());
        let (n, out) = serve_with(opcode::WRITE, &write_in, &[1; 10]);
        assert_eq!(n, Ok(8));
        assert_eq!(u32::from_le_bytes(out[..4].try_into().unwrap()), 10);
        let mut setattr_in = [0u8; 128];
        setattr_in[..4].copy_from_slice(&fattr::SIZE.to_le_bytes());
        setattr_in[16..24].copy_from_slice(&77u64.to_le_bytes());
        let req = Request {
            header: header(opcode::SETATTR),
            op: &setattr_in,
        };
        let (send, receive) = std::sync::mpsc::channel();
        let mut later = || -> LateSender {
            let send = send.clone();
            Box::new(move |late| send.send(late).unwrap())
        };
        let mut payload = vec![0; 4096];
        let served = serve(&echo(), &req, &mut payload, 0, &mut later);
        assert_eq!(served, Ok(Served::Later));
        let late = receive.recv().unwrap();
        assert_eq!(late.encode(&mut payload), Ok(16 + ATTR_LEN));
        assert_eq!(u64::from_le_bytes(payload[24..32].try_into().unwrap()), 77);
    }

    #[test]
    fn readdir_fills_at_most_the_size_asked_with_padded_entries() {
        let mut read_in = vec![0u8; 40];
        read_in[16..20].copy_from_slice(&100u32.to_le_bytes());
        let (n, out) = serve_with(opcode::READDIR, &read_in, &[]);
        // "f0".."f9" take 24 + 2 bytes padded to 32: three fit in 100 bytes.
        assert_eq!(n, Ok(96));
        assert_eq!(u64::from_le_bytes(out[8..16].try_into().unwrap()), 1);
        assert_eq!(&out[24..26], b"f0");
        assert_eq!(u64::from_le_bytes(out[64..72].try_into().unwrap()), 12);
    }

    #[test]
    fn the_out_header_carries_length_error_and_unique() {
        let mut out = [0u8; 128];
        encode_out_header(&mut out, 42, Ok(8));
        assert_eq!(u32::from_le_bytes(out[..4].try_into().unwrap()), 24);
        assert_eq!(u64::from_le_bytes(out[8..16].try_into().unwrap()), 42);
        encode_out_header(&mut out, 42, Err(Errno::ENOENT));
        assert_eq!(
            i32::from_le_bytes(out[4..8].try_into().unwrap()),
            -libc::ENOENT
        );
        assert_eq!(u32::from_le_bytes(out[..4].try_into().unwrap()), 16);
    }
}
