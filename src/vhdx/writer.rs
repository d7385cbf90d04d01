//! Writing VHDX images (dynamic and fixed), streaming with bounded memory.
//!
//! Layout (as Hyper-V and qemu lay it out): file identifier at 0, headers at 64 KiB and 128 KiB,
//! region tables at 192 KiB and 256 KiB, an empty 1 MiB log at 1 MiB, the metadata region at
//! 2 MiB (1 MiB), the BAT at 3 MiB (rounded up to whole MiB), then payload blocks, 1 MiB aligned.

use super::format::*;
use crate::context::BuildContext;
use crate::disk::stream::{EXTENT_WINDOW, Padded, WriteOptions, copy_data, data_bytes};
use crate::disk::{DiskImage, ExtentKind, Progress, for_each_extent};
use crate::err;
use crate::error::{Error, IoContext, Result};
use crate::guid::Guid;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Default block size (Hyper-V's).
pub const DEFAULT_BLOCK_SIZE: u64 = 32 * MIB;
/// Offset of the log.
pub const LOG_OFFSET: u64 = MIB;
/// Length of the log.
pub const LOG_LENGTH: u64 = MIB;
/// Offset of the metadata region.
pub const METADATA_OFFSET: u64 = 2 * MIB;
/// Length of the metadata region.
pub const METADATA_LENGTH: u64 = MIB;
/// Offset of the BAT region.
pub const BAT_OFFSET: u64 = 3 * MIB;
/// BAT entries buffered before being written (1 MiB of entries).
const BAT_CHUNK: u64 = 128 * 1024;

/// The parameters of a VHDX to write.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Virtual size (a multiple of the logical sector size).
    pub virtual_size: u64,
    /// Block size.
    pub block_size: u64,
    /// Logical sector size.
    pub logical_sector: u32,
    /// Physical sector size.
    pub physical_sector: u32,
    /// BAT geometry.
    pub geo: BatGeometry,
    /// Bytes of the BAT region.
    pub bat_length: u64,
    /// First payload byte.
    pub payload_start: u64,
}

impl Layout {
    /// Validates the options and computes the layout for `virtual_size` bytes.
    pub fn new(virtual_size: u64, opts: &WriteOptions) -> Result<Layout> {
        let bs = opts.block_size.unwrap_or(DEFAULT_BLOCK_SIZE);
        if !valid_block_size(bs) {
            return Err(err!(
                InvalidArgument,
                "VHDX block size {bs} must be a power of two from 1 MiB to 256 MiB"
            ));
        }
        let lss = opts.logical_sector_size;
        let pss = opts.physical_sector_size;
        if !valid_sector_size(u64::from(lss)) {
            return Err(err!(
                InvalidArgument,
                "VHDX logical sector size {lss} must be 512 or 4096"
            ));
        }
        if !valid_sector_size(u64::from(pss)) {
            return Err(err!(
                InvalidArgument,
                "VHDX physical sector size {pss} must be 512 or 4096"
            ));
        }
        if virtual_size == 0 {
            return Err(err!(InvalidArgument, "a VHDX disk cannot be empty"));
        }
        if virtual_size > MAX_VIRTUAL_SIZE {
            return Err(err!(
                LimitExceeded,
                "virtual size {virtual_size} exceeds the VHDX maximum of 64 TiB"
            ));
        }
        if !virtual_size.is_multiple_of(u64::from(lss)) {
            return Err(err!(
                InvalidArgument,
                "virtual size {virtual_size} is not a multiple of the {lss}-byte sector"
            ));
        }
        let geo = BatGeometry::new(virtual_size, bs, u64::from(lss), false);
        let bat_length = (geo.entries * 8).div_ceil(MIB).max(1) * MIB;
        Ok(Layout {
            virtual_size,
            block_size: bs,
            logical_sector: lss,
            physical_sector: pss,
            geo,
            bat_length,
            payload_start: BAT_OFFSET + bat_length,
        })
    }
}

