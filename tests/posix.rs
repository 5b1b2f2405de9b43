//! POSIX workloads on real mounts: a directory of 100,000 files, and a source tree taken
//! through `tar -c` / `tar -x` that must come out identical (contents, types, modes,
//! owners, times, symlinks and hard links), also after a remount.
//!
//! The conformance suites (pjdfstest, fsx) run from scripts/pjdfstest.sh and
//! scripts/fsx.sh.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::os::unix::fs::{symlink, DirEntryExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{fuse_tests_enabled, pattern, ForegroundMount, Scratch};

const FILES: usize = 100_000;

/// Free bytes as statfs reports them.
fn free_bytes(path: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(path).expect("statvfs");
    st.blocks_free() * st.fragment_size()
}

fn phase(name: &str, start: Instant) {
    println!(
        "{name}: {:.2} s",
        Instant::now().duration_since(start).as_secs_f64()
    );
}

#[test]
fn one_directory_holds_100000_files() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    // 100,000 empty files take about 32 MiB of pool metadata. libpmemobj allocates the
    // whole pool file up front (in /dev/shm, memory), so the pool is no larger than needed.
    let m = ForegroundMount::start(&pool, &mnt, &["create_if_missing_with_size=256M"]);
    let dir = m.path("d");
    fs::create_dir(&dir).unwrap();
    let free_before = free_bytes(&mnt);
    let names: Vec<String> = (0..FILES).map(|i| format!("file-{i:06}")).collect();

    let start = Instant::now();
    for name in &names {
        File::create(dir.join(name)).unwrap_or_else(|e| panic!("create {name}: {e}"));
    }
    phase("create 100000 files", start);

    let start = Instant::now();
    let mut inodes = HashSet::with_capacity(FILES);
    for name in &names {
        let meta = fs::metadata(dir.join(name)).unwrap_or_else(|e| panic!("stat {name}: {e}"));
        assert!(meta.is_file(), "{name} is not a regular file");
        assert_eq!(meta.len(), 0, "{name}");
        assert_eq!(meta.nlink(), 1, "{name}");
        assert!(
            inodes.insert(meta.ino()),
            "{name} shares inode {}",
            meta.ino()
        );
    }
    phase("stat 100000 files", start);

    let start = Instant::now();
    let mut listed = HashSet::with_capacity(FILES);
    for entry in fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().expect("utf-8 name");
        assert!(entry.file_type().unwrap().is_file(), "{name}");
        assert!(
            inodes.contains(&entry.ino()),
            "{name}: d_ino {}",
            entry.ino()
        );
        assert!(listed.insert(name.clone()), "{name} listed twice");
    }
    phase("list 100000 files", start);
    let expected: HashSet<String> = names.iter().cloned().collect();
    assert_eq!(listed.len(), FILES);
    assert_eq!(listed, expected, "read_dir returned another set of names");
    assert_eq!(fs::metadata(&dir).unwrap().nlink(), 2);
    let free_with_files = free_bytes(&mnt);

    let start = Instant::now();
    for name in &names {
        fs::remove_file(dir.join(name)).unwrap_or_else(|e| panic!("unlink {name}: {e}"));
    }
    phase("remove 100000 files", start);
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
    let free_after = free_bytes(&mnt);
    m.unmount();

    let start = Instant::now();
    let m = ForegroundMount::start(&pool, &mnt, &[]);
    phase("remount", start);
    let dir = m.path("d");
    assert_eq!(
        fs::read_dir(&dir).unwrap().count(),
        0,
        "the directory is not empty after a remount"
    );
    assert!(fs::metadata(dir.join("file-000000")).is_err());
    let free_remounted = free_bytes(&mnt);
    println!(
        "free bytes: {free_before} before, {free_with_files} with the files, \
         {free_after} after removing them, {free_remounted} after a remount"
    );
    // All but a little bookkeeping (a directory may keep its grown entry table) is back.
    const TOLERANCE: u64 = 4 << 20;
    assert!(
        free_remounted + TOLERANCE >= free_before,
        "free space {free_remounted} after remount, {free_before} before the files: {} bytes not given back",
        free_before - free_remounted
    );
    m.unmount();
}

