//! Copy-and-patch remastering: the output is the input copied in the kernel, then new file
//! contents are appended after the old data, directory records are patched in place (both
//! trees), directories that gain an entry are rewritten (in place when they have room, at the
//! end otherwise, with their parent record, `.`, children's `..` and path-table entries
//! re-pointed), the volume space size and the system area (MBR, GPT, APM) follow the new end.
//! Every untouched byte keeps its position, so the El Torito catalog, the boot images and
//! their boot-info-tables stay valid.

use super::boot::{self, repoint_system_area};
use super::read::{
    BLOCK, DirRecord, Directory, Entry, IsoFile, Lookup, Tree, TreeKind, Volume, le32,
    parse_dir_records, parse_volume, put_both32, ucs2_encode,
};
use crate::disk::raw::copy_file_bytes_progress;
use crate::disk::{Progress, commit_syncing};
use crate::err;
use crate::error::{Error, IoContext, Result};
use crate::output::{AtomicOutput, OutputOptions};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Where a new file content comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Bytes in memory (edited configs, preseed).
    Bytes(Vec<u8>),
    /// A file on the host, copied in the kernel.
    File(PathBuf),
}

/// Put `source` at `path` in the image (replacing or adding).
#[derive(Debug, Clone)]
pub struct FileOp {
    /// Absolute path in the ISO (Rock Ridge / Joliet names).
    pub path: String,
    /// The content.
    pub source: Source,
}

/// What to change.
#[derive(Debug, Clone, Default)]
pub struct PatchPlan {
    /// Files to replace or add.
    pub ops: Vec<FileOp>,
    /// New volume id (PVD and Joliet SVD).
    pub volume_id: Option<String>,
    /// Timestamp of changed and added files (seconds since the epoch).
    pub mtime: u64,
    /// How the output is created: replace an existing one, its mode (0o600 when it carries a
    /// seed that may hold passwords), synced or not.
    pub output: OutputOptions,
}

/// What was done.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PatchReport {
    /// Paths replaced.
    pub replaced: Vec<String>,
    /// Paths added.
    pub added: Vec<String>,
    /// Directories created.
    pub added_dirs: Vec<String>,
    /// Directories rewritten at the end of the image (tree kind, path).
    pub moved_dirs: Vec<String>,
    /// Trees edited.
    pub trees: Vec<TreeKind>,
    /// Input size.
    pub old_len: u64,
    /// Output size.
    pub new_len: u64,
    /// Bytes written by user space (everything else was copied in the kernel).
    pub bytes_written: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct RecPatch {
    extent: Option<u32>,
    size: Option<u32>,
    mtime: Option<u64>,
}

struct DirEdit {
    tree: usize,
    path: String,
    depth: usize,
    dir: Directory,
    /// Absolute offset of this directory's record in its parent (None for the root).
    rec_in_parent: Option<u64>,
    records: Vec<(Option<u64>, Vec<u8>)>,
    new_extent: u32,
    new_size: u32,
}

/// Applies a patch to a record's bytes (extent, size, date, Rock Ridge TF modify/access).
fn apply_patch(raw: &mut [u8], p: &RecPatch, rr_skip: Option<usize>) {
    if let Some(e) = p.extent {
        put_both32(raw, 2, e);
    }
    if let Some(s) = p.size {
        put_both32(raw, 10, s);
    }
    if let Some(t) = p.mtime {
        let d = crate::date::iso_dir_date_u(t);
        raw[18..25].copy_from_slice(&d);
        if let Some(skip) = rr_skip {
            let n = raw[32] as usize;
            let mut pos = 33 + n + (1 - n % 2) + skip;
            while pos + 4 <= raw.len() {
                let len = raw[pos + 2] as usize;
                if len < 4 || pos + len > raw.len() {
                    break;
                }
                if &raw[pos..pos + 2] == b"TF" && len >= 5 && raw[pos + 4] & 0x80 == 0 {
                    let flags = raw[pos + 4];
                    let mut o = pos + 5;
                    for bit in 0..7 {
                        if flags & (1 << bit) != 0 {
                            if o + 7 > pos + len {
                                break;
                            }
                            if bit == 1 || bit == 2 || bit == 3 {
                                raw[o..o + 7].copy_from_slice(&d);
                            }
                            o += 7;
                        }
                    }
                }
                pos += len;
            }
        }
    }
}

/// Sort key of ECMA-119 9.3: name and extension space-padded, version descending.
fn iso_sort_key(ident: &[u8]) -> (Vec<u8>, Vec<u8>, std::cmp::Reverse<u32>) {
    let (body, ver) = match ident.iter().position(|&c| c == b';') {
        Some(i) => (&ident[..i], &ident[i + 1..]),
        None => (ident, &b""[..]),
    };
    let (name, ext) = match body.iter().position(|&c| c == b'.') {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, &b""[..]),
    };
    let mut n = name.to_vec();
    n.resize(64, b' ');
    let mut e = ext.to_vec();
    e.resize(64, b' ');
    let v = String::from_utf8_lossy(ver).parse::<u32>().unwrap_or(0);
    (n, e, std::cmp::Reverse(v))
}

fn ident_less(kind: TreeKind, a: &[u8], b: &[u8]) -> bool {
    match kind {
        TreeKind::Primary => iso_sort_key(a) < iso_sort_key(b),
        _ => a < b,
    }
}

/// An ISO 9660 identifier for `name` unique among `taken` (upper-case, version suffix).
fn iso_ident(name: &str, long: bool, version: bool, taken: &[Vec<u8>]) -> Result<Vec<u8>> {
    let clean = super::d_chars;
    let (base, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i + 1..]),
        _ => (name, ""),
    };
    let (bmax, emax) = if long {
        (30usize.saturating_sub(ext.len().min(3) + 1), 3)
    } else {
        (8, 3)
    };
    let b = clean(base, bmax);
    let e = clean(ext, emax);
    let strip = |t: &[u8]| -> Vec<u8> {
        let s = match t.iter().position(|&c| c == b';') {
            Some(i) => &t[..i],
            None => t,
        };
        s.to_ascii_uppercase()
    };
    let taken: Vec<Vec<u8>> = taken.iter().map(|t| strip(t)).collect();
    for n in 0..10000u32 {
        let bb = if n == 0 {
            b.clone()
        } else {
            let suffix = format!("{n}");
            let keep = bmax.saturating_sub(suffix.len()).min(b.len());
            format!("{}{suffix}", &b[..keep])
        };
        let mut id = if e.is_empty() {
            format!("{bb}.")
        } else {
            format!("{bb}.{e}")
        };
        if !taken.contains(&id.as_bytes().to_vec())
            && !taken.contains(&id.trim_end_matches('.').as_bytes().to_vec())
        {
            if version {
                id.push_str(";1");
            }
            return Ok(id.into_bytes());
        }
    }
    Err(err!(LimitExceeded, "no free ISO 9660 name for {name:?}"))
}

