//! Opening and validating pools: Warabi's open-or-create rules, the checks that refuse
//! a file that is not ours before libpmemobj writes to it, the superblock's check on
//! open, and formatting a new pool.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use super::error::pmem_err;
use super::probe::{PoolHeader, ProbeError};
use super::records::{Superblock, BASE_FORMAT_VERSION, FORMAT_VERSION, MAGIC, SUPERBLOCK_SIZE};
use super::{poolset, Store, StoreError};
use crate::pmem::{self, Pool};

/// Warabi's pmem backend configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolConfig {
    pub path: PathBuf,
    pub create_if_missing_with_size: Option<u64>,
    pub override_if_exists: bool,
}

impl Store {
    /// Runs libpmemobj's consistency check on the pool at `path`, which must not be
    /// open. Ok(true): consistent; Ok(false): inconsistent.
    pub fn check_consistency(path: &Path) -> Result<bool, StoreError> {
        Pool::check(path).map_err(|source| match source.errno {
            libc::EAGAIN => StoreError::InUse(path.to_path_buf()),
            _ => StoreError::Pmem {
                path: path.to_path_buf(),
                source,
            },
        })
    }

    /// Opens or creates the pool with Warabi's rules; formats it for warabifs unless
    /// `read_only` (a read-only mount never writes metadata).
    pub fn open(config: &PoolConfig, read_only: bool) -> Result<Store, StoreError> {
        let (pool, header) = open_or_create(config)?;
        let file_size = header.pool_bytes;
        let blank_root = header.blank_root;
        let mut store = Store {
            pool,
            formatted: false,
            file_size,
            header,
            skips_data_flushes: super::memory_is_the_medium(&config.path),
            allocated: AtomicI64::new(0),
            version: AtomicU32::new(0),
            upgrading: Mutex::new(()),
            next_ino: AtomicU64::new(0),
            allocations: RwLock::new(()),
            heap_changes: AtomicU64::new(0),
            last_probe: Mutex::new(None),
        };
        store.formatted = !blank_root && store.check_superblock()?;
        if !store.formatted && !read_only {
            store.format()?;
        }
        Ok(store)
    }

    /// Ok(true) when the root object is a warabifs superblock of a version we read.
    fn check_superblock(&self) -> Result<bool, StoreError> {
        let Some(root) = self.pool.root() else {
            return Ok(false);
        };
        let path = self.pool.path().to_path_buf();
        if self.pool.usable_size(root) < SUPERBLOCK_SIZE as u64 {
            return Err(StoreError::ForeignRoot(path));
        }
        let sb = Superblock::decode(&self.pool.bytes(root, 0, SUPERBLOCK_SIZE));
        if sb.magic != MAGIC {
            return Err(StoreError::ForeignRoot(path));
        }
        if sb.version > FORMAT_VERSION {
            return Err(StoreError::NewerFormat {
                path,
                found: sb.version,
            });
        }
        self.version.store(sb.version, Ordering::Relaxed);
        self.next_ino.store(sb.next_ino, Ordering::Relaxed);
        Ok(true)
    }

    /// Writes the superblock. The root directory's inode is made by the file system.
    fn format(&mut self) -> Result<(), StoreError> {
        let root = self
            .pool
            .root_with_size(SUPERBLOCK_SIZE)
            .map_err(pmem_err(self.pool.path()))?;
        let mut tx = self.pool.tx().map_err(pmem_err(self.pool.path()))?;
        tx.write(
            root,
            0,
            &Superblock::of_version(BASE_FORMAT_VERSION).encode(),
        )
        .map_err(pmem_err(self.pool.path()))?;
        tx.commit().map_err(pmem_err(self.pool.path()))?;
        self.formatted = true;
        self.version.store(BASE_FORMAT_VERSION, Ordering::Relaxed);
        Ok(())
    }
}

fn probe_error(path: &Path, e: ProbeError) -> StoreError {
    match e {
        ProbeError::NotAPool => StoreError::NotAPool(path.to_path_buf()),
        ProbeError::Truncated { len, expected } => StoreError::Truncated {
            path: path.to_path_buf(),
            len,
            expected,
        },
        ProbeError::Corrupt(what) => StoreError::Corrupt {
            path: path.to_path_buf(),
            what,
        },
        ProbeError::Set(reason) => StoreError::PoolSet {
            path: path.to_path_buf(),
            reason,
        },
        ProbeError::Io(source) => io_error(path, source),
    }
}

