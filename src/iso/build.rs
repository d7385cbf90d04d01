//! Building an ISO 9660 image from a tree: ECMA-119 level 3 names, Rock Ridge (SUSP SP/CE/ER,
//! RRIP RR/PX/TF/NM/SL) on the primary tree, a Joliet tree (UCS-2 names up to 64 characters),
//! both path tables of both trees, and reproducible bytes.
//!
//! Why our own writer rather than hadris-iso: every entry here needs an explicit mode, owner and
//! date (secrets must be 0600 on the disc, dates must be `SOURCE_DATE_EPOCH`), names must be
//! derived deterministically, and the output must go through [`AtomicOutput`]. Writing those
//! few structures ourselves keeps every byte under our control and testable.
//!
//! Layout of the image: system area (16 sectors), primary volume descriptor, Joliet supplementary
//! volume descriptor, terminator, the four ISO path tables then the four Joliet ones, the Rock
//! Ridge continuation area (the ER entry), the ISO directories, the Joliet directories, then file
//! data (shared by both trees), each file starting on a sector. File data is copied from disk
//! (`copy_file_range` where possible): memory stays bounded by the size of the tree's metadata.

use super::d_chars;
use crate::disk::Progress;
use crate::disk::raw::copy_file_bytes_progress;
use crate::err;
use crate::error::{IoContext, Result};
use crate::output::AtomicOutput;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// ISO sector size.
pub const SECTOR: u64 = 2048;
/// Largest extent of one directory record (multi-extent files are split at this size).
pub const MAX_EXTENT: u64 = 0xFFFF_F800;
/// Longest Rock Ridge name (bytes) this writer puts in a directory record.
pub const MAX_RR_NAME: usize = 100;
/// Longest Joliet name (UCS-2 units, including the `;1` version of files).
pub const MAX_JOLIET_NAME: usize = 64;
/// Deepest directory nesting (ECMA-119 limit: 8 levels including the root).
pub const MAX_DEPTH: usize = 8;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// Ownership, permissions and date of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits (e.g. `0o600`); the file type bits are added by the writer.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the Unix epoch (UTC).
    pub mtime: i64,
}

impl Meta {
    /// Root-owned entry with `mode` and `mtime`.
    pub fn root(mode: u32, mtime: i64) -> Self {
        Meta {
            mode,
            uid: 0,
            gid: 0,
            mtime,
        }
    }
}

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub enum FileData {
    /// Copied from this file when the image is written (its size must not change meanwhile).
    Path(PathBuf),
    /// These bytes.
    Bytes(Vec<u8>),
    /// Opened when the image is written by a function that checks it is the file meant.
    Checked(crate::output::CheckedInput),
}

#[derive(Debug)]
enum Kind {
    Dir(BTreeMap<String, Node>),
    File { data: FileData, size: u64 },
    Symlink(String),
}

#[derive(Debug)]
struct Node {
    meta: Meta,
    kind: Kind,
}

/// An ISO image being described; [`IsoBuilder::write`] lays it out and writes it.
#[derive(Debug)]
pub struct IsoBuilder {
    volume_id: String,
    root: Node,
    max_extent: u64,
    application_id: String,
    volume_time: i64,
}

fn check_component(name: &str, path: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('\0') {
        return Err(err!(
            InvalidArgument,
            "bad path component {name:?} in {path:?}"
        ));
    }
    if name.len() > MAX_RR_NAME {
        return Err(err!(
            LimitExceeded,
            "name {name:?} in {path:?} is {} bytes long; at most {MAX_RR_NAME} are supported",
            name.len()
        ));
    }
    Ok(())
}

impl IsoBuilder {
    /// A new, empty image. The volume id is written as given (genisoimage does the same, and
    /// cloud-init needs the lowercase `cidata`): 1 to 32 printable ASCII characters.
    pub fn new(volume_id: &str, root: Meta) -> Result<Self> {
        if volume_id.is_empty()
            || volume_id.len() > 32
            || !volume_id.bytes().all(|b| (0x20..0x7f).contains(&b))
        {
            return Err(err!(
                InvalidArgument,
                "volume id {volume_id:?} must be 1 to 32 printable ASCII characters"
            ));
        }
        Ok(IsoBuilder {
            volume_id: volume_id.to_string(),
            root: Node {
                meta: root,
                kind: Kind::Dir(BTreeMap::new()),
            },
            max_extent: MAX_EXTENT,
            application_id: "ISOTOOL".to_string(),
            volume_time: root.mtime,
        })
    }

    /// The date written in the volume descriptors (creation/modification); defaults to the
    /// root's mtime.
    pub fn set_volume_time(&mut self, t: i64) {
        self.volume_time = t;
    }

