//! Pool set files (poolset(5)): a text file starting with `PMEMPOOLSET` that names the
//! parts of a pool, its local replicas and its options. libpmemobj maps the parts of
//! the first (master) replica one after the other into one address space; this module
//! says where each byte of that address space lives, so the pool can be probed before
//! libpmemobj opens (and writes to) it.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// What a pool set file starts with (`POOLSET_HDR_SIG`).
pub const SIGNATURE: &[u8] = b"PMEMPOOLSET";
/// Every part but the first of a replica starts with its own 4 KiB pool header, which
/// libpmemobj keeps out of the pool's address space (unless `OPTION SINGLEHDR`).
pub const PART_HEADER_SIZE: u64 = 4096;
/// Parts are mapped in whole pages.
const PAGE: u64 = 4096;
/// Pool set files are small; a longer file is not one.
const MAX_SET_FILE: u64 = 1 << 20;

/// A parsed pool set file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolSet {
    /// The master replica first, then each local `REPLICA` section.
    pub replicas: Vec<Replica>,
    /// `OPTION SINGLEHDR`: only the first part of each replica has a pool header.
    pub single_header: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Replica {
    pub parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Part {
    pub path: PathBuf,
    /// The size the set file gives; `None` for `AUTO` (a device DAX part's whole size).
    pub declared_size: Option<u64>,
}

/// Why a pool set cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum SetError {
    /// The file is not a pool set at all.
    NotASet,
    /// A pool set that says something warabifs does not understand or cannot use.
    Invalid(String),
}

/// Whether `bytes` (the start of a file) are the start of a pool set file.
pub fn is_pool_set(bytes: &[u8]) -> bool {
    bytes.starts_with(SIGNATURE)
}

/// Reads and parses a pool set file.
pub fn read(path: &Path) -> Result<PoolSet, SetError> {
    let mut text = Vec::new();
    let mut file = File::open(path).map_err(|e| SetError::Invalid(e.to_string()))?;
    let mut start = [0u8; SIGNATURE.len()];
    let got = file
        .read(&mut start)
        .map_err(|e| SetError::Invalid(e.to_string()))?;
    if !is_pool_set(&start[..got]) {
        return Err(SetError::NotASet);
    }
    text.extend_from_slice(&start[..got]);
    file.take(MAX_SET_FILE)
        .read_to_end(&mut text)
        .map_err(|e| SetError::Invalid(e.to_string()))?;
    let text = String::from_utf8(text).map_err(|_| SetError::NotASet)?;
    parse(&text)
}

/// Parses the text of a pool set file.
pub fn parse(text: &str) -> Result<PoolSet, SetError> {
    let mut lines = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim());
    if lines.next() != Some("PMEMPOOLSET") {
        return Err(SetError::NotASet);
    }
    let invalid = |line: &str, why: &str| SetError::Invalid(format!("\"{line}\": {why}"));
    let mut set = PoolSet {
        replicas: vec![Replica { parts: Vec::new() }],
        single_header: false,
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["REPLICA"] => set.replicas.push(Replica { parts: Vec::new() }),
            ["REPLICA", ..] => {
                return Err(invalid(
                    line,
                    "remote replicas (librpmem) are not supported",
                ))
            }
            ["OPTION", "SINGLEHDR"] => set.single_header = true,
            ["OPTION", "NOHDRS"] => {
                return Err(invalid(line, "NOHDRS is only for remote pool set files"))
            }
            ["OPTION", ..] => return Err(invalid(line, "unknown pool set option")),
            [size, path] => {
                let part = parse_part(size, path).map_err(|why| invalid(line, &why))?;
                set.replicas
                    .last_mut()
                    .expect("one at least")
                    .parts
                    .push(part);
            }
            _ => return Err(invalid(line, "not a part (SIZE PATH), REPLICA or OPTION")),
        }
    }
    if set.replicas.iter().any(|r| r.parts.is_empty()) {
        return Err(SetError::Invalid("a replica without parts".into()));
    }
    Ok(set)
}

