//! The two transports: which one serves a mount and says so, `-o io_uring=`, and how a
//! mount served over the rings ends (SIGKILL, a kernel abort).
//!
//! These tests follow the kernel's switch as it is set when they run
//! (/sys/module/fuse/parameters/enable_uring) and never change it: `scripts/test.sh`
//! runs every test once with it off and once with it on.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{fuse_tests_enabled, pattern, run_warabifs, ForegroundMount, Scratch};

const SWITCH: &str = "/sys/module/fuse/parameters/enable_uring";
/// How long a dead mount may take to be freed before the test calls it hung.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the kernel offers FUSE-over-io_uring to new mounts right now.
fn rings_enabled() -> bool {
    std::fs::read_to_string(SWITCH).is_ok_and(|v| v.trim() == "Y")
}

fn transport_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains("transport: ")).collect()
}

fn mount_logging(pool: &Path, mnt: &Path, options: &[&str]) -> ForegroundMount {
    let mut all = vec!["log_level=info"];
    all.extend_from_slice(options);
    ForegroundMount::start(pool, mnt, &all)
}

#[test]
fn the_log_names_the_transport_once_and_io_uring_off_keeps_dev_fuse() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let m = mount_logging(&pool, &mnt, &["create_if_missing_with_size=16M"]);
    std::fs::write(m.path("f"), b"served").unwrap();
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"served");
    let log = m.log();
    let lines = transport_lines(&log);
    assert_eq!(lines.len(), 1, "{log}");
    let expected = match rings_enabled() {
        true => "transport: FUSE-over-io_uring",
        false => "transport: /dev/fuse (FUSE-over-io_uring is off in this kernel",
    };
    assert!(lines[0].contains(expected), "{}", lines[0]);
    m.unmount();

    let m = mount_logging(&pool, &mnt, &["io_uring=off"]);
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"served");
    let log = m.log();
    let lines = transport_lines(&log);
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains("transport: /dev/fuse (io_uring=off)"),
        "{}",
        lines[0]
    );
}

#[test]
fn io_uring_on_mounts_over_the_rings_or_fails_with_one_line() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let args = [
        pool.to_str().unwrap(),
        mnt.to_str().unwrap(),
        "-o",
        "create_if_missing_with_size=16M,io_uring=on",
    ];
    if rings_enabled() {
        let m =
            common::DaemonMount::start(&pool, &mnt, "create_if_missing_with_size=16M,io_uring=on");
        std::fs::write(m.path("f"), b"x").unwrap();
        return;
    }
    let out = run_warabifs(&args);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("warabifs: io_uring=on: FUSE-over-io_uring is off in this kernel"),
        "{stderr}"
    );
    assert!(!common::is_mounted(&mnt));
    assert!(
        !pool.exists(),
        "the pool was created though the mount failed"
    );
}

/// Threads of process `pid`, or none once it is gone.
fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// Waits until `done` holds, up to RELEASE_TIMEOUT; returns how long it took.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < RELEASE_TIMEOUT,
            "{what} after {RELEASE_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

#[test]
fn kill_9_frees_the_mount_with_fusermount_and_the_pool_mounts_again() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let data = pattern(3 << 20, 9);
    let mut m = ForegroundMount::start(&pool, &mnt, &["create_if_missing_with_size=32M"]);
    let pid = m.pid();
    std::fs::write(m.path("f"), &data).unwrap();
    std::fs::File::open(m.path("f"))
        .unwrap()
        .sync_all()
        .unwrap();
    // Requests in flight on the rings when the daemon dies.
    let reader = {
        let path = m.path("f");
        std::thread::spawn(move || {
            for _ in 0..50 {
                if std::fs::read(&path).is_err() {
                    break;
                }
            }
        })
    };
    m.kill9();
    let _ = reader.join();
    assert_eq!(threads_of(pid), 0, "threads of the killed daemon remain");
    let out = Command::new("fusermount3")
        .arg("-u")
        .arg(&mnt)
        .output()
        .expect("fusermount3");
    assert!(
        out.status.success(),
        "fusermount3 -u: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("the mount point is still mounted", || {
        !common::is_mounted(&mnt)
    });
    common::wait_pool_released(&pool);
    let m = ForegroundMount::start(&pool, &mnt, &[]);
    assert_eq!(std::fs::read(m.path("f")).unwrap(), data);
}

/// The fusectl directory of the connection serving `mnt`, mounting fusectl first where
/// it is not; returns whether this test mounted it (then it unmounts it again).
fn fuse_connection(mnt: &Path) -> (std::path::PathBuf, bool) {
    let root = Path::new("/sys/fs/fuse/connections");
    let mounted_here = !common::is_mounted(root);
    if mounted_here {
        common::run_ok(
            Command::new("mount")
                .args(["-t", "fusectl", "fusectl"])
                .arg(root),
        );
    }
    let dev = std::fs::metadata(mnt).unwrap().dev();
    (
        root.join(nix::sys::stat::minor(dev).to_string()),
        mounted_here,
    )
}