    /// Splits files into extents of at most `n` bytes (a multiple of the sector size; tests use
    /// it to exercise multi-extent files without 4 GiB inputs).
    pub fn set_max_extent(&mut self, n: u64) -> Result<()> {
        if n == 0 || !n.is_multiple_of(SECTOR) || n > MAX_EXTENT {
            return Err(err!(InvalidArgument, "bad extent size {n}"));
        }
        self.max_extent = n;
        Ok(())
    }

    fn parent_of(&mut self, path: &str) -> Result<(&mut BTreeMap<String, Node>, String)> {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let Some((last, dirs)) = comps.split_last() else {
            return Err(err!(InvalidArgument, "empty path"));
        };
        if comps.len() > MAX_DEPTH - 1 {
            return Err(err!(
                LimitExceeded,
                "{path:?} is nested {} levels deep; ISO 9660 allows {}",
                comps.len(),
                MAX_DEPTH - 1
            ));
        }
        for c in &comps {
            check_component(c, path)?;
        }
        let mut cur = match &mut self.root.kind {
            Kind::Dir(m) => m,
            _ => return Err(err!(InvalidArgument, "root is not a directory")),
        };
        for d in dirs {
            let node = cur.get_mut(*d).ok_or_else(|| {
                err!(NotFound, "parent directory {d:?} of {path:?} was not added")
            })?;
            cur = match &mut node.kind {
                Kind::Dir(m) => m,
                _ => {
                    return Err(err!(
                        InvalidArgument,
                        "{d:?} in {path:?} is not a directory"
                    ));
                }
            };
        }
        Ok((cur, (*last).to_string()))
    }

    fn insert(&mut self, path: &str, node: Node) -> Result<()> {
        let (dir, name) = self.parent_of(path)?;
        if dir.contains_key(&name) {
            return Err(err!(InvalidArgument, "{path:?} was added twice"));
        }
        dir.insert(name, node);
        Ok(())
    }

    /// Adds a directory (`a/b`); its parent must have been added.
    pub fn add_dir(&mut self, path: &str, meta: Meta) -> Result<()> {
        self.insert(
            path,
            Node {
                meta,
                kind: Kind::Dir(BTreeMap::new()),
            },
        )
    }

    /// Adds a file of `size` bytes.
    pub fn add_file(&mut self, path: &str, data: FileData, size: u64, meta: Meta) -> Result<()> {
        if let FileData::Bytes(b) = &data
            && b.len() as u64 != size
        {
            return Err(err!(
                InvalidArgument,
                "{path:?}: size does not match its bytes"
            ));
        }
        self.insert(
            path,
            Node {
                meta,
                kind: Kind::File { data, size },
            },
        )
    }

    /// Adds a symbolic link (Rock Ridge SL; the Joliet tree leaves it out).
    pub fn add_symlink(&mut self, path: &str, target: &str, meta: Meta) -> Result<()> {
        if target.is_empty() {
            return Err(err!(InvalidArgument, "{path:?}: empty symlink target"));
        }
        self.insert(
            path,
            Node {
                meta,
                kind: Kind::Symlink(target.to_string()),
            },
        )
    }

    /// Lays the image out and writes it into `out` (from offset 0), reported to `progress` as a
    /// "writing the ISO" phase of the image size (file contents in steps of at most 64 MiB).
    /// Returns the image size.
    pub fn write(self, out: &AtomicOutput, progress: &dyn Progress) -> Result<u64> {
        let plan = Plan::new(self)?;
        let total = plan.total_sectors as u64 * SECTOR;
        progress.start("writing the ISO", total);
        let done = plan.write(out.file(), out.tmp_path(), progress);
        progress.finish();
        done?;
        Ok(total)
    }
}

// ---------------------------------------------------------------------------------------------
// Layout

struct Flat {
    name: String,
    meta: Meta,
    parent: usize,
    kind: FlatKind,
}

enum FlatKind {
    Dir { children: Vec<usize> },
    File { data: FileData, size: u64 },
    Symlink(String),
}

/// One of the two trees (ISO with Rock Ridge, or Joliet).
struct View {
    /// Directory node ids in path-table order.
    dirs: Vec<usize>,
    /// Per node: its identifier in this tree (ISO d-characters or UCS-2 BE).
    ids: Vec<Vec<u8>>,
    /// Per directory node: its children in record order.
    sorted: Vec<Vec<usize>>,
    /// Per node: directory number in the path table (1-based), 0 for non-directories.
    number: Vec<u16>,
    /// Per directory node: extent size (bytes, whole sectors) and LBA.
    dir_size: Vec<u64>,
    dir_lba: Vec<u32>,
    path_table_size: u64,
    l_table: u32,
    m_table: u32,
}

struct Plan {
    volume_id: String,
    application_id: String,
    volume_time: i64,
    max_extent: u64,
    nodes: Vec<Flat>,
    iso: View,
    joliet: View,
    ce_lba: u32,
    file_lba: Vec<u32>,
    total_sectors: u32,
}

