//! Reading qcow2 (versions 2 and 3) as a [`DiskImage`].
//!
//! Every table is bound-checked against the file before use; L1 is held in memory (at most
//! [`MAX_L1_BYTES`], qemu's own limit), L2 tables are loaded on demand into a small cache, so
//! memory stays bounded whatever the image size. A backing file is opened through the callback
//! the caller passes in.

use super::layout::*;
use crate::disk::{DiskImage, Extent, ExtentKind, ImageInfo, clamp_window, push_extent};
use crate::err;
use crate::error::{Error, IoContext, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Largest active L1 table accepted (qemu's `QCOW_MAX_L1_SIZE`, 32 MiB).
pub const MAX_L1_BYTES: u64 = 32 << 20;
/// Largest refcount table accepted (qemu's `QCOW_MAX_REFTABLE_SIZE`, 8 MiB).
pub const MAX_REFTABLE_BYTES: u64 = 8 << 20;
/// Deepest backing chain followed (a loop is caught by this limit too).
pub const MAX_BACKING_DEPTH: u32 = 16;
/// L2 tables kept in memory (each at most one cluster, 2 MiB).
const L2_CACHE: usize = 8;

/// Opens a backing file: `(path, format named by the image if any, depth)`. The caller decides
/// how formats are probed; this module never names the probe.
pub type OpenBacking<'a> = &'a dyn Fn(&Path, Option<&str>, u32) -> Result<Box<dyn DiskImage>>;

/// A qcow2 image opened for reading.
pub struct Qcow2Image {
    path: PathBuf,
    file: File,
    file_len: u64,
    header: Header,
    l1: Vec<u64>,
    l2_cache: Mutex<Vec<(u64, Arc<Vec<u64>>)>>,
    last_compressed: Mutex<Option<(u64, Arc<Vec<u8>>)>>,
    backing: Option<Box<dyn DiskImage>>,
    backing_name: Option<String>,
    backing_format: Option<String>,
    feature_names: Vec<(u8, u8, String)>,
}

/// Facts from a scan of every L2 table (for `info`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Qcow2Stats {
    /// Guest clusters stored uncompressed.
    pub normal: u64,
    /// Guest clusters stored compressed.
    pub compressed: u64,
    /// Guest clusters marked zero.
    pub zero: u64,
    /// L2 tables.
    pub l2_tables: u64,
}

fn ctx_err(e: Error, path: &Path) -> Error {
    e.with_structure("qcow2").with_path(path)
}

impl Qcow2Image {
    /// Opens the qcow2 at `path`; `depth` is its position in a backing chain.
    pub fn open(path: &Path, depth: u32, open_backing: OpenBacking) -> Result<Qcow2Image> {
        let file = File::open(path).ctx(path, "opening the qcow2 image")?;
        let file_len = file.metadata().ctx(path, "reading metadata")?.len();
        Self::open_file(file, file_len, path, depth, open_backing).map_err(|e| ctx_err(e, path))
    }

    fn open_file(
        file: File,
        file_len: u64,
        path: &Path,
        depth: u32,
        open_backing: OpenBacking,
    ) -> Result<Qcow2Image> {
        let mut head = vec![0u8; 4096.min(file_len) as usize];
        file.read_exact_at(&mut head, 0)
            .ctx(path, "reading the header")?;
        let header = Header::parse(&head).map_err(|e| e.with_structure("qcow2 header"))?;
        let cs = header.cluster_size();
        if cs > head.len() as u64 && file_len >= cs {
            head = vec![0u8; cs as usize];
            file.read_exact_at(&mut head, 0)
                .ctx(path, "reading the header")?;
        }
        let mut img = Qcow2Image {
            path: path.to_path_buf(),
            file,
            file_len,
            header,
            l1: Vec::new(),
            l2_cache: Mutex::new(Vec::new()),
            last_compressed: Mutex::new(None),
            backing: None,
            backing_name: None,
            backing_format: None,
            feature_names: Vec::new(),
        };
        img.read_extensions(&head)?;
        img.check_features()?;
        img.check_tables()?;
        img.l1 = img.read_table(
            img.header.l1_table_offset,
            u64::from(img.header.l1_size),
            "L1 table",
        )?;
        img.check_l1()?;
        img.open_backing(depth, open_backing)?;
        Ok(img)
    }

    fn read_extensions(&mut self, head: &[u8]) -> Result<()> {
        if self.header.version < 3 {
            return Ok(());
        }
        let mut o = self.header.header_length as usize;
        let end = head.len().min(self.header.cluster_size() as usize);
        while o + 8 <= end {
            let ty = crate::bytes::be32(head, o);
            let len = crate::bytes::be32(head, o + 4) as usize;
            if ty == ext::END {
                break;
            }
            let data = head.get(o + 8..o + 8 + len).ok_or_else(|| {
                err!(
                    Truncated,
                    "header extension 0x{ty:08x} of {len} bytes runs past the first cluster"
                )
                .with_structure("qcow2 header extension")
                .at(o as u64)
            })?;
            match ty {
                ext::BACKING_FORMAT => {
                    self.backing_format = Some(String::from_utf8_lossy(data).into_owned())
                }
                ext::FEATURE_NAMES => {
                    for f in data.chunks_exact(48) {
                        let name = String::from_utf8_lossy(&f[2..]);
                        let name = name.trim_end_matches('\0').to_string();
                        self.feature_names.push((f[0], f[1], name));
                    }
                }
                ext::EXTERNAL_DATA_FILE => {
                    return Err(err!(
                        Unsupported,
                        "guest data in an external data file ({}) is not supported",
                        String::from_utf8_lossy(data)
                    )
                    .with_structure("qcow2 header extension")
                    .at(o as u64));
                }
                _ => {}
            }
            o += 8 + len.div_ceil(8) * 8;
        }
        Ok(())
    }

    fn feature_name(&self, ty: u8, bit: u8, fallback: &str) -> String {
        self.feature_names
            .iter()
            .find(|(t, b, _)| *t == ty && *b == bit)
            .map(|(_, _, n)| n.clone())
            .unwrap_or_else(|| fallback.to_string())
    }

    fn check_features(&self) -> Result<()> {
        let h = &self.header;
        let at = off::INCOMPATIBLE_FEATURES as u64;
        let f = h.incompatible_features;
        if f & INCOMPAT_DIRTY != 0 {
            return Err(err!(
                DirtyImage,
                "the dirty bit is set: the image was not closed cleanly and its refcounts cannot be trusted (run `qemu-img check -r all` on it first)"
            )
            .with_structure("qcow2 header")
            .at(at));
        }
        if f & INCOMPAT_CORRUPT != 0 {
            return Err(err!(DirtyImage, "the image is marked corrupt")
                .with_structure("qcow2 header")
                .at(at));
        }
        let named = [
            (INCOMPAT_EXTERNAL_DATA, "external data file"),
            (
                INCOMPAT_COMPRESSION_TYPE,
                "compression type other than deflate",
            ),
            (INCOMPAT_EXTENDED_L2, "extended L2 entries (subclusters)"),
        ];
        for (bit, name) in named {
            if f & bit != 0 {
                return Err(err!(
                    Unsupported,
                    "incompatible feature '{name}' is not supported"
                )
                .with_structure("qcow2 header")
                .at(at));
            }
        }
        if f != 0 {
            let bit = f.trailing_zeros();
            let name = self.feature_name(0, bit as u8, "unknown");
            return Err(err!(
                Unsupported,
                "unknown incompatible feature bit {bit} ('{name}')"
            )
            .with_structure("qcow2 header")
            .at(at));
        }
        if h.crypt_method != 0 {
            return Err(err!(
                Unsupported,
                "encrypted image (crypt_method {})",
                h.crypt_method
            )
            .with_structure("qcow2 header")
            .at(off::CRYPT_METHOD as u64));
        }
        if h.compression_type != 0 {
            return Err(err!(
                Unsupported,
                "compression type {} (only deflate)",
                h.compression_type
            )
            .with_structure("qcow2 header")
            .at(off::COMPRESSION_TYPE as u64));
        }
        Ok(())
    }

    /// Checks the table sizes and offsets against the virtual size and the file.
    fn check_tables(&self) -> Result<()> {
        let h = &self.header;
        let cs = h.cluster_size();
        let need = l1_entries(h.size, h.cluster_bits);
        if need.saturating_mul(8) > MAX_L1_BYTES {
            return Err(err!(
                AbsurdSize,
                "virtual size {} needs an L1 table of {need} entries (limit {} bytes)",
                h.size,
                MAX_L1_BYTES
            )
            .with_structure("qcow2 header")
            .at(off::SIZE as u64));
        }
        if u64::from(h.l1_size) < need || u64::from(h.l1_size) * 8 > MAX_L1_BYTES {
            return Err(err!(
                AbsurdSize,
                "l1_size {} (the virtual size needs {need}, limit {})",
                h.l1_size,
                MAX_L1_BYTES / 8
            )
            .with_structure("qcow2 header")
            .at(off::L1_SIZE as u64));
        }
        self.check_range(
            h.l1_table_offset,
            u64::from(h.l1_size) * 8,
            "L1 table",
            off::L1_TABLE_OFFSET,
        )?;
        let rt_len = u64::from(h.refcount_table_clusters) * cs;
        if rt_len == 0 || rt_len > MAX_REFTABLE_BYTES {
            return Err(err!(
                AbsurdSize,
                "refcount table of {} clusters",
                h.refcount_table_clusters
            )
            .with_structure("qcow2 header")
            .at(off::REFCOUNT_TABLE_CLUSTERS as u64));
        }
        self.check_range(
            h.refcount_table_offset,
            rt_len,
            "refcount table",
            off::REFCOUNT_TABLE_OFFSET,
        )?;
        let reft = self.read_table(h.refcount_table_offset, rt_len / 8, "refcount table")?;
        for (i, e) in reft.iter().enumerate() {
            let o = e & REFT_OFFSET_MASK;
            if o != 0 && (!o.is_multiple_of(cs) || o.saturating_add(cs) > self.file_len) {
                return Err(err!(
                    BatOutOfFile,
                    "refcount block {i} at {o} is unaligned or past the end of the file ({} bytes)",
                    self.file_len
                )
                .with_structure("qcow2 refcount table")
                .at(h.refcount_table_offset + 8 * i as u64));
            }
        }
        if h.nb_snapshots > 0 && h.snapshots_offset >= self.file_len {
            return Err(err!(
                BatOutOfFile,
                "snapshot table at {} is past the end of the file",
                h.snapshots_offset
            )
            .with_structure("qcow2 header")
            .at(off::SNAPSHOTS_OFFSET as u64));
        }
        Ok(())
    }

    fn check_range(&self, offset: u64, len: u64, what: &str, field: usize) -> Result<()> {
        let cs = self.header.cluster_size();
        if !offset.is_multiple_of(cs) || offset.checked_add(len).is_none_or(|e| e > self.file_len) {
            return Err(err!(
                BatOutOfFile,
                "{what} at {offset} ({len} bytes) is unaligned or past the end of the file ({} bytes)",
                self.file_len
            )
            .with_structure("qcow2 header")
            .at(field as u64));
        }
        Ok(())
    }

    fn read_table(&self, offset: u64, entries: u64, what: &str) -> Result<Vec<u64>> {
        let mut b = vec![0u8; (entries * 8) as usize];
        self.file
            .read_exact_at(&mut b, offset)
            .map_err(|e| Error::io(e, format!("reading the {what}")).at(offset))?;
        Ok(b.chunks_exact(8)
            .map(|c| crate::bytes::be64(c, 0))
            .collect())
    }

    fn check_l1(&self) -> Result<()> {
        let cs = self.header.cluster_size();
        for (i, e) in self.l1.iter().enumerate() {
            let o = e & OFFSET_MASK;
            if o != 0 && (o.saturating_add(cs) > self.file_len || !o.is_multiple_of(cs)) {
                return Err(err!(
                    BatOutOfFile,
                    "L1 entry {i} points at an L2 table at {o}, unaligned or past the end of the file ({} bytes)",
                    self.file_len
                )
                .with_structure("qcow2 L1 table")
                .at(self.header.l1_table_offset + 8 * i as u64));
            }
        }
        Ok(())
    }

    fn open_backing(&mut self, depth: u32, open_backing: OpenBacking) -> Result<()> {
        let h = &self.header;
        if h.backing_file_offset == 0 {
            return Ok(());
        }
        if h.backing_file_size == 0 || h.backing_file_size > MAX_BACKING_NAME {
            return Err(err!(
                BadField,
                "backing file name of {} bytes (1 to 1023)",
                h.backing_file_size
            )
            .with_structure("qcow2 header")
            .at(off::BACKING_FILE_SIZE as u64));
        }
        let end = h
            .backing_file_offset
            .saturating_add(u64::from(h.backing_file_size));
        if end > self.file_len.min(h.cluster_size()) {
            return Err(err!(
                BatOutOfFile,
                "backing file name at {} runs past the first cluster",
                h.backing_file_offset
            )
            .with_structure("qcow2 header")
            .at(off::BACKING_FILE_OFFSET as u64));
        }
        let mut name = vec![0u8; h.backing_file_size as usize];
        self.file
            .read_exact_at(&mut name, h.backing_file_offset)
            .ctx(&self.path, "reading the backing file name")?;
        let name = String::from_utf8_lossy(&name).into_owned();
        if depth + 1 > MAX_BACKING_DEPTH {
            return Err(err!(
                ParentChainTooDeep,
                "backing chain deeper than {MAX_BACKING_DEPTH} (or a loop) at {name}"
            ));
        }
        let p = Path::new(&name);
        let full = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        };
        if !full.exists() {
            return Err(err!(
                MissingParent,
                "backing file {name} not found (tried {})",
                full.display()
            )
            .with_structure("qcow2 header"));
        }
        let b = open_backing(&full, self.backing_format.as_deref(), depth + 1)?;
        self.backing = Some(b);
        self.backing_name = Some(name);
        Ok(())
    }

    /// The parsed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The backing file name as recorded, if any.
    pub fn backing_name(&self) -> Option<&str> {
        self.backing_name.as_deref()
    }

    fn l2_table(&self, l1_index: u64) -> Result<Option<Arc<Vec<u64>>>> {
        let Some(&e) = self.l1.get(l1_index as usize) else {
            return Ok(None);
        };
        let o = e & OFFSET_MASK;
        if o == 0 {
            return Ok(None);
        }
        if let Ok(c) = self.l2_cache.lock()
            && let Some((_, t)) = c.iter().find(|(k, _)| *k == o)
        {
            return Ok(Some(t.clone()));
        }
        let t = Arc::new(
            self.read_table(o, l2_entries(self.header.cluster_bits), "L2 table")
                .map_err(|e| e.with_structure("qcow2 L2 table"))?,
        );
        if let Ok(mut c) = self.l2_cache.lock() {
            if c.len() >= L2_CACHE {
                c.remove(0);
            }
            c.push((o, t.clone()));
        }
        Ok(Some(t))
    }

    /// What guest cluster `ci` is.
    fn entry(&self, ci: u64) -> Result<(L2Entry, u64)> {
        let per = l2_entries(self.header.cluster_bits);
        let Some(t) = self.l2_table(ci / per)? else {
            return Ok((L2Entry::Unallocated, 0));
        };
        let raw = t[(ci % per) as usize];
        let e = L2Entry::decode(raw, self.header.cluster_bits, self.header.version >= 3);
        let l2_off = self.l1[(ci / per) as usize] & OFFSET_MASK;
        Ok((e, l2_off + 8 * (ci % per)))
    }

    fn check_data_cluster(&self, host: u64, entry_at: u64) -> Result<()> {
        if host >= self.file_len || !host.is_multiple_of(self.header.cluster_size()) {
            return Err(err!(
                BatOutOfFile,
                "L2 entry points at a data cluster at {host}, unaligned or past the end of the file ({} bytes)",
                self.file_len
            )
            .with_structure("qcow2 L2 table")
            .at(entry_at));
        }
        Ok(())
    }

    fn inflate_cluster(
        &self,
        ci: u64,
        offset: u64,
        sectors: u64,
        entry_at: u64,
    ) -> Result<Arc<Vec<u8>>> {
        if let Ok(c) = self.last_compressed.lock()
            && let Some((k, d)) = c.as_ref()
            && *k == ci
        {
            return Ok(d.clone());
        }
        let cs = self.header.cluster_size() as usize;
        let len = (sectors * 512 - (offset & 511)).min(self.file_len.saturating_sub(offset));
        if offset >= self.file_len || len == 0 {
            return Err(err!(
                BatOutOfFile,
                "compressed cluster at {offset} is past the end of the file ({} bytes)",
                self.file_len
            )
            .with_structure("qcow2 L2 table")
            .at(entry_at));
        }
        let mut comp = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut comp, offset)
            .ctx(&self.path, "reading a compressed cluster")?;
        let mut out = vec![0u8; cs];
        let mut d = flate2::Decompress::new(false);
        let st = d.decompress(&comp, &mut out, flate2::FlushDecompress::Finish);
        if st.is_err() || d.total_out() != cs as u64 {
            return Err(err!(
                BadField,
                "compressed cluster at {offset} does not inflate to {cs} bytes (got {})",
                d.total_out()
            )
            .with_structure("qcow2 compressed cluster")
            .at(offset));
        }
        let out = Arc::new(out);
        if let Ok(mut c) = self.last_compressed.lock() {
            *c = Some((ci, out.clone()));
        }
        Ok(out)
    }

    fn read_backing(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        match &self.backing {
            Some(b) if offset < b.len() => {
                let k = ((b.len() - offset) as usize).min(buf.len());
                b.read_at(&mut buf[..k], offset)?;
                buf[k..].fill(0);
                Ok(())
            }
            _ => {
                buf.fill(0);
                Ok(())
            }
        }
    }

    /// Scans every L2 table.
    pub fn stats(&self) -> Result<Qcow2Stats> {
        let mut s = Qcow2Stats::default();
        let per = l2_entries(self.header.cluster_bits);
        let clusters = self.header.size.div_ceil(self.header.cluster_size());
        for l1i in 0..self.l1.len() as u64 {
            let Some(t) = self.l2_table(l1i)? else {
                continue;
            };
            s.l2_tables += 1;
            for (j, &raw) in t.iter().enumerate() {
                if l1i * per + j as u64 >= clusters {
                    break;
                }
                match L2Entry::decode(raw, self.header.cluster_bits, self.header.version >= 3) {
                    L2Entry::Normal(_) => s.normal += 1,
                    L2Entry::Compressed { .. } => s.compressed += 1,
                    L2Entry::Zero => s.zero += 1,
                    L2Entry::Unallocated => {}
                }
            }
        }
        Ok(s)
    }
}

