//! VHD on-disk layouts, declared once as structs (big-endian), each with a size assertion.
//!
//! Spec: Microsoft "Virtual Hard Disk Image Format Specification" v1.0: "Hard Disk Footer
//! Format" (512 bytes, cookie `conectix`, at the end of every VHD and at offset 0 of dynamic
//! and differencing disks), "Dynamic Disk Header Format" (the header of dynamic and
//! differencing disks, cookie `cxsparse`, 1024 bytes) and its parent locator entries. Parse and
//! encode in [`super::footer`] and [`super::header`] go through these structs; the named byte
//! ranges of [`super::footer::field`] are derived from [`FooterLayout`] with `offset_of!`, and
//! the golden and bad-input tests use those names.

use zerocopy::big_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// "Hard Disk Footer Format": the last 512 bytes of the file (511 in images of very old
/// Virtual PC versions), with a copy at offset 0 in dynamic and differencing disks.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct FooterLayout {
    /// `conectix`.
    pub cookie: [u8; 8],
    /// Features bit field (bit 1, "reserved", always set).
    pub features: U32,
    /// File format version 0x00010000.
    pub file_format_version: U32,
    /// Absolute byte offset of the dynamic disk header; all ones for fixed disks.
    pub data_offset: U64,
    /// Seconds since 2000-01-01 00:00:00 UTC.
    pub time_stamp: U32,
    /// Creator application (`win `, `qemu`, `qem2`, `vpc `...).
    pub creator_application: [u8; 4],
    /// Creator version (major << 16 | minor).
    pub creator_version: U32,
    /// Creator host OS (`Wi2k`, `Mac `).
    pub creator_host_os: [u8; 4],
    /// Size at creation.
    pub original_size: U64,
    /// Current virtual size.
    pub current_size: U64,
    /// Disk geometry: cylinders.
    pub cylinders: U16,
    /// Disk geometry: heads.
    pub heads: u8,
    /// Disk geometry: sectors per track.
    pub sectors_per_track: u8,
    /// 2 fixed, 3 dynamic, 4 differencing.
    pub disk_type: U32,
    /// One's complement of the byte sum of the footer with this field as zero.
    pub checksum: U32,
    /// Unique id.
    pub unique_id: [u8; 16],
    /// 1 when the disk is in a saved state.
    pub saved_state: u8,
    /// Zeros.
    pub reserved: [u8; 427],
}
const _: () = assert!(size_of::<FooterLayout>() == 512);

/// "Dynamic Disk Header Format": at the footer's data offset (usually 512).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct DynHeaderLayout {
    /// `cxsparse`.
    pub cookie: [u8; 8],
    /// Unused, all ones.
    pub data_offset: U64,
    /// Absolute byte offset of the BAT.
    pub table_offset: U64,
    /// 0x00010000.
    pub header_version: U32,
    /// Number of BAT entries.
    pub max_table_entries: U32,
    /// Block size in bytes (2 MiB by default).
    pub block_size: U32,
    /// One's complement of the byte sum of the header with this field as zero.
    pub checksum: U32,
    /// Parent's unique id (differencing disks).
    pub parent_unique_id: [u8; 16],
    /// Parent's modification time, seconds since 2000-01-01 UTC.
    pub parent_timestamp: U32,
    /// Zero.
    pub reserved1: U32,
    /// Parent's name, UTF-16 big-endian, zero padded.
    pub parent_unicode_name: [u8; 512],
    /// Eight parent locator entries.
    pub parent_locators: [ParentLocatorLayout; 8],
    /// Zero.
    pub reserved2: [u8; 256],
}
const _: () = assert!(size_of::<DynHeaderLayout>() == 1024);

/// "Dynamic Disk Header Format", Parent Locator Entries: where the parent's path is stored.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct ParentLocatorLayout {
    /// `W2ku`, `W2ru`, `Wi2k`, `Wi2r`, `Mac `, `MacX`, or zeros when unused.
    pub platform_code: [u8; 4],
    /// Space reserved for the data (sectors or bytes, by tool).
    pub platform_data_space: U32,
    /// Data length in bytes.
    pub platform_data_length: U32,
    /// Zero.
    pub reserved: U32,
    /// Absolute byte offset of the data.
    pub platform_data_offset: U64,
}
const _: () = assert!(size_of::<ParentLocatorLayout>() == 24);

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn field_positions_match_the_specification() {
        assert_eq!(offset_of!(FooterLayout, data_offset), 16);
        assert_eq!(offset_of!(FooterLayout, creator_application), 28);
        assert_eq!(offset_of!(FooterLayout, current_size), 48);
        assert_eq!(offset_of!(FooterLayout, cylinders), 56);
        assert_eq!(offset_of!(FooterLayout, disk_type), 60);
        assert_eq!(offset_of!(FooterLayout, checksum), 64);
        assert_eq!(offset_of!(FooterLayout, unique_id), 68);
        assert_eq!(offset_of!(FooterLayout, saved_state), 84);
        assert_eq!(offset_of!(DynHeaderLayout, table_offset), 16);
        assert_eq!(offset_of!(DynHeaderLayout, block_size), 32);
        assert_eq!(offset_of!(DynHeaderLayout, checksum), 36);
        assert_eq!(offset_of!(DynHeaderLayout, parent_unique_id), 40);
        assert_eq!(offset_of!(DynHeaderLayout, parent_unicode_name), 64);
        assert_eq!(offset_of!(DynHeaderLayout, parent_locators), 576);
        assert_eq!(offset_of!(DynHeaderLayout, reserved2), 768);
        assert_eq!(offset_of!(ParentLocatorLayout, platform_data_offset), 16);
    }
}