fn flatten(nodes: &mut Vec<Flat>, name: String, node: Node, parent: usize) -> usize {
    let id = nodes.len();
    match node.kind {
        Kind::Dir(children) => {
            nodes.push(Flat {
                name,
                meta: node.meta,
                parent,
                kind: FlatKind::Dir {
                    children: Vec::new(),
                },
            });
            let mut ids = Vec::new();
            for (n, c) in children {
                ids.push(flatten(nodes, n, c, id));
            }
            if let FlatKind::Dir { children, .. } = &mut nodes[id].kind {
                *children = ids;
            }
        }
        Kind::File { data, size } => nodes.push(Flat {
            name,
            meta: node.meta,
            parent,
            kind: FlatKind::File { data, size },
        }),
        Kind::Symlink(t) => nodes.push(Flat {
            name,
            meta: node.meta,
            parent,
            kind: FlatKind::Symlink(t),
        }),
    }
    id
}

/// ISO 9660 level 3 identifier of a directory (`NAME`) or file (`NAME.EXT;1`), with `n` > 0
/// giving a deduplicated variant.
pub fn iso_name(name: &str, is_dir: bool, n: u32) -> String {
    let suffix = if n == 0 {
        String::new()
    } else {
        format!("_{n}")
    };
    if is_dir {
        let mut base = d_chars(name, 31);
        base.truncate(31 - suffix.len());
        return format!("{base}{suffix}");
    }
    let (base, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i + 1..]),
        _ => (name, ""),
    };
    let ext = d_chars(ext, 8);
    let room = 30 - 1 - ext.len() - suffix.len();
    let mut base = d_chars(base, room);
    if base.is_empty() && ext.is_empty() {
        base.push('_');
    }
    format!("{base}{suffix}.{ext};1")
}

fn joliet_name(name: &str, is_dir: bool, n: u32) -> Vec<u8> {
    let suffix = if n == 0 {
        String::new()
    } else {
        format!("_{n}")
    };
    let version = if is_dir { 0 } else { 2 };
    let mut units: Vec<u16> = name
        .chars()
        .map(|c| {
            let v = c as u32;
            if !(0x20..=0xFFFF).contains(&v) || matches!(c, '*' | '/' | ':' | ';' | '?' | '\\') {
                u16::from(b'_')
            } else {
                v as u16
            }
        })
        .collect();
    let room = MAX_JOLIET_NAME - version - suffix.len();
    if units.len() + suffix.len() > MAX_JOLIET_NAME - version {
        // Keep the extension when cutting a long name.
        let dot = units.iter().rposition(|&u| u == u16::from(b'.'));
        match dot {
            Some(i) if !is_dir && units.len() - i <= 9 && i > 0 => {
                let ext: Vec<u16> = units[i..].to_vec();
                units.truncate(room.saturating_sub(ext.len()));
                units.extend(ext);
            }
            _ => units.truncate(room),
        }
    }
    units.extend(suffix.encode_utf16());
    if !is_dir {
        units.extend(";1".encode_utf16());
    }
    units.iter().flat_map(|u| u.to_be_bytes()).collect()
}

impl View {
    fn new(nodes: &[Flat], joliet: bool) -> Self {
        let n = nodes.len();
        let mut ids = vec![Vec::new(); n];
        let mut sorted = vec![Vec::new(); n];
        for (i, node) in nodes.iter().enumerate() {
            let FlatKind::Dir { children, .. } = &node.kind else {
                continue;
            };
            let mut taken: BTreeSet<Vec<u8>> = BTreeSet::new();
            let mut kids = Vec::new();
            for &c in children {
                let child = &nodes[c];
                if joliet && matches!(child.kind, FlatKind::Symlink(_)) {
                    continue;
                }
                let is_dir = matches!(child.kind, FlatKind::Dir { .. });
                let mut k = 0u32;
                let id = loop {
                    let id = if joliet {
                        joliet_name(&child.name, is_dir, k)
                    } else {
                        iso_name(&child.name, is_dir, k).into_bytes()
                    };
                    if !taken.contains(&id) {
                        break id;
                    }
                    k += 1;
                };
                taken.insert(id.clone());
                ids[c] = id;
                kids.push(c);
            }
            kids.sort_by(|a, b| ids[*a].cmp(&ids[*b]));
            sorted[i] = kids;
        }
        // Path-table order: by level, then parent number, then identifier (breadth first over
        // sorted children gives exactly that).
        let mut dirs = vec![0usize];
        let mut number = vec![0u16; n];
        number[0] = 1;
        let mut k = 0;
        while k < dirs.len() {
            let d = dirs[k];
            for &c in &sorted[d] {
                if matches!(nodes[c].kind, FlatKind::Dir { .. }) {
                    dirs.push(c);
                    number[c] = dirs.len() as u16;
                }
            }
            k += 1;
        }
        View {
            dirs,
            ids,
            sorted,
            number,
            dir_size: vec![0; n],
            dir_lba: vec![0; n],
            path_table_size: 0,
            l_table: 0,
            m_table: 0,
        }
    }
}

