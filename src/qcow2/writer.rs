//! Writing qcow2 version 3 in one pass (virtual size rounded up to whole 512-byte sectors), sparse: chunks that read as zeros are not stored,
//! data clusters are appended in guest order (optionally deflate-compressed, in parallel on
//! every core), each L2 table follows the data it maps, then the L1 table, the refcount table
//! and its blocks (refcounts for every cluster in use: header, data, L2, L1, refcount
//! structures), and finally the header in cluster 0.

use super::image::MAX_L1_BYTES;
use super::layout::*;
use crate::disk::chunks::{
    AppendWriter, for_each_data_chunk, for_each_data_run, looks_incompressible,
};
use crate::disk::stream::{Padded, data_bytes};
use crate::disk::{DiskImage, Progress};
use crate::err;
use crate::error::{Error, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Refcount order written (16-bit refcounts, qemu's default).
pub const REFCOUNT_ORDER: u32 = 4;

/// How to write a qcow2.
#[derive(Debug, Clone, Copy)]
pub struct Qcow2WriteOptions {
    /// log2 of the cluster size, 9 (512 B) to 21 (2 MiB).
    pub cluster_bits: u32,
    /// Deflate-compress clusters (each stored compressed only when that is smaller).
    pub compress: bool,
}

impl Default for Qcow2WriteOptions {
    fn default() -> Self {
        Qcow2WriteOptions {
            cluster_bits: DEFAULT_CLUSTER_BITS,
            compress: false,
        }
    }
}

impl Qcow2WriteOptions {
    /// Options for a cluster size in bytes (a power of two, 512 B to 2 MiB).
    pub fn with_cluster_size(cluster_size: u64, compress: bool) -> Result<Self> {
        if !cluster_size.is_power_of_two()
            || !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_size.trailing_zeros())
        {
            return Err(err!(
                InvalidArgument,
                "qcow2 cluster size {cluster_size} must be a power of two from 512 B to 2 MiB"
            ));
        }
        Ok(Qcow2WriteOptions {
            cluster_bits: cluster_size.trailing_zeros(),
            compress,
        })
    }
}

/// Compresses one cluster as qcow2 wants it: raw deflate with a 4 KiB window (qemu inflates
/// with `windowBits = -12`). `None` when the result would not be smaller than the cluster, or
/// when the cluster looks incompressible (see [`looks_incompressible`]): it is stored as it is,
/// as qemu stores a cluster deflate does not shrink.
///
/// Level 9, not qemu's 6: zlib-rs (a zlib-ng port) runs its "medium" strategy at levels 4-6,
/// whose output is 3-8 % larger than zlib's level 6 on 64 KiB clusters with a 4 KiB window
/// (binaries, text); its level 9 lands within 0.5 % of zlib's level 6 for less CPU time than
/// zlib's level 6 (measured; see `benches/compare.sh`). Memory level 8 (qemu passes 9, which
/// zlib-rs turns into slightly larger output here).
pub fn deflate_cluster(raw: &[u8]) -> Result<Option<Vec<u8>>> {
    if looks_incompressible(raw) {
        return Ok(None);
    }
    let cfg = zlib_rs::DeflateConfig {
        level: 9,
        window_bits: -12,
        mem_level: 8,
        ..Default::default()
    };
    // A fresh state per cluster (`compress_slice` makes one), room for the worst case.
    let mut out = vec![0u8; zlib_rs::compress_bound(raw.len())];
    let (packed, rc) = zlib_rs::compress_slice(&mut out, raw, cfg);
    if rc != zlib_rs::ReturnCode::Ok {
        return Err(err!(External, "deflate failed: {rc:?}"));
    }
    let n = packed.len();
    if n >= raw.len() {
        return Ok(None);
    }
    out.truncate(n);
    Ok(Some(out))
}

struct State<'a> {
    w: AppendWriter<'a>,
    cb: u32,
    cs: u64,
    l1: Vec<u64>,
    l2: Option<(u64, Vec<u64>)>,
    refs: Vec<u16>,
}

