//! On-disk structures of ISO 9660 (ECMA-119, 4th edition, 2019) and El Torito (Bootable CD-ROM
//! Format Specification 1.0, 1995), each declared once: a `#[repr(C)]` struct of byte arrays
//! mirroring the specification's table (so `offset_of!` gives the field positions and
//! `size_of` the length, both checked against the specification below), and the field offsets
//! as named constants that the parser and encoders use. Multi-byte numbers are kept as bytes:
//! ISO 9660 stores most of them both-endian (little-endian copy first).

use crate::err;
use crate::error::Result;
use std::mem::{offset_of, size_of};

/// ISO 9660 logical block (sector) size: the only one accepted.
pub const BLOCK: u64 = 2048;
/// The volume descriptor set starts at this sector (ECMA-119 6.2.1: system area = 16 sectors).
pub const FIRST_DESCRIPTOR_SECTOR: u64 = 16;

/// Directory record, ECMA-119 9.1 (the fixed part; identifier and system use follow).
#[repr(C)]
pub struct DirRecordHeader {
    /// 9.1.1 Length of directory record (LEN_DR).
    pub len: u8,
    /// 9.1.2 Extended attribute record length.
    pub ext_attr_len: u8,
    /// 9.1.3 Location of extent, both-endian 32-bit.
    pub extent: [u8; 8],
    /// 9.1.4 Data length, both-endian 32-bit.
    pub size: [u8; 8],
    /// 9.1.5 Recording date and time (7 bytes, 9.1.5).
    pub date: [u8; 7],
    /// 9.1.6 File flags.
    pub flags: u8,
    /// 9.1.7 File unit size (interleave).
    pub unit_size: u8,
    /// 9.1.8 Interleave gap size.
    pub gap_size: u8,
    /// 9.1.9 Volume sequence number, both-endian 16-bit.
    pub volume_seq: [u8; 4],
    /// 9.1.10 Length of file identifier (LEN_FI).
    pub name_len: u8,
}
const _: () = assert!(size_of::<DirRecordHeader>() == 33);

/// Field offsets of a directory record.
pub mod dr {
    use super::{DirRecordHeader as D, offset_of};
    /// Length of the record.
    pub const LEN: usize = offset_of!(D, len);
    /// Extent LBA (both-endian).
    pub const EXTENT: usize = offset_of!(D, extent);
    /// Data length (both-endian).
    pub const SIZE: usize = offset_of!(D, size);
    /// Recording date.
    pub const DATE: usize = offset_of!(D, date);
    /// File flags.
    pub const FLAGS: usize = offset_of!(D, flags);
    /// Volume sequence number (both-endian 16).
    pub const VOLUME_SEQ: usize = offset_of!(D, volume_seq);
    /// Length of the file identifier.
    pub const NAME_LEN: usize = offset_of!(D, name_len);
    /// File identifier.
    pub const NAME: usize = size_of::<D>();
    /// Shortest record: one identifier byte (`.`/`..` are 0x00/0x01).
    pub const MIN_LEN: usize = NAME + 1;
    /// Flag: directory (9.1.6 bit 1).
    pub const FLAG_DIR: u8 = 0x02;
    /// Flag: not the final record of the file (multi-extent, 9.1.6 bit 7).
    pub const FLAG_MULTI_EXTENT: u8 = 0x80;
    use std::mem::size_of;
}
const _: () = assert!(dr::EXTENT == 2 && dr::SIZE == 10 && dr::DATE == 18);
const _: () = assert!(dr::FLAGS == 25 && dr::VOLUME_SEQ == 28 && dr::NAME_LEN == 32);
const _: () = assert!(dr::MIN_LEN == 34);

/// Start of the system use area of a record whose identifier is `name_len` bytes: after the
/// identifier and the padding byte that keeps it even (9.1.12).
pub const fn dr_system_use_start(name_len: usize) -> usize {
    dr::NAME + name_len + (1 - name_len % 2)
}