fn round_up(n: u64) -> u64 {
    n.div_ceil(SECTOR) * SECTOR
}

fn sectors(n: u64) -> u64 {
    n.div_ceil(SECTOR)
}

impl Plan {
    fn new(b: IsoBuilder) -> Result<Self> {
        let mut nodes = Vec::new();
        flatten(&mut nodes, String::new(), b.root, 0);
        if nodes.len() > 65_000 {
            return Err(err!(
                LimitExceeded,
                "{} entries; at most 65000",
                nodes.len()
            ));
        }
        let iso = View::new(&nodes, false);
        let joliet = View::new(&nodes, true);
        if iso.dirs.len() > 65_535 {
            return Err(err!(LimitExceeded, "too many directories"));
        }
        let mut plan = Plan {
            volume_id: b.volume_id,
            application_id: b.application_id,
            volume_time: b.volume_time,
            max_extent: b.max_extent,
            file_lba: vec![0; nodes.len()],
            nodes,
            iso,
            joliet,
            ce_lba: 0,
            total_sectors: 0,
        };
        plan.layout()?;
        Ok(plan)
    }

    fn extents(&self, size: u64) -> u64 {
        if size == 0 {
            1
        } else {
            size.div_ceil(self.max_extent)
        }
    }

    fn layout(&mut self) -> Result<()> {
        let mut lba: u64 = 19;
        for joliet in [false, true] {
            let size = self.path_table_len(joliet);
            let v = self.view_mut(joliet);
            v.path_table_size = size;
            v.l_table = lba as u32;
            lba += sectors(size);
            v.m_table = lba as u32;
            lba += sectors(size);
        }
        self.ce_lba = lba as u32;
        lba += 1;
        for joliet in [false, true] {
            let dirs = self.view(joliet).dirs.clone();
            for d in dirs {
                let size = self.dir_len(joliet, d)?;
                let v = self.view_mut(joliet);
                v.dir_size[d] = size;
                v.dir_lba[d] = lba as u32;
                lba += sectors(size);
            }
        }
        // File data in ISO directory order.
        let dirs = self.iso.dirs.clone();
        for d in dirs {
            for &c in &self.iso.sorted[d] {
                if let FlatKind::File { size, .. } = &self.nodes[c].kind
                    && *size > 0
                {
                    self.file_lba[c] = lba as u32;
                    lba += sectors(*size);
                }
            }
        }
        if lba > u32::MAX as u64 {
            return Err(err!(LimitExceeded, "the image would exceed 8 TiB"));
        }
        self.total_sectors = lba as u32;
        Ok(())
    }

    fn view(&self, joliet: bool) -> &View {
        if joliet { &self.joliet } else { &self.iso }
    }

    fn view_mut(&mut self, joliet: bool) -> &mut View {
        if joliet {
            &mut self.joliet
        } else {
            &mut self.iso
        }
    }

    fn path_table_len(&self, joliet: bool) -> u64 {
        let v = self.view(joliet);
        v.dirs
            .iter()
            .map(|&d| {
                let l = if d == 0 { 1 } else { v.ids[d].len() };
                8 + l as u64 + (l as u64 & 1)
            })
            .sum()
    }

    fn path_table(&self, joliet: bool, big_endian: bool) -> Vec<u8> {
        let v = self.view(joliet);
        let mut out = Vec::new();
        for &d in &v.dirs {
            let id: &[u8] = if d == 0 { &[0] } else { &v.ids[d] };
            out.push(id.len() as u8);
            out.push(0);
            let lba = v.dir_lba[d];
            let parent = v.number[self.nodes[d].parent];
            if big_endian {
                out.extend(lba.to_be_bytes());
                out.extend(parent.to_be_bytes());
            } else {
                out.extend(lba.to_le_bytes());
                out.extend(parent.to_le_bytes());
            }
            out.extend(id);
            if id.len() & 1 == 1 {
                out.push(0);
            }
        }
        out
    }

