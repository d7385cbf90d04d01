//! qcow2 on-disk structures, all big-endian (qemu `docs/interop/qcow2.rst`, "All numbers in
//! qcow2 are stored in Big Endian byte order").
//!
//! Offsets below name the header fields ("Header" section of the spec); the L1/L2/refcount
//! entry bits follow the "Cluster mapping" and "Host cluster management" sections.

use crate::bytes::{be32, be64};
use crate::err;
use crate::error::Result;

/// `QFI\xfb`.
pub const MAGIC: [u8; 4] = *b"QFI\xfb";

/// Header field offsets (spec "Header").
pub mod off {
    /// u32 magic.
    pub const MAGIC: usize = 0;
    /// u32 version (2 or 3).
    pub const VERSION: usize = 4;
    /// u64 offset of the backing file name (0: none).
    pub const BACKING_FILE_OFFSET: usize = 8;
    /// u32 length of the backing file name.
    pub const BACKING_FILE_SIZE: usize = 16;
    /// u32 cluster_bits.
    pub const CLUSTER_BITS: usize = 20;
    /// u64 virtual size.
    pub const SIZE: usize = 24;
    /// u32 crypt_method (0: none).
    pub const CRYPT_METHOD: usize = 32;
    /// u32 number of L1 entries.
    pub const L1_SIZE: usize = 36;
    /// u64 L1 table offset.
    pub const L1_TABLE_OFFSET: usize = 40;
    /// u64 refcount table offset.
    pub const REFCOUNT_TABLE_OFFSET: usize = 48;
    /// u32 clusters of the refcount table.
    pub const REFCOUNT_TABLE_CLUSTERS: usize = 56;
    /// u32 number of snapshots.
    pub const NB_SNAPSHOTS: usize = 60;
    /// u64 snapshot table offset.
    pub const SNAPSHOTS_OFFSET: usize = 64;
    /// u64 incompatible feature bits (v3).
    pub const INCOMPATIBLE_FEATURES: usize = 72;
    /// u64 compatible feature bits (v3).
    pub const COMPATIBLE_FEATURES: usize = 80;
    /// u64 autoclear feature bits (v3).
    pub const AUTOCLEAR_FEATURES: usize = 88;
    /// u32 refcount_order (v3; v2 is always 4).
    pub const REFCOUNT_ORDER: usize = 96;
    /// u32 header length (v3; v2 is always 72).
    pub const HEADER_LENGTH: usize = 100;
    /// u8 compression type (when header_length > 104).
    pub const COMPRESSION_TYPE: usize = 104;
}

/// Length of a version 2 header.
pub const V2_HEADER_LEN: usize = 72;
/// Length of the version 3 header we write (with the compression type byte, padded to 8).
pub const V3_HEADER_LEN: usize = 112;
const _: () = assert!(off::COMPRESSION_TYPE + 8 == V3_HEADER_LEN);
const _: () = assert!(off::INCOMPATIBLE_FEATURES == V2_HEADER_LEN);

/// Incompatible feature bit 0: the image was not closed cleanly (refcounts may be wrong).
pub const INCOMPAT_DIRTY: u64 = 1 << 0;
/// Incompatible feature bit 1: the image is marked corrupt.
pub const INCOMPAT_CORRUPT: u64 = 1 << 1;
/// Incompatible feature bit 2: guest data lives in an external data file.
pub const INCOMPAT_EXTERNAL_DATA: u64 = 1 << 2;
/// Incompatible feature bit 3: the compression type field is not deflate.
pub const INCOMPAT_COMPRESSION_TYPE: u64 = 1 << 3;
/// Incompatible feature bit 4: extended L2 entries (subclusters).
pub const INCOMPAT_EXTENDED_L2: u64 = 1 << 4;

/// Header extension types (spec "Header extensions").
pub mod ext {
    /// End of the header extension area.
    pub const END: u32 = 0;
    /// Backing file format name.
    pub const BACKING_FORMAT: u32 = 0xe279_2aca;
    /// Feature name table.
    pub const FEATURE_NAMES: u32 = 0x6803_f857;
    /// Bitmaps extension.
    pub const BITMAPS: u32 = 0x2385_2875;
    /// Full disk encryption header pointer.
    pub const ENCRYPTION: u32 = 0x0537_be77;
    /// External data file name.
    pub const EXTERNAL_DATA_FILE: u32 = 0x4441_5441;
}

