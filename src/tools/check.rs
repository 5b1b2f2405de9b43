//! `warabifs check`: libpmemobj's own consistency check, then warabifs' metadata:
//! every record readable and unique, every entry pointing somewhere, every inode
//! reachable, stored data within its region, link counts right. `--repair` fixes one problem
//! per transaction and reads the pool again before the next, so each fix sees the
//! result of the one before.

use std::collections::HashSet;
use std::path::Path;

use serde::Serialize;

use super::inventory::{EntryAt, InodeAt, Inventory};
use crate::store::records::{DentryRecord, InodeRecord, Timestamp, ROOT_INO};
use crate::store::{Oid, Store, StoreError};

/// Name of the directory unreachable files are linked into by a repair.
const LOST_AND_FOUND: &[u8] = b"lost+found";
/// A repair stops after this many fixes, whatever is left.
const MAX_FIXES: usize = 100_000;

/// One problem found, and whether the repair fixed it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Problem {
    pub kind: &'static str,
    pub detail: String,
    pub fixed: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    /// What libpmemobj's own check said.
    pub pmemobj_consistent: bool,
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// Clean: libpmemobj is satisfied and every problem found was fixed.
    pub fn is_clean(&self) -> bool {
        self.pmemobj_consistent && self.problems.iter().all(|p| p.fixed)
    }
}

/// Something wrong with the metadata, with what its repair needs.
#[derive(Clone, Debug)]
enum Finding {
    NoRoot,
    Unreadable(Oid),
    DuplicateInode(InodeAt),
    StrayXattr(Oid, u64),
    DanglingEntry(EntryAt, &'static str),
    ExtraDirectoryEntry(EntryAt),
    MissingRegion(InodeAt),
    DataBeyondRegion(InodeAt, u64),
    LeftoverOrphan(InodeAt),
    Unreachable(InodeAt),
    WrongLinkCount(InodeAt, u32),
}

impl Finding {
    fn kind(&self) -> &'static str {
        match self {
            Finding::NoRoot => "no root directory",
            Finding::Unreadable(_) => "unreadable record",
            Finding::DuplicateInode(_) => "duplicate inode number",
            Finding::StrayXattr(..) => "extended attribute of no inode",
            Finding::DanglingEntry(..) => "dangling entry",
            Finding::ExtraDirectoryEntry(_) => "directory with several entries",
            Finding::MissingRegion(_) => "missing region",
            Finding::DataBeyondRegion(..) => "data beyond its region",
            Finding::LeftoverOrphan(_) => "orphan inode",
            Finding::Unreachable(_) => "unreachable inode",
            Finding::WrongLinkCount(..) => "wrong link count",
        }
    }

    fn detail(&self) -> String {
        let name = |e: &EntryAt| String::from_utf8_lossy(&e.entry.name).into_owned();
        match self {
            Finding::NoRoot => "the pool has warabifs metadata but no inode 1".into(),
            Finding::Unreadable(oid) => format!("record {oid} cannot be decoded"),
            Finding::DuplicateInode(i) => {
                format!("record {} also claims inode {}", i.record, i.meta.ino)
            }
            Finding::StrayXattr(oid, ino) => {
                format!("record {oid} belongs to inode {ino}, which does not exist")
            }
            Finding::DanglingEntry(e, why) => format!(
                "\"{}\" in directory {} -> inode {}: {why}",
                name(e),
                e.entry.parent,
                e.entry.ino
            ),
            Finding::ExtraDirectoryEntry(e) => format!(
                "\"{}\" in directory {} names directory {} a second time",
                name(e),
                e.entry.parent,
                e.entry.ino
            ),
            Finding::MissingRegion(i) => format!(
                "inode {} names region {}, which is not a live region",
                i.meta.ino, i.meta.region
            ),
            Finding::DataBeyondRegion(i, cap) => format!(
                "inode {} stores {} bytes (of size {}) but its region holds {cap}",
                i.meta.ino,
                i.meta.data_len(),
                i.meta.size
            ),
            Finding::LeftoverOrphan(i) => format!(
                "inode {} was unlinked while open and never reclaimed",
                i.meta.ino
            ),
            Finding::Unreachable(i) => format!(
                "inode {} cannot be reached from the root directory",
                i.meta.ino
            ),
            Finding::WrongLinkCount(i, actual) => format!(
                "inode {} records {} links, has {actual}",
                i.meta.ino, i.meta.nlink
            ),
        }
    }
}

