//! ISO 9660 reader: volume descriptors, directory records, SUSP / Rock Ridge, Joliet, path
//! tables. Everything is bounds-checked against the file; errors name the structure and offset.
//! Symlinks are never followed and directory loops are refused.

use super::layout::{boot_record, dr, pt, vd};
use crate::err;
use crate::error::{Error, IoContext, Result};
use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub use super::layout::{BLOCK, put_both16, put_both32};
/// Largest directory extent accepted (sanity limit checked before allocating).
pub const MAX_DIR_BYTES: u64 = 64 << 20;
/// Largest path table accepted.
pub const MAX_PATH_TABLE: u64 = 16 << 20;
/// Deepest directory nesting walked: a path of more components could not be extracted by any
/// tool on Linux (each component takes at least two bytes of PATH_MAX, 4096), xorriso included.
/// Loops are refused separately, whatever the depth.
pub const MAX_DEPTH: usize = 2048;
/// Most continuation areas followed for one directory record.
pub const MAX_CE_HOPS: usize = 16;

/// Positional reads: all the ISO readers need from where the image lives. Implemented for a
/// [`File`] (`pread`) and for bytes in memory (tests and fuzz targets need no temp files).
pub trait ReadAt: Send + Sync + std::fmt::Debug {
    /// Fills `buf` from byte `off` (an error when the source ends first).
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        FileExt::read_exact_at(self, buf, off)
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        let src = usize::try_from(off)
            .ok()
            .and_then(|o| self.get(o..o.checked_add(buf.len())?))
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// An ISO image opened read-only, with bounds-checked positional reads.
#[derive(Debug)]
pub struct IsoFile {
    src: Box<dyn ReadAt>,
    /// The file, when the image is one (for copy_file_range / reflink fast paths).
    file: Option<File>,
    path: PathBuf,
    len: u64,
}

impl IsoFile {
    /// Opens `path` read-only.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).ctx(path, "opening the ISO")?;
        let meta = file.metadata().ctx(path, "reading the ISO's size")?;
        if meta.is_dir() {
            return Err(io::Error::from(io::ErrorKind::IsADirectory)).ctx(path, "opening the ISO");
        }
        let len = meta.len();
        let dup = file.try_clone().ctx(path, "opening the ISO")?;
        Ok(IsoFile {
            src: Box::new(dup),
            file: Some(file),
            path: path.to_path_buf(),
            len,
        })
    }

    /// An image held in memory; `name` stands for its path in errors.
    pub fn from_bytes(name: &Path, bytes: Vec<u8>) -> Self {
        IsoFile {
            len: bytes.len() as u64,
            src: Box::new(bytes),
            file: None,
            path: name.to_path_buf(),
        }
    }

    /// The file, when the image is one (None for an image in memory).
    pub fn file(&self) -> Option<&File> {
        self.file.as_ref()
    }

    /// The file, for the copy fast paths; an error for an image in memory.
    pub fn require_file(&self) -> Result<&File> {
        self.file.as_ref().ok_or_else(|| {
            err!(Unsupported, "an image in memory has no file to copy from").with_path(&self.path)
        })
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads `len` bytes at `off`, refusing reads past the end (`Truncated`, naming `what`).
    pub fn read(&self, off: u64, len: u64, what: &str) -> Result<Vec<u8>> {
        let end = off
            .checked_add(len)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| {
                err!(
                    Truncated,
                    "{len} bytes needed but the file has {} bytes",
                    self.len
                )
                .with_structure(what.to_string())
                .at(off)
                .with_path(&self.path)
            })?;
        let _ = end;
        let mut buf = vec![0u8; len as usize];
        self.src.read_exact_at(&mut buf, off).map_err(|e| {
            Error::io(e, format!("reading {what}"))
                .at(off)
                .with_path(&self.path)
        })?;
        Ok(buf)
    }

    /// Error helper naming this file.
    pub fn bad(&self, e: Error, what: &str, off: u64) -> Error {
        e.with_structure(what.to_string())
            .at(off)
            .with_path(&self.path)
    }
}

pub use crate::bytes::{be32, le16, le32};

/// Which name space a volume descriptor's tree uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TreeKind {
    /// The primary volume descriptor (ISO 9660 names, Rock Ridge when present).
    Primary,
    /// A Joliet supplementary volume descriptor (UCS-2 big-endian names).
    Joliet,
    /// Another supplementary or enhanced volume descriptor (ISO 9660:1999 names).
    Enhanced,
}

/// One primary or supplementary volume descriptor.
#[derive(Debug, Clone)]
pub struct VolumeDescriptor {
    /// Sector number of the descriptor.
    pub sector: u64,
    /// Tree kind.
    pub kind: TreeKind,
    /// Volume identifier (decoded).
    pub volume_id: String,
    /// System identifier (decoded).
    pub system_id: String,
    /// Volume space size in blocks.
    pub volume_space: u32,
    /// Path table size in bytes.
    pub path_table_size: u32,
    /// Type-L path table and optional one (0 when absent).
    pub l_tables: [u32; 2],
    /// Type-M path table and optional one.
    pub m_tables: [u32; 2],
    /// Root directory record.
    pub root: DirRecord,
    /// Joliet UCS level (1-3) when Joliet.
    pub joliet_level: Option<u8>,
}

/// Volume descriptors of an image.
#[derive(Debug, Clone)]
pub struct Volume {
    /// The primary volume descriptor.
    pub primary: VolumeDescriptor,
    /// Supplementary / enhanced descriptors (Joliet first when present, in disc order).
    pub supplementary: Vec<VolumeDescriptor>,
    /// El Torito boot catalog LBA when a boot record is present.
    pub boot_catalog: Option<u32>,
    /// Sector of the set terminator.
    pub terminator: u64,
}

