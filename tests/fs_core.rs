//! Integration tests of the FUSE-free core, `warabifs::fs::WarabiFs`, on real small
//! libpmemobj pools in /dev/shm. Dropping a `WarabiFs` closes the pool without syncing,
//! so a drop is a crash unless the test released or fsynced first. The helpers they
//! share with other tests of the core are in tests/common.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::{
    assert_bytes_eq, caller, create_file, create_pool, list, lookup_ino, mount_pool,
    mount_pool_with, names, nonzero_pattern, pool_config, read_all, read_range, remount,
    scratch_pool, KIB, MIB,
};

use warabifs::fs::{
    Attr, Errno, Fh, FileKind, FsOptions, RenameMode, SetAttr, SetTime, WarabiFs, REGION_ID_XATTR,
    ROOT_INO,
};
use warabifs::pmem::{Oid, Pool, MAX_ALLOC_SIZE};
use warabifs::store::records::Timestamp;
use warabifs::store::{transaction_reserve, PoolConfig, StoreError};

const POOL_SIZE: u64 = 32 * MIB;

// ---------------------------------------------------------------- helpers

fn open_err(cfg: &PoolConfig) -> StoreError {
    WarabiFs::open_pool(cfg, FsOptions::default())
        .err()
        .expect("open_pool must fail")
}

fn name_set(names: &[&[u8]]) -> BTreeSet<Vec<u8>> {
    names.iter().map(|n| n.to_vec()).collect()
}

fn region_id(fs: &WarabiFs, ino: u64) -> Result<String, Errno> {
    fs.getxattr(ino, REGION_ID_XATTR)
        .map_err(|e| e.errno())
        .map(|v| String::from_utf8(v).expect("region id is UTF-8"))
}

fn region_oid(fs: &WarabiFs, ino: u64) -> Oid {
    let id = region_id(fs, ino).expect("file has a region");
    id.parse::<Oid>()
        .unwrap_or_else(|()| panic!("region id {id:?} does not parse"))
}

fn assert_region_id_format(id: &str) {
    assert_eq!(id.len(), 32, "region id {id:?}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "region id {id:?}"
    );
}

fn truncate(fs: &WarabiFs, ino: u64, size: u64) {
    let attr = fs
        .setattr(
            ino,
            SetAttr {
                size: Some(size),
                ..SetAttr::default()
            },
        )
        .expect("truncate");
    assert_eq!(attr.size, size);
}

fn free_bytes(fs: &WarabiFs) -> u64 {
    fs.statfs().free_bytes
}

/// Writes and unlinks a file of `len` bytes of 0xAA, so that the next regions the pool
/// hands out hold stale non-zero bytes: a missing zero-fill then shows.
fn leave_garbage(fs: &WarabiFs, len: usize) {
    create_file(fs, ROOT_INO, b"garbage", &vec![0xAA; len]);
    fs.unlink(ROOT_INO, b"garbage").expect("unlink garbage");
}

/// Warabi's side: allocates a region with `Pool::alloc` and fills all of it.
fn warabi_region(pool: &Pool, size: u64, seed: u8) -> (Oid, Vec<u8>) {
    let oid = pool.alloc(size, 0).expect("alloc region");
    let data = nonzero_pattern(pool.usable_size(oid) as usize, seed);
    pool.write(oid, 0, &data);
    pool.persist(oid, 0, data.len());
    (oid, data)
}

// ---------------------------------------------------------------- 1. data round trip

#[test]
fn written_file_reads_back_and_survives_remount_with_stable_inode_numbers() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let small = nonzero_pattern(3000, 1);
    let big = nonzero_pattern(300_000, 2);
    let small_ino = create_file(&fs, ROOT_INO, b"small", &small);
    let sub = fs
        .mkdir(ROOT_INO, b"sub", 0o755, caller())
        .expect("mkdir")
        .ino;
    let big_ino = create_file(&fs, sub, b"big", &big);

    assert_eq!(fs.getattr(small_ino).unwrap().size, small.len() as u64);
    assert_eq!(read_all(&fs, small_ino), small);
    assert_eq!(read_range(&fs, big_ino, 1000, 10), big[1000..1010]);
    assert_eq!(
        read_range(&fs, small_ino, 2990, 100),
        small[2990..],
        "a read past the end is short"
    );
    assert!(
        read_range(&fs, small_ino, 5000, 10).is_empty(),
        "a read beyond the end is empty"
    );
    assert_eq!(read_all(&fs, big_ino), big);

    let fs = remount(fs, &path);
    assert_eq!(lookup_ino(&fs, ROOT_INO, b"small"), small_ino);
    assert_eq!(lookup_ino(&fs, ROOT_INO, b"sub"), sub);
    assert_eq!(lookup_ino(&fs, sub, b"big"), big_ino);
    assert_eq!(fs.getattr(big_ino).unwrap().size, big.len() as u64);
    assert_eq!(read_all(&fs, small_ino), small);
    assert_eq!(read_all(&fs, big_ino), big);

    // New inodes after a remount never reuse a number.
    let new_ino = create_file(&fs, ROOT_INO, b"new", b"x");
    assert!(
        ![ROOT_INO, small_ino, sub, big_ino].contains(&new_ino),
        "inode number {new_ino} reused"
    );
}

#[test]
fn fsynced_write_survives_a_crash_without_release() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let (_, fh) = fs.create(ROOT_INO, b"f", 0o644, caller()).unwrap();
    let data = nonzero_pattern(10_000, 3);
    fs.write(fh, 0, &data, false).unwrap();
    fs.fsync(fh).unwrap();

    let fs = remount(fs, &path); // no release: a crash after fsync
    assert_eq!(read_all(&fs, lookup_ino(&fs, ROOT_INO, b"f")), data);
}

#[test]
fn sync_write_survives_a_crash_without_fsync() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let (_, fh) = fs.create(ROOT_INO, b"f", 0o644, caller()).unwrap();
    let data = nonzero_pattern(5000, 4);
    fs.write(fh, 0, &data, true).unwrap();

    let fs = remount(fs, &path);
    assert_eq!(read_all(&fs, lookup_ino(&fs, ROOT_INO, b"f")), data);
}

#[test]
fn sync_writes_that_move_the_region_survive_a_crash_with_their_holes_zeroed() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    // Stale bytes where the new regions will be, which the holes must not show.
    leave_garbage(&fs, 3 * MIB as usize);
    let (attr, fh) = fs.create(ROOT_INO, b"f", 0o644, caller()).unwrap();
    let mut expected = Vec::new();
    let mut write = |off: usize, data: Vec<u8>| {
        let mtime = fs.getattr(attr.ino).unwrap().mtime;
        fs.write(fh, off as u64, &data, true).unwrap();
        assert!(fs.getattr(attr.ino).unwrap().mtime >= mtime);
        if expected.len() < off + data.len() {
            expected.resize(off + data.len(), 0);
        }
        expected[off..off + data.len()].copy_from_slice(&data);
    };
    // The first bytes, past a hole (the file gets its region), then past the region's
    // end with another hole, then over the old bytes and past the end again: each
    // moves the region.
    write(MIB as usize, nonzero_pattern(100, 1));
    write(2 * MIB as usize, nonzero_pattern(1000, 2));
    write(200, nonzero_pattern(3 * MIB as usize, 3));
    assert_eq!(read_all(&fs, attr.ino), expected);

    let fs = remount(fs, &path); // no release and no fsync: a crash
    assert_eq!(fs.getattr(attr.ino).unwrap().size, expected.len() as u64);
    assert_eq!(read_all(&fs, attr.ino), expected);
}

// ---------------------------------------------------------------- 2. growth

#[test]
fn appending_grows_the_region_and_changes_its_region_id() {
    let (_dir, path) = scratch_pool();
    // Big enough that 6 MiB stays below a sixteenth of the free space: growth doubles
    // all the way (past that the file would move into the largest region instead).
    let fs = create_pool(&path, 128 * MIB);
    let (attr, fh) = fs.create(ROOT_INO, b"log", 0o644, caller()).unwrap();
    let ino = attr.ino;
    assert_eq!(
        region_id(&fs, ino),
        Err(Errno::ENODATA),
        "an empty file has no region"
    );

    let mut expected = vec![7u8];
    fs.write(fh, 0, &expected, false).unwrap();
    let first_id = region_id(&fs, ino).unwrap();
    assert_region_id_format(&first_id);
    let mut ids = vec![first_id];
    while expected.len() < 6 * MIB as usize {
        let piece = nonzero_pattern(
            64 * KIB as usize,
            (expected.len() / (64 * KIB as usize)) as u8,
        );
        fs.write(fh, expected.len() as u64, &piece, false).unwrap();
        expected.extend_from_slice(&piece);
        let id = region_id(&fs, ino).unwrap();
        assert_region_id_format(&id);
        if ids.last() != Some(&id) {
            ids.push(id);
        }
    }
    // 1 byte -> 6 MiB with capacity doubling (a small pool): several moves, each to a
    // new region.
    assert!(ids.len() >= 5, "region ids seen while growing: {ids:?}");
    assert!(fs.getattr(ino).unwrap().blocks * 512 >= expected.len() as u64);
    assert_eq!(read_all(&fs, ino), expected);
    fs.release(fh).unwrap();

    // The last close gives back the growth reserve: the region moves once more.
    let last_id = region_id(&fs, ino).unwrap();
    assert_ne!(
        Some(&last_id),
        ids.last(),
        "6 MiB in a region of a sixteenth of the pool is trimmed"
    );
    let fs = remount(fs, &path);
    assert_eq!(region_id(&fs, ino).unwrap(), last_id);
    assert_eq!(read_all(&fs, ino), expected);
}

/// Large writes, growth copies and large reads go through the pool file, small ones
/// through the mapping; both must show the same bytes, to warabifs and to Warabi.
#[test]
fn bytes_written_through_the_pool_file_and_the_mapping_agree() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, 64 * MIB);
    let (attr, fh) = fs.create(ROOT_INO, b"f", 0o644, caller()).unwrap();
    let ino = attr.ino;
    let big = nonzero_pattern(3 * MIB as usize, 30);
    for (i, piece) in big.chunks(MIB as usize).enumerate() {
        fs.write(fh, i as u64 * MIB, piece, false).unwrap();
    }
    // Small overwrites go through the mapping, into bytes the file wrote.
    let mut expected = big.clone();
    for off in (0..expected.len()).step_by(300_000) {
        let small = nonzero_pattern(1000, off as u8);
        fs.write(fh, off as u64, &small, false).unwrap();
        expected[off..off + 1000].copy_from_slice(&small);
    }
    assert_eq!(read_all(&fs, ino), expected, "1 MiB reads");
    assert_eq!(
        read_range(&fs, ino, 299_500, 1000),
        expected[299_500..300_500]
    );
    fs.fsync(fh).unwrap();
    fs.release(fh).unwrap();
    let region = region_oid(&fs, ino);
    drop(fs);

    let pool = Pool::open(&path).unwrap();
    assert_eq!(
        pool.bytes(region, 0, expected.len()),
        &expected[..],
        "Warabi's view"
    );
}

#[test]
fn a_trimmed_file_keeps_headroom_for_appends_after_reopening() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, 64 * MIB);
    let (attr, fh) = fs.create(ROOT_INO, b"log", 0o644, caller()).unwrap();
    let ino = attr.ino;
    let mut expected = Vec::new();
    let mut append = |fs: &WarabiFs, fh: Fh, len: usize| {
        let piece = nonzero_pattern(len, expected.len() as u8);
        fs.write(fh, expected.len() as u64, &piece, false).unwrap();
        expected.extend_from_slice(&piece);
    };
    for _ in 0..64 {
        append(&fs, fh, 64 * KIB as usize);
    }
    fs.release(fh).unwrap();
    let trimmed = region_id(&fs, ino).unwrap();

    // A log reopened for a few more lines fits in the headroom the trim left: neither
    // the appends nor the next close move (copy) the file again.
    for _ in 0..3 {
        let fh = fs.open(ino, true).unwrap();
        append(&fs, fh, 100 * KIB as usize);
        fs.release(fh).unwrap();
        assert_eq!(region_id(&fs, ino).unwrap(), trimmed);
    }
    assert_eq!(read_all(&fs, ino), expected);
}