fn build_record(ident: &[u8], extent: u32, size: u32, mtime: u64, su: &[u8]) -> Result<Vec<u8>> {
    let date = crate::date::iso_dir_date_u(mtime);
    super::layout::encode_dir_record(ident, extent, size, date, 0, su)
}

#[allow(clippy::too_many_arguments)]
fn rr_fields(
    name: Option<&str>,
    mtime: u64,
    long_px: bool,
    ino: u32,
    uid_gid: (u32, u32),
    mode: u32,
    nlink: u32,
) -> Vec<u8> {
    let mut su = Vec::new();
    let pxlen: u8 = if long_px { 44 } else { 36 };
    su.extend_from_slice(&[b'P', b'X', pxlen, 1]);
    let mut px = [0u8; 40];
    put_both32(&mut px, 0, mode);
    put_both32(&mut px, 8, nlink);
    put_both32(&mut px, 16, uid_gid.0);
    put_both32(&mut px, 24, uid_gid.1);
    put_both32(&mut px, 32, ino);
    su.extend_from_slice(&px[..pxlen as usize - 4]);
    let d = crate::date::iso_dir_date_u(mtime);
    su.extend_from_slice(&[b'T', b'F', 26, 1, 0x0E]);
    for _ in 0..3 {
        su.extend_from_slice(&d);
    }
    if let Some(name) = name {
        su.extend_from_slice(&[b'N', b'M', (5 + name.len().min(250)) as u8, 1, 0]);
        su.extend_from_slice(&name.as_bytes()[..name.len().min(250)]);
    }
    su
}

/// Keys of records that are not on disc yet (new directories): far above any file offset.
const SYNTH_TOP: u64 = u64::MAX - 1;
const SYNTH_FLOOR: u64 = u64::MAX / 2;

/// Naming and Rock Ridge habits of a tree, read from its root.
struct TreeStyle {
    long: bool,
    version: bool,
    joliet_version: bool,
    long_px: bool,
    uid_gid: (u32, u32),
}

impl TreeStyle {
    fn of(iso: &IsoFile, t: &Tree, max_ino: u32) -> Result<Self> {
        let root = t.root(iso)?;
        let files: Vec<&DirRecord> = root
            .entries
            .iter()
            .map(|e| e.rec())
            .filter(|r| !r.is_dir())
            .collect();
        Ok(TreeStyle {
            long: root.entries.iter().any(|e| {
                let id = &e.rec().ident;
                let body = id.split(|&c| c == b';').next().unwrap_or(id);
                let mut parts = body.splitn(2, |&c| c == b'.');
                parts.next().map(|x| x.len()).unwrap_or(0) > 8
                    || parts.next().map(|x| x.len()).unwrap_or(0) > 3
            }),
            version: files.is_empty() || files.iter().any(|r| r.ident.contains(&b';')),
            joliet_version: files.iter().any(|r| r.ident.ends_with(&[0, b';', 0, b'1'])),
            long_px: max_ino > 0 || root.entries.iter().any(|e| e.rr.ino.is_some()),
            uid_gid: root
                .entries
                .iter()
                .find_map(|e| e.rr.uid_gid)
                .unwrap_or((0, 0)),
        })
    }
}

/// A directory receiving entries: an existing one (edit) or a new one.
#[derive(Debug, Clone, Copy)]
enum DirRef {
    Edit((usize, u32)),
    New(usize),
}

struct NewDir {
    tree: usize,
    path: String,
    parent: DirRef,
    self_key: u64,
    dot_key: u64,
    dotdot_key: u64,
    records: Vec<(Option<u64>, Vec<u8>)>,
    ident: Vec<u8>,
    lba: u32,
    size: u32,
}

/// Starts (or finds) the edit of an existing directory.
fn ensure_edit(
    edits: &mut BTreeMap<(usize, u32), DirEdit>,
    iso: &IsoFile,
    t: &Tree,
    ti: usize,
    dir: &Directory,
    path: &str,
) -> Result<(usize, u32)> {
    let key = (ti, dir.extent);
    if edits.contains_key(&key) {
        return Ok(key);
    }
    let rec_in_parent = match t.lookup(iso, path)? {
        Lookup::Found { parent, index } => Some(parent.entries[index].rec().offset),
        _ => None,
    };
    let mut records = vec![
        (Some(dir.dot.offset), dir.dot.raw.clone()),
        (Some(dir.dotdot.offset), dir.dotdot.raw.clone()),
    ];
    for e in &dir.entries {
        for r in &e.records {
            records.push((Some(r.offset), r.raw.clone()));
        }
    }
    edits.insert(
        key,
        DirEdit {
            tree: ti,
            path: path.to_string(),
            depth: path.split('/').filter(|c| !c.is_empty()).count(),
            new_extent: dir.extent,
            new_size: dir.size,
            dir: dir.clone(),
            rec_in_parent,
            records,
        },
    );
    Ok(key)
}

fn idents(records: &[(Option<u64>, Vec<u8>)]) -> Vec<Vec<u8>> {
    records
        .iter()
        .skip(2)
        .map(|(_, r)| r[33..33 + r[32] as usize].to_vec())
        .collect()
}

/// Inserts `rec` before the first entry that sorts after it (multi-extent groups kept whole).
fn insert_sorted(
    kind: TreeKind,
    records: &mut Vec<(Option<u64>, Vec<u8>)>,
    key: Option<u64>,
    rec: Vec<u8>,
) {
    let ident = rec[33..33 + rec[32] as usize].to_vec();
    let mut at = records.len();
    for i in 2..records.len() {
        let r = &records[i].1;
        let id = &r[33..33 + r[32] as usize];
        let prev_more = i > 2 && records[i - 1].1[25] & 0x80 != 0;
        if !prev_more && ident_less(kind, &ident, id) {
            at = i;
            break;
        }
    }
    records.insert(at, (key, rec));
}

/// An ISO 9660 directory identifier for `name`, unique among `taken`.
fn iso_dir_ident(name: &str, long: bool, taken: &[Vec<u8>]) -> Result<Vec<u8>> {
    let max = if long { 31 } else { 8 };
    let b = super::d_chars(name, max);
    let taken: Vec<Vec<u8>> = taken
        .iter()
        .map(|t| {
            t.split(|&c| c == b';')
                .next()
                .unwrap_or(t)
                .to_ascii_uppercase()
        })
        .collect();
    for n in 0..10000u32 {
        let id = if n == 0 {
            b.clone()
        } else {
            let s = format!("{n}");
            let keep = max.saturating_sub(s.len()).min(b.len());
            format!("{}{s}", &b[..keep])
        };
        if !taken.contains(&id.as_bytes().to_vec())
            && !taken.contains(&format!("{id}.").into_bytes())
        {
            return Ok(id.into_bytes());
        }
    }
    Err(err!(
        LimitExceeded,
        "no free ISO 9660 directory name for {name:?}"
    ))
}

