//! VHDX on-disk structures: pure parsers over bytes and encoders back to bytes.
//!
//! Everything here is little-endian (MS-VHDX v1.0). GUIDs are kept as the 16 bytes stored on
//! disk (Microsoft mixed-endian order: the first three fields little-endian).

use super::layout::*;
use crate::err;
use crate::error::Result;
use crate::guid::Guid;
use std::mem::offset_of;
use zerocopy::{FromBytes, IntoBytes};

/// One mebibyte.
pub const MIB: u64 = 1 << 20;
/// One kibibyte.
pub const KIB: u64 = 1 << 10;
/// Offset of the first header.
pub const HEADER1_OFFSET: u64 = 64 * KIB;
/// Offset of the second header.
pub const HEADER2_OFFSET: u64 = 128 * KIB;
/// Bytes covered by a header's checksum.
pub const HEADER_SIZE: usize = 4096;
/// Offset of the first region table.
pub const REGION1_OFFSET: u64 = 192 * KIB;
/// Offset of the second region table.
pub const REGION2_OFFSET: u64 = 256 * KIB;
/// Bytes covered by a region table's checksum.
pub const REGION_TABLE_SIZE: usize = 64 * 1024;
/// Largest entry count a region table may hold.
pub const REGION_MAX_ENTRIES: u32 = 2047;
/// Size of the metadata table at the start of the metadata region.
pub const METADATA_TABLE_SIZE: usize = 64 * 1024;
/// Largest entry count of the metadata table.
pub const METADATA_MAX_ENTRIES: u16 = 2047;
/// Largest virtual disk size the format allows (64 TiB).
pub const MAX_VIRTUAL_SIZE: u64 = 64 << 40;
/// Smallest block size.
pub const MIN_BLOCK_SIZE: u64 = MIB;
/// Largest block size.
pub const MAX_BLOCK_SIZE: u64 = 256 * MIB;
/// Sectors described by one sector bitmap block (2^23).
pub const SECTORS_PER_BITMAP: u64 = 1 << 23;

/// The GUID written `a-b-c-d` in the specification.
const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> Guid {
    Guid::from_fields(a, b, c, d)
}

/// Region: block allocation table.
pub const BAT_GUID: Guid = guid(
    0x2DC2_7766,
    0xF623,
    0x4200,
    [0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08],
);
/// Region: metadata.
pub const METADATA_GUID: Guid = guid(
    0x8B7C_A206,
    0x4790,
    0x4B9A,
    [0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E],
);
/// Metadata item: file parameters.
pub const FILE_PARAMETERS_GUID: Guid = guid(
    0xCAA1_6737,
    0xFA36,
    0x4D43,
    [0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B],
);
/// Metadata item: virtual disk size.
pub const VIRTUAL_DISK_SIZE_GUID: Guid = guid(
    0x2FA5_4224,
    0xCD1B,
    0x4876,
    [0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8],
);
/// Metadata item: page 83 data (virtual disk id).
pub const PAGE83_GUID: Guid = guid(
    0xBECA_12AB,
    0xB2E6,
    0x4523,
    [0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46],
);
/// Metadata item: logical sector size.
pub const LOGICAL_SECTOR_GUID: Guid = guid(
    0x8141_BF1D,
    0xA96F,
    0x4709,
    [0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F],
);
/// Metadata item: physical sector size.
pub const PHYSICAL_SECTOR_GUID: Guid = guid(
    0xCDA3_48C7,
    0x445D,
    0x4471,
    [0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51, 0xC5, 0x56],
);
/// Metadata item: parent locator.
pub const PARENT_LOCATOR_GUID: Guid = guid(
    0xA8D3_5F2D,
    0xB30B,
    0x454D,
    [0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C],
);
/// Parent locator type of a VHDX parent.
pub const PARENT_LOCATOR_TYPE_VHDX: Guid = guid(
    0xB04A_EFB7,
    0xD19E,
    0x4A81,
    [0xB7, 0x89, 0x25, 0xB8, 0xE9, 0x44, 0x59, 0x13],
);

/// Payload block states.
pub const PAYLOAD_NOT_PRESENT: u8 = 0;
/// Undefined content (reads as zeros or the parent's).
pub const PAYLOAD_UNDEFINED: u8 = 1;
/// Zeros.
pub const PAYLOAD_ZERO: u8 = 2;
/// Unmapped (trimmed).
pub const PAYLOAD_UNMAPPED: u8 = 3;
/// Stored in the file.
pub const PAYLOAD_FULLY_PRESENT: u8 = 6;
/// Partly stored (differencing): the sector bitmap says which sectors.
pub const PAYLOAD_PARTIALLY_PRESENT: u8 = 7;
/// Sector bitmap block absent.
pub const SB_NOT_PRESENT: u8 = 0;
/// Sector bitmap block present.
pub const SB_PRESENT: u8 = 6;

