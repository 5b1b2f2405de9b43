//! `warabifs ls`: every path of a pool and every region Warabi made, from one scan.
//!
//! Built for pools of millions of objects: the records are kept in sorted arrays (looked
//! up by binary search) rather than maps of owned copies, and the text listing is
//! written row by row as it is made.

use std::io::{self, Write};

use crate::store::records::{Timestamp, RAW_REGION_INO_BIT, ROOT_INO};
use crate::store::{Found, Oid, Store};

use super::{kind_name, region_id, rfc3339, Listing};

/// What a listing row needs of an inode record.
struct InodeRow {
    ino: u64,
    mode: u32,
    size: u64,
    /// Bytes of the file its region holds.
    stored: u64,
    mtime: Timestamp,
    region: Oid,
}

/// What listing needs of a directory entry record.
struct EntryRow {
    record_off: u64,
    parent: u64,
    ino: u64,
    name: Box<[u8]>,
}

/// The scan, indexed for listing: inodes by number, entries by parent in listing order.
struct Tree {
    /// Sorted by number; the first record of a number wins (`check` reports the rest).
    inodes: Vec<InodeRow>,
    /// Sorted by (parent, record offset).
    entries: Vec<EntryRow>,
}

impl Tree {
    fn inode(&self, ino: u64) -> Option<&InodeRow> {
        let i = self.inodes.binary_search_by_key(&ino, |r| r.ino).ok()?;
        Some(&self.inodes[i])
    }

    fn children(&self, parent: u64) -> &[EntryRow] {
        let start = self.entries.partition_point(|e| e.parent < parent);
        let end = self.entries.partition_point(|e| e.parent <= parent);
        &self.entries[start..end]
    }

    /// Every path reachable from the root with the inode it names (None: an entry
    /// naming no inode record), depth first in listing order. A directory is entered
    /// once, so a corrupt cycle cannot loop.
    fn paths(&self) -> Vec<(String, Option<&InodeRow>)> {
        let mut out = vec![("/".to_string(), self.inode(ROOT_INO))];
        let mut entered = std::collections::HashSet::from([ROOT_INO]);
        let mut stack = vec![(String::new(), ROOT_INO)];
        while let Some((prefix, dir)) = stack.pop() {
            let mut subdirs = Vec::new();
            for entry in self.children(dir) {
                let name = String::from_utf8_lossy(&entry.name);
                let mut path = String::with_capacity(prefix.len() + 1 + name.len());
                path.push_str(&prefix);
                path.push('/');
                path.push_str(&name);
                let inode = self.inode(entry.ino);
                let is_dir = inode.is_some_and(|i| i.mode & libc::S_IFMT == libc::S_IFDIR);
                if is_dir && entered.insert(entry.ino) {
                    subdirs.push((path.clone(), entry.ino));
                }
                out.push((path, inode));
            }
            stack.extend(subdirs.into_iter().rev());
        }
        out
    }
}

/// Reads the pool once (the pool's scan, `progress` told the count every few thousand
/// objects) and calls `row` for every path in the pool (sorted by path), then for every
/// region Warabi made (by RegionID). Keeps of each record only what a row shows.
pub fn for_each_row(store: &Store, mut progress: impl FnMut(u64), mut row: impl FnMut(Listing)) {
    let (mut inodes, mut entries, mut regions) = (Vec::new(), Vec::new(), Vec::new());
    let mut count = 0u64;
    store.scan_each(|found| {
        if count % 4096 == 0 {
            progress(count);
        }
        count += 1;
        match found {
            Found::Region(oid, size) => regions.push((oid, size)),
            Found::Inode(_, rec) => inodes.push(InodeRow {
                ino: rec.ino,
                mode: rec.mode,
                size: rec.size,
                stored: rec.data_len(),
                mtime: rec.mtime,
                region: rec.region,
            }),
            Found::Dentry(oid, view) => entries.push(EntryRow {
                record_off: oid.off,
                parent: view.parent,
                ino: view.ino,
                name: view.name.into(),
            }),
            Found::Xattr(..) | Found::Unreadable(_) => {}
        }
    });
    let mut owned: Vec<Oid> = inodes
        .iter()
        .map(|rec| rec.region)
        .filter(|r| !r.is_null())
        .collect();
    owned.sort_unstable();
    inodes.sort_by_key(|r| r.ino);
    inodes.dedup_by_key(|r| r.ino);
    entries.sort_unstable_by_key(|e| (e.parent, e.record_off));
    let tree = Tree { inodes, entries };
    let mut paths = tree.paths();
    paths.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut mtimes = MtimeText::default();
    for (path, inode) in paths {
        if let Some(meta) = inode {
            row(file_row(store, path, meta, &mut mtimes));
        }
    }
    drop(tree);
    regions.sort_unstable_by_key(|(region, _)| region.to_region_id());
    for (region, size) in regions {
        if owned.binary_search(&region).is_err() {
            row(region_row(region, size));
        }
    }
}

/// RFC 3339 times with nanoseconds, the formatting of the date and time of day done
/// once per second: files made together share it, and formatting took longer than
/// the rest of their row.
#[derive(Default)]
struct MtimeText {
    secs: Option<i64>,
    /// [`rfc3339`] of `secs` with no nanoseconds.
    seconds: String,
}