impl Volume {
    /// All trees: primary first.
    pub fn trees(&self) -> impl Iterator<Item = &VolumeDescriptor> {
        std::iter::once(&self.primary).chain(self.supplementary.iter())
    }

    /// The Joliet descriptor when present.
    pub fn joliet(&self) -> Option<&VolumeDescriptor> {
        self.supplementary
            .iter()
            .find(|v| v.kind == TreeKind::Joliet)
    }
}

fn trim_id(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .trim_end_matches([' ', '\0'])
        .to_string()
}

/// Decodes UCS-2 big-endian (Joliet), trailing spaces/NULs trimmed.
pub fn ucs2_decode(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
        .trim_end_matches([' ', '\0'])
        .to_string()
}

/// Encodes `s` as UCS-2 big-endian (characters outside the BMP become `_`).
pub fn ucs2_encode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 2);
    for c in s.chars() {
        let u = if (c as u32) < 0x10000 {
            c as u32 as u16
        } else {
            b'_' as u16
        };
        out.extend_from_slice(&u.to_be_bytes());
    }
    out
}

/// Parses the descriptor set starting at sector 16 (pure: `read` gives one sector).
pub fn parse_volume(iso: &IsoFile) -> Result<Volume> {
    let mut primary = None;
    let mut supplementary = Vec::new();
    let mut boot_catalog = None;
    let first = super::layout::FIRST_DESCRIPTOR_SECTOR;
    for sector in first..first + 256 {
        let off = sector * BLOCK;
        if off + BLOCK > iso.len() {
            return Err(iso.bad(
                err!(
                    Truncated,
                    "the volume descriptor set ends without a terminator"
                ),
                "volume descriptor",
                off,
            ));
        }
        let d = iso.read(off, BLOCK, "volume descriptor")?;
        if &d[vd::ID..vd::ID + 5] != vd::MAGIC {
            if sector == first {
                return Err(iso.bad(
                    err!(BadSignature, "no CD001 signature: not an ISO 9660 image"),
                    "primary volume descriptor",
                    off,
                ));
            }
            return Err(iso.bad(
                err!(
                    BadSignature,
                    "descriptor without CD001 before the set terminator"
                ),
                "volume descriptor",
                off,
            ));
        }
        let id = &d[boot_record::SYSTEM_ID..boot_record::SYSTEM_ID + 23];
        match d[vd::KIND] {
            vd::BOOT_RECORD if id == boot_record::SYSTEM_ID_TEXT => {
                boot_catalog = Some(le32(&d, boot_record::CATALOG_LBA));
            }
            vd::PRIMARY | vd::SUPPLEMENTARY => {
                let desc = parse_vd(iso, &d, sector)?;
                if d[vd::KIND] == vd::PRIMARY {
                    if primary.is_none() {
                        primary = Some(desc);
                    }
                } else {
                    supplementary.push(desc);
                }
            }
            vd::TERMINATOR => {
                let primary = primary.ok_or_else(|| {
                    iso.bad(
                        err!(
                            NotFound,
                            "no primary volume descriptor before the terminator"
                        ),
                        "volume descriptor set",
                        first * BLOCK,
                    )
                })?;
                supplementary
                    .sort_by_key(|v: &VolumeDescriptor| (v.kind != TreeKind::Joliet, v.sector));
                return Ok(Volume {
                    primary,
                    supplementary,
                    boot_catalog,
                    terminator: sector,
                });
            }
            _ => {}
        }
    }
    Err(iso.bad(
        err!(AbsurdSize, "more than 256 volume descriptors"),
        "volume descriptor set",
        first * BLOCK,
    ))
}

fn parse_vd(iso: &IsoFile, d: &[u8], sector: u64) -> Result<VolumeDescriptor> {
    let off = sector * BLOCK;
    let block_size = le16(d, vd::BLOCK_SIZE);
    if block_size as u64 != BLOCK {
        return Err(iso.bad(
            err!(
                Unsupported,
                "logical block size {block_size}, only 2048 is supported"
            ),
            "volume descriptor",
            off + vd::BLOCK_SIZE as u64,
        ));
    }
    let esc = &d[vd::ESCAPES..vd::ESCAPES + 3];
    let joliet_level = match (d[vd::KIND] == vd::SUPPLEMENTARY, esc) {
        (true, b"%/@") => Some(1),
        (true, b"%/C") => Some(2),
        (true, b"%/E") => Some(3),
        _ => None,
    };
    let kind = if d[vd::KIND] == vd::PRIMARY {
        TreeKind::Primary
    } else if joliet_level.is_some() {
        TreeKind::Joliet
    } else {
        TreeKind::Enhanced
    };
    let (vol, sys) = (
        &d[vd::VOLUME_ID..vd::VOLUME_ID + 32],
        &d[vd::SYSTEM_ID..vd::SYSTEM_ID + 32],
    );
    let (volume_id, system_id) = if kind == TreeKind::Joliet {
        (ucs2_decode(vol), ucs2_decode(sys))
    } else {
        (trim_id(vol), trim_id(sys))
    };
    let root_at = off + vd::ROOT as u64;
    let root = parse_root_record(&d[vd::ROOT..vd::ROOT + vd::ROOT_LEN], root_at)
        .map_err(|e| iso.bad(e, "root directory record", root_at))?;
    if !root.is_dir() {
        return Err(iso.bad(
            err!(BadField, "the root directory record is not a directory"),
            "root directory record",
            root_at,
        ));
    }
    Ok(VolumeDescriptor {
        sector,
        kind,
        volume_id,
        system_id,
        volume_space: le32(d, vd::SPACE_SIZE),
        path_table_size: le32(d, vd::PATH_TABLE_SIZE),
        l_tables: [le32(d, vd::L_TABLE), le32(d, vd::L_TABLE_OPT)],
        m_tables: [be32(d, vd::M_TABLE), be32(d, vd::M_TABLE_OPT)],
        root,
        joliet_level,
    })
}

