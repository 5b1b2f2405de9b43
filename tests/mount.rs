//! Real FUSE mounts of real pools: data in, data out, Warabi compatibility, crashes.

mod common;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use common::{fuse_tests_enabled, pattern, run_ok, DaemonMount, ForegroundMount, Scratch};
use warabifs::pmem::{Oid, Pool};

const MIB: u64 = 1 << 20;

fn region_id_of(path: &std::path::Path) -> Oid {
    let out = run_ok(
        Command::new("getfattr")
            .args(["--only-values", "-n", "user.warabi.region_id"])
            .arg(path),
    );
    let hex = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(hex.len(), 32, "region id {hex:?}");
    assert!(
        hex.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "not lowercase hex: {hex}"
    );
    hex.parse().expect("region id parses")
}

fn statvfs_bytes(path: &std::path::Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(path).expect("statvfs");
    st.blocks() * st.fragment_size()
}

#[test]
fn background_mount_keeps_a_copied_file_across_remounts() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool = scratch.path("a.pmem");
    let mnt = scratch.mountpoint("m");
    let data = pattern(10 * MIB as usize, 7);
    let source = scratch.path("source.bin");
    std::fs::write(&source, &data).unwrap();
    {
        let m = DaemonMount::start(&pool, &mnt, "create_if_missing_with_size=64M");
        assert_eq!(common::fs_type(&mnt).as_deref(), Some("fuse.warabifs"));
        let size = statvfs_bytes(&mnt);
        assert!((60 * MIB..=64 * MIB).contains(&size), "df size {size}");
        let status = Command::new("cp")
            .arg(&source)
            .arg(m.path("copy.bin"))
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(std::fs::read(m.path("copy.bin")).unwrap(), data);
    }
    let m = DaemonMount::start(&pool, &mnt, "");
    assert_eq!(std::fs::read(m.path("copy.bin")).unwrap(), data);
}

/// Builds a pool exactly as Warabi's pmem backend does; returns the live regions.
fn warabi_made_pool(path: &std::path::Path) -> Vec<(Oid, Vec<u8>)> {
    let pool = common::without_spawning(|| Pool::create(path, 16 * MIB)).unwrap();
    let mut regions = Vec::new();
    for (i, size) in [1000u64, 4096, 65536].into_iter().enumerate() {
        let oid = pool.alloc(size, 0).unwrap();
        let bytes = pattern(pool.usable_size(oid) as usize, i as u64 + 1);
        pool.write(oid, 0, &bytes);
        pool.persist(oid, 0, bytes.len());
        regions.push((oid, bytes));
    }
    let (freed, _) = regions.remove(1);
    pool.free(freed);
    regions
}

#[test]
fn regions_warabi_made_are_files_and_writes_reach_warabi() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool_path = scratch.path("warabi.pmem");
    let regions = warabi_made_pool(&pool_path);
    let mnt = scratch.mountpoint("m");
    let m = ForegroundMount::start(&pool_path, &mnt, &[]);
    let mut names: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut expected: Vec<String> = regions.iter().map(|(oid, _)| oid.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected);
    for (oid, bytes) in &regions {
        let path = m.path(&oid.to_string());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes.len() as u64);
        assert_eq!(&std::fs::read(&path).unwrap(), bytes);
    }
    let (target, _) = regions[0];
    let new_bytes = pattern(500, 99);
    let mut file = OpenOptions::new()
        .write(true)
        .open(m.path(&target.to_string()))
        .unwrap();
    file.seek(SeekFrom::Start(100)).unwrap();
    file.write_all(&new_bytes).unwrap();
    file.sync_all().unwrap();
    drop(file);
    m.unmount();

    let pool = common::without_spawning(|| Pool::open(&pool_path)).unwrap();
    assert_eq!(pool.type_num(target), 0);
    assert_eq!(pool.bytes(target, 100, 500), &new_bytes[..]);
}

#[test]
fn region_id_xattr_names_the_type0_object_holding_the_file() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool_path = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let data = pattern(300_000, 3);
    let m = ForegroundMount::start(&pool_path, &mnt, &["create_if_missing_with_size=32M"]);
    std::fs::write(m.path("f"), &data).unwrap();
    let oid = region_id_of(&m.path("f"));
    m.unmount();

    let pool = common::without_spawning(|| Pool::open(&pool_path)).unwrap();
    assert!(
        pool.objects().any(|o| o == oid),
        "{oid} is not a live object"
    );
    assert_eq!(pool.type_num(oid), 0);
    assert_eq!(pool.bytes(oid, 0, data.len()), &data[..]);
}