impl State<'_> {
    fn add_ref(&mut self, cluster: u64) -> Result<()> {
        let i = cluster as usize;
        if self.refs.len() <= i {
            self.refs.resize(i + 1, 0);
        }
        self.refs[i] = self.refs[i].checked_add(1).ok_or_else(|| {
            err!(
                LimitExceeded,
                "refcount of host cluster {cluster} overflows"
            )
        })?;
        Ok(())
    }

    fn flush_l2(&mut self) -> Result<()> {
        if let Some((l1i, t)) = self.l2.take() {
            self.w.align(self.cs)?;
            let at = self.w.pos();
            let mut b = Vec::with_capacity(t.len() * 8);
            for e in &t {
                b.extend_from_slice(&e.to_be_bytes());
            }
            self.w.write(&b)?;
            self.add_ref(at / self.cs)?;
            self.l1[l1i as usize] = at | OFLAG_COPIED;
        }
        Ok(())
    }

    /// Stores consecutive clusters from `first` on as they are (`bytes`: whole clusters), in
    /// one write per L2 table they fall in.
    fn put_run(&mut self, first: u64, bytes: &[u8]) -> Result<()> {
        let per = l2_entries(self.cb);
        let cs = self.cs;
        let mut ci = first;
        let mut rest = bytes;
        while !rest.is_empty() {
            let l1i = ci / per;
            if self.l2.as_ref().is_some_and(|(i, _)| *i != l1i) {
                self.flush_l2()?;
            }
            let n = (per - ci % per).min(rest.len() as u64 / cs);
            let (now, later) = rest.split_at((n * cs) as usize);
            self.w.align(cs)?;
            let at = self.w.pos();
            self.w.write(now)?;
            let (_, t) = self
                .l2
                .get_or_insert_with(|| (l1i, vec![0u64; per as usize]));
            for k in 0..n {
                t[((ci + k) % per) as usize] = L2Entry::Normal(at + k * cs).encode(self.cb);
            }
            for k in 0..n {
                self.add_ref(at / cs + k)?;
            }
            ci += n;
            rest = later;
        }
        Ok(())
    }

    /// Stores cluster `ci`: compressed when `packed` holds its deflated bytes, else as it is.
    fn put(&mut self, ci: u64, raw: &[u8], packed: Option<&[u8]>) -> Result<()> {
        let Some(c) = packed else {
            return self.put_run(ci, raw);
        };
        let per = l2_entries(self.cb);
        let l1i = ci / per;
        if self.l2.as_ref().is_some_and(|(i, _)| *i != l1i) {
            self.flush_l2()?;
        }
        let at = self.w.pos();
        let end = (at + c.len() as u64).div_ceil(512) * 512;
        let sectors = end / 512 - at / 512;
        self.w.write(c)?;
        for hc in at / self.cs..=(end - 1) / self.cs {
            self.add_ref(hc)?;
        }
        let entry = L2Entry::Compressed {
            offset: at,
            sectors,
        };
        let (_, t) = self
            .l2
            .get_or_insert_with(|| (l1i, vec![0u64; per as usize]));
        t[(ci % per) as usize] = entry.encode(self.cb);
        Ok(())
    }
}

/// Refcount table and block counts for `used` clusters plus the refcount structures themselves.
fn refcount_layout(used: u64, cs: u64) -> (u64, u64) {
    let per_block = cs * 8 / (1 << REFCOUNT_ORDER);
    let (mut rb, mut rt) = (0u64, 0u64);
    loop {
        let total = used + rb + rt;
        let nrb = total.div_ceil(per_block);
        let nrt = (nrb * 8).div_ceil(cs);
        if nrb == rb && nrt == rt {
            return (rt, rb);
        }
        (rb, rt) = (nrb, nrt);
    }
}

