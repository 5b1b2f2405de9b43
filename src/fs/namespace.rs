//! Names: lookup, listing, and every change to the tree, each one transaction.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::change::Change;
use super::inode::{Inode, InodeState, RAW_REGION_INO_BIT, ROOT_INO};
use super::regions::{listed_cookie, region_name};
use super::Attr;
use super::{check_name, key, Caller, Child, Dir, Entry, Errno, Fh, FileKind, FsResult, WarabiFs};
use crate::pmem::Oid;
use crate::store::records::{DentryRecord, InodeRecord, Timestamp, INODE_ORPHAN};

/// Longest symlink target (as Linux PATH_MAX).
const SYMLINK_MAX: usize = 4096;
/// Most hard links one inode may have.
const LINK_MAX: u32 = 65_000;

/// One entry of a directory listing, borrowed for the call that receives it.
#[derive(Clone, Copy, Debug)]
pub struct DirEntry<'a> {
    pub ino: u64,
    /// Pass this back to continue the listing after this entry.
    pub cookie: u64,
    pub kind: FileKind,
    pub name: &'a [u8],
}

/// The flavours of rename(2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenameMode {
    /// Replace the target if it exists.
    Replace,
    /// RENAME_NOREPLACE: fail with EEXIST if the target exists.
    NoReplace,
    /// RENAME_EXCHANGE: swap two existing names.
    Exchange,
}

/// Cookies of "." and ".."; entries use pool offsets, which are far larger.
const DOT_COOKIE: u64 = 1;
const DOTDOT_COOKIE: u64 = 2;
/// Directory entries readdir copies out per `dirs` lookup.
const READDIR_BATCH: usize = 128;

/// An entry of a listing batch: a child of the directory at its cookie, or (in the
/// root) a listed Warabi region, at [`listed_cookie`].
enum Listed {
    Child(u64, Child),
    Region(Oid),
}

impl Listed {
    fn cookie(&self) -> u64 {
        match self {
            Listed::Child(cookie, _) => *cookie,
            Listed::Region(region) => listed_cookie(region.off),
        }
    }
}

impl WarabiFs {
    pub fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<Attr> {
        if name == b"." {
            return self.lookup_self(parent);
        }
        let ino = self.lookup_ino(parent, name)?;
        self.getattr(ino)
    }

    /// "." of any inode, directory or not: what the kernel asks when it turns a file
    /// handle back into an inode it no longer has in memory. An inode that is gone, or
    /// has no name left (the kernel holds those it still has open), is `ENOENT`, which
    /// the kernel reports as a stale handle.
    fn lookup_self(&self, ino: u64) -> FsResult<Attr> {
        let attr = self.getattr(ino)?;
        match attr.nlink {
            0 => Err(Errno::ENOENT),
            _ => Ok(attr),
        }
    }

    /// Opens a directory: an open directory keeps its inode after it is removed, until
    /// the handle is released (as an open file does).
    pub fn opendir(&self, ino: u64) -> FsResult<Fh> {
        if self.inode(ino)?.state.read().kind() != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        self.open(ino, false)
    }

    /// Whether `ino` is a directory that was removed while open: it lists nothing.
    fn is_removed_dir(&self, ino: u64) -> bool {
        self.inode(ino).is_ok_and(|i| {
            let state = i.state.read();
            state.kind() == FileKind::Directory && state.meta.nlink == 0
        })
    }

    fn lookup_ino(&self, parent: u64, name: &[u8]) -> FsResult<u64> {
        if !self.dirs.contains_key(&parent) {
            return Err(if self.exists(parent) {
                Errno::ENOTDIR
            } else {
                Errno::ENOENT
            });
        }
        match name {
            b"." => return Ok(parent),
            b".." => return Ok(self.dirs.get(&parent).map(|d| d.parent).unwrap_or(ROOT_INO)),
            _ => {}
        }
        if name.len() > crate::store::records::NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        self.entry(parent, name).map(|e| e.ino).ok_or(Errno::ENOENT)
    }