#[test]
fn fsynced_data_survives_kill_9_and_the_pool_stays_consistent() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool_path = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let mut m = ForegroundMount::start(&pool_path, &mnt, &["create_if_missing_with_size=32M"]);
    let files: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("f{i}"), pattern(100_000 * (i + 1), i as u64)))
        .collect();
    let mut open_files = Vec::new();
    for (name, data) in &files {
        let mut f = std::fs::File::create(m.path(name)).unwrap();
        f.write_all(data).unwrap();
        f.sync_all().unwrap();
        open_files.push(f); // still open when the daemon dies
    }
    m.kill9();
    drop(open_files);
    assert!(common::unmount(&mnt), "the dead mount was still listed");
    common::wait_pool_released(&pool_path);

    let m = ForegroundMount::start(&pool_path, &mnt, &[]);
    for (name, data) in &files {
        assert_eq!(&std::fs::read(m.path(name)).unwrap(), data, "{name}");
    }
    m.unmount();
    common::assert_pmempool_consistent(&pool_path, "after kill -9 and remount");
}

#[test]
fn sigterm_unmounts_and_the_last_shutdown_is_clean() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool_path = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let mut m = ForegroundMount::start(&pool_path, &mnt, &["create_if_missing_with_size=16M"]);
    std::fs::write(m.path("f"), b"kept").unwrap();
    let status = m.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    assert!(status.success(), "daemon exit {status}");
    assert!(!common::is_mounted(&mnt));
    let info = Command::new("pmempool")
        .arg("info")
        .arg(&pool_path)
        .output()
        .expect("pmempool info");
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("Last shutdown") && l.trim_end().ends_with("clean")),
        "{text}"
    );
    drop(m);
    let m = ForegroundMount::start(&pool_path, &mnt, &[]);
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"kept");
}

#[test]
fn sigterm_on_a_busy_mount_waits_for_a_moment_and_may_be_sent_again() {
    if !fuse_tests_enabled() {
        return;
    }
    use nix::sys::signal::Signal::SIGTERM;
    let scratch = Scratch::new();
    let pool_path = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let mut m = ForegroundMount::start(&pool_path, &mnt, &["create_if_missing_with_size=16M"]);
    std::fs::write(m.path("f"), b"kept").unwrap();

    // Busy for a moment (a file closed soon after the signal): the unmount waits.
    let held = std::fs::File::open(m.path("f")).unwrap();
    m.signal(SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    drop(held);
    let status = m.wait_exit();
    assert!(status.success(), "daemon exit {status}");
    assert!(!common::is_mounted(&mnt));
    drop(m);

    // Busy for longer: the mount keeps serving, and a second SIGTERM ends it.
    let mut m = ForegroundMount::start(&pool_path, &mnt, &[]);
    let held = std::fs::File::open(m.path("f")).unwrap();
    m.signal(SIGTERM);
    std::thread::sleep(Duration::from_secs(3));
    assert!(m.is_running(), "the daemon left a busy mount");
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"kept");
    assert!(m.log().contains("still serving"), "{}", m.log());
    drop(held);
    let status = m.signal_and_wait(SIGTERM);
    assert!(status.success(), "daemon exit {status}");
    assert!(!common::is_mounted(&mnt));
}

#[test]
fn fio_four_jobs_write_and_verify_their_own_files() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool_path = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let m = ForegroundMount::start(&pool_path, &mnt, &["create_if_missing_with_size=128M"]);
    let out = Command::new("fio")
        .args([
            "--name=verify",
            "--numjobs=4",
            "--rw=randwrite",
            "--bs=4k",
            "--size=8M",
            "--ioengine=psync",
        ])
        .args([
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_fatal=1",
            "--verify_state_save=0",
            "--group_reporting",
        ])
        .arg(format!("--directory={}", mnt.display()))
        .output()
        .expect("fio (Debian package fio)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fio failed: {report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("err= 0"), "{report}");
    let files: Vec<_> = std::fs::read_dir(&mnt).unwrap().collect();
    assert_eq!(files.len(), 4);
    for f in files {
        assert_eq!(f.unwrap().metadata().unwrap().size(), 8 * MIB);
    }
    m.unmount();
}

#[test]
fn a_file_unlinked_while_open_is_readable_then_reclaimed_after_a_crash() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool_path = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let mut m = ForegroundMount::start(&pool_path, &mnt, &["create_if_missing_with_size=32M"]);
    let free_before = nix::sys::statvfs::statvfs(&mnt).unwrap().blocks_free();
    let data = pattern(3 * MIB as usize, 11);
    std::fs::write(m.path("doomed"), &data).unwrap();
    let mut open = std::fs::File::open(m.path("doomed")).unwrap();
    std::fs::remove_file(m.path("doomed")).unwrap();
    assert!(!m.path("doomed").exists());
    let mut read_back = Vec::new();
    std::io::Read::read_to_end(&mut open, &mut read_back).unwrap();
    assert_eq!(
        read_back, data,
        "readable through the open descriptor after unlink"
    );
    m.kill9();
    drop(open);
    assert!(common::unmount(&mnt));
    common::wait_pool_released(&pool_path);

    let m = ForegroundMount::start(&pool_path, &mnt, &[]);
    assert_eq!(std::fs::read_dir(&mnt).unwrap().count(), 0);
    let free_after = nix::sys::statvfs::statvfs(&mnt).unwrap().blocks_free();
    assert_eq!(
        free_after, free_before,
        "the orphan's region was reclaimed at mount"
    );
    m.unmount();
}

