//! The BAT held compactly: pages of 4096 entries, a page whose entries are all equal (the holes
//! of a sparse disk: all zero) stored as one value. Memory follows the allocated part of the
//! disk, not its virtual size: a 64 TiB VHDX with 1 MiB blocks has 64 Mi entries (512 MiB as a
//! flat table) but costs 16 bytes per page of holes here.

use crate::error::Result;

/// Entries per page (32 KiB of BAT).
pub const PAGE_ENTRIES: usize = 4096;

#[derive(Debug, Clone)]
enum Page {
    /// Every entry of the page holds this value.
    Uniform(u64),
    /// The entries as stored.
    Dense(Box<[u64]>),
}

/// A BAT of `len` entries: every `stride`-th entry (index `k * stride - 1`) is a sector-bitmap
/// entry, held in a plain vector (one per chunk of payload blocks, at most a few thousand);
/// the payload entries are held in pages. Splitting them keeps the pages of a fresh disk
/// uniform: qemu-img marks every payload entry "zero" (state 2) and every bitmap entry "not
/// present" (0).
#[derive(Debug, Clone, Default)]
pub struct PagedBat {
    len: u64,
    stride: u64,
    payload_len: u64,
    pages: Vec<Page>,
    bitmaps: Vec<u64>,
}

/// Collects payload entries into pages.
struct PageBuilder {
    pages: Vec<Page>,
    cur: Vec<u64>,
}

impl PageBuilder {
    fn push(&mut self, v: u64) {
        self.cur.push(v);
        if self.cur.len() == PAGE_ENTRIES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let Some(&v0) = self.cur.first() else {
            return;
        };
        let page = if self.cur.iter().all(|&v| v == v0) {
            Page::Uniform(v0)
        } else {
            Page::Dense(self.cur.as_slice().into())
        };
        self.pages.push(page);
        self.cur.clear();
    }
}

impl PagedBat {
    /// Reads `len` entries window by window through `read(buf, byte_offset_in_bat)`;
    /// `stride` is the chunk ratio + 1 (0: no bitmap entries).
    pub fn read(
        len: u64,
        stride: u64,
        mut read: impl FnMut(&mut [u8], u64) -> Result<()>,
    ) -> Result<Self> {
        let is_bitmap = |i: u64| stride > 0 && (i + 1).is_multiple_of(stride);
        let mut pb = PageBuilder {
            pages: Vec::new(),
            cur: Vec::with_capacity(PAGE_ENTRIES),
        };
        let mut bitmaps = Vec::new();
        let mut buf = vec![0u8; PAGE_ENTRIES * 8];
        let mut first = 0u64;
        while first < len {
            let n = (len - first).min(PAGE_ENTRIES as u64) as usize;
            let b = &mut buf[..n * 8];
            read(b, first * 8)?;
            for (k, c) in b.chunks_exact(8).enumerate() {
                let v = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
                if is_bitmap(first + k as u64) {
                    bitmaps.push(v);
                } else {
                    pb.push(v);
                }
            }
            first += n as u64;
        }
        pb.flush();
        Ok(PagedBat {
            len,
            stride,
            payload_len: len - bitmaps.len() as u64,
            pages: pb.pages,
            bitmaps,
        })
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the BAT has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where entry `i` lives: `Err(k)` the k-th bitmap entry, `Ok(j)` the j-th payload entry.
    fn slot(&self, i: u64) -> std::result::Result<u64, u64> {
        if self.stride == 0 {
            return Ok(i);
        }
        if (i + 1).is_multiple_of(self.stride) {
            Err(i / self.stride)
        } else {
            Ok(i - i / self.stride)
        }
    }

    /// Entry `i` (0, "not present", past the end).
    pub fn get(&self, i: u64) -> u64 {
        if i >= self.len {
            return 0;
        }
        match self.slot(i) {
            Err(k) => self.bitmaps.get(k as usize).copied().unwrap_or(0),
            Ok(j) if j < self.payload_len => match &self.pages[j as usize / PAGE_ENTRIES] {
                Page::Uniform(v) => *v,
                Page::Dense(d) => d[j as usize % PAGE_ENTRIES],
            },
            Ok(_) => 0,
        }
    }

    /// Sets entry `i` (ignored past the end).
    pub fn set(&mut self, i: u64, v: u64) {
        if i >= self.len {
            return;
        }
        let j = match self.slot(i) {
            Err(k) => {
                if let Some(slot) = self.bitmaps.get_mut(k as usize) {
                    *slot = v;
                }
                return;
            }
            Ok(j) if j < self.payload_len => j as usize,
            Ok(_) => return,
        };
        let p = j / PAGE_ENTRIES;
        let page_len = (self.payload_len as usize - p * PAGE_ENTRIES).min(PAGE_ENTRIES);
        let page = &mut self.pages[p];
        if let Page::Uniform(u) = *page {
            if u == v {
                return;
            }
            *page = Page::Dense(vec![u; page_len].into_boxed_slice());
        }
        if let Page::Dense(d) = page {
            d[j % PAGE_ENTRIES] = v;
        }
    }

    /// Every entry with its index, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        (0..self.len).map(|i| (i, self.get(i)))
    }

