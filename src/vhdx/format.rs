//! VHDX on-disk structures: pure parsers over bytes and encoders back to bytes.
//!
//! Everything here is little-endian (MS-VHDX v1.0). GUIDs are kept as the 16 bytes stored on
//! disk (Microsoft mixed-endian order: the first three fields little-endian).

use crate::err;
use crate::error::Result;

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

/// Builds the on-disk (mixed-endian) bytes of GUID `a-b-c-d`.
pub const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

/// Region: block allocation table.
pub const BAT_GUID: [u8; 16] = guid(
    0x2DC2_7766,
    0xF623,
    0x4200,
    [0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08],
);
/// Region: metadata.
pub const METADATA_GUID: [u8; 16] = guid(
    0x8B7C_A206,
    0x4790,
    0x4B9A,
    [0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E],
);
/// Metadata item: file parameters.
pub const FILE_PARAMETERS_GUID: [u8; 16] = guid(
    0xCAA1_6737,
    0xFA36,
    0x4D43,
    [0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B],
);
/// Metadata item: virtual disk size.
pub const VIRTUAL_DISK_SIZE_GUID: [u8; 16] = guid(
    0x2FA5_4224,
    0xCD1B,
    0x4876,
    [0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8],
);
/// Metadata item: page 83 data (virtual disk id).
pub const PAGE83_GUID: [u8; 16] = guid(
    0xBECA_12AB,
    0xB2E6,
    0x4523,
    [0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46],
);
/// Metadata item: logical sector size.
pub const LOGICAL_SECTOR_GUID: [u8; 16] = guid(
    0x8141_BF1D,
    0xA96F,
    0x4709,
    [0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F],
);
/// Metadata item: physical sector size.
pub const PHYSICAL_SECTOR_GUID: [u8; 16] = guid(
    0xCDA3_48C7,
    0x445D,
    0x4471,
    [0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51, 0xC5, 0x56],
);
/// Metadata item: parent locator.
pub const PARENT_LOCATOR_GUID: [u8; 16] = guid(
    0xA8D3_5F2D,
    0xB30B,
    0x454D,
    [0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C],
);
/// Parent locator type of a VHDX parent.
pub const PARENT_LOCATOR_TYPE_VHDX: [u8; 16] = guid(
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

fn guid_at(b: &[u8], o: usize) -> [u8; 16] {
    let mut x = [0u8; 16];
    if let Some(s) = b.get(o..o + 16) {
        x.copy_from_slice(s);
    }
    x
}

pub use crate::bytes::{le16, le32, le64, utf16le};

/// Encodes a string as UTF-16LE (no terminator).
pub fn to_utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// Converts a GUID in RFC 4122 byte order (as [`crate::context::BuildContext::guid`] gives)
/// into the on-disk mixed-endian order.
pub fn guid_to_disk(g: [u8; 16]) -> [u8; 16] {
    let mut d = g;
    d[0..4].reverse();
    d[4..6].reverse();
    d[6..8].reverse();
    d
}

/// `{XXXXXXXX-XXXX-...}` form of an on-disk GUID, as parent locators store it.
pub fn guid_braced(g: &[u8; 16]) -> String {
    format!("{{{}}}", crate::context::guid_string_le(g))
}

/// The file type identifier at offset 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIdentifier {
    /// Creator application, as recorded.
    pub creator: String,
}

impl FileIdentifier {
    /// Parses the identifier (at least 8 bytes; the creator takes the next 512).
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() < 8 {
            return Err(
                err!(Truncated, "file identifier needs 8 bytes, have {}", b.len())
                    .with_structure("VHDX file identifier")
                    .at(0),
            );
        }
        if &b[..8] != b"vhdxfile" {
            return Err(err!(BadSignature, "signature is not \"vhdxfile\"")
                .with_structure("VHDX file identifier")
                .at(0));
        }
        let end = b.len().min(8 + 512);
        Ok(FileIdentifier {
            creator: utf16le(&b[8..end]),
        })
    }

    /// The identifier's 64 KiB structure.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; 64 * 1024];
        b[..8].copy_from_slice(b"vhdxfile");
        let c = to_utf16le(&self.creator);
        let n = c.len().min(510);
        b[8..8 + n].copy_from_slice(&c[..n]);
        b
    }
}

