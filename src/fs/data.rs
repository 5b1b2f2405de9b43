//! File data: open handles, read, write, growth, truncate, fsync, and attribute changes.
//!
//! Invariant: a file's bytes [0, size) live at the start of its region; bytes between
//! size and capacity are undefined, so whatever raises the size first fills the new
//! range with data or zeros.

use super::inode::InodeState;
use super::Attr;
use super::{Errno, FileKind, FsResult, Handle, WarabiFs};
use crate::pmem::{Oid, MAX_ALLOC_SIZE};
use crate::store::records::Timestamp;
use crate::store::{StoreError, StoreTx};

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
fn readable(state: &super::inode::InodeState, off: u64, len: u64) -> FsResult<usize> {
    if state.kind() == FileKind::Directory {
        return Err(Errno::EISDIR);
    }
    Ok(state.meta.size.saturating_sub(off).min(len) as usize)
}

impl WarabiFs {
    /// Opens a file; `write` says whether the handle may write.
    pub fn open(&self, ino: u64, write: bool) -> FsResult<u64> {
        if write {
            self.writable()?;
        }
        let inode = self.inode(ino)?;
        let mut state = inode.state.write();
        if state.kind() == FileKind::Directory && write {
            return Err(Errno::EISDIR);
        }
        state.open_handles += 1;
        let fh = self
            .next_fh
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.handles.insert(fh, Handle { ino, writes: write });
        if write {
            self.gate.enter(ino);
        }
        Ok(fh)
    }

    /// Creates and opens a regular file.
    pub fn create(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        caller: super::Caller,
    ) -> FsResult<(Attr, u64)> {
        let attr = self.mknod(parent, name, libc::S_IFREG | (mode & 0o7777), 0, caller)?;
        let fh = self.open(attr.ino, true)?;
        Ok((attr, fh))
    }

