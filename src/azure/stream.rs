//! The upload pipeline: one reader walks the fixed-VHD stream in order; the pages that hold data
//! go to `parallel` senders (Put Page), every byte goes to two hashers (MD5, SHA-256) in stream
//! order, zero runs included.
//!
//! - Memory is bounded in bytes, not in messages: a chunk read from the source holds its share of
//!   a `Budget` until it has been both sent and hashed. The hashers may lag behind the senders
//!   by `HASH_LAG` of data: hashing a long zero run (hundreds of MiB between two data runs)
//!   does not stop the senders, which is what the service's throughput needs. The hashers run at
//!   a lower priority (`HASH_NICE`) so that the senders, and a service sharing the cores,
//!   get the CPU first.
//! - What is sent: the source's data extents read in chunks of at most 4 MiB; in each chunk the
//!   all-zero 512-byte pages are dropped, except zero runs shorter than [`MIN_ZERO_SKIP`] between
//!   two data pages, which are sent with them (see [`send_runs`]).
//! - Without a client (a dry run) the same walk counts the calls and bytes it would send.

use super::pageblob::{BlobClient, MAX_PUT_PAGE, PAGE};
use super::upload::UploadProgress;
use crate::disk::{DiskImage, ExtentKind, for_each_extent};
use crate::err;
use crate::error::{Error, Result};
use crate::vhd::footer::FOOTER_SIZE;
use md5::Digest;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};

/// Zero runs inside data shorter than this are sent with the data around them.
///
/// Each Put Page is a round trip and a billed transaction, and every skipped run splits the
/// blob's page ranges. 64 KiB takes about a millisecond on one connection (~60 MB/s), about the
/// cost of one more round trip, so sending a shorter run is cheaper than skipping it; longer
/// runs (and whole zero chunks, and holes) are skipped. The page ranges then cover the data and
/// at most 64 KiB of zeros between two data pages.
pub const MIN_ZERO_SKIP: usize = 64 << 10;

/// Bytes of chunks the reader may hold beyond one per connection: how far the hashers may lag
/// behind the senders (in data; zero runs cost no memory) before the reader waits for them.
/// 40 MiB keeps the peak RSS under 64 MiB + 4 MiB per connection (measured: 89 MiB at 8).
const HASH_LAG: u64 = 40 << 20;

/// Nice value of the hasher threads. They may lag (see `HASH_LAG`), so the senders (and, on a
/// shared machine, the service: Azurite on the same cores) get the CPU first: a send delayed is
/// lost time, a hash delayed is not until the end. Mild, so that a busy machine does not
/// starve them.
const HASH_NICE: i32 = 5;

/// Lowers the calling thread's priority to `HASH_NICE` (Linux: the nice value is per thread).
/// Best effort: a failure leaves the priority as it was.
fn lower_thread_priority() {
    // SAFETY: gettid has no preconditions; setpriority only reads its integer arguments and
    // changes the nice value of this thread.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, HASH_NICE);
    }
}

/// What the walk did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Bytes sent (or, dry run, to send), footer included.
    pub sent: u64,
    /// Put Page calls made (or to make).
    pub calls: u64,
    /// Zero bytes not sent.
    pub zero: u64,
    /// Bytes already in the blob, not sent again.
    pub present: u64,
}

/// A byte budget for chunks in memory.
struct Budget {
    used: Mutex<u64>,
    freed: Condvar,
    cap: u64,
}

impl Budget {
    /// Waits until `n` more bytes fit (a lone chunk always fits).
    fn acquire(&self, n: u64) -> Result<()> {
        let poisoned = |_| err!(Io, "the upload's buffer lock is poisoned");
        let mut used = self.used.lock().map_err(poisoned)?;
        while *used > 0 && *used + n > self.cap {
            used = self.freed.wait(used).map_err(poisoned)?;
        }
        *used += n;
        Ok(())
    }

    fn release(&self, n: u64) {
        if let Ok(mut used) = self.used.lock() {
            *used -= n;
            self.freed.notify_all();
        }
    }
}

/// Bytes of the stream in memory; gives its share of the budget back when dropped (when the
/// last sender and the last hasher are done with it).
struct Chunk {
    data: Vec<u8>,
    budget: Arc<Budget>,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        self.budget.release(self.data.len() as u64);
    }
}

