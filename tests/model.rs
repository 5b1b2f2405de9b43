//! Model test of the FUSE-free core: random sequences of operations run against
//! `warabifs::fs::WarabiFs` on a real small pool in /dev/shm and against a plain
//! in-memory model of the same tree. Every result (errno or value) is compared after
//! each step, and the whole tree (names, kinds, sizes, contents, links, attributes) at
//! the end.
//!
//! Crashes: a `Crash` step drops the file system without syncing (the daemon dying, as
//! docs/SEMANTICS.md §3.3 calls it) and mounts the pool again. Then every namespace
//! change is there (§3.1: one transaction each), open handles are gone and files
//! unlinked while open are reclaimed (§3.4). A file has its last committed size and
//! zero tail; its bytes within the committed stored bytes show the data written last,
//! and the rest of its size reads as zeros (§3.3). What was committed when is what the
//! model tracks per file: every persist (§3.2: fsync, release, a sync write, and every
//! metadata transaction on the file) commits the file as it is, and a write may first
//! move the file to a bigger region, committing it as it was before that write.
//!
//! `PROPTEST_CASES` sets the number of cases (256 without it); a failure is shrunk to
//! a short sequence of steps, printed with the seed to replay it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use common::{caller, create_pool, mount_pool, pattern, scratch_pool, Scratch, KIB, MIB};
use warabifs::fs::{Fh, FileKind, RenameMode, SetAttr, WarabiFs, REGION_ID_XATTR, ROOT_INO};

/// Small enough to make quickly, big enough that no sequence runs out of room.
const POOL_SIZE: u64 = 24 * MIB;
const NAME_MAX: usize = 255;
const SYMLINK_MAX: usize = 4096;
const XATTR_SIZE_MAX: usize = 64 * KIB as usize;
const XATTR_CREATE: i32 = 1;
const XATTR_REPLACE: i32 = 2;
const SEEK_DATA: i32 = 3;
const SEEK_HOLE: i32 = 4;

type Res<T> = Result<T, i32>;

/// What the tests compare of an inode's attributes (times are not modelled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    ino: u64,
    kind: FileKind,
    size: u64,
    nlink: u32,
    perm: u16,
}

// ------------------------------------------------------------------ the core, adapted
// Every call into WarabiFs is in this section: a change of the core's signatures is
// adapted here and nowhere else.

/// The file system under test, on its own pool, with the handles the model opened.
struct Core {
    _scratch: Scratch,
    path: PathBuf,
    fs: Option<WarabiFs>,
    /// Model handle id -> the core's handle.
    handles: BTreeMap<usize, Fh>,
}

fn errno(e: warabifs::fs::FsError) -> i32 {
    e.errno().0
}

fn stat(attr: warabifs::fs::Attr) -> Stat {
    Stat {
        ino: attr.ino,
        kind: attr.kind,
        size: attr.size,
        nlink: attr.nlink,
        perm: attr.perm,
    }
}

impl Core {
    fn new() -> Core {
        let (scratch, path) = scratch_pool();
        let fs = create_pool(&path, POOL_SIZE);
        Core {
            _scratch: scratch,
            path,
            fs: Some(fs),
            handles: BTreeMap::new(),
        }
    }

    fn fs(&self) -> &WarabiFs {
        self.fs.as_ref().expect("mounted")
    }

    /// Drops the file system without syncing and mounts the pool again.
    fn crash(&mut self) {
        self.handles.clear();
        drop(self.fs.take());
        self.fs = Some(mount_pool(&self.path));
    }

    /// Persists everything (as an unmount does), then closes and mounts again.
    fn remount(&mut self) {
        self.fs().sync_all();
        self.crash();
    }

    fn lookup(&self, parent: u64, name: &[u8]) -> Res<Stat> {
        self.fs().lookup(parent, name).map(stat).map_err(errno)
    }

    fn getattr(&self, ino: u64) -> Res<Stat> {
        self.fs().getattr(ino).map(stat).map_err(errno)
    }

    fn create(&mut self, parent: u64, name: &[u8], handle: usize) -> Res<Stat> {
        let (attr, fh) = self
            .fs()
            .create(parent, name, 0o644, caller())
            .map_err(errno)?;
        self.handles.insert(handle, fh);
        Ok(stat(attr))
    }

    fn mknod(&self, parent: u64, name: &[u8], kind: u32) -> Res<Stat> {
        let fs = self.fs();
        fs.mknod(parent, name, kind | 0o644, 0, caller())
            .map(stat)
            .map_err(errno)
    }

    fn mkdir(&self, parent: u64, name: &[u8]) -> Res<Stat> {
        let fs = self.fs();
        fs.mkdir(parent, name, 0o755, caller())
            .map(stat)
            .map_err(errno)
    }

    fn symlink(&self, parent: u64, name: &[u8], target: &[u8]) -> Res<Stat> {
        let fs = self.fs();
        fs.symlink(parent, name, target, caller())
            .map(stat)
            .map_err(errno)
    }

    fn link(&self, ino: u64, parent: u64, name: &[u8]) -> Res<Stat> {
        self.fs().link(ino, parent, name).map(stat).map_err(errno)
    }

    fn unlink(&self, parent: u64, name: &[u8]) -> Res<()> {
        self.fs().unlink(parent, name).map_err(errno)
    }

    fn rmdir(&self, parent: u64, name: &[u8]) -> Res<()> {
        self.fs().rmdir(parent, name).map_err(errno)
    }

    fn rename(&self, from: (u64, &[u8]), to: (u64, &[u8]), mode: Mode) -> Res<()> {
        let mode = match mode {
            Mode::Replace => RenameMode::Replace,
            Mode::NoReplace => RenameMode::NoReplace,
            Mode::Exchange => RenameMode::Exchange,
        };
        let fs = self.fs();
        fs.rename(from.0, from.1, to.0, to.1, mode).map_err(errno)
    }

    fn fh(&self, handle: usize) -> Fh {
        self.handles[&handle]
    }

    fn write(&self, handle: usize, off: u64, data: &[u8], sync: bool) -> Res<usize> {
        let fs = self.fs();
        fs.write(self.fh(handle), off, data, sync).map_err(errno)
    }

    /// A read through the region slice (`read`) or into a buffer (`read_into`).
    fn read(&self, handle: usize, off: u64, len: u32, into_buffer: bool) -> Res<Vec<u8>> {
        let fh = self.fh(handle);
        if into_buffer {
            let mut buf = vec![0xEE; len as usize];
            let n = self.fs().read_into(fh, off, &mut buf).map_err(errno)?;
            buf.truncate(n);
            return Ok(buf);
        }
        self.fs()
            .read(fh, off, len, |bytes| bytes.to_vec())
            .map_err(errno)
    }

