//! Mount configuration: `-o` options (as mount(8) and fstab pass them), sizes with
//! suffixes, and Warabi provider or Bedrock configuration files.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::store::PoolConfig;

/// Everything a mount needs, gathered from the command line, `-o` and `--config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountConfig {
    pub pool: PoolConfig,
    pub mountpoint: PathBuf,
    pub read_only: bool,
    pub sync: bool,
    pub atomic_writes: bool,
    pub direct_io: bool,
    pub writeback_cache: bool,
    /// Push the 1 MiB around a small read into the page cache (src/push.rs).
    pub read_push: bool,
    pub allow_other: bool,
    pub allow_root: bool,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub threads: usize,
    /// `io_uring=`: whether requests are served over FUSE-over-io_uring.
    pub io_uring: IoUringMode,
    /// Readahead of the mount, in bytes (the kernel's own cap for FUSE is 128 KiB).
    pub read_ahead: u64,
    /// Share of the system's dirty-page limit this mount may hold, in percent.
    pub max_dirty_ratio: u32,
    pub log_level: Option<String>,
    pub log_file: Option<PathBuf>,
    pub foreground: bool,
    /// Kernel mount flags passed through unchanged (nodev, nosuid, noexec, ...).
    pub kernel_flags: Vec<String>,
    /// Kernel mount options with a value passed through unchanged (the SELinux
    /// context options, when SELinux is on).
    pub kernel_options: Vec<String>,
    /// `remount`: change the running mount at `mountpoint` instead of mounting.
    pub remount: bool,
}

impl MountConfig {
    pub fn new(pool: PathBuf, mountpoint: PathBuf) -> MountConfig {
        MountConfig {
            pool: PoolConfig {
                path: pool,
                ..PoolConfig::default()
            },
            mountpoint,
            read_only: false,
            sync: false,
            atomic_writes: false,
            direct_io: false,
            writeback_cache: false,
            read_push: true,
            allow_other: false,
            allow_root: false,
            uid: None,
            gid: None,
            threads: default_threads(),
            io_uring: IoUringMode::Auto,
            read_ahead: DEFAULT_READ_AHEAD,
            max_dirty_ratio: DEFAULT_MAX_DIRTY_RATIO,
            log_level: None,
            log_file: None,
            foreground: false,
            kernel_flags: Vec::new(),
            kernel_options: Vec::new(),
            remount: false,
        }
    }
}

/// 1 MiB: sequential reads then arrive as requests of 1 MiB, the largest FUSE allows.
pub const DEFAULT_READ_AHEAD: u64 = 1 << 20;
/// FUSE mounts start at 1 %, which (with `writeback_cache`) keeps cached random writes
/// flushing in 4 KiB requests all the time; warabifs writes to memory, so it can be
/// trusted with more.
pub const DEFAULT_MAX_DIRTY_RATIO: u32 = 20;

/// `-o io_uring=`: whether the mount serves requests over FUSE-over-io_uring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IoUringMode {
    /// Use the rings when the kernel offers them, else /dev/fuse.
    #[default]
    Auto,
    /// Use the rings, or fail the mount saying why not.
    On,
    /// Serve every request over /dev/fuse.
    Off,
}

fn parse_io_uring(value: &str) -> Result<IoUringMode, String> {
    match value {
        "auto" => Ok(IoUringMode::Auto),
        "on" => Ok(IoUringMode::On),
        "off" => Ok(IoUringMode::Off),
        _ => Err(format!("\"{value}\" is not auto, on or off")),
    }
}

/// FUSE session threads unless `threads=` says otherwise: one per CPU, 2 to 8.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(2, 8)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("unknown mount option \"{0}\"")]
    UnknownOption(String),
    #[error("mount option \"{option}\": {reason}")]
    BadValue { option: String, reason: String },
    #[error("cannot read config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("config file {path}: {reason}")]
    Content { path: PathBuf, reason: String },
    #[error("mount option \"{0}\" cannot change on a remount (only ro, rw and the kernel's mount flags can)")]
    FixedOnRemount(String),
}