    /// Records of directory `d` in tree `joliet`, each as bytes (without sector padding).
    fn dir_records(&self, joliet: bool, d: usize) -> Result<Vec<Vec<u8>>> {
        let v = self.view(joliet);
        let mut recs = Vec::new();
        let parent = self.nodes[d].parent;
        for (which, node) in [(0u8, d), (1u8, parent)] {
            let su = if joliet {
                Vec::new()
            } else {
                self.rock_ridge(node, d == 0 && which == 0, None)?
            };
            recs.push(record(
                v.dir_lba[node],
                v.dir_size[node],
                self.nodes[node].meta.mtime,
                0x02,
                &[which],
                &su,
            )?);
        }
        for &c in &v.sorted[d] {
            let node = &self.nodes[c];
            let su = if joliet {
                Vec::new()
            } else {
                self.rock_ridge(c, false, Some(&node.name))?
            };
            match &node.kind {
                FlatKind::Dir { .. } => recs.push(
                    record(
                        v.dir_lba[c],
                        v.dir_size[c],
                        node.meta.mtime,
                        0x02,
                        &v.ids[c],
                        &su,
                    )
                    .map_err(|e| name_err(e, &node.name))?,
                ),
                FlatKind::Symlink(_) => recs.push(
                    record(0, 0, node.meta.mtime, 0, &v.ids[c], &su)
                        .map_err(|e| name_err(e, &node.name))?,
                ),
                FlatKind::File { size, .. } => {
                    let n = self.extents(*size);
                    for k in 0..n {
                        let off = k * self.max_extent;
                        let len = (*size - off.min(*size)).min(self.max_extent);
                        let lba = if *size == 0 {
                            0
                        } else {
                            self.file_lba[c] + (off / SECTOR) as u32
                        };
                        let flags = if k + 1 < n { 0x80 } else { 0 };
                        recs.push(
                            record(lba, len, node.meta.mtime, flags, &v.ids[c], &su)
                                .map_err(|e| name_err(e, &node.name))?,
                        );
                    }
                }
            }
        }
        Ok(recs)
    }

    fn dir_len(&self, joliet: bool, d: usize) -> Result<u64> {
        let mut used = 0u64;
        for r in self.dir_records(joliet, d)? {
            let l = r.len() as u64;
            if used % SECTOR + l > SECTOR {
                used = round_up(used);
            }
            used += l;
        }
        Ok(round_up(used))
    }

    fn dir_bytes(&self, joliet: bool, d: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for r in self.dir_records(joliet, d)? {
            let l = r.len() as u64;
            if out.len() as u64 % SECTOR + l > SECTOR {
                out.resize(round_up(out.len() as u64) as usize, 0);
            }
            out.extend(r);
        }
        out.resize(round_up(out.len() as u64) as usize, 0);
        Ok(out)
    }

    /// System use entries of `node` (Rock Ridge); `root_dot` adds SP and the CE to the ER.
    fn rock_ridge(&self, node: usize, root_dot: bool, name: Option<&str>) -> Result<Vec<u8>> {
        let n = &self.nodes[node];
        let mut out = Vec::new();
        if root_dot {
            out.extend([b'S', b'P', 7, 1, 0xBE, 0xEF, 0]);
        }
        let (ftype, nlink) = match &n.kind {
            FlatKind::Dir { children, .. } => {
                let subdirs = children
                    .iter()
                    .filter(|&&c| matches!(self.nodes[c].kind, FlatKind::Dir { .. }))
                    .count() as u32;
                (S_IFDIR, 2 + subdirs)
            }
            FlatKind::File { .. } => (S_IFREG, 1),
            FlatKind::Symlink(_) => (S_IFLNK, 1),
        };
        let mut rr_flags = 0x01 | 0x80; // PX, TF
        if name.is_some() {
            rr_flags |= 0x08;
        }
        if matches!(n.kind, FlatKind::Symlink(_)) && name.is_some() {
            rr_flags |= 0x04;
        }
        out.extend([b'R', b'R', 5, 1, rr_flags]);
        out.extend([b'P', b'X', 36, 1]);
        for v in [
            ftype | (n.meta.mode & 0o7777),
            nlink,
            n.meta.uid,
            n.meta.gid,
        ] {
            out.extend(both32(v));
        }
        out.extend([b'T', b'F', 26, 1, 0x0E]);
        let t = crate::date::iso_dir_date(n.meta.mtime);
        for _ in 0..3 {
            out.extend(t);
        }
        if let Some(name) = name {
            out.extend([b'N', b'M', 5 + name.len() as u8, 1, 0]);
            out.extend(name.as_bytes());
            if let FlatKind::Symlink(target) = &n.kind {
                out.extend(sl_entry(target, name)?);
            }
        }
        if root_dot {
            out.extend([b'C', b'E', 28, 1]);
            out.extend(both32(self.ce_lba));
            out.extend(both32(0));
            out.extend(both32(er_entry().len() as u32));
        }
        Ok(out)
    }