#[test]
fn overwriting_inside_the_capacity_keeps_the_region() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let mut data = nonzero_pattern(100_000, 5);
    let ino = create_file(&fs, ROOT_INO, b"f", &data);
    let before = region_id(&fs, ino).unwrap();
    let patch = nonzero_pattern(500, 6);
    let fh = fs.open(ino, true).unwrap();
    fs.write(fh, 40_000, &patch, false).unwrap();
    data[40_000..40_500].copy_from_slice(&patch);
    assert_eq!(region_id(&fs, ino).unwrap(), before);
    assert_eq!(read_all(&fs, ino), data);
}

// ---------------------------------------------------------------- 3. holes

#[test]
fn write_past_the_end_leaves_a_zero_filled_hole() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    leave_garbage(&fs, 3 * MIB as usize);
    let data = nonzero_pattern(100, 7);
    let (attr, fh) = fs.create(ROOT_INO, b"sparse", 0o644, caller()).unwrap();
    fs.write(fh, MIB, &data, false).unwrap();

    let mut expected = vec![0u8; MIB as usize];
    expected.extend_from_slice(&data);
    assert_eq!(fs.getattr(attr.ino).unwrap().size, MIB + 100);
    assert_eq!(read_all(&fs, attr.ino), expected);
    fs.release(fh).unwrap();

    let fs = remount(fs, &path);
    assert_eq!(read_all(&fs, attr.ino), expected);
}

#[test]
fn second_write_past_the_end_zero_fills_between() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    leave_garbage(&fs, MIB as usize);
    let ino = create_file(&fs, ROOT_INO, b"f", &nonzero_pattern(10, 8));
    let fh = fs.open(ino, true).unwrap();
    fs.write(fh, 5000, b"end", false).unwrap();
    let got = read_all(&fs, ino);
    assert_eq!(got.len(), 5003);
    assert_eq!(got[..10], nonzero_pattern(10, 8)[..]);
    assert!(got[10..5000].iter().all(|&b| b == 0), "hole is not zero");
    assert_eq!(&got[5000..], b"end");
}

#[test]
fn truncate_up_reads_zeros() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    leave_garbage(&fs, 3 * MIB as usize);
    let data = nonzero_pattern(1000, 9);
    let ino = create_file(&fs, ROOT_INO, b"f", &data);
    truncate(&fs, ino, 2 * MIB);

    let got = read_all(&fs, ino);
    assert_eq!(got[..1000], data[..]);
    assert!(
        got[1000..].iter().all(|&b| b == 0),
        "extended range is not zero"
    );

    let fs = remount(fs, &path);
    assert_eq!(read_all(&fs, ino), got);
}

/// The pool's format version, as its superblock says (the pool must be closed).
fn format_version(path: &Path) -> u32 {
    warabifs::tools::open(path).expect("open").format_version()
}

#[test]
fn truncate_up_is_a_zero_tail_that_allocates_nothing() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    leave_garbage(&fs, 3 * MIB as usize);
    let data = nonzero_pattern(300 * KIB as usize, 11);
    let ino = create_file(&fs, ROOT_INO, b"f", &data);
    let before = fs.statfs();
    let region = region_oid(&fs, ino);
    truncate(&fs, ino, 100 << 30);
    let after = fs.statfs();
    assert_eq!(
        (after.free_bytes, after.available_bytes),
        (before.free_bytes, before.available_bytes),
        "a truncate up allocated"
    );
    assert_eq!(region_oid(&fs, ino), region, "the region moved");
    // Past the data (and past the capacity, where the garbage lies): zeros.
    assert_eq!(read_range(&fs, ino, 0, data.len() as u32), data);
    let past = read_range(&fs, ino, data.len() as u64 - 10, MIB as u32);
    assert_eq!(past[..10], data[data.len() - 10..]);
    assert!(past[10..].iter().all(|&b| b == 0), "the tail is not zeros");
    assert!(read_range(&fs, ino, 99 << 30, 4096).iter().all(|&b| b == 0));
    assert_eq!(fs.lseek(ino, 0, libc::SEEK_HOLE), Ok(data.len() as u64));
    assert_eq!(fs.lseek(ino, 5 << 30, libc::SEEK_HOLE), Ok(5 << 30));
    assert_eq!(
        fs.lseek(ino, 5 << 30, libc::SEEK_DATA),
        Err(Errno::ENXIO.into())
    );
    assert_eq!(fs.lseek(ino, 7, libc::SEEK_DATA), Ok(7));
    drop(fs);
    assert_eq!(
        format_version(&path),
        2,
        "a zero tail raises the format version"
    );

    let fs = mount_pool(&path);
    assert_eq!(fs.getattr(ino).unwrap().size, 100 << 30);
    assert_eq!(fs.lseek(ino, 0, libc::SEEK_HOLE), Ok(data.len() as u64));
    // A write into the tail stores it, and zeros before it; the rest stays a hole.
    let fh = fs.open(ino, true).unwrap();
    fs.write(fh, 2 * MIB, b"tail", false).unwrap();
    let got = read_range(&fs, ino, 0, 2 * MIB as u32 + 8);
    assert_eq!(got[..data.len()], data[..]);
    assert!(got[data.len()..2 * MIB as usize].iter().all(|&b| b == 0));
    assert_eq!(&got[2 * MIB as usize..], b"tail\0\0\0\0");
    assert_eq!(fs.lseek(ino, 0, libc::SEEK_HOLE), Ok(2 * MIB + 4));
    fs.fsync(fh).unwrap();
    let fs = remount(fs, &path);
    assert_eq!(read_range(&fs, ino, 2 * MIB, 8), b"tail\0\0\0\0");
    assert_eq!(fs.getattr(ino).unwrap().size, 100 << 30);
}

#[test]
fn a_file_sized_first_gets_one_region_for_its_size_when_filled() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, 128 * MIB);
    let (attr, fh) = fs.create(ROOT_INO, b"sized", 0o644, caller()).unwrap();
    truncate(&fs, attr.ino, 3 * MIB);
    let piece = nonzero_pattern(64 * KIB as usize, 4);
    fs.write(fh, 0, &piece, false).unwrap();
    let region = region_id(&fs, attr.ino).unwrap();
    let capacity = fs.getattr(attr.ino).unwrap().blocks * 512;
    assert!(
        (3 * MIB..=3 * MIB + 256 * KIB).contains(&capacity),
        "a region of {capacity} bytes for a 3 MiB file"
    );
    for k in 1..48 {
        fs.write(fh, k * 64 * KIB, &piece, false).unwrap();
    }
    fs.release(fh).unwrap();
    assert_eq!(region_id(&fs, attr.ino).unwrap(), region, "the file moved");
    let got = read_all(&fs, attr.ino);
    assert!(got.chunks(piece.len()).all(|c| c == piece));
}

#[test]
fn pools_without_zero_tails_keep_format_version_1() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let ino = create_file(&fs, ROOT_INO, b"f", &nonzero_pattern(5000, 3));
    truncate(&fs, ino, 100);
    let fh = fs.open(ino, true).unwrap();
    fs.write(fh, 200, b"x", false).unwrap();
    fs.fsync(fh).unwrap();
    drop(fs);
    assert_eq!(format_version(&path), 1);
}

#[test]
fn punching_the_end_of_the_data_and_copying_a_tail_store_nothing() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let data = nonzero_pattern(64 * KIB as usize, 5);
    let ino = create_file(&fs, ROOT_INO, b"f", &data);
    const PUNCH_HOLE_KEEP_SIZE: i32 = 0x02 | 0x01;
    fs.fallocate(ino, 4096, 1 << 20, PUNCH_HOLE_KEEP_SIZE)
        .unwrap();
    assert_eq!(fs.getattr(ino).unwrap().size, data.len() as u64);
    assert_eq!(
        fs.lseek(ino, 0, libc::SEEK_HOLE),
        Ok(4096),
        "the data now ends at the hole"
    );
    let got = read_all(&fs, ino);
    assert_eq!(got[..4096], data[..4096]);
    assert!(got[4096..].iter().all(|&b| b == 0));
    // A copy out of the zero tail writes zeros over data, and past the target's data
    // only raises its size.
    let (target, fh) = fs.create(ROOT_INO, b"t", 0o644, caller()).unwrap();
    fs.write(fh, 0, &[9; 10_000], false).unwrap();
    assert_eq!(
        fs.copy_file_range(ino, 4000, target.ino, 0, 20_000)
            .unwrap(),
        20_000
    );
    let copied = read_all(&fs, target.ino);
    assert_eq!(copied.len(), 20_000);
    assert_eq!(copied[..96], data[4000..4096]);
    assert!(
        copied[96..].iter().all(|&b| b == 0),
        "the tail copied as zeros"
    );
    assert_eq!(fs.lseek(target.ino, 0, libc::SEEK_HOLE), Ok(96));
    fs.release(fh).unwrap();
    let fs = remount(fs, &path);
    assert_eq!(read_all(&fs, target.ino), copied);
    assert_eq!(read_all(&fs, ino), got);
}

/// Writes `len` bytes to a new file in `piece`-sized appends and closes it.
fn append_file(fs: &WarabiFs, name: &[u8], len: usize, piece: usize) -> u64 {
    let (attr, fh) = fs.create(ROOT_INO, name, 0o644, caller()).unwrap();
    let data = nonzero_pattern(piece, 21);
    let mut off = 0;
    while off < len {
        let n = piece.min(len - off);
        fs.write(fh, off as u64, &data[..n], false).unwrap();
        off += n;
    }
    fs.release(fh).unwrap();
    attr.ino
}

#[test]
fn a_reserve_that_could_not_be_trimmed_is_given_back_when_space_is_short() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, 1024 * MIB);
    let blocker = create_file(
        &fs,
        ROOT_INO,
        b"blocker",
        &nonzero_pattern(384 * MIB as usize, 1),
    );
    // A pool large enough for files to take the largest region (store::LARGEST_MIN_STEP).
    // Appended to 256 MiB, the file moves into the largest region; at its close the
    // 256 MiB copy a trim needs does not fit beside the blocker.
    let big = append_file(&fs, b"big", 256 * MIB as usize, 4 * MIB as usize);
    let reserve = fs.getattr(big).unwrap().blocks * 512;
    assert!(reserve >= 480 * MIB, "the file holds only {reserve} bytes");
    fs.unlink(ROOT_INO, b"blocker").unwrap();
    let _ = blocker;
    // 448 MiB do not fit in what the blocker left, unless the reserve is given back.
    let needs_room = nonzero_pattern(448 * MIB as usize, 2);
    let ino = create_file(&fs, ROOT_INO, b"new", &needs_room);
    assert!(
        fs.getattr(big).unwrap().blocks * 512 < 320 * MIB,
        "the reserve stayed"
    );
    assert_eq!(read_all(&fs, ino), needs_room);
    assert_eq!(read_all(&fs, big).len(), 256 * MIB as usize);
}

#[test]
fn the_headroom_of_a_file_still_open_is_given_back_when_space_is_short() {
    // The kernel sends a release after close(2) returns, so the next file's writes
    // may come while the last one is still open with the headroom growth gave it.
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, 64 * MIB);
    let (open, fh) = fs.create(ROOT_INO, b"open", 0o644, caller()).unwrap();
    let data = nonzero_pattern(MIB as usize, 3);
    for k in 0..8 {
        fs.write(fh, k * MIB, &data, false).unwrap();
    }
    fs.write(fh, 8 * MIB, b"one more", false).unwrap();
    let held = fs.getattr(open.ino).unwrap().blocks * 512;
    let headroom = held - fs.getattr(open.ino).unwrap().size;
    assert!(headroom >= MIB, "growth left {headroom} bytes of headroom");
    // What the allocator gives: the available figure leaves the transaction reserve out.
    let offered = fs.statfs().available_bytes + transaction_reserve(64 * MIB);
    let wanted = offered + headroom / 2;
    let (new, new_fh) = fs.create(ROOT_INO, b"new", 0o644, caller()).unwrap();
    fs.fallocate(new.ino, 0, wanted, 0)
        .unwrap_or_else(|e| panic!("fallocate of {wanted} bytes ({offered} offered): {e:?}"));
    assert!(
        fs.getattr(open.ino).unwrap().blocks * 512 < held,
        "the headroom stayed"
    );
    let mut expected = data.repeat(8);
    expected.extend_from_slice(b"one more");
    assert_eq!(read_all(&fs, open.ino), expected);
    // Written again, the open file grows again from its fitted region.
    fs.write(fh, 8 * MIB + 8, b"!", false).unwrap();
    fs.release(fh).unwrap();
    fs.release(new_fh).unwrap();
}

