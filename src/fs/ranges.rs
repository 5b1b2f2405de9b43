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
        self.modified(target, false)?;
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