/// L1/L2 entry bit 63: refcount is exactly one ("COPIED").
pub const OFLAG_COPIED: u64 = 1 << 63;
/// L2 entry bit 62: the cluster is compressed.
pub const OFLAG_COMPRESSED: u64 = 1 << 62;
/// L2 entry bit 0 (standard clusters, v3): the cluster reads as zeros.
pub const OFLAG_ZERO: u64 = 1;
/// Bits 9-55 of L1 entries and standard L2 entries: host offset.
pub const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Bits 9-63 of refcount table entries: refcount block offset.
pub const REFT_OFFSET_MASK: u64 = 0xffff_ffff_ffff_fe00;

/// Smallest cluster size (spec: cluster_bits >= 9).
pub const MIN_CLUSTER_BITS: u32 = 9;
/// Largest cluster size qemu accepts (2 MiB).
pub const MAX_CLUSTER_BITS: u32 = 21;
/// Default cluster size (64 KiB).
pub const DEFAULT_CLUSTER_BITS: u32 = 16;
/// Longest backing file name (spec: "Must not be longer than 1023 bytes").
pub const MAX_BACKING_NAME: u32 = 1023;

/// The header fields this tool uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// Offset of the backing file name (0: no backing file).
    pub backing_file_offset: u64,
    /// Length of the backing file name.
    pub backing_file_size: u32,
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// Virtual size.
    pub size: u64,
    /// 0: not encrypted.
    pub crypt_method: u32,
    /// Entries of the active L1 table.
    pub l1_size: u32,
    /// Offset of the active L1 table.
    pub l1_table_offset: u64,
    /// Offset of the refcount table.
    pub refcount_table_offset: u64,
    /// Clusters of the refcount table.
    pub refcount_table_clusters: u32,
    /// Internal snapshots.
    pub nb_snapshots: u32,
    /// Offset of the snapshot table.
    pub snapshots_offset: u64,
    /// Incompatible feature bits.
    pub incompatible_features: u64,
    /// Compatible feature bits.
    pub compatible_features: u64,
    /// Autoclear feature bits.
    pub autoclear_features: u64,
    /// Refcount width is `1 << refcount_order` bits.
    pub refcount_order: u32,
    /// Length of the header (extensions follow it).
    pub header_length: u32,
    /// 0: deflate, 1: zstd.
    pub compression_type: u8,
}

