//! Reads a pool file's libpmemobj header with plain file reads, before libpmemobj opens
//! it: opening writes to the pool, and a file we refuse must stay byte-for-byte unchanged.
//! A pool set file (poolset(5)) is read through its parts.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::poolset::{self, PartInfo, PartKind, PoolSet, SetError};
use super::records::{Superblock, SUPERBLOCK_SIZE};
use crate::pmem::ReadOnlyMapping;

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
    /// Bytes of the pool's address space: the file's length, or for a pool set the
    /// master replica's parts less the part headers libpmemobj keeps out of it.
    pub pool_bytes: u64,
    pub kind: PoolKind,
}

/// A single pool file or a pool set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolKind {
    File,
    Set {
        set: PoolSet,
        /// Each replica's parts as found on disk, master first.
        replicas: Vec<Vec<PartInfo>>,
    },
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
    /// A pool set that cannot be used, and why.
    Set(String),
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
    /// descriptor page before it checks the descriptor and the heap. A pool set file is
    /// read through its parts: the master replica's address space is probed as one
    /// file would be, and every part of every replica must carry a sound pool header.
    pub fn read(path: &Path) -> Result<PoolHeader, ProbeError> {
        let (bytes, kind) = PoolBytes::open(path)?;
        let len = bytes.len();
        let mut head = vec![0u8; DESCRIPTOR_END.min(len as usize)];
        bytes.read_exact_at(&mut head, 0)?;
        check_pool_header(&head)?;
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
        bytes.read_exact_at(&mut heap_header, heap_offset)?;
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
            bytes.read_exact_at(&mut sb, root_offset)?;
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
            pool_bytes: len,
            kind,
        })
    }
}

/// Refuses bytes that do not start with a sound libpmemobj pool header.
fn check_pool_header(head: &[u8]) -> Result<(), ProbeError> {
    if head.len() < POOL_HDR_SIZE || &head[..8] != SIGNATURE {
        return Err(ProbeError::NotAPool);
    }
    let csum_end = if u32_at(head, INCOMPAT_FEATURES_OFFSET) & FEATURE_CKSUM_2K != 0 {
        POOL_HDR_CSUM_2K_END
    } else {
        POOL_HDR_CHECKSUM_OFFSET
    };
    if !checksum_ok(&head[..POOL_HDR_SIZE], POOL_HDR_CHECKSUM_OFFSET, csum_end) {
        return Err(ProbeError::Corrupt("the checksum of its pool header"));
    }
    Ok(())
}

/// Where a part's bytes come from: a file is read with pread, a device DAX (which has
/// no read system call) through a read-only mapping.
enum Source {
    File(File),
    Mapped(ReadOnlyMapping),
}

impl Source {
    fn open(part: &PartInfo) -> Result<Source, ProbeError> {
        Ok(match part.kind {
            PartKind::File => Source::File(File::open(&part.path)?),
            PartKind::DeviceDax => Source::Mapped(ReadOnlyMapping::open(&part.path, part.size)?),
        })
    }

    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        match self {
            Source::File(file) => file.read_exact_at(buf, off),
            Source::Mapped(map) => map.read_exact_at(buf, off),
        }
    }
}

/// One part of the master replica and where its bytes sit in the pool.
struct MappedPart {
    source: Source,
    /// Where the part's first pool byte is in the part (past its own header).
    skip: u64,
    info: PartInfo,
}

/// The master replica's address space, as libpmemobj maps it, read without mapping it
/// for writing: a pool file's offsets, or a pool set's parts one after the other.
enum PoolBytes {
    File { source: Source, len: u64 },
    Set(Vec<MappedPart>),
}

impl PoolBytes {
    fn open(path: &Path) -> Result<(PoolBytes, PoolKind), ProbeError> {
        let whole = poolset::part_of_path(path).map_err(set_error)?;
        let source = Source::open(&whole)?;
        let mut start = [0u8; poolset::SIGNATURE.len()];
        let got = start.len().min(whole.size as usize);
        source.read_exact_at(&mut start[..got], 0)?;
        if !poolset::is_pool_set(&start[..got]) {
            let len = whole.size;
            return Ok((PoolBytes::File { source, len }, PoolKind::File));
        }
        let set = poolset::read(path).map_err(set_error)?;
        let replicas = poolset::locate(&set).map_err(set_error)?;
        check_part_headers(&set, &replicas)?;
        let master = replicas[0]
            .iter()
            .enumerate()
            .map(|(index, info)| {
                Ok(MappedPart {
                    source: Source::open(info)?,
                    skip: poolset::skipped_header(set.single_header, index),
                    info: info.clone(),
                })
            })
            .collect::<Result<Vec<_>, ProbeError>>()?;
        Ok((PoolBytes::Set(master), PoolKind::Set { set, replicas }))
    }

    /// Bytes of the address space.
    fn len(&self) -> u64 {
        match self {
            PoolBytes::File { len, .. } => *len,
            PoolBytes::Set(parts) => parts.iter().map(|p| p.info.pool_bytes).sum(),
        }
    }

    /// Reads `buf.len()` bytes at pool offset `off`, across parts when it must.
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        let parts = match self {
            PoolBytes::File { source, .. } => return source.read_exact_at(buf, off),
            PoolBytes::Set(parts) => parts,
        };
        let (mut done, mut at) = (0usize, off);
        while done < buf.len() {
            let part = parts
                .iter()
                .find(|p| {
                    (p.info.pool_offset..p.info.pool_offset + p.info.pool_bytes).contains(&at)
                })
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
            let inside = at - part.info.pool_offset;
            let n = ((part.info.pool_bytes - inside) as usize).min(buf.len() - done);
            part.source
                .read_exact_at(&mut buf[done..done + n], part.skip + inside)?;
            done += n;
            at += n as u64;
        }
        Ok(())
    }
}

/// Every part that should start with a pool header (all but the later parts of a
/// SINGLEHDR set) must have a sound libpmemobj one: a set of other files is refused.
fn check_part_headers(set: &PoolSet, replicas: &[Vec<PartInfo>]) -> Result<(), ProbeError> {
    for parts in replicas {
        for (index, part) in parts.iter().enumerate() {
            if !poolset::part_has_header(set, index) {
                continue;
            }
            let mut head = vec![0u8; POOL_HDR_SIZE];
            Source::open(part)?.read_exact_at(&mut head, 0)?;
            match check_pool_header(&head) {
                Ok(()) => {}
                Err(ProbeError::NotAPool) => {
                    return Err(ProbeError::Set(format!(
                        "part {} is not a libpmemobj pool part",
                        part.path.display()
                    )))
                }
                Err(ProbeError::Corrupt(_)) => {
                    return Err(ProbeError::Set(format!(
                        "the pool header of part {} fails its checksum",
                        part.path.display()
                    )))
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn set_error(e: SetError) -> ProbeError {
    match e {
        SetError::NotASet => ProbeError::NotAPool,
        SetError::Invalid(why) => ProbeError::Set(why),
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