#[test]
fn fallocate_of_what_statfs_offers_fits_a_new_file() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, 16 * MIB);
    for k in 0..8u8 {
        let ino = create_file(&fs, ROOT_INO, &[b'x', b'0' + k], b"x");
        fs.setxattr(ino, b"user.big", &vec![k; 64 * KIB as usize], 0)
            .unwrap();
    }
    let offered = fs.statfs().available_bytes;
    assert!(offered > MIB, "only {offered} bytes offered");
    let (attr, fh) = fs.create(ROOT_INO, b"big", 0o644, caller()).unwrap();
    fs.fallocate(attr.ino, 0, offered, 0)
        .unwrap_or_else(|e| panic!("fallocate of the {offered} bytes offered: {e:?}"));
    assert_eq!(fs.getattr(attr.ino).unwrap().size, offered);
    // The transaction reserve still lets small files in.
    create_file(&fs, ROOT_INO, b"after", b"fits");
    fs.release(fh).unwrap();
}

#[test]
fn truncate_down_then_up_zeroes_the_reexposed_range() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let data = nonzero_pattern(1000, 10);
    let ino = create_file(&fs, ROOT_INO, b"f", &data);
    truncate(&fs, ino, 10);
    truncate(&fs, ino, 100);

    let got = read_all(&fs, ino);
    assert_eq!(got[..10], data[..10]);
    assert_eq!(got[10..], [0u8; 90][..], "bytes 10..100 must read as zeros");

    // A write past the end after a shrink must not expose the old bytes either.
    truncate(&fs, ino, 10);
    let fh = fs.open(ino, true).unwrap();
    fs.write(fh, 500, b"z", false).unwrap();
    let got = read_all(&fs, ino);
    assert!(
        got[10..500].iter().all(|&b| b == 0),
        "bytes 10..500 must read as zeros"
    );
    fs.fsync(fh).unwrap();

    let fs = remount(fs, &path);
    assert_eq!(read_all(&fs, ino), got);
}

// ---------------------------------------------------------------- 4. truncate to 0

#[test]
fn truncate_to_zero_frees_the_region() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let before_create = free_bytes(&fs);
    let ino = create_file(&fs, ROOT_INO, b"f", &nonzero_pattern(MIB as usize, 11));
    let with_data = free_bytes(&fs);
    assert!(
        before_create - with_data >= MIB,
        "1 MiB of data used only {} bytes",
        before_create - with_data
    );
    assert!(region_id(&fs, ino).is_ok());

    truncate(&fs, ino, 0);
    assert_eq!(region_id(&fs, ino), Err(Errno::ENODATA));
    assert_eq!(fs.listxattr(ino).unwrap(), b"");
    let emptied = free_bytes(&fs);
    assert!(
        emptied > with_data && emptied - with_data >= MIB,
        "free bytes {with_data} -> {emptied}"
    );
    assert!(
        emptied < before_create,
        "the inode and its entry still hold space"
    );
    assert_eq!(fs.getattr(ino).unwrap().size, 0);
    assert!(read_range(&fs, ino, 0, 100).is_empty());

    let fs = remount(fs, &path);
    assert_eq!(region_id(&fs, ino), Err(Errno::ENODATA));
    assert_eq!(fs.getattr(ino).unwrap().size, 0);
    assert_eq!(
        free_bytes(&fs),
        emptied,
        "the accounting of a fresh scan agrees"
    );

    // The emptied file can grow again.
    let fh = fs.open(ino, true).unwrap();
    fs.write(fh, 0, b"again", false).unwrap();
    assert_eq!(read_all(&fs, ino), b"again");
}

// ---------------------------------------------------------------- 5, 6. Warabi compatibility

#[test]
fn warabi_regions_are_listed_as_files_and_written_in_place() {
    let (_dir, path) = scratch_pool();
    let pool = Pool::create(&path, POOL_SIZE).expect("Pool::create");
    let (a, a_data) = warabi_region(&pool, 1000, 12);
    let (erased, _) = warabi_region(&pool, 4096, 13);
    let (c, c_data) = warabi_region(&pool, 65536, 14);
    pool.free(erased);
    drop(pool);

    let fs = mount_pool(&path);
    let listed = list(&fs, ROOT_INO);
    let expected_names = name_set(&[a.to_string().as_bytes(), c.to_string().as_bytes()]);
    assert_eq!(
        listed.keys().cloned().collect::<BTreeSet<_>>(),
        expected_names
    );
    for (oid, data) in [(a, &a_data), (c, &c_data)] {
        let (ino, kind) = listed[oid.to_string().as_bytes()];
        assert_eq!(kind, FileKind::Regular);
        assert_eq!(
            fs.getattr(ino).unwrap().size,
            data.len() as u64,
            "size is the usable size"
        );
        assert_eq!(&read_all(&fs, ino), data);
        assert_eq!(region_oid(&fs, ino), oid);
    }

    let c_ino = listed[c.to_string().as_bytes()].0;
    let patch = nonzero_pattern(300, 15);
    let fh_c_ino = fs.open(c_ino, true).unwrap();
    fs.write(fh_c_ino, 1234, &patch, false).unwrap();
    fs.fsync(fh_c_ino).unwrap();
    drop(fs);

    let pool = Pool::open(&path).expect("Pool::open after the mount");
    assert_eq!(pool.type_num(c), 0);
    assert_eq!(pool.usable_size(c), c_data.len() as u64);
    let mut expected = c_data.clone();
    expected[1234..1534].copy_from_slice(&patch);
    assert_eq!(pool.bytes(c, 0, expected.len()), &expected[..]);
    assert_eq!(
        pool.bytes(a, 0, a_data.len()),
        &a_data[..],
        "untouched region changed"
    );
}

#[test]
fn warabi_region_survives_remount_after_being_grown() {
    let (_dir, path) = scratch_pool();
    let pool = Pool::create(&path, POOL_SIZE).unwrap();
    let (oid, data) = warabi_region(&pool, 1000, 16);
    drop(pool);

    let fs = mount_pool(&path);
    let name = oid.to_string().into_bytes();
    let ino = lookup_ino(&fs, ROOT_INO, &name);
    let mut expected = data.clone();
    expected.extend_from_slice(&nonzero_pattern(5000, 17));
    let fh = fs.open(ino, true).unwrap();
    fs.write(fh, data.len() as u64, &expected[data.len()..], false)
        .unwrap();
    fs.fsync(fh).unwrap();
    assert_ne!(region_oid(&fs, ino), oid, "growth moves the file");

    let fs = remount(fs, &path);
    assert_eq!(
        names(&fs, ROOT_INO),
        name_set(&[&name]),
        "the grown region is listed once, by its old name"
    );
    assert_eq!(read_all(&fs, lookup_ino(&fs, ROOT_INO, &name)), expected);
}

#[test]
fn a_new_warabi_region_where_an_adopted_one_lived_is_listed_with_a_suffix() {
    let (_dir, path) = scratch_pool();
    let pool = Pool::create(&path, POOL_SIZE).unwrap();
    let (old, _) = warabi_region(&pool, 1000, 20);
    drop(pool);
    let fs = mount_pool(&path);
    let old_name = old.to_string().into_bytes();
    let adopted = lookup_ino(&fs, ROOT_INO, &old_name);
    let fh_adopted = fs.open(adopted, true).unwrap();
    fs.write(fh_adopted, 2000, b"x", true).unwrap();
    drop(fs);
    // Warabi reuses the offset the grown file left behind.
    let pool = Pool::open(&path).unwrap();
    let (new, new_data) = warabi_region(&pool, 1000, 21);
    drop(pool);
    assert_eq!(new, old, "libpmemobj reuses the freed offset");

    let fs = mount_pool(&path);
    let suffixed = format!("{new}.region").into_bytes();
    assert_eq!(names(&fs, ROOT_INO), name_set(&[&old_name, &suffixed]));
    let ino = lookup_ino(&fs, ROOT_INO, &suffixed);
    assert_ne!(ino, adopted);
    assert_eq!(read_all(&fs, ino), new_data);
    fs.setattr(
        ino,
        SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        },
    )
    .unwrap();
    let fs = remount(fs, &path);
    assert_eq!(
        lookup_ino(&fs, ROOT_INO, &suffixed),
        ino,
        "adoption keeps its number"
    );
    assert_eq!(fs.getattr(ino).unwrap().perm, 0o600);
    assert_eq!(read_all(&fs, ino), new_data);
}

#[test]
fn a_file_whose_region_warabi_erased_reads_empty_and_can_be_rewritten() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let ino = create_file(&fs, ROOT_INO, b"f", &nonzero_pattern(50_000, 22));
    let region = region_oid(&fs, ino);
    drop(fs);
    let pool = Pool::open(&path).unwrap();
    pool.free(region); // Warabi's erase of the file's RegionID
    drop(pool);

    let fs = mount_pool(&path);
    assert_eq!(lookup_ino(&fs, ROOT_INO, b"f"), ino);
    assert_eq!(fs.getattr(ino).unwrap().size, 0);
    assert_eq!(read_all(&fs, ino), Vec::<u8>::new());
    let fh = fs.open(ino, true).unwrap();
    fs.write(fh, 0, b"again", false).unwrap();
    fs.release(fh).unwrap();
    let fs = remount(fs, &path);
    assert_eq!(read_all(&fs, ino), b"again");
}

#[test]
fn atomic_writes_are_durable_when_they_return() {
    let (_dir, path) = scratch_pool();
    drop(create_pool(&path, POOL_SIZE));
    let atomic = FsOptions {
        atomic_writes: true,
        ..FsOptions::default()
    };
    let fs = mount_pool_with(&path, atomic.clone());
    let mut expected = nonzero_pattern(300_000, 40);
    let (attr, fh) = fs.create(ROOT_INO, b"f", 0o644, caller()).unwrap();
    fs.write(fh, 0, &expected, false).unwrap();
    let patch = nonzero_pattern(1000, 41);
    fs.write(fh, 1234, &patch, false).unwrap();
    expected[1234..2234].copy_from_slice(&patch);
    fs.write(fh, 400_000, b"tail", false).unwrap();
    expected.resize(400_000, 0);
    expected.extend_from_slice(b"tail");
    drop(fs); // a crash: no fsync, no release
    let fs = mount_pool_with(&path, atomic);
    assert_bytes_eq(&read_all(&fs, attr.ino), &expected);
}

#[test]
fn file_created_through_the_fs_is_a_warabi_region() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let data = nonzero_pattern(20_000, 18);
    let ino = create_file(&fs, ROOT_INO, b"f", &data);
    let oid = region_oid(&fs, ino);
    assert_eq!(
        fs.listxattr(ino).unwrap(),
        [REGION_ID_XATTR, b"\0"].concat()
    );
    drop(fs);

    let pool = Pool::open(&path).unwrap();
    assert!(
        pool.objects().any(|o| o == oid),
        "region {oid} is not an object of the pool"
    );
    assert_eq!(pool.type_num(oid), 0);
    assert_eq!(pool.bytes(oid, 0, data.len()), &data[..]);
}

// ---------------------------------------------------------------- 7. namespace

