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

use super::{Entry, FileKind, Map, Name, NameKey};
use crate::store::Store;

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
                        .with_dentry_record(store.oid_at(cookie), |d| {
                            d.parent == parent && d.name == name
                        })
                        .unwrap_or(false)
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
