//! One queue of FUSE-over-io_uring: its ring entries (buffers the kernel writes
//! requests into and reads replies from), its io_uring, and the loop of the thread that
//! serves it.
//!
//! The life of an entry: REGISTER hands the kernel its two buffers; the completion of
//! that command (or of a COMMIT_AND_FETCH) says a request is in them; the thread serves
//! it, writes the reply into the same buffers and submits COMMIT_AND_FETCH, which sends
//! the reply and waits for the next request. Between submission and completion the
//! kernel owns the buffers, so the thread touches an entry's memory only in between.

use std::os::fd::{AsRawFd, RawFd};

use nix::sys::eventfd::{EfdFlags, EventFd};
use std::sync::Arc;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use std::sync::mpsc::{channel, Receiver, Sender};

use parking_lot::Mutex;

use super::abi::{
    encode_out_header, serve, InHeader, Late, LateSender, Request, Served, IN_HEADER_LEN,
};
use super::priority::CommitPriority;
use crate::fs::Errno;
use crate::fuse::ops::Operations;

/// FUSE_IO_URING_CMD_REGISTER and FUSE_IO_URING_CMD_COMMIT_AND_FETCH.
const CMD_REGISTER: u32 = 1;
const CMD_COMMIT_AND_FETCH: u32 = 2;

/// `struct fuse_uring_req_header`: the in/out header area, the operation header area,
/// and `struct fuse_uring_ent_in_out`.
const IN_OUT_AREA: usize = 128;
const OP_AREA: usize = 128;
const HEADER_LEN: usize = IN_OUT_AREA + OP_AREA + 32;
/// Offsets in `fuse_uring_ent_in_out`: commit_id, then payload_sz.
const COMMIT_ID_AT: usize = IN_OUT_AREA + OP_AREA + 8;
const PAYLOAD_SZ_AT: usize = COMMIT_ID_AT + 8;

/// The completion of the stop eventfd's poll, not of an entry.
const STOP_TOKEN: u64 = u64::MAX;
/// The completion of the poll of the eventfd that says late replies have come.
const WAKE_TOKEN: u64 = u64::MAX - 1;

/// A buffer the kernel reads and writes while it owns it: an anonymous mapping of its
/// own (zero pages until first written, so an entry costs memory only once a request
/// needs it), that no Rust reference covers while the kernel may touch it.
struct SharedBuf {
    ptr: *mut u8,
    len: usize,
}

