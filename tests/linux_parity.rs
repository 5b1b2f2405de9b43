//! What Linux's own file systems give their callers, compared call by call with tmpfs
//! in the same run: set-user-ID and set-group-ID cleared by every change of a file by
//! an unprivileged user, file handles (name_to_handle_at, open_by_handle_at) across a
//! remount, directories removed while open, and the errno of SEEK_DATA/SEEK_HOLE edges.
//! Needs root (tmpfs, allow_other, another uid, open_by_handle_at).

mod common;

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{fuse_tests_enabled, output, run_ok, ForegroundMount, Scratch};
use nix::errno::Errno;
use nix::unistd::Whence;

/// The unprivileged user the writes run as (nobody on Debian).
const NOBODY: u32 = 65534;

/// A tmpfs mounted for the length of a test.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path) -> Tmpfs {
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs"])
                .arg(path),
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// A warabifs mount and a tmpfs side by side, both open to other users (the scratch
/// directory is made searchable for them).
struct Pair {
    warabifs: ForegroundMount,
    tmpfs: Tmpfs,
    _scratch: Scratch,
}

impl Pair {
    fn new() -> Pair {
        let scratch = Scratch::new();
        fs::set_permissions(scratch.path("."), fs::Permissions::from_mode(0o755)).unwrap();
        let tmpfs = Tmpfs::mount(&scratch.mountpoint("tmpfs"));
        let warabifs = ForegroundMount::start(
            &scratch.path("pool"),
            &scratch.mountpoint("warabifs"),
            &["create_if_missing_with_size=64M", "allow_other"],
        );
        Pair {
            warabifs,
            tmpfs,
            _scratch: scratch,
        }
    }

    /// The two roots, warabifs first.
    fn roots(&self) -> [PathBuf; 2] {
        [self.warabifs.mountpoint.clone(), self.tmpfs.path.clone()]
    }
}

/// The permission bits `stat -c %a` shows. stat(1) asks statx for the mode alone, so
/// this is what the kernel has cached unless it was told that the mode changed.
fn mode_of(path: &Path) -> u32 {
    let out = run_ok(Command::new("stat").args(["-c", "%a"]).arg(path));
    let text = String::from_utf8_lossy(&out.stdout);
    u32::from_str_radix(text.trim(), 8).unwrap_or_else(|_| panic!("stat said {text:?}"))
}

