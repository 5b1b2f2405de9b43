//! Threads sharing one `warabifs::fs::WarabiFs` on a real small pool in /dev/shm:
//! namespace changes racing in one directory and across two, writers beside readers,
//! and files growing together into a full pool. Each test checks, once the threads are
//! done, that nothing was lost or duplicated, then drops the file system without
//! syncing (a crash: see tests/common) and checks the pool again as the next mount
//! finds it. A test whose threads do not all finish within
//! [`common::LIVENESS_LIMIT`] fails as a deadlock.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use common::{
    caller, create_file, create_pool, list, lookup_ino, names, nonzero_pattern, read_all,
    read_range, remount, run_collecting, run_concurrently, scratch_pool, Rng, KIB, MIB,
};
use warabifs::fs::{Errno, Fh, FileKind, RenameMode, WarabiFs, ROOT_INO};
use warabifs::pmem::Pool;

const POOL_SIZE: u64 = 32 * MIB;

// ------------------------------------------------------------ one directory, many names

fn stable_name(i: usize) -> Vec<u8> {
    format!("stable{i}").into_bytes()
}

fn churn_name(i: usize) -> Vec<u8> {
    format!("churn{}", i % 100).into_bytes()
}

/// The untouched entries one readdir pass lists, sorted.
fn stable_entries(fs: &WarabiFs) -> Vec<Vec<u8>> {
    let mut stable = Vec::new();
    fs.readdir(ROOT_INO, 0, |e| {
        stable.extend(Some(e.name.to_vec()).filter(|n| n.starts_with(b"stable")));
        false
    })
    .unwrap();
    stable.sort();
    stable
}

/// Whether the writer of the readdir test below is still at work.
static CHURNING: AtomicBool = AtomicBool::new(true);

/// A reader lists a directory for as long as a writer unlinks and re-creates most of its
/// entries. (readdir used to hold a `dirs` shard lock while locking each child inode, and
/// unlink the other way round: this deadlocked within the first few rounds.)
#[test]
fn readdir_runs_alongside_creates_and_unlinks_in_the_same_directory() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    for i in 0..100 {
        create_file(&fs, ROOT_INO, &stable_name(i), b"");
        create_file(&fs, ROOT_INO, &churn_name(i), b"x");
    }
    let fs = run_concurrently(fs, 2, |fs, t| {
        if t == 0 {
            for round in 0..2000 {
                fs.unlink(ROOT_INO, &churn_name(round)).unwrap();
                create_file(fs, ROOT_INO, &churn_name(round), b"x");
            }
            CHURNING.store(false, Ordering::Relaxed);
            return;
        }
        let mut expected: Vec<Vec<u8>> = (0..100).map(stable_name).collect();
        expected.sort();
        while CHURNING.load(Ordering::Relaxed) {
            // Entries neither added nor removed are listed exactly once.
            let stable = stable_entries(fs);
            assert!(
                stable == expected,
                "a listing lost or repeated an untouched entry"
            );
        }
    });
    let fs = remount(fs, &path);
    let all: BTreeSet<Vec<u8>> = (0..100)
        .flat_map(|i| [stable_name(i), churn_name(i)])
        .collect();
    assert_eq!(names(&fs, ROOT_INO), all);
}

/// One readdir pass over `dir` while others change it: name -> (inode, times listed).
/// An entry renamed or made again meanwhile gets a new place in the listing and may
/// show twice (as POSIX allows for entries added or removed during a listing); the
/// callers check that the entries nobody touches show exactly once.
fn listing_during_changes(fs: &WarabiFs, dir: u64) -> BTreeMap<Vec<u8>, (u64, usize)> {
    let mut listed: BTreeMap<Vec<u8>, (u64, usize)> = BTreeMap::new();
    fs.readdir(dir, 0, |e| {
        listed.entry(e.name.to_vec()).or_insert((e.ino, 0)).1 += 1;
        false
    })
    .expect("readdir");
    listed
}