/// CRC-32C (Castagnoli) of `data`, as VHDX uses it.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// CRC-32C of `data` with the 4 bytes at `at` taken as zero.
pub fn crc32c_skipping(data: &[u8], at: usize) -> u32 {
    let head = data.get(..at).unwrap_or(data);
    let c = crc32c::crc32c(head);
    if data.len() < at + 4 {
        return c;
    }
    let c = crc32c::crc32c_append(c, &[0u8; 4]);
    crc32c::crc32c_append(c, &data[at + 4..])
}

/// Checks the CRC-32C stored little-endian at `sum_at` of `data` (a structure `s` at file offset
/// `at`) against the one computed with that field as zero.
fn check_crc32c(data: &[u8], sum_at: usize, s: &'static str, at: u64) -> Result<()> {
    let stored = le32(data, sum_at);
    let computed = crc32c_skipping(data, sum_at);
    if stored != computed {
        return Err(err!(
            BadChecksum,
            "CRC-32C stored 0x{stored:08x}, computed 0x{computed:08x}"
        )
        .with_structure(s)
        .with_field_at("checksum", sum_at)
        .at(at));
    }
    Ok(())
}

pub use crate::bytes::{le16, le32, le64, utf16le};

/// Encodes a string as UTF-16LE (no terminator).
pub fn to_utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// Reads layout `T` from the start of `b` (callers check the length first; bytes past a
/// short input read as zeros).
fn layout<T: FromBytes + IntoBytes>(b: &[u8]) -> T {
    match T::read_from_prefix(b) {
        Ok((t, _)) => t,
        Err(_) => {
            let mut t = T::new_zeroed();
            let n = b.len().min(size_of::<T>());
            t.as_mut_bytes()[..n].copy_from_slice(&b[..n]);
            t
        }
    }
}

/// The file type identifier at offset 0 ([`FileIdentifierLayout`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIdentifier {
    /// Creator application, as recorded.
    pub creator: String,
}

impl FileIdentifier {
    /// Parses the identifier (at least 8 bytes; the creator takes the next 512).
    pub fn parse(b: &[u8]) -> Result<Self> {
        let s = "VHDX file identifier";
        if b.len() < 8 {
            return Err(
                err!(Truncated, "file identifier needs 8 bytes, have {}", b.len())
                    .with_structure(s)
                    .at(0),
            );
        }
        if &b[..8] != b"vhdxfile" {
            return Err(err!(BadSignature, "signature is not \"vhdxfile\"")
                .with_structure(s)
                .with_field_at("signature", 0)
                .at(0));
        }
        let end = b.len().min(size_of::<FileIdentifierLayout>());
        Ok(FileIdentifier {
            creator: utf16le(&b[offset_of!(FileIdentifierLayout, creator)..end]),
        })
    }

    /// The identifier's 64 KiB structure.
    pub fn encode(&self) -> Vec<u8> {
        let mut id = FileIdentifierLayout {
            signature: *b"vhdxfile",
            creator: [0; 512],
        };
        let c = to_utf16le(&self.creator);
        let n = c.len().min(510);
        id.creator[..n].copy_from_slice(&c[..n]);
        let mut b = vec![0u8; 64 * 1024];
        b[..size_of::<FileIdentifierLayout>()].copy_from_slice(id.as_bytes());
        b
    }
}

/// A VHDX header (one of the two copies; [`HeaderLayout`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Sequence number: the valid header with the higher one is current.
    pub sequence: u64,
    /// Changes whenever the file is written.
    pub file_write_guid: Guid,
    /// Changes whenever the virtual disk's content is written.
    pub data_write_guid: Guid,
    /// Non-nil when the log holds entries to replay.
    pub log_guid: Guid,
    /// Log format version (0).
    pub log_version: u16,
    /// Header version (1).
    pub version: u16,
    /// Log length in bytes (multiple of 1 MiB).
    pub log_length: u32,
    /// Log offset in the file (multiple of 1 MiB).
    pub log_offset: u64,
}

