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
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clap::Parser;
use fuser::{Config, MountOption, Session};
use parking_lot::Mutex;
use warabifs::config::{IoUringMode, MountConfig};
use warabifs::fs::{Attr, Errno, FileKind, FsOptions, DIRECTORY_BLKSIZE};
use warabifs::fuse::adapter::{FuserAdapter, Transport};
use warabifs::fuse::ops::{
    Deferred, DirPlusSink, DirSink, Lookup, Opened, Operations, RequestInfo, SetAttrArgs, Statfs,
    TimeArg, WriteArgs,
};
use warabifs::fuse::{apply_umask, open_flags};
use warabifs::mount::{start_rings, tune_page_cache, wants_uring};
use warabifs::store::records::Timestamp;

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
    /// FUSE-over-io_uring, as warabifs' `-o io_uring=`: auto, on or off.
    #[arg(long, default_value = "auto", value_parser = parse_io_uring)]
    io_uring: IoUringMode,
}

fn parse_io_uring(value: &str) -> Result<IoUringMode, String> {
    let mut config = MountConfig::new(PathBuf::new(), PathBuf::new());
    warabifs::config::apply_options(&mut config, &format!("io_uring={value}"))
        .map_err(|e| e.to_string())?;
    Ok(config.io_uring)
}

struct Node {
    attr: Attr,
    /// Names in a directory, in the order readdir lists them.
    children: BTreeMap<Vec<u8>, u64>,
    /// A symbolic link's target.
    target: Vec<u8>,
}

struct Floor {
    nodes: Mutex<HashMap<u64, Node>>,
    next_ino: AtomicU64,
    options: FsOptions,
}

fn new_attr(ino: u64, kind: FileKind, perm: u16, uid: u32, gid: u32) -> Attr {
    let now = Timestamp::now();
    Attr {
        ino,
        kind,
        perm,
        nlink: if kind == FileKind::Directory { 2 } else { 1 },
        uid,
        gid,
        size: 0,
        blocks: 0,
        rdev: 0,
        blksize: match kind {
            FileKind::Directory => DIRECTORY_BLKSIZE,
            _ => 4096,
        },
        atime: now,
        mtime: now,
        ctime: now,
    }
}

fn time_of(t: TimeArg) -> Timestamp {
    match t {
        TimeArg::Now => Timestamp::now(),
        TimeArg::At(t) => t.into(),
    }
}

impl Floor {
    fn new(options: FsOptions) -> Floor {
        let root = Node {
            attr: new_attr(1, FileKind::Directory, 0o755, 0, 0),
            children: BTreeMap::new(),
            target: Vec::new(),
        };
        Floor {
            nodes: Mutex::new(HashMap::from([(1, root)])),
            next_ino: AtomicU64::new(2),
            options,
        }
    }

    fn attr(&self, ino: u64) -> Result<Attr, Errno> {
        let nodes = self.nodes.lock();
        nodes.get(&ino).map(|n| n.attr).ok_or(Errno::ENOENT)
    }

    /// Links a new node named `name` into `parent`, a symbolic link to `target` if
    /// `kind` says so (empty for anything else).
    fn make(
        &self,
        req: &RequestInfo,
        parent: u64,
        name: &[u8],
        kind: FileKind,
        mode: u32,
        target: Vec<u8>,
    ) -> Result<Attr, Errno> {
        let mut nodes = self.nodes.lock();
        let dir = nodes.get_mut(&parent).ok_or(Errno::ENOENT)?;
        if dir.children.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino.fetch_add(1, Ordering::Relaxed);
        dir.children.insert(name.to_vec(), ino);
        dir.attr.mtime = Timestamp::now();
        dir.attr.ctime = dir.attr.mtime;
        let mut attr = new_attr(ino, kind, (mode & 0o7777) as u16, req.uid, req.gid);
        attr.size = target.len() as u64;
        let children = BTreeMap::new();
        nodes.insert(
            ino,
            Node {
                attr,
                children,
                target,
            },
        );
        Ok(attr)
    }

