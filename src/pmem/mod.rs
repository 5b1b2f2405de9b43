//! A small safe wrapper of libpmemobj: a pool, object ids, transactions and persistence.
//!
//! Every `unsafe` block of the crate lives in this module. The rest of the crate sees
//! pools, [`Oid`]s and byte slices, never raw pointers.
//!
//! The mapping is shared: [`Pool::write`], [`Pool::copy`] and [`Pool::zero`] change it
//! through `&Pool`, from any thread. So no `&[u8]` into the mapping ever leaves this
//! module: every read copies the pool's bytes into memory the caller owns
//! ([`Pool::read_into`], [`Pool::read_prefix`], [`Pool::read_object`], [`Pool::bytes`]),
//! or into this thread's own buffer that a closure borrows ([`Pool::read_with`]).
//! What a reader holds can then change only through its own `&mut`. Readers and
//! writers of the same bytes are still kept apart by the caller (the file system's
//! inode lock), or a read may copy a half-written range; but no reference the type
//! system takes for unchanging ever sees memory change under it.

mod buffer;
mod ffi;
mod mapping;
mod oid;
mod tx;

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use buffer::HugeBuffer;
use pmdk_sys::obj::{self as sys, PMEMobjpool};

pub use mapping::ReadOnlyMapping;
pub use oid::Oid;
pub use tx::{Tx, TxAlloc};

/// libpmem's switch for treating every mapping as persistent memory.
const FORCE_PMEM_ENV: &str = "PMEM_IS_PMEM_FORCE";

/// Makes libpmem persist with CPU cache flushes, as on persistent memory, rather than
/// msync(2): for pools whose files live in memory (tmpfs), where msync makes nothing
/// more durable and costs a system call per flush (fourteen per file created). Left
/// alone when the environment already sets PMEM_IS_PMEM_FORCE; returns whether it set
/// it. libpmem reads the variable once, at the first pool opened, and changing the
/// environment races with other threads reading it: call this before either.
pub fn persist_with_cache_flushes() -> bool {
    if std::env::var_os(FORCE_PMEM_ENV).is_some() {
        return false;
    }
    std::env::set_var(FORCE_PMEM_ENV, "1");
    true
}

/// The largest object libpmemobj can allocate (`PMEMOBJ_MAX_ALLOC_SIZE`).
pub const MAX_ALLOC_SIZE: u64 = 0x3_FFDF_FFC0;
/// The smallest pool libpmemobj (and Warabi) accepts.
pub const MIN_POOL_SIZE: u64 = 8 * 1024 * 1024;
/// Copies of at least this many bytes into or out of the pool go through the pool file
/// when they can (from here on one system call beats the page faults it saves).
const FILE_IO_MIN: usize = 64 << 10;
/// Writes of at least this many bytes into an object allocated just now go through the
/// pool file when they can: its pages past the first (which libpmemobj's header of the
/// object has touched) are most likely not mapped yet, and each would cost a page fault
/// that clears the page before the copy. Measured on a pool in /dev/shm, the copy of
/// 14 KB into a new object: 5.5 µs through the mapping, 3.1 µs through the file; into
/// pages already mapped the mapping is three to four times faster, hence FILE_IO_MIN
/// elsewhere.
const NEW_OBJECT_FILE_IO_MIN: usize = PAGE_SIZE;
/// The base page size (x86-64 and arm64 as built here).
const PAGE_SIZE: usize = 4096;

/// A libpmemobj failure: which call failed, its errno and libpmemobj's own message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op}: {message}")]
pub struct PmemError {
    pub op: &'static str,
    pub errno: i32,
    pub message: String,
}

impl PmemError {
    /// Captures errno and `pmemobj_errormsg()` right after a failed call.
    fn last(op: &'static str) -> Self {
        let errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        // SAFETY: pmemobj_errormsg returns a thread-local, NUL-terminated string that
        // stays valid until the next libpmemobj call on this thread; we copy it at once.
        let message = unsafe { CStr::from_ptr(sys::pmemobj_errormsg()) }
            .to_string_lossy()
            .trim()
            .to_string();
        let message = if message.is_empty() {
            std::io::Error::from_raw_os_error(errno).to_string()
        } else {
            message
        };
        PmemError { op, errno, message }
    }