/// A VHDX header (one of the two copies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Sequence number: the valid header with the higher one is current.
    pub sequence: u64,
    /// Changes whenever the file is written.
    pub file_write_guid: [u8; 16],
    /// Changes whenever the virtual disk's content is written.
    pub data_write_guid: [u8; 16],
    /// Non-zero when the log holds entries to replay.
    pub log_guid: [u8; 16],
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
        if &b[..4] != b"head" {
            return Err(err!(BadSignature, "signature is not \"head\"")
                .with_structure(s)
                .at(at));
        }
        let stored = le32(b, 4);
        let computed = crc32c_skipping(b, 4);
        if stored != computed {
            return Err(err!(
                BadChecksum,
                "CRC-32C stored 0x{stored:08x}, computed 0x{computed:08x}"
            )
            .with_structure(s)
            .at(at));
        }
        let h = Header {
            sequence: le64(b, 8),
            file_write_guid: guid_at(b, 16),
            data_write_guid: guid_at(b, 32),
            log_guid: guid_at(b, 48),
            log_version: le16(b, 64),
            version: le16(b, 66),
            log_length: le32(b, 68),
            log_offset: le64(b, 72),
        };
        if h.version != 1 {
            return Err(err!(
                Unsupported,
                "header version {} (only 1 is defined)",
                h.version
            )
            .with_structure(s)
            .at(at));
        }
        Ok(h)
    }

    /// The 4 KiB header with its checksum.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_SIZE];
        b[..4].copy_from_slice(b"head");
        b[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        b[16..32].copy_from_slice(&self.file_write_guid);
        b[32..48].copy_from_slice(&self.data_write_guid);
        b[48..64].copy_from_slice(&self.log_guid);
        b[64..66].copy_from_slice(&self.log_version.to_le_bytes());
        b[66..68].copy_from_slice(&self.version.to_le_bytes());
        b[68..72].copy_from_slice(&self.log_length.to_le_bytes());
        b[72..80].copy_from_slice(&self.log_offset.to_le_bytes());
        let c = crc32c(&b);
        b[4..8].copy_from_slice(&c.to_le_bytes());
        b
    }
}

/// One region table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionEntry {
    /// Region type.
    pub guid: [u8; 16],
    /// File offset (multiple of 1 MiB).
    pub offset: u64,
    /// Length (multiple of 1 MiB).
    pub length: u32,
    /// The reader must understand this region.
    pub required: bool,
}

/// The region table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionTable {
    /// Entries in stored order.
    pub entries: Vec<RegionEntry>,
}

impl RegionTable {
    /// Parses and verifies a 64 KiB region table found at `at`. With `check_crc` false (for
    /// fragments shorter than 64 KiB) the checksum is not verified.
    pub fn parse(b: &[u8], at: u64, check_crc: bool) -> Result<Self> {
        let s = "VHDX region table";
        if b.len() < 16 {
            return Err(err!(Truncated, "region table header needs 16 bytes")
                .with_structure(s)
                .at(at));
        }
        if &b[..4] != b"regi" {
            return Err(err!(BadSignature, "signature is not \"regi\"")
                .with_structure(s)
                .at(at));
        }
        if check_crc {
            if b.len() < REGION_TABLE_SIZE {
                return Err(err!(Truncated, "region table needs 64 KiB")
                    .with_structure(s)
                    .at(at));
            }
            let t = &b[..REGION_TABLE_SIZE];
            let stored = le32(t, 4);
            let computed = crc32c_skipping(t, 4);
            if stored != computed {
                return Err(err!(
                    BadChecksum,
                    "CRC-32C stored 0x{stored:08x}, computed 0x{computed:08x}"
                )
                .with_structure(s)
                .at(at));
            }
        }
        let count = le32(b, 8);
        if count > REGION_MAX_ENTRIES {
            return Err(err!(AbsurdSize, "{count} region entries (at most 2047)")
                .with_structure(s)
                .at(at + 8));
        }
        let need = 16 + count as usize * 32;
        if b.len() < need {
            return Err(err!(Truncated, "{count} region entries need {need} bytes")
                .with_structure(s)
                .at(at));
        }
        let entries = (0..count as usize)
            .map(|i| {
                let o = 16 + i * 32;
                RegionEntry {
                    guid: guid_at(b, o),
                    offset: le64(b, o + 16),
                    length: le32(b, o + 24),
                    required: le32(b, o + 28) & 1 == 1,
                }
            })
            .collect();
        Ok(RegionTable { entries })
    }

