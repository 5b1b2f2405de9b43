//! Random reads pushed ahead into the kernel's page cache (src/push.rs), on real mounts:
//! the window around a small read arrives, and pushed bytes never hide a write.

mod common;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use common::{
    cached_pages, drop_cache, fuse_tests_enabled, pattern, read_at, ForegroundMount, Rng, Scratch,
};
use warabifs::push::WINDOW;

const KIB: usize = 1 << 10;
/// How long a push may take before the test gives up on it (it takes about a
/// millisecond; this only bounds a hang).
const PUSH_DEADLINE: Duration = Duration::from_secs(10);

fn mount_with_file(scratch: &Scratch, data: &[u8]) -> ForegroundMount {
    let pool = scratch.path("p.pmem");
    let mnt = scratch.mountpoint("m");
    let m = ForegroundMount::start(&pool, &mnt, &["create_if_missing_with_size=64M"]);
    std::fs::write(m.path("f"), data).expect("write the file");
    m
}

#[test]
fn a_small_read_brings_its_whole_window_into_the_page_cache() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let data = pattern(4 * WINDOW as usize, 11);
    let m = mount_with_file(&scratch, &data);
    let path = m.path("f");
    let file = File::open(&path).unwrap();
    drop_cache(&file);
    assert!(cached_pages(&path) < 4, "the cache was dropped");

    let window = WINDOW as usize;
    let offset = window + 300 * KIB;
    assert_eq!(
        read_at(&file, offset, 4 * KIB),
        data[offset..offset + 4 * KIB]
    );
    let deadline = Instant::now() + PUSH_DEADLINE;
    while cached_pages(&path) < (window / (4 * KIB)) as u64 {
        assert!(
            Instant::now() < deadline,
            "the 1 MiB window around the read never reached the page cache: {} pages",
            cached_pages(&path)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The pushed pages hold the file's bytes, at their places.
    assert_eq!(read_at(&file, window, window), data[window..2 * window]);
}

#[test]
fn writes_and_truncates_are_never_hidden_by_pushed_bytes() {
    if !fuse_tests_enabled() {
        return;
    }
    let scratch = Scratch::new();
    let mut model = pattern(8 * WINDOW as usize, 5);
    let m = mount_with_file(&scratch, &model);
    let path = m.path("f");
    let reader = File::open(&path).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..400 {
        if round % 8 == 0 {
            drop_cache(&reader); // so that small reads miss and push again
        }
        // A small read that misses sets off a push of its window...
        let at = rng.below(model.len() - 4 * KIB);
        assert_eq!(
            read_at(&reader, at, 4 * KIB),
            model[at..at + 4 * KIB],
            "round {round}"
        );
        // ...while a writer opens the file, changes it and closes it. Write-only and
        // read-write opens take turns: the first write around the page cache, the
        // second through it.
        let writer = OpenOptions::new()
            .read(round % 2 == 1)
            .write(true)
            .open(&path)
            .unwrap();
        if round % 50 == 49 {
            let len = WINDOW as usize + rng.below(7 * WINDOW as usize);
            writer.set_len(len as u64).unwrap();
            model.resize(len, 0);
            writer.set_len(8 * WINDOW).unwrap();
            model.resize(8 * WINDOW as usize, 0);
        }
        let at = rng.below(model.len() - 4 * KIB);
        let bytes = pattern(4 * KIB, round + 100);
        writer.write_all_at(&bytes, at as u64).unwrap();
        drop(writer);
        model[at..at + 4 * KIB].copy_from_slice(&bytes);
        assert_eq!(
            read_at(&reader, at, 4 * KIB),
            bytes,
            "round {round}: write hidden"
        );
    }
    assert!(std::fs::read(&path).unwrap() == model, "whole file, cached");
    drop_cache(&reader);
    assert!(
        std::fs::read(&path).unwrap() == model,
        "whole file, from the pool"
    );
}