/// What the hashers receive, in stream order.
enum Piece {
    Data(Arc<Chunk>),
    Zeros(u64),
}

/// A Put Page: `len` bytes of `chunk` from `start`, written at blob `offset`.
struct Job {
    offset: u64,
    chunk: Arc<Chunk>,
    start: usize,
    len: usize,
}

static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// Feeds `n` zero bytes to a hasher.
pub fn hash_zeros<D: Digest>(h: &mut D, mut n: u64) {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        h.update(&ZEROS[..k]);
        n -= k as u64;
    }
}

fn hasher<D: Digest + Send + 'static>(rx: Receiver<Piece>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        lower_thread_priority();
        let mut h = D::new();
        for p in rx {
            match p {
                Piece::Data(c) => h.update(&c.data),
                Piece::Zeros(n) => hash_zeros(&mut h, n),
            }
        }
        h.finalize().to_vec()
    })
}

/// State shared by the senders.
#[derive(Default)]
struct Senders {
    failed: AtomicBool,
    error: Mutex<Option<Error>>,
    sent: AtomicU64,
    calls: AtomicU64,
}

impl Senders {
    fn fail(&self, e: Error) {
        self.failed.store(true, Ordering::Relaxed);
        if let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(e);
        }
    }
}

fn worker(
    rx: &Mutex<Receiver<Job>>,
    client: &BlobClient,
    blob_len: u64,
    st: &Senders,
    progress: &dyn UploadProgress,
) {
    loop {
        let job = match rx.lock().map(|r| r.recv()) {
            Ok(Ok(j)) => j,
            _ => return,
        };
        if st.failed.load(Ordering::Relaxed) {
            continue; // drain, so that the reader's budget is given back
        }
        let data = &job.chunk.data[job.start..job.start + job.len];
        match client.put_page(job.offset, data, blob_len) {
            Ok(()) => {
                st.sent.fetch_add(job.len as u64, Ordering::Relaxed);
                st.calls.fetch_add(1, Ordering::Relaxed);
                progress.sent(job.len as u64);
            }
            Err(e) => st.fail(e),
        }
    }
}

/// The reader's side: walks the stream in order, feeds hashers and senders.
struct Feed<'a> {
    hashers: [Sender<Piece>; 2],
    /// `None`: a dry run, the calls are counted instead.
    jobs: Option<Sender<Job>>,
    budget: Arc<Budget>,
    present: &'a [(u64, u64)],
    progress: &'a dyn UploadProgress,
    st: &'a Senders,
    counts: Counts,
    pos: u64,
}

impl Feed<'_> {
    fn hash(&self, p: impl Fn() -> Piece) -> Result<()> {
        for h in &self.hashers {
            h.send(p())
                .map_err(|_| err!(Io, "a hasher thread stopped"))?;
        }
        Ok(())
    }

    fn zeros(&mut self, n: u64) -> Result<()> {
        if n > 0 {
            self.hash(|| Piece::Zeros(n))?;
            self.counts.zero += n;
            self.progress.skipped(n, false);
            self.pos += n;
        }
        Ok(())
    }

    /// A chunk of `n` bytes, once the budget has room for it.
    fn alloc(&self, n: usize) -> Result<Chunk> {
        self.budget.acquire(n as u64)?;
        Ok(Chunk {
            data: vec![0u8; n],
            budget: self.budget.clone(),
        })
    }

    fn send(&mut self, job: Job) -> Result<()> {
        match &self.jobs {
            Some(tx) => tx.send(job).map_err(|_| err!(Io, "every sender stopped")),
            None => {
                self.counts.sent += job.len as u64;
                self.counts.calls += 1;
                Ok(())
            }
        }
    }

    /// Queues `chunk` (stream bytes at `offset`): its runs to send, minus pages already present.
    fn data(&mut self, offset: u64, chunk: Chunk) -> Result<()> {
        if self.st.failed.load(Ordering::Relaxed) {
            return Err(err!(Io, "upload stopped"));
        }
        let chunk = Arc::new(chunk);
        self.hash(|| Piece::Data(chunk.clone()))?;
        let (mut sending, mut present) = (0, 0);
        for (s, e) in send_runs(&chunk.data, MIN_ZERO_SKIP) {
            let (a, b) = (offset + s as u64, offset + e as u64);
            sending += b - a;
            let missing = subtract(a, b, self.present);
            present += (b - a) - missing.iter().map(|(s, e)| e - s).sum::<u64>();
            for (a, b) in missing {
                let start = (a - offset) as usize;
                let len = (b - a) as usize;
                let chunk = chunk.clone();
                self.send(Job {
                    offset: a,
                    chunk,
                    start,
                    len,
                })?;
            }
        }
        let zeros = chunk.data.len() as u64 - sending;
        self.counts.zero += zeros;
        self.counts.present += present;
        self.progress.skipped(zeros, false);
        self.progress.skipped(present, true);
        self.pos += chunk.data.len() as u64;
        Ok(())
    }
}

