//! Crash safety on a real mount: a random workload runs while the daemon is killed with
//! SIGKILL, at a random moment or at a fault point inside its work (debug builds'
//! WARABIFS_FAULT); then the dead mount is unmounted, the pool checked, remounted and
//! compared with what the workload knew to be durable.
//!
//! The workload writes, appends, overwrites, truncates down and up (a hole past the
//! region, which reads as zeros), writes into such holes, renames, unlinks and makes and
//! removes directories.
//!
//! `WARABIFS_CRASH_ROUNDS` sets the rounds (default 20; 200 for a long run) and
//! `WARABIFS_CRASH_SEED` the seed. A violation names the round, the seed and the file.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::{fuse_tests_enabled, ForegroundMount, Rng, Scratch};
use warabifs::fault::POINTS;

const POOL_OPTIONS: &str = "create_if_missing_with_size=64M";
/// The workload keeps the data it holds under this, so the pool never fills up.
const MAX_LIVE_BYTES: usize = 16 << 20;
const MAX_OPS_PER_ROUND: usize = 400;
const DIRS: [&str; 3] = ["a", "b", "a/c"];

/// What the file system holds: file contents by path, and directories.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model {
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
}

impl Model {
    fn live_bytes(&self) -> usize {
        self.files.values().map(Vec::len).sum()
    }
}

/// One step of the workload.
#[derive(Clone)]
enum Op {
    /// Write `data` at `off` (creating the file if needed), then fsync.
    Write {
        path: String,
        off: usize,
        data: Vec<u8>,
    },
    Truncate {
        path: String,
        len: usize,
    },
    Rename {
        from: String,
        to: String,
    },
    Unlink {
        path: String,
    },
    Mkdir {
        path: String,
    },
    Rmdir {
        path: String,
    },
}

/// Names and lengths only: a failure message must not carry the data.
impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Write { path, off, data } => {
                write!(f, "Write({path} at {off}, {} bytes)", data.len())
            }
            Op::Truncate { path, len } => write!(f, "Truncate({path} to {len})"),
            Op::Rename { from, to } => write!(f, "Rename({from} -> {to})"),
            Op::Unlink { path } => write!(f, "Unlink({path})"),
            Op::Mkdir { path } => write!(f, "Mkdir({path})"),
            Op::Rmdir { path } => write!(f, "Rmdir({path})"),
        }
    }
}

impl Op {
    /// The model after this op.
    fn apply(&self, m: &Model) -> Model {
        let mut m = m.clone();
        match self {
            Op::Write { path, off, data } => {
                let file = m.files.entry(path.clone()).or_default();
                if file.len() < off + data.len() {
                    file.resize(off + data.len(), 0);
                }
                file[*off..off + data.len()].copy_from_slice(data);
            }
            Op::Truncate { path, len } => m.files.get_mut(path).expect("exists").resize(*len, 0),
            Op::Rename { from, to } => {
                let data = m.files.remove(from).expect("exists");
                m.files.insert(to.clone(), data);
            }
            Op::Unlink { path } => {
                m.files.remove(path);
            }
            Op::Mkdir { path } => {
                m.dirs.insert(path.clone());
            }
            Op::Rmdir { path } => {
                m.dirs.remove(path);
            }
        }
        m
    }

    fn run(&self, root: &Path) -> std::io::Result<()> {
        match self {
            Op::Write { path, off, data } => {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(root.join(path))?;
                std::os::unix::fs::FileExt::write_all_at(&f, data, *off as u64)?;
                f.flush()?;
                f.sync_all()
            }
            Op::Truncate { path, len } => std::fs::OpenOptions::new()
                .write(true)
                .open(root.join(path))?
                .set_len(*len as u64),
            Op::Rename { from, to } => std::fs::rename(root.join(from), root.join(to)),
            Op::Unlink { path } => std::fs::remove_file(root.join(path)),
            Op::Mkdir { path } => std::fs::create_dir(root.join(path)),
            Op::Rmdir { path } => std::fs::remove_dir(root.join(path)),
        }
    }
}