#[test]
fn mkdir_rmdir_and_their_errors() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, caller()).unwrap();
    assert_eq!((d.kind, d.nlink), (FileKind::Directory, 2));
    assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 3);
    let file = create_file(&fs, d.ino, b"file", b"x");

    assert_eq!(
        fs.mkdir(ROOT_INO, b"d", 0o755, caller()).unwrap_err(),
        Errno::EEXIST
    );
    assert_eq!(fs.rmdir(ROOT_INO, b"d").unwrap_err(), Errno::ENOTEMPTY);
    assert_eq!(fs.rmdir(d.ino, b"file").unwrap_err(), Errno::ENOTDIR);
    assert_eq!(fs.unlink(ROOT_INO, b"d").unwrap_err(), Errno::EISDIR);
    assert_eq!(
        fs.mkdir(file, b"x", 0o755, caller()).unwrap_err(),
        Errno::ENOTDIR
    );
    assert_eq!(fs.lookup(file, b"x").unwrap_err(), Errno::ENOTDIR);
    assert_eq!(fs.readdir(file, 0, |_| false).unwrap_err(), Errno::ENOTDIR);
    assert_eq!(fs.rmdir(ROOT_INO, b"missing").unwrap_err(), Errno::ENOENT);
    assert_eq!(fs.lookup(d.ino, b"..").unwrap().ino, ROOT_INO);

    fs.unlink(d.ino, b"file").unwrap();
    assert_eq!(fs.getattr(file).unwrap_err(), Errno::ENOENT);
    fs.rmdir(ROOT_INO, b"d").unwrap();
    assert_eq!(fs.lookup(ROOT_INO, b"d").unwrap_err(), Errno::ENOENT);
    assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 2);

    let fs = remount(fs, &path);
    assert!(list(&fs, ROOT_INO).is_empty());
    assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 2);
}

#[test]
fn rename_over_a_file_replaces_it_and_frees_its_data() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let src_data = nonzero_pattern(4000, 19);
    let src = create_file(&fs, ROOT_INO, b"src", &src_data);
    let dst = create_file(&fs, ROOT_INO, b"dst", &nonzero_pattern(MIB as usize, 20));
    let with_both = free_bytes(&fs);

    fs.rename(ROOT_INO, b"src", ROOT_INO, b"dst", RenameMode::Replace)
        .unwrap();
    assert_eq!(lookup_ino(&fs, ROOT_INO, b"dst"), src);
    assert_eq!(fs.lookup(ROOT_INO, b"src").unwrap_err(), Errno::ENOENT);
    assert_eq!(
        fs.getattr(dst).unwrap_err(),
        Errno::ENOENT,
        "the replaced inode is gone"
    );
    assert!(
        free_bytes(&fs) >= with_both + MIB,
        "the replaced file's region was not freed"
    );
    assert_eq!(read_all(&fs, src), src_data);

    let fs = remount(fs, &path);
    assert_eq!(names(&fs, ROOT_INO), name_set(&[b"dst"]));
    assert_eq!(read_all(&fs, lookup_ino(&fs, ROOT_INO, b"dst")), src_data);
}

#[test]
fn rename_across_directories_moves_files_and_directories() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let a = fs.mkdir(ROOT_INO, b"a", 0o755, caller()).unwrap().ino;
    let b = fs.mkdir(ROOT_INO, b"b", 0o755, caller()).unwrap().ino;
    let inner = fs.mkdir(a, b"inner", 0o755, caller()).unwrap().ino;
    let data = nonzero_pattern(777, 21);
    let file = create_file(&fs, a, b"f", &data);

    fs.rename(a, b"f", b, b"g", RenameMode::Replace).unwrap();
    fs.rename(a, b"inner", b, b"inner2", RenameMode::Replace)
        .unwrap();
    assert_eq!(fs.getattr(a).unwrap().nlink, 2);
    assert_eq!(fs.getattr(b).unwrap().nlink, 3);
    assert_eq!(fs.lookup(inner, b"..").unwrap().ino, b);

    let fs = remount(fs, &path);
    assert!(list(&fs, a).is_empty());
    let in_b = list(&fs, b);
    assert_eq!(in_b[b"g".as_slice()], (file, FileKind::Regular));
    assert_eq!(in_b[b"inner2".as_slice()], (inner, FileKind::Directory));
    assert_eq!(fs.lookup(inner, b"..").unwrap().ino, b);
    assert_eq!(fs.getattr(a).unwrap().nlink, 2);
    assert_eq!(fs.getattr(b).unwrap().nlink, 3);
    assert_eq!(read_all(&fs, file), data);
}

#[test]
fn rename_noreplace_exchange_and_loops() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let x = create_file(&fs, ROOT_INO, b"x", b"xxx");
    let y = create_file(&fs, ROOT_INO, b"y", b"yyyyy");
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, caller()).unwrap().ino;
    let sub = fs.mkdir(d, b"sub", 0o755, caller()).unwrap().ino;

    assert_eq!(
        fs.rename(ROOT_INO, b"x", ROOT_INO, b"y", RenameMode::NoReplace)
            .unwrap_err(),
        Errno::EEXIST
    );
    assert_eq!(
        lookup_ino(&fs, ROOT_INO, b"y"),
        y,
        "a refused rename changes nothing"
    );
    assert_eq!(
        fs.rename(ROOT_INO, b"x", ROOT_INO, b"none", RenameMode::Exchange)
            .unwrap_err(),
        Errno::ENOENT
    );
    assert_eq!(
        fs.rename(ROOT_INO, b"d", sub, b"loop", RenameMode::Replace)
            .unwrap_err(),
        Errno::EINVAL
    );
    assert_eq!(
        fs.rename(ROOT_INO, b"d", d, b"self", RenameMode::Replace)
            .unwrap_err(),
        Errno::EINVAL
    );
    assert_eq!(
        fs.rename(ROOT_INO, b"x", ROOT_INO, b"d", RenameMode::Replace)
            .unwrap_err(),
        Errno::EISDIR
    );
    assert_eq!(
        fs.rename(ROOT_INO, b"d", ROOT_INO, b"x", RenameMode::Replace)
            .unwrap_err(),
        Errno::ENOTDIR
    );

    fs.rename(ROOT_INO, b"x", ROOT_INO, b"y", RenameMode::Exchange)
        .unwrap();
    assert_eq!(lookup_ino(&fs, ROOT_INO, b"x"), y);
    assert_eq!(lookup_ino(&fs, ROOT_INO, b"y"), x);
    // Exchange a file with a directory in another directory: the link counts follow.
    fs.rename(ROOT_INO, b"x", d, b"sub", RenameMode::Exchange)
        .unwrap();
    assert_eq!(lookup_ino(&fs, ROOT_INO, b"x"), sub);
    assert_eq!(lookup_ino(&fs, d, b"sub"), y);
    assert_eq!(fs.lookup(sub, b"..").unwrap().ino, ROOT_INO);
    assert_eq!(fs.getattr(d).unwrap().nlink, 2);
    assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 4);

    let fs = remount(fs, &path);
    assert_eq!(names(&fs, ROOT_INO), name_set(&[b"x", b"y", b"d"]));
    assert_eq!(read_all(&fs, lookup_ino(&fs, ROOT_INO, b"y")), b"xxx");
    assert_eq!(read_all(&fs, lookup_ino(&fs, d, b"sub")), b"yyyyy");
    assert_eq!(fs.lookup(ROOT_INO, b"x").unwrap().kind, FileKind::Directory);
    assert_eq!(fs.lookup(sub, b"..").unwrap().ino, ROOT_INO);
    assert_eq!(fs.getattr(d).unwrap().nlink, 2);
    assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 4);
}

#[test]
fn rename_over_an_empty_directory_replaces_it() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let a = fs.mkdir(ROOT_INO, b"a", 0o755, caller()).unwrap().ino;
    let b = fs.mkdir(ROOT_INO, b"b", 0o755, caller()).unwrap().ino;
    fs.mkdir(b, b"child", 0o755, caller()).unwrap();
    assert_eq!(
        fs.rename(ROOT_INO, b"a", ROOT_INO, b"b", RenameMode::Replace)
            .unwrap_err(),
        Errno::ENOTEMPTY
    );
    fs.rmdir(b, b"child").unwrap();
    fs.rename(ROOT_INO, b"a", ROOT_INO, b"b", RenameMode::Replace)
        .unwrap();
    assert_eq!(lookup_ino(&fs, ROOT_INO, b"b"), a);
    assert_eq!(fs.getattr(b).unwrap_err(), Errno::ENOENT);
    assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 3);

    let fs = remount(fs, &path);
    assert_eq!(
        list(&fs, ROOT_INO),
        BTreeMap::from([(b"b".to_vec(), (a, FileKind::Directory))])
    );
    assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 3);
}

#[test]
fn hard_links_share_data_and_count_links() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, caller()).unwrap().ino;
    let data = nonzero_pattern(9000, 22);
    let ino = create_file(&fs, ROOT_INO, b"one", &data);
    assert_eq!(fs.link(ino, d, b"two").unwrap().nlink, 2);
    assert_eq!(fs.link(ino, ROOT_INO, b"three").unwrap().nlink, 3);
    assert_eq!(fs.link(ino, ROOT_INO, b"three").unwrap_err(), Errno::EEXIST);
    assert_eq!(fs.link(d, ROOT_INO, b"dirlink").unwrap_err(), Errno::EPERM);
    assert_eq!(lookup_ino(&fs, d, b"two"), ino);

    fs.unlink(ROOT_INO, b"one").unwrap();
    assert_eq!(fs.getattr(ino).unwrap().nlink, 2);
    let fh = fs.open(ino, true).unwrap();
    fs.write(fh, 0, b"changed", false).unwrap();
    fs.fsync(fh).unwrap();
    let mut expected = data.clone();
    expected[..7].copy_from_slice(b"changed");
    assert_eq!(read_all(&fs, lookup_ino(&fs, ROOT_INO, b"three")), expected);

    let fs = remount(fs, &path);
    assert_eq!(fs.getattr(ino).unwrap().nlink, 2);
    assert_eq!(names(&fs, ROOT_INO), name_set(&[b"d", b"three"]));
    assert_eq!(read_all(&fs, lookup_ino(&fs, d, b"two")), expected);
    fs.unlink(d, b"two").unwrap();
    assert_eq!(fs.getattr(ino).unwrap().nlink, 1);
    assert_eq!(read_all(&fs, ino), expected);
}

#[test]
fn symlinks_store_their_target() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let target = b"../some/where/else".as_slice();
    let link = fs.symlink(ROOT_INO, b"ln", target, caller()).unwrap();
    assert_eq!(link.kind, FileKind::Symlink);
    assert_eq!(link.size, target.len() as u64);
    assert_eq!(fs.readlink(link.ino).unwrap(), target);
    assert_eq!(fs.readlink(ROOT_INO).unwrap_err(), Errno::EINVAL);
    let long_target = vec![b'a'; 4000];
    let long = fs
        .symlink(ROOT_INO, b"long", &long_target, caller())
        .unwrap();

    let fs = remount(fs, &path);
    assert_eq!(fs.lookup(ROOT_INO, b"ln").unwrap().kind, FileKind::Symlink);
    assert_eq!(fs.readlink(link.ino).unwrap(), target);
    assert_eq!(fs.readlink(long.ino).unwrap(), long_target);
}

#[test]
fn names_of_255_bytes_work_and_256_are_too_long() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let longest = vec![b'n'; 255];
    let too_long = vec![b'n'; 256];
    let ino = create_file(&fs, ROOT_INO, &longest, b"data");
    fs.mkdir(ROOT_INO, &longest[1..], 0o755, caller()).unwrap();
    assert_eq!(
        fs.create(ROOT_INO, &too_long, 0o644, caller()).unwrap_err(),
        Errno::ENAMETOOLONG
    );
    assert_eq!(
        fs.mkdir(ROOT_INO, &too_long, 0o755, caller()).unwrap_err(),
        Errno::ENAMETOOLONG
    );
    assert_eq!(
        fs.symlink(ROOT_INO, &too_long, b"t", caller()).unwrap_err(),
        Errno::ENAMETOOLONG
    );
    assert_eq!(
        fs.link(ino, ROOT_INO, &too_long).unwrap_err(),
        Errno::ENAMETOOLONG
    );
    assert_eq!(
        fs.rename(ROOT_INO, &longest, ROOT_INO, &too_long, RenameMode::Replace)
            .unwrap_err(),
        Errno::ENAMETOOLONG
    );
    assert_eq!(
        fs.lookup(ROOT_INO, &too_long).unwrap_err(),
        Errno::ENAMETOOLONG
    );

    let fs = remount(fs, &path);
    assert_eq!(names(&fs, ROOT_INO), name_set(&[&longest, &longest[1..]]));
    assert_eq!(read_all(&fs, lookup_ino(&fs, ROOT_INO, &longest)), b"data");
}