    /// Unlinks `name` from `parent`; the node stays for handles still open.
    fn remove(&self, parent: u64, name: &[u8], want_dir: bool) -> Result<(), Errno> {
        let mut nodes = self.nodes.lock();
        let dir = nodes.get(&parent).ok_or(Errno::ENOENT)?;
        let ino = *dir.children.get(name).ok_or(Errno::ENOENT)?;
        let node = &nodes[&ino];
        match (want_dir, node.attr.kind == FileKind::Directory) {
            (true, false) => return Err(Errno::ENOTDIR),
            (false, true) => return Err(Errno::EISDIR),
            (true, true) if !node.children.is_empty() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        nodes.get_mut(&ino).expect("listed").attr.nlink = 0;
        let dir = nodes.get_mut(&parent).expect("looked up");
        dir.children.remove(name);
        dir.attr.mtime = Timestamp::now();
        dir.attr.ctime = dir.attr.mtime;
        Ok(())
    }

    /// Calls `add` with (attributes, next offset, name) from `offset` on, until it
    /// says the reply is full.
    fn list(
        &self,
        ino: u64,
        offset: u64,
        mut add: impl FnMut(&Attr, u64, &[u8]) -> bool,
    ) -> Result<(), Errno> {
        let nodes = self.nodes.lock();
        let dir = nodes.get(&ino).ok_or(Errno::ENOENT)?;
        let listed = dir.children.iter().enumerate().skip(offset as usize);
        for (i, (name, child)) in listed {
            if add(&nodes[child].attr, i as u64 + 1, name) {
                break;
            }
        }
        Ok(())
    }

    fn update(&self, ino: u64, change: impl FnOnce(&mut Attr)) -> Result<Attr, Errno> {
        let mut nodes = self.nodes.lock();
        let node = nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        change(&mut node.attr);
        Ok(node.attr)
    }
}

impl Operations for Floor {
    fn options(&self) -> &FsOptions {
        &self.options
    }

    fn lookup(&self, _req: &RequestInfo, parent: u64, name: &[u8]) -> Result<Lookup, Errno> {
        let nodes = self.nodes.lock();
        let child = nodes.get(&parent).and_then(|d| d.children.get(name));
        // Missing names are cached by the kernel, as warabifs has them cached.
        Ok(child.map_or(Lookup::Missing, |ino| Lookup::Found(nodes[ino].attr)))
    }

    fn getattr(&self, _req: &RequestInfo, ino: u64, _fh: Option<u64>) -> Result<Attr, Errno> {
        self.attr(ino)
    }

    fn setattr(&self, _req: &RequestInfo, ino: u64, c: SetAttrArgs, reply: Deferred<Attr>) {
        reply(self.update(ino, |a| {
            a.perm = c.mode.map_or(a.perm, |m| (m & 0o7777) as u16);
            a.uid = c.uid.unwrap_or(a.uid);
            a.gid = c.gid.unwrap_or(a.gid);
            a.size = c.size.unwrap_or(a.size);
            a.atime = c.atime.map_or(a.atime, time_of);
            a.mtime = c.mtime.map_or(a.mtime, time_of);
            a.ctime = Timestamp::now();
        }))
    }

    fn mkdir(
        &self,
        req: &RequestInfo,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
    ) -> Result<Attr, Errno> {
        self.make(
            req,
            parent,
            name,
            FileKind::Directory,
            apply_umask(mode, umask),
            Vec::new(),
        )
    }

    fn symlink(
        &self,
        req: &RequestInfo,
        parent: u64,
        name: &[u8],
        target: &[u8],
    ) -> Result<Attr, Errno> {
        let kind = FileKind::Symlink;
        self.make(req, parent, name, kind, 0o777, target.to_vec())
    }

    fn readlink(&self, _req: &RequestInfo, ino: u64) -> Result<Vec<u8>, Errno> {
        let nodes = self.nodes.lock();
        nodes
            .get(&ino)
            .map(|n| n.target.clone())
            .ok_or(Errno::ENOENT)
    }

    fn unlink(&self, _req: &RequestInfo, parent: u64, name: &[u8]) -> Result<(), Errno> {
        self.remove(parent, name, false)
    }

    fn rmdir(&self, _req: &RequestInfo, parent: u64, name: &[u8]) -> Result<(), Errno> {
        self.remove(parent, name, true)
    }

    fn open(&self, _req: &RequestInfo, ino: u64, flags: i32, reply: Deferred<Opened>) {
        let flags = open_flags(&self.options, flags);
        reply(self.attr(ino).map(|_| Opened { fh: 0, flags }))
    }