const RACERS: usize = 4;
const SHARED_NAMES: usize = 16;

fn own_name(t: usize, i: usize) -> Vec<u8> {
    format!("t{t}-{i}").into_bytes()
}

fn shared_name(k: usize) -> Vec<u8> {
    format!("shared{k}").into_bytes()
}

/// What a file made by this test holds: its own name, so a mix-up shows.
fn contents_of(name: &[u8]) -> Vec<u8> {
    name.repeat(3)
}

/// Creates `name` holding [`contents_of`] it; false if it exists already.
fn try_create(fs: &WarabiFs, dir: u64, name: &[u8]) -> bool {
    let (attr, fh) = match fs.create(dir, name, 0o644, caller()) {
        Ok(created) => created,
        Err(e) if e.errno() == Errno::EEXIST => return false,
        Err(e) => panic!("create {name:?}: {e}"),
    };
    let _ = attr;
    let data = contents_of(name);
    assert_eq!(fs.write(fh, 0, &data, false), Ok(data.len()));
    fs.release(fh).expect("release");
    true
}

/// Unlinks `name`; false if it is not there.
fn try_unlink(fs: &WarabiFs, dir: u64, name: &[u8]) -> bool {
    match fs.unlink(dir, name) {
        Ok(()) => true,
        Err(e) if e.errno() == Errno::ENOENT => false,
        Err(e) => panic!("unlink {name:?}: {e}"),
    }
}

/// Threads create and unlink names of their own and names they all fight over, in one
/// directory. Every create and unlink that succeeded counts: a name is there at the end
/// exactly when its creates outnumber its unlinks, with its own bytes, also after a
/// crash; and statfs counts exactly the files listed.
#[test]
fn creates_and_unlinks_racing_in_one_directory_lose_and_duplicate_nothing() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let dir = fs.mkdir(ROOT_INO, b"d", 0o755, caller()).unwrap().ino;
    let files_before = fs.statfs().files;
    // Per shared name: successful creates less successful unlinks.
    let balance: Arc<Vec<AtomicI64>> =
        Arc::new((0..SHARED_NAMES).map(|_| AtomicI64::new(0)).collect());
    let counts = Arc::clone(&balance);
    let (fs, own) = run_collecting(fs, RACERS, move |fs, t| {
        let mut rng = Rng(0x5eed + t as u64);
        let mut mine = BTreeSet::new();
        for _ in 0..600 {
            let k = rng.below(SHARED_NAMES);
            match rng.below(4) {
                0 => {
                    let name = own_name(t, rng.below(40));
                    assert_eq!(try_create(fs, dir, &name), mine.insert(name.clone()));
                }
                1 => {
                    let name = own_name(t, rng.below(40));
                    assert_eq!(try_unlink(fs, dir, &name), mine.remove(&name));
                }
                2 if try_create(fs, dir, &shared_name(k)) => {
                    counts[k].fetch_add(1, Ordering::SeqCst);
                }
                3 if try_unlink(fs, dir, &shared_name(k)) => {
                    counts[k].fetch_sub(1, Ordering::SeqCst);
                }
                _ => {}
            }
        }
        mine
    });
    let mut expected: BTreeSet<Vec<u8>> = own.into_iter().flatten().collect();
    for (k, count) in balance.iter().enumerate() {
        match count.load(Ordering::SeqCst) {
            0 => {}
            1 => drop(expected.insert(shared_name(k))),
            n => panic!(
                "{:?}: {n} more creates than unlinks succeeded",
                shared_name(k)
            ),
        }
    }
    let check = |fs: &WarabiFs, when: &str| {
        assert_eq!(names(fs, dir), expected, "{when}: the directory's names");
        for name in &expected {
            let ino = lookup_ino(fs, dir, name);
            assert_eq!(read_all(fs, ino), contents_of(name), "{when}: {name:?}");
        }
        let files = fs.statfs().files;
        assert_eq!(
            files,
            files_before + expected.len() as u64,
            "{when}: inodes"
        );
    };
    check(&fs, "after the race");
    let fs = remount(fs, &path);
    check(&fs, "after a crash");
}