    /// The whole file, read without a handle (whose release would persist it).
    fn contents(&self, ino: u64) -> Res<Vec<u8>> {
        let size = self.getattr(ino)?.size;
        let fs = self.fs();
        fs.read_unopened(ino, 0, size as u32 + 1, |bytes| bytes.to_vec())
            .map_err(errno)
    }

    fn setattr(&self, ino: u64, change: SetAttr) -> Res<Stat> {
        self.fs().setattr(ino, change).map(stat).map_err(errno)
    }

    fn truncate(&self, ino: u64, size: u64) -> Res<Stat> {
        let change = SetAttr {
            size: Some(size),
            ..SetAttr::default()
        };
        self.setattr(ino, change)
    }

    fn chmod(&self, ino: u64, perm: u32) -> Res<Stat> {
        let change = SetAttr {
            mode: Some(perm),
            ..SetAttr::default()
        };
        self.setattr(ino, change)
    }

    fn fsync(&self, handle: usize) -> Res<()> {
        self.fs().fsync(self.fh(handle)).map_err(errno)
    }

    fn open(&mut self, ino: u64, write: bool, handle: usize) -> Res<()> {
        let fh = self.fs().open(ino, write).map_err(errno)?;
        self.handles.insert(handle, fh);
        Ok(())
    }

    fn release(&mut self, handle: usize) -> Res<()> {
        let fh = self
            .handles
            .remove(&handle)
            .expect("handle the model opened");
        self.fs().release(fh).map_err(errno)
    }

    fn setxattr(&self, ino: u64, name: &[u8], value: &[u8], flags: i32) -> Res<()> {
        let fs = self.fs();
        fs.setxattr(ino, name, value, flags).map_err(errno)
    }

    fn removexattr(&self, ino: u64, name: &[u8]) -> Res<()> {
        self.fs().removexattr(ino, name).map_err(errno)
    }

    fn getxattr(&self, ino: u64, name: &[u8]) -> Res<Vec<u8>> {
        self.fs().getxattr(ino, name).map_err(errno)
    }

    /// The attribute names, without the RegionID every file with a region shows.
    fn listxattr(&self, ino: u64) -> Res<BTreeSet<Vec<u8>>> {
        let list = self.fs().listxattr(ino).map_err(errno)?;
        let names = list.split(|&b| b == 0).filter(|n| !n.is_empty());
        Ok(names
            .filter(|n| *n != REGION_ID_XATTR)
            .map(<[u8]>::to_vec)
            .collect())
    }

    /// The whole listing, "." and ".." included: name -> (ino, kind).
    fn readdir(&self, ino: u64) -> Res<BTreeMap<Vec<u8>, (u64, FileKind)>> {
        let mut listing = BTreeMap::new();
        let mut twice = None;
        self.fs()
            .readdir(ino, 0, |e| {
                if listing.insert(e.name.to_vec(), (e.ino, e.kind)).is_some() {
                    twice = Some(e.name.to_vec());
                }
                false
            })
            .map_err(errno)?;
        assert_eq!(twice, None, "readdir listed a name twice");
        Ok(listing)
    }

    fn readlink(&self, ino: u64) -> Res<Vec<u8>> {
        self.fs().readlink(ino).map_err(errno)
    }

    fn lseek(&self, ino: u64, off: u64, whence: i32) -> Res<u64> {
        self.fs().lseek(ino, off, whence).map_err(errno)
    }

    /// Inodes statfs counts.
    fn files(&self) -> u64 {
        self.fs().statfs().files
    }
}

// ------------------------------------------------------------------ the operations

/// A node picked by position in the model's listing when the step runs: `Dir` among
/// the live directories, `File` among the regular files, `Any` among every live inode
/// (open unlinked ones last).
#[derive(Clone, Copy, Debug)]
enum Pick {
    Dir(usize),
    File(usize),
    Any(usize),
}

/// A name in a directory: any of the step names in a picked directory, or an entry
/// that exists when the step runs (`Entry`; `DirEntry` names a directory).
#[derive(Clone, Copy, Debug)]
enum At {
    Name(Pick, u8),
    Entry(usize),
    DirEntry(usize),
}

/// An open handle picked by position when the step runs: `Writable` among those open
/// for writing a regular file, `Any` among all.
#[derive(Clone, Copy, Debug)]
enum HandlePick {
    Writable(usize),
    Any(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Replace,
    NoReplace,
    Exchange,
}

#[derive(Clone, Debug)]
enum Op {
    Create {
        dir: Pick,
        name: u8,
    },
    Mknod {
        dir: Pick,
        name: u8,
        fifo: bool,
    },
    Mkdir {
        dir: Pick,
        name: u8,
    },
    Symlink {
        dir: Pick,
        name: u8,
        target: u8,
    },
    Link {
        node: Pick,
        dir: Pick,
        name: u8,
    },
    Unlink {
        at: At,
    },
    Rmdir {
        at: At,
    },
    Rename {
        from: At,
        to: At,
        mode: Mode,
    },
    Write {
        handle: HandlePick,
        off: u64,
        len: usize,
        seed: u8,
        sync: bool,
    },
    Truncate {
        node: Pick,
        size: u64,
    },
    Chmod {
        node: Pick,
        perm: u16,
    },
    Read {
        handle: HandlePick,
        off: u64,
        len: u32,
        into_buffer: bool,
    },
    Lseek {
        node: Pick,
        off: u64,
        hole: bool,
    },
    Fsync {
        handle: HandlePick,
    },
    Open {
        node: Pick,
        write: bool,
    },
    Release {
        handle: usize,
    },
    SetXattr {
        node: Pick,
        name: u8,
        len: usize,
        seed: u8,
        flags: i32,
    },
    RemoveXattr {
        node: Pick,
        name: u8,
    },
    GetXattr {
        node: Pick,
        name: u8,
    },
    Lookup {
        at: At,
    },
    Readdir {
        dir: Pick,
    },
    Readlink {
        node: Pick,
    },
    Crash,
    Remount,
}

/// Names a step may use: five short ones, often taken, and one too long.
fn name(ix: u8) -> Vec<u8> {
    match ix {
        0..=4 => vec![b'a' + ix],
        _ => vec![b'n'; NAME_MAX + 1],
    }
}

fn symlink_target(ix: u8) -> Vec<u8> {
    match ix {
        0 => b"a".to_vec(),
        1 => b"../b/c".to_vec(),
        2 => vec![b't'; SYMLINK_MAX],
        3 => vec![b't'; SYMLINK_MAX + 1],
        _ => Vec::new(),
    }
}

fn xattr_name(ix: u8) -> Vec<u8> {
    match ix {
        0 => b"user.a".to_vec(),
        1 => b"user.b".to_vec(),
        2 => b"trusted.c".to_vec(),
        3 => b"system.posix_acl_access".to_vec(),
        4 => Vec::new(),
        _ => REGION_ID_XATTR.to_vec(),
    }
}

fn xattr_value(len: usize, seed: u8, step: usize) -> Vec<u8> {
    pattern(len, (step as u64) << 8 | u64::from(seed))
}

fn write_data(len: usize, seed: u8, step: usize) -> Vec<u8> {
    pattern(len, (step as u64) << 8 | u64::from(seed) | 1 << 40)
}

fn pick_dir() -> impl Strategy<Value = Pick> {
    prop_oneof![
        12 => (0..8usize).prop_map(Pick::Dir),
        1 => (0..16usize).prop_map(Pick::Any),
    ]
}

fn pick_node() -> impl Strategy<Value = Pick> {
    prop_oneof![
        1 => (0..24usize).prop_map(Pick::Any),
        1 => (0..12usize).prop_map(Pick::File),
    ]
}

/// Mostly a regular file, for the data operations.
fn pick_file() -> impl Strategy<Value = Pick> {
    prop_oneof![
        1 => (0..24usize).prop_map(Pick::Any),
        12 => (0..12usize).prop_map(Pick::File),
    ]
}

/// `named`, `entry` and `dir_entry` weigh the three kinds of [`At`].
fn at(named: u32, entry: u32, dir_entry: u32) -> impl Strategy<Value = At> {
    prop_oneof![
        named => (pick_dir(), name_ix()).prop_map(|(dir, name)| At::Name(dir, name)),
        entry => (0..24usize).prop_map(At::Entry),
        dir_entry => (0..8usize).prop_map(At::DirEntry),
    ]
}

fn pick_handle() -> impl Strategy<Value = HandlePick> {
    prop_oneof![
        8 => (0..8usize).prop_map(HandlePick::Writable),
        1 => (0..8usize).prop_map(HandlePick::Any),
    ]
}

fn name_ix() -> impl Strategy<Value = u8> {
    prop_oneof![20 => 0..5u8, 1 => Just(5u8)]
}

fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => Just(0u64),
        4 => 0..8 * KIB,
        3 => 0..160 * KIB,
    ]
}