/// Path table entries: (identifier, extent, parent number).
fn parse_pt(t: &[u8]) -> Result<Vec<(Vec<u8>, u32, u16)>> {
    let mut out = Vec::new();
    let mut p = 0usize;
    while p + 8 <= t.len() {
        let n = t[p] as usize;
        if n == 0 {
            break;
        }
        if p + 8 + n > t.len() {
            return Err(err!(BadField, "path table entry overruns the table")
                .with_structure("path table")
                .at(p as u64));
        }
        out.push((
            t[p + 8..p + 8 + n].to_vec(),
            le32(t, p + 2),
            u16::from_le_bytes([t[p + 6], t[p + 7]]),
        ));
        p += 8 + n + (n % 2);
    }
    Ok(out)
}

fn pt_bytes(ents: &[(Vec<u8>, u32, u16)], big: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, ext, parent) in ents {
        out.push(id.len() as u8);
        out.push(0);
        if big {
            out.extend_from_slice(&ext.to_be_bytes());
            out.extend_from_slice(&parent.to_be_bytes());
        } else {
            out.extend_from_slice(&ext.to_le_bytes());
            out.extend_from_slice(&parent.to_le_bytes());
        }
        out.extend_from_slice(id);
        if id.len() % 2 == 1 {
            out.push(0);
        }
    }
    out
}

fn pack_len(records: &[(Option<u64>, Vec<u8>)]) -> u64 {
    let mut pos = 0u64;
    for (_, r) in records {
        let l = r.len() as u64;
        if pos % BLOCK + l > BLOCK {
            pos = pos.div_ceil(BLOCK) * BLOCK;
        }
        pos += l;
    }
    pos.div_ceil(BLOCK).max(1) * BLOCK
}

fn pack(records: &[(Option<u64>, Vec<u8>)], size: usize) -> Vec<u8> {
    let mut out = vec![0u8; size];
    let mut pos = 0usize;
    for (_, r) in records {
        if pos % BLOCK as usize + r.len() > BLOCK as usize {
            pos = pos.div_ceil(BLOCK as usize) * BLOCK as usize;
        }
        out[pos..pos + r.len()].copy_from_slice(r);
        pos += r.len();
    }
    out
}

#[derive(Debug, Clone, Copy)]
struct Planned {
    lba: u32,
    len: u64,
}

/// What the patch reads (never changed): the input, its volume, trees and system area.
struct Input<'a> {
    iso: IsoFile,
    path: &'a Path,
    plan: &'a PatchPlan,
    vol: Volume,
    trees: Vec<Tree>,
    sys: boot::SystemArea,
    old_len: u64,
}

impl<'a> Input<'a> {
    fn open(path: &'a Path, plan: &'a PatchPlan) -> Result<Self> {
        let iso = IsoFile::open(path)?;
        let old_len = iso.len();
        if old_len % BLOCK != 0 {
            return Err(err!(
                Unsupported,
                "image size {old_len} is not a multiple of 2048"
            )
            .with_path(path));
        }
        let vol: Volume = parse_volume(&iso)?;
        let trees: Vec<Tree> = vol
            .trees()
            .map(|vd| Tree::new(&iso, vd))
            .collect::<Result<_>>()?;
        let sys = boot::parse_system_area(&iso)?;
        Ok(Input {
            iso,
            path,
            plan,
            vol,
            trees,
            sys,
            old_len,
        })
    }
}

/// What the patch builds, phase by phase.
#[derive(Default)]
struct Work {
    /// First block past the old data (new contents go from here).
    data_start: u64,
    /// Next free block.
    cursor: u64,
    max_ino: u32,
    next_ino: u32,
    /// Keys of records that exist only in memory (new directories), counting down.
    synth: u64,
    boot_lbas: Vec<u32>,
    planned: Vec<Planned>,
    patches: HashMap<u64, RecPatch>,
    edits: BTreeMap<(usize, u32), DirEdit>,
    newdirs: Vec<NewDir>,
    /// (tree, old extent, new extent) of directories moved to the end.
    moved: Vec<(usize, u32, u32)>,
    root_moves: HashMap<usize, (u32, u32)>,
    pt_writes: Vec<(u32, Vec<u8>)>,
    pt_vd: HashMap<usize, (u32, [u32; 4])>,
    report: PatchReport,
}

/// The output's size facts (phase 5).
struct Sizes {
    new_len: u64,
    new_data_end: u64,
    vol_blocks: u32,
}

/// The output file being written, counting the bytes written from user space.
struct Out<'f> {
    file: &'f File,
    tmp: PathBuf,
    written: u64,
}

impl Out<'_> {
    fn err(&self, e: std::io::Error, what: &str) -> Error {
        Error::io(e, what.to_string()).with_path(&self.tmp)
    }

    fn put(&mut self, bytes: &[u8], at: u64, what: &str) -> Result<()> {
        self.file
            .write_all_at(bytes, at)
            .map_err(|e| self.err(e, what))?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// The records of an edited or a new directory.
fn records_of<'a>(
    edits: &'a mut BTreeMap<(usize, u32), DirEdit>,
    newdirs: &'a mut [NewDir],
    r: DirRef,
) -> &'a mut Vec<(Option<u64>, Vec<u8>)> {
    match r {
        DirRef::Edit(k) => &mut edits.get_mut(&k).expect("edit exists").records,
        DirRef::New(j) => &mut newdirs[j].records,
    }
}

fn next_lba(cursor: u64) -> Result<u32> {
    u32::try_from(cursor).map_err(|_| err!(LimitExceeded, "image beyond 8 TiB"))
}

/// Applies `plan` to `input`, writing `output` atomically. The input is only read.
pub fn patch_iso(input: &Path, output: &Path, plan: &PatchPlan) -> Result<PatchReport> {
    patch_iso_with_progress(input, output, plan, &crate::disk::NoProgress)
}

/// [`patch_iso`], reporting to `progress` a "remastering" phase (bytes of the input copied and
/// of the new files, in steps of at most 64 MiB) and a "syncing" phase.
pub fn patch_iso_with_progress(
    input: &Path,
    output: &Path,
    plan: &PatchPlan,
    progress: &dyn Progress,
) -> Result<PatchReport> {
    let inp = Input::open(input, plan)?;
    let mut w = Work {
        synth: SYNTH_TOP,
        ..Work::default()
    };
    w.report.old_len = inp.old_len;
    // 1. Where the old data ends.
    w.find_data_end(&inp)?;
    // 2. Place new contents.
    w.place_new_contents(&inp)?;
    // 3. Resolve every op in every tree.
    w.resolve_ops(&inp)?;
    // 4. Lay out the edited directories, the new ones, the path tables.
    w.layout_edited_dirs(&inp)?;
    w.layout_new_dirs()?;
    for ti in 0..inp.trees.len() {
        w.rebuild_path_table(&inp, ti)?;
    }
    // 5. Sizes.
    let sizes = w.sizes(&inp)?;
    // 6. Write.
    w.write(&inp, output, &sizes, progress)
}

