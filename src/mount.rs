//! Turns a [`MountConfig`] into a live FUSE session over an open pool.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use fuser::{Config, INodeNo, InitFlags, MountOption, Session, SessionACL};
use nix::mount::MsFlags;

use crate::config::{IoUringMode, MountConfig};
use crate::fs::{FsOptions, WarabiFs};
use crate::fuse::adapter::{FuserAdapter, Transport};
use crate::fuse::dispatch::WarabiOps;
use crate::fuse::ops::Operations;
use crate::fuse::uring::{self, Rings};
use crate::push::ReadPush;

/// A live mount: the /dev/fuse session, the rings when they serve it, and the file
/// system, whose pool closes when the last of them lets go.
pub struct Mounted {
    pub session: Session<FuserAdapter<WarabiOps>>,
    rings: Option<Rings>,
    fs: Arc<WarabiFs>,
    mountpoint: PathBuf,
}

impl Mounted {
    /// What ends the mount from another thread (on SIGTERM).
    pub fn unmounter(&mut self) -> Unmounter {
        Unmounter {
            device: find_mount(&self.mountpoint, "fuse.warabifs").map(|m| m.device),
            mountpoint: self.mountpoint.clone(),
            unprivileged: self.session.unmount_callable(),
        }
    }

    /// The mounted file system (for the remount control thread).
    pub fn fs(&self) -> &Arc<WarabiFs> {
        &self.fs
    }

    /// Serves until the file system is unmounted (or the connection aborted), then
    /// stops the rings; closing the pool comes last, so that whoever waits for the pool
    /// to be released finds the log complete.
    pub fn serve(self) -> std::io::Result<()> {
        let Mounted {
            session, rings, fs, ..
        } = self;
        let result = session.run();
        drop(rings);
        drop(fs);
        result
    }
}

/// Opens the pool and mounts it; returns once the kernel has answered FUSE's INIT, that
/// is once the file system is live, and the rings (when used) are registered. Errors
/// are one line naming the problem.
pub fn mount(config: &MountConfig) -> Result<Mounted, String> {
    let mountpoint = resolve_mountpoint(config)?;
    let want_uring = wants_uring(config.io_uring)?;
    let fs = Arc::new(open_fs(config)?);
    let push = Arc::new(OnceLock::new());
    let ops = Arc::new(WarabiOps::new(Arc::clone(&fs), Arc::clone(&push)));
    let transport = Arc::new(Transport::default());
    let adapter = FuserAdapter::new(Arc::clone(&ops), want_uring.is_ok(), Arc::clone(&transport));
    let session = Session::new(adapter, &config.mountpoint, &fuse_config(config))
        .map_err(|e| format!("cannot mount on {}: {e}", config.mountpoint.display()))?;
    let notifier = session.notifier();
    ops.set_attr_invalidator(Box::new(move |ino| {
        // An inode the kernel does not know (ENOENT) has nothing cached to drop.
        let _ = notifier.inval_inode(INodeNo(ino), -1, 0);
    }));
    let rings = start_rings(config.io_uring, want_uring, &transport, &session, ops)?;
    if config.read_push && !fs.options().every_open_direct() {
        let started = ReadPush::start(Arc::clone(&fs), session.notifier())
            .map_err(|e| format!("cannot start the read-push thread: {e}"))?;
        let _ = push.set(started);
    }
    tune_page_cache(&mountpoint, "fuse.warabifs", config);
    apply_kernel_flags(&mountpoint, &config.kernel_flags)?;
    Ok(Mounted {
        session,
        rings,
        fs,
        mountpoint,
    })
}

/// How long a root unmount retries a busy mount before it gives up.
const BUSY_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// Unmounts a live mount; may be asked again after a failure.
pub struct Unmounter {
    mountpoint: PathBuf,
    /// The mount's "major:minor", so that a mount stacked on top is never the one
    /// unmounted.
    device: Option<String>,
    unprivileged: fuser::SessionUnmounter,
}