impl Header {
    /// Parses and verifies a 4 KiB header found at file offset `at` (for error locations).
    pub fn parse(b: &[u8], at: u64) -> Result<Self> {
        let s = "VHDX header";
        if b.len() < HEADER_SIZE {
            return Err(err!(Truncated, "header needs 4096 bytes, have {}", b.len())
                .with_structure(s)
                .at(at));
        }
        let b = &b[..HEADER_SIZE];
        let l: HeaderLayout = layout(b);
        if &l.signature != b"head" {
            return Err(err!(BadSignature, "signature is not \"head\"")
                .with_structure(s)
                .with_field_at("signature", 0)
                .at(at));
        }
        check_crc32c(b, offset_of!(HeaderLayout, checksum), s, at)?;
        let h = Header {
            sequence: l.sequence_number.get(),
            file_write_guid: Guid::from_mixed_endian(l.file_write_guid),
            data_write_guid: Guid::from_mixed_endian(l.data_write_guid),
            log_guid: Guid::from_mixed_endian(l.log_guid),
            log_version: l.log_version.get(),
            version: l.version.get(),
            log_length: l.log_length.get(),
            log_offset: l.log_offset.get(),
        };
        if h.version != 1 {
            return Err(err!(
                Unsupported,
                "header version {} (only 1 is defined)",
                h.version
            )
            .with_structure(s)
            .with_field_at("version", offset_of!(HeaderLayout, version))
            .at(at));
        }
        Ok(h)
    }

    /// The 4 KiB header with its checksum.
    pub fn encode(&self) -> Vec<u8> {
        let l = HeaderLayout {
            signature: *b"head",
            checksum: 0.into(),
            sequence_number: self.sequence.into(),
            file_write_guid: self.file_write_guid.to_mixed_endian(),
            data_write_guid: self.data_write_guid.to_mixed_endian(),
            log_guid: self.log_guid.to_mixed_endian(),
            log_version: self.log_version.into(),
            version: self.version.into(),
            log_length: self.log_length.into(),
            log_offset: self.log_offset.into(),
        };
        let mut b = vec![0u8; HEADER_SIZE];
        b[..size_of::<HeaderLayout>()].copy_from_slice(l.as_bytes());
        let c = crc32c(&b);
        let sum_at = offset_of!(HeaderLayout, checksum);
        b[sum_at..sum_at + 4].copy_from_slice(&c.to_le_bytes());
        b
    }
}

/// One region table entry ([`RegionEntryLayout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionEntry {
    /// Region type.
    pub guid: Guid,
    /// File offset (multiple of 1 MiB).
    pub offset: u64,
    /// Length (multiple of 1 MiB).
    pub length: u32,
    /// The reader must understand this region.
    pub required: bool,
}

impl RegionEntry {
    fn from_layout(l: &RegionEntryLayout) -> Self {
        RegionEntry {
            guid: Guid::from_mixed_endian(l.guid),
            offset: l.file_offset.get(),
            length: l.length.get(),
            required: l.required.get() & 1 == 1,
        }
    }

    fn to_layout(self) -> RegionEntryLayout {
        RegionEntryLayout {
            guid: self.guid.to_mixed_endian(),
            file_offset: self.offset.into(),
            length: self.length.into(),
            required: u32::from(self.required).into(),
        }
    }
}

/// The region table ([`RegionTableHeaderLayout`] and entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionTable {
    /// Entries in stored order.
    pub entries: Vec<RegionEntry>,
}

/// Bytes of a region table header / entry.
pub(super) const RT_HEAD: usize = size_of::<RegionTableHeaderLayout>();
pub(super) const RT_ENTRY: usize = size_of::<RegionEntryLayout>();

impl RegionTable {
    /// Parses and verifies a 64 KiB region table found at `at`. With `check_crc` false (for
    /// fragments shorter than 64 KiB) the checksum is not verified.
    pub fn parse(b: &[u8], at: u64, check_crc: bool) -> Result<Self> {
        let s = "VHDX region table";
        if b.len() < RT_HEAD {
            return Err(err!(Truncated, "region table header needs 16 bytes")
                .with_structure(s)
                .at(at));
        }
        let h: RegionTableHeaderLayout = layout(b);
        if &h.signature != b"regi" {
            return Err(err!(BadSignature, "signature is not \"regi\"")
                .with_structure(s)
                .with_field_at("signature", 0)
                .at(at));
        }
        if check_crc {
            Self::check_crc(b, at)?;
        }
        let count = h.entry_count.get();
        if count > REGION_MAX_ENTRIES {
            let f = offset_of!(RegionTableHeaderLayout, entry_count);
            return Err(err!(AbsurdSize, "{count} region entries (at most 2047)")
                .with_structure(s)
                .with_field_at("entry count", f)
                .at(at + f as u64));
        }
        let need = RT_HEAD + count as usize * RT_ENTRY;
        if b.len() < need {
            return Err(err!(Truncated, "{count} region entries need {need} bytes")
                .with_structure(s)
                .at(at));
        }
        let entries = b[RT_HEAD..need]
            .chunks_exact(RT_ENTRY)
            .map(|e| RegionEntry::from_layout(&layout(e)))
            .collect();
        Ok(RegionTable { entries })
    }

