//! Operations on byte ranges of a file: fallocate, lseek's SEEK_DATA/SEEK_HOLE and
//! copy_file_range. A file is one contiguous region and, past it, a zero tail: its only
//! hole. Allocating means growing the region, and punching a hole means writing zeros,
//! or ending the data, when the hole reaches its end.

use super::inode::InodeState;
use super::{Errno, FileKind, FsResult, WarabiFs};

/// fallocate(2) mode bits.
const FALLOC_FL_KEEP_SIZE: i32 = 0x01;
const FALLOC_FL_PUNCH_HOLE: i32 = 0x02;
const FALLOC_FL_ZERO_RANGE: i32 = 0x10;
const SUPPORTED_MODES: i32 = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;

/// lseek(2) whence values the kernel leaves to the file system.
const SEEK_DATA: i32 = 3;
const SEEK_HOLE: i32 = 4;

impl WarabiFs {
    /// fallocate(2): reserve (default, KEEP_SIZE), punch a hole (zeros in place) or zero
    /// a range; durable when it returns. COLLAPSE_RANGE, INSERT_RANGE and UNSHARE_RANGE
    /// give EOPNOTSUPP.
    pub fn fallocate(&self, ino: u64, off: u64, len: u64, mode: i32) -> FsResult<()> {
        if mode & !SUPPORTED_MODES != 0 {
            return Err(Errno::EOPNOTSUPP.into());
        }
        if mode & FALLOC_FL_PUNCH_HOLE != 0 && mode & FALLOC_FL_KEEP_SIZE == 0 {
            return Err(Errno::EOPNOTSUPP.into());
        }
        let end = off.checked_add(len).ok_or(Errno::EFBIG)?;
        self.writable()?;
        self.adopt_if_raw(ino)?;
        let inode = self.inode(ino)?;
        let mut state = inode.state.write();
        check_regular(&state)?;
        let keep_size = mode & FALLOC_FL_KEEP_SIZE != 0;
        if mode & FALLOC_FL_PUNCH_HOLE == 0 {
            self.ensure_capacity_exact(&mut state, end)?;
            // What was allocated beyond the data is a reservation the last close keeps.
            state.reserved |= end > state.meta.data_len();
        }
        if mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE) != 0 {
            self.zero_range(&mut state, off, end);
        }
        if !keep_size && end > state.meta.size {
            // The new bytes are a zero tail: allocated, but not written.
            let data_len = state.meta.data_len();
            state.meta.set_extent(end, data_len);
        }
        // Like truncate, fallocate is a metadata change: durable before it returns.
        self.modified(&mut state, true)
    }

    /// SEEK_DATA and SEEK_HOLE: what the region holds is data, and the only hole is
    /// the zero tail after it (or the end of the file).
    pub fn lseek(&self, ino: u64, off: u64, whence: i32) -> FsResult<u64> {
        let inode = self.inode(ino)?;
        let state = inode.state.read();
        let (size, data_len) = (state.meta.size, state.meta.data_len());
        match whence {
            SEEK_DATA | SEEK_HOLE if off >= size => Err(Errno::ENXIO.into()),
            SEEK_DATA if off < data_len => Ok(off),
            SEEK_DATA => Err(Errno::ENXIO.into()),
            SEEK_HOLE => Ok(off.max(data_len)),
            _ => Err(Errno::EINVAL.into()),
        }
    }

    /// copy_file_range(2) inside the pool: bytes move from region to region without
    /// passing through the caller. Returns the bytes copied (0 at or past the end).
    pub fn copy_file_range(
        &self,
        from: u64,
        from_off: u64,
        to: u64,
        to_off: u64,
        len: u64,
    ) -> FsResult<u64> {
        self.writable()?;
        self.adopt_if_raw(to)?;
        if from == to {
            let inode = self.inode(to)?;
            let mut state = inode.state.write();
            let n = copy_len(&state, from_off, len)?;
            return self.copy_into(&mut state, None, from_off, to_off, n);
        }
        let (source, target) = (self.inode(from)?, self.inode(to)?);
        // Two inode locks, always taken in inode-number order.
        let (source_state, mut target_state) = if from < to {
            let s = source.state.read();
            (s, target.state.write())
        } else {
            let t = target.state.write();
            (source.state.read(), t)
        };
        let n = copy_len(&source_state, from_off, len)?;
        self.copy_into(&mut target_state, Some(&source_state), from_off, to_off, n)
    }

    /// Copies `n` bytes from `source` (or from `target` itself) at `from_off` into
    /// `target` at `to_off`, growing and zero-filling `target` as a write would.
    fn copy_into(
        &self,
        target: &mut InodeState,
        source: Option<&InodeState>,
        from_off: u64,
        to_off: u64,
        n: u64,
    ) -> FsResult<u64> {
        check_regular(target)?;
        if n == 0 {
            return Ok(0);
        }
        let end = to_off.checked_add(n).ok_or(Errno::EFBIG)?;
        // The source's bytes past its data are zeros: only the rest is copied.
        let source_data_len = source.map_or(target.meta.data_len(), |s| s.meta.data_len());
        let stored = source_data_len.saturating_sub(from_off).min(n);
        let stored_end = to_off + stored;
        if stored > 0 {
            self.ensure_capacity(target, stored_end)?;
            self.fill_to(target, to_off);
            let from_region = source.map_or(target.region(), |s| s.region());
            self.store
                .copy(from_region, from_off, target.region(), to_off, stored);
            target.dirty.add(to_off, stored_end);
            let (size, data_len) = (target.meta.size, target.meta.data_len());
            target
                .meta
                .set_extent(size.max(stored_end), data_len.max(stored_end));
        }
        self.zero_range(target, stored_end, end);
        if end > target.meta.size {
            let data_len = target.meta.data_len();
            target.meta.set_extent(end, data_len);
        }
        // Durable when it returns, as a fallocate is: the kernel sends no flush at
        // the close of a write-only handle (crate::fuse::writes_through), the usual
        // target of a copy.
        self.modified(target, true)?;
        Ok(n)
    }
}