    /// Entries of a directory after `offset` (0 starts from the beginning), with "." and
    /// "..", in a stable order. `add` returns true when the caller's buffer is full.
    ///
    /// Each call costs the entries it hands out: it resumes at `offset` in the
    /// directory's ordered children (and, in the root, in the ordered listing of Warabi
    /// regions), and takes no other lookup per entry.
    pub fn readdir(
        &self,
        ino: u64,
        offset: u64,
        mut add: impl FnMut(DirEntry<'_>) -> bool,
    ) -> FsResult<()> {
        let Some(parent) = self.dirs.get(&ino).map(|d| d.parent) else {
            // A directory removed while open lists nothing.
            if self.is_removed_dir(ino) {
                return Ok(());
            }
            return Err(if self.exists(ino) {
                Errno::ENOTDIR
            } else {
                Errno::ENOENT
            });
        };
        let dots = [
            (DOT_COOKIE, ino, b"." as &[u8]),
            (DOTDOT_COOKIE, parent, b".."),
        ];
        for (cookie, target, name) in dots {
            if offset < cookie
                && add(DirEntry {
                    ino: target,
                    cookie,
                    kind: FileKind::Directory,
                    name,
                })
            {
                return Ok(());
            }
        }
        let mut after = offset.max(DOTDOT_COOKIE);
        loop {
            let batch = self.listing_after(ino, after);
            let Some(last) = batch.last().map(Listed::cookie) else {
                return Ok(());
            };
            for listed in &batch {
                let full = match listed {
                    Listed::Child(cookie, child) => add(DirEntry {
                        ino: child.ino,
                        cookie: *cookie,
                        kind: child.kind,
                        name: &child.name,
                    }),
                    Listed::Region(region) => add(DirEntry {
                        ino: RAW_REGION_INO_BIT | region.off,
                        cookie: listed_cookie(region.off),
                        kind: FileKind::Regular,
                        name: &region_name(*region),
                    }),
                };
                if full {
                    return Ok(());
                }
            }
            after = last;
        }
    }

    /// Up to READDIR_BATCH entries of `dir` listed after `cookie`, in cookie order,
    /// copied out: readdir must not hold a `dirs` shard lock (or the region listing's)
    /// while it calls `add`, since namespace changes lock inodes first and then `dirs`
    /// (that order deadlocked). The root merges its children with its Warabi regions.
    fn listing_after(&self, dir: u64, cookie: u64) -> Vec<Listed> {
        let mut batch: Vec<Listed> = match self.dirs.get(&dir) {
            Some(d) => d
                .children
                .range(cookie + 1..)
                .take(READDIR_BATCH)
                .map(|(&c, child)| Listed::Child(c, child.clone()))
                .collect(),
            None => return Vec::new(),
        };
        if dir == ROOT_INO {
            let regions = self.regions.read().after(cookie, READDIR_BATCH);
            if !regions.is_empty() {
                batch.extend(regions.into_iter().map(Listed::Region));
                batch.sort_unstable_by_key(Listed::cookie);
                batch.truncate(READDIR_BATCH);
            }
        }
        batch
    }

    pub fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        let inode = self.inode(ino)?;
        let state = inode.state.read();
        if state.kind() != FileKind::Symlink {
            return Err(Errno::EINVAL);
        }
        Ok(state.meta.target.to_vec())
    }

    /// Creates a regular file, device node, FIFO or socket.
    pub fn mknod(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        rdev: u32,
        caller: Caller,
    ) -> FsResult<Attr> {
        if FileKind::from_mode(mode).is_none() || mode & libc::S_IFMT == libc::S_IFDIR {
            return Err(Errno::EINVAL);
        }
        self.make_node(parent, name, mode, rdev as u64, Box::default(), caller)
    }

    pub fn mkdir(&self, parent: u64, name: &[u8], mode: u32, caller: Caller) -> FsResult<Attr> {
        self.make_node(
            parent,
            name,
            libc::S_IFDIR | (mode & 0o7777),
            0,
            Box::default(),
            caller,
        )
    }

    pub fn symlink(
        &self,
        parent: u64,
        name: &[u8],
        target: &[u8],
        caller: Caller,
    ) -> FsResult<Attr> {
        if target.len() > SYMLINK_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if target.is_empty() {
            return Err(Errno::ENOENT);
        }
        self.make_node(
            parent,
            name,
            libc::S_IFLNK | 0o777,
            0,
            target.into(),
            caller,
        )
    }