    fn read(
        &self,
        _req: &RequestInfo,
        ino: u64,
        _fh: u64,
        offset: u64,
        size: u32,
        reply: &mut dyn FnMut(&[u8]),
    ) -> Result<(), Errno> {
        let attr = self.attr(ino)?;
        let len = attr.size.saturating_sub(offset).min(u64::from(size));
        reply(&vec![0; len as usize]);
        Ok(())
    }

    fn write(
        &self,
        _req: &RequestInfo,
        ino: u64,
        args: WriteArgs,
        data: &[u8],
    ) -> Result<u32, Errno> {
        let end = args.offset + data.len() as u64;
        self.update(ino, |a| {
            a.size = a.size.max(end);
            a.mtime = Timestamp::now();
        })?;
        Ok(data.len() as u32)
    }

    fn flush(&self, _req: &RequestInfo, _ino: u64, _fh: u64) -> Result<(), Errno> {
        Ok(())
    }

    fn fsync(&self, _req: &RequestInfo, _ino: u64, _fh: u64, _datasync: bool) -> Result<(), Errno> {
        Ok(())
    }

    fn opendir(&self, _req: &RequestInfo, ino: u64, _flags: i32) -> Result<Opened, Errno> {
        match self.attr(ino)?.kind {
            FileKind::Directory => Ok(Opened { fh: 0, flags: 0 }),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn readdir(
        &self,
        _req: &RequestInfo,
        ino: u64,
        _fh: u64,
        offset: u64,
        sink: &mut dyn DirSink,
    ) -> Result<(), Errno> {
        self.list(ino, offset, |attr, next, name| {
            sink.add(attr.ino, next, attr.kind, name)
        })
    }

    fn readdirplus(
        &self,
        _req: &RequestInfo,
        ino: u64,
        _fh: u64,
        offset: u64,
        sink: &mut dyn DirPlusSink,
    ) -> Result<(), Errno> {
        self.list(ino, offset, |attr, next, name| sink.add(attr, next, name))
    }

    fn statfs(&self, _req: &RequestInfo, _ino: u64) -> Result<Statfs, Errno> {
        let blocks = 1 << 20; // 4 GiB of 4 KiB blocks: room for every benchmark file
        Ok(Statfs {
            blocks,
            bfree: blocks,
            bavail: blocks,
            files: 1 << 20,
            ffree: 1 << 20,
            bsize: 4096,
            namelen: 255,
            frsize: 4096,
        })
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
        let attr = self.make(
            req,
            parent,
            name,
            FileKind::Regular,
            apply_umask(mode, umask),
            Vec::new(),
        )?;
        let flags = open_flags(&self.options, flags);
        Ok((attr, Opened { fh: 0, flags }))
    }

    fn fallocate(
        &self,
        _req: &RequestInfo,
        ino: u64,
        _fh: u64,
        offset: u64,
        length: u64,
        _mode: i32,
    ) -> Result<(), Errno> {
        self.update(ino, |a| a.size = a.size.max(offset + length))
            .map(|_| ())
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    // RUST_LOG=fuser=debug lists every request fuser serves, to compare with warabifs'
    // own `-o log_level=fuser=debug` log.
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
    let failed = |why: String| std::io::Error::other(why);
    let wanted = wants_uring(args.io_uring).map_err(failed)?;
    // Resolved before mounting, as warabifs does: once mounted, resolving the path
    // would ask the not yet running session about its own root.
    let defaults = MountConfig::new(PathBuf::new(), args.mountpoint.canonicalize()?);
    let ops = Arc::new(Floor::new(options));
    let transport = Arc::new(Transport::default());
    let adapter = FuserAdapter::new(Arc::clone(&ops), wanted.is_ok(), Arc::clone(&transport));
    let session = Session::new(adapter, &defaults.mountpoint, &config)?;
    let rings = start_rings(args.io_uring, wanted, &transport, &session, ops).map_err(failed)?;
    // The same readahead and dirty-page share as a warabifs mount with default options.
    tune_page_cache(&defaults.mountpoint, "fuse.fuse_floor", &defaults);
    let result = session.run();
    drop(rings);
    result
}
