//! Extended attributes. `user.warabi.region_id` shows a file's Warabi RegionID and
//! cannot be set or removed; no other attribute is stored yet (ENOTSUP to set one).

use super::{Errno, FileKind, FsResult, WarabiFs};

pub const REGION_ID_XATTR: &[u8] = b"user.warabi.region_id";

impl WarabiFs {
    pub fn getxattr(&self, ino: u64, name: &[u8]) -> FsResult<Vec<u8>> {
        let inode = self.inode(ino)?;
        let state = inode.state.read();
        if name == REGION_ID_XATTR && !state.region().is_null() {
            return Ok(state.region().to_string().into_bytes());
        }
        Err(Errno::ENODATA)
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
        Ok(names)
    }

    pub fn setxattr(&self, ino: u64, name: &[u8]) -> FsResult<()> {
        self.inode(ino)?;
        if name == REGION_ID_XATTR {
            return Err(Errno::EPERM);
        }
        Err(Errno::ENOTSUP)
    }

    pub fn removexattr(&self, ino: u64, name: &[u8]) -> FsResult<()> {
        self.inode(ino)?;
        if name == REGION_ID_XATTR {
            return Err(Errno::EPERM);
        }
        Err(Errno::ENODATA)
    }
}
