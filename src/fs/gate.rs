//! Keeps pushes of file data into the kernel's page cache apart from changes to that
//! data.
//!
//! A push (see `crate::push`) copies part of a file and hands it to the kernel, which
//! stores it in its page cache without being asked. Should the file change between the
//! copy and the store, the cache would keep stale bytes. So per file, the gate admits
//! either one push, while no one may change the file, or writers (handles open for
//! writing, truncates), never both. A writer that comes during a push does not block a
//! thread: its operation is queued and handed back when the push ends.
//!
//! A writer is a [`Writer`] value: the gate counts it from its making to its drop, so a
//! handle open for writing that owns one is a writer for exactly as long as it lives.

use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::Mutex;

/// An operation queued until the push under way ends; it runs as the writer it is given.
pub type Deferred = Box<dyn FnOnce(Writer) + Send>;

type Files = DashMap<u64, GateState>;

#[derive(Default)]
pub struct WriteGate {
    /// Only files with writers, a push or queued operations have an entry.
    files: Arc<Files>,
}

/// One writer of a file: pushes of the file wait until every writer is dropped.
#[must_use = "a writer leaves the gate when dropped"]
pub struct Writer {
    files: Arc<Files>,
    ino: u64,
}

impl Writer {
    pub fn ino(&self) -> u64 {
        self.ino
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.files.remove_if_mut(&self.ino, |_, state| {
            state.writers = state.writers.saturating_sub(1);
            state.idle()
        });
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Writer({})", self.ino)
    }
}

#[derive(Default)]
struct GateState {
    writers: u32,
    pushing: bool,
    /// Behind a mutex only so that the map is Sync (the operations are Send, not
    /// Sync); the map's own lock already serialises every access.
    queued: Mutex<Vec<Deferred>>,
}

impl GateState {
    fn idle(&mut self) -> bool {
        self.writers == 0 && !self.pushing && self.queued.get_mut().is_empty()
    }
}

impl WriteGate {
    fn writer(&self, ino: u64) -> Writer {
        Writer {
            files: Arc::clone(&self.files),
            ino,
        }
    }

    /// Enters `ino` as a writer and hands `op` back with its writer, to be run now; or,
    /// while a push is under way, queues `op` (it enters when the push ends) and returns
    /// `None`.
    pub fn enter_or_defer(&self, ino: u64, op: Deferred) -> Option<(Deferred, Writer)> {
        let mut state = self.files.entry(ino).or_default();
        if state.pushing {
            state.queued.get_mut().push(op);
            return None;
        }
        state.writers += 1;
        drop(state);
        Some((op, self.writer(ino)))
    }

    /// Enters `ino` as a writer whether or not a push is under way: for an operation
    /// that cannot meet a push, such as a create (the kernel has nothing of the file to
    /// push into).
    pub fn enter(&self, ino: u64) -> Writer {
        self.files.entry(ino).or_default().writers += 1;
        self.writer(ino)
    }

    /// Starts a push of `ino` if it has no writer and no other push.
    pub fn try_begin_push(&self, ino: u64) -> bool {
        let mut state = self.files.entry(ino).or_default();
        if state.writers > 0 || state.pushing {
            return false;
        }
        state.pushing = true;
        true
    }

    /// Ends the push of `ino`; returns the operations queued meanwhile, each with its
    /// writer, for the caller to run in order.
    pub fn end_push(&self, ino: u64) -> Vec<(Deferred, Writer)> {
        let mut queued = Vec::new();
        self.files.remove_if_mut(&ino, |_, state| {
            state.pushing = false;
            queued = std::mem::take(state.queued.get_mut());
            state.writers += queued.len() as u32;
            state.idle()
        });
        queued
            .into_iter()
            .map(|op| (op, self.writer(ino)))
            .collect()
    }

    /// How many files have writers now.
    pub fn files_written(&self) -> u64 {
        self.files.iter().filter(|f| f.writers > 0).count() as u64
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.files.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;

    /// An operation that counts its runs and keeps its writer in `kept`.
    fn counting(counter: &Arc<AtomicU32>, kept: &Arc<Mutex<Vec<Writer>>>) -> Deferred {
        let (counter, kept) = (Arc::clone(counter), Arc::clone(kept));
        Box::new(move |writer| {
            counter.fetch_add(1, Ordering::SeqCst);
            kept.lock().push(writer);
        })
    }

    #[test]
    fn a_writer_keeps_pushes_out_until_it_is_dropped() {
        let gate = WriteGate::default();
        let ran = Arc::new(AtomicU32::new(0));
        let kept = Arc::default();
        let (op, writer) = gate
            .enter_or_defer(7, counting(&ran, &kept))
            .expect("no push");
        op(writer);
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert!(!gate.try_begin_push(7));
        assert!(gate.try_begin_push(8), "other files are not affected");
        kept.lock().clear();
        assert!(gate.try_begin_push(7));
    }

    #[test]
    fn a_writer_during_a_push_runs_when_it_ends_and_then_holds_the_gate() {
        let gate = WriteGate::default();
        let ran = Arc::new(AtomicU32::new(0));
        let kept = Arc::default();
        assert!(gate.try_begin_push(7));
        assert!(!gate.try_begin_push(7), "one push at a time");
        assert!(gate.enter_or_defer(7, counting(&ran, &kept)).is_none());
        assert!(gate.enter_or_defer(7, counting(&ran, &kept)).is_none());
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        let queued = gate.end_push(7);
        assert_eq!(queued.len(), 2);
        queued.into_iter().for_each(|(op, writer)| op(writer));
        assert_eq!(ran.load(Ordering::SeqCst), 2);
        assert!(!gate.try_begin_push(7), "both queued writers entered");
        let second = kept.lock().pop();
        drop(second);
        assert!(!gate.try_begin_push(7));
        kept.lock().clear();
        assert!(gate.try_begin_push(7));
    }

    #[test]
    fn idle_files_are_forgotten() {
        let gate = WriteGate::default();
        let writers = [gate.enter(1), gate.enter(1)];
        assert!(gate.try_begin_push(2));
        assert_eq!(gate.tracked(), 2);
        drop(writers);
        assert!(gate.end_push(2).is_empty());
        assert_eq!(gate.tracked(), 0);
    }
}
