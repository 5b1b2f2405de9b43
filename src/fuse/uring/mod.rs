//! FUSE-over-io_uring (Linux 6.14+): the kernel queues each request on the ring of the
//! CPU that issued it, and a thread pinned to that CPU serves it there, instead of
//! waking a /dev/fuse reader on another CPU.
//!
//! INIT, FORGET, INTERRUPT and notifications stay on /dev/fuse (fuser serves them, and
//! any request sent before the rings were ready). The rings start only once every queue
//! has an entry, so all queues are registered, one per possible CPU.

mod abi;
mod priority;
mod queue;

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::eventfd::{EfdFlags, EventFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::fuse::ops::Operations;
use crate::fuse::MAX_WRITE;
use priority::{CommitPriority, Guard};
use queue::Queue;

/// The module parameter root sets to let FUSE mounts use io_uring.
pub const ENABLE_PARAMETER: &str = "/sys/module/fuse/parameters/enable_uring";
/// Entries per queue: requests the kernel can hand a queue's thread before it answers
/// the first. A few are enough: one thread serves them in turn, and each commit fetches
/// the next request the kernel holds for the queue. Each is 1 MiB of payload, mapped
/// lazily.
const QUEUE_DEPTH: usize = 4;

/// Whether this kernel lets FUSE use io_uring now, and if not, why not.
pub fn kernel_allows() -> Result<(), String> {
    match std::fs::read_to_string(ENABLE_PARAMETER) {
        Ok(v) if v.trim() == "Y" || v.trim() == "1" => Ok(()),
        Ok(_) => Err(format!(
            "FUSE-over-io_uring is off in this kernel ({ENABLE_PARAMETER} is N; root can write Y to it)"
        )),
        Err(_) => Err(format!(
            "this kernel has no FUSE-over-io_uring ({ENABLE_PARAMETER} is missing; Linux 6.14+ built with CONFIG_FUSE_IO_URING has it)"
        )),
    }
}

/// The CPUs the kernel makes queues for: every possible CPU.
pub fn possible_cpus() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|list| count_cpu_list(list.trim()))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The number of CPUs in a list such as "0-3,6,8-9" (the kernel's queue ids go up to
/// the highest one).
fn count_cpu_list(list: &str) -> Option<usize> {
    let mut highest = None;
    for part in list.split(',') {
        let last = part.rsplit('-').next()?.parse::<usize>().ok()?;
        highest = highest.max(Some(last));
    }
    highest.map(|h| h + 1)
}

/// The running rings: one thread per queue, stopped by writing the eventfd.
pub struct Rings {
    stop: Arc<EventFd>,
    threads: Vec<JoinHandle<()>>,
    /// Keeps the threads' commits at idle priority from starving them; dropped after
    /// the threads have ended.
    _guard: Option<Guard>,
    /// The /dev/fuse descriptor the queues submit on; closed only after they end.
    _fuse_fd: OwnedFd,
}

impl Rings {
    /// Registers a queue per possible CPU on `fuse_fd` (the session's /dev/fuse) and
    /// starts their threads, each pinned to its CPU.
    pub fn start<O: Operations>(fuse_fd: OwnedFd, ops: Arc<O>) -> std::io::Result<Rings> {
        let stop = Arc::new(EventFd::from_flags(EfdFlags::EFD_CLOEXEC)?);
        let fd = fuse_fd.as_raw_fd();
        let queues = possible_cpus();
        let guard = Guard::start(queues)?;
        let mut rings = Rings {
            stop,
            threads: Vec::new(),
            _guard: None,
            _fuse_fd: fuse_fd,
        };
        let mut posts = queue::post_offices(queues)?.into_iter();
        for qid in 0..queues {
            let post = posts.next().expect("one post office per queue");
            let priority = guard
                .as_ref()
                .map_or_else(CommitPriority::normal, |g| g.commits(qid));
            let queue = Queue::new(
                qid as u16,
                QUEUE_DEPTH,
                MAX_WRITE as usize,
                fd,
                Arc::clone(&rings.stop),
                Arc::clone(&ops),
                priority,
                post,
            )?;
            let thread = std::thread::Builder::new()
                .name(format!("uring-{qid}"))
                .spawn(move || {
                    pin_to_cpu(qid);
                    let why = queue.serve();
                    tracing::debug!("ring queue {qid} ended: {why}");
                })?;
            rings.threads.push(thread);
        }
        rings._guard = guard;
        Ok(rings)
    }

    /// How many queues serve the mount.
    pub fn queues(&self) -> usize {
        self.threads.len()
    }

    /// Stops every queue's thread and waits for it.
    pub fn stop(mut self) {
        self.signal_and_join();
    }

    fn signal_and_join(&mut self) {
        if let Err(e) = self.stop.write(1) {
            tracing::error!("cannot tell the ring threads to stop: {e}");
        }
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a ring thread panicked");
            }
        }
    }
}

impl Drop for Rings {
    /// The threads hold the file system; they must be gone before it closes the pool.
    fn drop(&mut self) {
        self.signal_and_join();
    }
}

/// Pins the calling thread to `cpu`, where the kernel queues the requests it serves;
/// an offline CPU leaves the thread free to run anywhere.
fn pin_to_cpu(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_err() {
        return;
    }
    if let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set) {
        tracing::debug!("ring queue {cpu} not pinned to its CPU: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_count_up_to_the_highest_cpu() {
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("0-1"), Some(2));
        assert_eq!(count_cpu_list("0-3,6,8-9"), Some(10));
        assert_eq!(count_cpu_list("x"), None);
    }
}