impl Unmounter {
    /// As root, a plain umount(2), retried for a moment while the mount is busy: a
    /// process that forks while it has a file of the mount open holds it in the child
    /// until the child's exec, which is a busy mount of a few milliseconds. Other users
    /// get fuser's lazy unmount through fusermount3. Err: still busy (the mount keeps
    /// serving), or the reason it cannot be unmounted.
    pub fn unmount(&mut self) -> std::io::Result<()> {
        if !nix::unistd::geteuid().is_root() {
            return self.unprivileged.unmount();
        }
        if self.device.is_none() || topmost_device(&self.mountpoint) != self.device {
            return Err(std::io::Error::other(format!(
                "{} is no longer the topmost mount there",
                self.mountpoint.display()
            )));
        }
        let deadline = std::time::Instant::now() + BUSY_RETRY;
        loop {
            match nix::mount::umount(&self.mountpoint) {
                Ok(()) => return Ok(()),
                Err(nix::errno::Errno::EBUSY) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn open_fs(config: &MountConfig) -> Result<WarabiFs, String> {
    let defaults = FsOptions::default();
    let opts = FsOptions {
        read_only: config.read_only,
        sync: config.sync,
        atomic_writes: config.atomic_writes,
        direct_io: config.direct_io,
        writeback_cache: config.writeback_cache,
        uid: config.uid.unwrap_or(defaults.uid),
        gid: config.gid.unwrap_or(defaults.gid),
    };
    WarabiFs::open_pool(&config.pool, opts).map_err(|e| e.to_string())
}

/// Whether to ask for the rings at INIT: `Ok` to ask, `Err(why not)` otherwise, which
/// fails the mount before anything is opened when the rings were demanded.
pub fn wants_uring(mode: IoUringMode) -> Result<Result<(), String>, String> {
    match mode {
        IoUringMode::Off => Ok(Err("io_uring=off".to_string())),
        IoUringMode::Auto => Ok(uring::kernel_allows()),
        IoUringMode::On => match uring::kernel_allows() {
            Ok(()) => Ok(Ok(())),
            Err(why) => Err(format!("io_uring=on: {why}")),
        },
    }
}

/// Starts the rings when INIT settled on them, and says once which transport serves
/// the mount and why.
/// Public, with [`wants_uring`], so that the FUSE-floor benchmark picks its transport
/// exactly as warabifs does.
pub fn start_rings<O: Operations>(
    mode: IoUringMode,
    wanted: Result<(), String>,
    transport: &Transport,
    session: &Session<FuserAdapter<O>>,
    ops: Arc<O>,
) -> Result<Option<Rings>, String> {
    let offered = transport
        .granted
        .get()
        .is_some_and(|g| g.contains(InitFlags::FUSE_OVER_IO_URING));
    let not_offered = "the kernel did not offer FUSE_OVER_IO_URING at INIT";
    match (wanted, offered) {
        (Ok(()), true) => {
            // A descriptor of the rings' own: the session's closes when it ends, while a
            // ring thread may still submit a last command on it.
            let fd: OwnedFd = session
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| format!("cannot duplicate /dev/fuse for the rings: {e}"))?;
            let rings = match Rings::start(fd, ops) {
                Ok(rings) => rings,
                // The kernel switches to the rings only once every queue has an entry;
                // until then it keeps using /dev/fuse, so auto can fall back to it.
                Err(e) if mode == IoUringMode::Auto => {
                    tracing::warn!("transport: /dev/fuse (cannot start FUSE-over-io_uring: {e})");
                    return Ok(None);
                }
                Err(e) => return Err(format!("io_uring=on: cannot start FUSE-over-io_uring: {e}")),
            };
            tracing::info!(
                "transport: FUSE-over-io_uring, {} queues (one per possible CPU, each on a thread pinned to it)",
                rings.queues()
            );
            transport.rings_serve.store(true, Ordering::Relaxed);
            Ok(Some(rings))
        }
        (Ok(()), false) if mode == IoUringMode::On => Err(format!("io_uring=on: {not_offered}")),
        (Ok(()), false) => {
            tracing::info!("transport: /dev/fuse ({not_offered})");
            Ok(None)
        }
        (Err(why), _) => {
            tracing::info!("transport: /dev/fuse ({why})");
            Ok(None)
        }
    }
}

/// One mount as /proc/self/mountinfo lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// "major:minor" of the mount's device.
    pub device: String,
    /// Its flags as option words: the mount's own (ro, nosuid, relatime, ...) then the
    /// superblock's (sync, dirsync, lazytime). A mount with neither noatime nor
    /// relatime is listed with "strictatime", which mountinfo leaves out.
    pub flags: Vec<String>,
}

/// The topmost (last listed) mount of type `fstype` on `mountpoint`.
pub fn find_mount(mountpoint: &Path, fstype: &str) -> Option<MountEntry> {
    mounts_on(mountpoint)
        .into_iter()
        .rev()
        .find_map(|(kind, entry)| (kind == fstype).then_some(entry))
}

/// The device of the topmost mount on `mountpoint`, whatever its type.
fn topmost_device(mountpoint: &Path) -> Option<String> {
    mounts_on(mountpoint).pop().map(|(_, entry)| entry.device)
}

/// The mounts on `mountpoint` with their types, bottom first, as mountinfo lists them.
fn mounts_on(mountpoint: &Path) -> Vec<(String, MountEntry)> {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let wanted = mountpoint.as_os_str().as_bytes();
    mountinfo
        .lines()
        .filter_map(|line| {
            let (mount_part, super_part) = line.split_once(" - ")?;
            let fields: Vec<&str> = mount_part.split(' ').collect();
            let super_fields: Vec<&str> = super_part.split(' ').collect();
            if unescape_mountinfo(fields.get(4)?) != wanted {
                return None;
            }
            let mut flags: Vec<String> = fields.get(5)?.split(',').map(String::from).collect();
            if !flags.iter().any(|f| f == "noatime" || f == "relatime") {
                flags.push("strictatime".into());
            }
            let super_flags = super_fields.get(2).map_or("", |o| o).split(',');
            flags.extend(
                super_flags
                    .filter(|f| matches!(*f, "sync" | "dirsync" | "lazytime"))
                    .map(String::from),
            );
            let entry = MountEntry {
                device: fields[2].to_string(),
                flags,
            };
            Some((super_fields.first()?.to_string(), entry))
        })
        .collect()
}

/// The mount(2) flags of option words, applied in order (later words win). The atime
/// words choose one of the kernel's three modes (noatime, relatime, strictatime).
pub fn mount_flags<'a>(words: impl IntoIterator<Item = &'a str>) -> MsFlags {
    const ATIME_MODES: MsFlags = MsFlags::MS_NOATIME
        .union(MsFlags::MS_RELATIME)
        .union(MsFlags::MS_STRICTATIME);
    let mut flags = MsFlags::empty();
    for word in words {
        let (flag, set) = match word {
            "ro" => (MsFlags::MS_RDONLY, true),
            "rw" => (MsFlags::MS_RDONLY, false),
            "nosuid" => (MsFlags::MS_NOSUID, true),
            "suid" => (MsFlags::MS_NOSUID, false),
            "nodev" => (MsFlags::MS_NODEV, true),
            "dev" => (MsFlags::MS_NODEV, false),
            "noexec" => (MsFlags::MS_NOEXEC, true),
            "exec" => (MsFlags::MS_NOEXEC, false),
            "sync" => (MsFlags::MS_SYNCHRONOUS, true),
            "async" => (MsFlags::MS_SYNCHRONOUS, false),
            "dirsync" => (MsFlags::MS_DIRSYNC, true),
            "nodiratime" => (MsFlags::MS_NODIRATIME, true),
            "diratime" => (MsFlags::MS_NODIRATIME, false),
            "lazytime" => (MsFlags::MS_LAZYTIME, true),
            "nolazytime" => (MsFlags::MS_LAZYTIME, false),
            "nosymfollow" => (NOSYMFOLLOW, true),
            "symfollow" => (NOSYMFOLLOW, false),
            "atime" => (MsFlags::MS_NOATIME, false),
            "norelatime" => (MsFlags::MS_RELATIME, false),
            "nostrictatime" => (MsFlags::MS_STRICTATIME, false),
            "noatime" | "relatime" | "strictatime" => {
                flags.remove(ATIME_MODES);
                let mode = match word {
                    "noatime" => MsFlags::MS_NOATIME,
                    "relatime" => MsFlags::MS_RELATIME,
                    _ => MsFlags::MS_STRICTATIME,
                };
                (mode, true)
            }
            _ => continue,
        };
        flags.set(flag, set);
    }
    flags
}

/// `MS_NOSYMFOLLOW` (Linux 5.10), which nix does not name.
const NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);