/// One line per entry under `root` (sorted by path): type, permission bits, link count,
/// owner, mtime, and the size of a regular file or the target of a symlink. Directory
/// sizes differ between file systems and are left out.
fn listing(root: &Path) -> Vec<String> {
    let mut lines = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(root.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let rel = rel.join(entry.file_name());
            let path = root.join(&rel);
            let meta = fs::symlink_metadata(&path).unwrap();
            let kind = meta.file_type();
            let detail = if kind.is_symlink() {
                format!("-> {}", fs::read_link(&path).unwrap().display())
            } else if kind.is_file() {
                format!("size {}", meta.len())
            } else if kind.is_dir() {
                stack.push(rel.clone());
                String::new()
            } else {
                panic!("{}: unexpected file type {kind:?}", path.display());
            };
            let type_char = if kind.is_symlink() {
                'l'
            } else if kind.is_dir() {
                'd'
            } else {
                'f'
            };
            // A symlink's own permission bits are always 0777 on Linux.
            let line = format!(
                "{} {type_char} {:04o} nlink {} uid {} gid {} mtime {} {detail}",
                rel.display(),
                meta.mode() & 0o7777,
                meta.nlink(),
                meta.uid(),
                meta.gid(),
                meta.mtime(),
            );
            lines.insert(rel, line);
        }
    }
    lines.into_values().collect()
}