fn parse_part(size: &str, path: &str) -> Result<Part, String> {
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err("part paths must be absolute".into());
    }
    let declared_size = match size {
        "AUTO" => None,
        _ => Some(parse_size(size)?),
    };
    Ok(Part {
        path,
        declared_size,
    })
}

/// A part size as poolset(5) writes it: digits, then nothing (bytes), an SI unit with
/// its B (kB, MB, ...: powers of 1000) or an IEC unit with optional iB (K, KiB, ...:
/// powers of 1024).
fn parse_size(text: &str) -> Result<u64, String> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(end);
    let number: u64 = digits.parse().map_err(|_| format!("bad size \"{text}\""))?;
    let prefixes = ["K", "M", "G", "T", "P", "E"];
    let multiplier = match unit {
        "" | "B" => 1,
        _ => {
            let upper = unit.to_ascii_uppercase();
            let (prefix, rest) = upper.split_at(1);
            let power = prefixes
                .iter()
                .position(|p| *p == prefix)
                .ok_or_else(|| format!("bad size unit \"{unit}\""))? as u32
                + 1;
            match rest {
                "" | "IB" => 1024u64.pow(power),
                "B" if unit.as_bytes()[1] == b'B' => 1000u64.pow(power),
                _ => return Err(format!("bad size unit \"{unit}\"")),
            }
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("size \"{text}\" is too large"))
}

/// What a part is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartKind {
    File,
    /// A device DAX character device: it has no read or write system calls, only mmap.
    DeviceDax,
}

/// A part as found on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartInfo {
    pub path: PathBuf,
    pub kind: PartKind,
    /// Its size on disk (a file's length, a device's size).
    pub size: u64,
    /// Where its bytes start in the replica's address space, and how many it adds.
    pub pool_offset: u64,
    pub pool_bytes: u64,
}

/// Looks at every part of every replica: each must exist, be a regular file or a
/// device DAX, and be big enough for what the set says. The parts of each replica are
/// laid out in its address space as libpmemobj maps them.
pub fn locate(set: &PoolSet) -> Result<Vec<Vec<PartInfo>>, SetError> {
    let several = set.replicas.len() > 1;
    set.replicas
        .iter()
        .map(|replica| {
            let mut offset = 0;
            replica
                .parts
                .iter()
                .enumerate()
                .map(|(index, part)| {
                    let info = locate_part(part, index, offset, set.single_header, several)?;
                    offset += info.pool_bytes;
                    Ok(info)
                })
                .collect()
        })
        .collect()
}

fn locate_part(
    part: &Part,
    index: usize,
    pool_offset: u64,
    single_header: bool,
    replicated: bool,
) -> Result<PartInfo, SetError> {
    let path = &part.path;
    let meta = std::fs::metadata(path).map_err(|e| {
        let hint = if replicated && e.kind() == std::io::ErrorKind::NotFound {
            "; `pmempool sync` rebuilds a lost part from a replica"
        } else {
            ""
        };
        SetError::Invalid(format!("part {}: {e}{hint}", path.display()))
    })?;
    let (kind, size, alignment) = if meta.file_type().is_char_device() {
        let (size, alignment) = device_dax_geometry(meta.rdev()).ok_or_else(|| {
            SetError::Invalid(format!(
                "part {} is a character device but not a device DAX",
                path.display()
            ))
        })?;
        (PartKind::DeviceDax, size, alignment)
    } else if meta.is_file() {
        (PartKind::File, meta.len(), PAGE)
    } else if meta.is_dir() {
        return Err(SetError::Invalid(format!(
            "part {} is a directory: directory pool sets are not supported",
            path.display()
        )));
    } else {
        return Err(SetError::Invalid(format!(
            "part {} is not a file",
            path.display()
        )));
    };
    if let Some(declared) = part.declared_size.filter(|&d| size < d) {
        return Err(SetError::Invalid(format!(
            "part {} has {size} bytes, less than the {declared} the pool set gives it",
            path.display()
        )));
    }
    // libpmemobj maps whole pages of a file, and whole alignment units of a device.
    let mapped = size - size % alignment;
    let pool_bytes = mapped.saturating_sub(skipped_header(single_header, index));
    Ok(PartInfo {
        path: path.clone(),
        kind,
        size,
        pool_offset,
        pool_bytes,
    })
}

