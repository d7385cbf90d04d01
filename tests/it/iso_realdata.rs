//! Real third-party ISOs (`../shared/testdata/realdata`, origins in its README) read as
//! xorriso reads them: the listing (names, node types, modes, sizes, symlink targets) and every
//! extracted file's bytes, for every ISO there; the images xorriso refuses are refused too (an
//! error, never a panic). Then one test per defect found on real images.

use crate::oracle::{self, XorrisoListing};
use isotool::iso::info::{self, LsEntry};
use isotool::iso::read::NodeKind;
use isotool::output::OutputOptions;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn realdata_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/realdata");
    assert!(
        d.join("README.md").is_file(),
        "{} is missing: the real third-party images live there",
        d.display()
    );
    d
}

/// `name` from realdata as a readable path: `.xz` files decompressed into `tmp` (never into
/// the repository), others read in place.
fn realdata_iso(name: &str, tmp: &Path) -> PathBuf {
    let p = realdata_dir().join(name);
    let Some(stem) = name.strip_suffix(".xz") else {
        return p;
    };
    let out = tmp.join(stem);
    let o = Command::new(oracle::need("xz", "xz-utils"))
        .arg("-dc")
        .arg(&p)
        .output()
        .unwrap();
    assert!(o.status.success(), "xz -dc {} failed", p.display());
    std::fs::write(&out, o.stdout).unwrap();
    out
}

/// Every ISO of realdata (`*.iso` and `*.iso.xz`).
fn realdata_isos() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(realdata_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".iso") || n.ends_with(".iso.xz"))
        .collect();
    v.sort();
    assert!(v.len() >= 30, "realdata lists only {} ISOs", v.len());
    v
}

/// `ls -l` permission characters of a mode.
fn perms(mode: u32) -> String {
    let mut s: Vec<char> = (0..9)
        .map(|i| {
            if mode >> (8 - i) & 1 != 0 {
                ['r', 'w', 'x'][i % 3]
            } else {
                '-'
            }
        })
        .collect();
    for (bit, at, set) in [(0o4000, 2, 's'), (0o2000, 5, 's'), (0o1000, 8, 't')] {
        if mode & bit != 0 {
            s[at] = if s[at] == 'x' {
                set
            } else {
                set.to_ascii_uppercase()
            };
        }
    }
    s.into_iter().collect()
}

fn kind_char(k: NodeKind) -> char {
    match k {
        NodeKind::File => '-',
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Block => 'b',
        NodeKind::Char => 'c',
        NodeKind::Fifo => 'p',
        NodeKind::Socket => 's',
    }
}

/// A Rock Ridge PN device number as xorriso prints it: the 64-bit dev_t `high << 32 | low`
/// split by glibc's major()/minor(). (K3b wrote major and minor in the two halves, as Linux's
/// isofs reads them when `high` is not 0; we report the two halves as stored.)
fn xorriso_dev((high, low): (u32, u32)) -> String {
    let dev = (high as u64) << 32 | low as u64;
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    format!("{major},{minor}")
}

/// Differences between our listing and xorriso's, one line each.
fn listing_diffs(ours: &[LsEntry], theirs: &BTreeMap<String, oracle::LsdlLine>) -> Vec<String> {
    let mut d = Vec::new();
    let ours: BTreeMap<&str, &LsEntry> = ours.iter().map(|e| (e.path.as_str(), e)).collect();
    for p in theirs.keys().filter(|p| !ours.contains_key(p.as_str())) {
        d.push(format!("{p}: listed by xorriso only"));
    }
    for (p, o) in &ours {
        let Some(x) = theirs.get(*p) else {
            d.push(format!("{p}: listed by isotool only"));
            continue;
        };
        // xorriso marks the El Torito boot catalog `e`; its content is a regular file's
        let xk = if x.kind == 'e' { '-' } else { x.kind };
        if kind_char(o.kind) != xk {
            d.push(format!("{p}: type {:?} vs xorriso {:?}", o.kind, x.kind));
        }
        // without Rock Ridge xorriso shows r-xr-xr-x for everything: the image has no mode
        let want_perms = o.mode.map(perms).unwrap_or_else(|| "r-xr-xr-x".into());
        if want_perms != x.perms {
            d.push(format!("{p}: mode {want_perms} vs xorriso {}", x.perms));
        }
        let size = match o.kind {
            NodeKind::File => o.size.to_string(),
            NodeKind::Block | NodeKind::Char => o.device.map(xorriso_dev).unwrap_or_default(),
            _ => x.size.clone(),
        };
        if size != x.size {
            d.push(format!("{p}: size {size} vs xorriso {}", x.size));
        }
        if o.target != x.target {
            d.push(format!(
                "{p}: target {:?} vs xorriso {:?}",
                o.target, x.target
            ));
        }
    }
    d
}

