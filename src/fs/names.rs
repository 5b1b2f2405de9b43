//! The name index: (directory, name) -> entry, for lookups.
//!
//! The entries the mount found are indexed by hash in one sorted array (32 bytes an
//! entry, built with one sort) instead of a hash map of keys holding the name (about 100
//! bytes an entry with the map's slack, and a random memory access per insert at mount).
//! A hash can be shared, so a match is confirmed against the entry's dentry record on
//! the pool, which holds the parent and the name. That array only shrinks; entries made
//! after the mount (and the few Warabi regions named at mount) go into a hash map.

use std::hash::BuildHasher;

use parking_lot::RwLock;

use super::inode::FileKind;
use super::{Map, Name, NameKey};
use crate::pmem::Oid;
use crate::store::Store;

/// A directory entry in memory: the inode it names and where its record is. One per
/// name, so it is kept to three words.
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry {
    pub(super) ino: u64,
    /// The kind of the inode it names (which never changes), for readdir's d_type.
    pub(super) kind: FileKind,
    /// Position in the directory listing (the dentry record's offset): stable across
    /// mounts and unique, so readdir offsets survive concurrent changes.
    pub(super) cookie: u64,
    /// Whether a dentry record sits at offset `cookie`; a Warabi region listed under its
    /// RegionID has none (its cookie is the region's offset).
    pub(super) has_record: bool,
}

impl Entry {
    /// The entry of a dentry record.
    pub(super) fn recorded(ino: u64, kind: FileKind, dentry: Oid) -> Entry {
        Entry {
            ino,
            kind,
            cookie: dentry.off,
            has_record: true,
        }
    }

    /// The entry of a Warabi region (no record) whose inode is `ino`: it lists at the
    /// region's offset.
    pub(super) fn region(ino: u64, region: Oid) -> Entry {
        Entry {
            ino,
            kind: FileKind::Regular,
            cookie: region.off,
            has_record: false,
        }
    }
}

/// An entry found at mount: its (parent, name) hash, where its record is (0 once
/// removed), the inode it names and that inode's kind.
#[derive(Clone, Copy, Debug)]
struct MountedName {
    hash: u64,
    cookie: u64,
    ino: u64,
    kind: FileKind,
}

pub(super) struct NameIndex {
    hasher: foldhash::fast::RandomState,
    /// Entries found at mount, sorted by hash.
    mounted: RwLock<Vec<MountedName>>,
    /// Entries made since the mount.
    added: Map<NameKey, Entry>,
}

impl NameIndex {
    pub(super) fn new() -> NameIndex {
        NameIndex {
            hasher: Default::default(),
            mounted: RwLock::new(Vec::new()),
            added: Map::default(),
        }
    }

    fn hash(&self, parent: u64, name: &[u8]) -> u64 {
        self.hasher.hash_one((parent, name))
    }

    /// Indexes the entries of dentry records found at mount: (parent, name, entry).
    pub(super) fn set_mounted<'a>(&self, found: impl Iterator<Item = (u64, &'a [u8], Entry)>) {
        let mut mounted: Vec<MountedName> = found
            .map(|(parent, name, e)| MountedName {
                hash: self.hash(parent, name),
                cookie: e.cookie,
                ino: e.ino,
                kind: e.kind,
            })
            .collect();
        mounted.sort_unstable_by_key(|m| m.hash);
        mounted.shrink_to_fit();
        *self.mounted.write() = mounted;
    }

    /// Where in `mounted` the live entry `(parent, name)` is, confirmed on the pool.
    fn find_mounted(
        store: &Store,
        mounted: &[MountedName],
        hash: u64,
        parent: u64,
        name: &[u8],
    ) -> Option<usize> {
        let start = mounted.partition_point(|m| m.hash < hash);
        (start..mounted.len())
            .take_while(|&i| mounted[i].hash == hash)
            .find(|&i| {
                let cookie = mounted[i].cookie;
                cookie != 0
                    && store
                        .dentry_record(store.pool().oid_at(cookie))
                        .is_some_and(|d| d.parent == parent && d.name == name)
            })
    }

    pub(super) fn get(&self, store: &Store, parent: u64, name: &[u8]) -> Option<Entry> {
        if let Some(entry) = self.added.get(&(parent, name.into())) {
            return Some(*entry);
        }
        let mounted = self.mounted.read();
        let i = Self::find_mounted(store, &mounted, self.hash(parent, name), parent, name)?;
        Some(mounted_entry(&mounted[i]))
    }

    pub(super) fn insert(&self, parent: u64, name: Name, entry: Entry) {
        self.added.insert((parent, name), entry);
    }

    pub(super) fn remove(&self, store: &Store, parent: u64, name: &[u8]) -> Option<Entry> {
        if let Some((_, entry)) = self.added.remove(&(parent, name.into())) {
            return Some(entry);
        }
        let mut mounted = self.mounted.write();
        let i = Self::find_mounted(store, &mounted, self.hash(parent, name), parent, name)?;
        let entry = mounted_entry(&mounted[i]);
        mounted[i].cookie = 0;
        Some(entry)
    }
}

