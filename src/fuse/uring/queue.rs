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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use std::sync::mpsc::{channel, Receiver, Sender};

use parking_lot::Mutex;

use super::abi::{
    encode_out_header, read_size, serve, InHeader, Late, LateSender, Request, Served, IN_HEADER_LEN,
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
/// The completion of the poll of the eventfd that says entries were handed over.
const MAIL_TOKEN: u64 = u64::MAX - 2;

/// A READ of at least this many bytes is a bulk read, served on another queue's CPU
/// (see [`route`]).
const BULK_READ: u32 = 64 << 10;

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
pub struct Entry {
    /// The queue the kernel registered it in, which its commands name whichever
    /// thread serves it.
    qid: u16,
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
    fn new(qid: u16, payload_len: usize) -> std::io::Result<Entry> {
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
            qid,
            header,
            payload,
            iov,
            commit_id: 0,
            live: false,
        })
    }
}

// SAFETY: an Entry's buffers are plain memory owned by it alone. It moves between
// threads only while the kernel does not own them: to its queue's thread before its
// first command, and from one thread to another (see Mailbox) between the completion
// of a command and the submission of the next.
unsafe impl Send for Entry {}

/// Where a thread hands over an entry whose request another thread serves better (see
/// [`route`]), and the eventfd that wakes that thread for it.
pub struct Mailbox {
    entries: Sender<Entry>,
    wake: Arc<EventFd>,
}

/// The mailboxes of every queue of a mount (indexed by queue id), the receiving end of
/// each, and the count of entries the kernel still holds or serves (all queues).
pub struct Post {
    pub boxes: Arc<Vec<Mailbox>>,
    pub inbox: Receiver<Entry>,
    pub live: Arc<AtomicUsize>,
}

/// Makes the mailboxes of `queues` queues: one `Post` per queue, in queue order.
pub fn post_offices(queues: usize) -> std::io::Result<Vec<Post>> {
    let mut boxes = Vec::with_capacity(queues);
    let mut inboxes = Vec::with_capacity(queues);
    for _ in 0..queues {
        let (entries, inbox) = channel();
        let wake = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
        )?);
        boxes.push(Mailbox { entries, wake });
        inboxes.push(inbox);
    }
    let (boxes, live) = (Arc::new(boxes), Arc::new(AtomicUsize::new(0)));
    Ok(inboxes
        .into_iter()
        .map(|inbox| Post {
            boxes: Arc::clone(&boxes),
            inbox,
            live: Arc::clone(&live),
        })
        .collect())
}

/// Which queue's thread serves a request that came in an entry of queue `home`, on the
/// thread of queue `here` (of `queues`): None for this one.
///
/// A request is served on the CPU that made it, except a bulk read: the reader has the
/// pages of the last reply to copy, and the readahead's next request waits behind that
/// copy on its own CPU, while another CPU would fill the entry and the kernel copy it
/// into the page cache meanwhile (over /dev/fuse, which serves on whichever CPU is
/// free, reads were faster than over the rings for want of that). So a bulk read in an
/// entry at home goes to the next queue's thread, and the entry stays there while bulk
/// reads keep coming in it; any other request in an entry away from home goes back
/// to its home thread, which serves it on the caller's CPU.
pub fn route(bulk: bool, home: u16, here: u16, queues: u16) -> Option<u16> {
    match (bulk, home == here) {
        (true, true) if queues > 1 => Some((here + 1) % queues),
        (false, false) => Some(home),
        _ => None,
    }
}

