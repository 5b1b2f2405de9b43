//! Mount-time loading: one linear pass over the pool's objects builds the in-memory
//! namespace; then orphans are reclaimed and Warabi's own regions are listed.
//!
//! The pass keeps of each object only what the daemon holds (see docs/FORMAT.md §6.1):
//! where each inode record is, its kind, the directory entries' names, and region
//! offsets. Inode state is loaded later, when something needs it, except for the few
//! inodes the mount itself must change or complete (orphans, files whose region was
//! erased, inodes with extended attributes).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use super::change::Change;
use super::inode::{FileKind, Inode, InodeState, Xattr, RAW_REGION_INO_BIT, ROOT_INO};
use super::names::Entry;
use super::namespace::{Child, Namespace};
use super::regions::{ListedRegion, ListedRegions};
use super::unloaded::UnloadedInodes;
use super::{FsOptions, Map, Name, WarabiFs, WriteGate};
use crate::store::records::{InodeRecord, Timestamp, XattrRecord};
use crate::store::Oid;
use crate::store::{Found, Store, StoreError};

/// What the pass keeps of the pool, before it is linked into the namespace.
#[derive(Default)]
struct Collected {
    /// (ino, record offset, kind) of every readable inode record.
    inodes: Vec<(u64, u64, FileKind)>,
    /// (ino, region offset) of every inode record with a region.
    owned: Vec<(u64, u64)>,
    /// Unlinked while open when the last mount ended.
    orphans: Vec<u64>,
    dentries: Vec<FoundEntry>,
    xattrs: Vec<(Oid, XattrRecord)>,
    /// (offset, usable size) of every region.
    regions: Vec<(u64, u64)>,
    unreadable: usize,
    /// The lowest number a new inode may get, by the pool's next-inode rule.
    next_ino: u64,
}

/// A directory entry record as the pass found it.
struct FoundEntry {
    record: Oid,
    parent: u64,
    ino: u64,
    name: Name,
}

pub(super) fn load(store: Store, opts: FsOptions) -> Result<WarabiFs, StoreError> {
    let found = collect(&store);
    // Never below what the superblock says was given out: a number whose inode is gone
    // is not handed out again (its file handles must stay stale).
    let next_ino = found.next_ino;
    // Sized once: growing maps of a million entries rehashes them several times over.
    let fs = WarabiFs {
        store,
        read_only: AtomicBool::new(opts.read_only),
        opts,
        inodes: Map::default(),
        unloaded: RwLock::new(UnloadedInodes::default()),
        ns: Namespace::default(),
        mounted_at: Timestamp::now(),
        next_ino: AtomicU64::new(next_ino),
        handles: Map::default(),
        next_fh: AtomicU64::new(1),
        gate: WriteGate::default(),
        reserves: Default::default(),
    };
    let Collected {
        inodes,
        owned,
        orphans,
        dentries,
        xattrs,
        mut regions,
        unreadable,
        next_ino: _,
    } = found;
    // Regions by offset, ascending (pmemobj_next returns them in pool order already):
    // looked up by binary search and merged with the owned ones, with no hash set of
    // a million entries.
    regions.sort_unstable();
    let kinds = fs.index_inodes(inodes);
    let owned = fs.drop_erased_regions(owned, &regions);
    fs.attach_xattrs(xattrs);
    fs.ensure_root()?;
    let entries = dentries.len();
    fs.load_dentries(dentries, &kinds);
    drop(kinds);
    fs.reclaim_orphans(orphans)?;
    let region_count = regions.len();
    fs.list_warabi_regions(regions, &owned);
    fs.claim_numbers_given_to_regions(next_ino)?;
    if unreadable > 0 {
        tracing::warn!(
            "{unreadable} objects of the pool are neither regions nor readable warabifs records; left untouched"
        );
    }
    // The scan read every record once; the namespace now lives in memory.
    fs.store.release_resident_pages();
    tracing::info!(
        "loaded {} inode records, {entries} directory entries, {region_count} regions ({} listed by RegionID)",
        fs.inodes.len() + fs.unloaded.read().len(),
        fs.ns.listed_region_count()
    );
    Ok(fs)
}

