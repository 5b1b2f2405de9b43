//! File data: open handles, read, write, growth, truncate, fsync, and attribute changes.
//!
//! Invariant: a file's first `data_len` bytes live at the start of its region, and its
//! bytes from there to its size read as zeros without being stored (a zero tail, such as
//! a truncate up leaves). Region bytes past `data_len` are undefined, so whatever raises
//! `data_len` first fills the new range with data or zeros.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::change::Change;
use super::inode::{touch_modified, Inode, InodeState};
use super::Attr;
use super::{Access, Errno, Fh, FileKind, FsError, FsResult, Handle, WarabiFs, Writer};
use crate::store::records::{InodeRecord, Timestamp};
use crate::store::{Growth, Oid, StoreError, MAX_REGION_SIZE};

/// The largest size a file may have (as Linux's MAX_LFS_FILESIZE); only the bytes
/// its region holds are bounded by libpmemobj's largest allocation.
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64;

/// Zeros handed out for reads of a zero tail (in .bss: no memory until read).
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// How long a write that ran out of room waits for another file's lock to trim it.
/// Bounded: two files growing at once in a full pool may each wait for the other.
const RECLAIM_LOCK_WAIT: Duration = Duration::from_millis(100);

/// Files whose region may hold much more than their data: files that growth gave
/// headroom, and closed files whose move to a fitting region did not fit. They are
/// trimmed when another file runs out of room; an open file among them too, since its
/// release (sent by the kernel after close returns) may not have come yet.
#[derive(Debug, Default)]
pub struct Reserves {
    inodes: Mutex<BTreeSet<u64>>,
    /// Whether `inodes` may hold any: most closes then skip the lock.
    any: AtomicBool,
}

impl Reserves {
    fn note(&self, ino: u64, untrimmed: bool) {
        if !untrimmed && !self.any.load(Ordering::Relaxed) {
            return;
        }
        let mut inodes = self.inodes.lock();
        match untrimmed {
            true => inodes.insert(ino),
            false => inodes.remove(&ino),
        };
        self.any.store(!inodes.is_empty(), Ordering::Relaxed);
    }

    fn all_but(&self, ino: u64) -> Vec<u64> {
        let inodes = self.inodes.lock();
        inodes.iter().copied().filter(|&i| i != ino).collect()
    }
}

/// A time to set with setattr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetTime {
    Now,
    At(Timestamp),
}

/// The attribute changes of one setattr call; `None` leaves a field alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
    pub ctime: Option<Timestamp>,
    /// Clear set-user-ID and set-group-ID as a chown, or a truncate by an unprivileged
    /// caller, must (see [`WarabiFs::clear_suid_sgid`]).
    pub clear_suid_sgid: bool,
}

/// `mode` without set-user-ID, and without set-group-ID when the group may execute
/// (without group execute that bit marks mandatory locking and stays), as Linux clears
/// them.
fn without_suid_sgid(mode: u32) -> u32 {
    let mut mode = mode & !libc::S_ISUID;
    if mode & libc::S_IXGRP != 0 {
        mode &= !libc::S_ISGID;
    }
    mode
}

/// How many of `len` bytes at `off` a read of this inode returns (0 at or past the end).
fn readable(state: &InodeState, off: u64, len: u64) -> FsResult<usize> {
    if state.kind() == FileKind::Directory {
        return Err(Errno::EISDIR.into());
    }
    Ok(state.meta.size.saturating_sub(off).min(len) as usize)
}

impl WarabiFs {
    /// Opens a file; `write` says whether the handle may write. A handle for writing
    /// enters the push gate here; one opened inside an operation that entered already
    /// comes through [`WarabiFs::open_writing`].
    pub fn open(&self, ino: u64, write: bool) -> FsResult<Fh> {
        let access = match write {
            true => Access::Write {
                _writer: self.gate.enter(ino),
            },
            false => Access::Read,
        };
        self.open_handle(ino, access)
    }

    /// Opens `writer`'s file for writing; the handle is that writer until released.
    pub fn open_writing(&self, writer: Writer) -> FsResult<Fh> {
        self.open_handle(writer.ino(), Access::Write { _writer: writer })
    }