/// One directory record, as found on disc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirRecord {
    /// Absolute byte offset of the record in the image.
    pub offset: u64,
    /// The record's bytes.
    pub raw: Vec<u8>,
    /// Extent LBA.
    pub extent: u32,
    /// Data length.
    pub size: u32,
    /// File flags (2 = directory, 0x80 = more extents follow).
    pub flags: u8,
    /// File identifier bytes.
    pub ident: Vec<u8>,
}

impl DirRecord {
    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        self.flags & dr::FLAG_DIR != 0
    }
    /// The system use area.
    pub fn system_use(&self) -> &[u8] {
        self.raw.get(self.su_start()..).unwrap_or(&[])
    }
    /// Start of the system use area in `raw`.
    pub fn su_start(&self) -> usize {
        super::layout::dr_system_use_start(self.raw[dr::NAME_LEN] as usize)
    }
    /// True for `.` (identifier 0x00).
    pub fn is_dot(&self) -> bool {
        self.ident == [0]
    }
    /// True for `..` (identifier 0x01).
    pub fn is_dotdot(&self) -> bool {
        self.ident == [1]
    }
}

/// Parses one directory record from `b` (exactly the record's bytes or more).
pub fn parse_record(b: &[u8], offset: u64) -> Result<DirRecord> {
    if b.is_empty() {
        return Err(err!(Truncated, "empty directory record"));
    }
    let len = b[dr::LEN] as usize;
    if len < dr::MIN_LEN || len > b.len() {
        return Err(err!(
            BadField,
            "directory record length {len} (needs {}..={})",
            dr::MIN_LEN,
            b.len()
        ));
    }
    let nlen = b[dr::NAME_LEN] as usize;
    if nlen == 0 || dr::NAME + nlen > len {
        return Err(err!(
            BadField,
            "file identifier length {nlen} does not fit the record of {len} bytes"
        ));
    }
    Ok(DirRecord {
        offset,
        raw: b[..len].to_vec(),
        extent: le32(b, dr::EXTENT),
        size: le32(b, dr::SIZE),
        flags: b[dr::FLAGS],
        ident: b[dr::NAME..dr::NAME + nlen].to_vec(),
    })
}

/// Parses the 34-byte root directory record field of a volume descriptor. Its length byte may
/// say more than 34 (real CSRG BSD CDs say 68): the field holds 34 bytes whatever it says, and
/// the root's identifier is one byte, so the rest is ignored (as xorriso and libarchive do).
pub fn parse_root_record(field: &[u8], offset: u64) -> Result<DirRecord> {
    if field.len() < vd::ROOT_LEN || (field[dr::LEN] as usize) < dr::MIN_LEN {
        return Err(err!(
            BadField,
            "directory record length {} (needs at least 34)",
            field.first().copied().unwrap_or(0)
        ));
    }
    let mut r = parse_record(&[&field[..vd::ROOT_LEN], &[0u8; 255][..]].concat(), offset)?;
    r.raw.truncate(vd::ROOT_LEN);
    Ok(r)
}

/// Splits a directory extent into its records (records never cross a block boundary; a zero
/// length byte skips to the next block).
pub fn parse_dir_records(data: &[u8], base: u64) -> Result<Vec<DirRecord>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let len = data[pos] as usize;
        let block_end = (pos / BLOCK as usize + 1) * BLOCK as usize;
        if len == 0 {
            pos = block_end;
            continue;
        }
        let end = pos + len;
        if end > block_end.min(data.len()) {
            return Err(err!(
                BadField,
                "directory record of {len} bytes crosses a block boundary"
            )
            .with_structure("directory record")
            .at(base + pos as u64));
        }
        let r = parse_record(&data[pos..end], base + pos as u64)
            .map_err(|e| e.with_structure("directory record").at(base + pos as u64))?;
        out.push(r);
        pos = end;
    }
    Ok(out)
}

/// Rock Ridge / SUSP facts about one record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RockRidge {
    /// Alternate name (NM).
    pub name: Option<String>,
    /// POSIX mode (PX).
    pub mode: Option<u32>,
    /// Link count (PX).
    pub nlink: Option<u32>,
    /// uid, gid (PX).
    pub uid_gid: Option<(u32, u32)>,
    /// File serial number (PX, RRIP 1.12).
    pub ino: Option<u32>,
    /// Symlink target (SL).
    pub symlink: Option<String>,
    /// Modification time (TF), as the 7 or 17 raw bytes.
    pub mtime: Option<Vec<u8>>,
    /// Device number (PN): high and low 32 bits.
    pub rdev: Option<(u32, u32)>,
    /// zisofs compression (ZF): the stored bytes are a zisofs stream of this many bytes.
    pub zf: Option<super::zisofs::Zf>,
    /// An ER entry naming Rock Ridge (RRIP_1991A, IEEE_P1282, IEEE_1282), or an RR entry.
    pub rrip_declared: bool,
    /// RE: this record is a relocated directory's placeholder target (hide it).
    pub relocated: bool,
    /// CL: the directory relocated elsewhere (LBA).
    pub child_link: Option<u32>,
    /// SP found (root `.` only): bytes to skip.
    pub sp_skip: Option<u8>,
    /// Any RR field at all.
    pub any: bool,
    /// End (byte offset) of the furthest continuation area read for this record.
    pub ce_end: u64,
}

