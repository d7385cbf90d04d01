//! The VHD hard disk footer (512 bytes, big-endian) and CHS geometry.
//!
//! Spec: Microsoft "Virtual Hard Disk Image Format Specification" v1.0, "Hard Disk Footer
//! Format". The layout is declared once, as [`FooterLayout`];
//! parse and encode go through it, and the golden and bad-input tests use the byte ranges
//! [`field`] derives from it. Layout (offsets in bytes):
//!
//! | off | len | field |
//! |----:|----:|-------|
//! | 0   | 8   | cookie `conectix` |
//! | 8   | 4   | features (bit 1 "reserved" always set) |
//! | 12  | 4   | file format version 0x00010000 |
//! | 16  | 8   | data offset (header of dynamic disks; all ones for fixed) |
//! | 24  | 4   | timestamp, seconds since 2000-01-01 00:00:00 UTC |
//! | 28  | 4   | creator application |
//! | 32  | 4   | creator version |
//! | 36  | 4   | creator host OS (`Wi2k`, `Mac `) |
//! | 40  | 8   | original size |
//! | 48  | 8   | current size |
//! | 56  | 4   | geometry: cylinders (u16), heads (u8), sectors per track (u8) |
//! | 60  | 4   | disk type (2 fixed, 3 dynamic, 4 differencing) |
//! | 64  | 4   | checksum: one's complement of the byte sum, this field taken as zero |
//! | 68  | 16  | unique id |
//! | 84  | 1   | saved state |
//! | 85  | 427 | reserved (zeros) |

use super::layout::FooterLayout;
use crate::err;
use crate::error::Result;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// Size of the footer.
pub const FOOTER_SIZE: usize = 512;

/// Byte ranges of the footer's fields (the table above), derived from
/// [`FooterLayout`]: a field ends where the next begins.
pub mod field {
    use super::super::layout::FooterLayout as L;
    use std::mem::offset_of;
    use std::ops::Range;
    /// `conectix`.
    pub const COOKIE: Range<usize> = offset_of!(L, cookie)..offset_of!(L, features);
    /// Features bit field.
    pub const FEATURES: Range<usize> = offset_of!(L, features)..offset_of!(L, file_format_version);
    /// File format version.
    pub const VERSION: Range<usize> =
        offset_of!(L, file_format_version)..offset_of!(L, data_offset);
    /// Offset of the dynamic disk header.
    pub const DATA_OFFSET: Range<usize> = offset_of!(L, data_offset)..offset_of!(L, time_stamp);
    /// Seconds since 2000-01-01 UTC.
    pub const TIMESTAMP: Range<usize> =
        offset_of!(L, time_stamp)..offset_of!(L, creator_application);
    /// Creator application.
    pub const CREATOR_APP: Range<usize> =
        offset_of!(L, creator_application)..offset_of!(L, creator_version);
    /// Creator version.
    pub const CREATOR_VERSION: Range<usize> =
        offset_of!(L, creator_version)..offset_of!(L, creator_host_os);
    /// Creator host OS.
    pub const CREATOR_OS: Range<usize> =
        offset_of!(L, creator_host_os)..offset_of!(L, original_size);
    /// Original size.
    pub const ORIGINAL_SIZE: Range<usize> =
        offset_of!(L, original_size)..offset_of!(L, current_size);
    /// Current size.
    pub const CURRENT_SIZE: Range<usize> = offset_of!(L, current_size)..offset_of!(L, cylinders);
    /// Geometry: cylinders.
    pub const CYLINDERS: Range<usize> = offset_of!(L, cylinders)..offset_of!(L, heads);
    /// Geometry: heads.
    pub const HEADS: usize = offset_of!(L, heads);
    /// Geometry: sectors per track.
    pub const SECTORS: usize = offset_of!(L, sectors_per_track);
    /// Disk type.
    pub const DISK_TYPE: Range<usize> = offset_of!(L, disk_type)..offset_of!(L, checksum);
    /// Checksum.
    pub const CHECKSUM: Range<usize> = offset_of!(L, checksum)..offset_of!(L, unique_id);
    /// Unique id.
    pub const UNIQUE_ID: Range<usize> = offset_of!(L, unique_id)..offset_of!(L, saved_state);
    /// Saved state.
    pub const SAVED_STATE: usize = offset_of!(L, saved_state);
    /// Reserved, zeros.
    pub const RESERVED: Range<usize> = offset_of!(L, reserved)..size_of::<L>();
}
const _: () = assert!(field::RESERVED.end == FOOTER_SIZE && field::HEADS + 1 == field::SECTORS);
/// Footer cookie.
pub const COOKIE: &[u8; 8] = b"conectix";
/// Seconds from the Unix epoch to the VHD epoch (2000-01-01 00:00:00 UTC).
pub const VHD_EPOCH: u64 = 946_684_800;
/// Largest virtual size we accept (what Hyper-V and qemu accept): 2040 GiB.
pub const MAX_SIZE: u64 = 2040 << 30;
/// Largest CHS geometry: 65535 cylinders, 16 heads, 255 sectors per track.
pub const MAX_CHS_SECTORS: u64 = 65535 * 16 * 255;

