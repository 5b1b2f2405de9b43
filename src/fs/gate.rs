//! Keeps pushes of file data into the kernel's page cache apart from changes to that
//! data.
//!
//! A push (see `crate::push`) copies part of a file and hands it to the kernel, which
//! stores it in its page cache without being asked. Should the file change between the
//! copy and the store, the cache would keep stale bytes. So per file, the gate admits
//! either one push, while no one may change the file, or writers (handles open for
//! writing, truncates), never both. A writer that comes during a push does not block a
//! thread: its operation is queued and handed back when the push ends.

use dashmap::DashMap;
use parking_lot::Mutex;

/// An operation queued until the push under way ends.
pub type Deferred = Box<dyn FnOnce() + Send>;

#[derive(Default)]
pub struct WriteGate {
    /// Only files with writers, a push or queued operations have an entry.
    files: DashMap<u64, GateState>,
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
    /// Enters `ino` as a writer and hands `op` back to be run now; or, while a push is
    /// under way, queues `op` (it enters when the push ends) and returns `None`.
    pub fn enter_or_defer(&self, ino: u64, op: Deferred) -> Option<Deferred> {
        let mut state = self.files.entry(ino).or_default();
        if state.pushing {
            state.queued.get_mut().push(op);
            return None;
        }
        state.writers += 1;
        Some(op)
    }

    /// Enters `ino` as a writer whether or not a push is under way: for a handle opened
    /// for writing inside an operation that already entered (or that cannot meet a push,
    /// such as a create).
    pub fn enter(&self, ino: u64) {
        self.files.entry(ino).or_default().writers += 1;
    }

    /// A writer of `ino` is done.
    pub fn leave(&self, ino: u64) {
        self.files.remove_if_mut(&ino, |_, state| {
            state.writers = state.writers.saturating_sub(1);
            state.idle()
        });
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

    /// Ends the push of `ino`; returns the operations queued meanwhile, each entered as
    /// a writer, for the caller to run in order.
    pub fn end_push(&self, ino: u64) -> Vec<Deferred> {
        let mut queued = Vec::new();
        self.files.remove_if_mut(&ino, |_, state| {
            state.pushing = false;
            queued = std::mem::take(state.queued.get_mut());
            state.writers += queued.len() as u32;
            state.idle()
        });
        queued
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

    fn counting(counter: &Arc<AtomicU32>) -> Deferred {
        let counter = Arc::clone(counter);
        Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })
    }

    #[test]
    fn a_writer_keeps_pushes_out_until_it_leaves() {
        let gate = WriteGate::default();
        let ran = Arc::new(AtomicU32::new(0));
        gate.enter_or_defer(7, counting(&ran)).expect("no push")();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert!(!gate.try_begin_push(7));
        assert!(gate.try_begin_push(8), "other files are not affected");
        gate.leave(7);
        assert!(gate.try_begin_push(7));
    }

    #[test]
    fn a_writer_during_a_push_runs_when_it_ends_and_then_holds_the_gate() {
        let gate = WriteGate::default();
        let ran = Arc::new(AtomicU32::new(0));
        assert!(gate.try_begin_push(7));
        assert!(!gate.try_begin_push(7), "one push at a time");
        assert!(gate.enter_or_defer(7, counting(&ran)).is_none());
        assert!(gate.enter_or_defer(7, counting(&ran)).is_none());
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        let queued = gate.end_push(7);
        assert_eq!(queued.len(), 2);
        queued.into_iter().for_each(|op| op());
        assert_eq!(ran.load(Ordering::SeqCst), 2);
        assert!(!gate.try_begin_push(7), "both queued writers entered");
        gate.leave(7);
        assert!(!gate.try_begin_push(7));
        gate.leave(7);
        assert!(gate.try_begin_push(7));
    }

    #[test]
    fn idle_files_are_forgotten() {
        let gate = WriteGate::default();
        gate.enter(1);
        gate.enter(1);
        assert!(gate.try_begin_push(2));
        assert_eq!(gate.tracked(), 2);
        gate.leave(1);
        gate.leave(1);
        assert!(gate.end_push(2).is_empty());
        assert_eq!(gate.tracked(), 0);
        gate.leave(3);
        assert_eq!(gate.tracked(), 0, "a stray leave leaves nothing behind");
    }
}
