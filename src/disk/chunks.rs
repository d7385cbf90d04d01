//! Streaming helpers shared by the cluster/grain writers (qcow2, VMDK): walk a disk chunk by
//! chunk, skip chunks that read as zeros, optionally transform (compress) chunks in parallel on
//! every core, hand them to the writer in order; and an appending, buffered output.

use super::{DiskImage, ExtentKind, Progress, for_each_extent};
use crate::disk::stream::EXTENT_WINDOW;
use crate::error::{Error, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Bytes read per batch and per worker thread.
const BATCH_PER_THREAD: u64 = 8 << 20;

/// A transform applied to each non-zero chunk (e.g. compression). `None` keeps the raw bytes.
pub type PackFn<'a> = &'a (dyn Fn(&[u8]) -> Result<Option<Vec<u8>>> + Sync);

/// True when every byte of `b` is zero (8 bytes at a time, 64 per step, vectorised).
pub fn is_zero(b: &[u8]) -> bool {
    let mut blocks = b.chunks_exact(64);
    for blk in &mut blocks {
        let acc = blk.chunks_exact(8).fold(0u64, |a, w| {
            a | u64::from_ne_bytes(w.try_into().unwrap_or([1; 8]))
        });
        if acc != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|&x| x == 0)
}

/// Smallest chunk [`looks_incompressible`] judges (below it the estimate is too noisy).
pub const INCOMPRESSIBLE_MIN: usize = 32 << 10;

/// True when `b` (at least [`INCOMPRESSIBLE_MIN`] bytes) looks incompressible: the order-0
/// entropy of its bytes is above 7.98 bits per byte, where Huffman coding can gain at most
/// 0.25 % and LZ matches are as rare as in random bytes (the state of compressed and encrypted
/// data: packages, archives, media, already-compressed files). Deflate spends as long failing
/// on such data as compressing text; this costs one pass of byte counting (the heuristic btrfs
/// applies before compressing, `btrfs_compress_heuristic`).
pub fn looks_incompressible(b: &[u8]) -> bool {
    if b.len() < INCOMPRESSIBLE_MIN {
        return false;
    }
    let mut counts = [[0u32; 256]; 4];
    let mut quads = b.chunks_exact(4);
    for q in &mut quads {
        counts[0][q[0] as usize] += 1;
        counts[1][q[1] as usize] += 1;
        counts[2][q[2] as usize] += 1;
        counts[3][q[3] as usize] += 1;
    }
    for &x in quads.remainder() {
        counts[0][x as usize] += 1;
    }
    let n = b.len() as f64;
    let mut h = 0.0;
    let [a, b2, c3, d4] = &counts;
    for (((x, y), z), w) in a.iter().zip(b2).zip(c3).zip(d4) {
        let c = x + y + z + w;
        if c > 0 {
            let p = f64::from(c) / n;
            h -= p * p.log2();
        }
    }
    h > 7.98
}

/// Number of worker threads for parallel transforms (all cores).
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 64)
}