/// The one pass over the pool.
fn collect(store: &Store) -> Collected {
    let mut found = Collected::default();
    found.next_ino = store.scan_each(|object| match object {
        Found::Region(oid, size) => found.regions.push((oid.off, size)),
        Found::Inode(oid, rec) => found.inode(oid, &rec),
        Found::Dentry(record, view) => found.dentries.push(FoundEntry {
            record,
            parent: view.parent,
            ino: view.ino,
            name: view.name.into(),
        }),
        Found::Xattr(oid, rec) => found.xattrs.push((oid, rec)),
        Found::Unreadable(_) => found.unreadable += 1,
    });
    found
}

impl Collected {
    fn inode(&mut self, record: Oid, rec: &InodeRecord) {
        let kind = FileKind::from_mode(rec.mode).unwrap_or(FileKind::Regular);
        self.inodes.push((rec.ino, record.off, kind));
        if !rec.region.is_null() {
            self.owned.push((rec.ino, rec.region.off));
        }
        if rec.is_orphan() {
            self.orphans.push(rec.ino);
        }
    }
}

impl WarabiFs {
    /// Indexes the inode records (as unloaded inodes) and makes each directory's
    /// listing; returns every inode's kind, sorted by number, for linking entries.
    fn index_inodes(&self, mut inodes: Vec<(u64, u64, FileKind)>) -> Vec<(u64, FileKind)> {
        inodes.sort_unstable_by_key(|&(ino, _, _)| ino);
        // Two records of one number cannot come from committed transactions; the first
        // is used (`warabifs check` reports them).
        inodes.dedup_by_key(|&mut (ino, _, _)| ino);
        let ns = self.ns.lock();
        for &(ino, _, kind) in &inodes {
            if kind == FileKind::Directory {
                ns.add_dir(ino, ROOT_INO);
            }
        }
        let slots = inodes.iter().map(|&(ino, off, _)| (ino, off)).collect();
        *self.unloaded.write() = UnloadedInodes::new(slots);
        inodes
            .into_iter()
            .map(|(ino, _, kind)| (ino, kind))
            .collect()
    }

    /// Files whose region is no longer a live region (erased behind our back, by
    /// Warabi's erase of the file's RegionID) must not point at freed memory: they show
    /// up empty. Returns the offsets of the regions inode records own, ascending.
    fn drop_erased_regions(&self, owned: Vec<(u64, u64)>, regions: &[(u64, u64)]) -> Vec<u64> {
        let mut offsets = Vec::with_capacity(owned.len());
        for (ino, off) in owned {
            if regions.binary_search_by_key(&off, |&(o, _)| o).is_ok() {
                offsets.push(off);
                continue;
            }
            let Ok(inode) = self.inode(ino) else { continue };
            let mut state = inode.state.write();
            tracing::error!(
                "file inode {ino} lost its region {} (erased outside warabifs); it reads as empty",
                state.meta.region
            );
            state.meta.region = Oid::NULL;
            state.meta.size = 0;
            state.capacity = 0;
        }
        offsets.sort_unstable();
        offsets
    }

    /// Gives each inode its extended attributes; records of a missing inode cannot come
    /// from a committed transaction and are reported and left alone.
    fn attach_xattrs(&self, xattrs: Vec<(Oid, XattrRecord)>) {
        for (oid, x) in xattrs {
            let Ok(inode) = self.inode(x.ino) else {
                tracing::warn!("extended attribute record {oid} belongs to no inode; ignored");
                continue;
            };
            inode.state.write().xattrs.push(Xattr {
                name: x.name.into_boxed_slice(),
                value: x.value.into_boxed_slice(),
                record: oid,
            });
        }
    }

