//! warabifs as a system file system: mount(8) with both types, fstab, read-only mounts,
//! errors through mount(8), busy unmounts, systemd units and the installer.
//!
//! mount(8) runs helpers with a fixed PATH, so these tests install the binary and the
//! helper for real (mount-scripts/install.sh) and put back whatever was there before.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

use common::{fuse_tests_enabled, run_ok, DaemonMount, Scratch};

/// Tests that change the system's installed files run one at a time.
static SYSTEM: Mutex<()> = Mutex::new(());

/// Everything install.sh puts in place with the default prefix.
const INSTALLED: &[&str] = &[
    "/usr/local/bin/warabifs",
    "/sbin/mount.warabifs",
    "/etc/systemd/system/warabifs@.service",
    "/usr/local/share/doc/warabifs/examples/mnt-regions.mount",
    "/usr/local/share/doc/warabifs/README.md",
    "/usr/local/share/doc/warabifs/SEMANTICS.md",
    "/usr/local/share/doc/warabifs/FORMAT.md",
    "/usr/local/share/man/man8/warabifs.8",
    "/usr/local/share/man/man8/mount.warabifs.8",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn install_script(args: &[&str]) -> Output {
    run_ok(
        Command::new("bash")
            .arg(repo().join("mount-scripts/install.sh"))
            .args(args),
    )
}

/// A file install.sh replaces, with its content and mode from before (None: absent).
type Backup = (PathBuf, Option<(Vec<u8>, std::fs::Permissions)>);

/// The test build installed system-wide; on drop it is uninstalled and whatever was
/// installed before is restored byte for byte.
struct Installed {
    backups: Vec<Backup>,
    _lock: MutexGuard<'static, ()>,
}

fn install() -> Installed {
    let lock = SYSTEM
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let backups = INSTALLED
        .iter()
        .map(|p| {
            let path = PathBuf::from(p);
            let saved = std::fs::read(&path)
                .ok()
                .map(|bytes| (bytes, std::fs::metadata(&path).unwrap().permissions()));
            (path, saved)
        })
        .collect();
    install_script(&["--binary", env!("CARGO_BIN_EXE_warabifs")]);
    Installed {
        backups,
        _lock: lock,
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        install_script(&["--uninstall"]);
        for (path, saved) in &self.backups {
            if let Some((bytes, perms)) = saved {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, bytes).unwrap();
                std::fs::set_permissions(path, perms.clone()).unwrap();
            }
        }
    }
}