/// Metadata region bytes (table + items) for a layout.
pub fn encode_metadata(
    l: &Layout,
    fixed: bool,
    page83: Guid,
    parent: Option<&ParentLocator>,
) -> Vec<u8> {
    let fp = FileParameters {
        block_size: l.block_size as u32,
        leave_blocks_allocated: fixed,
        has_parent: parent.is_some(),
    };
    let mut items: Vec<(Guid, Vec<u8>, bool)> = vec![
        (FILE_PARAMETERS_GUID, fp.encode().to_vec(), false),
        (
            VIRTUAL_DISK_SIZE_GUID,
            l.virtual_size.to_le_bytes().to_vec(),
            true,
        ),
        (PAGE83_GUID, page83.to_mixed_endian().to_vec(), true),
        (
            LOGICAL_SECTOR_GUID,
            l.logical_sector.to_le_bytes().to_vec(),
            true,
        ),
        (
            PHYSICAL_SECTOR_GUID,
            l.physical_sector.to_le_bytes().to_vec(),
            true,
        ),
    ];
    if let Some(p) = parent {
        items.push((PARENT_LOCATOR_GUID, p.encode(), false));
    }
    let mut body = Vec::new();
    let mut entries = Vec::new();
    for (g, v, vd) in items {
        entries.push(MetadataEntry {
            guid: g,
            offset: (METADATA_TABLE_SIZE + body.len()) as u32,
            length: v.len() as u32,
            is_user: false,
            is_virtual_disk: vd,
            is_required: true,
        });
        body.extend_from_slice(&v);
    }
    let mut out = MetadataTable { entries }.encode();
    out.extend_from_slice(&body);
    out
}

/// The headers, region tables and metadata (everything before the BAT), as (offset, bytes).
pub fn encode_structures(
    l: &Layout,
    fixed: bool,
    ctx: &BuildContext,
    label: &str,
) -> Vec<(u64, Vec<u8>)> {
    let ident = FileIdentifier {
        creator: format!("isotool {}", env!("CARGO_PKG_VERSION")),
    };
    let mut h = Header {
        sequence: 0,
        file_write_guid: ctx.new_guid(&format!("vhdx file write guid {label}")),
        data_write_guid: ctx.new_guid(&format!("vhdx data write guid {label}")),
        log_guid: Guid::NIL,
        log_version: 0,
        version: 1,
        log_length: LOG_LENGTH as u32,
        log_offset: LOG_OFFSET,
    };
    let h1 = h.encode();
    h.sequence = 1;
    let h2 = h.encode();
    let rt = RegionTable {
        entries: vec![
            RegionEntry {
                guid: BAT_GUID,
                offset: BAT_OFFSET,
                length: l.bat_length as u32,
                required: true,
            },
            RegionEntry {
                guid: METADATA_GUID,
                offset: METADATA_OFFSET,
                length: METADATA_LENGTH as u32,
                required: true,
            },
        ],
    }
    .encode();
    let page83 = ctx.new_guid(&format!("vhdx page83 {label}"));
    vec![
        (0, ident.encode()),
        (HEADER1_OFFSET, h1),
        (HEADER2_OFFSET, h2),
        (REGION1_OFFSET, rt.clone()),
        (REGION2_OFFSET, rt),
        (METADATA_OFFSET, encode_metadata(l, fixed, page83, None)),
    ]
}

/// Writes BAT entries in increasing index order, one bounded chunk at a time.
struct BatWriter<'a> {
    out: &'a File,
    path: &'a Path,
    base: u64,
    total: u64,
    buf: Vec<u8>,
    dirty: bool,
}

impl<'a> BatWriter<'a> {
    fn new(out: &'a File, path: &'a Path, total: u64) -> Self {
        BatWriter {
            out,
            path,
            base: 0,
            total,
            buf: vec![0u8; (BAT_CHUNK.min(total.max(1)) * 8) as usize],
            dirty: false,
        }
    }

    fn set(&mut self, idx: u64, val: u64) -> Result<()> {
        let cap = self.buf.len() as u64 / 8;
        if idx < self.base || idx >= self.total {
            return Err(err!(
                InvalidArgument,
                "BAT entry {idx} written out of order"
            ));
        }
        while idx >= self.base + cap {
            self.flush()?;
            self.base += cap;
        }
        let o = ((idx - self.base) * 8) as usize;
        self.buf[o..o + 8].copy_from_slice(&val.to_le_bytes());
        self.dirty = true;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.dirty {
            let cap = self.buf.len() as u64 / 8;
            let n = cap.min(self.total - self.base) as usize * 8;
            self.out
                .write_all_at(&self.buf[..n], BAT_OFFSET + self.base * 8)
                .ctx(self.path, "writing the VHDX BAT")?;
            self.buf.fill(0);
            self.dirty = false;
        }
        Ok(())
    }
}

