//! Turns a [`MountConfig`] into a live FUSE session over an open pool.

use std::sync::Arc;

use fuser::{Config, MountOption, Session, SessionACL};

use crate::config::MountConfig;
use crate::fs::{FsOptions, WarabiFs};
use crate::fuse::FuseAdapter;

/// Opens the pool and mounts it; returns once the kernel has answered FUSE's INIT, that
/// is once the file system is live. Errors are one line naming the problem.
pub fn mount(config: &MountConfig) -> Result<Session<FuseAdapter>, String> {
    check_mountpoint(config)?;
    let defaults = FsOptions::default();
    let opts = FsOptions {
        read_only: config.read_only,
        sync: config.sync,
        atomic_writes: config.atomic_writes,
        direct_io: config.direct_io,
        uid: config.uid.unwrap_or(defaults.uid),
        gid: config.gid.unwrap_or(defaults.gid),
    };
    let fs = WarabiFs::open_pool(&config.pool, opts).map_err(|e| e.to_string())?;
    let adapter = FuseAdapter::new(Arc::new(fs));
    Session::new(adapter, &config.mountpoint, &fuse_config(config))
        .map_err(|e| format!("cannot mount on {}: {e}", config.mountpoint.display()))
}

fn check_mountpoint(config: &MountConfig) -> Result<(), String> {
    let path = &config.mountpoint;
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("mount point {} is not a directory", path.display())),
        Err(e) => Err(format!("mount point {}: {e}", path.display())),
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
