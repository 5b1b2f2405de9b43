//! The few libpmemobj calls that pmdk-sys 0.9.4 does not declare: transactions, the root
//! object, reservations and the consistency check. They resolve from the same static libpmemobj that
//! pmdk-sys links.

use libc::{c_char, c_int, c_void};
use pmdk_sys::obj::PMEMobjpool;
use pmdk_sys::PMEMoid;

/// `enum pobj_tx_stage` value of a transaction that is running and may still commit.
pub const TX_STAGE_WORK: c_int = 1;
/// `enum pobj_tx_param` terminator of pmemobj_tx_begin's variadic parameter list.
pub const TX_PARAM_NONE: c_int = 0;
/// `POBJ_XALLOC_NO_FLUSH`: skip flushing a transactionally allocated object at commit;
/// the caller persists exactly the bytes it filled in.
pub const POBJ_XALLOC_NO_FLUSH: u64 = 1 << 1;
/// `POBJ_XALLOC_ZERO`: zero the new object.
pub const POBJ_XALLOC_ZERO: u64 = 1 << 0;

/// `struct pobj_action` (libpmemobj/action_base.h): opaque to callers, 128 bytes.
#[repr(C)]
pub struct PobjAction {
    kind: c_int,
    data: [u32; 3],
    data2: [u64; 14],
}

impl PobjAction {
    pub fn empty() -> PobjAction {
        PobjAction {
            kind: 0,
            data: [0; 3],
            data2: [0; 14],
        }
    }
}

extern "C" {
    pub fn pmemobj_xreserve(
        pop: *mut PMEMobjpool,
        act: *mut PobjAction,
        size: usize,
        type_num: u64,
        flags: u64,
    ) -> PMEMoid;
    pub fn pmemobj_cancel(pop: *mut PMEMobjpool, actv: *mut PobjAction, actvcnt: usize);

    pub fn pmemobj_root(pop: *mut PMEMobjpool, size: usize) -> PMEMoid;
    pub fn pmemobj_root_size(pop: *mut PMEMobjpool) -> usize;

    pub fn pmemobj_tx_begin(pop: *mut PMEMobjpool, env: *mut c_void, ...) -> c_int;
    pub fn pmemobj_tx_stage() -> c_int;
    pub fn pmemobj_tx_add_range(oid: PMEMoid, off: u64, size: usize) -> c_int;
    pub fn pmemobj_tx_xalloc(size: usize, type_num: u64, flags: u64) -> PMEMoid;
    pub fn pmemobj_tx_free(oid: PMEMoid) -> c_int;
    pub fn pmemobj_tx_commit();
    pub fn pmemobj_tx_abort(errnum: c_int);
    pub fn pmemobj_tx_end() -> c_int;

    pub fn pmemobj_check(path: *const c_char, layout: *const c_char) -> c_int;
}