/// Writes `src` as a qcow2 version 3 into `out` (an empty file).
pub fn write(
    src: &dyn DiskImage,
    out: &File,
    out_path: &Path,
    opts: &Qcow2WriteOptions,
    progress: &dyn Progress,
) -> Result<()> {
    let cb = opts.cluster_bits;
    if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cb) {
        return Err(err!(InvalidArgument, "qcow2 cluster_bits {cb} (9 to 21)"));
    }
    let cs = 1u64 << cb;
    // qemu reads a qcow2's size in whole 512-byte sectors: round up as `qemu-img convert` does.
    let padded = Padded::new(src, src.len().div_ceil(512) * 512);
    let src: &dyn DiskImage = &padded;
    let size = src.len();
    let l1_len = l1_entries(size, cb);
    if size == 0 || l1_len * 8 > MAX_L1_BYTES {
        return Err(err!(
            LimitExceeded,
            "a qcow2 of {size} bytes with {cs}-byte clusters needs {l1_len} L1 entries (1 to {}): use larger clusters",
            MAX_L1_BYTES / 8
        )
        .with_path(out_path));
    }
    progress.start("writing qcow2", data_bytes(src)?);
    let mut st = State {
        w: AppendWriter::new(out, out_path, cs),
        cb,
        cs,
        l1: vec![0; l1_len as usize],
        l2: None,
        refs: vec![1],
    };
    if opts.compress {
        for_each_data_chunk(src, cs, Some(&deflate_cluster), progress, |ci, raw, p| {
            st.put(ci, raw, p)
        })?;
    } else {
        for_each_data_run(src, cs, progress, |first, bytes| st.put_run(first, bytes))?;
    }
    st.flush_l2()?;
    st.w.align(cs)?;
    let l1_at = st.w.pos();
    let l1_bytes: Vec<u8> = st.l1.iter().flat_map(|e| e.to_be_bytes()).collect();
    st.w.write(&l1_bytes)?;
    st.w.align(cs)?;
    let rt_at = st.w.pos();
    let used = rt_at / cs;
    let (rt, rb) = refcount_layout(used, cs);
    write_refcounts(&mut st, l1_at, rt_at, rt, rb)?;
    st.w.flush()?;
    let header = Header {
        version: 3,
        cluster_bits: cb,
        size,
        l1_size: l1_len as u32,
        l1_table_offset: l1_at,
        refcount_table_offset: rt_at,
        refcount_table_clusters: rt as u32,
        refcount_order: REFCOUNT_ORDER,
        header_length: V3_HEADER_LEN as u32,
        ..Header::default()
    };
    out.write_all_at(&header.encode(), 0)
        .map_err(|e| Error::io(e, "writing the qcow2 header").with_path(out_path))?;
    progress.finish();
    Ok(())
}

fn write_refcounts(st: &mut State, l1_at: u64, rt_at: u64, rt: u64, rb: u64) -> Result<()> {
    let cs = st.cs;
    for c in l1_at / cs..rt_at / cs {
        st.add_ref(c)?;
    }
    let rb_first = rt_at / cs + rt;
    for c in rt_at / cs..rb_first + rb {
        st.add_ref(c)?;
    }
    let mut table = vec![0u8; (rt * cs) as usize];
    for i in 0..rb {
        let at = (rb_first + i) * cs;
        table[i as usize * 8..i as usize * 8 + 8].copy_from_slice(&at.to_be_bytes());
    }
    st.w.write(&table)?;
    let per_block = (cs * 8 / (1 << REFCOUNT_ORDER)) as usize;
    let mut block = vec![0u8; cs as usize];
    for i in 0..rb as usize {
        block.fill(0);
        let from = i * per_block;
        let to = ((i + 1) * per_block).min(st.refs.len());
        for (k, &r) in st.refs.get(from..to).unwrap_or(&[]).iter().enumerate() {
            refcount_set(&mut block, REFCOUNT_ORDER, k, u64::from(r));
        }
        st.w.write(&block)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refcount_layout_covers_itself() {
        for (used, cs) in [(1u64, 512u64), (3, 65536), (100_000, 512), (1 << 20, 65536)] {
            let (rt, rb) = refcount_layout(used, cs);
            let per_block = cs * 8 / 16;
            assert!(rb * per_block >= used + rt + rb);
            assert!(rt * cs / 8 >= rb);
        }
    }

    #[test]
    fn deflate_cluster_only_when_smaller() {
        assert!(deflate_cluster(&[7u8; 65536]).unwrap().unwrap().len() < 1000);
        let mut x = 0x1234_5678u32;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect()
        };
        assert!(deflate_cluster(&noise(4096)).unwrap().is_none());
        // 64 KiB of noise is judged incompressible before deflate runs; 2 KiB of noise
        // repeated (a repeat deflate's 4 KiB window reaches) is not.
        let big = noise(65536);
        assert!(looks_incompressible(&big));
        assert!(deflate_cluster(&big).unwrap().is_none());
        let rep: Vec<u8> = big[..2048].repeat(32);
        assert!(!looks_incompressible(&rep));
        assert!(deflate_cluster(&rep).unwrap().unwrap().len() < 16384);
        // Text compresses, the same bytes each time.
        let text: Vec<u8> = b"qcow2 cluster of text 0123456789 "
            .iter()
            .cycle()
            .take(65536)
            .copied()
            .collect();
        let a = deflate_cluster(&text).unwrap().unwrap();
        assert_eq!(deflate_cluster(&text).unwrap().unwrap(), a);
        let mut d = flate2::Decompress::new_with_window_bits(false, 12);
        let mut back = Vec::with_capacity(65536);
        d.decompress_vec(&a, &mut back, flate2::FlushDecompress::Finish)
            .unwrap();
        assert_eq!(back, text);
    }
}