    /// Closes a handle; the last close of an unlinked file frees it.
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let (_, handle) = self.handles.remove(&fh).ok_or(Errno::EBADF)?;
        if handle.writes {
            // What follows (persist, trim) keeps the bytes as they are.
            self.gate.leave(handle.ino);
        }
        let inode = self.inode(handle.ino)?;
        let mut state = inode.state.write();
        state.open_handles = state.open_handles.saturating_sub(1);
        if state.meta.nlink > 0 && state.open_handles == 0 && !self.is_read_only() {
            self.trim(&mut state);
        }
        if state.meta.nlink > 0 || state.open_handles > 0 {
            return self.persist(&mut state);
        }
        let mut tx = self.store.begin()?;
        free_inode(&mut tx, &state)?;
        tx.commit()?;
        drop(state);
        self.inodes.remove(&handle.ino);
        Ok(())
    }

    /// Reads up to `len` bytes at `off`, handing `reply` a slice of the region itself.
    pub fn read<R>(
        &self,
        ino: u64,
        off: u64,
        len: u32,
        reply: impl FnOnce(&[u8]) -> R,
    ) -> FsResult<R> {
        let inode = self.inode(ino)?;
        let state = inode.state.read();
        match readable(&state, off, u64::from(len))? {
            0 => Ok(reply(&[])),
            n => Ok(self.store.read_with(state.region(), off, n, reply)),
        }
    }

    /// Reads up to `buf.len()` bytes at `off` into `buf`; returns how many.
    pub fn read_into(&self, ino: u64, off: u64, buf: &mut [u8]) -> FsResult<usize> {
        let inode = self.inode(ino)?;
        let state = inode.state.read();
        let n = readable(&state, off, buf.len() as u64)?;
        if n > 0 {
            self.store.read_into(state.region(), off, &mut buf[..n]);
        }
        Ok(n)
    }

    /// Writes `data` at `off`, growing the region when needed. Visible at once, durable
    /// at fsync (or before returning with `-o sync` or `sync`).
    pub fn write(&self, ino: u64, off: u64, data: &[u8], sync: bool) -> FsResult<usize> {
        self.writable()?;
        let end = off.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        if end > MAX_ALLOC_SIZE {
            return Err(Errno::EFBIG);
        }
        let inode = self.inode(ino)?;
        let mut state = inode.state.write();
        if state.kind() != FileKind::Regular {
            return Err(Errno::EBADF);
        }
        if data.is_empty() {
            return Ok(0);
        }
        if (end > state.capacity || self.opts.atomic_writes) && state.record.is_none() {
            drop(state);
            self.adopt(ino)?;
            return self.write(ino, off, data, sync);
        }
        if self.opts.atomic_writes {
            self.write_atomically(&mut state, off, data)?;
            return Ok(data.len());
        }
        self.ensure_capacity(&mut state, end)?;
        self.extend_with_zeros(&mut state, off);
        self.store.write(state.region(), off, data);
        crate::fault::point("write.copied");
        state.dirty.add(off, end);
        state.meta.size = state.meta.size.max(end);
        self.modified(&mut state, sync)?;
        Ok(data.len())
    }

    /// `-o atomic_writes`: the bytes a write overwrites are snapshotted, the new bytes
    /// past the old end persisted, and the new size and times written, all in one
    /// transaction, so after a crash the write happened entirely or not at all.
    fn write_atomically(&self, state: &mut InodeState, off: u64, data: &[u8]) -> FsResult<()> {
        let end = off + data.len() as u64;
        self.ensure_capacity(state, end)?;
        self.persist_data(state);
        let old_size = state.meta.size;
        let region = state.region();
        let mut tx = self.store.begin()?;
        if off < old_size {
            tx.snapshot(region, off, end.min(old_size) - off)?;
        }
        self.extend_with_zeros(state, off);
        self.store.write(region, off, data);
        crate::fault::point("write.copied");
        if end > old_size {
            // Past the old end nothing needs undoing, but it must be durable at commit.
            self.store.flush(region, old_size, end - old_size);
            self.store.drain();
        }
        state.dirty.take();
        let mut meta = state.meta.clone();
        meta.size = old_size.max(end);
        let now = Timestamp::now();
        (meta.mtime, meta.ctime) = (now, now);
        tx.update_inode(state.record.expect("adopted before"), &meta)?;
        tx.commit()?;
        state.meta = meta;
        state.meta_dirty = false;
        Ok(())
    }

    /// Grows the region if it cannot hold `end` bytes (the inode must be adopted).
    pub(super) fn ensure_capacity(&self, state: &mut InodeState, end: u64) -> FsResult<()> {
        if end > MAX_ALLOC_SIZE {
            return Err(Errno::EFBIG);
        }
        if end > state.capacity {
            self.grow(state, end)?;
        }
        Ok(())
    }

    /// Raises the size to `end` with zeros (a hole reads as zeros); the capacity must
    /// already hold `end`.
    pub(super) fn extend_with_zeros(&self, state: &mut InodeState, end: u64) {
        let size = state.meta.size;
        if end > size {
            self.store.zero(state.region(), size, end - size);
            state.dirty.add(size, end);
            state.meta.size = end;
        }
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
    /// also records the new RegionID. The region grows geometrically (see
    /// [`crate::store::growth_size`]); on a nearly full pool an exact fit is tried too.
    fn grow(&self, state: &mut InodeState, needed: u64) -> FsResult<()> {
        let generous = self.store.growth_size(needed, state.capacity);
        let exact = self.store.region_size_for(needed);
        match self.move_region(state, generous) {
            Err(e) if e.errno() == libc::ENOSPC && generous > exact => {
                self.move_region(state, exact)
            }
            other => other,
        }
        .map_err(Errno::from)
    }

    /// At the last close, gives back most of what growth reserved beyond the file's end
    /// (see [`crate::store::trim_size`]). Failing (a full pool) only leaves the reserve
    /// in place.
    fn trim(&self, state: &mut InodeState) {
        if state.reserved || state.record.is_none() || state.meta.size == 0 {
            return;
        }
        let Some(trimmed) = self.store.trim_size(state.meta.size, state.capacity) else {
            return;
        };
        if let Err(e) = self.move_region(state, trimmed) {
            tracing::debug!("region of inode {} not trimmed: {e}", state.meta.ino);
        }
    }

    fn move_region(&self, state: &mut InodeState, capacity: u64) -> Result<(), StoreError> {
        let record = state.record.expect("grow needs an adopted inode");
        let old = state.region();
        let size = state.meta.size;
        let mut tx = self.store.begin()?;
        let new = tx.create_region(capacity)?;
        if size > 0 {
            self.store.copy(old, 0, new, 0, size);
            self.store.flush(new, 0, size);
            self.store.drain();
        }
        crate::fault::point("region.filled");
        tx.free(old)?;
        let mut meta = state.meta.clone();
        meta.region = new;
        tx.update_inode(record, &meta)?;
        tx.commit()?;
        state.meta = meta;
        state.capacity = self.store.capacity(new);
        state.dirty.take();
        state.meta_dirty = false;
        Ok(())
    }

    /// Persists written data (only the ranges that changed).
    pub(super) fn persist_data(&self, state: &mut InodeState) {
        let ranges = state.dirty.take();
        if ranges.is_empty() {
            return;
        }
        let region = state.region();
        for (start, end) in ranges {
            self.store.flush(region, start, end - start);
        }
        self.store.drain();
    }

    /// Persists data, then the size and times if they changed.
    pub(super) fn persist(&self, state: &mut InodeState) -> FsResult<()> {
        self.persist_data(state);
        if !state.meta_dirty || state.record.is_none() || self.is_read_only() {
            return Ok(());
        }
        let mut tx = self.store.begin()?;
        tx.update_inode(state.record.expect("checked"), &state.meta)?;
        tx.commit()?;
        state.meta_dirty = false;
        Ok(())
    }

    /// fsync/fdatasync: everything written to the file so far becomes durable.
    pub fn fsync(&self, ino: u64) -> FsResult<()> {
        let inode = self.inode(ino)?;
        let mut state = inode.state.write();
        self.persist(&mut state)
    }

    /// Clears set-user-ID and set-group-ID before a write by a caller without
    /// CAP_FSETID. The kernel leaves this to the file system when it caches writes
    /// (FUSE_HANDLE_KILLPRIV_V2) and says when in each write request. A file without
    /// those bits, the usual case, costs one read lock.
    pub fn clear_suid_sgid(&self, ino: u64) -> FsResult<()> {
        let mode = self.inode(ino)?.state.read().meta.mode;
        if without_suid_sgid(mode) == mode {
            return Ok(());
        }
        let change = SetAttr {
            clear_suid_sgid: true,
            ..SetAttr::default()
        };
        self.setattr(ino, change).map(|_| ())
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
        let mut tx = self.store.begin()?;
        tx.free(free_region)?;
        self.write_meta(&mut tx, &mut state, &meta)?;
        tx.commit()?;
        super::namespace::apply_meta(&mut state, meta);
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
            FileKind::Directory => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        }
        let old = state.meta.size;
        if size == 0 && !state.region().is_null() {
            // An emptied file gives its region back to the pool.
            state.dirty.take();
            state.reserved = false;
            let region = meta.region;
            meta.region = Oid::NULL;
            meta.size = 0;
            return Ok(region);
        }
        self.ensure_capacity(state, size)?;
        meta.region = state.region();
        if size > old {
            self.extend_with_zeros(state, size);
        } else {
            state.dirty.truncate(size);
        }
        meta.size = size;
        Ok(Oid::NULL)
    }
}

/// Frees everything an inode holds on the pool (region, record, extended attributes)
/// inside `tx`.
pub(super) fn free_inode(tx: &mut StoreTx<'_>, state: &InodeState) -> Result<(), StoreError> {
    tx.free(state.region())?;
    if let Some(record) = state.record {
        tx.free(record)?;
    }
    for xattr in &state.xattrs {
        tx.free(xattr.record)?;
    }
    Ok(())
}
