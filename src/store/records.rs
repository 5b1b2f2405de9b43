//! The byte layout of warabifs' metadata records (see docs/FORMAT.md). Every integer is
//! little-endian at a fixed offset, so the format does not depend on Rust's struct layout.

use crate::pmem::Oid;

/// Type number of inode records.
pub const TYPE_INODE: u64 = 0x5746_0001;
/// Type number of directory entry records.
pub const TYPE_DENTRY: u64 = 0x5746_0002;
/// Type number of extended attribute records.
pub const TYPE_XATTR: u64 = 0x5746_0003;
/// Type number of Warabi regions (and so of every file's data).
pub const TYPE_REGION: u64 = 0;

pub const MAGIC: [u8; 8] = *b"WARABIFS";
/// The newest on-pool format version this build reads and writes.
pub const FORMAT_VERSION: u32 = ZERO_TAIL_VERSION;
/// The version a new pool is formatted with: everything but zero tails.
pub const BASE_FORMAT_VERSION: u32 = 1;
/// From this version on an inode record may have a zero tail (see
/// [`InodeRecord::zero_tail`]); a pool is raised to it by the first record that has one,
/// so pools without them stay readable by builds that know only version 1.
pub const ZERO_TAIL_VERSION: u32 = 2;
pub const SUPERBLOCK_SIZE: usize = 64;
/// Where the superblock keeps the next inode number (a u64; see [`Superblock`]).
pub const SUPERBLOCK_NEXT_INO: u64 = 16;
/// The root directory's inode number (FORMAT.md §4).
pub const ROOT_INO: u64 = 1;
/// Inode numbers of Warabi regions that have no inode record yet: this bit plus the
/// region's offset, so they are stable across mounts and never meet counter numbers.
pub const RAW_REGION_INO_BIT: u64 = 1 << 62;
/// Inode numbers from here up are made from region offsets (a Warabi region listed
/// without a record), not counted: they never move the counter.
pub const COUNTED_INO_LIMIT: u64 = RAW_REGION_INO_BIT;

/// The next-inode rule (FORMAT.md §4): a new inode gets a number above every counted
/// number an inode record has (so at least ROOT_INO + 1), and at least the superblock's
/// `next_ino`, so that no number whose inode is gone is given out again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextIno {
    highest: u64,
}

impl Default for NextIno {
    fn default() -> NextIno {
        NextIno { highest: ROOT_INO }
    }
}

impl NextIno {
    /// Counts an inode record's number (numbers made from regions do not count).
    pub fn see(&mut self, ino: u64) {
        if ino < COUNTED_INO_LIMIT {
            self.highest = self.highest.max(ino);
        }
    }

    /// The lowest number a new inode may get, given the superblock's `next_ino`.
    pub fn next(self, recorded: u64) -> u64 {
        (self.highest + 1).max(recorded)
    }
}
pub const INODE_HEADER_SIZE: usize = 128;
pub const DENTRY_HEADER_SIZE: usize = 24;
pub const XATTR_HEADER_SIZE: usize = 16;
/// Longest extended attribute name (as Linux XATTR_NAME_MAX).
pub const XATTR_NAME_MAX: usize = 255;
/// Largest extended attribute value (as Linux XATTR_SIZE_MAX).
pub const XATTR_SIZE_MAX: usize = 65536;
/// The longest name a directory entry holds (as Linux NAME_MAX).
pub const NAME_MAX: usize = 255;

fn u32_at(bytes: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(bytes[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(bytes[off..off + 8].try_into().expect("8 bytes"))
}

fn i64_at(bytes: &[u8], off: usize) -> i64 {
    i64::from_le_bytes(bytes[off..off + 8].try_into().expect("8 bytes"))
}

/// The root object: marks a pool as holding warabifs metadata and names its version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    pub magic: [u8; 8],
    pub version: u32,
    /// Every counted inode number below this may have been given out: a new inode
    /// gets at least this number, so that no number is ever used twice (a file handle
    /// of a deleted file must not open a later one). 0 in pools written by builds that
    /// did not keep it; the mount then counts from the largest number in use.
    pub next_ino: u64,
}

impl Superblock {
    /// The superblock of a new pool of `version`.
    pub fn of_version(version: u32) -> Superblock {
        Superblock {
            magic: MAGIC,
            version,
            next_ino: 0,
        }
    }

    pub fn encode(&self) -> [u8; SUPERBLOCK_SIZE] {
        let mut out = [0u8; SUPERBLOCK_SIZE];
        out[0..8].copy_from_slice(&self.magic);
        out[8..12].copy_from_slice(&self.version.to_le_bytes());
        out[16..24].copy_from_slice(&self.next_ino.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Superblock {
        Superblock {
            magic: bytes[0..8].try_into().expect("8 bytes"),
            version: u32_at(bytes, 8),
            next_ino: u64_at(bytes, 16),
        }
    }
}

/// A point in time as seconds and nanoseconds since the epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from(std::time::SystemTime::now())
    }

    fn encode(self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.secs.to_le_bytes());
        out[8..12].copy_from_slice(&self.nanos.to_le_bytes());
    }

    fn decode(bytes: &[u8]) -> Timestamp {
        Timestamp {
            secs: i64_at(bytes, 0),
            nanos: u32_at(bytes, 8),
        }
    }
}

