//! Mount-time loading: one linear pass over the pool's objects builds the in-memory
//! namespace; then orphans are reclaimed and Warabi's own regions are listed.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::Mutex;

use super::inode::{Inode, InodeState, Xattr, RAW_REGION_INO_BIT, ROOT_INO};
use super::{key, Dir, Entry, FsOptions, WarabiFs, WriteGate};
use crate::pmem::Oid;
use crate::store::records::{DentryRecord, InodeRecord, Timestamp, XattrRecord, INODE_ORPHAN};
use crate::store::{Scan, Store, StoreError};

pub(super) fn load(store: Store, opts: FsOptions) -> Result<WarabiFs, StoreError> {
    let scan = store.scan();
    let fs = WarabiFs {
        store,
        read_only: AtomicBool::new(opts.read_only),
        opts,
        inodes: DashMap::new(),
        names: DashMap::new(),
        dirs: DashMap::new(),
        namespace: Mutex::new(()),
        next_ino: AtomicU64::new(ROOT_INO + 1),
        handles: DashMap::new(),
        next_fh: AtomicU64::new(1),
        gate: WriteGate::default(),
        reserves: Default::default(),
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
    let live_regions: HashSet<Oid> = regions.iter().copied().collect();
    let owned = fs.load_inodes(inodes, &live_regions);
    fs.attach_xattrs(xattrs);
    fs.ensure_root()?;
    fs.load_dentries(dentries);
    fs.reclaim_orphans()?;
    fs.list_warabi_regions(&regions, &owned);
    if !unreadable.is_empty() {
        tracing::warn!(
            "{} objects of the pool are neither regions nor readable warabifs records; left untouched",
            unreadable.len()
        );
    }
    // The scan read every record once; the namespace now lives in memory.
    fs.store.release_resident_pages();
    tracing::info!(
        "loaded {} inodes, {} directory entries, {} regions",
        fs.inodes.len(),
        fs.names.len(),
        regions.len()
    );
    Ok(fs)
}

impl WarabiFs {
    /// Creates the in-memory inodes; returns the regions they own.
    fn load_inodes(
        &self,
        records: Vec<(Oid, InodeRecord)>,
        live_regions: &HashSet<Oid>,
    ) -> HashSet<Oid> {
        let mut owned = HashSet::with_capacity(records.len());
        let mut max_ino = ROOT_INO;
        for (oid, mut rec) in records {
            if rec.ino & RAW_REGION_INO_BIT == 0 {
                max_ino = max_ino.max(rec.ino);
            }
            if !rec.region.is_null() && !live_regions.contains(&rec.region) {
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
                owned.insert(rec.region);
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
        // Never below what the superblock says was given out: a number whose inode is
        // gone is not handed out again (its file handles must stay stale).
        let next = (max_ino + 1).max(self.store.next_ino());
        self.next_ino.store(next, Ordering::Relaxed);
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
        let record = if self.store.is_formatted() && !self.is_read_only() {
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
            self.insert_entry(d.parent, &d.name, Entry::recorded(d.ino, oid));
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
        if orphans.is_empty() || self.is_read_only() {
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
    /// its RegionID and sized by its usable size, as Warabi records no size.
    fn list_warabi_regions(&self, regions: &[Oid], owned: &HashSet<Oid>) {
        let now = Timestamp::now();
        for &region in regions.iter().filter(|r| !owned.contains(r)) {
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
                continue;
            };
            let capacity = self.store.capacity(region);
            let meta = InodeRecord {
                size: capacity,
                region,
                ..InodeRecord::new(
                    ino,
                    libc::S_IFREG | 0o644,
                    self.opts.uid,
                    self.opts.gid,
                    now,
                )
            };
            let state = InodeState::new(meta, None, capacity);
            self.inodes.insert(ino, Arc::new(Inode::new(state)));
            let cookie = region.off;
            let entry = Entry {
                ino,
                cookie,
                has_record: false,
            };
            self.insert_entry(ROOT_INO, &name, entry);
        }
    }
}

/// The names a Warabi region is listed under: its RegionID, or when a file already has
/// that name, the RegionID with ".region" appended.
pub(super) fn region_names(region: Oid) -> [Vec<u8>; 2] {
    let id = region.to_string();
    [id.clone().into_bytes(), format!("{id}.region").into_bytes()]
}
