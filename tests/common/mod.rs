//! Test harness for real mounts: scratch space in /dev/shm, the warabifs binary, and
//! mounts that are always unmounted, even when a test fails.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::{posix_fadvise, Flock, FlockArg, PosixFadviseAdvice};
use warabifs::fs::{Caller, FileKind, FsOptions, WarabiFs};
use warabifs::store::PoolConfig;

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;

/// Set to 1 to skip the tests that mount (CI never sets it).
pub const SKIP_FUSE_ENV: &str = "WARABIFS_SKIP_FUSE_TESTS";
const MOUNT_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether FUSE tests should run: yes, unless explicitly skipped. A machine without
/// /dev/fuse fails the test loudly instead of passing silently.
pub fn fuse_tests_enabled() -> bool {
    if std::env::var(SKIP_FUSE_ENV).is_ok_and(|v| v == "1") {
        println!("{SKIP_FUSE_ENV}=1: this test does not mount");
        return false;
    }
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: FUSE tests cannot run (set {SKIP_FUSE_ENV}=1 to skip them)"
    );
    true
}

/// A scratch directory, in /dev/shm when the machine has it, removed at the end.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        let base = if Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        Scratch {
            dir: tempfile::Builder::new()
                .prefix("warabifs-test-")
                .tempdir_in(base)
                .expect("scratch dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A new empty directory to mount on.
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::create_dir_all(&path).expect("mountpoint");
        path
    }
}

// ---------------------------------------------------------------- the core without FUSE
// Tests of `warabifs::fs::WarabiFs` itself. Dropping a `WarabiFs` closes the pool
// without syncing, so a drop is a crash unless the test released or fsynced first.

/// A fresh scratch directory and the path of a pool inside it (not created yet).
pub fn scratch_pool() -> (Scratch, PathBuf) {
    let scratch = Scratch::new();
    let path = scratch.path("pool.pmem");
    (scratch, path)
}

/// The configuration of the pool at `path`; `size` creates it when it is missing.
pub fn pool_config(path: &Path, size: Option<u64>) -> PoolConfig {
    PoolConfig {
        path: path.to_path_buf(),
        create_if_missing_with_size: size,
        override_if_exists: false,
    }
}

/// Creates a pool of `size` bytes and mounts it.
pub fn create_pool(path: &Path, size: u64) -> WarabiFs {
    without_spawning(|| WarabiFs::open_pool(&pool_config(path, Some(size)), FsOptions::default()))
        .expect("create pool")
}

/// Mounts an existing pool, as a remount does (no size given).
pub fn mount_pool(path: &Path) -> WarabiFs {
    mount_pool_with(path, FsOptions::default())
}

pub fn mount_pool_with(path: &Path, opts: FsOptions) -> WarabiFs {
    without_spawning(|| WarabiFs::open_pool(&pool_config(path, None), opts))
        .expect("mount existing pool")
}

/// Closes the pool (by dropping the file system: a crash for whatever was not
/// persisted) and mounts it again.
pub fn remount(fs: WarabiFs, path: &Path) -> WarabiFs {
    drop(fs);
    mount_pool(path)
}

/// The credentials of this process, as the owner of new files.
pub fn caller() -> Caller {
    let opts = FsOptions::default();
    Caller {
        uid: opts.uid,
        gid: opts.gid,
    }
}

/// `len` bytes that differ from one `seed` to the next and are never zero, so that a
/// byte left unwritten (or zero-filled) shows.
pub fn nonzero_pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 * 31 + u64::from(seed) * 7 + 1) as u8 | 1)
        .collect()
}

/// Up to `len` bytes at `off`, through a handle of its own (whose release persists the
/// file, as a close does).
pub fn read_range(fs: &WarabiFs, ino: u64, off: u64, len: u32) -> Vec<u8> {
    let fh = fs.open(ino, false).expect("open");
    let bytes = fs.read(fh, off, len, |s| s.to_vec()).expect("read");
    fs.release(fh).expect("release");
    bytes
}

/// The whole file, read in 1 MiB pieces; checks the read length against the size.
pub fn read_all(fs: &WarabiFs, ino: u64) -> Vec<u8> {
    let size = fs.getattr(ino).expect("getattr").size;
    let mut out = Vec::with_capacity(size as usize);
    loop {
        let piece = read_range(fs, ino, out.len() as u64, MIB as u32);
        if piece.is_empty() {
            break;
        }
        out.extend_from_slice(&piece);
    }
    assert_eq!(
        out.len() as u64,
        size,
        "read_all length disagrees with the size of inode {ino}"
    );
    out
}