fn length() -> impl Strategy<Value = usize> {
    prop_oneof![
        1 => Just(0usize),
        6 => 1..4096usize,
        3 => 1..40_000usize,
    ]
}

fn rename_mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        3 => Just(Mode::Replace),
        1 => Just(Mode::NoReplace),
        2 => Just(Mode::Exchange),
    ]
}

fn xattr_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        12 => 0..200usize,
        1 => Just(XATTR_SIZE_MAX),
        1 => Just(XATTR_SIZE_MAX + 1),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (pick_dir(), name_ix()).prop_map(|(dir, name)| Op::Create { dir, name }),
        2 => (pick_dir(), name_ix(), any::<bool>())
            .prop_map(|(dir, name, fifo)| Op::Mknod { dir, name, fifo }),
        4 => (pick_dir(), name_ix()).prop_map(|(dir, name)| Op::Mkdir { dir, name }),
        2 => (pick_dir(), name_ix(), 0..5u8)
            .prop_map(|(dir, name, target)| Op::Symlink { dir, name, target }),
        3 => (pick_file(), pick_dir(), name_ix())
            .prop_map(|(node, dir, name)| Op::Link { node, dir, name }),
        4 => at(1, 3, 0).prop_map(|at| Op::Unlink { at }),
        3 => at(1, 1, 3).prop_map(|at| Op::Rmdir { at }),
        8 => (at(1, 3, 1), at(2, 1, 1), rename_mode())
            .prop_map(|(from, to, mode)| Op::Rename { from, to, mode }),
        12 => (pick_handle(), offset(), length(), any::<u8>(), prop::bool::weighted(0.15))
            .prop_map(|(handle, off, len, seed, sync)| Op::Write { handle, off, len, seed, sync }),
        3 => (pick_file(), prop_oneof![Just(0u64), offset()])
            .prop_map(|(node, size)| Op::Truncate { node, size }),
        1 => (pick_node(), 0..0o1000u16).prop_map(|(node, perm)| Op::Chmod { node, perm }),
        4 => ((0..8usize).prop_map(HandlePick::Any), offset(), 1..50_000u32, any::<bool>())
            .prop_map(|(handle, off, len, into_buffer)| Op::Read { handle, off, len, into_buffer }),
        1 => (pick_file(), offset(), any::<bool>())
            .prop_map(|(node, off, hole)| Op::Lseek { node, off, hole }),
        3 => pick_handle().prop_map(|handle| Op::Fsync { handle }),
        5 => (prop_oneof![3 => pick_file(), 1 => pick_node()], any::<bool>())
            .prop_map(|(node, write)| Op::Open { node, write }),
        4 => (0..8usize).prop_map(|handle| Op::Release { handle }),
        3 => (pick_node(), prop_oneof![8 => 0..3u8, 1 => 3..6u8], xattr_len(), any::<u8>(), 0..4i32)
            .prop_map(|(node, name, len, seed, flags)| Op::SetXattr { node, name, len, seed, flags }),
        2 => (pick_node(), 0..6u8).prop_map(|(node, name)| Op::RemoveXattr { node, name }),
        1 => (pick_node(), 0..4u8).prop_map(|(node, name)| Op::GetXattr { node, name }),
        2 => at(1, 1, 0).prop_map(|at| Op::Lookup { at }),
        2 => pick_dir().prop_map(|dir| Op::Readdir { dir }),
        1 => pick_node().prop_map(|node| Op::Readlink { node }),
        3 => Just(Op::Crash),
        1 => Just(Op::Remount),
    ]
}

// ------------------------------------------------------------------ the model

/// A model inode's id (the root is 0); the runner maps it to the core's number.
type Mid = usize;
const ROOT: Mid = 0;

#[derive(Clone, Debug)]
struct FileBody {
    /// The file's bytes: its size is their length.
    bytes: Vec<u8>,
    /// How many of them the region stores; the rest is the zero tail (SEEK_HOLE).
    data_len: u64,
    /// (size, data_len) as they may stand committed on the pool: the last persist,
    /// and the state before each write since, which may have moved the file.
    committed: Vec<(u64, u64)>,
}

impl FileBody {
    fn now(&self) -> (u64, u64) {
        (self.bytes.len() as u64, self.data_len)
    }