    /// The root directory: its record on a formatted pool, else a read-only stand-in.
    fn ensure_root(&self) -> Result<(), StoreError> {
        if self.exists(ROOT_INO) {
            return Ok(());
        }
        let now = Timestamp::now();
        let meta = InodeRecord::new(
            ROOT_INO,
            libc::S_IFDIR | 0o755,
            self.opts.uid,
            self.opts.gid,
            now,
        );
        let record = if self.store.is_formatted() && !self.is_read_only() {
            let mut change = Change::begin(&self.store)?;
            let oid = change.tx().create_inode(&meta)?;
            change.commit()?;
            Some(oid)
        } else {
            None
        };
        let state = InodeState::new(meta, record, 0);
        self.inodes.insert(ROOT_INO, Arc::new(Inode::new(state)));
        self.ns.lock().add_dir(ROOT_INO, ROOT_INO);
        Ok(())
    }

    /// Links directory entries to their inodes. An entry whose parent or inode is
    /// missing cannot come from a committed transaction; it is reported and skipped.
    /// Each directory's listing is built at once from its entries in cookie order.
    fn load_dentries(&self, dentries: Vec<FoundEntry>, kinds: &[(u64, FileKind)]) {
        let kind_of = |ino: u64| {
            let i = kinds.binary_search_by_key(&ino, |&(i, _)| i).ok()?;
            Some(kinds[i].1)
        };
        let ns = self.ns.lock();
        let mut listings: BTreeMap<u64, Vec<(u64, Child)>> = BTreeMap::new();
        // Entries come in runs of one parent: its checks are made once a run.
        let mut run: Option<(u64, bool)> = None;
        for d in dentries {
            let parent_is_dir = match run {
                Some((parent, is_dir)) if parent == d.parent => is_dir,
                _ => {
                    let is_dir = self.ns.is_dir(d.parent);
                    run = Some((d.parent, is_dir));
                    is_dir
                }
            };
            let known = || self.exists(d.ino).then_some(FileKind::Regular);
            let kind = match kind_of(d.ino).or_else(known) {
                Some(kind) if parent_is_dir => kind,
                _ => {
                    tracing::warn!(
                        "directory entry {} ({:?}) points nowhere; ignored",
                        d.record,
                        String::from_utf8_lossy(&d.name)
                    );
                    continue;
                }
            };
            if kind == FileKind::Directory {
                ns.set_parent(d.ino, d.parent);
            }
            let child = Child {
                name: d.name,
                ino: d.ino,
                kind,
            };
            let cookie = d.record.off;
            match listings.last_entry() {
                Some(mut last) if *last.key() == d.parent => last.get_mut().push((cookie, child)),
                _ => listings.entry(d.parent).or_default().push((cookie, child)),
            }
        }
        ns.set_mounted(&self.store, listings);
    }

    /// Frees inodes that were unlinked while open when the last mount ended.
    fn reclaim_orphans(&self, orphans: Vec<u64>) -> Result<(), StoreError> {
        if orphans.is_empty() || self.is_read_only() {
            return Ok(());
        }
        let inodes: Vec<(u64, Arc<Inode>)> = orphans
            .into_iter()
            .filter_map(|ino| self.inode(ino).ok().map(|i| (ino, i)))
            .collect();
        let mut change = Change::begin(&self.store)?;
        for (_, inode) in &inodes {
            let state = inode.state.read();
            state.free_records(change.tx())?;
        }
        change.commit()?;
        for (ino, _) in &inodes {
            // A directory removed while open is an orphan too: forget its listing as well.
            self.ns.lock().remove_dir(*ino);
            self.inodes.remove(ino);
        }
        tracing::info!("reclaimed {} files unlinked while open", inodes.len());
        Ok(())
    }