    fn open_handle(&self, ino: u64, access: Access) -> FsResult<Fh> {
        let write = matches!(access, Access::Write { .. });
        if write {
            self.writable()?;
        }
        let inode = self.inode(ino)?;
        let mut state = inode.state.write();
        if state.kind() == FileKind::Directory && write {
            return Err(Errno::EISDIR.into());
        }
        state.open_handles += 1;
        drop(state);
        let fh = Fh(self.next_fh.fetch_add(1, Ordering::Relaxed));
        self.handles.insert(fh, Handle { inode, access });
        Ok(fh)
    }

    /// The inode handle `fh` opened: EBADF for a handle that is not open, or that was
    /// opened read-only when `write` is asked.
    fn opened(&self, fh: Fh, write: bool) -> FsResult<Arc<Inode>> {
        let handle = self.handles.get(&fh).ok_or(Errno::EBADF)?;
        if write && matches!(handle.access, Access::Read) {
            return Err(Errno::EBADF.into());
        }
        Ok(Arc::clone(&handle.inode))
    }

    /// Closes a handle; the last close of an unlinked file frees it.
    pub fn release(&self, fh: Fh) -> FsResult<()> {
        let (_, Handle { inode, access }) = self.handles.remove(&fh).ok_or(Errno::EBADF)?;
        // A writer no more: what follows (persist, trim) keeps the bytes as they are.
        drop(access);
        let mut state = inode.state.write();
        state.open_handles = state.open_handles.saturating_sub(1);
        if state.meta.nlink > 0 && state.open_handles == 0 && !self.is_read_only() {
            self.trim(&mut state);
        }
        if state.meta.nlink > 0 || state.open_handles > 0 {
            return self.persist(&mut state);
        }
        let mut change = Change::begin(&self.store)?;
        state.free_records(change.tx())?;
        change.commit()?;
        drop(state);
        self.inodes.remove(&inode.ino);
        Ok(())
    }

    /// Reads up to `len` bytes at `off` through handle `fh`, handing `reply` a copy of
    /// them in this thread's read buffer (zeros past the bytes the region stores).
    pub fn read<R>(
        &self,
        fh: Fh,
        off: u64,
        len: u32,
        reply: impl FnOnce(&[u8]) -> R,
    ) -> FsResult<R> {
        let inode = self.opened(fh, false)?;
        self.read_inode(&inode, off, len, reply)
    }

    /// Like [`WarabiFs::read`], by inode, for a reader that holds no handle: the push
    /// of file data into the kernel's page cache.
    pub fn read_unopened<R>(
        &self,
        ino: u64,
        off: u64,
        len: u32,
        reply: impl FnOnce(&[u8]) -> R,
    ) -> FsResult<R> {
        let inode = self.inode(ino)?;
        self.read_inode(&inode, off, len, reply)
    }

    fn read_inode<R>(
        &self,
        inode: &Inode,
        off: u64,
        len: u32,
        reply: impl FnOnce(&[u8]) -> R,
    ) -> FsResult<R> {
        let state = inode.state.read();
        let n = readable(&state, off, u64::from(len))?;
        let data_len = state.meta.data_len();
        if n == 0 {
            return Ok(reply(&[]));
        }
        if off + n as u64 <= data_len {
            return Ok(self.store.read_with(state.region(), off, n, reply));
        }
        if off >= data_len && n <= ZEROS.len() {
            return Ok(reply(&ZEROS[..n]));
        }
        // Across the end of the data, or a zero tail read bigger than ZEROS.
        let mut bytes = vec![0u8; n];
        self.read_stored(&state, off, &mut bytes);
        Ok(reply(&bytes))
    }

    /// Reads up to `buf.len()` bytes at `off` into `buf` (zeros past the bytes the
    /// region stores); returns how many.
    pub fn read_into(&self, fh: Fh, off: u64, buf: &mut [u8]) -> FsResult<usize> {
        let inode = self.opened(fh, false)?;
        let state = inode.state.read();
        let n = readable(&state, off, buf.len() as u64)?;
        let stored = self.read_stored(&state, off, &mut buf[..n]);
        buf[stored..n].fill(0);
        Ok(n)
    }

    /// Copies what the region stores of `buf.len()` bytes at `off` into the start of
    /// `buf`; returns how many bytes that was (the rest of the range is zeros).
    fn read_stored(&self, state: &InodeState, off: u64, buf: &mut [u8]) -> usize {
        let stored = state
            .meta
            .data_len()
            .saturating_sub(off)
            .min(buf.len() as u64) as usize;
        if stored > 0 {
            self.store
                .read_into(state.region(), off, &mut buf[..stored]);
        }
        stored
    }

