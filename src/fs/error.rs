//! The file system's error: a precise errno, and the pool failure behind it if any.
//! Each failure is logged once, by the request layer, which knows the operation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::store::StoreError;

/// A POSIX errno to hand back to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const EIO: Errno = Errno(libc::EIO);
    pub const EBADF: Errno = Errno(libc::EBADF);
    pub const EACCES: Errno = Errno(libc::EACCES);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const EXDEV: Errno = Errno(libc::EXDEV);
    pub const ENOTDIR: Errno = Errno(libc::ENOTDIR);
    pub const EISDIR: Errno = Errno(libc::EISDIR);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const EFBIG: Errno = Errno(libc::EFBIG);
    pub const ENOSPC: Errno = Errno(libc::ENOSPC);
    pub const EROFS: Errno = Errno(libc::EROFS);
    pub const EMLINK: Errno = Errno(libc::EMLINK);
    pub const ERANGE: Errno = Errno(libc::ERANGE);
    pub const E2BIG: Errno = Errno(libc::E2BIG);
    pub const ENXIO: Errno = Errno(libc::ENXIO);
    pub const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
    pub const ENODEV: Errno = Errno(libc::ENODEV);
    pub const ENAMETOOLONG: Errno = Errno(libc::ENAMETOOLONG);
    pub const ENOTEMPTY: Errno = Errno(libc::ENOTEMPTY);
    pub const ENODATA: Errno = Errno(libc::ENODATA);
    pub const ENOTSUP: Errno = Errno(libc::ENOTSUP);
    pub const ENOSYS: Errno = Errno(libc::ENOSYS);
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

/// Why an operation of the file system failed: the errno its caller gets and, when a
/// pool failure is behind it, that failure. It is logged once, by the request layer,
/// which names the operation ([`FsError::log`]).
#[derive(Debug)]
pub struct FsError {
    errno: Errno,
    cause: Option<Box<StoreError>>,
}

impl FsError {
    pub fn errno(&self) -> Errno {
        self.errno
    }

    /// Logs the failure of `op` at the level it deserves: an answer the caller asked
    /// for (no such name, not empty, read-only...) at debug level only; a full pool or
    /// a file at its largest size as a warning, at most one per interval; a failure of
    /// the pool, or EIO, as an error.
    pub fn log(&self, op: &str) {
        match (&self.cause, self.errno) {
            (Some(cause), Errno::ENOSPC | Errno::EFBIG) => log_full(op, cause),
            (Some(cause), _) => tracing::error!("{op}: {cause}"),
            (None, Errno::EIO) => tracing::error!("{op}: {}", self.errno),
            (None, errno) => tracing::debug!("{op}: {errno}"),
        }
    }
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.cause {
            Some(cause) => write!(f, "{cause}"),
            None => write!(f, "{}", self.errno),
        }
    }
}

impl std::error::Error for FsError {}

impl From<Errno> for FsError {
    fn from(errno: Errno) -> FsError {
        FsError { errno, cause: None }
    }
}

impl From<StoreError> for FsError {
    fn from(e: StoreError) -> FsError {
        FsError {
            errno: Errno(e.errno()),
            cause: Some(Box::new(e)),
        }
    }
}

/// Failures compare by errno, whatever their cause.
impl PartialEq for FsError {
    fn eq(&self, other: &FsError) -> bool {
        self.errno == other.errno
    }
}

impl PartialEq<Errno> for FsError {
    fn eq(&self, other: &Errno) -> bool {
        self.errno == *other
    }
}

pub type FsResult<T> = Result<T, FsError>;

/// How often a full pool (ENOSPC) or a file at its largest size (EFBIG) is logged.
const FULL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Logs a full-pool failure at warning level, at most once per FULL_LOG_INTERVAL. A
/// full pool is a state, not an accident: a writer retrying in a loop would otherwise
/// log a line per request (a stress run logged 72,394). Each line says how many were
/// left out since the last one.
fn log_full(op: &str, e: &StoreError) {
    static THROTTLE: Throttle = Throttle::new(FULL_LOG_INTERVAL);
    static START: OnceLock<Instant> = OnceLock::new();
    let now = START.get_or_init(Instant::now).elapsed();
    match THROTTLE.admit(now) {
        Some(0) => tracing::warn!("{op}: {e}"),
        Some(left_out) => tracing::warn!("{op}: {e} ({left_out} more like it not logged)"),
        None => {}
    }
}

/// Lets one event through per interval and counts those it holds back.
struct Throttle {
    interval_ms: u64,
    /// When the last event went through, in ms since the clock's start, plus one (0:
    /// none yet).
    last_ms: AtomicU64,
    held_back: AtomicU64,
}

impl Throttle {
    const fn new(interval: Duration) -> Throttle {
        Throttle {
            interval_ms: interval.as_millis() as u64,
            last_ms: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// At time `now`: Some(events held back since the last one through) if this one
    /// goes through, None if it is held back.
    fn admit(&self, now: Duration) -> Option<u64> {
        let now_ms = now.as_millis() as u64 + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == 0 || now_ms >= last + self.interval_ms;
        // Of threads racing past the deadline, only the one that moves it goes through.
        if due
            && self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_the_errno_of_its_cause_and_compares_by_errno() {
        let no_record: FsError = StoreError::NoRecord(7).into();
        assert_eq!(no_record.errno(), Errno::EROFS);
        assert_eq!(no_record, Errno::EROFS);
        assert_eq!(
            no_record.to_string(),
            "inode 7 has no record on the pool to change"
        );
        let plain: FsError = Errno::ENOENT.into();
        assert_eq!(plain, FsError::from(Errno::ENOENT));
        assert_ne!(plain, no_record);
        assert_eq!(plain.to_string(), Errno::ENOENT.to_string());
    }

    #[test]
    fn throttle_lets_one_through_per_interval_and_counts_the_rest() {
        let t = Throttle::new(Duration::from_secs(10));
        let at = Duration::from_millis;
        assert_eq!(t.admit(at(0)), Some(0));
        assert_eq!(t.admit(at(1)), None);
        assert_eq!(t.admit(at(9_999)), None);
        assert_eq!(t.admit(at(10_000)), Some(2));
        assert_eq!(t.admit(at(10_001)), None);
        assert_eq!(t.admit(at(25_000)), Some(1));
        assert_eq!(t.admit(at(35_000)), Some(0));
    }
}
