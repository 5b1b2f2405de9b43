//! Extended attributes, each stored in a record of its own. `user.warabi.region_id`
//! shows a file's Warabi RegionID and can be neither set nor removed.

use super::change::Change;
use super::inode::Xattr;
use super::{Errno, FileKind, FsResult, WarabiFs};
use crate::store::records::{Timestamp, XattrRecord, XATTR_NAME_MAX, XATTR_SIZE_MAX};

pub const REGION_ID_XATTR: &[u8] = b"user.warabi.region_id";
/// Names of POSIX ACLs: warabifs stores no ACLs, so the kernel keeps using the mode.
const SYSTEM_PREFIX: &[u8] = b"system.";
/// SELinux labels: FUSE mounts are labelled by policy (genfscon), never from the file.
const SELINUX_LABEL: &[u8] = b"security.selinux";

/// Names whose whole namespace warabifs does not support. getxattr answers ENOTSUP
/// rather than ENODATA for them: tools such as `ls -l` then remember, once per mount,
/// that the file system has neither ACLs nor labels, instead of asking for every file.
fn unsupported(name: &[u8]) -> bool {
    name.starts_with(SYSTEM_PREFIX) || name == SELINUX_LABEL
}

/// setxattr(2) flags.
const XATTR_CREATE: i32 = 1;
const XATTR_REPLACE: i32 = 2;

impl WarabiFs {
    pub fn getxattr(&self, ino: u64, name: &[u8]) -> FsResult<Vec<u8>> {
        let inode = self.inode(ino)?;
        if unsupported(name) {
            return Err(Errno::ENOTSUP.into());
        }
        let state = inode.state.read();
        if name == REGION_ID_XATTR {
            return match state.region().is_null() {
                true => Err(Errno::ENODATA.into()),
                false => Ok(state.region().to_string().into_bytes()),
            };
        }
        let found = state.xattrs.find(name);
        found.map(|x| x.value.to_vec()).ok_or(Errno::ENODATA.into())
    }

    /// Attribute names, each followed by a NUL, as listxattr(2) returns them.
    pub fn listxattr(&self, ino: u64) -> FsResult<Vec<u8>> {
        let inode = self.inode(ino)?;
        let state = inode.state.read();
        let mut names = Vec::new();
        if state.kind() == FileKind::Regular && !state.region().is_null() {
            names.extend_from_slice(REGION_ID_XATTR);
            names.push(0);
        }
        for xattr in &state.xattrs {
            names.extend_from_slice(&xattr.name);
            names.push(0);
        }
        Ok(names)
    }

    /// Sets an attribute in one transaction (replacing its record), honouring
    /// XATTR_CREATE and XATTR_REPLACE.
    pub fn setxattr(&self, ino: u64, name: &[u8], value: &[u8], flags: i32) -> FsResult<()> {
        check_xattr_name(name)?;
        if value.len() > XATTR_SIZE_MAX {
            return Err(Errno::E2BIG.into());
        }
        self.writable()?;
        self.adopt_if_raw(ino)?;
        let inode = self.inode(ino)?;
        let mut state = inode.state.write();
        let existing = state.xattrs.find(name).map(|x| x.record);
        match (existing, flags & (XATTR_CREATE | XATTR_REPLACE)) {
            (Some(_), XATTR_CREATE) => return Err(Errno::EEXIST.into()),
            (None, XATTR_REPLACE) => return Err(Errno::ENODATA.into()),
            _ => {}
        }
        let mut meta = state.meta.clone();
        meta.ctime = Timestamp::now();
        let mut change = Change::begin(&self.store)?;
        if let Some(old_record) = existing {
            change.tx().free(old_record)?;
        }
        let record = change.tx().create_xattr(&XattrRecord {
            ino,
            name: name.to_vec(),
            value: value.to_vec(),
        })?;
        change.stage(&mut state, meta)?;
        change.commit()?;
        state.xattrs.put(Xattr {
            name: name.into(),
            value: value.into(),
            record,
        });
        Ok(())
    }

    pub fn removexattr(&self, ino: u64, name: &[u8]) -> FsResult<()> {
        check_xattr_name(name)?;
        self.writable()?;
        let inode = self.inode(ino)?;
        let mut state = inode.state.write();
        let record = state.xattrs.find(name).ok_or(Errno::ENODATA)?.record;
        let mut meta = state.meta.clone();
        meta.ctime = Timestamp::now();
        let mut change = Change::begin(&self.store)?;
        change.tx().free(record)?;
        change.stage(&mut state, meta)?;
        change.commit()?;
        state.xattrs.remove(name);
        Ok(())
    }
}

/// Names warabifs can store: not empty, at most XATTR_NAME_MAX bytes, not an ACL or an
/// SELinux label, and not the read-only RegionID.
fn check_xattr_name(name: &[u8]) -> FsResult<()> {
    if name == REGION_ID_XATTR {
        return Err(Errno::EPERM.into());
    }
    if name.is_empty() || name.len() > XATTR_NAME_MAX {
        return Err(Errno::ERANGE.into());
    }
    if unsupported(name) {
        return Err(Errno::ENOTSUP.into());
    }
    Ok(())
}
