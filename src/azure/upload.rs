//! Streams any [`DiskImage`] to a page blob as an Azure fixed VHD: the virtual size rounded up
//! to a whole MiB, then the 512-byte footer. No intermediate file.
//!
//! - Only data is sent: the source's extents, then all-zero 512-byte runs dropped; each Put Page
//!   is 512-aligned and at most 4 MiB.
//! - `parallel` connections send pages; one reader walks the stream in order and feeds two
//!   hasher threads (MD5, SHA-256) in stream order, zero runs included, so the digests are those
//!   of the whole fixed-VHD file.
//! - Resume: the blob carries the source's size and identity as metadata from its creation; a
//!   rerun lists the pages already there (Get Page Ranges) and sends only the others. A resumed
//!   upload trusts those pages, so it downloads the final blob and checks its MD5 before setting
//!   `Content-MD5` (a corrupted page is an error, never a silent bad image).

use super::pageblob::{BlobClient, MAX_PUT_PAGE, META_SOURCE_ID, META_SOURCE_SIZE, PAGE};
use crate::context::BuildContext;
use crate::disk::stream::Padded;
use crate::disk::{DiskImage, ExtentKind, for_each_extent};
use crate::err;
use crate::error::{Error, Result};
use crate::image::convert::azure_size;
use crate::vhd::footer::{DiskType, FOOTER_SIZE};
use base64::Engine;
use md5::Digest;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

/// Content type set on the finished blob.
pub const CONTENT_TYPE: &str = "application/octet-stream";

/// When to download the finished blob and check its MD5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// When the upload trusted pages already in the blob (a resume).
    #[default]
    Resumed,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// What `upload` should do.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Parallel connections (>= 1).
    pub parallel: usize,
    /// Replace a finished blob or a blob of another source.
    pub overwrite: bool,
    /// Create the container when it does not exist.
    pub create_container: bool,
    /// Final verification policy.
    pub verify: Verify,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            parallel: 8,
            overwrite: false,
            create_container: true,
            verify: Verify::Resumed,
        }
    }
}

/// The source's identity, written as metadata at blob creation and checked on resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceId {
    /// Virtual size of the source.
    pub size: u64,
    /// Hex digest of what identifies the source (see [`source_identity`]).
    pub id: String,
}

/// Identity of a source: a SHA-256 over its format, virtual size, file length and modification
/// time, its extent map head and its first and last MiB. A changed or different file gets
/// another identity without reading it all.
pub fn source_identity(src: &dyn DiskImage, file: Option<&std::fs::Metadata>) -> Result<SourceId> {
    use std::os::unix::fs::MetadataExt;
    let mut h = sha2::Sha256::new();
    let info = src.info();
    h.update(format!("isotool-upload-v1|{}|{}|", info.format, src.len()).as_bytes());
    if let Some(m) = file {
        h.update(format!("{}|{}.{}|{}|", m.len(), m.mtime(), m.mtime_nsec(), m.ino()).as_bytes());
    }
    for e in src.extents(0, 1 << 30)?.iter().take(256) {
        h.update(format!("{}+{}:{:?};", e.offset, e.len, e.kind).as_bytes());
    }
    let n = src.len().min(1 << 20);
    let mut buf = vec![0u8; n as usize];
    src.read_at(&mut buf, 0)?;
    h.update(&buf);
    src.read_at(&mut buf, src.len() - n)?;
    h.update(&buf);
    Ok(SourceId {
        size: src.len(),
        id: crate::checksum::hex(&h.finalize()[..16]),
    })
}

/// Progress of an upload (the CLI draws it; the library never prints).
pub trait UploadProgress: Sync {
    /// The stream is `total` bytes.
    fn start(&self, _total: u64) {}
    /// `n` bytes were sent.
    fn sent(&self, _n: u64) {}
    /// `n` bytes were skipped: zeros (`present == false`) or already in the blob.
    fn skipped(&self, _n: u64, _present: bool) {}
    /// A note for the user.
    fn note(&self, _msg: &str) {}
    /// Phase change ("verifying").
    fn phase(&self, _name: &str) {}
    /// Done.
    fn finish(&self) {}
}

/// Ignores progress.
pub struct NoUploadProgress;
impl UploadProgress for NoUploadProgress {}

