//! Which opens go through the kernel's page cache, on real mounts: write-only opens
//! write around it, and readers that cache the file still see every such write.

mod common;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{
    cached_pages, drop_cache, fuse_tests_enabled, pattern, read_at, ForegroundMount, Rng, Scratch,
};

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

fn mount(scratch: &Scratch) -> ForegroundMount {
    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    ForegroundMount::start(&pool, &mnt, &["create_if_missing_with_size=64M"])
}

/// A file `f` holding `data`, opened once read-only (through the page cache) and once
/// write-only (around it).
fn reader_and_writer(m: &ForegroundMount, data: &[u8]) -> (PathBuf, File, File) {
    let path = m.path("f");
    std::fs::write(&path, data).unwrap();
    let reader = File::open(&path).unwrap();
    let writer = File::options().write(true).open(&path).unwrap();
    (path, reader, writer)
}

#[test]
fn a_write_only_open_writes_around_the_page_cache() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let m = mount(&scratch);
    let data = pattern(MIB, 3);
    let (write_only, read_write) = (m.path("write_only"), m.path("read_write"));

    let file = File::create(&write_only).unwrap(); // O_WRONLY
    file.write_all_at(&data, 0).unwrap();
    drop(file);
    assert_eq!(cached_pages(&write_only), 0, "a write-only open left pages");

    // The same write through a read-write open goes through the cache (so the
    // count above can tell the two apart).
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&read_write)
        .unwrap();
    file.write_all_at(&data, 0).unwrap();
    drop(file);
    assert_eq!(cached_pages(&read_write), (MIB / PAGE) as u64);

    assert!(std::fs::read(&write_only).unwrap() == data);
}

#[test]
fn a_caching_reader_sees_each_write_of_a_write_only_open() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let m = mount(&scratch);
    let mut model = pattern(4 * MIB, 7);
    let (path, reader, writer) = reader_and_writer(&m, &model);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for round in 0..300 {
        if round % 50 == 0 {
            drop_cache(&reader);
        }
        // The reader caches the pages around the place the writer then changes;
        // unaligned places and lengths leave partly written pages in the cache.
        let at = rng.below(model.len() - 64 * 1024);
        let len = 1 + rng.below(64 * 1024);
        let around = at.saturating_sub(PAGE);
        let span = (len + 2 * PAGE).min(model.len() - around);
        let _ = read_at(&reader, around, span);
        let bytes = pattern(len, round + 1000);
        writer.write_all_at(&bytes, at as u64).unwrap();
        model[at..at + len].copy_from_slice(&bytes);
        assert!(
            read_at(&reader, around, span) == model[around..around + span],
            "round {round}: the reader's cache hid a write of {len} bytes at {at}"
        );
    }
    assert!(std::fs::read(&path).unwrap() == model);
}

#[test]
fn reads_racing_a_write_only_open_leave_no_stale_page() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let m = mount(&scratch);
    let (_, reader, writer) = reader_and_writer(&m, &pattern(MIB, 9));
    for round in 0..100u64 {
        // The reader keeps pulling the file into the cache while the writer writes,
        // so reads that fetched the old bytes can land during a write.
        let stop = AtomicBool::new(false);
        let last = pattern(MIB, round + 2000);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    drop_cache(&reader);
                    let _ = read_at(&reader, 0, MIB);
                }
            });
            for step in 0..8 {
                writer
                    .write_all_at(&pattern(MIB, round * 10 + step), 0)
                    .unwrap();
            }
            writer.write_all_at(&last, 0).unwrap();
            stop.store(true, Ordering::Relaxed);
        });
        assert!(
            read_at(&reader, 0, MIB) == last,
            "round {round}: a page read during a write kept the old bytes"
        );
    }
}