/// Checks the pool at `path` (which must not be in use) and, with `repair`, fixes what
/// it finds.
pub fn check(path: &Path, repair: bool) -> Result<CheckReport, StoreError> {
    let pmemobj_consistent = Store::check_consistency(path)?;
    let mut report = CheckReport {
        pmemobj_consistent,
        problems: Vec::new(),
    };
    if !pmemobj_consistent {
        // Metadata read from an inconsistent heap proves nothing, and writing to it
        // could make things worse: libpmemobj's own repair (pmempool check) comes first.
        return Ok(report);
    }
    let store = super::open(path)?;
    if !store.is_formatted() {
        return Ok(report);
    }
    let findings = find(&store, &Inventory::new(super::scan(&store)));
    if !repair {
        report.problems = findings.iter().map(|f| problem(f, false)).collect();
        return Ok(report);
    }
    report.problems = repair_all(&store, findings)?;
    Ok(report)
}

fn problem(f: &Finding, fixed: bool) -> Problem {
    Problem {
        kind: f.kind(),
        detail: f.detail(),
        fixed,
    }
}

/// Fixes the first problem, reads the pool again, and so on until none is left or a
/// fix fails (then everything still found is reported unfixed).
fn repair_all(store: &Store, mut findings: Vec<Finding>) -> Result<Vec<Problem>, StoreError> {
    let mut problems = Vec::new();
    while let Some(first) = findings.first().cloned() {
        if problems.len() >= MAX_FIXES {
            break;
        }
        let inv = Inventory::new(store.scan());
        match fix(store, &inv, &first) {
            Ok(()) => problems.push(problem(&first, true)),
            Err(e) => {
                tracing::error!("could not fix {}: {e}", first.detail());
                break;
            }
        }
        findings = find(store, &Inventory::new(store.scan()));
    }
    problems.extend(findings.iter().map(|f| problem(f, false)));
    Ok(problems)
}

/// Every problem of the metadata, most fundamental first (an entry removed by one fix
/// changes the link count the next finds).
fn find(store: &Store, inv: &Inventory) -> Vec<Finding> {
    let mut found = Vec::new();
    if !inv.inodes.contains_key(&ROOT_INO) {
        found.push(Finding::NoRoot);
    }
    found.extend(inv.unreadable.iter().map(|&oid| Finding::Unreadable(oid)));
    found.extend(
        inv.duplicate_inodes
            .iter()
            .cloned()
            .map(Finding::DuplicateInode),
    );
    found.extend(
        inv.xattrs
            .iter()
            .filter(|(_, x)| !inv.inodes.contains_key(&x.ino))
            .map(|(oid, x)| Finding::StrayXattr(*oid, x.ino)),
    );
    found.extend(entry_problems(inv));
    found.extend(
        inv.inodes
            .values()
            .filter_map(|i| region_problem(store, inv, i)),
    );
    found.extend(reachability_problems(inv));
    found.extend(link_count_problems(inv));
    found
}

fn entry_problems(inv: &Inventory) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut seen_names = HashSet::new();
    let mut dir_entered = HashSet::new();
    for e in &inv.entries {
        let why = if !inv.inodes.contains_key(&e.entry.ino) {
            Some("no such inode")
        } else if !inv.is_dir(e.entry.parent) {
            Some("its directory does not exist")
        } else if e.entry.ino == ROOT_INO {
            Some("it names the root directory")
        } else if !seen_names.insert((e.entry.parent, e.entry.name.clone())) {
            Some("another entry of that directory has the same name")
        } else {
            None
        };
        match why {
            Some(why) => found.push(Finding::DanglingEntry(e.clone(), why)),
            None if inv.is_dir(e.entry.ino) && !dir_entered.insert(e.entry.ino) => {
                found.push(Finding::ExtraDirectoryEntry(e.clone()))
            }
            None => {}
        }
    }
    found
}

fn region_problem(store: &Store, inv: &Inventory, i: &InodeAt) -> Option<Finding> {
    let region = i.meta.region;
    if !region.is_null() && !inv.regions.contains(&region) {
        return Some(Finding::MissingRegion(i.clone()));
    }
    // A size past the region is a zero tail; only stored bytes must fit in it.
    let capacity = store.capacity(region);
    (i.meta.data_len() > capacity && i.meta.mode & libc::S_IFMT == libc::S_IFREG)
        .then(|| Finding::DataBeyondRegion(i.clone(), capacity))
}

fn is_orphan(meta: &InodeRecord) -> bool {
    meta.ino != ROOT_INO && meta.is_orphan()
}