/// Writes `src` as a VHDX into `out` (empty).
pub fn write(
    src: &dyn DiskImage,
    out: &File,
    out_path: &Path,
    fixed: bool,
    opts: &WriteOptions,
    ctx: &BuildContext,
    progress: &dyn Progress,
) -> Result<()> {
    let lss = u64::from(opts.logical_sector_size);
    let vsize = if lss > 0 {
        src.len().div_ceil(lss) * lss
    } else {
        src.len()
    };
    let l = Layout::new(vsize, opts).map_err(|e| e.with_path(out_path))?;
    let padded = Padded::new(src, vsize);
    let src: &dyn DiskImage = if vsize != src.len() {
        progress.note(&format!(
            "virtual size rounded up from {} to {vsize} bytes (a multiple of the {lss}-byte logical sector)",
            src.len()
        ));
        &padded
    } else {
        src
    };
    progress.start("writing vhdx", data_bytes(src)?);
    let label = format!(
        "size={vsize} block={} lss={} fixed={fixed} src={}",
        l.block_size,
        l.logical_sector,
        src.info().format
    );
    for (off, bytes) in encode_structures(&l, fixed, ctx, &label) {
        out.write_all_at(&bytes, off)
            .ctx(out_path, "writing VHDX headers")?;
    }
    let mut bat = BatWriter::new(out, out_path, l.geo.entries);
    let end = if fixed {
        write_fixed_bat(&l, &mut bat)?
    } else {
        write_dynamic_payload(src, out, out_path, &l, &mut bat, progress)?
    };
    out.set_len(end).ctx(out_path, "sizing the VHDX")?;
    if fixed {
        copy_data(src, out, out_path, l.payload_start, progress)?;
    }
    progress.finish();
    Ok(())
}

/// A fixed VHDX: every block present, in order from the payload start; returns the file's
/// end (the data is copied once the file has its size).
fn write_fixed_bat(l: &Layout, bat: &mut BatWriter<'_>) -> Result<u64> {
    let bs = l.block_size;
    for b in 0..l.geo.data_blocks {
        bat.set(
            l.geo.payload_index(b),
            bat_entry(PAYLOAD_FULLY_PRESENT, l.payload_start + b * bs),
        )?;
    }
    bat.flush()?;
    Ok(l.payload_start + l.geo.data_blocks * bs)
}

