//! Signatures of formats this tool recognises but does not read. The probe refuses them by name
//! instead of taking them for a raw disk (`--input-format raw` overrides when a user means it).

use crate::err;
use crate::error::{Error, IoContext, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// (offset of the signature, signature, what the file is).
const HEAD: &[(usize, &[u8], &str)] = &[
    (0, b"QFI\xfb", "qcow2"),
    (0, b"QED\0", "QED (QEMU enhanced disk)"),
    (0, b"COWD", "VMware ESX COWD sparse extent"),
    (
        0,
        b"# Disk DescriptorFile",
        "VMDK descriptor file (the data is in separate extent files)",
    ),
    (64, b"\x7f\x10\xda\xbe", "VirtualBox VDI"),
    (0, b"WithoutFreeSpace", "Parallels disk"),
    (0, b"WithouFreSpacExt", "Parallels disk"),
    (0, b"\x1f\x8b", "gzip-compressed file (decompress it first)"),
    (0, b"\xfd7zXZ\0", "xz-compressed file (decompress it first)"),
    (
        0,
        b"\x28\xb5\x2f\xfd",
        "zstd-compressed file (decompress it first)",
    ),
    (0, b"BZh", "bzip2-compressed file (decompress it first)"),
    (0, b"PK\x03\x04", "zip archive"),
    (0, b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (
        257,
        b"ustar",
        "tar archive (an OVA or a GCP image? extract the disk first)",
    ),
];

/// The name of the unsupported format `f` holds, if any.
pub fn unsupported(f: &File, len: u64, path: &Path) -> Result<Option<&'static str>> {
    let mut head = vec![0u8; 512.min(len) as usize];
    f.read_exact_at(&mut head, 0)
        .ctx(path, "reading the first bytes")?;
    for (off, sig, what) in HEAD {
        if head.get(*off..off + sig.len()) == Some(*sig) {
            // bzip2: "BZh" then a block size digit
            if *sig == b"BZh" && !head.get(3).is_some_and(|d| (b'1'..=b'9').contains(d)) {
                continue;
            }
            return Ok(Some(what));
        }
    }
    if len >= 512 {
        let mut tail = [0u8; 4];
        f.read_exact_at(&mut tail, len - 512)
            .ctx(path, "reading the last bytes")?;
        if &tail == b"koly" {
            return Ok(Some("Apple disk image (dmg)"));
        }
    }
    Ok(None)
}

/// The error for a recognised but unsupported format.
pub fn refusal(path: &Path, what: &str) -> Error {
    err!(
        UnsupportedFormat,
        "this is a {what}, which isotool does not read (use --input-format raw to treat the file as a raw disk anyway)"
    )
    .with_path(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_it_sees() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        let cases: &[(&[u8], usize, &str)] = &[
            (b"QED\0", 0, "QED"),
            (b"\x7f\x10\xda\xbe", 64, "VDI"),
            (b"\x1f\x8b\x08", 0, "gzip"),
            (b"\xfd7zXZ\0", 0, "xz"),
            (b"\x28\xb5\x2f\xfd", 0, "zstd"),
            (b"BZh9", 0, "bzip2"),
            (b"ustar", 257, "tar"),
            (b"# Disk DescriptorFile\n", 0, "descriptor"),
        ];
        for (sig, at, name) in cases {
            let mut b = vec![0u8; 4096];
            b[*at..at + sig.len()].copy_from_slice(sig);
            std::fs::write(&p, &b).unwrap();
            let f = File::open(&p).unwrap();
            let got = unsupported(&f, 4096, &p).unwrap().unwrap_or("none");
            assert!(got.contains(name), "{name}: {got}");
        }
        let mut b = vec![0u8; 4096];
        b[4096 - 512..4096 - 508].copy_from_slice(b"koly");
        std::fs::write(&p, &b).unwrap();
        let f = File::open(&p).unwrap();
        assert!(unsupported(&f, 4096, &p).unwrap().unwrap().contains("dmg"));
        std::fs::write(&p, vec![0u8; 4096]).unwrap();
        let f = File::open(&p).unwrap();
        assert_eq!(unsupported(&f, 4096, &p).unwrap(), None);
    }
}
