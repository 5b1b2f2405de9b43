//! warabifs' operations: each request's argument checks, its call into [`WarabiFs`] and
//! the shape of its reply, written once for both transports.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use super::ops::{
    CopyRange, Deferred, DirPlusSink, DirSink, Lookup, Opened, Operations, RequestInfo,
    SetAttrArgs, Statfs, TimeArg, WriteArgs, XattrReply, WRITE_KILL_SUIDGID,
};
use super::{apply_umask, open_flags, writes_through, INIT_HANDLE_KILLPRIV_V2};
use crate::fs::{
    Attr, Caller, Errno, Fh, FsOptions, FsResult, RenameMode, SetAttr, SetTime, WarabiFs, Writer,
};
use crate::push::ReadPush;

/// `flags` of RENAME2 the kernel may send.
const RENAME_NOREPLACE: u32 = 1;
const RENAME_EXCHANGE: u32 = 2;

pub struct WarabiOps {
    fs: Arc<WarabiFs>,
    /// Set once the session exists (it needs the session's notifier); unset with
    /// direct I/O, where the kernel keeps no page cache to push into.
    push: Arc<OnceLock<ReadPush>>,
    /// The kernel agreed to FUSE_HANDLE_KILLPRIV_V2: warabifs clears set-user-ID and
    /// set-group-ID on write, truncate and chown itself.
    clears_suid_sgid: AtomicBool,
    /// Tells the kernel that its cached attributes of an inode are stale (set once
    /// the session exists): after warabifs clears set-user-ID or set-group-ID in a
    /// request whose reply carries no attributes (write, fallocate, copy_file_range).
    invalidate_attr: OnceLock<AttrInvalidator>,
}

/// Drops the kernel's cached attributes of an inode (FUSE_NOTIFY_INVAL_INODE with a
/// negative offset: attributes only, no page of the file).
pub type AttrInvalidator = Box<dyn Fn(u64) + Send + Sync>;

impl WarabiOps {
    pub fn new(fs: Arc<WarabiFs>, push: Arc<OnceLock<ReadPush>>) -> WarabiOps {
        WarabiOps {
            fs,
            push,
            clears_suid_sgid: AtomicBool::new(false),
            invalidate_attr: OnceLock::new(),
        }
    }

    /// Hands over the session's way of invalidating cached attributes.
    pub fn set_attr_invalidator(&self, invalidate: AttrInvalidator) {
        let _ = self.invalidate_attr.set(invalidate);
    }

    /// Clears set-user-ID and set-group-ID of `ino` (as Linux does when a file is
    /// changed by a caller without CAP_FSETID) and, when a bit went, tells the kernel:
    /// the reply of the request that caused it carries no attributes, and the kernel
    /// would otherwise keep showing the old mode from its cache.
    fn kill_suid_sgid(&self, ino: u64) -> Result<(), Errno> {
        if answer("clear_suid_sgid", self.fs.clear_suid_sgid(ino))? {
            if let Some(invalidate) = self.invalidate_attr.get() {
                invalidate(ino);
            }
        }
        Ok(())
    }

    /// Whether a change of a file's data by this caller must clear its set-ID bits
    /// although the request does not say so (fallocate and copy_file_range carry no
    /// flag for it): as for a truncate, "without CAP_FSETID" is taken as "not root".
    fn unprivileged_change(&self, req: &RequestInfo) -> bool {
        self.clears_suid_sgid() && req.uid != 0
    }

    /// Runs `op`, which may change the data of `ino`, as a writer of the push gate: now,
    /// or once the push of that file under way ends (then on the push thread). The
    /// writer leaves when `op` drops it, or lives on in the handle `op` opens with it.
    fn as_writer(&self, ino: u64, op: impl FnOnce(Writer) + Send + 'static) {
        if let Some((op, writer)) = self.fs.gate().enter_or_defer(ino, Box::new(op)) {
            op(writer);
        }
    }

    fn clears_suid_sgid(&self) -> bool {
        self.clears_suid_sgid.load(Ordering::Relaxed)
    }