fn mount(args: &[&str]) -> Output {
    Command::new("mount").args(args).output().expect("mount(8)")
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Mounts with mount(8) and asserts success; the returned guard unmounts.
fn mount_ok(pool: &Path, mnt: &Path, args: &[&str]) -> DaemonMount {
    run_ok(Command::new("mount").args(args));
    DaemonMount::watch(pool, mnt)
}

fn umount_ok(m: DaemonMount) {
    run_ok(Command::new("umount").arg(&m.mountpoint));
    common::wait_pool_released(&m.pool);
}

/// Writes through one mount, unmounts, remounts with `again` and reads it back.
fn round_trip(fstype: &str) {
    let _installed = install();
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let m = mount_ok(
        &pool,
        &mnt,
        &[
            "-t",
            fstype,
            s(&pool),
            s(&mnt),
            "-o",
            "create_if_missing_with_size=16M",
        ],
    );
    std::fs::write(m.path("hello"), b"through mount(8)").unwrap();
    umount_ok(m);
    let m = mount_ok(&pool, &mnt, &["-t", fstype, s(&pool), s(&mnt)]);
    assert_eq!(std::fs::read(m.path("hello")).unwrap(), b"through mount(8)");
    umount_ok(m);
}

#[test]
fn mount_t_fuse_warabifs_goes_through_the_fuse_helper() {
    if fuse_tests_enabled() {
        round_trip("fuse.warabifs");
    }
}

#[test]
fn mount_t_warabifs_goes_through_mount_warabifs() {
    if fuse_tests_enabled() {
        round_trip("warabifs");
    }
}

#[test]
fn fstab_lines_of_both_types_mount_with_generic_options() {
    if !fuse_tests_enabled() {
        return;
    }
    let _installed = install();
    let scratch = Scratch::new();
    let generic = "defaults,noauto,nofail,_netdev,nodev,nosuid,rw,x-systemd.automount";
    let mut fstab = String::new();
    let mut mounts = Vec::new();
    for fstype in ["fuse.warabifs", "warabifs"] {
        let pool = scratch.path(&format!("{fstype}.pmem"));
        let mnt = scratch.mountpoint(fstype);
        fstab += &format!(
            "{} {} {fstype} {generic},create_if_missing_with_size=16M 0 0\n",
            s(&pool),
            s(&mnt)
        );
        mounts.push((pool, mnt));
    }
    let fstab_file = scratch.path("fstab");
    std::fs::write(&fstab_file, fstab).unwrap();
    for (pool, mnt) in &mounts {
        let m = mount_ok(pool, mnt, &["-T", s(&fstab_file), s(mnt)]);
        std::fs::write(m.path("f"), b"fstab").unwrap();
        // A remount merges the fstab line's options with the new ones.
        let fstab = s(&fstab_file);
        run_ok(Command::new("mount").args(["-T", fstab, "-o", "remount,ro", s(mnt)]));
        assert!(mount_flags(mnt).unwrap().starts_with("ro,"));
        assert_erofs(std::fs::write(m.path("g"), b"no"));
        run_ok(Command::new("mount").args(["-T", fstab, "-o", "remount,rw", s(mnt)]));
        assert!(mount_flags(mnt).unwrap().starts_with("rw,"));
        umount_ok(m);
        let m = mount_ok(pool, mnt, &["-T", s(&fstab_file), s(mnt)]);
        assert_eq!(std::fs::read(m.path("f")).unwrap(), b"fstab");
        umount_ok(m);
    }
}

#[test]
fn ro_mounts_refuse_every_change_with_erofs() {
    if !fuse_tests_enabled() {
        return;
    }
    let _installed = install();
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let m = mount_ok(
        &pool,
        &mnt,
        &[
            "-t",
            "fuse.warabifs",
            s(&pool),
            s(&mnt),
            "-o",
            "create_if_missing_with_size=16M",
        ],
    );
    std::fs::write(m.path("f"), b"before").unwrap();
    umount_ok(m);
    let m = mount_ok(
        &pool,
        &mnt,
        &["-t", "fuse.warabifs", s(&pool), s(&mnt), "-o", "ro"],
    );
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"before");
    let erofs =
        |r: std::io::Result<()>| assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EROFS));
    erofs(std::fs::write(m.path("f"), b"after"));
    erofs(std::fs::write(m.path("new"), b"x"));
    erofs(std::fs::create_dir(m.path("d")));
    erofs(std::fs::remove_file(m.path("f")));
    umount_ok(m);
}

#[test]
fn mount_fails_with_the_daemon_reason() {
    if !fuse_tests_enabled() {
        return;
    }
    let _installed = install();
    let scratch = Scratch::new();
    let pool = scratch.path("missing.pmem");
    let mnt = scratch.mountpoint("m");
    for fstype in ["fuse.warabifs", "warabifs"] {
        let out = mount(&["-t", fstype, s(&pool), s(&mnt)]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("does not exist") && err.contains("create_if_missing_with_size"),
            "{fstype}: {err}"
        );
        let out = mount(&[
            "-t",
            fstype,
            s(&pool),
            s(&mnt),
            "-o",
            "create_if_missing_with_size=16M,bogus_option",
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("unknown mount option \"bogus_option\""),
            "{fstype}: {err}"
        );
        assert!(!common::is_mounted(&mnt));
    }
    assert!(!pool.exists());
}

#[test]
fn a_busy_mount_refuses_umount_and_loses_nothing() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let m = DaemonMount::start(&pool, &mnt, "create_if_missing_with_size=16M");
    std::fs::write(m.path("f"), b"still here").unwrap();
    let held = std::fs::File::open(m.path("f")).unwrap();
    let out = Command::new("umount").arg(&mnt).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("busy"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(common::is_mounted(&mnt));
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"still here");
    drop(held);
    umount_ok(m);
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let _installed = install();
    let scratch = Scratch::new();
    // A template is verified through an instance; a mount unit under its own name.
    let instance = scratch.path("warabifs@regions.service");
    std::fs::copy("/etc/systemd/system/warabifs@.service", &instance).unwrap();
    let mount_unit = scratch.path("mnt-regions.mount");
    std::fs::copy(repo().join("systemd/mnt-regions.mount"), &mount_unit).unwrap();
    for unit in [&instance, &mount_unit] {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(unit)
            .output()
            .expect("systemd-analyze");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.trim().is_empty(),
            "{}: {text}",
            unit.display()
        );
    }
}