impl Header {
    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1u64 << self.cluster_bits
    }

    /// Parses and checks the fixed header fields (not against the file: see the reader).
    pub fn parse(b: &[u8]) -> Result<Header> {
        if b.len() < V2_HEADER_LEN {
            return Err(err!(Truncated, "the header needs {V2_HEADER_LEN} bytes").at(0));
        }
        if b[..4] != MAGIC {
            return Err(err!(BadSignature, "no QFI\\xfb magic").at(0));
        }
        let version = be32(b, off::VERSION);
        if version != 2 && version != 3 {
            return Err(
                err!(Unsupported, "qcow2 version {version} (2 and 3 are known)")
                    .at(off::VERSION as u64),
            );
        }
        let mut h = Header {
            version,
            backing_file_offset: be64(b, off::BACKING_FILE_OFFSET),
            backing_file_size: be32(b, off::BACKING_FILE_SIZE),
            cluster_bits: be32(b, off::CLUSTER_BITS),
            size: be64(b, off::SIZE),
            crypt_method: be32(b, off::CRYPT_METHOD),
            l1_size: be32(b, off::L1_SIZE),
            l1_table_offset: be64(b, off::L1_TABLE_OFFSET),
            refcount_table_offset: be64(b, off::REFCOUNT_TABLE_OFFSET),
            refcount_table_clusters: be32(b, off::REFCOUNT_TABLE_CLUSTERS),
            nb_snapshots: be32(b, off::NB_SNAPSHOTS),
            snapshots_offset: be64(b, off::SNAPSHOTS_OFFSET),
            refcount_order: 4,
            header_length: V2_HEADER_LEN as u32,
            ..Header::default()
        };
        if version == 3 {
            if b.len() < off::HEADER_LENGTH + 4 {
                return Err(err!(Truncated, "the v3 header needs 104 bytes").at(0));
            }
            h.incompatible_features = be64(b, off::INCOMPATIBLE_FEATURES);
            h.compatible_features = be64(b, off::COMPATIBLE_FEATURES);
            h.autoclear_features = be64(b, off::AUTOCLEAR_FEATURES);
            h.refcount_order = be32(b, off::REFCOUNT_ORDER);
            h.header_length = be32(b, off::HEADER_LENGTH);
            if h.header_length > off::COMPRESSION_TYPE as u32 {
                h.compression_type = b.get(off::COMPRESSION_TYPE).copied().unwrap_or(0);
            }
        }
        h.check()?;
        Ok(h)
    }

    fn check(&self) -> Result<()> {
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&self.cluster_bits) {
            return Err(err!(
                BadField,
                "cluster_bits {} (qemu accepts 9 to 21: 512 B to 2 MiB)",
                self.cluster_bits
            )
            .at(off::CLUSTER_BITS as u64));
        }
        if self.refcount_order > 6 {
            return Err(
                err!(BadField, "refcount_order {} (0 to 6)", self.refcount_order)
                    .at(off::REFCOUNT_ORDER as u64),
            );
        }
        let min_len = if self.version == 3 {
            104
        } else {
            V2_HEADER_LEN as u32
        };
        if self.header_length < min_len || u64::from(self.header_length) > self.cluster_size() {
            return Err(err!(BadField, "header_length {}", self.header_length)
                .at(off::HEADER_LENGTH as u64));
        }
        Ok(())
    }

    /// Encodes a version 3 header of [`V3_HEADER_LEN`] bytes.
    pub fn encode(&self) -> [u8; V3_HEADER_LEN] {
        let mut b = [0u8; V3_HEADER_LEN];
        let mut put = |o: usize, v: &[u8]| b[o..o + v.len()].copy_from_slice(v);
        put(off::MAGIC, &MAGIC);
        put(off::VERSION, &3u32.to_be_bytes());
        put(
            off::BACKING_FILE_OFFSET,
            &self.backing_file_offset.to_be_bytes(),
        );
        put(
            off::BACKING_FILE_SIZE,
            &self.backing_file_size.to_be_bytes(),
        );
        put(off::CLUSTER_BITS, &self.cluster_bits.to_be_bytes());
        put(off::SIZE, &self.size.to_be_bytes());
        put(off::CRYPT_METHOD, &self.crypt_method.to_be_bytes());
        put(off::L1_SIZE, &self.l1_size.to_be_bytes());
        put(off::L1_TABLE_OFFSET, &self.l1_table_offset.to_be_bytes());
        put(
            off::REFCOUNT_TABLE_OFFSET,
            &self.refcount_table_offset.to_be_bytes(),
        );
        put(
            off::REFCOUNT_TABLE_CLUSTERS,
            &self.refcount_table_clusters.to_be_bytes(),
        );
        put(off::NB_SNAPSHOTS, &self.nb_snapshots.to_be_bytes());
        put(off::SNAPSHOTS_OFFSET, &self.snapshots_offset.to_be_bytes());
        put(
            off::INCOMPATIBLE_FEATURES,
            &self.incompatible_features.to_be_bytes(),
        );
        put(
            off::COMPATIBLE_FEATURES,
            &self.compatible_features.to_be_bytes(),
        );
        put(
            off::AUTOCLEAR_FEATURES,
            &self.autoclear_features.to_be_bytes(),
        );
        put(off::REFCOUNT_ORDER, &self.refcount_order.to_be_bytes());
        put(off::HEADER_LENGTH, &(V3_HEADER_LEN as u32).to_be_bytes());
        b[off::COMPRESSION_TYPE] = self.compression_type;
        b
    }
}

/// Guest clusters mapped by one L2 table (64-bit entries).
pub fn l2_entries(cluster_bits: u32) -> u64 {
    1u64 << (cluster_bits - 3)
}

/// L1 entries needed for `size` bytes.
pub fn l1_entries(size: u64, cluster_bits: u32) -> u64 {
    size.div_ceil(1u64 << cluster_bits)
        .div_ceil(l2_entries(cluster_bits))
}

/// What an L2 entry says about a guest cluster (spec "Cluster mapping").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L2Entry {
    /// Not allocated here: the backing file's data (zeros without one).
    Unallocated,
    /// Reads as zeros (v3 zero flag), whether or not a host cluster is preallocated.
    Zero,
    /// Uncompressed data at a cluster-aligned host offset.
    Normal(u64),
    /// Compressed data: host byte offset and number of 512-byte sectors it may span.
    Compressed {
        /// Host byte offset (not aligned).
        offset: u64,
        /// 512-byte sectors covered, counted from the sector holding `offset`.
        sectors: u64,
    },
}

/// Position of the compressed sector-count field: `x = 62 - (cluster_bits - 8)`.
pub fn compressed_shift(cluster_bits: u32) -> u32 {
    62 - (cluster_bits - 8)
}

