//! VHD on-disk layouts declared as structs (big-endian), beside the footer's field table in
//! [`super::footer::field`].
//!
//! Spec: Microsoft "Virtual Hard Disk Image Format Specification" v1.0, "Dynamic Disk Header
//! Format" (the header of dynamic and differencing disks, cookie `cxsparse`, 1024 bytes) and its
//! parent locator entries. Parse and encode in [`super::header`] go through these structs; the
//! tests find field positions with `offset_of!` on them.

use zerocopy::big_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

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
