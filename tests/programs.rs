//! Unmodified programs on a real mount, as users run them: sqlite (a rollback journal,
//! and WAL with its shared-memory file mapped by every connection) and git (commits,
//! gc, a local clone that hard-links objects, fsck). Each result is checked again after
//! a remount, and the pool must then be clean.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{
    assert_pool_consistent, fuse_tests_enabled, pattern, run_ok, ForegroundMount, Scratch,
};

/// Runs `sqlite3 DB SQL` and returns what it printed.
fn sqlite(db: &Path, sql: &str) -> String {
    let out = run_ok(Command::new("sqlite3").arg("-batch").arg(db).arg(sql));
    String::from_utf8(out.stdout).expect("sqlite3 prints UTF-8")
}

/// Rows enough to span many pages and several WAL checkpoints (about 1.5 MiB).
const ROWS: u32 = 3000;

fn fill(db: &Path, journal_mode: &str) {
    let mode = sqlite(db, &format!("PRAGMA journal_mode={journal_mode};"));
    assert_eq!(
        mode.trim(),
        journal_mode,
        "journal mode of {}",
        db.display()
    );
    sqlite(
        db,
        &format!(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT);
             CREATE INDEX t_body ON t(body);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
             INSERT INTO t SELECT i, printf('%08d-', i) || hex(zeroblob(250)) FROM n;
             BEGIN; DELETE FROM t WHERE id % 2 = 0; ROLLBACK;
             UPDATE t SET body = 'updated ' || id WHERE id % 7 = 0;
             DELETE FROM t WHERE id % 11 = 0;"
        ),
    );
}

/// The database's whole content and its own consistency verdict.
fn contents(db: &Path) -> String {
    let check = sqlite(db, "PRAGMA integrity_check;");
    assert_eq!(check.trim(), "ok", "integrity_check of {}", db.display());
    let dump = sqlite(db, ".dump");
    assert!(
        dump.contains("updated 7'"),
        "{} lost its update",
        db.display()
    );
    dump
}

#[test]
fn sqlite_databases_keep_their_contents_across_a_remount() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let m = ForegroundMount::start(&pool, &mnt, &["create_if_missing_with_size=64M"]);
    let (rollback, wal) = (m.path("rollback.db"), m.path("wal.db"));
    fill(&rollback, "delete");
    fill(&wal, "wal");
    let expected = contents(&rollback);
    assert_eq!(
        contents(&wal),
        expected,
        "WAL and rollback databases differ"
    );
    let remaining = sqlite(&wal, "SELECT count(*) FROM t;");
    assert_eq!(remaining.trim(), (ROWS - ROWS / 11).to_string());
    m.unmount();

    let m = ForegroundMount::start(&pool, &mnt, &[]);
    assert_eq!(
        contents(&m.path("rollback.db")),
        expected,
        "after a remount"
    );
    assert_eq!(
        contents(&m.path("wal.db")),
        expected,
        "WAL database after a remount"
    );
    m.unmount();
    assert_pool_consistent(&pool, "after sqlite");
}

/// `git ARGS` in `dir`, isolated from the machine's and the user's configuration.
fn git(dir: &Path, home: &Path, args: &[&str]) -> String {
    let out = run_ok(
        Command::new("git")
            .current_dir(dir)
            .env("HOME", home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "warabifs test")
            .env("GIT_AUTHOR_EMAIL", "test@warabifs.invalid")
            .env("GIT_COMMITTER_NAME", "warabifs test")
            .env("GIT_COMMITTER_EMAIL", "test@warabifs.invalid")
            .args(["-c", "init.defaultBranch=main", "-c", "gc.auto=0"])
            .args(args),
    );
    String::from_utf8(out.stdout).expect("git prints UTF-8")
}

/// A small source tree, different each `round`: 40 text files in 4 directories and
/// an executable script.
fn write_tree(root: &Path, round: u64) {
    for d in 0..4 {
        let dir = root.join(format!("dir{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..10 {
            let path = dir.join(format!("file{f}.txt"));
            let seed = round * 1000 + d * 10 + f;
            let text: String = pattern(2000 + 97 * f as usize, seed)
                .iter()
                .map(|b| char::from(b'a' + b % 26))
                .collect();
            fs::write(&path, text).unwrap();
        }
    }
    let script = root.join("dir0/run.sh");
    fs::write(&script, "#!/bin/sh\necho run\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn git_commits_gcs_clones_and_fscks_across_a_remount() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let home = scratch.path("home");
    fs::create_dir(&home).unwrap();
    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let m = ForegroundMount::start(&pool, &mnt, &["create_if_missing_with_size=64M"]);
    let repo = m.path("repo");
    fs::create_dir(&repo).unwrap();
    git(&repo, &home, &["init", "-q"]);
    write_tree(&repo, 1);
    git(&repo, &home, &["add", "-A"]);
    git(&repo, &home, &["commit", "-q", "-m", "first"]);
    write_tree(&repo, 2);
    fs::remove_file(repo.join("dir3/file9.txt")).unwrap();
    fs::rename(repo.join("dir2"), repo.join("moved")).unwrap();
    git(&repo, &home, &["add", "-A"]);
    git(&repo, &home, &["commit", "-q", "-m", "second"]);
    git(&repo, &home, &["gc", "-q", "--prune=now"]);
    git(&repo, &home, &["fsck", "--full", "--strict"]);
    // A local clone hard-links the object files into the new repository.
    git(&mnt, &home, &["clone", "-q", "repo", "clone"]);
    let clone = m.path("clone");
    git(&clone, &home, &["fsck", "--full", "--strict"]);
    let log = git(&repo, &home, &["log", "--format=%H %s"]);
    assert_eq!(log.lines().count(), 2, "log: {log}");
    assert_eq!(git(&clone, &home, &["log", "--format=%H %s"]), log);
    assert!(!clone.join("dir2").exists() && clone.join("moved/file0.txt").exists());
    assert_eq!(
        fs::read(repo.join("moved/file3.txt")).unwrap(),
        fs::read(clone.join("moved/file3.txt")).unwrap()
    );
    m.unmount();

    let m = ForegroundMount::start(&pool, &mnt, &[]);
    for dir in [m.path("repo"), m.path("clone")] {
        git(&dir, &home, &["fsck", "--full", "--strict"]);
        assert_eq!(git(&dir, &home, &["log", "--format=%H %s"]), log);
        let status = git(&dir, &home, &["status", "--porcelain"]);
        assert!(
            status.is_empty(),
            "{} not clean after a remount: {status}",
            dir.display()
        );
    }
    m.unmount();
    assert_pool_consistent(&pool, "after git");
}