/// A random op that is valid for the model.
fn random_op(rng: &mut Rng, m: &Model) -> Op {
    let existing: Vec<&String> = m.files.keys().collect();
    let dir_of = |rng: &mut Rng| -> String {
        let dirs: Vec<&String> = m.dirs.iter().collect();
        match rng.below(dirs.len() + 1) {
            0 => String::new(),
            i => format!("{}/", dirs[i - 1]),
        }
    };
    let full = m.live_bytes() > MAX_LIVE_BYTES;
    match rng.below(12) {
        _ if full && !existing.is_empty() => Op::Unlink {
            path: existing[rng.below(existing.len())].clone(),
        },
        0..=2 => {
            let path = format!("{}f{}", dir_of(rng), rng.below(12));
            let len = [10, 4000, 70_000, 300_000][rng.below(4)];
            let n = rng.below(len) + 1;
            let data = rng.bytes(n);
            Op::Write { path, off: 0, data }
        }
        3 | 4 if !existing.is_empty() => {
            // Appends grow files past their region's capacity; overwrites stay inside.
            let path = existing[rng.below(existing.len())].clone();
            let size = m.files[&path].len();
            let off = if rng.below(2) == 0 {
                size
            } else {
                rng.below(size + 1)
            };
            let n = rng.below(200_000) + 1;
            let data = rng.bytes(n);
            Op::Write { path, off, data }
        }
        5 if !existing.is_empty() => {
            let path = existing[rng.below(existing.len())].clone();
            let len = rng.below(m.files[&path].len() * 2 + 1000);
            Op::Truncate { path, len }
        }
        6 if !existing.is_empty() => {
            let from = existing[rng.below(existing.len())].clone();
            let to = format!("{}f{}", dir_of(rng), rng.below(12));
            if from == to {
                Op::Unlink { path: from }
            } else {
                Op::Rename { from, to }
            }
        }
        7 if !existing.is_empty() => Op::Unlink {
            path: existing[rng.below(existing.len())].clone(),
        },
        8 if !existing.is_empty() => {
            // Up, past the region: the new bytes are a hole that reads as zeros.
            let path = existing[rng.below(existing.len())].clone();
            let len = m.files[&path].len() + 1 + rng.below(3 << 20);
            Op::Truncate { path, len }
        }
        9 if !existing.is_empty() => {
            // Into the upper part of a file, where a truncate up left a hole past the
            // region's end (and sometimes past the size too).
            let path = existing[rng.below(existing.len())].clone();
            let size = m.files[&path].len();
            let off = size - rng.below(size / 2 + 1);
            let n = rng.below(100_000) + 1;
            let data = rng.bytes(n);
            Op::Write { path, off, data }
        }
        _ => {
            let path = DIRS[rng.below(DIRS.len())].to_string();
            let parent_ok = path
                .rsplit_once('/')
                .is_none_or(|(p, _)| m.dirs.contains(p));
            let empty = !m.files.keys().any(|f| f.starts_with(&format!("{path}/")))
                && !m.dirs.iter().any(|d| d.starts_with(&format!("{path}/")));
            match (m.dirs.contains(&path), parent_ok, empty) {
                (false, true, _) => Op::Mkdir { path },
                (true, _, true) => Op::Rmdir { path },
                _ => Op::Write {
                    path: format!("f{}", rng.below(12)),
                    off: 0,
                    data: rng.bytes(100),
                },
            }
        }
    }
}

/// What the mount holds now.
fn read_tree(root: &Path) -> Model {
    let mut m = Model::default();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(root.join(&dir)).expect("read_dir") {
            let entry = entry.expect("entry");
            let name = format!("{dir}{}", entry.file_name().to_string_lossy());
            if entry.file_type().expect("type").is_dir() {
                m.dirs.insert(name.clone());
                stack.push(format!("{name}/"));
            } else {
                m.files
                    .insert(name.clone(), std::fs::read(root.join(&name)).expect("read"));
            }
        }
    }
    m
}