    /// Writes `data` at `off` through handle `fh` (open for writing), growing the region
    /// when needed. Visible at once, durable at fsync (or before returning with `-o sync`
    /// or `sync`).
    pub fn write(&self, fh: Fh, off: u64, data: &[u8], sync: bool) -> FsResult<usize> {
        let inode = self.opened(fh, true)?;
        self.write_inode(&inode, off, data, sync)
    }

    fn write_inode(&self, inode: &Inode, off: u64, data: &[u8], sync: bool) -> FsResult<usize> {
        self.writable()?;
        let end = off.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        if end > MAX_REGION_SIZE {
            return Err(Errno::EFBIG.into());
        }
        let ino = inode.ino;
        let mut state = inode.state.write();
        if state.kind() != FileKind::Regular {
            return Err(Errno::EBADF.into());
        }
        if data.is_empty() {
            return Ok(0);
        }
        if (end > state.capacity || self.opts.atomic_writes) && state.record.is_none() {
            drop(state);
            self.adopt(ino)?;
            return self.write_inode(inode, off, data, sync);
        }
        if self.opts.atomic_writes {
            self.write_atomically(&mut state, off, data)?;
            return Ok(data.len());
        }
        if end > state.capacity && (sync || self.opts.sync) {
            // To be durable on return anyway: the move to a bigger region writes the
            // bytes, the size and the times in its own transaction, not in one more.
            match self.grow(&mut state, end, Some(Carried { off, data })) {
                Ok(()) => return Ok(data.len()),
                // Then as any write: cut short at the end of the region if it can be.
                Err(e) if e.errno() == Errno::ENOSPC => {}
                Err(e) => return Err(e),
            }
        }
        let end = self.room_for_write(&mut state, off, end)?;
        let data = &data[..(end - off) as usize];
        self.fill_to(&mut state, off);
        self.store.write(state.region(), off, data);
        crate::fault::point("write.copied");
        state.dirty.add(off, end);
        extend_data(&mut state.meta, end);
        self.modified(&mut state, sync)?;
        Ok(data.len())
    }

    /// Makes the region hold [off, end) and returns `end`; when the pool has no room for
    /// that, the end of the region (at a page boundary when it can) if the write starts
    /// before it: the write is cut short there, and only the next one fails with ENOSPC.
    fn room_for_write(&self, state: &mut InodeState, off: u64, end: u64) -> FsResult<u64> {
        match self.ensure_capacity(state, end) {
            Ok(()) => Ok(end),
            Err(e) if e.errno() == Errno::ENOSPC && off < state.capacity => {
                let page_end = state.capacity / 4096 * 4096;
                Ok(if page_end > off {
                    page_end
                } else {
                    state.capacity
                })
            }
            Err(e) => Err(e),
        }
    }

    /// `-o atomic_writes`: the bytes a write overwrites are snapshotted, the new bytes
    /// past the old end persisted, and the new size and times written, all in one
    /// transaction, so after a crash the write happened entirely or not at all.
    fn write_atomically(&self, state: &mut InodeState, off: u64, data: &[u8]) -> FsResult<()> {
        let end = off + data.len() as u64;
        self.ensure_capacity(state, end)?;
        state.persist_data(&self.store);
        let old_data_len = state.meta.data_len();
        let region = state.region();
        let mut change = Change::begin(&self.store)?;
        if off < old_data_len {
            change
                .tx()
                .snapshot(region, off, end.min(old_data_len) - off)?;
        }
        let before = state.meta.clone();
        self.fill_to(state, off);
        self.store.write(region, off, data);
        crate::fault::point("write.copied");
        if end > old_data_len {
            // Past the old data nothing needs undoing, but it must be durable at commit.
            self.store.flush(region, old_data_len, end - old_data_len);
            self.store.drain();
        }
        state.dirty.take();
        let mut meta = before;
        record_write(&mut meta, end);
        change.stage(state, meta)?;
        Ok(change.commit()?)
    }

    /// Grows the region if it cannot hold `end` bytes (the inode must be adopted).
    pub(super) fn ensure_capacity(&self, state: &mut InodeState, end: u64) -> FsResult<()> {
        if end > MAX_REGION_SIZE {
            return Err(Errno::EFBIG.into());
        }
        if end > state.capacity {
            self.grow(state, end, None)?;
        }
        Ok(())
    }

