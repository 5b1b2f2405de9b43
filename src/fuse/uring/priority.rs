//! The priority a ring thread commits its replies at, and the guard that keeps that
//! from starving it.
//!
//! A reply's commit wakes the process that made the request. The scheduler puts a woken
//! task on an idle CPU when there is one, and the ring thread is busy on the caller's own
//! CPU while it commits, so the caller moved to the other CPU at almost every reply: the
//! next request was then queued there, and each reply paid for waking an idle CPU (about
//! 20 µs each way on a virtual machine that halts idle CPUs). The scheduler counts a CPU
//! that runs only `SCHED_IDLE` tasks as idle, so a ring thread switches to `SCHED_IDLE`
//! for its commits: the caller is then woken where it was, on the CPU of its queue, and
//! runs at once. The thread stays there while requests keep coming (the caller has
//! mostly queued its next one by the time the thread runs again), and goes back to its
//! normal policy before it sleeps for want of requests, so that it is woken as any
//! thread is.
//!
//! While the thread is at idle priority, any other task on its CPU runs first; if one
//! keeps the CPU, the thread and the requests queued behind it would wait for as long as
//! it does. The guard bounds that: every [`TICK`] it reads, for each thread at idle
//! priority, how long the thread ran and waited for its CPU
//! (/proc/self/task/TID/schedstat); a thread that waited nearly all the time since the
//! last look and ran next to none of it is put back to normal priority, and then
//! commits at normal priority for a while ([`BACKOFF_MIN`], doubling on each
//! starvation up to [`BACKOFF_MAX`]). On a loaded CPU that costs a few
//! milliseconds once per backoff. The guard parks while no thread is at idle priority.
//!
//! Going back from `SCHED_IDLE` needs `CAP_SYS_NICE` (or an `RLIMIT_NICE` that allows
//! nice 0); without it, threads never leave their normal policy.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

/// Without scheduler statistics: how long a thread may go without running at idle
/// priority before the guard restores it.
pub const STARVED_AFTER: Duration = Duration::from_millis(4);
/// How often the guard looks while some thread commits at idle priority. Each look
/// wakes the guard on a CPU that has other work, so not too often.
const TICK: Duration = Duration::from_millis(2);
/// A thread at idle priority that waited for its CPU this share (9/10) of the time
/// between two looks, and ran less than RAN_SHARE of it, is starved.
const STARVED_SHARE: (u64, u64) = (9, 10);
/// A thread that takes turns with the callers it serves runs a good part of each tick
/// (a third with fio's 4 KiB writes), one kept off its CPU by a busy task next to
/// nothing (idle priority weighs 3 against a normal task's 1024): 1/50.
const RAN_SHARE: (u64, u64) = (1, 50);
/// The guard parks after this many ticks in which no thread was at idle priority.
const QUIET_TICKS: u32 = 50;
/// After a starvation, commits stay at normal priority this long, then twice as long
/// after the next one, up to BACKOFF_MAX.
pub const BACKOFF_MIN: Duration = Duration::from_millis(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A thread's scheduling policy, as `sched_setscheduler(2)` sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    Normal,
    Idle,
}

/// Sets the policy of thread `tid` (0: the calling thread).
fn set_policy(tid: i32, policy: Policy) -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    let policy = match policy {
        Policy::Normal => libc::SCHED_OTHER,
        Policy::Idle => libc::SCHED_IDLE,
    };
    // SAFETY: sched_setscheduler reads one sched_param, which lives on this stack for
    // the whole call; it changes only the scheduling of a thread of this process.
    match unsafe { libc::sched_setscheduler(tid, policy, &param) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// The capability's bit in /proc/self/status' CapEff (linux/capability.h).
const CAP_SYS_NICE: u32 = 23;

/// Whether this process may go back from `SCHED_IDLE` to its normal policy: it has
/// CAP_SYS_NICE, or its RLIMIT_NICE allows nice 0 (the kernel's rule for that switch).
pub fn may_leave_idle() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_sys_nice = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_NICE) != 0);
    cap_sys_nice || nice_limit_allows_zero()
}

/// RLIMIT_NICE of at least 20 lets a task at nice 0 be at nice 0 again.
fn nice_limit_allows_zero() -> bool {
    limits_allow_nice_zero(&std::fs::read_to_string("/proc/self/limits").unwrap_or_default())
}

/// The same, read from the text of /proc/PID/limits.
fn limits_allow_nice_zero(limits: &str) -> bool {
    limits
        .lines()
        .find(|l| l.starts_with("Max nice priority"))
        .and_then(|l| l.split_whitespace().nth(3))
        .is_some_and(|soft| soft == "unlimited" || soft.parse::<u64>().is_ok_and(|n| n >= 20))
}