/// Options accepted without effect (README, "Mount options"): words mount(8), fstab and
/// systemd use for themselves, and flags whose feature a FUSE mount of warabifs does not
/// have (mandatory locks, which Linux dropped in 5.15; the kernel's change counter,
/// which FUSE does not keep; mount-time kernel messages, which FUSE does not print).
const IGNORED_OPTIONS: &[&str] = &[
    "defaults",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "nofail",
    "_netdev",
    "async",
    "iversion",
    "noiversion",
    "mand",
    "nomand",
    "silent",
    "loud",
];
/// Kernel flags handed on to the mount as they are. Those fuser cannot pass are set
/// right after mounting (see `mount::apply_kernel_flags`).
pub const KERNEL_FLAGS: &[&str] = &[
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "lazytime",
    "nolazytime",
    "symfollow",
    "nosymfollow",
    "dirsync",
];
/// FUSE's own kernel options that mountinfo lists and mount(8) hands back on a
/// remount; the kernel sets them from the user who mounts, so they are accepted as
/// they are and change nothing.
const FUSE_KERNEL_OPTIONS: &[&str] = &["user_id", "group_id"];
/// SELinux context options: passed to the kernel when SELinux is on, else dropped as
/// mount(8) drops them.
const CONTEXT_OPTIONS: &[&str] = &["context", "fscontext", "defcontext", "rootcontext"];

/// Parses a byte count: digits with an optional K, M, G or T suffix (powers of 1024,
/// optionally followed by "i" and/or "B").
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(digits_end);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("\"{text}\" is not a size (bytes, or a number with K, M, G or T)"))?;
    let shift = match suffix.trim_end_matches(['B', 'b']).trim_end_matches('i') {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return Err(format!("\"{text}\" has an unknown size suffix")),
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("\"{text}\" is too large"))
}

fn parse_number<T: std::str::FromStr>(option: &str, value: &str) -> Result<T, ConfigError> {
    value.parse().map_err(|_| ConfigError::BadValue {
        option: option.to_string(),
        reason: format!("\"{value}\" is not a number"),
    })
}

/// Applies one `-o` list ("a,b=c,...") to the configuration.
pub fn apply_options(config: &mut MountConfig, list: &str) -> Result<(), ConfigError> {
    for option in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        apply_option(config, option)?;
    }
    Ok(())
}

fn apply_option(config: &mut MountConfig, option: &str) -> Result<(), ConfigError> {
    let (name, value) = match option.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (option, None),
    };
    let bad = |reason: String| ConfigError::BadValue {
        option: name.to_string(),
        reason,
    };
    match (name, value) {
        ("create_if_missing_with_size", Some(v)) => {
            config.pool.create_if_missing_with_size = Some(parse_size(v).map_err(bad)?)
        }
        ("override_if_exists", None) => config.pool.override_if_exists = true,
        ("override_if_exists", Some(v)) => {
            config.pool.override_if_exists = parse_bool(v).map_err(bad)?
        }
        ("ro", None) => config.read_only = true,
        ("rw", None) => config.read_only = false,
        ("sync", None) => config.sync = true,
        ("atomic_writes", None) => config.atomic_writes = true,
        ("direct_io", None) => config.direct_io = true,
        ("writeback_cache", None) => config.writeback_cache = true,
        ("no_read_push", None) => config.read_push = false,
        ("allow_other", None) => config.allow_other = true,
        ("allow_root", None) => config.allow_root = true,
        // The kernel always checks permissions for warabifs; accepted for compatibility.
        ("default_permissions", None) => {}
        ("uid", Some(v)) => config.uid = Some(parse_number(name, v)?),
        ("gid", Some(v)) => config.gid = Some(parse_number(name, v)?),
        ("threads", Some(v)) => config.threads = parse_threads(v).map_err(bad)?,
        ("io_uring", Some(v)) => config.io_uring = parse_io_uring(v).map_err(bad)?,
        ("read_ahead", Some(v)) => config.read_ahead = parse_size(v).map_err(bad)?,
        ("max_dirty_ratio", Some(v)) => config.max_dirty_ratio = parse_percent(v).map_err(bad)?,
        ("log_level", Some(v)) => config.log_level = Some(v.to_string()),
        ("log_file", Some(v)) => config.log_file = Some(PathBuf::from(v)),
        ("remount", None) => config.remount = true,
        (n, None) if IGNORED_OPTIONS.contains(&n) => {}
        (n, None) if KERNEL_FLAGS.contains(&n) => config.kernel_flags.push(n.to_string()),
        (n, Some(v)) if FUSE_KERNEL_OPTIONS.contains(&n) => {
            let _: u32 = parse_number(n, v)?;
        }
        (n, Some(_)) if CONTEXT_OPTIONS.contains(&n) => {
            if selinux_enabled() {
                config.kernel_options.push(option.to_string());
            } else {
                tracing::info!("{n}: SELinux is not enabled, option dropped");
            }
        }
        (n, _) if n.starts_with("x-") || n.starts_with("X-") || n == "comment" => {}
        (n, None) if VALUED_OPTIONS.contains(&n) => {
            return Err(bad("needs a value (NAME=VALUE)".into()))
        }
        (n, Some(_)) if !VALUED_OPTIONS.contains(&n) && is_known_flag(n) => {
            return Err(bad("takes no value".into()))
        }
        _ => return Err(ConfigError::UnknownOption(option.to_string())),
    }
    Ok(())
}