/// What an upload did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct UploadReport {
    /// The blob's URL (no credentials).
    pub blob_url: String,
    /// Virtual size of the source.
    pub source_size: u64,
    /// Virtual size of the VHD (whole MiB).
    pub virtual_size: u64,
    /// Blob length (virtual size + footer).
    pub blob_size: u64,
    /// Bytes sent in this run (pages + footer).
    pub sent_bytes: u64,
    /// Bytes already in the blob from an earlier run, not sent again.
    pub present_bytes: u64,
    /// Zero bytes not sent (holes and all-zero 512-byte runs).
    pub zero_bytes: u64,
    /// Put Page calls made.
    pub put_pages: u64,
    /// True when an earlier run's pages were reused.
    pub resumed: bool,
    /// True when the container was created.
    pub container_created: bool,
    /// True when the finished blob was downloaded and its MD5 checked.
    pub verified: bool,
    /// MD5 of the fixed-VHD stream, base64 (the blob's Content-MD5).
    pub md5_base64: String,
    /// MD5, hex.
    pub md5: String,
    /// SHA-256 of the fixed-VHD stream, hex.
    pub sha256: String,
}

/// How the run starts, from the blob's state.
enum Start {
    Create,
    Resume,
}

fn decide(
    client: &BlobClient,
    want: &SourceId,
    blob_len: u64,
    opts: &UploadOptions,
    report: &mut UploadReport,
) -> Result<Start> {
    let props = match client.properties() {
        Err(e)
            if e.kind() == crate::ErrorKind::NotFound && e.message().starts_with("container") =>
        {
            if !opts.create_container {
                return Err(err!(
                    NotFound,
                    "{} (not created: --no-create-container was given)",
                    e.message()
                ));
            }
            report.container_created = client.create_container()?;
            None
        }
        r => r?,
    };
    let Some(p) = props else {
        return Ok(Start::Create);
    };
    if opts.overwrite {
        return Ok(Start::Create);
    }
    let same = p.blob_type == "PageBlob"
        && p.len == blob_len
        && p.metadata.get(META_SOURCE_ID) == Some(&want.id)
        && p.metadata.get(META_SOURCE_SIZE) == Some(&want.size.to_string());
    if !same {
        return Err(err!(
            OutputExists,
            "blob {} already exists and holds another source ({} of {} bytes, source id {}); \
             use --overwrite to replace it",
            client.name(),
            if p.blob_type.is_empty() {
                "blob"
            } else {
                &p.blob_type
            },
            p.len,
            p.metadata
                .get(META_SOURCE_ID)
                .map_or("none", String::as_str)
        ));
    }
    if let Some(md5) = p.md5 {
        return Err(err!(
            OutputExists,
            "blob {} is already a finished upload of this source (Content-MD5 {md5}); use \
             --overwrite to upload it again",
            client.name()
        ));
    }
    Ok(Start::Resume)
}

/// Uploads `src` as a fixed VHD to the client's blob.
pub fn upload(
    src: &dyn DiskImage,
    identity: &SourceId,
    client: &BlobClient,
    opts: &UploadOptions,
    ctx: &BuildContext,
    progress: &dyn UploadProgress,
) -> Result<UploadReport> {
    if src.is_empty() {
        return Err(err!(
            InvalidArgument,
            "cannot upload an empty (0-byte) disk"
        ));
    }
    let vsize = azure_size(src.len());
    let blob_len = vsize + FOOTER_SIZE as u64;
    if vsize != src.len() {
        progress.note(&format!(
            "virtual size rounded up from {} to {vsize} bytes ({} MiB) for Azure",
            src.len(),
            vsize >> 20
        ));
    }
    let mut report = UploadReport {
        blob_url: client.public_url(),
        source_size: src.len(),
        virtual_size: vsize,
        blob_size: blob_len,
        ..UploadReport::default()
    };
    let present = match decide(client, identity, blob_len, opts, &mut report)? {
        Start::Create => {
            let meta = [
                (META_SOURCE_SIZE, identity.size.to_string()),
                (META_SOURCE_ID, identity.id.clone()),
            ];
            client.create_page_blob(blob_len, &meta)?;
            Vec::new()
        }
        Start::Resume => {
            let p = client.page_ranges()?;
            report.resumed = true;
            progress.note(&format!(
                "resuming: {} bytes already in the blob",
                p.iter().map(|(a, b)| b - a).sum::<u64>()
            ));
            p
        }
    };
    let footer = crate::vhd::write::new_footer(vsize, DiskType::Fixed, u64::MAX, ctx).encode();
    let padded = Padded::new(src, vsize);
    progress.start(blob_len);
    let digests = stream(
        &padded,
        &footer,
        &present,
        client,
        opts,
        progress,
        &mut report,
    )?;
    report.md5 = crate::checksum::hex(&digests.0);
    report.md5_base64 = base64::engine::general_purpose::STANDARD.encode(digests.0);
    report.sha256 = crate::checksum::hex(&digests.1);
    let verify = match opts.verify {
        Verify::Always => true,
        Verify::Never => false,
        Verify::Resumed => report.present_bytes > 0,
    };
    if verify {
        progress.phase("verifying");
        let stored = blob_md5(client, blob_len)?;
        if stored != digests.0 {
            return Err(err!(
                BadChecksum,
                "blob {}: MD5 of the stored blob {} differs from the MD5 of the source stream {}: \
                 a page already in the blob does not hold the source's bytes (corrupted, or the \
                 source changed); the blob's Content-MD5 was not set; upload again with --overwrite",
                client.name(),
                crate::checksum::hex(&stored),
                report.md5
            )
            .with_structure("blob MD5 verification"));
        }
        report.verified = true;
    }
    client.set_md5_and_type(&report.md5_base64, CONTENT_TYPE)?;
    progress.finish();
    Ok(report)
}

