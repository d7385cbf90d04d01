//! Copy-and-patch remastering: the output is the input copied in the kernel, then new file
//! contents are appended after the old data, directory records are patched in place (both
//! trees), directories that gain an entry are rewritten (in place when they have room, at the
//! end otherwise, with their parent record, `.`, children's `..` and path-table entries
//! re-pointed), the volume space size and the system area (MBR, GPT, APM) follow the new end.
//! Every untouched byte keeps its position, so the El Torito catalog, the boot images and
//! their boot-info-tables stay valid.

use super::boot::{self, repoint_system_area};
use super::read::{
    BLOCK, DirRecord, Directory, IsoFile, Lookup, Tree, TreeKind, Volume, le32, parse_dir_records,
    parse_volume, put_both16, put_both32, ucs2_encode,
};
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
    /// Replace an existing output.
    pub force: bool,
    /// Permission bits of the output (0o600 when it carries a seed that may hold passwords).
    pub mode: u32,
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

/// ISO 9660 recording date (7 bytes, UTC) of `t`.
pub fn iso_date7(t: u64) -> [u8; 7] {
    let days = (t / 86400) as i64;
    let secs = t % 86400;
    let (y, m, d) = civil_from_days(days);
    [
        (y - 1900).clamp(0, 255) as u8,
        m as u8,
        d as u8,
        (secs / 3600) as u8,
        (secs / 60 % 60) as u8,
        (secs % 60) as u8,
        0,
    ]
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
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
        let d = iso_date7(t);
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
    let mut len = 33 + ident.len();
    if len % 2 == 1 {
        len += 1;
    }
    len += su.len();
    if len % 2 == 1 {
        len += 1;
    }
    if len > 255 {
        return Err(err!(
            LimitExceeded,
            "directory record of {len} bytes (the name is too long for one record)"
        ));
    }
    let mut r = vec![0u8; len];
    r[0] = len as u8;
    put_both32(&mut r, 2, extent);
    put_both32(&mut r, 10, size);
    r[18..25].copy_from_slice(&iso_date7(mtime));
    put_both16(&mut r, 28, 1);
    r[32] = ident.len() as u8;
    r[33..33 + ident.len()].copy_from_slice(ident);
    let s = 33 + ident.len() + (1 - ident.len() % 2);
    r[s..s + su.len()].copy_from_slice(su);
    Ok(r)
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
    let d = iso_date7(mtime);
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

struct Planned {
    lba: u32,
    len: u64,
}

/// Applies `plan` to `input`, writing `output` atomically. The input is only read.
pub fn patch_iso(input: &Path, output: &Path, plan: &PatchPlan) -> Result<PatchReport> {
    let iso = IsoFile::open(input)?;
    let old_len = iso.len();
    if old_len % BLOCK != 0 {
        return Err(err!(
            Unsupported,
            "image size {old_len} is not a multiple of 2048"
        )
        .with_path(input));
    }
    let vol: Volume = parse_volume(&iso)?;
    let trees: Vec<Tree> = vol
        .trees()
        .map(|vd| Tree::new(&iso, vd))
        .collect::<Result<_>>()?;
    let sys_info = boot::parse_system_area(&iso)?;

    // 1. Where the old data ends: every extent any tree references, path tables, the
    //    descriptor set, the boot catalog and images, continuation areas, and partitions that
    //    do not start in the system area (appended partitions).
    let mut data_end = (vol.terminator + 1) * BLOCK;
    let mut max_ino = 0u32;
    let mut bump = |end: u64| data_end = data_end.max(end);
    for t in &trees {
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
        t.walk(&iso, &mut |_p, e, _d| {
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
    if let Some(c) = vol.boot_catalog {
        bump((c as u64 + 1) * BLOCK);
        boot_lbas.push(c);
        if let Ok(cat) = boot::parse_catalog(&iso, c) {
            for e in cat.entries {
                bump(e.lba as u64 * BLOCK + e.load_sectors as u64 * 512);
                boot_lbas.push(e.lba);
            }
        }
    }
    for p in &sys_info.mbr {
        if p.start >= 64 {
            bump((p.start as u64 + p.sectors as u64) * 512);
        }
    }
    if let Some(g) = &sys_info.gpt {
        for p in &g.partitions {
            if p.first >= 64 {
                bump(p.last.saturating_add(1).saturating_mul(512));
            }
        }
    }
    if data_end > old_len {
        return Err(err!(
            Truncated,
            "the ISO references data up to byte {data_end} but the file has {old_len} bytes"
        )
        .with_path(input));
    }
    let data_start = data_end.div_ceil(BLOCK) * BLOCK;
    let mut cursor: u64 = data_start / BLOCK;

    // 2. Place new contents.
    let mut planned = Vec::new();
    for op in &plan.ops {
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
        let lba = u32::try_from(cursor).map_err(|_| err!(LimitExceeded, "image beyond 8 TiB"))?;
        planned.push(Planned { lba, len });
        cursor += len.div_ceil(BLOCK).max(1);
    }

    // 3. Resolve every op in every tree.
    let mut patches: HashMap<u64, RecPatch> = HashMap::new();
    let mut edits: BTreeMap<(usize, u32), DirEdit> = BTreeMap::new();
    let mut report = PatchReport {
        old_len,
        ..Default::default()
    };
    let mut next_ino = max_ino + 1;
    let mut newdirs: Vec<NewDir> = Vec::new();
    let mut synth = SYNTH_TOP;
    for (i, op) in plan.ops.iter().enumerate() {
        if plan.ops[..i].iter().any(|o| o.path == op.path) {
            return Err(err!(InvalidArgument, "{} is given twice", op.path));
        }
    }
    for (ti, t) in trees.iter().enumerate() {
        report.trees.push(t.vd.kind);
        let style = TreeStyle::of(&iso, t, max_ino)?;
        let mut memo: HashMap<String, DirRef> = HashMap::new();
        for (op, pl) in plan.ops.iter().zip(&planned) {
            let comps: Vec<&str> = op.path.split('/').filter(|c| !c.is_empty()).collect();
            let name = *comps
                .last()
                .ok_or_else(|| err!(InvalidArgument, "empty ISO path"))?;
            let parent_path = format!("/{}", comps[..comps.len() - 1].join("/"));
            let dref: DirRef = match t.lookup(&iso, &op.path) {
                Ok(Lookup::Found { parent, index }) => {
                    let e = &parent.entries[index];
                    if e.is_dir() || e.is_symlink() {
                        return Err(err!(InvalidArgument, "{} is a directory or a symlink in the ISO; only regular files can be replaced", op.path).with_path(input));
                    }
                    if boot_lbas.contains(&e.rec().extent) && e.rec().size > 0 {
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
                    patches.insert(
                        e.rec().offset,
                        RecPatch {
                            extent: Some(pl.lba),
                            size: Some(pl.len as u32),
                            mtime: Some(plan.mtime),
                        },
                    );
                    if ti == 0 {
                        report.replaced.push(op.path.clone());
                    }
                    continue;
                }
                Ok(Lookup::Missing { parent }) => {
                    let key = ensure_edit(&mut edits, &iso, t, ti, &parent, &parent_path)?;
                    DirRef::Edit(key)
                }
                Ok(Lookup::Root(_)) => {
                    return Err(err!(InvalidArgument, "cannot replace the root directory"));
                }
                Err(e) if e.kind() == crate::ErrorKind::NotFound => {
                    // missing directories on the way: create them
                    let dir_comps = &comps[..comps.len() - 1];
                    let mut cur = t.root(&iso)?;
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
                                .with_path(input));
                            }
                            cur = t.read_dir(&iso, e.dir_extent(), e.rec().size)?;
                            cur_path = p;
                            continue;
                        }
                        let parent_ref = match dref {
                            Some(r) => r,
                            None => {
                                DirRef::Edit(ensure_edit(&mut edits, &iso, t, ti, &cur, &cur_path)?)
                            }
                        };
                        let recs = match parent_ref {
                            DirRef::Edit(k) => &mut edits.get_mut(&k).expect("edit exists").records,
                            DirRef::New(j) => &mut newdirs[j].records,
                        };
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
                        let ino = next_ino;
                        next_ino += 1;
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
                        let mut rec = build_record(&ident, 0, 0, plan.mtime, &su(Some(c)))
                            .map_err(|e| e.with_path(input))?;
                        rec[25] = 2;
                        let self_key = synth;
                        let dot_key = synth - 1;
                        let dotdot_key = synth - 2;
                        synth -= 3;
                        insert_sorted(t.vd.kind, recs, Some(self_key), rec);
                        let mut dot = build_record(&[0], 0, 0, plan.mtime, &su(None))
                            .map_err(|e| e.with_path(input))?;
                        dot[25] = 2;
                        let mut dotdot = build_record(&[1], 0, 0, plan.mtime, &su(None))
                            .map_err(|e| e.with_path(input))?;
                        dotdot[25] = 2;
                        newdirs.push(NewDir {
                            tree: ti,
                            path: p.clone(),
                            parent: parent_ref,
                            self_key,
                            dot_key,
                            dotdot_key,
                            records: vec![(Some(dot_key), dot), (Some(dotdot_key), dotdot)],
                            ident,
                            lba: 0,
                            size: 0,
                        });
                        let r = DirRef::New(newdirs.len() - 1);
                        memo.insert(p, r);
                        dref = Some(r);
                        if ti == 0 {
                            report
                                .added_dirs
                                .push(format!("/{}", dir_comps[..=i].join("/")));
                        }
                    }
                    match dref {
                        Some(r) => r,
                        None => {
                            return Err(err!(
                                NotFound,
                                "{}: not found in the {:?} tree",
                                op.path,
                                t.vd.kind
                            )
                            .with_path(input));
                        }
                    }
                }
                Err(e) => return Err(e),
            };
            let recs = match dref {
                DirRef::Edit(k) => &mut edits.get_mut(&k).expect("edit exists").records,
                DirRef::New(j) => &mut newdirs[j].records,
            };
            let taken = idents(recs);
            let files: Vec<&Vec<u8>> = recs
                .iter()
                .skip(2)
                .filter(|(_, r)| r[25] & 2 == 0)
                .map(|(_, r)| r)
                .collect();
            let ident = match t.vd.kind {
                TreeKind::Primary => {
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
                    iso_ident(name, long, version, &taken)?
                }
                TreeKind::Joliet => {
                    if name.chars().count() > 103 {
                        return Err(err!(
                            LimitExceeded,
                            "{}: Joliet names are limited to 103 characters",
                            op.path
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
                        return Err(err!(
                            InvalidArgument,
                            "{}: Joliet name already taken",
                            op.path
                        ));
                    }
                    id
                }
                TreeKind::Enhanced => name.as_bytes().to_vec(),
            };
            let su = if t.rock_ridge {
                let ino = next_ino;
                next_ino += 1;
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
                .map_err(|e| e.with_path(input))?;
            insert_sorted(t.vd.kind, recs, None, rec);
            if ti == 0 {
                report.added.push(op.path.clone());
            }
        }
    }

    // 4. Lay out the edited directories, deepest first; move the ones that no longer fit.
    let mut order: Vec<(usize, u32)> = edits.keys().copied().collect();
    order.sort_by_key(|k| std::cmp::Reverse(edits[k].depth));
    let mut moved: Vec<(usize, u32, u32)> = Vec::new();
    let mut root_moves: HashMap<usize, (u32, u32)> = HashMap::new();
    for k in &order {
        let ed = edits.get_mut(k).expect("key from the map");
        let need = pack_len(&ed.records);
        let have = (ed.dir.size as u64).div_ceil(BLOCK) * BLOCK;
        if need <= have {
            continue;
        }
        let lba = u32::try_from(cursor).map_err(|_| err!(LimitExceeded, "image beyond 8 TiB"))?;
        cursor += need / BLOCK;
        ed.new_extent = lba;
        ed.new_size = need as u32;
        let p = RecPatch {
            extent: Some(lba),
            size: Some(need as u32),
            mtime: None,
        };
        patches.insert(ed.dir.dot.offset, p);
        // its own '..' when it points at itself (the root; libisofs' Joliet directories)
        if ed.dir.dotdot.extent == ed.dir.extent {
            patches.insert(ed.dir.dotdot.offset, p);
        }
        match ed.rec_in_parent {
            Some(off) => {
                patches.insert(off, p);
            }
            None => {
                root_moves.insert(ed.tree, (lba, need as u32));
            }
        }
        let t = &trees[ed.tree];
        for e in &ed.dir.entries {
            if e.is_dir() && !e.is_symlink() && e.rr.child_link.is_none() && !e.rr.relocated {
                let first = iso.read(
                    e.rec().extent as u64 * BLOCK,
                    BLOCK.min(e.rec().size as u64),
                    "directory",
                )?;
                let recs = parse_dir_records(&first, e.rec().extent as u64 * BLOCK)
                    .map_err(|x| x.with_path(input))?;
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
                    patches.insert(dd.offset, p);
                }
            }
        }
        let _ = t;
        moved.push((ed.tree, ed.dir.extent, lba));
        report
            .moved_dirs
            .push(format!("{:?}:{}", trees[ed.tree].vd.kind, ed.path));
    }
    // new directories: after everything else, parents before children
    for nd in newdirs.iter_mut() {
        let need = pack_len(&nd.records);
        nd.lba = u32::try_from(cursor).map_err(|_| err!(LimitExceeded, "image beyond 8 TiB"))?;
        nd.size = need as u32;
        cursor += need / BLOCK;
        let p = RecPatch {
            extent: Some(nd.lba),
            size: Some(nd.size),
            mtime: None,
        };
        patches.insert(nd.self_key, p);
        patches.insert(nd.dot_key, p);
    }
    let final_loc = |r: DirRef, newdirs: &[NewDir]| match r {
        DirRef::Edit(k) => (edits[&k].new_extent, edits[&k].new_size),
        DirRef::New(j) => (newdirs[j].lba, newdirs[j].size),
    };
    for nd in &newdirs {
        let (e, sz) = final_loc(nd.parent, &newdirs);
        patches.insert(
            nd.dotdot_key,
            RecPatch {
                extent: Some(e),
                size: Some(sz),
                mtime: None,
            },
        );
    }
    // path tables of trees whose directories moved or grew in number: rebuilt from the L table
    let mut pt_writes: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut pt_vd: HashMap<usize, (u32, [u32; 4])> = HashMap::new();
    for (ti, t) in trees.iter().enumerate() {
        let mv: Vec<(u32, u32)> = moved
            .iter()
            .filter(|m| m.0 == ti)
            .map(|m| (m.1, m.2))
            .collect();
        let nds: Vec<&NewDir> = newdirs.iter().filter(|n| n.tree == ti).collect();
        if mv.is_empty() && nds.is_empty() {
            continue;
        }
        let vd = &t.vd;
        let old = super::read::read_path_table(&iso, vd.l_tables[0], vd.path_table_size)?;
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
        for nd in nds {
            let (pext, _) = final_loc(nd.parent, &newdirs);
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
                        || (ents[i].2 as usize == pno && ident_less(vd.kind, &nd.ident, &ents[i].0))
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
                *lba =
                    u32::try_from(cursor).map_err(|_| err!(LimitExceeded, "image beyond 8 TiB"))?;
                cursor += new_blocks;
            }
            let mut b = if i < 2 { l.clone() } else { m.clone() };
            b.resize((new_blocks.max(old_blocks) * BLOCK) as usize, 0);
            pt_writes.push((*lba, b));
        }
        pt_vd.insert(ti, (size as u32, lbas));
    }

    // 5. Sizes: keep the padding the input had inside and after its volume space.
    let old_vol_end = vol.primary.volume_space as u64 * BLOCK;
    let new_data_end = cursor * BLOCK;
    let cyl = 64 * 32 * 512u64;
    let cyl_aligned = sys_info.mbr_signature
        && old_len.is_multiple_of(cyl)
        && old_len == old_vol_end.div_ceil(cyl) * cyl;
    // an isohybrid image padded to whole cylinders needs no more padding than the alignment
    // gives (plus the backup GPT); other images keep the padding they had after their data
    let mut new_vol_end = if cyl_aligned && old_vol_end >= old_len {
        new_data_end
    } else {
        new_data_end + old_vol_end.saturating_sub(data_start)
    };
    let gpt_area = sys_info.gpt.as_ref().map(|g| {
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
    report.new_len = new_len;

    // 6. Write.
    let out = AtomicOutput::create(
        output,
        &[input],
        OutputOptions {
            force: plan.force,
            mode: if plan.mode == 0 { 0o644 } else { plan.mode },
            ..OutputOptions::default()
        },
    )?;
    let of = out.file();
    let tmp = out.tmp_path().to_path_buf();
    let werr = |e: std::io::Error, what: &str| Error::io(e, what.to_string()).with_path(&tmp);
    if !clone_file(iso.file(), of) {
        crate::disk::raw::copy_file_bytes(iso.file(), 0, of, 0, data_start)
            .map_err(|e| werr(e, "copying the ISO"))?;
    }
    of.set_len(data_start)
        .map_err(|e| werr(e, "sizing the output"))?;
    of.set_len(new_len)
        .map_err(|e| werr(e, "sizing the output"))?;
    let mut written = 0u64;
    for (op, pl) in plan.ops.iter().zip(&planned) {
        let off = pl.lba as u64 * BLOCK;
        match &op.source {
            Source::Bytes(b) => {
                of.write_all_at(b, off)
                    .map_err(|e| werr(e, "writing a new file"))?;
                written += b.len() as u64;
            }
            Source::File(p) => {
                let f = File::open(p).ctx(p, "opening a file to add")?;
                let now = f.metadata().ctx(p, "reading its size")?.len();
                if now != pl.len {
                    return Err(
                        err!(Io, "the file changed size while the ISO was written").with_path(p)
                    );
                }
                crate::disk::raw::copy_file_bytes(&f, 0, of, off, pl.len)
                    .map_err(|e| werr(e, "copying a file into the ISO"))?;
            }
        }
    }
    let skip_of = |ti: usize| {
        if trees[ti].rock_ridge {
            Some(trees[ti].susp_skip)
        } else {
            None
        }
    };
    let mut in_edit: HashMap<u64, usize> = HashMap::new();
    for ed in edits.values() {
        for (o, _) in &ed.records {
            if let Some(o) = o {
                in_edit.insert(*o, ed.tree);
            }
        }
    }
    for ed in edits.values_mut() {
        let skip = skip_of(ed.tree);
        for (o, r) in ed.records.iter_mut() {
            if let Some(p) = o.and_then(|o| patches.get(&o)) {
                apply_patch(r, p, skip);
            }
        }
        let size = (ed.new_size as u64).div_ceil(BLOCK) * BLOCK;
        let bytes = pack(&ed.records, size as usize);
        of.write_all_at(&bytes, ed.new_extent as u64 * BLOCK)
            .map_err(|e| werr(e, "writing a directory"))?;
        written += bytes.len() as u64;
    }
    for nd in newdirs.iter_mut() {
        let skip = skip_of(nd.tree);
        for (o, r) in nd.records.iter_mut() {
            if let Some(p) = o.and_then(|o| patches.get(&o)) {
                apply_patch(r, p, skip);
            }
        }
        let bytes = pack(&nd.records, nd.size as usize);
        of.write_all_at(&bytes, nd.lba as u64 * BLOCK)
            .map_err(|e| werr(e, "writing a new directory"))?;
        written += bytes.len() as u64;
    }
    // record offsets -> tree, to know the RR skip of in-place patches
    let mut tree_of_dir: Vec<(u64, u64, usize)> = Vec::new();
    for (ti, t) in trees.iter().enumerate() {
        let mut v = vec![(t.vd.root.extent as u64 * BLOCK, t.vd.root.size as u64)];
        t.walk(&iso, &mut |_p, e, _d| {
            if e.is_dir() && !e.is_symlink() {
                v.push((e.dir_extent() as u64 * BLOCK, e.rec().size as u64));
            }
            Ok(())
        })?;
        for (s, l) in v {
            tree_of_dir.push((s, s + l, ti));
        }
    }
    let mut sorted: Vec<(&u64, &RecPatch)> = patches.iter().collect();
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
        apply_patch(&mut raw, p, skip_of(ti));
        of.write_all_at(&raw, *off)
            .map_err(|e| werr(e, "patching a directory record"))?;
        written += raw.len() as u64;
    }
    // path tables
    for (lba, b) in &pt_writes {
        of.write_all_at(b, *lba as u64 * BLOCK)
            .map_err(|e| werr(e, "writing a path table"))?;
        written += b.len() as u64;
    }
    // volume descriptors
    for (ti, t) in trees.iter().enumerate() {
        let off = t.vd.sector * BLOCK;
        let mut d = iso.read(off, BLOCK, "volume descriptor")?;
        put_both32(&mut d, 80, vol_blocks);
        if let Some((size, lbas)) = pt_vd.get(&ti) {
            put_both32(&mut d, 132, *size);
            d[140..144].copy_from_slice(&lbas[0].to_le_bytes());
            d[144..148].copy_from_slice(&lbas[1].to_le_bytes());
            d[148..152].copy_from_slice(&lbas[2].to_be_bytes());
            d[152..156].copy_from_slice(&lbas[3].to_be_bytes());
        }
        if let Some((lba, size)) = root_moves.get(&ti) {
            put_both32(&mut d, 156 + 2, *lba);
            put_both32(&mut d, 156 + 10, *size);
        }
        if let Some(id) = &plan.volume_id {
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
        of.write_all_at(&d, off)
            .map_err(|e| werr(e, "patching a volume descriptor"))?;
        written += BLOCK;
    }
    // system area
    // always: the old backup GPT past the data was not copied, and partitions follow the end
    if new_len != old_len || sys_info.gpt.is_some() {
        let mut sys = iso.read(0, 32768, "system area")?;
        let backup =
            repoint_system_area(&mut sys, old_len, new_len).map_err(|e| e.with_path(input))?;
        of.write_all_at(&sys, 0)
            .map_err(|e| werr(e, "writing the system area"))?;
        written += sys.len() as u64;
        if let Some(b) = backup {
            let at = new_len - b.len() as u64;
            if at < new_data_end {
                return Err(err!(LimitExceeded, "no room for the backup GPT").with_path(&tmp));
            }
            of.write_all_at(&b, at)
                .map_err(|e| werr(e, "writing the backup GPT"))?;
            written += b.len() as u64;
        }
    }
    report.bytes_written = written;
    out.commit()?;
    Ok(report)
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
    fn dates_are_utc() {
        assert_eq!(iso_date7(0), [70, 1, 1, 0, 0, 0, 0]);
        assert_eq!(iso_date7(1565000000), [119, 8, 5, 10, 13, 20, 0]);
    }

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
