//! Offline pool tools: `warabifs ls`, `info` and `check` read (and `check --repair`
//! mends) a pool that is not mounted, straight from its records.

mod check;
mod inventory;
mod listing;

use std::io::{IsTerminal, Write};
use std::path::Path;

use serde::Serialize;

pub use check::{check, CheckReport, Problem};
pub use inventory::Inventory;

use crate::store::poolset::PartInfo;
use crate::store::records::{Timestamp, FORMAT_VERSION};
use crate::store::Oid;
use crate::store::{PoolConfig, PoolKind, Scan, Store, StoreError};

/// Opens an existing pool for inspection: never creates, formats or reclaims anything.
/// A pool in use (mounted, or open in Warabi) gives StoreError::InUse.
pub fn open(path: &Path) -> Result<Store, StoreError> {
    let config = PoolConfig {
        path: path.to_path_buf(),
        ..PoolConfig::default()
    };
    Store::open(&config, true)
}

/// Scans the pool, with a spinner on a terminal (big pools take a moment).
pub fn scan(store: &Store) -> Scan {
    with_spinner(|progress| store.scan_with_progress(progress))
}

/// Runs `work`, which reports how many objects it has read, with a spinner showing
/// that count on a terminal.
fn with_spinner<R>(work: impl FnOnce(&mut dyn FnMut(u64)) -> R) -> R {
    if !std::io::stderr().is_terminal() {
        return work(&mut |_| {});
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message("reading pool objects");
    let result = work(&mut |n| spinner.set_position(n));
    spinner.finish_and_clear();
    result
}

/// One line of `warabifs ls`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Listing {
    pub path: String,
    pub kind: &'static str,
    pub ino: u64,
    /// The RegionID holding the data; none for an empty file or a non-file.
    pub region_id: Option<String>,
    pub size: u64,
    /// Bytes of the file its region holds; the rest of `size` reads as zeros.
    pub stored: u64,
    pub capacity: u64,
    /// Mode bits (type and permissions).
    pub mode: u32,
    /// Modification time (RFC 3339, UTC); none for a Warabi region, which has no times.
    pub mtime: Option<String>,
}

fn kind_name(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "file",
        libc::S_IFDIR => "dir",
        libc::S_IFLNK => "symlink",
        libc::S_IFIFO => "fifo",
        libc::S_IFSOCK => "socket",
        libc::S_IFCHR => "char",
        libc::S_IFBLK => "block",
        _ => "unknown",
    }
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` in UTC, times before 1970 too (`touch -d 1960-01-01`
/// makes one); a time past the calendar's years is given as `@SECONDS.NANOS`.
fn rfc3339(t: Timestamp) -> String {
    match time::OffsetDateTime::from_unix_timestamp(t.secs) {
        Ok(at) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second(),
            t.nanos
        ),
        Err(_) => format!("@{}.{:09}", t.secs, t.nanos),
    }
}

fn region_id(region: Oid) -> Option<String> {
    (!region.is_null()).then(|| region.to_string())
}

/// Every path in the pool (sorted by path), then every region Warabi made (listed by
/// RegionID), from one scan.
pub fn list(store: &Store) -> Vec<Listing> {
    let mut rows = Vec::new();
    with_spinner(|progress| listing::for_each_row(store, progress, |row| rows.push(row)));
    rows
}

/// `ls` as text on standard output, each line written as it is made (a pool of a
/// million regions lists without holding a million rows). A closed pipe (`| head`)
/// ends the listing quietly.
pub fn print_listing(store: &Store) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut result = Ok(());
    with_spinner(|progress| {
        listing::for_each_row(store, progress, |row| {
            if result.is_ok() {
                result = listing::write_row(&mut out, &row);
            }
        })
    });
    match result.and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// What `warabifs info` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Info {
    /// warabifs format version; none for a pool without warabifs metadata (only Warabi
    /// has used it).
    pub format_version: Option<u32>,
    pub supported_format_version: u32,
    pub pool_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub files: usize,
    pub directories: usize,
    pub symlinks: usize,
    pub special_files: usize,
    /// All type-0 objects: file data and regions Warabi made.
    pub regions: usize,
    pub warabi_made_regions: usize,
    /// "clean", "dirty" (the last process with the pool open did not close it), or
    /// "unknown" (the pool does not record it).
    pub last_shutdown: &'static str,
    /// "file", or "pool set" (its replicas and parts below).
    pub pool_kind: &'static str,
    /// A pool set's `OPTION SINGLEHDR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub single_header: Option<bool>,
    /// A pool set's replicas, master first, each with its parts as found on disk.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<Vec<PartInfo>>,
}