fn reachability_problems(inv: &Inventory) -> Vec<Finding> {
    let reachable: HashSet<u64> = inv.paths().into_iter().map(|(_, ino)| ino).collect();
    let mut found = Vec::new();
    for i in inv
        .inodes
        .values()
        .filter(|i| !reachable.contains(&i.meta.ino))
    {
        if is_orphan(&i.meta) {
            found.push(Finding::LeftoverOrphan(i.clone()));
        } else if !inv.links.contains_key(&i.meta.ino) || inv.is_dir(i.meta.ino) {
            // A file with entries is unreachable only through its directory, which is
            // reported (and relinked) itself.
            found.push(Finding::Unreachable(i.clone()));
        }
    }
    found
}

/// The links each inode should record: its entries, plus "." and its subdirectories'
/// ".." for a directory.
fn link_count_problems(inv: &Inventory) -> Vec<Finding> {
    let entries_of = |ino: u64| inv.links.get(&ino).map_or(0, Vec::len) as u32;
    let subdirs_of = |ino: u64| {
        inv.children.get(&ino).map_or(0, |c| {
            c.iter()
                .filter(|&&i| inv.is_dir(inv.entries[i].entry.ino))
                .count()
        }) as u32
    };
    inv.inodes
        .values()
        .filter(|i| !is_orphan(&i.meta))
        .filter_map(|i| {
            let ino = i.meta.ino;
            let actual = match inv.is_dir(ino) {
                true => 2 + subdirs_of(ino),
                false => entries_of(ino),
            };
            (actual != i.meta.nlink && actual > 0)
                .then(|| Finding::WrongLinkCount(i.clone(), actual))
        })
        .collect()
}

/// Applies the fix of one finding in one transaction.
fn fix(store: &Store, inv: &Inventory, finding: &Finding) -> Result<(), StoreError> {
    let mut tx = store.begin()?;
    match finding {
        Finding::NoRoot => {
            tx.create_inode(&new_directory(ROOT_INO))?;
        }
        Finding::Unreadable(oid) | Finding::StrayXattr(oid, _) => tx.free(*oid)?,
        Finding::DuplicateInode(i) => tx.free(i.record)?,
        Finding::DanglingEntry(e, _) | Finding::ExtraDirectoryEntry(e) => tx.free(e.record)?,
        Finding::MissingRegion(i) => {
            let meta = InodeRecord {
                region: Oid::NULL,
                size: 0,
                ..i.meta.clone()
            };
            tx.update_inode(i.record, &meta)?;
        }
        Finding::DataBeyondRegion(i, capacity) => {
            // The size stays; what the region cannot hold reads as zeros.
            let mut meta = i.meta.clone();
            meta.set_extent(meta.size, *capacity);
            tx.update_inode(i.record, &meta)?;
        }
        Finding::LeftoverOrphan(i) => {
            let xattrs = inv.xattrs.iter().filter(|(_, x)| x.ino == i.meta.ino);
            tx.free_inode(Some(i.record), i.meta.region, xattrs.map(|(oid, _)| *oid))?;
        }
        Finding::Unreachable(i) => relink_into_lost_and_found(&mut tx, inv, i)?,
        Finding::WrongLinkCount(i, actual) => {
            tx.update_inode(
                i.record,
                &InodeRecord {
                    nlink: *actual,
                    ..i.meta.clone()
                },
            )?;
        }
    }
    tx.commit()
}

/// Gives an unreachable inode the entry "/lost+found/#INO" (making that directory if
/// needed); a directory loses the entries that kept it in a detached cycle.
fn relink_into_lost_and_found(
    tx: &mut crate::store::StoreTx<'_>,
    inv: &Inventory,
    i: &InodeAt,
) -> Result<(), StoreError> {
    let lost_found = inv
        .children
        .get(&ROOT_INO)
        .and_then(|c| {
            c.iter()
                .map(|&k| &inv.entries[k].entry)
                .find(|e| e.name == LOST_AND_FOUND && inv.is_dir(e.ino))
        })
        .map(|e| e.ino);
    let lost_found = match lost_found {
        Some(ino) => ino,
        None => {
            let ino = inv.next_ino;
            tx.create_inode(&new_directory(ino))?;
            tx.create_dentry(&DentryRecord {
                parent: ROOT_INO,
                ino,
                name: LOST_AND_FOUND.to_vec(),
            })?;
            ino
        }
    };
    for &k in inv
        .links
        .get(&i.meta.ino)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        tx.free(inv.entries[k].record)?;
    }
    let name = format!("#{}", i.meta.ino).into_bytes();
    tx.create_dentry(&DentryRecord {
        parent: lost_found,
        ino: i.meta.ino,
        name,
    })?;
    Ok(())
}

fn new_directory(ino: u64) -> InodeRecord {
    InodeRecord::new(ino, libc::S_IFDIR | 0o700, 0, 0, Timestamp::now())
}