    fn volume_descriptor(&self, joliet: bool) -> Vec<u8> {
        let v = self.view(joliet);
        let mut d = vec![0u8; SECTOR as usize];
        d[0] = if joliet { 2 } else { 1 };
        d[1..6].copy_from_slice(b"CD001");
        d[6] = 1;
        let text = |d: &mut [u8], at: usize, len: usize, s: &str| {
            if joliet {
                let mut units: Vec<u16> = s.encode_utf16().collect();
                units.truncate(len / 2);
                let mut bytes: Vec<u8> = units.iter().flat_map(|u| u.to_be_bytes()).collect();
                while bytes.len() + 2 <= len {
                    bytes.extend([0, 0x20]);
                }
                bytes.resize(len, 0);
                d[at..at + len].copy_from_slice(&bytes);
            } else {
                let mut bytes = s.as_bytes().to_vec();
                bytes.truncate(len);
                bytes.resize(len, b' ');
                d[at..at + len].copy_from_slice(&bytes);
            }
        };
        text(&mut d, 8, 32, "");
        text(&mut d, 40, 32, &self.volume_id);
        d[80..88].copy_from_slice(&both32(self.total_sectors));
        if joliet {
            d[88..91].copy_from_slice(b"%/E");
        }
        d[120..124].copy_from_slice(&both16(1));
        d[124..128].copy_from_slice(&both16(1));
        d[128..132].copy_from_slice(&both16(SECTOR as u16));
        d[132..140].copy_from_slice(&both32(v.path_table_size as u32));
        d[140..144].copy_from_slice(&v.l_table.to_le_bytes());
        d[148..152].copy_from_slice(&v.m_table.to_be_bytes());
        let root = record(
            v.dir_lba[0],
            v.dir_size[0],
            self.nodes[0].meta.mtime,
            0x02,
            &[0],
            &[],
        )
        .unwrap_or_default();
        d[156..156 + root.len()].copy_from_slice(&root);
        text(&mut d, 190, 128, "");
        text(&mut d, 318, 128, "");
        text(&mut d, 446, 128, "");
        text(&mut d, 574, 128, &self.application_id);
        text(&mut d, 702, 37, "");
        text(&mut d, 739, 37, "");
        text(&mut d, 776, 37, "");
        let t = crate::date::iso_volume_date(self.volume_time);
        d[813..830].copy_from_slice(&t);
        d[830..847].copy_from_slice(&t);
        let mut none = [b'0'; 17];
        none[16] = 0;
        d[847..864].copy_from_slice(&none);
        d[864..881].copy_from_slice(&t);
        d[881] = 1;
        d
    }

    fn write(&self, f: &File, path: &Path, progress: &dyn Progress) -> Result<()> {
        let at = |lba: u32| lba as u64 * SECTOR;
        let done = std::cell::Cell::new(0u64);
        let w = |bytes: &[u8], off: u64| {
            f.write_all_at(bytes, off).ctx(path, "writing the ISO")?;
            done.set(done.get() + bytes.len() as u64);
            progress.advance(bytes.len() as u64);
            Ok::<(), crate::Error>(())
        };
        let copy = |src: &File, off: u64, len: u64| {
            copy_file_bytes_progress(src, 0, f, off, len, progress)
                .map(|()| done.set(done.get() + len))
        };
        f.set_len(0).ctx(path, "truncating the output")?;
        w(&self.volume_descriptor(false), 16 * SECTOR)?;
        w(&self.volume_descriptor(true), 17 * SECTOR)?;
        let mut term = vec![0u8; SECTOR as usize];
        term[0] = 255;
        term[1..6].copy_from_slice(b"CD001");
        term[6] = 1;
        w(&term, 18 * SECTOR)?;
        for joliet in [false, true] {
            let v = self.view(joliet);
            w(&self.path_table(joliet, false), at(v.l_table))?;
            w(&self.path_table(joliet, true), at(v.m_table))?;
        }
        w(&er_entry(), at(self.ce_lba))?;
        for joliet in [false, true] {
            let v = self.view(joliet);
            for &d in &v.dirs {
                w(&self.dir_bytes(joliet, d)?, at(v.dir_lba[d]))?;
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let FlatKind::File { data, size } = &node.kind else {
                continue;
            };
            if *size == 0 {
                continue;
            }
            let off = at(self.file_lba[i]);
            match data {
                FileData::Bytes(b) => w(b, off)?,
                FileData::Path(p) => {
                    let src = File::open(p).ctx(p, "opening a file to put in the ISO")?;
                    let len = src.metadata().ctx(p, "reading the file's size")?.len();
                    if len != *size {
                        return Err(err!(
                            Io,
                            "the file changed size during the build ({size} then {len} bytes)"
                        )
                        .with_path(p));
                    }
                    copy(&src, off, *size).ctx(p, "copying the file into the ISO")?;
                }
                FileData::Checked(c) => {
                    copy(&c.open()?, off, *size).ctx(c.path(), "copying the file into the ISO")?
                }
            }
        }
        let total = self.total_sectors as u64 * SECTOR;
        f.set_len(total).ctx(path, "setting the ISO size")?;
        // padding and sector tails, never written
        progress.advance(total.saturating_sub(done.get()));
        Ok(())
    }
}

fn name_err(e: crate::Error, name: &str) -> crate::Error {
    err!(LimitExceeded, "{name:?}: {}", e.message())
}

fn both16(v: u16) -> [u8; 4] {
    let mut b = [0u8; 4];
    b[..2].copy_from_slice(&v.to_le_bytes());
    b[2..].copy_from_slice(&v.to_be_bytes());
    b
}

fn both32(v: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&v.to_le_bytes());
    b[4..].copy_from_slice(&v.to_be_bytes());
    b
}