/// The file identifier of an encoded directory record (9.1.10, 9.1.11); `r` holds at least
/// the whole identifier (records built or read through [`encode_dir_record`] and the parser).
pub fn dr_ident(r: &[u8]) -> &[u8] {
    let n = r[dr::NAME_LEN] as usize;
    &r[dr::NAME..dr::NAME + n]
}

/// Encodes a directory record (ECMA-119 9.1): identifier, padding byte when LEN_FI is even
/// (9.1.12), system use, and a final zero byte when needed for an even LEN_DR (9.1.1, as
/// mkisofs and libisofs write it). The one encoder of the builder and the patcher.
pub fn encode_dir_record(
    ident: &[u8],
    extent: u32,
    size: u32,
    date: [u8; 7],
    flags: u8,
    su: &[u8],
) -> Result<Vec<u8>> {
    let start = dr_system_use_start(ident.len());
    let len = (start + su.len()).next_multiple_of(2);
    if len > 255 || ident.is_empty() {
        return Err(err!(
            LimitExceeded,
            "directory record of {len} bytes (name and Rock Ridge entries must fit 255)"
        ));
    }
    let mut r = vec![0u8; len];
    r[dr::LEN] = len as u8;
    put_both32(&mut r, dr::EXTENT, extent);
    put_both32(&mut r, dr::SIZE, size);
    r[dr::DATE..dr::DATE + 7].copy_from_slice(&date);
    r[dr::FLAGS] = flags;
    put_both16(&mut r, dr::VOLUME_SEQ, 1);
    r[dr::NAME_LEN] = ident.len() as u8;
    r[dr::NAME..dr::NAME + ident.len()].copy_from_slice(ident);
    r[start..start + su.len()].copy_from_slice(su);
    Ok(r)
}

/// Primary / supplementary volume descriptor, ECMA-119 8.4 and 8.5 (the first 190 bytes; the
/// identifiers and dates after the root record are copied, not interpreted).
#[repr(C)]
pub struct VolumeDescriptorHead {
    /// 8.4.1 Volume descriptor type (1 primary, 2 supplementary, 0 boot, 255 terminator).
    pub kind: u8,
    /// 8.4.2 Standard identifier `CD001`.
    pub id: [u8; 5],
    /// 8.4.3 Version (1).
    pub version: u8,
    /// 8.4.4 Unused (8.5.3 volume flags in a supplementary descriptor).
    pub flags: u8,
    /// 8.4.5 System identifier.
    pub system_id: [u8; 32],
    /// 8.4.6 Volume identifier.
    pub volume_id: [u8; 32],
    /// 8.4.7 Unused.
    pub unused1: [u8; 8],
    /// 8.4.8 Volume space size in blocks, both-endian.
    pub space_size: [u8; 8],
    /// 8.4.9 Unused (8.5.6 escape sequences: Joliet's `%/@`, `%/C`, `%/E`).
    pub escapes: [u8; 32],
    /// 8.4.10 Volume set size.
    pub set_size: [u8; 4],
    /// 8.4.11 Volume sequence number.
    pub seq: [u8; 4],
    /// 8.4.12 Logical block size.
    pub block_size: [u8; 4],
    /// 8.4.13 Path table size.
    pub path_table_size: [u8; 8],
    /// 8.4.14 Type L path table location (LE).
    pub l_table: [u8; 4],
    /// 8.4.15 Optional type L path table location.
    pub l_table_opt: [u8; 4],
    /// 8.4.16 Type M path table location (BE).
    pub m_table: [u8; 4],
    /// 8.4.17 Optional type M path table location.
    pub m_table_opt: [u8; 4],
    /// 8.4.18 Root directory record (34 bytes).
    pub root: [u8; 34],
}
const _: () = assert!(size_of::<VolumeDescriptorHead>() == 190);

