//! VHDX on-disk layouts, declared once (MS-VHDX v1.0, "Virtual Hard Disk v2 (VHDX) File
//! Format"), little-endian. Each struct is the exact byte image of one structure; a size
//! assertion sits beside each, and the section of the specification it comes from is named in
//! its documentation. [`super::format`] parses and encodes through these structs, and the
//! golden / bad-input tests find field positions with `offset_of!` on them.
//!
//! GUID fields are the 16 bytes as stored (mixed-endian); [`crate::guid::Guid`] converts.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// MS-VHDX 2.2.1 "File Type Identifier": at file offset 0 (a 64 KiB structure of which the
/// first 520 bytes are defined).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct FileIdentifierLayout {
    /// `vhdxfile`.
    pub signature: [u8; 8],
    /// Creator application, UTF-16LE, zero padded.
    pub creator: [u8; 512],
}
const _: () = assert!(size_of::<FileIdentifierLayout>() == 520);

/// MS-VHDX 2.2.2 "Headers": at 64 KiB and 128 KiB; the CRC-32C covers 4 KiB, of which the
/// first 80 bytes are defined (the rest is reserved, zero).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct HeaderLayout {
    /// `head`.
    pub signature: [u8; 4],
    /// CRC-32C over the 4 KiB with this field as zero.
    pub checksum: U32,
    /// The valid header with the higher sequence number is current.
    pub sequence_number: U64,
    /// Changes on every write to the file.
    pub file_write_guid: [u8; 16],
    /// Changes on every write to the virtual disk's content.
    pub data_write_guid: [u8; 16],
    /// Non-zero: the log holds entries to replay.
    pub log_guid: [u8; 16],
    /// 0.
    pub log_version: U16,
    /// 1.
    pub version: U16,
    /// Bytes, a multiple of 1 MiB.
    pub log_length: U32,
    /// File offset, a multiple of 1 MiB.
    pub log_offset: U64,
}
const _: () = assert!(size_of::<HeaderLayout>() == 80);

/// MS-VHDX 2.2.3.1 "Region Table Header": at 192 KiB and 256 KiB, followed by the entries; the
/// CRC-32C covers 64 KiB.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct RegionTableHeaderLayout {
    /// `regi`.
    pub signature: [u8; 4],
    /// CRC-32C over the 64 KiB with this field as zero.
    pub checksum: U32,
    /// At most 2047.
    pub entry_count: U32,
    /// Zero.
    pub reserved: U32,
}
const _: () = assert!(size_of::<RegionTableHeaderLayout>() == 16);

/// MS-VHDX 2.2.3.2 "Region Table Entry".
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct RegionEntryLayout {
    /// Region type (BAT, metadata).
    pub guid: [u8; 16],
    /// File offset, a multiple of 1 MiB.
    pub file_offset: U64,
    /// Bytes, a multiple of 1 MiB.
    pub length: U32,
    /// Bit 0: the reader must understand the region.
    pub required: U32,
}
const _: () = assert!(size_of::<RegionEntryLayout>() == 32);

/// MS-VHDX 2.6.1.1 "Metadata Table Header": the start of the metadata region, followed by the
/// entries (the table is 64 KiB).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct MetadataTableHeaderLayout {
    /// `metadata`.
    pub signature: [u8; 8],
    /// Zero.
    pub reserved: U16,
    /// At most 2047.
    pub entry_count: U16,
    /// Zero.
    pub reserved2: [u8; 20],
}
const _: () = assert!(size_of::<MetadataTableHeaderLayout>() == 32);

/// MS-VHDX 2.6.1.2 "Metadata Table Entry".
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct MetadataEntryLayout {
    /// Item id.
    pub item_id: [u8; 16],
    /// Offset of the item from the start of the metadata region.
    pub offset: U32,
    /// Item length in bytes.
    pub length: U32,
    /// Bit 0 IsUser, bit 1 IsVirtualDisk, bit 2 IsRequired.
    pub flags: U32,
    /// Zero.
    pub reserved: U32,
}
const _: () = assert!(size_of::<MetadataEntryLayout>() == 32);

