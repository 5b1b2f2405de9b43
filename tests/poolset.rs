//! Pool sets (poolset(5)) made by `pmempool create obj SET`: multi-part sets, local
//! replicas, OPTION SINGLEHDR; mounted, remounted, checked by pmempool and by the
//! offline tools, and refused unchanged when they are not libpmemobj pools.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    assert_pmempool_consistent, assert_warabifs_check_clean, fuse_tests_enabled, pattern, run_ok,
    run_warabifs, DaemonMount, ForegroundMount, Scratch,
};

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Writes a pool set file naming `replicas` (each a list of (size, part name) in the
/// scratch directory) and creates the pool with `pmempool create obj`.
fn create_set(scratch: &Scratch, options: &[&str], replicas: &[&[(&str, &str)]]) -> PathBuf {
    let set = scratch.path("pool.set");
    std::fs::write(&set, set_text(scratch, options, replicas)).unwrap();
    run_ok(Command::new("pmempool").args(["create", "obj"]).arg(&set));
    set
}

/// A set of one 64 MiB part, `primary`, and a replica of it, `mirror`.
fn mirrored_set(scratch: &Scratch) -> PathBuf {
    create_set(scratch, &[], &[&[("64M", "primary")], &[("64M", "mirror")]])
}

fn set_text(scratch: &Scratch, options: &[&str], replicas: &[&[(&str, &str)]]) -> String {
    let mut text = String::from("PMEMPOOLSET\n");
    for option in options {
        text += &format!("OPTION {option}\n");
    }
    for (n, parts) in replicas.iter().enumerate() {
        if n > 0 {
            text += "REPLICA\n";
        }
        for (size, name) in *parts {
            text += &format!("{size} {}\n", s(&scratch.path(name)));
        }
    }
    text
}

fn stdout_of(args: &[&str]) -> String {
    let out = run_warabifs(args);
    assert!(
        out.status.success(),
        "warabifs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_two_part_set_mounts_keeps_its_files_and_stays_consistent() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let set = create_set(&scratch, &[], &[&[("128M", "part0"), ("128M", "part1")]]);
    let set_bytes = std::fs::read(&set).unwrap();
    let mnt = scratch.mountpoint("m");
    let random = pattern(20_000_000, 16);
    let dd_source = scratch.path("dd.src");
    std::fs::write(&dd_source, pattern(70 << 20, 17)).unwrap();

    let m = DaemonMount::start(&set, &mnt, "");
    std::fs::write(m.path("random"), &random).unwrap();
    run_ok(Command::new("dd").args([
        &format!("if={}", s(&dd_source)),
        &format!("of={}", s(&m.path("dd"))),
        "bs=1M",
        "conv=fsync",
        "status=none",
    ]));
    // df counts both parts: more than one part holds, less than both (less headers).
    let stat = nix::sys::statvfs::statvfs(&mnt).unwrap();
    let total = stat.blocks() * stat.fragment_size();
    assert!(
        total > 200 << 20 && total <= 256 << 20,
        "df size {total} bytes"
    );
    drop(m);

    let m = DaemonMount::start(&set, &mnt, "");
    assert!(std::fs::read(m.path("random")).unwrap() == random);
    assert!(std::fs::read(m.path("dd")).unwrap() == std::fs::read(&dd_source).unwrap());
    drop(m);

    assert_eq!(
        std::fs::read(&set).unwrap(),
        set_bytes,
        "the set file changed"
    );
    assert_pmempool_consistent(&set, "after two mounts");
    assert_warabifs_check_clean(&set, "after two mounts");
    let listing = stdout_of(&["ls", s(&set)]);
    assert!(
        listing.contains(" /random\n") && listing.contains(" /dd\n"),
        "{listing}"
    );
    let info = stdout_of(&["info", s(&set)]);
    for part in ["part0", "part1"] {
        assert!(info.contains(s(&scratch.path(part))), "{info}");
    }
    assert!(info.contains("replica 0 (master): 2 part(s)"), "{info}");
    let repair = stdout_of(&["check", "--repair", s(&set)]);
    assert!(repair.contains("the pool is clean"), "{repair}");
}

#[test]
fn a_replica_rebuilds_a_lost_part_with_pmempool_sync() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let set = mirrored_set(&scratch);
    let mnt = scratch.mountpoint("m");
    let data = pattern(3 << 20, 18);
    let synced = pattern(100_000, 19);
    let m = DaemonMount::start(&set, &mnt, "");
    std::fs::write(m.path("closed"), &data).unwrap();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(m.path("fsynced")).unwrap();
        f.write_all(&synced).unwrap();
        f.sync_all().unwrap();
    }
    std::fs::create_dir(m.path("dir")).unwrap();
    drop(m);

    std::fs::remove_file(scratch.path("primary")).unwrap();
    run_ok(Command::new("pmempool").arg("sync").arg(&set));
    assert!(scratch.path("primary").exists());

    let m = DaemonMount::start(&set, &mnt, "");
    assert!(std::fs::read(m.path("closed")).unwrap() == data);
    assert!(std::fs::read(m.path("fsynced")).unwrap() == synced);
    assert!(m.path("dir").is_dir());
    drop(m);
    assert_pmempool_consistent(&set, "after the sync");
    let info = stdout_of(&["info", s(&set)]);
    assert!(info.contains("pool set, 2 replica(s)"), "{info}");
}