#[test]
fn invalid_names_are_refused() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    for bad in [b"".as_slice(), b".", b"..", b"a/b", b"nul\0"] {
        assert_eq!(
            fs.create(ROOT_INO, bad, 0o644, caller()).unwrap_err(),
            Errno::EINVAL,
            "{bad:?}"
        );
    }
    assert!(list(&fs, ROOT_INO).is_empty());
}

// ---------------------------------------------------------------- 8. unlink while open

#[test]
fn unlinked_open_file_stays_readable_until_release() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let data = nonzero_pattern(MIB as usize, 23);
    let ino = create_file(&fs, ROOT_INO, b"f", &data);
    let fh = fs.open(ino, false).unwrap();
    fs.unlink(ROOT_INO, b"f").unwrap();

    assert_eq!(fs.lookup(ROOT_INO, b"f").unwrap_err(), Errno::ENOENT);
    assert!(list(&fs, ROOT_INO).is_empty());
    assert_eq!(fs.getattr(ino).unwrap().nlink, 0);
    assert_eq!(read_all(&fs, ino), data);
    let before_release = free_bytes(&fs);

    fs.release(fh).unwrap();
    assert_eq!(fs.getattr(ino).unwrap_err(), Errno::ENOENT);
    assert_eq!(fs.open(ino, false).unwrap_err(), Errno::ENOENT);
    assert!(
        free_bytes(&fs) >= before_release + MIB,
        "release did not free the region"
    );
    assert_eq!(fs.release(fh).unwrap_err(), Errno::EBADF);
}

#[test]
fn unlinked_open_file_is_reclaimed_at_the_next_mount_after_a_crash() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let keep = create_file(&fs, ROOT_INO, b"keep", b"kept");
    let before_create = free_bytes(&fs);
    let (attr, fh) = fs.create(ROOT_INO, b"doomed", 0o644, caller()).unwrap();
    fs.write(fh, 0, &nonzero_pattern(2 * MIB as usize, 24), false)
        .unwrap();
    fs.unlink(ROOT_INO, b"doomed").unwrap();
    assert!(
        free_bytes(&fs) + 2 * MIB <= before_create,
        "the open orphan still holds its space"
    );

    let fs = remount(fs, &path); // crash: the handle is never released
    assert_eq!(names(&fs, ROOT_INO), name_set(&[b"keep"]));
    assert_eq!(fs.getattr(attr.ino).unwrap_err(), Errno::ENOENT);
    assert_eq!(free_bytes(&fs), before_create);
    assert_eq!(read_all(&fs, keep), b"kept");
}

#[test]
fn directory_removed_while_open_is_reclaimed_at_the_next_mount_after_a_crash() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let before_mkdir = free_bytes(&fs);
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, caller()).unwrap().ino;
    let _fh = fs.open(d, false).unwrap();
    fs.rmdir(ROOT_INO, b"d").unwrap();
    assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 2);

    let fs = remount(fs, &path); // crash: the directory handle is never released
    assert!(list(&fs, ROOT_INO).is_empty());
    assert_eq!(fs.getattr(d).unwrap_err(), Errno::ENOENT);
    assert_eq!(fs.readdir(d, 0, |_| false).unwrap_err(), Errno::ENOENT);
    assert_eq!(free_bytes(&fs), before_mkdir);
}

#[test]
fn file_replaced_by_rename_while_open_lives_until_release() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let old_data = nonzero_pattern(5000, 25);
    let old = create_file(&fs, ROOT_INO, b"target", &old_data);
    create_file(&fs, ROOT_INO, b"new", b"new contents");
    let fh = fs.open(old, false).unwrap();
    fs.rename(ROOT_INO, b"new", ROOT_INO, b"target", RenameMode::Replace)
        .unwrap();
    assert_eq!(read_all(&fs, old), old_data);
    fs.release(fh).unwrap();
    assert_eq!(fs.getattr(old).unwrap_err(), Errno::ENOENT);

    let fs = remount(fs, &path);
    assert_eq!(names(&fs, ROOT_INO), name_set(&[b"target"]));
    assert_eq!(
        read_all(&fs, lookup_ino(&fs, ROOT_INO, b"target")),
        b"new contents"
    );
}

// ---------------------------------------------------------------- 9. ENOSPC

#[test]
fn full_pool_gives_enospc_and_recovers_after_a_delete() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, 16 * MIB);
    let (attr, fh) = fs.create(ROOT_INO, b"big", 0o644, caller()).unwrap();
    let chunk = |i: usize| nonzero_pattern(MIB as usize, i as u8);
    let mut written = Vec::new();
    let err = loop {
        assert!(
            written.len() < 32 * MIB as usize,
            "a 16 MiB pool took 32 MiB"
        );
        match fs.write(
            fh,
            written.len() as u64,
            &chunk(written.len() / MIB as usize),
            false,
        ) {
            Ok(n) => written.extend_from_slice(&chunk(written.len() / MIB as usize)[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(err, Errno(libc::ENOSPC));
    assert!(
        written.len() >= 4 * MIB as usize,
        "only {} bytes fit",
        written.len()
    );
    assert_eq!(fs.getattr(attr.ino).unwrap().size, written.len() as u64);
    assert_eq!(
        read_all(&fs, attr.ino),
        written,
        "a failed write damaged the file"
    );
    // Small files still fit, or fail cleanly with ENOSPC.
    assert!(matches!(
        fs.mkdir(ROOT_INO, b"d", 0o755, caller())
            .map_err(|e| e.errno()),
        Ok(_) | Err(Errno(libc::ENOSPC))
    ));
    fs.release(fh).unwrap();

    let fs = remount(fs, &path);
    assert_eq!(read_all(&fs, attr.ino), written);
    let full = free_bytes(&fs);
    fs.unlink(ROOT_INO, b"big").unwrap();
    assert!(free_bytes(&fs) >= full + written.len() as u64);
    let again = nonzero_pattern(4 * MIB as usize, 99);
    let ino = create_file(&fs, ROOT_INO, b"again", &again);
    assert_eq!(read_all(&fs, ino), again);

    let fs = remount(fs, &path);
    assert_eq!(read_all(&fs, ino), again);
    drop(fs);
    assert!(
        Pool::check(&path).expect("pmemobj_check runs"),
        "pool inconsistent"
    );
}

#[test]
fn many_files_fill_the_pool_with_enospc_and_leave_it_consistent() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, 16 * MIB);
    let mut files = Vec::new();
    let err = loop {
        assert!(files.len() < 32, "a 16 MiB pool took 32 files of 1 MiB");
        let name = format!("f{}", files.len()).into_bytes();
        let data = nonzero_pattern(MIB as usize, files.len() as u8);
        let (_, fh) = match fs.create(ROOT_INO, &name, 0o644, caller()) {
            Ok(created) => created,
            Err(e) => break e,
        };
        let written = fs.write(fh, 0, &data, false);
        fs.release(fh).unwrap();
        match written {
            Ok(_) => files.push((name, data)),
            Err(e) => {
                fs.unlink(ROOT_INO, &name).unwrap();
                break e;
            }
        }
    };
    assert_eq!(err, Errno::ENOSPC);
    // libpmemobj packs ~1 MiB objects three to a 4 MiB run, and the small records take
    // chunks of their own: a 16 MiB pool holds 6 such files (9 bare regions).
    assert!(
        files.len() >= 5,
        "only {} files of 1 MiB fit in 16 MiB",
        files.len()
    );
    for (name, data) in &files {
        assert_eq!(&read_all(&fs, lookup_ino(&fs, ROOT_INO, name)), data);
    }
    let (first, _) = files.remove(0);
    fs.unlink(ROOT_INO, &first).unwrap();
    let ino = create_file(&fs, ROOT_INO, b"after", &nonzero_pattern(MIB as usize, 200));
    assert_eq!(read_all(&fs, ino), nonzero_pattern(MIB as usize, 200));

    let fs = remount(fs, &path);
    let mut expected: BTreeSet<Vec<u8>> = files.iter().map(|(n, _)| n.clone()).collect();
    expected.insert(b"after".to_vec());
    assert_eq!(names(&fs, ROOT_INO), expected);
    for (name, data) in &files {
        assert_eq!(&read_all(&fs, lookup_ino(&fs, ROOT_INO, name)), data);
    }
    drop(fs);
    assert!(
        Pool::check(&path).expect("pmemobj_check runs"),
        "pool inconsistent"
    );
}

// ---------------------------------------------------------------- 10. read-only

#[test]
fn read_only_mount_refuses_changes_and_serves_reads() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let data = nonzero_pattern(3000, 26);
    let ino = create_file(&fs, ROOT_INO, b"f", &data);
    fs.mkdir(ROOT_INO, b"d", 0o755, caller()).unwrap();
    drop(fs);

    let fs = mount_pool_with(
        &path,
        FsOptions {
            read_only: true,
            ..FsOptions::default()
        },
    );
    assert_eq!(fs.open(ino, true).unwrap_err(), Errno::EROFS);
    assert_eq!(
        fs.create(ROOT_INO, b"new", 0o644, caller()).unwrap_err(),
        Errno::EROFS
    );
    assert_eq!(
        fs.mkdir(ROOT_INO, b"new", 0o755, caller()).unwrap_err(),
        Errno::EROFS
    );
    assert_eq!(fs.unlink(ROOT_INO, b"f").unwrap_err(), Errno::EROFS);
    assert_eq!(fs.rmdir(ROOT_INO, b"d").unwrap_err(), Errno::EROFS);
    assert_eq!(
        fs.rename(ROOT_INO, b"f", ROOT_INO, b"g", RenameMode::Replace)
            .unwrap_err(),
        Errno::EROFS
    );
    assert_eq!(
        fs.setattr(
            ino,
            SetAttr {
                size: Some(0),
                ..SetAttr::default()
            }
        )
        .unwrap_err(),
        Errno::EROFS
    );
    assert_eq!(fs.open(ino, true).unwrap_err(), Errno::EROFS);

    let fh = fs.open(ino, false).unwrap();
    assert_eq!(read_all(&fs, ino), data);
    fs.release(fh).unwrap();
    assert_eq!(names(&fs, ROOT_INO), name_set(&[b"f", b"d"]));
    assert!(region_id(&fs, ino).is_ok());
}

#[test]
fn read_only_mount_lists_a_warabi_pool_without_formatting_it() {
    let (_dir, path) = scratch_pool();
    let pool = Pool::create(&path, POOL_SIZE).unwrap();
    let (oid, data) = warabi_region(&pool, 2000, 27);
    drop(pool);

    let fs = mount_pool_with(
        &path,
        FsOptions {
            read_only: true,
            ..FsOptions::default()
        },
    );
    let ino = lookup_ino(&fs, ROOT_INO, oid.to_string().as_bytes());
    assert_eq!(read_all(&fs, ino), data);
    assert_eq!(fs.open(ino, true).unwrap_err(), Errno::EROFS);
    drop(fs);

    let pool = Pool::open(&path).unwrap();
    assert_eq!(pool.root(), None, "a read-only mount wrote a superblock");
    assert_eq!(
        pool.objects().collect::<Vec<_>>(),
        vec![oid],
        "a read-only mount allocated objects"
    );
}

// ---------------------------------------------------------------- 11. refusing to open

#[test]
fn pool_in_use_is_refused_and_the_first_mount_goes_on() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let ino = create_file(&fs, ROOT_INO, b"f", b"before");

    let err = open_err(&pool_config(&path, None));
    assert!(
        matches!(&err, StoreError::InUse(p) if p == &path),
        "{err:?}"
    );
    let err = open_err(&pool_config(&path, Some(POOL_SIZE)));
    assert!(matches!(err, StoreError::InUse(_)), "{err:?}");

    let fh = fs.open(ino, true).unwrap();
    fs.write(fh, 6, b" and after", true).unwrap();
    assert_eq!(read_all(&fs, ino), b"before and after");
    let fs = remount(fs, &path);
    assert_eq!(read_all(&fs, ino), b"before and after");
}

