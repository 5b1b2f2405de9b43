//! The thin fuser adapter: decode each request, call the file system, reply.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno as FuseErrno, FileAttr, FileHandle, FileType,
    Filesystem, FopenFlags, Generation, INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner,
    OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::fs::{
    Attr, Caller, Deferred, Errno, FileKind, FsOptions, RenameMode, SetAttr, SetTime, WarabiFs,
};
use crate::push::ReadPush;

/// How long the kernel may cache attributes and names: every change goes through this
/// mount (libpmemobj locks the pool against Warabi), so the cache cannot go stale.
pub const TTL: Duration = Duration::from_secs(1);
/// Largest write the kernel sends in one request.
const MAX_WRITE: u32 = 1 << 20;
/// Asynchronous requests (writeback, readahead) the kernel keeps in flight.
const MAX_BACKGROUND: u16 = 64;

pub struct FuseAdapter {
    fs: Arc<WarabiFs>,
    /// Set once the session exists (it needs the session's notifier); unset with
    /// direct I/O, where the kernel keeps no page cache to push into.
    push: Arc<OnceLock<ReadPush>>,
    /// The kernel agreed to FUSE_HANDLE_KILLPRIV_V2: warabifs clears set-user-ID and
    /// set-group-ID on write, truncate and chown itself.
    clears_suid_sgid: bool,
}

impl FuseAdapter {
    pub fn new(fs: Arc<WarabiFs>, push: Arc<OnceLock<ReadPush>>) -> FuseAdapter {
        FuseAdapter {
            fs,
            push,
            clears_suid_sgid: false,
        }
    }

    /// Runs `op`, which may change the data of `ino`, as a writer of the push gate: now,
    /// or once the push of that file under way ends (then on the push thread).
    fn as_writer(&self, ino: u64, op: impl FnOnce() + Send + 'static) {
        let fs = Arc::clone(&self.fs);
        let op: Deferred = Box::new(move || {
            op();
            fs.gate().leave(ino);
        });
        if let Some(op) = self.fs.gate().enter_or_defer(ino, op) {
            op();
        }
    }

    /// Whether a setattr must clear set-user-ID and set-group-ID, as the kernel's
    /// FATTR_KILL_SUIDGID would say: on every chown of a non-directory, and on a
    /// truncate by a caller without CAP_FSETID. fuser does not pass that flag on, and
    /// the caller's capabilities are not in the request, so "without CAP_FSETID" is
    /// taken as "not root" (docs/SEMANTICS.md §2.3).
    fn setattr_clears_suid_sgid(&self, req: &Request, change: &SetAttr) -> bool {
        let chown = change.uid.is_some() || change.gid.is_some();
        let unprivileged_truncate = change.size.is_some() && req.uid() != 0;
        self.clears_suid_sgid && (chown || unprivileged_truncate)
    }
}

/// How a file is opened, by the access it asks for.
///
/// - With direct_io or atomic_writes: direct I/O. The kernel then sends each read
///   and write(2) of up to MAX_WRITE bytes as one request (which atomic_writes
///   applies in one transaction; through the page cache a write could be split).
/// - With writeback_cache: through the page cache, which holds the writes.
/// - Otherwise write-only opens (`dd of=`, `cp`, shell redirections) write directly:
///   a page cache in front of them would only be filled to be sent on, costing a
///   copy per byte. The kernel drops the cached pages a direct write overlaps (and
///   writes back dirty mmap pages first), so cached readers stay coherent. Opens
///   that may read go through the page cache.
///
/// The cache is kept across opens (only this mount changes the pool). Read-only
/// opens ask for no flush at close: they have nothing to persist.
pub fn open_flags(opts: &FsOptions, flags: OpenFlags) -> FopenFlags {
    let access = flags.acc_mode();
    let mut open_flags = if opts.every_open_direct() {
        FopenFlags::FOPEN_DIRECT_IO
    } else if access == OpenAccMode::O_WRONLY && !opts.writeback_cache {
        FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_KEEP_CACHE
    } else {
        FopenFlags::FOPEN_KEEP_CACHE
    };
    if access == OpenAccMode::O_RDONLY {
        open_flags |= FopenFlags::FOPEN_NOFLUSH;
    }
    open_flags
}