struct Fusectl(bool);

impl Drop for Fusectl {
    fn drop(&mut self) {
        if self.0 {
            let _ = Command::new("umount")
                .arg("/sys/fs/fuse/connections")
                .status();
        }
    }
}

#[test]
fn a_kernel_abort_ends_the_daemon_and_the_mount_unmounts() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let mut m = ForegroundMount::start(&pool, &mnt, &["create_if_missing_with_size=16M"]);
    std::fs::write(m.path("f"), b"before the abort").unwrap();
    std::fs::File::open(m.path("f"))
        .unwrap()
        .sync_all()
        .unwrap();
    let (connection, mounted_here) = fuse_connection(&mnt);
    let _fusectl = Fusectl(mounted_here);
    std::fs::write(connection.join("abort"), "1").expect("abort the connection");
    let status = m.wait_exit();
    assert!(
        status.code().is_some(),
        "the daemon died of a signal: {status}"
    );
    assert!(
        std::fs::metadata(m.path("f")).is_err(),
        "the aborted mount still answers"
    );
    // The daemon unmounts on its way out; where it could not, umount must work.
    common::unmount(&mnt);
    assert!(
        !common::is_mounted(&mnt),
        "the aborted mount is still listed"
    );
    common::wait_pool_released(&pool);
    let m = ForegroundMount::start(&pool, &mnt, &[]);
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"before the abort");
    m.unmount();
    common::assert_pool_consistent(&pool, "after a kernel abort");
}

/// A process that keeps one CPU busy until dropped (killed by its PID).
struct CpuHog(std::process::Child);

impl CpuHog {
    fn on(cpu: usize) -> CpuHog {
        let child = common::spawn(
            Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .stdout(std::process::Stdio::null()),
        );
        let mut set = nix::sched::CpuSet::new();
        set.set(cpu).unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sched::sched_setaffinity(pid, &set).expect("pin the hog");
        CpuHog(child)
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Ring threads commit replies at idle priority (so the woken caller stays on its
/// CPU); with every CPU kept busy, the guard must put them back to normal priority, or
/// each request would wait for the busy CPUs to have nothing else to run.
#[test]
fn busy_cpus_do_not_starve_the_ring_threads() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let m = mount_logging(
        &pool,
        &mnt,
        &[
            "create_if_missing_with_size=16M",
            "log_level=warabifs::fuse::uring::priority=debug",
        ],
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hogs: Vec<CpuHog> = (0..cpus).map(CpuHog::on).collect();
    for i in 0..100 {
        std::fs::write(m.path(&format!("f{i}")), format!("{i}")).unwrap();
    }
    drop(hogs);
    for i in 0..100 {
        assert_eq!(
            std::fs::read(m.path(&format!("f{i}"))).unwrap(),
            format!("{i}").as_bytes()
        );
    }
    let log = m.log();
    if rings_enabled() {
        assert!(
            log.contains("starved at idle priority; committing at normal priority"),
            "no ring thread was restored to normal priority: {log}"
        );
    }
}

/// Over the rings a bulk read (the readahead of a file read from start to end) is
/// served on the thread of another CPU's queue, and other requests in that entry go
/// back to their own queue's thread: the bytes read are the file's, small requests
/// made meanwhile are answered, and the log says a bulk read was handed over.
#[test]
fn bulk_reads_served_on_another_queue_return_the_files_bytes() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let data = pattern(24 << 20, 7);
    let m = ForegroundMount::start(&pool, &mnt, &["create_if_missing_with_size=128M"]);
    std::fs::write(m.path("big"), &data).unwrap();
    m.unmount();

    // A new mount starts with an empty page cache, so every read goes to the daemon.
    let m = mount_logging(&pool, &mnt, &["log_level=warabifs::fuse::uring=debug"]);
    let small = {
        let dir = m.path("small");
        std::thread::spawn(move || {
            std::fs::create_dir(&dir).unwrap();
            for i in 0..300 {
                let f = dir.join(format!("f{i}"));
                std::fs::write(&f, format!("{i}")).unwrap();
                assert_eq!(std::fs::read(&f).unwrap(), format!("{i}").as_bytes());
            }
        })
    };
    for _ in 0..3 {
        assert!(
            std::fs::read(m.path("big")).unwrap() == data,
            "bytes differ"
        );
        // Read again from the daemon: drop this file's pages from the page cache.
        common::drop_cache(&std::fs::File::open(m.path("big")).unwrap());
    }
    small.join().unwrap();
    let log = m.log();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if rings_enabled() && cpus > 1 {
        assert!(
            log.contains("a bulk read handed to queue"),
            "no bulk read was handed to another queue: {log}"
        );
    }
}
