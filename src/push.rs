//! Random reads served ahead: after a small read that missed the kernel's page cache,
//! warabifs stores the 1 MiB around it in that cache itself (FUSE_NOTIFY_STORE), so that
//! the next reads nearby need no request.
//!
//! The kernel reads ahead only for sequential reads. A random 4 KiB read that misses its
//! cache costs a round trip to the daemon, some 40 us on a two-CPU VM, about what it
//! costs to copy 1 MiB of persistent memory. The copy happens on a thread of its own,
//! after the read was answered, so the reader never waits for it.
//!
//! The pushed bytes must be the file's: pushes and changes of a file are kept apart by
//! the file system's [`WriteGate`](crate::fs::WriteGate), and the bytes are copied out
//! under the inode's lock before they go to the kernel.

use std::collections::HashSet;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use fuser::{INodeNo, Notifier};
use parking_lot::Mutex;

use crate::fs::WarabiFs;

/// What one push stores: the aligned window around the read, as much as the kernel
/// asks in one request at most.
pub const WINDOW: u64 = 1 << 20;
/// Reads up to this size count as random: sequential ones come as readahead, larger.
const SMALL_READ: u32 = 32 << 10;
/// Larger files are not pushed: random reads over them are less likely to come back
/// near a window before the kernel evicts it, and the copies would be wasted.
pub const MAX_FILE: u64 = 1 << 30;
/// Windows waiting for the push thread; more are dropped, as the reads were answered.
const QUEUE: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Window {
    ino: u64,
    start: u64,
}

pub struct ReadPush {
    /// `None` once dropping: the thread then ends.
    jobs: Option<SyncSender<Window>>,
    /// Windows queued or being pushed, so that a burst of misses in one window pushes
    /// it once.
    pending: Arc<Mutex<HashSet<Window>>>,
    thread: Option<JoinHandle<()>>,
}

impl ReadPush {
    /// Starts the push thread; it ends once the `ReadPush` is dropped.
    pub fn start(fs: Arc<WarabiFs>, notifier: Notifier) -> std::io::Result<ReadPush> {
        let (jobs, windows) = sync_channel(QUEUE);
        let pending = Arc::new(Mutex::new(HashSet::new()));
        let thread_pending = Arc::clone(&pending);
        let thread = std::thread::Builder::new()
            .name("read-push".into())
            .spawn(move || push_windows(&fs, &notifier, &windows, &thread_pending))?;
        Ok(ReadPush {
            jobs: Some(jobs),
            pending,
            thread: Some(thread),
        })
    }

    /// Called once a read of `size` bytes at `offset` was answered with `replied` bytes.
    pub fn after_read(&self, ino: u64, offset: u64, size: u32, replied: usize) {
        let start = offset - offset % WINDOW;
        // A short read from the window's start returned all the file has there: the
        // whole of a small file, say, which the kernel now caches anyway.
        let window_read_whole = start == offset && replied < size as usize;
        if size > SMALL_READ || replied == 0 || window_read_whole {
            return;
        }
        let window = Window { ino, start };
        if !self.pending.lock().insert(window) {
            return;
        }
        let queued = self
            .jobs
            .as_ref()
            .is_some_and(|j| j.try_send(window).is_ok());
        if !queued {
            self.pending.lock().remove(&window);
        }
    }
}

impl Drop for ReadPush {
    /// Waits for the thread: it holds the file system, whose last owner closes the pool
    /// cleanly, and that must happen before the daemon exits.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the read-push thread panicked");
            }
        }
    }
}

fn push_windows(
    fs: &WarabiFs,
    notifier: &Notifier,
    windows: &Receiver<Window>,
    pending: &Mutex<HashSet<Window>>,
) {
    let mut bytes = Vec::with_capacity(WINDOW as usize);
    while let Ok(window) = windows.recv() {
        if fs.gate().try_begin_push(window.ino) {
            push(fs, notifier, window, &mut bytes);
            // Writers that came meanwhile run now, in order, on this thread.
            for (op, writer) in fs.gate().end_push(window.ino) {
                op(writer);
            }
        }
        pending.lock().remove(&window);
    }
}

/// Stores `window` of its file in the kernel's page cache. Runs while the gate keeps
/// writers out, so the size and bytes read here stay the file's until stored.
fn push(fs: &WarabiFs, notifier: &Notifier, window: Window, bytes: &mut Vec<u8>) {
    match fs.getattr(window.ino) {
        Ok(attr) if attr.size <= MAX_FILE && window.start < attr.size => {}
        _ => return,
    }
    bytes.clear();
    let copied = fs.read_unopened(window.ino, window.start, WINDOW as u32, |data| {
        bytes.extend_from_slice(data)
    });
    if copied.is_err() || bytes.is_empty() {
        return;
    }
    // ENOENT: the kernel has forgotten the inode, so there is no cache to fill.
    if let Err(e) = notifier.store(INodeNo(window.ino), window.start, bytes) {
        tracing::debug!(
            "storing {} bytes of inode {} at {} in the page cache: {e}",
            bytes.len(),
            window.ino,
            window.start
        );
    }
}