// ------------------------------------------------------------ renames across directories

/// The tree of the rename test: two directories, each holding files and directories
/// (each of those with a file inside), every name unique in the whole tree.
struct RenameTree {
    /// Every directory a rename may name as source or target parent.
    dirs: Vec<u64>,
    /// Every name a rename may move, which stays unique however they move.
    names: Vec<Vec<u8>>,
    /// Inode -> (kind, contents for a file).
    inodes: BTreeMap<u64, (FileKind, Vec<u8>)>,
}

fn build_rename_tree(fs: &WarabiFs) -> RenameTree {
    let mut tree = RenameTree {
        dirs: Vec::new(),
        names: Vec::new(),
        inodes: BTreeMap::new(),
    };
    for side in ["left", "right"] {
        let top = fs
            .mkdir(ROOT_INO, side.as_bytes(), 0o755, caller())
            .unwrap()
            .ino;
        tree.dirs.push(top);
        tree.inodes.insert(top, (FileKind::Directory, Vec::new()));
        for i in 0..4 {
            let name = format!("{side}-dir{i}").into_bytes();
            let sub = fs.mkdir(top, &name, 0o755, caller()).unwrap().ino;
            tree.dirs.push(sub);
            tree.inodes.insert(sub, (FileKind::Directory, Vec::new()));
            tree.names.push(name);
            let inner = format!("{side}-inner{i}").into_bytes();
            let ino = create_file(fs, sub, &inner, &contents_of(&inner));
            tree.inodes
                .insert(ino, (FileKind::Regular, contents_of(&inner)));
        }
        for i in 0..8 {
            let name = format!("{side}-file{i}").into_bytes();
            let ino = create_file(fs, top, &name, &contents_of(&name));
            tree.inodes
                .insert(ino, (FileKind::Regular, contents_of(&name)));
            tree.names.push(name);
        }
    }
    tree
}

/// Walks the tree from the root and checks it against `tree`: every inode exactly
/// once (so no directory was lost in a loop), every moved name exactly once, ".." of
/// each directory its parent, links counted right and files holding their bytes.
fn check_rename_tree(fs: &WarabiFs, tree: &RenameTree, when: &str) {
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new(); // inode -> parent
    let mut moved_names = Vec::new();
    let mut pending = vec![ROOT_INO];
    while let Some(dir) = pending.pop() {
        let mut dotdot = None;
        fs.readdir(dir, 0, |e| {
            if e.name == b".." {
                dotdot = Some(e.ino);
            }
            false
        })
        .unwrap();
        let expected_parent = seen.get(&dir).copied().unwrap_or(ROOT_INO);
        assert_eq!(dotdot, Some(expected_parent), "{when}: '..' of {dir}");
        let entries = list(fs, dir);
        let subdirs = entries.values().filter(|(_, k)| *k == FileKind::Directory);
        let nlink = fs.getattr(dir).unwrap().nlink;
        assert_eq!(nlink, 2 + subdirs.count() as u32, "{when}: links of {dir}");
        for (name, (ino, kind)) in entries {
            assert!(
                seen.insert(ino, dir).is_none(),
                "{when}: {ino} listed twice"
            );
            if tree.names.contains(&name) {
                moved_names.push(name);
            }
            let (expected_kind, data) = &tree.inodes[&ino];
            assert_eq!(kind, *expected_kind, "{when}: kind of {ino}");
            match kind {
                FileKind::Directory => pending.push(ino),
                _ => assert_eq!(&read_all(fs, ino), data, "{when}: bytes of {ino}"),
            }
        }
    }
    let seen: BTreeSet<u64> = seen.into_keys().collect();
    let all: BTreeSet<u64> = tree.inodes.keys().copied().collect();
    assert_eq!(seen, all, "{when}: inodes reachable from the root");
    moved_names.sort();
    let mut names = tree.names.clone();
    names.sort();
    assert_eq!(moved_names, names, "{when}: names");
}

