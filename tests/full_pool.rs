//! A full pool through a real mount: writes, creates and growth fail with ENOSPC (EFBIG
//! past libpmemobj's largest allocation), a truncate up needs no room (it records a hole),
//! nothing written before is lost, deleting gives the space back, and the pool is
//! consistent and mounts again.

mod common;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::{fuse_tests_enabled, pattern, ForegroundMount, Scratch};

/// libpmemobj's largest allocation, so warabifs' largest file (`PMEMOBJ_MAX_ALLOC_SIZE`).
const MAX_FILE_SIZE: u64 = 0x3_FFDF_FFC0;
/// Stops a fill loop that never meets a full pool.
const MAX_FILES: usize = 200_000;

/// What each file of the mount must hold: name -> bytes.
type Expected = BTreeMap<String, Vec<u8>>;

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error()
        .unwrap_or_else(|| panic!("no errno in {e:?}"))
}

fn assert_enospc(e: &std::io::Error, what: &str) {
    assert_eq!(errno(e), libc::ENOSPC, "{what}: expected ENOSPC, got {e}");
}

/// Writes `data` to the end of `file` with as many write(2) calls as it takes. Returns
/// how many bytes went in and the error that stopped it, if any.
fn write_until_error(file: &mut File, data: &[u8]) -> (usize, Option<std::io::Error>) {
    let mut done = 0;
    while done < data.len() {
        match file.write(&data[done..]) {
            Ok(0) => panic!("write returned 0"),
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return (done, Some(e)),
        }
    }
    (done, None)
}

/// Creates `name` holding `data`. Ok(None): all written. Ok(Some(e)): the file exists
/// but a write failed with `e` (the bytes written before it are recorded). Err: the
/// create itself failed.
fn create_file(
    mnt: &ForegroundMount,
    expected: &mut Expected,
    name: &str,
    data: &[u8],
) -> Result<Option<std::io::Error>, std::io::Error> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(mnt.path(name))?;
    let (written, err) = write_until_error(&mut file, data);
    expected.insert(name.to_string(), data[..written].to_vec());
    close(file, name);
    Ok(err)
}

/// Closes `file` and asserts that close(2) succeeded: every error must come from the
/// call that failed, not later.
fn close(file: File, what: &str) {
    if let Err(e) = nix::unistd::close(file) {
        panic!("close {what}: {e}");
    }
}

