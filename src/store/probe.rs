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
/// The pool header (`struct pool_hdr`) is the first 4 KiB; its checksum is its last
/// 8 bytes. With the CKSUM_2K feature only its first 2 KiB are checksummed.
const POOL_HDR_SIZE: usize = 4096;
const POOL_HDR_CHECKSUM_OFFSET: usize = 4088;
const FEATURE_CKSUM_2K: u32 = 0x2;
const POOL_HDR_CSUM_2K_END: usize = 2048;
/// The persistent part of the pool descriptor: 2 KiB after the pool header, ending
/// with its checksum (`obj_descr_check`).
const DESCRIPTOR_CHECKSUM_OFFSET: usize = POOL_HDR_SIZE + 2040;
const DESCRIPTOR_CHECKSUMMED: usize = 2048;
/// The heap's size, kept in the descriptor (0 when the heap was never booted with that
/// field): the file must be at least heap_offset + heap_size bytes long (`heap_boot`).
const HEAP_SIZE_OFFSET: usize = 6176;
/// The heap header (`struct heap_header`) at heap_offset: 1 KiB ending with its checksum.
const HEAP_HEADER_SIZE: usize = 1024;
/// libpmemobj's smallest pool (`PMEMOBJ_MIN_POOL`).
const MIN_POOL_SIZE: u64 = 8 << 20;

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
    /// A pool header with a valid checksum, in a file shorter than the pool it
    /// describes: `expected` is the least length the pool needs.
    Truncated {
        len: u64,
        expected: u64,
    },
    /// A checksum of libpmemobj's metadata does not match: names which one.
    Corrupt(&'static str),
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
    /// Reads the header, and refuses (before libpmemobj writes anything) a file that is
    /// not a pool, is shorter than its pool, or whose pool header, pool descriptor or
    /// heap header fails its checksum: libpmemobj writes its run-time state into the
    /// descriptor page before it checks the descriptor and the heap.
    pub fn read(path: &Path) -> Result<PoolHeader, ProbeError> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut head = Vec::with_capacity(DESCRIPTOR_END);
        (&file).take(DESCRIPTOR_END as u64).read_to_end(&mut head)?;
        if head.len() < POOL_HDR_SIZE || &head[..8] != SIGNATURE {
            return Err(ProbeError::NotAPool);
        }
        let csum_end = if u32_at(&head, INCOMPAT_FEATURES_OFFSET) & FEATURE_CKSUM_2K != 0 {
            POOL_HDR_CSUM_2K_END
        } else {
            POOL_HDR_CHECKSUM_OFFSET
        };
        if !checksum_ok(&head[..POOL_HDR_SIZE], POOL_HDR_CHECKSUM_OFFSET, csum_end) {
            return Err(ProbeError::Corrupt("the checksum of its pool header"));
        }
        if head.len() < DESCRIPTOR_END {
            return Err(ProbeError::Truncated {
                len,
                expected: MIN_POOL_SIZE,
            });
        }
        if !checksum_ok(
            &head[POOL_HDR_SIZE..POOL_HDR_SIZE + DESCRIPTOR_CHECKSUMMED],
            DESCRIPTOR_CHECKSUM_OFFSET - POOL_HDR_SIZE,
            DESCRIPTOR_CHECKSUMMED,
        ) {
            return Err(ProbeError::Corrupt("the checksum of its pool descriptor"));
        }
        let heap_offset = u64_at(&head, HEAP_OFFSET_OFFSET);
        let expected = heap_offset
            .saturating_add(u64_at(&head, HEAP_SIZE_OFFSET))
            .max(heap_offset.saturating_add(HEAP_HEADER_SIZE as u64))
            .max(MIN_POOL_SIZE);
        if len < expected {
            return Err(ProbeError::Truncated { len, expected });
        }
        let mut heap_header = [0u8; HEAP_HEADER_SIZE];
        file.read_exact_at(&mut heap_header, heap_offset)?;
        if !checksum_ok(&heap_header, HEAP_HEADER_SIZE - 8, HEAP_HEADER_SIZE) {
            return Err(ProbeError::Corrupt("the checksum of its heap header"));
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
            heap_offset,
            superblock,
            root_size,
            blank_root,
            clean_shutdown: shutdown_state(&head),
        })
    }
}

fn shutdown_state(head: &[u8]) -> Option<bool> {
    let incompat = u32_at(head, INCOMPAT_FEATURES_OFFSET);
    (incompat & FEATURE_SHUTDOWN_STATE != 0).then(|| head[SDS_DIRTY_OFFSET] == 0)
}

fn u32_at(bytes: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(bytes[off..off + 4].try_into().expect("4 bytes"))
}

/// libpmemobj's Fletcher64-like checksum (`util_checksum_compute`): little-endian
/// 32-bit words, with the 8-byte checksum at `csum_off` and everything from `skip_off`
/// on counted as zeros. Whether the stored checksum matches.
fn checksum_ok(bytes: &[u8], csum_off: usize, skip_off: usize) -> bool {
    let (mut lo, mut hi) = (0u32, 0u32);
    let mut off = 0;
    while off < bytes.len() {
        if off == csum_off || off >= skip_off {
            hi = hi.wrapping_add(lo).wrapping_add(lo);
            off += 8;
        } else {
            lo = lo.wrapping_add(u32_at(bytes, off));
            hi = hi.wrapping_add(lo);
            off += 4;
        }
    }
    (u64::from(hi) << 32 | u64::from(lo)) == u64_at(bytes, csum_off)
}