/// Runs a refused open on `path` and checks the file is byte-for-byte unchanged.
fn assert_refused_unchanged(cfg: &PoolConfig, check: impl Fn(&StoreError) -> bool) {
    let before = std::fs::read(&cfg.path).expect("read file before");
    let err = open_err(cfg);
    assert!(check(&err), "unexpected error {err:?}");
    assert!(
        std::fs::read(&cfg.path).expect("read file after") == before,
        "a refused open changed the file"
    );
}

#[test]
fn files_that_are_not_pools_are_refused_untouched() {
    let (dir, _) = scratch_pool();
    let junk = dir.path("junk");
    std::fs::write(&junk, nonzero_pattern(64 * KIB as usize, 28)).unwrap();
    let short = dir.path("short");
    std::fs::write(&short, b"PMEMOBJ\0").unwrap();
    let is_not_a_pool = |e: &StoreError| matches!(e, StoreError::NotAPool(_));
    for path in [&junk, &short] {
        assert_refused_unchanged(&pool_config(path, None), is_not_a_pool);
        assert_refused_unchanged(&pool_config(path, Some(POOL_SIZE)), is_not_a_pool);
    }
}

#[test]
fn bad_configurations_are_refused_and_leave_the_pool_untouched() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, 16 * MIB);
    create_file(&fs, ROOT_INO, b"f", b"contents");
    drop(fs);

    assert_refused_unchanged(
        &pool_config(&path, Some(4 * MIB)),
        |e| matches!(e, StoreError::SizeTooSmall(s) if *s == 4 * MIB),
    );
    let override_without_size = PoolConfig {
        override_if_exists: true,
        ..pool_config(&path, None)
    };
    assert_refused_unchanged(&override_without_size, |e| {
        matches!(e, StoreError::OverrideWithoutSize)
    });

    let fs = mount_pool(&path);
    assert_eq!(read_all(&fs, lookup_ino(&fs, ROOT_INO, b"f")), b"contents");
}

#[test]
fn missing_pool_without_size_is_refused_and_not_created() {
    let (_dir, path) = scratch_pool();
    let err = open_err(&pool_config(&path, None));
    assert!(
        matches!(&err, StoreError::Missing(p) if p == &path),
        "{err:?}"
    );
    let err = open_err(&pool_config(&path, Some(MIB)));
    assert!(matches!(err, StoreError::SizeTooSmall(_)), "{err:?}");
    assert!(!path.exists(), "a refused open created {}", path.display());
}

#[test]
fn override_recreates_an_existing_pool_empty() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, 16 * MIB);
    create_file(&fs, ROOT_INO, b"f", b"old");
    drop(fs);
    let cfg = PoolConfig {
        override_if_exists: true,
        ..pool_config(&path, Some(16 * MIB))
    };
    let fs = WarabiFs::open_pool(&cfg, FsOptions::default()).expect("override");
    assert!(list(&fs, ROOT_INO).is_empty());
}

#[test]
fn pool_with_a_foreign_root_is_refused_untouched() {
    let (dir, _) = scratch_pool();
    for (name, root_size, contents) in [("named", 128, b"NOTOURS!".as_slice()), ("tiny", 16, b"x")]
    {
        let path = dir.path(name);
        let pool = Pool::create(&path, 16 * MIB).unwrap();
        let root = pool.root_with_size(root_size).unwrap();
        pool.write(root, 0, contents);
        pool.persist(root, 0, contents.len());
        drop(pool);
        let is_foreign = |e: &StoreError| matches!(e, StoreError::ForeignRoot(_));
        assert_refused_unchanged(&pool_config(&path, None), is_foreign);
        let read_only = FsOptions {
            read_only: true,
            ..FsOptions::default()
        };
        let before = std::fs::read(&path).unwrap();
        let err = WarabiFs::open_pool(&pool_config(&path, None), read_only)
            .err()
            .expect("refused");
        assert!(is_foreign(&err), "{err:?}");
        assert!(
            std::fs::read(&path).unwrap() == before,
            "a refused read-only open changed the file"
        );
    }
}

#[test]
fn format_cut_short_after_making_the_root_is_finished_at_the_next_mount() {
    let (_dir, path) = scratch_pool();
    let pool = Pool::create(&path, POOL_SIZE).unwrap();
    let (oid, data) = warabi_region(&pool, 3000, 29);
    // What a crash between the root's allocation and the superblock's write leaves.
    pool.root_with_size(64).unwrap();
    drop(pool);

    let fs = mount_pool(&path);
    let ino = lookup_ino(&fs, ROOT_INO, oid.to_string().as_bytes());
    assert_eq!(read_all(&fs, ino), data);
    create_file(&fs, ROOT_INO, b"f", b"formatted");
    let fs = remount(fs, &path);
    assert_eq!(read_all(&fs, lookup_ino(&fs, ROOT_INO, b"f")), b"formatted");
    drop(fs);
    let pool = Pool::open(&path).unwrap();
    assert_eq!(pool.bytes(pool.root().unwrap(), 0, 8), b"WARABIFS");
}

// ---------------------------------------------------------------- Warabi regions changed by name

/// A Warabi pool with one region of `size` bytes, mounted; returns the fs, the region,
/// its bytes and its inode.
fn mount_warabi_pool(path: &Path, size: u64) -> (WarabiFs, Oid, Vec<u8>, u64) {
    let pool = Pool::create(path, POOL_SIZE).unwrap();
    let (oid, data) = warabi_region(&pool, size, 30);
    drop(pool);
    let fs = mount_pool(path);
    let ino = lookup_ino(&fs, ROOT_INO, oid.to_string().as_bytes());
    (fs, oid, data, ino)
}

#[test]
fn unlinking_a_warabi_region_frees_it() {
    let (_dir, path) = scratch_pool();
    let (fs, oid, _, ino) = mount_warabi_pool(&path, 2 * MIB);
    let before = free_bytes(&fs);
    fs.unlink(ROOT_INO, oid.to_string().as_bytes()).unwrap();
    assert_eq!(fs.getattr(ino).unwrap_err(), Errno::ENOENT);
    assert!(free_bytes(&fs) >= before + 2 * MIB);

    let fs = remount(fs, &path);
    assert!(list(&fs, ROOT_INO).is_empty());
    drop(fs);
    let pool = Pool::open(&path).unwrap();
    assert!(
        pool.objects().all(|o| o != oid),
        "the unlinked region is still allocated"
    );
}

#[test]
fn renamed_warabi_region_keeps_its_bytes_and_region_id() {
    let (_dir, path) = scratch_pool();
    let (fs, oid, data, ino) = mount_warabi_pool(&path, 5000);
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, caller()).unwrap().ino;
    fs.rename(
        ROOT_INO,
        oid.to_string().as_bytes(),
        d,
        b"named",
        RenameMode::Replace,
    )
    .unwrap();
    assert_eq!(lookup_ino(&fs, d, b"named"), ino);

    let fs = remount(fs, &path);
    assert_eq!(
        names(&fs, ROOT_INO),
        name_set(&[b"d"]),
        "the region is listed twice"
    );
    let ino = lookup_ino(&fs, d, b"named");
    assert_eq!(region_oid(&fs, ino), oid);
    assert_eq!(read_all(&fs, ino), data);
}

#[test]
fn truncated_and_chmoded_warabi_region_keeps_the_change() {
    let (_dir, path) = scratch_pool();
    let (fs, oid, data, ino) = mount_warabi_pool(&path, 5000);
    truncate(&fs, ino, 100);
    let change = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    assert_eq!(fs.setattr(ino, change).unwrap().perm, 0o600);

    let fs = remount(fs, &path);
    let attr = fs.lookup(ROOT_INO, oid.to_string().as_bytes()).unwrap();
    assert_eq!((attr.ino, attr.size, attr.perm), (ino, 100, 0o600));
    assert_eq!(read_all(&fs, ino), data[..100]);
}

#[test]
fn hard_link_to_a_warabi_region_survives_unlinking_its_region_name() {
    let (_dir, path) = scratch_pool();
    let (fs, oid, data, ino) = mount_warabi_pool(&path, 5000);
    fs.link(ino, ROOT_INO, b"alias").unwrap();
    fs.unlink(ROOT_INO, oid.to_string().as_bytes()).unwrap();
    assert_eq!(fs.getattr(ino).unwrap().nlink, 1);

    let fs = remount(fs, &path);
    assert_eq!(names(&fs, ROOT_INO), name_set(&[b"alias"]));
    assert_eq!(read_all(&fs, lookup_ino(&fs, ROOT_INO, b"alias")), data);
}

// ---------------------------------------------------------------- attributes, xattrs, nodes

#[test]
fn setattr_changes_persist() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let ino = create_file(&fs, ROOT_INO, b"f", b"data");
    let atime = Timestamp {
        secs: 1_000,
        nanos: 5,
    };
    let mtime = Timestamp {
        secs: -20,
        nanos: 999_999_999,
    };
    let change = SetAttr {
        mode: Some(0o4751),
        uid: Some(1234),
        gid: Some(5678),
        atime: Some(SetTime::At(atime)),
        mtime: Some(SetTime::At(mtime)),
        ..SetAttr::default()
    };
    let attr = fs.setattr(ino, change).unwrap();
    assert_eq!(
        attr.kind,
        FileKind::Regular,
        "chmod must keep the file type"
    );
    let fields = |a: Attr| (a.perm, a.uid, a.gid, a.atime, a.mtime, a.size);
    assert_eq!(fields(attr), (0o4751, 1234, 5678, atime, mtime, 4));

    let fs = remount(fs, &path);
    assert_eq!(fields(fs.getattr(ino).unwrap()), fields(attr));
}

#[test]
fn special_files_keep_their_kind_and_device_number() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let fifo = fs
        .mknod(ROOT_INO, b"fifo", libc::S_IFIFO | 0o600, 0, caller())
        .unwrap();
    let chr = fs
        .mknod(ROOT_INO, b"chr", libc::S_IFCHR | 0o600, 0x0103, caller())
        .unwrap();
    assert_eq!(
        (fifo.kind, chr.kind, chr.rdev),
        (FileKind::Fifo, FileKind::CharDevice, 0x0103)
    );
    assert_eq!(
        fs.mknod(ROOT_INO, b"dir", libc::S_IFDIR | 0o755, 0, caller())
            .unwrap_err(),
        Errno::EINVAL
    );
    let fh_fifo = fs.open(fifo.ino, true).unwrap();
    assert_eq!(fs.write(fh_fifo, 0, b"x", false).unwrap_err(), Errno::EBADF);

    let fs = remount(fs, &path);
    let listed = list(&fs, ROOT_INO);
    assert_eq!(listed[b"fifo".as_slice()], (fifo.ino, FileKind::Fifo));
    assert_eq!(listed[b"chr".as_slice()], (chr.ino, FileKind::CharDevice));
    assert_eq!(fs.getattr(chr.ino).unwrap().rdev, 0x0103);
}

#[test]
fn region_id_xattr_is_read_only() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let ino = create_file(&fs, ROOT_INO, b"f", b"data");
    assert_eq!(
        fs.setxattr(ino, REGION_ID_XATTR, b"x", 0).unwrap_err(),
        Errno::EPERM
    );
    assert_eq!(
        fs.removexattr(ino, REGION_ID_XATTR).unwrap_err(),
        Errno::EPERM
    );
    assert_eq!(
        fs.getxattr(ROOT_INO, REGION_ID_XATTR).unwrap_err(),
        Errno::ENODATA
    );
    assert_eq!(fs.listxattr(ROOT_INO).unwrap(), b"");
}