/// MD5 of the blob as stored: its page ranges downloaded, zeros elsewhere.
pub fn blob_md5(client: &BlobClient, blob_len: u64) -> Result<[u8; 16]> {
    let mut h = md5::Md5::new();
    let mut pos = 0;
    for (a, b) in client.page_ranges()? {
        let b = b.min(blob_len);
        hash_zeros(&mut h, a.saturating_sub(pos));
        let mut off = a.max(pos);
        while off < b {
            let n = (b - off).min(MAX_PUT_PAGE);
            h.update(&client.read_range(off, n)?);
            off += n;
        }
        pos = pos.max(b);
    }
    hash_zeros(&mut h, blob_len.saturating_sub(pos));
    Ok(h.finalize().into())
}

static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

fn hash_zeros<D: Digest>(h: &mut D, mut n: u64) {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        h.update(&ZEROS[..k]);
        n -= k as u64;
    }
}

/// What the hashers receive, in stream order.
enum Piece {
    Data(Arc<Vec<u8>>),
    Zeros(u64),
}

/// A Put Page job: `len` bytes of `buf` from `start`, written at blob `offset`.
struct Job {
    offset: u64,
    buf: Arc<Vec<u8>>,
    start: usize,
    len: usize,
}

fn hasher<D: Digest + Send + 'static>(rx: Receiver<Piece>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut h = D::new();
        for p in rx {
            match p {
                Piece::Data(b) => h.update(b.as_slice()),
                Piece::Zeros(n) => hash_zeros(&mut h, n),
            }
        }
        h.finalize().to_vec()
    })
}

/// Shared state of the senders.
struct Senders {
    failed: AtomicBool,
    error: Mutex<Option<Error>>,
    sent: AtomicU64,
    calls: AtomicU64,
}

fn worker(
    rx: Arc<Mutex<Receiver<Job>>>,
    client: BlobClient,
    blob_len: u64,
    st: Arc<Senders>,
    progress: &dyn UploadProgress,
) {
    loop {
        let job = match rx.lock() {
            Ok(r) => match r.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
            Err(_) => return,
        };
        if st.failed.load(Ordering::Relaxed) {
            continue;
        }
        let data = &job.buf[job.start..job.start + job.len];
        match client.put_page(job.offset, data, blob_len) {
            Ok(()) => {
                st.sent.fetch_add(job.len as u64, Ordering::Relaxed);
                st.calls.fetch_add(1, Ordering::Relaxed);
                progress.sent(job.len as u64);
            }
            Err(e) => {
                st.failed.store(true, Ordering::Relaxed);
                if let Ok(mut slot) = st.error.lock() {
                    slot.get_or_insert(e);
                }
            }
        }
    }
}