/// The pool path itself as a part (a single pool file, or one on a device DAX): what
/// it is and how long. Errors as for a part, except that a missing file is an I/O
/// error the caller has ruled out already.
pub fn part_of_path(path: &Path) -> Result<PartInfo, SetError> {
    let meta = std::fs::metadata(path).map_err(|e| SetError::Invalid(e.to_string()))?;
    if !meta.is_file() && !meta.file_type().is_char_device() {
        return Err(SetError::NotASet);
    }
    let part = Part {
        path: path.to_path_buf(),
        declared_size: None,
    };
    locate_part(&part, 0, 0, false, false)
}

/// A device DAX's size and mapping alignment, from sysfs; None when the device is not
/// one. The alignment defaults to a page when sysfs does not give it.
fn device_dax_geometry(rdev: u64) -> Option<(u64, u64)> {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let sys = format!("/sys/dev/char/{major}:{minor}");
    let subsystem = std::fs::read_link(format!("{sys}/subsystem")).ok()?;
    if !subsystem.ends_with("dax") {
        return None;
    }
    let number = |file: &str| -> Option<u64> {
        std::fs::read_to_string(format!("{sys}/{file}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let alignment = number("device/align")
        .or_else(|| number("align"))
        .filter(|&a| a > 0)
        .unwrap_or(PAGE);
    Some((number("size")?, alignment))
}

/// Whether pool header bytes lie at the start of part `index` of a replica.
pub fn part_has_header(set: &PoolSet, index: usize) -> bool {
    index == 0 || !set.single_header
}

/// The bytes at the start of part `index` that are not in the replica's address space:
/// the pool header of every part but the first, unless `OPTION SINGLEHDR`.
pub fn skipped_header(single_header: bool, index: usize) -> u64 {
    match index == 0 || single_header {
        true => 0,
        false => PART_HEADER_SIZE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_replicas_and_options_are_read() {
        let set = parse(
            "PMEMPOOLSET\n# comment\nOPTION SINGLEHDR\n64M /a/p0\n 1GiB /a/p1 # big\n\nREPLICA\n128MB /b/r0\nAUTO /dev/dax0.0\n",
        )
        .unwrap();
        assert!(set.single_header);
        assert_eq!(set.replicas.len(), 2);
        assert_eq!(set.replicas[0].parts[0].declared_size, Some(64 << 20));
        assert_eq!(set.replicas[0].parts[1].declared_size, Some(1 << 30));
        assert_eq!(set.replicas[1].parts[0].declared_size, Some(128_000_000));
        assert_eq!(set.replicas[1].parts[1].declared_size, None);
        assert_eq!(set.replicas[1].parts[1].path, PathBuf::from("/dev/dax0.0"));
    }

    #[test]
    fn sizes_follow_poolset_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2K"), Ok(2048));
        assert_eq!(parse_size("2kB"), Ok(2000));
        assert_eq!(parse_size("3MiB"), Ok(3 << 20));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert!(parse_size("1Q").is_err());
        assert!(parse_size("M").is_err());
    }

    #[test]
    fn what_cannot_be_used_is_refused_by_name() {
        assert_eq!(parse("PMEMOBJ\0"), Err(SetError::NotASet));
        let refused = |text: &str| match parse(text) {
            Err(SetError::Invalid(why)) => why,
            other => panic!("{text:?} gave {other:?}"),
        };
        assert!(refused("PMEMPOOLSET\n64M /a\nREPLICA user@host remote.set\n").contains("remote"));
        assert!(refused("PMEMPOOLSET\n64M relative/part\n").contains("absolute"));
        assert!(refused("PMEMPOOLSET\nOPTION NOHDRS\n64M /a\n").contains("NOHDRS"));
        assert!(refused("PMEMPOOLSET\n64M /a\nREPLICA\n").contains("without parts"));
        assert!(refused("PMEMPOOLSET\n").contains("without parts"));
    }
}
