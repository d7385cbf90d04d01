//! NoCloud seeds and Azure custom data, checked by blkid, fsck.fat, mtools, isoinfo and
//! cloud-init's own schema check.

use crate::prov_fixture::*;
use base64::Engine as _;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const USER_DATA: &[u8] = b"#cloud-config\nhostname: seed-test\nruncmd:\n  - [echo, hi]\n";

fn sh(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn label(img: &Path) -> String {
    let blkid = need("blkid", "util-linux");
    sh(Command::new(blkid).args(["-p", "-o", "value", "-s", "LABEL", img.to_str().unwrap()]))
        .trim()
        .to_string()
}

fn schema_ok(file: &Path) {
    let ci = need("cloud-init", "cloud-init");
    let o = Command::new(ci)
        .args(["schema", "--config-file", file.to_str().unwrap()])
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.status.success() && all.contains("Valid cloud-config"),
        "cloud-init schema refused {}: {all}",
        file.display()
    );
}

#[test]
fn iso_and_fat_seeds_are_labelled_cidata_and_clean() {
    let dir = tempfile::tempdir().unwrap();
    let ud = dir.path().join("user-data");
    std::fs::write(&ud, USER_DATA).unwrap();
    let nc = dir.path().join("network-config");
    std::fs::write(&nc, b"version: 2\nethernets:\n  eth0:\n    dhcp4: true\n").unwrap();
    for format in ["iso", "vfat"] {
        let out = dir.path().join(format!("seed.{format}"));
        let o = run(&[
            "cloud-init-seed",
            "-o",
            out.to_str().unwrap(),
            "--user-data",
            ud.to_str().unwrap(),
            "--network-config",
            nc.to_str().unwrap(),
            "--format",
            format,
        ]);
        assert!(o.status.success(), "{format}: {}", stderr(&o));
        assert_eq!(label(&out), "cidata", "{format}");
        assert_eq!(
            std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = dir.path().join(format!("again.{format}"));
        assert!(
            run(&[
                "cloud-init-seed",
                "-o",
                again.to_str().unwrap(),
                "--user-data",
                ud.to_str().unwrap(),
                "--network-config",
                nc.to_str().unwrap(),
                "--format",
                format
            ])
            .status
            .success()
        );
        assert!(
            std::fs::read(&out).unwrap() == std::fs::read(&again).unwrap(),
            "{format} seed not reproducible"
        );
    }
    // FAT: fsck clean, files readable by mtools.
    let fat = dir.path().join("seed.vfat");
    let fsck = need("fsck.fat", "dosfstools");
    let o = Command::new(fsck)
        .args(["-n", fat.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "fsck.fat -n: {text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        text.lines().count(),
        2,
        "fsck.fat reported something: {text}"
    );
    let mtype = need("mtype", "mtools");
    let got = Command::new(&mtype)
        .args(["-i", fat.to_str().unwrap(), "::user-data"])
        .output()
        .unwrap();
    assert_eq!(got.stdout, USER_DATA);
    let meta = Command::new(&mtype)
        .args(["-i", fat.to_str().unwrap(), "::meta-data"])
        .output()
        .unwrap();
    let meta = String::from_utf8(meta.stdout).unwrap();
    assert!(meta.starts_with("instance-id: iid-"), "{meta}");
    // ISO: Rock Ridge names, contents.
    let iso = dir.path().join("seed.iso");
    let isoinfo = need("isoinfo", "genisoimage");
    let f = sh(Command::new(&isoinfo).args(["-R", "-f", "-i", iso.to_str().unwrap()]));
    let names: Vec<&str> = f.lines().collect();
    assert_eq!(names, ["/meta-data", "/network-config", "/user-data"]);
    let got = Command::new(&isoinfo)
        .args(["-R", "-i", iso.to_str().unwrap(), "-x", "/user-data"])
        .output()
        .unwrap();
    assert_eq!(got.stdout, USER_DATA);
    let got = Command::new(&isoinfo)
        .args(["-R", "-i", iso.to_str().unwrap(), "-x", "/meta-data"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(got.stdout).unwrap(),
        meta,
        "same default meta-data on both formats"
    );
}

#[test]
fn user_data_that_cloud_init_would_not_understand_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, want) in [
        (
            "yaml-no-header",
            &b"hostname: x\npassword: s3cr3t\n"[..],
            "YAML without the `#cloud-config` first line",
        ),
        (
            "json",
            &b"{\"hostname\": \"x\"}"[..],
            "looks like a JSON document",
        ),
        (
            "bad-yaml",
            &b"#cloud-config\nruncmd: [\n"[..],
            "YAML does not parse at line",
        ),
        ("empty", &b""[..], "the file is empty"),
        ("binary", &b"\x00\x01\x02garbage"[..], "binary data"),
    ] {
        let ud = dir.path().join(name);
        std::fs::write(&ud, bytes).unwrap();
        let out = dir.path().join(format!("{name}.iso"));
        let o = run(&[
            "cloud-init-seed",
            "-o",
            out.to_str().unwrap(),
            "--user-data",
            ud.to_str().unwrap(),
        ]);
        let err = stderr(&o);
        assert!(!o.status.success(), "{name} accepted");
        assert!(err.contains(want), "{name}: {err}");
        assert!(
            err.contains(ud.to_str().unwrap()),
            "{name}: the file is not named: {err}"
        );
        assert!(!err.contains("s3cr3t"));
        assert!(!out.exists());
    }
    // Accepted kinds.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, USER_DATA).unwrap();
    let gz = gz.finish().unwrap();
    for (name, bytes) in [
        ("script", &b"#!/bin/sh\necho hi\n"[..]),
        ("mime", &b"Content-Type: multipart/mixed; boundary=\"==X==\"\nMIME-Version: 1.0\n\n--==X==\nContent-Type: text/x-shellscript\n\n#!/bin/sh\n--==X==--\n"[..]),
        ("include", &b"#include\nhttps://example.com/ud\n"[..]),
        ("boothook", &b"#cloud-boothook\n#!/bin/sh\n"[..]),
        ("gzip", &gz[..]),
    ] {
        let ud = dir.path().join(name);
        std::fs::write(&ud, bytes).unwrap();
        let out = dir.path().join(format!("{name}.iso"));
        let o = run(&["cloud-init-seed", "-o", out.to_str().unwrap(), "--user-data", ud.to_str().unwrap()]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
    }
}

/// Decodes every write_files entry of a cloud-config: path -> (permissions, bytes).
fn decode_write_files(doc: &str) -> std::collections::BTreeMap<String, (String, Vec<u8>)> {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(doc).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = std::collections::BTreeMap::new();
    for f in v["write_files"].as_sequence().unwrap() {
        let path = f["path"].as_str().unwrap().to_string();
        let content = f["content"].as_str().unwrap();
        let bytes = match f.get("encoding").and_then(|e| e.as_str()) {
            None => content.as_bytes().to_vec(),
            Some("b64") => b64.decode(content).unwrap(),
            Some("gz+b64") => {
                let gz = b64.decode(content).unwrap();
                let mut d = Vec::new();
                flate2::read::GzDecoder::new(&gz[..])
                    .read_to_end(&mut d)
                    .unwrap();
                d
            }
            Some(e) => panic!("unexpected encoding {e}"),
        };
        out.insert(
            path,
            (f["permissions"].as_str().unwrap().to_string(), bytes),
        );
    }
    out
}

fn check_round_trip(tree: &Path, doc: &str) {
    let files = files_of(tree);
    let got = decode_write_files(doc);
    assert_eq!(got.len(), files.len());
    for (rel, data) in &files {
        let (perm, bytes) = &got[&format!("/run/cloud-init/{rel}")];
        assert!(bytes == data, "{rel}: content differs");
        let secret =
            rel == "consul/consul_secrets.json" || rel.ends_with(".key") || rel.contains("secret");
        assert_eq!(perm, if secret { "0600" } else { "0644" }, "{rel}");
    }
}

#[test]
fn azure_custom_data_round_trips_and_passes_cloud_init_schema() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("config");
    valid_tree(&tree);
    add_certs(&tree, &ec_certs());
    write(
        &tree,
        "resource/quotes \"and\" \\ tabs\t.txt",
        "ünï \"q\" \\ \r\n\u{1}\n".as_bytes(),
    );
    write(&tree, "resource/bin.dat", &[0xff, 0xfe, 0, 1, 2, 0x80]);
    let out = dir.path().join("custom-data.txt");
    let o = run(&[
        "cloud-init-seed",
        "--from",
        tree.to_str().unwrap(),
        "--azure",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains(GOSSIP_KEY));
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let doc = std::fs::read_to_string(&out).unwrap();
    assert!(doc.starts_with("#cloud-config\n"));
    assert!(!doc.contains("gz+b64"), "small trees travel uncompressed");
    assert!(doc.contains("encoding: b64"), "binary file base64-encoded");
    check_round_trip(&tree, &doc);
    schema_ok(&out);

    // A tree that only fits compressed: 200 KB of text becomes gz+b64.
    let big: String = (0..4000)
        .map(|i| format!("zone-{i}.example. IN A 10.0.{}.{}\n", i / 256, i % 256))
        .collect();
    write(&tree, "resource/zones.txt", big.as_bytes());
    assert!(big.len() > 65_535);
    let out2 = dir.path().join("custom-data-2.txt");
    let o = run(&[
        "cloud-init-seed",
        "--from",
        tree.to_str().unwrap(),
        "--azure",
        "-o",
        out2.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc2 = std::fs::read_to_string(&out2).unwrap();
    assert!(doc2.len() <= 65_535);
    assert!(doc2.contains("encoding: gz+b64"));
    check_round_trip(&tree, &doc2);
    schema_ok(&out2);
    let out3 = dir.path().join("custom-data-3.txt");
    assert!(
        run(&[
            "cloud-init-seed",
            "--from",
            tree.to_str().unwrap(),
            "--azure",
            "-o",
            out3.to_str().unwrap()
        ])
        .status
        .success()
    );
    assert_eq!(
        std::fs::read(&out2).unwrap(),
        std::fs::read(&out3).unwrap(),
        "not reproducible"
    );

    // Incompressible data that cannot fit: refused with the actual size, nothing written.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..70_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    write(&tree, "resource/noise.bin", &noise);
    let out4 = dir.path().join("custom-data-4.txt");
    let o = run(&[
        "cloud-init-seed",
        "--from",
        tree.to_str().unwrap(),
        "--azure",
        "-o",
        out4.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("[limit-exceeded]") && err.contains("Azure accepts at most 65535"),
        "{err}"
    );
    let size: usize = err
        .split("custom data is ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(size > 65_535, "{err}");
    assert!(!out4.exists());
}

#[test]
fn the_tree_as_a_nocloud_seed_for_local_tests() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("config");
    valid_tree(&tree);
    for format in ["iso", "vfat"] {
        let out = dir.path().join(format!("seed-{format}"));
        let o = run(&[
            "cloud-init-seed",
            "--from",
            tree.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--format",
            format,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(label(&out), "cidata");
        let ud = if format == "iso" {
            Command::new(need("isoinfo", "genisoimage"))
                .args(["-R", "-i", out.to_str().unwrap(), "-x", "/user-data"])
                .output()
                .unwrap()
                .stdout
        } else {
            Command::new(need("mtype", "mtools"))
                .args(["-i", out.to_str().unwrap(), "::user-data"])
                .output()
                .unwrap()
                .stdout
        };
        let ud_path = dir.path().join(format!("ud-{format}"));
        std::fs::write(&ud_path, &ud).unwrap();
        schema_ok(&ud_path);
        check_round_trip(&tree, std::str::from_utf8(&ud).unwrap());
    }
}