impl Work {
    /// Phase 1: where the old data ends: every extent any tree references, path tables, the
    /// descriptor set, the boot catalog and images, continuation areas, and partitions that
    /// do not start in the system area (appended partitions).
    fn find_data_end(&mut self, inp: &Input) -> Result<()> {
        let iso = &inp.iso;
        let mut data_end = (inp.vol.terminator + 1) * BLOCK;
        let mut max_ino = 0u32;
        let mut bump = |end: u64| data_end = data_end.max(end);
        for t in &inp.trees {
            let vd = &t.vd;
            bump(vd.root.extent as u64 * BLOCK + vd.root.size as u64);
            for lba in vd
                .l_tables
                .iter()
                .chain(vd.m_tables.iter())
                .filter(|&&l| l != 0)
            {
                bump(*lba as u64 * BLOCK + vd.path_table_size as u64);
            }
            let mut ends = Vec::new();
            t.walk(iso, &mut |_p, e, _d| {
                for r in &e.records {
                    ends.push(r.extent as u64 * BLOCK + r.size as u64);
                }
                ends.push(e.rr.ce_end);
                if let Some(i) = e.rr.ino {
                    max_ino = max_ino.max(i);
                }
                Ok(())
            })?;
            for e in ends {
                bump(e);
            }
        }
        let mut boot_lbas = Vec::new();
        if let Some(c) = inp.vol.boot_catalog {
            bump((c as u64 + 1) * BLOCK);
            boot_lbas.push(c);
            if let Ok(cat) = boot::parse_catalog(iso, c) {
                for e in cat.entries {
                    bump(e.lba as u64 * BLOCK + e.load_sectors as u64 * 512);
                    boot_lbas.push(e.lba);
                }
            }
        }
        for p in &inp.sys.mbr {
            if p.start >= 64 {
                bump((p.start as u64 + p.sectors as u64) * 512);
            }
        }
        if let Some(g) = &inp.sys.gpt {
            for p in &g.partitions {
                if p.first >= 64 {
                    bump(p.last.saturating_add(1).saturating_mul(512));
                }
            }
        }
        if data_end > inp.old_len {
            return Err(err!(
                Truncated,
                "the ISO references data up to byte {data_end} but the file has {} bytes",
                inp.old_len
            )
            .with_path(inp.path));
        }
        self.data_start = data_end.div_ceil(BLOCK) * BLOCK;
        self.cursor = self.data_start / BLOCK;
        self.max_ino = max_ino;
        self.boot_lbas = boot_lbas;
        Ok(())
    }

    /// Phase 2: new contents go one after the other from the end of the old data.
    fn place_new_contents(&mut self, inp: &Input) -> Result<()> {
        for op in &inp.plan.ops {
            let len = match &op.source {
                Source::Bytes(b) => b.len() as u64,
                Source::File(p) => std::fs::metadata(p)
                    .ctx(p, "reading the size of a file to add")?
                    .len(),
            };
            if len > u32::MAX as u64 {
                return Err(err!(
                    Unsupported,
                    "{}: files of 4 GiB or more are not supported",
                    op.path
                ));
            }
            let lba = next_lba(self.cursor)?;
            self.planned.push(Planned { lba, len });
            self.cursor += len.div_ceil(BLOCK).max(1);
        }
        Ok(())
    }

    /// Phase 3: every op in every tree: a record patched, or a record added to a directory
    /// (created on the way when missing).
    fn resolve_ops(&mut self, inp: &Input) -> Result<()> {
        let ops = &inp.plan.ops;
        for (i, op) in ops.iter().enumerate() {
            if ops[..i].iter().any(|o| o.path == op.path) {
                return Err(err!(InvalidArgument, "{} is given twice", op.path));
            }
        }
        self.next_ino = self.max_ino + 1;
        for (ti, t) in inp.trees.iter().enumerate() {
            self.report.trees.push(t.vd.kind);
            let style = TreeStyle::of(&inp.iso, t, self.max_ino)?;
            let mut memo: HashMap<String, DirRef> = HashMap::new();
            for oi in 0..ops.len() {
                self.resolve_op(inp, ti, &style, &mut memo, oi)?;
            }
        }
        Ok(())
    }

    fn resolve_op(
        &mut self,
        inp: &Input,
        ti: usize,
        style: &TreeStyle,
        memo: &mut HashMap<String, DirRef>,
        oi: usize,
    ) -> Result<()> {
        let (iso, t, op) = (&inp.iso, &inp.trees[ti], &inp.plan.ops[oi]);
        let pl = self.planned[oi];
        let comps: Vec<&str> = op.path.split('/').filter(|c| !c.is_empty()).collect();
        let name = *comps
            .last()
            .ok_or_else(|| err!(InvalidArgument, "empty ISO path"))?;
        let parent_path = format!("/{}", comps[..comps.len() - 1].join("/"));
        let dref: DirRef = match t.lookup(iso, &op.path) {
            Ok(Lookup::Found { parent, index }) => {
                return self.replace_file(inp, ti, oi, &parent.entries[index]);
            }
            Ok(Lookup::Missing { parent }) => {
                let key = ensure_edit(&mut self.edits, iso, t, ti, &parent, &parent_path)?;
                DirRef::Edit(key)
            }
            Ok(Lookup::Root(_)) => {
                return Err(err!(InvalidArgument, "cannot replace the root directory"));
            }
            Err(e) if e.kind() == crate::ErrorKind::NotFound => {
                self.create_dirs(inp, ti, style, memo, oi, &comps[..comps.len() - 1])?
            }
            Err(e) => return Err(e),
        };
        self.add_file_record(inp, ti, style, pl, oi, name, dref)
    }

    /// An op naming an existing file: its record is patched in place.
    fn replace_file(&mut self, inp: &Input, ti: usize, oi: usize, e: &Entry) -> Result<()> {
        let op = &inp.plan.ops[oi];
        let pl = self.planned[oi];
        let input = inp.path;
        if e.is_dir() || e.is_symlink() {
            return Err(err!(
                InvalidArgument,
                "{} is a directory or a symlink in the ISO; only regular files can be replaced",
                op.path
            )
            .with_path(input));
        }
        if self.boot_lbas.contains(&e.rec().extent) && e.rec().size > 0 {
            return Err(err!(InvalidArgument, "{} is the El Torito boot catalog or a boot image; replacing it is not supported (its catalog entry would go stale)", op.path).with_path(input));
        }
        if e.records.len() > 1 {
            return Err(err!(
                Unsupported,
                "{} is a multi-extent file; replacing it is not supported",
                op.path
            )
            .with_path(input));
        }
        self.patches.insert(
            e.rec().offset,
            RecPatch {
                extent: Some(pl.lba),
                size: Some(pl.len as u32),
                mtime: Some(inp.plan.mtime),
            },
        );
        if ti == 0 {
            self.report.replaced.push(op.path.clone());
        }
        Ok(())
    }