/// Changes the flags of the mount at `mountpoint` to its current ones with `words`
/// applied (one mount(2) with MS_REMOUNT, which needs CAP_SYS_ADMIN). Nothing happens
/// when they change nothing, so the flags fuser passes itself cost no remount.
pub fn remount_kernel(mountpoint: &Path, words: &[String]) -> Result<(), String> {
    let entry = find_mount(mountpoint, "fuse.warabifs")
        .ok_or_else(|| format!("{} is not a warabifs mount", mountpoint.display()))?;
    let current = mount_flags(entry.flags.iter().map(String::as_str));
    let wanted = mount_flags(entry.flags.iter().chain(words).map(String::as_str));
    if wanted == current {
        return Ok(());
    }
    nix::mount::mount(
        None::<&str>,
        mountpoint,
        None::<&str>,
        MsFlags::MS_REMOUNT | wanted,
        None::<&str>,
    )
    .map_err(|e| {
        let why = match e {
            nix::errno::Errno::EBUSY => "a file is open for writing".to_string(),
            nix::errno::Errno::EPERM => "changing mount flags needs root".to_string(),
            e => e.desc().to_string(),
        };
        format!(
            "cannot set {} on {}: {why}",
            words.join(","),
            mountpoint.display()
        )
    })
}

/// Sets the kernel flags fuser cannot pass when it mounts (relatime, nodiratime,
/// lazytime, nosymfollow, ...), right after the mount is live.
fn apply_kernel_flags(mountpoint: &Path, flags: &[String]) -> Result<(), String> {
    remount_kernel(mountpoint, flags)
}