fn assert_same_listing(source: &[String], extracted: &[String], when: &str) {
    if source != extracted {
        let only_source: Vec<_> = source.iter().filter(|l| !extracted.contains(l)).collect();
        let only_extracted: Vec<_> = extracted.iter().filter(|l| !source.contains(l)).collect();
        panic!(
            "{when}: the trees differ\nonly in the source:\n  {}\nonly on the mount:\n  {}",
            only_source
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  "),
            only_extracted
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
}

fn run(cmd: &mut Command) -> String {
    let out = common::run_ok(cmd);
    assert!(
        out.stderr.is_empty(),
        "{cmd:?} wrote to stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn diff_is_clean(source: &Path, extracted: &Path) {
    let out = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(source)
        .arg(extracted)
        .output()
        .expect("diff (GNU diffutils)");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "diff -r --no-dereference exited with {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_file(path: &Path, len: usize, seed: u64, mode: u32) {
    fs::write(path, pattern(len, seed)).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The names of each hard-linked file, relative to the tree's root.
const LINK_GROUPS: [&[&str]; 2] = [
    &["hard-a", "hard-b"],
    &["a/three-1", "a/b/three-2", "dir with spaces/three-3"],
];

/// A source tree with what tar must carry over: nested directories, sizes from 0 to
/// 300 KB, several modes, symlinks (relative, absolute, dangling, to a directory), hard
/// links with two and three names, a 255-byte name, spaces and UTF-8 in names.
fn build_tree(root: &Path) {
    fs::create_dir(root).unwrap();
    for dir in [
        "a",
        "a/b",
        "a/b/c",
        "a/b/c/d",
        "dir with spaces",
        "ünïcødé ディレクトリ",
        "private",
        "group-only",
        "empty",
    ] {
        fs::create_dir(root.join(dir)).unwrap();
    }
    let sizes = [
        0, 1, 100, 511, 4095, 4096, 4097, 65_535, 65_536, 100_000, 131_073, 262_144, 300_000,
    ];
    let modes = [0o644, 0o755, 0o600, 0o700];
    for (i, &size) in sizes.iter().enumerate() {
        let dir = ["", "a", "a/b", "a/b/c/d", "dir with spaces"][i % 5];
        let name = format!("file-{size}.bin");
        write_file(&root.join(dir).join(name), size, i as u64 + 1, modes[i % 4]);
    }
    write_file(&root.join("run.sh"), 42, 100, 0o755);
    write_file(&root.join("private/secret"), 1000, 101, 0o600);
    write_file(&root.join("private/tool"), 7000, 102, 0o700);
    write_file(&root.join("group-only/shared"), 3000, 103, 0o640);
    write_file(&root.join("a/b/c/readonly"), 10, 104, 0o444);
    write_file(&root.join("file with spaces.txt"), 123, 105, 0o644);
    write_file(&root.join("naïve café ☕.txt"), 2345, 106, 0o644);
    write_file(
        &root.join("ünïcødé ディレクトリ/日本語のファイル"),
        4567,
        107,
        0o600,
    );
    let long_ascii = format!("{}.txt", "n".repeat(251));
    assert_eq!(long_ascii.len(), 255);
    write_file(&root.join(&long_ascii), 500, 108, 0o644);
    let long_utf8 = format!("{}x", "ü".repeat(127));
    assert_eq!(long_utf8.len(), 255);
    write_file(&root.join("a").join(&long_utf8), 600, 109, 0o644);

    write_file(&root.join("hard-a"), 50_000, 110, 0o644);
    fs::hard_link(root.join("hard-a"), root.join("hard-b")).unwrap();
    write_file(&root.join("a/three-1"), 70_000, 111, 0o755);
    fs::hard_link(root.join("a/three-1"), root.join("a/b/three-2")).unwrap();
    fs::hard_link(root.join("a/three-1"), root.join("dir with spaces/three-3")).unwrap();

    symlink("b/file-100.bin", root.join("a/rel-link")).unwrap();
    symlink("../../file-0.bin", root.join("a/b/up-link")).unwrap();
    symlink("a/b", root.join("dir-link")).unwrap();
    symlink("/etc/passwd", root.join("abs-link")).unwrap();
    symlink("does/not/exist", root.join("dangling-rel")).unwrap();
    symlink("/nonexistent/warabifs/target", root.join("a/dangling-abs")).unwrap();
    symlink("naïve café ☕.txt", root.join("utf8 link ☕")).unwrap();
    symlink(&long_ascii, root.join("long-target-link")).unwrap();

    if nix::unistd::geteuid().is_root() {
        // Owners other than root, which tar -x --same-owner must restore.
        let chown = |path: &str, id: u32| {
            std::os::unix::fs::lchown(root.join(path), Some(id), Some(id)).unwrap()
        };
        chown("private/secret", 65534);
        chown("group-only", 1);
        chown("a/file-4097.bin", 1);
        chown("dangling-rel", 65534);
    }

    // Directory modes last, so the tree could be filled.
    for (dir, mode) in [
        ("private", 0o700),
        ("group-only", 0o750),
        ("a/b/c", 0o755),
        ("empty", 0o711),
        ("ünïcødé ディレクトリ", 0o775),
    ] {
        fs::set_permissions(root.join(dir), fs::Permissions::from_mode(mode)).unwrap();
    }
    fs::set_permissions(root, fs::Permissions::from_mode(0o755)).unwrap();
}

fn check_hard_links(root: &Path) {
    let mut group_inodes = HashSet::new();
    for group in LINK_GROUPS {
        let inodes: Vec<(u64, u64)> = group
            .iter()
            .map(|name| {
                let meta = fs::symlink_metadata(root.join(name)).unwrap();
                (meta.ino(), meta.nlink())
            })
            .collect();
        let (ino, nlink) = inodes[0];
        assert!(
            inodes.iter().all(|&i| i == (ino, group.len() as u64)),
            "{group:?} in {}: (inode, nlink) {inodes:?}, wanted one inode with {} links",
            root.display(),
            group.len()
        );
        assert_eq!(nlink, group.len() as u64);
        assert!(
            group_inodes.insert(ino),
            "two link groups share inode {ino}"
        );
    }
}

#[test]
fn tar_of_a_source_tree_extracts_identically() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let source = scratch.path("src");
    build_tree(&source);
    check_hard_links(&source);
    let archive = scratch.path("tree.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&source)
        .arg("."));
    let expected = listing(&source);

    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let m = ForegroundMount::start(&pool, &mnt, &["create_if_missing_with_size=64M"]);
    let extracted = m.path("extracted");
    fs::create_dir(&extracted).unwrap();
    let start = Instant::now();
    // -p keeps modes; --same-owner keeps owners (the default for root, said explicitly).
    run(Command::new("tar")
        .arg("-xpf")
        .arg(&archive)
        .arg("--same-owner")
        .arg("-C")
        .arg(&extracted));
    phase("tar -x", start);
    diff_is_clean(&source, &extracted);
    assert_same_listing(&expected, &listing(&extracted), "after tar -x");
    check_hard_links(&extracted);
    m.unmount();

    let m = ForegroundMount::start(&pool, &mnt, &[]);
    let extracted = m.path("extracted");
    diff_is_clean(&source, &extracted);
    assert_same_listing(&expected, &listing(&extracted), "after a remount");
    check_hard_links(&extracted);
    m.unmount();
}