#[test]
fn install_sh_is_idempotent_honours_the_prefix_and_uninstalls() {
    let scratch = Scratch::new();
    let dest = scratch.path("root");
    let args = [
        "--destdir",
        s(&dest),
        "--prefix",
        "/opt/w",
        "--binary",
        env!("CARGO_BIN_EXE_warabifs"),
    ];
    install_script(&args);
    install_script(&args);
    let binary = dest.join("opt/w/bin/warabifs");
    let helper = dest.join("sbin/mount.warabifs");
    let unit = dest.join("etc/systemd/system/warabifs@.service");
    for file in [&binary, &helper] {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(file).unwrap().permissions().mode() & 0o777,
            0o755,
            "{}",
            file.display()
        );
    }
    assert_eq!(
        std::fs::read(&binary).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_warabifs")).unwrap()
    );
    assert!(std::fs::read_to_string(&unit)
        .unwrap()
        .contains("ExecStart=/opt/w/bin/warabifs "));
    let mut uninstall = args.to_vec();
    uninstall.push("--uninstall");
    install_script(&uninstall);
    for file in [&binary, &helper, &unit] {
        assert!(!file.exists(), "{} left behind", file.display());
    }
    assert!(!dest.join("opt/w/share/doc/warabifs").exists());
}

#[test]
fn the_background_daemon_writes_its_log_file() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let log = scratch.path("warabifs.log");
    let options = format!(
        "create_if_missing_with_size=16M,log_file={},log_level=info",
        s(&log)
    );
    let m = DaemonMount::start(&pool, &mnt, &options);
    umount_ok(m);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("mounted {} on {}", s(&pool), s(&mnt))),
        "{text}"
    );
    assert!(text.contains("unmounted"), "{text}");
}

/// The mount's flags as mountinfo lists them ("ro,nosuid,..."), or None if unmounted.
fn mount_flags(mnt: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .rev()
        .map(|line| line.split(' ').collect::<Vec<_>>())
        .find(|fields| fields.get(4) == Some(&s(mnt)))
        .map(|fields| fields[5].to_string())
}

fn assert_erofs(r: std::io::Result<()>) {
    assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EROFS));
}

/// Mounts with type `fstype`, remounts read-only and back through mount(8), checking
/// the kernel's flag, EROFS, reads, and that nothing was lost.
fn remount_round_trip(fstype: &str) {
    let _installed = install();
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let opts = "create_if_missing_with_size=16M,nosuid";
    let m = mount_ok(&pool, &mnt, &["-t", fstype, s(&pool), s(&mnt), "-o", opts]);
    std::fs::write(m.path("kept"), b"written before").unwrap();
    std::fs::write(m.path("unsynced"), vec![7u8; 300_000]).unwrap();

    // What users type: mount(8) finds the type (fuse.warabifs) in mountinfo.
    run_ok(Command::new("mount").args(["-o", "remount,ro", s(&mnt)]));
    let flags = mount_flags(&mnt).expect("still mounted");
    assert!(
        flags.starts_with("ro,") && flags.contains("nosuid"),
        "{flags}"
    );
    assert_eq!(std::fs::read(m.path("kept")).unwrap(), b"written before");
    assert_erofs(std::fs::write(m.path("kept"), b"no"));
    assert_erofs(std::fs::write(m.path("new"), b"no"));
    assert_erofs(std::fs::create_dir(m.path("dir")));
    assert_erofs(std::fs::remove_file(m.path("kept")));

    // The type given again, as scripts do: for "warabifs" this runs mount.warabifs.
    run_ok(Command::new("mount").args(["-t", fstype, "-o", "remount,rw", s(&mnt)]));
    let flags = mount_flags(&mnt).expect("still mounted");
    assert!(
        flags.starts_with("rw,") && flags.contains("nosuid"),
        "{flags}"
    );
    std::fs::write(m.path("new"), b"written after").unwrap();
    std::fs::create_dir(m.path("dir")).unwrap();
    assert_eq!(std::fs::read(m.path("kept")).unwrap(), b"written before");
    umount_ok(m);

    let m = mount_ok(&pool, &mnt, &["-t", fstype, s(&pool), s(&mnt)]);
    assert_eq!(std::fs::read(m.path("kept")).unwrap(), b"written before");
    assert_eq!(
        std::fs::read(m.path("unsynced")).unwrap(),
        vec![7u8; 300_000]
    );
    assert_eq!(std::fs::read(m.path("new")).unwrap(), b"written after");
    assert!(m.path("dir").is_dir());
    umount_ok(m);
    common::assert_pool_consistent(&pool, fstype);
}