    fn with_errno(op: &'static str, errno: i32) -> Self {
        let message = std::io::Error::from_raw_os_error(errno).to_string();
        PmemError { op, errno, message }
    }
}

pub type Result<T> = std::result::Result<T, PmemError>;

/// An open libpmemobj pool. Closed on drop.
#[derive(Debug)]
pub struct Pool {
    pop: NonNull<PMEMobjpool>,
    uuid_lo: u64,
    path: PathBuf,
    /// The pool file, when the mapping is a shared mapping of it from offset 0: bulk
    /// copies then go through the file (see [`Pool::write`], [`Pool::read_with`]).
    file: Option<std::fs::File>,
    /// Whether `file` is open for writing (a read-only pool file is only read through).
    file_writable: bool,
}

// SAFETY: libpmemobj pools are thread-safe: allocation, free, persist and transactions may
// run from several threads at once (transactions are per thread). Callers serialise
// concurrent writes to the same bytes themselves.
unsafe impl Send for Pool {}
// SAFETY: see `Send` above.
unsafe impl Sync for Pool {}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| PmemError::with_errno("path", libc::EINVAL))
}

impl Pool {
    /// Creates a new pool file the way Warabi does: NULL layout, mode 0644.
    pub fn create(path: &Path, size: u64) -> Result<Pool> {
        let cpath = c_path(path)?;
        let size = usize::try_from(size)
            .map_err(|_| PmemError::with_errno("pmemobj_create", libc::EFBIG))?;
        // SAFETY: cpath is a valid NUL-terminated string; a NULL layout is allowed.
        let pop = unsafe { sys::pmemobj_create(cpath.as_ptr(), std::ptr::null(), size, 0o644) };
        Self::from_raw(pop, path, "pmemobj_create")
    }

    /// Opens an existing pool without checking its layout, as Warabi does.
    pub fn open(path: &Path) -> Result<Pool> {
        let cpath = c_path(path)?;
        // SAFETY: cpath is a valid NUL-terminated string; a NULL layout skips the check.
        let pop = unsafe { sys::pmemobj_open(cpath.as_ptr(), std::ptr::null()) };
        Self::from_raw(pop, path, "pmemobj_open")
    }

    fn from_raw(pop: *mut PMEMobjpool, path: &Path, op: &'static str) -> Result<Pool> {
        let pop = NonNull::new(pop).ok_or_else(|| PmemError::last(op))?;
        // SAFETY: pop is an open pool and its own base address lies inside the pool, so
        // pmemobj_oid gives the pool's uuid_lo with offset 0.
        let uuid_lo =
            unsafe { sys::pmemobj_oid(pop.as_ptr() as *const libc::c_void) }.pool_uuid_lo();
        let mut pool = Pool {
            pop,
            uuid_lo,
            path: path.to_path_buf(),
            file: None,
            file_writable: false,
        };
        (pool.file, pool.file_writable) = match pool.open_mapped_file(true) {
            Some(file) => (Some(file), true),
            None => (pool.open_mapped_file(false), false),
        };
        Ok(pool)
    }

