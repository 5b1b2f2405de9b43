//! Names: lookup, listing, and every change to the tree, each one transaction.

use std::sync::Arc;

use super::change::Change;
use super::inode::{Inode, InodeState, RAW_REGION_INO_BIT, ROOT_INO};
use super::names::Entry;
use super::namespace::{Listed, NamespaceGuard};
use super::regions::{listed_cookie, region_name};
use super::Attr;
use super::{check_name, Caller, Errno, Fh, FileKind, FsResult, WarabiFs};
use crate::store::records::{InodeRecord, Timestamp, INODE_ORPHAN};

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
            0 => Err(Errno::ENOENT.into()),
            _ => Ok(attr),
        }
    }

    /// Opens a directory: an open directory keeps its inode after it is removed, until
    /// the handle is released (as an open file does).
    pub fn opendir(&self, ino: u64) -> FsResult<Fh> {
        if self.inode(ino)?.state.read().kind() != FileKind::Directory {
            return Err(Errno::ENOTDIR.into());
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
        if !self.ns.is_dir(parent) {
            let errno = match self.exists(parent) {
                true => Errno::ENOTDIR,
                false => Errno::ENOENT,
            };
            return Err(errno.into());
        }
        match name {
            b"." => return Ok(parent),
            b".." => return Ok(self.ns.parent_of(parent).unwrap_or(ROOT_INO)),
            _ => {}
        }
        if name.len() > crate::store::records::NAME_MAX {
            return Err(Errno::ENAMETOOLONG.into());
        }
        self.entry(parent, name)
            .map(|e| e.ino)
            .ok_or(Errno::ENOENT.into())
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
        let Some(parent) = self.ns.parent_of(ino) else {
            // A directory removed while open lists nothing.
            if self.is_removed_dir(ino) {
                return Ok(());
            }
            let errno = match self.exists(ino) {
                true => Errno::ENOTDIR,
                false => Errno::ENOENT,
            };
            return Err(errno.into());
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
            let batch = self.ns.listing_after(ino, after, READDIR_BATCH);
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

    pub fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        let inode = self.inode(ino)?;
        let state = inode.state.read();
        if state.kind() != FileKind::Symlink {
            return Err(Errno::EINVAL.into());
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
            return Err(Errno::EINVAL.into());
        }
        let node = NewNode::plain(mode, rdev as u64);
        Ok(self.make_node(parent, name, node, caller)?.0)
    }

    /// Creates a regular file and opens it for writing, in one step under the namespace
    /// guard, so that no unlink can come between the two.
    pub fn create(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        caller: Caller,
    ) -> FsResult<(Attr, Fh)> {
        let node = NewNode {
            open: true,
            ..NewNode::plain(libc::S_IFREG | (mode & 0o7777), 0)
        };
        let (attr, fh) = self.make_node(parent, name, node, caller)?;
        Ok((attr, fh.ok_or(Errno::EIO)?))
    }

    pub fn mkdir(&self, parent: u64, name: &[u8], mode: u32, caller: Caller) -> FsResult<Attr> {
        let node = NewNode::plain(libc::S_IFDIR | (mode & 0o7777), 0);
        Ok(self.make_node(parent, name, node, caller)?.0)
    }

    pub fn symlink(
        &self,
        parent: u64,
        name: &[u8],
        target: &[u8],
        caller: Caller,
    ) -> FsResult<Attr> {
        if target.len() > SYMLINK_MAX {
            return Err(Errno::ENAMETOOLONG.into());
        }
        if target.is_empty() {
            return Err(Errno::ENOENT.into());
        }
        let node = NewNode {
            target: target.into(),
            ..NewNode::plain(libc::S_IFLNK | 0o777, 0)
        };
        Ok(self.make_node(parent, name, node, caller)?.0)
    }

    /// One transaction: the inode record, its directory entry and the parent's times.
    fn make_node(
        &self,
        parent: u64,
        name: &[u8],
        node: NewNode,
        caller: Caller,
    ) -> FsResult<(Attr, Option<Fh>)> {
        let NewNode {
            mode,
            rdev,
            target,
            open,
        } = node;
        self.writable()?;
        check_name(name)?;
        let ns = self.ns.lock();
        let dir = self.directory(parent)?;
        if self.entry(parent, name).is_some() {
            return Err(Errno::EEXIST.into());
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
        let dentry = change.create_dentry(parent, meta.ino, name)?;
        change.stage(&mut dir_state, dir_meta)?;
        change.commit()?;
        let state = InodeState::new(meta, Some(record), 0);
        let attr = state.attr();
        self.inodes.insert(attr.ino, Arc::new(Inode::new(state)));
        if is_dir {
            ns.add_dir(attr.ino, parent);
        }
        ns.insert_entry(parent, name, Entry::recorded(attr.ino, attr.kind, dentry));
        let fh = match open {
            true => Some(self.open(attr.ino, true)?),
            false => None,
        };
        Ok((attr, fh))
    }

    fn directory(&self, ino: u64) -> FsResult<Arc<Inode>> {
        let inode = self.inode(ino)?;
        if !self.ns.is_dir(ino) {
            return Err(Errno::ENOTDIR.into());
        }
        Ok(inode)
    }

    /// Removes `name` from `parent` under `ns`.
    fn remove_entry(&self, ns: &NamespaceGuard<'_>, parent: u64, name: &[u8]) -> Option<Entry> {
        ns.remove_entry(&self.store, parent, name, |ino| {
            self.inodes.contains_key(&ino)
        })
    }

    /// Gives a Warabi region listed under its RegionID an inode record and a directory
    /// entry, so that it can change like any file. One transaction; no-op if done.
    pub(super) fn adopt(&self, ino: u64) -> FsResult<()> {
        self.writable()?;
        let ns = self.ns.lock();
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
        let dentry = change.create_dentry(ROOT_INO, ino, &name)?;
        change.commit()?;
        state.record = Some(record);
        // The entry now lists at its record's offset: the region's offset it listed at
        // before may be reused once the file moves.
        self.remove_entry(&ns, ROOT_INO, &name);
        let entry = Entry::recorded(ino, FileKind::Regular, dentry);
        ns.insert_entry(ROOT_INO, &name, entry);
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
        let ns = self.ns.lock();
        let inode = self.inode(ino)?;
        let dir = self.directory(newparent)?;
        if self.entry(newparent, newname).is_some() {
            return Err(Errno::EEXIST.into());
        }
        let mut state = inode.state.write();
        if state.kind() == FileKind::Directory {
            return Err(Errno::EPERM.into());
        }
        if state.meta.nlink >= LINK_MAX {
            return Err(Errno::EMLINK.into());
        }
        if state.meta.nlink == 0 {
            return Err(Errno::ENOENT.into());
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
        let dentry = change.create_dentry(newparent, ino, newname)?;
        change.stage(&mut state, meta)?;
        change.stage(&mut dir_state, dir_meta)?;
        change.commit()?;
        let entry = Entry::recorded(ino, state.kind(), dentry);
        ns.insert_entry(newparent, newname, entry);
        Ok(state.attr())
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.remove(parent, name, false)
    }

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        if name == b"." {
            return Err(Errno::EINVAL.into());
        }
        if name == b".." {
            return Err(Errno::ENOTEMPTY.into());
        }
        self.remove(parent, name, true)
    }

    fn remove(&self, parent: u64, name: &[u8], want_dir: bool) -> FsResult<()> {
        self.writable()?;
        let ino = self.lookup_ino(parent, name)?;
        self.adopt_if_raw(ino)?;
        let ns = self.ns.lock();
        let entry = self.entry(parent, name).ok_or(Errno::ENOENT)?;
        let dir = self.directory(parent)?;
        let inode = self.inode(entry.ino)?;
        let is_dir = self.ns.is_dir(entry.ino);
        match (want_dir, is_dir) {
            (true, false) => return Err(Errno::ENOTDIR.into()),
            (false, true) => return Err(Errno::EISDIR.into()),
            (true, true) if self.ns.is_empty_dir(entry.ino) != Some(true) => {
                return Err(Errno::ENOTEMPTY.into())
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
        change.free_dentry(entry)?;
        let freed = drop_link(&mut change, &mut state, is_dir, now)?;
        change.stage(&mut dir_state, dir_meta)?;
        change.commit()?;
        self.remove_entry(&ns, parent, name);
        self.forget_if_freed(&ns, entry.ino, freed, is_dir);
        Ok(())
    }

    fn forget_if_freed(&self, ns: &NamespaceGuard<'_>, ino: u64, freed: bool, is_dir: bool) {
        if is_dir {
            ns.remove_dir(ino);
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
        let ns = self.ns.lock();
        let source = self.entry(parent, name).ok_or(Errno::ENOENT)?;
        let target = self.entry(newparent, newname);
        self.directory(newparent)?;
        let source_is_dir = self.ns.is_dir(source.ino);
        if source_is_dir && self.ns.is_ancestor(source.ino, newparent) {
            return Err(Errno::EINVAL.into());
        }
        match (mode, target) {
            (RenameMode::NoReplace, Some(_)) => return Err(Errno::EEXIST.into()),
            (RenameMode::Exchange, None) => return Err(Errno::ENOENT.into()),
            (RenameMode::Exchange, Some(t)) => {
                if self.ns.is_dir(t.ino) && self.ns.is_ancestor(t.ino, parent) {
                    return Err(Errno::EINVAL.into());
                }
                let (from, to) = (
                    Named { dir: parent, name },
                    Named {
                        dir: newparent,
                        name: newname,
                    },
                );
                return self.exchange(&ns, (from, source), (to, t));
            }
            (_, Some(t)) if t.ino == source.ino => return Ok(()),
            (_, Some(t)) => self.check_replaceable(source_is_dir, t)?,
            (_, None) => {}
        }
        let (from, to) = (
            Named { dir: parent, name },
            Named {
                dir: newparent,
                name: newname,
            },
        );
        self.move_entry(&ns, (from, source), (to, target))
    }

    fn check_replaceable(&self, source_is_dir: bool, target: Entry) -> FsResult<()> {
        match (source_is_dir, self.ns.is_empty_dir(target.ino)) {
            (true, None) => Err(Errno::ENOTDIR.into()),
            (false, Some(_)) => Err(Errno::EISDIR.into()),
            (true, Some(false)) => Err(Errno::ENOTEMPTY.into()),
            _ => Ok(()),
        }
    }

    /// The inodes of `inos`, to lock with [`NamespaceGuard::lock_inodes`].
    fn inodes_of(&self, inos: &[u64]) -> FsResult<Vec<(u64, Arc<Inode>)>> {
        inos.iter()
            .map(|&ino| Ok((ino, self.inode(ino)?)))
            .collect()
    }

    /// Moves `source` to `to`, replacing its `target` entry if there is one.
    fn move_entry(
        &self,
        ns: &NamespaceGuard<'_>,
        (from, source): (Named<'_>, Entry),
        (to, target): (Named<'_>, Option<Entry>),
    ) -> FsResult<()> {
        let (parent, name, newparent, newname) = (from.dir, from.name, to.dir, to.name);
        let source_is_dir = self.ns.is_dir(source.ino);
        let mut involved = vec![parent, newparent, source.ino];
        involved.extend(target.map(|t| t.ino));
        let inodes = self.inodes_of(&involved)?;
        let mut guards = ns.lock_inodes(&inodes);
        let now = Timestamp::now();
        let mut change = Change::begin(&self.store)?;
        for entry in target.into_iter().chain([source]) {
            change.free_dentry(entry)?;
        }
        let dentry = change.create_dentry(newparent, source.ino, newname)?;
        let target_dir = target.filter(|t| self.ns.is_dir(t.ino)).is_some();
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
            self.remove_entry(ns, newparent, newname);
            self.forget_if_freed(ns, t.ino, freed_target, target_dir);
        }
        self.remove_entry(ns, parent, name);
        let moved = Entry::recorded(source.ino, source.kind, dentry);
        ns.insert_entry(newparent, newname, moved);
        if source_is_dir {
            ns.set_parent(source.ino, newparent);
        }
        Ok(())
    }

    /// RENAME_EXCHANGE: both names stay, pointing at each other's inode.
    fn exchange(
        &self,
        ns: &NamespaceGuard<'_>,
        (from, a): (Named<'_>, Entry),
        (to, b): (Named<'_>, Entry),
    ) -> FsResult<()> {
        let (parent, name, newparent, newname) = (from.dir, from.name, to.dir, to.name);
        if a.ino == b.ino {
            return Ok(());
        }
        let a_dir = self.ns.is_dir(a.ino);
        let b_dir = self.ns.is_dir(b.ino);
        let inodes = self.inodes_of(&[parent, newparent, a.ino, b.ino])?;
        let mut guards = ns.lock_inodes(&inodes);
        let now = Timestamp::now();
        let mut change = Change::begin(&self.store)?;
        for entry in [a, b] {
            change.free_dentry(entry)?;
        }
        let new_a = change.create_dentry(newparent, a.ino, newname)?;
        let new_b = change.create_dentry(parent, b.ino, name)?;
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
        self.remove_entry(ns, parent, name);
        self.remove_entry(ns, newparent, newname);
        ns.insert_entry(newparent, newname, Entry::recorded(a.ino, a.kind, new_a));
        ns.insert_entry(parent, name, Entry::recorded(b.ino, b.kind, new_b));
        for (dir, is_dir, new_parent) in [(a.ino, a_dir, newparent), (b.ino, b_dir, parent)] {
            if is_dir {
                ns.set_parent(dir, new_parent);
            }
        }
        Ok(())
    }
}

/// What make_node makes: an inode of `mode` (a device's `rdev`, a symlink's `target`),
/// opened for writing when `open`.
struct NewNode {
    mode: u32,
    rdev: u64,
    target: Box<[u8]>,
    open: bool,
}

impl NewNode {
    fn plain(mode: u32, rdev: u64) -> NewNode {
        NewNode {
            mode,
            rdev,
            target: Box::default(),
            open: false,
        }
    }
}

/// A name in a directory: one side of a rename.
#[derive(Clone, Copy)]
struct Named<'a> {
    dir: u64,
    name: &'a [u8],
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
