//! The request layer and its transports.
//!
//! - [`ops`]: the [`Operations`](ops::Operations) trait, one method per FUSE operation
//!   in terms of no transport, and [`dispatch`]: warabifs' implementation of it over
//!   [`WarabiFs`](crate::fs::WarabiFs), where each operation's logic lives once.
//! - [`adapter`]: fuser's `Filesystem` over any `Operations`; serves /dev/fuse, and
//!   always INIT, FORGET, INTERRUPT and the notifications.
//! - [`uring`]: FUSE-over-io_uring, one queue per CPU served by a thread pinned to it,
//!   with its own decoder of the kernel's requests.

pub mod adapter;
pub mod dispatch;
pub mod ops;
pub mod uring;

use std::time::Duration;

use fuser::{InitFlags, KernelConfig};

use crate::fs::FsOptions;

/// How long the kernel may cache attributes and names (and names known not to exist).
/// Every change goes through this mount (libpmemobj locks the pool against Warabi), and
/// the kernel drops what it cached of an inode or name whenever it sends a request
/// that changes it, so the cache cannot go stale; a long timeout spares the LOOKUP and
/// GETATTR round trips of revalidation (README, "Performance").
pub const TTL: Duration = Duration::from_secs(3600);
/// Largest write the kernel sends in one request; also the payload of a ring entry.
pub const MAX_WRITE: u32 = 1 << 20;
/// Asynchronous requests (writeback, readahead) the kernel keeps in flight.
const MAX_BACKGROUND: u16 = 64;

/// `FOPEN_*` bits of an open reply.
pub const FOPEN_DIRECT_IO: u32 = 1 << 0;
pub const FOPEN_KEEP_CACHE: u32 = 1 << 1;
pub const FOPEN_NOFLUSH: u32 = 1 << 5;

/// FUSE_HANDLE_KILLPRIV_V2 in the 64-bit INIT flags.
pub const INIT_HANDLE_KILLPRIV_V2: u64 = 1 << 28;
/// FUSE_OVER_IO_URING in the 64-bit INIT flags.
pub const INIT_OVER_IO_URING: u64 = 1 << 41;

/// The mode a new node gets: the caller's `mode` less the permission bits of its umask
/// (the kernel sends the two apart and leaves the masking to the file system).
pub fn apply_umask(mode: u32, umask: u32) -> u32 {
    mode & !(umask & 0o777)
}

/// How a file is opened, by the access it asks for.
///
/// - With direct_io or atomic_writes: direct I/O. The kernel then sends each read
///   and write(2) of up to MAX_WRITE bytes as one request (which atomic_writes
///   applies in one transaction; through the page cache a write could be split).
/// - With writeback_cache: through the page cache, which holds the writes.
/// - Otherwise write-only opens (`dd of=`, `cp`, shell redirections) write directly:
///   a page cache in front of them would only be filled to be sent on, costing a
///   copy per byte. The kernel drops the cached pages a direct write overlaps (and
///   writes back dirty mmap pages first), so cached readers stay coherent. Opens
///   that may read go through the page cache.
///
/// The cache is kept across opens (only this mount changes the pool). Opens that
/// leave nothing for a close to persist ask for no flush request at close: read-only
/// ones, and those that [write through](writes_through).
pub fn open_flags(opts: &FsOptions, flags: i32) -> u32 {
    let access = flags & libc::O_ACCMODE;
    let mut open_flags = if opts.every_open_direct() {
        FOPEN_DIRECT_IO
    } else if access == libc::O_WRONLY && !opts.writeback_cache {
        FOPEN_DIRECT_IO | FOPEN_KEEP_CACHE
    } else {
        FOPEN_KEEP_CACHE
    };
    if access == libc::O_RDONLY || writes_through(opts, flags) {
        open_flags |= FOPEN_NOFLUSH;
    }
    open_flags
}

/// Whether every write through a file opened with `flags` is persisted before its
/// reply, as with O_DSYNC: write-only opens without a page cache. Such a handle holds
/// nothing at close (no cached pages, and it cannot be mmap'd), so the kernel is told
/// to send no flush request then. `cp`, `touch` and shell redirections save a round
/// trip per file; a program making many small writes through one such handle pays a
/// transaction per write instead of one at close.
pub fn writes_through(opts: &FsOptions, flags: i32) -> bool {
    let direct = opts.every_open_direct() || !opts.writeback_cache;
    flags & libc::O_ACCMODE == libc::O_WRONLY && direct
}