impl From<std::time::SystemTime> for Timestamp {
    fn from(time: std::time::SystemTime) -> Timestamp {
        match time.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Timestamp {
                secs: d.as_secs() as i64,
                nanos: d.subsec_nanos(),
            },
            Err(before) => {
                let d = before.duration();
                let (secs, nanos) = if d.subsec_nanos() == 0 {
                    (-(d.as_secs() as i64), 0)
                } else {
                    (-(d.as_secs() as i64) - 1, 1_000_000_000 - d.subsec_nanos())
                };
                Timestamp { secs, nanos }
            }
        }
    }
}

impl From<Timestamp> for std::time::SystemTime {
    fn from(t: Timestamp) -> std::time::SystemTime {
        let nanos = std::time::Duration::new(0, t.nanos);
        if t.secs >= 0 {
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.secs as u64) + nanos
        } else {
            std::time::UNIX_EPOCH - std::time::Duration::from_secs(t.secs.unsigned_abs()) + nanos
        }
    }
}

/// Inode flag: unlinked while open; its region is reclaimed at the next mount.
pub const INODE_ORPHAN: u32 = 1;

/// An inode record: attributes, the file's region and, for a symlink, its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InodeRecord {
    pub ino: u64,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub flags: u32,
    pub size: u64,
    pub rdev: u64,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub region: Oid,
    /// Bytes at the end of a regular file that are not in its region and read as zeros
    /// (a size set past what was written). The region holds the first
    /// [`InodeRecord::data_len`] bytes. 0 for every other record.
    pub zero_tail: u64,
    /// A boxed slice, not a Vec: one word less in every in-memory inode.
    pub target: Box<[u8]>,
}

/// Offsets of the inode record fields that change on their own.
pub mod inode_field {
    pub const MODE: u64 = 8;
    pub const NLINK: u64 = 12;
    pub const FLAGS: u64 = 24;
    pub const SIZE: u64 = 32;
    /// atime, mtime, ctime: 16 bytes each from here.
    pub const TIMES: u64 = 48;
    pub const REGION: u64 = 96;
    pub const ZERO_TAIL: u64 = 112;
}

impl InodeRecord {
    /// A new inode: one link (two for a directory, counting "."), no data, every time
    /// `now`.
    pub fn new(ino: u64, mode: u32, uid: u32, gid: u32, now: Timestamp) -> InodeRecord {
        InodeRecord {
            ino,
            mode,
            nlink: if mode & libc::S_IFMT == libc::S_IFDIR {
                2
            } else {
                1
            },
            uid,
            gid,
            flags: 0,
            size: 0,
            rdev: 0,
            atime: now,
            mtime: now,
            ctime: now,
            region: Oid::NULL,
            zero_tail: 0,
            target: Box::default(),
        }
    }

    /// Whether the inode was left to be freed: no links, or unlinked while open (its
    /// records are freed at the next mount, or by `warabifs check --repair`).
    pub fn is_orphan(&self) -> bool {
        self.nlink == 0 || self.flags & INODE_ORPHAN != 0
    }

    /// Bytes of the file its region holds, from offset 0; the rest of the size reads as
    /// zeros.
    pub fn data_len(&self) -> u64 {
        self.size.saturating_sub(self.zero_tail)
    }

    /// Sets the size and how much of it the region holds (`data_len` <= `size`).
    pub fn set_extent(&mut self, size: u64, data_len: u64) {
        debug_assert!(data_len <= size, "data_len {data_len} past size {size}");
        self.size = size;
        self.zero_tail = size - data_len.min(size);
    }

    /// Header plus symlink target: the object size this record needs.
    pub fn encoded_len(&self) -> usize {
        INODE_HEADER_SIZE + self.target.len()
    }

