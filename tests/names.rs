//! Names through a real mount: up to 255 bytes, ENAMETOOLONG past that, and any byte
//! except NUL and '/' (invalid UTF-8, spaces, control characters) created, listed
//! exactly and read back, before and after a remount.

mod common;

use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use common::{fuse_tests_enabled, pattern, ForegroundMount, Scratch};

fn name(bytes: &[u8]) -> OsString {
    OsString::from_vec(bytes.to_vec())
}

/// A file's contents, derived from its name so each file differs.
fn contents(name: &[u8]) -> Vec<u8> {
    let mut data = name.to_vec();
    let seed = name
        .iter()
        .fold(7u64, |h, &b| h.wrapping_mul(31) ^ u64::from(b));
    data.extend(pattern(100 + name.len() * 3, seed));
    data
}

/// The names of a directory as raw bytes, sorted.
fn listing(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    names.sort();
    names
}

fn assert_errno(result: std::io::Result<impl std::fmt::Debug>, errno: i32, what: &str) {
    let err = result.expect_err(what);
    assert_eq!(err.raw_os_error(), Some(errno), "{what}: {err}");
}

/// Every name there is to test: one per byte value (except NUL and '/'; '.' alone is
/// the directory itself, so it appears inside names), every byte inside a name, names of
/// 255 bytes, invalid UTF-8 with spaces.
fn all_names() -> Vec<Vec<u8>> {
    let mut names = Vec::new();
    for b in 1..=255u8 {
        if b == b'/' {
            continue;
        }
        if b != b'.' {
            names.push(vec![b]);
        }
        names.push(vec![b'<', b, b'>']);
    }
    names.push(vec![b'.'; 3]);
    names.push(b".hidden".to_vec());
    names.push(vec![b'a'; 255]);
    names.push(
        (0..255)
            .map(|i| (i % 254 + 1) as u8)
            .map(|b| if b == b'/' { b'_' } else { b })
            .collect(),
    );
    names.push(vec![0xff; 255]);
    names.push(b"caf\xe9 \xff\xfe not UTF-8, with  spaces ".to_vec());
    names.push(b" leading and trailing space ".to_vec());
    names.push(b"\xc3\x28 \xa0\xa1 \xe2\x82 \xf0\x28\x8c\x28".to_vec());
    names.push("ünïcödé 名前 🦀".as_bytes().to_vec());
    names.push(b"tab\there\nnewline\r\x1b[31mescape".to_vec());
    names.push(b"*?[]{}$`'\"\\|&;<>()!#~%^=+,:@".to_vec());
    names.sort();
    names.dedup();
    names
}

#[test]
fn names_of_up_to_255_bytes_of_any_byte_but_nul_and_slash_work() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let mnt_path = scratch.mountpoint("m");
    let mnt = ForegroundMount::start(&pool, &mnt_path, &["create_if_missing_with_size=16M"]);
    let names = all_names();
    assert!(names.iter().all(|n| n.len() <= 255 && !n.contains(&0)));

    for n in &names {
        std::fs::write(mnt_path.join(name(n)), contents(n))
            .unwrap_or_else(|e| panic!("create {:?}: {e}", OsStr::from_bytes(n)));
    }
    // A directory and a symlink with such names, and a rename to one.
    let dir = b"dir \xfe\x01 255:"
        .iter()
        .copied()
        .chain([b'd'; 244])
        .collect::<Vec<_>>();
    assert_eq!(dir.len(), 255);
    std::fs::create_dir(mnt_path.join(name(&dir))).unwrap();
    let inner = b"inner \x80\x81".to_vec();
    std::fs::write(mnt_path.join(name(&dir)).join(name(&inner)), b"inside").unwrap();
    let link = b"link \xff to \xfe".to_vec();
    std::os::unix::fs::symlink(name(&names[0]), mnt_path.join(name(&link))).unwrap();
    let renamed = vec![b'r'; 255];
    std::fs::write(mnt_path.join("to-rename"), contents(&renamed)).unwrap();
    std::fs::rename(mnt_path.join("to-rename"), mnt_path.join(name(&renamed))).unwrap();

    let mut all: Vec<Vec<u8>> = names.clone();
    all.extend([dir.clone(), link.clone(), renamed.clone()]);
    all.sort();
    let check = |mnt_path: &Path| {
        assert_eq!(listing(mnt_path), all, "the root listing");
        for n in names.iter().chain([&renamed]) {
            let path = mnt_path.join(name(n));
            assert_eq!(path.file_name().unwrap().as_bytes(), n.as_slice());
            let got = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("read {:?}: {e}", OsStr::from_bytes(n)));
            assert!(got == contents(n), "contents of {:?}", OsStr::from_bytes(n));
        }
        assert_eq!(listing(&mnt_path.join(name(&dir))), vec![inner.clone()]);
        assert_eq!(
            std::fs::read(mnt_path.join(name(&dir)).join(name(&inner))).unwrap(),
            b"inside"
        );
        assert_eq!(
            std::fs::read_link(mnt_path.join(name(&link)))
                .unwrap()
                .as_os_str()
                .as_bytes(),
            names[0].as_slice()
        );
    };
    check(&mnt_path);

    // 256 bytes: ENAMETOOLONG for every way of making or finding a name.
    let long = mnt_path.join(name(&[b'x'; 256]));
    let some_file = mnt_path.join(name(&names[0]));
    assert_errno(std::fs::write(&long, b"x"), libc::ENAMETOOLONG, "create");
    assert_errno(
        OpenOptions::new().read(true).open(&long),
        libc::ENAMETOOLONG,
        "open (lookup)",
    );
    assert_errno(
        std::fs::metadata(&long),
        libc::ENAMETOOLONG,
        "stat (lookup)",
    );
    assert_errno(std::fs::create_dir(&long), libc::ENAMETOOLONG, "mkdir");
    assert_errno(
        std::os::unix::fs::symlink("target", &long),
        libc::ENAMETOOLONG,
        "symlink",
    );
    assert_errno(
        std::fs::hard_link(&some_file, &long),
        libc::ENAMETOOLONG,
        "link",
    );
    assert_errno(
        std::fs::rename(&some_file, &long),
        libc::ENAMETOOLONG,
        "rename",
    );
    assert_errno(std::fs::remove_file(&long), libc::ENAMETOOLONG, "unlink");
    assert_errno(
        std::fs::write(mnt_path.join(name(&[0xff; 256])), b"x"),
        libc::ENAMETOOLONG,
        "create, 256 non-UTF-8 bytes",
    );
    check(&mnt_path);

    // The names are in the pool, not only in the kernel's caches.
    mnt.unmount();
    let _mnt = ForegroundMount::start(&pool, &mnt_path, &[]);
    check(&mnt_path);
}