/// Parses the SUSP entries of a record, following CE continuation areas (bounded).
pub fn parse_susp(iso: &IsoFile, su: &[u8], skip: usize, rec_off: u64) -> Result<RockRidge> {
    let mut acc = SuspAcc::default();
    let mut area: Vec<u8> = su.get(skip..).unwrap_or(&[]).to_vec();
    let mut area_off = rec_off;
    let mut hops = 0;
    loop {
        match acc.area(iso, &area, area_off)? {
            Some((lba, off, len)) if hops < MAX_CE_HOPS => {
                hops += 1;
                if off as u64 >= BLOCK || len as u64 > BLOCK * 4 {
                    return Err(
                        err!(BadField, "continuation area offset {off} length {len}")
                            .with_structure("SUSP CE entry")
                            .at(rec_off)
                            .with_path(iso.path()),
                    );
                }
                area_off = lba as u64 * BLOCK + off as u64;
                acc.rr.ce_end = acc.rr.ce_end.max(area_off + len as u64);
                area = iso.read(area_off, len as u64, "SUSP continuation area")?;
            }
            Some(_) => {
                return Err(err!(
                    AbsurdSize,
                    "more than {MAX_CE_HOPS} chained continuation areas"
                )
                .with_structure("SUSP CE entry")
                .at(rec_off)
                .with_path(iso.path()));
            }
            None => break,
        }
    }
    let SuspAcc {
        mut rr, name, link, ..
    } = acc;
    rr.name = name;
    rr.symlink = link.finish();
    Ok(rr)
}

/// What the SUSP entries of one record (its system use area and continuation areas) say.
#[derive(Default)]
struct SuspAcc {
    rr: RockRidge,
    /// The NM name, gathered over continued entries.
    name: Option<String>,
    link: SlBuilder,
}

impl SuspAcc {
    /// The entries of one area (at absolute offset `area_off`), up to ST or its end. Returns
    /// the continuation area a CE entry points to: (LBA, offset, length).
    fn area(
        &mut self,
        iso: &IsoFile,
        area: &[u8],
        area_off: u64,
    ) -> Result<Option<(u32, u32, u32)>> {
        let mut pos = 0usize;
        let mut next = None;
        while pos + 4 <= area.len() {
            let sig = [area[pos], area[pos + 1]];
            let len = area[pos + 2] as usize;
            if len < 4 || pos + len > area.len() {
                if sig == [0, 0] {
                    break;
                }
                return Err(err!(
                    BadField,
                    "SUSP entry {:?} of length {len} overruns the area",
                    String::from_utf8_lossy(&sig)
                )
                .with_structure("SUSP entry")
                .at(area_off + pos as u64)
                .with_path(iso.path()));
            }
            let e = &area[pos + 4..pos + len];
            match &sig {
                b"ST" => break,
                b"CE" if e.len() >= 24 => next = Some((le32(e, 0), le32(e, 8), le32(e, 16))),
                b"ZF" => {
                    self.rr.any = true;
                    self.rr.zf = Some(super::zisofs::Zf::parse(e).map_err(|x| {
                        x.with_structure("Rock Ridge ZF entry")
                            .at(area_off + pos as u64)
                            .with_path(iso.path())
                    })?);
                }
                _ => self.entry(sig, e),
            }
            pos += len;
        }
        Ok(next)
    }

    /// One SUSP / Rock Ridge entry other than ST, CE and ZF: `e` is its data after the 4-byte
    /// header (signature, length, version). Unknown or short entries are skipped.
    fn entry(&mut self, sig: [u8; 2], e: &[u8]) {
        let rr = &mut self.rr;
        match &sig {
            b"SP" if e.len() >= 3 => rr.sp_skip = Some(e[2]),
            b"PX" if e.len() >= 32 => {
                rr.any = true;
                rr.mode = Some(le32(e, 0));
                rr.nlink = Some(le32(e, 8));
                rr.uid_gid = Some((le32(e, 16), le32(e, 24)));
                if e.len() >= 40 {
                    rr.ino = Some(le32(e, 32));
                }
            }
            b"NM" if !e.is_empty() => {
                rr.any = true;
                // CURRENT / PARENT flags (bits 1, 2) name no component
                if e[0] & 0x06 == 0 {
                    let name = self.name.get_or_insert_with(String::new);
                    name.push_str(&String::from_utf8_lossy(&e[1..]));
                }
            }
            b"SL" if !e.is_empty() => {
                rr.any = true;
                self.link.entry(e);
            }
            b"PN" if e.len() >= 16 => {
                rr.any = true;
                rr.rdev = Some((le32(e, 0), le32(e, 8)));
            }
            b"ER" if e.len() >= 4 => {
                let id = e.get(4..4 + e[0] as usize).unwrap_or(&[]);
                if [&b"RRIP_1991A"[..], b"IEEE_P1282", b"IEEE_1282"].contains(&id) {
                    rr.rrip_declared = true;
                }
            }
            b"TF" if !e.is_empty() => {
                rr.any = true;
                let flags = e[0];
                let w = if flags & 0x80 != 0 { 17 } else { 7 };
                // creation (bit 0) comes before modify (bit 1)
                let idx = if flags & 1 != 0 { 1 } else { 0 };
                if flags & 2 != 0 && (idx + 1) * w < e.len() {
                    rr.mtime = Some(e[1 + idx * w..1 + (idx + 1) * w].to_vec());
                }
            }
            b"RE" => {
                rr.any = true;
                rr.relocated = true
            }
            b"CL" if e.len() >= 8 => {
                rr.any = true;
                rr.child_link = Some(le32(e, 0))
            }
            b"RR" => {
                rr.any = true;
                rr.rrip_declared = true;
            }
            _ => {}
        }
    }
}

/// Builds a symlink target from SL entries the way libisofs (xorriso) does: a separator is put
/// before each new component unless the text already ends with `/`, so a ROOT component in the
/// middle (the old mkhybrid encoding) adds an empty component (`.///file`), and an empty
/// component adds a separator only.
#[derive(Debug, Default)]
struct SlBuilder {
    text: Option<String>,
    /// The previous component continues in the next one (its flag bit 0).
    continues: bool,
}