/// The kernel settings warabifs asks for at INIT; returns the capabilities granted.
/// Public so that the FUSE-floor benchmark (examples/fuse_floor.rs) talks to the
/// kernel exactly as warabifs does.
pub fn negotiate(config: &mut KernelConfig, opts: &FsOptions) -> InitFlags {
    let _ = config.set_max_write(MAX_WRITE);
    // mmap of direct-I/O files (atomic_writes) needs the kernel's permission.
    // READDIRPLUS_AUTO: the kernel asks for readdirplus for the first getdents of a
    // listing and then only while the caller stats what it lists (`ls -l` does, each
    // entry right after reading it), so `ls` alone does not make a kernel inode and
    // dentry per name (for a million names that cost more than the listing).
    let mut wanted = InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP
        | InitFlags::FUSE_PARALLEL_DIROPS
        | InitFlags::FUSE_DO_READDIRPLUS
        | InitFlags::FUSE_READDIRPLUS_AUTO;
    // KILLPRIV_V2 moves the clearing of set-user-ID and set-group-ID on write into
    // warabifs. Without it the kernel asks for security.capability before every
    // write, which costs a round trip each.
    wanted |= InitFlags::FUSE_HANDLE_KILLPRIV_V2;
    // With writeback_cache, writes through the page cache are cached and sent
    // later, in large requests.
    if opts.writeback_cache && !opts.every_open_direct() {
        wanted |= InitFlags::FUSE_WRITEBACK_CACHE;
    }
    // Ask only for what this kernel offers; the rest is an optimisation.
    let granted = wanted & config.capabilities();
    let _ = config.add_capabilities(granted);
    // Writeback and readahead requests are asynchronous: let more be in flight.
    let _ = config.set_max_background(MAX_BACKGROUND);
    let _ = config.set_congestion_threshold(MAX_BACKGROUND * 3 / 4);
    granted
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

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn set_time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(t.into()),
    }
}

fn reply_entry(reply: ReplyEntry, result: Result<Attr, Errno>) {
    match result {
        Ok(attr) => reply.entry(&TTL, &file_attr(&attr), Generation(0)),
        Err(e) => reply.error(errno(e)),
    }
}

fn reply_empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

/// Replies to getxattr/listxattr: the size alone when asked, ERANGE when too small.
fn reply_xattr(reply: ReplyXattr, size: u32, result: Result<Vec<u8>, Errno>) {
    match result {
        Ok(value) if size == 0 => reply.size(value.len() as u32),
        Ok(value) if value.len() > size as usize => reply.error(FuseErrno::ERANGE),
        Ok(value) => reply.data(&value),
        Err(e) => reply.error(errno(e)),
    }
}

