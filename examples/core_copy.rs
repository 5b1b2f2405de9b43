//! What a `cp -r` costs warabifs' core, without FUSE: copies a directory tree into a
//! fresh pool through `WarabiFs` calls, in the order the kernel sends a copy's requests
//! (for each file: the lookup of its name, a getattr of its directory, create, writes of
//! at most 128 KiB through a write-only handle, which writes through, and release), and
//! prints the time of each kind of call per file and the page faults the copy took.
//! Then it removes the copy as `rm -rf` does (for each entry, a getattr of its
//! directory, which the kernel asks for after each removal, and the unlink or rmdir;
//! children before their directory) and prints that too.
//! Set beside the FUSE floor (examples/fuse_floor.rs), it tells how much of a copy's
//! time over a mount is the core's own work.
//!
//! ```text
//! cargo run --release --example core_copy -- /usr/include /dev/shm/copy.pmem
//! ```
//!
//! The pool must not exist; it is removed afterwards unless `--keep`. As the daemon
//! does for a pool in /dev/shm, run it with PMEM_IS_PMEM_FORCE=1 (flushes, no msync).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use warabifs::fs::{Caller, FsOptions, FsResult, WarabiFs, ROOT_INO};
use warabifs::store::PoolConfig;

/// Copy a tree into a fresh pool through the file-system core and time each call.
#[derive(Parser, Debug)]
#[command(name = "core_copy")]
struct Args {
    /// The directory to copy (read into memory first, file by file).
    source: PathBuf,
    /// The pool to create (must not exist).
    pool: PathBuf,
    /// The pool's size in MiB.
    #[arg(long, default_value_t = 2048)]
    size_mib: u64,
    /// Keep the pool afterwards.
    #[arg(long)]
    keep: bool,
}

/// The largest write the kernel sends for one of cp's: cp writes 128 KiB at a time.
const CHUNK: usize = 128 << 10;

/// Time spent in each kind of call.
#[derive(Default)]
struct Spent {
    lookup: Duration,
    getattr: Duration,
    create: Duration,
    write: Duration,
    release: Duration,
    mkdir: Duration,
    /// The removal's getattrs of directories, unlinks and rmdirs.
    remove_getattr: Duration,
    unlink: Duration,
    rmdir: Duration,
}

fn timed<T>(into: &mut Duration, call: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = call();
    *into += start.elapsed();
    out
}

struct Copier {
    fs: WarabiFs,
    caller: Caller,
    spent: Spent,
    files: u64,
    bytes: u64,
    /// One buffer for every file read, so that reading the source takes no faults of
    /// its own once it has grown.
    buffer: Vec<u8>,
    /// Every entry made, in the order made: (directory, name, is a directory).
    made: Vec<(u64, Vec<u8>, bool)>,
}

