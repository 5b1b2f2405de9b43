//! Test-only fault injection: crash tests stop the daemon with SIGKILL at a named point
//! inside its work (say, between filling a new region and committing the transaction
//! that points the file at it). Compiled into debug builds only; a release binary never
//! reads `WARABIFS_FAULT`.
//!
//! `WARABIFS_FAULT=POINT:N` kills the process the Nth time POINT is reached.

/// Kill points, in the order a change passes them.
pub const POINTS: &[&str] = &[
    "tx.before_commit",
    "tx.after_commit",
    "region.filled",
    "write.copied",
];

#[cfg(debug_assertions)]
pub fn point(name: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let target = TARGET.get_or_init(|| {
        let spec = std::env::var("WARABIFS_FAULT").ok()?;
        let (point, n) = spec.split_once(':')?;
        Some((point.to_string(), n.parse().ok()?))
    });
    let Some((point, n)) = target else { return };
    if point == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
        tracing::warn!("fault injection: SIGKILL at {name} (hit {n})");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn point(_name: &str) {}