/// The rest of a primary / supplementary volume descriptor, ECMA-119 8.4.19 to 8.4.32 (from
/// byte 190): identifiers, dates, the file structure version.
#[repr(C)]
pub struct VolumeDescriptorTail {
    /// 8.4.19 Volume set identifier.
    pub volume_set_id: [u8; 128],
    /// 8.4.20 Publisher identifier.
    pub publisher_id: [u8; 128],
    /// 8.4.21 Data preparer identifier.
    pub preparer_id: [u8; 128],
    /// 8.4.22 Application identifier.
    pub application_id: [u8; 128],
    /// 8.4.23 Copyright file identifier.
    pub copyright_file: [u8; 37],
    /// 8.4.24 Abstract file identifier.
    pub abstract_file: [u8; 37],
    /// 8.4.25 Bibliographic file identifier.
    pub bibliographic_file: [u8; 37],
    /// 8.4.26 Volume creation date and time (8.4.26.1 digits format, 17 bytes).
    pub created: [u8; 17],
    /// 8.4.27 Volume modification date and time.
    pub modified: [u8; 17],
    /// 8.4.28 Volume expiration date and time.
    pub expires: [u8; 17],
    /// 8.4.29 Volume effective date and time.
    pub effective: [u8; 17],
    /// 8.4.30 File structure version (1).
    pub file_structure_version: u8,
}
const _: () = assert!(size_of::<VolumeDescriptorTail>() == 882 - 190);

/// Field offsets of a volume descriptor.
pub mod vd {
    use super::{VolumeDescriptorHead as V, VolumeDescriptorTail as T, offset_of};
    /// Descriptor type.
    pub const KIND: usize = offset_of!(V, kind);
    /// `CD001`.
    pub const ID: usize = offset_of!(V, id);
    /// Descriptor version.
    pub const VERSION: usize = offset_of!(V, version);
    /// Where the tail starts.
    const TAIL: usize = size_of::<V>();
    /// Volume set identifier (128 bytes).
    pub const VOLUME_SET_ID: usize = TAIL + offset_of!(T, volume_set_id);
    /// Publisher identifier (128 bytes).
    pub const PUBLISHER_ID: usize = TAIL + offset_of!(T, publisher_id);
    /// Data preparer identifier (128 bytes).
    pub const PREPARER_ID: usize = TAIL + offset_of!(T, preparer_id);
    /// Application identifier (128 bytes).
    pub const APPLICATION_ID: usize = TAIL + offset_of!(T, application_id);
    /// Copyright file identifier (37 bytes).
    pub const COPYRIGHT_FILE: usize = TAIL + offset_of!(T, copyright_file);
    /// Abstract file identifier (37 bytes).
    pub const ABSTRACT_FILE: usize = TAIL + offset_of!(T, abstract_file);
    /// Bibliographic file identifier (37 bytes).
    pub const BIBLIOGRAPHIC_FILE: usize = TAIL + offset_of!(T, bibliographic_file);
    /// Creation date (17 bytes).
    pub const CREATED: usize = TAIL + offset_of!(T, created);
    /// Modification date.
    pub const MODIFIED: usize = TAIL + offset_of!(T, modified);
    /// Expiration date.
    pub const EXPIRES: usize = TAIL + offset_of!(T, expires);
    /// Effective date.
    pub const EFFECTIVE: usize = TAIL + offset_of!(T, effective);
    /// File structure version.
    pub const FILE_STRUCTURE_VERSION: usize = TAIL + offset_of!(T, file_structure_version);
    /// Length of a volume identifier / system identifier field.
    pub const ID_LEN: usize = 32;
    /// Length of the publisher, preparer, application and volume set identifiers.
    pub const LONG_ID_LEN: usize = 128;
    /// Length of the copyright, abstract and bibliographic file identifiers.
    pub const FILE_ID_LEN: usize = 37;
    /// Length of a volume date (8.4.26.1).
    pub const DATE_LEN: usize = 17;
    use std::mem::size_of;
    /// System identifier.
    pub const SYSTEM_ID: usize = offset_of!(V, system_id);
    /// Volume identifier.
    pub const VOLUME_ID: usize = offset_of!(V, volume_id);
    /// Volume space size (both-endian).
    pub const SPACE_SIZE: usize = offset_of!(V, space_size);
    /// Escape sequences (Joliet level).
    pub const ESCAPES: usize = offset_of!(V, escapes);
    /// Volume set size (both-endian 16).
    pub const SET_SIZE: usize = offset_of!(V, set_size);
    /// Volume sequence number (both-endian 16).
    pub const SEQ: usize = offset_of!(V, seq);
    /// Logical block size (both-endian 16).
    pub const BLOCK_SIZE: usize = offset_of!(V, block_size);
    /// Path table size (both-endian).
    pub const PATH_TABLE_SIZE: usize = offset_of!(V, path_table_size);
    /// Type L path table.
    pub const L_TABLE: usize = offset_of!(V, l_table);
    /// Optional type L path table.
    pub const L_TABLE_OPT: usize = offset_of!(V, l_table_opt);
    /// Type M path table.
    pub const M_TABLE: usize = offset_of!(V, m_table);
    /// Optional type M path table.
    pub const M_TABLE_OPT: usize = offset_of!(V, m_table_opt);
    /// Root directory record.
    pub const ROOT: usize = offset_of!(V, root);
    /// Length of the root directory record field.
    pub const ROOT_LEN: usize = 34;
    /// Type: boot record.
    pub const BOOT_RECORD: u8 = 0;
    /// Type: primary.
    pub const PRIMARY: u8 = 1;
    /// Type: supplementary (Joliet) or enhanced.
    pub const SUPPLEMENTARY: u8 = 2;
    /// Type: set terminator.
    pub const TERMINATOR: u8 = 255;
    /// The standard identifier.
    pub const MAGIC: &[u8; 5] = b"CD001";
}
const _: () = assert!(vd::SPACE_SIZE == 80 && vd::BLOCK_SIZE == 128 && vd::L_TABLE == 140);
const _: () = assert!(vd::M_TABLE == 148 && vd::ROOT == 156 && vd::ESCAPES == 88);
const _: () = assert!(vd::VOLUME_SET_ID == 190 && vd::APPLICATION_ID == 574);
const _: () = assert!(vd::COPYRIGHT_FILE == 702 && vd::BIBLIOGRAPHIC_FILE == 776);
const _: () = assert!(vd::CREATED == 813 && vd::EFFECTIVE == 864);
const _: () = assert!(vd::FILE_STRUCTURE_VERSION == 881 && vd::VERSION == 6);