impl SlBuilder {
    /// Adds the components of one SL entry body (flags byte, then components).
    fn entry(&mut self, e: &[u8]) {
        let mut p = 1usize;
        while p + 2 <= e.len() {
            let (cflags, clen) = (e[p], e[p + 1] as usize);
            let Some(comp) = e.get(p + 2..p + 2 + clen) else {
                break;
            };
            let comp: std::borrow::Cow<str> = match cflags & 0x0e {
                0x02 => ".".into(),
                0x04 => "..".into(),
                0x08 => "/".into(),
                _ => String::from_utf8_lossy(comp),
            };
            match self.text.as_mut() {
                None => self.text = Some(comp.into_owned()),
                Some(t) => {
                    if !self.continues && !t.ends_with('/') {
                        t.push('/');
                    }
                    t.push_str(&comp);
                }
            }
            self.continues = cflags & 0x01 != 0;
            p += 2 + clen;
        }
    }

    fn finish(self) -> Option<String> {
        self.text
    }
}

/// What a directory entry is (Rock Ridge mode, or the directory flag without Rock Ridge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// A block device node.
    Block,
    /// A character device node.
    Char,
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
}

impl std::fmt::Display for NodeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            NodeKind::File => "file",
            NodeKind::Dir => "dir",
            NodeKind::Symlink => "symlink",
            NodeKind::Block => "block",
            NodeKind::Char => "char",
            NodeKind::Fifo => "fifo",
            NodeKind::Socket => "socket",
        };
        f.pad(s)
    }
}

/// One name in a directory (multi-extent files grouped).
#[derive(Debug, Clone)]
pub struct Entry {
    /// Display name (Rock Ridge, Joliet or ISO 9660 without version).
    pub name: String,
    /// The record(s); more than one for multi-extent files.
    pub records: Vec<DirRecord>,
    /// Rock Ridge facts (primary tree with RR).
    pub rr: RockRidge,
}

impl Entry {
    /// The first record.
    pub fn rec(&self) -> &DirRecord {
        &self.records[0]
    }
    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        self.rec().is_dir() || self.rr.child_link.is_some()
    }
    /// True for a symlink.
    pub fn is_symlink(&self) -> bool {
        self.rr.symlink.is_some()
            || self
                .rr
                .mode
                .map(|m| m & 0o170000 == 0o120000)
                .unwrap_or(false)
    }
    /// What the entry is: symlink and directory first (as they are walked), then the file
    /// type of the Rock Ridge mode.
    pub fn kind(&self) -> NodeKind {
        if self.is_symlink() {
            return NodeKind::Symlink;
        }
        if self.is_dir() {
            return NodeKind::Dir;
        }
        match self.rr.mode.map(|m| m & 0o170000) {
            Some(0o060000) => NodeKind::Block,
            Some(0o020000) => NodeKind::Char,
            Some(0o010000) => NodeKind::Fifo,
            Some(0o140000) => NodeKind::Socket,
            _ => NodeKind::File,
        }
    }
    /// Total size as stored (compressed for zisofs).
    pub fn size(&self) -> u64 {
        self.records.iter().map(|r| r.size as u64).sum()
    }
    /// Size of the content (the uncompressed size for zisofs).
    pub fn content_size(&self) -> u64 {
        match &self.rr.zf {
            Some(z) => z.size as u64,
            None => self.size(),
        }
    }
    /// Directory extent (following a Rock Ridge CL relocation).
    pub fn dir_extent(&self) -> u32 {
        self.rr.child_link.unwrap_or(self.rec().extent)
    }
}

/// A directory's records read from disc.
#[derive(Debug, Clone)]
pub struct Directory {
    /// Extent LBA.
    pub extent: u32,
    /// Size in bytes.
    pub size: u32,
    /// `.`
    pub dot: DirRecord,
    /// `..`
    pub dotdot: DirRecord,
    /// The other entries, in disc order.
    pub entries: Vec<Entry>,
}

/// Reads a tree's facts: which name space, whether Rock Ridge is on, and the SUSP skip.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The descriptor.
    pub vd: VolumeDescriptor,
    /// Rock Ridge in use (primary only).
    pub rock_ridge: bool,
    /// SUSP bytes to skip (from SP).
    pub susp_skip: usize,
}

impl Tree {
    /// Opens the tree of `vd`, detecting Rock Ridge from the root's `.` record.
    pub fn new(iso: &IsoFile, vd: &VolumeDescriptor) -> Result<Self> {
        let mut t = Tree {
            vd: vd.clone(),
            rock_ridge: false,
            susp_skip: 0,
        };
        if vd.kind == TreeKind::Primary {
            let d = t.read_dir(iso, vd.root.extent, vd.root.size)?;
            let su = d.dot.system_use();
            if su.len() >= 7 && &su[0..2] == b"SP" && su[4] == 0xBE && su[5] == 0xEF {
                // SUSP is on; Rock Ridge is on when the root's `.` declares it (ER, or the RRIP
                // 1.09 RR entry), as libisofs decides: a PX without a declaration is ignored.
                t.susp_skip = su[6] as usize;
                t.rock_ridge = parse_susp(iso, su, 0, d.dot.offset)?.rrip_declared;
            }
        }
        Ok(t)
    }

    /// Decodes a record's identifier into a display name (no RR).
    pub fn plain_name(&self, ident: &[u8], is_dir: bool) -> String {
        let s = if self.vd.kind == TreeKind::Joliet {
            ucs2_decode(ident)
        } else {
            String::from_utf8_lossy(ident).to_string()
        };
        let mut s = match s.rfind(';') {
            Some(i) if !is_dir => s[..i].to_string(),
            _ => s,
        };
        if self.vd.kind != TreeKind::Joliet && s.ends_with('.') && !is_dir {
            s.pop();
        }
        s
    }

