//! libpmemobj transactions as an RAII guard: a transaction that is not committed is
//! aborted when dropped, so an early `?` return can never leave half a change behind.

use std::marker::PhantomData;

use super::ffi;
use super::{Oid, PmemError, Pool, Result, MAX_ALLOC_SIZE};

/// How a transactional allocation is initialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxAlloc {
    /// Zeroed and flushed at commit (metadata records).
    Zeroed,
    /// Left as is and not flushed at commit: the caller fills and persists what it uses
    /// (file data, whose unused tail is never read).
    Unflushed,
}

/// A running transaction on one pool. libpmemobj keeps transaction state per thread, so a
/// `Tx` cannot move to another thread.
pub struct Tx<'p> {
    pool: &'p Pool,
    finished: bool,
    _per_thread: PhantomData<*const ()>,
}

impl<'p> Tx<'p> {
    pub(super) fn begin(pool: &'p Pool) -> Result<Tx<'p>> {
        // SAFETY: the pool is open; a NULL jmp_buf makes failing calls return an error
        // instead of longjmp-ing; the variadic list is terminated by TX_PARAM_NONE.
        let rc =
            unsafe { ffi::pmemobj_tx_begin(pool.raw(), std::ptr::null_mut(), ffi::TX_PARAM_NONE) };
        if rc != 0 {
            // A failed begin still has to be ended to release the thread's tx state.
            // SAFETY: pmemobj_tx_end is valid after a failed pmemobj_tx_begin.
            unsafe { ffi::pmemobj_tx_end() };
            return Err(PmemError::with_errno("pmemobj_tx_begin", rc));
        }
        Ok(Tx {
            pool,
            finished: false,
            _per_thread: PhantomData,
        })
    }

    /// Snapshots a range of an object so that the transaction can undo changes to it.
    pub fn add_range(&mut self, oid: Oid, off: u64, len: usize) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        // Bounds check through the pool (panics on a range outside the object).
        let _ = self.pool.address(oid, off, len);
        // SAFETY: a transaction is running on this thread and the range lies in an object
        // of its pool.
        let rc = unsafe { ffi::pmemobj_tx_add_range(oid.to_raw(), off, len) };
        if rc != 0 {
            return Err(PmemError::with_errno("pmemobj_tx_add_range", rc));
        }
        Ok(())
    }

    /// Snapshots then overwrites a range of an object.
    pub fn write(&mut self, oid: Oid, off: u64, data: &[u8]) -> Result<()> {
        self.add_range(oid, off, data.len())?;
        self.pool.write(oid, off, data);
        Ok(())
    }

    /// Allocates an object that is freed again if the transaction aborts.
    pub fn alloc(&mut self, size: u64, type_num: u64, init: TxAlloc) -> Result<Oid> {
        if size == 0 || size > MAX_ALLOC_SIZE {
            return Err(PmemError::with_errno("pmemobj_tx_xalloc", libc::EFBIG));
        }
        let flags = match init {
            TxAlloc::Zeroed => ffi::POBJ_XALLOC_ZERO,
            TxAlloc::Unflushed => ffi::POBJ_XALLOC_NO_FLUSH,
        };
        // SAFETY: a transaction is running on this thread.
        let oid = Oid::from_raw(unsafe { ffi::pmemobj_tx_xalloc(size as usize, type_num, flags) });
        if oid.is_null() {
            return Err(PmemError::last("pmemobj_tx_xalloc"));
        }
        Ok(oid)
    }

    /// Frees an object when the transaction commits.
    pub fn free(&mut self, oid: Oid) -> Result<()> {
        if !self.pool.owns(oid) {
            return Ok(());
        }
        // SAFETY: a transaction is running on this thread; oid is an object of its pool.
        let rc = unsafe { ffi::pmemobj_tx_free(oid.to_raw()) };
        if rc != 0 {
            return Err(PmemError::with_errno("pmemobj_tx_free", rc));
        }
        Ok(())
    }

    /// Commits: every snapshotted range and allocation is made durable at once.
    pub fn commit(mut self) -> Result<()> {
        self.finished = true;
        // SAFETY: a transaction is running on this thread; if an earlier call failed it is
        // already aborted and commit is skipped by the stage check.
        let rc = unsafe {
            if ffi::pmemobj_tx_stage() == ffi::TX_STAGE_WORK {
                ffi::pmemobj_tx_commit();
            }
            ffi::pmemobj_tx_end()
        };
        if rc != 0 {
            return Err(PmemError::with_errno("pmemobj_tx_commit", rc));
        }
        Ok(())
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // SAFETY: a transaction is running on this thread; it is aborted if still working
        // (an earlier failure has already aborted it) and then ended exactly once.
        unsafe {
            if ffi::pmemobj_tx_stage() == ffi::TX_STAGE_WORK {
                ffi::pmemobj_tx_abort(libc::ECANCELED);
            }
            ffi::pmemobj_tx_end();
        }
    }
}
