//! The JSON contract (docs/json.md): one golden document per command, keys in order, `schema`
//! first; one format vocabulary in `info`, `convert` and `validate`; modes as octal strings.
//!
//! Outputs of inputs we make ourselves are compared value for value (temporary paths become
//! `$TMP`); outputs about the xorriso-made fixture ISO are compared by shape (keys, order and
//! value types), since sizes and block addresses follow the xorriso and syslinux versions.
//! `UPDATE_GOLDEN=1` rewrites the files (review the diff).

use crate::iso_fixture::{BIN, ubuntu_mini};
use std::path::{Path, PathBuf};
use std::process::Command;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/golden/json")
}

fn json(tmp: &Path, args: &[&str]) -> String {
    let o = Command::new(BIN)
        .args(args)
        .arg("--json")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(
        o.status.success() || o.status.code() == Some(3),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .replace(tmp.to_str().unwrap(), "$TMP")
}

/// Every scalar replaced by its type: what stays is the keys, their order and the types.
pub(crate) fn shape(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        let (key, val) = match t.strip_prefix('"').and_then(|r| r.split_once("\": ")) {
            Some((k, v)) => (Some(k), v),
            None => (None, t),
        };
        let (v, comma) = match val.strip_suffix(',') {
            Some(v) => (v, ","),
            None => (val, ""),
        };
        let ty = if key == Some("schema") {
            v
        } else if v.starts_with('"') {
            "<string>"
        } else if v == "true" || v == "false" {
            "<bool>"
        } else if v.parse::<f64>().is_ok() {
            "<number>"
        } else {
            v
        };
        match key {
            Some(k) => out.push_str(&format!("{indent}\"{k}\": {ty}{comma}\n")),
            None => out.push_str(&format!("{indent}{ty}{comma}\n")),
        }
    }
    out
}

pub(crate) fn check(name: &str, got: &str) {
    let file = golden_dir().join(format!("{name}.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&file, got).unwrap();
    }
    let want = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", file.display()));
    assert_eq!(
        got,
        want,
        "{name}: the JSON differs from {}",
        file.display()
    );
    assert!(
        got.starts_with(&format!(
            "{{\n  \"schema\": \"isotool/{}/1\"",
            name.split('.').next().unwrap()
        )),
        "{name}: schema is not the first key:\n{got}"
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn json_disk_commands_match_their_golden_files_and_share_one_format_vocabulary() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path();
    let raw = t.join("in.raw");
    let f = std::fs::File::create(&raw).unwrap();
    f.set_len(3 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[0x5a; 1 << 20], 1 << 20).unwrap();
    drop(f);
    let vhd = t.join("out.vhd");
    let c = json(t, &["convert", s(&raw), s(&vhd), "--sha256"]);
    check("convert", &c);
    check(
        "disk-create",
        &json(
            t,
            &["disk", "create", s(&t.join("blank.vhdx")), "--size", "1G"],
        ),
    );
    let i = json(t, &["info", s(&vhd)]);
    check("info", &i);
    let v = json(t, &["validate", s(&vhd), "--for", "azure"]);
    check("validate", &v);
    // the same name for the same format in the three
    for (doc, key) in [
        (&c, "\"format\": \"vhd-fixed\""),
        (&i, "\"format\": \"vhd-fixed\""),
        (&v, "\"format\": \"vhd-fixed\""),
    ] {
        assert!(doc.contains(key), "{doc}");
    }
    // a fix names the real command to run on this image
    let odd = t.join("odd.raw");
    std::fs::write(&odd, vec![0u8; 1_000_000]).unwrap();
    let v = json(t, &["validate", s(&odd), "--for", "azure"]);
    assert!(
        v.contains("\"fix\": \"isotool convert $TMP/odd.raw $TMP/odd.vhd --azure"),
        "{v}"
    );
    assert!(!v.contains(" IMG "), "{v}");
}

#[test]
fn json_iso_and_media_commands_match_their_golden_files() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path();
    let iso = ubuntu_mini(t);
    let ls = json(t, &["iso", "ls", s(&iso), "/isolinux"]);
    // modes are octal strings, as ls and chmod write them
    assert!(ls.contains("\"mode\": \"0"), "{ls}");
    check("iso-ls", &shape(&ls));
    check("iso-info", &shape(&json(t, &["iso", "info", s(&iso)])));
    check(
        "iso-extract",
        &shape(&json(
            t,
            &[
                "iso",
                "extract",
                s(&iso),
                "/md5sum.txt",
                "-o",
                s(&t.join("m")),
            ],
        )),
    );
    let seed = t.join("a.seed");
    std::fs::write(&seed, "d-i debconf/priority string critical\n").unwrap();
    check(
        "remaster",
        &shape(&json(
            t,
            &[
                "remaster",
                s(&iso),
                "-o",
                s(&t.join("r.iso")),
                "--preseed",
                s(&seed),
            ],
        )),
    );
    let tree = t.join("config");
    crate::prov_fixture::valid_tree(&tree);
    check(
        "provisioning-cd",
        &json(
            t,
            &[
                "provisioning-cd",
                "--from",
                s(&tree),
                "-o",
                s(&t.join("p.iso")),
            ],
        ),
    );
    check(
        "cloud-init-seed",
        &json(
            t,
            &[
                "cloud-init-seed",
                "--from",
                s(&tree),
                "-o",
                s(&t.join("seed.iso")),
            ],
        ),
    );
    check(
        "cloud-init-seed.azure",
        &json(
            t,
            &[
                "cloud-init-seed",
                "--from",
                s(&tree),
                "--azure",
                "-o",
                s(&t.join("cd.txt")),
            ],
        ),
    );
}