    /// One transaction: the inode record, its directory entry and the parent's times.
    fn make_node(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        rdev: u64,
        target: Box<[u8]>,
        caller: Caller,
    ) -> FsResult<Attr> {
        self.writable()?;
        check_name(name)?;
        let _ns = self.namespace.lock();
        let dir = self.directory(parent)?;
        if self.entry(parent, name).is_some() {
            return Err(Errno::EEXIST);
        }
        let is_dir = mode & libc::S_IFMT == libc::S_IFDIR;
        let mut dir_state = dir.state.write();
        let now = Timestamp::now();
        let meta = new_inode_meta(
            self.allocate_ino(),
            mode,
            rdev,
            target,
            caller,
            &dir_state.meta,
            now,
        );
        let mut dir_meta = dir_state.meta.clone();
        dir_meta.mtime = now;
        dir_meta.ctime = now;
        dir_meta.nlink += u32::from(is_dir);
        let mut change = Change::begin(&self.store)?;
        let record = change.tx().create_inode(&meta)?;
        let dentry = change.tx().create_dentry(&DentryRecord {
            parent,
            ino: meta.ino,
            name: name.to_vec(),
        })?;
        change.stage(&mut dir_state, dir_meta)?;
        change.commit()?;
        let state = InodeState::new(meta, Some(record), 0);
        let attr = state.attr();
        self.inodes.insert(attr.ino, Arc::new(Inode::new(state)));
        if is_dir {
            self.dirs.insert(
                attr.ino,
                Dir {
                    parent,
                    ..Dir::default()
                },
            );
        }
        self.insert_entry(parent, name, Entry::recorded(attr.ino, attr.kind, dentry));
        Ok(attr)
    }

    fn directory(&self, ino: u64) -> FsResult<Arc<Inode>> {
        let inode = self.inode(ino)?;
        if !self.dirs.contains_key(&ino) {
            return Err(Errno::ENOTDIR);
        }
        Ok(inode)
    }

    pub(super) fn insert_entry(&self, parent: u64, name: &[u8], entry: Entry) {
        let (parent, name) = key(parent, name);
        if let Some(mut dir) = self.dirs.get_mut(&parent) {
            let child = Child {
                name: Arc::clone(&name),
                ino: entry.ino,
                kind: entry.kind,
            };
            dir.children.insert(entry.cookie, child);
        }
        self.names.insert(parent, name, entry);
    }

    fn remove_entry(&self, parent: u64, name: &[u8]) -> Option<Entry> {
        if let Some(entry) = self.names.remove(&self.store, parent, name) {
            if let Some(mut dir) = self.dirs.get_mut(&parent) {
                dir.children.remove(&entry.cookie);
            }
            return Some(entry);
        }
        self.unlist_region(parent, name)
    }

    /// Takes a Warabi region out of the root's listing (it was adopted or deleted).
    fn unlist_region(&self, parent: u64, name: &[u8]) -> Option<Entry> {
        if parent != ROOT_INO {
            return None;
        }
        let region: Oid = {
            let mut regions = self.regions.write();
            let region = regions.by_name(name)?;
            regions.remove(region.off);
            region
        };
        let entry = Entry::region(RAW_REGION_INO_BIT | region.off, region);
        if self.inodes.contains_key(&entry.ino) {
            self.listed_with_inode.fetch_sub(1, Ordering::Relaxed);
        }
        Some(entry)
    }

    /// Gives a Warabi region listed under its RegionID an inode record and a directory
    /// entry, so that it can change like any file. One transaction; no-op if done.
    pub(super) fn adopt(&self, ino: u64) -> FsResult<()> {
        self.writable()?;
        let _ns = self.namespace.lock();
        let inode = self.inode(ino)?;
        let mut state = inode.state.write();
        if state.record.is_some() {
            return Ok(());
        }
        let name = super::load::region_names(state.region())
            .into_iter()
            .find(|n| self.entry(ROOT_INO, n).is_some_and(|e| e.ino == ino))
            .ok_or(Errno::ENOENT)?;
        let mut change = Change::begin(&self.store)?;
        let record = change.tx().create_inode(&state.meta)?;
        let dentry = change.tx().create_dentry(&DentryRecord {
            parent: ROOT_INO,
            ino,
            name: name.clone(),
        })?;
        change.commit()?;
        state.record = Some(record);
        // The entry now lists at its record's offset: the region's offset it listed at
        // before may be reused once the file moves.
        self.remove_entry(ROOT_INO, &name);
        let entry = Entry::recorded(ino, FileKind::Regular, dentry);
        self.insert_entry(ROOT_INO, &name, entry);
        Ok(())
    }