/// Sets the mount's readahead and dirty-page share on its backing device, the knobs an
/// administrator would otherwise set in /sys/class/bdi. They need root; without it the
/// kernel's defaults stay (readahead 128 KiB, 1 % of dirty pages) and a note is logged.
/// `fstype` names the mount as mountinfo lists it; public for the FUSE-floor benchmark.
pub fn tune_page_cache(mountpoint: &Path, fstype: &str, config: &MountConfig) {
    let Some(device) = mounted_device(mountpoint, fstype) else {
        tracing::info!(
            "{} not found in mountinfo; page cache not tuned",
            mountpoint.display()
        );
        return;
    };
    let bdi = Path::new("/sys/class/bdi").join(device);
    let settings = [
        ("read_ahead_kb", config.read_ahead / 1024),
        ("max_ratio", u64::from(config.max_dirty_ratio)),
    ];
    for (knob, value) in settings {
        let path = bdi.join(knob);
        if let Err(e) = std::fs::write(&path, value.to_string()) {
            tracing::info!("cannot set {} to {value}: {e}", path.display());
        }
    }
}

/// The device ("major:minor") of the topmost (last listed) mount of type `fstype` on
/// `mountpoint`.
fn mounted_device(mountpoint: &Path, fstype: &str) -> Option<String> {
    find_mount(mountpoint, fstype).map(|entry| entry.device)
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape_mountinfo(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let text = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// The mount point as an absolute path without symlinks, checked to be a directory.
/// Resolved before mounting: once mounted, resolving the path would ask the not yet
/// running session about its own root.
fn resolve_mountpoint(config: &MountConfig) -> Result<PathBuf, String> {
    let path = &config.mountpoint;
    let unusable = |e: std::io::Error| format!("mount point {}: {e}", path.display());
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => std::fs::canonicalize(path).map_err(unusable),
        Ok(_) => Err(format!("mount point {} is not a directory", path.display())),
        Err(e) => Err(unusable(e)),
    }
}

fn fuse_config(config: &MountConfig) -> Config {
    let mut options = vec![
        MountOption::FSName(config.pool.path.display().to_string()),
        // fuser's direct mount(2) drops Subtype; as a kernel option the mount is listed
        // as type fuse.warabifs, which findmnt, umount -t and systemd match on.
        MountOption::CUSTOM("subtype=warabifs".to_string()),
        // The kernel checks permissions from the mode, owner and group warabifs reports.
        MountOption::DefaultPermissions,
    ];
    if config.read_only {
        options.push(MountOption::RO);
    }
    if config.sync {
        options.push(MountOption::Sync);
    }
    options.extend(
        config
            .kernel_flags
            .iter()
            .filter_map(|flag| kernel_flag(flag)),
    );
    options.extend(
        config
            .kernel_options
            .iter()
            .cloned()
            .map(MountOption::CUSTOM),
    );
    let mut fuse = Config::default();
    fuse.mount_options = options;
    fuse.acl = match (config.allow_other, config.allow_root) {
        (true, _) => SessionACL::All,
        (false, true) => SessionACL::RootAndOwner,
        (false, false) => SessionACL::Owner,
    };
    fuse.n_threads = Some(config.threads);
    fuse.clone_fd = config.threads > 1;
    fuse
}

fn kernel_flag(flag: &str) -> Option<MountOption> {
    Some(match flag {
        "dev" => MountOption::Dev,
        "nodev" => MountOption::NoDev,
        "suid" => MountOption::Suid,
        "nosuid" => MountOption::NoSuid,
        "exec" => MountOption::Exec,
        "noexec" => MountOption::NoExec,
        "atime" => MountOption::Atime,
        "noatime" => MountOption::NoAtime,
        "dirsync" => MountOption::DirSync,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_words_make_mount_flags_in_order() {
        let flags = mount_flags(["rw", "nosuid", "nodev", "relatime", "ro", "noatime"]);
        assert_eq!(
            flags,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOATIME
        );
        let flags = mount_flags(["ro", "nosuid", "relatime", "rw", "suid", "strictatime"]);
        assert_eq!(flags, MsFlags::MS_STRICTATIME);
        let flags = mount_flags([
            "nosymfollow",
            "lazytime",
            "nodiratime",
            "dirsync",
            "iversion",
        ]);
        assert_eq!(
            flags,
            NOSYMFOLLOW | MsFlags::MS_LAZYTIME | MsFlags::MS_NODIRATIME | MsFlags::MS_DIRSYNC
        );
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(r"/mnt/a\040b\134c"), b"/mnt/a b\\c");
        assert_eq!(unescape_mountinfo(r"/plain\0"), b"/plain\\0");
    }
}