/// Whether SELinux is on (its file system is mounted).
fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// What a remount changes: read-only or not, and kernel flags in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remount {
    pub read_only: bool,
    pub kernel_flags: Vec<String>,
}

/// Reads a remount's option list against the running mount's configuration. mount(8)
/// hands back every option of the mount (from mountinfo and fstab) with the new ones,
/// so an option is refused only when it would change something other than ro/rw and
/// the kernel's flags; the error names the first such option.
pub fn remount_options(current: &MountConfig, list: &str) -> Result<Remount, ConfigError> {
    let mut next = current.clone();
    next.kernel_flags.clear();
    for option in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let before = next.clone();
        apply_option(&mut next, option)?;
        let mut changed = next.clone();
        (changed.read_only, changed.remount) = (before.read_only, before.remount);
        changed.kernel_flags.clone_from(&before.kernel_flags);
        if changed != before {
            let name = option.split('=').next().unwrap_or(option);
            return Err(ConfigError::FixedOnRemount(name.to_string()));
        }
    }
    Ok(Remount {
        read_only: next.read_only,
        kernel_flags: next.kernel_flags,
    })
}

/// Options that take a value (NAME=VALUE).
const VALUED_OPTIONS: &[&str] = &[
    "user_id",
    "group_id",
    "context",
    "fscontext",
    "defcontext",
    "rootcontext",
    "create_if_missing_with_size",
    "uid",
    "gid",
    "threads",
    "io_uring",
    "read_ahead",
    "max_dirty_ratio",
    "log_level",
    "log_file",
];

/// Options that are flags (no value), as apply_option knows them.
fn is_known_flag(name: &str) -> bool {
    const FLAGS: &[&str] = &[
        "ro",
        "rw",
        "sync",
        "atomic_writes",
        "direct_io",
        "writeback_cache",
        "no_read_push",
        "allow_other",
        "allow_root",
        "default_permissions",
        "remount",
    ];
    FLAGS.contains(&name) || IGNORED_OPTIONS.contains(&name) || KERNEL_FLAGS.contains(&name)
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("\"{value}\" is not true or false")),
    }
}

fn parse_threads(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n @ 1..=64) => Ok(n),
        _ => Err(format!("\"{value}\" is not a thread count from 1 to 64")),
    }
}

fn parse_percent(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(n @ 1..=100) => Ok(n),
        _ => Err(format!("\"{value}\" is not a percentage from 1 to 100")),
    }
}

/// Reads the pool settings from a Warabi provider config (`{"target": {...}}`) or a
/// Bedrock config (`{"providers": [{"type": "warabi", ...}]}`); `provider_id` picks one
/// when Bedrock lists several.
pub fn pool_from_config_file(
    path: &Path,
    provider_id: Option<u16>,
) -> Result<PoolConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let content = |reason: String| ConfigError::Content {
        path: path.to_path_buf(),
        reason,
    };
    let json: Value =
        serde_json::from_str(&text).map_err(|e| content(format!("not valid JSON: {e}")))?;
    let provider = if json.get("providers").is_some() {
        bedrock_provider(&json, provider_id).map_err(content)?
    } else {
        &json
    };
    pool_from_provider(provider).map_err(content)
}

