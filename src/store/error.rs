//! Why a pool could not be opened or changed, and the errno a file-system operation
//! reports for it.

use std::path::{Path, PathBuf};

use super::records::FORMAT_VERSION;
use crate::pmem::PmemError;

/// Why a pool could not be opened or changed. Each message is one line naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("create_if_missing_with_size is {0} bytes; it must be at least 8388608 (8 MiB)")]
    SizeTooSmall(u64),
    #[error("File {0} does not exist but \"create_if_missing_with_size\" was not specified in configuration")]
    Missing(PathBuf),
    #[error(
        "\"override_if_exists\" set to true but \"create_if_missing_with_size\" not specified"
    )]
    OverrideWithoutSize,
    #[error("{0} is a directory, not a pool file")]
    IsDirectory(PathBuf),
    #[error("{0} is not a libpmemobj pool")]
    NotAPool(PathBuf),
    #[error("pool set {path}: {reason}")]
    PoolSet { path: PathBuf, reason: String },
    #[error("pool {path} is truncated: the file has {len} bytes but the pool needs at least {expected}; restore the pool file from a copy")]
    Truncated {
        path: PathBuf,
        len: u64,
        expected: u64,
    },
    #[error("pool {path} is corrupted: {what} does not match, so libpmemobj cannot open it; restore the pool file from a copy")]
    Corrupt { path: PathBuf, what: &'static str },
    #[error("pool {path}: permission denied: {detail}")]
    PermissionDenied { path: PathBuf, detail: String },
    #[error("{path} is a libpmemobj pool of layout \"{layout}\", not a Warabi pool (Warabi pools have no layout)")]
    ForeignLayout { path: PathBuf, layout: String },
    #[error("{0} has a root object that is not warabifs metadata; refusing to use it")]
    ForeignRoot(PathBuf),
    #[error("{path} has warabifs format version {found}; this warabifs reads version {FORMAT_VERSION} at most")]
    NewerFormat { path: PathBuf, found: u32 },
    #[error("pool {0} is in use by another process (libpmemobj holds its lock)")]
    InUse(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pool {path}: {source}")]
    Pmem { path: PathBuf, source: PmemError },
    /// A change of an inode that has no record (a Warabi region not adopted, or the
    /// stand-in root of a pool without warabifs metadata): nothing to write it to.
    #[error("inode {0} has no record on the pool to change")]
    NoRecord(u64),
}

impl StoreError {
    /// The errno a file-system operation reports for this failure.
    pub fn errno(&self) -> i32 {
        match self {
            StoreError::Pmem { source, .. } => errno_of(source),
            StoreError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            StoreError::NoRecord(_) => libc::EROFS,
            _ => libc::EIO,
        }
    }
}

/// libpmemobj reports a full pool as ENOMEM; to a file system that is ENOSPC.
pub fn errno_of(e: &PmemError) -> i32 {
    match e.errno {
        libc::ENOMEM => libc::ENOSPC,
        0 => libc::EIO,
        errno => errno,
    }
}

pub(super) fn pmem_err(path: &Path) -> impl Fn(PmemError) -> StoreError + '_ {
    move |source| StoreError::Pmem {
        path: path.to_path_buf(),
        source,
    }
}
