//! The command line: the mount form, the offline tools, the mount options they take,
//! and the manual pages generated from them (warabifs(8), mount.warabifs(8)).

use std::path::PathBuf;

use clap::{CommandFactory, Parser};
use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;

/// Mount a Warabi pmem pool: every region is a file.
#[derive(Parser, Debug)]
#[command(name = "warabifs", version)]
#[command(
    long_about = "Mount a Mochi Warabi pmem pool (a libpmemobj pool file, or a pool set \
file naming its parts and replicas) on MOUNTPOINT: every Warabi region is a file, and \
files made through the mount are Warabi regions. The command returns once the mount is \
live and serves it from a background process; it fails with a one-line reason when the \
mount fails. `warabifs ls|info|check POOL` are offline tools (see TOOLS)."
)]
pub struct Cli {
    /// POOL MOUNTPOINT, or only MOUNTPOINT when --config names the pool.
    #[arg(required = true, num_args = 1..=2, value_name = "POOL MOUNTPOINT")]
    pub paths: Vec<PathBuf>,
    /// Mount options, comma separated (see MOUNT OPTIONS); may be given more than once.
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub options: Vec<String>,
    /// Stay in the foreground, logging to standard error.
    #[arg(short = 'f', long)]
    pub foreground: bool,
    /// A Warabi provider config or a Bedrock config naming the pool.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The warabi provider to use when the Bedrock config has several.
    #[arg(long, value_name = "N")]
    pub provider_id: Option<u16>,
    /// Log level or filter (else WARABIFS_LOG, else warnings and errors).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

/// First arguments that select an offline tool instead of a mount. A pool file with
/// one of these names is mounted by giving a path to it: `warabifs ./ls MNT`.
pub const TOOLS: [&str; 3] = ["ls", "info", "check"];

/// Offline pool tools (the pool must not be mounted or in use by Warabi).
#[derive(Parser, Debug)]
#[command(name = "warabifs", version)]
pub struct ToolCli {
    #[command(subcommand)]
    pub tool: Tool,
}

#[derive(clap::Subcommand, Debug)]
pub enum Tool {
    /// List every file, directory and region of a pool with its RegionID, size,
    /// capacity, mode and mtime.
    Ls {
        pool: PathBuf,
        /// One JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Format version, size, space, counts and last shutdown state of a pool, and the
    /// replicas and parts of a pool set.
    Info {
        pool: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Check libpmemobj's consistency and warabifs' metadata; exit 0 when clean, 1 when
    /// problems remain, 2 when the check could not run.
    Check {
        pool: PathBuf,
        /// Fix what can be fixed, one transaction per fix.
        #[arg(long)]
        repair: bool,
        #[arg(long)]
        json: bool,
    },
}

/// Every mount option, as the manual pages list it: (option, what it does). The README
/// says more about each (and tests/system.rs mounts with each option of mount(8)'s
/// list).
pub const MOUNT_OPTIONS: &[(&str, &str)] = &[
    ("create_if_missing_with_size=SIZE", "Create the pool with SIZE bytes (K, M, G, T suffixes: powers of 1024) when POOL does not exist, as Warabi does; at least 8 MiB. An existing pool, or pool set, is opened as it is."),
    ("override_if_exists[=true|false]", "Delete POOL and create a new, empty single-file pool there (needs create_if_missing_with_size). For a pool set, as in Warabi, the set file is replaced and its parts are left as they are."),
    ("ro, rw", "Mount read-only (every change fails with EROFS) or read-write (the default). Both can change on a remount."),
    ("sync", "Persist every write before it returns (also the kernel's synchronous flag)."),
    ("atomic_writes", "Make each write of up to 1 MiB all-or-nothing across a crash, and durable at return."),
    ("direct_io", "Bypass the kernel's page cache for file data."),
    ("writeback_cache", "Let the kernel cache writes (ENOSPC and EFBIG then surface at fsync or close)."),
    ("no_read_push", "Do not push the 1 MiB around a small read into the page cache."),
    ("read_ahead=SIZE", "Readahead of the mount (default 1M; needs root)."),
    ("max_dirty_ratio=PERCENT", "Share of the dirty-page limit the mount may hold (default 20; needs root)."),
    ("allow_other, allow_root", "Let other users (or root) use the file system."),
    ("default_permissions", "Accepted; the kernel always checks permissions for warabifs."),
    ("uid=N, gid=N", "Owner and group shown for regions Warabi made, and given to a new root directory."),
    ("threads=N", "Threads serving requests, 1 to 64 (default: CPUs, 2 to 8)."),
    ("log_level=LEVEL, log_file=PATH", "Log level, and a file to append the log to (else syslog in the background)."),
    ("remount", "Change a live mount instead of mounting: ro, rw and the kernel flags below can change, any other option that differs from the mount's is refused by name (mount -o remount,ro MNT)."),
    ("dev, nodev, suid, nosuid, exec, noexec, dirsync", "Kernel mount flags, passed on."),
    ("atime, noatime, relatime, norelatime, strictatime, nostrictatime, diratime, nodiratime, lazytime, nolazytime", "Kernel atime flags, passed on. warabifs itself sets atime only at creation and by utimensat(2): reads never update it, under any of them (FUSE inodes are S_NOATIME)."),
    ("nosymfollow, symfollow", "Kernel flag: do not follow symbolic links on the mount (Linux 5.10)."),
    ("context=, fscontext=, defcontext=, rootcontext=", "SELinux labels, passed to the kernel when SELinux is enabled, else dropped (as mount(8) drops them)."),
    ("iversion, noiversion, mand, nomand, silent, loud", "Accepted without effect: FUSE keeps no change counter, Linux has no mandatory locks since 5.15, and FUSE prints no mount-time messages."),
    ("defaults, auto, noauto, user, nouser, users, owner, group, nofail, _netdev, async, comment=, x-*, X-*", "Words of mount(8), fstab and systemd, accepted without effect."),
    ("user_id=N, group_id=N", "FUSE's own kernel options, which mount(8) hands back on a remount; accepted without effect."),
];

/// The mount(8) helper's command line, as mount(8) calls it (for its manual page).
fn mount_helper_command() -> clap::Command {
    clap::Command::new("mount.warabifs")
        .disable_help_flag(true)
        .about("mount(8) helper for warabifs file systems")
        .long_about(
            "mount(8) runs mount.warabifs for file systems of type warabifs (mount -t \
warabifs, or an fstab line of that type). It runs `warabifs POOL MOUNTPOINT -o OPTIONS`, \
which returns once the mount is live. The mount is then listed as type fuse.warabifs. \
Mounts of type fuse.warabifs go through mount.fuse3(8) instead and end in the same \
command. Remounts (mount -o remount,ro MNT) take the same path.",
        )
        .arg(
            clap::Arg::new("pool")
                .value_name("POOL")
                .required(true)
                .help("The pool file or pool set file"),
        )
        .arg(
            clap::Arg::new("mountpoint")
                .value_name("MOUNTPOINT")
                .required(true)
                .help("Where to mount it"),
        )
        .arg(
            clap::Arg::new("options")
                .short('o')
                .value_name("OPTIONS")
                .help("Mount options, comma separated (see MOUNT OPTIONS)"),
        )
        .arg(
            clap::Arg::new("fake")
                .short('f')
                .action(clap::ArgAction::SetTrue)
                .help("Do everything but mount (mount -f)"),
        )
        .arg(
            clap::Arg::new("sloppy")
                .short('s')
                .action(clap::ArgAction::SetTrue)
                .help("Accepted; warabifs never ignores an unknown option"),
        )
        .arg(
            clap::Arg::new("nomtab")
                .short('n')
                .action(clap::ArgAction::SetTrue)
                .help("Accepted; there is no mtab to write"),
        )
        .arg(
            clap::Arg::new("verbose")
                .short('v')
                .action(clap::ArgAction::SetTrue)
                .help("Accepted"),
        )
        .arg(
            clap::Arg::new("namespace")
                .short('N')
                .value_name("NS")
                .help("Accepted (mount(8) has entered the namespace already)"),
        )
        .arg(
            clap::Arg::new("type")
                .short('t')
                .value_name("TYPE")
                .help("The file system type mount(8) was given"),
        )
        .after_long_help(
            "Environment: WARABIFS_BIN names the warabifs executable when it is not on \
mount(8)'s PATH (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin).",
        )
}

/// The manual pages: (file name, roff text).
pub fn man_pages() -> Vec<(String, Vec<u8>)> {
    vec![
        ("warabifs.8".to_string(), warabifs_page()),
        ("mount.warabifs.8".to_string(), helper_page()),
    ]
}

fn page_of(cmd: clap::Command) -> Man {
    Man::new(cmd)
        .section("8")
        .manual("System Administration")
        .source(format!("warabifs {}", env!("CARGO_PKG_VERSION")))
}

fn warabifs_page() -> Vec<u8> {
    let man = page_of(Cli::command());
    let mut out = Vec::new();
    man.render_title(&mut out).expect("in memory");
    man.render_name_section(&mut out).expect("in memory");
    out.extend(synopsis(&[
        (
            "warabifs",
            " POOL MOUNTPOINT [-o OPTIONS] [-f] [--log-level LEVEL]",
        ),
        (
            "warabifs",
            " --config FILE [--provider-id N] MOUNTPOINT [-o OPTIONS] [-f]",
        ),
        ("warabifs ls", " POOL [--json]"),
        ("warabifs info", " POOL [--json]"),
        ("warabifs check", " POOL [--repair] [--json]"),
    ]));
    man.render_description_section(&mut out).expect("in memory");
    man.render_options_section(&mut out).expect("in memory");
    out.extend(mount_options_section());
    out.extend(tools_section());
    out.extend(closing_sections(&[
        ("mount.warabifs", "8"),
        ("mount.fuse3", "8"),
        ("fstab", "5"),
        ("poolset", "5"),
        ("pmempool", "1"),
        ("libpmemobj", "7"),
    ]));
    out
}

fn helper_page() -> Vec<u8> {
    let man = page_of(mount_helper_command());
    let mut out = Vec::new();
    man.render_title(&mut out).expect("in memory");
    man.render_name_section(&mut out).expect("in memory");
    out.extend(synopsis(&[(
        "mount.warabifs",
        " POOL MOUNTPOINT [-sfnv] [-N NS] [-o OPTIONS] [-t TYPE]",
    )]));
    man.render_description_section(&mut out).expect("in memory");
    man.render_options_section(&mut out).expect("in memory");
    out.extend(mount_options_section());
    man.render_extra_section(&mut out).expect("in memory");
    let mut examples = Roff::default();
    examples.control("SH", ["EXAMPLES"]);
    for line in [
        "mount -t warabifs /mnt/pmem/warabi.pmem /mnt/regions -o create_if_missing_with_size=10G",
        "mount -o remount,ro /mnt/regions",
        "/mnt/pmem/warabi.set /mnt/regions warabifs defaults,nofail,allow_other 0 0   (fstab)",
    ] {
        examples.control("IP", []).text([roman(line)]);
    }
    out.extend(examples.to_roff().into_bytes());
    out.extend(closing_sections(&[
        ("warabifs", "8"),
        ("mount", "8"),
        ("fstab", "5"),
    ]));
    out
}

/// The forms of a command, each on its own line: (command, its arguments).
fn synopsis(forms: &[(&str, &str)]) -> Vec<u8> {
    let mut roff = Roff::default();
    roff.control("SH", ["SYNOPSIS"]);
    for (command, arguments) in forms {
        roff.text([bold(*command), roman(*arguments)])
            .control("br", []);
    }
    roff.to_roff().into_bytes()
}

fn mount_options_section() -> Vec<u8> {
    let mut roff = Roff::default();
    roff.control("SH", ["MOUNT OPTIONS"]);
    roff.text([roman(
        "Options are comma separated; -o may be given more than once. An unknown option, \
         or a value an option does not take, fails the mount naming the option.",
    )]);
    for (option, meaning) in MOUNT_OPTIONS {
        roff.control("TP", [])
            .text([bold(*option)])
            .text([roman(*meaning)]);
    }
    roff.to_roff().into_bytes()
}

fn tools_section() -> Vec<u8> {
    let mut roff = Roff::default();
    roff.control("SH", ["TOOLS"]);
    roff.text([roman(
        "They read a pool that is not mounted (and not open in Warabi); POOL is a pool \
         file or a pool set file.",
    )]);
    for tool in ToolCli::command().get_subcommands() {
        let about = tool.get_about().map(|a| a.to_string()).unwrap_or_default();
        roff.control("TP", [])
            .text([bold(format!("warabifs {}", tool.get_name()))])
            .text([roman(about)]);
    }
    roff.to_roff().into_bytes()
}

fn closing_sections(see_also: &[(&str, &str)]) -> Vec<u8> {
    let mut roff = Roff::default();
    roff.control("SH", ["FILES"]);
    roff.text([
        italic("/usr/local/share/doc/warabifs/"),
        roman(" README.md (options, fstab, systemd), SEMANTICS.md, FORMAT.md"),
    ]);
    roff.control("SH", ["SEE ALSO"]);
    let names: Vec<String> = see_also.iter().map(|(n, s)| format!("{n}({s})")).collect();
    roff.text([roman(names.join(", "))]);
    roff.to_roff().into_bytes()
}