    /// Reads and parses one directory extent.
    pub fn read_dir(&self, iso: &IsoFile, extent: u32, size: u32) -> Result<Directory> {
        let off = extent as u64 * BLOCK;
        if size as u64 > MAX_DIR_BYTES || size < 68 {
            return Err(iso.bad(
                err!(AbsurdSize, "directory extent of {size} bytes"),
                "directory",
                off,
            ));
        }
        let data = iso.read(off, size as u64, "directory extent")?;
        let recs = parse_dir_records(&data, off).map_err(|e| e.with_path(iso.path()))?;
        let mut it = recs.into_iter();
        let dot = it.next().filter(|r| r.is_dot()).ok_or_else(|| {
            iso.bad(
                err!(BadField, "directory does not start with '.'"),
                "directory",
                off,
            )
        })?;
        let dotdot = it.next().filter(|r| r.is_dotdot()).ok_or_else(|| {
            iso.bad(
                err!(BadField, "directory has no '..' second record"),
                "directory",
                off,
            )
        })?;
        let mut entries: Vec<Entry> = Vec::new();
        let mut pending: Option<Entry> = None;
        for r in it {
            if r.is_dot() || r.is_dotdot() {
                continue;
            }
            if let Some(p) = pending.as_mut() {
                p.records.push(r.clone());
                if r.flags & 0x80 == 0 {
                    entries.push(pending.take().expect("pending set"));
                }
                continue;
            }
            let rr = if self.rock_ridge {
                parse_susp(iso, r.system_use(), self.susp_skip, r.offset)?
            } else {
                RockRidge::default()
            };
            let name = rr
                .name
                .clone()
                .unwrap_or_else(|| self.plain_name(&r.ident, r.is_dir()));
            if name.is_empty() || name == "." || name == ".." || name.contains('/') {
                return Err(iso.bad(
                    err!(BadField, "invalid file name {name:?}"),
                    "directory record",
                    r.offset,
                ));
            }
            let more = r.flags & 0x80 != 0;
            let e = Entry {
                name,
                records: vec![r],
                rr,
            };
            if more {
                pending = Some(e);
            } else {
                entries.push(e);
            }
        }
        if let Some(p) = pending {
            entries.push(p);
        }
        Ok(Directory {
            extent,
            size,
            dot,
            dotdot,
            entries,
        })
    }

    /// Size of a directory entry's extent: a Rock Ridge relocated directory (CL) gives its size
    /// in the `.` record at the relocation target, not in the placeholder.
    pub fn dir_size(&self, iso: &IsoFile, e: &Entry) -> Result<u32> {
        match e.rr.child_link {
            Some(ext) => {
                let dot = iso.read(
                    ext as u64 * BLOCK,
                    dr::MIN_LEN as u64,
                    "relocated directory",
                )?;
                Ok(le32(&dot, dr::SIZE))
            }
            None => Ok(e.rec().size),
        }
    }

    /// The root directory.
    pub fn root(&self, iso: &IsoFile) -> Result<Directory> {
        self.read_dir(iso, self.vd.root.extent, self.vd.root.size)
    }

    /// Looks `path` up (absolute, `/`-separated). Never follows symlinks. Returns the parent
    /// directory and the entry (None when the last component is missing but the parent exists).
    pub fn lookup(&self, iso: &IsoFile, path: &str) -> Result<Lookup> {
        let comps: Vec<&str> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let mut dir = self.root(iso)?;
        let mut seen = HashSet::new();
        seen.insert(dir.extent);
        if comps.is_empty() {
            return Ok(Lookup::Root(dir));
        }
        for (i, c) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let found = dir
                .entries
                .iter()
                .position(|e| self.name_matches(&e.name, c));
            match found {
                None if last => return Ok(Lookup::Missing { parent: dir }),
                None => {
                    return Err(err!(NotFound, "{path}: no {c:?} in the ISO").with_path(iso.path()));
                }
                Some(ix) if last => {
                    return Ok(Lookup::Found {
                        parent: dir,
                        index: ix,
                    });
                }
                Some(ix) => {
                    let e = &dir.entries[ix];
                    if e.is_symlink() || !e.is_dir() {
                        return Err(err!(
                            NotFound,
                            "{path}: {c:?} is not a directory (symlinks are not followed)"
                        )
                        .with_path(iso.path()));
                    }
                    let ext = e.dir_extent();
                    if !seen.insert(ext) {
                        return Err(iso.bad(
                            err!(BadField, "directory loop at {c:?}"),
                            "directory",
                            ext as u64 * BLOCK,
                        ));
                    }
                    dir = self.read_dir(iso, ext, self.dir_size(iso, e)?)?;
                }
            }
        }
        unreachable!("the loop returns on its last component")
    }

    /// Name comparison of this tree: exact for Rock Ridge and Joliet, case-insensitive for
    /// plain ISO 9660 names.
    pub fn name_matches(&self, have: &str, want: &str) -> bool {
        if self.rock_ridge || self.vd.kind == TreeKind::Joliet {
            have == want
        } else {
            have.eq_ignore_ascii_case(want)
        }
    }

    /// Walks the tree depth-first (no symlink following, loops refused), calling `f` with each
    /// entry's path, the entry and the directory holding it.
    pub fn walk(
        &self,
        iso: &IsoFile,
        f: &mut dyn FnMut(&str, &Entry, &Directory) -> Result<()>,
    ) -> Result<()> {
        let root = self.root(iso)?;
        let mut seen = HashSet::new();
        seen.insert(root.extent);
        self.walk_dir(iso, &root, "", 0, &mut seen, f)
    }

    fn walk_dir(
        &self,
        iso: &IsoFile,
        dir: &Directory,
        prefix: &str,
        depth: usize,
        seen: &mut HashSet<u32>,
        f: &mut dyn FnMut(&str, &Entry, &Directory) -> Result<()>,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(iso.bad(
                err!(LimitExceeded, "directories nested deeper than {MAX_DEPTH}"),
                "directory",
                dir.extent as u64 * BLOCK,
            ));
        }
        for e in &dir.entries {
            if e.rr.relocated {
                continue;
            }
            let p = format!("{prefix}/{}", e.name);
            f(&p, e, dir)?;
            if e.is_dir() && !e.is_symlink() {
                let ext = e.dir_extent();
                if !seen.insert(ext) {
                    return Err(iso.bad(
                        err!(
                            BadField,
                            "directory loop: {p} points back to an ancestor or a visited directory"
                        ),
                        "directory record",
                        e.rec().offset,
                    ));
                }
                let sub = self.read_dir(iso, ext, self.dir_size(iso, e)?)?;
                self.walk_dir(iso, &sub, &p, depth + 1, seen, f)?;
            }
        }
        Ok(())
    }
}