#[test]
fn a_singlehdr_set_mounts_and_keeps_its_files() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let set = create_set(&scratch, &["SINGLEHDR"], &[&[("32M", "a"), ("32M", "b")]]);
    let mnt = scratch.mountpoint("m");
    // More than the first part holds, so some of it lives in the second. Not five such
    // files: a file's region holds twice its bytes until the kernel's RELEASE, which
    // comes after close(2) returns, trims it (SEMANTICS §2.10), so five of them could
    // meet a full pool while the last release was still on its way.
    let files: Vec<Vec<u8>> = (0..4).map(|n| pattern(8 << 20, 20 + n)).collect();
    let m = DaemonMount::start(&set, &mnt, "");
    for (n, data) in files.iter().enumerate() {
        std::fs::write(m.path(&format!("f{n}")), data).unwrap();
    }
    drop(m);
    let m = DaemonMount::start(&set, &mnt, "");
    for (n, data) in files.iter().enumerate() {
        assert!(std::fs::read(m.path(&format!("f{n}"))).unwrap() == *data);
    }
    drop(m);
    assert_pmempool_consistent(&set, "SINGLEHDR");
    assert_warabifs_check_clean(&set, "SINGLEHDR");
}

/// A mount attempt that must fail with `expected` in its reason.
fn refused(set: &Path, mnt: &Path, expected: &str) {
    let out = run_warabifs(&[s(set), s(mnt)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(expected),
        "expected {expected:?}, got: {err}"
    );
    assert!(!common::is_mounted(mnt));
}

#[test]
fn sets_that_are_not_libpmemobj_pools_are_refused_unchanged() {
    let scratch = Scratch::new();
    let mnt = scratch.mountpoint("m");
    // Parts of zeros: a set of files that are not pool parts.
    for name in ["zero0", "zero1"] {
        std::fs::write(scratch.path(name), vec![0u8; 8 << 20]).unwrap();
    }
    let set = scratch.path("pool.set");
    std::fs::write(
        &set,
        set_text(&scratch, &[], &[&[("8M", "zero0"), ("8M", "zero1")]]),
    )
    .unwrap();
    refused(&set, &mnt, "is not a libpmemobj pool part");
    for name in ["zero0", "zero1"] {
        let bytes = std::fs::read(scratch.path(name)).unwrap();
        assert!(bytes.iter().all(|&b| b == 0), "{name} was written");
    }
    for tool in ["ls", "info", "check"] {
        let out = run_warabifs(&[tool, s(&set)]);
        assert_eq!(out.status.code(), Some(2), "warabifs {tool}");
    }

    std::fs::write(&set, "PMEMPOOLSET\n8M /nonexistent/part\n").unwrap();
    refused(&set, &mnt, "/nonexistent/part");
    std::fs::write(
        &set,
        format!(
            "PMEMPOOLSET\n8M {}\nREPLICA user@host remote.set\n",
            s(&scratch.path("zero0"))
        ),
    )
    .unwrap();
    refused(&set, &mnt, "remote replicas (librpmem) are not supported");
}

#[test]
fn override_if_exists_replaces_the_set_file_as_warabi_does_and_keeps_the_parts() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let set = create_set(&scratch, &[], &[&[("16M", "p0"), ("16M", "p1")]]);
    let parts: Vec<Vec<u8>> = ["p0", "p1"]
        .iter()
        .map(|p| std::fs::read(scratch.path(p)).unwrap())
        .collect();
    let mnt = scratch.mountpoint("m");
    let m = DaemonMount::start(
        &set,
        &mnt,
        "create_if_missing_with_size=16M,override_if_exists",
    );
    std::fs::write(m.path("f"), b"single file now").unwrap();
    drop(m);
    assert!(std::fs::read(&set).unwrap().starts_with(b"PMEMOBJ\0"));
    for (name, bytes) in ["p0", "p1"].iter().zip(&parts) {
        assert!(
            std::fs::read(scratch.path(name)).unwrap() == *bytes,
            "{name} changed"
        );
    }
}

#[test]
fn what_fsync_sync_mounts_and_transactions_made_durable_is_in_the_replica_after_a_crash() {
    if !fuse_tests_enabled() {
        return;
    }
    use std::io::Write;
    let scratch = Scratch::new();
    let set = mirrored_set(&scratch);
    let mnt = scratch.mountpoint("m");
    let fsynced = pattern(200_000, 21);
    let synced = pattern(150_000, 22);

    let mut m = ForegroundMount::start(&set, &mnt, &[]);
    let mut f = std::fs::File::create(m.path("fsynced")).unwrap();
    f.write_all(&fsynced).unwrap();
    f.sync_all().unwrap();
    std::fs::create_dir(m.path("dir")).unwrap();
    m.kill9(); // no close, no unmount: only what was made durable counts
    drop(f);
    m.unmount();

    let mut m = ForegroundMount::start(&set, &mnt, &["sync"]);
    let mut g = std::fs::File::create(m.path("synced")).unwrap();
    g.write_all(&synced).unwrap();
    m.kill9();
    drop(g);
    m.unmount();

    // The primary's copy is lost; the replica must hold all of it.
    std::fs::remove_file(scratch.path("primary")).unwrap();
    run_ok(Command::new("pmempool").arg("sync").arg(&set));
    let m = DaemonMount::start(&set, &mnt, "");
    assert!(std::fs::read(m.path("fsynced")).unwrap() == fsynced);
    assert!(std::fs::read(m.path("synced")).unwrap() == synced);
    assert!(m.path("dir").is_dir());
}