    /// Whether a setattr must clear set-user-ID and set-group-ID: when the kernel says
    /// so (FATTR_KILL_SUIDGID, which /dev/fuse requests decoded by fuser do not carry),
    /// on every chown of a non-directory, and on a truncate by a caller without
    /// CAP_FSETID. The caller's capabilities are not in the request, so "without
    /// CAP_FSETID" is taken as "not root" (docs/SEMANTICS.md §2.3).
    fn setattr_clears_suid_sgid(&self, req: &RequestInfo, change: &SetAttrArgs) -> bool {
        let chown = change.uid.is_some() || change.gid.is_some();
        let unprivileged_truncate = change.size.is_some() && req.uid != 0;
        self.clears_suid_sgid() && (chown || unprivileged_truncate || change.kill_suidgid)
    }
}

fn caller(req: &RequestInfo) -> Caller {
    Caller {
        uid: req.uid,
        gid: req.gid,
    }
}

fn set_time(t: TimeArg) -> SetTime {
    match t {
        TimeArg::Now => SetTime::Now,
        TimeArg::At(t) => SetTime::At(t.into()),
    }
}

fn wants_write(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0
}

fn rename_mode(flags: u32) -> Result<RenameMode, Errno> {
    match flags {
        0 => Ok(RenameMode::Replace),
        RENAME_NOREPLACE => Ok(RenameMode::NoReplace),
        RENAME_EXCHANGE => Ok(RenameMode::Exchange),
        _ => Err(Errno::EINVAL),
    }
}

/// The statfs reply for the pool's figures. File counts are estimated from the free
/// bytes: each new inode needs a record of about 256 bytes.
fn statfs_of(fs: &WarabiFs) -> Statfs {
    let s = fs.statfs();
    let bsize = u64::from(s.block_size);
    let free_blocks = s.free_bytes / bsize;
    let free_files = s.free_bytes / 256;
    Statfs {
        blocks: s.total_bytes / bsize,
        bfree: free_blocks,
        // What a new file can actually get (the allocator's runs and reserve).
        bavail: s.available_bytes / bsize,
        files: s.files + free_files,
        ffree: free_files,
        bsize: s.block_size,
        namelen: s.name_max,
        frsize: s.block_size,
    }
}

impl Operations for WarabiOps {
    fn options(&self) -> &FsOptions {
        self.fs.options()
    }

    fn initialized(&self, granted: u64) {
        let killpriv = granted & INIT_HANDLE_KILLPRIV_V2 != 0;
        self.clears_suid_sgid.store(killpriv, Ordering::Relaxed);
    }

    fn destroy(&self) {
        self.fs.sync_all();
    }

    fn lookup(&self, _req: &RequestInfo, parent: u64, name: &[u8]) -> Result<Lookup, Errno> {
        match self.fs.lookup(parent, name) {
            Ok(attr) => Ok(Lookup::Found(attr)),
            // Only this mount changes the namespace, so a missing name stays missing
            // until the kernel itself creates it.
            Err(e) if e == Errno::ENOENT => Ok(Lookup::Missing),
            Err(e) => answer("lookup", Err(e)),
        }
    }

    fn getattr(&self, _req: &RequestInfo, ino: u64, _fh: Option<u64>) -> Result<Attr, Errno> {
        answer("getattr", self.fs.getattr(ino))
    }

    fn setattr(&self, req: &RequestInfo, ino: u64, args: SetAttrArgs, reply: Deferred<Attr>) {
        let change = SetAttr {
            mode: args.mode,
            uid: args.uid,
            gid: args.gid,
            size: args.size,
            atime: args.atime.map(set_time),
            mtime: args.mtime.map(set_time),
            ctime: args.ctime.map(Into::into),
            clear_suid_sgid: self.setattr_clears_suid_sgid(req, &args),
        };
        let fs = Arc::clone(&self.fs);
        let set = move || reply(answer("setattr", fs.setattr(ino, change)));
        match args.size {
            // A writer for the truncate's length, left when it is done.
            Some(_) => self.as_writer(ino, move |writer| {
                set();
                drop(writer);
            }),
            None => set(),
        }
    }