/// Calls `sink(index, raw, packed)` for every chunk of `chunk` bytes of `src` that holds a
/// non-zero byte, in order. `raw` is the chunk's bytes (zero-padded past the end of the disk);
/// `packed` is `pack(raw)` when a transform is given (computed in parallel). Memory stays
/// bounded: chunks are processed in batches of [`BATCH_PER_THREAD`] per thread.
pub fn for_each_data_chunk(
    src: &dyn DiskImage,
    chunk: u64,
    pack: Option<PackFn>,
    progress: &dyn Progress,
    mut sink: impl FnMut(u64, &[u8], Option<&[u8]>) -> Result<()>,
) -> Result<()> {
    let nthreads = if pack.is_some() { threads() } else { 1 };
    let per_batch = ((BATCH_PER_THREAD * nthreads as u64) / chunk).max(1) as usize;
    let mut batch: Vec<u64> = Vec::with_capacity(per_batch);
    let mut buf = Vec::new();
    let mut run = |batch: &mut Vec<u64>| -> Result<()> {
        process_batch(
            src, chunk, batch, &mut buf, pack, nthreads, progress, &mut sink,
        )?;
        batch.clear();
        Ok(())
    };
    for_each_extent(src, EXTENT_WINDOW, |e| {
        if e.kind != ExtentKind::Data {
            return Ok(());
        }
        let first = e.offset / chunk;
        let last = (e.end() - 1) / chunk;
        for ci in first..=last {
            if batch.last().is_some_and(|&l| l >= ci) {
                continue;
            }
            batch.push(ci);
            if batch.len() >= per_batch {
                run(&mut batch)?;
            }
        }
        Ok(())
    })?;
    if !batch.is_empty() {
        run(&mut batch)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn process_batch(
    src: &dyn DiskImage,
    chunk: u64,
    batch: &[u64],
    buf: &mut Vec<u8>,
    pack: Option<PackFn>,
    nthreads: usize,
    progress: &dyn Progress,
    sink: &mut impl FnMut(u64, &[u8], Option<&[u8]>) -> Result<()>,
) -> Result<()> {
    let cs = chunk as usize;
    buf.resize(batch.len() * cs, 0);
    read_runs(src, chunk, batch, buf)?;
    progress.advance(buf.len() as u64);
    let live: Vec<usize> = (0..batch.len())
        .filter(|&i| !is_zero(&buf[i * cs..(i + 1) * cs]))
        .collect();
    let packed: Vec<Option<Vec<u8>>> = match pack {
        None => Vec::new(),
        Some(f) => pack_parallel(buf, cs, &live, f, nthreads)?,
    };
    for (k, &i) in live.iter().enumerate() {
        let p = packed.get(k).and_then(|p| p.as_deref());
        sink(batch[i], &buf[i * cs..(i + 1) * cs], p)?;
    }
    Ok(())
}

/// Reads the chunks of `batch` into `buf`, one `read_at` per run of consecutive chunks.
fn read_runs(src: &dyn DiskImage, chunk: u64, batch: &[u64], buf: &mut [u8]) -> Result<()> {
    let cs = chunk as usize;
    let len = src.len();
    let mut i = 0;
    while i < batch.len() {
        let mut j = i + 1;
        while j < batch.len() && batch[j] == batch[j - 1] + 1 {
            j += 1;
        }
        let off = batch[i] * chunk;
        let want = ((j - i) as u64 * chunk).min(len - off) as usize;
        let dst = &mut buf[i * cs..j * cs];
        src.read_at(&mut dst[..want], off)?;
        dst[want..].fill(0);
        i = j;
    }
    Ok(())
}

fn pack_parallel(
    buf: &[u8],
    cs: usize,
    live: &[usize],
    f: PackFn,
    nthreads: usize,
) -> Result<Vec<Option<Vec<u8>>>> {
    if live.is_empty() {
        return Ok(Vec::new());
    }
    let per = live.len().div_ceil(nthreads);
    std::thread::scope(|s| {
        let handles: Vec<_> = live
            .chunks(per)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|&i| f(&buf[i * cs..(i + 1) * cs]))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(live.len());
        for h in handles {
            let part = h
                .join()
                .map_err(|_| crate::err!(External, "a compression thread panicked"))??;
            out.extend(part);
        }
        Ok(out)
    })
}

/// An output written front to back through a buffer (large sequential writes).
pub struct AppendWriter<'a> {
    file: &'a File,
    path: &'a Path,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    flushed: u64,
}

const APPEND_BUF: usize = 8 << 20;

impl<'a> AppendWriter<'a> {
    /// Appends to `file` from offset `start`.
    pub fn new(file: &'a File, path: &'a Path, start: u64) -> Self {
        AppendWriter {
            file,
            path,
            buf: Vec::with_capacity(APPEND_BUF),
            flushed: start,
        }
    }

    /// Offset of the next byte appended.
    pub fn pos(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }

    /// Appends `b`.
    pub fn write(&mut self, b: &[u8]) -> Result<()> {
        if self.buf.len() + b.len() > APPEND_BUF {
            self.flush()?;
        }
        if b.len() >= APPEND_BUF {
            self.write_out(b)?;
            self.flushed += b.len() as u64;
        } else {
            self.buf.extend_from_slice(b);
        }
        Ok(())
    }

    /// Appends `n` zero bytes.
    pub fn zeros(&mut self, n: u64) -> Result<()> {
        const Z: [u8; 4096] = [0; 4096];
        let mut left = n;
        while left > 0 {
            let k = left.min(Z.len() as u64) as usize;
            self.write(&Z[..k])?;
            left -= k as u64;
        }
        Ok(())
    }

    /// Pads with zeros up to a multiple of `align`.
    pub fn align(&mut self, align: u64) -> Result<()> {
        let p = self.pos();
        self.zeros(p.div_ceil(align) * align - p)
    }

    fn write_out(&self, b: &[u8]) -> Result<()> {
        self.file.write_all_at(b, self.flushed).map_err(|e| {
            Error::io(e, "writing output")
                .with_path(self.path)
                .at(self.flushed)
        })
    }

    /// Writes what is buffered.
    pub fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.write_out(&self.buf)?;
            self.flushed += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::mem::MemImage;

    #[test]
    fn zero_detection() {
        let mut v = vec![0u8; 4099];
        assert!(is_zero(&v));
        v[4098] = 1;
        assert!(!is_zero(&v));
        v[4098] = 0;
        v[3] = 1;
        assert!(!is_zero(&v));
    }

    #[test]
    fn chunks_in_order_skipping_zeros_and_packed_in_parallel() {
        let mut m = MemImage::new(10_000, 100);
        m.write(0, &[1; 10]);
        m.write(5000, &[0; 100]);
        m.write(9990, &[2; 10]);
        let mut seen = Vec::new();
        let pack = |b: &[u8]| -> Result<Option<Vec<u8>>> { Ok(Some(vec![b[0]])) };
        for_each_data_chunk(
            &m,
            4096,
            Some(&pack),
            &crate::disk::NoProgress,
            |i, raw, p| {
                assert_eq!(raw.len(), 4096);
                seen.push((i, p.map(|p| p.to_vec())));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, vec![(0, Some(vec![1])), (2, Some(vec![0]))]);
    }
}
