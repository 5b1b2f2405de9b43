//! The namespace: every name, every directory's listing and parent, and the Warabi
//! regions the root lists by RegionID, with the lock that orders changes to them.
//!
//! Reading needs no lock: each map keeps itself consistent, and a reader sees a name
//! either before or after a change. Changing goes through a [`NamespaceGuard`], which
//! only [`Namespace::lock`] hands out, so two changes never interleave; the name index
//! and the directories' listings, which hold each entry twice (one for lookup by name,
//! one for listing in order), are only changed together, by the guard's methods.
//!
//! Lock order, as the types make it: the namespace guard first; then the inode locks,
//! which a change takes only through [`NamespaceGuard::lock_inodes`] (ascending inode
//! numbers, each once, and never outliving the guard); then the maps' own short locks
//! inside each call. Data operations take one inode lock and no namespace guard.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard, RwLock, RwLockWriteGuard};

use super::inode::{FileKind, Inode, InodeState, RAW_REGION_INO_BIT, ROOT_INO};
use super::names::{Entry, NameIndex};
use super::regions::{listed_cookie, ListedRegion, ListedRegions};
use super::{key, Map, Name};
use crate::store::Oid;
use crate::store::Store;

/// A directory's children in listing order, and its parent for "..".
#[derive(Debug, Default)]
pub(super) struct Dir {
    pub(super) parent: u64,
    pub(super) children: BTreeMap<u64, Child>,
}

/// One child of a directory as readdir lists it: everything a getdents entry needs, so
/// listing takes no other lookup per entry.
#[derive(Clone, Debug)]
pub(super) struct Child {
    pub(super) name: Name,
    pub(super) ino: u64,
    pub(super) kind: FileKind,
}

/// An entry of a listing batch: a child of the directory at its cookie, or (in the
/// root) a listed Warabi region, at [`listed_cookie`].
pub(super) enum Listed {
    Child(u64, Child),
    Region(Oid),
}

impl Listed {
    pub(super) fn cookie(&self) -> u64 {
        match self {
            Listed::Child(cookie, _) => *cookie,
            Listed::Region(region) => listed_cookie(region.off),
        }
    }
}

/// Names, directories and the root's listed Warabi regions.
pub(super) struct Namespace {
    /// Named entries: dentry records, and Warabi regions that could not be listed in
    /// `regions` (names.rs). The root's listed Warabi regions are not in here.
    names: NameIndex,
    dirs: Map<u64, Dir>,
    /// Warabi-made regions listed in the root directory by offset alone (regions.rs).
    regions: RwLock<ListedRegions>,
    /// How many of the listed regions also have an inode in memory (for statfs).
    listed_with_inode: AtomicUsize,
    lock: Mutex<()>,
}

impl Default for Namespace {
    fn default() -> Namespace {
        Namespace {
            names: NameIndex::new(),
            dirs: Map::default(),
            regions: RwLock::default(),
            listed_with_inode: AtomicUsize::new(0),
            lock: Mutex::new(()),
        }
    }
}