/// El Torito boot record volume descriptor (El Torito 2.0, Figure 7).
pub mod boot_record {
    /// Boot system identifier `EL TORITO SPECIFICATION`, zero-padded to 32 bytes.
    pub const SYSTEM_ID: usize = 7;
    /// The identifier's text.
    pub const SYSTEM_ID_TEXT: &[u8; 23] = b"EL TORITO SPECIFICATION";
    /// Absolute LBA of the boot catalog (LE32).
    pub const CATALOG_LBA: usize = 0x47;
}

/// Path table record, ECMA-119 9.4 (the fixed part; the identifier follows, padded to even).
#[repr(C)]
pub struct PathTableRecordHeader {
    /// 9.4.1 Length of directory identifier.
    pub name_len: u8,
    /// 9.4.2 Extended attribute record length.
    pub ext_attr_len: u8,
    /// 9.4.3 Location of extent (LE in a type L table, BE in type M).
    pub extent: [u8; 4],
    /// 9.4.4 Parent directory number.
    pub parent: [u8; 2],
}
const _: () = assert!(size_of::<PathTableRecordHeader>() == 8);

/// Field offsets of a path table record.
pub mod pt {
    use super::{PathTableRecordHeader as P, offset_of};
    /// Length of the identifier.
    pub const NAME_LEN: usize = offset_of!(P, name_len);
    /// Extent LBA.
    pub const EXTENT: usize = offset_of!(P, extent);
    /// Parent directory number (1-based).
    pub const PARENT: usize = offset_of!(P, parent);
    /// Identifier.
    pub const NAME: usize = size_of::<P>();
    use std::mem::size_of;
}
const _: () = assert!(pt::EXTENT == 2 && pt::PARENT == 6 && pt::NAME == 8);