impl MtimeText {
    fn format(&mut self, t: Timestamp) -> String {
        if self.secs != Some(t.secs) {
            self.seconds = rfc3339(Timestamp { nanos: 0, ..t });
            self.secs = Some(t.secs);
        }
        let Some(seconds) = self.seconds.strip_suffix(".000000000Z") else {
            return rfc3339(t); // past the calendar's years
        };
        if t.nanos >= 1_000_000_000 {
            return rfc3339(t); // not a time warabifs writes: as the pool has it
        }
        // By hand, with put_row's digits: format! here took a third of a file's row.
        let mut text = Vec::with_capacity(seconds.len() + 11);
        text.extend_from_slice(seconds.as_bytes());
        text.push(b'.');
        push_number(&mut text, u64::from(t.nanos), 10, 9, b'0');
        text.push(b'Z');
        String::from_utf8(text).expect("ASCII digits after an RFC 3339 date")
    }
}

fn file_row(store: &Store, path: String, meta: &InodeRow, mtimes: &mut MtimeText) -> Listing {
    Listing {
        path,
        kind: kind_name(meta.mode),
        ino: meta.ino,
        region_id: region_id(meta.region),
        size: meta.size,
        stored: meta.stored,
        capacity: store.capacity(meta.region),
        mode: meta.mode,
        mtime: Some(mtimes.format(meta.mtime)),
    }
}

/// A region Warabi made, of `capacity` usable bytes (its size: Warabi records none).
fn region_row(region: Oid, capacity: u64) -> Listing {
    let id = region.to_string();
    let mut path = String::with_capacity(1 + id.len());
    path.push('/');
    path.push_str(&id);
    Listing {
        path,
        kind: "region",
        ino: RAW_REGION_INO_BIT | region.off,
        region_id: Some(id),
        size: capacity,
        stored: capacity,
        capacity,
        mode: libc::S_IFREG | 0o644,
        mtime: None,
    }
}

/// One line of `ls` as text: kind, mode, size, bytes stored, capacity, mtime, RegionID
/// and path, in columns (`{:<7} {:06o} {:>12} {:>12} {:>12} {:<19} {:<32} {}`). Put together by hand: a
/// million rows through `format!` took longer than the scan of the pool.
pub fn write_row(out: &mut impl Write, r: &Listing) -> io::Result<()> {
    thread_local! {
        /// One line's bytes, kept from row to row.
        static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    LINE.with_borrow_mut(|line| {
        line.clear();
        put_row(line, r);
        out.write_all(line)
    })
}

fn put_row(line: &mut Vec<u8>, r: &Listing) {
    let region = r.region_id.as_deref().unwrap_or("-");
    let mtime = r.mtime.as_deref().map_or("-", |t| &t[..19.min(t.len())]);
    push_left(line, r.kind.as_bytes(), 7);
    push_number(line, u64::from(r.mode), 8, 6, b'0');
    line.push(b' ');
    push_number(line, r.size, 10, 12, b' ');
    line.push(b' ');
    push_number(line, r.stored, 10, 12, b' ');
    line.push(b' ');
    push_number(line, r.capacity, 10, 12, b' ');
    line.push(b' ');
    push_left(line, mtime.as_bytes(), 19);
    push_left(line, region.as_bytes(), 32);
    line.extend_from_slice(r.path.as_bytes());
    line.push(b'\n');
}

/// `text` padded with spaces to `width`, then a space.
fn push_left(line: &mut Vec<u8>, text: &[u8], width: usize) {
    line.extend_from_slice(text);
    line.resize(line.len() + width.saturating_sub(text.len()), b' ');
    line.push(b' ');
}

/// `n` in `radix`, right-aligned in `width` with `fill` before it.
fn push_number(line: &mut Vec<u8>, mut n: u64, radix: u64, width: usize, fill: u8) {
    let mut digits = [0u8; 24];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b"0123456789abcdef"[(n % radix) as usize];
        n /= radix;
        if n == 0 {
            break;
        }
    }
    let digits = &digits[start..];
    line.resize(line.len() + width.saturating_sub(digits.len()), fill);
    line.extend_from_slice(digits);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtimes_read_as_rfc3339_with_nanoseconds_whatever_came_before() {
        let mut mtimes = MtimeText::default();
        let times = [
            (1_700_000_000, 5, "2023-11-14T22:13:20.000000005Z"),
            (1_700_000_000, 999_999_999, "2023-11-14T22:13:20.999999999Z"),
            (1_700_000_001, 0, "2023-11-14T22:13:21.000000000Z"),
            (0, 120, "1970-01-01T00:00:00.000000120Z"),
            (-1, 7, "1969-12-31T23:59:59.000000007Z"),
            (-315_619_200, 0, "1960-01-01T00:00:00.000000000Z"),
            (i64::MAX, 1, "@9223372036854775807.000000001"),
            (
                1_700_000_000,
                1_500_000_000,
                "2023-11-14T22:13:20.1500000000Z",
            ),
        ];
        for (secs, nanos, text) in times {
            let t = Timestamp { secs, nanos };
            assert_eq!(mtimes.format(t), text, "{secs}.{nanos}");
            assert_eq!(rfc3339(t), text);
        }
    }
}