fn bedrock_provider(json: &Value, provider_id: Option<u16>) -> Result<&Value, String> {
    let providers = json["providers"]
        .as_array()
        .ok_or("\"providers\" is not a list")?;
    let warabi: Vec<&Value> = providers
        .iter()
        .filter(|p| p["type"] == "warabi")
        .filter(|p| provider_id.is_none_or(|id| p["provider_id"].as_u64() == Some(u64::from(id))))
        .collect();
    match (warabi.as_slice(), provider_id) {
        ([one], _) => Ok(&one["config"]),
        ([], Some(id)) => Err(format!("no warabi provider with provider_id {id}")),
        ([], None) => Err("no provider of type \"warabi\"".to_string()),
        (_, _) => Err("several warabi providers; pick one with --provider-id".to_string()),
    }
}

fn pool_from_provider(provider: &Value) -> Result<PoolConfig, String> {
    let target = provider
        .get("target")
        .ok_or("no \"target\" in the warabi provider config")?;
    match target["type"].as_str() {
        Some("pmem" | "pmdk") => {}
        Some(other) => return Err(format!("target type \"{other}\" is not pmem or pmdk")),
        None => return Err("the target has no \"type\"".to_string()),
    }
    let config = &target["config"];
    let path = config["path"]
        .as_str()
        .ok_or("the pmem target has no \"path\"")?;
    let size = match &config["create_if_missing_with_size"] {
        Value::Null => None,
        v => Some(
            v.as_u64()
                .ok_or("\"create_if_missing_with_size\" is not a non-negative integer")?,
        ),
    };
    let override_if_exists = match &config["override_if_exists"] {
        Value::Null => false,
        v => v
            .as_bool()
            .ok_or("\"override_if_exists\" is not a boolean")?,
    };
    Ok(PoolConfig {
        path: PathBuf::from(path),
        create_if_missing_with_size: size,
        override_if_exists,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MountConfig {
        MountConfig::new("/p".into(), "/m".into())
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("8388608"), Ok(8 << 20));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5Q").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn options_set_their_fields() {
        let mut c = config();
        apply_options(&mut c, "create_if_missing_with_size=64M,override_if_exists,ro,sync,allow_other,uid=7,gid=8,threads=3,nodev,defaults,x-systemd.automount,nofail,comment=systemd.x,atomic_writes,direct_io,writeback_cache,no_read_push").unwrap();
        assert_eq!(c.pool.create_if_missing_with_size, Some(64 << 20));
        assert!(
            c.pool.override_if_exists && c.read_only && c.sync && c.allow_other && c.atomic_writes
        );
        assert_eq!((c.uid, c.gid, c.threads), (Some(7), Some(8), 3));
        assert!(c.direct_io && c.writeback_cache && !c.read_push);
        assert_eq!(c.kernel_flags, vec!["nodev".to_string()]);
        assert_eq!((c.read_ahead, c.max_dirty_ratio), (1 << 20, 20));
        apply_options(&mut c, "read_ahead=4M,max_dirty_ratio=5").unwrap();
        assert_eq!((c.read_ahead, c.max_dirty_ratio), (4 << 20, 5));
        assert!(apply_options(&mut c, "max_dirty_ratio=0").is_err());
        assert!(apply_options(&mut c, "max_dirty_ratio=101").is_err());
        assert!(apply_options(&mut c, "read_ahead=lots").is_err());
    }

    #[test]
    fn unknown_options_are_named() {
        let err = apply_options(&mut config(), "rw,frobnicate").unwrap_err();
        assert_eq!(err.to_string(), "unknown mount option \"frobnicate\"");
        assert!(apply_options(&mut config(), "uid=x").is_err());
        let err = apply_options(&mut config(), "create_if_missing_with_size").unwrap_err();
        assert_eq!(
            err.to_string(),
            "mount option \"create_if_missing_with_size\": needs a value (NAME=VALUE)"
        );
        let err = apply_options(&mut config(), "ro=1").unwrap_err();
        assert_eq!(err.to_string(), "mount option \"ro\": takes no value");
        assert!(apply_options(&mut config(), "threads=0").is_err());
    }

    #[test]
    fn io_uring_takes_auto_on_or_off() {
        let mut c = config();
        assert_eq!(c.io_uring, IoUringMode::Auto);
        for (value, mode) in [
            ("on", IoUringMode::On),
            ("off", IoUringMode::Off),
            ("auto", IoUringMode::Auto),
        ] {
            apply_options(&mut c, &format!("io_uring={value}")).unwrap();
            assert_eq!(c.io_uring, mode);
        }
        let err = apply_options(&mut c, "io_uring=maybe").unwrap_err();
        assert_eq!(
            err.to_string(),
            "mount option \"io_uring\": \"maybe\" is not auto, on or off"
        );
        assert!(apply_options(&mut c, "io_uring").is_err());
    }

    #[test]
    fn remounts_change_ro_and_kernel_flags_only() {
        let mut current = config();
        apply_options(
            &mut current,
            "allow_other,create_if_missing_with_size=64M,nosuid",
        )
        .unwrap();
        // What mount(8) hands the helper for `mount -o remount,ro MNT`.
        let change = remount_options(
            &current,
            "ro,nosuid,nodev,relatime,remount,user_id=0,group_id=0,default_permissions,allow_other",
        )
        .unwrap();
        assert!(change.read_only);
        assert_eq!(change.kernel_flags, ["nosuid", "nodev", "relatime"]);
        let change =
            remount_options(&current, "remount,rw,create_if_missing_with_size=64M").unwrap();
        assert!(!change.read_only);
        let err = remount_options(&current, "remount,ro,threads=3").unwrap_err();
        assert_eq!(
            err.to_string(),
            "mount option \"threads\" cannot change on a remount (only ro, rw and the kernel's mount flags can)"
        );
        assert!(remount_options(&current, "remount,sync").is_err());
        assert!(remount_options(&current, "remount,frobnicate").is_err());
    }

    #[test]
    fn every_option_mount_passes_is_known() {
        let list = "relatime,norelatime,strictatime,nostrictatime,lazytime,nolazytime,diratime,nodiratime,nosymfollow,symfollow,iversion,noiversion,mand,nomand,silent,loud,owner,group,X-mount.mkdir,user_id=0,group_id=0,context=system_u:object_r:tmp_t:s0";
        let mut c = config();
        apply_options(&mut c, list).unwrap();
        assert!(c.kernel_flags.contains(&"nosymfollow".to_string()));
        assert!(!c.kernel_flags.contains(&"mand".to_string()));
        assert!(apply_options(&mut c, "user_id=me").is_err());
        apply_options(&mut c, "remount").unwrap();
        assert!(c.remount);
    }

    fn write_json(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn warabi_provider_config_is_read() {
        let f = write_json(
            r#"{"target":{"type":"pmem","config":{"path":"/x.pmem","create_if_missing_with_size":10485760}}}"#,
        );
        let pool = pool_from_config_file(f.path(), None).unwrap();
        assert_eq!(pool.path, PathBuf::from("/x.pmem"));
        assert_eq!(pool.create_if_missing_with_size, Some(10485760));
        assert!(!pool.override_if_exists);
    }

    #[test]
    fn bedrock_config_picks_the_warabi_provider() {
        let f = write_json(
            r#"{"providers":[{"type":"yokan","provider_id":1,"config":{}},
                {"type":"warabi","provider_id":42,"config":{"target":{"type":"pmdk","config":{"path":"/a","override_if_exists":true,"create_if_missing_with_size":8388608}}}},
                {"type":"warabi","provider_id":43,"config":{"target":{"type":"pmem","config":{"path":"/b"}}}}]}"#,
        );
        assert!(pool_from_config_file(f.path(), None)
            .unwrap_err()
            .to_string()
            .contains("--provider-id"));
        let pool = pool_from_config_file(f.path(), Some(42)).unwrap();
        assert_eq!(pool.path, PathBuf::from("/a"));
        assert!(pool.override_if_exists);
        assert_eq!(
            pool_from_config_file(f.path(), Some(43)).unwrap().path,
            PathBuf::from("/b")
        );
        assert!(pool_from_config_file(f.path(), Some(44)).is_err());
    }

    #[test]
    fn other_target_types_are_refused() {
        let f = write_json(r#"{"target":{"type":"abtio","config":{"path":"/x"}}}"#);
        assert!(pool_from_config_file(f.path(), None)
            .unwrap_err()
            .to_string()
            .contains("abtio"));
    }
}
