//! Reading packages back: the members of a tar (plain, or gzip with any number of members) with
//! the SHA-256 of each member's stored bytes, and [`verify`], which checks that a package holds
//! what its target needs (member names and order, the OVA manifest's hashes, the Vagrant
//! metadata's provider, the disk's magic, GCP's whole-GiB `disk.raw`). `isotool build` runs it on
//! every package it publishes.

use super::Target;
use super::gnutar::{BLOCK, IS_EXTENDED, NAME, REALSIZE, SIZE, TYPEFLAG};
use crate::checksum::hex;
use crate::err;
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// Bytes of a member kept in memory (the rest is only hashed).
const HEAD: usize = 64 << 10;
/// Members read before giving up (a package has a handful).
const MAX_MEMBERS: usize = 64;

/// One member of a tar archive.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its name.
    pub name: String,
    /// Its size once extracted (the real size of a sparse member).
    pub size: u64,
    /// Bytes stored in the archive.
    pub stored: u64,
    /// An old-GNU sparse member (`S`).
    pub sparse: bool,
    /// SHA-256 of the stored bytes (the whole file for a regular member).
    pub sha256: String,
    /// The first stored bytes (up to 64 KiB).
    pub head: Vec<u8>,
}

fn octal(b: &[u8], path: &Path, at: u64, field: &str) -> Result<u64> {
    if b[0] & 0x80 != 0 {
        let mut v = 0u64;
        for &x in &b[b.len() - 8..] {
            v = v << 8 | u64::from(x);
        }
        return Ok(v);
    }
    let s: String = b
        .iter()
        .take_while(|&&c| c != 0 && c != b' ')
        .map(|&c| c as char)
        .collect();
    let s = s.trim_start();
    if s.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(s, 8).map_err(|_| {
        err!(BadField, "tar header field {field} is not octal: {s:?}")
            .with_structure("tar header")
            .with_path(path)
            .at(at)
    })
}

struct Cursor<R: Read> {
    r: R,
    pos: u64,
}

impl<R: Read> Cursor<R> {
    fn block(&mut self, b: &mut [u8; BLOCK], path: &Path) -> Result<bool> {
        let mut got = 0;
        while got < BLOCK {
            let n = self.r.read(&mut b[got..]).map_err(|e| {
                Error::io(e, "reading the package")
                    .with_path(path)
                    .at(self.pos)
            })?;
            if n == 0 {
                if got == 0 {
                    return Ok(false);
                }
                return Err(err!(Truncated, "tar block cut short")
                    .with_path(path)
                    .at(self.pos));
            }
            got += n;
        }
        self.pos += BLOCK as u64;
        Ok(true)
    }
}

/// The members of the tar archive `path` (gzip-compressed or not), in archive order.
pub fn members(path: &Path) -> Result<Vec<Member>> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(e, "opening").with_path(path))?;
    let mut magic = [0u8; 2];
    let gz = f.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    let f = std::fs::File::open(path).map_err(|e| Error::io(e, "opening").with_path(path))?;
    let r: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
            f,
        )))
    } else {
        Box::new(std::io::BufReader::with_capacity(1 << 20, f))
    };
    read_members(Cursor { r, pos: 0 }, path)
}