/// Threads move files and directories between any two directories of the tree (so
/// directories move into each other, and across, which takes locks on several
/// directories at once), exchange names, and read the tree meanwhile. Renames that
/// would make a loop must fail; none may deadlock, lose an entry or list it twice.
#[test]
fn renames_racing_across_directories_neither_deadlock_nor_lose_entries() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let tree = Arc::new(build_rename_tree(&fs));
    let shared = Arc::clone(&tree);
    let (fs, renamed) = run_collecting(fs, 4, move |fs, t| {
        let tree = &shared;
        let mut rng = Rng(0xd1ec + t as u64);
        let mut renamed = 0;
        for _ in 0..3000 {
            let from = tree.dirs[rng.below(tree.dirs.len())];
            let to = tree.dirs[rng.below(tree.dirs.len())];
            let name = &tree.names[rng.below(tree.names.len())];
            let result = match rng.below(5) {
                // A reader: lookups and listings take the same locks in other orders.
                0 => {
                    let listed = listing_during_changes(fs, from);
                    for (listed_name, (_, times)) in listed {
                        let untouched = !tree.names.contains(&listed_name);
                        assert!(
                            !untouched || times == 1,
                            "{listed_name:?} listed {times} times"
                        );
                    }
                    let _ = fs.lookup(from, name);
                    continue;
                }
                1 => {
                    let other = &tree.names[rng.below(tree.names.len())];
                    fs.rename(from, name, to, other, RenameMode::Exchange)
                }
                2 => fs.rename(from, name, to, name, RenameMode::NoReplace),
                _ => fs.rename(from, name, to, name, RenameMode::Replace),
            };
            match result {
                Ok(()) => renamed += 1,
                // Not there (moved away), a loop, or (with NoReplace) onto itself.
                Err(e) if [Errno::ENOENT, Errno::EINVAL, Errno::EEXIST].contains(&e.errno()) => {}
                Err(e) => panic!("rename {name:?} from {from} to {to}: {e}"),
            }
        }
        renamed
    });
    let renamed: usize = renamed.iter().sum();
    assert!(
        renamed > 100,
        "only {renamed} renames succeeded: the test tested little"
    );
    check_rename_tree(&fs, &tree, "after the renames");
    let fs = remount(fs, &path);
    check_rename_tree(&fs, &tree, "after a crash");
}

// ------------------------------------------------------------ writers and a reader

fn writer_name(t: usize) -> Vec<u8> {
    format!("w{t}").into_bytes()
}

fn writer_bytes(t: usize) -> Vec<u8> {
    (0..64)
        .flat_map(|i| nonzero_pattern(16 * KIB as usize, (t * 64 + i) as u8))
        .collect()
}

#[test]
fn parallel_writers_on_separate_files_keep_their_own_bytes() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, 64 * MIB);
    for t in 0..4 {
        create_file(&fs, ROOT_INO, &writer_name(t), b"");
    }
    let fs = run_concurrently(fs, 4, |fs, t| {
        let ino = lookup_ino(fs, ROOT_INO, &writer_name(t));
        let fh = fs.open(ino, true).unwrap();
        // Appends of 16 KiB: the file moves to bigger regions as the others do too.
        for piece in writer_bytes(t).chunks(16 * KIB as usize) {
            let size = fs.getattr(ino).unwrap().size;
            fs.write(fh, size, piece, false).unwrap();
        }
        fs.fsync(fh).unwrap();
    });
    let fs = remount(fs, &path);
    for t in 0..4 {
        let got = read_all(&fs, lookup_ino(&fs, ROOT_INO, &writer_name(t)));
        assert!(got == writer_bytes(t), "file w{t} mixed up");
    }
}

const WRITERS: usize = 3;