/// One thread's /proc/self/task/TID/schedstat, kept open: the guard reads it every
/// tick, and opening it each time cost more than reading it.
#[derive(Default)]
struct SchedStat {
    tid: i32,
    file: Option<std::fs::File>,
}

impl SchedStat {
    /// How long thread `tid` of this process has run and waited on a run queue in all
    /// (the first two fields of its schedstat), if the kernel keeps them.
    fn read(&mut self, tid: i32) -> Option<SchedTimes> {
        use std::os::unix::fs::FileExt;
        if self.tid != tid || self.file.is_none() {
            self.tid = tid;
            self.file = std::fs::File::open(format!("/proc/self/task/{tid}/schedstat")).ok();
        }
        let mut buf = [0u8; 96];
        let len = self.file.as_ref()?.read_at(&mut buf, 0).ok()?;
        parse_schedstat(std::str::from_utf8(&buf[..len]).ok()?)
    }
}

fn parse_schedstat(stat: &str) -> Option<SchedTimes> {
    let mut fields = stat.split_whitespace().map(str::parse::<u64>);
    Some(SchedTimes {
        ran: fields.next()?.ok()?,
        waited: fields.next()?.ok()?,
    })
}

/// A thread's run and wait times (ns), as the scheduler counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SchedTimes {
    ran: u64,
    waited: u64,
}

/// Whether a thread at idle priority was starved over `window` ns, in which it ran and
/// waited as `delta` says: it waited nearly all of it and ran next to none.
fn starved_over(window: u64, delta: SchedTimes) -> bool {
    delta.waited * STARVED_SHARE.1 >= window * STARVED_SHARE.0
        && delta.ran * RAN_SHARE.1 < window * RAN_SHARE.0
}

fn now_ns(origin: Instant) -> u64 {
    // Never 0: 0 means "not at idle priority".
    origin.elapsed().as_nanos() as u64 + 1
}

/// What one ring thread and the guard share.
#[derive(Debug)]
struct Watch {
    qid: usize,
    /// The thread's id, set when it starts.
    tid: AtomicI32,
    /// While the thread is at idle priority: when it last made progress (went there,
    /// or ran again after a commit; guard clock, ns). 0 while it is at normal priority.
    idle_since: AtomicU64,
    /// Set by the guard when it restored the thread; read and cleared by the thread.
    restored: AtomicBool,
}

impl Watch {
    fn new(qid: usize) -> Watch {
        Watch {
            qid,
            tid: AtomicI32::new(0),
            idle_since: AtomicU64::new(0),
            restored: AtomicBool::new(false),
        }
    }
}

/// The guard: one thread for all the queues of a mount, parked while none commits at
/// idle priority.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    origin: Instant,
    watches: Vec<Arc<Watch>>,
    parked: AtomicBool,
    stop: AtomicBool,
    thread: OnceLock<Thread>,
}

impl Guard {
    /// Starts the guard for `queues` ring threads; None when this process could not
    /// go back from idle priority, so commits stay at normal priority.
    pub fn start(queues: usize) -> std::io::Result<Option<Guard>> {
        if !may_leave_idle() {
            tracing::debug!(
                "ring replies are committed at normal priority: no CAP_SYS_NICE or RLIMIT_NICE"
            );
            return Ok(None);
        }
        let shared = Arc::new(Shared {
            origin: Instant::now(),
            watches: (0..queues).map(|qid| Arc::new(Watch::new(qid))).collect(),
            parked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            thread: OnceLock::new(),
        });
        let guard_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("uring-guard".to_string())
            .spawn(move || guard_shared.run())?;
        let _ = shared.thread.set(thread.thread().clone());
        Ok(Some(Guard {
            shared,
            thread: Some(thread),
        }))
    }

