//! The offline tools on pools built here: `warabifs ls`, `info` and `check [--repair]`.

mod common;

use std::path::Path;
use std::process::Output;

use common::{fuse_tests_enabled, pattern, run_warabifs, ForegroundMount, Scratch};
use serde_json::Value;
use warabifs::fs::{Caller, FsOptions, SetAttr, SetTime, WarabiFs, ROOT_INO};
use warabifs::pmem::{Oid, Pool};
use warabifs::store::records::{DentryRecord, InodeRecord, Timestamp};
use warabifs::store::{PoolConfig, Store};

const POOL_SIZE: u64 = 32 << 20;

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(args: &[&str]) -> Value {
    let out = run_warabifs(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

fn caller() -> Caller {
    Caller { uid: 0, gid: 0 }
}

/// A pool with two Warabi-made regions, then through warabifs a directory, a file in
/// it and a symlink. Returns the regions and the file's RegionID.
fn build_pool(path: &Path) -> (Vec<Oid>, String) {
    let pool = common::without_spawning(|| Pool::create(path, POOL_SIZE)).unwrap();
    let regions: Vec<Oid> = [1000u64, 70_000]
        .iter()
        .map(|&size| pool.alloc(size, 0).unwrap())
        .collect();
    drop(pool);
    let config = PoolConfig {
        path: path.to_path_buf(),
        ..PoolConfig::default()
    };
    let fs =
        common::without_spawning(|| WarabiFs::open_pool(&config, FsOptions::default())).unwrap();
    let dir = fs.mkdir(ROOT_INO, b"dir", 0o750, caller()).unwrap().ino;
    let (attr, fh) = fs.create(dir, b"data.bin", 0o640, caller()).unwrap();
    fs.write(fh, 0, &pattern(5000, 1), false).unwrap();
    fs.release(fh).unwrap();
    fs.symlink(ROOT_INO, b"link", b"dir/data.bin", caller())
        .unwrap();
    // `touch -d 1960-01-01`: a time before the epoch.
    let sixties = Timestamp {
        secs: -315_619_200,
        nanos: 5,
    };
    let change = SetAttr {
        mtime: Some(SetTime::At(sixties)),
        ..SetAttr::default()
    };
    fs.setattr(dir, change).unwrap();
    let file_region =
        String::from_utf8(fs.getxattr(attr.ino, b"user.warabi.region_id").unwrap()).unwrap();
    fs.sync_all();
    (regions, file_region)
}

#[test]
fn ls_lists_files_and_warabi_regions_as_text_and_json() {
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let (regions, file_region) = build_pool(&pool);

    let rows = json(&["ls", "--json", s(&pool)]);
    let rows = rows.as_array().unwrap();
    let by_path = |p: &str| {
        rows.iter()
            .find(|r| r["path"] == p)
            .unwrap_or_else(|| panic!("{p} not listed"))
    };
    assert_eq!(by_path("/")["kind"], "dir");
    assert_eq!(by_path("/dir")["mode"], libc::S_IFDIR | 0o750);
    assert_eq!(by_path("/dir")["mtime"], "1960-01-01T00:00:00.000000005Z");
    let file = by_path("/dir/data.bin");
    assert_eq!(
        (file["kind"].as_str(), file["size"].as_u64()),
        (Some("file"), Some(5000))
    );
    assert_eq!(file["region_id"], file_region.as_str());
    assert!(file["capacity"].as_u64().unwrap() >= 5000);
    assert!(file["mtime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(by_path("/link")["kind"], "symlink");
    for region in &regions {
        let row = by_path(&format!("/{region}"));
        assert_eq!(row["kind"], "region");
        assert_eq!(row["region_id"], region.to_string());
        assert!(row["mtime"].is_null());
    }
    assert_eq!(rows.len(), 4 + regions.len());

    let text = stdout(&run_warabifs(&["ls", s(&pool)]));
    assert_eq!(text.lines().count(), rows.len());
    assert!(text
        .lines()
        .any(|l| l.contains(&file_region) && l.ends_with("/dir/data.bin")));
    assert!(text
        .lines()
        .any(|l| l.contains("1960-01-01T00:00:00") && l.ends_with(" /dir")));
}

#[test]
fn info_counts_and_reports_the_last_shutdown() {
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    build_pool(&pool);
    let info = json(&["info", "--json", s(&pool)]);
    assert_eq!(info["format_version"], 1);
    assert_eq!(info["pool_bytes"], POOL_SIZE);
    assert_eq!(
        (
            info["files"].as_u64(),
            info["directories"].as_u64(),
            info["symlinks"].as_u64()
        ),
        (Some(1), Some(2), Some(1))
    );
    assert_eq!(
        (
            info["regions"].as_u64(),
            info["warabi_made_regions"].as_u64()
        ),
        (Some(3), Some(2))
    );
    assert_eq!(info["last_shutdown"], "clean");
    let used = info["used_bytes"].as_u64().unwrap();
    assert_eq!(used + info["free_bytes"].as_u64().unwrap(), POOL_SIZE);
    let text = stdout(&run_warabifs(&["info", s(&pool)]));
    assert!(
        text.contains("last shutdown: clean") && text.contains("regions: 3 (2 made by Warabi"),
        "{text}"
    );
}

#[test]
fn info_of_a_pool_only_warabi_used_has_no_format() {
    let scratch = Scratch::new();
    let pool = scratch.path("w.pmem");
    let p = common::without_spawning(|| Pool::create(&pool, POOL_SIZE)).unwrap();
    p.alloc(4096, 0).unwrap();
    drop(p);
    let before = std::fs::read(&pool).unwrap();
    let info = json(&["info", "--json", s(&pool)]);
    assert!(info["format_version"].is_null());
    assert_eq!(info["warabi_made_regions"], 1);
    let out = run_warabifs(&["check", s(&pool)]);
    assert!(out.status.success(), "{}", stdout(&out));
    // Inspecting never formats: only libpmemobj's own open/close bookkeeping changes.
    let after = std::fs::read(&pool).unwrap();
    let config = PoolConfig {
        path: pool.clone(),
        ..PoolConfig::default()
    };
    assert!(!common::without_spawning(|| Store::open(&config, true))
        .unwrap()
        .is_formatted());
    assert_eq!(before.len(), after.len());
}

/// Breaks a copy of a good pool three ways: an entry naming no inode, data beyond
/// the region, and a region whose inode no entry names.
fn corrupt(path: &Path) -> u64 {
    let store = common::without_spawning(|| {
        Store::open(
            &PoolConfig {
                path: path.to_path_buf(),
                ..PoolConfig::default()
            },
            false,
        )
    })
    .unwrap();
    let scan = store.scan();
    let (file_record, file_meta) = scan
        .inodes
        .iter()
        .find(|(_, m)| m.mode & libc::S_IFMT == libc::S_IFREG)
        .unwrap()
        .clone();
    let mut tx = store.begin().unwrap();
    tx.create_dentry(&DentryRecord {
        parent: ROOT_INO,
        ino: 999,
        name: b"ghost".to_vec(),
    })
    .unwrap();
    let capacity = store.capacity(file_meta.region);
    tx.update_inode(
        file_record,
        &InodeRecord {
            size: capacity + 4096,
            ..file_meta.clone()
        },
    )
    .unwrap();
    let region = tx.create_region(4000).unwrap();
    let now = Timestamp::now();
    let orphan = InodeRecord {
        ino: 777,
        nlink: 1,
        size: 3,
        region,
        atime: now,
        mtime: now,
        ctime: now,
        ..file_meta
    };
    tx.create_inode(&orphan).unwrap();
    tx.commit().unwrap();
    store.write(region, 0, b"abc");
    store.persist(region, 0, 3);
    777
}

#[test]
fn check_reports_and_repairs_a_corrupted_copy() {
    let scratch = Scratch::new();
    let good = scratch.path("good.pmem");
    build_pool(&good);
    let out = run_warabifs(&["check", s(&good)]);
    assert!(out.status.success(), "{}", stdout(&out));
    let copy = scratch.path("copy.pmem");
    std::fs::copy(&good, &copy).unwrap();
    let orphan_ino = corrupt(&copy);

    let out = run_warabifs(&["check", s(&copy)]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    for kind in [
        "dangling entry",
        "data beyond its region",
        "unreachable inode",
    ] {
        assert!(text.contains(kind), "{kind} not reported:\n{text}");
    }
    let report = json(&["check", "--json", "--repair", s(&copy)]);
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems.len() >= 3 && problems.iter().all(|p| p["fixed"] == true),
        "{report:#}"
    );

    let out = run_warabifs(&["check", s(&copy)]);
    assert!(out.status.success(), "second check:\n{}", stdout(&out));
    assert!(stdout(&out).contains("0 problems found"));
    let rows = json(&["ls", "--json", s(&copy)]);
    let recovered = format!("/lost+found/#{orphan_ino}");
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["path"] == recovered.as_str() && r["size"] == 3),
        "{rows:#}"
    );
    assert!(!rows
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["path"] == "/ghost"));
}

#[test]
fn tools_refuse_a_pool_in_use() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let _mount = ForegroundMount::start(
        &pool,
        &scratch.mountpoint("m"),
        &["create_if_missing_with_size=16M"],
    );
    for tool in ["ls", "info", "check"] {
        let out = run_warabifs(&[tool, s(&pool)]);
        assert_eq!(out.status.code(), Some(2), "{tool}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.trim().lines().count() == 1 && err.contains("in use"),
            "{tool}: {err}"
        );
    }
}

#[test]
fn a_pool_named_like_a_tool_mounts_through_a_path() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool = scratch.path("ls");
    let mnt = scratch.mountpoint("m");
    let m = ForegroundMount::start(&pool, &mnt, &["create_if_missing_with_size=16M"]);
    std::fs::write(m.path("f"), b"x").unwrap();
    m.unmount();
    // "ls" as the first argument is the tool; a path to the file mounts it.
    let out = run_warabifs(&["ls", s(&pool)]);
    assert!(stdout(&out).lines().any(|l| l.ends_with(" /f")));
    let mut mount_relative = common::warabifs();
    mount_relative
        .current_dir(scratch.path(""))
        .args(["./ls", s(&mnt)]);
    mount_relative
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let relative = common::spawn(&mut mount_relative)
        .wait_with_output()
        .unwrap();
    assert!(
        relative.status.success(),
        "{}",
        String::from_utf8_lossy(&relative.stderr)
    );
    let m = common::DaemonMount::watch(&pool, &mnt);
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"x");
}