/// Disk type field values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskType {
    /// 2: the payload is the first `current_size` bytes of the file.
    Fixed,
    /// 3: block allocation table.
    Dynamic,
    /// 4: dynamic, with a parent for the sectors not present here.
    Differencing,
}

impl DiskType {
    /// On-disk value.
    pub fn code(self) -> u32 {
        match self {
            DiskType::Fixed => 2,
            DiskType::Dynamic => 3,
            DiskType::Differencing => 4,
        }
    }

    /// `fixed` / `dynamic` / `differencing`.
    pub fn name(self) -> &'static str {
        match self {
            DiskType::Fixed => "fixed",
            DiskType::Dynamic => "dynamic",
            DiskType::Differencing => "differencing",
        }
    }
}

/// Places an error in footer field `name` (at byte `at` of the footer).
fn in_field(e: crate::error::Error, name: &str, at: usize) -> crate::error::Error {
    e.with_structure("VHD footer").with_field_at(name, at)
}

/// The current size is a whole number of sectors, within [`MAX_SIZE`].
fn check_current_size(current_size: u64) -> Result<()> {
    if !current_size.is_multiple_of(512) {
        return Err(in_field(
            err!(
                AbsurdSize,
                "current size {current_size} is not a multiple of 512"
            ),
            "current size",
            field::CURRENT_SIZE.start,
        ));
    }
    if current_size > MAX_SIZE {
        return Err(in_field(
            err!(
                AbsurdSize,
                "current size {current_size} is above the VHD limit of 2040 GiB"
            ),
            "current size",
            field::CURRENT_SIZE.start,
        ));
    }
    Ok(())
}

/// The parsed footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    /// Features bit field.
    pub features: u32,
    /// File format version (0x00010000).
    pub version: u32,
    /// Offset of the dynamic disk header (`u64::MAX` for fixed disks).
    pub data_offset: u64,
    /// Seconds since 2000-01-01 UTC.
    pub timestamp: u32,
    /// Creator application (4 bytes, e.g. `win `, `qemu`, `qem2`, `vpc `).
    pub creator_app: [u8; 4],
    /// Creator version (major << 16 | minor).
    pub creator_version: u32,
    /// Creator host OS (`Wi2k`, `Mac `).
    pub creator_os: [u8; 4],
    /// Size at creation.
    pub original_size: u64,
    /// Current virtual size.
    pub current_size: u64,
    /// CHS geometry.
    pub geometry: Geometry,
    /// Disk type.
    pub disk_type: DiskType,
    /// Stored checksum.
    pub checksum: u32,
    /// Unique id (bytes as stored).
    pub unique_id: crate::guid::Guid,
    /// Saved-state flag.
    pub saved_state: u8,
}

/// Cylinder / head / sectors-per-track geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Geometry {
    /// Cylinders.
    pub cylinders: u16,
    /// Heads.
    pub heads: u8,
    /// Sectors per track.
    pub sectors: u8,
}

impl Geometry {
    /// Total bytes the geometry addresses.
    pub fn bytes(self) -> u64 {
        u64::from(self.cylinders) * u64::from(self.heads) * u64::from(self.sectors) * 512
    }

    /// True for 65535/16/255, the value tools write when the size does not fit in CHS.
    pub fn is_max(self) -> bool {
        self.cylinders == 65535 && self.heads == 16 && self.sectors == 255
    }

    /// The VHD specification's algorithm (appendix "CHS Calculation") for a disk of
    /// `total_sectors` 512-byte sectors. Sizes beyond what CHS can express are clamped to
    /// 65535/16/255. The result may address fewer sectors than asked (it rounds down).
    pub fn for_sectors(total_sectors: u64) -> Geometry {
        let total = total_sectors.min(MAX_CHS_SECTORS);
        let (spt, heads, cth);
        if total >= 65535 * 16 * 63 {
            spt = 255;
            heads = 16;
            cth = total / spt;
        } else {
            let mut s = 17;
            let mut c = total / s;
            let mut h = c.div_ceil(1024).max(4);
            if c >= h * 1024 || h > 16 {
                s = 31;
                h = 16;
                c = total / s;
            }
            if c >= h * 1024 {
                s = 63;
                h = 16;
                c = total / s;
            }
            spt = s;
            heads = h;
            cth = c;
        }
        // Bounded by construction: cth / heads <= 65535, heads <= 16, spt <= 255.
        Geometry {
            cylinders: (cth / heads).min(65535) as u16,
            heads: heads as u8,
            sectors: spt as u8,
        }
    }
}

