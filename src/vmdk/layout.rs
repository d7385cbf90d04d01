//! VMDK hosted sparse extent structures, little-endian (VMware "Virtual Disk Format 5.0"
//! technote, "Hosted Sparse Extent Header" and "Stream-Optimized Compressed Sparse Extents";
//! qemu `block/vmdk.c` reads the same fields).

use crate::bytes::{le16, le32, le64};
use crate::err;
use crate::error::Result;

/// `KDMV` as stored (magicNumber 0x564d444b, little-endian).
pub const MAGIC: [u8; 4] = *b"KDMV";
/// Sector size of every VMDK offset and size.
pub const SECTOR: u64 = 512;
/// Size of the sparse extent header.
pub const HEADER_LEN: usize = 512;
/// gdOffset value meaning "the grain directory is found through the footer".
pub const GD_AT_END: u64 = u64::MAX;

/// Flag bit 0: the newline-detection characters are valid.
pub const FLAG_NL_DETECT: u32 = 1 << 0;
/// Flag bit 1: a redundant grain directory is kept.
pub const FLAG_RGD: u32 = 1 << 1;
/// Flag bit 2: grain table entry 1 means "zeroed grain".
pub const FLAG_ZERO_GRAIN: u32 = 1 << 2;
/// Flag bit 16: grains are compressed.
pub const FLAG_COMPRESSED: u32 = 1 << 16;
/// Flag bit 17: the stream has markers (grain markers carry their LBA).
pub const FLAG_MARKERS: u32 = 1 << 17;
/// compressAlgorithm 1: deflate (zlib stream, RFC 1950).
pub const COMPRESS_DEFLATE: u16 = 1;
/// Grain table entry meaning "zeroed grain" (with [`FLAG_ZERO_GRAIN`]).
pub const GTE_ZEROED: u32 = 1;

/// Marker types (the u32 after a metadata marker's zero size).
pub mod marker {
    /// End of stream.
    pub const EOS: u32 = 0;
    /// A grain table follows.
    pub const GT: u32 = 1;
    /// The grain directory follows.
    pub const GD: u32 = 2;
    /// The footer (a header copy with the real gdOffset) follows.
    pub const FOOTER: u32 = 3;
}

/// Header field offsets.
pub mod off {
    /// u32 magicNumber.
    pub const MAGIC: usize = 0;
    /// u32 version (1, 2 or 3).
    pub const VERSION: usize = 4;
    /// u32 flags.
    pub const FLAGS: usize = 8;
    /// u64 capacity in sectors.
    pub const CAPACITY: usize = 12;
    /// u64 grain size in sectors.
    pub const GRAIN_SIZE: usize = 20;
    /// u64 descriptor offset (sectors).
    pub const DESCRIPTOR_OFFSET: usize = 28;
    /// u64 descriptor size (sectors).
    pub const DESCRIPTOR_SIZE: usize = 36;
    /// u32 grain table entries per grain table.
    pub const NUM_GTES_PER_GT: usize = 44;
    /// u64 redundant grain directory offset (sectors).
    pub const RGD_OFFSET: usize = 48;
    /// u64 grain directory offset (sectors) or [`super::GD_AT_END`].
    pub const GD_OFFSET: usize = 56;
    /// u64 sectors before the first grain.
    pub const OVERHEAD: usize = 64;
    /// u8 unclean shutdown.
    pub const UNCLEAN_SHUTDOWN: usize = 72;
    /// Four newline-detection characters: '\n', ' ', '\r', '\n'.
    pub const NL_CHARS: usize = 73;
    /// u16 compress algorithm.
    pub const COMPRESS_ALGORITHM: usize = 77;
    /// End of the used fields (padding follows up to 512).
    pub const END: usize = 79;
}
const _: () = assert!(off::END + 433 == HEADER_LEN);

/// The sparse extent header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    /// 1, 2 or 3.
    pub version: u32,
    /// Flag bits.
    pub flags: u32,
    /// Virtual size in sectors.
    pub capacity: u64,
    /// Grain size in sectors.
    pub grain_size: u64,
    /// Embedded descriptor offset (sectors).
    pub descriptor_offset: u64,
    /// Embedded descriptor size (sectors).
    pub descriptor_size: u64,
    /// Entries per grain table.
    pub num_gtes_per_gt: u32,
    /// Redundant grain directory (sectors).
    pub rgd_offset: u64,
    /// Grain directory (sectors), or [`GD_AT_END`].
    pub gd_offset: u64,
    /// Sectors of metadata before the first grain.
    pub overhead: u64,
    /// Set when not closed cleanly.
    pub unclean_shutdown: bool,
    /// 0: none, 1: deflate.
    pub compress_algorithm: u16,
}

impl Header {
    /// Parses a 512-byte header (magic checked; ranges checked by the reader).
    pub fn parse(b: &[u8]) -> Result<Header> {
        if b.len() < HEADER_LEN {
            return Err(err!(
                Truncated,
                "the sparse header needs {HEADER_LEN} bytes"
            ));
        }
        if b[..4] != MAGIC {
            return Err(err!(BadSignature, "no KDMV magic"));
        }
        Ok(Header {
            version: le32(b, off::VERSION),
            flags: le32(b, off::FLAGS),
            capacity: le64(b, off::CAPACITY),
            grain_size: le64(b, off::GRAIN_SIZE),
            descriptor_offset: le64(b, off::DESCRIPTOR_OFFSET),
            descriptor_size: le64(b, off::DESCRIPTOR_SIZE),
            num_gtes_per_gt: le32(b, off::NUM_GTES_PER_GT),
            rgd_offset: le64(b, off::RGD_OFFSET),
            gd_offset: le64(b, off::GD_OFFSET),
            overhead: le64(b, off::OVERHEAD),
            unclean_shutdown: b[off::UNCLEAN_SHUTDOWN] != 0,
            compress_algorithm: le16(b, off::COMPRESS_ALGORITHM),
        })
    }

