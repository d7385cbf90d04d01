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
//! (4), reserved (4), platform data offset (8). The structs are in [`super::layout`].

use super::footer::{checksum, checksum_skipping};
use super::layout::DynHeaderLayout;
use crate::err;
use crate::error::Result;
use crate::guid::Guid;
use std::mem::offset_of;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

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
    pub parent_unique_id: Guid,
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
        let s = "VHD dynamic disk header";
        let Ok((l, _)) = DynHeaderLayout::read_from_prefix(bytes) else {
            return Err(err!(
                Truncated,
                "the dynamic disk header needs 1024 bytes, only {} present",
                bytes.len()
            )
            .with_structure(s));
        };
        if &l.cookie != COOKIE {
            return Err(err!(
                BadSignature,
                "cookie is {:?}, expected \"cxsparse\"",
                String::from_utf8_lossy(&l.cookie)
            )
            .with_structure(s));
        }
        let sum_at = offset_of!(DynHeaderLayout, checksum);
        let stored = l.checksum.get();
        let computed = checksum_skipping(&bytes[..HEADER_SIZE], sum_at);
        if stored != computed {
            return Err(err!(
                BadChecksum,
                "stored checksum 0x{stored:08x}, computed 0x{computed:08x}"
            )
            .with_structure(s));
        }
        let parent_name_raw = l
            .parent_unicode_name
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        Ok(DynHeader {
            data_offset: l.data_offset.get(),
            table_offset: l.table_offset.get(),
            version: l.header_version.get(),
            max_table_entries: l.max_table_entries.get(),
            block_size: l.block_size.get(),
            checksum: stored,
            parent_unique_id: Guid::from_bytes(l.parent_unique_id),
            parent_timestamp: l.parent_timestamp.get(),
            parent_name_raw,
            locators: l.parent_locators.map(|p| ParentLocator {
                code: p.platform_code,
                data_space: p.platform_data_space.get(),
                data_len: p.platform_data_length.get(),
                data_offset: p.platform_data_offset.get(),
            }),
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
            parent_unique_id: Guid::NIL,
            parent_timestamp: 0,
            parent_name_raw: Vec::new(),
            locators: Default::default(),
        }
    }

    /// Encodes the header, computing the checksum.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut l = DynHeaderLayout::new_zeroed();
        l.cookie = *COOKIE;
        l.data_offset.set(self.data_offset);
        l.table_offset.set(self.table_offset);
        l.header_version.set(self.version);
        l.max_table_entries.set(self.max_table_entries);
        l.block_size.set(self.block_size);
        l.parent_unique_id = self.parent_unique_id.to_bytes();
        l.parent_timestamp.set(self.parent_timestamp);
        for (u, out) in self
            .parent_name_raw
            .iter()
            .zip(l.parent_unicode_name.chunks_exact_mut(2))
        {
            out.copy_from_slice(&u.to_be_bytes());
        }
        for (p, out) in self.locators.iter().zip(l.parent_locators.iter_mut()) {
            out.platform_code = p.code;
            out.platform_data_space.set(p.data_space);
            out.platform_data_length.set(p.data_len);
            out.platform_data_offset.set(p.data_offset);
        }
        l.checksum.set(checksum(l.as_bytes()));
        let mut b = [0u8; HEADER_SIZE];
        b.copy_from_slice(l.as_bytes());
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
        let mut want = [0u8; HEADER_SIZE];
        let mut put = |at: usize, v: &[u8]| want[at..at + v.len()].copy_from_slice(v);
        put(offset_of!(DynHeaderLayout, cookie), b"cxsparse");
        put(offset_of!(DynHeaderLayout, data_offset), &[0xff; 8]);
        put(
            offset_of!(DynHeaderLayout, table_offset),
            &[0, 0, 0, 0, 0, 0, 6, 0],
        );
        put(offset_of!(DynHeaderLayout, header_version), &[0, 1, 0, 0]);
        put(
            offset_of!(DynHeaderLayout, max_table_entries),
            &[0, 0, 0, 3],
        );
        put(offset_of!(DynHeaderLayout, block_size), &[0, 0x20, 0, 0]);
        // sum: 8 cookie bytes + 8*255 + 6 + 1 + 3 + 0x20
        let cookie: u32 = b"cxsparse".iter().map(|&x| u32::from(x)).sum();
        let sum = cookie + 8 * 255 + 6 + 1 + 3 + 0x20;
        put(offset_of!(DynHeaderLayout, checksum), &(!sum).to_be_bytes());
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