/// One's complement of the byte sum (the checksum field must already be zero in `bytes`).
pub fn checksum(bytes: &[u8]) -> u32 {
    !bytes
        .iter()
        .fold(0u32, |a, &b| a.wrapping_add(u32::from(b)))
}

/// Checksum of `bytes` with the 4 bytes at `field` taken as zero.
pub fn checksum_skipping(bytes: &[u8], field: usize) -> u32 {
    let sum = bytes
        .iter()
        .enumerate()
        .filter(|(i, _)| !(field..field + 4).contains(i))
        .fold(0u32, |a, (_, &b)| a.wrapping_add(u32::from(b)));
    !sum
}

/// Shows a 4-byte tag as text (`qemu`, `win `, `tap\0` -> `tap\0`).
pub fn tag(t: &[u8; 4]) -> String {
    // Trailing NULs are padding (Disk2VHD writes `d2v\0`); anything else unprintable is escaped.
    let end = t.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
    t[..end]
        .iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                (c as char).to_string()
            } else {
                format!("\\x{c:02x}")
            }
        })
        .collect()
}

impl Footer {
    /// Parses and verifies a footer: `bytes` is 512 bytes, or 511 for the footer of images
    /// made by very old Virtual PC versions (the missing last byte is reserved, taken as 0).
    ///
    /// Errors: `Truncated` (fewer than 511 bytes), `BadSignature` (cookie), `BadChecksum`,
    /// `BadField` (unknown disk type), `AbsurdSize` (current size not a multiple of 512 or
    /// above 2040 GiB).
    pub fn parse(bytes: &[u8]) -> Result<Footer> {
        if bytes.len() < FOOTER_SIZE - 1 {
            return Err(err!(
                Truncated,
                "the footer needs 512 bytes, only {} present",
                bytes.len()
            )
            .with_structure("VHD footer"));
        }
        // A 511-byte footer misses its last reserved byte: zero.
        let mut full = [0u8; FOOTER_SIZE];
        let n = bytes.len().min(FOOTER_SIZE);
        full[..n].copy_from_slice(&bytes[..n]);
        let l = FooterLayout::ref_from_bytes(&full[..]).map_err(|_| {
            err!(Truncated, "the footer needs 512 bytes").with_structure("VHD footer")
        })?;
        if &l.cookie != COOKIE {
            return Err(err!(
                BadSignature,
                "cookie is {:?}, expected \"conectix\"",
                String::from_utf8_lossy(&l.cookie)
            )
            .with_structure("VHD footer"));
        }
        let stored = l.checksum.get();
        let computed = checksum_skipping(&full, field::CHECKSUM.start);
        if stored != computed {
            return Err(in_field(
                err!(
                    BadChecksum,
                    "stored checksum 0x{stored:08x}, computed 0x{computed:08x}"
                ),
                "checksum",
                field::CHECKSUM.start,
            ));
        }
        let disk_type = match l.disk_type.get() {
            2 => DiskType::Fixed,
            3 => DiskType::Dynamic,
            4 => DiskType::Differencing,
            t => {
                return Err(in_field(
                    err!(
                        BadField,
                        "disk type {t} is not fixed (2), dynamic (3) or differencing (4)"
                    ),
                    "disk type",
                    field::DISK_TYPE.start,
                ));
            }
        };
        let current_size = l.current_size.get();
        check_current_size(current_size)?;
        Ok(Footer {
            features: l.features.get(),
            version: l.file_format_version.get(),
            data_offset: l.data_offset.get(),
            timestamp: l.time_stamp.get(),
            creator_app: l.creator_application,
            creator_version: l.creator_version.get(),
            creator_os: l.creator_host_os,
            original_size: l.original_size.get(),
            current_size,
            geometry: Geometry {
                cylinders: l.cylinders.get(),
                heads: l.heads,
                sectors: l.sectors_per_track,
            },
            disk_type,
            checksum: stored,
            unique_id: crate::guid::Guid::from_bytes(l.unique_id),
            saved_state: l.saved_state,
        })
    }