/// Creates `name` in `parent` holding `data`, closes it (which persists it); returns the ino.
pub fn create_file(fs: &WarabiFs, parent: u64, name: &[u8], data: &[u8]) -> u64 {
    let (attr, fh) = fs.create(parent, name, 0o644, caller()).expect("create");
    if !data.is_empty() {
        assert_eq!(fs.write(fh, 0, data, false).expect("write"), data.len());
    }
    fs.release(fh).expect("release");
    attr.ino
}

/// Compares byte vectors, reporting the first difference instead of both vectors.
pub fn assert_bytes_eq(actual: &[u8], expected: &[u8]) {
    let first_difference = actual.iter().zip(expected).position(|(a, e)| a != e);
    assert!(
        actual.len() == expected.len() && first_difference.is_none(),
        "lengths {} vs {} expected, first difference at {first_difference:?}",
        actual.len(),
        expected.len()
    );
}

pub fn lookup_ino(fs: &WarabiFs, parent: u64, name: &[u8]) -> u64 {
    fs.lookup(parent, name).expect("lookup").ino
}

/// Directory entries other than "." and "..": name -> (ino, kind).
pub fn list(fs: &WarabiFs, dir: u64) -> BTreeMap<Vec<u8>, (u64, FileKind)> {
    let mut entries = BTreeMap::new();
    fs.readdir(dir, 0, |e| {
        if e.name != b"." && e.name != b".." {
            let previous = entries.insert(e.name.to_vec(), (e.ino, e.kind));
            assert!(previous.is_none(), "name listed twice: {:?}", e.name);
        }
        false
    })
    .expect("readdir");
    entries
}

pub fn names(fs: &WarabiFs, dir: u64) -> BTreeSet<Vec<u8>> {
    list(fs, dir).into_keys().collect()
}

/// How long threads sharing a file system may take before a test calls it a deadlock:
/// generous, since the machine may be busy; it is no claim about speed.
pub const LIVENESS_LIMIT: Duration = Duration::from_secs(120);

/// Runs `work` on `threads` threads sharing one file system and returns it. Fails if
/// one panics, and (rather than hang the test run) if they have not all finished after
/// [`LIVENESS_LIMIT`]: that is a deadlock, not slowness.
pub fn run_concurrently(
    fs: WarabiFs,
    threads: usize,
    work: impl Fn(&WarabiFs, usize) + Send + Sync + 'static,
) -> WarabiFs {
    run_collecting(fs, threads, work).0
}

/// [`run_concurrently`], returning what each thread's `work` returned, in thread order.
pub fn run_collecting<R: Send + 'static>(
    fs: WarabiFs,
    threads: usize,
    work: impl Fn(&WarabiFs, usize) -> R + Send + Sync + 'static,
) -> (WarabiFs, Vec<R>) {
    let fs = Arc::new(fs);
    let work = Arc::new(work);
    let (done, finished) = mpsc::channel();
    for t in 0..threads {
        let (fs, work, done) = (Arc::clone(&fs), Arc::clone(&work), done.clone());
        std::thread::spawn(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| work(&fs, t)));
            drop(fs);
            done.send((t, outcome)).unwrap();
        });
    }
    let mut results: Vec<Option<R>> = (0..threads).map(|_| None).collect();
    for _ in 0..threads {
        let (t, outcome) = finished
            .recv_timeout(LIVENESS_LIMIT)
            .expect("worker threads deadlocked");
        match outcome {
            Ok(result) => results[t] = Some(result),
            Err(_) => panic!("worker thread {t} panicked"),
        }
    }
    let fs = Arc::try_unwrap(fs).ok().expect("workers hold no reference");
    (fs, results.into_iter().map(|r| r.expect("sent")).collect())
}

/// libpmemobj holds the pool file open, without close-on-exec, inside pmemobj_create
/// and pmemobj_open. A child spawned at that moment inherits the descriptor, and with it
/// the pool's lock, for as long as it lives (a daemon: the whole test), and the pool
/// stays "in use". So a test's in-process pool opens and the harness's spawns take turns.
static SPAWN_OR_OPEN: Mutex<()> = Mutex::new(());

/// Runs `open` (an in-process Pool::create/open, WarabiFs::open_pool, Store::open)
/// while no child process is being started.
pub fn without_spawning<T>(open: impl FnOnce() -> T) -> T {
    let _turn = SPAWN_OR_OPEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    open()
}