fn wants_write(flags: OpenFlags) -> bool {
    !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY) || flags.0 & libc::O_TRUNC != 0
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let granted = negotiate(config, self.fs.options());
        self.clears_suid_sgid = granted.contains(InitFlags::FUSE_HANDLE_KILLPRIV_V2);
        Ok(())
    }

    fn destroy(&mut self) {
        self.fs.sync_all();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(reply, self.fs.lookup(parent.0, name.as_bytes()));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
            Err(e) => reply.error(errno(e)),
        }
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
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut change = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(set_time),
            mtime: mtime.map(set_time),
            ctime: ctime.map(Into::into),
            clear_suid_sgid: false,
        };
        change.clear_suid_sgid = self.setattr_clears_suid_sgid(req, &change);
        let fs = Arc::clone(&self.fs);
        let set = move || match fs.setattr(ino.0, change) {
            Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
            Err(e) => reply.error(errno(e)),
        };
        match size {
            Some(_) => self.as_writer(ino.0, set),
            None => set(),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink(ino.0) {
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
        let mode = mode & !(umask & 0o777);
        reply_entry(
            reply,
            self.fs
                .mknod(parent.0, name.as_bytes(), mode, rdev, caller(req)),
        );
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
        let mode = mode & !(umask & 0o777);
        reply_entry(
            reply,
            self.fs.mkdir(parent.0, name.as_bytes(), mode, caller(req)),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.fs.unlink(parent.0, name.as_bytes()));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.fs.rmdir(parent.0, name.as_bytes()));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let result = self.fs.symlink(
            parent.0,
            link_name.as_bytes(),
            target.as_os_str().as_bytes(),
            caller(req),
        );
        reply_entry(reply, result);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mode = if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            RenameMode::Exchange
        } else if flags.contains(RenameFlags::RENAME_NOREPLACE) {
            RenameMode::NoReplace
        } else if flags.is_empty() {
            RenameMode::Replace
        } else {
            return reply.error(FuseErrno::EINVAL);
        };
        reply_empty(
            reply,
            self.fs.rename(
                parent.0,
                name.as_bytes(),
                newparent.0,
                newname.as_bytes(),
                mode,
            ),
        );
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply_entry(reply, self.fs.link(ino.0, newparent.0, newname.as_bytes()));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = wants_write(flags);
        let (fs, open_flags) = (Arc::clone(&self.fs), open_flags(self.fs.options(), flags));
        let open = move || match fs.open(ino.0, write) {
            Ok(fh) => reply.opened(FileHandle(fh), open_flags),
            Err(e) => reply.error(errno(e)),
        };
        match write {
            true => self.as_writer(ino.0, open),
            false => open(),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // The reply is sent from the mapped region while the inode's read lock is held.
        let (mut reply, mut replied) = (Some(reply), 0);
        let result = self.fs.read(ino.0, offset, size, |bytes| {
            replied = bytes.len();
            reply.take().expect("replied once").data(bytes);
        });
        match (result, reply) {
            (Err(e), Some(reply)) => reply.error(errno(e)),
            (Ok(()), _) => {
                if let Some(push) = self.push.get() {
                    push.after_read(ino.0, offset, size, replied);
                }
            }
            (Err(_), None) => unreachable!("fs.read replies only on success"),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
            if let Err(e) = self.fs.clear_suid_sgid(ino.0) {
                return reply.error(errno(e));
            }
        }
        let sync = flags.0 & (libc::O_SYNC | libc::O_DSYNC) != 0;
        match self.fs.write(ino.0, offset, data, sync) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.fs.fsync(ino.0));
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.fs.release(fh.0));
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.fs.fsync(ino.0));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.getattr(ino.0) {
            Ok(attr) if attr.kind == FileKind::Directory => {
                reply.opened(FileHandle(0), FopenFlags::empty())
            }
            Ok(_) => reply.error(FuseErrno::ENOTDIR),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let result = self.fs.readdir(ino.0, offset, |e| {
            reply.add(
                INodeNo(e.ino),
                e.cookie,
                file_type(e.kind),
                OsStr::from_bytes(e.name),
            )
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let result = self.fs.readdir(ino.0, offset, |e| {
            // An entry removed since it was listed is skipped, not an error.
            let Ok(attr) = self.fs.getattr(e.ino) else {
                return false;
            };
            reply.add(
                INodeNo(e.ino),
                e.cookie,
                OsStr::from_bytes(e.name),
                &TTL,
                &file_attr(&attr),
                Generation(0),
            )
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Directory changes are committed transactions before they return.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.fs.statfs();
        let bsize = u64::from(s.block_size);
        let free_blocks = s.free_bytes / bsize;
        let free_files = s.free_bytes / 256;
        reply.statfs(
            s.total_bytes / bsize,
            free_blocks,
            free_blocks,
            s.files + free_files,
            free_files,
            s.block_size,
            s.name_max,
            s.block_size,
        );
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply_empty(
            reply,
            self.fs.setxattr(ino.0, name.as_bytes(), value, flags),
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        reply_xattr(reply, size, self.fs.getxattr(ino.0, name.as_bytes()));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        reply_xattr(reply, size, self.fs.listxattr(ino.0));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.fs.removexattr(ino.0, name.as_bytes()));
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Permissions are checked by the kernel (default_permissions); access only needs
        // the inode to exist.
        reply_empty(reply, self.fs.getattr(ino.0).map(|_| ()));
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
        let mode = mode & !(umask & 0o777);
        match self.fs.create(parent.0, name.as_bytes(), mode, caller(req)) {
            Ok((attr, fh)) => reply.created(
                &TTL,
                &file_attr(&attr),
                Generation(0),
                FileHandle(fh),
                open_flags(self.fs.options(), OpenFlags(flags)),
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.fs.fallocate(ino.0, offset, length, mode));
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(FuseErrno::EINVAL);
        };
        match self.fs.lseek(ino.0, offset, whence) {
            Ok(position) => reply.offset(position as i64),
            Err(e) => reply.error(errno(e)),
        }
    }

    /// No ioctl is supported: each gets `ENOTTY` (which the kernel turns into
    /// `EOPNOTSUPP` for the flag ioctls of `chattr` and `lsattr`). Answered here rather
    /// than by fuser's default, which logs a warning for each one: the kernel does not
    /// remember the refusal, and a program probing ioctls in a loop filled the log with
    /// hundreds of thousands of lines.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(FuseErrno::ENOTTY);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        ino_in: INodeNo,
        _fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        _fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        if !flags.is_empty() {
            return reply.error(FuseErrno::EINVAL);
        }
        // The reply carries a 32-bit count; callers loop for the rest.
        let len = len.min(u64::from(u32::MAX) & !0xfff);
        match self
            .fs
            .copy_file_range(ino_in.0, offset_in, ino_out.0, offset_out, len)
        {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(errno(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags_for(opts: &FsOptions, access: i32) -> FopenFlags {
        open_flags(opts, OpenFlags(access))
    }

    #[test]
    fn by_default_only_write_only_opens_bypass_the_page_cache() {
        let opts = FsOptions::default();
        let keep = FopenFlags::FOPEN_KEEP_CACHE;
        assert_eq!(
            flags_for(&opts, libc::O_RDONLY),
            keep | FopenFlags::FOPEN_NOFLUSH
        );
        assert_eq!(flags_for(&opts, libc::O_RDWR), keep);
        assert_eq!(
            flags_for(&opts, libc::O_WRONLY | libc::O_APPEND),
            keep | FopenFlags::FOPEN_DIRECT_IO
        );
    }

    #[test]
    fn writeback_cache_keeps_every_open_in_the_page_cache() {
        let opts = FsOptions {
            writeback_cache: true,
            ..FsOptions::default()
        };
        assert_eq!(
            flags_for(&opts, libc::O_WRONLY),
            FopenFlags::FOPEN_KEEP_CACHE
        );
    }

    #[test]
    fn direct_io_and_atomic_writes_bypass_it_for_every_open() {
        for opts in [
            FsOptions {
                direct_io: true,
                ..FsOptions::default()
            },
            FsOptions {
                atomic_writes: true,
                writeback_cache: true,
                ..FsOptions::default()
            },
        ] {
            assert_eq!(flags_for(&opts, libc::O_RDWR), FopenFlags::FOPEN_DIRECT_IO);
            assert_eq!(
                flags_for(&opts, libc::O_RDONLY),
                FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_NOFLUSH
            );
        }
    }
}