    /// Adopts `ino` first if it is a Warabi region without a record.
    pub(super) fn adopt_if_raw(&self, ino: u64) -> FsResult<()> {
        if self.inode(ino)?.state.read().record.is_none() {
            self.adopt(ino)?;
        }
        Ok(())
    }

    pub fn link(&self, ino: u64, newparent: u64, newname: &[u8]) -> FsResult<Attr> {
        self.writable()?;
        check_name(newname)?;
        self.adopt_if_raw(ino)?;
        let _ns = self.namespace.lock();
        let inode = self.inode(ino)?;
        let dir = self.directory(newparent)?;
        if self.entry(newparent, newname).is_some() {
            return Err(Errno::EEXIST);
        }
        let mut state = inode.state.write();
        if state.kind() == FileKind::Directory {
            return Err(Errno::EPERM);
        }
        if state.meta.nlink >= LINK_MAX {
            return Err(Errno::EMLINK);
        }
        if state.meta.nlink == 0 {
            return Err(Errno::ENOENT);
        }
        let mut dir_state = dir.state.write();
        let now = Timestamp::now();
        let mut meta = state.meta.clone();
        meta.nlink += 1;
        meta.ctime = now;
        let mut dir_meta = dir_state.meta.clone();
        dir_meta.mtime = now;
        dir_meta.ctime = now;
        let mut change = Change::begin(&self.store)?;
        let dentry = change.tx().create_dentry(&DentryRecord {
            parent: newparent,
            ino,
            name: newname.to_vec(),
        })?;
        change.stage(&mut state, meta)?;
        change.stage(&mut dir_state, dir_meta)?;
        change.commit()?;
        let entry = Entry::recorded(ino, state.kind(), dentry);
        self.insert_entry(newparent, newname, entry);
        Ok(state.attr())
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.remove(parent, name, false)
    }

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        if name == b"." {
            return Err(Errno::EINVAL);
        }
        if name == b".." {
            return Err(Errno::ENOTEMPTY);
        }
        self.remove(parent, name, true)
    }

    fn remove(&self, parent: u64, name: &[u8], want_dir: bool) -> FsResult<()> {
        self.writable()?;
        let ino = self.lookup_ino(parent, name)?;
        self.adopt_if_raw(ino)?;
        let _ns = self.namespace.lock();
        let entry = self.entry(parent, name).ok_or(Errno::ENOENT)?;
        let dir = self.directory(parent)?;
        let inode = self.inode(entry.ino)?;
        let is_dir = self.dirs.contains_key(&entry.ino);
        match (want_dir, is_dir) {
            (true, false) => return Err(Errno::ENOTDIR),
            (false, true) => return Err(Errno::EISDIR),
            (true, true)
                if !self
                    .dirs
                    .get(&entry.ino)
                    .is_some_and(|d| d.children.is_empty()) =>
            {
                return Err(Errno::ENOTEMPTY)
            }
            _ => {}
        }
        let mut state = inode.state.write();
        let mut dir_state = dir.state.write();
        let now = Timestamp::now();
        let mut dir_meta = dir_state.meta.clone();
        dir_meta.mtime = now;
        dir_meta.ctime = now;
        dir_meta.nlink -= u32::from(is_dir);
        let mut change = Change::begin(&self.store)?;
        if let Some(dentry) = self.dentry_record(entry) {
            change.tx().free(dentry)?;
        }
        let freed = drop_link(&mut change, &mut state, is_dir, now)?;
        change.stage(&mut dir_state, dir_meta)?;
        change.commit()?;
        self.remove_entry(parent, name);
        self.forget_if_freed(entry.ino, freed, is_dir);
        Ok(())
    }

    fn forget_if_freed(&self, ino: u64, freed: bool, is_dir: bool) {
        if is_dir {
            self.dirs.remove(&ino);
        }
        if freed {
            self.inodes.remove(&ino);
        }
    }

    /// rename(2), one transaction whatever it replaces or exchanges.
    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        mode: RenameMode,
    ) -> FsResult<()> {
        self.writable()?;
        check_name(newname)?;
        for (dir, n) in [(parent, name), (newparent, newname)] {
            if let Ok(ino) = self.lookup_ino(dir, n) {
                self.adopt_if_raw(ino)?;
            }
        }
        let _ns = self.namespace.lock();
        let source = self.entry(parent, name).ok_or(Errno::ENOENT)?;
        let target = self.entry(newparent, newname);
        self.directory(newparent)?;
        let source_is_dir = self.dirs.contains_key(&source.ino);
        if source_is_dir && self.is_ancestor(source.ino, newparent) {
            return Err(Errno::EINVAL);
        }
        match (mode, target) {
            (RenameMode::NoReplace, Some(_)) => return Err(Errno::EEXIST),
            (RenameMode::Exchange, None) => return Err(Errno::ENOENT),
            (RenameMode::Exchange, Some(t)) => {
                if self.dirs.contains_key(&t.ino) && self.is_ancestor(t.ino, parent) {
                    return Err(Errno::EINVAL);
                }
                return self.exchange(parent, name, source, newparent, newname, t);
            }
            (_, Some(t)) if t.ino == source.ino => return Ok(()),
            (_, Some(t)) => self.check_replaceable(source_is_dir, t)?,
            (_, None) => {}
        }
        self.move_entry(parent, name, source, newparent, newname, target)
    }

    /// Whether `ancestor` is `ino` or one of its ancestors.
    fn is_ancestor(&self, ancestor: u64, mut ino: u64) -> bool {
        loop {
            if ino == ancestor {
                return true;
            }
            if ino == ROOT_INO {
                return false;
            }
            match self.dirs.get(&ino) {
                Some(d) => ino = d.parent,
                None => return false,
            }
        }
    }

    fn check_replaceable(&self, source_is_dir: bool, target: Entry) -> FsResult<()> {
        let target_dir = self.dirs.get(&target.ino);
        match (source_is_dir, target_dir) {
            (true, None) => Err(Errno::ENOTDIR),
            (false, Some(_)) => Err(Errno::EISDIR),
            (true, Some(d)) if !d.children.is_empty() => Err(Errno::ENOTEMPTY),
            _ => Ok(()),
        }
    }

    /// Locks the distinct inodes among `inos`, each once, in ascending order.
    fn lock_all(&self, inos: &[u64]) -> FsResult<Vec<(u64, Arc<Inode>)>> {
        let mut sorted: Vec<u64> = inos.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        sorted
            .into_iter()
            .map(|ino| Ok((ino, self.inode(ino)?)))
            .collect()
    }

    fn move_entry(
        &self,
        parent: u64,
        name: &[u8],
        source: Entry,
        newparent: u64,
        newname: &[u8],
        target: Option<Entry>,
    ) -> FsResult<()> {
        let source_is_dir = self.dirs.contains_key(&source.ino);
        let mut involved = vec![parent, newparent, source.ino];
        involved.extend(target.map(|t| t.ino));
        let inodes = self.lock_all(&involved)?;
        let mut guards: Vec<_> = inodes
            .iter()
            .map(|(ino, i)| (*ino, i.state.write()))
            .collect();
        let now = Timestamp::now();
        let mut change = Change::begin(&self.store)?;
        if let Some(dentry) = target.and_then(|t| self.dentry_record(t)) {
            change.tx().free(dentry)?;
        }
        if let Some(dentry) = self.dentry_record(source) {
            change.tx().free(dentry)?;
        }
        let dentry = change.tx().create_dentry(&DentryRecord {
            parent: newparent,
            ino: source.ino,
            name: newname.to_vec(),
        })?;
        let target_dir = target.filter(|t| self.dirs.contains_key(&t.ino)).is_some();
        let mut freed_target = false;
        for (ino, state) in guards.iter_mut() {
            if target.is_some_and(|t| t.ino == *ino) {
                freed_target = drop_link(&mut change, state, target_dir, now)?;
                continue;
            }
            let mut meta = state.meta.clone();
            if *ino == source.ino {
                meta.ctime = now;
            }
            if *ino == parent || *ino == newparent {
                meta.mtime = now;
                meta.ctime = now;
            }
            if source_is_dir && parent != newparent {
                if *ino == parent {
                    meta.nlink -= 1;
                }
                if *ino == newparent {
                    meta.nlink += 1;
                }
            }
            if target_dir && *ino == newparent {
                meta.nlink -= 1;
            }
            change.stage(state, meta)?;
        }
        change.commit()?;
        drop(guards);
        if let Some(t) = target {
            self.remove_entry(newparent, newname);
            self.forget_if_freed(t.ino, freed_target, self.dirs.contains_key(&t.ino));
        }
        self.remove_entry(parent, name);
        let moved = Entry::recorded(source.ino, source.kind, dentry);
        self.insert_entry(newparent, newname, moved);
        if let (true, Some(mut d)) = (source_is_dir, self.dirs.get_mut(&source.ino)) {
            d.parent = newparent;
        }
        Ok(())
    }

    /// RENAME_EXCHANGE: both names stay, pointing at each other's inode.
    fn exchange(
        &self,
        parent: u64,
        name: &[u8],
        a: Entry,
        newparent: u64,
        newname: &[u8],
        b: Entry,
    ) -> FsResult<()> {
        if a.ino == b.ino {
            return Ok(());
        }
        let a_dir = self.dirs.contains_key(&a.ino);
        let b_dir = self.dirs.contains_key(&b.ino);
        let inodes = self.lock_all(&[parent, newparent, a.ino, b.ino])?;
        let mut guards: Vec<_> = inodes
            .iter()
            .map(|(ino, i)| (*ino, i.state.write()))
            .collect();
        let now = Timestamp::now();
        let mut change = Change::begin(&self.store)?;
        for dentry in [a, b].into_iter().filter_map(|e| self.dentry_record(e)) {
            change.tx().free(dentry)?;
        }
        let new_a = change.tx().create_dentry(&DentryRecord {
            parent: newparent,
            ino: a.ino,
            name: newname.to_vec(),
        })?;
        let new_b = change.tx().create_dentry(&DentryRecord {
            parent,
            ino: b.ino,
            name: name.to_vec(),
        })?;
        let moved_dirs = i64::from(a_dir) - i64::from(b_dir);
        for (ino, state) in guards.iter_mut() {
            let mut meta = state.meta.clone();
            meta.ctime = now;
            if *ino == parent || *ino == newparent {
                meta.mtime = now;
            }
            if parent != newparent && *ino == parent {
                meta.nlink = (meta.nlink as i64 - moved_dirs) as u32;
            }
            if parent != newparent && *ino == newparent {
                meta.nlink = (meta.nlink as i64 + moved_dirs) as u32;
            }
            change.stage(state, meta)?;
        }
        change.commit()?;
        drop(guards);
        self.remove_entry(parent, name);
        self.remove_entry(newparent, newname);
        self.insert_entry(newparent, newname, Entry::recorded(a.ino, a.kind, new_a));
        self.insert_entry(parent, name, Entry::recorded(b.ino, b.kind, new_b));
        for (dir, is_dir, new_parent) in [(a.ino, a_dir, newparent), (b.ino, b_dir, parent)] {
            if let (true, Some(mut d)) = (is_dir, self.dirs.get_mut(&dir)) {
                d.parent = new_parent;
            }
        }
        Ok(())
    }
}