    /// The 64 KiB table's CRC-32C.
    fn check_crc(b: &[u8], at: u64) -> Result<()> {
        let s = "VHDX region table";
        if b.len() < REGION_TABLE_SIZE {
            return Err(err!(Truncated, "region table needs 64 KiB")
                .with_structure(s)
                .at(at));
        }
        let sum_at = offset_of!(RegionTableHeaderLayout, checksum);
        check_crc32c(&b[..REGION_TABLE_SIZE], sum_at, s, at)
    }

    /// The 64 KiB table with its checksum.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; REGION_TABLE_SIZE];
        let h = RegionTableHeaderLayout {
            signature: *b"regi",
            checksum: 0.into(),
            entry_count: (self.entries.len() as u32).into(),
            reserved: 0.into(),
        };
        b[..RT_HEAD].copy_from_slice(h.as_bytes());
        for (e, out) in self
            .entries
            .iter()
            .zip(b[RT_HEAD..].chunks_exact_mut(RT_ENTRY))
        {
            out.copy_from_slice(e.to_layout().as_bytes());
        }
        let c = crc32c(&b);
        let at = offset_of!(RegionTableHeaderLayout, checksum);
        b[at..at + 4].copy_from_slice(&c.to_le_bytes());
        b
    }
}

/// One metadata table entry ([`MetadataEntryLayout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataEntry {
    /// Item id.
    pub guid: Guid,
    /// Offset from the start of the metadata region.
    pub offset: u32,
    /// Length in bytes.
    pub length: u32,
    /// User metadata (not system).
    pub is_user: bool,
    /// Describes the virtual disk (copied to a child).
    pub is_virtual_disk: bool,
    /// The reader must understand the item.
    pub is_required: bool,
}

impl MetadataEntry {
    /// Parses a 32-byte entry.
    pub fn parse(b: &[u8]) -> Self {
        let l: MetadataEntryLayout = layout(b);
        let flags = l.flags.get();
        MetadataEntry {
            guid: Guid::from_mixed_endian(l.item_id),
            offset: l.offset.get(),
            length: l.length.get(),
            is_user: flags & 1 != 0,
            is_virtual_disk: flags & 2 != 0,
            is_required: flags & 4 != 0,
        }
    }

    /// The 32-byte entry.
    pub fn encode(&self) -> [u8; 32] {
        let flags = u32::from(self.is_user)
            | (u32::from(self.is_virtual_disk) << 1)
            | (u32::from(self.is_required) << 2);
        let l = MetadataEntryLayout {
            item_id: self.guid.to_mixed_endian(),
            offset: self.offset.into(),
            length: self.length.into(),
            flags: flags.into(),
            reserved: 0.into(),
        };
        let mut b = [0u8; 32];
        b.copy_from_slice(l.as_bytes());
        b
    }
}

/// The metadata table (first 64 KiB of the metadata region).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataTable {
    /// Entries in stored order.
    pub entries: Vec<MetadataEntry>,
}

/// Bytes of the metadata table header / an entry.
const MT_HEAD: usize = size_of::<MetadataTableHeaderLayout>();
const MT_ENTRY: usize = size_of::<MetadataEntryLayout>();

impl MetadataTable {
    /// Parses the table found at file offset `at`.
    pub fn parse(b: &[u8], at: u64) -> Result<Self> {
        let s = "VHDX metadata table";
        if b.len() < MT_HEAD {
            return Err(err!(Truncated, "metadata table header needs 32 bytes")
                .with_structure(s)
                .at(at));
        }
        let h: MetadataTableHeaderLayout = layout(b);
        if &h.signature != b"metadata" {
            return Err(err!(BadSignature, "signature is not \"metadata\"")
                .with_structure(s)
                .with_field_at("signature", 0)
                .at(at));
        }
        let count = h.entry_count.get();
        if count > METADATA_MAX_ENTRIES {
            let f = offset_of!(MetadataTableHeaderLayout, entry_count);
            return Err(err!(AbsurdSize, "{count} metadata entries (at most 2047)")
                .with_structure(s)
                .with_field_at("entry count", f)
                .at(at + f as u64));
        }
        let need = MT_HEAD + count as usize * MT_ENTRY;
        if b.len() < need {
            return Err(
                err!(Truncated, "{count} metadata entries need {need} bytes")
                    .with_structure(s)
                    .at(at),
            );
        }
        let entries = b[MT_HEAD..need]
            .chunks_exact(MT_ENTRY)
            .map(MetadataEntry::parse)
            .collect();
        Ok(MetadataTable { entries })
    }