    fn readlink(&self, _req: &RequestInfo, ino: u64) -> Result<Vec<u8>, Errno> {
        answer("readlink", self.fs.readlink(ino))
    }

    fn mknod(
        &self,
        req: &RequestInfo,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> Result<Attr, Errno> {
        let mode = apply_umask(mode, umask);
        answer(
            "mknod",
            self.fs.mknod(parent, name, mode, rdev, caller(req)),
        )
    }

    fn mkdir(
        &self,
        req: &RequestInfo,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
    ) -> Result<Attr, Errno> {
        let mode = apply_umask(mode, umask);
        answer("mkdir", self.fs.mkdir(parent, name, mode, caller(req)))
    }

    fn unlink(&self, _req: &RequestInfo, parent: u64, name: &[u8]) -> Result<(), Errno> {
        answer("unlink", self.fs.unlink(parent, name))
    }

    fn rmdir(&self, _req: &RequestInfo, parent: u64, name: &[u8]) -> Result<(), Errno> {
        answer("rmdir", self.fs.rmdir(parent, name))
    }

    fn symlink(
        &self,
        req: &RequestInfo,
        parent: u64,
        name: &[u8],
        target: &[u8],
    ) -> Result<Attr, Errno> {
        answer(
            "symlink",
            self.fs.symlink(parent, name, target, caller(req)),
        )
    }

    fn rename(
        &self,
        _req: &RequestInfo,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        flags: u32,
    ) -> Result<(), Errno> {
        let mode = rename_mode(flags)?;
        answer(
            "rename",
            self.fs.rename(parent, name, newparent, newname, mode),
        )
    }

    fn link(
        &self,
        _req: &RequestInfo,
        ino: u64,
        newparent: u64,
        newname: &[u8],
    ) -> Result<Attr, Errno> {
        answer("link", self.fs.link(ino, newparent, newname))
    }

    fn open(&self, _req: &RequestInfo, ino: u64, flags: i32, reply: Deferred<Opened>) {
        let write = wants_write(flags);
        let (fs, flags) = (Arc::clone(&self.fs), open_flags(self.fs.options(), flags));
        let opened = move |fh: Fh| Opened { fh: fh.0, flags };
        match write {
            true => self.as_writer(ino, move |writer| {
                reply(answer("open_writing", fs.open_writing(writer)).map(opened))
            }),
            false => reply(answer("open", fs.open(ino, false)).map(opened)),
        }
    }

    fn read(
        &self,
        _req: &RequestInfo,
        ino: u64,
        fh: u64,
        offset: u64,
        size: u32,
        reply: &mut dyn FnMut(&[u8]),
    ) -> Result<(), Errno> {
        // The reply is sent from the read buffer while the inode's read lock is held.
        let replied = answer(
            "read",
            self.fs.read(Fh(fh), offset, size, |bytes| {
                reply(bytes);
                bytes.len()
            }),
        )?;
        self.read_answered(ino, offset, size, replied);
        Ok(())
    }

    fn read_into(
        &self,
        _req: &RequestInfo,
        _ino: u64,
        fh: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, Errno> {
        answer("read_into", self.fs.read_into(Fh(fh), offset, buf))
    }

    /// Maybe pushes the window around the read into the page cache, now that the
    /// kernel has the reply (and has unlocked the pages it read into).
    fn read_answered(&self, ino: u64, offset: u64, size: u32, replied: usize) {
        if let Some(push) = self.push.get() {
            push.after_read(ino, offset, size, replied);
        }
    }

    fn write(
        &self,
        _req: &RequestInfo,
        ino: u64,
        args: WriteArgs,
        data: &[u8],
    ) -> Result<u32, Errno> {
        if args.write_flags & WRITE_KILL_SUIDGID != 0 {
            self.kill_suid_sgid(ino)?;
        }
        let sync = args.open_flags & (libc::O_SYNC | libc::O_DSYNC) != 0
            || writes_through(self.fs.options(), args.open_flags);
        let written = self.fs.write(Fh(args.fh), args.offset, data, sync);
        answer("write", written).map(|n| n as u32)
    }

    fn flush(&self, _req: &RequestInfo, _ino: u64, fh: u64) -> Result<(), Errno> {
        answer("fsync", self.fs.fsync(Fh(fh)))
    }

    fn release(&self, _req: &RequestInfo, _ino: u64, fh: u64) -> Result<(), Errno> {
        answer("release", self.fs.release(Fh(fh)))
    }

    fn fsync(&self, _req: &RequestInfo, _ino: u64, fh: u64, _datasync: bool) -> Result<(), Errno> {
        answer("fsync", self.fs.fsync(Fh(fh)))
    }

    fn opendir(&self, _req: &RequestInfo, ino: u64, _flags: i32) -> Result<Opened, Errno> {
        let fh = answer("opendir", self.fs.opendir(ino))?;
        Ok(Opened { fh: fh.0, flags: 0 })
    }

    fn releasedir(&self, _req: &RequestInfo, _ino: u64, fh: u64) -> Result<(), Errno> {
        answer("release", self.fs.release(Fh(fh)))
    }

    fn readdir(
        &self,
        _req: &RequestInfo,
        ino: u64,
        _fh: u64,
        offset: u64,
        sink: &mut dyn DirSink,
    ) -> Result<(), Errno> {
        let listed = self
            .fs
            .readdir(ino, offset, |e| sink.add(e.ino, e.cookie, e.kind, e.name));
        answer("readdir", listed)
    }

    fn readdirplus(
        &self,
        _req: &RequestInfo,
        ino: u64,
        _fh: u64,
        offset: u64,
        sink: &mut dyn DirPlusSink,
    ) -> Result<(), Errno> {
        let listed = self.fs.readdir(ino, offset, |e| {
            // An entry removed since it was listed is skipped, not an error.
            match self.fs.getattr(e.ino) {
                Ok(attr) => sink.add(&attr, e.cookie, e.name),
                Err(_) => false,
            }
        });
        answer("readdirplus", listed)
    }

    fn fsyncdir(
        &self,
        _req: &RequestInfo,
        _ino: u64,
        _fh: u64,
        _datasync: bool,
    ) -> Result<(), Errno> {
        // Directory changes are committed transactions before they return.
        Ok(())
    }

    fn statfs(&self, _req: &RequestInfo, _ino: u64) -> Result<Statfs, Errno> {
        Ok(statfs_of(&self.fs))
    }

    fn setxattr(
        &self,
        _req: &RequestInfo,
        ino: u64,
        name: &[u8],
        value: &[u8],
        flags: i32,
    ) -> Result<(), Errno> {
        answer("setxattr", self.fs.setxattr(ino, name, value, flags))
    }

    fn getxattr(
        &self,
        _req: &RequestInfo,
        ino: u64,
        name: &[u8],
        size: u32,
    ) -> Result<XattrReply, Errno> {
        XattrReply::fitting(size, answer("getxattr", self.fs.getxattr(ino, name))?)
    }

    fn listxattr(&self, _req: &RequestInfo, ino: u64, size: u32) -> Result<XattrReply, Errno> {
        XattrReply::fitting(size, answer("listxattr", self.fs.listxattr(ino))?)
    }

    fn removexattr(&self, _req: &RequestInfo, ino: u64, name: &[u8]) -> Result<(), Errno> {
        answer("removexattr", self.fs.removexattr(ino, name))
    }

    fn access(&self, _req: &RequestInfo, ino: u64, _mask: u32) -> Result<(), Errno> {
        // Permissions are checked by the kernel (default_permissions); access only needs
        // the inode to exist.
        answer("getattr", self.fs.getattr(ino)).map(|_| ())
    }

    fn create(
        &self,
        req: &RequestInfo,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> Result<(Attr, Opened), Errno> {
        let mode = apply_umask(mode, umask);
        let (attr, fh) = answer("create", self.fs.create(parent, name, mode, caller(req)))?;
        let flags = open_flags(self.fs.options(), flags);
        Ok((attr, Opened { fh: fh.0, flags }))
    }

    fn fallocate(
        &self,
        req: &RequestInfo,
        ino: u64,
        _fh: u64,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> Result<(), Errno> {
        answer("fallocate", self.fs.fallocate(ino, offset, length, mode))?;
        if self.unprivileged_change(req) {
            self.kill_suid_sgid(ino)?;
        }
        Ok(())
    }

    fn lseek(
        &self,
        _req: &RequestInfo,
        ino: u64,
        _fh: u64,
        offset: i64,
        whence: i32,
    ) -> Result<i64, Errno> {
        // A negative offset is past no data and no hole: ENXIO, as Linux's own file
        // systems answer it.
        let offset = u64::try_from(offset).map_err(|_| Errno::ENXIO)?;
        answer("lseek", self.fs.lseek(ino, offset, whence)).map(|position| position as i64)
    }

    /// No ioctl is supported: each gets `ENOTTY` (which the kernel turns into
    /// `EOPNOTSUPP` for the flag ioctls of `chattr` and `lsattr`). Answered here rather
    /// than left to a transport's default, which may log each one: the kernel does not
    /// remember the refusal, and a program probing ioctls in a loop filled the log with
    /// hundreds of thousands of lines.
    fn ioctl(&self, _req: &RequestInfo, _ino: u64, _cmd: u32) -> Errno {
        Errno(libc::ENOTTY)
    }

    fn copy_file_range(&self, req: &RequestInfo, range: CopyRange) -> Result<u32, Errno> {
        if range.flags != 0 {
            return Err(Errno::EINVAL);
        }
        // The reply carries a 32-bit count; callers loop for the rest.
        let len = range.len.min(u64::from(u32::MAX) & !0xfff);
        let copied = answer(
            "copy_file_range",
            self.fs.copy_file_range(
                range.ino_in,
                range.offset_in,
                range.ino_out,
                range.offset_out,
                len,
            ),
        )?;
        if copied > 0 && self.unprivileged_change(req) {
            self.kill_suid_sgid(range.ino_out)?;
        }
        Ok(copied as u32)
    }
}

/// The request layer's answer for a result of the file system: a failure is logged
/// here, once, naming the operation, at the level it deserves (`FsError::log`).
fn answer<T>(op: &str, result: FsResult<T>) -> Result<T, Errno> {
    result.map_err(|e| {
        e.log(op);
        e.errno()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_flags_map_to_modes_and_others_are_refused() {
        assert_eq!(rename_mode(0), Ok(RenameMode::Replace));
        assert_eq!(rename_mode(RENAME_NOREPLACE), Ok(RenameMode::NoReplace));
        assert_eq!(rename_mode(RENAME_EXCHANGE), Ok(RenameMode::Exchange));
        assert_eq!(rename_mode(4), Err(Errno::EINVAL));
        assert_eq!(rename_mode(3), Err(Errno::EINVAL));
    }

    #[test]
    fn write_access_or_truncation_makes_an_open_a_writer() {
        assert!(!wants_write(libc::O_RDONLY));
        assert!(wants_write(libc::O_RDONLY | libc::O_TRUNC));
        assert!(wants_write(libc::O_WRONLY));
        assert!(wants_write(libc::O_RDWR | libc::O_APPEND));
    }

    #[test]
    fn xattr_replies_give_the_size_or_erange() {
        assert_eq!(
            XattrReply::fitting(0, b"abc".to_vec()),
            Ok(XattrReply::Size(3))
        );
        assert_eq!(XattrReply::fitting(2, b"abc".to_vec()), Err(Errno::ERANGE));
        assert_eq!(
            XattrReply::fitting(3, b"abc".to_vec()),
            Ok(XattrReply::Data(b"abc".to_vec()))
        );
    }
}