fn record(lba: u32, size: u64, mtime: i64, flags: u8, id: &[u8], su: &[u8]) -> Result<Vec<u8>> {
    let date = crate::date::iso_dir_date(mtime);
    super::layout::encode_dir_record(id, lba, size as u32, date, flags, su)
}

fn sl_entry(target: &str, name: &str) -> Result<Vec<u8>> {
    let mut comps = Vec::new();
    if target.starts_with('/') {
        comps.extend([0x08u8, 0]);
    }
    for c in target.split('/').filter(|c| !c.is_empty()) {
        match c {
            "." => comps.extend([0x02u8, 0]),
            ".." => comps.extend([0x04u8, 0]),
            _ => {
                comps.push(0);
                comps.push(c.len().min(255) as u8);
                comps.extend(c.as_bytes());
            }
        }
    }
    if comps.len() + 5 > 160 {
        return Err(err!(
            LimitExceeded,
            "symlink {name:?}: target of {} bytes is longer than supported",
            target.len()
        ));
    }
    let mut out = vec![b'S', b'L', 5 + comps.len() as u8, 1, 0];
    out.extend(comps);
    Ok(out)
}

fn er_entry() -> Vec<u8> {
    let id = b"RRIP_1991A";
    let des =
        b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
    let src = b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";
    let mut e = vec![
        b'E',
        b'R',
        (8 + id.len() + des.len() + src.len()) as u8,
        1,
        id.len() as u8,
        des.len() as u8,
        src.len() as u8,
        1,
    ];
    e.extend(id);
    e.extend(des);
    e.extend(src);
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{AtomicOutput, OutputOptions};

    #[test]
    fn iso_names_are_d_characters() {
        assert_eq!(
            iso_name("consul_region.json", false, 0),
            "CONSUL_REGION.JSON;1"
        );
        assert_eq!(iso_name("README", false, 0), "README.;1");
        assert_eq!(iso_name("certs", true, 0), "CERTS");
        assert_eq!(iso_name("a-b.c.d", false, 2), "A_B_C_2.D;1");
        let long = iso_name(&"x".repeat(80), false, 0);
        assert!(long.len() <= 32, "{long}");
        assert_eq!(iso_name(".hidden", false, 0), "_HIDDEN.;1");
    }

    #[test]
    fn joliet_names_are_cut_at_64() {
        let n = joliet_name(&format!("{}.json", "a".repeat(100)), false, 0);
        assert_eq!(n.len(), 128);
        let s: Vec<u16> = n
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        let s = String::from_utf16(&s).unwrap();
        assert!(s.ends_with(".json;1"), "{s}");
    }

    #[test]
    fn same_input_same_bytes_and_sorted_records() {
        let build = || {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("o.iso");
            let mut b = IsoBuilder::new("TEST", Meta::root(0o755, 1_700_000_000)).unwrap();
            b.add_dir("b", Meta::root(0o755, 5)).unwrap();
            b.add_file(
                "b/z.txt",
                FileData::Bytes(b"zz".to_vec()),
                2,
                Meta::root(0o600, 6),
            )
            .unwrap();
            b.add_file(
                "a.txt",
                FileData::Bytes(vec![1; 5000]),
                5000,
                Meta::root(0o644, 7),
            )
            .unwrap();
            b.add_symlink("l", "b/z.txt", Meta::root(0o777, 8)).unwrap();
            let o = AtomicOutput::create(&out, &[], OutputOptions::default()).unwrap();
            let n = b.write(&o, &crate::disk::NoProgress).unwrap();
            o.commit().unwrap();
            let bytes = std::fs::read(&out).unwrap();
            assert_eq!(bytes.len() as u64, n);
            bytes
        };
        let a = build();
        assert_eq!(a, build());
        assert_eq!(&a[16 * 2048 + 1..16 * 2048 + 6], b"CD001");
        assert_eq!(a[17 * 2048], 2);
        assert_eq!(a[18 * 2048], 255);
    }

    #[test]
    fn refuses_long_names_and_duplicates() {
        let mut b = IsoBuilder::new("T", Meta::root(0o755, 0)).unwrap();
        let e = b
            .add_file(
                &"n".repeat(101),
                FileData::Bytes(vec![]),
                0,
                Meta::root(0o644, 0),
            )
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::LimitExceeded);
        b.add_file("x", FileData::Bytes(vec![]), 0, Meta::root(0o644, 0))
            .unwrap();
        let e = b
            .add_file("x", FileData::Bytes(vec![]), 0, Meta::root(0o644, 0))
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        assert!(IsoBuilder::new("", Meta::root(0o755, 0)).is_err());
        assert!(IsoBuilder::new(&"v".repeat(33), Meta::root(0o755, 0)).is_err());
    }

    fn u32le(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }
    fn u32be(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    /// Walks a tree from its root record; checks both-endian fields, sector boundaries and the
    /// order of records. Returns (directory LBA, parent LBA, identifier) of every directory.
    fn walk(img: &[u8], lba: u32, size: u32, parent: u32, out: &mut Vec<(u32, u32, Vec<u8>)>) {
        let start = lba as usize * 2048;
        let mut at = 0usize;
        let mut prev: Option<Vec<u8>> = None;
        let mut n = 0;
        while at < size as usize {
            let len = img[start + at] as usize;
            if len == 0 {
                at = (at / 2048 + 1) * 2048;
                continue;
            }
            assert!(at % 2048 + len <= 2048, "record crosses a sector");
            let r = &img[start + at..start + at + len];
            assert_eq!(u32le(r, 2), u32be(r, 6), "extent both-endian");
            assert_eq!(u32le(r, 10), u32be(r, 14), "size both-endian");
            let id = r[33..33 + r[32] as usize].to_vec();
            if n == 0 {
                assert_eq!(u32le(r, 2), lba, "'.' points at itself");
            } else if n == 1 {
                assert_eq!(u32le(r, 2), parent, "'..' points at the parent");
            } else {
                if let Some(p) = &prev {
                    assert!(p <= &id, "records out of order");
                }
                if r[25] & 2 != 0 {
                    out.push((u32le(r, 2), lba, id.clone()));
                    walk(img, u32le(r, 2), u32le(r, 10), lba, out);
                }
                prev = Some(id);
            }
            n += 1;
            at += len;
        }
    }

    #[test]
    fn records_and_path_tables_are_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.iso");
        let mut b = IsoBuilder::new("T", Meta::root(0o755, 1_700_000_000)).unwrap();
        for d in ["zeta", "alpha", "Mid", "alpha/sub", "alpha/sub/deeper"] {
            b.add_dir(d, Meta::root(0o755, 1)).unwrap();
        }
        for i in 0..120 {
            let p = format!("alpha/file-{i:03}-with-a-long-name-to-fill-sectors.txt");
            b.add_file(
                &p,
                FileData::Bytes(vec![i as u8; i]),
                i as u64,
                Meta::root(0o644, 2),
            )
            .unwrap();
        }
        let o = AtomicOutput::create(&out, &[], OutputOptions::default()).unwrap();
        b.write(&o, &crate::disk::NoProgress).unwrap();
        o.commit().unwrap();
        let img = std::fs::read(&out).unwrap();
        for vd in [16usize, 17] {
            let d = &img[vd * 2048..(vd + 1) * 2048];
            assert_eq!(u32le(d, 80) as usize * 2048, img.len(), "volume space size");
            let root = &d[156..190];
            let (rl, rs) = (u32le(root, 2), u32le(root, 10));
            let mut dirs = vec![(rl, rl, vec![0u8])];
            walk(&img, rl, rs, rl, &mut dirs);
            assert_eq!(dirs.len(), 6);
            // Path tables (L then M) list the same directories with the right parents.
            let pt_size = u32le(d, 132) as usize;
            for (table, big) in [(u32le(d, 140), false), (u32be(d, 148), true)] {
                let t = &img[table as usize * 2048..table as usize * 2048 + pt_size];
                let mut at = 0;
                let mut lbas = Vec::new();
                while at < t.len() {
                    let l = t[at] as usize;
                    let lba = if big {
                        u32be(t, at + 2)
                    } else {
                        u32le(t, at + 2)
                    };
                    let parent = if big {
                        u16::from_be_bytes([t[at + 6], t[at + 7]])
                    } else {
                        u16::from_le_bytes([t[at + 6], t[at + 7]])
                    };
                    let id = t[at + 8..at + 8 + l].to_vec();
                    let parent_lba = if lbas.is_empty() {
                        lba
                    } else {
                        lbas[parent as usize - 1]
                    };
                    assert!(
                        dirs.contains(&(lba, parent_lba, id.clone())),
                        "path table entry {id:?} does not match the tree"
                    );
                    lbas.push(lba);
                    at += 8 + l + (l & 1);
                }
                assert_eq!(lbas.len(), 6);
            }
        }
    }
}