    /// The 64 KiB table.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; METADATA_TABLE_SIZE];
        let h = MetadataTableHeaderLayout {
            signature: *b"metadata",
            reserved: 0.into(),
            entry_count: (self.entries.len() as u16).into(),
            reserved2: [0; 20],
        };
        b[..MT_HEAD].copy_from_slice(h.as_bytes());
        for (e, out) in self
            .entries
            .iter()
            .zip(b[MT_HEAD..].chunks_exact_mut(MT_ENTRY))
        {
            out.copy_from_slice(&e.encode());
        }
        b
    }
}

/// File parameters item ([`FileParametersLayout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileParameters {
    /// Block size in bytes.
    pub block_size: u32,
    /// Blocks stay allocated (fixed disks).
    pub leave_blocks_allocated: bool,
    /// Differencing disk.
    pub has_parent: bool,
}

impl FileParameters {
    /// Parses the 8-byte item.
    pub fn parse(b: &[u8]) -> Self {
        let l: FileParametersLayout = layout(b);
        let flags = l.flags.get();
        FileParameters {
            block_size: l.block_size.get(),
            leave_blocks_allocated: flags & 1 != 0,
            has_parent: flags & 2 != 0,
        }
    }

    /// The 8-byte item.
    pub fn encode(&self) -> [u8; 8] {
        let flags = u32::from(self.leave_blocks_allocated) | (u32::from(self.has_parent) << 1);
        let l = FileParametersLayout {
            block_size: self.block_size.into(),
            flags: flags.into(),
        };
        let mut b = [0u8; 8];
        b.copy_from_slice(l.as_bytes());
        b
    }
}

/// A parent locator: its type and key/value pairs ([`ParentLocatorHeaderLayout`],
/// [`ParentLocatorEntryLayout`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentLocator {
    /// Locator type.
    pub locator_type: Guid,
    /// Key/value pairs in stored order.
    pub entries: Vec<(String, String)>,
}

/// Bytes of the parent locator header / a key-value entry.
const PL_HEAD: usize = size_of::<ParentLocatorHeaderLayout>();
const PL_ENTRY: usize = size_of::<ParentLocatorEntryLayout>();

impl ParentLocator {
    /// Parses a parent locator item of `b.len()` bytes found at file offset `at`.
    pub fn parse(b: &[u8], at: u64) -> Result<Self> {
        let s = "VHDX parent locator";
        if b.len() < PL_HEAD {
            return Err(err!(Truncated, "parent locator header needs 20 bytes")
                .with_structure(s)
                .at(at));
        }
        let h: ParentLocatorHeaderLayout = layout(b);
        let count = h.key_value_count.get() as usize;
        if PL_HEAD + count * PL_ENTRY > b.len() {
            let f = offset_of!(ParentLocatorHeaderLayout, key_value_count);
            return Err(
                err!(AbsurdSize, "{count} key/value entries do not fit the item")
                    .with_structure(s)
                    .with_field_at("key/value count", f)
                    .at(at + f as u64),
            );
        }
        let mut entries = Vec::with_capacity(count);
        for i in 0..count {
            let o = PL_HEAD + i * PL_ENTRY;
            let e: ParentLocatorEntryLayout = layout(&b[o..]);
            let (ko, vo) = (e.key_offset.get() as usize, e.value_offset.get() as usize);
            let (kl, vl) = (e.key_length.get() as usize, e.value_length.get() as usize);
            let key = b.get(ko..ko.saturating_add(kl)).ok_or_else(|| {
                err!(BadField, "key {i} ({ko}+{kl}) lies outside the item")
                    .with_structure(s)
                    .with_field("key offset")
                    .at(at + o as u64)
            })?;
            let val = b.get(vo..vo.saturating_add(vl)).ok_or_else(|| {
                err!(BadField, "value {i} ({vo}+{vl}) lies outside the item")
                    .with_structure(s)
                    .with_field("value offset")
                    .at(at + o as u64)
            })?;
            entries.push((utf16le(key), utf16le(val)));
        }
        Ok(ParentLocator {
            locator_type: Guid::from_mixed_endian(h.locator_type),
            entries,
        })
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The item's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let h = ParentLocatorHeaderLayout {
            locator_type: self.locator_type.to_mixed_endian(),
            reserved: 0.into(),
            key_value_count: (self.entries.len() as u16).into(),
        };
        let mut b = h.as_bytes().to_vec();
        b.resize(PL_HEAD + self.entries.len() * PL_ENTRY, 0);
        for (i, (k, v)) in self.entries.iter().enumerate() {
            let kb = to_utf16le(k);
            let vb = to_utf16le(v);
            let e = ParentLocatorEntryLayout {
                key_offset: (b.len() as u32).into(),
                value_offset: ((b.len() + kb.len()) as u32).into(),
                key_length: (kb.len() as u16).into(),
                value_length: (vb.len() as u16).into(),
            };
            b.extend_from_slice(&kb);
            b.extend_from_slice(&vb);
            let o = PL_HEAD + i * PL_ENTRY;
            b[o..o + PL_ENTRY].copy_from_slice(e.as_bytes());
        }
        b
    }
}