/// The kernel settings warabifs asks for at INIT; returns the capabilities granted.
/// Public so that the FUSE-floor benchmark (examples/fuse_floor.rs) talks to the
/// kernel exactly as warabifs does.
///
/// `io_uring` asks for FUSE-over-io_uring when the kernel offers it; the caller then
/// has to start the rings ([`uring::Rings`]), or requests wait for them forever.
pub fn negotiate(config: &mut KernelConfig, opts: &FsOptions, io_uring: bool) -> InitFlags {
    let _ = config.set_max_write(MAX_WRITE);
    // mmap of direct-I/O files (atomic_writes) needs the kernel's permission.
    // READDIRPLUS_AUTO: the kernel asks for readdirplus for the first getdents of a
    // listing and then only while the caller stats what it lists (`ls -l` does, each
    // entry right after reading it), so `ls` alone does not make a kernel inode and
    // dentry per name (for a million names that cost more than the listing).
    let mut wanted = InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP
        | InitFlags::FUSE_PARALLEL_DIROPS
        | InitFlags::FUSE_DO_READDIRPLUS
        | InitFlags::FUSE_READDIRPLUS_AUTO;
    // KILLPRIV_V2 moves the clearing of set-user-ID and set-group-ID on write into
    // warabifs. Without it the kernel asks for security.capability before every
    // write, which costs a round trip each.
    wanted |= InitFlags::FUSE_HANDLE_KILLPRIV_V2;
    // File handles (name_to_handle_at, NFS export): the kernel may then look up "."
    // and ".." of inodes by number, for handles of inodes it has forgotten.
    wanted |= InitFlags::FUSE_EXPORT_SUPPORT;
    // With writeback_cache, writes through the page cache are cached and sent
    // later, in large requests.
    if opts.writeback_cache && !opts.every_open_direct() {
        wanted |= InitFlags::FUSE_WRITEBACK_CACHE;
    }
    if io_uring {
        wanted |= InitFlags::FUSE_OVER_IO_URING;
    }
    // Ask only for what this kernel offers; the rest is an optimisation.
    let granted = wanted & config.capabilities();
    let _ = config.add_capabilities(granted);
    // Writeback and readahead requests are asynchronous: let more be in flight.
    let _ = config.set_max_background(MAX_BACKGROUND);
    let _ = config.set_congestion_threshold(MAX_BACKGROUND * 3 / 4);
    granted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags_for(opts: &FsOptions, access: i32) -> u32 {
        open_flags(opts, access)
    }

    #[test]
    fn by_default_only_write_only_opens_bypass_the_page_cache() {
        let opts = FsOptions::default();
        let keep = FOPEN_KEEP_CACHE;
        assert_eq!(flags_for(&opts, libc::O_RDONLY), keep | FOPEN_NOFLUSH);
        assert_eq!(flags_for(&opts, libc::O_RDWR), keep);
        assert_eq!(
            flags_for(&opts, libc::O_WRONLY | libc::O_APPEND),
            keep | FOPEN_DIRECT_IO | FOPEN_NOFLUSH
        );
    }

    #[test]
    fn only_write_only_opens_without_a_page_cache_write_through() {
        let default = FsOptions::default();
        assert!(writes_through(&default, libc::O_WRONLY | libc::O_CREAT));
        assert!(!writes_through(&default, libc::O_RDWR));
        assert!(!writes_through(&default, libc::O_RDONLY | libc::O_TRUNC));
        let cached = FsOptions {
            writeback_cache: true,
            ..FsOptions::default()
        };
        assert!(!writes_through(&cached, libc::O_WRONLY));
        let direct = FsOptions {
            direct_io: true,
            writeback_cache: true,
            ..FsOptions::default()
        };
        assert!(writes_through(&direct, libc::O_WRONLY));
        assert_eq!(
            flags_for(&direct, libc::O_WRONLY),
            FOPEN_DIRECT_IO | FOPEN_NOFLUSH
        );
    }

    #[test]
    fn writeback_cache_keeps_every_open_in_the_page_cache() {
        let opts = FsOptions {
            writeback_cache: true,
            ..FsOptions::default()
        };
        assert_eq!(flags_for(&opts, libc::O_WRONLY), FOPEN_KEEP_CACHE);
    }

    #[test]
    fn direct_io_and_atomic_writes_bypass_it_for_every_open() {
        for opts in [
            FsOptions {
                direct_io: true,
                ..FsOptions::default()
            },
            FsOptions {
                atomic_writes: true,
                writeback_cache: true,
                ..FsOptions::default()
            },
        ] {
            assert_eq!(flags_for(&opts, libc::O_RDWR), FOPEN_DIRECT_IO);
            assert_eq!(
                flags_for(&opts, libc::O_RDONLY),
                FOPEN_DIRECT_IO | FOPEN_NOFLUSH
            );
        }
    }
}