/// What writer `t` appends, in pieces of varied sizes (some go through the pool file,
/// some through the mapping), and where its fsyncs fall.
fn appended(t: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(0xa99 + t as u64);
    (0..96)
        .map(|i| {
            let len = [100, 4 * KIB as usize, 64 * KIB as usize][rng.below(3)] + rng.below(500);
            nonzero_pattern(len, (t * 96 + i) as u8)
        })
        .collect()
}

/// How many writers of the test below have finished.
static WRITERS_DONE: AtomicUsize = AtomicUsize::new(0);
/// How many passes over every file its reader has made.
static READER_PASSES: AtomicUsize = AtomicUsize::new(0);

/// Writers append to files of their own (with fsyncs, and a scratch file each made and
/// removed in the same directory), while a reader lists the directory and reads every
/// file: it must always list each file once and read only bytes that were written,
/// never a size ahead of its data. Fsynced at the end, all of it survives a crash.
#[test]
fn a_reader_sees_only_written_bytes_while_writers_append_beside_it() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let dir = fs.mkdir(ROOT_INO, b"logs", 0o755, caller()).unwrap().ino;
    let inos: Vec<u64> = (0..WRITERS)
        .map(|t| create_file(&fs, dir, &writer_name(t), b""))
        .collect();
    let expected: Arc<Vec<Vec<u8>>> =
        Arc::new((0..WRITERS).map(|t| appended(t).concat()).collect());
    let (shared, file_inos) = (Arc::clone(&expected), inos.clone());
    let (fs, reads) = run_collecting(fs, WRITERS + 1, move |fs, t| {
        if t == WRITERS {
            return read_while_writing(fs, dir, &file_inos, &shared);
        }
        // Not released: the fsyncs alone make the bytes durable.
        let fh = fs.open(file_inos[t], true).unwrap();
        let scratch = format!("scratch{t}").into_bytes();
        let mut size = 0;
        for (i, piece) in appended(t).iter().enumerate() {
            assert_eq!(fs.write(fh, size, piece, false), Ok(piece.len()));
            size += piece.len() as u64;
            if i % 16 == 15 {
                // Let the reader catch up, so that its passes fall between the writes.
                while READER_PASSES.load(Ordering::SeqCst) <= i / 16 {
                    std::thread::yield_now();
                }
                fs.fsync(fh).unwrap();
                create_file(fs, dir, &scratch, piece);
                fs.unlink(dir, &scratch).unwrap();
            }
        }
        fs.fsync(fh).unwrap();
        WRITERS_DONE.fetch_add(1, Ordering::SeqCst);
        0
    });
    assert!(reads[WRITERS] > 0, "the reader read nothing");
    let check = |fs: &WarabiFs, when: &str| {
        let listed: Vec<u64> = (0..WRITERS)
            .map(|t| lookup_ino(fs, dir, &writer_name(t)))
            .collect();
        assert_eq!(listed, inos, "{when}");
        for (t, &ino) in inos.iter().enumerate() {
            assert!(
                read_all(fs, ino) == expected[t],
                "{when}: file w{t} differs"
            );
        }
    };
    check(&fs, "after the writers");
    let fs = remount(fs, &path);
    check(&fs, "after a crash");
}

/// The reader of the test above; returns how many file reads it checked.
fn read_while_writing(fs: &WarabiFs, dir: u64, inos: &[u64], expected: &[Vec<u8>]) -> usize {
    let mut reads = 0;
    while WRITERS_DONE.load(Ordering::SeqCst) < WRITERS {
        let listed = list(fs, dir);
        for (t, &ino) in inos.iter().enumerate() {
            assert_eq!(
                listed.get(&writer_name(t)).map(|e| e.0),
                Some(ino),
                "listing"
            );
            // The size only grows: a read up to the size seen returns all of it.
            let size = fs.getattr(ino).unwrap().size;
            let seen = read_range(fs, ino, 0, size as u32);
            assert_eq!(seen.len() as u64, size, "file w{t}: a short read");
            assert!(
                seen.len() <= expected[t].len() && seen == expected[t][..seen.len()],
                "file w{t} showed {size} bytes that were not all written"
            );
            reads += 1;
        }
        READER_PASSES.fetch_add(1, Ordering::SeqCst);
    }
    reads
}