/// The reader's side: walks the stream in order, feeds hashers and senders.
struct Feed<'a> {
    hashers: [SyncSender<Piece>; 2],
    jobs: SyncSender<Job>,
    present: &'a [(u64, u64)],
    progress: &'a dyn UploadProgress,
    st: &'a Senders,
    zero: u64,
    present_bytes: u64,
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
            self.zero += n;
            self.progress.skipped(n, false);
            self.pos += n;
        }
        Ok(())
    }

    /// Queues `buf` (stream bytes at `offset`): non-zero 512-byte runs not already present.
    fn data(&mut self, offset: u64, buf: Vec<u8>) -> Result<()> {
        if self.st.failed.load(Ordering::Relaxed) {
            return Err(err!(Io, "upload stopped"));
        }
        let buf = Arc::new(buf);
        self.hash(|| Piece::Data(buf.clone()))?;
        let runs = nonzero_runs(&buf);
        let mut nonzero = 0;
        let mut present = 0;
        for (s, e) in runs {
            let (a, b) = (offset + s as u64, offset + e as u64);
            nonzero += b - a;
            let missing = subtract(a, b, self.present);
            present += (b - a) - missing.iter().map(|(s, e)| e - s).sum::<u64>();
            for (a, b) in missing {
                let job = Job {
                    offset: a,
                    buf: buf.clone(),
                    start: (a - offset) as usize,
                    len: (b - a) as usize,
                };
                self.jobs
                    .send(job)
                    .map_err(|_| err!(Io, "every sender stopped"))?;
            }
        }
        let zeros = buf.len() as u64 - nonzero;
        self.zero += zeros;
        self.present_bytes += present;
        self.progress.skipped(zeros, false);
        self.progress.skipped(present, true);
        self.pos += buf.len() as u64;
        Ok(())
    }
}

/// Walks the whole stream; returns (md5, sha256).
fn stream(
    src: &dyn DiskImage,
    footer: &[u8; FOOTER_SIZE],
    present: &[(u64, u64)],
    client: &BlobClient,
    opts: &UploadOptions,
    progress: &dyn UploadProgress,
    report: &mut UploadReport,
) -> Result<([u8; 16], [u8; 32])> {
    let n = opts.parallel.clamp(1, 64);
    let blob_len = src.len() + FOOTER_SIZE as u64;
    let st = Arc::new(Senders {
        failed: AtomicBool::new(false),
        error: Mutex::new(None),
        sent: AtomicU64::new(0),
        calls: AtomicU64::new(0),
    });
    let (md5_tx, md5_rx) = sync_channel(4);
    let (sha_tx, sha_rx) = sync_channel(4);
    let md5_t = hasher::<md5::Md5>(md5_rx);
    let sha_t = hasher::<sha2::Sha256>(sha_rx);
    let (job_tx, job_rx) = sync_channel::<Job>(n);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let walked = std::thread::scope(|s| {
        for _ in 0..n {
            let (rx, c, st) = (job_rx.clone(), client.clone(), st.clone());
            s.spawn(move || worker(rx, c, blob_len, st, progress));
        }
        let mut feed = Feed {
            hashers: [md5_tx, sha_tx],
            jobs: job_tx,
            present,
            progress,
            st: &st,
            zero: 0,
            present_bytes: 0,
            pos: 0,
        };
        let r = walk(src, &mut feed).and_then(|()| feed.data(src.len(), footer.to_vec()));
        let counts = (feed.zero, feed.present_bytes);
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
    let (zero, present_bytes) = walked?;
    report.zero_bytes = zero;
    report.present_bytes = present_bytes;
    report.sent_bytes = st.sent.load(Ordering::Relaxed);
    report.put_pages = st.calls.load(Ordering::Relaxed);
    let mut m = [0u8; 16];
    m.copy_from_slice(&md5);
    let mut h = [0u8; 32];
    h.copy_from_slice(&sha);
    Ok((m, h))
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
            let mut buf = vec![0u8; k as usize];
            src.read_at(&mut buf, off)?;
            feed.data(off, buf)?;
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

    #[test]
    fn subtract_present_ranges() {
        let p = [(100, 200), (300, 400)];
        assert_eq!(subtract(0, 500, &p), vec![(0, 100), (200, 300), (400, 500)]);
        assert_eq!(subtract(150, 350, &p), vec![(200, 300)]);
        assert_eq!(subtract(120, 180, &p), vec![]);
        assert_eq!(subtract(0, 50, &p), vec![(0, 50)]);
    }
}