impl Namespace {
    /// Takes the namespace lock: the only way to change the namespace.
    pub(super) fn lock(&self) -> NamespaceGuard<'_> {
        NamespaceGuard {
            ns: self,
            _lock: self.lock.lock(),
        }
    }

    /// The entry `name` of directory `parent`: a named one, or a listed Warabi region.
    pub(super) fn entry(&self, store: &Store, parent: u64, name: &[u8]) -> Option<Entry> {
        if let Some(entry) = self.names.get(store, parent, name) {
            return Some(entry);
        }
        if parent != ROOT_INO {
            return None;
        }
        let region = self.regions.read().by_name(name)?;
        Some(Entry::region(RAW_REGION_INO_BIT | region.off, region))
    }

    /// A named entry only (no listed region), for checks at mount time.
    pub(super) fn named(&self, store: &Store, parent: u64, name: &[u8]) -> Option<Entry> {
        self.names.get(store, parent, name)
    }

    pub(super) fn is_dir(&self, ino: u64) -> bool {
        self.dirs.contains_key(&ino)
    }

    /// The parent of directory `dir` ("..").
    pub(super) fn parent_of(&self, dir: u64) -> Option<u64> {
        self.dirs.get(&dir).map(|d| d.parent)
    }

    /// Whether `dir` is a directory without entries; None when it is no directory.
    pub(super) fn is_empty_dir(&self, dir: u64) -> Option<bool> {
        self.dirs.get(&dir).map(|d| d.children.is_empty())
    }

    /// Whether some entry of `dir` is one `pred` accepts.
    pub(super) fn any_child(&self, dir: u64, pred: impl Fn(&Child) -> bool) -> bool {
        self.dirs
            .get(&dir)
            .is_some_and(|d| d.children.values().any(pred))
    }

    /// Whether `ancestor` is `ino` or one of its ancestors.
    pub(super) fn is_ancestor(&self, ancestor: u64, mut ino: u64) -> bool {
        loop {
            if ino == ancestor {
                return true;
            }
            if ino == ROOT_INO {
                return false;
            }
            match self.parent_of(ino) {
                Some(parent) => ino = parent,
                None => return false,
            }
        }
    }

    /// Up to `limit` entries of `dir` listed after `cookie`, in cookie order, copied
    /// out: a reader must not hold a `dirs` shard lock (or the region listing's) while
    /// it hands entries on, since changes lock inodes first and then `dirs` (that order
    /// deadlocked). The root merges its children with its Warabi regions.
    pub(super) fn listing_after(&self, dir: u64, cookie: u64, limit: usize) -> Vec<Listed> {
        let mut batch: Vec<Listed> = match self.dirs.get(&dir) {
            Some(d) => d
                .children
                .range(cookie + 1..)
                .take(limit)
                .map(|(&c, child)| Listed::Child(c, child.clone()))
                .collect(),
            None => return Vec::new(),
        };
        if dir == ROOT_INO {
            let regions = self.regions.read().after(cookie, limit);
            if !regions.is_empty() {
                batch.extend(regions.into_iter().map(Listed::Region));
                batch.sort_unstable_by_key(Listed::cookie);
                batch.truncate(limit);
            }
        }
        batch
    }

    /// The listed Warabi region of inode number `ino`, if any.
    pub(super) fn listed_region(&self, ino: u64) -> Option<ListedRegion> {
        self.regions.read().by_ino(ino)
    }

    /// Runs `make` for a listed region's inode under the listing's read lock, so that
    /// a region leaving the listing (and then forgotten) cannot get an inode after it.
    /// `make` returns whether it made a new inode, which the count of listed regions
    /// with an inode follows.
    pub(super) fn with_listed_region<R>(
        &self,
        ino: u64,
        make: impl FnOnce(ListedRegion) -> (R, bool),
    ) -> Option<R> {
        let regions = self.regions.read();
        let region = regions.by_ino(ino)?;
        let (made, new) = make(region);
        if new {
            self.listed_with_inode.fetch_add(1, Ordering::Relaxed);
        }
        Some(made)
    }

    /// How many Warabi regions the root lists by RegionID.
    pub(super) fn listed_region_count(&self) -> usize {
        self.regions.read().len()
    }

    /// Listed Warabi regions that have no inode in memory.
    pub(super) fn listed_without_inode(&self) -> usize {
        self.regions
            .read()
            .len()
            .saturating_sub(self.listed_with_inode.load(Ordering::Relaxed))
    }
}

/// The namespace, locked for one change. Every change of names and directories is a
/// method of the guard.
pub(super) struct NamespaceGuard<'n> {
    ns: &'n Namespace,
    _lock: MutexGuard<'n, ()>,
}

impl<'n> std::ops::Deref for NamespaceGuard<'n> {
    type Target = Namespace;

    fn deref(&self) -> &Namespace {
        self.ns
    }
}

/// Inodes locked for writing under a namespace guard, in ascending number.
pub(super) type LockedInodes<'g> = Vec<(u64, RwLockWriteGuard<'g, InodeState>)>;