    /// What a crash leaves when (size, data_len) was committed: the bytes written
    /// within the stored bytes, then zeros.
    fn after_crash(&self, (size, data_len): (u64, u64)) -> Vec<u8> {
        let mut bytes = self.bytes[..data_len as usize].to_vec();
        bytes.resize(size as usize, 0);
        bytes
    }
}

#[derive(Clone, Debug)]
enum Body {
    File(FileBody),
    Dir {
        entries: BTreeMap<Vec<u8>, Mid>,
        parent: Mid,
        /// Removed while open: no entries, no links, kept until the last release.
        removed: bool,
    },
    Symlink(Vec<u8>),
    Fifo,
}

#[derive(Clone, Debug)]
struct Node {
    body: Body,
    /// Names of a non-directory (directories count theirs from the tree).
    links: u32,
    perm: u16,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    open: u32,
}

impl Node {
    fn new(body: Body, perm: u16) -> Node {
        Node {
            body,
            links: 1,
            perm,
            xattrs: BTreeMap::new(),
            open: 0,
        }
    }

    fn kind(&self) -> FileKind {
        match self.body {
            Body::File(_) => FileKind::Regular,
            Body::Dir { .. } => FileKind::Directory,
            Body::Symlink(_) => FileKind::Symlink,
            Body::Fifo => FileKind::Fifo,
        }
    }

    fn is_live_dir(&self) -> bool {
        matches!(self.body, Body::Dir { removed: false, .. })
    }

    fn entries(&self) -> Option<&BTreeMap<Vec<u8>, Mid>> {
        match &self.body {
            Body::Dir {
                entries,
                removed: false,
                ..
            } => Some(entries),
            _ => None,
        }
    }

