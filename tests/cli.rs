//! Wrong arguments and unusable pools: a non-zero exit, one line naming the problem, and
//! the pool file exactly as it was.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{fuse_tests_enabled, pattern, run_warabifs, ForegroundMount, Scratch};
use warabifs::fs::{Caller, FsOptions, WarabiFs, ROOT_INO};
use warabifs::pmem::Pool;
use warabifs::store::records::FORMAT_VERSION;
use warabifs::store::PoolConfig;

/// Runs warabifs, expects failure, returns its single stderr line.
fn fails_with_one_line(args: &[&str]) -> String {
    one_failure_line(&run_warabifs(args), &format!("{args:?}"))
}

/// The single stderr line of a warabifs run that must have failed.
fn one_failure_line(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "warabifs {what} succeeded");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr:?}");
    assert!(lines[0].starts_with("warabifs: "), "{stderr:?}");
    lines[0].to_string()
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Asserts that a file still holds exactly `before` (a refused open wrote nothing).
fn assert_unchanged(path: &Path, before: &[u8]) {
    let after = std::fs::read(path).expect("read pool file");
    assert!(
        after.len() == before.len() && after == before,
        "{}: the bytes changed ({} bytes before, {} after)",
        path.display(),
        before.len(),
        after.len()
    );
}

/// Runs warabifs with `args` expecting a refusal: one line, which is returned, and the
/// pool file byte for byte as it was.
fn refused_unchanged(pool: &Path, args: &[&str]) -> String {
    let before = std::fs::read(pool).expect("read pool file");
    let line = fails_with_one_line(args);
    assert_unchanged(pool, &before);
    line
}

/// A real warabifs pool of 16 MiB holding a directory and a file with data, closed.
fn real_pool(path: &Path) -> PathBuf {
    let config = PoolConfig {
        path: path.to_path_buf(),
        create_if_missing_with_size: Some(16 << 20),
        override_if_exists: false,
    };
    let fs = common::without_spawning(|| WarabiFs::open_pool(&config, FsOptions::default()))
        .expect("create pool");
    let caller = Caller { uid: 0, gid: 0 };
    let dir = fs.mkdir(ROOT_INO, b"dir", 0o755, caller).unwrap().ino;
    let (_, fh) = fs.create(dir, b"data", 0o644, caller).unwrap();
    fs.write(fh, 0, &pattern(300_000, 41), false).unwrap();
    fs.release(fh).unwrap();
    fs.sync_all();
    drop(fs);
    path.to_path_buf()
}

