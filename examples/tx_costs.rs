//! What libpmemobj's transactions of the shapes warabifs commits cost, alone: each
//! shape is committed COUNT times on a fresh pool and its mean time printed. The shapes
//! are the parts of a create (records allocated, a snapshot of the directory's record)
//! and of a write that grows a file (a region allocated, its bytes copied and flushed),
//! so that a change of the on-pool layout can be priced before it is built.
//!
//! ```text
//! cargo run --release --example tx_costs -- /dev/shm/tx_costs.pmem [--count N]
//! ```
//!
//! The pool must not exist; it is removed afterwards. Run it with PMEM_IS_PMEM_FORCE=1
//! for a pool in /dev/shm, as the daemon flushes there. Each shape runs twice and the
//! second round is printed; every object stays allocated, so the regions' pages are
//! fresh each time, as in a copy into a new pool.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use warabifs::pmem::{Oid, PmemError, Pool, TxAlloc};

/// Time libpmemobj transactions of warabifs' shapes on a fresh pool.
#[derive(Parser, Debug)]
#[command(name = "tx_costs")]
struct Args {
    /// The pool to create (must not exist).
    pool: PathBuf,
    /// Transactions per shape and round.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
}

/// An inode record's size, and a directory entry's at most.
const RECORD: usize = 128;
/// A region as `cp` gets one for a 14 KB file: 16 KiB less libpmemobj's header.
const REGION: u64 = 16 * 1024 - 16;
const REGION_BYTES: usize = 14_000;
/// The region holding the records that the snapshots rewrite.
const SNAPSHOTTED: u64 = 4096;

/// One transaction's parts.
#[derive(Clone, Copy)]
struct Shape {
    name: &'static str,
    records: usize,
    snapshot: bool,
    region: Fill,
}

#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Fill {
    None,
    Allocated,
    Written,
    Flushed,
}

const SHAPES: [Shape; 7] = [
    Shape {
        name: "empty",
        records: 0,
        snapshot: false,
        region: Fill::None,
    },
    Shape {
        name: "snapshot of a record",
        records: 0,
        snapshot: true,
        region: Fill::None,
    },
    Shape {
        name: "one record",
        records: 1,
        snapshot: false,
        region: Fill::None,
    },
    Shape {
        name: "a create: two records, a snapshot",
        records: 2,
        snapshot: true,
        region: Fill::None,
    },
    Shape {
        name: "a region allocated",
        records: 0,
        snapshot: false,
        region: Fill::Allocated,
    },
    Shape {
        name: "... and 14 KB written",
        records: 0,
        snapshot: false,
        region: Fill::Written,
    },
    Shape {
        name: "... flushed, and a snapshot: a growing write",
        records: 0,
        snapshot: true,
        region: Fill::Flushed,
    },
];

fn commit_one(
    pool: &Pool,
    shape: Shape,
    target: Oid,
    i: usize,
    data: &[u8],
) -> Result<(), PmemError> {
    let mut tx = pool.tx()?;
    for _ in 0..shape.records {
        let record = tx.alloc(RECORD as u64, 1, TxAlloc::Zeroed)?;
        tx.write(record, 0, &data[..RECORD])?;
    }
    if shape.region >= Fill::Allocated {
        let region = tx.alloc(REGION, 2, TxAlloc::Unflushed)?;
        if shape.region >= Fill::Written {
            pool.write_new(region, 0, &data[..REGION_BYTES]);
        }
        if shape.region >= Fill::Flushed {
            pool.flush(region, 0, REGION_BYTES);
            pool.drain();
        }
    }
    if shape.snapshot {
        let slot = (i % (SNAPSHOTTED as usize / RECORD)) * RECORD;
        tx.write(target, slot as u64, &data[..RECORD])?;
    }
    tx.commit()
}

fn run(path: &Path, count: usize) -> Result<Vec<(&'static str, f64)>, PmemError> {
    let needed = 2 * count as u64 * (3 * REGION + 2 * RECORD as u64 * 2);
    let pool = Pool::create(path, (needed + (64 << 20)).next_power_of_two())?;
    let target = pool.root_with_size(SNAPSHOTTED as usize)?;
    let data = vec![0xA5u8; REGION_BYTES];
    let mut figures = Vec::new();
    for round in 0..2 {
        for shape in SHAPES {
            let start = Instant::now();
            for i in 0..count {
                commit_one(&pool, shape, target, i, &data)?;
            }
            if round == 1 {
                figures.push((
                    shape.name,
                    start.elapsed().as_secs_f64() * 1e6 / count as f64,
                ));
            }
        }
    }
    Ok(figures)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.pool.exists() {
        eprintln!(
            "tx_costs: {} exists; give a pool to create",
            args.pool.display()
        );
        return ExitCode::FAILURE;
    }
    let figures = run(&args.pool, args.count.max(1));
    let _ = std::fs::remove_file(&args.pool);
    match figures {
        Ok(figures) => {
            for (name, us) in figures {
                println!("{us:8.2} us  {name}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tx_costs: {e}");
            ExitCode::FAILURE
        }
    }
}