/// Starts `cmd` while no pool is being opened in this process.
pub fn spawn(cmd: &mut Command) -> Child {
    let _turn = SPAWN_OR_OPEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    cmd.spawn().expect("spawn")
}

pub fn warabifs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warabifs"))
}

/// Runs `cmd` to completion (no input, output captured), started through [`spawn`].
pub fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    spawn(cmd)
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// Runs `cmd` to completion and asserts that it succeeded. A failure names the command,
/// its exit status and what it printed.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} exited with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs warabifs to completion with the given arguments.
pub fn run_warabifs(args: &[&str]) -> Output {
    output(warabifs().args(args))
}

pub fn is_mounted(mountpoint: &Path) -> bool {
    let wanted = mountpoint.to_string_lossy().into_owned();
    let mut info = String::new();
    File::open("/proc/self/mountinfo")
        .and_then(|mut f| f.read_to_string(&mut info))
        .expect("mountinfo");
    info.lines()
        .any(|line| line.split(' ').nth(4) == Some(wanted.as_str()))
}

/// The file-system type /proc/self/mountinfo lists for a mount point.
pub fn fs_type(mountpoint: &Path) -> Option<String> {
    let wanted = mountpoint.to_string_lossy().into_owned();
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let line = info
        .lines()
        .find(|line| line.split(' ').nth(4) == Some(wanted.as_str()))?;
    let after_separator = line.split(" - ").nth(1)?;
    after_separator.split(' ').next().map(str::to_string)
}

/// Unmounts if mounted; returns whether an unmount was done.
pub fn unmount(mountpoint: &Path) -> bool {
    if !is_mounted(mountpoint) {
        return false;
    }
    let ok = Command::new("fusermount3")
        .arg("-u")
        .arg(mountpoint)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        // A busy or dead mount: detach it so the test run leaves nothing behind.
        let _ = Command::new("umount").arg("-l").arg(mountpoint).status();
    }
    true
}

/// Waits until no process holds libpmemobj's lock on the pool file, or on every part
/// of a pool set (libpmemobj locks the parts, not the set file).
pub fn wait_pool_released(pool: &Path) {
    if let Ok(set) = warabifs::store::poolset::read(pool) {
        for part in set.replicas.iter().flat_map(|r| &r.parts) {
            wait_file_unlocked(&part.path);
        }
        return;
    }
    wait_file_unlocked(pool);
}