fn read_members<R: Read>(mut c: Cursor<R>, path: &Path) -> Result<Vec<Member>> {
    let mut out = Vec::new();
    let mut h = [0u8; BLOCK];
    loop {
        let at = c.pos;
        if !c.block(&mut h, path)? || h.iter().all(|&b| b == 0) {
            return Ok(out);
        }
        if out.len() == MAX_MEMBERS {
            return Err(err!(LimitExceeded, "more than {MAX_MEMBERS} tar members")
                .with_path(path)
                .at(at));
        }
        let name_end = h[NAME..NAME + 100]
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(100);
        let name = String::from_utf8_lossy(&h[NAME..NAME + name_end]).into_owned();
        let stored = octal(&h[SIZE..SIZE + 12], path, at + SIZE as u64, "size")?;
        let sparse = match h[TYPEFLAG] {
            b'0' | 0 => false,
            b'S' => true,
            t => {
                return Err(err!(
                    Unsupported,
                    "tar member {name:?} has type {:?}: a package holds regular files only",
                    t as char
                )
                .with_path(path)
                .at(at + TYPEFLAG as u64));
            }
        };
        let size = if sparse {
            let mut ext = h[IS_EXTENDED] != 0;
            while ext {
                let mut e = [0u8; BLOCK];
                if !c.block(&mut e, path)? {
                    return Err(err!(Truncated, "sparse extension block missing")
                        .with_path(path)
                        .at(c.pos));
                }
                ext = e[504] != 0;
            }
            octal(
                &h[REALSIZE..REALSIZE + 12],
                path,
                at + REALSIZE as u64,
                "realsize",
            )?
        } else {
            stored
        };
        let (sha256, head) = hash_member(&mut c, stored, path)?;
        out.push(Member {
            name,
            size,
            stored,
            sparse,
            sha256,
            head,
        });
    }
}

fn hash_member<R: Read>(c: &mut Cursor<R>, stored: u64, path: &Path) -> Result<(String, Vec<u8>)> {
    let mut h = Sha256::new();
    let mut head = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let padded = stored.div_ceil(BLOCK as u64) * BLOCK as u64;
    let mut done = 0u64;
    while done < padded {
        let want = (padded - done).min(buf.len() as u64) as usize;
        c.r.read_exact(&mut buf[..want]).map_err(|e| {
            Error::io(e, "reading a tar member")
                .with_path(path)
                .at(c.pos)
        })?;
        let data = (stored.saturating_sub(done)).min(want as u64) as usize;
        h.update(&buf[..data]);
        if head.len() < HEAD {
            let k = (HEAD - head.len()).min(data);
            head.extend_from_slice(&buf[..k]);
        }
        done += want as u64;
        c.pos += want as u64;
    }
    Ok((hex(&h.finalize()), head))
}

fn bad(path: &Path, msg: String) -> Error {
    err!(BadField, "{msg}")
        .with_structure("package")
        .with_path(path)
}

/// The member names a package for `target` holds, in order, when packed under `name`.
pub fn expected_names(target: Target, name: &str) -> Vec<String> {
    match target {
        Target::Ova => vec![
            format!("{name}.ovf"),
            format!("{name}.mf"),
            format!("{name}-disk1.vmdk"),
        ],
        Target::Gcp => vec!["disk.raw".into()],
        Target::VagrantLibvirt => vec![
            "metadata.json".into(),
            "Vagrantfile".into(),
            "box.img".into(),
        ],
        Target::VagrantVirtualbox => vec![
            "metadata.json".into(),
            "Vagrantfile".into(),
            "box.ovf".into(),
            "box-disk001.vmdk".into(),
        ],
    }
}

/// Reads the package `path` back and checks it is a whole package for `target` packed under
/// `name`; returns its members.
pub fn verify(path: &Path, target: Target, name: &str) -> Result<Vec<Member>> {
    let m = members(path)?;
    let names: Vec<&str> = m.iter().map(|x| x.name.as_str()).collect();
    let want = expected_names(target, name);
    if names != want {
        return Err(bad(
            path,
            format!("members {names:?}, a {target:?} package holds {want:?}"),
        ));
    }
    let disk = m.last().expect("names checked");
    let magic: &[u8] = match target {
        Target::Ova | Target::VagrantVirtualbox => b"KDMV",
        Target::VagrantLibvirt => b"QFI\xfb",
        Target::Gcp => b"",
    };
    if !disk.head.starts_with(magic) {
        return Err(bad(
            path,
            format!("member {} does not start with {magic:?}", disk.name),
        ));
    }
    match target {
        Target::Ova => check_manifest(path, &m),
        Target::Gcp if disk.size == 0 || disk.size % super::GIB != 0 => Err(bad(
            path,
            format!("disk.raw is {} bytes, not a whole number of GiB", disk.size),
        )),
        Target::Gcp => Ok(()),
        Target::VagrantLibvirt => check_metadata(path, &m[0], "libvirt"),
        Target::VagrantVirtualbox => check_metadata(path, &m[0], "virtualbox"),
    }?;
    Ok(m)
}