/// Length of a path table record with an identifier of `name_len` bytes (9.4.5, 9.4.6).
pub const fn pt_record_len(name_len: usize) -> usize {
    pt::NAME + name_len + name_len % 2
}

/// El Torito validation entry (El Torito 2.1, Figure 2).
#[repr(C)]
pub struct ValidationEntry {
    /// Header id, 1.
    pub header_id: u8,
    /// Platform id (0 x86, 1 PowerPC, 2 Mac, 0xEF EFI).
    pub platform: u8,
    /// Reserved.
    pub reserved: [u8; 2],
    /// Manufacturer/developer id.
    pub id_string: [u8; 24],
    /// Checksum: the 16 LE words of the entry sum to 0.
    pub checksum: [u8; 2],
    /// Key bytes 0x55 0xAA.
    pub key: [u8; 2],
}
const _: () = assert!(size_of::<ValidationEntry>() == 32);

/// El Torito initial/default entry and section entry (El Torito 2.2, 2.4; Figures 3 and 5).
#[repr(C)]
pub struct BootEntryRaw {
    /// Boot indicator: 0x88 bootable, 0x00 not.
    pub indicator: u8,
    /// Boot media type (low nibble: 0 no emulation, 1-3 floppies, 4 hard disk).
    pub media: u8,
    /// Load segment (LE16).
    pub load_segment: [u8; 2],
    /// System type (partition type for hard-disk emulation).
    pub system_type: u8,
    /// Unused.
    pub unused: u8,
    /// Sector count: virtual 512-byte sectors loaded (LE16).
    pub sector_count: [u8; 2],
    /// Load RBA: LBA of the image (LE32).
    pub load_rba: [u8; 4],
    /// Unused (selection criteria in a section entry).
    pub rest: [u8; 20],
}
const _: () = assert!(size_of::<BootEntryRaw>() == 32);

/// El Torito section header entry (El Torito 2.3, Figure 4).
#[repr(C)]
pub struct SectionHeader {
    /// Header indicator: 0x90 more headers follow, 0x91 final.
    pub indicator: u8,
    /// Platform id.
    pub platform: u8,
    /// Number of section entries following.
    pub entries: [u8; 2],
    /// Id string.
    pub id_string: [u8; 28],
}
const _: () = assert!(size_of::<SectionHeader>() == 32);

/// Field offsets and values of the El Torito catalog entries.
pub mod el_torito {
    use super::{BootEntryRaw as B, SectionHeader as S, ValidationEntry as V, offset_of};
    /// Size of every catalog entry.
    pub const ENTRY_LEN: usize = 32;
    /// Validation entry: header id (must be 1).
    pub const VALIDATION_HEADER_ID: usize = offset_of!(V, header_id);
    /// Validation entry: platform.
    pub const VALIDATION_PLATFORM: usize = offset_of!(V, platform);
    /// Validation entry: checksum.
    pub const VALIDATION_CHECKSUM: usize = offset_of!(V, checksum);
    /// Validation entry: key (0x55 0xAA).
    pub const VALIDATION_KEY: usize = offset_of!(V, key);
    /// Boot entry: indicator.
    pub const INDICATOR: usize = offset_of!(B, indicator);
    /// Boot entry: media type.
    pub const MEDIA: usize = offset_of!(B, media);
    /// Boot entry: load segment.
    pub const LOAD_SEGMENT: usize = offset_of!(B, load_segment);
    /// Boot entry: sector count.
    pub const SECTOR_COUNT: usize = offset_of!(B, sector_count);
    /// Boot entry: image LBA.
    pub const LOAD_RBA: usize = offset_of!(B, load_rba);
    /// Section header: platform.
    pub const SECTION_PLATFORM: usize = offset_of!(S, platform);
    /// Section header: number of entries.
    pub const SECTION_ENTRIES: usize = offset_of!(S, entries);
    /// Indicator of a bootable entry.
    pub const BOOTABLE: u8 = 0x88;
    /// Section header indicator: more headers follow.
    pub const SECTION_MORE: u8 = 0x90;
    /// Section header indicator: the final header.
    pub const SECTION_FINAL: u8 = 0x91;
    /// Section entry extension indicator.
    pub const EXTENSION: u8 = 0x44;
}
const _: () = assert!(el_torito::VALIDATION_CHECKSUM == 28 && el_torito::VALIDATION_KEY == 30);
const _: () = assert!(el_torito::SECTOR_COUNT == 6 && el_torito::LOAD_RBA == 8);