/// Result of [`Tree::lookup`].
#[derive(Debug)]
pub enum Lookup {
    /// The path is the root.
    Root(Directory),
    /// Found: `parent.entries[index]`.
    Found {
        /// Directory holding the entry.
        parent: Directory,
        /// Index in `parent.entries`.
        index: usize,
    },
    /// The parent exists, the last component does not.
    Missing {
        /// The parent directory.
        parent: Directory,
    },
}

/// Reads a path table (bounded) and returns its bytes.
pub fn read_path_table(iso: &IsoFile, lba: u32, size: u32) -> Result<Vec<u8>> {
    if size as u64 > MAX_PATH_TABLE {
        return Err(iso.bad(
            err!(AbsurdSize, "path table of {size} bytes"),
            "path table",
            lba as u64 * BLOCK,
        ));
    }
    iso.read(lba as u64 * BLOCK, size as u64, "path table")
}

/// Iterates the entries of a path table: (offset of the extent field, extent).
pub fn path_table_extents(t: &[u8], big_endian: bool) -> Result<Vec<(usize, u32)>> {
    let mut out = Vec::new();
    let mut p = 0usize;
    while p + pt::NAME <= t.len() {
        let nlen = t[p + pt::NAME_LEN] as usize;
        if nlen == 0 {
            break;
        }
        let at = p + pt::EXTENT;
        out.push((at, if big_endian { be32(t, at) } else { le32(t, at) }));
        p += super::layout::pt_record_len(nlen);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &[u8], extent: u32, size: u32, flags: u8, su: &[u8]) -> Vec<u8> {
        let mut len = 33 + name.len();
        if len % 2 == 1 {
            len += 1;
        }
        len += su.len();
        let mut r = vec![0u8; len];
        r[0] = len as u8;
        put_both32(&mut r, 2, extent);
        put_both32(&mut r, 10, size);
        r[25] = flags;
        put_both16(&mut r, 28, 1);
        r[32] = name.len() as u8;
        r[33..33 + name.len()].copy_from_slice(name);
        let s = len - su.len();
        r[s..].copy_from_slice(su);
        r
    }

    /// SL entry body (flags byte 0) with `comps` as (component flags, text).
    fn sl(comps: &[(u8, &[u8])]) -> Vec<u8> {
        let mut e = vec![0u8];
        for (f, t) in comps {
            e.push(*f);
            e.push(t.len() as u8);
            e.extend_from_slice(t);
        }
        e
    }

    fn link(entries: &[Vec<u8>]) -> Option<String> {
        let mut b = SlBuilder::default();
        for e in entries {
            b.entry(e);
        }
        b.finish()
    }

    #[test]
    fn symlinks_are_built_as_libisofs_builds_them() {
        // old mkhybrid: ROOT in the middle is an empty component (libarchive's rockridge.iso)
        let e = sl(&[(2, b""), (8, b""), (8, b""), (0, b"file")]);
        assert_eq!(link(&[e]).as_deref(), Some(".///file"));
        let e = sl(&[(8, b""), (0, b"tmp"), (8, b""), (4, b"")]);
        assert_eq!(link(&[e]).as_deref(), Some("/tmp//.."));
        // empty components add a separator at most (rockridge_new.iso)
        let e = sl(&[(2, b""), (0, b""), (0, b""), (0, b"file")]);
        assert_eq!(link(&[e]).as_deref(), Some("./file"));
        let e = sl(&[(8, b""), (0, b"tmp"), (0, b""), (4, b""), (0, b"")]);
        assert_eq!(link(&[e]).as_deref(), Some("/tmp/../"));
        // a component continued in the next SL entry
        let a = sl(&[(0, b"dir"), (1, b"lo")]);
        let b = sl(&[(0, b"ng"), (0, b"x")]);
        assert_eq!(link(&[a, b]).as_deref(), Some("dir/long/x"));
        assert_eq!(link(&[]), None);
    }

    #[test]
    fn root_records_longer_than_34_bytes_are_read() {
        // CSRG BSD CDs: the PVD's root record says 68 bytes; its field holds 34
        let mut r = rec(&[0], 23, 2048, 2, b"");
        r[0] = 68;
        let d = parse_root_record(&r, 156).unwrap();
        assert_eq!((d.extent, d.size, d.raw.len()), (23, 2048, 34));
        assert!(d.system_use().is_empty());
        r[0] = 20;
        assert!(parse_root_record(&r, 156).is_err());
    }

    #[test]
    fn parses_golden_record() {
        let r = rec(b"TXT.CFG;1", 40, 300, 0, b"");
        let d = parse_record(&r, 1000).unwrap();
        assert_eq!(d.extent, 40);
        assert_eq!(d.size, 300);
        assert_eq!(d.ident, b"TXT.CFG;1");
        assert_eq!(d.raw.len(), 42);
        assert!(d.system_use().is_empty());
    }

    #[test]
    fn record_errors_are_named() {
        let mut r = rec(b"A;1", 1, 1, 0, b"");
        r[32] = 200;
        let e = parse_record(&r, 0).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::BadField);
        let mut data = vec![0u8; 4096];
        for i in 0..8 {
            let f = rec(b"F;1", 1, 1, 0, &[0u8; 214]);
            assert_eq!(f.len(), 250);
            data[i * 250..(i + 1) * 250].copy_from_slice(&f);
        }
        let r2 = rec(b"B;1", 1, 1, 0, &[0u8; 60]);
        data[2000..2000 + r2.len()].copy_from_slice(&r2);
        // a record starting at 2000 with 96 bytes crosses the block end
        let e = parse_dir_records(&data, 0).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::BadField);
        assert_eq!(e.offset(), Some(2000));
        let mut d2 = vec![0u8; 2048];
        d2[0] = 20; // length below the minimum
        let e = parse_dir_records(&d2, 4096).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::BadField);
        assert_eq!(e.offset(), Some(4096));
    }

    #[test]
    fn zero_length_skips_to_next_block() {
        let mut data = vec![0u8; 4096];
        let a = rec(&[0], 20, 4096, 2, b"");
        let b = rec(&[1], 20, 4096, 2, b"");
        let c = rec(b"X;1", 30, 1, 0, b"");
        data[..a.len()].copy_from_slice(&a);
        data[a.len()..a.len() + b.len()].copy_from_slice(&b);
        data[2048..2048 + c.len()].copy_from_slice(&c);
        let recs = parse_dir_records(&data, 0).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[2].offset, 2048);
    }

    #[test]
    fn ucs2_round_trip_and_path_table() {
        assert_eq!(ucs2_decode(&ucs2_encode("preseed")), "preseed");
        let mut t = vec![1u8, 0, 18, 0, 0, 0, 1, 0, 0, 0];
        t.extend_from_slice(&[4, 0, 30, 0, 0, 0, 1, 0, b'B', b'O', b'O', b'T']);
        let e = path_table_extents(&t, false).unwrap();
        assert_eq!(e, vec![(2, 18), (12, 30)]);
    }
}