/// MS-VHDX 2.6.2.1 "File Parameters" metadata item.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct FileParametersLayout {
    /// Block size in bytes (power of two, 1 MiB ..= 256 MiB).
    pub block_size: U32,
    /// Bit 0 LeaveBlocksAllocated, bit 1 HasParent.
    pub flags: U32,
}
const _: () = assert!(size_of::<FileParametersLayout>() == 8);

/// MS-VHDX 2.6.2.6.1 "Parent Locator Header", followed by the key/value entries.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct ParentLocatorHeaderLayout {
    /// Locator type.
    pub locator_type: [u8; 16],
    /// Zero.
    pub reserved: U16,
    /// Number of key/value entries.
    pub key_value_count: U16,
}
const _: () = assert!(size_of::<ParentLocatorHeaderLayout>() == 20);

/// MS-VHDX 2.6.2.6.2 "Parent Locator Entry": offsets from the start of the item, lengths in
/// bytes of UTF-16LE text.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct ParentLocatorEntryLayout {
    /// Offset of the key.
    pub key_offset: U32,
    /// Offset of the value.
    pub value_offset: U32,
    /// Key length.
    pub key_length: U16,
    /// Value length.
    pub value_length: U16,
}
const _: () = assert!(size_of::<ParentLocatorEntryLayout>() == 12);

/// MS-VHDX 2.3.1.1 "Entry Header": the first 64 bytes of a log entry, followed in its
/// first sector(s) by the descriptors (32 bytes each).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct LogEntryHeaderLayout {
    /// `loge`.
    pub signature: [u8; 4],
    /// CRC-32C over the whole entry with this field as zero.
    pub checksum: U32,
    /// Entry length in bytes, a multiple of 4 KiB.
    pub entry_length: U32,
    /// Log-relative offset of the sequence's first entry.
    pub tail: U32,
    /// Sequence number (> 0).
    pub sequence_number: U64,
    /// Number of descriptors.
    pub descriptor_count: U32,
    /// Zero.
    pub reserved: U32,
    /// The header's log GUID.
    pub log_guid: [u8; 16],
    /// File size when the entry was written.
    pub flushed_file_offset: U64,
    /// File size after the entry is applied.
    pub last_file_offset: U64,
}
const _: () = assert!(size_of::<LogEntryHeaderLayout>() == 64);

/// MS-VHDX 2.3.1.2 "Zero Descriptor": `zero_length` zero bytes at `file_offset`.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct ZeroDescriptorLayout {
    /// `zero`.
    pub signature: [u8; 4],
    /// Zero.
    pub reserved: U32,
    /// Bytes, a multiple of 4 KiB.
    pub zero_length: U64,
    /// File offset, a multiple of 4 KiB.
    pub file_offset: U64,
    /// The entry's sequence number.
    pub sequence_number: U64,
}
const _: () = assert!(size_of::<ZeroDescriptorLayout>() == 32);

/// MS-VHDX 2.3.1.3 "Data Descriptor": one 4 KiB data sector at `file_offset`, whose first 8
/// and last 4 bytes are kept here (the data sector holds its signature and sequence there).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct DataDescriptorLayout {
    /// `desc`.
    pub signature: [u8; 4],
    /// The sector's last 4 bytes.
    pub trailing_bytes: [u8; 4],
    /// The sector's first 8 bytes.
    pub leading_bytes: [u8; 8],
    /// File offset, a multiple of 4 KiB.
    pub file_offset: U64,
    /// The entry's sequence number.
    pub sequence_number: U64,
}
const _: () = assert!(size_of::<DataDescriptorLayout>() == 32);