    /// Opens the pool file for positioned writes when that is the same memory the
    /// mapping shows: a shared mapping (not copy-on-write) of a regular file that is a
    /// single pool (its first bytes are the pool's own header, not a pool set).
    /// Everything else is addressed only through the mapping: a pool set's offsets are
    /// not one file's, device DAX has no read or write system calls, and libpmemobj
    /// copies bytes to replicas only inside its own flush and persist calls.
    fn open_mapped_file(&self, write: bool) -> Option<std::fs::File> {
        use std::os::unix::fs::FileExt;
        if self.copy_on_write() {
            return None;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .open(&self.path)
            .ok()?;
        if !file.metadata().ok()?.is_file() {
            return None;
        }
        let mut signature = [0u8; 8];
        file.read_exact_at(&mut signature, 0).ok()?;
        (signature == self.signature()).then_some(file)
    }

    /// The first 8 bytes of the mapping: the pool header's signature.
    fn signature(&self) -> [u8; 8] {
        let mut signature = [0u8; 8];
        // SAFETY: the pool header (4 KiB) starts the mapping, so its first 8 bytes are
        // always mapped; the destination is a distinct local array.
        unsafe {
            std::ptr::copy_nonoverlapping(self.raw() as *const u8, signature.as_mut_ptr(), 8)
        };
        signature
    }

    /// The pool-file offset of a pointer into the mapping.
    fn file_offset(&self, ptr: *const u8) -> u64 {
        (ptr as usize - self.raw() as usize) as u64
    }

    /// Copies `len` bytes between two disjoint ranges of the pool file inside the kernel
    /// (copy_file_range), so neither range needs mapping in. False when the pool has no
    /// such file or the kernel declines, even part way: the caller then copies the whole
    /// range through the mapping, which rewrites any copied part with the same bytes.
    fn copy_within_file(&self, src: *const u8, dst: *const u8, len: usize) -> bool {
        use std::os::fd::AsRawFd;
        let Some(file) = self.writable_file() else {
            return false;
        };
        let fd = file.as_raw_fd();
        let (mut from, mut to) = (self.file_offset(src) as i64, self.file_offset(dst) as i64);
        let mut left = len;
        while left > 0 {
            // SAFETY: fd is our open pool file; from and to are valid offset pointers that
            // the kernel advances; the ranges are disjoint and inside the file.
            let n = unsafe { libc::copy_file_range(fd, &mut from, fd, &mut to, left, 0) };
            if n <= 0 {
                tracing::debug!(
                    "copy_file_range in the pool: {}",
                    std::io::Error::last_os_error()
                );
                return false;
            }
            left -= n as usize;
        }
        true
    }

    /// The pool file, if it is open for writing.
    fn writable_file(&self) -> Option<&std::fs::File> {
        self.file.as_ref().filter(|_| self.file_writable)
    }

    /// Writes `data` to the pool file at the offset `ptr` maps. Writing through the file
    /// fills pages the mapping has not touched yet without a page fault per 4 KiB page,
    /// which makes filling fresh regions (new data, growth copies) about three times
    /// faster on page-cache backed pools. False when the pool has no such file.
    fn write_through_file(&self, ptr: *const u8, data: &[u8]) -> bool {
        use std::os::unix::fs::FileExt;
        let Some(file) = self.writable_file() else {
            return false;
        };
        match file.write_all_at(data, self.file_offset(ptr)) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("pool write through the file: {e}; using the mapping");
                false
            }
        }
    }

    /// Runs libpmemobj's consistency check on a pool that is not open.
    /// Ok(true): consistent; Ok(false): inconsistent.
    pub fn check(path: &Path) -> Result<bool> {
        let cpath = c_path(path)?;
        // SAFETY: cpath is a valid NUL-terminated string; a NULL layout skips the check.
        match unsafe { ffi::pmemobj_check(cpath.as_ptr(), std::ptr::null()) } {
            1 => Ok(true),
            0 => Ok(false),
            _ => Err(PmemError::last("pmemobj_check")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn raw(&self) -> *mut PMEMobjpool {
        self.pop.as_ptr()
    }

    /// The root object, if the pool has one.
    pub fn root(&self) -> Option<Oid> {
        // SAFETY: self.pop is an open pool.
        let size = unsafe { ffi::pmemobj_root_size(self.raw()) };
        if size == 0 {
            return None;
        }
        self.root_with_size(size).ok()
    }

    /// The root object, created (zeroed) or grown to at least `size` bytes.
    pub fn root_with_size(&self, size: usize) -> Result<Oid> {
        // SAFETY: self.pop is an open pool; pmemobj_root allocates or returns the root.
        let oid = Oid::from_raw(unsafe { ffi::pmemobj_root(self.raw(), size) });
        if oid.is_null() {
            return Err(PmemError::last("pmemobj_root"));
        }
        Ok(oid)
    }

    /// Atomically allocates an object outside any transaction (Warabi's region create).
    pub fn alloc(&self, size: u64, type_num: u64) -> Result<Oid> {
        if size == 0 || size > MAX_ALLOC_SIZE {
            return Err(PmemError::with_errno("pmemobj_alloc", libc::EFBIG));
        }
        let mut raw = pmdk_sys::PMEMoid::default();
        // SAFETY: self.pop is open; raw is a valid out pointer; no constructor is given.
        let rc = unsafe {
            sys::pmemobj_alloc(
                self.raw(),
                &mut raw,
                size as usize,
                type_num,
                None,
                std::ptr::null_mut(),
            )
        };
        if rc != 0 {
            return Err(PmemError::last("pmemobj_alloc"));
        }
        Ok(Oid::from_raw(raw))
    }

    /// Whether libpmemobj would give an object of `size` bytes now: the allocator
    /// reserves one (`pmemobj_xreserve`), which writes nothing durable, and the
    /// reservation is cancelled at once (`pmemobj_cancel`). While it is held, other
    /// allocations see that space taken; callers keep them out meanwhile.
    pub fn can_reserve(&self, size: u64) -> bool {
        if size == 0 || size > MAX_ALLOC_SIZE {
            return false;
        }
        let mut action = ffi::PobjAction::empty();
        // SAFETY: self.pop is open; action is a valid, writable pobj_action that lives
        // until the reservation is cancelled below; no flags are passed.
        let raw = unsafe { ffi::pmemobj_xreserve(self.raw(), &mut action, size as usize, 0, 0) };
        if Oid::from_raw(raw).is_null() {
            return false;
        }
        // SAFETY: action holds the one reservation just made on this pool.
        unsafe { ffi::pmemobj_cancel(self.raw(), &mut action, 1) };
        true
    }

    /// Atomically frees an object outside any transaction (Warabi's erase).
    pub fn free(&self, oid: Oid) {
        if !self.owns(oid) {
            return;
        }
        let mut raw = oid.to_raw();
        // SAFETY: oid belongs to this open pool; pmemobj_free ignores OID_NULL.
        unsafe { sys::pmemobj_free(&mut raw) };
    }

    /// The object of this pool at offset `off`.
    pub fn oid_at(&self, off: u64) -> Oid {
        Oid {
            pool_uuid_lo: self.uuid_lo,
            off,
        }
    }

    /// Whether `oid` carries this pool's uuid and is not null.
    pub fn owns(&self, oid: Oid) -> bool {
        !oid.is_null() && oid.pool_uuid_lo == self.uuid_lo
    }

    /// The bytes an object can hold (`pmemobj_alloc_usable_size`).
    pub fn usable_size(&self, oid: Oid) -> u64 {
        if !self.owns(oid) {
            return 0;
        }
        // SAFETY: oid belongs to this open pool.
        unsafe { sys::pmemobj_alloc_usable_size(oid.to_raw()) as u64 }
    }

    /// The type number an object was allocated with.
    pub fn type_num(&self, oid: Oid) -> u64 {
        // SAFETY: oid belongs to this open pool (checked by the caller through `objects`).
        unsafe { sys::pmemobj_type_num(oid.to_raw()) }
    }

    /// Every allocated object of the pool (the root object excluded), in pool order.
    pub fn objects(&self) -> Objects<'_> {
        // SAFETY: self.pop is an open pool.
        let first = Oid::from_raw(unsafe { sys::pmemobj_first(self.raw()) });
        Objects {
            pool: self,
            next: first,
        }
    }

    /// Address of byte `off` of `oid`, checked to leave `len` bytes inside the object.
    fn address(&self, oid: Oid, off: u64, len: usize) -> *mut u8 {
        let capacity = self.usable_size(oid);
        assert!(
            off.checked_add(len as u64)
                .is_some_and(|end| end <= capacity),
            "pmem access {off}+{len} outside object {oid} of {capacity} bytes"
        );
        // SAFETY: oid belongs to this pool (usable_size checked it) and off+len lies
        // within the object, so the resulting pointer stays inside the pool mapping.
        unsafe { (sys::pmemobj_direct(oid.to_raw()) as *mut u8).add(off as usize) }
    }

    /// Copies `len` bytes of the mapping at `src` into `buf`, which must hold them.
    fn copy_out(src: *const u8, buf: &mut [u8]) {
        // SAFETY: callers get `src` from address() (or the object's own start with its
        // usable size), so `buf.len()` bytes from it lie inside the pool mapping, which
        // outlives &self; `buf` is a distinct Rust slice, so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
    }

    /// A copy of `len` bytes of an object from `off` (for checks and tests; the file
    /// system reads into buffers of its own).
    pub fn bytes(&self, oid: Oid, off: u64, len: usize) -> Vec<u8> {
        let mut copy = vec![0u8; len];
        self.read_into(oid, off, &mut copy);
        copy
    }

    /// Copies the first bytes of an object into `buf`, as many as both hold (the
    /// object's usable size or `buf.len()`, whichever is less); returns how many. One
    /// lookup of the object's size, for records read whole.
    pub fn read_prefix(&self, oid: Oid, buf: &mut [u8]) -> usize {
        let len = (self.usable_size(oid) as usize).min(buf.len());
        if len > 0 {
            // SAFETY: oid belongs to this pool (usable_size checked it, else len is 0).
            let src = unsafe { sys::pmemobj_direct(oid.to_raw()) as *const u8 };
            Self::copy_out(src, &mut buf[..len]);
        }
        len
    }

    /// Copies the bytes from an object's start into `buf`, as many as `buf` holds or the
    /// pool has from there (the bytes past the object's end belong to what follows it);
    /// returns how many. For records read again after the mount, one at a time: through
    /// the pool file when there is one, so that the pages they sit on are not mapped into
    /// the daemon (listing a million files would otherwise keep the record pages of all
    /// of them resident, a few hundred MiB). Without a file, the first bytes the object
    /// holds are copied from the mapping as by [`Pool::read_prefix`].
    pub fn read_start(&self, oid: Oid, buf: &mut [u8]) -> usize {
        use std::os::unix::fs::FileExt;
        if let Some(file) = self.file.as_ref().filter(|_| self.owns(oid)) {
            let mut filled = 0;
            while filled < buf.len() {
                match file.read_at(&mut buf[filled..], oid.off + filled as u64) {
                    Ok(0) => return filled,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::debug!("reading a record through the pool file: {e}");
                        return self.read_prefix(oid, buf);
                    }
                }
            }
            return filled;
        }
        self.read_prefix(oid, buf)
    }

    /// Copies all the bytes an object can hold (its usable size) into `buf`, replacing
    /// what it held; `buf` keeps its allocation from one object to the next.
    /// One lookup of the object's size: at mount this runs once per record of the pool.
    pub fn read_object(&self, oid: Oid, buf: &mut Vec<u8>) {
        let len = self.usable_size(oid) as usize;
        buf.clear();
        buf.resize(len, 0);
        if len > 0 {
            // SAFETY: oid belongs to this pool (usable_size checked it, else len is 0).
            let src = unsafe { sys::pmemobj_direct(oid.to_raw()) as *const u8 };
            Self::copy_out(src, buf);
        }
    }

    /// Hands `with` a copy of `len` bytes of an object from `off`, in a buffer of this
    /// thread's (made once, and again only for a larger read), so a reply can be sent
    /// from it without an allocation per read. Large ranges are read from the pool file,
    /// since bringing pages into the mapping costs a page-table update per 4 KiB page
    /// the first time, more than copying them; the mapping serves small reads, and any
    /// read the file cannot. A `with` that reads the pool again gets a buffer of its own.
    pub fn read_with<R>(&self, oid: Oid, off: u64, len: usize, with: impl FnOnce(&[u8]) -> R) -> R {
        thread_local! {
            static READ_BUFFER: std::cell::Cell<Option<HugeBuffer>> = const { std::cell::Cell::new(None) };
        }
        if len == 0 {
            return with(&[]);
        }
        let src = self.address(oid, off, len);
        // A copy from the mapping lands at the source's offset within its page: the
        // bytes then sit as they sat in the pool, so the next copy (to the kernel or a
        // caller's buffer) meets the same alignment it met when it read the mapping.
        // (x86 copies run several times slower when the destination lies a little
        // past the source modulo 4 KiB.)
        let phase = match len >= FILE_IO_MIN {
            true => 0,
            false => src as usize % PAGE_SIZE,
        };
        let mut buffer = READ_BUFFER
            .take()
            .filter(|b| b.len() >= phase + len)
            .or_else(|| HugeBuffer::new(phase + len));
        let result = match buffer.as_mut() {
            Some(buffer) => {
                let buf = &mut buffer.slice_mut(phase + len)[phase..];
                self.read_from(src, buf);
                with(buf)
            }
            // Out of memory for the buffer: an ordinary allocation of just `len`.
            None => with(&self.bytes(oid, off, len)),
        };
        READ_BUFFER.set(buffer);
        result
    }

    /// Copies `buf.len()` bytes of an object at `off` into `buf`: from the pool file for
    /// large reads (see [`Pool::read_with`]), else from the mapping.
    pub fn read_into(&self, oid: Oid, off: u64, buf: &mut [u8]) {
        if buf.is_empty() {
            return;
        }
        let src = self.address(oid, off, buf.len());
        self.read_from(src, buf);
    }

    /// Copies `buf.len()` bytes of the mapping at `src` (from address()) into `buf`.
    fn read_from(&self, src: *const u8, buf: &mut [u8]) {
        use std::os::unix::fs::FileExt;
        if let Some(file) = self.file.as_ref().filter(|_| buf.len() >= FILE_IO_MIN) {
            if file.read_exact_at(buf, self.file_offset(src)).is_ok() {
                return;
            }
        }
        Self::copy_out(src, buf);
    }

    /// Copies `data` into an object at `off` without persisting it.
    pub fn write(&self, oid: Oid, off: u64, data: &[u8]) {
        self.write_from(oid, off, data, FILE_IO_MIN);
    }

    /// As [`Pool::write`], into an object allocated just now, in the running
    /// transaction (see NEW_OBJECT_FILE_IO_MIN).
    pub fn write_new(&self, oid: Oid, off: u64, data: &[u8]) {
        self.write_from(oid, off, data, NEW_OBJECT_FILE_IO_MIN)
    }

    /// Copies `data` into an object at `off`, through the pool file from `file_io_min`
    /// bytes on when the file can take it, else through the mapping.
    fn write_from(&self, oid: Oid, off: u64, data: &[u8], file_io_min: usize) {
        if data.is_empty() {
            return;
        }
        let ptr = self.address(oid, off, data.len());
        if data.len() >= file_io_min && self.write_through_file(ptr, data) {
            return;
        }
        // SAFETY: the destination range lies inside the object (checked by address()); the
        // source is a distinct Rust slice, so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), ptr, data.len()) };
    }

    /// Copies `len` bytes between two objects (or within one, ranges may overlap).
    pub fn copy(&self, from: Oid, from_off: u64, to: Oid, to_off: u64, len: usize) {
        if len == 0 {
            return;
        }
        let src = self.address(from, from_off, len);
        let dst = self.address(to, to_off, len);
        let disjoint = (src as usize + len <= dst as usize) || (dst as usize + len <= src as usize);
        if disjoint && len >= FILE_IO_MIN && self.copy_within_file(src, dst, len) {
            return;
        }
        // SAFETY: both ranges lie inside objects of this pool (checked by address());
        // ptr::copy allows overlap.
        unsafe { std::ptr::copy(src, dst, len) };
    }

    /// Zeroes `len` bytes of an object at `off` without persisting them.
    pub fn zero(&self, oid: Oid, off: u64, len: usize) {
        if len == 0 {
            return;
        }
        let ptr = self.address(oid, off, len);
        // SAFETY: the range lies inside the object (checked by address()).
        unsafe { std::ptr::write_bytes(ptr, 0, len) };
    }

    /// Flushes a range of an object to persistence and waits for it (`pmemobj_persist`).
    pub fn persist(&self, oid: Oid, off: u64, len: usize) {
        self.flush(oid, off, len);
        self.drain();
    }

    /// Flushes a range without waiting; call [`Pool::drain`] after a batch.
    pub fn flush(&self, oid: Oid, off: u64, len: usize) {
        if len == 0 {
            return;
        }
        let ptr = self.address(oid, off, len);
        // SAFETY: the range lies inside the pool mapping (checked by address()).
        unsafe { sys::pmemobj_flush(self.raw(), ptr as *const libc::c_void, len) };
    }

    /// Waits for every flush issued before.
    pub fn drain(&self) {
        // SAFETY: self.pop is an open pool.
        unsafe { sys::pmemobj_drain(self.raw()) };
    }

    /// Drops the pool's pages from this process's resident set (MADV_DONTNEED on the
    /// shared mapping of its `len` bytes): the data stays in the pool's files and comes
    /// back on the next access. After a full scan this gives back memory the scan
    /// touched once.
    pub fn release_resident_pages(&self, len: u64) {
        if self.copy_on_write() {
            // A private mapping holds the only copy of our changes: keep every page.
            return;
        }
        let Ok(len) = usize::try_from(len) else {
            return;
        };
        // SAFETY: pop is the page-aligned start of libpmemobj's MAP_SHARED mapping of the
        // pool's address space (len bytes: one file, or a pool set's parts mapped one
        // after the other). MADV_DONTNEED on shared file mappings only drops page-table
        // entries; later accesses refault the files' current contents, so no data
        // changes. A mapping that refuses the advice (device DAX) is left as is.
        let rc =
            unsafe { libc::madvise(self.raw() as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        if rc != 0 {
            tracing::debug!(
                "madvise(MADV_DONTNEED) on the pool: {}",
                std::io::Error::last_os_error()
            );
        }
    }

    /// Whether libpmemobj opened pools copy-on-write (a private mapping whose changes
    /// never reach the file), as PMEMOBJ_CONF="copy_on_write.at_open=1" asks.
    fn copy_on_write(&self) -> bool {
        let mut enabled: libc::c_int = 0;
        let name = c"copy_on_write.at_open";
        // SAFETY: a global ctl query (NULL pool) writing one int into `enabled`; the name
        // is a NUL-terminated literal.
        let rc = unsafe {
            sys::pmemobj_ctl_get(
                std::ptr::null_mut(),
                name.as_ptr(),
                &mut enabled as *mut libc::c_int as *mut libc::c_void,
            )
        };
        // If the query fails, assume the worst and treat the mapping as private.
        rc != 0 || enabled != 0
    }

    /// Starts a transaction on this pool; it aborts unless committed.
    pub fn tx(&self) -> Result<Tx<'_>> {
        Tx::begin(self)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: self.pop is an open pool, closed exactly once here.
        unsafe { sys::pmemobj_close(self.raw()) };
    }
}

/// Iterator over a pool's allocated objects (`pmemobj_first`/`pmemobj_next`).
pub struct Objects<'p> {
    pool: &'p Pool,
    next: Oid,
}

