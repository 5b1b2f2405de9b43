//! Reading a pool's records: one pass over its objects, each decoded by kind.

use std::sync::atomic::Ordering;

use super::records::{
    DentryRecord, DentryView, InodeRecord, NextIno, XattrRecord, DENTRY_HEADER_SIZE,
    INODE_HEADER_SIZE, NAME_MAX, TYPE_DENTRY, TYPE_INODE, TYPE_REGION, TYPE_XATTR,
};
use super::sizing::OBJECT_OVERHEAD;
use super::{Oid, Store};

/// How many bytes past an inode record's header its first read takes: enough for the
/// target of most symbolic links.
const INODE_READ_SLACK: usize = 128;

/// Everything a mount-time scan finds in the pool.
#[derive(Debug, Default)]
pub struct Scan {
    pub inodes: Vec<(Oid, InodeRecord)>,
    pub dentries: Vec<(Oid, DentryRecord)>,
    pub xattrs: Vec<(Oid, XattrRecord)>,
    /// Type-0 objects: Warabi regions, owned by an inode or not.
    pub regions: Vec<Oid>,
    /// Records that could not be decoded, and objects of type numbers no one here uses.
    pub unreadable: Vec<Oid>,
    /// The lowest number a new inode may get (see [`NextIno`]).
    pub next_ino: u64,
}

/// One object as [`Store::scan_each`] meets it.
#[derive(Debug)]
pub enum Found<'p> {
    /// A type-0 object: a Warabi region, owned by an inode or not, and its usable size.
    Region(Oid, u64),
    Inode(Oid, InodeRecord),
    /// A directory entry record, its name borrowed from the scan's copy of it.
    Dentry(Oid, DentryView<'p>),
    Xattr(Oid, XattrRecord),
    /// A record that could not be decoded, or an object of a type number no one here uses.
    Unreadable(Oid),
}

impl Store {
    /// Reads every object of the pool once, sorted by kind.
    pub fn scan(&self) -> Scan {
        self.scan_with_progress(|_| {})
    }

    /// [`Store::scan`], calling `progress` with the count of objects read so far every
    /// few thousand objects (for a progress display on big pools).
    pub fn scan_with_progress(&self, mut progress: impl FnMut(u64)) -> Scan {
        let mut scan = Scan::default();
        let mut count = 0u64;
        scan.next_ino = self.scan_each(|found| {
            if count % 4096 == 0 {
                progress(count);
            }
            count += 1;
            match found {
                Found::Region(oid, _) => scan.regions.push(oid),
                Found::Inode(oid, rec) => scan.inodes.push((oid, rec)),
                Found::Dentry(oid, view) => {
                    let rec = DentryRecord {
                        parent: view.parent,
                        ino: view.ino,
                        name: view.name.to_vec(),
                    };
                    scan.dentries.push((oid, rec));
                }
                Found::Xattr(oid, rec) => scan.xattrs.push((oid, rec)),
                Found::Unreadable(oid) => scan.unreadable.push(oid),
            }
        });
        scan
    }

    /// One pass over the pool's objects, handing each to `visit` decoded, in pool order,
    /// without collecting them: a mount keeps only what it needs of each. Sets the
    /// space accounting (see [`Store::free_bytes`]). Returns the lowest number a new
    /// inode may get: the next-inode rule over the records read and the superblock.
    pub fn scan_each(&self, mut visit: impl FnMut(Found<'_>)) -> u64 {
        let mut allocated = 0u64;
        let mut next_ino = NextIno::default();
        // Each record is copied here before it is decoded; the buffer is reused.
        let mut bytes = Vec::new();
        for oid in self.pool.objects() {
            let type_num = self.pool.type_num(oid);
            if !matches!(type_num, TYPE_INODE | TYPE_DENTRY | TYPE_XATTR) {
                // A region's bytes are file data, and an object of a type number no one
                // here uses is not ours: the scan does not read them.
                let size = self.pool.usable_size(oid);
                allocated += size + OBJECT_OVERHEAD;
                visit(match type_num {
                    TYPE_REGION => Found::Region(oid, size),
                    _ => Found::Unreadable(oid),
                });
                continue;
            }
            self.pool.read_object(oid, &mut bytes);
            allocated += bytes.len() as u64 + OBJECT_OVERHEAD;
            let found = match type_num {
                TYPE_INODE => InodeRecord::decode(&bytes).map(|rec| {
                    next_ino.see(rec.ino);
                    Found::Inode(oid, rec)
                }),
                TYPE_DENTRY => DentryView::decode(&bytes).map(|view| Found::Dentry(oid, view)),
                _ => XattrRecord::decode(&bytes).map(|rec| Found::Xattr(oid, rec)),
            };
            visit(found.unwrap_or(Found::Unreadable(oid)));
        }
        self.allocated.store(allocated as i64, Ordering::Relaxed);
        next_ino.next(self.next_ino())
    }

    /// Hands `with` the directory entry record at `record`, copied onto the stack (a
    /// record is at most a header and a name); None if it does not decode.
    pub fn with_dentry_record<R>(
        &self,
        record: Oid,
        with: impl FnOnce(DentryView<'_>) -> R,
    ) -> Option<R> {
        let mut bytes = [0u8; DENTRY_HEADER_SIZE + NAME_MAX];
        let len = self.pool.read_start(record, &mut bytes);
        DentryView::decode(&bytes[..len]).map(with)
    }

    /// The inode record at `record`, read from the pool; None if it does not decode.
    /// Most records are a header alone; a symbolic link's target may need a second,
    /// whole read.
    pub fn inode_record(&self, record: Oid) -> Option<InodeRecord> {
        let mut head = [0u8; INODE_HEADER_SIZE + INODE_READ_SLACK];
        let len = self.pool.read_start(record, &mut head);
        InodeRecord::decode(&head[..len]).or_else(|| {
            let mut bytes = Vec::new();
            self.pool.read_object(record, &mut bytes);
            InodeRecord::decode(&bytes)
        })
    }
}