    /// Bytes of entries held (dense pages and bitmap entries), for tests and reports.
    pub fn dense_bytes(&self) -> u64 {
        let pages: u64 = self
            .pages
            .iter()
            .map(|p| match p {
                Page::Uniform(_) => 0,
                Page::Dense(d) => d.len() as u64 * 8,
            })
            .sum();
        pages + self.bitmaps.len() as u64 * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_entries(e: &[u64]) -> PagedBat {
        with_stride(e, 0)
    }

    fn with_stride(e: &[u64], stride: u64) -> PagedBat {
        let raw: Vec<u8> = e.iter().flat_map(|x| x.to_le_bytes()).collect();
        PagedBat::read(e.len() as u64, stride, |b, off| {
            b.copy_from_slice(&raw[off as usize..off as usize + b.len()]);
            Ok(())
        })
        .unwrap()
    }

    #[test]
    fn holes_cost_nothing_and_entries_read_back() {
        let n = 3 * PAGE_ENTRIES + 17;
        let mut e = vec![0u64; n];
        e[5000] = (7 << 20) | 6;
        e[n - 1] = 2;
        let bat = from_entries(&e);
        assert_eq!(bat.len(), n as u64);
        assert_eq!(bat.dense_bytes(), PAGE_ENTRIES as u64 * 8 + 17 * 8);
        for (i, v) in bat.iter() {
            assert_eq!(v, e[i as usize], "entry {i}");
        }
        assert_eq!(bat.get(n as u64), 0);
    }

    #[test]
    fn bitmap_entries_do_not_break_uniform_pages() {
        // qemu-img's fresh disk: payload entries "zero" (2), every 5th entry a bitmap (0)
        let n = 5 * PAGE_ENTRIES + 3;
        let e: Vec<u64> = (0..n as u64)
            .map(|i| if (i + 1) % 5 == 0 { 0 } else { 2 })
            .collect();
        let mut bat = with_stride(&e, 5);
        assert_eq!(bat.dense_bytes(), (n as u64 / 5) * 8);
        for (i, v) in bat.iter() {
            assert_eq!(v, e[i as usize], "entry {i}");
        }
        bat.set(4, 6);
        bat.set(5, (3 << 20) | 6);
        assert_eq!((bat.get(4), bat.get(5), bat.get(6)), (6, (3 << 20) | 6, 2));
    }

    #[test]
    fn set_splits_a_uniform_page() {
        let mut bat = from_entries(&vec![0u64; 2 * PAGE_ENTRIES + 3]);
        assert_eq!(bat.dense_bytes(), 0);
        bat.set(2 * PAGE_ENTRIES as u64 + 1, 99);
        bat.set(0, 0);
        assert_eq!(bat.dense_bytes(), 3 * 8);
        assert_eq!(bat.get(2 * PAGE_ENTRIES as u64 + 1), 99);
        assert_eq!(bat.get(2 * PAGE_ENTRIES as u64), 0);
        bat.set(10 * PAGE_ENTRIES as u64, 1);
        assert_eq!(bat.get(10 * PAGE_ENTRIES as u64), 0);
    }
}