    /// Missing directories on the way to a new file: found, or created (new directories are
    /// remembered in `memo` for the next ops of the same tree).
    fn create_dirs(
        &mut self,
        inp: &Input,
        ti: usize,
        style: &TreeStyle,
        memo: &mut HashMap<String, DirRef>,
        oi: usize,
        dir_comps: &[&str],
    ) -> Result<DirRef> {
        let (iso, t, op) = (&inp.iso, &inp.trees[ti], &inp.plan.ops[oi]);
        let mut cur = t.root(iso)?;
        let mut cur_path = String::from("/");
        let mut dref: Option<DirRef> = None;
        for (i, c) in dir_comps.iter().enumerate() {
            let p = format!("/{}", dir_comps[..=i].join("/"));
            if let Some(r) = memo.get(&p) {
                dref = Some(*r);
                continue;
            }
            if dref.is_none()
                && let Some(e) = cur.entries.iter().find(|e| t.name_matches(&e.name, c))
            {
                if !e.is_dir() || e.is_symlink() {
                    return Err(err!(
                        InvalidArgument,
                        "{}: {p} is not a directory in the ISO",
                        op.path
                    )
                    .with_path(inp.path));
                }
                cur = t.read_dir(iso, e.dir_extent(), e.rec().size)?;
                cur_path = p;
                continue;
            }
            let parent_ref = match dref {
                Some(r) => r,
                None => DirRef::Edit(ensure_edit(&mut self.edits, iso, t, ti, &cur, &cur_path)?),
            };
            let r = self.new_dir(inp, ti, style, parent_ref, c, &p)?;
            memo.insert(p.clone(), r);
            dref = Some(r);
            if ti == 0 {
                self.report.added_dirs.push(p);
            }
        }
        dref.ok_or_else(|| {
            err!(
                NotFound,
                "{}: not found in the {:?} tree",
                op.path,
                t.vd.kind
            )
            .with_path(inp.path)
        })
    }

    /// A new directory `c` (at ISO path `p`) in `parent_ref`: its record in the parent, its
    /// `.` and `..` (extents filled in by phase 4).
    fn new_dir(
        &mut self,
        inp: &Input,
        ti: usize,
        style: &TreeStyle,
        parent_ref: DirRef,
        c: &str,
        p: &str,
    ) -> Result<DirRef> {
        let (t, plan, input) = (&inp.trees[ti], inp.plan, inp.path);
        let recs = records_of(&mut self.edits, &mut self.newdirs, parent_ref);
        let taken = idents(recs);
        let ident = match t.vd.kind {
            TreeKind::Primary => iso_dir_ident(c, style.long, &taken)?,
            TreeKind::Joliet => {
                let id = ucs2_encode(c);
                if taken.contains(&id) || c.chars().count() > 103 {
                    return Err(err!(InvalidArgument, "{p}: no valid Joliet name"));
                }
                id
            }
            TreeKind::Enhanced => c.as_bytes().to_vec(),
        };
        let ino = self.next_ino;
        self.next_ino += 1;
        let su = |n: Option<&str>| {
            if t.rock_ridge {
                rr_fields(
                    n,
                    plan.mtime,
                    style.long_px,
                    ino,
                    style.uid_gid,
                    0o040755,
                    2,
                )
            } else {
                Vec::new()
            }
        };
        let mut rec =
            build_record(&ident, 0, 0, plan.mtime, &su(Some(c))).map_err(|e| e.with_path(input))?;
        rec[25] = 2;
        let self_key = self.synth;
        let dot_key = self.synth - 1;
        let dotdot_key = self.synth - 2;
        self.synth -= 3;
        insert_sorted(t.vd.kind, recs, Some(self_key), rec);
        let mut dot =
            build_record(&[0], 0, 0, plan.mtime, &su(None)).map_err(|e| e.with_path(input))?;
        dot[25] = 2;
        let mut dotdot =
            build_record(&[1], 0, 0, plan.mtime, &su(None)).map_err(|e| e.with_path(input))?;
        dotdot[25] = 2;
        self.newdirs.push(NewDir {
            tree: ti,
            path: p.to_string(),
            parent: parent_ref,
            self_key,
            dot_key,
            dotdot_key,
            records: vec![(Some(dot_key), dot), (Some(dotdot_key), dotdot)],
            ident,
            lba: 0,
            size: 0,
        });
        Ok(DirRef::New(self.newdirs.len() - 1))
    }

    /// The record of a new file, added to directory `dref` with a name in the tree's style.
    #[allow(clippy::too_many_arguments)]
    fn add_file_record(
        &mut self,
        inp: &Input,
        ti: usize,
        style: &TreeStyle,
        pl: Planned,
        oi: usize,
        name: &str,
        dref: DirRef,
    ) -> Result<()> {
        let (t, plan, op) = (&inp.trees[ti], inp.plan, &inp.plan.ops[oi]);
        let recs = records_of(&mut self.edits, &mut self.newdirs, dref);
        let taken = idents(recs);
        let files: Vec<&Vec<u8>> = recs
            .iter()
            .skip(2)
            .filter(|(_, r)| r[25] & 2 == 0)
            .map(|(_, r)| r)
            .collect();
        let ident = match t.vd.kind {
            TreeKind::Primary => primary_file_ident(name, style, &taken, &files)?,
            TreeKind::Joliet => joliet_file_ident(name, style, &taken, &files, &op.path)?,
            TreeKind::Enhanced => name.as_bytes().to_vec(),
        };
        let su = if t.rock_ridge {
            let ino = self.next_ino;
            self.next_ino += 1;
            rr_fields(
                Some(name),
                plan.mtime,
                style.long_px,
                ino,
                style.uid_gid,
                0o100644,
                1,
            )
        } else {
            Vec::new()
        };
        let rec = build_record(&ident, pl.lba, pl.len as u32, plan.mtime, &su)
            .map_err(|e| e.with_path(inp.path))?;
        insert_sorted(t.vd.kind, recs, None, rec);
        if ti == 0 {
            self.report.added.push(op.path.clone());
        }
        Ok(())
    }