#[test]
fn remount_ro_and_rw_of_a_fuse_warabifs_mount() {
    if fuse_tests_enabled() {
        remount_round_trip("fuse.warabifs");
    }
}

#[test]
fn remount_ro_and_rw_of_a_warabifs_mount() {
    if fuse_tests_enabled() {
        remount_round_trip("warabifs");
    }
}

#[test]
fn remounts_that_cannot_happen_are_refused_and_the_mount_keeps_working() {
    if !fuse_tests_enabled() {
        return;
    }
    let _installed = install();
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let m = mount_ok(
        &pool,
        &mnt,
        &[
            "-t",
            "fuse.warabifs",
            s(&pool),
            s(&mnt),
            "-o",
            "create_if_missing_with_size=16M",
        ],
    );
    let out = mount(&["-o", "remount,ro,threads=3", s(&mnt)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("\"threads\" cannot change on a remount"),
        "{err}"
    );
    // A file open for writing: the kernel refuses to go read-only, and says so.
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(m.path("open"))
        .unwrap();
    let out = mount(&["-o", "remount,ro", s(&mnt)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("open for writing"),
        "{err}"
    );
    drop(held);
    // Only root and the daemon's own user may ask the daemon for a remount.
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--", env!("CARGO_BIN_EXE_warabifs")])
        .args([s(&pool), s(&mnt), "-o", "remount,ro"])
        .output()
        .expect("runuser");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("may not remount this file system"),
        "{err}"
    );
    assert!(mount_flags(&mnt).unwrap().starts_with("rw,"));
    std::fs::write(m.path("still"), b"works").unwrap();
    assert_eq!(std::fs::read(m.path("still")).unwrap(), b"works");
    umount_ok(m);
}

/// Every option of mount(8)'s list that a FUSE mount can take (the SELinux context
/// options need SELinux, and mount(8) drops them without it).
const MOUNT_8_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "noatime",
    "auto",
    "noauto",
    "defaults",
    "dev",
    "nodev",
    "diratime",
    "nodiratime",
    "dirsync",
    "exec",
    "noexec",
    "group",
    "iversion",
    "noiversion",
    "mand",
    "nomand",
    "_netdev",
    "nofail",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "lazytime",
    "nolazytime",
    "suid",
    "nosuid",
    "silent",
    "loud",
    "owner",
    "rw",
    "ro",
    "sync",
    "user",
    "nouser",
    "users",
    "X-mount.mkdir",
    "x-systemd.automount",
    "nosymfollow",
];

#[test]
fn every_mount_8_option_mounts_and_an_unknown_one_still_fails() {
    if !fuse_tests_enabled() {
        return;
    }
    let _installed = install();
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let m = mount_ok(
        &pool,
        &mnt,
        &[
            "-t",
            "fuse.warabifs",
            s(&pool),
            s(&mnt),
            "-o",
            "create_if_missing_with_size=16M",
        ],
    );
    umount_ok(m);
    for option in MOUNT_8_OPTIONS {
        let m = mount_ok(
            &pool,
            &mnt,
            &["-t", "fuse.warabifs", s(&pool), s(&mnt), "-o", option],
        );
        let flags = mount_flags(&mnt).unwrap();
        let words: Vec<&str> = flags.split(',').collect();
        match *option {
            "nosymfollow" | "nodiratime" | "noexec" | "nosuid" | "nodev" | "noatime" | "ro" => {
                assert!(words.contains(option), "-o {option}: mount flags {flags}")
            }
            "strictatime" => assert!(
                !words.contains(&"relatime") && !words.contains(&"noatime"),
                "-o {option}: mount flags {flags}"
            ),
            _ => {}
        }
        umount_ok(m);
    }
    let out = mount(&[
        "-t",
        "fuse.warabifs",
        s(&pool),
        s(&mnt),
        "-o",
        "relatime,frobnicate",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown mount option \"frobnicate\""), "{err}");
    assert!(!common::is_mounted(&mnt));
}