/// Every name in the mount's root is expected, every expected file is there, and each
/// holds exactly its bytes.
fn verify(mnt: &Path, expected: &Expected) {
    let mut listed: Vec<String> = std::fs::read_dir(mnt)
        .unwrap()
        .map(|e| {
            String::from_utf8(e.unwrap().file_name().as_bytes().to_vec()).expect("ascii names")
        })
        .collect();
    listed.sort();
    let wanted: Vec<&String> = expected.keys().collect();
    assert_eq!(listed.len(), wanted.len(), "number of files listed");
    assert!(
        listed.iter().zip(&wanted).all(|(a, b)| a == *b),
        "the listing differs from the files written"
    );
    for (name, data) in expected {
        let got = std::fs::read(mnt.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"));
        assert_eq!(got.len(), data.len(), "size of {name}");
        assert!(got == *data, "contents of {name} differ");
    }
}

#[test]
fn a_full_pool_gives_enospc_keeps_what_was_written_and_frees_space_on_delete() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool = scratch.path("full.pmem");
    let mnt_path = scratch.mountpoint("m");
    let mnt = ForegroundMount::start(&pool, &mnt_path, &["create_if_missing_with_size=16M"]);
    let mut expected = Expected::new();

    // 1. Files of varied sizes: empty, small classes, around the chunk size, large.
    let sizes: [usize; 12] = [
        0, 1, 255, 256, 4095, 8176, 8177, 100_000, 262_128, 262_145, 1_000_000, 2_000_000,
    ];
    for (i, &size) in sizes.iter().enumerate() {
        let name = format!("varied-{i:02}-{size}");
        let err = create_file(
            &mnt,
            &mut expected,
            &name,
            &pattern(size, 101 + 2 * i as u64),
        );
        assert!(matches!(err, Ok(None)), "{name}: {err:?}");
    }

    // 2. One file grown by appends until the pool cannot hold its next region.
    let mut grown = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(mnt.path("grown"))
        .unwrap();
    let mut grown_data = Vec::new();
    let mut seed = 1001;
    let failed_append = loop {
        seed += 2;
        let chunk = pattern(64 << 10, seed);
        let (written, err) = write_until_error(&mut grown, &chunk);
        grown_data.extend_from_slice(&chunk[..written]);
        if let Some(e) = err {
            assert_enospc(&e, "append to grown");
            break chunk[written..].to_vec();
        }
        assert!(grown_data.len() < 16 << 20, "a 16 MiB pool never filled");
    };
    assert_eq!(
        grown.metadata().unwrap().len(),
        grown_data.len() as u64,
        "a failed append changed the size"
    );
    close(grown, "grown");
    assert!(
        grown_data.len() >= 1 << 20,
        "grown only to {}",
        grown_data.len()
    );
    expected.insert("grown".into(), grown_data.clone());

    // 3. Files of 1 MiB until one's data no longer fits.
    for i in 0.. {
        assert!(i < MAX_FILES, "the pool never filled");
        let name = format!("filler-{i:03}");
        match create_file(
            &mnt,
            &mut expected,
            &name,
            &pattern(1 << 20, 5001 + 2 * i as u64),
        ) {
            Ok(None) => {}
            Ok(Some(e)) => {
                assert_enospc(&e, &name);
                break;
            }
            Err(e) => {
                assert_enospc(&e, &format!("create {name}"));
                break;
            }
        }
    }

    // 4. Many small files until creating one fails. A file whose data did not fit
    //    stays, empty (or with what went in), and creating goes on.
    let mut small_files = 0;
    let failed_create = loop {
        assert!(small_files < MAX_FILES, "creating never failed");
        let name = format!("small-{small_files:06}");
        match create_file(
            &mnt,
            &mut expected,
            &name,
            &pattern(100, 100_001 + 2 * small_files as u64),
        ) {
            Ok(None) => {}
            Ok(Some(e)) => assert_enospc(&e, &name),
            Err(e) => {
                assert_enospc(&e, &format!("create {name}"));
                break name;
            }
        }
        small_files += 1;
    };
    assert!(
        !mnt.path(&failed_create).exists(),
        "a failed create left a file"
    );
    assert!(small_files > 0, "no small file fitted at all");
    let count = |prefix: &str| expected.keys().filter(|n| n.starts_with(prefix)).count();
    println!(
        "full: grown to {} bytes, {} filler files, {} small files ({} of them empty)",
        expected["grown"].len(),
        count("filler-"),
        small_files,
        expected
            .iter()
            .filter(|(n, d)| n.starts_with("small-") && d.is_empty())
            .count()
    );

    // 5. On the full pool: appending again and fallocate fail; a truncate up needs no
    //    room (the new bytes are a hole of zeros), writing into that hole does.
    let mut grown = OpenOptions::new()
        .append(true)
        .open(mnt.path("grown"))
        .unwrap();
    let err = grown.write(&failed_append).unwrap_err();
    assert_enospc(&err, "append to grown, again");
    close(grown, "grown");
    let small = mnt.path("small-000000");
    let small_len = expected["small-000000"].len() as u64;
    let file = OpenOptions::new().write(true).open(&small).unwrap();
    assert_eq!(
        nix::fcntl::posix_fallocate(&file, 0, 1 << 20),
        Err(nix::errno::Errno::ENOSPC),
        "posix_fallocate on a full pool"
    );
    file.set_len(1 << 20).expect("truncate up on a full pool");
    let err = file.write_at(&[5; 4096], (1 << 20) - 4096).unwrap_err();
    assert_enospc(&err, "write into the hole");
    close(file, "small-000000");
    assert_eq!(std::fs::metadata(&small).unwrap().len(), 1 << 20);
    let small_data = expected.get_mut("small-000000").unwrap();
    assert_eq!(small_data.len() as u64, small_len);
    small_data.resize(1 << 20, 0);

    // 6. Everything written before the pool filled is intact.
    verify(&mnt_path, &expected);

    // 7. Deleting gives the space back: what failed now works.
    let freed: Vec<String> = expected
        .keys()
        .filter(|n| n.starts_with("varied-") || n.starts_with("filler-"))
        .cloned()
        .collect();
    for name in &freed {
        std::fs::remove_file(mnt.path(name)).unwrap();
        expected.remove(name);
    }
    let retried = create_file(&mnt, &mut expected, &failed_create, &pattern(100, 77));
    assert!(
        matches!(retried, Ok(None)),
        "create after delete: {retried:?}"
    );
    let mut grown = OpenOptions::new()
        .append(true)
        .open(mnt.path("grown"))
        .unwrap();
    grown
        .write_all(&failed_append)
        .expect("the failed append, after delete");
    close(grown, "grown");
    grown_data.extend_from_slice(&failed_append);
    expected.insert("grown".into(), grown_data);
    let file = OpenOptions::new().write(true).open(&small).unwrap();
    file.write_all_at(&[5; 4096], (1 << 20) - 4096)
        .expect("write into the hole after delete");
    close(file, "small-000000");
    expected.get_mut("small-000000").unwrap()[(1 << 20) - 4096..].fill(5);
    verify(&mnt_path, &expected);

    // 8. A clean unmount leaves a consistent pool that mounts again with the same files.
    mnt.unmount();
    common::assert_pool_consistent(&pool, "after filling");
    let mnt = ForegroundMount::start(&pool, &mnt_path, &[]);
    verify(&mnt_path, &expected);
    mnt.unmount();
    common::assert_warabifs_check_clean(&pool, "after remount");
}