/// A queue: its io_uring, its entries, and what serves their requests.
pub struct Queue<O: Operations> {
    qid: u16,
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    /// The entries this thread holds, by token (the slot): its own queue's, but those
    /// handed to another thread, and other queues' handed to it.
    entries: Vec<Option<Entry>>,
    post: Post,
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
    /// Whether the log has said that this queue's bulk reads go to another thread.
    said_hand_over: bool,
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
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        qid: u16,
        depth: usize,
        payload_len: usize,
        fuse_fd: RawFd,
        stop: Arc<EventFd>,
        ops: Arc<O>,
        priority: CommitPriority,
        post: Post,
    ) -> std::io::Result<Queue<O>> {
        // One SQE per entry this thread may hold (its own, and every entry of the other
        // queues handed to it) and one per poll; completions never outnumber them.
        let most_held = depth * post.boxes.len();
        let sq = (most_held + 3).next_power_of_two() as u32;
        let ring = IoUring::builder().setup_cqsize(sq * 2).build(sq)?;
        let entries = (0..depth)
            .map(|_| Entry::new(qid, payload_len).map(Some))
            .collect::<std::io::Result<_>>()?;
        Ok(Queue {
            qid,
            ring,
            entries,
            post,
            fuse_fd,
            stop,
            ops,
            completed: Vec::with_capacity(depth + 2),
            late: channel(),
            wake: Arc::new(EventFd::from_flags(
                EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
            )?),
            priority,
            said_hand_over: false,
        })
    }

    /// Registers every entry and serves requests until the connection ends or the stop
    /// eventfd is written. Returns why it stopped, for the log.
    pub fn serve(mut self) -> String {
        if let Err(e) = self
            .poll(self.stop.as_raw_fd(), STOP_TOKEN)
            .and_then(|()| self.watch_late_replies())
            .and_then(|()| self.watch_mail())
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
                    MAIL_TOKEN => {
                        self.take_mail();
                        if let Err(e) = self.watch_mail() {
                            return format!("cannot watch for handed-over entries: {e}");
                        }
                    }
                    _ => self.complete(token as usize, result),
                }
            }
            completed.clear();
            self.completed = completed;
            if self.post.live.load(Ordering::SeqCst) == 0 {
                // The other threads may hold no entry to learn it from.
                let _ = self.stop.write(1);
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
        self.poll(self.wake.as_raw_fd(), WAKE_TOKEN)
    }

    /// Polls the eventfd of this thread's mailbox (once: re-armed after each).
    fn watch_mail(&mut self) -> Result<(), String> {
        self.poll(
            self.post.boxes[self.qid as usize].wake.as_raw_fd(),
            MAIL_TOKEN,
        )
    }

    /// Queues a one-shot poll of `fd` for input, completing with `token`.
    fn poll(&mut self, fd: RawFd, token: u64) -> Result<(), String> {
        let poll = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .build()
            .user_data(token)
            .into();
        self.push(poll)
    }

    /// Takes in the entries other threads handed over, and serves their requests.
    fn take_mail(&mut self) {
        let _ = self.post.boxes[self.qid as usize].wake.read();
        while let Ok(entry) = self.post.inbox.try_recv() {
            let token = self.hold(entry);
            self.answer(token);
        }
    }

    /// Puts `entry` in a free slot; returns its token.
    fn hold(&mut self, entry: Entry) -> usize {
        match self.entries.iter().position(Option::is_none) {
            Some(token) => {
                self.entries[token] = Some(entry);
                token
            }
            None => {
                self.entries.push(Some(entry));
                self.entries.len() - 1
            }
        }
    }

    /// The entry of `token`.
    fn entry(&mut self, token: usize) -> &mut Entry {
        held(&mut self.entries, token)
    }

    /// Marks the entry of `token` gone (the kernel has no command of it any more).
    fn retire(&mut self, token: usize) {
        let entry = self.entry(token);
        if std::mem::replace(&mut entry.live, false) {
            self.post.live.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Hands entry `token` (holding a request not yet served) to queue `to`'s thread;
    /// false if that thread is gone, and the entry stays here.
    fn hand_over(&mut self, token: usize, to: u16) -> bool {
        let Some(entry) = self.entries[token].take() else {
            return false;
        };
        // An entry of this queue leaves only with a bulk read; others go home.
        let bulk_read = entry.qid == self.qid;
        let mailbox = &self.post.boxes[to as usize];
        match mailbox.entries.send(entry) {
            Ok(()) => {
                let _ = mailbox.wake.write(1);
                if bulk_read && !std::mem::replace(&mut self.said_hand_over, true) {
                    tracing::debug!(
                        "ring queue {}: a bulk read handed to queue {to}'s thread",
                        self.qid
                    );
                }
                true
            }
            Err(returned) => {
                self.entries[token] = Some(returned.0);
                false
            }
        }
    }

    fn push(&mut self, sqe: squeue::Entry128) -> Result<(), String> {
        // SAFETY: every buffer an SQE of this queue names (an entry's iovecs and the
        // buffers they point to) lives in `self.entries` until the ring is dropped.
        unsafe { self.ring.submission().push(&sqe) }
            .map_err(|_| "the submission queue is full".to_string())
    }

    fn register(&mut self, token: usize) {
        let fuse_fd = self.fuse_fd;
        let entry = self.entry(token);
        let sqe = register_sqe(fuse_fd, entry.qid, entry.iov.as_ptr(), token as u64);
        entry.live = true;
        self.post.live.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = self.push(sqe) {
            tracing::error!("queue {}: cannot register an entry: {e}", self.qid);
            self.retire(token);
        }
    }

    /// One command of entry `token` completed with `result`.
    fn complete(&mut self, token: usize, result: i32) {
        if self.entries.get(token).is_none_or(Option::is_none) {
            tracing::error!("queue {}: completion of unknown entry {token}", self.qid);
            return;
        }
        match -result {
            0 => self.answer(token),
            // The kernel was not ready (INIT not processed yet) or was interrupted.
            libc::EAGAIN | libc::EINTR => {
                let fuse_fd = self.fuse_fd;
                let entry = self.entry(token);
                let sqe = match entry.commit_id {
                    0 => register_sqe(fuse_fd, entry.qid, entry.iov.as_ptr(), token as u64),
                    id => commit_sqe(fuse_fd, entry.qid, id, token as u64),
                };
                if self.push(sqe).is_err() {
                    self.retire(token);
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
                self.retire(token);
            }
        }
    }

    /// Serves the request now in entry `token` and commits its reply, or leaves the
    /// entry waiting for a reply that comes later.
    fn answer(&mut self, token: usize) {
        let queues = self.post.boxes.len() as u16;
        let entry = held(&mut self.entries, token);
        // SAFETY: the command of this entry just completed, so the kernel does not own
        // its buffers; this view ends before the one below is taken.
        let header = unsafe { entry.header.bytes() };
        let in_header = InHeader::parse(&header[..IN_HEADER_LEN]);
        let op_area = IN_OUT_AREA..IN_OUT_AREA + OP_AREA;
        let read = in_header
            .as_ref()
            .ok()
            .and_then(|h| read_size(h, &header[op_area]));
        let bulk = read.is_some_and(|size| size >= BULK_READ);
        if let Some(to) = route(bulk, entry.qid, self.qid, queues) {
            if self.hand_over(token, to) {
                return;
            }
        }
        // Made only for the operations whose reply may come later (open, setattr), so
        // that other requests allocate nothing.
        let mut slot = None;
        let (replies, wake) = (&self.late.0, &self.wake);
        let mut later = || {
            let slot = slot.get_or_insert_with(|| Arc::new(Mutex::new(LateSlot::Serving)));
            late_sender(token, slot, replies, wake)
        };
        let entry = held(&mut self.entries, token);
        // SAFETY: the command of this entry just completed, so the kernel does not own
        // its buffers until the commit of its reply is submitted; these are the only
        // slices of them.
        let (header, payload) = unsafe { (entry.header.bytes(), entry.payload.bytes()) };
        entry.commit_id = read_u64(header, COMMIT_ID_AT);
        let in_len = read_u32(header, PAYLOAD_SZ_AT) as usize;
        let served = in_header.and_then(|in_header| {
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
        let entry = self.entry(token);
        // SAFETY: the entry holds a request whose reply has not been committed, so the
        // kernel does not own its buffers; this is the only slice of the payload.
        let payload = unsafe { entry.payload.bytes() };
        let result = late.encode(payload);
        self.commit(token, result);
    }

    /// Writes the reply header of entry `token` and submits its COMMIT_AND_FETCH.
    fn commit(&mut self, token: usize, result: Result<usize, Errno>) {
        let fuse_fd = self.fuse_fd;
        let entry = self.entry(token);
        // SAFETY: as in commit_late: the kernel gets the buffers back with the commit.
        let header = unsafe { entry.header.bytes() };
        let replied = *result.as_ref().unwrap_or(&0);
        // The request's unique is its commit id.
        encode_out_header(&mut header[..IN_OUT_AREA], entry.commit_id, result);
        header[PAYLOAD_SZ_AT..PAYLOAD_SZ_AT + 4].copy_from_slice(&(replied as u32).to_le_bytes());
        let sqe = commit_sqe(fuse_fd, entry.qid, entry.commit_id, token as u64);
        if let Err(e) = self.push(sqe) {
            tracing::error!("queue {}: cannot commit a reply: {e}", self.qid);
            self.retire(token);
        }
    }
}

/// The entry of `token` among a thread's `entries`. Every token the ring hands back
/// names a held entry: an entry leaves its slot only between two of its commands.
fn held(entries: &mut [Option<Entry>], token: usize) -> &mut Entry {
    entries[token]
        .as_mut()
        .expect("a ring token names an entry this thread holds")
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
    fn bulk_reads_go_to_the_next_queue_and_the_rest_stays_home() {
        // A bulk read in an entry at home goes to the next queue, round the last one.
        assert_eq!(route(true, 0, 0, 2), Some(1));
        assert_eq!(route(true, 3, 3, 4), Some(0));
        // One queue has nowhere to send it.
        assert_eq!(route(true, 0, 0, 1), None);
        // Away from home: bulk reads are served where they are, anything else at home.
        assert_eq!(route(true, 0, 1, 2), None);
        assert_eq!(route(false, 0, 1, 2), Some(0));
        // At home, other requests are served on the caller's CPU.
        assert_eq!(route(false, 1, 1, 2), None);
    }

    #[test]
    fn only_reads_have_a_read_size() {
        let header = |opcode| InHeader {
            len: 80,
            opcode,
            unique: 1,
            nodeid: 2,
            uid: 0,
            gid: 0,
            pid: 0,
        };
        let mut op = [0u8; OP_AREA];
        op[16..20].copy_from_slice(&(128u32 << 10).to_le_bytes());
        assert_eq!(read_size(&header(15), &op), Some(128 << 10));
        // WRITE has a size at the same place, but is not a read.
        assert_eq!(read_size(&header(16), &op), None);
        // A READ too short to hold its size says none.
        assert_eq!(read_size(&header(15), &op[..12]), None);
    }

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