    /// Encodes the footer, computing the checksum (the `checksum` field is ignored).
    pub fn encode(&self) -> [u8; FOOTER_SIZE] {
        let mut l = FooterLayout::new_zeroed();
        l.cookie = *COOKIE;
        l.features.set(self.features);
        l.file_format_version.set(self.version);
        l.data_offset.set(self.data_offset);
        l.time_stamp.set(self.timestamp);
        l.creator_application = self.creator_app;
        l.creator_version.set(self.creator_version);
        l.creator_host_os = self.creator_os;
        l.original_size.set(self.original_size);
        l.current_size.set(self.current_size);
        l.cylinders.set(self.geometry.cylinders);
        l.heads = self.geometry.heads;
        l.sectors_per_track = self.geometry.sectors;
        l.disk_type.set(self.disk_type.code());
        l.unique_id = self.unique_id.to_bytes();
        l.saved_state = self.saved_state;
        l.checksum.set(checksum(l.as_bytes()));
        let mut b = [0u8; FOOTER_SIZE];
        b.copy_from_slice(l.as_bytes());
        b
    }

    /// Creator as text: `qemu 5.3 (Wi2k)`.
    pub fn creator_string(&self) -> String {
        format!(
            "{} {}.{} ({})",
            tag(&self.creator_app),
            self.creator_version >> 16,
            self.creator_version & 0xffff,
            tag(&self.creator_os)
        )
    }