    fn file(&mut self) -> Option<&mut FileBody> {
        match &mut self.body {
            Body::File(f) => Some(f),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Model {
    nodes: BTreeMap<Mid, Node>,
    next_mid: Mid,
    /// Open handles: id -> (inode, opened for writing).
    handles: BTreeMap<usize, (Mid, bool)>,
    next_handle: usize,
}

fn check_name(name: &[u8]) -> Res<()> {
    if name.len() > NAME_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    Ok(())
}

impl Model {
    fn new() -> Model {
        let root = Node::new(
            Body::Dir {
                entries: BTreeMap::new(),
                parent: ROOT,
                removed: false,
            },
            0o755,
        );
        Model {
            nodes: BTreeMap::from([(ROOT, root)]),
            next_mid: 1,
            ..Model::default()
        }
    }

    fn node(&self, mid: Mid) -> &Node {
        &self.nodes[&mid]
    }

    fn node_mut(&mut self, mid: Mid) -> &mut Node {
        self.nodes.get_mut(&mid).expect("live node")
    }

    fn entries_mut(&mut self, dir: Mid) -> &mut BTreeMap<Vec<u8>, Mid> {
        match &mut self.node_mut(dir).body {
            Body::Dir { entries, .. } => entries,
            _ => panic!("not a directory"),
        }
    }

    fn nlink(&self, mid: Mid) -> u32 {
        let node = self.node(mid);
        match &node.body {
            Body::Dir { removed: true, .. } => 0,
            Body::Dir { entries, .. } => {
                let subdirs = entries.values().filter(|&&m| self.node(m).is_live_dir());
                2 + subdirs.count() as u32
            }
            _ => node.links,
        }
    }

    fn size(&self, mid: Mid) -> u64 {
        match &self.node(mid).body {
            Body::File(f) => f.bytes.len() as u64,
            Body::Symlink(target) => target.len() as u64,
            Body::Dir { .. } | Body::Fifo => 0,
        }
    }

    /// Every reachable node in path order (hard links once per name), then the
    /// open unlinked ones.
    fn listing(&self) -> Vec<Mid> {
        let mut out = Vec::new();
        self.walk(ROOT, &mut out);
        let orphans = self.nodes.keys().filter(|&&m| self.is_orphan(m));
        out.extend(orphans);
        out
    }

    fn walk(&self, dir: Mid, out: &mut Vec<Mid>) {
        out.push(dir);
        for &child in self
            .node(dir)
            .entries()
            .into_iter()
            .flat_map(|e| e.values())
        {
            match self.node(child).is_live_dir() {
                true => self.walk(child, out),
                false => out.push(child),
            }
        }
    }

    fn is_orphan(&self, mid: Mid) -> bool {
        self.nlink(mid) == 0
    }

    fn resolve(&self, pick: Pick) -> Mid {
        let listing = self.listing();
        let (i, wanted): (usize, fn(&Node) -> bool) = match pick {
            Pick::Any(i) => return listing[i % listing.len()],
            Pick::Dir(i) => (i, Node::is_live_dir),
            Pick::File(i) => (i, |n| matches!(n.body, Body::File(_))),
        };
        let picked: Vec<Mid> = listing
            .iter()
            .copied()
            .filter(|&m| wanted(self.node(m)))
            .collect();
        match picked.is_empty() {
            true => listing[i % listing.len()],
            false => picked[i % picked.len()],
        }
    }

    /// A directory and a name in it.
    fn resolve_at(&self, at: At) -> (Mid, Vec<u8>) {
        let (i, dirs_only) = match at {
            At::Name(dir, ix) => return (self.resolve(dir), name(ix)),
            At::Entry(i) => (i, false),
            At::DirEntry(i) => (i, true),
        };
        let mut entries = Vec::new();
        for dir in self.listing() {
            for (name, &child) in self.node(dir).entries().into_iter().flatten() {
                if !dirs_only || self.node(child).is_live_dir() {
                    entries.push((dir, name.clone()));
                }
            }
        }
        match entries.is_empty() {
            true => (ROOT, name(0)),
            false => entries.swap_remove(i % entries.len()),
        }
    }

    /// An open handle, if there is any.
    fn resolve_handle(&self, pick: HandlePick) -> Option<usize> {
        let all: Vec<usize> = self.handles.keys().copied().collect();
        let (i, picked) = match pick {
            HandlePick::Any(i) => (i, all.clone()),
            HandlePick::Writable(i) => {
                let writable = all.iter().copied().filter(|h| {
                    let (mid, writes) = self.handles[h];
                    writes && self.node(mid).kind() == FileKind::Regular
                });
                (i, writable.collect())
            }
        };
        let from = if picked.is_empty() { all } else { picked };
        (!from.is_empty()).then(|| from[i % from.len()])
    }

    fn child(&self, dir: Mid, name: &[u8]) -> Option<Mid> {
        self.node(dir).entries()?.get(name).copied()
    }

    /// The core's lookup: a parent that is no directory first, then a name too long.
    fn lookup(&self, dir: Mid, name: &[u8]) -> Res<Mid> {
        if !self.node(dir).is_live_dir() {
            return Err(libc::ENOTDIR);
        }
        check_name(name)?;
        self.child(dir, name).ok_or(libc::ENOENT)
    }

    /// A new node named `name` in `dir`.
    fn make(&mut self, dir: Mid, name: &[u8], body: Body, perm: u16) -> Res<Mid> {
        check_name(name)?;
        if !self.node(dir).is_live_dir() {
            return Err(libc::ENOTDIR);
        }
        if self.child(dir, name).is_some() {
            return Err(libc::EEXIST);
        }
        let mid = self.next_mid;
        self.next_mid += 1;
        self.nodes.insert(mid, Node::new(body, perm));
        self.entries_mut(dir).insert(name.to_vec(), mid);
        Ok(mid)
    }

    fn new_file() -> Body {
        Body::File(FileBody {
            bytes: Vec::new(),
            data_len: 0,
            committed: vec![(0, 0)],
        })
    }

    fn mkdir(&mut self, dir: Mid, name: &[u8]) -> Res<Mid> {
        let body = Body::Dir {
            entries: BTreeMap::new(),
            parent: dir,
            removed: false,
        };
        self.make(dir, name, body, 0o755)
    }

    fn symlink(&mut self, dir: Mid, name: &[u8], target: &[u8]) -> Res<Mid> {
        if target.len() > SYMLINK_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        if target.is_empty() {
            return Err(libc::ENOENT);
        }
        self.make(dir, name, Body::Symlink(target.to_vec()), 0o777)
    }

    /// A metadata transaction on the file, or its fsync or release: it is committed
    /// as it stands.
    fn persist(&mut self, mid: Mid) {
        if let Some(file) = self.nodes.get_mut(&mid).and_then(Node::file) {
            file.committed = vec![file.now()];
        }
    }

    fn link(&mut self, mid: Mid, dir: Mid, name: &[u8]) -> Res<()> {
        check_name(name)?;
        if !self.node(dir).is_live_dir() {
            return Err(libc::ENOTDIR);
        }
        if self.child(dir, name).is_some() {
            return Err(libc::EEXIST);
        }
        if self.node(mid).kind() == FileKind::Directory {
            return Err(libc::EPERM);
        }
        if self.node(mid).links == 0 {
            return Err(libc::ENOENT);
        }
        self.entries_mut(dir).insert(name.to_vec(), mid);
        self.node_mut(mid).links += 1;
        self.persist(mid);
        Ok(())
    }

    /// Takes a name away from `mid` (its entry is gone already): at no links and no
    /// handles it is freed, else committed with one link fewer.
    fn drop_link(&mut self, mid: Mid) {
        let node = self.node_mut(mid);
        match &mut node.body {
            Body::Dir { removed, .. } => *removed = true,
            _ => node.links -= 1,
        }
        if self.nlink(mid) == 0 && self.node(mid).open == 0 {
            self.nodes.remove(&mid);
            return;
        }
        self.persist(mid);
    }

    fn remove(&mut self, dir: Mid, name: &[u8], want_dir: bool) -> Res<()> {
        let mid = self.lookup(dir, name)?;
        let node = self.node(mid);
        match (want_dir, node.is_live_dir()) {
            (true, false) => return Err(libc::ENOTDIR),
            (false, true) => return Err(libc::EISDIR),
            (true, true) if !node.entries().expect("dir").is_empty() => {
                return Err(libc::ENOTEMPTY)
            }
            _ => {}
        }
        self.entries_mut(dir).remove(name);
        self.drop_link(mid);
        Ok(())
    }

    /// Whether `ancestor` is `mid` or one of its ancestors.
    fn is_ancestor(&self, ancestor: Mid, mut mid: Mid) -> bool {
        loop {
            if mid == ancestor {
                return true;
            }
            match self.node(mid).body {
                Body::Dir { parent, .. } if mid != ROOT => mid = parent,
                _ => return false,
            }
        }
    }

    fn rename(&mut self, from: (Mid, &[u8]), to: (Mid, &[u8]), mode: Mode) -> Res<()> {
        let ((dir, name), (newdir, newname)) = (from, to);
        check_name(newname)?;
        let source = self.child(dir, name).ok_or(libc::ENOENT)?;
        let target = self.child(newdir, newname);
        if !self.node(newdir).is_live_dir() {
            return Err(libc::ENOTDIR);
        }
        let source_is_dir = self.node(source).is_live_dir();
        if source_is_dir && self.is_ancestor(source, newdir) {
            return Err(libc::EINVAL);
        }
        match (mode, target) {
            (Mode::NoReplace, Some(_)) => Err(libc::EEXIST),
            (Mode::Exchange, None) => Err(libc::ENOENT),
            (Mode::Exchange, Some(t)) => {
                if self.node(t).is_live_dir() && self.is_ancestor(t, dir) {
                    return Err(libc::EINVAL);
                }
                self.exchange(from, source, to, t);
                Ok(())
            }
            (_, Some(t)) if t == source => Ok(()),
            (_, Some(t)) => {
                let target_is_dir = self.node(t).is_live_dir();
                match (source_is_dir, target_is_dir) {
                    (true, false) => return Err(libc::ENOTDIR),
                    (false, true) => return Err(libc::EISDIR),
                    (true, true) if !self.node(t).entries().expect("dir").is_empty() => {
                        return Err(libc::ENOTEMPTY)
                    }
                    _ => {}
                }
                self.entries_mut(newdir).remove(newname);
                self.drop_link(t);
                self.move_entry(from, source, to);
                Ok(())
            }
            (_, None) => {
                self.move_entry(from, source, to);
                Ok(())
            }
        }
    }

    fn move_entry(
        &mut self,
        (dir, name): (Mid, &[u8]),
        source: Mid,
        (newdir, newname): (Mid, &[u8]),
    ) {
        self.entries_mut(dir).remove(name);
        self.entries_mut(newdir).insert(newname.to_vec(), source);
        self.set_parent(source, newdir);
        self.persist(source);
    }

    fn exchange(
        &mut self,
        (dir, name): (Mid, &[u8]),
        a: Mid,
        (newdir, newname): (Mid, &[u8]),
        b: Mid,
    ) {
        if a == b {
            return;
        }
        self.entries_mut(newdir).insert(newname.to_vec(), a);
        self.entries_mut(dir).insert(name.to_vec(), b);
        self.set_parent(a, newdir);
        self.set_parent(b, dir);
        self.persist(a);
        self.persist(b);
    }

    fn set_parent(&mut self, mid: Mid, new_parent: Mid) {
        if let Body::Dir { parent, .. } = &mut self.node_mut(mid).body {
            *parent = new_parent;
        }
    }

    fn write(&mut self, handle: usize, off: u64, data: &[u8], sync: bool) -> Res<usize> {
        let (mid, writes) = self.handles[&handle];
        if !writes {
            return Err(libc::EBADF);
        }
        let Some(file) = self.node_mut(mid).file() else {
            return Err(libc::EBADF);
        };
        if data.is_empty() {
            return Ok(0);
        }
        // The write may first move the file to a bigger region, which commits it.
        let before = file.now();
        if !file.committed.contains(&before) {
            file.committed.push(before);
        }
        let end = off as usize + data.len();
        if file.bytes.len() < end {
            file.bytes.resize(end, 0);
        }
        file.bytes[off as usize..end].copy_from_slice(data);
        file.data_len = file.data_len.max(end as u64);
        if sync {
            self.persist(mid);
        }
        Ok(data.len())
    }

    fn read(&self, handle: usize, off: u64, len: u32) -> Res<Vec<u8>> {
        let (mid, _) = self.handles[&handle];
        match &self.node(mid).body {
            Body::File(f) => {
                let start = (off as usize).min(f.bytes.len());
                let end = (start + len as usize).min(f.bytes.len());
                Ok(f.bytes[start..end].to_vec())
            }
            Body::Dir { .. } => Err(libc::EISDIR),
            _ => unreachable!("reads only files and directories"),
        }
    }

    fn truncate(&mut self, mid: Mid, size: u64) -> Res<()> {
        let node = self.node_mut(mid);
        let file = match &mut node.body {
            Body::File(f) => f,
            Body::Dir { .. } => return Err(libc::EISDIR),
            _ => return Err(libc::EINVAL),
        };
        file.bytes.resize(size as usize, 0);
        file.data_len = file.data_len.min(size);
        self.persist(mid);
        Ok(())
    }

    fn chmod(&mut self, mid: Mid, perm: u16) {
        self.node_mut(mid).perm = perm;
        self.persist(mid);
    }

    fn lseek(&self, mid: Mid, off: u64, whence: i32) -> Res<u64> {
        let Body::File(f) = &self.node(mid).body else {
            unreachable!("lseek only of files");
        };
        let (size, data_len) = f.now();
        match whence {
            _ if off >= size => Err(libc::ENXIO),
            SEEK_DATA if off < data_len => Ok(off),
            SEEK_DATA => Err(libc::ENXIO),
            _ => Ok(off.max(data_len)),
        }
    }

    fn open(&mut self, mid: Mid, write: bool) -> Res<usize> {
        if write && self.node(mid).kind() == FileKind::Directory {
            return Err(libc::EISDIR);
        }
        self.node_mut(mid).open += 1;
        let handle = self.next_handle;
        self.next_handle += 1;
        self.handles.insert(handle, (mid, write));
        Ok(handle)
    }

    fn release(&mut self, handle: usize) {
        let (mid, _) = self.handles.remove(&handle).expect("open handle");
        self.node_mut(mid).open -= 1;
        if self.nlink(mid) == 0 && self.node(mid).open == 0 {
            self.nodes.remove(&mid);
            return;
        }
        self.persist(mid);
    }

    fn setxattr(&mut self, mid: Mid, name: &[u8], value: &[u8], flags: i32) -> Res<()> {
        check_xattr_name(name)?;
        if value.len() > XATTR_SIZE_MAX {
            return Err(libc::E2BIG);
        }
        let exists = self.node(mid).xattrs.contains_key(name);
        match (exists, flags & (XATTR_CREATE | XATTR_REPLACE)) {
            (true, XATTR_CREATE) => return Err(libc::EEXIST),
            (false, XATTR_REPLACE) => return Err(libc::ENODATA),
            _ => {}
        }
        let node = self.node_mut(mid);
        node.xattrs.insert(name.to_vec(), value.to_vec());
        self.persist(mid);
        Ok(())
    }

    fn removexattr(&mut self, mid: Mid, name: &[u8]) -> Res<()> {
        check_xattr_name(name)?;
        if self.node_mut(mid).xattrs.remove(name).is_none() {
            return Err(libc::ENODATA);
        }
        self.persist(mid);
        Ok(())
    }

    fn getxattr(&self, mid: Mid, name: &[u8]) -> Res<Vec<u8>> {
        if name.starts_with(b"system.") {
            return Err(libc::ENOTSUP);
        }
        self.node(mid)
            .xattrs
            .get(name)
            .cloned()
            .ok_or(libc::ENODATA)
    }

    fn readlink(&self, mid: Mid) -> Res<Vec<u8>> {
        match &self.node(mid).body {
            Body::Symlink(target) => Ok(target.clone()),
            _ => Err(libc::EINVAL),
        }
    }

    /// After a crash: no handles, files unlinked while open reclaimed.
    fn crash(&mut self) {
        self.handles.clear();
        for node in self.nodes.values_mut() {
            node.open = 0;
        }
        let orphans: Vec<Mid> = self
            .nodes
            .keys()
            .copied()
            .filter(|&m| self.is_orphan(m))
            .collect();
        for mid in orphans {
            self.nodes.remove(&mid);
        }
    }

    /// After a clean unmount: everything committed as it stands.
    fn remount(&mut self) {
        let mids: Vec<Mid> = self.nodes.keys().copied().collect();
        for mid in mids {
            self.persist(mid);
        }
        self.crash();
    }
}

fn check_xattr_name(name: &[u8]) -> Res<()> {
    if name == REGION_ID_XATTR {
        return Err(libc::EPERM);
    }
    if name.is_empty() || name.len() > 255 {
        return Err(libc::ERANGE);
    }
    if name.starts_with(b"system.") {
        return Err(libc::ENOTSUP);
    }
    Ok(())
}

// ------------------------------------------------------------------ the runner

/// Fails the case (to be shrunk) with a message, like `prop_assert!`.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($arg)+)));
        }
    };
}