    /// The 64 KiB table with its checksum.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; REGION_TABLE_SIZE];
        b[..4].copy_from_slice(b"regi");
        b[8..12].copy_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for (i, e) in self.entries.iter().enumerate() {
            let o = 16 + i * 32;
            b[o..o + 16].copy_from_slice(&e.guid);
            b[o + 16..o + 24].copy_from_slice(&e.offset.to_le_bytes());
            b[o + 24..o + 28].copy_from_slice(&e.length.to_le_bytes());
            b[o + 28..o + 32].copy_from_slice(&u32::from(e.required).to_le_bytes());
        }
        let c = crc32c(&b);
        b[4..8].copy_from_slice(&c.to_le_bytes());
        b
    }
}

/// One metadata table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataEntry {
    /// Item id.
    pub guid: [u8; 16],
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
        let flags = le32(b, 24);
        MetadataEntry {
            guid: guid_at(b, 0),
            offset: le32(b, 16),
            length: le32(b, 20),
            is_user: flags & 1 != 0,
            is_virtual_disk: flags & 2 != 0,
            is_required: flags & 4 != 0,
        }
    }

    /// The 32-byte entry.
    pub fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[..16].copy_from_slice(&self.guid);
        b[16..20].copy_from_slice(&self.offset.to_le_bytes());
        b[20..24].copy_from_slice(&self.length.to_le_bytes());
        let flags = u32::from(self.is_user)
            | (u32::from(self.is_virtual_disk) << 1)
            | (u32::from(self.is_required) << 2);
        b[24..28].copy_from_slice(&flags.to_le_bytes());
        b
    }
}

/// The metadata table (first 64 KiB of the metadata region).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataTable {
    /// Entries in stored order.
    pub entries: Vec<MetadataEntry>,
}

impl MetadataTable {
    /// Parses the table found at file offset `at`.
    pub fn parse(b: &[u8], at: u64) -> Result<Self> {
        let s = "VHDX metadata table";
        if b.len() < 32 {
            return Err(err!(Truncated, "metadata table header needs 32 bytes")
                .with_structure(s)
                .at(at));
        }
        if &b[..8] != b"metadata" {
            return Err(err!(BadSignature, "signature is not \"metadata\"")
                .with_structure(s)
                .at(at));
        }
        let count = le16(b, 10);
        if count > METADATA_MAX_ENTRIES {
            return Err(err!(AbsurdSize, "{count} metadata entries (at most 2047)")
                .with_structure(s)
                .at(at + 10));
        }
        let need = 32 + count as usize * 32;
        if b.len() < need {
            return Err(
                err!(Truncated, "{count} metadata entries need {need} bytes")
                    .with_structure(s)
                    .at(at),
            );
        }
        let entries = (0..count as usize)
            .map(|i| MetadataEntry::parse(&b[32 + i * 32..64 + i * 32]))
            .collect();
        Ok(MetadataTable { entries })
    }

    /// The 64 KiB table.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; METADATA_TABLE_SIZE];
        b[..8].copy_from_slice(b"metadata");
        b[10..12].copy_from_slice(&(self.entries.len() as u16).to_le_bytes());
        for (i, e) in self.entries.iter().enumerate() {
            b[32 + i * 32..64 + i * 32].copy_from_slice(&e.encode());
        }
        b
    }
}