    /// Like [`WarabiFs::ensure_capacity`], but a region that must grow gets exactly
    /// what `end` needs (fallocate: the caller says how much it wants).
    pub(super) fn ensure_capacity_exact(&self, state: &mut InodeState, end: u64) -> FsResult<()> {
        if end > MAX_REGION_SIZE {
            return Err(Errno::EFBIG.into());
        }
        if end <= state.capacity {
            return Ok(());
        }
        let exact = self.store.region_size_for(end);
        self.move_region(state, exact, None)
            .or_else(
                |e| match e.errno() == libc::ENOSPC && self.reclaim_reserves(state) {
                    true => self.move_region(state, exact, None),
                    false => Err(e),
                },
            )
            .map_err(FsError::from)
    }

    /// Fills the region with zeros from the end of the data to `off`, so that data can
    /// follow there; the capacity must already hold `off`.
    pub(super) fn fill_to(&self, state: &mut InodeState, off: u64) {
        let data_len = state.meta.data_len();
        if off > data_len {
            self.store.zero(state.region(), data_len, off - data_len);
            state.dirty.add(data_len, off);
            extend_data(&mut state.meta, off);
        }
    }

    /// Makes the file's bytes in [off, end) zeros, leaving the size: those inside the
    /// data are zeroed in place, unless the range reaches the end of the data, which
    /// then just ends at `off`.
    pub(super) fn zero_range(&self, state: &mut InodeState, off: u64, end: u64) {
        let data_len = state.meta.data_len();
        if off >= data_len || off >= end {
            return;
        }
        if end >= data_len {
            state.dirty.truncate(off);
            let size = state.meta.size;
            state.meta.set_extent(size, off);
            return;
        }
        self.store.zero(state.region(), off, end - off);
        state.dirty.add(off, end);
    }

    /// Records a content change: new mtime and ctime, persisted now when `sync` or the
    /// mount asks for it, else at fsync or close.
    pub(super) fn modified(&self, state: &mut InodeState, sync: bool) -> FsResult<()> {
        state.touch_modified();
        state.meta_dirty = true;
        if sync || self.opts.sync {
            self.persist(state)?;
        }
        Ok(())
    }

    /// Moves the file to a region of at least `needed` bytes, in one transaction that
    /// also records the new RegionID (see [`crate::store::growth`]): geometric steps
    /// while they are small, then the largest region that fits. When even `needed` does
    /// not fit, closed files give back their reserves (if their copies fit) and the
    /// move is tried once more. A `carried` write is made by the move (see
    /// [`Carried`]).
    fn grow(&self, state: &mut InodeState, needed: u64, carried: Option<Carried>) -> FsResult<()> {
        match self.grow_once(state, needed, carried) {
            Err(e) if e.errno() == libc::ENOSPC && self.reclaim_reserves(state) => {
                self.grow_once(state, needed, carried)
            }
            other => other,
        }
        .map_err(FsError::from)
    }

    fn grow_once(
        &self,
        state: &mut InodeState,
        needed: u64,
        carried: Option<Carried>,
    ) -> Result<(), StoreError> {
        let exact = self.store.region_size_for(needed);
        let wanted = match self.store.growth(needed, state.capacity, state.meta.size) {
            Growth::To(size) => size,
            Growth::Largest { at_least, keep } => {
                let writers = self.gate.files_written().max(1);
                self.store.largest_share(writers, keep).max(at_least)
            }
        };
        tracing::debug!(
            "inode {}: {} bytes stored, region of {} bytes outgrown by a write to {needed}: moving to {wanted}",
            state.meta.ino,
            state.meta.data_len(),
            state.capacity
        );
        match self.move_region(state, wanted, carried) {
            Err(e) if e.errno() == libc::ENOSPC && wanted > exact => {
                self.move_region(state, exact, carried)
            }
            Ok(()) if wanted > exact => {
                self.reserves.note(state.meta.ino, true);
                Ok(())
            }
            other => other,
        }
    }

    /// Trims the files noted in `reserves` (not the one being served, whose lock is
    /// held): true if the pool has more free space than before, so that the move that
    /// did not fit is worth trying again. A file still open grows again if it is
    /// written again, from a region that fits it.
    fn reclaim_reserves(&self, serving: &InodeState) -> bool {
        let free_before = self.store.free_bytes();
        for ino in self.reserves.all_but(serving.meta.ino) {
            let Ok(inode) = self.inode(ino) else {
                self.reserves.note(ino, false);
                continue;
            };
            // A busy file is most often being trimmed by its release right now, which
            // is the room this write waits for.
            let Some(mut state) = inode.state.try_write_for(RECLAIM_LOCK_WAIT) else {
                continue;
            };
            self.trim(&mut state);
        }
        self.store.free_bytes() > free_before
    }