pub fn info(store: &Store, inv: &Inventory) -> Info {
    let header = store.header();
    let count = |kind: u32| {
        inv.inodes
            .values()
            .filter(|i| i.meta.mode & libc::S_IFMT == kind)
            .count()
    };
    let special = [libc::S_IFIFO, libc::S_IFSOCK, libc::S_IFCHR, libc::S_IFBLK]
        .into_iter()
        .map(count)
        .sum();
    let (pool_kind, single_header, replicas) = match &header.kind {
        PoolKind::File => ("file", None, Vec::new()),
        PoolKind::Set { set, replicas } => ("pool set", Some(set.single_header), replicas.clone()),
    };
    Info {
        pool_kind,
        single_header,
        replicas,
        format_version: header
            .superblock
            .filter(|sb| store.is_formatted() && sb.version > 0)
            .map(|sb| sb.version),
        supported_format_version: FORMAT_VERSION,
        pool_bytes: store.total_bytes(),
        used_bytes: store.total_bytes() - store.free_bytes(),
        free_bytes: store.free_bytes(),
        files: count(libc::S_IFREG),
        directories: count(libc::S_IFDIR),
        symlinks: count(libc::S_IFLNK),
        special_files: special,
        regions: inv.regions.len(),
        warabi_made_regions: inv.warabi_regions().len(),
        last_shutdown: match header.clean_shutdown {
            Some(true) => "clean",
            Some(false) => "dirty",
            None => "unknown",
        },
    }
}

/// `info` as text: one "name: value" line each.
pub fn render_info(i: &Info) -> String {
    let format = match i.format_version {
        Some(v) => format!(
            "warabifs format {v} (this build reads up to {})",
            i.supported_format_version
        ),
        None => "no warabifs metadata (a pool only Warabi has used)".to_string(),
    };
    [
        ("format", format),
        ("pool size", format!("{} bytes", i.pool_bytes)),
        ("used", format!("{} bytes", i.used_bytes)),
        ("free", format!("{} bytes", i.free_bytes)),
        ("files", i.files.to_string()),
        ("directories", i.directories.to_string()),
        ("symlinks", i.symlinks.to_string()),
        ("special files", i.special_files.to_string()),
        (
            "regions",
            format!(
                "{} ({} made by Warabi, not by warabifs)",
                i.regions, i.warabi_made_regions
            ),
        ),
        ("last shutdown", i.last_shutdown.to_string()),
        ("pool kind", pool_kind_line(i)),
    ]
    .iter()
    .map(|(k, v)| format!("{k}: {v}\n"))
    .chain(i.replicas.iter().enumerate().map(render_replica))
    .collect()
}

fn pool_kind_line(i: &Info) -> String {
    match i.single_header {
        Some(single) => format!(
            "pool set, {} replica(s){}",
            i.replicas.len(),
            if single { ", OPTION SINGLEHDR" } else { "" }
        ),
        None => i.pool_kind.to_string(),
    }
}

/// One replica of a pool set: a line for it, then a line per part.
fn render_replica((index, parts): (usize, &Vec<PartInfo>)) -> String {
    let role = if index == 0 { " (master)" } else { "" };
    let mut out = format!("replica {index}{role}: {} part(s)\n", parts.len());
    for (n, p) in parts.iter().enumerate() {
        let kind = match p.kind {
            crate::store::poolset::PartKind::File => "file",
            crate::store::poolset::PartKind::DeviceDax => "device DAX",
        };
        out += &format!(
            "  part {n}: {} ({kind}, {} bytes, pool bytes {}..{})\n",
            p.path.display(),
            p.size,
            p.pool_offset,
            p.pool_offset + p.pool_bytes
        );
    }
    out
}

/// `check` as text: each problem, then a summary line.
pub fn render_check(r: &CheckReport) -> String {
    let mut out = String::new();
    if !r.pmemobj_consistent {
        out += "libpmemobj: the pool is NOT consistent (repair it with `pmempool check --repair` first)\n";
    }
    for p in &r.problems {
        let state = if p.fixed { "fixed" } else { "not fixed" };
        out += &format!("{}: {} [{state}]\n", p.kind, p.detail);
    }
    let fixed = r.problems.iter().filter(|p| p.fixed).count();
    out += &format!(
        "{} problems found, {fixed} fixed; the pool is {}\n",
        r.problems.len(),
        if r.is_clean() { "clean" } else { "NOT clean" }
    );
    out
}