impl SharedBuf {
    fn new(len: usize) -> std::io::Result<SharedBuf> {
        // SAFETY: a new private anonymous mapping; no existing memory is affected and
        // the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SharedBuf {
            ptr: ptr.cast(),
            len,
        })
    }

    fn len(&self) -> usize {
        self.len
    }

    /// The buffer, while the kernel does not own it.
    ///
    /// # Safety
    /// The entry must not be registered with the kernel (between the completion of its
    /// last command and the submission of its next), and no other slice of it may live.
    unsafe fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: ptr points to len bytes mapped for this buffer alone; the caller
        // guarantees the kernel is not writing them and nothing else aliases them.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for SharedBuf {
    fn drop(&mut self) {
        // SAFETY: ptr and len are the mapping made in new(); the queue frees its entries
        // only after its io_uring is gone, so the kernel holds no pointer into it.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// One ring entry: the header and payload buffers and the iovecs that name them.
struct Entry {
    header: SharedBuf,
    payload: SharedBuf,
    /// Read by the kernel at REGISTER; kept at a stable address until then.
    iov: Box<[libc::iovec; 2]>,
    /// The request being served, for its COMMIT_AND_FETCH.
    commit_id: u64,
    /// Whether the kernel still has a command of this entry (so it is alive).
    live: bool,
}

impl Entry {
    fn new(payload_len: usize) -> std::io::Result<Entry> {
        let header = SharedBuf::new(HEADER_LEN)?;
        let payload = SharedBuf::new(payload_len)?;
        let iov = Box::new([
            libc::iovec {
                iov_base: header.ptr.cast(),
                iov_len: header.len(),
            },
            libc::iovec {
                iov_base: payload.ptr.cast(),
                iov_len: payload.len(),
            },
        ]);
        Ok(Entry {
            header,
            payload,
            iov,
            commit_id: 0,
            live: false,
        })
    }
}

// SAFETY: an Entry's buffers are plain heap memory owned by it alone; it is moved to
// its queue's thread once, before any command of it is submitted.
unsafe impl Send for Entry {}

/// A queue: its io_uring, its entries, and what serves their requests.
pub struct Queue<O: Operations> {
    qid: u16,
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    entries: Vec<Entry>,
    fuse_fd: RawFd,
    stop: Arc<EventFd>,
    ops: Arc<O>,
    /// Completions taken off the ring, kept to spare an allocation per wakeup.
    completed: Vec<(u64, i32)>,
    /// Replies that came after their request was served, and the eventfd that says so.
    late: (Sender<LateReply>, Receiver<LateReply>),
    wake: Arc<EventFd>,
    /// The thread's priority while it commits replies (see priority.rs).
    priority: CommitPriority,
}

/// The 80 bytes of `struct fuse_uring_cmd_req` in the big SQE.
fn cmd_req(qid: u16, commit_id: u64) -> [u8; 80] {
    let mut cmd = [0u8; 80];
    cmd[8..16].copy_from_slice(&commit_id.to_le_bytes());
    cmd[16..18].copy_from_slice(&qid.to_le_bytes());
    cmd
}

/// A REGISTER command: `addr` names the entry's two iovecs and `len` must say 2. The
/// io-uring crate's UringCmd80 has no `len`, so it is set in the built SQE.
fn register_sqe(fd: RawFd, qid: u16, iov: *const libc::iovec, token: u64) -> squeue::Entry128 {
    let sqe = opcode::UringCmd80::new(types::Fd(fd), CMD_REGISTER)
        .cmd(cmd_req(qid, 0))
        .addr(Some(iov as u64))
        .build()
        .user_data(token);
    // SAFETY: Entry128 is #[repr(C)] over the kernel's 128-byte io_uring_sqe (a 64-byte
    // sqe and 64 bytes of command), and every bit pattern is a valid [u8; 128] and back.
    let mut raw: [u8; 128] = unsafe { std::mem::transmute(sqe) };
    // io_uring_sqe.len is the u32 at byte 24.
    raw[24..28].copy_from_slice(&2u32.to_le_bytes());
    // SAFETY: as above; only the len field changed.
    unsafe { std::mem::transmute::<[u8; 128], squeue::Entry128>(raw) }
}

fn commit_sqe(fd: RawFd, qid: u16, commit_id: u64, token: u64) -> squeue::Entry128 {
    opcode::UringCmd80::new(types::Fd(fd), CMD_COMMIT_AND_FETCH)
        .cmd(cmd_req(qid, commit_id))
        .build()
        .user_data(token)
}

impl<O: Operations> Queue<O> {
    /// Sets up queue `qid` with `depth` entries of `payload_len` bytes of payload.
    pub fn new(
        qid: u16,
        depth: usize,
        payload_len: usize,
        fuse_fd: RawFd,
        stop: Arc<EventFd>,
        ops: Arc<O>,
        priority: CommitPriority,
    ) -> std::io::Result<Queue<O>> {
        // One SQE per entry and one per poll; completions never outnumber them.
        let sq = (depth + 2).next_power_of_two() as u32;
        let ring = IoUring::builder().setup_cqsize(sq * 2).build(sq)?;
        let entries = (0..depth)
            .map(|_| Entry::new(payload_len))
            .collect::<std::io::Result<_>>()?;
        Ok(Queue {
            qid,
            ring,
            entries,
            fuse_fd,
            stop,
            ops,
            completed: Vec::with_capacity(depth + 2),
            late: channel(),
            wake: Arc::new(EventFd::from_flags(
                EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
            )?),
            priority,
        })
    }

    /// Registers every entry and serves requests until the connection ends or the stop
    /// eventfd is written. Returns why it stopped, for the log.
    pub fn serve(mut self) -> String {
        let stop_poll = opcode::PollAdd::new(types::Fd(self.stop.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(STOP_TOKEN)
            .into();
        if let Err(e) = self
            .push(stop_poll)
            .and_then(|()| self.watch_late_replies())
        {
            return format!("cannot watch for the stop signal: {e}");
        }
        for token in 0..self.entries.len() {
            self.register(token);
        }
        self.priority.on_this_thread();
        loop {
            if let Err(e) = self.submit_commits() {
                return format!("io_uring_enter failed: {e}");
            }
            // A caller woken by a commit has mostly made its next request by the time
            // this thread runs again: then there is no need to enter the kernel to wait.
            if self.ring.completion().is_empty() {
                self.priority.before_sleep();
                match self.ring.submit_and_wait(1) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                    Err(e) => return format!("io_uring_enter failed: {e}"),
                }
            }
            let mut completed = std::mem::take(&mut self.completed);
            completed.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
            for &(token, result) in &completed {
                match token {
                    STOP_TOKEN => return "stopped".to_string(),
                    WAKE_TOKEN => {
                        self.commit_late_replies();
                        if let Err(e) = self.watch_late_replies() {
                            return format!("cannot watch for late replies: {e}");
                        }
                    }
                    _ => self.complete(token as usize, result),
                }
            }
            completed.clear();
            self.completed = completed;
            if self.entries.iter().all(|e| !e.live) {
                return "the kernel ended the connection".to_string();
            }
        }
    }

    /// Submits what the last round queued (mostly commits of replies) at idle priority,
    /// so that the callers they wake run on this CPU (see priority.rs).
    fn submit_commits(&mut self) -> std::io::Result<()> {
        if self.ring.submission().is_empty() {
            return Ok(());
        }
        self.priority.lower();
        let submitted = loop {
            match self.ring.submit() {
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                other => break other,
            }
        };
        self.priority.resumed();
        submitted.map(|_| ())
    }

    /// Polls the eventfd that says late replies have come (once: re-armed after each).
    fn watch_late_replies(&mut self) -> Result<(), String> {
        let poll = opcode::PollAdd::new(types::Fd(self.wake.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(WAKE_TOKEN)
            .into();
        self.push(poll)
    }

    fn push(&mut self, sqe: squeue::Entry128) -> Result<(), String> {
        // SAFETY: every buffer an SQE of this queue names (an entry's iovecs and the
        // buffers they point to) lives in `self.entries` until the ring is dropped.
        unsafe { self.ring.submission().push(&sqe) }
            .map_err(|_| "the submission queue is full".to_string())
    }

    fn register(&mut self, token: usize) {
        let entry = &mut self.entries[token];
        let sqe = register_sqe(self.fuse_fd, self.qid, entry.iov.as_ptr(), token as u64);
        entry.live = true;
        if let Err(e) = self.push(sqe) {
            tracing::error!("queue {}: cannot register an entry: {e}", self.qid);
            self.entries[token].live = false;
        }
    }

    /// One command of entry `token` completed with `result`.
    fn complete(&mut self, token: usize, result: i32) {
        if token >= self.entries.len() {
            tracing::error!("queue {}: completion of unknown entry {token}", self.qid);
            return;
        }
        match -result {
            0 => self.answer(token),
            // The kernel was not ready (INIT not processed yet) or was interrupted.
            libc::EAGAIN | libc::EINTR => {
                let entry = &self.entries[token];
                let sqe = match entry.commit_id {
                    0 => register_sqe(self.fuse_fd, self.qid, entry.iov.as_ptr(), token as u64),
                    id => commit_sqe(self.fuse_fd, self.qid, id, token as u64),
                };
                if self.push(sqe).is_err() {
                    self.entries[token].live = false;
                }
            }
            errno => {
                // ENOTCONN and ECONNABORTED: unmounted or aborted; the entry is gone.
                if !matches!(errno, libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED) {
                    tracing::warn!(
                        "queue {}: ring command failed: {}",
                        self.qid,
                        std::io::Error::from_raw_os_error(errno)
                    );
                }
                self.entries[token].live = false;
            }
        }
    }

    /// Serves the request now in entry `token` and commits its reply, or leaves the
    /// entry waiting for a reply that comes later.
    fn answer(&mut self, token: usize) {
        // Made only for the operations whose reply may come later (open, setattr), so
        // that other requests allocate nothing.
        let mut slot = None;
        let (replies, wake) = (&self.late.0, &self.wake);
        let mut later = || {
            let slot = slot.get_or_insert_with(|| Arc::new(Mutex::new(LateSlot::Serving)));
            late_sender(token, slot, replies, wake)
        };
        let entry = &mut self.entries[token];
        // SAFETY: the command of this entry just completed, so the kernel does not own
        // its buffers until the commit of its reply is submitted; these are the only
        // slices of them.
        let (header, payload) = unsafe { (entry.header.bytes(), entry.payload.bytes()) };
        entry.commit_id = read_u64(header, COMMIT_ID_AT);
        let in_len = read_u32(header, PAYLOAD_SZ_AT) as usize;
        let served = InHeader::parse(&header[..IN_HEADER_LEN]).and_then(|in_header| {
            let request = Request {
                header: in_header,
                op: &header[IN_OUT_AREA..IN_OUT_AREA + OP_AREA],
            };
            serve(&*self.ops, &request, payload, in_len, &mut later)
        });
        match served {
            Ok(Served::Now(len)) => self.commit(token, Ok(len)),
            Ok(Served::Read {
                ino,
                offset,
                size,
                replied,
            }) => {
                self.commit(token, Ok(replied));
                // What follows a read (a read push) may touch the pages the reply fills:
                // hand the reply to the kernel first.
                if let Err(e) = self.ring.submit() {
                    tracing::debug!("queue {}: submitting a read reply: {e}", self.qid);
                }
                self.ops.read_answered(ino, offset, size, replied);
            }
            Err(e) => self.commit(token, Err(log_unusual(e))),
            Ok(Served::Later) => {
                let Some(slot) = slot else {
                    tracing::error!("queue {}: a late reply without its slot", self.qid);
                    return self.commit(token, Err(Errno::EIO));
                };
                let ready = std::mem::replace(&mut *slot.lock(), LateSlot::Waiting);
                // Most replies are ready before serve returns: commit at once.
                if let LateSlot::Ready(late) = ready {
                    self.commit_late(token, late);
                }
            }
        }
    }

    /// Commits the late replies that have come in.
    fn commit_late_replies(&mut self) {
        let _ = self.wake.read();
        while let Ok((token, late)) = self.late.1.try_recv() {
            self.commit_late(token, late);
        }
    }

    fn commit_late(&mut self, token: usize, late: Late) {
        let entry = &mut self.entries[token];
        // SAFETY: the entry holds a request whose reply has not been committed, so the
        // kernel does not own its buffers; this is the only slice of the payload.
        let payload = unsafe { entry.payload.bytes() };
        let result = late.encode(payload);
        self.commit(token, result);
    }

    /// Writes the reply header of entry `token` and submits its COMMIT_AND_FETCH.
    fn commit(&mut self, token: usize, result: Result<usize, Errno>) {
        let entry = &mut self.entries[token];
        // SAFETY: as in commit_late: the kernel gets the buffers back with the commit.
        let header = unsafe { entry.header.bytes() };
        let replied = *result.as_ref().unwrap_or(&0);
        // The request's unique is its commit id.
        encode_out_header(&mut header[..IN_OUT_AREA], entry.commit_id, result);
        header[PAYLOAD_SZ_AT..PAYLOAD_SZ_AT + 4].copy_from_slice(&(replied as u32).to_le_bytes());
        let sqe = commit_sqe(self.fuse_fd, self.qid, entry.commit_id, token as u64);
        if let Err(e) = self.push(sqe) {
            tracing::error!("queue {}: cannot commit a reply: {e}", self.qid);
            self.entries[token].live = false;
        }
    }
}

/// Where a reply that may come later goes: into `slot` while the request is being
/// served, else to this queue's thread, woken through its eventfd.
fn late_sender(
    token: usize,
    slot: &Arc<Mutex<LateSlot>>,
    replies: &Sender<LateReply>,
    wake: &Arc<EventFd>,
) -> LateSender {
    let (slot, replies, wake) = (Arc::clone(slot), replies.clone(), Arc::clone(wake));
    Box::new(move |late| {
        let mut state = slot.lock();
        match *state {
            LateSlot::Serving => *state = LateSlot::Ready(late),
            _ => {
                drop(state);
                if replies.send((token, late)).is_ok() {
                    let _ = wake.write(1);
                }
            }
        }
    })
}

/// A late reply and the entry it answers.
type LateReply = (usize, Late);

/// Where a reply that may come later is, for the entry waiting for it.
enum LateSlot {
    /// The request is being served: a reply now is committed when serve returns.
    Serving,
    Ready(Late),
    /// serve returned without it: the reply goes to the queue's thread.
    Waiting,
}

/// Errors of requests the ring could not parse are worth a line; the request layer
/// logs its own.
fn log_unusual(e: Errno) -> Errno {
    if e == Errno::EINVAL {
        tracing::debug!("ring request answered with EINVAL");
    }
    e
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_register_sqe_names_two_iovecs_and_its_queue() {
        let iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 2];
        let sqe = register_sqe(7, 3, iov.as_ptr(), 5);
        // SAFETY: as in register_sqe: a repr(C) 128-byte entry viewed as bytes.
        let raw: [u8; 128] = unsafe { std::mem::transmute(sqe) };
        assert_eq!(raw[0], io_uring::opcode::UringCmd80::CODE);
        assert_eq!(i32::from_le_bytes(raw[4..8].try_into().unwrap()), 7);
        assert_eq!(
            u64::from_le_bytes(raw[16..24].try_into().unwrap()),
            iov.as_ptr() as u64
        );
        assert_eq!(u32::from_le_bytes(raw[24..28].try_into().unwrap()), 2);
        assert_eq!(u64::from_le_bytes(raw[32..40].try_into().unwrap()), 5);
        // The command starts at byte 48: flags, commit_id, qid.
        assert_eq!(u16::from_le_bytes(raw[64..66].try_into().unwrap()), 3);
    }
}