#[test]
fn extended_attributes_are_stored_listed_replaced_removed_and_persist() {
    const XATTR_CREATE: i32 = 1;
    const XATTR_REPLACE: i32 = 2;
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let ino = create_file(&fs, ROOT_INO, b"f", b"data");
    let dir = fs.mkdir(ROOT_INO, b"d", 0o755, caller()).unwrap().ino;
    assert_eq!(fs.getxattr(ino, b"user.k").unwrap_err(), Errno::ENODATA);
    fs.setxattr(ino, b"user.k", b"v1", XATTR_CREATE).unwrap();
    assert_eq!(
        fs.setxattr(ino, b"user.k", b"v2", XATTR_CREATE)
            .unwrap_err(),
        Errno::EEXIST
    );
    assert_eq!(
        fs.setxattr(ino, b"user.new", b"x", XATTR_REPLACE)
            .unwrap_err(),
        Errno::ENODATA
    );
    fs.setxattr(ino, b"user.k", b"v2", XATTR_REPLACE).unwrap();
    let big = nonzero_pattern(65536, 30);
    fs.setxattr(ino, b"trusted.big", &big, 0).unwrap();
    fs.setxattr(dir, b"user.on-a-dir", b"", 0).unwrap();
    assert_eq!(
        fs.setxattr(ino, b"user.huge", &nonzero_pattern(65537, 1), 0)
            .unwrap_err(),
        Errno::E2BIG
    );
    assert_eq!(
        fs.setxattr(ino, &[b'a'; 256], b"", 0).unwrap_err(),
        Errno::ERANGE
    );
    assert_eq!(
        fs.setxattr(ino, b"system.posix_acl_access", b"", 0)
            .unwrap_err(),
        Errno::ENOTSUP
    );
    // ACLs and SELinux labels are unsupported as a whole, so reading them says so too.
    for name in [&b"system.posix_acl_access"[..], b"security.selinux"] {
        assert_eq!(fs.getxattr(ino, name).unwrap_err(), Errno::ENOTSUP);
        assert_eq!(fs.setxattr(ino, name, b"x", 0).unwrap_err(), Errno::ENOTSUP);
    }
    fs.setxattr(ino, b"security.other", b"kept", 0).unwrap();
    assert_eq!(fs.getxattr(ino, b"security.other").unwrap(), b"kept");
    fs.removexattr(ino, b"security.other").unwrap();
    fs.setxattr(ino, b"user.gone", b"bye", 0).unwrap();
    fs.removexattr(ino, b"user.gone").unwrap();
    assert_eq!(
        fs.removexattr(ino, b"user.gone").unwrap_err(),
        Errno::ENODATA
    );

    let fs = remount(fs, &path);
    assert_eq!(fs.getxattr(ino, b"user.k").unwrap(), b"v2");
    assert_eq!(fs.getxattr(ino, b"trusted.big").unwrap(), big);
    assert_eq!(fs.getxattr(dir, b"user.on-a-dir").unwrap(), b"");
    let listed = fs.listxattr(ino).unwrap();
    let mut names: Vec<&[u8]> = listed
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![b"trusted.big".as_slice(), b"user.k", REGION_ID_XATTR]
    );
}

#[test]
fn deleting_a_file_frees_its_extended_attributes() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let free_before = fs.statfs().free_bytes;
    let ino = create_file(&fs, ROOT_INO, b"f", b"data");
    for i in 0..20 {
        fs.setxattr(
            ino,
            format!("user.{i}").as_bytes(),
            &nonzero_pattern(4000, i),
            0,
        )
        .unwrap();
    }
    fs.unlink(ROOT_INO, b"f").unwrap();
    assert_eq!(fs.statfs().free_bytes, free_before);
    drop(fs);
    let pool = Pool::open(&path).unwrap();
    let objects: Vec<u64> = pool.objects().map(|o| pool.type_num(o)).collect();
    assert_eq!(
        objects,
        vec![0x5746_0001],
        "only the root directory's inode record is left"
    );
}

#[test]
fn fallocate_reserves_zeroes_and_punches_without_changing_other_bytes() {
    const KEEP_SIZE: i32 = 0x01;
    const PUNCH_HOLE: i32 = 0x02;
    const ZERO_RANGE: i32 = 0x10;
    const COLLAPSE_RANGE: i32 = 0x08;
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let mut expected = nonzero_pattern(10_000, 31);
    let ino = create_file(&fs, ROOT_INO, b"f", &expected);

    fs.fallocate(ino, 0, 2 * MIB, KEEP_SIZE).unwrap();
    assert_eq!(
        fs.getattr(ino).unwrap().size,
        10_000,
        "KEEP_SIZE keeps the size"
    );
    assert!(fs.getattr(ino).unwrap().blocks * 512 >= 2 * MIB);
    fs.fallocate(ino, 9_000, 3_000, 0).unwrap();
    expected.resize(12_000, 0);
    fs.fallocate(ino, 100, 50, PUNCH_HOLE | KEEP_SIZE).unwrap();
    expected[100..150].fill(0);
    fs.fallocate(ino, 11_000, 2_000, ZERO_RANGE).unwrap();
    expected.resize(13_000, 0);
    expected[11_000..].fill(0);
    assert_bytes_eq(&read_all(&fs, ino), &expected);
    assert_eq!(
        fs.fallocate(ino, 0, 10, PUNCH_HOLE).unwrap_err(),
        Errno::EOPNOTSUPP
    );
    assert_eq!(
        fs.fallocate(ino, 0, 10, COLLAPSE_RANGE).unwrap_err(),
        Errno::EOPNOTSUPP
    );
    assert_eq!(fs.fallocate(ROOT_INO, 0, 10, 0).unwrap_err(), Errno::EISDIR);
    let fs = remount(fs, &path);
    assert_bytes_eq(&read_all(&fs, ino), &expected);
}

#[test]
fn seek_data_and_hole_see_one_extent() {
    const SEEK_DATA: i32 = 3;
    const SEEK_HOLE: i32 = 4;
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let ino = create_file(&fs, ROOT_INO, b"f", &nonzero_pattern(5000, 32));
    assert_eq!(fs.lseek(ino, 10, SEEK_DATA).unwrap(), 10);
    assert_eq!(fs.lseek(ino, 10, SEEK_HOLE).unwrap(), 5000);
    assert_eq!(fs.lseek(ino, 5000, SEEK_DATA).unwrap_err(), Errno::ENXIO);
    assert_eq!(fs.lseek(ino, 6000, SEEK_HOLE).unwrap_err(), Errno::ENXIO);
}

#[test]
fn copy_file_range_copies_between_and_within_files() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let source = nonzero_pattern(700_000, 33);
    let from = create_file(&fs, ROOT_INO, b"from", &source);
    let to = create_file(&fs, ROOT_INO, b"to", b"head");
    assert_eq!(
        fs.copy_file_range(from, 100, to, 10, 500_000).unwrap(),
        500_000
    );
    let mut expected = b"head".to_vec();
    expected.resize(10, 0);
    expected.extend_from_slice(&source[100..500_100]);
    assert_bytes_eq(&read_all(&fs, to), &expected);
    assert_eq!(
        fs.copy_file_range(from, 699_990, to, 0, 100).unwrap(),
        10,
        "short at the end"
    );
    expected[..10].copy_from_slice(&source[699_990..]);
    assert_eq!(fs.copy_file_range(from, 800_000, to, 0, 100).unwrap(), 0);
    assert_eq!(fs.copy_file_range(to, 0, to, 600_000, 1000).unwrap(), 1000);
    expected.resize(600_000, 0);
    expected.extend_from_within(0..1000);
    assert_bytes_eq(&read_all(&fs, to), &expected);
    let fh_to = fs.open(to, false).unwrap();
    fs.fsync(fh_to).unwrap();
    let fs = remount(fs, &path);
    assert_bytes_eq(&read_all(&fs, to), &expected);
    assert_bytes_eq(&read_all(&fs, from), &source);
}

#[test]
fn oversized_writes_and_truncates_give_efbig_and_dirs_refuse_data() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let ino = create_file(&fs, ROOT_INO, b"f", b"data");
    let fh = fs.open(ino, true).unwrap();
    assert_eq!(
        fs.write(fh, MAX_ALLOC_SIZE, b"x", false).unwrap_err(),
        Errno::EFBIG
    );
    assert_eq!(
        fs.write(fh, u64::MAX, b"x", false).unwrap_err(),
        Errno::EFBIG
    );
    let too_big = SetAttr {
        size: Some(i64::MAX as u64 + 1),
        ..SetAttr::default()
    };
    assert_eq!(fs.setattr(ino, too_big).unwrap_err(), Errno::EFBIG);
    assert_eq!(read_all(&fs, ino), b"data");
    // Past the largest region a size is only a zero tail; the data stays capped.
    let past_regions = SetAttr {
        size: Some(MAX_ALLOC_SIZE + 1),
        ..SetAttr::default()
    };
    assert_eq!(
        fs.setattr(ino, past_regions).unwrap().size,
        MAX_ALLOC_SIZE + 1
    );
    let tail = fs.read(fh, MAX_ALLOC_SIZE - 3, 8, |b| b.to_vec()).unwrap();
    assert_eq!(tail, vec![0; 4]);
    assert_eq!(fs.read(fh, 0, 8, |b| b.to_vec()).unwrap(), b"data\0\0\0\0");
    assert_eq!(
        fs.write(fh, MAX_ALLOC_SIZE, b"x", false).unwrap_err(),
        Errno::EFBIG
    );
    assert_eq!(fs.open(ROOT_INO, true).unwrap_err(), Errno::EISDIR);
    let root_fh = fs.open(ROOT_INO, false).unwrap();
    assert_eq!(
        fs.read(root_fh, 0, 10, |s| s.len()).unwrap_err(),
        Errno::EISDIR
    );
    let shrink_dir = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    assert_eq!(fs.setattr(ROOT_INO, shrink_dir).unwrap_err(), Errno::EISDIR);
}

// ---------------------------------------------------------------- listing (threads: tests/concurrency.rs)

#[test]
fn readdir_resumes_from_any_cookie_without_losing_or_repeating_entries() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let expected: BTreeSet<Vec<u8>> = (0..300).map(|i| format!("file{i}").into_bytes()).collect();
    for name in &expected {
        fs.mknod(ROOT_INO, name, libc::S_IFREG | 0o644, 0, caller())
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        // A reply buffer of 7 entries: the 8th does not fit and is offered again.
        let mut page = Vec::new();
        fs.readdir(ROOT_INO, offset, |e| {
            if page.len() == 7 {
                return true;
            }
            page.push((e.cookie, e.name.to_vec()));
            false
        })
        .unwrap();
        let Some(&(last, _)) = page.last() else { break };
        offset = last;
        seen.extend(page.into_iter().map(|(_, name)| name));
    }
    assert_eq!(&seen[..2], &[b".".to_vec(), b"..".to_vec()]);
    let listed: BTreeSet<Vec<u8>> = seen[2..].iter().cloned().collect();
    assert_eq!(listed.len(), seen.len() - 2, "an entry was listed twice");
    assert_eq!(listed, expected);
}

// ---------------------------------------------------------------- remount

#[test]
fn going_read_only_persists_every_file_and_refuses_changes() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let data = nonzero_pattern(100_000, 3);
    let (_, fh) = fs
        .create(ROOT_INO, b"open", 0o644, caller())
        .expect("create");
    fs.write(fh, 0, &data, false).expect("write");
    fs.set_read_only(true).expect("read-only");
    assert!(fs.is_read_only());
    assert_eq!(fs.write(fh, 0, b"x", false), Err(Errno::EROFS.into()));
    assert_eq!(
        fs.mkdir(ROOT_INO, b"d", 0o755, caller()).map(|_| ()),
        Err(Errno::EROFS.into())
    );
    fs.set_read_only(false).expect("read-write again");
    fs.write(fh, data.len() as u64, b"more", false)
        .expect("writes work again");
    fs.set_read_only(true).expect("read-only again");
    // A crash now (drop without release or fsync): what was written before going
    // read-only, size included, was persisted by the switch itself.
    let _ = fh;
    let fs = remount(fs, &path);
    let ino = lookup_ino(&fs, ROOT_INO, b"open");
    let mut expected = data;
    expected.extend_from_slice(b"more");
    assert_bytes_eq(&read_all(&fs, ino), &expected);
}

