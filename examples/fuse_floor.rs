//! The FUSE floor: a file system that does no work, for `bench/run.py --floor`.
//!
//! It talks to the kernel exactly as warabifs does (the same INIT settings, open flags,
//! cache timeouts, default_permissions and session threads), but keeps only names and
//! attributes in memory: writes are counted and dropped, reads return zeros. What it
//! reaches against tmpfs is what the FUSE round trips alone allow on this machine, the
//! ceiling for any warabifs tuning short of sending fewer requests.
//!
//!     cargo build --release --example fuse_floor
//!     target/release/examples/fuse_floor MOUNTPOINT     # runs until unmounted
//!     RUST_LOG=fuser=debug target/release/examples/fuse_floor MOUNTPOINT 2>requests.log
//!
//! Not a file system to keep data in: nothing written can be read back.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use clap::Parser;
use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    Request, Session, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;
use warabifs::config::MountConfig;
use warabifs::fs::{FsOptions, DIRECTORY_BLKSIZE};
use warabifs::fuse::{negotiate, open_flags, TTL};
use warabifs::mount::tune_page_cache;

#[derive(Parser)]
#[command(about = "A FUSE file system that does no work: the transport floor")]
struct Args {
    /// Where to mount; the process serves it until it is unmounted.
    mountpoint: PathBuf,
    /// FUSE session threads (default: as warabifs).
    #[arg(long, default_value_t = warabifs::config::default_threads())]
    threads: usize,
    /// Ask for the kernel's writeback cache, as warabifs' `-o writeback_cache` does.
    #[arg(long)]
    writeback_cache: bool,
}

struct Node {
    attr: FileAttr,
    /// Names in a directory, in the order readdir lists them.
    children: BTreeMap<OsString, u64>,
}

struct Floor {
    nodes: Mutex<HashMap<u64, Node>>,
    next_ino: AtomicU64,
    options: FsOptions,
}

fn new_attr(ino: u64, kind: FileType, perm: u16, req: &Request) -> FileAttr {
    let now = SystemTime::now();
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
        kind,
        perm,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: req.uid(),
        gid: req.gid(),
        rdev: 0,
        blksize: match kind {
            FileType::Directory => DIRECTORY_BLKSIZE,
            _ => 4096,
        },
        flags: 0,
    }
}

fn time_of(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::Now => SystemTime::now(),
        TimeOrNow::SpecificTime(t) => t,
    }
}

impl Floor {
    fn new(options: FsOptions) -> Floor {
        let root = Node {
            attr: FileAttr {
                ino: INodeNo(1),
                size: 0,
                blocks: 0,
                atime: SystemTime::now(),
                mtime: SystemTime::now(),
                ctime: SystemTime::now(),
                crtime: SystemTime::now(),
                kind: FileType::Directory,
                perm: 0o755,
                nlink: 2,
                uid: 0,
                gid: 0,
                rdev: 0,
                blksize: DIRECTORY_BLKSIZE,
                flags: 0,
            },
            children: BTreeMap::new(),
        };
        Floor {
            nodes: Mutex::new(HashMap::from([(1, root)])),
            next_ino: AtomicU64::new(2),
            options,
        }
    }

    fn attr(&self, ino: INodeNo) -> Result<FileAttr, Errno> {
        let nodes = self.nodes.lock();
        nodes.get(&ino.0).map(|n| n.attr).ok_or(Errno::ENOENT)
    }

    /// Links a new node named `name` into `parent`.
    fn make(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        kind: FileType,
        mode: u32,
    ) -> Result<FileAttr, Errno> {
        let mut nodes = self.nodes.lock();
        let dir = nodes.get_mut(&parent.0).ok_or(Errno::ENOENT)?;
        if dir.children.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino.fetch_add(1, Ordering::Relaxed);
        dir.children.insert(name.to_owned(), ino);
        dir.attr.mtime = SystemTime::now();
        dir.attr.ctime = dir.attr.mtime;
        let attr = new_attr(ino, kind, (mode & 0o7777) as u16, req);
        let children = BTreeMap::new();
        nodes.insert(ino, Node { attr, children });
        Ok(attr)
    }