/// Every file of the OVA but the manifest has its `SHA256(name)= hex` line, and it matches.
fn check_manifest(path: &Path, m: &[Member]) -> Result<()> {
    let mf = String::from_utf8_lossy(&m[1].head).into_owned();
    for x in m.iter().filter(|x| x.name != m[1].name) {
        let line = format!("SHA256({})= {}", x.name, x.sha256);
        if !mf.lines().any(|l| l.trim_end() == line) {
            return Err(bad(
                path,
                format!("the manifest {} has no line {line:?}", m[1].name),
            ));
        }
    }
    Ok(())
}

fn check_metadata(path: &Path, meta: &Member, provider: &str) -> Result<()> {
    let v = crate::limits::parse_json(&meta.head, "metadata.json")
        .map_err(|e| bad(path, e.message().to_string()))?;
    if v["provider"] != provider {
        return Err(bad(
            path,
            format!(
                "metadata.json names provider {}, not {provider:?}",
                v["provider"]
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::gnutar::TarWriter;
    use super::*;

    fn tar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut t = TarWriter::new(Vec::new(), 0);
        for (n, d) in members {
            t.file(n, d.len() as u64, &mut &d[..]).unwrap();
        }
        t.finish().unwrap()
    }

    #[test]
    fn reads_members_and_hashes() {
        let b = tar(&[("a.txt", b"hello"), ("b", &[7u8; 1000])]);
        let m = read_members(Cursor { r: &b[..], pos: 0 }, Path::new("x.tar")).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].name, "a.txt");
        assert_eq!(m[0].size, 5);
        assert_eq!(m[0].sha256, crate::checksum::sha256_hex(b"hello"));
        assert_eq!(m[1].head, vec![7u8; 1000]);
    }

    #[test]
    fn refuses_truncation_and_links() {
        let b = tar(&[("a", &[1u8; 2000])]);
        let cut = read_members(
            Cursor {
                r: &b[..1024],
                pos: 0,
            },
            Path::new("x.tar"),
        );
        assert!(cut.is_err());
        let mut l = b.clone();
        l[TYPEFLAG] = b'2';
        let e = read_members(Cursor { r: &l[..], pos: 0 }, Path::new("x.tar")).unwrap_err();
        assert!(e.to_string().contains("regular files only"), "{e}");
        assert_eq!(e.offset(), Some(TYPEFLAG as u64));
    }

    #[test]
    fn verify_rechecks_the_ova_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.ova");
        let ovf = b"<Envelope/>";
        let vmdk = b"KDMV and the rest";
        let good = format!(
            "SHA256(m.ovf)= {}\nSHA256(m-disk1.vmdk)= {}\n",
            crate::checksum::sha256_hex(ovf),
            crate::checksum::sha256_hex(vmdk)
        );
        let write = |mf: &str| {
            let b = tar(&[
                ("m.ovf", ovf),
                ("m.mf", mf.as_bytes()),
                ("m-disk1.vmdk", vmdk),
            ]);
            std::fs::write(&p, b).unwrap();
        };
        write(&good);
        assert_eq!(verify(&p, Target::Ova, "m").unwrap().len(), 3);
        write(&good.replace("SHA256(m.ovf)= ", "SHA256(m.ovf)= 0"));
        let e = verify(&p, Target::Ova, "m").unwrap_err();
        assert!(e.to_string().contains("has no line \"SHA256(m.ovf)"), "{e}");
        let e = verify(&p, Target::Ova, "other").unwrap_err();
        assert!(e.to_string().contains("members"), "{e}");
        let e = verify(&p, Target::Gcp, "m").unwrap_err();
        assert!(e.to_string().contains("[\"disk.raw\"]"), "{e}");
    }
}