    /// True when qemu sizes this image by its CHS geometry rather than `current_size`
    /// (qemu's `vpc_ignore_current_size()`: creators `vpc ` and `qemu`, unless the geometry is
    /// the maximum 65535/16/255).
    pub fn qemu_uses_chs(&self) -> bool {
        (&self.creator_app == b"vpc " || &self.creator_app == b"qemu") && !self.geometry.is_max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creator_tags_drop_nul_padding_and_escape_the_rest() {
        assert_eq!(tag(b"d2v\0"), "d2v");
        assert_eq!(tag(b"win "), "win ");
        assert_eq!(tag(b"a\0b\0"), "a\\x00b");
        assert_eq!(tag(&[0; 4]), "");
    }
    use crate::error::ErrorKind;

    fn sample() -> Footer {
        Footer {
            features: 2,
            version: 0x0001_0000,
            data_offset: u64::MAX,
            timestamp: 0x1234_5678,
            creator_app: *b"qem2",
            creator_version: 0x0005_0003,
            creator_os: *b"Wi2k",
            original_size: 4 << 20,
            current_size: 4 << 20,
            geometry: Geometry {
                cylinders: 120,
                heads: 4,
                sectors: 17,
            },
            disk_type: DiskType::Fixed,
            checksum: 0,
            unique_id: crate::guid::Guid::from_bytes([0xab; 16]),
            saved_state: 0,
        }
    }

    #[test]
    fn golden_footer_bytes() {
        let b = sample().encode();
        let mut want = [0u8; 512];
        want[field::COOKIE].copy_from_slice(b"conectix");
        want[field::FEATURES].copy_from_slice(&[0, 0, 0, 2]);
        want[field::VERSION].copy_from_slice(&[0, 1, 0, 0]);
        want[field::DATA_OFFSET].copy_from_slice(&[0xff; 8]);
        want[field::TIMESTAMP].copy_from_slice(&[0x12, 0x34, 0x56, 0x78]);
        want[field::CREATOR_APP].copy_from_slice(b"qem2");
        want[field::CREATOR_VERSION].copy_from_slice(&[0, 5, 0, 3]);
        want[field::CREATOR_OS].copy_from_slice(b"Wi2k");
        want[field::ORIGINAL_SIZE].copy_from_slice(&[0, 0, 0, 0, 0, 0x40, 0, 0]);
        want[field::CURRENT_SIZE].copy_from_slice(&[0, 0, 0, 0, 0, 0x40, 0, 0]);
        want[field::CYLINDERS.start..=field::SECTORS].copy_from_slice(&[0, 120, 4, 17]);
        want[field::DISK_TYPE].copy_from_slice(&[0, 0, 0, 2]);
        want[field::UNIQUE_ID].copy_from_slice(&[0xab; 16]);
        // Byte sum computed by hand: each field's bytes added.
        let sum: u32 = want.iter().map(|&x| u32::from(x)).sum();
        want[field::CHECKSUM].copy_from_slice(&(!sum).to_be_bytes());
        assert_eq!(b.to_vec(), want.to_vec());
        let back = Footer::parse(&b).unwrap();
        assert_eq!(back.checksum, !sum);
        assert_eq!(
            Footer {
                checksum: 0,
                ..back
            },
            sample()
        );
    }

    #[test]
    fn checksum_of_known_bytes() {
        // sum = 1 + 2 + 3 = 6; !6 = 0xfffffff9
        assert_eq!(checksum(&[1, 2, 3]), 0xffff_fff9);
        assert_eq!(checksum_skipping(&[1, 2, 3, 9, 9, 9, 9], 3), 0xffff_fff9);
    }

    #[test]
    fn parse_accepts_511_bytes() {
        let b = sample().encode();
        let f = Footer::parse(&b[..511]).unwrap();
        assert_eq!(f.current_size, 4 << 20);
        assert_eq!(
            Footer::parse(&b[..510]).unwrap_err().kind(),
            ErrorKind::Truncated
        );
    }

    fn corrupt(off: usize, bytes: &[u8], fix_checksum: bool) -> ErrorKind {
        let mut b = sample().encode();
        b[off..off + bytes.len()].copy_from_slice(bytes);
        if fix_checksum {
            b[field::CHECKSUM].fill(0);
            let c = checksum(&b);
            b[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
        }
        Footer::parse(&b).unwrap_err().kind()
    }

    #[test]
    fn each_corruption_has_its_kind() {
        assert_eq!(corrupt(0, b"conectiX", true), ErrorKind::BadSignature);
        assert_eq!(corrupt(30, b"x", false), ErrorKind::BadChecksum);
        assert_eq!(corrupt(64, &[0, 0, 0, 1], false), ErrorKind::BadChecksum);
        assert_eq!(corrupt(60, &[0, 0, 0, 5], true), ErrorKind::BadField);
        assert_eq!(corrupt(60, &[0, 0, 0, 1], true), ErrorKind::BadField);
        assert_eq!(
            corrupt(48, &[0, 0, 0, 0, 0, 0, 1, 1], true),
            ErrorKind::AbsurdSize
        );
        // 2041 GiB
        let big = (2041u64 << 30).to_be_bytes();
        assert_eq!(corrupt(48, &big, true), ErrorKind::AbsurdSize);
        // 2040 GiB exactly is fine.
        let mut b = sample().encode();
        b[field::CURRENT_SIZE].copy_from_slice(&(2040u64 << 30).to_be_bytes());
        b[field::CHECKSUM].fill(0);
        let c = checksum(&b);
        b[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
        assert_eq!(Footer::parse(&b).unwrap().current_size, 2040 << 30);
    }

    #[test]
    fn chs_table() {
        let g = |bytes: u64| {
            let x = Geometry::for_sectors(bytes / 512);
            (x.cylinders, x.heads, x.sectors)
        };
        // Windows' 4 MiB differencing disk in dfvfs (CHS 120/4/17).
        assert_eq!(g(4 << 20), (120, 4, 17));
        // qemu's ext2.vhd: 4,212,736 bytes = 121/4/17 exactly.
        assert_eq!(g(4_212_736), (121, 4, 17));
        // Virtual PC 512 MiB (libvhdi footer fragment: 1040/16/63).
        assert_eq!(g(512 << 20), (1040, 16, 63));
        // 127 GB boundary: 65535*16*63 sectors switches to 255 sectors per track.
        assert_eq!(g(65535 * 16 * 63 * 512 - 512), (65534, 16, 63));
        assert_eq!(g(65535 * 16 * 63 * 512), (16191, 16, 255));
        // 1 GiB: 2097152 sectors -> 17 spt gives 123361 c*h, too many -> 31 -> 67650 > 16*1024
        // -> 63: 33288 / 16 = 2080.
        assert_eq!(g(1 << 30), (2080, 16, 63));
        // 2040 GiB clamps to the maximum.
        assert_eq!(g(2040 << 30), (65535, 16, 255));
        assert!(Geometry::for_sectors(u64::MAX).is_max());
        // Tiny disks.
        assert_eq!(g(512), (0, 4, 17));
        assert_eq!(g(3 * (1 << 20) + 4096 + 512), (90, 4, 17));
    }

    #[test]
    fn qemu_chs_rule() {
        let mut f = sample();
        assert!(!f.qemu_uses_chs());
        f.creator_app = *b"qemu";
        assert!(f.qemu_uses_chs());
        f.geometry = Geometry {
            cylinders: 65535,
            heads: 16,
            sectors: 255,
        };
        assert!(!f.qemu_uses_chs());
        f.creator_app = *b"vpc ";
        assert!(!f.qemu_uses_chs());
    }
}