    /// At the last close, gives back most of what growth reserved beyond the file's data
    /// (see [`crate::store::trim_size`]). When the copy does not fit, the reserve stays
    /// and is noted, to be given back when another file needs the room.
    fn trim(&self, state: &mut InodeState) {
        if state.reserved || state.record.is_none() || state.region().is_null() {
            // Nothing to give back: fallocate asked for that room, or there is none.
            self.reserves.note(state.meta.ino, false);
            return;
        }
        let data_len = state.meta.data_len();
        // A region that holds the whole size keeps it: the file was sized for it.
        let kept = match state.meta.size <= state.capacity {
            true => state.meta.size,
            false => data_len,
        };
        let trimmed = match kept {
            // Nothing stored (a zero tail only): no region at all.
            0 => Some(0),
            _ => self.store.trim_size(kept, state.capacity),
        };
        let Some(trimmed) = trimmed else {
            self.reserves.note(state.meta.ino, false);
            return;
        };
        let fitted = self.store.region_size_for(kept);
        let result = match self.move_region(state, trimmed, None) {
            // Without the headroom the copy may still fit.
            Err(e) if e.errno() == libc::ENOSPC && kept > 0 && fitted < trimmed => {
                self.move_region(state, fitted, None)
            }
            other => other,
        };
        if let Err(e) = &result {
            tracing::debug!("region of inode {} not trimmed: {e}", state.meta.ino);
        }
        let untrimmed = result.is_err_and(|e| e.errno() == libc::ENOSPC);
        self.reserves.note(state.meta.ino, untrimmed);
    }

    /// Moves the file's data into a new region of `capacity` bytes (none for 0), and
    /// makes the `carried` write there, all in one transaction.
    fn move_region(
        &self,
        state: &mut InodeState,
        capacity: u64,
        carried: Option<Carried>,
    ) -> Result<(), StoreError> {
        debug_assert!(state.record.is_some(), "moving needs an adopted inode");
        let old = state.region();
        let data_len = state.meta.data_len();
        let mut meta = state.meta.clone();
        let filled = match carried {
            Some(write) => write.apply(&mut meta),
            None => data_len,
        };
        debug_assert!(filled <= capacity, "moving {filled} bytes into {capacity}");
        let mut change = Change::begin(&self.store)?;
        let new = match capacity {
            0 => Oid::NULL,
            _ => change.tx().create_region(capacity)?,
        };
        if data_len > 0 {
            self.store.copy(old, 0, new, 0, data_len);
        }
        if let Some(write) = carried {
            if write.off > data_len {
                self.store.zero(new, data_len, write.off - data_len);
            }
            self.store.write_new(new, write.off, write.data);
            crate::fault::point("write.copied");
        }
        if filled > 0 {
            self.store.persist(new, 0, filled);
        }
        crate::fault::point("region.filled");
        change.tx().free(old)?;
        meta.region = new;
        // The new region is persisted whole, so the old one's dirty ranges are moot once
        // the move commits (and still to be persisted if it does not).
        let dirty = state.dirty.take();
        let moved = change.stage(state, meta).and_then(|()| change.commit());
        if moved.is_err() {
            dirty
                .into_iter()
                .for_each(|(start, end)| state.dirty.add(start, end));
        }
        moved?;
        state.capacity = self.store.capacity(new);
        Ok(())
    }

    /// Persists data, then the size and times if they changed.
    pub(super) fn persist(&self, state: &mut InodeState) -> FsResult<()> {
        state.persist_data(&self.store);
        if !state.meta_dirty || state.record.is_none() || self.is_read_only() {
            return Ok(());
        }
        let meta = state.meta.clone();
        let mut change = Change::begin(&self.store)?;
        change.stage(state, meta)?;
        Ok(change.commit()?)
    }

    /// fsync/fdatasync (and flush, at each close) through handle `fh`: everything
    /// written to the file so far becomes durable.
    pub fn fsync(&self, fh: Fh) -> FsResult<()> {
        let inode = self.opened(fh, false)?;
        let mut state = inode.state.write();
        self.persist(&mut state)
    }