/// Takes one link away from an inode within `change`. At zero links it is freed, or
/// kept as an orphan while open. Returns whether it was freed.
fn drop_link<'a>(
    change: &mut Change<'_, 'a>,
    state: &'a mut InodeState,
    is_dir: bool,
    now: Timestamp,
) -> FsResult<bool> {
    let mut meta = state.meta.clone();
    meta.nlink = if is_dir {
        0
    } else {
        meta.nlink.saturating_sub(1)
    };
    meta.ctime = now;
    if meta.nlink == 0 && state.open_handles == 0 {
        state.free_records(change.tx())?;
        return Ok(true);
    }
    if meta.nlink == 0 {
        meta.flags |= INODE_ORPHAN;
    }
    change.stage(state, meta)?;
    Ok(false)
}

/// A new inode's record: the caller owns it; the group is the directory's when the
/// directory is set-group-ID (and a new directory inherits that bit).
fn new_inode_meta(
    ino: u64,
    mode: u32,
    rdev: u64,
    target: Box<[u8]>,
    caller: Caller,
    dir: &InodeRecord,
    now: Timestamp,
) -> InodeRecord {
    let setgid_dir = dir.mode & libc::S_ISGID != 0;
    let is_dir = mode & libc::S_IFMT == libc::S_IFDIR;
    let mut mode = mode;
    if setgid_dir && is_dir {
        mode |= libc::S_ISGID;
    }
    let gid = if setgid_dir { dir.gid } else { caller.gid };
    InodeRecord {
        size: target.len() as u64,
        rdev,
        target,
        ..InodeRecord::new(ino, mode, caller.uid, gid, now)
    }
}
