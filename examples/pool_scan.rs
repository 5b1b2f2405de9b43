//! The floor of a mount-time scan: what libpmemobj itself needs to open a pool and
//! visit every object of one type, as PMDK's `POBJ_FOREACH_TYPE` does
//! (`pmemobj_first`, `pmemobj_next`, `pmemobj_type_num`), with nothing else done per
//! object. The scale benchmark (`bench/run.py --scale`) sets warabifs' mount and
//! `warabifs ls` beside it.
//!
//! ```text
//! cargo run --release --example pool_scan -- POOL [--type-num N]
//! ```
//!
//! Prints `objects=N matching=M seconds=S`, S from before `pmemobj_open` to after the
//! last object, and closes the pool.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use warabifs::pmem::Pool;

/// Open a pool and count its objects of one type number, timing libpmemobj alone.
#[derive(Parser, Debug)]
#[command(name = "pool_scan")]
struct Args {
    /// The pool file (not open elsewhere).
    pool: PathBuf,
    /// The type number to visit (0: Warabi's regions).
    #[arg(long, default_value_t = 0)]
    type_num: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let start = Instant::now();
    let pool = match Pool::open(&args.pool) {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("pool_scan: cannot open {}: {e}", args.pool.display());
            return ExitCode::FAILURE;
        }
    };
    let (mut objects, mut matching) = (0u64, 0u64);
    for oid in pool.objects() {
        objects += 1;
        matching += u64::from(pool.type_num(oid) == args.type_num);
    }
    let seconds = start.elapsed().as_secs_f64();
    println!("objects={objects} matching={matching} seconds={seconds:.6}");
    ExitCode::SUCCESS
}