impl L2Entry {
    /// Decodes a 64-bit L2 entry. `v3` enables the zero flag.
    pub fn decode(e: u64, cluster_bits: u32, v3: bool) -> L2Entry {
        if e & OFLAG_COMPRESSED != 0 {
            let x = compressed_shift(cluster_bits);
            let offset = e & ((1u64 << x) - 1);
            let sectors = ((e & !(OFLAG_COPIED | OFLAG_COMPRESSED)) >> x) + 1;
            return L2Entry::Compressed { offset, sectors };
        }
        if v3 && e & OFLAG_ZERO != 0 {
            return L2Entry::Zero;
        }
        match e & OFFSET_MASK {
            0 => L2Entry::Unallocated,
            o => L2Entry::Normal(o),
        }
    }

    /// Encodes the entry as this tool writes it (COPIED on normal clusters: refcount 1).
    pub fn encode(self, cluster_bits: u32) -> u64 {
        match self {
            L2Entry::Unallocated => 0,
            L2Entry::Zero => OFLAG_ZERO,
            L2Entry::Normal(o) => o | OFLAG_COPIED,
            L2Entry::Compressed { offset, sectors } => {
                let x = compressed_shift(cluster_bits);
                OFLAG_COMPRESSED | ((sectors - 1) << x) | offset
            }
        }
    }
}

/// Reads refcount number `i` of a refcount block of `1 << order`-bit entries.
pub fn refcount_get(block: &[u8], order: u32, i: usize) -> u64 {
    let bits = 1usize << order;
    if bits >= 8 {
        let w = bits / 8;
        let s = &block[i * w..i * w + w];
        s.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x))
    } else {
        let per = 8 / bits;
        let byte = block[i / per];
        let shift = (i % per) * bits;
        u64::from((byte >> shift) & ((1u8 << bits) - 1))
    }
}

/// Writes refcount number `i` (the value must fit the width).
pub fn refcount_set(block: &mut [u8], order: u32, i: usize, v: u64) {
    let bits = 1usize << order;
    if bits >= 8 {
        let w = bits / 8;
        let be = v.to_be_bytes();
        block[i * w..i * w + w].copy_from_slice(&be[8 - w..]);
    } else {
        let per = 8 / bits;
        let shift = (i % per) * bits;
        let mask = ((1u8 << bits) - 1) << shift;
        block[i / per] = (block[i / per] & !mask) | (((v as u8) << shift) & mask);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header {
            version: 3,
            cluster_bits: 16,
            size: 1 << 30,
            l1_size: 2,
            l1_table_offset: 0x30000,
            refcount_table_offset: 0x10000,
            refcount_table_clusters: 1,
            refcount_order: 4,
            header_length: V3_HEADER_LEN as u32,
            ..Header::default()
        };
        let b = h.encode();
        assert_eq!(&b[..4], b"QFI\xfb");
        assert_eq!(Header::parse(&b).unwrap(), h);
        let mut bad = b;
        bad[off::CLUSTER_BITS + 3] = 22;
        assert_eq!(
            Header::parse(&bad).unwrap_err().kind(),
            crate::ErrorKind::BadField
        );
    }

    #[test]
    fn l2_entries_round_trip() {
        for cb in [9u32, 12, 16, 21] {
            let c = L2Entry::Compressed {
                offset: 0x1234_5671,
                sectors: 2,
            };
            assert_eq!(L2Entry::decode(c.encode(cb), cb, true), c);
            let n = L2Entry::Normal(7 << cb);
            assert_eq!(L2Entry::decode(n.encode(cb), cb, true), n);
        }
        assert_eq!(L2Entry::decode(1, 16, true), L2Entry::Zero);
        assert_eq!(L2Entry::decode(1, 16, false), L2Entry::Unallocated);
        assert_eq!(L2Entry::decode(0, 16, true), L2Entry::Unallocated);
    }

    #[test]
    fn refcounts_of_every_width() {
        for order in 0..=6u32 {
            let mut blk = vec![0u8; 512];
            let max = if order == 6 {
                u64::MAX
            } else {
                (1u64 << (1 << order)) - 1
            };
            refcount_set(&mut blk, order, 3, max);
            refcount_set(&mut blk, order, 4, 1);
            assert_eq!(refcount_get(&blk, order, 3), max);
            assert_eq!(refcount_get(&blk, order, 4), 1);
            assert_eq!(refcount_get(&blk, order, 2), 0);
        }
    }
}