/// MS-VHDX 2.3.1.4 "Data Sector": bytes 8..4092 of a logged sector, framed by the signature
/// and the entry's sequence number split in two halves.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct DataSectorLayout {
    /// `data`.
    pub signature: [u8; 4],
    /// High 32 bits of the sequence number.
    pub sequence_high: U32,
    /// Bytes 8..4092 of the logged sector.
    pub data: [u8; 4084],
    /// Low 32 bits of the sequence number.
    pub sequence_low: U32,
}
const _: () = assert!(size_of::<DataSectorLayout>() == 4096);

/// MS-VHDX 2.5.1 "BAT Entry": bits 0-2 the state, bits 3-19 reserved, bits 20-63 the file
/// offset in MiB.
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, PartialEq, Eq, Debug,
)]
#[repr(transparent)]
pub struct BatEntry(pub U64);
const _: () = assert!(size_of::<BatEntry>() == 8);

impl BatEntry {
    /// Mask of the state bits.
    pub const STATE_MASK: u64 = 7;
    /// The offset field starts at bit 20 (units of 1 MiB).
    pub const OFFSET_SHIFT: u32 = 20;

    /// An entry for `state` at byte `offset` (a multiple of 1 MiB).
    pub fn new(state: u8, offset: u64) -> BatEntry {
        let mb = (offset >> Self::OFFSET_SHIFT) << Self::OFFSET_SHIFT;
        BatEntry(U64::new(mb | (u64::from(state) & Self::STATE_MASK)))
    }

    /// From the raw 64-bit value.
    pub fn from_raw(v: u64) -> BatEntry {
        BatEntry(U64::new(v))
    }

    /// The raw 64-bit value.
    pub fn raw(self) -> u64 {
        self.0.get()
    }

    /// The state (payload or sector-bitmap state, by the entry's position).
    pub fn state(self) -> u8 {
        (self.raw() & Self::STATE_MASK) as u8
    }

    /// The file offset in bytes.
    pub fn file_offset(self) -> u64 {
        (self.raw() >> Self::OFFSET_SHIFT) << Self::OFFSET_SHIFT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn field_positions_match_the_specification() {
        assert_eq!(offset_of!(HeaderLayout, sequence_number), 8);
        assert_eq!(offset_of!(HeaderLayout, log_guid), 48);
        assert_eq!(offset_of!(HeaderLayout, log_version), 64);
        assert_eq!(offset_of!(HeaderLayout, log_length), 68);
        assert_eq!(offset_of!(HeaderLayout, log_offset), 72);
        assert_eq!(offset_of!(RegionEntryLayout, file_offset), 16);
        assert_eq!(offset_of!(RegionEntryLayout, required), 28);
        assert_eq!(offset_of!(MetadataTableHeaderLayout, entry_count), 10);
        assert_eq!(offset_of!(MetadataEntryLayout, flags), 24);
        assert_eq!(offset_of!(ParentLocatorHeaderLayout, key_value_count), 18);
        assert_eq!(offset_of!(LogEntryHeaderLayout, sequence_number), 16);
        assert_eq!(offset_of!(LogEntryHeaderLayout, log_guid), 32);
        assert_eq!(offset_of!(LogEntryHeaderLayout, last_file_offset), 56);
        assert_eq!(offset_of!(ZeroDescriptorLayout, file_offset), 16);
        assert_eq!(offset_of!(DataDescriptorLayout, leading_bytes), 8);
        assert_eq!(offset_of!(DataSectorLayout, sequence_low), 4092);
    }

    #[test]
    fn bat_entry_bits() {
        let e = BatEntry::new(6, 5 << 20);
        assert_eq!(e.raw(), (5 << 20) | 6);
        assert_eq!((e.state(), e.file_offset()), (6, 5 << 20));
        assert_eq!(e.as_bytes(), &((5u64 << 20) | 6).to_le_bytes());
        // reserved bits 3..20 are ignored by the offset
        assert_eq!(
            BatEntry::from_raw((3 << 20) | 0xFFFF8 | 2).file_offset(),
            3 << 20
        );
    }
}
