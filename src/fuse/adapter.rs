//! fuser's `Filesystem` over any [`Operations`]: the /dev/fuse transport. fuser decodes
//! each request; this module only turns its arguments into the request layer's and the
//! results into fuser's replies.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno as FuseErrno, FileAttr, FileHandle, FileType,
    Filesystem, FopenFlags, Generation, INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};

use super::ops::{
    CopyRange, DirPlusSink, DirSink, Lookup, Operations, RequestInfo, SetAttrArgs, Statfs, TimeArg,
    WriteArgs, XattrReply,
};
use super::{negotiate, TTL};
use crate::fs::{Attr, Errno, FileKind};

/// What the session's INIT settled and which transport serves the mount, shared by the
/// session's adapter and whoever mounted (who reads `granted` to know whether to start
/// the rings, and says when they serve).
#[derive(Debug, Default)]
pub struct Transport {
    pub granted: OnceLock<InitFlags>,
    pub rings_serve: AtomicBool,
}

/// While the rings serve a mount, a session thread that has read FORGETs waits this long
/// before it reads /dev/fuse again (see `FuserAdapter::let_forgets_gather`).
const FORGET_GATHERING: Duration = Duration::from_millis(5);
/// FORGETs of one batch reach the adapter closer together than this; a FORGET later
/// than this after the thread's last one came from a new read.
const FORGET_IN_BATCH: Duration = Duration::from_micros(20);

pub struct FuserAdapter<O: Operations> {
    ops: Arc<O>,
    /// Whether to ask the kernel for FUSE-over-io_uring at INIT.
    want_uring: bool,
    transport: Arc<Transport>,
}

impl<O: Operations> FuserAdapter<O> {
    pub fn new(ops: Arc<O>, want_uring: bool, transport: Arc<Transport>) -> Self {
        FuserAdapter {
            ops,
            want_uring,
            transport,
        }
    }

    /// warabifs keeps no lookup counts, so a FORGET needs no work; but the kernel sends
    /// FORGETs over /dev/fuse even while the rings serve every other request, and queuing
    /// each one wakes a session thread blocked on /dev/fuse, most often on the other CPU:
    /// a third of `rm -rf`'s time over the rings went to those wakeups. So, over the
    /// rings, a thread that was woken for a FORGET sleeps a moment before it reads again;
    /// while no thread waits, the kernel only queues them, and the next read takes them
    /// in a batch. (fuser hands a batch over one FORGET at a time, back to back: only the
    /// first of them, which came after the thread had waited, sleeps.) INTERRUPTs, the
    /// only other requests that come this way then, wait at most that long.
    fn let_forgets_gather(&self) {
        thread_local! {
            static LAST_FORGET: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
        }
        if !self.transport.rings_serve.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        let waited = LAST_FORGET
            .get()
            .is_none_or(|last| now.duration_since(last) > FORGET_IN_BATCH);
        if waited {
            std::thread::sleep(FORGET_GATHERING);
        }
        LAST_FORGET.set(Some(Instant::now()));
    }
}

fn errno(e: Errno) -> FuseErrno {
    FuseErrno::from_i32(e.0)
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::Regular => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime.into(),
        mtime: a.mtime.into(),
        ctime: a.ctime.into(),
        crtime: a.ctime.into(),
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: a.blksize,
        flags: 0,
    }
}

