//! Object ids (PMEMoid) and their RegionID spelling.

use std::fmt;
use std::str::FromStr;

/// A libpmemobj object id: the pool's `uuid_lo` and the object's offset in the pool.
///
/// Its 16 bytes (both fields little-endian, `pool_uuid_lo` first) are Warabi's RegionID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Oid {
    pub pool_uuid_lo: u64,
    pub off: u64,
}

impl Oid {
    pub const NULL: Oid = Oid {
        pool_uuid_lo: 0,
        off: 0,
    };

    pub fn is_null(self) -> bool {
        self.off == 0
    }

    pub(super) fn from_raw(raw: pmdk_sys::PMEMoid) -> Oid {
        Oid {
            pool_uuid_lo: raw.pool_uuid_lo(),
            off: raw.off(),
        }
    }

    pub(super) fn to_raw(self) -> pmdk_sys::PMEMoid {
        pmdk_sys::PMEMoid::new(self.pool_uuid_lo, self.off)
    }

    /// The 16 bytes of the PMEMoid, as Warabi stores a RegionID.
    pub fn to_region_id(self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.pool_uuid_lo.to_le_bytes());
        id[8..].copy_from_slice(&self.off.to_le_bytes());
        id
    }

    /// The RegionID as 32 lowercase hex digits, without an allocation.
    pub fn region_id_hex(self) -> [u8; 32] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 32];
        for (i, byte) in self.to_region_id().into_iter().enumerate() {
            hex[2 * i] = HEX[usize::from(byte >> 4)];
            hex[2 * i + 1] = HEX[usize::from(byte & 0xf)];
        }
        hex
    }

    pub fn from_region_id(id: [u8; 16]) -> Oid {
        let (lo, off) = id.split_at(8);
        Oid {
            pool_uuid_lo: u64::from_le_bytes(lo.try_into().expect("8 bytes")),
            off: u64::from_le_bytes(off.try_into().expect("8 bytes")),
        }
    }
}

/// RegionID as 32 lowercase hex digits of its 16 bytes.
impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.region_id_hex();
        f.pad(std::str::from_utf8(&hex).expect("hex digits are ASCII"))
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({:#x}:{:#x})", self.pool_uuid_lo, self.off)
    }
}

/// Parses 32 hex digits (either case) into a RegionID.
impl FromStr for Oid {
    type Err = ();

    fn from_str(hex: &str) -> Result<Oid, ()> {
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(());
        }
        let mut id = [0u8; 16];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| ())?;
        }
        Ok(Oid::from_region_id(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_id_is_little_endian_uuid_then_offset() {
        let oid = Oid {
            pool_uuid_lo: 0x0102030405060708,
            off: 0x10,
        };
        assert_eq!(oid.to_string(), "08070605040302011000000000000000");
        assert_eq!("08070605040302011000000000000000".parse::<Oid>(), Ok(oid));
    }

    #[test]
    fn malformed_region_ids_are_refused() {
        assert!("0807".parse::<Oid>().is_err());
        assert!("zz070605040302011000000000000000".parse::<Oid>().is_err());
    }
}
