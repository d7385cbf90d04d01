//! The dynamic disk header (1024 bytes, big-endian, cookie `cxsparse`) and parent locators.
//!
//! | off | len | field |
//! |----:|----:|-------|
//! | 0   | 8   | cookie `cxsparse` |
//! | 8   | 8   | data offset (unused, all ones) |
//! | 16  | 8   | table (BAT) offset |
//! | 24  | 4   | header version 0x00010000 |
//! | 28  | 4   | max table entries |
//! | 32  | 4   | block size |
//! | 36  | 4   | checksum (one's complement of the byte sum, this field as zero) |
//! | 40  | 16  | parent unique id |
//! | 56  | 4   | parent timestamp |
//! | 60  | 4   | reserved |
//! | 64  | 512 | parent unicode name (UTF-16 big-endian) |
//! | 576 | 192 | 8 parent locator entries of 24 bytes |
//! | 768 | 256 | reserved |
//!
//! A parent locator entry: platform code (4), platform data space (4), platform data length
//! (4), reserved (4), platform data offset (8).

use super::footer::{be32, be64, checksum, checksum_skipping};
use crate::err;
use crate::error::Result;

/// Size of the dynamic disk header.
pub const HEADER_SIZE: usize = 1024;
/// Header cookie.
pub const COOKIE: &[u8; 8] = b"cxsparse";

/// One parent locator entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParentLocator {
    /// Platform code: `W2ku`, `W2ru`, `Wi2k`, `Wi2r`, `Mac `, `MacX`, or zeros when unused.
    pub code: [u8; 4],
    /// Platform data space (bytes or sectors, depending on the tool).
    pub data_space: u32,
    /// Platform data length in bytes.
    pub data_len: u32,
    /// Platform data offset in the file.
    pub data_offset: u64,
}

impl ParentLocator {
    /// True when the entry is in use.
    pub fn is_used(&self) -> bool {
        self.code != [0; 4]
    }
}

/// The parsed dynamic disk header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynHeader {
    /// Unused data offset (all ones).
    pub data_offset: u64,
    /// Byte offset of the BAT.
    pub table_offset: u64,
    /// Header version (0x00010000).
    pub version: u32,
    /// Number of BAT entries.
    pub max_table_entries: u32,
    /// Block size in bytes.
    pub block_size: u32,
    /// Stored checksum.
    pub checksum: u32,
    /// Parent's unique id (differencing disks).
    pub parent_unique_id: [u8; 16],
    /// Parent's modification time (seconds since 2000-01-01).
    pub parent_timestamp: u32,
    /// Parent's name, as stored (UTF-16 big-endian, zero padded).
    pub parent_name_raw: Vec<u16>,
    /// The eight parent locator entries.
    pub locators: [ParentLocator; 8],
}

impl DynHeader {
    /// Parses and verifies a header (`BadSignature`, `BadChecksum`, `Truncated`).
    /// Sizes are checked by the reader against the footer and the file.
    pub fn parse(bytes: &[u8]) -> Result<DynHeader> {
        if bytes.len() < HEADER_SIZE {
            return Err(err!(
                Truncated,
                "the dynamic disk header needs 1024 bytes, only {} present",
                bytes.len()
            )
            .with_structure("VHD dynamic disk header"));
        }
        let b = &bytes[..HEADER_SIZE];
        if &b[0..8] != COOKIE {
            return Err(err!(
                BadSignature,
                "cookie is {:?}, expected \"cxsparse\"",
                String::from_utf8_lossy(&b[0..8])
            )
            .with_structure("VHD dynamic disk header"));
        }
        let stored = be32(b, 36);
        let computed = checksum_skipping(b, 36);
        if stored != computed {
            return Err(err!(
                BadChecksum,
                "stored checksum 0x{stored:08x}, computed 0x{computed:08x}"
            )
            .with_structure("VHD dynamic disk header"));
        }
        let mut parent_unique_id = [0u8; 16];
        parent_unique_id.copy_from_slice(&b[40..56]);
        let parent_name_raw = b[64..576]
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        let mut locators: [ParentLocator; 8] = Default::default();
        for (i, l) in locators.iter_mut().enumerate() {
            let o = 576 + 24 * i;
            let mut code = [0u8; 4];
            code.copy_from_slice(&b[o..o + 4]);
            *l = ParentLocator {
                code,
                data_space: be32(b, o + 4),
                data_len: be32(b, o + 8),
                data_offset: be64(b, o + 16),
            };
        }
        Ok(DynHeader {
            data_offset: be64(b, 8),
            table_offset: be64(b, 16),
            version: be32(b, 24),
            max_table_entries: be32(b, 28),
            block_size: be32(b, 32),
            checksum: stored,
            parent_unique_id,
            parent_timestamp: be32(b, 56),
            parent_name_raw,
            locators,
        })
    }

    /// A header for a new dynamic disk (no parent).
    pub fn new_dynamic(table_offset: u64, max_table_entries: u32, block_size: u32) -> DynHeader {
        DynHeader {
            data_offset: u64::MAX,
            table_offset,
            version: 0x0001_0000,
            max_table_entries,
            block_size,
            checksum: 0,
            parent_unique_id: [0; 16],
            parent_timestamp: 0,
            parent_name_raw: Vec::new(),
            locators: Default::default(),
        }
    }