/// Differences between the bytes we extract and xorriso's, for every regular file.
fn content_diffs(iso: &Path, ours: &[LsEntry], tmp: &Path) -> Vec<String> {
    let theirs = tmp.join("xorriso");
    oracle::xorriso_extract_all(iso, &theirs);
    let mut d = Vec::new();
    for e in ours.iter().filter(|e| e.kind == NodeKind::File) {
        let out = tmp.join("ours.bin");
        let r = info::extract(
            iso,
            &e.path,
            &out,
            OutputOptions::new(true, 0o600).with_sync(false),
            false,
        );
        let want = std::fs::read(theirs.join(e.path.trim_start_matches('/')));
        match (r, want) {
            (Ok(n), Ok(want)) => {
                let got = std::fs::read(&out).unwrap();
                if got != want || n != want.len() as u64 {
                    d.push(format!(
                        "{}: {} bytes extracted, xorriso {} bytes, contents differ",
                        e.path,
                        got.len(),
                        want.len()
                    ));
                }
            }
            (Err(err), _) => d.push(format!("{}: isotool refused: {err}", e.path)),
            (_, Err(err)) => d.push(format!("{}: xorriso did not extract it: {err}", e.path)),
        }
    }
    d
}

/// The headline check: for every ISO of realdata, our listing and extracted bytes equal
/// xorriso's, and what xorriso refuses we refuse (with an error, not a panic).
#[test]
fn every_realdata_iso_reads_as_xorriso_reads_it() {
    let mut failures = Vec::new();
    let mut matched = Vec::new();
    for name in realdata_isos() {
        let tmp = tempfile::tempdir().unwrap();
        let iso = realdata_iso(&name, tmp.path());
        let ours = info::list(&iso, "/", true);
        match (oracle::xorriso_listing(&iso), ours) {
            (XorrisoListing::Refused(_), Err(_)) => matched.push(format!("{name} (refused)")),
            (XorrisoListing::Refused(why), Ok(l)) => failures.push(format!(
                "{name}: xorriso refuses it ({why}) but isotool lists {} entries",
                l.len()
            )),
            (XorrisoListing::Listed(x), Err(e)) => failures.push(format!(
                "{name}: xorriso lists {} entries, isotool refuses: {e}",
                x.len()
            )),
            (XorrisoListing::Listed(x), Ok(l)) => {
                let mut d = listing_diffs(&l, &x);
                if d.is_empty() {
                    d = content_diffs(&iso, &l, tmp.path());
                }
                if d.is_empty() {
                    matched.push(format!("{name} ({} entries)", l.len()));
                } else {
                    failures.push(format!("{name}:\n    {}", d.join("\n    ")));
                }
            }
        }
    }
    eprintln!("matching xorriso: {}", matched.join(", "));
    assert!(
        failures.is_empty(),
        "{} of {} realdata ISOs read differently from xorriso:\n{}",
        failures.len(),
        failures.len() + matched.len(),
        failures.join("\n")
    );
}

fn isotool(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_isotool"))
        .args(args)
        .output()
        .unwrap()
}

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

/// grub-mkrescue's boot file is 29,541 bytes: the boot-info-table checksum covers its last
/// partial 32-bit word zero-padded (as mkisofs and xorriso write it).
#[test]
fn boot_info_table_checksum_covers_the_last_partial_word() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = realdata_iso("debian-grub-rescue-cdrom.iso.xz", tmp.path());
    let i = info::inspect(&iso).unwrap();
    let bios = i
        .boot_images
        .iter()
        .find(|b| b.entry.platform == 0)
        .expect("a BIOS boot entry");
    assert_eq!(bios.file_size, Some(29541));
    let t = bios.boot_info_table.expect("a boot-info-table");
    assert!(t.checksum_ok, "{t:?}");
    let o = isotool(&["iso", "info", p(&iso)]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("boot-info-table ok"), "{text}");
}

/// zisofs files (Rock Ridge ZF) are listed with their real size and extracted decoded, the
/// stored (compressed) bytes with `--raw`.
#[test]
fn zisofs_files_are_decoded_and_raw_gives_the_stored_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = realdata_iso("libarchive-test_read_format_iso_zisofs.iso", tmp.path());
    let l = info::list(&iso, "/", true).unwrap();
    let f = l.iter().find(|e| e.path == "/file").unwrap();
    assert!(f.zisofs);
    assert_eq!(f.size, 12_345_684);
    assert!(f.stored_size < 1_000_000, "{f:?}");
    let want = oracle::extract(&iso, "/file", &tmp.path().join("x"));
    let out = tmp.path().join("ours");
    let o = isotool(&["iso", "extract", p(&iso), "/file", "-o", p(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&out).unwrap() == want, "decoded bytes differ");
    let raw = tmp.path().join("raw");
    let o = isotool(&["iso", "extract", "--raw", p(&iso), "/file", "-o", p(&raw)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stored = std::fs::read(&raw).unwrap();
    assert_eq!(stored.len() as u64, f.stored_size);
    assert_eq!(&stored[..8], &isotool::iso::zisofs::MAGIC);
}

/// Old mkhybrid symlinks put a ROOT component in the middle for an empty component:
/// `.///file` (xorriso) and not `/file`.
#[test]
fn mkhybrid_symlinks_keep_their_empty_components() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = realdata_iso(
        "libarchive-test_read_format_iso_rockridge.iso.xz",
        tmp.path(),
    );
    let l = info::list(&iso, "/", true).unwrap();
    let target = |n: &str| l.iter().find(|e| e.path == n).unwrap().target.clone();
    assert_eq!(target("/symlink5").as_deref(), Some(".///file"));
    assert_eq!(target("/symlink6").as_deref(), Some("/tmp//.."));
}

/// CSRG BSD CDs have a 68-byte root directory record in the PVD.
#[test]
fn a_68_byte_root_directory_record_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = realdata_iso("libarchive-test_read_format_iso_3.iso", tmp.path());
    let l = info::list(&iso, "/", true).unwrap();
    assert!(!l.is_empty());
    assert!(info::inspect(&iso).is_ok());
}