    /// Encodes the header as 512 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        let mut put = |o: usize, v: &[u8]| b[o..o + v.len()].copy_from_slice(v);
        put(off::MAGIC, &MAGIC);
        put(off::VERSION, &self.version.to_le_bytes());
        put(off::FLAGS, &self.flags.to_le_bytes());
        put(off::CAPACITY, &self.capacity.to_le_bytes());
        put(off::GRAIN_SIZE, &self.grain_size.to_le_bytes());
        put(
            off::DESCRIPTOR_OFFSET,
            &self.descriptor_offset.to_le_bytes(),
        );
        put(off::DESCRIPTOR_SIZE, &self.descriptor_size.to_le_bytes());
        put(off::NUM_GTES_PER_GT, &self.num_gtes_per_gt.to_le_bytes());
        put(off::RGD_OFFSET, &self.rgd_offset.to_le_bytes());
        put(off::GD_OFFSET, &self.gd_offset.to_le_bytes());
        put(off::OVERHEAD, &self.overhead.to_le_bytes());
        put(off::UNCLEAN_SHUTDOWN, &[u8::from(self.unclean_shutdown)]);
        put(off::NL_CHARS, b"\n \r\n");
        put(
            off::COMPRESS_ALGORITHM,
            &self.compress_algorithm.to_le_bytes(),
        );
        b
    }

    /// Grain size in bytes.
    pub fn grain_bytes(&self) -> u64 {
        self.grain_size * SECTOR
    }

    /// Virtual size in bytes.
    pub fn size(&self) -> u64 {
        self.capacity * SECTOR
    }

    /// Number of grain tables (= grain directory entries).
    pub fn gd_entries(&self) -> u64 {
        self.capacity
            .div_ceil(self.grain_size.max(1))
            .div_ceil(u64::from(self.num_gtes_per_gt.max(1)))
    }
}

/// A metadata marker sector: `{u64 numSectors, u32 size = 0, u32 type}` padded to 512 bytes.
pub fn metadata_marker(num_sectors: u64, ty: u32) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[..8].copy_from_slice(&num_sectors.to_le_bytes());
    b[12..16].copy_from_slice(&ty.to_le_bytes());
    b
}

/// Length of a grain marker's header: `{u64 lba, u32 size}`.
pub const GRAIN_MARKER_LEN: usize = 12;

/// The values of the embedded descriptor this tool cares about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Descriptor {
    /// `createType`.
    pub create_type: String,
    /// `parentCID` (ffffffff: none).
    pub parent_cid: String,
    /// `parentFileNameHint`, for differencing disks.
    pub parent_hint: Option<String>,
    /// Extent lines (`RW 8388608 SPARSE "x.vmdk"`).
    pub extents: Vec<String>,
}

impl Descriptor {
    /// Parses descriptor text (`key = "value"` lines, `#` comments, extent lines).
    pub fn parse(text: &str) -> Descriptor {
        let mut d = Descriptor::default();
        for line in text.lines().map(str::trim) {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let first = line.split_whitespace().next().unwrap_or("");
            if matches!(first, "RW" | "RDONLY" | "NOACCESS") {
                d.extents.push(line.to_string());
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                let v = v.trim().trim_matches('"').to_string();
                match k.trim() {
                    "createType" => d.create_type = v,
                    "parentCID" => d.parent_cid = v,
                    "parentFileNameHint" => d.parent_hint = Some(v),
                    _ => {}
                }
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_magic() {
        let h = Header {
            version: 3,
            flags: FLAG_NL_DETECT | FLAG_COMPRESSED | FLAG_MARKERS,
            capacity: 2048,
            grain_size: 128,
            descriptor_offset: 1,
            descriptor_size: 20,
            num_gtes_per_gt: 512,
            gd_offset: GD_AT_END,
            overhead: 128,
            compress_algorithm: COMPRESS_DEFLATE,
            ..Header::default()
        };
        let b = h.encode();
        assert_eq!(&b[..4], b"KDMV");
        assert_eq!(u32::from_le_bytes(b[..4].try_into().unwrap()), 0x564d_444b);
        assert_eq!(&b[73..77], b"\n \r\n");
        assert_eq!(Header::parse(&b).unwrap(), h);
        assert_eq!(h.gd_entries(), 1);
    }

    #[test]
    fn descriptor_fields() {
        let d = Descriptor::parse(
            "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"streamOptimized\"\n\n# Extent description\nRW 2048 SPARSE \"a.vmdk\"\n",
        );
        assert_eq!(d.create_type, "streamOptimized");
        assert_eq!(d.parent_cid, "ffffffff");
        assert_eq!(d.extents, vec!["RW 2048 SPARSE \"a.vmdk\"".to_string()]);
    }
}