/// File parameters item.
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
        let flags = le32(b, 4);
        FileParameters {
            block_size: le32(b, 0),
            leave_blocks_allocated: flags & 1 != 0,
            has_parent: flags & 2 != 0,
        }
    }

    /// The 8-byte item.
    pub fn encode(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.block_size.to_le_bytes());
        let flags = u32::from(self.leave_blocks_allocated) | (u32::from(self.has_parent) << 1);
        b[4..].copy_from_slice(&flags.to_le_bytes());
        b
    }
}

/// A parent locator: its type and key/value pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentLocator {
    /// Locator type GUID.
    pub locator_type: [u8; 16],
    /// Key/value pairs in stored order.
    pub entries: Vec<(String, String)>,
}

impl ParentLocator {
    /// Parses a parent locator item of `b.len()` bytes found at file offset `at`.
    pub fn parse(b: &[u8], at: u64) -> Result<Self> {
        let s = "VHDX parent locator";
        if b.len() < 20 {
            return Err(err!(Truncated, "parent locator header needs 20 bytes")
                .with_structure(s)
                .at(at));
        }
        let count = le16(b, 18) as usize;
        if 20 + count * 12 > b.len() {
            return Err(
                err!(AbsurdSize, "{count} key/value entries do not fit the item")
                    .with_structure(s)
                    .at(at + 18),
            );
        }
        let mut entries = Vec::with_capacity(count);
        for i in 0..count {
            let o = 20 + i * 12;
            let ko = le32(b, o) as usize;
            let vo = le32(b, o + 4) as usize;
            let kl = le16(b, o + 8) as usize;
            let vl = le16(b, o + 10) as usize;
            let key = b.get(ko..ko.saturating_add(kl)).ok_or_else(|| {
                err!(BadField, "key {i} ({ko}+{kl}) lies outside the item")
                    .with_structure(s)
                    .at(at + o as u64)
            })?;
            let val = b.get(vo..vo.saturating_add(vl)).ok_or_else(|| {
                err!(BadField, "value {i} ({vo}+{vl}) lies outside the item")
                    .with_structure(s)
                    .at(at + o as u64)
            })?;
            entries.push((utf16le(key), utf16le(val)));
        }
        Ok(ParentLocator {
            locator_type: guid_at(b, 0),
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
        let mut b = vec![0u8; 20 + self.entries.len() * 12];
        b[..16].copy_from_slice(&self.locator_type);
        b[18..20].copy_from_slice(&(self.entries.len() as u16).to_le_bytes());
        for (i, (k, v)) in self.entries.iter().enumerate() {
            let kb = to_utf16le(k);
            let vb = to_utf16le(v);
            let ko = b.len() as u32;
            b.extend_from_slice(&kb);
            let vo = b.len() as u32;
            b.extend_from_slice(&vb);
            let o = 20 + i * 12;
            b[o..o + 4].copy_from_slice(&ko.to_le_bytes());
            b[o + 4..o + 8].copy_from_slice(&vo.to_le_bytes());
            b[o + 8..o + 10].copy_from_slice(&(kb.len() as u16).to_le_bytes());
            b[o + 10..o + 12].copy_from_slice(&(vb.len() as u16).to_le_bytes());
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

/// BAT entry: state.
pub fn bat_state(e: u64) -> u8 {
    (e & 7) as u8
}

/// BAT entry: file offset in bytes.
pub fn bat_offset(e: u64) -> u64 {
    (e >> 20) << 20
}

/// A BAT entry for `state` at byte offset `offset` (a multiple of 1 MiB).
pub fn bat_entry(state: u8, offset: u64) -> u64 {
    (offset & !(MIB - 1)) | u64::from(state & 7)
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
            BAT_GUID,
            [
                0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd,
                0x4a, 0x08
            ]
        );
        assert_eq!(
            crate::context::guid_string_le(&METADATA_GUID),
            "8b7ca206-4790-4b9a-b8fe-575f050f886e"
        );
        let g = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
        assert_eq!(
            crate::context::guid_string_le(&guid_to_disk(g)),
            crate::context::guid_string(&g)
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
        assert_eq!(guid_at(&h, 0), PARENT_LOCATOR_TYPE_VHDX);
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
            file_write_guid: [1; 16],
            data_write_guid: [2; 16],
            log_guid: [0; 16],
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