/// A dynamic VHDX: only the blocks holding data, allocated in order as the source's extents
/// reach them; returns the file's end.
fn write_dynamic_payload(
    src: &dyn DiskImage,
    out: &File,
    out_path: &Path,
    l: &Layout,
    bat: &mut BatWriter<'_>,
    progress: &dyn Progress,
) -> Result<u64> {
    let bs = l.block_size;
    let wrap = |e: Error| e.with_path(out_path);
    let mut next = l.payload_start;
    let mut current: Option<(u64, u64)> = None; // (block, file offset)
    for_each_extent(src, EXTENT_WINDOW, |e| {
        if e.kind != ExtentKind::Data {
            return Ok(());
        }
        let mut pos = e.offset;
        while pos < e.end() {
            let b = pos / bs;
            let n = (bs - pos % bs).min(e.end() - pos);
            let foff = match current {
                Some((cb, f)) if cb == b => f,
                _ => {
                    let f = next;
                    next += bs;
                    bat.set(l.geo.payload_index(b), bat_entry(PAYLOAD_FULLY_PRESENT, f))?;
                    current = Some((b, f));
                    f
                }
            };
            src.copy_to(pos, n, out, foff + pos % bs).map_err(wrap)?;
            progress.advance(n);
            pos += n;
        }
        Ok(())
    })?;
    bat.flush()?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wo(bs: Option<u64>, lss: u32, pss: u32) -> WriteOptions {
        WriteOptions {
            block_size: bs,
            logical_sector_size: lss,
            physical_sector_size: pss,
        }
    }

    #[test]
    fn layouts() {
        let l = Layout::new(64 << 40, &wo(Some(MIB), 512, 4096)).unwrap();
        assert_eq!(l.geo.entries, (64 << 20) + ((64 << 20) - 1) / 4096);
        assert_eq!(l.bat_length, 513 * MIB);
        assert_eq!(l.payload_start, 516 * MIB);
        let l = Layout::new(10 << 30, &wo(None, 4096, 4096)).unwrap();
        assert_eq!(l.block_size, 32 * MIB);
        assert_eq!(l.geo.chunk_ratio, 1024);
        assert_eq!(l.bat_length, MIB);
        assert_eq!(l.payload_start, 4 * MIB);
        let kind = |r: Result<Layout>| r.unwrap_err().kind();
        use crate::ErrorKind::*;
        assert_eq!(
            kind(Layout::new((64 << 40) + 512, &wo(None, 512, 512))),
            LimitExceeded
        );
        assert_eq!(kind(Layout::new(0, &wo(None, 512, 512))), InvalidArgument);
        assert_eq!(
            kind(Layout::new(1000, &wo(None, 512, 512))),
            InvalidArgument
        );
        assert_eq!(
            kind(Layout::new(MIB, &wo(Some(3 * MIB), 512, 512))),
            InvalidArgument
        );
        assert_eq!(
            kind(Layout::new(MIB, &wo(Some(512 << 20), 512, 512))),
            InvalidArgument
        );
        assert_eq!(
            kind(Layout::new(MIB, &wo(None, 2048, 512))),
            InvalidArgument
        );
        assert_eq!(
            kind(Layout::new(MIB, &wo(None, 512, 1024))),
            InvalidArgument
        );
    }

    #[test]
    fn metadata_golden() {
        let l = Layout::new(10 << 30, &wo(Some(2 * MIB), 512, 4096)).unwrap();
        let m = encode_metadata(&l, true, Guid::from_bytes([0x42; 16]), None);
        assert_eq!(m.len(), 64 * 1024 + 8 + 8 + 16 + 4 + 4);
        let t = MetadataTable::parse(&m, 0).unwrap();
        let got: Vec<(u32, u32, bool, bool)> = t
            .entries
            .iter()
            .map(|e| (e.offset, e.length, e.is_virtual_disk, e.is_required))
            .collect();
        assert_eq!(
            got,
            vec![
                (65536, 8, false, true),
                (65544, 8, true, true),
                (65552, 16, true, true),
                (65568, 4, true, true),
                (65572, 4, true, true),
            ]
        );
        assert_eq!(t.entries[0].guid, FILE_PARAMETERS_GUID);
        // block size 2 MiB, LeaveBlockAllocated
        assert_eq!(&m[65536..65544], &[0, 0, 0x20, 0, 1, 0, 0, 0]);
        assert_eq!(&m[65544..65552], &(10u64 << 30).to_le_bytes());
        assert_eq!(&m[65552..65568], &[0x42; 16]);
        assert_eq!(&m[65568..65576], &[0, 2, 0, 0, 0, 0x10, 0, 0]);
    }

    #[test]
    fn structures_are_deterministic_and_valid() {
        let l = Layout::new(100 * MIB, &wo(None, 512, 4096)).unwrap();
        let ctx = BuildContext::fixed(1);
        let a = encode_structures(&l, false, &ctx, "x");
        assert_eq!(a, encode_structures(&l, false, &ctx, "x"));
        assert_ne!(a, encode_structures(&l, false, &ctx, "y"));
        let h1 = Header::parse(&a[1].1, HEADER1_OFFSET).unwrap();
        let h2 = Header::parse(&a[2].1, HEADER2_OFFSET).unwrap();
        assert_eq!((h1.sequence, h2.sequence), (0, 1));
        assert_eq!(h1.log_guid, Guid::NIL);
        assert_eq!((h1.log_offset, h1.log_length), (MIB, MIB as u32));
        let rt = RegionTable::parse(&a[3].1, REGION1_OFFSET, true).unwrap();
        assert_eq!(rt.entries[0].guid, BAT_GUID);
        assert_eq!(
            (rt.entries[0].offset, rt.entries[0].length),
            (3 * MIB, MIB as u32)
        );
        assert_eq!(rt.entries[1].guid, METADATA_GUID);
        assert_eq!(
            FileIdentifier::parse(&a[0].1).unwrap().creator,
            format!("isotool {}", env!("CARGO_PKG_VERSION"))
        );
    }
}