/// An I/O error on the pool file; a permission error gets a line that says what to do.
fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    match source.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => permission_denied(path, false),
        _ => StoreError::Io {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// The pool file cannot be read (`write` false) or opened for writing (`write` true).
fn permission_denied(path: &Path, write: bool) -> StoreError {
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::geteuid();
    let file = match std::fs::metadata(path) {
        Ok(m) => format!(
            "the pool file (owner {}:{}, mode {:04o})",
            m.uid(),
            m.gid(),
            m.mode() & 0o7777
        ),
        Err(_) => "the pool file (or a directory above it)".to_string(),
    };
    let detail = if write {
        format!(
            "user {uid} cannot write {file}, and libpmemobj opens a pool for writing even for a read-only mount (-o ro); run warabifs as a user who can write the file, or give this user write permission"
        )
    } else {
        format!(
            "user {uid} cannot read {file}; run warabifs as a user who can read and write the file, or give this user read and write permission"
        )
    };
    StoreError::PermissionDenied {
        path: path.to_path_buf(),
        detail,
    }
}

/// Warabi's open-or-create, with its validation, plus checks that refuse a file that is
/// not ours before libpmemobj writes to it.
/// Returns the pool and its header, read before libpmemobj opened it.
fn open_or_create(config: &PoolConfig) -> Result<(Pool, PoolHeader), StoreError> {
    let path = config.path.as_path();
    if let Some(size) = config.create_if_missing_with_size {
        if size < pmem::MIN_POOL_SIZE {
            return Err(StoreError::SizeTooSmall(size));
        }
    }
    if config.override_if_exists && config.create_if_missing_with_size.is_none() {
        return Err(StoreError::OverrideWithoutSize);
    }
    // A path we may not look at is not "missing": say why instead of creating it.
    let exists = match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => return Err(StoreError::IsDirectory(path.to_path_buf())),
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_error(path, e)),
    };
    if exists && config.override_if_exists {
        // The one place warabifs deletes a pool file: the user asked for it. As in
        // Warabi's backend, `path` itself goes, a pool set file too, and a single-file
        // pool is created in its place; the parts a pool set named are left alone.
        warn_parts_left(path);
        std::fs::remove_file(path).map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    } else if exists {
        return open_existing(path);
    }
    let Some(size) = config.create_if_missing_with_size else {
        return Err(StoreError::Missing(path.to_path_buf()));
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let pool = Pool::create(path, size).map_err(pmem_err(path))?;
    let header = PoolHeader::read(path).map_err(|e| probe_error(path, e))?;
    Ok((pool, header))
}

/// Before `override_if_exists` replaces a pool set file, says which parts stay behind.
fn warn_parts_left(path: &Path) {
    let Ok(set) = poolset::read(path) else {
        return;
    };
    let parts: Vec<String> = set
        .replicas
        .iter()
        .flat_map(|r| &r.parts)
        .map(|p| p.path.display().to_string())
        .collect();
    tracing::warn!(
        "override_if_exists: replacing pool set {} with a single-file pool, as Warabi does; its parts are left as they are: {}",
        path.display(),
        parts.join(", ")
    );
}

fn open_existing(path: &Path) -> Result<(Pool, PoolHeader), StoreError> {
    let header = PoolHeader::read(path).map_err(|e| probe_error(path, e))?;
    if !header.layout.is_empty() {
        return Err(StoreError::ForeignLayout {
            path: path.to_path_buf(),
            layout: String::from_utf8_lossy(&header.layout).into_owned(),
        });
    }
    // Refuse a root that is not ours here: pmemobj_open writes to the file (its run id)
    // and a refused file must stay byte-for-byte unchanged.
    if header.root_size > 0 && !header.blank_root {
        match header.superblock {
            Some(sb) if sb.magic == MAGIC && sb.version > FORMAT_VERSION => {
                return Err(StoreError::NewerFormat {
                    path: path.to_path_buf(),
                    found: sb.version,
                });
            }
            Some(sb) if sb.magic == MAGIC => {}
            _ => return Err(StoreError::ForeignRoot(path.to_path_buf())),
        }
    }
    // A daemon that was just unmounted closes its pool a moment after umount returns;
    // wait a little for its lock before calling the pool in use.
    let deadline = Instant::now() + IN_USE_WAIT;
    loop {
        match Pool::open(path) {
            Ok(pool) => return Ok((pool, header)),
            Err(e) if e.errno == libc::EAGAIN && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) if e.errno == libc::EAGAIN => return Err(StoreError::InUse(path.to_path_buf())),
            // libpmemobj opens the file O_RDWR, even in its copy-on-write mode.
            Err(e) if matches!(e.errno, libc::EACCES | libc::EPERM) => {
                return Err(permission_denied(path, true))
            }
            Err(source) => {
                return Err(StoreError::Pmem {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// How long opening waits for another process to release the pool's lock.
const IN_USE_WAIT: Duration = Duration::from_secs(2);
