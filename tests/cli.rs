//! Wrong arguments and unusable pools: a non-zero exit, one line naming the problem, and
//! the pool file exactly as it was.

mod common;

use std::path::Path;

use common::{fuse_tests_enabled, pattern, run_warabifs, ForegroundMount, Scratch};
use warabifs::pmem::Pool;

/// Runs warabifs, expects failure, returns its single stderr line.
fn fails_with_one_line(args: &[&str]) -> String {
    let out = run_warabifs(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "warabifs {args:?} succeeded");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr:?}");
    assert!(lines[0].starts_with("warabifs: "), "{stderr:?}");
    lines[0].to_string()
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
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
}

#[test]
fn override_without_a_size_is_refused() {
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let line = fails_with_one_line(&[s(&pool), s(&mnt), "-o", "override_if_exists"]);
    assert!(line.contains("override_if_exists"), "{line}");
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
    drop(Pool::create(&pool, 16 << 20).unwrap());
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