// ------------------------------------------------------------ growing into a full pool

/// Appends `piece` (varied by its offset) to `ino` until the pool is full; returns
/// exactly the bytes it accepted. A write that does not fit whole may be cut short,
/// and the next one fails with ENOSPC: no other error.
fn append_until_full(fs: &WarabiFs, fh: Fh, t: usize) -> Vec<u8> {
    let mut rng = Rng(0xf111 + t as u64);
    let mut accepted = Vec::new();
    let mut round = 0;
    loop {
        round += 1;
        let len = [3 * KIB as usize, 64 * KIB as usize, 300 * KIB as usize][rng.below(3)];
        let piece = nonzero_pattern(len, (t * 50 + round % 50) as u8);
        match fs.write(fh, accepted.len() as u64, &piece, false) {
            Ok(n) => {
                assert!(n > 0 && n <= piece.len(), "write of {len} accepted {n}");
                accepted.extend_from_slice(&piece[..n]);
            }
            Err(e) if e.errno() == Errno::ENOSPC => return accepted,
            Err(e) => panic!("append to a filling pool: {e}"),
        }
        assert!(
            accepted.len() < 64 * MIB as usize,
            "a 16 MiB pool took 64 MiB"
        );
    }
}

/// Files growing at once (each moving to bigger regions, as the others do) fill a small
/// pool: each writer stops at ENOSPC, and every byte a write accepted before is there,
/// before and after closing, and after a crash. Deleting one file makes room again.
#[test]
fn files_growing_together_fill_the_pool_and_keep_every_accepted_byte() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, 16 * MIB);
    let free_before = fs.statfs().free_bytes;
    let opened: Vec<(u64, Fh)> = (0..WRITERS)
        .map(|t| {
            let (attr, fh) = fs
                .create(ROOT_INO, &writer_name(t), 0o644, caller())
                .unwrap();
            (attr.ino, fh)
        })
        .collect();
    let inos: Vec<u64> = opened.iter().map(|&(ino, _)| ino).collect();
    let handles: Vec<Fh> = opened.iter().map(|&(_, fh)| fh).collect();
    let (fs, accepted) = run_collecting(fs, WRITERS, move |fs, t| {
        append_until_full(fs, handles[t], t)
    });
    let total: usize = accepted.iter().map(Vec::len).sum();
    assert!(
        total >= 4 * MIB as usize,
        "only {total} bytes fit in 16 MiB"
    );
    let check = |fs: &WarabiFs, when: &str| {
        for (t, &ino) in inos.iter().enumerate() {
            assert_eq!(
                fs.getattr(ino).unwrap().size,
                accepted[t].len() as u64,
                "{when}"
            );
            assert!(
                read_all(fs, ino) == accepted[t],
                "{when}: file w{t} differs"
            );
        }
    };
    check(&fs, "at ENOSPC");
    for &(_, fh) in &opened {
        fs.release(fh).expect("release on a full pool");
    }
    check(&fs, "after closing");
    let fs = remount(fs, &path);
    check(&fs, "after a crash");

    for t in 0..WRITERS {
        fs.unlink(ROOT_INO, &writer_name(t)).unwrap();
    }
    let free_after = fs.statfs().free_bytes;
    assert_eq!(
        free_after, free_before,
        "free bytes before the files and after them"
    );
    let again = nonzero_pattern(4 * MIB as usize, 7);
    let ino = create_file(&fs, ROOT_INO, b"again", &again);
    assert!(
        read_all(&fs, ino) == again,
        "a file written after the deletes differs"
    );
    drop(fs);
    assert!(
        Pool::check(&path).expect("pmemobj_check runs"),
        "pool inconsistent"
    );
}