/// Flips every bit of the byte at `off`.
fn flip_byte(path: &Path, off: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[off] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_missing_pool_without_a_size_is_refused_and_not_created() {
    let scratch = Scratch::new();
    let pool = scratch.path("none.pmem");
    let mnt = scratch.mountpoint("m");
    let line = fails_with_one_line(&[s(&pool), s(&mnt)]);
    assert!(
        line.contains("does not exist") && line.contains("create_if_missing_with_size"),
        "{line}"
    );
    assert!(!pool.exists());
}

#[test]
fn sizes_below_8_mib_or_unparsable_are_refused() {
    let scratch = Scratch::new();
    let pool = scratch.path("small.pmem");
    let mnt = scratch.mountpoint("m");
    let line = fails_with_one_line(&[s(&pool), s(&mnt), "-o", "create_if_missing_with_size=4M"]);
    assert!(line.contains("at least 8388608"), "{line}");
    let line = fails_with_one_line(&[s(&pool), s(&mnt), "-o", "create_if_missing_with_size=lots"]);
    assert!(line.contains("create_if_missing_with_size"), "{line}");
    assert!(!pool.exists());

    // Checked even when the pool exists, as Warabi does; the pool is not touched.
    let existing = real_pool(&scratch.path("existing.pmem"));
    for bad in ["8388607", "1M", "lots", "-1", ""] {
        let option = format!("create_if_missing_with_size={bad}");
        let line = refused_unchanged(&existing, &[s(&existing), s(&mnt), "-o", &option]);
        assert!(line.contains("create_if_missing_with_size"), "{line}");
    }
    let line = refused_unchanged(
        &existing,
        &[
            s(&existing),
            s(&mnt),
            "-o",
            "create_if_missing_with_size=8388607",
        ],
    );
    assert!(
        line.contains("8388607") && line.contains("at least 8388608"),
        "{line}"
    );
}

#[test]
fn override_without_a_size_is_refused() {
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let line = fails_with_one_line(&[s(&pool), s(&mnt), "-o", "override_if_exists"]);
    assert!(line.contains("override_if_exists"), "{line}");
    assert!(!pool.exists());

    // An existing pool is neither deleted nor changed.
    real_pool(&pool);
    for option in [
        "override_if_exists",
        "override_if_exists=true",
        "ro,override_if_exists=1",
    ] {
        let line = refused_unchanged(&pool, &[s(&pool), s(&mnt), "-o", option]);
        assert!(
            line.contains("override_if_exists") && line.contains("create_if_missing_with_size"),
            "{line}"
        );
    }
}

#[test]
fn an_unknown_option_is_named() {
    let scratch = Scratch::new();
    let mnt = scratch.mountpoint("m");
    let line = fails_with_one_line(&["/nonexistent.pmem", s(&mnt), "-o", "ro,frobnicate=3"]);
    assert!(line.contains("frobnicate=3"), "{line}");
}

#[test]
fn a_file_that_is_not_a_pool_is_left_untouched() {
    let scratch = Scratch::new();
    let file = scratch.path("not-a-pool");
    let bytes = pattern(1 << 20, 5);
    std::fs::write(&file, &bytes).unwrap();
    let mnt = scratch.mountpoint("m");
    let line = fails_with_one_line(&[s(&file), s(&mnt)]);
    assert!(line.contains("is not a libpmemobj pool"), "{line}");
    assert_eq!(std::fs::read(&file).unwrap(), bytes);

    // An empty file and one holding only libpmemobj's signature, with or without a
    // size to create (they exist, so they are opened, not replaced).
    let empty = scratch.path("empty");
    std::fs::write(&empty, b"").unwrap();
    let signature = scratch.path("signature");
    std::fs::write(&signature, b"PMEMOBJ\0").unwrap();
    for path in [&file, &empty, &signature] {
        for options in ["ro", "create_if_missing_with_size=16M"] {
            let line = refused_unchanged(path, &[s(path), s(&mnt), "-o", options]);
            assert!(
                line.contains(s(path)) && line.contains("is not a libpmemobj pool"),
                "{line}"
            );
        }
    }

    // A directory is not a pool either, and nothing is created in it.
    let dir = scratch.mountpoint("a-dir");
    let line = fails_with_one_line(&[s(&dir), s(&mnt), "-o", "create_if_missing_with_size=16M"]);
    assert!(
        line.contains(s(&dir)) && line.contains("is a directory"),
        "{line}"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn a_pool_of_another_layout_is_left_untouched() {
    let scratch = Scratch::new();
    let pool = scratch.path("other.pmem");
    let status = std::process::Command::new("pmempool")
        .args(["create", "--layout", "someapp", "obj", "--size", "16M"])
        .arg(&pool)
        .status()
        .expect("pmempool (Debian pmdk-tools)");
    assert!(status.success());
    let before = std::fs::read(&pool).unwrap();
    let mnt = scratch.mountpoint("m");
    let line = fails_with_one_line(&[s(&pool), s(&mnt)]);
    assert!(line.contains("layout \"someapp\""), "{line}");
    assert!(
        std::fs::read(&pool).unwrap() == before,
        "pool bytes changed"
    );
}

#[test]
fn a_missing_mountpoint_is_refused_before_the_pool_is_touched() {
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    drop(common::without_spawning(|| Pool::create(&pool, 16 << 20)).unwrap());
    let before = std::fs::read(&pool).unwrap();
    let missing = scratch.path("no-such-dir");
    let line = fails_with_one_line(&[s(&pool), s(&missing)]);
    assert!(
        line.contains("mount point") && line.contains("no-such-dir"),
        "{line}"
    );
    let file_mnt = scratch.path("a-file");
    std::fs::write(&file_mnt, b"x").unwrap();
    let line = fails_with_one_line(&[s(&pool), s(&file_mnt)]);
    assert!(line.contains("not a directory"), "{line}");
    assert!(
        std::fs::read(&pool).unwrap() == before,
        "pool bytes changed"
    );
}

#[test]
fn a_pool_already_mounted_is_in_use() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let first = ForegroundMount::start(
        &pool,
        &scratch.mountpoint("m1"),
        &["create_if_missing_with_size=16M"],
    );
    std::fs::write(first.path("f"), b"data").unwrap();
    std::fs::File::open(first.path("f"))
        .unwrap()
        .sync_all()
        .unwrap();
    let before = std::fs::read(&pool).unwrap();
    let second = scratch.mountpoint("m2");
    let line = fails_with_one_line(&[s(&pool), s(&second)]);
    assert!(line.contains("in use"), "{line}");
    assert!(!common::is_mounted(&second));
    assert!(
        std::fs::read(&pool).unwrap() == before,
        "pool bytes changed"
    );
}

#[test]
fn a_truncated_pool_is_refused_untouched() {
    let scratch = Scratch::new();
    let mnt = scratch.mountpoint("m");
    let whole = std::fs::read(real_pool(&scratch.path("whole.pmem"))).unwrap();
    for (name, len) in [("half.pmem", whole.len() / 2), ("4k.pmem", 4096)] {
        let pool = scratch.path(name);
        std::fs::write(&pool, &whole[..len]).unwrap();
        for options in ["rw", "ro", "create_if_missing_with_size=16M"] {
            let line = refused_unchanged(&pool, &[s(&pool), s(&mnt), "-o", options]);
            assert!(
                line.contains(s(&pool))
                    && line.contains("is truncated")
                    && line.contains(&format!("has {len} bytes")),
                "{line}"
            );
        }
        assert!(!common::is_mounted(&mnt));
    }
    // Cut to half, the pool says how long it was.
    let half = scratch.path("half.pmem");
    let line = refused_unchanged(&half, &[s(&half), s(&mnt)]);
    assert!(
        line.contains(&format!("needs at least {}", whole.len())),
        "{line}"
    );
}

#[test]
fn a_pool_whose_libpmemobj_checksums_fail_is_refused_untouched() {
    let scratch = Scratch::new();
    let mnt = scratch.mountpoint("m");
    let whole = std::fs::read(real_pool(&scratch.path("whole.pmem"))).unwrap();
    let heap_offset = u64::from_le_bytes(whole[5136..5144].try_into().unwrap()) as usize;
    // The pool header (its UUID, its checksum itself), the pool descriptor (libpmemobj
    // writes its run-time state into that page before it checks it) and the heap header.
    for (off, what) in [
        (0x20, "pool header"),
        (4088, "pool header"),
        (4096 + 1100, "pool descriptor"),
        (heap_offset + 100, "heap header"),
    ] {
        let pool = scratch.path(&format!("flipped-{off}.pmem"));
        std::fs::write(&pool, &whole).unwrap();
        flip_byte(&pool, off);
        for options in ["rw", "ro"] {
            let line = refused_unchanged(&pool, &[s(&pool), s(&mnt), "-o", options]);
            assert!(
                line.contains(s(&pool))
                    && line.contains("is corrupted")
                    && line.contains(&format!("checksum of its {what}")),
                "byte {off}: {line}"
            );
        }
    }
    assert!(!common::is_mounted(&mnt));
}

/// Opens `path` with libpmemobj, overwrites `bytes` at `off` in the root object, closes.
fn overwrite_root(path: &Path, off: u64, bytes: &[u8]) {
    let pool = common::without_spawning(|| Pool::open(path)).unwrap();
    let root = pool.root().expect("a formatted pool has a root object");
    pool.write(root, off, bytes);
    pool.persist(root, off, bytes.len());
}

#[test]
fn a_pool_whose_superblock_magic_is_garbled_is_refused_untouched() {
    let scratch = Scratch::new();
    let pool = real_pool(&scratch.path("p.pmem"));
    overwrite_root(&pool, 0, b"WARABIFZ");
    let mnt = scratch.mountpoint("m");
    for options in ["rw", "ro", "create_if_missing_with_size=16M"] {
        let line = refused_unchanged(&pool, &[s(&pool), s(&mnt), "-o", options]);
        assert!(
            line.contains(s(&pool)) && line.contains("root object that is not warabifs metadata"),
            "{line}"
        );
    }
    assert!(!common::is_mounted(&mnt));
}

#[test]
fn a_pool_of_a_newer_format_is_refused_untouched() {
    let scratch = Scratch::new();
    let pool = real_pool(&scratch.path("p.pmem"));
    let newer = FORMAT_VERSION + 1;
    overwrite_root(&pool, 8, &newer.to_le_bytes());
    let mnt = scratch.mountpoint("m");
    for options in ["rw", "ro"] {
        let line = refused_unchanged(&pool, &[s(&pool), s(&mnt), "-o", options]);
        assert!(
            line.contains(s(&pool))
                && line.contains(&format!("format version {newer}"))
                && line.contains(&format!("reads version {FORMAT_VERSION} at most")),
            "{line}"
        );
    }
    assert!(!common::is_mounted(&mnt));
}

/// `warabifs ARGS` as an unprivileged user: as nobody when the tests run as root (root
/// ignores permission bits), else as the current user.
fn warabifs_unprivileged(args: &[&str]) -> Output {
    let mut cmd = if nix::unistd::geteuid().is_root() {
        let nobody = nix::unistd::User::from_name("nobody")
            .unwrap()
            .expect("user nobody");
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", nobody.uid))
            .arg(format!("--regid={}", nobody.gid))
            .arg("--clear-groups")
            .arg(env!("CARGO_BIN_EXE_warabifs"));
        cmd
    } else {
        Command::new(env!("CARGO_BIN_EXE_warabifs"))
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run warabifs unprivileged")
}

/// Makes `path` belong to the unprivileged user of [`warabifs_unprivileged`].
fn give_to_unprivileged(path: &Path) {
    if nix::unistd::geteuid().is_root() {
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        std::os::unix::fs::chown(path, Some(nobody.uid.as_raw()), None).unwrap();
    }
}

#[test]
fn a_pool_file_without_write_permission_is_refused_with_what_to_do() {
    let scratch = Scratch::new();
    let top = scratch.path("");
    std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pool = real_pool(&scratch.path("p.pmem"));
    // Root's 0644 pool as seen by nobody; without root, the owner's own 0444 file.
    let mode = if nix::unistd::geteuid().is_root() {
        0o644
    } else {
        0o444
    };
    std::fs::set_permissions(&pool, std::fs::Permissions::from_mode(mode)).unwrap();
    let mnt = scratch.mountpoint("m");
    give_to_unprivileged(&mnt);
    let before = std::fs::read(&pool).unwrap();
    for options in ["rw", "ro", "create_if_missing_with_size=16M"] {
        let out = warabifs_unprivileged(&[s(&pool), s(&mnt), "-o", options]);
        let line = one_failure_line(&out, options);
        assert!(
            line.contains(s(&pool))
                && line.contains("permission denied")
                && line.contains("cannot write")
                && line.contains("-o ro")
                && line.contains("run warabifs as a user who can write"),
            "{line}"
        );
        assert_unchanged(&pool, &before);
        assert!(!common::is_mounted(&mnt));
    }

    // A pool in a directory the user cannot enter is not "missing": it is not created.
    let private = scratch.mountpoint("private");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let hidden = real_pool(&private.join("p.pmem"));
    let before = std::fs::read(&hidden).unwrap();
    let absent = private.join("absent.pmem");
    for (path, options) in [
        (&hidden, "rw"),
        (&hidden, "ro"),
        (&absent, "create_if_missing_with_size=16M"),
    ] {
        let out = warabifs_unprivileged(&[s(path), s(&mnt), "-o", options]);
        let line = one_failure_line(&out, options);
        assert!(
            line.contains(s(path)) && line.contains("permission denied"),
            "{line}"
        );
    }
    assert_unchanged(&hidden, &before);
    assert!(!absent.exists());
}