/// Geometry of the BAT for given parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatGeometry {
    /// Payload blocks per sector bitmap block.
    pub chunk_ratio: u64,
    /// Payload blocks covering the virtual size.
    pub data_blocks: u64,
    /// Sector bitmap blocks (chunks).
    pub bitmap_blocks: u64,
    /// Total BAT entries.
    pub entries: u64,
}

impl BatGeometry {
    /// Computes the geometry (parameters must already be validated: block size and sector size
    /// non-zero, block size dividing 2^23 * sector size).
    pub fn new(
        virtual_size: u64,
        block_size: u64,
        logical_sector: u64,
        differencing: bool,
    ) -> Self {
        let chunk_ratio = (SECTORS_PER_BITMAP * logical_sector / block_size).max(1);
        let data_blocks = virtual_size.div_ceil(block_size);
        let bitmap_blocks = data_blocks.div_ceil(chunk_ratio);
        let entries = if differencing {
            bitmap_blocks * (chunk_ratio + 1)
        } else if data_blocks == 0 {
            0
        } else {
            data_blocks + (data_blocks - 1) / chunk_ratio
        };
        BatGeometry {
            chunk_ratio,
            data_blocks,
            bitmap_blocks,
            entries,
        }
    }

    /// BAT index of payload block `block`.
    pub fn payload_index(&self, block: u64) -> u64 {
        block + block / self.chunk_ratio
    }

    /// BAT index of the sector bitmap entry of chunk `chunk`.
    pub fn bitmap_index(&self, chunk: u64) -> u64 {
        chunk * (self.chunk_ratio + 1) + self.chunk_ratio
    }
}

/// Validates a block size: a power of two in 1 MiB..=256 MiB.
pub fn valid_block_size(bs: u64) -> bool {
    bs.is_power_of_two() && (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs)
}

/// Validates a sector size: 512 or 4096.
pub fn valid_sector_size(s: u64) -> bool {
    s == 512 || s == 4096
}

/// BAT entry: state ([`BatEntry::state`]).
pub fn bat_state(e: u64) -> u8 {
    BatEntry::from_raw(e).state()
}

/// BAT entry: file offset in bytes ([`BatEntry::file_offset`]).
pub fn bat_offset(e: u64) -> u64 {
    BatEntry::from_raw(e).file_offset()
}