/// Runs xfs_io (xfsprogs) with `args` on `file`, as `uid` (and its group, without
/// supplementary groups); returns what it printed on stderr (empty on success).
fn xfs_io(uid: u32, args: &[String], file: &Path) -> String {
    let mut cmd = Command::new("xfs_io");
    cmd.args(args).arg(file);
    if uid != 0 {
        // std drops the supplementary groups when root switches uid.
        cmd.uid(uid).gid(uid);
    }
    let out = output(&mut cmd);
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The mode Linux leaves after a change by a caller without CAP_FSETID: no
/// set-user-ID, and no set-group-ID when the group may execute.
fn cleared(mode: u32) -> u32 {
    let mut mode = mode & !0o4000;
    if mode & 0o010 != 0 {
        mode &= !0o2000;
    }
    mode
}

/// A file of 8 KiB owned by nobody, with `mode`, and a readable source file beside it.
fn setid_file(root: &Path, mode: u32) -> PathBuf {
    let file = root.join("setid");
    fs::write(&file, vec![7u8; 8192]).unwrap();
    fs::write(root.join("source"), vec![9u8; 8192]).unwrap();
    chown(&file, Some(NOBODY), Some(NOBODY)).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
    assert_eq!(mode_of(&file), mode);
    file
}

fn io_args(args: &[&str], root: &Path) -> Vec<String> {
    let source = root.join("source");
    args.iter()
        .map(|a| a.replace("SOURCE", &source.to_string_lossy()))
        .collect()
}

#[test]
fn every_change_by_an_unprivileged_writer_clears_set_id_bits_as_tmpfs_does() {
    if !fuse_tests_enabled() {
        return;
    }
    let pair = Pair::new();
    let changes: [(&str, &[&str]); 7] = [
        ("write through the page cache", &["-c", "pwrite 0 4k"]),
        ("open with O_TRUNC", &["-t", "-c", "fsync"]),
        ("direct write", &["-d", "-c", "pwrite 0 4k"]),
        ("fallocate past the end", &["-c", "falloc 0 16k"]),
        ("punch a hole", &["-c", "fpunch 0 4k"]),
        ("truncate", &["-c", "truncate 4k"]),
        (
            "copy_file_range into it",
            &["-c", "copy_range -s 0 -d 0 -l 4096 SOURCE"],
        ),
    ];
    for mode in [0o6666, 0o6676] {
        for (what, args) in changes {
            let modes = pair.roots().map(|root| {
                let file = setid_file(&root, mode);
                let errors = xfs_io(NOBODY, &io_args(args, &root), &file);
                assert_eq!(errors, "", "{what} on {}", root.display());
                format!("{:o}", mode_of(&file))
            });
            assert_eq!(
                modes,
                [0, 1].map(|_| format!("{:o}", cleared(mode))),
                "{what} by nobody on a file of mode {mode:o}: [warabifs, tmpfs]"
            );
        }
    }
}

#[test]
fn zeroing_a_range_clears_them_too() {
    if !fuse_tests_enabled() {
        return;
    }
    let pair = Pair::new();
    let args = ["-c".to_string(), "fzero 0 4k".to_string()];
    for mode in [0o6666, 0o6676] {
        let file = setid_file(&pair.warabifs.mountpoint, mode);
        assert_eq!(xfs_io(NOBODY, &args, &file), "");
        assert_eq!(mode_of(&file), cleared(mode), "fzero, mode {mode:o}");
        // tmpfs has no FALLOC_FL_ZERO_RANGE: it refuses the call and keeps the bits,
        // so the rule followed here is ext4's, the same as for a punched hole.
        let file = setid_file(&pair.tmpfs.path, mode);
        let errors = xfs_io(NOBODY, &args, &file);
        assert!(errors.contains("not supported"), "tmpfs fzero: {errors}");
    }
}

#[test]
fn a_writer_with_cap_fsetid_keeps_them_and_chown_clears_them_as_on_tmpfs() {
    if !fuse_tests_enabled() {
        return;
    }
    let pair = Pair::new();
    for mode in [0o6666, 0o6676] {
        let kept = pair.roots().map(|root| {
            let file = setid_file(&root, mode);
            let args = ["-c".to_string(), "pwrite 0 4k".to_string()];
            assert_eq!(xfs_io(0, &args, &file), "");
            mode_of(&file)
        });
        assert_eq!(kept, [mode; 2], "root's write, mode {mode:o}");
        let chowned = pair.roots().map(|root| {
            let file = setid_file(&root, mode);
            chown(&file, Some(0), None).unwrap();
            mode_of(&file)
        });
        assert_eq!(chowned, [cleared(mode); 2], "root's chown, mode {mode:o}");
    }
}

/// What fstat says of an open directory, the results of fchmod and fchown on it, and
/// what reading it lists.
#[derive(Debug, PartialEq, Eq)]
struct OpenDirView {
    nlink: u64,
    is_dir: bool,
    mode_after_fchmod: u32,
    owner_after_fchown: (u32, u32),
    names: Vec<Vec<u8>>,
}

fn view_of_open_dir(dir: &File) -> OpenDirView {
    let fd = dir.as_raw_fd();
    let before = nix::sys::stat::fstat(dir).expect("fstat of the removed directory");
    nix::sys::stat::fchmod(dir, nix::sys::stat::Mode::from_bits_truncate(0o700)).expect("fchmod");
    nix::unistd::fchown(dir, Some(NOBODY.into()), Some(NOBODY.into())).expect("fchown");
    let after = nix::sys::stat::fstat(dir).expect("fstat after fchmod");
    // A second open of the same directory, through its descriptor's magic link.
    let names = fs::read_dir(format!("/proc/self/fd/{fd}"))
        .expect("opendir of the removed directory")
        .map(|e| e.expect("readdir").file_name().as_bytes().to_vec())
        .collect();
    OpenDirView {
        nlink: before.st_nlink,
        is_dir: before.st_mode & libc::S_IFMT == libc::S_IFDIR,
        mode_after_fchmod: after.st_mode & 0o7777,
        owner_after_fchown: (after.st_uid, after.st_gid),
        names,
    }
}

#[test]
fn a_directory_removed_while_open_keeps_its_descriptor_as_on_tmpfs() {
    if !fuse_tests_enabled() {
        return;
    }
    let pair = Pair::new();
    for how in ["rmdir", "rename over"] {
        let views = pair.roots().map(|root| {
            let victim = root.join("victim");
            fs::create_dir(&victim).unwrap();
            let open = File::open(&victim).unwrap();
            match how {
                "rmdir" => fs::remove_dir(&victim).unwrap(),
                _ => {
                    let other = root.join("other");
                    fs::create_dir(&other).unwrap();
                    fs::rename(&other, &victim).unwrap();
                    fs::remove_dir(&victim).unwrap();
                }
            }
            let view = view_of_open_dir(&open);
            drop(open);
            view
        });
        assert_eq!(views[0], views[1], "{how}: [warabifs, tmpfs]");
        assert_eq!(views[0].nlink, 0, "{how}");
        assert!(views[0].names.is_empty(), "{how}");
    }
    // Both removed directories and the one renamed over the first are gone.
    let left: Vec<_> = fs::read_dir(&pair.warabifs.mountpoint)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn seek(file: &File, offset: i64, whence: Whence) -> Result<i64, Errno> {
    nix::unistd::lseek(file, offset, whence)
}

#[test]
fn seek_data_and_seek_hole_give_the_errnos_tmpfs_gives() {
    if !fuse_tests_enabled() {
        return;
    }
    let pair = Pair::new();
    let offsets = [-1, 0, 1, 4095, 4096, 5000, 8191, 8192, 1 << 40];
    // Empty; 4 KiB of data; 4 KiB of data then 4 KiB of hole; 8 KiB of hole alone.
    let files: [(&str, usize, u64); 4] = [
        ("empty", 0, 0),
        ("data", 4096, 4096),
        ("data then hole", 4096, 8192),
        ("hole", 0, 8192),
    ];
    for (name, data, size) in files {
        let results = pair.roots().map(|root| {
            let path = root.join(name.replace(' ', "-"));
            fs::write(&path, vec![1u8; data]).unwrap();
            let file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            file.set_len(size).unwrap();
            let mut seen = Vec::new();
            for whence in [Whence::SeekData, Whence::SeekHole] {
                for offset in offsets {
                    seen.push((whence as i32, offset, seek(&file, offset, whence)));
                }
            }
            seen
        });
        assert_eq!(results[0], results[1], "{name}: [warabifs, tmpfs]");
        assert!(
            results[0].contains(&(Whence::SeekData as i32, -1, Err(Errno::ENXIO))),
            "{name}: {:?}",
            results[0]
        );
    }
}

/// A file handle as tests/handles.py spells it (its type and bytes, in hex). The
/// handle system calls go through that script, so that these tests need no `unsafe`.
type Handle = String;

/// What opening a handle gave: the path the kernel knows for the file, and its bytes
/// (none for a directory).
#[derive(Debug, PartialEq)]
struct Opened {
    path: PathBuf,
    content: Option<String>,
}

fn handles_py(args: &[&OsStr], stdin: &str) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/handles.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 tests/handles.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "tests/handles.py {args:?} failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The errno of an "errno N" line.
fn errno_of(line: &str) -> Option<Errno> {
    let n = line.strip_prefix("errno ")?.parse().ok()?;
    Some(Errno::from_raw(n))
}

/// name_to_handle_at of each path (`connectable`: AT_HANDLE_CONNECTABLE).
fn try_name_to_handles(paths: &[PathBuf], connectable: bool) -> Vec<Result<Handle, Errno>> {
    let mut args: Vec<&OsStr> = Vec::new();
    args.push(OsStr::new("take"));
    if connectable {
        args.push(OsStr::new("--connectable"));
    }
    args.extend(paths.iter().map(|p| p.as_os_str()));
    let lines = handles_py(&args, "");
    assert_eq!(lines.len(), paths.len());
    lines
        .into_iter()
        .map(|line| errno_of(&line).map_or(Ok(line), Err))
        .collect()
}

fn name_to_handle(path: &Path, connectable: bool) -> Handle {
    let mut handles = try_name_to_handles(&[path.to_path_buf()], connectable);
    handles
        .remove(0)
        .unwrap_or_else(|e| panic!("name_to_handle_at {}: {e}", path.display()))
}

/// open_by_handle_at of each handle, read-only, on the mount at `mountpoint`.
fn open_by_handles(mountpoint: &Path, handles: &[Handle]) -> Vec<Result<Opened, Errno>> {
    let stdin = handles.join("\n") + "\n";
    let lines = handles_py(&[OsStr::new("open"), mountpoint.as_os_str()], &stdin);
    assert_eq!(lines.len(), handles.len());
    lines.iter().map(|line| parse_opened(line)).collect()
}

fn parse_opened(line: &str) -> Result<Opened, Errno> {
    if let Some(errno) = errno_of(line) {
        return Err(errno);
    }
    let rest = line.strip_prefix("ok ").expect("an ok or errno line");
    let (path, content) = rest.rsplit_once(' ').expect("a path and its content");
    let content = match content {
        "-" => None,
        hex => {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            Some(String::from_utf8(bytes).unwrap())
        }
    };
    Ok(Opened {
        path: PathBuf::from(path),
        content,
    })
}

fn open_by_handle(mountpoint: &Path, handle: &Handle) -> Result<Opened, Errno> {
    open_by_handles(mountpoint, std::slice::from_ref(handle)).remove(0)
}

/// Drops the kernel's dentries and inodes (system-wide, harmless), so that opening a
/// handle has to ask the file system for the inode (its lookup of ".").
fn drop_kernel_caches() {
    fs::write("/proc/sys/vm/drop_caches", "2").expect("drop_caches");
}

const FILES: usize = 1000;

fn make_files(dir: &Path) {
    fs::create_dir(dir).unwrap();
    for i in 0..FILES {
        fs::write(dir.join(format!("f{i}")), format!("file {i}")).unwrap();
    }
}

/// For each handle: the file's contents, or the errno.
fn open_all(mountpoint: &Path, handles: &[Handle]) -> Vec<Result<String, Errno>> {
    open_by_handles(mountpoint, handles)
        .into_iter()
        .map(|opened| opened.map(|o| o.content.expect("a file, not a directory")))
        .collect()
}

fn expected(range: std::ops::Range<usize>) -> Vec<Result<String, Errno>> {
    range.map(|i| Ok(format!("file {i}"))).collect()
}

#[test]
fn file_handles_open_files_across_a_remount_and_go_stale_once_they_are_removed() {
    if !fuse_tests_enabled() {
        return;
    }
    let pair = Pair::new();
    let [warabifs, tmpfs] = pair.roots();
    let handles = [&warabifs, &tmpfs].map(|root| {
        make_files(&root.join("d"));
        let paths: Vec<PathBuf> = (0..FILES).map(|i| root.join(format!("d/f{i}"))).collect();
        try_name_to_handles(&paths, false)
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|e| panic!("name_to_handle_at in {}: {e}", root.display()))
    });
    drop_kernel_caches();
    for (root, handles) in [&warabifs, &tmpfs].iter().zip(handles.iter()) {
        assert_eq!(
            open_all(root, handles),
            expected(0..FILES),
            "{}",
            root.display()
        );
    }

    // Across an unmount and a mount of the same pool.
    let (pool, mountpoint) = (pair.warabifs.pool.clone(), warabifs.clone());
    let Pair {
        warabifs: mount,
        tmpfs: tmpfs_mount,
        _scratch: scratch,
    } = pair;
    mount.unmount();
    let options = ["allow_other"];
    let mount = ForegroundMount::start(&pool, &mountpoint, &options);
    assert_eq!(open_all(&warabifs, &handles[0]), expected(0..FILES));

    // Removing the second half (the highest inode numbers, which a new mount would
    // otherwise hand out again) makes their handles stale, on both.
    for root in [&warabifs, &tmpfs] {
        for i in FILES / 2..FILES {
            fs::remove_file(root.join(format!("d/f{i}"))).unwrap();
        }
    }
    drop_kernel_caches();
    let stale: Vec<Result<String, Errno>> = vec![Err(Errno::ESTALE); FILES / 2];
    let want: Vec<_> = expected(0..FILES / 2).into_iter().chain(stale).collect();
    for (root, handles) in [&warabifs, &tmpfs].iter().zip(handles.iter()) {
        assert_eq!(open_all(root, handles), want, "{}", root.display());
    }

    // New files after another remount get new numbers: the old handles stay stale.
    mount.unmount();
    let mount = ForegroundMount::start(&pool, &mountpoint, &options);
    for i in 0..FILES / 2 {
        fs::write(warabifs.join(format!("new{i}")), "new").unwrap();
    }
    drop_kernel_caches();
    assert_eq!(open_all(&warabifs, &handles[0]), want);
    drop((mount, tmpfs_mount, scratch));
}

#[test]
fn connectable_handles_and_directory_handles_reconnect_through_dot_dot() {
    if !fuse_tests_enabled() {
        return;
    }
    let pair = Pair::new();
    for root in pair.roots() {
        let deep = root.join("a/b/c");
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("file"), "deep").unwrap();
        let dir = name_to_handle(&deep, false);
        drop_kernel_caches();
        // A directory handle is connected back to the tree through "..": its path
        // is known again.
        let opened = open_by_handle(&root, &dir).expect("directory handle");
        assert_eq!(opened.path, deep, "{}", root.display());
    }
    // tmpfs cannot encode a connectable handle (its handles never name the parent).
    let on_tmpfs = try_name_to_handles(&[pair.tmpfs.path.join("a/b/c/file")], true);
    assert_eq!(on_tmpfs, [Err(Errno::EOPNOTSUPP)]);
    let deep = pair.warabifs.mountpoint.join("a/b/c");
    let file = name_to_handle(&deep.join("file"), true);
    drop_kernel_caches();
    let opened = open_by_handle(&pair.warabifs.mountpoint, &file).expect("connectable handle");
    assert_eq!(
        opened,
        Opened {
            path: deep.join("file"),
            content: Some("deep".to_string()),
        },
        "a connectable handle opens a connected path"
    );
}
