//! Where a pool's files live: in memory (tmpfs, ramfs) or on a device.

use std::path::Path;

use nix::sys::statfs::{statfs, FsType, TMPFS_MAGIC};

use super::poolset;

/// ramfs' f_type (linux/magic.h), which nix does not name.
const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);

/// Whether every file of the pool at `path` (the pool file, or each part of a pool
/// set) lives in memory, on tmpfs or ramfs; a file not made yet counts where its
/// directory is. On such files msync(2) makes nothing more durable: the pages are the
/// file.
pub fn is_memory_backed(path: &Path) -> bool {
    replicas_in_memory(path).is_some()
}

/// Whether the memory the pool's files live in is all there is of it: every file is in
/// memory ([`is_memory_backed`]) and the pool has no replica, which libpmemobj would
/// fill at each flush. Flushing CPU caches then makes nothing more durable (see
/// [`super::Store::flush`]).
pub fn memory_is_the_medium(path: &Path) -> bool {
    replicas_in_memory(path) == Some(1)
}

/// How many replicas the pool has (1 for a single pool file), if every file of it lives
/// in memory; the set file is read once.
fn replicas_in_memory(path: &Path) -> Option<usize> {
    match poolset::read(path) {
        Ok(set) => {
            let mut parts = set.replicas.iter().flat_map(|r| &r.parts);
            parts
                .all(|part| in_memory(&part.path))
                .then_some(set.replicas.len())
        }
        Err(_) => in_memory(path).then_some(1),
    }
}

fn in_memory(path: &Path) -> bool {
    let existing = match path.exists() {
        true => path,
        false => match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        },
    };
    statfs(existing).is_ok_and(|fs| {
        let kind = fs.filesystem_type();
        kind == TMPFS_MAGIC || kind == RAMFS_MAGIC
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_in_dev_shm_are_in_memory_and_the_build_tree_is_not_always() {
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        assert!(is_memory_backed(&dir.path().join("not-made-yet.pmem")));
        let set = dir.path().join("pool.set");
        let part = dir.path().join("part0");
        std::fs::write(&set, format!("PMEMPOOLSET\n64M {}\n", part.display())).unwrap();
        assert!(is_memory_backed(&set));
        std::fs::write(&set, "PMEMPOOLSET\n64M /proc/part0\n").unwrap();
        assert!(!is_memory_backed(&set), "/proc is not tmpfs");
    }

    #[test]
    fn only_an_unreplicated_pool_in_memory_has_its_memory_as_medium() {
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        assert!(memory_is_the_medium(&dir.path().join("pool.pmem")));
        let set = dir.path().join("pool.set");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let parts = format!("PMEMPOOLSET\n64M {}\n64M {}\n", a.display(), b.display());
        std::fs::write(&set, &parts).unwrap();
        assert!(memory_is_the_medium(&set), "two parts, one replica");
        let mirrored = format!(
            "PMEMPOOLSET\n64M {}\nREPLICA\n64M {}\n",
            a.display(),
            b.display()
        );
        std::fs::write(&set, mirrored).unwrap();
        assert!(
            !memory_is_the_medium(&set),
            "a replica takes copies at each flush"
        );
        std::fs::write(&set, "PMEMPOOLSET\n64M /proc/part0\n").unwrap();
        assert!(!memory_is_the_medium(&set), "/proc is not tmpfs");
    }
}
