//! Writing streamOptimized VMDK in VMware's layout (what vSphere, ESXi and ovftool import):
//! header (gdOffset "at end", flags: newline detection, compressed, markers), the embedded
//! descriptor starting `# Disk DescriptorFile`, then for each non-zero grain a grain marker
//! `{lba, size}` and its zlib stream (compressed in parallel on every core), each grain table
//! behind a GT marker after the grains it maps, the grain directory behind a GD marker, the
//! footer behind a footer marker, and the end-of-stream marker. One pass, bounded memory.

use super::layout::*;
use crate::context::BuildContext;
use crate::disk::chunks::{AppendWriter, PackFn, for_each_data_chunk, looks_incompressible};
use crate::disk::stream::{Padded, data_bytes};
use crate::disk::{DiskImage, Progress};
use crate::err;
use crate::error::Result;
use std::fs::File;
use std::path::Path;

/// Grain size written (sectors; 64 KiB, what VMware writes).
pub const GRAIN_SECTORS: u64 = 128;
/// Grain table entries per table.
pub const GTES_PER_GT: u32 = 512;
/// Sectors reserved for the embedded descriptor.
pub const DESCRIPTOR_SECTORS: u64 = 20;
/// Sectors before the first grain (header + descriptor, padded to a grain).
pub const OVERHEAD_SECTORS: u64 = 128;
/// zlib-compresses one grain (level 6, as qemu-img and VMware's disklib default). A grain that
/// looks incompressible (see [`looks_incompressible`]) is written as stored deflate blocks: a
/// streamOptimized grain is always zlib, and level 6 would end in stored blocks after trying.
pub fn zlib_grain(raw: &[u8]) -> Result<Option<Vec<u8>>> {
    let stored = looks_incompressible(raw);
    let level = if stored {
        flate2::Compression::none()
    } else {
        flate2::Compression::default()
    };
    let mut c = flate2::Compress::new(level, true);
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 512 + 64);
    loop {
        let done = c.total_in() as usize;
        match c.compress_vec(&raw[done..], &mut out, flate2::FlushCompress::Finish) {
            Ok(flate2::Status::StreamEnd) => return Ok(Some(out)),
            Ok(_) => out.reserve(out.capacity().max(4096)),
            Err(e) => return Err(err!(External, "zlib compression failed: {e}")),
        }
    }
}

/// The embedded descriptor (`# Disk DescriptorFile`), with ids derived from `ctx`.
pub fn descriptor(capacity: u64, file_name: &str, ctx: &BuildContext) -> String {
    let d = ctx.derive("vmdk content id");
    let mut cid = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
    if cid >= 0xffff_fffe {
        cid = 0x1234_5678;
    }
    let long: String = d[4..20].iter().map(|b| format!("{b:02x}")).collect();
    let uuid: Vec<String> = ctx
        .guid("vmdk uuid")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let cylinders = capacity.div_ceil(255 * 63).min(65535);
    format!(
        "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID={cid:08x}\nparentCID=ffffffff\ncreateType=\"streamOptimized\"\n\n\
         # Extent description\nRW {capacity} SPARSE \"{file_name}\"\n\n\
         # The Disk Data Base\n#DDB\n\n\
         ddb.adapterType = \"lsilogic\"\n\
         ddb.geometry.cylinders = \"{cylinders}\"\nddb.geometry.heads = \"255\"\nddb.geometry.sectors = \"63\"\n\
         ddb.longContentID = \"{long}\"\nddb.uuid = \"{}\"\nddb.virtualHWVersion = \"4\"\n",
        uuid.join(" ")
    )
}

struct Stream<'a> {
    w: AppendWriter<'a>,
    gd: Vec<u32>,
    gt: Option<(u64, Vec<u32>)>,
}