    /// Unlinks `name` from `parent`; the node stays for handles still open.
    fn remove(&self, parent: INodeNo, name: &OsStr, want_dir: bool) -> Result<(), Errno> {
        let mut nodes = self.nodes.lock();
        let dir = nodes.get(&parent.0).ok_or(Errno::ENOENT)?;
        let ino = *dir.children.get(name).ok_or(Errno::ENOENT)?;
        let node = &nodes[&ino];
        match (want_dir, node.attr.kind == FileType::Directory) {
            (true, false) => return Err(Errno::ENOTDIR),
            (false, true) => return Err(Errno::EISDIR),
            (true, true) if !node.children.is_empty() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        nodes.get_mut(&ino).expect("listed").attr.nlink = 0;
        let dir = nodes.get_mut(&parent.0).expect("looked up");
        dir.children.remove(name);
        dir.attr.mtime = SystemTime::now();
        dir.attr.ctime = dir.attr.mtime;
        Ok(())
    }

    /// Calls `add` with (ino, next offset, kind, name) from `offset` on, until it says
    /// the reply is full.
    fn list(
        &self,
        ino: INodeNo,
        offset: u64,
        mut add: impl FnMut(&FileAttr, u64, &OsStr) -> bool,
    ) -> Result<(), Errno> {
        let nodes = self.nodes.lock();
        let dir = nodes.get(&ino.0).ok_or(Errno::ENOENT)?;
        let listed = dir.children.iter().enumerate().skip(offset as usize);
        for (i, (name, child)) in listed {
            if add(&nodes[child].attr, i as u64 + 1, name) {
                break;
            }
        }
        Ok(())
    }

    fn update(&self, ino: INodeNo, change: impl FnOnce(&mut FileAttr)) -> Result<FileAttr, Errno> {
        let mut nodes = self.nodes.lock();
        let node = nodes.get_mut(&ino.0).ok_or(Errno::ENOENT)?;
        change(&mut node.attr);
        Ok(node.attr)
    }
}

fn reply_attr(reply: ReplyAttr, result: Result<FileAttr, Errno>) {
    match result {
        Ok(attr) => reply.attr(&TTL, &attr),
        Err(e) => reply.error(e),
    }
}

fn reply_entry(reply: ReplyEntry, result: Result<FileAttr, Errno>) {
    match result {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for Floor {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        negotiate(config, &self.options);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let nodes = self.nodes.lock();
        let child = nodes.get(&parent.0).and_then(|d| d.children.get(name));
        match child {
            Some(ino) => reply.entry(&TTL, &nodes[ino].attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply_attr(reply, self.attr(ino));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let result = self.update(ino, |a| {
            a.perm = mode.map_or(a.perm, |m| (m & 0o7777) as u16);
            a.uid = uid.unwrap_or(a.uid);
            a.gid = gid.unwrap_or(a.gid);
            a.size = size.unwrap_or(a.size);
            a.atime = atime.map_or(a.atime, time_of);
            a.mtime = mtime.map_or(a.mtime, time_of);
            a.ctime = SystemTime::now();
        });
        reply_attr(reply, result);
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
        let mode = mode & !umask;
        reply_entry(
            reply,
            self.make(req, parent, name, FileType::Directory, mode),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.remove(parent, name, false));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.remove(parent, name, true));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.attr(ino) {
            Ok(_) => reply.opened(FileHandle(0), open_flags(&self.options, flags)),
            Err(e) => reply.error(e),
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
        match self.attr(ino) {
            Ok(attr) => {
                let len = attr.size.saturating_sub(offset).min(u64::from(size));
                reply.data(&vec![0; len as usize]);
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let end = offset + data.len() as u64;
        let result = self.update(ino, |a| {
            a.size = a.size.max(end);
            a.mtime = SystemTime::now();
        });
        match result {
            Ok(_) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.attr(ino) {
            Ok(a) if a.kind == FileType::Directory => {
                reply.opened(FileHandle(0), FopenFlags::empty())
            }
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(e),
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
        let result = self.list(ino, offset, |attr, next, name| {
            reply.add(attr.ino, next, attr.kind, name)
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
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
        let result = self.list(ino, offset, |attr, next, name| {
            reply.add(attr.ino, next, name, &TTL, attr, Generation(0))
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let blocks = 1 << 20; // 4 GiB of 4 KiB blocks: room for every benchmark file
        reply.statfs(blocks, blocks, blocks, 1 << 20, 1 << 20, 4096, 255, 4096);
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
        let mode = mode & !umask;
        match self.make(req, parent, name, FileType::RegularFile, mode) {
            Ok(attr) => {
                let opened = open_flags(&self.options, OpenFlags(flags));
                reply.created(&TTL, &attr, Generation(0), FileHandle(0), opened)
            }
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        let result = self.update(ino, |a| a.size = a.size.max(offset + length));
        reply_empty(reply, result.map(|_| ()));
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    // RUST_LOG=fuser=debug lists every request, to compare with warabifs' own
    // `-o log_level=fuser=debug` log.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("fuse_floor".to_string()),
        MountOption::CUSTOM("subtype=fuse_floor".to_string()),
        MountOption::DefaultPermissions,
    ];
    config.n_threads = Some(args.threads);
    config.clone_fd = args.threads > 1;
    let options = FsOptions {
        writeback_cache: args.writeback_cache,
        ..FsOptions::default()
    };
    // Resolved before mounting, as warabifs does: once mounted, resolving the path
    // would ask the not yet running session about its own root.
    let defaults = MountConfig::new(PathBuf::new(), args.mountpoint.canonicalize()?);
    let session = Session::new(Floor::new(options), &defaults.mountpoint, &config)?;
    // The same readahead and dirty-page share as a warabifs mount with default options.
    tune_page_cache(&defaults.mountpoint, "fuse.fuse_floor", &defaults);
    session.run()
}