    /// The fixed 128-byte header (everything but the symlink target).
    pub fn encode_header(&self) -> [u8; INODE_HEADER_SIZE] {
        let mut out = [0u8; INODE_HEADER_SIZE];
        out[0..8].copy_from_slice(&self.ino.to_le_bytes());
        out[8..12].copy_from_slice(&self.mode.to_le_bytes());
        out[12..16].copy_from_slice(&self.nlink.to_le_bytes());
        out[16..20].copy_from_slice(&self.uid.to_le_bytes());
        out[20..24].copy_from_slice(&self.gid.to_le_bytes());
        out[24..28].copy_from_slice(&self.flags.to_le_bytes());
        out[28..32].copy_from_slice(&(self.target.len() as u32).to_le_bytes());
        out[32..40].copy_from_slice(&self.size.to_le_bytes());
        out[40..48].copy_from_slice(&self.rdev.to_le_bytes());
        self.atime.encode(&mut out[48..64]);
        self.mtime.encode(&mut out[64..80]);
        self.ctime.encode(&mut out[80..96]);
        out[96..104].copy_from_slice(&self.region.pool_uuid_lo.to_le_bytes());
        out[104..112].copy_from_slice(&self.region.off.to_le_bytes());
        out[112..120].copy_from_slice(&self.zero_tail.min(self.size).to_le_bytes());
        out
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.encode_header().to_vec();
        out.extend_from_slice(&self.target);
        out
    }

    /// Decodes a record; `None` when the bytes are too short for what they claim.
    pub fn decode(bytes: &[u8]) -> Option<InodeRecord> {
        if bytes.len() < INODE_HEADER_SIZE {
            return None;
        }
        let target_len = u32_at(bytes, 28) as usize;
        let target = bytes
            .get(INODE_HEADER_SIZE..INODE_HEADER_SIZE + target_len)?
            .into();
        Some(InodeRecord {
            ino: u64_at(bytes, 0),
            mode: u32_at(bytes, 8),
            nlink: u32_at(bytes, 12),
            uid: u32_at(bytes, 16),
            gid: u32_at(bytes, 20),
            flags: u32_at(bytes, 24),
            size: u64_at(bytes, 32),
            rdev: u64_at(bytes, 40),
            atime: Timestamp::decode(&bytes[48..64]),
            mtime: Timestamp::decode(&bytes[64..80]),
            ctime: Timestamp::decode(&bytes[80..96]),
            region: Oid {
                pool_uuid_lo: u64_at(bytes, 96),
                off: u64_at(bytes, 104),
            },
            zero_tail: u64_at(bytes, 112),
            target,
        })
    }
}

/// A directory entry record: (parent directory, name) -> inode number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DentryRecord {
    pub parent: u64,
    pub ino: u64,
    pub name: Vec<u8>,
}

impl DentryRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; DENTRY_HEADER_SIZE + self.name.len()];
        out[0..8].copy_from_slice(&self.parent.to_le_bytes());
        out[8..16].copy_from_slice(&self.ino.to_le_bytes());
        out[16..18].copy_from_slice(&(self.name.len() as u16).to_le_bytes());
        out[DENTRY_HEADER_SIZE..].copy_from_slice(&self.name);
        out
    }

    /// Decodes a record; `None` when the name length is impossible.
    pub fn decode(bytes: &[u8]) -> Option<DentryRecord> {
        DentryView::decode(bytes).map(|view| DentryRecord {
            parent: view.parent,
            ino: view.ino,
            name: view.name.to_vec(),
        })
    }
}

/// A directory entry record decoded in place: its name borrowed from the bytes read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DentryView<'a> {
    pub parent: u64,
    pub ino: u64,
    pub name: &'a [u8],
}