#[test]
fn past_the_largest_allocation_is_efbig_and_below_it_enospc() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool = scratch.path("p.pmem");
    let mnt = ForegroundMount::start(
        &pool,
        &scratch.mountpoint("m"),
        &["create_if_missing_with_size=16M"],
    );
    let data = pattern(5000, 9);
    std::fs::write(mnt.path("f"), &data).unwrap();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(mnt.path("f"))
        .unwrap();

    let err = file.write_at(b"x", MAX_FILE_SIZE).unwrap_err();
    assert_eq!(
        errno(&err),
        libc::EFBIG,
        "write at {MAX_FILE_SIZE:#x}: {err}"
    );
    let err = file.write_at(&[7; 4096], MAX_FILE_SIZE - 100).unwrap_err();
    assert_eq!(
        errno(&err),
        libc::EFBIG,
        "write across {MAX_FILE_SIZE:#x}: {err}"
    );
    // Ending exactly at the limit is allowed, but a 16 MiB pool cannot hold it.
    let err = file.write_at(b"x", MAX_FILE_SIZE - 1).unwrap_err();
    assert_eq!(
        errno(&err),
        libc::ENOSPC,
        "write ending at the limit: {err}"
    );
    let err = nix::fcntl::posix_fallocate(&file, 0, MAX_FILE_SIZE as i64).unwrap_err();
    assert_eq!(err, nix::errno::Errno::ENOSPC, "fallocate to the limit");
    let err = nix::fcntl::posix_fallocate(&file, 0, MAX_FILE_SIZE as i64 + 1).unwrap_err();
    assert_eq!(err, nix::errno::Errno::EFBIG, "fallocate past the limit");
    // A size past the limit is a hole: nothing is stored there.
    file.set_len(MAX_FILE_SIZE + 1)
        .expect("truncate past the limit");
    let mut tail = [1u8; 2];
    file.read_exact_at(&mut tail, MAX_FILE_SIZE - 1).unwrap();
    assert_eq!(tail, [0, 0]);
    let err = file.write_at(b"x", MAX_FILE_SIZE).unwrap_err();
    assert_eq!(
        errno(&err),
        libc::EFBIG,
        "write into the hole past the limit"
    );
    file.set_len(data.len() as u64).unwrap();

    assert_eq!(file.metadata().unwrap().len(), data.len() as u64);
    close(file, "f");
    assert_eq!(std::fs::read(mnt.path("f")).unwrap(), data);
    mnt.unmount();
    common::assert_warabifs_check_clean(&pool, "after the EFBIG and ENOSPC writes");
}

#[test]
fn a_writer_retrying_on_a_full_pool_gets_enospc_each_time_and_few_log_lines() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let pool = scratch.path("full.pmem");
    let mnt_path = scratch.mountpoint("m");
    let mnt = ForegroundMount::start(&pool, &mnt_path, &["create_if_missing_with_size=16M"]);
    let mut file = File::create(mnt.path("big")).unwrap();
    let chunk = pattern(1 << 20, 7);
    let (_, err) = write_until_error(&mut file, &vec![0; 64 << 20]);
    assert_enospc(&err.expect("a 16 MiB pool holds no 64 MiB file"), "filling");
    const RETRIES: usize = 200;
    for i in 0..RETRIES {
        let err = file.write(&chunk).expect_err("a write to a full pool");
        assert_enospc(&err, &format!("retry {i}"));
    }
    drop(file);
    let full_lines = mnt
        .log()
        .lines()
        .filter(|l| l.contains("out of memory"))
        .count();
    // One line per failure would be 200 or more; warabifs logs one per 10 seconds, so
    // fewer than 10 unless this test took over 80 s.
    assert!(
        (1..10).contains(&full_lines),
        "{full_lines} log lines for {RETRIES} ENOSPC:\n{}",
        mnt.log()
    );
    mnt.unmount();
}