/// How many bytes a copy of `len` from `off` can take from `source`.
fn copy_len(source: &InodeState, off: u64, len: u64) -> FsResult<u64> {
    check_regular(source)?;
    Ok(source.meta.size.saturating_sub(off).min(len))
}

fn check_regular(state: &InodeState) -> FsResult<()> {
    match state.kind() {
        FileKind::Regular => Ok(()),
        FileKind::Directory => Err(Errno::EISDIR.into()),
        _ => Err(Errno::ENODEV.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{Caller, FsOptions, ROOT_INO};
    use crate::store::PoolConfig;

    const COLLAPSE_RANGE: i32 = 0x08;
    const INSERT_RANGE: i32 = 0x20;
    const UNSHARE_RANGE: i32 = 0x40;
    const PUNCH: i32 = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;

    /// A file system on a fresh 16 MiB pool in /dev/shm; the directory goes with it.
    fn small_fs() -> (tempfile::TempDir, WarabiFs) {
        let dir = tempfile::tempdir_in("/dev/shm").expect("tempdir in /dev/shm");
        let config = PoolConfig {
            path: dir.path().join("pool"),
            create_if_missing_with_size: Some(16 << 20),
            override_if_exists: false,
        };
        let fs = WarabiFs::open_pool(&config, FsOptions::default()).expect("create pool");
        (dir, fs)
    }

    /// A regular file in the root holding `data`.
    fn file(fs: &WarabiFs, name: &str, data: &[u8]) -> u64 {
        let opts = FsOptions::default();
        let caller = Caller {
            uid: opts.uid,
            gid: opts.gid,
        };
        // Left open: a release would trim the region, which some tests look at.
        let (attr, fh) = fs.create(ROOT_INO, name.as_bytes(), 0o644, caller).unwrap();
        assert_eq!(fs.write(fh, 0, data, false).unwrap(), data.len());
        attr.ino
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 + 1).collect()
    }

    /// The whole file, as a read returns it.
    fn bytes(fs: &WarabiFs, ino: u64) -> Vec<u8> {
        let mut buf = vec![0xee; fs.getattr(ino).unwrap().size as usize];
        let fh = fs.open(ino, false).unwrap();
        let n = fs.read_into(fh, 0, &mut buf).unwrap();
        fs.release(fh).unwrap();
        assert_eq!(n, buf.len());
        buf
    }

    /// (size, data_len): the file's size and how much of it the region holds.
    fn extent(fs: &WarabiFs, ino: u64) -> (u64, u64) {
        let inode = fs.inode(ino).unwrap();
        let state = inode.state.read();
        (state.meta.size, state.meta.data_len())
    }

    #[test]
    fn an_empty_file_has_neither_data_nor_hole() {
        let (_dir, fs) = small_fs();
        let ino = file(&fs, "empty", b"");
        assert_eq!(fs.lseek(ino, 0, SEEK_DATA), Err(Errno::ENXIO.into()));
        assert_eq!(fs.lseek(ino, 0, SEEK_HOLE), Err(Errno::ENXIO.into()));
    }

    #[test]
    fn data_is_found_in_the_region_and_the_hole_at_its_end() {
        let (_dir, fs) = small_fs();
        let ino = file(&fs, "f", &pattern(100));
        fs.fallocate(ino, 0, 300, 0).unwrap();
        assert_eq!(extent(&fs, ino), (300, 100));
        assert_eq!(fs.lseek(ino, 0, SEEK_DATA), Ok(0));
        assert_eq!(fs.lseek(ino, 99, SEEK_DATA), Ok(99));
        assert_eq!(fs.lseek(ino, 100, SEEK_DATA), Err(Errno::ENXIO.into()));
        assert_eq!(fs.lseek(ino, 0, SEEK_HOLE), Ok(100));
        assert_eq!(fs.lseek(ino, 150, SEEK_HOLE), Ok(150));
        assert_eq!(fs.lseek(ino, 299, SEEK_HOLE), Ok(299));
        for whence in [SEEK_DATA, SEEK_HOLE] {
            assert_eq!(fs.lseek(ino, 300, whence), Err(Errno::ENXIO.into()));
            assert_eq!(fs.lseek(ino, u64::MAX, whence), Err(Errno::ENXIO.into()));
        }
    }

    #[test]
    fn a_file_without_zero_tail_has_its_hole_at_the_end() {
        let (_dir, fs) = small_fs();
        let ino = file(&fs, "f", &pattern(10));
        assert_eq!(fs.lseek(ino, 3, SEEK_HOLE), Ok(10));
        assert_eq!(fs.lseek(ino, 9, SEEK_DATA), Ok(9));
    }

    #[test]
    fn lseek_leaves_other_whences_to_the_kernel() {
        let (_dir, fs) = small_fs();
        let ino = file(&fs, "f", &pattern(10));
        for whence in [libc::SEEK_SET, libc::SEEK_CUR, libc::SEEK_END, 5, -1] {
            assert_eq!(
                fs.lseek(ino, 0, whence),
                Err(Errno::EINVAL.into()),
                "{whence}"
            );
        }
    }

    #[test]
    fn unsupported_modes_and_overflowing_ranges_change_nothing() {
        let (_dir, fs) = small_fs();
        let ino = file(&fs, "f", &pattern(100));
        for mode in [
            COLLAPSE_RANGE,
            INSERT_RANGE,
            UNSHARE_RANGE,
            FALLOC_FL_PUNCH_HOLE,
        ] {
            assert_eq!(
                fs.fallocate(ino, 0, 10, mode),
                Err(Errno::EOPNOTSUPP.into()),
                "{mode:#x}"
            );
        }
        assert_eq!(fs.fallocate(ino, u64::MAX, 1, 0), Err(Errno::EFBIG.into()));
        assert_eq!(fs.fallocate(ino, 1, u64::MAX, 0), Err(Errno::EFBIG.into()));
        assert_eq!(fs.fallocate(ino, 0, 1 << 40, 0), Err(Errno::EFBIG.into()));
        assert_eq!(extent(&fs, ino), (100, 100));
        assert_eq!(bytes(&fs, ino), pattern(100));
    }

    #[test]
    fn only_regular_files_take_ranges() {
        let (_dir, fs) = small_fs();
        let opts = FsOptions::default();
        let caller = Caller {
            uid: opts.uid,
            gid: opts.gid,
        };
        let link = fs.symlink(ROOT_INO, b"l", b"target", caller).unwrap().ino;
        let ino = file(&fs, "f", &pattern(10));
        assert_eq!(fs.fallocate(ROOT_INO, 0, 10, 0), Err(Errno::EISDIR.into()));
        assert_eq!(fs.fallocate(link, 0, 10, 0), Err(Errno::ENODEV.into()));
        assert_eq!(
            fs.copy_file_range(ROOT_INO, 0, ino, 0, 10),
            Err(Errno::EISDIR.into())
        );
        assert_eq!(
            fs.copy_file_range(ino, 0, ROOT_INO, 0, 10),
            Err(Errno::EISDIR.into())
        );
        assert_eq!(
            fs.copy_file_range(link, 0, ino, 0, 10),
            Err(Errno::ENODEV.into())
        );
        assert_eq!(bytes(&fs, ino), pattern(10));
    }

    #[test]
    fn a_read_only_file_system_refuses_changes_and_still_seeks() {
        let (_dir, fs) = small_fs();
        let ino = file(&fs, "f", &pattern(10));
        let other = file(&fs, "g", b"");
        fs.set_read_only(true).unwrap();
        assert_eq!(fs.fallocate(ino, 0, 100, 0), Err(Errno::EROFS.into()));
        assert_eq!(
            fs.copy_file_range(ino, 0, other, 0, 10),
            Err(Errno::EROFS.into())
        );
        assert_eq!(fs.lseek(ino, 0, SEEK_HOLE), Ok(10));
        assert_eq!(extent(&fs, ino), (10, 10));
    }

    #[test]
    fn keep_size_reserves_room_without_growing_the_file() {
        let (_dir, fs) = small_fs();
        let ino = file(&fs, "f", &pattern(100));
        fs.fallocate(ino, 0, 1 << 20, FALLOC_FL_KEEP_SIZE).unwrap();
        assert_eq!(extent(&fs, ino), (100, 100));
        let inode = fs.inode(ino).unwrap();
        let state = inode.state.read();
        assert!(state.capacity >= 1 << 20, "capacity {}", state.capacity);
        assert!(state.reserved);
        drop(state);
        assert_eq!(bytes(&fs, ino), pattern(100));
    }

    #[test]
    fn allocating_past_the_end_adds_a_zero_tail() {
        let (_dir, fs) = small_fs();
        let ino = file(&fs, "f", &pattern(100));
        fs.fallocate(ino, 50, 1000, 0).unwrap();
        assert_eq!(extent(&fs, ino), (1050, 100));
        let mut expected = pattern(100);
        expected.resize(1050, 0);
        assert_eq!(bytes(&fs, ino), expected);
        // Allocating inside the file changes neither its size nor its bytes.
        fs.fallocate(ino, 0, 10, 0).unwrap();
        assert_eq!(extent(&fs, ino), (1050, 100));
    }

    #[test]
    fn a_hole_punched_inside_the_data_is_zeros_in_place() {
        let (_dir, fs) = small_fs();
        let ino = file(&fs, "f", &pattern(1000));
        fs.fallocate(ino, 100, 200, PUNCH).unwrap();
        assert_eq!(extent(&fs, ino), (1000, 1000));
        let mut expected = pattern(1000);
        expected[100..300].fill(0);
        assert_eq!(bytes(&fs, ino), expected);
    }

    #[test]
    fn a_hole_punched_to_the_end_of_the_data_ends_the_data_there() {
        let (_dir, fs) = small_fs();
        let ino = file(&fs, "f", &pattern(1000));
        fs.fallocate(ino, 600, 10_000, PUNCH).unwrap();
        assert_eq!(extent(&fs, ino), (1000, 600));
        assert_eq!(fs.lseek(ino, 0, SEEK_HOLE), Ok(600));
        let mut expected = pattern(1000);
        expected[600..].fill(0);
        assert_eq!(bytes(&fs, ino), expected);
        // Punching the zero tail, or nothing at all, changes nothing.
        fs.fallocate(ino, 700, 100, PUNCH).unwrap();
        fs.fallocate(ino, 10, 0, PUNCH).unwrap();
        assert_eq!(extent(&fs, ino), (1000, 600));
        assert_eq!(bytes(&fs, ino), expected);
    }

    #[test]
    fn zero_range_zeroes_and_grows_the_file_unless_keep_size() {
        let (_dir, fs) = small_fs();
        let ino = file(&fs, "f", &pattern(100));
        fs.fallocate(ino, 10, 20, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE)
            .unwrap();
        assert_eq!(extent(&fs, ino), (100, 100));
        fs.fallocate(ino, 50, 100, FALLOC_FL_ZERO_RANGE).unwrap();
        assert_eq!(extent(&fs, ino), (150, 50));
        let mut expected = pattern(100);
        expected[10..30].fill(0);
        expected.truncate(50);
        expected.resize(150, 0);
        assert_eq!(bytes(&fs, ino), expected);
    }

    #[test]
    fn copy_file_range_copies_the_bytes_and_says_how_many() {
        let (_dir, fs) = small_fs();
        let from = file(&fs, "from", &pattern(1000));
        let to = file(&fs, "to", b"");
        assert_eq!(fs.copy_file_range(from, 100, to, 0, 300), Ok(300));
        assert_eq!(extent(&fs, to), (300, 300));
        assert_eq!(bytes(&fs, to), pattern(1000)[100..400]);
        // The source's end cuts the copy short.
        assert_eq!(fs.copy_file_range(from, 900, to, 0, 1000), Ok(100));
        assert_eq!(bytes(&fs, to)[..100], pattern(1000)[900..]);
        assert_eq!(bytes(&fs, from), pattern(1000));
    }

    #[test]
    fn copying_at_or_past_the_source_end_or_nothing_copies_nothing() {
        let (_dir, fs) = small_fs();
        let from = file(&fs, "from", &pattern(1000));
        let to = file(&fs, "to", b"");
        assert_eq!(fs.copy_file_range(from, 1000, to, 0, 10), Ok(0));
        assert_eq!(fs.copy_file_range(from, u64::MAX, to, 0, 10), Ok(0));
        assert_eq!(fs.copy_file_range(from, 0, to, 0, 0), Ok(0));
        assert_eq!(fs.copy_file_range(from, 0, to, u64::MAX, 0), Ok(0));
        assert_eq!(extent(&fs, to), (0, 0));
    }

    #[test]
    fn copying_past_the_targets_end_fills_zeros_before() {
        let (_dir, fs) = small_fs();
        let from = file(&fs, "from", &pattern(100));
        let to = file(&fs, "to", b"0123456789");
        assert_eq!(fs.copy_file_range(from, 0, to, 500, 100), Ok(100));
        let mut expected = b"0123456789".to_vec();
        expected.resize(500, 0);
        expected.extend(pattern(100));
        assert_eq!(bytes(&fs, to), expected);
        assert_eq!(
            fs.copy_file_range(from, 0, to, u64::MAX - 10, 100),
            Err(Errno::EFBIG.into())
        );
        assert_eq!(bytes(&fs, to), expected);
    }

    #[test]
    fn a_zero_tail_copies_as_a_zero_tail() {
        let (_dir, fs) = small_fs();
        let from = file(&fs, "from", &pattern(100));
        fs.fallocate(from, 0, 1000, 0).unwrap();
        let to = file(&fs, "to", b"");
        assert_eq!(fs.copy_file_range(from, 0, to, 0, 1000), Ok(1000));
        assert_eq!(extent(&fs, to), (1000, 100));
        let mut expected = pattern(100);
        expected.resize(1000, 0);
        assert_eq!(bytes(&fs, to), expected);
    }

    #[test]
    fn copies_go_either_way_between_inode_numbers_and_within_one_file() {
        let (_dir, fs) = small_fs();
        let low = file(&fs, "low", &pattern(100));
        let high = file(&fs, "high", b"abc");
        assert!(low < high);
        assert_eq!(fs.copy_file_range(high, 0, low, 0, 3), Ok(3));
        assert_eq!(fs.copy_file_range(low, 50, high, 3, 10), Ok(10));
        assert_eq!(bytes(&fs, low)[..3], *b"abc");
        assert_eq!(bytes(&fs, high)[3..], pattern(100)[50..60]);
        // Within one file, to a place past its end.
        assert_eq!(fs.copy_file_range(low, 0, low, 200, 100), Ok(100));
        let whole = bytes(&fs, low);
        assert_eq!(whole.len(), 300);
        assert_eq!(whole[200..], whole[..100]);
        assert!(whole[100..200].iter().all(|&b| b == 0));
    }
}