    /// Phase 4a: edited directories, deepest first; the ones that no longer fit move to the
    /// end, with their parent record, `.`, and children's `..` re-pointed.
    fn layout_edited_dirs(&mut self, inp: &Input) -> Result<()> {
        let iso = &inp.iso;
        let mut order: Vec<(usize, u32)> = self.edits.keys().copied().collect();
        order.sort_by_key(|k| std::cmp::Reverse(self.edits[k].depth));
        for k in &order {
            let ed = self.edits.get_mut(k).expect("key from the map");
            let need = pack_len(&ed.records);
            let have = (ed.dir.size as u64).div_ceil(BLOCK) * BLOCK;
            if need <= have {
                continue;
            }
            let lba = next_lba(self.cursor)?;
            self.cursor += need / BLOCK;
            ed.new_extent = lba;
            ed.new_size = need as u32;
            let p = RecPatch {
                extent: Some(lba),
                size: Some(need as u32),
                mtime: None,
            };
            self.patches.insert(ed.dir.dot.offset, p);
            // its own '..' when it points at itself (the root; libisofs' Joliet directories)
            if ed.dir.dotdot.extent == ed.dir.extent {
                self.patches.insert(ed.dir.dotdot.offset, p);
            }
            match ed.rec_in_parent {
                Some(off) => {
                    self.patches.insert(off, p);
                }
                None => {
                    self.root_moves.insert(ed.tree, (lba, need as u32));
                }
            }
            for e in &ed.dir.entries {
                if e.is_dir() && !e.is_symlink() && e.rr.child_link.is_none() && !e.rr.relocated {
                    let first = iso.read(
                        e.rec().extent as u64 * BLOCK,
                        BLOCK.min(e.rec().size as u64),
                        "directory",
                    )?;
                    let recs = parse_dir_records(&first, e.rec().extent as u64 * BLOCK)
                        .map_err(|x| x.with_path(inp.path))?;
                    let dd = recs.get(1).filter(|r| r.is_dotdot()).ok_or_else(|| {
                        iso.bad(
                            err!(BadField, "directory has no '..' record"),
                            "directory",
                            e.rec().extent as u64 * BLOCK,
                        )
                    })?;
                    // only a '..' that points at the moved directory (libisofs' Joliet '..'
                    // records point at their own directory: keep such quirks as they are)
                    if dd.extent == ed.dir.extent {
                        self.patches.insert(dd.offset, p);
                    }
                }
            }
            self.moved.push((ed.tree, ed.dir.extent, lba));
            self.report
                .moved_dirs
                .push(format!("{:?}:{}", inp.trees[ed.tree].vd.kind, ed.path));
        }
        Ok(())
    }

    /// Where a directory ends up (extent, size).
    fn final_loc(&self, r: DirRef) -> (u32, u32) {
        match r {
            DirRef::Edit(k) => (self.edits[&k].new_extent, self.edits[&k].new_size),
            DirRef::New(j) => (self.newdirs[j].lba, self.newdirs[j].size),
        }
    }

    /// Phase 4b: new directories after everything else, parents before children.
    fn layout_new_dirs(&mut self) -> Result<()> {
        for nd in self.newdirs.iter_mut() {
            let need = pack_len(&nd.records);
            nd.lba = next_lba(self.cursor)?;
            nd.size = need as u32;
            self.cursor += need / BLOCK;
            let p = RecPatch {
                extent: Some(nd.lba),
                size: Some(nd.size),
                mtime: None,
            };
            self.patches.insert(nd.self_key, p);
            self.patches.insert(nd.dot_key, p);
        }
        let dotdots: Vec<(u64, (u32, u32))> = self
            .newdirs
            .iter()
            .map(|nd| (nd.dotdot_key, self.final_loc(nd.parent)))
            .collect();
        for (key, (e, sz)) in dotdots {
            self.patches.insert(
                key,
                RecPatch {
                    extent: Some(e),
                    size: Some(sz),
                    mtime: None,
                },
            );
        }
        Ok(())
    }

    /// Phase 4c: the path tables of tree `ti`, when its directories moved or grew in number:
    /// rebuilt from the L table.
    fn rebuild_path_table(&mut self, inp: &Input, ti: usize) -> Result<()> {
        let input = inp.path;
        let mv: Vec<(u32, u32)> = self
            .moved
            .iter()
            .filter(|m| m.0 == ti)
            .map(|m| (m.1, m.2))
            .collect();
        let nds: Vec<&NewDir> = self.newdirs.iter().filter(|n| n.tree == ti).collect();
        if mv.is_empty() && nds.is_empty() {
            return Ok(());
        }
        let vd = &inp.trees[ti].vd;
        let old = super::read::read_path_table(&inp.iso, vd.l_tables[0], vd.path_table_size)?;
        let mut ents = parse_pt(&old).map_err(|e| e.with_path(input))?;
        if ents.is_empty() {
            return Err(err!(BadField, "empty path table")
                .with_structure("path table")
                .with_path(input));
        }
        for e in ents.iter_mut() {
            if let Some((_, new)) = mv.iter().find(|(old, _)| *old == e.1) {
                e.1 = *new;
            }
        }
        self.insert_new_dirs(&mut ents, &nds, vd.kind, input)?;
        let l = pt_bytes(&ents, false);
        let m = pt_bytes(&ents, true);
        let size = l.len() as u64;
        let old_blocks = (vd.path_table_size as u64).div_ceil(BLOCK);
        let new_blocks = size.div_ceil(BLOCK);
        let mut lbas = [
            vd.l_tables[0],
            vd.l_tables[1],
            vd.m_tables[0],
            vd.m_tables[1],
        ];
        for (i, lba) in lbas.iter_mut().enumerate() {
            if *lba == 0 {
                continue;
            }
            if new_blocks > old_blocks {
                *lba = next_lba(self.cursor)?;
                self.cursor += new_blocks;
            }
            let mut b = if i < 2 { l.clone() } else { m.clone() };
            b.resize((new_blocks.max(old_blocks) * BLOCK) as usize, 0);
            self.pt_writes.push((*lba, b));
        }
        self.pt_vd.insert(ti, (size as u32, lbas));
        Ok(())
    }

    /// New directories of one tree into its path-table entries (ident, extent, parent number),
    /// in path-table order (parents first, then by identifier).
    fn insert_new_dirs(
        &self,
        ents: &mut Vec<(Vec<u8>, u32, u16)>,
        nds: &[&NewDir],
        kind: TreeKind,
        input: &Path,
    ) -> Result<()> {
        for nd in nds {
            let (pext, _) = self.final_loc(nd.parent);
            let pno = ents.iter().position(|e| e.1 == pext).ok_or_else(|| {
                err!(
                    BadField,
                    "the path table has no entry for the parent of {}",
                    nd.path
                )
                .with_structure("path table")
                .with_path(input)
            })? + 1;
            let pos = (1..ents.len())
                .find(|&i| {
                    (ents[i].2 as usize) > pno
                        || (ents[i].2 as usize == pno && ident_less(kind, &nd.ident, &ents[i].0))
                })
                .unwrap_or(ents.len());
            if ents.len() >= u16::MAX as usize {
                return Err(err!(
                    LimitExceeded,
                    "more than 65535 directories in the path table"
                ));
            }
            for e in ents.iter_mut().skip(1) {
                if e.2 as usize > pos {
                    e.2 += 1;
                }
            }
            ents.insert(pos, (nd.ident.clone(), nd.lba, pno as u16));
        }
        Ok(())
    }

