//! Makes a pool of many files the way a warabifs mount writes them, without the round
//! trips of a FUSE mount: the files are created through warabifs' own file-system core
//! (`WarabiFs::create`, `write`, `release`: the code a mount runs for each `creat(2)`),
//! so the pool holds exactly the records and regions a mount would have written.
//!
//! ```text
//! cargo run --release --example files_pool -- POOL --files N [--dirs D] [--bytes B] [--size BYTES]
//! ```
//!
//! The files are named `f0000000`, `f0000001`, ... in the root directory, or spread
//! evenly over directories `d0`, `d1`, ... with `--dirs`; each holds `--bytes` bytes
//! (default 0: an empty file has no region yet). Refuses an existing POOL.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use warabifs::fs::{Caller, FsOptions, WarabiFs, ROOT_INO};
use warabifs::store::PoolConfig;

/// Create a warabifs pool holding many files.
#[derive(Parser, Debug)]
#[command(name = "files_pool")]
struct Args {
    /// The pool file to create; an existing file is never overwritten.
    pool: PathBuf,
    /// How many files to create.
    #[arg(long)]
    files: usize,
    /// Spread the files over this many directories (0: all in the root directory).
    #[arg(long, default_value_t = 0)]
    dirs: usize,
    /// Bytes written into each file.
    #[arg(long, default_value_t = 0)]
    bytes: usize,
    /// Pool size in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    size: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("files_pool: {reason}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    if args.pool.symlink_metadata().is_ok() {
        return Err(format!(
            "{} already exists; refusing to overwrite it",
            args.pool.display()
        ));
    }
    let config = PoolConfig {
        path: args.pool.clone(),
        create_if_missing_with_size: Some(args.size),
        override_if_exists: false,
    };
    let fs = WarabiFs::open_pool(&config, FsOptions::default()).map_err(|e| e.to_string())?;
    let caller = Caller {
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
    };
    let parents: Vec<u64> = match args.dirs {
        0 => vec![ROOT_INO],
        n => (0..n)
            .map(|d| {
                let name = format!("d{d}");
                fs.mkdir(ROOT_INO, name.as_bytes(), 0o755, caller)
                    .map(|a| a.ino)
                    .map_err(|e| format!("mkdir {name}: {e}"))
            })
            .collect::<Result<_, _>>()?,
    };
    let data = vec![b'w'; args.bytes];
    for i in 0..args.files {
        let name = format!("f{i:07}");
        let parent = parents[i % parents.len()];
        let (_, fh) = fs
            .create(parent, name.as_bytes(), 0o644, caller)
            .map_err(|e| format!("create {name}: {e}"))?;
        if !data.is_empty() {
            fs.write(fh, 0, &data, false)
                .map_err(|e| format!("write {name}: {e}"))?;
        }
        fs.release(fh).map_err(|e| format!("close {name}: {e}"))?;
    }
    fs.sync_all();
    Ok(())
}