/// Whether `actual` is an allowed outcome of a crash during `op` (from `before`): the
/// op happened or not; a write without atomic_writes may also have landed partly, so
/// each byte is the old or the new one and the size lies between the two.
fn allowed(actual: &Model, before: &Model, op: Option<&Op>, atomic: bool) -> Result<(), String> {
    let Some(op) = op else {
        return exact(actual, before);
    };
    let after = op.apply(before);
    let mut outcomes = vec![before.clone(), after.clone()];
    if let Op::Write { path, .. } = op {
        // Writing to a new file creates it first (durable on its own), then writes.
        if !before.files.contains_key(path) {
            let mut created = before.clone();
            created.files.insert(path.clone(), Vec::new());
            outcomes.push(created);
        }
    }
    if outcomes.contains(actual) {
        return Ok(());
    }
    let Op::Write { path, .. } = op else {
        return exact(actual, before).or_else(|_| exact(actual, &after));
    };
    if atomic {
        return exact(actual, &after).map_err(|e| format!("an atomic write landed partly: {e}"));
    }
    let others = |m: &Model| Model {
        files: m
            .files
            .iter()
            .filter(|(p, _)| *p != path)
            .map(|(p, d)| (p.clone(), d.clone()))
            .collect(),
        dirs: m.dirs.clone(),
    };
    exact(&others(actual), &others(before))?;
    let got = actual
        .files
        .get(path)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let (old, new) = (
        before
            .files
            .get(path)
            .map(Vec::as_slice)
            .unwrap_or_default(),
        &after.files[path][..],
    );
    // The kernel may split one write(2) into several requests: any prefix can be durable.
    if got.len() < old.len().min(new.len()) || got.len() > old.len().max(new.len()) {
        return Err(format!(
            "{path}: size {} is outside {}..={}",
            got.len(),
            old.len(),
            new.len()
        ));
    }
    match got
        .iter()
        .enumerate()
        .find(|&(i, b)| old.get(i) != Some(b) && new.get(i) != Some(b))
    {
        Some((i, _)) => Err(format!(
            "{path}: byte {i} is neither the old nor the new one"
        )),
        None => Ok(()),
    }
}

fn exact(actual: &Model, expected: &Model) -> Result<(), String> {
    if actual.dirs != expected.dirs {
        return Err(format!(
            "directories {:?}, expected {:?}",
            actual.dirs, expected.dirs
        ));
    }
    let paths: BTreeSet<&String> = actual.files.keys().chain(expected.files.keys()).collect();
    for path in paths {
        match (actual.files.get(path), expected.files.get(path)) {
            (Some(a), Some(e)) if a == e => {}
            (Some(a), Some(e)) => {
                return Err(format!(
                    "{path}: {} bytes differ from the {} expected",
                    a.len(),
                    e.len()
                ))
            }
            (Some(_), None) => return Err(format!("{path}: exists but should not")),
            (None, _) => return Err(format!("{path}: missing")),
        }
    }
    Ok(())
}

/// How a round kills the daemon.
#[derive(Debug)]
enum Kill {
    AfterMillis(u64),
    AtFault(&'static str, u64),
}

fn free_blocks(path: &Path) -> u64 {
    nix::sys::statvfs::statvfs(path)
        .expect("statvfs")
        .blocks_free()
}

struct Round<'a> {
    scratch: &'a Scratch,
    number: usize,
    seed: u64,
    atomic: bool,
    kill: Kill,
}