type Step = Result<(), TestCaseError>;

struct Runner {
    core: Core,
    model: Model,
    /// Model inode -> the core's inode number.
    inos: BTreeMap<Mid, u64>,
}

impl Runner {
    fn new() -> Runner {
        Runner {
            core: Core::new(),
            model: Model::new(),
            inos: BTreeMap::from([(ROOT, ROOT_INO)]),
        }
    }

    fn ino(&self, mid: Mid) -> u64 {
        self.inos[&mid]
    }

    fn expected_stat(&self, mid: Mid) -> Stat {
        let node = self.model.node(mid);
        Stat {
            ino: self.ino(mid),
            kind: node.kind(),
            size: self.model.size(mid),
            nlink: self.model.nlink(mid),
            perm: node.perm,
        }
    }

    /// Compares a result that names a node: the same errno, or the node's attributes.
    fn compare_stat(&self, what: &str, model: Res<Mid>, core: Res<Stat>) -> Step {
        match (model, core) {
            (Ok(mid), Ok(stat)) => {
                let expected = self.expected_stat(mid);
                ensure!(
                    stat == expected,
                    "{what}: core {stat:?}, model {expected:?}"
                );
                Ok(())
            }
            (model, core) => compare(what, model.map(|_| ()), core.map(|_| ())),
        }
    }

