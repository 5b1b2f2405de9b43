//! Makes a pool exactly the way Mochi Warabi's `pmem` backend does, for trying warabifs
//! on regions that Warabi (not warabifs) made:
//!
//! ```text
//! cargo run --example warabi_pool -- POOL [--size BYTES] [--regions N] [--region-size BYTES] [--quiet]
//! ```
//!
//! Like Warabi 0.7.1's `PmemBackend`: `pmemobj_create(POOL, NULL layout, SIZE, 0644)`,
//! then one `pmemobj_alloc(.., size, type 0, ..)` per region, each filled with bytes
//! (`memcpy`) and persisted. No root object and no other type numbers. Prints each
//! region's RegionID (32 hex digits, the 16 bytes of its PMEMoid) and its size.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use warabifs::pmem::{Oid, Pool, MIN_POOL_SIZE};

/// Sizes of the regions made, in turn (repeated when more regions are asked for).
const REGION_SIZES: [u64; 3] = [1000, 65536, 1 << 20];

/// Create a Warabi-style pmem pool holding a few regions.
#[derive(Parser, Debug)]
#[command(name = "warabi_pool")]
struct Args {
    /// The pool file to create; an existing file is never overwritten.
    pool: PathBuf,
    /// Pool size in bytes (at least 8388608, as for Warabi).
    #[arg(long, default_value_t = 64 << 20)]
    size: u64,
    /// How many regions to create (sizes cycle through 1000, 65536 and 1048576 bytes).
    #[arg(long, default_value_t = 3)]
    regions: usize,
    /// Give every region this size instead (a busy provider's many small regions).
    #[arg(long)]
    region_size: Option<u64>,
    /// Print nothing (pools of a million regions, for the scale benchmark).
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("warabi_pool: {reason}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    if args.size < MIN_POOL_SIZE {
        return Err(format!(
            "--size {} is too small: a pool needs at least {MIN_POOL_SIZE} bytes",
            args.size
        ));
    }
    // symlink_metadata: also refuse a dangling symbolic link rather than write through it.
    if args.pool.symlink_metadata().is_ok() {
        return Err(format!(
            "{} already exists; refusing to overwrite it",
            args.pool.display()
        ));
    }
    let pool = Pool::create(&args.pool, args.size)
        .map_err(|e| format!("cannot create {}: {e}", args.pool.display()))?;
    let sizes: &[u64] = match &args.region_size {
        Some(size) => std::slice::from_ref(size),
        None => &REGION_SIZES,
    };
    for (index, size) in sizes.iter().cycle().take(args.regions).enumerate() {
        let oid = pool
            .alloc(*size, 0)
            .map_err(|e| format!("region {index} of {size} bytes: {e}"))?;
        fill(&pool, oid, index, *size);
        if !args.quiet {
            println!("{oid} {size}");
        }
    }
    Ok(())
}

/// Fills a region with a recognisable pattern, a text line naming the region repeated
/// to its end, and persists it, as Warabi's write with `persist` does.
fn fill(pool: &Pool, oid: Oid, index: usize, size: u64) {
    let line = format!("warabi region {index} {oid} of {size} bytes\n");
    let bytes: Vec<u8> = line.bytes().cycle().take(size as usize).collect();
    pool.write(oid, 0, &bytes);
    pool.persist(oid, 0, bytes.len());
}