/// Walks the whole stream (`src` then `footer`); sends through `client` (`None`: count only).
/// Returns the counts and (md5, sha256) of the stream.
pub(super) fn stream(
    src: &dyn DiskImage,
    footer: &[u8; FOOTER_SIZE],
    present: &[(u64, u64)],
    client: Option<&BlobClient>,
    parallel: usize,
    progress: &dyn UploadProgress,
) -> Result<(Counts, [u8; 16], [u8; 32])> {
    let n = parallel.clamp(1, 64);
    let blob_len = src.len() + FOOTER_SIZE as u64;
    let st = Senders::default();
    let budget = Arc::new(Budget {
        used: Mutex::new(0),
        freed: Condvar::new(),
        cap: MAX_PUT_PAGE * n as u64 + HASH_LAG,
    });
    let (md5_tx, md5_rx) = channel();
    let (sha_tx, sha_rx) = channel();
    let md5_t = hasher::<md5::Md5>(md5_rx);
    let sha_t = hasher::<sha2::Sha256>(sha_rx);
    let (job_tx, job_rx) = channel::<Job>();
    let job_rx = Mutex::new(job_rx);
    let walked = std::thread::scope(|s| {
        if let Some(c) = client {
            for _ in 0..n {
                let (rx, st) = (&job_rx, &st);
                s.spawn(move || worker(rx, c, blob_len, st, progress));
            }
        }
        let mut feed = Feed {
            hashers: [md5_tx, sha_tx],
            jobs: client.map(|_| job_tx),
            budget,
            present,
            progress,
            st: &st,
            counts: Counts::default(),
            pos: 0,
        };
        let r = walk(src, &mut feed).and_then(|()| {
            let mut c = feed.alloc(FOOTER_SIZE)?;
            c.data.copy_from_slice(footer);
            feed.data(src.len(), c)
        });
        let counts = feed.counts;
        drop(feed);
        r.map(|()| counts)
    });
    let md5 = md5_t
        .join()
        .map_err(|_| err!(Io, "the MD5 thread panicked"))?;
    let sha = sha_t
        .join()
        .map_err(|_| err!(Io, "the SHA-256 thread panicked"))?;
    if let Some(e) = st.error.lock().ok().and_then(|mut e| e.take()) {
        return Err(e);
    }
    let mut counts = walked?;
    if client.is_some() {
        counts.sent = st.sent.load(Ordering::Relaxed);
        counts.calls = st.calls.load(Ordering::Relaxed);
    }
    let mut m = [0u8; 16];
    m.copy_from_slice(&md5);
    let mut h = [0u8; 32];
    h.copy_from_slice(&sha);
    Ok((counts, m, h))
}

/// Feeds the source's data ranges (512-aligned, merged) and the zero gaps, in order.
fn walk(src: &dyn DiskImage, feed: &mut Feed<'_>) -> Result<()> {
    let len = src.len();
    let mut pending: Option<(u64, u64)> = None;
    let emit = |feed: &mut Feed<'_>, r: (u64, u64)| -> Result<()> {
        feed.zeros(r.0 - feed.pos)?;
        let mut off = r.0;
        while off < r.1 {
            let k = (r.1 - off).min(MAX_PUT_PAGE);
            let mut chunk = feed.alloc(k as usize)?;
            src.read_at(&mut chunk.data, off)?;
            feed.data(off, chunk)?;
            off += k;
        }
        Ok(())
    };
    for_each_extent(src, 1 << 32, |e| {
        if e.kind != ExtentKind::Data {
            return Ok(());
        }
        let a = e.offset / PAGE * PAGE;
        let b = e.end().next_multiple_of(PAGE).min(len);
        match &mut pending {
            Some(p) if a <= p.1 => p.1 = p.1.max(b),
            _ => {
                if let Some(p) = pending.replace((a, b)) {
                    emit(feed, p)?;
                }
            }
        }
        Ok(())
    })?;
    if let Some(p) = pending {
        emit(feed, p)?;
    }
    feed.zeros(len - feed.pos)
}