fn mounted_entry(m: &MountedName) -> Entry {
    Entry {
        ino: m.ino,
        kind: m.kind,
        cookie: m.cookie,
        has_record: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::DentryRecord;
    use crate::store::PoolConfig;

    /// A fresh pool of the smallest size, in /dev/shm; the directory goes with it.
    fn small_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir_in("/dev/shm").expect("tempdir in /dev/shm");
        let config = PoolConfig {
            path: dir.path().join("pool"),
            create_if_missing_with_size: Some(8 << 20),
            override_if_exists: false,
        };
        let store = Store::open(&config, false).expect("create pool");
        (dir, store)
    }

    /// Writes a dentry record (parent, name) and returns its offset: an entry's cookie.
    fn dentry(store: &Store, parent: u64, name: &[u8]) -> u64 {
        let mut tx = store.begin().unwrap();
        let record = DentryRecord {
            parent,
            ino: 99,
            name: name.to_vec(),
        };
        let oid = tx.create_dentry(&record).unwrap();
        tx.commit().unwrap();
        oid.off
    }

    fn entry(ino: u64, cookie: u64) -> Entry {
        Entry {
            ino,
            kind: FileKind::Regular,
            cookie,
            has_record: true,
        }
    }

    fn found(e: Option<Entry>) -> Option<(u64, u64)> {
        e.map(|e| (e.ino, e.cookie))
    }

    #[test]
    fn an_empty_index_finds_and_removes_nothing() {
        let (_dir, store) = small_store();
        let index = NameIndex::new();
        assert!(index.get(&store, 1, b"a").is_none());
        assert!(index.remove(&store, 1, b"a").is_none());
        index.set_mounted(std::iter::empty());
        assert!(index.get(&store, 1, b"").is_none());
    }

    #[test]
    fn added_names_are_found_under_their_parent_only_until_removed() {
        let (_dir, store) = small_store();
        let index = NameIndex::new();
        index.insert(1, b"a".as_slice().into(), entry(5, 50));
        index.insert(u64::MAX, b"a".as_slice().into(), entry(6, 60));
        assert_eq!(found(index.get(&store, 1, b"a")), Some((5, 50)));
        assert_eq!(found(index.get(&store, u64::MAX, b"a")), Some((6, 60)));
        assert!(index.get(&store, 2, b"a").is_none());
        assert!(index.get(&store, 1, b"A").is_none());
        assert_eq!(found(index.remove(&store, 1, b"a")), Some((5, 50)));
        assert!(index.get(&store, 1, b"a").is_none());
        assert!(index.remove(&store, 1, b"a").is_none());
        assert_eq!(found(index.get(&store, u64::MAX, b"a")), Some((6, 60)));
    }

    #[test]
    fn mounted_names_are_confirmed_by_their_record_on_the_pool() {
        let (_dir, store) = small_store();
        let index = NameIndex::new();
        let a = dentry(&store, 1, b"a");
        let b = dentry(&store, 1, b"b");
        let in_dir = dentry(&store, 7, b"a");
        // "wrong" is indexed with the record of another name: a hash match alone is no
        // match.
        let other = dentry(&store, 1, b"other");
        let mounted: Vec<(u64, &[u8], Entry)> = vec![
            (1, b"a", entry(2, a)),
            (1, b"b", entry(3, b)),
            (7, b"a", entry(4, in_dir)),
            (1, b"wrong", entry(5, other)),
        ];
        index.set_mounted(mounted.into_iter());
        assert_eq!(found(index.get(&store, 1, b"a")), Some((2, a)));
        assert_eq!(found(index.get(&store, 1, b"b")), Some((3, b)));
        assert_eq!(found(index.get(&store, 7, b"a")), Some((4, in_dir)));
        assert!(index.get(&store, 1, b"wrong").is_none());
        assert!(index.get(&store, 1, b"other").is_none());
        assert!(index.get(&store, 8, b"a").is_none());
    }

    #[test]
    fn a_removed_mounted_name_is_gone_and_the_others_stay() {
        let (_dir, store) = small_store();
        let index = NameIndex::new();
        let a = dentry(&store, 1, b"a");
        let b = dentry(&store, 1, b"b");
        let mounted: Vec<(u64, &[u8], Entry)> =
            vec![(1, b"a", entry(2, a)), (1, b"b", entry(3, b))];
        index.set_mounted(mounted.into_iter());
        let removed = index.remove(&store, 1, b"a").expect("mounted entry");
        assert_eq!(
            (removed.ino, removed.cookie, removed.has_record),
            (2, a, true)
        );
        assert!(index.get(&store, 1, b"a").is_none());
        assert!(index.remove(&store, 1, b"a").is_none());
        assert_eq!(found(index.get(&store, 1, b"b")), Some((3, b)));
        // The name made again after its removal is an added entry.
        index.insert(1, b"a".as_slice().into(), entry(9, 90));
        assert_eq!(found(index.get(&store, 1, b"a")), Some((9, 90)));
    }

    #[test]
    fn many_mounted_names_are_each_found() {
        let (_dir, store) = small_store();
        let index = NameIndex::new();
        let names: Vec<Vec<u8>> = (0..300u32).map(|i| format!("f{i}").into_bytes()).collect();
        let cookies: Vec<u64> = names.iter().map(|n| dentry(&store, 1, n)).collect();
        index.set_mounted(
            names
                .iter()
                .zip(&cookies)
                .enumerate()
                .map(|(i, (n, &c))| (1, n.as_slice(), entry(i as u64 + 10, c))),
        );
        for (i, (name, &cookie)) in names.iter().zip(&cookies).enumerate() {
            assert_eq!(
                found(index.get(&store, 1, name)),
                Some((i as u64 + 10, cookie))
            );
        }
    }
}