impl<'a> DentryView<'a> {
    /// Decodes a record; `None` when the name length is impossible.
    pub fn decode(bytes: &'a [u8]) -> Option<DentryView<'a>> {
        if bytes.len() < DENTRY_HEADER_SIZE {
            return None;
        }
        let name_len = u16::from_le_bytes([bytes[16], bytes[17]]) as usize;
        if name_len == 0 || name_len > NAME_MAX {
            return None;
        }
        Some(DentryView {
            parent: u64_at(bytes, 0),
            ino: u64_at(bytes, 8),
            name: bytes.get(DENTRY_HEADER_SIZE..DENTRY_HEADER_SIZE + name_len)?,
        })
    }
}

/// An extended attribute record: one (name, value) pair of one inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XattrRecord {
    pub ino: u64,
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

impl XattrRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; XATTR_HEADER_SIZE];
        out[0..8].copy_from_slice(&self.ino.to_le_bytes());
        out[8..10].copy_from_slice(&(self.name.len() as u16).to_le_bytes());
        out[12..16].copy_from_slice(&(self.value.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.name);
        out.extend_from_slice(&self.value);
        out
    }

    /// Decodes a record; `None` when the lengths are impossible.
    pub fn decode(bytes: &[u8]) -> Option<XattrRecord> {
        if bytes.len() < XATTR_HEADER_SIZE {
            return None;
        }
        let name_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        let value_len = u32_at(bytes, 12) as usize;
        if name_len == 0 || name_len > XATTR_NAME_MAX || value_len > XATTR_SIZE_MAX {
            return None;
        }
        let name_end = XATTR_HEADER_SIZE + name_len;
        Some(XattrRecord {
            ino: u64_at(bytes, 0),
            name: bytes.get(XATTR_HEADER_SIZE..name_end)?.to_vec(),
            value: bytes.get(name_end..name_end + value_len)?.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_inodes_go_past_every_counted_number_and_the_superblock() {
        let mut next = NextIno::default();
        assert_eq!(next.next(0), ROOT_INO + 1, "an empty pool");
        next.see(7);
        next.see(RAW_REGION_INO_BIT | 4096);
        next.see(3);
        assert_eq!(next.next(0), 8, "region numbers do not count");
        assert_eq!(
            next.next(20),
            20,
            "numbers of deleted inodes stay given out"
        );
    }

    fn sample_inode() -> InodeRecord {
        InodeRecord {
            ino: 42,
            mode: libc::S_IFLNK | 0o777,
            nlink: 1,
            uid: 1000,
            gid: 100,
            flags: INODE_ORPHAN,
            size: 7,
            rdev: 0,
            atime: Timestamp { secs: 1, nanos: 2 },
            mtime: Timestamp { secs: -3, nanos: 4 },
            ctime: Timestamp {
                secs: 5,
                nanos: 999_999_999,
            },
            region: Oid {
                pool_uuid_lo: 9,
                off: 0x4000,
            },
            zero_tail: 3,
            target: b"/a/path".as_slice().into(),
        }
    }

    #[test]
    fn inode_records_round_trip() {
        let rec = sample_inode();
        assert_eq!(InodeRecord::decode(&rec.encode()), Some(rec));
    }

    #[test]
    fn a_record_without_a_zero_tail_is_a_version_1_record() {
        let mut rec = sample_inode();
        rec.set_extent(100, 100);
        assert_eq!(rec.zero_tail, 0);
        assert!(rec.encode_header()[112..].iter().all(|&b| b == 0));
        rec.set_extent(1 << 40, 10);
        assert_eq!(rec.data_len(), 10);
        assert_eq!(InodeRecord::decode(&rec.encode()), Some(rec));
    }

    #[test]
    fn truncated_inode_record_is_refused() {
        let bytes = sample_inode().encode();
        assert_eq!(InodeRecord::decode(&bytes[..bytes.len() - 1]), None);
    }

    #[test]
    fn dentry_records_round_trip_and_reject_bad_lengths() {
        let rec = DentryRecord {
            parent: 1,
            ino: 2,
            name: b"n\xffame".to_vec(),
        };
        assert_eq!(DentryRecord::decode(&rec.encode()), Some(rec));
        let mut bad = DentryRecord {
            parent: 1,
            ino: 2,
            name: b"x".to_vec(),
        }
        .encode();
        bad[16] = 0;
        assert_eq!(DentryRecord::decode(&bad), None);
    }

    #[test]
    fn xattr_records_round_trip_and_reject_bad_lengths() {
        let rec = XattrRecord {
            ino: 9,
            name: b"user.k".to_vec(),
            value: vec![0, 1, 255],
        };
        assert_eq!(XattrRecord::decode(&rec.encode()), Some(rec.clone()));
        let empty = XattrRecord {
            value: Vec::new(),
            ..rec.clone()
        };
        assert_eq!(XattrRecord::decode(&empty.encode()), Some(empty));
        let bytes = rec.encode();
        assert_eq!(XattrRecord::decode(&bytes[..bytes.len() - 1]), None);
    }

    #[test]
    fn timestamps_before_the_epoch_round_trip() {
        let t = std::time::UNIX_EPOCH - std::time::Duration::new(3, 250);
        let ts = Timestamp::from(t);
        assert_eq!(
            ts,
            Timestamp {
                secs: -4,
                nanos: 999_999_750
            }
        );
        assert_eq!(std::time::SystemTime::from(ts), t);
    }
}
