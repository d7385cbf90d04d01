//! Parallel gzip: the input is cut into blocks that are compressed on every core as separate
//! gzip members, written in order. Concatenated members are one valid gzip stream (RFC 1952
//! §2.2; `gzip -d`, GNU tar, Go's and Python's readers all read them whole).

use crate::error::{Error, Result};
use std::io::Write;

/// Input bytes per gzip member.
pub const BLOCK: usize = 1 << 20;

/// A `Write` that gzips what it is given, `threads` blocks at a time in parallel.
pub struct ParallelGz<W: Write> {
    inner: W,
    pending: Vec<Vec<u8>>,
    cur: Vec<u8>,
    threads: usize,
    level: u32,
    /// Compressed bytes written so far.
    pub written: u64,
}

fn gz_block(data: &[u8], level: u32) -> std::io::Result<Vec<u8>> {
    let mut e = flate2::GzBuilder::new().mtime(0).write(
        Vec::with_capacity(data.len() / 2 + 64),
        flate2::Compression::new(level),
    );
    e.write_all(data)?;
    e.finish()
}

impl<W: Write> ParallelGz<W> {
    /// Gzip at `level` (6 is gzip's default) into `inner` on all cores.
    pub fn new(inner: W, level: u32) -> Self {
        let threads = crate::disk::chunks::threads();
        ParallelGz {
            inner,
            pending: Vec::new(),
            cur: Vec::with_capacity(BLOCK),
            threads,
            level,
            written: 0,
        }
    }

    fn compress_pending(&mut self) -> std::io::Result<()> {
        let level = self.level;
        let blocks = std::mem::take(&mut self.pending);
        let outs: Vec<std::io::Result<Vec<u8>>> = std::thread::scope(|s| {
            let hs: Vec<_> = blocks
                .iter()
                .map(|b| s.spawn(move || gz_block(b, level)))
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(std::io::Error::other("gzip thread panicked")))
                })
                .collect()
        });
        for o in outs {
            let o = o?;
            self.inner.write_all(&o)?;
            self.written += o.len() as u64;
        }
        Ok(())
    }

    fn push_block(&mut self) -> std::io::Result<()> {
        if self.cur.is_empty() {
            return Ok(());
        }
        let b = std::mem::replace(&mut self.cur, Vec::with_capacity(BLOCK));
        self.pending.push(b);
        if self.pending.len() >= self.threads {
            self.compress_pending()?;
        }
        Ok(())
    }

    /// Compresses what is left and returns the inner writer.
    pub fn finish(mut self) -> Result<W> {
        let r = self.push_block().and_then(|()| self.compress_pending());
        r.map_err(|e| Error::io(e, "writing gzip output"))?;
        // An empty input still gives one (empty) member: a valid gzip file.
        if self.written == 0 {
            let e = gz_block(&[], self.level).map_err(|e| Error::io(e, "gzip"))?;
            self.inner
                .write_all(&e)
                .map_err(|e| Error::io(e, "writing gzip output"))?;
        }
        self.inner
            .flush()
            .map_err(|e| Error::io(e, "writing gzip output"))?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGz<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = (BLOCK - self.cur.len()).min(buf.len());
        self.cur.extend_from_slice(&buf[..n]);
        if self.cur.len() == BLOCK {
            self.push_block()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn members_decode_as_one_stream() {
        let data: Vec<u8> = (0..3 * BLOCK + 12345).map(|i| (i % 251) as u8).collect();
        let mut w = ParallelGz::new(Vec::new(), 6);
        w.write_all(&data).unwrap();
        let gz = w.finish().unwrap();
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }
}