#[test]
fn direct_io_atomic_writes_and_writeback_cache_mounts_keep_data_like_the_default() {
    if !fuse_tests_enabled() {
        return;
    }
    for option in ["direct_io", "atomic_writes", "writeback_cache"] {
        let scratch = Scratch::new();
        let pool_path = scratch.path("p.pmem");
        let mnt = scratch.mountpoint("m");
        let m = ForegroundMount::start(
            &pool_path,
            &mnt,
            &["create_if_missing_with_size=64M", option],
        );
        let mut expected = pattern(3 * MIB as usize + 123, 21);
        std::fs::write(m.path("f"), &expected).unwrap();
        let file = OpenOptions::new().write(true).open(m.path("f")).unwrap();
        let patch = pattern(5000, 22);
        std::os::unix::fs::FileExt::write_all_at(&file, &patch, 4000).unwrap();
        expected[4000..9000].copy_from_slice(&patch);
        drop(file);
        assert_eq!(std::fs::read(m.path("f")).unwrap(), expected, "{option}");
        m.unmount();
        let m = ForegroundMount::start(&pool_path, &mnt, &[option]);
        assert_eq!(
            std::fs::read(m.path("f")).unwrap(),
            expected,
            "{option} after remount"
        );
        m.unmount();
    }
}

/// Runs `script` with sh as the unprivileged user nobody (uid and gid 65534).
fn run_as_nobody(script: &str) {
    use std::os::unix::process::CommandExt;
    run_ok(
        Command::new("sh")
            .args(["-c", script])
            .uid(NOBODY)
            .gid(NOBODY),
    );
}

const NOBODY: u32 = 65534;

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn set_id_bits_are_cleared_on_write_truncate_and_chown_as_linux_does() {
    if !fuse_tests_enabled() {
        return;
    }
    // Through the page cache the kernel writes back itself, except to files with
    // those bits: their writes go straight to warabifs, flagged.
    for cache in ["", "writeback_cache"] {
        check_set_id_bits_clearing(cache);
    }
}

fn check_set_id_bits_clearing(cache: &str) {
    use std::os::unix::fs::{chown, PermissionsExt};
    let scratch = Scratch::new();
    let pool_path = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    // nobody must be able to reach the mount point.
    let parent = mnt.parent().unwrap();
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let m = ForegroundMount::start(
        &pool_path,
        &mnt,
        &["create_if_missing_with_size=32M", "allow_other", cache],
    );
    let f = m.path("f");
    std::fs::write(&f, b"data").unwrap();
    chown(&f, Some(NOBODY), Some(NOBODY)).unwrap();
    let set_mode = |mode: u32| {
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(mode_of(&f), mode);
    };
    let quoted = f.display().to_string();

    set_mode(0o6775);
    run_as_nobody(&format!("printf x >> '{quoted}'"));
    assert_eq!(mode_of(&f), 0o775, "a write by the owner clears both bits");

    set_mode(0o2765);
    run_as_nobody(&format!("printf x >> '{quoted}'"));
    assert_eq!(
        mode_of(&f),
        0o2765,
        "set-group-ID without group execute stays"
    );

    set_mode(0o6775);
    OpenOptions::new()
        .append(true)
        .open(&f)
        .unwrap()
        .write_all(b"root")
        .unwrap();
    assert_eq!(mode_of(&f), 0o6775, "root (CAP_FSETID) keeps both bits");

    run_as_nobody(&format!("truncate -s 1 '{quoted}'"));
    assert_eq!(
        mode_of(&f),
        0o775,
        "a truncate by the owner clears both bits"
    );

    set_mode(0o6775);
    chown(&f, Some(NOBODY), Some(NOBODY)).unwrap();
    assert_eq!(mode_of(&f), 0o775, "chown clears both bits, even by root");

    let d = m.path("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o2775)).unwrap();
    chown(&d, Some(NOBODY), Some(NOBODY)).unwrap();
    assert_eq!(
        mode_of(&d),
        0o2775,
        "a directory keeps set-group-ID on chown"
    );

    m.unmount();
    let m = ForegroundMount::start(&pool_path, &mnt, &[]);
    assert_eq!(mode_of(&m.path("f")), 0o775, "the cleared mode is stored");
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"d");
    m.unmount();
}

#[test]
fn ioctls_are_refused_without_a_log_line_each() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let m = ForegroundMount::start(&pool, &mnt, &["create_if_missing_with_size=16M"]);
    let file = m.path("f");
    std::fs::write(&file, b"data").unwrap();
    for _ in 0..50 {
        // File-attribute flag ioctls, which the kernel passes on to warabifs.
        for cmd in [
            Command::new("lsattr").arg(&file),
            Command::new("chattr").arg("+A").arg(&file),
        ] {
            let out = common::output(cmd);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{cmd:?} succeeded");
            assert!(
                stderr.contains("Operation not supported"),
                "{cmd:?}: {stderr}"
            );
        }
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"data");
    let log = m.log();
    assert!(!log.contains("ioctl"), "the daemon logged ioctls:\n{log}");
    m.unmount();
}