#[cfg(test)]
mod susp_tests {
    use super::*;

    fn iso_with(bytes: &[u8]) -> IsoFile {
        IsoFile::from_bytes(std::path::Path::new("test.iso"), bytes.to_vec())
    }

    fn entry(sig: &[u8; 2], data: &[u8]) -> Vec<u8> {
        let mut e = vec![sig[0], sig[1], (4 + data.len()) as u8, 1];
        e.extend_from_slice(data);
        e
    }

    #[test]
    fn rock_ridge_px_nm_sl_tf_and_ce() {
        // continuation area at block 1 holding the second half of the name
        let mut img = vec![0u8; 4096];
        let nm2 = entry(b"NM", b"\x00-name.seed");
        img[2048 + 10..2048 + 10 + nm2.len()].copy_from_slice(&nm2);
        let iso = iso_with(&img);
        let mut su = Vec::new();
        let mut px = [0u8; 40];
        put_both32(&mut px, 0, 0o100644);
        put_both32(&mut px, 8, 1);
        put_both32(&mut px, 32, 77);
        su.extend(entry(b"PX", &px));
        su.extend(entry(b"NM", b"\x01long"));
        su.extend(entry(b"TF", &[0x02, 119, 8, 5, 10, 13, 20, 0]));
        let mut ce = [0u8; 24];
        put_both32(&mut ce, 0, 1);
        put_both32(&mut ce, 8, 10);
        put_both32(&mut ce, 16, nm2.len() as u32);
        su.extend(entry(b"CE", &ce));
        let rr = parse_susp(&iso, &su, 0, 0).unwrap();
        assert_eq!(rr.mode, Some(0o100644));
        assert_eq!(rr.ino, Some(77));
        assert_eq!(rr.name.as_deref(), Some("long-name.seed"));
        assert_eq!(rr.mtime.as_deref(), Some(&[119, 8, 5, 10, 13, 20, 0][..]));
        assert_eq!(rr.ce_end, 2048 + 10 + nm2.len() as u64);

        // symlink `ubuntu -> .` and an absolute one
        let sl = entry(b"SL", &[0, 0x02, 0]);
        assert_eq!(
            parse_susp(&iso, &sl, 0, 0).unwrap().symlink.as_deref(),
            Some(".")
        );
        let sl = entry(
            b"SL",
            &[0, 0x08, 0, 0, 3, b'e', b't', b'c', 0, 2, b'x', b'y'],
        );
        assert_eq!(
            parse_susp(&iso, &sl, 0, 0).unwrap().symlink.as_deref(),
            Some("/etc/xy")
        );
    }

    #[test]
    fn bad_susp_is_named_and_ce_loops_bounded() {
        let iso = iso_with(&vec![0u8; 4096]);
        let bad = vec![b'P', b'X', 200, 1, 0, 0];
        let e = parse_susp(&iso, &bad, 0, 100).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::BadField);
        assert_eq!(e.structure(), Some("SUSP entry"));
        // a CE pointing at itself forever
        let mut img = vec![0u8; 4096];
        let mut ce = [0u8; 24];
        put_both32(&mut ce, 0, 1);
        put_both32(&mut ce, 8, 0);
        put_both32(&mut ce, 16, 28);
        let e2 = entry(b"CE", &ce);
        img[2048..2048 + e2.len()].copy_from_slice(&e2);
        let iso2 = iso_with(&img);
        let e = parse_susp(&iso2, &e2, 0, 0).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::AbsurdSize);
        // a CE past the end of the file
        let mut ce = [0u8; 24];
        put_both32(&mut ce, 0, 99);
        put_both32(&mut ce, 16, 28);
        let e = parse_susp(&iso, &entry(b"CE", &ce), 0, 0).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Truncated);
    }
}
