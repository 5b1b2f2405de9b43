//! Mount-time loading: one linear pass over the pool's objects builds the in-memory
//! namespace; then orphans are reclaimed and Warabi's own regions are listed.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};

use super::inode::{FileKind, Inode, InodeState, Xattr, RAW_REGION_INO_BIT, ROOT_INO};
use super::regions::ListedRegions;
use super::{key, Dir, Entry, FsOptions, WarabiFs, WriteGate};
use crate::pmem::Oid;
use crate::store::records::{DentryRecord, InodeRecord, Timestamp, XattrRecord, INODE_ORPHAN};
use crate::store::{Scan, Store, StoreError};

pub(super) fn load(store: Store, opts: FsOptions) -> Result<WarabiFs, StoreError> {
    let scan = store.scan();
    // Sized once from the scan: growing maps of a million entries rehashes them
    // several times over.
    let fs = WarabiFs {
        store,
        opts,
        inodes: DashMap::with_capacity(scan.inodes.len() + 1),
        names: DashMap::with_capacity(scan.dentries.len()),
        dirs: DashMap::new(),
        regions: RwLock::new(ListedRegions::default()),
        listed_with_inode: AtomicUsize::new(0),
        mounted_at: Timestamp::now(),
        namespace: Mutex::new(()),
        next_ino: AtomicU64::new(ROOT_INO + 1),
        handles: DashMap::new(),
        next_fh: AtomicU64::new(1),
        gate: WriteGate::default(),
    };
    // The scan is consumed as it is loaded: records move into the namespace instead of
    // being copied, which keeps the mount's peak memory down on big pools.
    let Scan {
        inodes,
        dentries,
        xattrs,
        regions,
        unreadable,
    } = scan;
    // Regions by offset, ascending (pmemobj_next returns them in pool order already):
    // looked up by binary search and merged with the owned ones, with no hash set of
    // a million entries.
    let mut live_regions: Vec<u64> = regions.iter().map(|r| r.off).collect();
    drop(regions);
    live_regions.sort_unstable();
    let owned = fs.load_inodes(inodes, &live_regions);
    fs.attach_xattrs(xattrs);
    fs.ensure_root()?;
    fs.load_dentries(dentries);
    fs.reclaim_orphans()?;
    let region_count = live_regions.len();
    fs.list_warabi_regions(live_regions, &owned);
    if !unreadable.is_empty() {
        tracing::warn!(
            "{} objects of the pool are neither regions nor readable warabifs records; left untouched",
            unreadable.len()
        );
    }
    // The scan read every record once; the namespace now lives in memory.
    fs.store.pool().release_resident_pages();
    tracing::info!(
        "loaded {} inodes, {} directory entries, {} regions ({} listed by RegionID)",
        fs.inodes.len(),
        fs.names.len(),
        region_count,
        fs.regions.read().len()
    );
    Ok(fs)
}

impl WarabiFs {
    /// Creates the in-memory inodes; returns the offsets of the regions they own,
    /// ascending. `live_regions` are the offsets of every region, ascending.
    fn load_inodes(&self, records: Vec<(Oid, InodeRecord)>, live_regions: &[u64]) -> Vec<u64> {
        let mut owned = Vec::with_capacity(records.len());
        let mut max_ino = ROOT_INO;
        let uuid_lo = self.store.pool().oid_at(0).pool_uuid_lo;
        let is_live = |region: Oid| {
            region.pool_uuid_lo == uuid_lo && live_regions.binary_search(&region.off).is_ok()
        };
        for (oid, mut rec) in records {
            if rec.ino & RAW_REGION_INO_BIT == 0 {
                max_ino = max_ino.max(rec.ino);
            }
            if !rec.region.is_null() && !is_live(rec.region) {
                // Erased behind our back (Warabi's erase of the file's RegionID): the
                // record must not point at freed memory, so the file shows up empty.
                tracing::error!(
                    "file inode {} lost its region {} (erased outside warabifs); it reads as empty",
                    rec.ino,
                    rec.region
                );
                rec.region = Oid::NULL;
                rec.size = 0;
            }
            if !rec.region.is_null() {
                owned.push(rec.region.off);
            }
            if rec.mode & libc::S_IFMT == libc::S_IFDIR {
                self.dirs.insert(
                    rec.ino,
                    Dir {
                        parent: ROOT_INO,
                        ..Dir::default()
                    },
                );
            }
            let capacity = self.store.capacity(rec.region);
            let state = InodeState::new(rec, Some(oid), capacity);
            self.inodes
                .insert(state.meta.ino, Arc::new(Inode::new(state)));
        }
        self.next_ino.store(max_ino + 1, Ordering::Relaxed);
        owned.sort_unstable();
        owned
    }