impl Round<'_> {
    fn options(&self) -> Vec<&'static str> {
        if self.atomic {
            vec![POOL_OPTIONS, "atomic_writes"]
        } else {
            vec![POOL_OPTIONS]
        }
    }

    /// Runs the workload until the daemon dies; returns the durable model and the op
    /// that was in flight.
    fn crash(&self, pool: &Path, mnt: &Path, model: &Model) -> (Model, Option<Op>) {
        let fault = match self.kill {
            Kill::AtFault(point, n) => format!("{point}:{n}"),
            Kill::AfterMillis(_) => String::new(),
        };
        let env: Vec<(&str, &str)> = if fault.is_empty() {
            vec![]
        } else {
            vec![("WARABIFS_FAULT", fault.as_str())]
        };
        let mut m = ForegroundMount::start_with_env(pool, mnt, &self.options(), &env);
        let pid = nix::unistd::Pid::from_raw(m.pid() as i32);
        if let Kill::AfterMillis(ms) = self.kill {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(ms));
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            });
        }
        let mut rng = Rng(self.seed);
        let mut model = model.clone();
        let mut in_flight = None;
        for _ in 0..MAX_OPS_PER_ROUND {
            let op = random_op(&mut rng, &model);
            match op.run(mnt) {
                Ok(()) => model = op.apply(&model),
                Err(_) => {
                    in_flight = Some(op);
                    break;
                }
            }
        }
        if in_flight.is_none() {
            // The fault point was not reached: kill it now, between ops.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        m.wait_exit();
        assert!(
            common::unmount(mnt),
            "round {}: the dead mount was not listed",
            self.number
        );
        common::wait_pool_released(pool);
        drop(m);
        (model, in_flight)
    }

    fn run(&self, pool: &Path, mnt: &Path, model: &Model, fresh_free: u64) -> Model {
        let (before, in_flight) = self.crash(pool, mnt, model);
        let context = format!(
            "round {} (seed {}, {:?}, atomic_writes {})",
            self.number, self.seed, self.kill, self.atomic
        );
        // Recovery happens at open: remount, verify, then check the closed pool.
        let m = ForegroundMount::start(pool, mnt, &self.options());
        let actual = read_tree(mnt);
        if let Err(violation) = allowed(&actual, &before, in_flight.as_ref(), self.atomic) {
            panic!("{context}: {violation} (op in flight: {in_flight:?})");
        }
        m.unmount();
        common::assert_pool_consistent(
            pool,
            &format!("round {} (seed {})", self.number, self.seed),
        );
        let _ = self.scratch;
        // Every few rounds, empty the file system: no region may have leaked.
        if self.number % 5 != 4 {
            return actual;
        }
        let m = ForegroundMount::start(pool, mnt, &self.options());
        for entry in std::fs::read_dir(mnt).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
        assert_eq!(
            free_blocks(mnt),
            fresh_free,
            "{context}: space leaked: free blocks after deleting everything"
        );
        m.unmount();
        Model::default()
    }
}