    /// The priority handle of queue `qid`'s thread.
    pub fn commits(&self, qid: usize) -> CommitPriority {
        CommitPriority::new(
            Some(Arc::clone(&self.shared)),
            Arc::clone(&self.shared.watches[qid]),
        )
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.shared.thread.get() {
            thread.unpark();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn run(&self) {
        let mut quiet = 0;
        // Per queue: when the guard last looked, and how long its thread had run and
        // waited to run by then.
        let mut seen: Vec<Option<(u64, SchedTimes)>> = vec![None; self.watches.len()];
        let mut stats: Vec<SchedStat> = self.watches.iter().map(|_| SchedStat::default()).collect();
        while !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(TICK);
            match self.restore_starved(&mut seen, &mut stats) {
                true => quiet = 0,
                false => quiet += 1,
            }
            if quiet >= QUIET_TICKS {
                self.park();
                quiet = 0;
            }
        }
    }

    /// Restores every thread at idle priority that spent nearly all the time since the
    /// last look waiting for its CPU and ran next to none of it; true if any thread is
    /// at idle priority. (A thread at idle priority never sleeps, so it either runs or
    /// waits: one that takes turns with the callers it serves runs part of the time,
    /// even behind a caller that runs most of it; a starved one hardly ever runs. A
    /// test of the wait alone restored threads behind fio's 4 KiB writes whenever fio
    /// ran nine tenths of a tick, and the backoff that followed sent every reply's
    /// caller to the other CPU, a third of the writes per second.)
    fn restore_starved(
        &self,
        seen: &mut [Option<(u64, SchedTimes)>],
        stats: &mut [SchedStat],
    ) -> bool {
        let mut any = false;
        for ((watch, seen), stat) in self.watches.iter().zip(seen.iter_mut()).zip(stats) {
            if watch.idle_since.load(Ordering::SeqCst) == 0 {
                *seen = None;
                continue;
            }
            any = true;
            let tid = watch.tid.load(Ordering::SeqCst);
            let now = now_ns(self.origin);
            let before = *seen;
            *seen = stat.read(tid).map(|times| (now, times));
            let starved = match (before, *seen) {
                (Some((then, times_then)), Some((now, times_now))) => {
                    let delta = SchedTimes {
                        ran: times_now.ran.saturating_sub(times_then.ran),
                        waited: times_now.waited.saturating_sub(times_then.waited),
                    };
                    starved_over(now - then, delta)
                }
                (None, Some(_)) => false, // look again at the next tick
                // No scheduler statistics: go by the time since the thread last ran.
                (_, None) => {
                    let since = watch.idle_since.load(Ordering::SeqCst);
                    since != 0 && now.saturating_sub(since) >= STARVED_AFTER.as_nanos() as u64
                }
            };
            if !starved {
                continue;
            }
            // At every look until the thread runs and sees it: a thread that set idle
            // priority just after a restore is restored at the next look.
            watch.restored.store(true, Ordering::SeqCst);
            if let Err(e) = set_policy(tid, Policy::Normal) {
                tracing::error!("ring queue {}: cannot restore its priority: {e}", watch.qid);
            }
        }
        any
    }

    fn park(&self) {
        self.parked.store(true, Ordering::SeqCst);
        // A thread that went to idle priority before seeing `parked` set is seen here.
        let busy = self
            .watches
            .iter()
            .any(|w| w.idle_since.load(Ordering::SeqCst) != 0);
        if !busy && !self.stop.load(Ordering::SeqCst) {
            std::thread::park();
        }
        self.parked.store(false, Ordering::SeqCst);
    }

    fn wake(&self) {
        if self.parked.swap(false, Ordering::SeqCst) {
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
    }
}

/// One ring thread's side: idle priority from its commits until it would sleep, normal
/// priority while it sleeps and whenever the guard or a recent starvation says so.
/// Without a guard it never changes the thread's policy.
pub struct CommitPriority {
    shared: Option<Arc<Shared>>,
    watch: Arc<Watch>,
    /// No idle priority before this (guard clock, ns): the backoff after a starvation.
    normal_until: u64,
    backoff: Duration,
    idle: bool,
}

impl CommitPriority {
    /// For rings without a guard: commits at normal priority.
    pub fn normal() -> CommitPriority {
        CommitPriority::new(None, Arc::new(Watch::new(0)))
    }

    fn new(shared: Option<Arc<Shared>>, watch: Arc<Watch>) -> CommitPriority {
        CommitPriority {
            shared,
            watch,
            normal_until: 0,
            backoff: BACKOFF_MIN,
            idle: false,
        }
    }

    /// Called once on the ring thread before it serves.
    pub fn on_this_thread(&self) {
        // SAFETY: gettid takes no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        self.watch.tid.store(tid, Ordering::SeqCst);
    }

    /// Before the submission that commits replies: idle priority (one system call when
    /// the thread is not there yet), unless a recent starvation says to stay at normal
    /// priority.
    pub fn lower(&mut self) {
        let Some(shared) = &self.shared else {
            return;
        };
        let now = now_ns(shared.origin);
        if self.idle {
            self.watch.idle_since.store(now, Ordering::SeqCst);
            return;
        }
        if now < self.normal_until {
            return;
        }
        // Published before the switch, so the guard can see a thread at idle priority.
        self.watch.idle_since.store(now, Ordering::SeqCst);
        shared.wake();
        match set_policy(0, Policy::Idle) {
            Ok(()) => self.idle = true,
            Err(e) => {
                tracing::debug!("ring queue {}: idle priority refused: {e}", self.watch.qid);
                self.watch.idle_since.store(0, Ordering::SeqCst);
                self.normal_until = u64::MAX;
            }
        }
    }

    /// After that submission, once the thread runs again: it stays at idle priority
    /// while requests keep coming, unless the guard had to restore it.
    pub fn resumed(&mut self) {
        let Some(origin) = self.shared.as_ref().map(|s| s.origin) else {
            return;
        };
        if !self.idle {
            return;
        }
        if self.watch.restored.swap(false, Ordering::SeqCst) {
            // The guard set normal priority; make sure of it, and stay there a while.
            self.leave_idle();
            let now = now_ns(origin);
            self.normal_until = now + self.backoff.as_nanos() as u64;
            tracing::debug!(
                "ring queue {}: starved at idle priority; committing at normal priority for {:?}",
                self.watch.qid,
                self.backoff
            );
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            return;
        }
        let now = now_ns(origin);
        self.watch.idle_since.store(now, Ordering::SeqCst);
        if now
            >= self
                .normal_until
                .saturating_add(BACKOFF_MAX.as_nanos() as u64)
        {
            self.backoff = BACKOFF_MIN;
        }
    }

    /// Before the thread sleeps for want of requests: normal priority, so that it is
    /// woken as any thread is and no CPU hog can keep it from the next request.
    pub fn before_sleep(&mut self) {
        if self.idle {
            self.leave_idle();
        }
    }

    fn leave_idle(&mut self) {
        self.idle = false;
        if let Err(e) = set_policy(0, Policy::Normal) {
            tracing::error!(
                "ring queue {}: cannot restore its priority: {e}",
                self.watch.qid
            );
        }
        self.watch.idle_since.store(0, Ordering::SeqCst);
        self.watch.restored.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedstat_kept_open_reads_the_times_of_now() {
        let tid = nix::unistd::gettid().as_raw();
        let mut stat = SchedStat::default();
        let before = stat
            .read(tid)
            .expect("this kernel keeps scheduler statistics");
        // Spins until the kept-open file shows 10 ms more of running; a file that gave
        // the times of its opening again would never get there. The deadline is wall
        // time on a loaded machine, far from the 10 ms.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut after = before;
        while after.ran < before.ran + 10_000_000 && Instant::now() < deadline {
            let spin = Instant::now();
            while spin.elapsed() < Duration::from_millis(1) {
                std::hint::black_box(spin.elapsed());
            }
            after = stat.read(tid).expect("read again");
        }
        assert!(
            after.ran >= before.ran + 10_000_000,
            "{before:?} then {after:?}"
        );
    }

    #[test]
    fn a_thread_is_starved_when_it_waited_nearly_all_the_time_and_barely_ran() {
        let ms = 1_000_000;
        let times = |ran, waited| SchedTimes { ran, waited };
        // Kept off its CPU by a busy task.
        assert!(starved_over(2 * ms, times(0, 2 * ms)));
        assert!(starved_over(2 * ms, times(ms / 100, 19 * ms / 10)));
        // Taking turns with a caller that runs most of the time: not starved.
        assert!(!starved_over(2 * ms, times(ms / 5, 18 * ms / 10)));
        // Mostly asleep or running.
        assert!(!starved_over(2 * ms, times(0, ms)));
        assert_eq!(parse_schedstat("123 456 7\n"), Some(times(123, 456)));
        assert_eq!(parse_schedstat("x"), None);
    }

    #[test]
    fn a_nice_limit_of_20_or_more_allows_nice_zero() {
        let limits = |soft: &str| {
            format!(
                "Limit                     Soft Limit           Hard Limit           Units\n\
                 Max nice priority         {soft}                    {soft}\n"
            )
        };
        assert!(!limits_allow_nice_zero(&limits("0")));
        assert!(!limits_allow_nice_zero(&limits("19")));
        assert!(limits_allow_nice_zero(&limits("20")));
        assert!(limits_allow_nice_zero(&limits("unlimited")));
        assert!(!limits_allow_nice_zero(""));
    }

    #[test]
    fn without_a_guard_nothing_changes_the_policy() {
        let mut priority = CommitPriority::normal();
        priority.on_this_thread();
        priority.lower();
        priority.resumed();
        priority.before_sleep();
        // SAFETY: sched_getscheduler(0) asks about the calling thread only.
        assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER);
    }

    #[test]
    fn a_thread_goes_idle_for_its_commits_and_back_before_it_sleeps() {
        let Some(guard) = Guard::start(1).unwrap() else {
            return; // no CAP_SYS_NICE: commits stay at normal priority
        };
        let mut priority = guard.commits(0);
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: sched_getscheduler(0) asks about the calling thread only.
                let policy = || unsafe { libc::sched_getscheduler(0) };
                priority.on_this_thread();
                priority.lower();
                assert_eq!(policy(), libc::SCHED_IDLE);
                priority.resumed();
                assert_eq!(policy(), libc::SCHED_IDLE);
                priority.before_sleep();
                assert_eq!(policy(), libc::SCHED_OTHER);
            });
        });
    }
}
