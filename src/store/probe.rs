//! Reads a pool file's libpmemobj header with plain file reads, before libpmemobj opens
//! it: opening writes to the pool, and a file we refuse must stay byte-for-byte unchanged.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::records::{Superblock, SUPERBLOCK_SIZE};

const SIGNATURE: &[u8; 8] = b"PMEMOBJ\0";
/// Offsets inside libpmemobj's pool descriptor (`struct pmemobjpool`, PMDK 1.x), which
/// follows the 4 KiB pool header.
const LAYOUT_OFFSET: usize = 4096;
const LAYOUT_MAX: usize = 1024;
const HEAP_OFFSET_OFFSET: usize = 5136;
const ROOT_OFFSET_OFFSET: usize = 6144;
const ROOT_SIZE_OFFSET: usize = 6160;
const DESCRIPTOR_END: usize = 8192;
/// The pool header's incompatible-feature flags and its shutdown state (`struct
/// pool_hdr`): libpmemobj sets `dirty` while the pool is open and clears it on a clean
/// close, when the SHUTDOWN_STATE feature is on.
const INCOMPAT_FEATURES_OFFSET: usize = 16;
const FEATURE_SHUTDOWN_STATE: u32 = 0x4;
const SDS_DIRTY_OFFSET: usize = 4040;

/// What the header of a pool file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolHeader {
    /// The layout name the pool was created with; Warabi's pools have none.
    pub layout: Vec<u8>,
    /// Where libpmemobj's heap starts: everything before it is fixed overhead.
    pub heap_offset: u64,
    /// The superblock, when the pool has a root object big enough to hold one.
    pub superblock: Option<Superblock>,
    /// The root object's size; 0 when the pool has none.
    pub root_size: u64,
    /// A root of exactly a superblock's size, all zero: a format cut short between
    /// making the root and writing the superblock. Formatting again finishes it.
    pub blank_root: bool,
    /// Whether the last process that had the pool open closed it cleanly; `None` when
    /// the pool does not track its shutdown state.
    pub clean_shutdown: Option<bool>,
}

#[derive(Debug)]
pub enum ProbeError {
    Io(std::io::Error),
    NotAPool,
}

impl From<std::io::Error> for ProbeError {
    fn from(e: std::io::Error) -> Self {
        ProbeError::Io(e)
    }
}

fn u64_at(bytes: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(bytes[off..off + 8].try_into().expect("8 bytes"))
}

impl PoolHeader {
    pub fn read(path: &Path) -> Result<PoolHeader, ProbeError> {
        let mut file = File::open(path)?;
        let mut head = vec![0u8; DESCRIPTOR_END];
        if let Err(e) = file.read_exact(&mut head) {
            return match e.kind() {
                std::io::ErrorKind::UnexpectedEof => Err(ProbeError::NotAPool),
                _ => Err(e.into()),
            };
        }
        if &head[..8] != SIGNATURE {
            return Err(ProbeError::NotAPool);
        }
        let layout_field = &head[LAYOUT_OFFSET..LAYOUT_OFFSET + LAYOUT_MAX];
        let layout_len = layout_field
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(LAYOUT_MAX);
        let root_offset = u64_at(&head, ROOT_OFFSET_OFFSET);
        let root_size = u64_at(&head, ROOT_SIZE_OFFSET);
        let root_size = if root_offset == 0 { 0 } else { root_size };
        let mut sb = [0u8; SUPERBLOCK_SIZE];
        let superblock = if root_size >= SUPERBLOCK_SIZE as u64 {
            file.read_exact_at(&mut sb, root_offset)?;
            Some(Superblock::decode(&sb))
        } else {
            None
        };
        let blank_root = root_size == SUPERBLOCK_SIZE as u64 && sb.iter().all(|&b| b == 0);
        Ok(PoolHeader {
            layout: layout_field[..layout_len].to_vec(),
            heap_offset: u64_at(&head, HEAP_OFFSET_OFFSET),
            superblock,
            root_size,
            blank_root,
            clean_shutdown: shutdown_state(&head),
        })
    }
}

fn shutdown_state(head: &[u8]) -> Option<bool> {
    let incompat = u32::from_le_bytes(
        head[INCOMPAT_FEATURES_OFFSET..INCOMPAT_FEATURES_OFFSET + 4]
            .try_into()
            .expect("4 bytes"),
    );
    (incompat & FEATURE_SHUTDOWN_STATE != 0).then(|| head[SDS_DIRTY_OFFSET] == 0)
}