#[test]
fn the_pool_survives_sigkill_at_any_moment() {
    if !fuse_tests_enabled() {
        return;
    }
    let rounds: usize = std::env::var("WARABIFS_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let base_seed: u64 = std::env::var("WARABIFS_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let scratch = Scratch::new();
    let pool = scratch.path("crash.pmem");
    let mnt = scratch.mountpoint("m");
    let m = ForegroundMount::start(&pool, &mnt, &[POOL_OPTIONS]);
    let fresh_free = free_blocks(&mnt);
    m.unmount();
    let mut model = Model::default();
    for number in 0..rounds {
        let seed = base_seed.wrapping_add((number as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
        let mut rng = Rng(seed ^ 0xABCD);
        let kill = match number % 2 {
            0 => Kill::AfterMillis(20 + rng.below(400) as u64),
            _ => Kill::AtFault(POINTS[rng.below(POINTS.len())], 1 + rng.below(60) as u64),
        };
        let round = Round {
            scratch: &scratch,
            number,
            seed,
            atomic: number % 3 == 2,
            kill,
        };
        println!(
            "round {number}: {:?}, atomic_writes {}",
            round.kill, round.atomic
        );
        model = round.run(&pool, &mnt, &model, fresh_free);
    }
}

/// Directories removed (by rmdir, or by a rename over them) while open keep their
/// inode until the last close; a crash before that must not leak it: the next mount
/// reclaims it, as it does files unlinked while open.
#[test]
fn directories_removed_while_open_leave_nothing_after_a_crash() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool = scratch.path("removed-dirs.pmem");
    let mnt = scratch.mountpoint("m");
    let m = ForegroundMount::start(&pool, &mnt, &[POOL_OPTIONS]);
    let fresh_free = free_blocks(&mnt);
    let mut open = Vec::new();
    for i in 0..20 {
        let dir = mnt.join(format!("d{i}"));
        std::fs::create_dir(&dir).unwrap();
        // An extended attribute record that must go with the directory.
        xattr_set(&dir, "user.note", b"removed while open");
        open.push(std::fs::File::open(&dir).unwrap());
        if i % 2 == 0 {
            std::fs::remove_dir(&dir).unwrap();
        } else {
            std::fs::create_dir(mnt.join("other")).unwrap();
            std::fs::rename(mnt.join("other"), &dir).unwrap();
            std::fs::remove_dir(&dir).unwrap();
        }
    }
    for dir in &open {
        let st = nix::sys::stat::fstat(dir).expect("fstat of a removed directory");
        assert_eq!(st.st_nlink, 0);
    }
    let mut m = m;
    m.kill9();
    drop(open);
    assert!(common::unmount(&mnt), "the dead mount was not listed");
    common::wait_pool_released(&pool);
    drop(m);
    common::assert_pmempool_consistent(&pool, "after the crash");
    // warabifs check knows them for what they are: orphans the next mount reclaims.
    let check = common::output(common::warabifs().arg("check").arg(&pool));
    let report = String::from_utf8_lossy(&check.stdout).into_owned();
    let orphans = report
        .lines()
        .filter(|l| l.starts_with("orphan inode"))
        .count();
    assert_eq!(orphans, 20, "warabifs check after the crash: {report}");
    let m = ForegroundMount::start(&pool, &mnt, &[POOL_OPTIONS]);
    assert_eq!(
        free_blocks(&mnt),
        fresh_free,
        "the removed directories' records leaked"
    );
    assert_eq!(std::fs::read_dir(&mnt).unwrap().count(), 0);
    m.unmount();
    common::assert_pool_consistent(&pool, "after reclaiming");
}

fn xattr_set(path: &Path, name: &str, value: &[u8]) {
    let out = std::process::Command::new("setfattr")
        .args(["-n", name, "-v"])
        .arg(format!("0x{}", hex(value)))
        .arg(path)
        .output()
        .expect("setfattr (Debian attr)");
    assert!(out.status.success(), "setfattr: {out:?}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A write-only handle writes through (SEMANTICS §2.8): each write, and each
/// copy_file_range into it, is durable when it returns, with no fsync and no close.
/// The handles stay open across the SIGKILL, so no flush or release persists them.
#[test]
fn writes_through_write_only_handles_survive_a_crash_before_close() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool = scratch.path("write-through.pmem");
    let mnt = scratch.mountpoint("m");
    let mut m = ForegroundMount::start(&pool, &mnt, &[POOL_OPTIONS]);
    let first = common::pattern(300_000, 1);
    std::fs::write(mnt.join("old"), &first[..1000]).unwrap();
    let write_only = |name: &str| {
        let path = mnt.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .unwrap()
    };
    // A new file, grown past its first region, then overwritten at its start.
    let mut new = write_only("new");
    new.write_all(&first).unwrap();
    new.write_all(b"tail").unwrap();
    use std::os::unix::fs::FileExt;
    new.write_all_at(b"head", 0).unwrap();
    // An existing file, appended to.
    let mut old = std::fs::OpenOptions::new()
        .append(true)
        .open(mnt.join("old"))
        .unwrap();
    old.write_all(&first[1000..5000]).unwrap();
    // A copy (copy_file_range inside the mount, or read and write where refused).
    let mut copied = write_only("copied");
    let mut source = std::fs::File::open(mnt.join("old")).unwrap();
    assert_eq!(std::io::copy(&mut source, &mut copied).unwrap(), 5000);
    m.kill9();
    drop((new, old, copied, source));
    assert!(common::unmount(&mnt), "the dead mount was not listed");
    common::wait_pool_released(&pool);
    drop(m);
    let m = ForegroundMount::start(&pool, &mnt, &[POOL_OPTIONS]);
    let mut expected = first.clone();
    expected[..4].copy_from_slice(b"head");
    expected.extend_from_slice(b"tail");
    let read = |name: &str| std::fs::read(mnt.join(name)).unwrap();
    assert!(read("new") == expected, "new: {} bytes", read("new").len());
    assert!(
        read("old") == first[..5000],
        "old: {} bytes",
        read("old").len()
    );
    assert!(
        read("copied") == first[..5000],
        "copied: {} bytes",
        read("copied").len()
    );
    m.unmount();
    common::assert_pool_consistent(&pool, "after the crash");
}