impl Copier {
    fn copy_dir(&mut self, source: &Path, dir: u64) -> Result<(), String> {
        let entries =
            std::fs::read_dir(source).map_err(|e| format!("{}: {e}", source.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", source.display()))?;
            let path = entry.path();
            let name = entry.file_name().as_bytes().to_vec();
            let kind = entry
                .file_type()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if kind.is_dir() {
                let caller = self.caller;
                let made = timed(&mut self.spent.mkdir, || {
                    self.fs.mkdir(dir, &name, 0o755, caller)
                });
                let ino = made
                    .map_err(|e| format!("mkdir {}: {e}", path.display()))?
                    .ino;
                self.made.push((dir, name, true));
                self.copy_dir(&path, ino)?;
            } else if kind.is_file() {
                let mut data = std::mem::take(&mut self.buffer);
                data.clear();
                std::fs::File::open(&path)
                    .and_then(|mut file| std::io::Read::read_to_end(&mut file, &mut data))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let copied = self.copy_file(dir, &name, &data);
                self.buffer = data;
                copied.map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        Ok(())
    }

    fn copy_file(&mut self, dir: u64, name: &[u8], data: &[u8]) -> FsResult<()> {
        let (fs, spent, caller) = (&self.fs, &mut self.spent, self.caller);
        let _absent = timed(&mut spent.lookup, || fs.lookup(dir, name));
        timed(&mut spent.getattr, || fs.getattr(dir))?;
        let (_, fh) = timed(&mut spent.create, || fs.create(dir, name, 0o644, caller))?;
        let through = warabifs::fuse::writes_through(fs.options(), libc::O_WRONLY);
        for (i, chunk) in data.chunks(CHUNK).enumerate() {
            let off = (i * CHUNK) as u64;
            timed(&mut spent.write, || fs.write(fh, off, chunk, through))?;
        }
        timed(&mut spent.release, || fs.release(fh))?;
        self.made.push((dir, name.to_vec(), false));
        self.files += 1;
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// Removes what was made, the newest first (so children before their directory).
    fn remove_all(&mut self) -> Result<(), String> {
        let (fs, spent) = (&self.fs, &mut self.spent);
        for (dir, name, is_dir) in self.made.iter().rev() {
            timed(&mut spent.remove_getattr, || fs.getattr(*dir))
                .map_err(|e| format!("getattr {dir}: {e}"))?;
            let removed = match is_dir {
                true => timed(&mut spent.rmdir, || fs.rmdir(*dir, name)),
                false => timed(&mut spent.unlink, || fs.unlink(*dir, name)),
            };
            removed.map_err(|e| format!("remove {}: {e}", String::from_utf8_lossy(name)))?;
        }
        Ok(())
    }
}

/// Runs `work` and returns what it returned, the time it took and the page faults it
/// took.
fn measured<T>(work: impl FnOnce() -> T) -> (T, Duration, u64) {
    let faults = minor_faults();
    let start = Instant::now();
    let out = work();
    let elapsed = start.elapsed();
    (out, elapsed, minor_faults().saturating_sub(faults))
}

/// Minor page faults this process has taken (/proc/self/stat, field 10).
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name, field 2, is in parentheses and may hold spaces: count after it.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after_name
        .split_whitespace()
        .nth(7)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.pool.exists() {
        eprintln!(
            "core_copy: {} exists; give a pool to create",
            args.pool.display()
        );
        return ExitCode::FAILURE;
    }
    let config = PoolConfig {
        path: args.pool.clone(),
        create_if_missing_with_size: Some(args.size_mib << 20),
        override_if_exists: false,
    };
    let options = FsOptions::default();
    let caller = Caller {
        uid: options.uid,
        gid: options.gid,
    };
    let fs = match WarabiFs::open_pool(&config, options) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("core_copy: cannot create {}: {e}", args.pool.display());
            return ExitCode::FAILURE;
        }
    };
    let mut copier = Copier {
        fs,
        caller,
        spent: Spent::default(),
        files: 0,
        bytes: 0,
        buffer: Vec::new(),
        made: Vec::new(),
    };
    let (copied, elapsed, faults) = measured(|| copier.copy_dir(&args.source, ROOT_INO));
    let (removed, remove_elapsed, remove_faults) =
        measured(|| copied.and_then(|()| copier.remove_all()));
    let dirs = copier.made.len() as u64 - copier.files;
    let Copier {
        fs,
        spent,
        files,
        bytes,
        ..
    } = copier;
    drop(fs);
    if !args.keep {
        let _ = std::fs::remove_file(&args.pool);
    }
    if let Err(e) = removed {
        eprintln!("core_copy: {e}");
        return ExitCode::FAILURE;
    }
    let per_file = |d: Duration| d.as_secs_f64() * 1e6 / files.max(1) as f64;
    println!(
        "files={files} bytes={bytes} seconds={:.3} (reading the source included) faults={faults}",
        elapsed.as_secs_f64()
    );
    println!(
        "us per file: lookup {:.1} getattr {:.1} create {:.1} write {:.1} release {:.1}, and mkdir {:.1} (the directories', shared out)",
        per_file(spent.lookup),
        per_file(spent.getattr),
        per_file(spent.create),
        per_file(spent.write),
        per_file(spent.release),
        per_file(spent.mkdir),
    );
    println!(
        "removal: seconds={:.3} faults={remove_faults}; us per file: getattr {:.1} unlink {:.1}, and rmdir {:.1} per directory ({dirs})",
        remove_elapsed.as_secs_f64(),
        per_file(spent.remove_getattr),
        per_file(spent.unlink),
        spent.rmdir.as_secs_f64() * 1e6 / dirs.max(1) as f64,
    );
    ExitCode::SUCCESS
}
