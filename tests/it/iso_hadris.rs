//! hadris-iso (pinned `=3.0.0-rc.2`, a dev-dependency) as an independent second reader of the
//! ISOs we write: the provisioning DVD, the NoCloud seed and a remastered installer. Its Rock
//! Ridge tree (paths, kinds, sizes, modes, symlink targets) and every file's bytes must equal
//! what our reader reports (`isotool iso ls -R --json`, `isotool iso extract`), and its Joliet
//! tree must hold the same file contents. hadris-iso shares no code with ours (it is not the
//! builder either: see docs/design-notes.md for what it lacks to build these images).

use crate::iso_fixture::{BIN, ubuntu_mini};
use crate::prov_fixture::{add_certs, ec_certs, valid_tree, write};
use hadris_fs::MountOptions;
use hadris_fs::sync::Volume;
use hadris_iso::Namespace;
use hadris_iso::sync::IsoFs;
use hadris_storage::host::FileDevice;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// What a reader says about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: String,
    size: u64,
    mode: Option<String>,
    target: Option<String>,
}

/// A reader's view of an image: path (without the leading `/`) -> entry, and file bytes.
#[derive(Debug, Default)]
struct View {
    entries: BTreeMap<String, Entry>,
    files: BTreeMap<String, Vec<u8>>,
}