/// Boot-info-table written into a no-emulation boot image at byte 8 (mkisofs
/// `-boot-info-table`; also in the El Torito section of the xorriso manual).
#[repr(C)]
pub struct BootInfoTableRaw {
    /// LBA of the primary volume descriptor (always 16).
    pub pvd: [u8; 4],
    /// LBA of the boot file.
    pub file: [u8; 4],
    /// Length of the boot file in bytes.
    pub length: [u8; 4],
    /// Sum of the LE32 words of the file from byte 64 (last partial word zero-padded).
    pub checksum: [u8; 4],
    /// Reserved.
    pub reserved: [u8; 40],
}
const _: () = assert!(size_of::<BootInfoTableRaw>() == 56);

/// Field offsets of the boot-info-table, from the start of the boot file.
pub mod bit {
    use super::{BootInfoTableRaw as T, offset_of};
    /// Where the table starts in the boot file.
    pub const AT: usize = 8;
    /// bi_pvd.
    pub const PVD: usize = AT + offset_of!(T, pvd);
    /// bi_file.
    pub const FILE: usize = AT + offset_of!(T, file);
    /// bi_length.
    pub const LENGTH: usize = AT + offset_of!(T, length);
    /// bi_csum.
    pub const CHECKSUM: usize = AT + offset_of!(T, checksum);
    /// First byte the checksum covers.
    pub const SUMMED_FROM: usize = AT + size_of::<T>();
    use std::mem::size_of;
}
const _: () = assert!(bit::CHECKSUM == 20 && bit::SUMMED_FROM == 64);

/// Writes a both-endian u32 (8 bytes: LE then BE) at `o`.
pub fn put_both32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
    b[o + 4..o + 8].copy_from_slice(&v.to_be_bytes());
}

/// Writes a both-endian u16 (4 bytes: LE then BE) at `o`.
pub fn put_both16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
    b[o + 2..o + 4].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_even_and_padded_as_ecma_119_says() {
        // odd identifier: no padding byte; odd su makes LEN_DR odd, so a zero is appended
        let r = encode_dir_record(b"A;1", 20, 5, [0; 7], 0, b"XYZ").unwrap();
        assert_eq!(r.len(), 33 + 3 + 3 + 1);
        assert_eq!(r[dr::LEN] as usize, r.len());
        assert_eq!(&r[36..39], b"XYZ");
        // even identifier: padding byte before the system use area
        let r = encode_dir_record(b"AB", 20, 5, [0; 7], dr::FLAG_DIR, b"").unwrap();
        assert_eq!(r.len(), 36);
        assert_eq!(dr_system_use_start(2), 36);
        assert_eq!(r[dr::FLAGS], dr::FLAG_DIR);
        assert_eq!(crate::bytes::le32(&r, dr::EXTENT), 20);
        assert_eq!(crate::bytes::be32(&r, dr::SIZE + 4), 5);
        assert!(encode_dir_record(&[b'a'; 200], 0, 0, [0; 7], 0, &[0; 60]).is_err());
    }
}