/// A BAT entry for `state` at byte offset `offset` (a multiple of 1 MiB; [`BatEntry::new`]).
pub fn bat_entry(state: u8, offset: u64) -> u64 {
    BatEntry::new(state, offset).raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAG: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/testdata/thirdparty/fragments/"
    );

    fn frag(name: &str) -> Vec<u8> {
        let p = format!("{FRAG}libvhdi-{name}.1");
        std::fs::read(&p).unwrap_or_else(|e| panic!("fixture {p} missing: {e}"))
    }

    #[test]
    fn crc32c_known_vector() {
        // RFC 3720 (iSCSI) test vector: 32 bytes of zeros -> 0x8a9136aa.
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        let mut d = b"abcdXXXXefgh".to_vec();
        let skip = crc32c_skipping(&d, 4);
        d[4..8].fill(0);
        assert_eq!(skip, crc32c(&d));
    }

    #[test]
    fn guids_are_mixed_endian() {
        assert_eq!(
            BAT_GUID.to_mixed_endian(),
            [
                0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd,
                0x4a, 0x08
            ]
        );
        assert_eq!(
            METADATA_GUID.to_string(),
            "8b7ca206-4790-4b9a-b8fe-575f050f886e"
        );
    }

    #[test]
    fn windows_file_identifier() {
        let f = FileIdentifier::parse(&frag("file_identifier")).unwrap();
        assert_eq!(f.creator, "Microsoft Windows 10.0.19041.0");
        let enc = FileIdentifier {
            creator: "isotool 1".into(),
        }
        .encode();
        assert_eq!(&enc[..10], b"vhdxfilei\0");
        assert_eq!(FileIdentifier::parse(&enc).unwrap().creator, "isotool 1");
        let mut bad = enc.clone();
        bad[0] = b'V';
        assert_eq!(
            FileIdentifier::parse(&bad).unwrap_err().kind(),
            crate::ErrorKind::BadSignature
        );
    }

    #[test]
    fn windows_header() {
        let b = frag("image_header");
        let h = Header::parse(&b, HEADER1_OFFSET).unwrap();
        assert_eq!(le32(&b, 4), 0x9f69_b235);
        assert_eq!(h.sequence, 6);
        assert_eq!(h.version, 1);
        assert_eq!(h.log_version, 0);
        assert_eq!(h.log_length, 1 << 20);
        assert_eq!(h.log_offset, 1 << 20);
        // Re-encoding gives back the same bytes (the reserved area is zero in the fragment).
        assert_eq!(h.encode(), b);
        let mut bad = b.clone();
        bad[100] ^= 1;
        let e = Header::parse(&bad, HEADER2_OFFSET).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::BadChecksum);
        assert_eq!(e.offset(), Some(HEADER2_OFFSET));
        let mut bad = b.clone();
        bad[0] = b'H';
        assert_eq!(
            Header::parse(&bad, 0).unwrap_err().kind(),
            crate::ErrorKind::BadSignature
        );
        assert_eq!(
            Header::parse(&b[..100], 0).unwrap_err().kind(),
            crate::ErrorKind::Truncated
        );
    }

    #[test]
    fn windows_region_table() {
        let b = frag("region_table");
        let t = RegionTable::parse(&b, REGION1_OFFSET, false).unwrap();
        assert_eq!(t.entries.len(), 2);
        assert_eq!(t.entries[0].guid, BAT_GUID);
        assert_eq!(t.entries[0].offset, 3 * MIB);
        assert_eq!(t.entries[0].length, MIB as u32);
        assert!(t.entries[0].required);
        assert_eq!(t.entries[1].guid, METADATA_GUID);
        assert_eq!(t.entries[1].offset, 2 * MIB);
        assert!(t.entries[1].required);
        // The table is 64 KiB with zeros after the entries: its CRC verifies once padded.
        let mut full = b.clone();
        full.resize(REGION_TABLE_SIZE, 0);
        assert!(RegionTable::parse(&full, REGION1_OFFSET, true).is_ok());
        assert_eq!(t.encode(), full);
        let h = frag("region_table_header");
        assert_eq!(&h[..], &b[..16]);
        let e = frag("region_table_entry");
        assert_eq!(&e[..], &b[16..48]);
        full[40] ^= 0x10;
        assert_eq!(
            RegionTable::parse(&full, 0, true).unwrap_err().kind(),
            crate::ErrorKind::BadChecksum
        );
        let mut many = b.clone();
        many[8..12].copy_from_slice(&5000u32.to_le_bytes());
        assert_eq!(
            RegionTable::parse(&many, 0, false).unwrap_err().kind(),
            crate::ErrorKind::AbsurdSize
        );
    }

    #[test]
    fn windows_metadata_table() {
        let h = frag("metadata_table_header");
        assert_eq!(&h[..8], b"metadata");
        assert_eq!(le16(&h, 10), 5);
        let e = MetadataEntry::parse(&frag("metadata_table_entry"));
        assert_eq!(e.guid, FILE_PARAMETERS_GUID);
        assert_eq!(e.offset, 0x10000);
        assert_eq!(e.length, 8);
        assert!(e.is_required && !e.is_user && !e.is_virtual_disk);
        assert_eq!(e.encode().to_vec(), frag("metadata_table_entry"));
        // A table with the header's count but no entries is truncated.
        assert_eq!(
            MetadataTable::parse(&h, 0).unwrap_err().kind(),
            crate::ErrorKind::Truncated
        );
        let t = MetadataTable {
            entries: vec![e, e],
        };
        let enc = t.encode();
        assert_eq!(&enc[..8], b"metadata");
        assert_eq!(MetadataTable::parse(&enc, 0).unwrap(), t);
        let mut bad = enc.clone();
        bad[3] = b'X';
        assert_eq!(
            MetadataTable::parse(&bad, 0).unwrap_err().kind(),
            crate::ErrorKind::BadSignature
        );
    }

    #[test]
    fn windows_parent_locator() {
        let h = frag("parent_locator_header");
        assert_eq!(
            Guid::from_mixed_endian(h[..16].try_into().unwrap()),
            PARENT_LOCATOR_TYPE_VHDX
        );
        assert_eq!(le16(&h, 18), 5);
        let e = frag("parent_locator_entry");
        // key at 0x50 (28 bytes: "parent_linkage"), value at 0x6c (76 bytes: a braced GUID)
        assert_eq!(le32(&e, 0), 0x50);
        assert_eq!(le32(&e, 4), 0x6c);
        assert_eq!(le16(&e, 8) as usize, "parent_linkage".len() * 2);
        assert_eq!(le16(&e, 10) as usize, 38 * 2);
        let pl = ParentLocator {
            locator_type: PARENT_LOCATOR_TYPE_VHDX,
            entries: vec![
                (
                    "parent_linkage".into(),
                    "{00000000-0000-0000-0000-000000000001}".into(),
                ),
                ("relative_path".into(), ".\\p.vhdx".into()),
            ],
        };
        let b = pl.encode();
        assert_eq!(ParentLocator::parse(&b, 0).unwrap(), pl);
        let mut bad = b.clone();
        bad[20..24].copy_from_slice(&9999u32.to_le_bytes());
        assert_eq!(
            ParentLocator::parse(&bad, 0).unwrap_err().kind(),
            crate::ErrorKind::BadField
        );
    }

    #[test]
    fn file_parameters_golden() {
        let p = FileParameters {
            block_size: 32 << 20,
            leave_blocks_allocated: true,
            has_parent: false,
        };
        assert_eq!(p.encode(), [0, 0, 0, 2, 1, 0, 0, 0]);
        assert_eq!(FileParameters::parse(&p.encode()), p);
    }

    #[test]
    fn header_golden() {
        let h = Header {
            sequence: 1,
            file_write_guid: Guid::from_bytes([1; 16]),
            data_write_guid: Guid::from_bytes([2; 16]),
            log_guid: Guid::NIL,
            log_version: 0,
            version: 1,
            log_length: MIB as u32,
            log_offset: MIB,
        };
        let b = h.encode();
        assert_eq!(&b[..4], b"head");
        assert_eq!(le32(&b, 4), crc32c_skipping(&b, 4));
        assert_eq!(
            &b[64..80],
            &[0, 0, 1, 0, 0, 0, 0x10, 0, 0, 0, 0x10, 0, 0, 0, 0, 0]
        );
        assert_eq!(Header::parse(&b, 0).unwrap(), h);
    }

    #[test]
    fn chunk_ratio_and_bat_entries() {
        let g = BatGeometry::new(10 << 30, MIB, 512, false);
        assert_eq!(g.chunk_ratio, 4096);
        assert_eq!(g.data_blocks, 10 * 1024);
        // 10240 payload entries + 2 bitmap entries interleaved (after blocks 4096 and 8192)
        assert_eq!(g.entries, 10240 + 2);
        let g = BatGeometry::new(1 << 40, 256 * MIB, 4096, false);
        assert_eq!(g.chunk_ratio, 128);
        let g = BatGeometry::new(32 << 30, 32 * MIB, 512, false);
        assert_eq!(g.chunk_ratio, 128);
        assert_eq!(g.entries, 1024 + 7);
        let g = BatGeometry::new(4 << 30, MIB, 512, false);
        assert_eq!(g.entries, 4096);
        let g = BatGeometry::new((4 << 30) + 1, MIB, 512, false);
        assert_eq!(g.entries, 4097 + 1);
        assert_eq!(g.payload_index(4096), 4097);
        assert_eq!(g.bitmap_index(0), 4096);
        let g = BatGeometry::new(5 << 30, MIB, 512, true);
        assert_eq!(g.bitmap_blocks, 2);
        assert_eq!(g.entries, 2 * 4097);
        assert_eq!(bat_entry(6, 5 * MIB), (5 << 20) | 6);
        assert_eq!(bat_offset((5 << 20) | 6), 5 * MIB);
        assert_eq!(bat_state((5 << 20) | 6), 6);
    }
}