impl DiskImage for Qcow2Image {
    fn len(&self) -> u64 {
        self.header.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.header.size)
            .ok_or_else(|| err!(InvalidArgument, "read past the end of the disk").at(offset))?;
        let cs = self.header.cluster_size();
        let mut pos = offset;
        while pos < end {
            let ci = pos / cs;
            let in_c = pos % cs;
            let n = (cs - in_c).min(end - pos);
            let dst = &mut buf[(pos - offset) as usize..(pos - offset + n) as usize];
            let (e, at) = self.entry(ci).map_err(|e| ctx_err(e, &self.path))?;
            match e {
                L2Entry::Unallocated => self.read_backing(dst, pos)?,
                L2Entry::Zero => dst.fill(0),
                L2Entry::Normal(host) => {
                    self.check_data_cluster(host, at)
                        .map_err(|e| ctx_err(e, &self.path))?;
                    // Merge following clusters that are contiguous in the file.
                    let mut run = n;
                    while pos + run < end {
                        let next = (pos + run) / cs;
                        match self.entry(next)?.0 {
                            L2Entry::Normal(h2)
                                if h2 == host + (next - ci) * cs && h2 < self.file_len =>
                            {
                                run += (end - pos - run).min(cs)
                            }
                            _ => break,
                        }
                    }
                    let dst = &mut buf[(pos - offset) as usize..(pos - offset + run) as usize];
                    let from = host + in_c;
                    let avail = self.file_len.saturating_sub(from).min(run) as usize;
                    self.file
                        .read_exact_at(&mut dst[..avail], from)
                        .ctx(&self.path, "reading a data cluster")?;
                    dst[avail..].fill(0);
                    pos += run;
                    continue;
                }
                L2Entry::Compressed {
                    offset: co,
                    sectors,
                } => {
                    let data = self
                        .inflate_cluster(ci, co, sectors, at)
                        .map_err(|e| ctx_err(e, &self.path))?;
                    dst.copy_from_slice(&data[in_c as usize..(in_c + n) as usize]);
                }
            }
            pos += n;
        }
        Ok(())
    }

    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let (start, end) = clamp_window(self.header.size, offset, len);
        let cs = self.header.cluster_size();
        let mut out = Vec::new();
        let mut pos = start;
        while pos < end {
            let ci = pos / cs;
            let n = (cs - pos % cs).min(end - pos);
            let kind = match self.entry(ci).map_err(|e| ctx_err(e, &self.path))?.0 {
                L2Entry::Unallocated => None,
                L2Entry::Zero => Some(ExtentKind::Zero),
                _ => Some(ExtentKind::Data),
            };
            match (kind, &self.backing) {
                (Some(kind), _) => push_extent(
                    &mut out,
                    Extent {
                        offset: pos,
                        len: n,
                        kind,
                    },
                ),
                (None, Some(b)) if pos < b.len() => {
                    let bl = n.min(b.len() - pos);
                    for e in b.extents(pos, bl)? {
                        push_extent(&mut out, e);
                    }
                    push_extent(
                        &mut out,
                        Extent {
                            offset: pos + bl,
                            len: n - bl,
                            kind: ExtentKind::Unallocated,
                        },
                    );
                }
                (None, _) => push_extent(
                    &mut out,
                    Extent {
                        offset: pos,
                        len: n,
                        kind: ExtentKind::Unallocated,
                    },
                ),
            }
            pos += n;
        }
        Ok(out)
    }

    fn info(&self) -> ImageInfo {
        let h = &self.header;
        let mut notes = vec![
            format!("qcow2 version {}", h.version),
            format!("cluster size {} bytes", h.cluster_size()),
            format!("refcount width {} bits", 1u32 << h.refcount_order),
        ];
        let mut allocated = None;
        match self.stats() {
            Ok(s) => {
                notes.push(format!(
                    "clusters: {} stored, {} compressed (deflate), {} zero",
                    s.normal, s.compressed, s.zero
                ));
                allocated = Some((s.normal + s.compressed) * h.cluster_size());
            }
            Err(e) => notes.push(format!("L2 scan failed: {e}")),
        }
        if h.nb_snapshots > 0 {
            notes.push(format!(
                "{} internal snapshots (the active layer is read)",
                h.nb_snapshots
            ));
        }
        if let Some(f) = &self.backing_format {
            notes.push(format!("backing format {f}"));
        }
        let mut parents: Vec<String> = self.backing_name.iter().cloned().collect();
        if let Some(b) = &self.backing {
            parents.extend(b.info().parents);
        }
        ImageInfo {
            format: if self.backing.is_some() {
                "qcow2-backed".into()
            } else {
                "qcow2".into()
            },
            virtual_size: h.size,
            file_size: self.file_len,
            allocated,
            block_size: Some(h.cluster_size()),
            logical_sector_size: 512,
            physical_sector_size: 512,
            creator: None,
            disk_id: None,
            geometry: None,
            parents,
            notes,
        }
    }
}
