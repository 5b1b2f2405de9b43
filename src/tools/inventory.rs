//! One pass over a pool's objects, indexed for the offline tools: inodes by number,
//! directory entries by parent and by target, regions, and extended attributes.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::store::records::{DentryRecord, InodeRecord, XattrRecord, ROOT_INO};
use crate::store::{Oid, Scan};

/// An inode record and where it lives.
#[derive(Clone, Debug)]
pub struct InodeAt {
    pub record: Oid,
    pub meta: InodeRecord,
}

/// A directory entry record and where it lives.
#[derive(Clone, Debug)]
pub struct EntryAt {
    pub record: Oid,
    pub entry: DentryRecord,
}

#[derive(Debug, Default)]
pub struct Inventory {
    pub inodes: BTreeMap<u64, InodeAt>,
    /// Inode records whose number another record already has.
    pub duplicate_inodes: Vec<InodeAt>,
    pub entries: Vec<EntryAt>,
    /// Entry indexes by parent directory, in listing (offset) order.
    pub children: HashMap<u64, Vec<usize>>,
    /// Entry indexes by the inode they name.
    pub links: HashMap<u64, Vec<usize>>,
    /// Live type-0 objects.
    pub regions: HashSet<Oid>,
    /// Regions some inode record names.
    pub owned: HashSet<Oid>,
    pub xattrs: Vec<(Oid, XattrRecord)>,
    pub unreadable: Vec<Oid>,
    /// The lowest number a new inode may get (the scan's next-inode rule).
    pub next_ino: u64,
}

impl Inventory {
    pub fn new(scan: Scan) -> Inventory {
        let mut inv = Inventory {
            regions: scan.regions.into_iter().collect(),
            xattrs: scan.xattrs,
            unreadable: scan.unreadable,
            next_ino: scan.next_ino,
            ..Inventory::default()
        };
        for (record, meta) in scan.inodes {
            if !meta.region.is_null() {
                inv.owned.insert(meta.region);
            }
            let at = InodeAt { record, meta };
            match inv.inodes.get(&at.meta.ino) {
                Some(_) => inv.duplicate_inodes.push(at),
                None => {
                    inv.inodes.insert(at.meta.ino, at);
                }
            }
        }
        let mut entries: Vec<EntryAt> = scan
            .dentries
            .into_iter()
            .map(|(record, entry)| EntryAt { record, entry })
            .collect();
        entries.sort_by_key(|e| e.record.off);
        for (i, e) in entries.iter().enumerate() {
            inv.children.entry(e.entry.parent).or_default().push(i);
            inv.links.entry(e.entry.ino).or_default().push(i);
        }
        inv.entries = entries;
        inv
    }

    pub fn is_dir(&self, ino: u64) -> bool {
        self.inodes
            .get(&ino)
            .is_some_and(|i| i.meta.mode & libc::S_IFMT == libc::S_IFDIR)
    }

    /// Regions no inode names: the ones Warabi made, listed by their RegionID.
    pub fn warabi_regions(&self) -> Vec<Oid> {
        let mut regions: Vec<Oid> = self.regions.difference(&self.owned).copied().collect();
        regions.sort();
        regions
    }

    /// Every path reachable from the root with the inode it names, depth first in
    /// listing order. A directory is entered once, so a corrupt cycle cannot loop.
    pub fn paths(&self) -> Vec<(String, u64)> {
        let mut out = vec![("/".to_string(), ROOT_INO)];
        let mut entered = HashSet::from([ROOT_INO]);
        let mut stack = vec![(String::new(), ROOT_INO)];
        while let Some((prefix, dir)) = stack.pop() {
            let mut subdirs = Vec::new();
            for &i in self
                .children
                .get(&dir)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let entry = &self.entries[i].entry;
                let path = format!("{prefix}/{}", String::from_utf8_lossy(&entry.name));
                if self.is_dir(entry.ino) && entered.insert(entry.ino) {
                    subdirs.push((path.clone(), entry.ino));
                }
                out.push((path, entry.ino));
            }
            stack.extend(subdirs.into_iter().rev());
        }
        out
    }
}