impl Iterator for Objects<'_> {
    type Item = Oid;

    fn next(&mut self) -> Option<Oid> {
        if self.next.is_null() {
            return None;
        }
        let current = self.next;
        // SAFETY: current is a live object of this open pool, returned by first/next.
        self.next = Oid::from_raw(unsafe { sys::pmemobj_next(current.to_raw()) });
        let _ = self.pool;
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_pool() -> (tempfile::TempDir, Pool) {
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let pool = Pool::create(&dir.path().join("pool"), MIN_POOL_SIZE).unwrap();
        (dir, pool)
    }

    #[test]
    fn reads_are_copies_that_later_writes_leave_alone() {
        let (_dir, pool) = small_pool();
        let oid = pool.alloc(100, 0).unwrap();
        pool.write(oid, 0, b"before");
        let copy = pool.bytes(oid, 0, 6);
        pool.write(oid, 0, b"after!");
        assert_eq!(copy, b"before");
        let mut buf = [0u8; 6];
        pool.read_into(oid, 0, &mut buf);
        assert_eq!(&buf, b"after!");
    }

    #[test]
    fn read_prefix_stops_at_the_object_or_the_buffer() {
        let (_dir, pool) = small_pool();
        let oid = pool.alloc(64, 0).unwrap();
        let usable = pool.usable_size(oid) as usize;
        let mut big = vec![1u8; usable + 100];
        assert_eq!(pool.read_prefix(oid, &mut big), usable);
        let mut small = [1u8; 8];
        assert_eq!(pool.read_prefix(oid, &mut small), 8);
        let mut whole = vec![7u8; 3];
        pool.read_object(oid, &mut whole);
        assert_eq!(whole.len(), usable);
    }

    #[test]
    fn read_start_sees_what_the_mapping_holds_without_mapping_it() {
        let (_dir, pool) = small_pool();
        assert!(
            pool.file.is_some(),
            "a one-file pool is read through its file"
        );
        let oid = pool.alloc(64, 0).unwrap();
        pool.write(oid, 0, b"first record");
        let mut buf = [0u8; 12];
        assert_eq!(pool.read_start(oid, &mut buf), 12);
        assert_eq!(&buf, b"first record");
        // A later change through the mapping (as transactions make) is what the next read
        // sees: the file and the shared mapping are the same pages.
        pool.write(oid, 0, b"later");
        assert_eq!(pool.read_start(oid, &mut buf), 12);
        assert_eq!(&buf[..5], b"later");
        // Past the object's end it reads on, up to the buffer; never past the pool file.
        let mut past = vec![0u8; pool.usable_size(oid) as usize + 100];
        assert_eq!(pool.read_start(oid, &mut past), past.len());
        let last = pool.oid_at(std::fs::metadata(pool.path()).unwrap().len() - 4);
        assert_eq!(pool.read_start(last, &mut buf), 4);
    }

    /// Page faults this thread has taken.
    fn thread_minor_faults() -> i64 {
        // SAFETY: getrusage fills the zeroed struct it is given; RUSAGE_THREAD counts
        // the calling thread only.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) },
            0
        );
        usage.ru_minflt
    }

    /// On a /dev/shm of 4 KiB pages (shmem huge pages off, as they are by default).
    #[test]
    fn a_new_object_is_filled_through_the_file_without_faulting_its_pages_in() {
        let (_dir, pool) = small_pool();
        let len = FILE_IO_MIN - 8192;
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 | 1).collect();
        let (mapped, filed) = (
            pool.alloc(len as u64, 0).unwrap(),
            pool.alloc(len as u64, 0).unwrap(),
        );
        let before = thread_minor_faults();
        pool.write(mapped, 0, &data);
        let through_mapping = thread_minor_faults() - before;
        let before = thread_minor_faults();
        pool.write_new(filed, 0, &data);
        let through_file = thread_minor_faults() - before;
        assert!(
            through_mapping >= 8,
            "the mapping took only {through_mapping} faults"
        );
        assert!(
            through_file < 4,
            "{through_file} faults for a write through the file"
        );
        assert_eq!(pool.bytes(filed, 0, len), data);
        assert_eq!(pool.bytes(mapped, 0, len), data);
        // Under a page it stays in the mapping, where the object's header already is.
        pool.write_new(filed, 5, b"small");
        assert_eq!(pool.bytes(filed, 0, 10), [&data[..5], b"small"].concat());
    }

    #[test]
    fn a_read_inside_a_read_gets_its_own_buffer() {
        let (_dir, pool) = small_pool();
        let a = pool.alloc(FILE_IO_MIN as u64 * 2, 0).unwrap();
        let b = pool.alloc(16, 0).unwrap();
        pool.write(a, 0, &vec![b'a'; FILE_IO_MIN * 2]);
        pool.write(b, 0, b"bbbb");
        let (outer, inner) = pool.read_with(a, 0, FILE_IO_MIN * 2, |outer| {
            let inner = pool.read_with(b, 0, 4, <[u8]>::to_vec);
            (outer.to_vec(), inner)
        });
        assert!(outer.iter().all(|&x| x == b'a'));
        assert_eq!(inner, b"bbbb");
        assert_eq!(pool.read_with(b, 0, 0, <[u8]>::len), 0);
    }
}