    /// Clears set-user-ID and set-group-ID before a write by a caller without
    /// CAP_FSETID. The kernel leaves this to the file system when it caches writes
    /// (FUSE_HANDLE_KILLPRIV_V2) and says when in each write request. A file without
    /// those bits, the usual case, costs one read lock. Returns whether a bit went.
    pub fn clear_suid_sgid(&self, ino: u64) -> FsResult<bool> {
        let mode = self.inode(ino)?.state.read().meta.mode;
        if without_suid_sgid(mode) == mode {
            return Ok(false);
        }
        let change = SetAttr {
            clear_suid_sgid: true,
            ..SetAttr::default()
        };
        self.setattr(ino, change).map(|_| true)
    }

    /// Changes attributes in one transaction (a truncate that needs a bigger region
    /// first moves the file in a transaction of its own).
    pub fn setattr(&self, ino: u64, change: SetAttr) -> FsResult<Attr> {
        self.writable()?;
        self.adopt_if_raw(ino)?;
        let inode = self.inode(ino)?;
        let mut state = inode.state.write();
        let now = Timestamp::now();
        let mut meta = state.meta.clone();
        if let Some(mode) = change.mode {
            meta.mode = (meta.mode & libc::S_IFMT) | (mode & 0o7777);
        }
        meta.uid = change.uid.unwrap_or(meta.uid);
        meta.gid = change.gid.unwrap_or(meta.gid);
        if change.clear_suid_sgid && state.kind() != FileKind::Directory {
            meta.mode = without_suid_sgid(meta.mode);
        }
        let resolve = |t: SetTime| match t {
            SetTime::Now => now,
            SetTime::At(t) => t,
        };
        if let Some(t) = change.atime {
            meta.atime = resolve(t);
        }
        if let Some(t) = change.mtime {
            meta.mtime = resolve(t);
        }
        meta.ctime = change.ctime.unwrap_or(now);
        let mut free_region = Oid::NULL;
        if let Some(size) = change.size {
            free_region = self.resize(&mut state, &mut meta, size)?;
            if change.mtime.is_none() {
                meta.mtime = now;
            }
        }
        let mut change = Change::begin(&self.store)?;
        change.tx().free(free_region)?;
        change.stage(&mut state, meta)?;
        change.commit()?;
        if !free_region.is_null() {
            state.capacity = 0;
        }
        Ok(state.attr())
    }

    /// Prepares a truncate to `size` in `meta`; returns a region to free with it.
    fn resize(
        &self,
        state: &mut InodeState,
        meta: &mut crate::store::records::InodeRecord,
        size: u64,
    ) -> FsResult<Oid> {
        match state.kind() {
            FileKind::Regular => {}
            FileKind::Directory => return Err(Errno::EISDIR.into()),
            _ => return Err(Errno::EINVAL.into()),
        }
        if size == 0 && !state.region().is_null() {
            // An emptied file gives its region back to the pool.
            state.dirty.take();
            state.reserved = false;
            let region = meta.region;
            meta.region = Oid::NULL;
            meta.set_extent(0, 0);
            return Ok(region);
        }
        if size > MAX_FILE_SIZE {
            return Err(Errno::EFBIG.into());
        }
        // No allocation either way: up, the new bytes are a zero tail; down, the
        // region keeps its capacity until the last close trims it.
        let data_len = state.meta.data_len().min(size);
        state.dirty.truncate(data_len);
        meta.set_extent(size, data_len);
        Ok(Oid::NULL)
    }
}

/// A write that the move of its file's region makes in the move's own transaction: its
/// bytes go into the new region, and the size and times it sets into the record that
/// names that region.
#[derive(Clone, Copy)]
struct Carried<'d> {
    off: u64,
    data: &'d [u8],
}

impl Carried<'_> {
    /// Sets in `meta` the extent and times this write leaves; returns how many bytes
    /// from the start the region then holds.
    fn apply(&self, meta: &mut InodeRecord) -> u64 {
        record_write(meta, self.off + self.data.len() as u64);
        meta.data_len()
    }
}

/// What a write that ends at `end` leaves in `meta`: the data raised to it, and new
/// mtime and ctime.
fn record_write(meta: &mut InodeRecord, end: u64) {
    extend_data(meta, end);
    touch_modified(meta);
}

/// Raises the data (and the size, if it ends before) to `end`.
fn extend_data(meta: &mut InodeRecord, end: u64) {
    let (size, data_len) = (meta.size, meta.data_len());
    meta.set_extent(size.max(end), data_len.max(end));
}