    /// A node the model just made: the core's number for it must be new.
    fn learn(&mut self, what: &str, model: Res<Mid>, core: &Res<Stat>) -> Step {
        if let (Ok(mid), Ok(stat)) = (model, core) {
            let taken = self.inos.values().any(|&ino| ino == stat.ino);
            ensure!(!taken, "{what}: inode number {} given out twice", stat.ino);
            self.inos.insert(mid, stat.ino);
        }
        Ok(())
    }

    fn make(&mut self, what: &str, model: Res<Mid>, core: Res<Stat>) -> Step {
        self.learn(what, model, &core)?;
        self.compare_stat(what, model, core)
    }

    fn step(&mut self, index: usize, op: &Op) -> Step {
        let what = format!("step {index} {op:?}");
        let m = &mut self.model;
        match *op {
            Op::Create { dir, name: n } => {
                let (dir, n) = (m.resolve(dir), name(n));
                let handle = m.next_handle;
                let model = m.make(dir, &n, Model::new_file(), 0o644);
                if let Ok(mid) = model {
                    m.open(mid, true).expect("a new file opens");
                }
                let core = self.core.create(self.ino(dir), &n, handle);
                self.make(&what, model, core)
            }
            Op::Mknod { dir, name: n, fifo } => {
                let (dir, n) = (m.resolve(dir), name(n));
                let (body, kind) = match fifo {
                    true => (Body::Fifo, libc::S_IFIFO),
                    false => (Model::new_file(), libc::S_IFREG),
                };
                let model = m.make(dir, &n, body, 0o644);
                let core = self.core.mknod(self.ino(dir), &n, kind);
                self.make(&what, model, core)
            }
            Op::Mkdir { dir, name: n } => {
                let (dir, n) = (m.resolve(dir), name(n));
                let model = m.mkdir(dir, &n);
                let core = self.core.mkdir(self.ino(dir), &n);
                self.make(&what, model, core)
            }
            Op::Symlink {
                dir,
                name: n,
                target,
            } => {
                let (dir, n, target) = (m.resolve(dir), name(n), symlink_target(target));
                let model = m.symlink(dir, &n, &target);
                let core = self.core.symlink(self.ino(dir), &n, &target);
                self.make(&what, model, core)
            }
            Op::Link { node, dir, name: n } => {
                let (node, dir, n) = (m.resolve(node), m.resolve(dir), name(n));
                let model = m.link(node, dir, &n).map(|()| node);
                let core = self.core.link(self.ino(node), self.ino(dir), &n);
                self.compare_stat(&what, model, core)
            }
            Op::Unlink { at } => {
                let (dir, n) = m.resolve_at(at);
                let model = m.remove(dir, &n, false);
                let core = self.core.unlink(self.ino(dir), &n);
                compare(&what, model, core)
            }
            Op::Rmdir { at } => {
                let (dir, n) = m.resolve_at(at);
                let model = m.remove(dir, &n, true);
                let core = self.core.rmdir(self.ino(dir), &n);
                compare(&what, model, core)
            }
            Op::Rename { from, to, mode } => {
                let (dir, n) = m.resolve_at(from);
                let (newdir, newn) = m.resolve_at(to);
                let model = m.rename((dir, &n), (newdir, &newn), mode);
                let (from, to) = ((self.ino(dir), &n[..]), (self.ino(newdir), &newn[..]));
                let core = self.core.rename(from, to, mode);
                compare(&what, model, core)
            }
            Op::Write {
                handle,
                off,
                len,
                seed,
                sync,
            } => {
                let Some(handle) = m.resolve_handle(handle) else {
                    return Ok(());
                };
                let data = write_data(len, seed, index);
                let model = m.write(handle, off, &data, sync);
                let core = self.core.write(handle, off, &data, sync);
                compare(&what, model, core)
            }
            Op::Truncate { node, size } => {
                let node = m.resolve(node);
                let model = m.truncate(node, size).map(|()| node);
                let core = self.core.truncate(self.ino(node), size);
                self.compare_stat(&what, model, core)
            }
            Op::Chmod { node, perm } => {
                let node = m.resolve(node);
                if !matches!(m.node(node).body, Body::File(_) | Body::Dir { .. }) {
                    return Ok(()); // the kernel changes a symlink's target instead
                }
                m.chmod(node, perm);
                let core = self.core.chmod(self.ino(node), u32::from(perm));
                self.compare_stat(&what, Ok(node), core)
            }
            Op::Read {
                handle,
                off,
                len,
                into_buffer,
            } => {
                let Some(handle) = m.resolve_handle(handle) else {
                    return Ok(());
                };
                let model = m.read(handle, off, len);
                let core = self.core.read(handle, off, len, into_buffer);
                compare(&what, model, core)
            }
            Op::Lseek { node, off, hole } => {
                let node = m.resolve(node);
                if m.node(node).kind() != FileKind::Regular {
                    return Ok(());
                }
                let whence = if hole { SEEK_HOLE } else { SEEK_DATA };
                let model = m.lseek(node, off, whence);
                let core = self.core.lseek(self.ino(node), off, whence);
                compare(&what, model, core)
            }
            Op::Fsync { handle } => {
                let Some(handle) = m.resolve_handle(handle) else {
                    return Ok(());
                };
                m.persist(m.handles[&handle].0);
                compare(&what, Ok(()), self.core.fsync(handle))
            }
            Op::Open { node, write } => {
                let node = m.resolve(node);
                if !matches!(m.node(node).body, Body::File(_) | Body::Dir { .. }) {
                    return Ok(());
                }
                let handle = m.next_handle;
                let model = m.open(node, write).map(|_| ());
                let core = self.core.open(self.ino(node), write, handle);
                compare(&what, model, core)
            }
            Op::Release { handle } => {
                let Some(&handle) = m.handles.keys().nth(handle % m.handles.len().max(1)) else {
                    return Ok(());
                };
                m.release(handle);
                compare(&what, Ok(()), self.core.release(handle))
            }
            Op::SetXattr {
                node,
                name,
                len,
                seed,
                flags,
            } => {
                let (node, name) = (m.resolve(node), xattr_name(name));
                let value = xattr_value(len, seed, index);
                let model = m.setxattr(node, &name, &value, flags);
                let core = self.core.setxattr(self.ino(node), &name, &value, flags);
                compare(&what, model, core)
            }
            Op::RemoveXattr { node, name } => {
                let (node, name) = (m.resolve(node), xattr_name(name));
                let model = m.removexattr(node, &name);
                let core = self.core.removexattr(self.ino(node), &name);
                compare(&what, model, core)
            }
            Op::GetXattr { node, name } => {
                let (node, name) = (m.resolve(node), xattr_name(name));
                let model = m.getxattr(node, &name);
                let core = self.core.getxattr(self.ino(node), &name);
                compare(&what, model, core)
            }
            Op::Lookup { at } => {
                let (dir, n) = m.resolve_at(at);
                let model = m.lookup(dir, &n);
                let core = self.core.lookup(self.ino(dir), &n);
                self.compare_stat(&what, model, core)
            }
            Op::Readdir { dir } => {
                let dir = m.resolve(dir);
                let model = self.expected_listing(dir);
                let core = self.core.readdir(self.ino(dir));
                compare(&what, model, core)
            }
            Op::Readlink { node } => {
                let node = m.resolve(node);
                let model = m.readlink(node);
                let core = self.core.readlink(self.ino(node));
                compare(&what, model, core)
            }
            Op::Crash => self.crash(&what),
            Op::Remount => {
                self.model.remount();
                self.core.remount();
                self.check_tree(&what)
            }
        }
    }