    /// Lists every region no inode owns (one Warabi made) in the root directory, named by
    /// its RegionID and sized by its usable size, as Warabi records no size. `regions`
    /// are (offset, usable size) and `owned` offsets, ascending. Each region is listed by its offset alone
    /// (regions.rs) unless its name or number is taken by a file.
    fn list_warabi_regions(&self, regions: Vec<(u64, u64)>, owned: &[u64]) {
        let uuid_lo = self.store.oid_at(0).pool_uuid_lo;
        let may_collide = self.names_or_numbers_like_regions();
        let mut owned = owned.iter().peekable();
        let mut listed = regions;
        listed.retain(|&(off, size)| {
            while owned.next_if(|&&o| o < off).is_some() {}
            if owned.next_if_eq(&&off).is_some() {
                return false;
            }
            let region = Oid {
                pool_uuid_lo: uuid_lo,
                off,
            };
            if may_collide && self.region_collides(region) {
                self.name_colliding_region(region, size);
                return false;
            }
            true
        });
        listed.shrink_to_fit();
        self.ns
            .lock()
            .set_listed_regions(ListedRegions::new(uuid_lo, listed));
    }

    /// A region whose number a file took got a counter number (`counted_from` was the
    /// counter before the listing): record that it was given out, so that no later
    /// mount gives it to a file and a handle of the region never opens that file.
    /// Nothing to do in the usual case, where the counter did not move, and nothing
    /// can be written on a read-only mount.
    fn claim_numbers_given_to_regions(&self, counted_from: u64) -> Result<(), StoreError> {
        let next = self.next_ino.load(Ordering::Relaxed);
        if next == counted_from || self.is_read_only() || !self.store.is_formatted() {
            return Ok(());
        }
        let mut change = Change::begin(&self.store)?;
        change.tx().claim_inos_below(next)?;
        change.commit()
    }

    /// Whether some inode has a region-style number (an adopted region's) or some root
    /// entry a RegionID-style name: only then can a region's name or number be taken,
    /// and only then is each region checked.
    fn names_or_numbers_like_regions(&self) -> bool {
        let region_like =
            |name: &[u8]| name.len() >= 32 && name[..32].iter().all(u8::is_ascii_hexdigit);
        self.inodes.iter().any(|i| i.ino & RAW_REGION_INO_BIT != 0)
            || self
                .unloaded
                .read()
                .any_ino(|ino| ino & RAW_REGION_INO_BIT != 0)
            || self.ns.any_child(ROOT_INO, |c| region_like(&c.name))
    }

    /// Whether the region's plain name or its inode number is taken.
    fn region_collides(&self, region: Oid) -> bool {
        let [plain, _] = region_names(region);
        self.exists(RAW_REGION_INO_BIT | region.off)
            || self.ns.named(&self.store, ROOT_INO, &plain).is_some()
    }

    /// A region whose name or number a file took: an inode and a named entry of its own.
    fn name_colliding_region(&self, region: Oid, size: u64) {
        // A file adopted from a region that has since moved keeps that region's
        // number and name; a new region Warabi made at the same offset then gets a
        // counter number (stable once adopted) and a suffixed name.
        let mut ino = RAW_REGION_INO_BIT | region.off;
        if self.exists(ino) {
            ino = self.allocate_ino();
        }
        let Some(name) = region_names(region)
            .into_iter()
            .find(|n| self.ns.named(&self.store, ROOT_INO, n).is_none())
        else {
            tracing::warn!("region {region}: its names are taken by other files; not listed");
            return;
        };
        let listed = ListedRegion {
            oid: region,
            size: Some(size),
        };
        let state = self.region_state(ino, listed);
        self.inodes.insert(ino, Arc::new(Inode::new(state)));
        self.ns
            .lock()
            .insert_entry(ROOT_INO, &name, Entry::region(ino, region));
    }
}

/// The names a Warabi region is listed under: its RegionID, or when a file already has
/// that name, the RegionID with ".region" appended.
pub(super) fn region_names(region: Oid) -> [Vec<u8>; 2] {
    let id = region.to_string();
    [id.clone().into_bytes(), format!("{id}.region").into_bytes()]
}