    /// Gives each inode its extended attributes; records of a missing inode cannot come
    /// from a committed transaction and are reported and left alone.
    fn attach_xattrs(&self, xattrs: Vec<(Oid, XattrRecord)>) {
        for (oid, x) in xattrs {
            let Some(inode) = self.inodes.get(&x.ino) else {
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
        if self.inodes.contains_key(&ROOT_INO) {
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
        let record = if self.store.is_formatted() && !self.opts.read_only {
            let mut tx = self.store.begin()?;
            let oid = tx.create_inode(&meta)?;
            tx.commit()?;
            Some(oid)
        } else {
            None
        };
        let state = InodeState::new(meta, record, 0);
        self.inodes.insert(ROOT_INO, Arc::new(Inode::new(state)));
        self.dirs.insert(
            ROOT_INO,
            Dir {
                parent: ROOT_INO,
                ..Dir::default()
            },
        );
        Ok(())
    }

    /// Links directory entries to their inodes. An entry whose parent or inode is
    /// missing cannot come from a committed transaction; it is reported and skipped.
    fn load_dentries(&self, dentries: Vec<(Oid, DentryRecord)>) {
        for (oid, d) in dentries {
            if !self.dirs.contains_key(&d.parent) || !self.inodes.contains_key(&d.ino) {
                tracing::warn!(
                    "directory entry {oid} ({:?}) points nowhere; ignored",
                    String::from_utf8_lossy(&d.name)
                );
                continue;
            }
            let kind = self
                .inodes
                .get(&d.ino)
                .map_or(FileKind::Regular, |i| i.state.read().kind());
            self.insert_entry(d.parent, &d.name, Entry::recorded(d.ino, kind, oid));
            if let Some(mut child) = self.dirs.get_mut(&d.ino) {
                child.parent = d.parent;
            }
        }
    }

    /// Frees inodes that were unlinked while open when the last mount ended.
    fn reclaim_orphans(&self) -> Result<(), StoreError> {
        let orphans: Vec<u64> = self
            .inodes
            .iter()
            .filter(|i| {
                let s = i.state.read();
                s.record.is_some() && (s.meta.nlink == 0 || s.meta.flags & INODE_ORPHAN != 0)
            })
            .map(|i| i.ino)
            .collect();
        if orphans.is_empty() || self.opts.read_only {
            return Ok(());
        }
        let mut tx = self.store.begin()?;
        for ino in &orphans {
            let inode = self
                .inodes
                .get(ino)
                .map(|i| Arc::clone(&i))
                .expect("listed above");
            let state = inode.state.read();
            super::data::free_inode(&mut tx, &state)?;
        }
        tx.commit()?;
        for ino in &orphans {
            // A directory removed while open is an orphan too: forget its listing as well.
            self.dirs.remove(ino);
            self.inodes.remove(ino);
        }
        tracing::info!("reclaimed {} files unlinked while open", orphans.len());
        Ok(())
    }

    /// Lists every region no inode owns (one Warabi made) in the root directory, named by
    /// its RegionID and sized by its usable size, as Warabi records no size. `regions`
    /// and `owned` are offsets, ascending. Each region is listed by its offset alone
    /// (regions.rs) unless its name or number is taken by a file.
    fn list_warabi_regions(&self, regions: Vec<u64>, owned: &[u64]) {
        let uuid_lo = self.store.pool().oid_at(0).pool_uuid_lo;
        let may_collide = self.names_or_numbers_like_regions();
        let mut owned = owned.iter().peekable();
        let mut listed = regions;
        listed.retain(|&off| {
            while owned.next_if(|&&o| o < off).is_some() {}
            if owned.next_if_eq(&&off).is_some() {
                return false;
            }
            let region = Oid {
                pool_uuid_lo: uuid_lo,
                off,
            };
            if may_collide && self.region_collides(region) {
                self.name_colliding_region(region);
                return false;
            }
            true
        });
        listed.shrink_to_fit();
        *self.regions.write() = ListedRegions::new(uuid_lo, listed);
    }

    /// Whether some inode has a region-style number (an adopted region's) or some root
    /// entry a RegionID-style name: only then can a region's name or number be taken,
    /// and only then is each region checked.
    fn names_or_numbers_like_regions(&self) -> bool {
        let region_like = |name: &[u8]| name.len() >= 32 && name[..32].iter().all(u8::is_ascii_hexdigit);
        self.inodes.iter().any(|i| i.ino & RAW_REGION_INO_BIT != 0)
            || self
                .dirs
                .get(&ROOT_INO)
                .is_some_and(|root| root.children.values().any(|c| region_like(&c.name)))
    }

    /// Whether the region's plain name or its inode number is taken.
    fn region_collides(&self, region: Oid) -> bool {
        let [plain, _] = region_names(region);
        self.inodes.contains_key(&(RAW_REGION_INO_BIT | region.off))
            || self.names.contains_key(&key(ROOT_INO, &plain))
    }

    /// A region whose name or number a file took: an inode and a named entry of its own.
    fn name_colliding_region(&self, region: Oid) {
        // A file adopted from a region that has since moved keeps that region's
        // number and name; a new region Warabi made at the same offset then gets a
        // counter number (stable once adopted) and a suffixed name.
        let mut ino = RAW_REGION_INO_BIT | region.off;
        if self.inodes.contains_key(&ino) {
            ino = self.allocate_ino();
        }
        let Some(name) = region_names(region)
            .into_iter()
            .find(|n| !self.names.contains_key(&key(ROOT_INO, n)))
        else {
            tracing::warn!("region {region}: its names are taken by other files; not listed");
            return;
        };
        let state = self.region_state(ino, region);
        self.inodes.insert(ino, Arc::new(Inode::new(state)));
        self.insert_entry(ROOT_INO, &name, Entry::region(ino, region));
    }
}

/// The names a Warabi region is listed under: its RegionID, or when a file already has
/// that name, the RegionID with ".region" appended.
pub(super) fn region_names(region: Oid) -> [Vec<u8>; 2] {
    let id = region.to_string();
    [id.clone().into_bytes(), format!("{id}.region").into_bytes()]
}