/// A mkisofs tree 200 levels deep is read whole; a directory pointing back at its parent is
/// refused as a loop, naming the record.
#[test]
fn a_200_level_tree_is_read_and_loops_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = realdata_iso("libarchive-test_fuzz_1.iso", tmp.path());
    let l = info::list(&iso, "/", true).unwrap();
    let deepest = l.iter().map(|e| e.path.matches('/').count()).max().unwrap();
    assert!(deepest >= 200, "deepest path has {deepest} components");

    // a loop: the first subdirectory of a small image made to point at the root
    let img = tiny_tree_iso(tmp.path());
    let mut bytes = std::fs::read(&img).unwrap();
    let (rec_at, root_lba) = first_subdir_record(&bytes);
    bytes[rec_at + 2..rec_at + 6].copy_from_slice(&root_lba.to_le_bytes());
    bytes[rec_at + 6..rec_at + 10].copy_from_slice(&root_lba.to_be_bytes());
    let looped = tmp.path().join("loop.iso");
    std::fs::write(&looped, bytes).unwrap();
    let e = info::list(&looped, "/", true).unwrap_err();
    assert!(e.to_string().contains("loop"), "{e}");
}

/// A small ISO with `/a/b/c.txt`, made by xorriso.
fn tiny_tree_iso(tmp: &Path) -> PathBuf {
    let src = tmp.join("tree");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("a/b/c.txt"), b"c\n").unwrap();
    let out = tmp.join("tiny.iso");
    oracle::run(
        Command::new(oracle::need("xorriso", "xorriso"))
            .args(["-as", "mkisofs", "-R", "-o"])
            .arg(&out)
            .arg(&src),
    );
    out
}

/// Offset of the first subdirectory's record in the root directory, and the root's LBA.
fn first_subdir_record(img: &[u8]) -> (usize, u32) {
    let pvd = 16 * 2048;
    let root_lba = u32::from_le_bytes(img[pvd + 158..pvd + 162].try_into().unwrap());
    let mut at = root_lba as usize * 2048;
    loop {
        let len = img[at] as usize;
        assert!(len > 0, "no subdirectory in the fixture's root");
        if img[at + 25] & 2 != 0 && img[at + 33] > 1 {
            return (at, root_lba);
        }
        at += len;
    }
}

/// Device nodes (K3b image with /fd0 and /zero) are typed from Rock Ridge, `iso ls --json`
/// says so, and extracting one is refused with a named error and no output.
#[test]
fn device_nodes_are_typed_and_not_extracted() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = realdata_iso("libcdio-copying-rr.iso", tmp.path());
    let o = isotool(&["iso", "ls", "-R", "--json", p(&iso)]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let kind = |n: &str| {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == n)
            .unwrap()["kind"]
            .clone()
    };
    assert_eq!(kind("/fd0"), "block");
    assert_eq!(kind("/zero"), "char");
    assert_eq!(kind("/Copy2"), "symlink");
    assert_eq!(kind("/COPYING"), "file");
    let out = tmp.path().join("fd0");
    let o = isotool(&["iso", "extract", p(&iso), "/fd0", "-o", p(&out)]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("block device node") && err.contains("[unsupported]"),
        "{err}"
    );
    assert!(!out.exists());
}

/// Joliet-only images (Nero, K3b without Rock Ridge) are listed and extracted with their
/// Joliet names, as xorriso does.
#[test]
fn joliet_names_are_used_when_there_is_no_rock_ridge() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = realdata_iso(
        "libarchive-test_read_format_iso_joliet_by_nero.iso",
        tmp.path(),
    );
    let l = info::list(&iso, "/", true).unwrap();
    let names: Vec<&str> = l.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names, ["/test", "/test/test.txt"]);
    let out = tmp.path().join("t");
    info::extract(
        &iso,
        "/test/test.txt",
        &out,
        OutputOptions::new(false, 0o600),
        false,
    )
    .unwrap();
    assert_eq!(std::fs::read(&out).unwrap().len(), 8);
}