#[test]
fn a_pool_without_metadata_mounted_read_only_cannot_go_read_write() {
    let (_dir, path) = scratch_pool();
    drop(Pool::create(&path, POOL_SIZE).expect("a pool as Warabi makes it"));
    let ro = FsOptions {
        read_only: true,
        ..FsOptions::default()
    };
    let fs = mount_pool_with(&path, ro);
    let err = fs.set_read_only(false).unwrap_err();
    assert!(err.contains("no warabifs metadata"), "{err}");
    assert!(fs.is_read_only());
}

// ---------------------------------------------------------------- many regions and files

/// A formatted pool holding `files` files made through warabifs, then `regions` Warabi
/// regions made behind its back, remounted: files and regions share the root listing.
fn pool_of_files_and_regions(path: &Path, files: usize, regions: usize) -> (WarabiFs, Vec<Oid>) {
    let fs = create_pool(path, POOL_SIZE);
    for i in 0..files {
        create_file(&fs, ROOT_INO, format!("file{i}").as_bytes(), b"x");
    }
    fs.sync_all();
    drop(fs);
    let pool = Pool::open(path).unwrap();
    let oids = (0..regions)
        .map(|i| warabi_region(&pool, 100, i as u8).0)
        .collect();
    drop(pool);
    (mount_pool(path), oids)
}

#[test]
fn files_and_warabi_regions_list_together_resumably_from_any_cookie() {
    let (_dir, path) = scratch_pool();
    let (fs, oids) = pool_of_files_and_regions(&path, 150, 300);
    let mut expected: BTreeSet<Vec<u8>> =
        (0..150).map(|i| format!("file{i}").into_bytes()).collect();
    expected.extend(oids.iter().map(|o| o.to_string().into_bytes()));
    // Resume after every entry in turn: each listing from there is exactly the rest.
    let mut all = Vec::new();
    fs.readdir(ROOT_INO, 0, |e| {
        all.push((e.cookie, e.name.to_vec(), e.kind));
        false
    })
    .unwrap();
    let listed: BTreeSet<Vec<u8>> = all[2..].iter().map(|(_, n, _)| n.clone()).collect();
    assert_eq!(listed, expected);
    assert_eq!(all.len(), expected.len() + 2, "an entry was listed twice");
    assert!(
        all.windows(2).all(|w| w[0].0 < w[1].0),
        "cookies not ascending"
    );
    assert!(all[2..].iter().all(|(_, _, k)| *k == FileKind::Regular));
    for (i, (cookie, _, _)) in all.iter().enumerate().step_by(37) {
        let mut rest = Vec::new();
        fs.readdir(ROOT_INO, *cookie, |e| {
            rest.push(e.name.to_vec());
            false
        })
        .unwrap();
        let want: Vec<Vec<u8>> = all[i + 1..].iter().map(|(_, n, _)| n.clone()).collect();
        assert_eq!(rest, want, "listing resumed after entry {i}");
    }
    // Every inode is counted once, whether its state is loaded or not.
    assert_eq!(fs.statfs().files, 1 + 150 + 300);
    read_all(&fs, lookup_ino(&fs, ROOT_INO, b"file7"));
    read_all(
        &fs,
        lookup_ino(&fs, ROOT_INO, oids[3].to_string().as_bytes()),
    );
    assert_eq!(fs.statfs().files, 1 + 150 + 300);
}

#[test]
fn a_listed_region_name_is_taken_and_only_in_its_own_spelling() {
    let (_dir, path) = scratch_pool();
    let (fs, oids) = pool_of_files_and_regions(&path, 1, 3);
    let name = oids[1].to_string();
    let ino = lookup_ino(&fs, ROOT_INO, name.as_bytes());
    assert!(
        fs.getattr(ino).unwrap().size >= 100,
        "sized by its usable size"
    );
    assert_eq!(
        fs.mknod(
            ROOT_INO,
            name.as_bytes(),
            libc::S_IFREG | 0o644,
            0,
            caller()
        )
        .unwrap_err(),
        Errno::EEXIST
    );
    assert_eq!(
        fs.link(
            lookup_ino(&fs, ROOT_INO, b"file0"),
            ROOT_INO,
            name.as_bytes()
        )
        .unwrap_err(),
        Errno::EEXIST
    );
    let upper = name.to_uppercase();
    if upper != name {
        assert_eq!(
            fs.lookup(ROOT_INO, upper.as_bytes()).unwrap_err(),
            Errno::ENOENT
        );
    }
    // Renaming a file onto the region's name replaces the region, as for any file.
    fs.rename(
        ROOT_INO,
        b"file0",
        ROOT_INO,
        name.as_bytes(),
        RenameMode::Replace,
    )
    .unwrap();
    assert_eq!(fs.getattr(ino).unwrap_err(), Errno::ENOENT);
    let fs = remount(fs, &path);
    let mut want = name_set(&[name.as_bytes()]);
    want.extend([&oids[0], &oids[2]].map(|o| o.to_string().into_bytes()));
    assert_eq!(names(&fs, ROOT_INO), want);
    assert_eq!(
        read_all(&fs, lookup_ino(&fs, ROOT_INO, name.as_bytes())),
        b"x"
    );
}

#[test]
fn names_found_at_mount_can_be_removed_made_again_and_renamed() {
    let (_dir, path) = scratch_pool();
    let (fs, _) = pool_of_files_and_regions(&path, 50, 0);
    fs.unlink(ROOT_INO, b"file3").unwrap();
    assert_eq!(fs.lookup(ROOT_INO, b"file3").unwrap_err(), Errno::ENOENT);
    create_file(&fs, ROOT_INO, b"file3", b"again");
    fs.rename(ROOT_INO, b"file4", ROOT_INO, b"file40", RenameMode::Replace)
        .unwrap();
    fs.rename(ROOT_INO, b"file5", ROOT_INO, b"file6", RenameMode::Exchange)
        .unwrap();
    assert_eq!(fs.lookup(ROOT_INO, b"file4").unwrap_err(), Errno::ENOENT);
    assert_eq!(read_all(&fs, lookup_ino(&fs, ROOT_INO, b"file3")), b"again");
    assert_eq!(read_all(&fs, lookup_ino(&fs, ROOT_INO, b"file40")), b"x");
    let expected: BTreeSet<Vec<u8>> = (0..50)
        .filter(|&i| i != 4)
        .map(|i| format!("file{i}").into_bytes())
        .collect();
    assert_eq!(names(&fs, ROOT_INO), expected);
    let fs = remount(fs, &path);
    assert_eq!(names(&fs, ROOT_INO), expected);
    assert_eq!(read_all(&fs, lookup_ino(&fs, ROOT_INO, b"file3")), b"again");
}

// ------------------------------------------- file handles and removed open directories

#[test]
fn dot_of_any_live_inode_is_itself_and_of_a_removed_one_is_enoent() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let file = create_file(&fs, ROOT_INO, b"f", b"data");
    let dir = fs.mkdir(ROOT_INO, b"d", 0o755, caller()).unwrap().ino;
    // What the kernel asks when it decodes a handle of an inode it has forgotten.
    assert_eq!(fs.lookup(file, b".").unwrap().ino, file);
    assert_eq!(fs.lookup(dir, b".").unwrap().ino, dir);
    assert_eq!(fs.lookup(dir, b"..").unwrap().ino, ROOT_INO);
    fs.unlink(ROOT_INO, b"f").unwrap();
    assert_eq!(fs.lookup(file, b".").err(), Some(Errno::ENOENT.into()));
    // An open-unlinked file has no name: "." of it is stale as well.
    let open = create_file(&fs, ROOT_INO, b"g", b"data");
    let fh = fs.open(open, false).unwrap();
    fs.unlink(ROOT_INO, b"g").unwrap();
    assert_eq!(fs.lookup(open, b".").err(), Some(Errno::ENOENT.into()));
    fs.release(fh).unwrap();
}

#[test]
fn the_number_of_a_deleted_inode_is_never_given_out_again_even_after_a_remount() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let kept = create_file(&fs, ROOT_INO, b"kept", b"");
    let highest = create_file(&fs, ROOT_INO, b"highest", b"");
    fs.unlink(ROOT_INO, b"highest").unwrap();
    let mut fs = fs;
    let mut given = highest;
    for _ in 0..2 {
        fs = remount(fs, &path);
        let new = create_file(&fs, ROOT_INO, b"new", b"");
        assert!(
            new > given && new > kept,
            "{new} reuses a number up to {given}"
        );
        fs.unlink(ROOT_INO, b"new").unwrap();
        given = new;
    }
}

#[test]
fn a_directory_removed_while_open_keeps_its_inode_until_released() {
    let (_dir, path) = scratch_pool();
    let fs = create_pool(&path, POOL_SIZE);
    let free_before = free_bytes(&fs);
    let dir = fs.mkdir(ROOT_INO, b"d", 0o755, caller()).unwrap().ino;
    let fh = fs.opendir(dir).unwrap();
    fs.rmdir(ROOT_INO, b"d").unwrap();
    let attr = fs.getattr(dir).unwrap();
    assert_eq!((attr.kind, attr.nlink), (FileKind::Directory, 0));
    let change = SetAttr {
        mode: Some(0o700),
        ..SetAttr::default()
    };
    assert_eq!(fs.setattr(dir, change).unwrap().perm, 0o700);
    let mut listed = 0;
    fs.readdir(dir, 0, |_| {
        listed += 1;
        false
    })
    .unwrap();
    assert_eq!(
        listed, 0,
        "a removed directory lists nothing, not even . and .."
    );
    fs.release(fh).unwrap();
    assert_eq!(fs.getattr(dir).err(), Some(Errno::ENOENT.into()));
    assert_eq!(free_bytes(&fs), free_before);

    // Renamed over while open: the same, and a crash before the release leaves
    // nothing behind once the pool is mounted again.
    let victim = fs.mkdir(ROOT_INO, b"victim", 0o755, caller()).unwrap().ino;
    fs.mkdir(ROOT_INO, b"other", 0o755, caller()).unwrap();
    let _fh = fs.opendir(victim).unwrap();
    fs.rename(ROOT_INO, b"other", ROOT_INO, b"victim", RenameMode::Replace)
        .unwrap();
    assert_eq!(fs.getattr(victim).unwrap().nlink, 0);
    fs.rmdir(ROOT_INO, b"victim").unwrap();
    let fs = remount(fs, &path); // the handle was never released: a crash
    assert_eq!(fs.getattr(victim).err(), Some(Errno::ENOENT.into()));
    assert_eq!(free_bytes(&fs), free_before);
    assert_eq!(fs.opendir(ROOT_INO).map(|_| ()), Ok(()));
}

#[test]
fn a_number_given_to_a_region_is_never_given_to_a_file_on_a_later_mount() {
    let (_dir, path) = scratch_pool();
    let pool = Pool::create(&path, POOL_SIZE).unwrap();
    let (old, _) = warabi_region(&pool, 1000, 20);
    drop(pool);
    let fs = mount_pool(&path);
    let adopted = lookup_ino(&fs, ROOT_INO, old.to_string().as_bytes());
    let fh_adopted = fs.open(adopted, true).unwrap();
    fs.write(fh_adopted, 2000, b"x", true).unwrap();
    drop(fs);
    let pool = Pool::open(&path).unwrap();
    let (new, _) = warabi_region(&pool, 1000, 21);
    drop(pool);
    assert_eq!(new, old, "libpmemobj reuses the freed offset");
    // The new region's number collides with the adopted file's: it gets a counter
    // number, which a file handle may now hold.
    let fs = mount_pool(&path);
    let region_ino = lookup_ino(&fs, ROOT_INO, format!("{new}.region").as_bytes());
    drop(fs);
    // Warabi erases the region; a file made on the next mount must get another number.
    let pool = Pool::open(&path).unwrap();
    pool.free(new);
    drop(pool);
    let fs = mount_pool(&path);
    let file = create_file(&fs, ROOT_INO, b"file", b"");
    assert!(file > region_ino, "file {file} after region {region_ino}");
}