/// The attributes of a negative entry: inode 0 tells the kernel the name does not
/// exist, for as long as the entry timeout.
fn missing_attr() -> FileAttr {
    let epoch = SystemTime::UNIX_EPOCH;
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: epoch,
        mtime: epoch,
        ctime: epoch,
        crtime: epoch,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn info(req: &Request) -> RequestInfo {
    RequestInfo {
        unique: req.unique().0,
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

fn time_arg(t: TimeOrNow) -> TimeArg {
    match t {
        TimeOrNow::Now => TimeArg::Now,
        TimeOrNow::SpecificTime(t) => TimeArg::At(t),
    }
}

fn reply_entry(reply: ReplyEntry, result: Result<Attr, Errno>) {
    match result {
        Ok(attr) => reply.entry(&TTL, &file_attr(&attr), Generation(0)),
        Err(e) => reply.error(errno(e)),
    }
}

fn reply_attr(reply: ReplyAttr, result: Result<Attr, Errno>) {
    match result {
        Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
        Err(e) => reply.error(errno(e)),
    }
}

fn reply_empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

fn reply_write(reply: ReplyWrite, result: Result<u32, Errno>) {
    match result {
        Ok(n) => reply.written(n),
        Err(e) => reply.error(errno(e)),
    }
}

fn reply_xattr(reply: ReplyXattr, result: Result<XattrReply, Errno>) {
    match result {
        Ok(XattrReply::Size(size)) => reply.size(size),
        Ok(XattrReply::Data(value)) => reply.data(&value),
        Err(e) => reply.error(errno(e)),
    }
}

fn reply_open(reply: ReplyOpen, result: Result<super::ops::Opened, Errno>) {
    match result {
        Ok(o) => reply.opened(FileHandle(o.fh), FopenFlags::from_bits_retain(o.flags)),
        Err(e) => reply.error(errno(e)),
    }
}

struct DirReply(ReplyDirectory);

impl DirSink for DirReply {
    fn add(&mut self, ino: u64, cookie: u64, kind: FileKind, name: &[u8]) -> bool {
        self.0.add(
            INodeNo(ino),
            cookie,
            file_type(kind),
            OsStr::from_bytes(name),
        )
    }
}

struct DirPlusReply(ReplyDirectoryPlus);

impl DirPlusSink for DirPlusReply {
    fn add(&mut self, attr: &Attr, cookie: u64, name: &[u8]) -> bool {
        self.0.add(
            INodeNo(attr.ino),
            cookie,
            OsStr::from_bytes(name),
            &TTL,
            &file_attr(attr),
            Generation(0),
        )
    }
}

impl<O: Operations> Filesystem for FuserAdapter<O> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let granted = negotiate(config, self.ops.options(), self.want_uring);
        self.ops.initialized(granted.bits());
        let _ = self.transport.granted.set(granted);
        Ok(())
    }

    fn forget(&self, _req: &Request, _ino: INodeNo, _nlookup: u64) {
        self.let_forgets_gather();
    }

    fn destroy(&mut self) {
        self.ops.destroy();
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.ops.lookup(&info(req), parent.0, name.as_bytes()) {
            Ok(Lookup::Found(attr)) => reply.entry(&TTL, &file_attr(&attr), Generation(0)),
            Ok(Lookup::Missing) => reply.entry(&TTL, &missing_attr(), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        reply_attr(reply, self.ops.getattr(&info(req), ino.0, fh.map(|f| f.0)));
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = SetAttrArgs {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time_arg),
            mtime: mtime.map(time_arg),
            ctime,
            fh: fh.map(|f| f.0),
            kill_suidgid: false,
        };
        self.ops.setattr(
            &info(req),
            ino.0,
            change,
            Box::new(move |result| reply_attr(reply, result)),
        );
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.ops.readlink(&info(req), ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let result = self
            .ops
            .mknod(&info(req), parent.0, name.as_bytes(), mode, umask, rdev);
        reply_entry(reply, result);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let result = self
            .ops
            .mkdir(&info(req), parent.0, name.as_bytes(), mode, umask);
        reply_entry(reply, result);
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(
            reply,
            self.ops.unlink(&info(req), parent.0, name.as_bytes()),
        );
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.ops.rmdir(&info(req), parent.0, name.as_bytes()));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let result = self.ops.symlink(
            &info(req),
            parent.0,
            link_name.as_bytes(),
            target.as_os_str().as_bytes(),
        );
        reply_entry(reply, result);
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let result = self.ops.rename(
            &info(req),
            parent.0,
            name.as_bytes(),
            newparent.0,
            newname.as_bytes(),
            flags.bits(),
        );
        reply_empty(reply, result);
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let result = self
            .ops
            .link(&info(req), ino.0, newparent.0, newname.as_bytes());
        reply_entry(reply, result);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.ops.open(
            &info(req),
            ino.0,
            flags.0,
            Box::new(move |result| reply_open(reply, result)),
        );
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut reply = Some(reply);
        let result = self
            .ops
            .read(&info(req), ino.0, fh.0, offset, size, &mut |bytes| {
                if let Some(reply) = reply.take() {
                    reply.data(bytes);
                }
            });
        if let (Err(e), Some(reply)) = (result, reply) {
            reply.error(errno(e));
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let args = WriteArgs {
            fh: fh.0,
            offset,
            write_flags: write_flags.bits(),
            open_flags: flags.0,
        };
        reply_write(reply, self.ops.write(&info(req), ino.0, args, data));
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.ops.flush(&info(req), ino.0, fh.0));
    }

    fn release(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.ops.release(&info(req), ino.0, fh.0));
    }

    fn fsync(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.ops.fsync(&info(req), ino.0, fh.0, datasync));
    }

    fn opendir(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        reply_open(reply, self.ops.opendir(&info(req), ino.0, flags.0));
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        let mut sink = DirReply(reply);
        match self.ops.readdir(&info(req), ino.0, fh.0, offset, &mut sink) {
            Ok(()) => sink.0.ok(),
            Err(e) => sink.0.error(errno(e)),
        }
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        let mut sink = DirPlusReply(reply);
        match self
            .ops
            .readdirplus(&info(req), ino.0, fh.0, offset, &mut sink)
        {
            Ok(()) => sink.0.ok(),
            Err(e) => sink.0.error(errno(e)),
        }
    }

    fn releasedir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.ops.releasedir(&info(req), ino.0, fh.0));
    }

    fn fsyncdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.ops.fsyncdir(&info(req), ino.0, fh.0, datasync));
    }

    fn statfs(&self, req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        match self.ops.statfs(&info(req), ino.0) {
            Ok(Statfs {
                blocks,
                bfree,
                bavail,
                files,
                ffree,
                bsize,
                namelen,
                frsize,
            }) => reply.statfs(blocks, bfree, bavail, files, ffree, bsize, namelen, frsize),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let result = self
            .ops
            .setxattr(&info(req), ino.0, name.as_bytes(), value, flags);
        reply_empty(reply, result);
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        reply_xattr(
            reply,
            self.ops.getxattr(&info(req), ino.0, name.as_bytes(), size),
        );
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        reply_xattr(reply, self.ops.listxattr(&info(req), ino.0, size));
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(
            reply,
            self.ops.removexattr(&info(req), ino.0, name.as_bytes()),
        );
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        reply_empty(
            reply,
            self.ops.access(&info(req), ino.0, mask.bits() as u32),
        );
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let result = self
            .ops
            .create(&info(req), parent.0, name.as_bytes(), mode, umask, flags);
        match result {
            Ok((attr, opened)) => reply.created(
                &TTL,
                &file_attr(&attr),
                Generation(0),
                FileHandle(opened.fh),
                FopenFlags::from_bits_retain(opened.flags),
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let result = self
            .ops
            .fallocate(&info(req), ino.0, fh.0, offset, length, mode);
        reply_empty(reply, result);
    }

    fn lseek(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        match self.ops.lseek(&info(req), ino.0, fh.0, offset, whence) {
            Ok(position) => reply.offset(position),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn ioctl(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(errno(self.ops.ioctl(&info(req), ino.0, cmd)));
    }

    fn copy_file_range(
        &self,
        req: &Request,
        ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let range = CopyRange {
            ino_in: ino_in.0,
            fh_in: fh_in.0,
            offset_in,
            ino_out: ino_out.0,
            fh_out: fh_out.0,
            offset_out,
            len,
            flags: flags.bits(),
        };
        reply_write(reply, self.ops.copy_file_range(&info(req), range));
    }
}