    /// Encodes the header, computing the checksum.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(COOKIE);
        b[8..16].copy_from_slice(&self.data_offset.to_be_bytes());
        b[16..24].copy_from_slice(&self.table_offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.version.to_be_bytes());
        b[28..32].copy_from_slice(&self.max_table_entries.to_be_bytes());
        b[32..36].copy_from_slice(&self.block_size.to_be_bytes());
        b[40..56].copy_from_slice(&self.parent_unique_id);
        b[56..60].copy_from_slice(&self.parent_timestamp.to_be_bytes());
        for (i, u) in self.parent_name_raw.iter().take(256).enumerate() {
            b[64 + 2 * i..66 + 2 * i].copy_from_slice(&u.to_be_bytes());
        }
        for (i, l) in self.locators.iter().enumerate() {
            let o = 576 + 24 * i;
            b[o..o + 4].copy_from_slice(&l.code);
            b[o + 4..o + 8].copy_from_slice(&l.data_space.to_be_bytes());
            b[o + 8..o + 12].copy_from_slice(&l.data_len.to_be_bytes());
            b[o + 16..o + 24].copy_from_slice(&l.data_offset.to_be_bytes());
        }
        let c = checksum(&b);
        b[36..40].copy_from_slice(&c.to_be_bytes());
        b
    }

    /// The parent's name (trailing zeros dropped, invalid UTF-16 replaced).
    pub fn parent_name(&self) -> String {
        let end = self
            .parent_name_raw
            .iter()
            .position(|&u| u == 0)
            .unwrap_or(self.parent_name_raw.len());
        String::from_utf16_lossy(&self.parent_name_raw[..end])
    }
}

/// Decodes a locator's platform data into a path string (as stored: Windows or URL form).
/// Returns `None` for codes we cannot use or undecodable data.
pub fn decode_locator(code: &[u8; 4], data: &[u8]) -> Option<String> {
    let s = match code {
        b"W2ku" | b"W2ru" => {
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()?
        }
        // Deprecated ANSI forms still written by old Virtual PC / Windows.
        b"Wi2k" | b"Wi2r" => String::from_utf8(data.to_vec()).ok()?,
        b"MacX" | b"Mac " => {
            let t = std::str::from_utf8(data).ok()?;
            let rest = t
                .strip_prefix("file://localhost")
                .or_else(|| t.strip_prefix("file://"))?;
            percent_decode(rest)?
        }
        _ => return None,
    };
    let s = s.trim_end_matches('\0').to_string();
    if s.is_empty() { None } else { Some(s) }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// True for relative locator codes.
pub fn is_relative_code(code: &[u8; 4]) -> bool {
    matches!(code, b"W2ru" | b"Wi2r")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn golden_header_bytes() {
        let h = DynHeader::new_dynamic(1536, 3, 2 << 20);
        let b = h.encode();
        let mut want = [0u8; 1024];
        want[0..8].copy_from_slice(b"cxsparse");
        want[8..16].copy_from_slice(&[0xff; 8]);
        want[16..24].copy_from_slice(&[0, 0, 0, 0, 0, 0, 6, 0]);
        want[24..28].copy_from_slice(&[0, 1, 0, 0]);
        want[28..32].copy_from_slice(&[0, 0, 0, 3]);
        want[32..36].copy_from_slice(&[0, 0x20, 0, 0]);
        // sum: 8 cookie bytes + 8*255 + 6 + 1 + 3 + 0x20
        let cookie: u32 = b"cxsparse".iter().map(|&x| u32::from(x)).sum();
        let sum = cookie + 8 * 255 + 6 + 1 + 3 + 0x20;
        want[36..40].copy_from_slice(&(!sum).to_be_bytes());
        assert_eq!(b.to_vec(), want.to_vec());
        let back = DynHeader::parse(&b).unwrap();
        assert_eq!(back.table_offset, 1536);
        assert_eq!(back.max_table_entries, 3);
        assert_eq!(back.block_size, 2 << 20);
        assert_eq!(back.checksum, !sum);
        assert_eq!(back.parent_name(), "");
    }

    #[test]
    fn header_errors() {
        let good = DynHeader::new_dynamic(1536, 3, 2 << 20).encode();
        let mut b = good;
        b[0] = b'X';
        assert_eq!(
            DynHeader::parse(&b).unwrap_err().kind(),
            ErrorKind::BadSignature
        );
        let mut b = good;
        b[100] = 1;
        assert_eq!(
            DynHeader::parse(&b).unwrap_err().kind(),
            ErrorKind::BadChecksum
        );
        assert_eq!(
            DynHeader::parse(&good[..1000]).unwrap_err().kind(),
            ErrorKind::Truncated
        );
    }

    #[test]
    fn locator_decoding() {
        let utf16le =
            |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
        assert_eq!(
            decode_locator(b"W2ku", &utf16le("C:\\a\\b.vhd")).as_deref(),
            Some("C:\\a\\b.vhd")
        );
        assert_eq!(
            decode_locator(b"W2ru", &utf16le(".\\b.vhd\0")).as_deref(),
            Some(".\\b.vhd")
        );
        assert_eq!(
            decode_locator(b"MacX", b"file://localhost/Users/a/my%20disk.vhd").as_deref(),
            Some("/Users/a/my disk.vhd")
        );
        assert_eq!(
            decode_locator(b"MacX", b"file:///x.vhd").as_deref(),
            Some("/x.vhd")
        );
        assert_eq!(decode_locator(b"MacX", b"http://x"), None);
        assert_eq!(decode_locator(b"MacX", b"file:///bad%zz"), None);
        assert_eq!(decode_locator(b"MacX", b"file:///bad%"), None);
        assert_eq!(decode_locator(b"ABCD", b"x"), None);
        assert_eq!(decode_locator(b"W2ku", &[0x00, 0xd8]), None);
    }
}