    /// Phase 5: sizes: keep the padding the input had inside and after its volume space.
    fn sizes(&self, inp: &Input) -> Result<Sizes> {
        let old_len = inp.old_len;
        let old_vol_end = inp.vol.primary.volume_space as u64 * BLOCK;
        let new_data_end = self.cursor * BLOCK;
        let cyl = 64 * 32 * 512u64;
        let cyl_aligned = inp.sys.mbr_signature
            && old_len.is_multiple_of(cyl)
            && old_len == old_vol_end.div_ceil(cyl) * cyl;
        // an isohybrid image padded to whole cylinders needs no more padding than the alignment
        // gives (plus the backup GPT); other images keep the padding they had after their data
        let mut new_vol_end = if cyl_aligned && old_vol_end >= old_len {
            new_data_end
        } else {
            new_data_end + old_vol_end.saturating_sub(self.data_start)
        };
        let gpt_area = inp.sys.gpt.as_ref().map(|g| {
            ((g.entry_count as u64 * g.entry_size as u64).div_ceil(512) * 512 + 512).div_ceil(BLOCK)
                * BLOCK
        });
        if let Some(a) = gpt_area {
            new_vol_end = new_vol_end.max(new_data_end + a);
        }
        let mut new_len = if cyl_aligned {
            new_vol_end.div_ceil(cyl) * cyl
        } else {
            new_vol_end + old_len.saturating_sub(old_vol_end)
        };
        new_len = new_len.max(old_len);
        let vol_blocks = if old_vol_end >= old_len {
            new_len / BLOCK
        } else {
            new_vol_end / BLOCK
        };
        let vol_blocks =
            u32::try_from(vol_blocks).map_err(|_| err!(LimitExceeded, "volume beyond 8 TiB"))?;
        Ok(Sizes {
            new_len,
            new_data_end,
            vol_blocks,
        })
    }

    /// Phase 6: the output: the input's data copied (reflinked when the filesystem can), then
    /// new contents, directories, patched records, path tables, volume descriptors, system area.
    fn write(
        mut self,
        inp: &Input,
        output: &Path,
        sz: &Sizes,
        progress: &dyn Progress,
    ) -> Result<PatchReport> {
        self.report.new_len = sz.new_len;
        // every file the output is made of is an input: checked now and again at the rename
        // (one may have been moved or linked onto the output path meanwhile)
        let mut inputs = vec![inp.path];
        inputs.extend(inp.plan.ops.iter().filter_map(|op| match &op.source {
            Source::File(p) => Some(p.as_path()),
            Source::Bytes(_) => None,
        }));
        let out = AtomicOutput::create(output, &inputs, inp.plan.output)?;
        let mut o = Out {
            file: out.file(),
            tmp: out.tmp_path().to_path_buf(),
            written: 0,
        };
        let new_bytes: u64 = self.planned.iter().map(|p| p.len).sum();
        progress.start("remastering", self.data_start + new_bytes);
        let iso = inp.iso.require_file()?;
        if clone_file(iso, o.file) {
            progress.advance(self.data_start);
        } else {
            copy_file_bytes_progress(iso, 0, o.file, 0, self.data_start, progress)
                .map_err(|e| o.err(e, "copying the ISO"))?;
        }
        o.file
            .set_len(self.data_start)
            .map_err(|e| o.err(e, "sizing the output"))?;
        o.file
            .set_len(sz.new_len)
            .map_err(|e| o.err(e, "sizing the output"))?;
        self.write_new_files(inp, &mut o, progress)?;
        let in_edit = self.write_dirs(inp, &mut o)?;
        self.patch_records_in_place(inp, &mut o, &in_edit)?;
        for (lba, b) in &self.pt_writes {
            o.put(b, *lba as u64 * BLOCK, "writing a path table")?;
        }
        self.patch_volume_descriptors(inp, &mut o, sz)?;
        write_system_area(inp, &mut o, sz)?;
        self.report.bytes_written = o.written;
        progress.finish();
        commit_syncing(out, inp.plan.output.sync, progress)?;
        Ok(self.report)
    }

    fn write_new_files(&self, inp: &Input, o: &mut Out, progress: &dyn Progress) -> Result<()> {
        for (op, pl) in inp.plan.ops.iter().zip(&self.planned) {
            let off = pl.lba as u64 * BLOCK;
            match &op.source {
                Source::Bytes(b) => {
                    o.put(b, off, "writing a new file")?;
                    progress.advance(pl.len);
                }
                Source::File(p) => {
                    let f = File::open(p).ctx(p, "opening a file to add")?;
                    let now = f.metadata().ctx(p, "reading its size")?.len();
                    if now != pl.len {
                        return Err(err!(Io, "the file changed size while the ISO was written")
                            .with_path(p));
                    }
                    copy_file_bytes_progress(&f, 0, o.file, off, pl.len, progress)
                        .map_err(|e| o.err(e, "copying a file into the ISO"))?;
                }
            }
        }
        Ok(())
    }

    /// Writes the edited and new directories; returns the record offsets they hold (patched
    /// there, not in place).
    fn write_dirs(&mut self, inp: &Input, o: &mut Out) -> Result<HashMap<u64, usize>> {
        let mut in_edit: HashMap<u64, usize> = HashMap::new();
        for ed in self.edits.values() {
            for (off, _) in &ed.records {
                if let Some(off) = off {
                    in_edit.insert(*off, ed.tree);
                }
            }
        }
        for ed in self.edits.values_mut() {
            let skip = inp.susp_skip(ed.tree);
            for (off, r) in ed.records.iter_mut() {
                if let Some(p) = off.and_then(|off| self.patches.get(&off)) {
                    apply_patch(r, p, skip);
                }
            }
            let size = (ed.new_size as u64).div_ceil(BLOCK) * BLOCK;
            let bytes = pack(&ed.records, size as usize);
            o.put(&bytes, ed.new_extent as u64 * BLOCK, "writing a directory")?;
        }
        for nd in self.newdirs.iter_mut() {
            let skip = inp.susp_skip(nd.tree);
            for (off, r) in nd.records.iter_mut() {
                if let Some(p) = off.and_then(|off| self.patches.get(&off)) {
                    apply_patch(r, p, skip);
                }
            }
            let bytes = pack(&nd.records, nd.size as usize);
            o.put(&bytes, nd.lba as u64 * BLOCK, "writing a new directory")?;
        }
        Ok(in_edit)
    }

    /// Records outside the rewritten directories are patched where they are.
    fn patch_records_in_place(
        &self,
        inp: &Input,
        o: &mut Out,
        in_edit: &HashMap<u64, usize>,
    ) -> Result<()> {
        let iso = &inp.iso;
        // record offsets -> tree, to know the RR skip of in-place patches
        let mut tree_of_dir: Vec<(u64, u64, usize)> = Vec::new();
        for (ti, t) in inp.trees.iter().enumerate() {
            let mut v = vec![(t.vd.root.extent as u64 * BLOCK, t.vd.root.size as u64)];
            t.walk(iso, &mut |_p, e, _d| {
                if e.is_dir() && !e.is_symlink() {
                    v.push((e.dir_extent() as u64 * BLOCK, e.rec().size as u64));
                }
                Ok(())
            })?;
            for (s, l) in v {
                tree_of_dir.push((s, s + l, ti));
            }
        }
        let mut sorted: Vec<(&u64, &RecPatch)> = self.patches.iter().collect();
        sorted.sort_by_key(|x| *x.0);
        for (off, p) in sorted {
            if in_edit.contains_key(off) || *off >= SYNTH_FLOOR {
                continue;
            }
            let ti = tree_of_dir
                .iter()
                .find(|(s, e, _)| off >= s && off < e)
                .map(|x| x.2)
                .unwrap_or(0);
            let len = iso.read(*off, 1, "directory record")?[0] as u64;
            let mut raw = iso.read(*off, len, "directory record")?;
            apply_patch(&mut raw, p, inp.susp_skip(ti));
            o.put(&raw, *off, "patching a directory record")?;
        }
        Ok(())
    }