fn wait_file_unlocked(pool: &Path) {
    let deadline = Instant::now() + MOUNT_TIMEOUT;
    loop {
        let file = File::open(pool).expect("open pool file");
        if Flock::lock(file, FlockArg::LockExclusiveNonblock).is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pool {} is still locked",
            pool.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A mount served by a foreground daemon this test started (so it knows the PID).
pub struct ForegroundMount {
    child: Option<Child>,
    pub mountpoint: PathBuf,
    pub pool: PathBuf,
    /// The daemon's stderr.
    log: tempfile::NamedTempFile,
}

impl ForegroundMount {
    pub fn start(pool: &Path, mountpoint: &Path, options: &[&str]) -> ForegroundMount {
        Self::start_with_env(pool, mountpoint, options, &[])
    }

    /// Like [`ForegroundMount::start`], with extra environment for the daemon.
    pub fn start_with_env(
        pool: &Path,
        mountpoint: &Path,
        options: &[&str],
        env: &[(&str, &str)],
    ) -> ForegroundMount {
        let mut cmd = warabifs();
        cmd.envs(env.iter().copied());
        // The daemon's log goes to a file: a pipe nobody reads would fill up and block
        // the daemon in the middle of a request.
        let log = tempfile::NamedTempFile::new().expect("daemon log file");
        cmd.arg(pool)
            .arg(mountpoint)
            .arg("-f")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("reopen log"));
        for option in options {
            cmd.arg("-o").arg(option);
        }
        let child = spawn(&mut cmd);
        let mut mount = ForegroundMount {
            child: Some(child),
            mountpoint: mountpoint.to_path_buf(),
            pool: pool.to_path_buf(),
            log,
        };
        mount.wait_mounted();
        mount
    }

    fn wait_mounted(&mut self) {
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        while !is_mounted(&self.mountpoint) {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!(
                    "warabifs exited with {status} before mounting: {}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mount did not appear within {MOUNT_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// What the daemon has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).expect("daemon log")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.mountpoint.join(name)
    }

    /// Waits for the daemon to exit on its own (killed by a fault hook, say).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        wait_with_timeout(&mut child)
    }

    /// Kills the daemon with SIGKILL, leaving its mount dead until unmounted.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// Sends `signal` to the daemon (this test's own child, by its PID).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal)
            .expect("signal");
    }

    /// Whether the daemon is still running.
    pub fn is_running(&mut self) -> bool {
        let child = self.child.as_mut().expect("started");
        child.try_wait().expect("try_wait").is_none()
    }

    /// Sends `signal` and waits for the daemon to exit; returns its exit status.
    pub fn signal_and_wait(
        &mut self,
        signal: nix::sys::signal::Signal,
    ) -> std::process::ExitStatus {
        self.signal(signal);
        let mut child = self.child.take().expect("running");
        wait_with_timeout(&mut child)
    }

    /// Unmounts and waits for the daemon to close the pool and exit.
    pub fn unmount(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        unmount(&self.mountpoint);
        if let Some(mut child) = self.child.take() {
            wait_with_timeout(&mut child);
        }
    }
}

impl Drop for ForegroundMount {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_with_timeout(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + MOUNT_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            // Only ever the process this test started, by its PID.
            let _ = child.kill();
            return child.wait().expect("reap");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A mount made by the plain command (it daemonizes); unmounted on drop.
pub struct DaemonMount {
    pub mountpoint: PathBuf,
    pub pool: PathBuf,
}

impl DaemonMount {
    /// Runs `warabifs POOL MNT -o ...`; asserts it returned success with the mount live.
    pub fn start(pool: &Path, mountpoint: &Path, options: &str) -> DaemonMount {
        let mut args = vec![
            pool.to_str().expect("utf-8"),
            mountpoint.to_str().expect("utf-8"),
        ];
        if !options.is_empty() {
            args.extend(["-o", options]);
        }
        let out = run_warabifs(&args);
        let mount = DaemonMount {
            mountpoint: mountpoint.to_path_buf(),
            pool: pool.to_path_buf(),
        };
        assert!(
            out.status.success(),
            "warabifs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            is_mounted(mountpoint),
            "warabifs returned before the mount was live"
        );
        mount
    }

    /// Guards a mount some other command (mount(8), say) made: unmounted on drop.
    pub fn watch(pool: &Path, mountpoint: &Path) -> DaemonMount {
        assert!(
            is_mounted(mountpoint),
            "{} is not mounted",
            mountpoint.display()
        );
        DaemonMount {
            mountpoint: mountpoint.to_path_buf(),
            pool: pool.to_path_buf(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.mountpoint.join(name)
    }
}

impl Drop for DaemonMount {
    fn drop(&mut self) {
        if unmount(&self.mountpoint) {
            wait_pool_released(&self.pool);
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift), so failures can be reproduced.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// libpmemobj's own check of a closed pool (`pmempool check -v`) must say consistent.
pub fn assert_pmempool_consistent(pool: &Path, context: &str) {
    let out = Command::new("pmempool")
        .args(["check", "-v"])
        .arg(pool)
        .output()
        .expect("pmempool (Debian pmdk-tools)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains(": consistent"),
        "{context}: pmempool check -v: {text}"
    );
}

/// `warabifs check` of a closed pool must find nothing wrong with the metadata.
pub fn assert_warabifs_check_clean(pool: &Path, context: &str) {
    let out = output(warabifs().arg("check").arg(pool));
    assert!(
        out.status.success(),
        "{context}: warabifs check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Both checks: libpmemobj's heap and warabifs' metadata.
pub fn assert_pool_consistent(pool: &Path, context: &str) {
    assert_pmempool_consistent(pool, context);
    assert_warabifs_check_clean(pool, context);
}

/// Pages of `path` in the page cache, as fincore(1) counts them.
pub fn cached_pages(path: &Path) -> u64 {
    let out = run_ok(
        Command::new("fincore") // util-linux-extra
            .args(["--noheadings", "--raw", "--output", "PAGES"])
            .arg(path),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("fincore said {text:?}"))
}

/// Drops the file's pages from the page cache.
pub fn drop_cache(file: &File) {
    posix_fadvise(file.as_fd(), 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED)
        .expect("fadvise DONTNEED");
}

/// A small deterministic generator (xorshift64*), so a failing round can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// `len` bytes of `file` at `offset`, which must all be there.
pub fn read_at(file: &File, offset: usize, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, offset as u64).expect("read");
    buf
}