fn isotool(args: &[&str]) -> std::process::Output {
    let o = Command::new(BIN)
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("running isotool");
    assert!(
        o.status.success(),
        "isotool {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Our reader, through the CLI: `iso ls -R --json`, then `iso extract` of every file.
fn ours(iso: &Path, scratch: &Path) -> View {
    let iso_s = iso.to_str().unwrap();
    let o = isotool(&["iso", "ls", iso_s, "/", "-R", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut view = View::default();
    let out = scratch.join("extracted");
    for e in v["entries"].as_array().expect("entries") {
        let path = e["path"]
            .as_str()
            .unwrap()
            .trim_start_matches('/')
            .to_string();
        let kind = e["kind"].as_str().unwrap().to_string();
        if kind == "file" {
            let p = format!("/{path}");
            isotool(&["iso", "extract", iso_s, &p, "-o", out.to_str().unwrap()]);
            view.files
                .insert(path.clone(), std::fs::read(&out).unwrap());
            std::fs::remove_file(&out).unwrap();
        }
        let entry = Entry {
            size: if kind == "file" {
                e["size"].as_u64().unwrap()
            } else {
                0
            },
            kind,
            mode: e["mode"].as_str().map(String::from),
            target: e["target"].as_str().map(String::from),
        };
        view.entries.insert(path, entry);
    }
    view
}

/// hadris-iso's view of the tree `ns` names.
fn hadris(iso: &Path, ns: Namespace) -> View {
    let dev = FileDevice::open(iso).unwrap();
    let fs = IsoFs::mount_namespace(dev, MountOptions::new(), ns)
        .unwrap_or_else(|e| panic!("hadris-iso cannot mount {} ({ns:?}): {e}", iso.display()));
    let vol = Volume::new(fs);
    let mut view = View::default();
    let walk = vol
        .walk("/")
        .unwrap_or_else(|e| panic!("hadris-iso: walking {}: {e}", iso.display()));
    for e in walk {
        let e = e.unwrap_or_else(|e| panic!("hadris-iso: walking {}: {e}", iso.display()));
        let abs = e.path().to_vec();
        let path = String::from_utf8(abs.clone())
            .unwrap()
            .trim_start_matches('/')
            .to_string();
        let m = e.entry().metadata();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else {
            "other"
        };
        let target = ft.is_symlink().then(|| {
            let t = vol
                .read_link(&abs)
                .unwrap_or_else(|e| panic!("hadris-iso: readlink {path}: {e}"));
            String::from_utf8(t).unwrap()
        });
        if ft.is_file() {
            let bytes = vol
                .read(&abs)
                .unwrap_or_else(|e| panic!("hadris-iso: reading {path}: {e}"));
            view.files.insert(path.clone(), bytes);
        }
        let entry = Entry {
            kind: kind.to_string(),
            size: if ft.is_file() { m.len() } else { 0 },
            mode: (ns == Namespace::RockRidge)
                .then(|| format!("{:04o}", m.permissions().bits() & 0o7777)),
            target,
        };
        view.entries.insert(path, entry);
    }
    view
}

/// The Rock Ridge trees agree entry by entry and byte for byte; the Joliet tree holds the same
/// file contents (its names may be cut at 64 characters).
fn same_as_ours(iso: &Path, scratch: &Path) -> View {
    let ours = ours(iso, scratch);
    let theirs = hadris(iso, Namespace::RockRidge);
    assert!(!ours.files.is_empty(), "{}: no files", iso.display());
    for (p, e) in &ours.entries {
        assert_eq!(
            theirs.entries.get(p),
            Some(e),
            "{}: {p}: hadris-iso vs ours",
            iso.display()
        );
    }
    assert_eq!(
        theirs.entries.keys().collect::<Vec<_>>(),
        ours.entries.keys().collect::<Vec<_>>(),
        "{}: the listings differ",
        iso.display()
    );
    for (p, b) in &ours.files {
        assert!(
            theirs.files.get(p) == Some(b),
            "{}: {p}: bytes differ",
            iso.display()
        );
    }
    let joliet = hadris(iso, Namespace::Joliet);
    let mut a: Vec<&Vec<u8>> = joliet.files.values().collect();
    let mut b: Vec<&Vec<u8>> = ours.files.values().collect();
    a.sort();
    b.sort();
    assert!(
        a == b,
        "{}: the Joliet tree holds other contents",
        iso.display()
    );
    ours
}

#[test]
fn provisioning_dvd_reads_the_same_in_hadris_iso() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("config");
    valid_tree(&tree);
    add_certs(&tree, &ec_certs());
    write(&tree, "resource/Config File With Spaces.txt", b"spaces\n");
    let blob: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write(&tree, "resource/blob.bin", &blob);
    write(&tree, "resource/empty", b"");
    std::os::unix::fs::symlink(
        "../consul/consul_region.json",
        tree.join("resource/region_link"),
    )
    .unwrap();
    let iso = d.path().join("prov.iso");
    isotool(&[
        "provisioning-cd",
        "--from",
        tree.to_str().unwrap(),
        "-o",
        iso.to_str().unwrap(),
    ]);
    let v = same_as_ours(&iso, d.path());
    // And both readers give back the tree we wrote (a symlink inside the tree travels as the
    // file it names).
    assert_eq!(v.files.get("resource/blob.bin"), Some(&blob));
    assert_eq!(v.entries["resource/region_link"].kind, "file");
    assert_eq!(
        v.files.get("resource/region_link"),
        v.files.get("consul/consul_region.json")
    );
    assert_eq!(
        v.entries["consul/certs/consul_cert.key"].mode.as_deref(),
        Some("0600")
    );
}

#[test]
fn nocloud_seed_reads_the_same_in_hadris_iso() {
    let d = tempfile::tempdir().unwrap();
    let ud = d.path().join("user-data");
    std::fs::write(&ud, b"#cloud-config\nhostname: seedhost\n").unwrap();
    let nc = d.path().join("network-config");
    std::fs::write(&nc, b"version: 2\nethernets:\n  eth0:\n    dhcp4: true\n").unwrap();
    let iso = d.path().join("seed.iso");
    isotool(&[
        "cloud-init-seed",
        "-o",
        iso.to_str().unwrap(),
        "--user-data",
        ud.to_str().unwrap(),
        "--network-config",
        nc.to_str().unwrap(),
        "--format",
        "iso",
    ]);
    let v = same_as_ours(&iso, d.path());
    assert_eq!(
        v.files.get("user-data").map(Vec::as_slice),
        Some(&b"#cloud-config\nhostname: seedhost\n"[..])
    );
    assert!(v.files.contains_key("meta-data"), "{:?}", v.entries.keys());
}

#[test]
fn remastered_installer_reads_the_same_in_hadris_iso() {
    let d = tempfile::tempdir().unwrap();
    let input = ubuntu_mini(d.path());
    let seed = d.path().join("auto.seed");
    std::fs::write(&seed, b"d-i debian-installer/locale string en_US\n").unwrap();
    let iso = d.path().join("remastered.iso");
    isotool(&[
        "remaster",
        input.to_str().unwrap(),
        "-o",
        iso.to_str().unwrap(),
        "--preseed",
        seed.to_str().unwrap(),
    ]);
    let v = same_as_ours(&iso, d.path());
    assert!(
        v.files.keys().any(|p| p.starts_with("preseed/")),
        "{:?}",
        v.files.keys()
    );
}