    /// readdir as the model has it: "." and ".." then the entries; nothing for a
    /// directory removed while open; ENOTDIR for anything else.
    fn expected_listing(&self, dir: Mid) -> Res<BTreeMap<Vec<u8>, (u64, FileKind)>> {
        let node = self.model.node(dir);
        let (entries, parent) = match &node.body {
            Body::Dir { removed: true, .. } => return Ok(BTreeMap::new()),
            Body::Dir {
                entries, parent, ..
            } => (entries, *parent),
            _ => return Err(libc::ENOTDIR),
        };
        let dots = [(b".".to_vec(), dir), (b"..".to_vec(), parent)];
        let dots = dots.map(|(n, m)| (n, (self.ino(m), FileKind::Directory)));
        let children = entries
            .iter()
            .map(|(n, &m)| (n.clone(), (self.ino(m), self.model.node(m).kind())));
        Ok(dots.into_iter().chain(children).collect())
    }

    /// Drops the core without syncing, mounts it again, and checks each file against
    /// what may have been committed; the model then takes what the core shows.
    fn crash(&mut self, what: &str) -> Step {
        self.core.crash();
        self.model.crash();
        let files: Vec<Mid> = self.model.nodes.keys().copied().collect();
        for mid in files {
            let ino = self.ino(mid);
            let Some(file) = self.model.node_mut(mid).file() else {
                continue;
            };
            let size = self.core.getattr(ino).map(|s| s.size);
            let data_len = match size {
                Ok(0) => Ok(0),
                Ok(_) => self.core.lseek(ino, 0, SEEK_HOLE),
                Err(e) => Err(e),
            };
            let Ok(extent) = size.and_then(|size| data_len.map(|dl| (size, dl))) else {
                return Err(TestCaseError::fail(format!(
                    "{what}: file {ino} unreadable after the crash: {size:?} {data_len:?}"
                )));
            };
            ensure!(
                file.committed.contains(&extent),
                "{what}: file {ino} came back with (size, stored bytes) {extent:?}, \
                 committed were only {:?}",
                file.committed
            );
            file.bytes = file.after_crash(extent);
            file.data_len = extent.1;
            file.committed = vec![extent];
        }
        self.check_tree(what)
    }

    /// Everything the core shows against the model: every reachable and open node.
    fn check_tree(&self, what: &str) -> Step {
        let listing = self.model.listing();
        let reachable: BTreeSet<Mid> = listing.iter().copied().collect();
        let live: BTreeSet<Mid> = self.model.nodes.keys().copied().collect();
        ensure!(reachable == live, "{what}: the model lost track of a node");
        for &mid in &reachable {
            self.check_node(what, mid)?;
        }
        let files = self.core.files();
        ensure!(
            files == live.len() as u64,
            "{what}: statfs counts {files} inodes, the model {}",
            live.len()
        );
        Ok(())
    }

    fn check_node(&self, what: &str, mid: Mid) -> Step {
        let ino = self.ino(mid);
        let what = format!("{what}, then inode {ino}");
        self.compare_stat(&what, Ok(mid), self.core.getattr(ino))?;
        let node = self.model.node(mid);
        let xattrs: BTreeSet<Vec<u8>> = node.xattrs.keys().cloned().collect();
        compare(&what, Ok(xattrs), self.core.listxattr(ino))?;
        for (name, value) in &node.xattrs {
            compare(&what, Ok(value.clone()), self.core.getxattr(ino, name))?;
        }
        match &node.body {
            Body::File(f) => {
                compare(&what, Ok(f.bytes.clone()), self.core.contents(ino))?;
                let hole = self.model.lseek(mid, 0, SEEK_HOLE);
                compare(&what, hole, self.core.lseek(ino, 0, SEEK_HOLE))
            }
            Body::Dir { .. } => compare(&what, self.expected_listing(mid), self.core.readdir(ino)),
            Body::Symlink(target) => compare(&what, Ok(target.clone()), self.core.readlink(ino)),
            Body::Fifo => Ok(()),
        }
    }
}

/// The same errno, or the same value.
fn compare<T: PartialEq + std::fmt::Debug>(what: &str, model: Res<T>, core: Res<T>) -> Step {
    let shown = |r: &Res<T>| match r {
        Ok(v) => format!("{:.200}", format!("{v:?}")),
        Err(e) => format!("errno {e} ({})", std::io::Error::from_raw_os_error(*e)),
    };
    ensure!(
        model == core,
        "{what}: core gave {}, model {}",
        shown(&core),
        shown(&model)
    );
    Ok(())
}

fn run(ops: &[Op]) -> Step {
    let mut runner = Runner::new();
    for (index, op) in ops.iter().enumerate() {
        runner.step(index, op)?;
    }
    runner.check_tree("at the end")?;
    runner.crash("after a last crash")
}

/// 256 cases unless PROPTEST_CASES says otherwise.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_core_behaves_as_the_model_across_crashes(ops in prop::collection::vec(op(), 1..64)) {
        run(&ops)?;
    }
}