impl NamespaceGuard<'_> {
    /// Write-locks the distinct inodes of `inodes` in ascending number, each once. The
    /// guards borrow this namespace guard, so they are released before it.
    pub(super) fn lock_inodes<'g>(&'g self, inodes: &'g [(u64, Arc<Inode>)]) -> LockedInodes<'g> {
        let mut sorted: Vec<&(u64, Arc<Inode>)> = inodes.iter().collect();
        sorted.sort_unstable_by_key(|(ino, _)| *ino);
        sorted.dedup_by_key(|(ino, _)| *ino);
        sorted
            .into_iter()
            .map(|(ino, inode)| (*ino, inode.state.write()))
            .collect()
    }

    /// Adds `entry` as `name` in `parent`: to the name index and the listing both.
    pub(super) fn insert_entry(&self, parent: u64, name: &[u8], entry: Entry) {
        let (parent, name) = key(parent, name);
        if let Some(mut dir) = self.ns.dirs.get_mut(&parent) {
            let child = Child {
                name: Arc::clone(&name),
                ino: entry.ino,
                kind: entry.kind,
            };
            dir.children.insert(entry.cookie, child);
        }
        self.ns.names.insert(parent, name, entry);
    }

    /// Removes `name` from `parent` (a named entry, or a listed Warabi region).
    /// `has_inode` says whether the region's inode is in memory (for the count of
    /// listed regions with an inode).
    pub(super) fn remove_entry(
        &self,
        store: &Store,
        parent: u64,
        name: &[u8],
        has_inode: impl FnOnce(u64) -> bool,
    ) -> Option<Entry> {
        if let Some(entry) = self.ns.names.remove(store, parent, name) {
            if let Some(mut dir) = self.ns.dirs.get_mut(&parent) {
                dir.children.remove(&entry.cookie);
            }
            return Some(entry);
        }
        self.unlist_region(parent, name, has_inode)
    }

    /// Takes a Warabi region out of the root's listing (it was adopted or deleted).
    fn unlist_region(
        &self,
        parent: u64,
        name: &[u8],
        has_inode: impl FnOnce(u64) -> bool,
    ) -> Option<Entry> {
        if parent != ROOT_INO {
            return None;
        }
        let region: Oid = {
            let mut regions = self.ns.regions.write();
            let region = regions.by_name(name)?;
            regions.remove(region.off);
            region
        };
        let entry = Entry::region(RAW_REGION_INO_BIT | region.off, region);
        if has_inode(entry.ino) {
            self.ns.listed_with_inode.fetch_sub(1, Ordering::Relaxed);
        }
        Some(entry)
    }

    /// Forgets directory `ino`'s listing (it was removed).
    pub(super) fn remove_dir(&self, ino: u64) {
        self.ns.dirs.remove(&ino);
    }

    /// Adds directory `ino` with no entries yet, below `parent`.
    pub(super) fn add_dir(&self, ino: u64, parent: u64) {
        self.ns.dirs.insert(
            ino,
            Dir {
                parent,
                ..Dir::default()
            },
        );
    }

    /// Sets the parent of directory `dir`.
    pub(super) fn set_parent(&self, dir: u64, parent: u64) {
        if let Some(mut d) = self.ns.dirs.get_mut(&dir) {
            d.parent = parent;
        }
    }

    /// Takes the listings the mount found, each in cookie order already, and indexes
    /// every entry by name.
    pub(super) fn set_mounted(&self, store: &Store, listings: BTreeMap<u64, Vec<(u64, Child)>>) {
        let entries = listings.iter().flat_map(|(&parent, children)| {
            children.iter().map(move |(cookie, c)| {
                let entry = Entry::recorded(c.ino, c.kind, store.oid_at(*cookie));
                (parent, &c.name[..], entry)
            })
        });
        self.ns.names.set_mounted(entries);
        for (parent, children) in listings {
            if let Some(mut dir) = self.ns.dirs.get_mut(&parent) {
                // In cookie order already (the pass is in pool order): a bulk build
                // fills the tree's nodes, where inserts one by one leave them half full.
                dir.children = children.into_iter().collect();
            }
        }
    }

    /// Sets the root's listed Warabi regions.
    pub(super) fn set_listed_regions(&self, regions: ListedRegions) {
        *self.ns.regions.write() = regions;
    }
}