impl Stream<'_> {
    fn sector(&self) -> Result<u32> {
        let s = self.w.pos() / SECTOR;
        u32::try_from(s).map_err(|_| {
            err!(
                LimitExceeded,
                "a streamOptimized VMDK cannot grow past 2 TiB (32-bit sector numbers)"
            )
        })
    }

    fn flush_gt(&mut self) -> Result<()> {
        if let Some((gdi, t)) = self.gt.take() {
            let sectors = (t.len() as u64 * 4).div_ceil(SECTOR);
            self.w.write(&metadata_marker(sectors, marker::GT))?;
            self.gd[gdi as usize] = self.sector()?;
            let b: Vec<u8> = t.iter().flat_map(|e| e.to_le_bytes()).collect();
            self.w.write(&b)?;
            self.w.align(SECTOR)?;
        }
        Ok(())
    }

    fn grain(&mut self, gi: u64, z: &[u8]) -> Result<()> {
        let per = u64::from(GTES_PER_GT);
        if self.gt.as_ref().is_some_and(|(g, _)| *g != gi / per) {
            self.flush_gt()?;
        }
        let at = self.sector()?;
        let mut m = [0u8; GRAIN_MARKER_LEN];
        m[..8].copy_from_slice(&(gi * GRAIN_SECTORS).to_le_bytes());
        m[8..].copy_from_slice(&(z.len() as u32).to_le_bytes());
        self.w.write(&m)?;
        self.w.write(z)?;
        self.w.align(SECTOR)?;
        let (_, t) = self
            .gt
            .get_or_insert_with(|| (gi / per, vec![0; GTES_PER_GT as usize]));
        t[(gi % per) as usize] = at;
        Ok(())
    }
}

/// Writes `src` as a streamOptimized VMDK into `out` (an empty file). `file_name` is the name
/// the descriptor's extent line gives (the output's file name).
pub fn write_stream_optimized(
    src: &dyn DiskImage,
    out: &File,
    out_path: &Path,
    file_name: &str,
    ctx: &BuildContext,
    progress: &dyn Progress,
) -> Result<()> {
    let padded = Padded::new(src, src.len().div_ceil(SECTOR) * SECTOR);
    let src: &dyn DiskImage = &padded;
    let capacity = src.len() / SECTOR;
    if capacity == 0 {
        return Err(err!(InvalidArgument, "a VMDK disk cannot be empty").with_path(out_path));
    }
    let mut h = Header {
        version: 3,
        flags: FLAG_NL_DETECT | FLAG_COMPRESSED | FLAG_MARKERS,
        capacity,
        grain_size: GRAIN_SECTORS,
        descriptor_offset: 1,
        descriptor_size: DESCRIPTOR_SECTORS,
        num_gtes_per_gt: GTES_PER_GT,
        rgd_offset: 0,
        gd_offset: GD_AT_END,
        overhead: OVERHEAD_SECTORS,
        unclean_shutdown: false,
        compress_algorithm: COMPRESS_DEFLATE,
    };
    if h.gd_entries() > super::image::MAX_GD_ENTRIES {
        return Err(err!(
            LimitExceeded,
            "a VMDK of {} bytes needs {} grain tables (at most {}: {} bytes)",
            src.len(),
            h.gd_entries(),
            super::image::MAX_GD_ENTRIES,
            super::image::MAX_GD_ENTRIES * GTES_PER_GT as u64 * GRAIN_SECTORS * SECTOR
        )
        .with_path(out_path));
    }
    let desc = descriptor(capacity, file_name, ctx);
    if desc.len() as u64 > DESCRIPTOR_SECTORS * SECTOR {
        return Err(err!(
            LimitExceeded,
            "descriptor of {} bytes (file name too long?)",
            desc.len()
        ));
    }
    progress.start("writing streamOptimized VMDK", data_bytes(src)?);
    let mut st = Stream {
        w: AppendWriter::new(out, out_path, 0),
        gd: vec![0; h.gd_entries() as usize],
        gt: None,
    };
    st.w.write(&h.encode())?;
    st.w.write(desc.as_bytes())?;
    st.w.zeros(OVERHEAD_SECTORS * SECTOR - st.w.pos())?;
    let pack: PackFn = &zlib_grain;
    for_each_data_chunk(
        src,
        GRAIN_SECTORS * SECTOR,
        Some(pack),
        progress,
        |gi, _, z| st.grain(gi, z.unwrap_or_default()),
    )?;
    st.flush_gt()?;
    let gd_sectors = (st.gd.len() as u64 * 4).div_ceil(SECTOR);
    st.w.write(&metadata_marker(gd_sectors, marker::GD))?;
    h.gd_offset = u64::from(st.sector()?);
    let gd: Vec<u8> = st.gd.iter().flat_map(|e| e.to_le_bytes()).collect();
    st.w.write(&gd)?;
    st.w.align(SECTOR)?;
    st.w.write(&metadata_marker(1, marker::FOOTER))?;
    st.w.write(&h.encode())?;
    st.w.write(&metadata_marker(0, marker::EOS))?;
    st.w.flush()?;
    progress.finish();
    Ok(())
}
