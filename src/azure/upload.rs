//! Streams any [`DiskImage`] to a page blob as an Azure fixed VHD: the virtual size rounded up
//! to a whole MiB, then the 512-byte footer. No intermediate file.
//!
//! - Only data is sent: the source's extents, then all-zero 512-byte pages dropped, except zero
//!   runs under 64 KiB between data (sent with it: one call instead of two, see
//!   [`super::stream::MIN_ZERO_SKIP`]); each Put Page is 512-aligned and at most 4 MiB, with a
//!   transactional CRC-64 the service checks.
//! - `parallel` connections send pages; one reader walks the stream in order and feeds two
//!   hasher threads (MD5, SHA-256) in stream order, zero runs included, so the digests are those
//!   of the whole fixed-VHD file. Memory is bounded in bytes (see [`super::stream`]).
//! - Resume: the blob carries the source's size and identity as metadata from its creation; a
//!   rerun lists the pages already there (Get Page Ranges) and sends only the others. A resumed
//!   upload trusts those pages, so it downloads the final blob and checks its MD5 before setting
//!   `Content-MD5` (a corrupted page is an error, never a silent bad image).

use super::pageblob::{BlobClient, MAX_PUT_PAGE, META_SOURCE_ID, META_SOURCE_SIZE};
use super::stream::{Counts, hash_zeros, stream};
use crate::context::BuildContext;
use crate::disk::DiskImage;
use crate::disk::stream::Padded;
use crate::err;
use crate::error::Result;
use crate::image::convert::azure_size;
use crate::vhd::footer::{DiskType, FOOTER_SIZE};
use base64::Engine;
use md5::Digest;
use serde::Serialize;

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
    /// True for a dry run: nothing was sent, the counts say what would be.
    pub dry_run: bool,
    /// Bytes sent in this run (pages + footer).
    pub sent_bytes: u64,
    /// Bytes already in the blob from an earlier run, not sent again.
    pub present_bytes: u64,
    /// Zero bytes not sent (holes, zero chunks, zero runs of 64 KiB or more).
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

/// The blob's size for `src` (virtual size rounded up to a whole MiB, then the footer), with a
/// note when the size was rounded.
fn sizes(src: &dyn DiskImage, progress: &dyn UploadProgress) -> Result<(u64, u64)> {
    if src.is_empty() {
        return Err(err!(
            InvalidArgument,
            "cannot upload an empty (0-byte) disk"
        ));
    }
    let vsize = azure_size(src.len());
    if vsize != src.len() {
        progress.note(&format!(
            "virtual size rounded up from {} to {vsize} bytes ({} MiB) for Azure",
            src.len(),
            vsize >> 20
        ));
    }
    Ok((vsize, vsize + FOOTER_SIZE as u64))
}

/// Walks the fixed-VHD stream of `src`: sends it through `client` (`None`: counts only) and
/// fills the report's counts and digests.
fn run_stream(
    src: &dyn DiskImage,
    present: &[(u64, u64)],
    client: Option<&BlobClient>,
    parallel: usize,
    ctx: &BuildContext,
    progress: &dyn UploadProgress,
    report: &mut UploadReport,
) -> Result<[u8; 16]> {
    let vsize = report.virtual_size;
    let footer = crate::vhd::writer::new_footer(vsize, DiskType::Fixed, u64::MAX, ctx).encode();
    let padded = Padded::new(src, vsize);
    progress.start(report.blob_size);
    let (c, md5, sha) = stream(&padded, &footer, present, client, parallel, progress)?;
    let Counts {
        sent,
        calls,
        zero,
        present,
    } = c;
    (report.sent_bytes, report.put_pages) = (sent, calls);
    (report.zero_bytes, report.present_bytes) = (zero, present);
    report.md5 = crate::checksum::hex(&md5);
    report.md5_base64 = base64::engine::general_purpose::STANDARD.encode(md5);
    report.sha256 = crate::checksum::hex(&sha);
    Ok(md5)
}

/// What an upload of `src` would send to a new blob, without any request: sizes, bytes of data
/// and of zeros, Put Page calls, and the stream's digests (the source is read and hashed).
/// `blob_url` is the blob's URL without credentials.
pub fn plan(
    src: &dyn DiskImage,
    blob_url: &str,
    ctx: &BuildContext,
    progress: &dyn UploadProgress,
) -> Result<UploadReport> {
    let (vsize, blob_len) = sizes(src, progress)?;
    let mut report = UploadReport {
        blob_url: blob_url.to_string(),
        source_size: src.len(),
        virtual_size: vsize,
        blob_size: blob_len,
        dry_run: true,
        ..UploadReport::default()
    };
    run_stream(src, &[], None, 1, ctx, progress, &mut report)?;
    progress.finish();
    Ok(report)
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
    let (vsize, blob_len) = sizes(src, progress)?;
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
    let md5 = run_stream(
        src,
        &present,
        Some(client),
        opts.parallel,
        ctx,
        progress,
        &mut report,
    )?;
    let verify = match opts.verify {
        Verify::Always => true,
        Verify::Never => false,
        Verify::Resumed => report.present_bytes > 0,
    };
    if verify {
        progress.phase("verifying");
        let stored = blob_md5(client, blob_len)?;
        if stored != md5 {
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
