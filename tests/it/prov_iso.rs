//! The provisioning ISO read back by the peers: xorriso and isoinfo list the right Rock Ridge
//! names, modes and owners, the Joliet names, and extract identical contents.

use crate::prov_fixture::*;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const LONG: &str =
    "a-very-long-resource-file-name-that-goes-well-beyond-the-joliet-limit-of-64-characters.json";

fn rich_tree(root: &Path) {
    valid_tree(root);
    add_certs(root, &ec_certs());
    write(
        root,
        "resource/app/Config File With Spaces.txt",
        b"spaces\n",
    );
    write(root, &format!("resource/{LONG}"), b"{\"long\": true}\n");
    let blob: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write(root, "resource/blob.bin", &blob);
    write(root, "resource/db_secret.txt", b"hunter2\n");
    write(root, "resource/UPPER.TXT", b"upper\n");
    write(root, "resource/upper.txt", b"lower\n");
    write(root, "resource/empty", b"");
    std::os::unix::fs::symlink(
        "../consul/consul_region.json",
        root.join("resource/region_link"),
    )
    .unwrap();
}

fn build(tree: &Path, out: &Path, epoch: &str) -> std::process::Output {
    isotool()
        .args([
            "provisioning-cd",
            "--from",
            tree.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .env("SOURCE_DATE_EPOCH", epoch)
        .output()
        .unwrap()
}

fn sh(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// path -> (mode string, uid, gid, size) from `xorriso -find / -exec lsdl`.
fn xorriso_listing(iso: &Path) -> BTreeMap<String, (String, String, String, u64)> {
    let xorriso = need("xorriso", "xorriso");
    let o = Command::new(xorriso)
        .args([
            "-indev",
            iso.to_str().unwrap(),
            "-find",
            "/",
            "-exec",
            "lsdl",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "xorriso: {err}");
    // libisofs reports malformed SUSP/RRIP entries, directory records, path tables as these.
    for bad in ["WARNING", "SORRY", "FAILURE", "FATAL", "MISHAP"] {
        assert!(
            !err.contains(bad),
            "xorriso complained about the image: {err}"
        );
    }
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut m = BTreeMap::new();
    for line in out.lines() {
        let Some(q) = line.find('\'') else { continue };
        let f: Vec<&str> = line[..q].split_whitespace().collect();
        let path = line[q + 1..].trim_end_matches('\'').to_string();
        m.insert(
            path,
            (
                f[0].to_string(),
                f[2].to_string(),
                f[3].to_string(),
                f[4].parse().unwrap(),
            ),
        );
    }
    m
}

#[test]
fn peers_read_names_modes_joliet_and_contents() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("config");
    rich_tree(&tree);
    let iso = dir.path().join("provision.iso");
    let o = build(&tree, &iso, "1700000000");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains(GOSSIP_KEY) && !stderr(&o).contains("hunter2"));
    assert_eq!(
        std::fs::metadata(&iso).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Volume descriptors.
    let isoinfo = need("isoinfo", "genisoimage");
    let d = sh(Command::new(&isoinfo).args(["-d", "-i", iso.to_str().unwrap()]));
    assert!(d.contains("Volume id: PROVISIONING"), "{d}");
    assert!(d.contains("Rock Ridge signatures version 1 found"), "{d}");
    assert!(d.contains("Joliet with UCS level 3 found"), "{d}");

    // Rock Ridge names, modes, owners (xorriso).
    let l = xorriso_listing(&iso);
    let expect_files = files_of(&tree);
    for (rel, data) in &expect_files {
        let (mode, uid, gid, size) = l
            .get(&format!("/{rel}"))
            .unwrap_or_else(|| panic!("{rel} missing from xorriso listing {l:#?}"));
        let secret =
            rel == "consul/consul_secrets.json" || rel.ends_with(".key") || rel.contains("secret");
        let want = if secret { "-rw-------" } else { "-rw-r--r--" };
        assert_eq!(mode, want, "{rel}");
        assert_eq!((uid.as_str(), gid.as_str()), ("0", "0"), "{rel}");
        assert_eq!(*size, data.len() as u64, "{rel}");
    }
    for d in [
        "/consul",
        "/consul/certs",
        "/resource",
        "/resource/app",
        "/unbound",
    ] {
        assert_eq!(l[d].0, "drwxr-xr-x", "{d}");
    }
    assert_eq!(l.len(), expect_files.len() + 7, "{l:#?}");

    // The same modes through isoinfo's Rock Ridge reader.
    let rl = sh(Command::new(&isoinfo).args(["-R", "-l", "-i", iso.to_str().unwrap()]));
    let key_line = rl
        .lines()
        .find(|l| l.trim_end().ends_with(" consul_cert.key"))
        .unwrap();
    assert!(key_line.starts_with("-rw-------"), "{key_line}");
    let crt_line = rl
        .lines()
        .find(|l| l.trim_end().ends_with(" consul_cert.crt"))
        .unwrap();
    assert!(crt_line.starts_with("-rw-r--r--"), "{crt_line}");

    // Joliet names: exact for short names, cut at 64 UCS-2 characters for long ones.
    let j = sh(Command::new(&isoinfo).args(["-J", "-f", "-i", iso.to_str().unwrap()]));
    let jnames: Vec<&str> = j.lines().collect();
    for rel in expect_files.keys() {
        if rel.ends_with(LONG) {
            continue;
        }
        let want = format!("/{rel};1");
        assert!(
            jnames.contains(&want.as_str()),
            "{want} not in Joliet listing:\n{j}"
        );
    }
    let long = jnames
        .iter()
        .find(|n| n.starts_with("/resource/a-very-long"))
        .unwrap();
    let last = long.rsplit('/').next().unwrap();
    assert_eq!(last.chars().count(), 64, "{last}");
    assert!(last.ends_with(".json;1"), "{last}");
    // Contents through Joliet.
    for (rel, name) in [
        (
            "consul/consul_region.json",
            "/consul/consul_region.json;1".to_string(),
        ),
        ("resource/blob.bin", "/resource/blob.bin;1".to_string()),
        (&format!("resource/{LONG}") as &str, long.to_string()),
    ] {
        let o = Command::new(&isoinfo)
            .args(["-J", "-i", iso.to_str().unwrap(), "-x", &name])
            .output()
            .unwrap();
        assert_eq!(o.stdout, expect_files[rel], "Joliet content of {rel}");
    }

    // Rock Ridge extraction gives back every file byte for byte.
    let xorriso = need("xorriso", "xorriso");
    let dest = dir.path().join("extracted");
    sh(Command::new(xorriso).args([
        "-osirrox",
        "on",
        "-indev",
        iso.to_str().unwrap(),
        "-extract",
        "/",
        dest.to_str().unwrap(),
    ]));
    assert_eq!(files_of(&dest), expect_files);
}

#[test]
fn reproducible_and_dated_by_source_date_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("config");
    rich_tree(&tree);
    let a = dir.path().join("a.iso");
    let b = dir.path().join("b.iso");
    let c = dir.path().join("c.iso");
    assert!(build(&tree, &a, "1700000000").status.success());
    // Touch the tree: mtimes on disk must not matter when SOURCE_DATE_EPOCH is set.
    std::fs::write(
        tree.join("resource/app/Config File With Spaces.txt"),
        b"spaces\n",
    )
    .unwrap();
    assert!(build(&tree, &b, "1700000000").status.success());
    assert!(build(&tree, &c, "1600000000").status.success());
    let (a, b, c) = (
        std::fs::read(a).unwrap(),
        std::fs::read(b).unwrap(),
        std::fs::read(c).unwrap(),
    );
    assert!(
        a == b,
        "same tree and SOURCE_DATE_EPOCH gave different bytes"
    );
    assert!(a != c);
    let iso = dir.path().join("a.iso");
    let l = sh(Command::new(need("xorriso", "xorriso")).args([
        "-indev",
        iso.to_str().unwrap(),
        "-find",
        "/",
        "-exec",
        "lsdl",
    ]));
    assert!(
        l.contains("Nov 14  2023 '/consul/consul_region.json'"),
        "{l}"
    );
}

#[test]
fn dry_run_lists_everything_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("config");
    rich_tree(&tree);
    let out = dir.path().join("never.iso");
    let o = run(&[
        "provisioning-cd",
        "--from",
        tree.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("role: client"), "{s}");
    assert!(s.contains("- 0644     300000 resource/blob.bin"), "{s}");
    assert!(
        s.contains("- 0600          8 resource/db_secret.txt"),
        "{s}"
    );
    assert!(s.contains("- 0600"), "{s}");
    assert!(s.contains("d 0755            resource/app"), "{s}");
    assert!(s.contains("resource/region_link"), "{s}");
    assert!(!s.contains(GOSSIP_KEY) && !s.contains("hunter2"));
    assert!(!out.exists());
}

#[test]
fn output_inside_the_tree_and_existing_outputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("config");
    valid_tree(&tree);
    let inside = tree.join("p.iso");
    let o = run(&[
        "provisioning-cd",
        "--from",
        tree.to_str().unwrap(),
        "-o",
        inside.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("inside the config tree"),
        "{}",
        stderr(&o)
    );
    let out = dir.path().join("p.iso");
    std::fs::write(&out, b"keep").unwrap();
    let o = run(&[
        "provisioning-cd",
        "--from",
        tree.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(stderr(&o).contains("[output-exists]"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), b"keep");
}

#[test]
fn the_readme_sample_tree_builds() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.iso");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/config");
    let o = run(&[
        "provisioning-cd",
        "--from",
        sample.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let l = xorriso_listing(&out);
    assert_eq!(l["/consul/consul_secrets.json"].0, "-rw-------");
    assert!(l.contains_key("/consul/client/consul_client_location.json"));
}

#[test]
fn builder_symlinks_and_multi_extent_files_read_back() {
    use isotool::iso::build::{FileData, IsoBuilder, Meta};
    use isotool::output::{AtomicOutput, OutputOptions};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.bin");
    let data: Vec<u8> = (0..20_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(&src, &data).unwrap();
    let mut b = IsoBuilder::new("MULTI", Meta::root(0o755, 1_700_000_000)).unwrap();
    // 8 KiB extents: the 80,000-byte file spans 10 directory records.
    b.set_max_extent(8192).unwrap();
    b.add_dir("d", Meta::root(0o750, 1_700_000_000)).unwrap();
    b.add_file(
        "d/big.bin",
        FileData::Path(src),
        data.len() as u64,
        Meta {
            mode: 0o640,
            uid: 1000,
            gid: 1001,
            mtime: 1_600_000_000,
        },
    )
    .unwrap();
    b.add_symlink("d/link", "big.bin", Meta::root(0o777, 1_700_000_000))
        .unwrap();
    b.add_symlink("abs", "/etc/hostname", Meta::root(0o777, 1_700_000_000))
        .unwrap();
    let iso = dir.path().join("m.iso");
    let o = AtomicOutput::create(&iso, &[], OutputOptions::default()).unwrap();
    b.write(&o, &isotool::disk::NoProgress).unwrap();
    o.commit().unwrap();
    let xorriso = need("xorriso", "xorriso");
    let l = sh(Command::new(&xorriso).args([
        "-indev",
        iso.to_str().unwrap(),
        "-find",
        "/",
        "-exec",
        "lsdl",
    ]));
    assert!(
        l.contains("-rw-r-----    1 1000     1001        80000 Sep 13  2020 '/d/big.bin'"),
        "{l}"
    );
    assert!(l.contains("'/d/link' -> 'big.bin'"), "{l}");
    assert!(l.contains("'/abs' -> '/etc/hostname'"), "{l}");
    assert!(l.contains("drwxr-x---"), "{l}");
    let dest = dir.path().join("x");
    sh(Command::new(&xorriso).args([
        "-osirrox",
        "on",
        "-indev",
        iso.to_str().unwrap(),
        "-extract",
        "/d/big.bin",
        dest.to_str().unwrap(),
    ]));
    assert!(
        std::fs::read(&dest).unwrap() == data,
        "multi-extent content differs"
    );
}

#[test]
fn directories_spanning_several_sectors_list_completely() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("config");
    valid_tree(&tree);
    for i in 0..300 {
        write(
            &tree,
            &format!("resource/many/resource-file-number-{i:04}.json"),
            format!("{{\"i\": {i}}}").as_bytes(),
        );
    }
    let iso = dir.path().join("many.iso");
    let o = build(&tree, &iso, "1700000000");
    assert!(o.status.success(), "{}", stderr(&o));
    let l = xorriso_listing(&iso);
    assert_eq!(
        l.keys()
            .filter(|k| k.starts_with("/resource/many/"))
            .count(),
        300
    );
    let j = sh(Command::new(need("isoinfo", "genisoimage")).args([
        "-J",
        "-f",
        "-i",
        iso.to_str().unwrap(),
    ]));
    assert_eq!(
        j.lines()
            .filter(|k| k.starts_with("/resource/many/"))
            .count(),
        300
    );
    let dest = dir.path().join("x");
    sh(Command::new(need("xorriso", "xorriso")).args([
        "-osirrox",
        "on",
        "-indev",
        iso.to_str().unwrap(),
        "-extract",
        "/",
        dest.to_str().unwrap(),
    ]));
    assert_eq!(files_of(&dest), files_of(&tree));
}
