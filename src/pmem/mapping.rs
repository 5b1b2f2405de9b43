//! A read-only shared mapping of a whole device, for reading pool headers on device
//! DAX, which has no read(2) (only mmap).

use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;

/// A read-only, shared mapping of the first `len` bytes of a file or device.
#[derive(Debug)]
pub struct ReadOnlyMapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value; reading it from several
// threads is as safe as reading a shared slice.
unsafe impl Send for ReadOnlyMapping {}
// SAFETY: see `Send` above.
unsafe impl Sync for ReadOnlyMapping {}

impl ReadOnlyMapping {
    /// Maps `len` bytes of `path` read-only. The mapping outlives the file descriptor.
    pub fn open(path: &Path, len: u64) -> std::io::Result<ReadOnlyMapping> {
        let file = std::fs::File::open(path)?;
        let len =
            usize::try_from(len).map_err(|_| std::io::Error::from_raw_os_error(libc::EFBIG))?;
        if len == 0 {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: a fresh read-only shared mapping chosen by the kernel (no fixed
        // address), of an open descriptor; the result is checked for MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr as *mut u8).ok_or_else(std::io::Error::last_os_error)?;
        Ok(ReadOnlyMapping { ptr, len })
    }

    /// Copies `buf.len()` bytes from offset `off`; fails past the end of the mapping.
    pub fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        let in_range = usize::try_from(off)
            .ok()
            .and_then(|off| off.checked_add(buf.len()).map(|end| (off, end)))
            .filter(|&(_, end)| end <= self.len);
        let Some((off, _)) = in_range else {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        };
        // SAFETY: off..off+buf.len() lies inside the mapping (checked above), which is
        // readable until drop; buf is a distinct Rust slice.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(off), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }
}

impl Drop for ReadOnlyMapping {
    fn drop(&mut self) {
        // SAFETY: ptr and len are exactly what mmap returned and was given; unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_file_holds_and_stops_at_its_end() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"0123456789").unwrap();
        let map = ReadOnlyMapping::open(file.path(), 10).unwrap();
        let mut buf = [0u8; 4];
        map.read_exact_at(&mut buf, 3).unwrap();
        assert_eq!(&buf, b"3456");
        assert!(map.read_exact_at(&mut buf, 7).is_err());
    }
}