/// `[start, end)` runs of `buf` (a multiple of 512 bytes) made of 512-byte pages that are not
/// all zero.
pub fn nonzero_runs(buf: &[u8]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (i, page) in buf.chunks(PAGE as usize).enumerate() {
        if page.iter().all(|&b| b == 0) {
            continue;
        }
        let s = i * PAGE as usize;
        let e = s + page.len();
        match out.last_mut() {
            Some(l) if l.1 == s => l.1 = e,
            _ => out.push((s, e)),
        }
    }
    out
}

/// The runs of `buf` to send: its non-zero pages, with the zero runs between two of them that
/// are shorter than `min_skip` bytes sent along. Leading and trailing zeros are never sent.
pub fn send_runs(buf: &[u8], min_skip: usize) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (s, e) in nonzero_runs(buf) {
        match out.last_mut() {
            Some(l) if s - l.1 < min_skip => l.1 = e,
            _ => out.push((s, e)),
        }
    }
    out
}

/// `[a, b)` minus the sorted, disjoint `present` ranges.
pub fn subtract(a: u64, b: u64, present: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut cur = a;
    let first = present.partition_point(|&(_, e)| e <= a);
    for &(s, e) in &present[first..] {
        if s >= b {
            break;
        }
        if s > cur {
            out.push((cur, s));
        }
        cur = cur.max(e);
        if cur >= b {
            break;
        }
    }
    if cur < b {
        out.push((cur, b));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_pages_dropped() {
        let mut b = vec![0u8; 4096];
        b[0] = 1;
        b[1024 + 511] = 2;
        b[1536] = 3;
        assert_eq!(nonzero_runs(&b), vec![(0, 512), (1024, 2048)]);
        assert!(nonzero_runs(&[0u8; 1024]).is_empty());
    }

    /// Short zero runs between data are sent with it; long ones, leading and trailing zeros
    /// are not.
    #[test]
    fn short_zero_runs_inside_data_are_sent() {
        let k = 1024;
        let mut b = vec![0u8; 512 * k];
        let page = |b: &mut Vec<u8>, i: usize| b[i * 512 + 7] = 1;
        page(&mut b, 3); // leading zeros: 3 pages
        page(&mut b, 5); // 1 zero page between: sent
        page(&mut b, 5 + 127); // 126 zero pages (63 KiB): sent
        page(&mut b, 5 + 127 + 129); // 128 zero pages (64 KiB): skipped
        page(&mut b, 900); // trailing zeros after it
        assert_eq!(
            send_runs(&b, MIN_ZERO_SKIP),
            vec![
                (3 * 512, 133 * 512),
                (261 * 512, 262 * 512),
                (900 * 512, 901 * 512)
            ]
        );
        assert_eq!(send_runs(&b, 512), nonzero_runs(&b));
        assert!(send_runs(&vec![0u8; 8192], MIN_ZERO_SKIP).is_empty());
    }

    #[test]
    fn subtract_present_ranges() {
        let p = [(100, 200), (300, 400)];
        assert_eq!(subtract(0, 500, &p), vec![(0, 100), (200, 300), (400, 500)]);
        assert_eq!(subtract(150, 350, &p), vec![(200, 300)]);
        assert_eq!(subtract(120, 180, &p), vec![]);
        assert_eq!(subtract(0, 50, &p), vec![(0, 50)]);
    }

    /// The budget bounds the bytes held and never blocks a lone chunk.
    #[test]
    fn budget_waits_for_release() {
        let b = Arc::new(Budget {
            used: Mutex::new(0),
            freed: Condvar::new(),
            cap: 10,
        });
        b.acquire(8).unwrap();
        let b2 = b.clone();
        let t = std::thread::spawn(move || {
            b2.acquire(5).unwrap();
            *b2.used.lock().unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(*b.used.lock().unwrap(), 8, "the second chunk waits");
        b.release(8);
        assert_eq!(t.join().unwrap(), 5);
        b.release(5);
        b.acquire(100).unwrap();
        assert_eq!(*b.used.lock().unwrap(), 100);
    }
}