    /// Volume space size, path-table locations, the root record and the volume id of every
    /// descriptor.
    fn patch_volume_descriptors(&self, inp: &Input, o: &mut Out, sz: &Sizes) -> Result<()> {
        for (ti, t) in inp.trees.iter().enumerate() {
            let off = t.vd.sector * BLOCK;
            let mut d = inp.iso.read(off, BLOCK, "volume descriptor")?;
            put_both32(&mut d, 80, sz.vol_blocks);
            if let Some((size, lbas)) = self.pt_vd.get(&ti) {
                put_both32(&mut d, 132, *size);
                d[140..144].copy_from_slice(&lbas[0].to_le_bytes());
                d[144..148].copy_from_slice(&lbas[1].to_le_bytes());
                d[148..152].copy_from_slice(&lbas[2].to_be_bytes());
                d[152..156].copy_from_slice(&lbas[3].to_be_bytes());
            }
            if let Some((lba, size)) = self.root_moves.get(&ti) {
                put_both32(&mut d, 156 + 2, *lba);
                put_both32(&mut d, 156 + 10, *size);
            }
            if let Some(id) = &inp.plan.volume_id {
                match t.vd.kind {
                    TreeKind::Joliet => {
                        let mut u: Vec<u8> = ucs2_encode(id);
                        u.truncate(32);
                        while u.len() < 32 {
                            u.extend_from_slice(&[0, b' ']);
                        }
                        d[40..72].copy_from_slice(&u);
                    }
                    _ => {
                        let mut b = id.as_bytes().to_vec();
                        b.resize(32, b' ');
                        d[40..72].copy_from_slice(&b);
                    }
                }
            }
            o.put(&d, off, "patching a volume descriptor")?;
        }
        Ok(())
    }
}

impl Input<'_> {
    /// The Rock Ridge SUSP skip of tree `ti` (None without Rock Ridge).
    fn susp_skip(&self, ti: usize) -> Option<usize> {
        let t = &self.trees[ti];
        if t.rock_ridge {
            Some(t.susp_skip)
        } else {
            None
        }
    }
}

/// The system area follows the new end; always rewritten with a GPT (the old backup GPT past
/// the data was not copied, and partitions follow the end).
fn write_system_area(inp: &Input, o: &mut Out, sz: &Sizes) -> Result<()> {
    if sz.new_len == inp.old_len && inp.sys.gpt.is_none() {
        return Ok(());
    }
    let mut sys = inp.iso.read(0, 32768, "system area")?;
    let backup = repoint_system_area(&mut sys, inp.old_len, sz.new_len)
        .map_err(|e| e.with_path(inp.path))?;
    o.put(&sys, 0, "writing the system area")?;
    if let Some(b) = backup {
        let at = sz.new_len - b.len() as u64;
        if at < sz.new_data_end {
            return Err(err!(LimitExceeded, "no room for the backup GPT").with_path(&o.tmp));
        }
        o.put(&b, at, "writing the backup GPT")?;
    }
    Ok(())
}

/// A new file's identifier in the primary tree: long names when the tree has them, a version
/// suffix when its other files have one.
fn primary_file_ident(
    name: &str,
    style: &TreeStyle,
    taken: &[Vec<u8>],
    files: &[&Vec<u8>],
) -> Result<Vec<u8>> {
    let long = style.long
        || taken.iter().any(|id| {
            let body = id.split(|&c| c == b';').next().unwrap_or(id);
            let mut parts = body.splitn(2, |&c| c == b'.');
            let b = parts.next().map(|x| x.len()).unwrap_or(0);
            let x = parts.next().map(|x| x.len()).unwrap_or(0);
            b > 8 || x > 3
        });
    let version = if files.is_empty() {
        style.version
    } else {
        files
            .iter()
            .any(|r| r[33..33 + r[32] as usize].contains(&b';'))
    };
    iso_ident(name, long, version, taken)
}

/// A new file's identifier in a Joliet tree (UCS-2, `;1` when its other files have it).
fn joliet_file_ident(
    name: &str,
    style: &TreeStyle,
    taken: &[Vec<u8>],
    files: &[&Vec<u8>],
    path: &str,
) -> Result<Vec<u8>> {
    if name.chars().count() > 103 {
        return Err(err!(
            LimitExceeded,
            "{path}: Joliet names are limited to 103 characters"
        ));
    }
    let mut id = ucs2_encode(name);
    let version = if files.is_empty() {
        style.joliet_version
    } else {
        files
            .iter()
            .any(|r| r[33..33 + r[32] as usize].ends_with(&[0, b';', 0, b'1']))
    };
    if version {
        id.extend_from_slice(&ucs2_encode(";1"));
    }
    if taken.contains(&id) {
        return Err(err!(InvalidArgument, "{path}: Joliet name already taken"));
    }
    Ok(id)
}

/// FICLONE (reflink) the whole input into the output when the filesystem can.
fn clone_file(src: &File, dst: &File) -> bool {
    use std::os::unix::io::AsRawFd;
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: both fds are open for the duration of the call; FICLONE takes the source fd.
    let r = unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE as _, src.as_raw_fd()) };
    r == 0
}

/// Reads the first 32 KiB of `path` and reports the image's end facts (tests).
pub fn read_le32(b: &[u8], o: usize) -> u32 {
    le32(b, o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_names_are_unique_and_valid() {
        let taken = vec![b"UBUNTU_S.SEE;1".to_vec()];
        let a = iso_ident("ubuntu-server.seed", false, true, &taken).unwrap();
        assert_eq!(a, b"UBUNTU_1.SEE;1");
        let b = iso_ident("my.seed", true, false, &[]).unwrap();
        assert_eq!(b, b"MY.SEE");
        let c = iso_ident("noext", false, true, &[]).unwrap();
        assert_eq!(c, b"NOEXT.;1");
    }

    #[test]
    fn ecma_sort_order() {
        assert!(ident_less(TreeKind::Primary, b"A.B;1", b"AB.;1"));
        assert!(ident_less(
            TreeKind::Primary,
            b"CLI.SEE;1",
            b"UBUNTU_S.SEE;1"
        ));
        assert!(!ident_less(TreeKind::Primary, b"Z;1", b"A;1"));
    }

    #[test]
    fn packing_never_crosses_blocks() {
        let recs: Vec<(Option<u64>, Vec<u8>)> = (0..30).map(|_| (None, vec![1u8; 100])).collect();
        assert_eq!(pack_len(&recs), 4096);
        let b = pack(&recs, 4096);
        assert_eq!(b[2000], 0, "block tail is padding");
        assert_eq!(b[2048], 1);
    }
}
