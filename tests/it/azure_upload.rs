//! `isotool azure upload` against Azurite (started by the tests on 127.0.0.1, a free port):
//! sparse raw / dynamic VHDX / fixed VHD sources compared with qemu-img's fixed VHD, page ranges,
//! Content-MD5, resume after a kill, a corrupted page caught, auth and permission errors.

use crate::azure_common;

use azure_common::*;
use isotool::azure::pageblob::BlobClient;
use isotool::vhd::footer::Footer;
use serde_json::Value;
use std::path::Path;

const GIB: u64 = 1 << 30;

/// ~400 MiB of data in several runs of a 3 GiB disk (one run ends unaligned to 1 MiB).
fn runs_3g() -> Vec<(u64, u64)> {
    vec![
        (0, 64 * MIB),
        (700 * MIB, 100 * MIB),
        (1536 * MIB, 136 * MIB + 4096),
        (2900 * MIB, 100 * MIB),
    ]
}

fn upload(
    az: &Azurite,
    disk: &Path,
    container: &str,
    blob: &str,
    extra: &[&str],
) -> (bool, String, String) {
    run(isotool()
        .args(["azure", "upload"])
        .arg(disk)
        .args([
            "--container",
            container,
            "--blob",
            blob,
            "--json",
            "--parallel",
            "4",
        ])
        .args(["--connection-string", &az.connection_string()])
        .args(extra))
}

fn report(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// MD5 (hex) of the whole blob as downloaded: page ranges read back, zeros elsewhere.
fn downloaded_md5(c: &BlobClient, len: u64) -> String {
    isotool::checksum::hex(&isotool::azure::upload::blob_md5(c, len).unwrap())
}

/// Compares the blob with qemu-img's fixed VHD of the same source: data byte for byte (MD5 of
/// the data part, and every page range read back equals the oracle's bytes there), the footer
/// field by field except the fields that are a time or a random id.
fn check_against_oracle(
    c: &BlobClient,
    oracle: &Path,
    oracle_data_md5: &str,
    runs: &[(u64, u64)],
    vsize: u64,
) {
    let ranges = c.page_ranges().unwrap();
    let mut want: Vec<(u64, u64)> = runs.iter().map(|&(o, l)| (o, o + l)).collect();
    want.push((vsize, vsize + 512));
    assert_eq!(
        ranges, want,
        "Get Page Ranges covers exactly the data and the footer"
    );
    let f = std::fs::File::open(oracle).unwrap();
    use std::os::unix::fs::FileExt;
    for &(a, b) in &ranges[..ranges.len() - 1] {
        let mut off = a;
        while off < b {
            let n = (b - off).min(4 * MIB);
            let got = c.read_range(off, n).unwrap();
            let mut exp = vec![0u8; n as usize];
            f.read_exact_at(&mut exp, off).unwrap();
            assert!(got == exp, "blob bytes differ from qemu-img's at {off}");
            off += n;
        }
    }
    // The data part as a whole (zeros outside the ranges included).
    use md5::Digest;
    let mut h = md5::Md5::new();
    let mut pos = 0;
    let zeros = vec![0u8; 4 << 20];
    for &(a, b) in &ranges[..ranges.len() - 1] {
        let mut gap = a - pos;
        while gap > 0 {
            let k = gap.min(zeros.len() as u64) as usize;
            h.update(&zeros[..k]);
            gap -= k as u64;
        }
        h.update(c.read_range(a, b - a).unwrap_or_else(|_| {
            let mut v = Vec::new();
            let mut o = a;
            while o < b {
                let n = (b - o).min(4 * MIB);
                v.extend(c.read_range(o, n).unwrap());
                o += n;
            }
            v
        }));
        pos = b;
    }
    let mut gap = vsize - pos;
    while gap > 0 {
        let k = gap.min(zeros.len() as u64) as usize;
        h.update(&zeros[..k]);
        gap -= k as u64;
    }
    assert_eq!(
        isotool::checksum::hex(&h.finalize()),
        oracle_data_md5,
        "data part differs"
    );
    let ours = Footer::parse(&c.read_range(vsize, 512).unwrap()).unwrap();
    let mut theirs_b = [0u8; 512];
    f.read_exact_at(&mut theirs_b, vsize).unwrap();
    let theirs = Footer::parse(&theirs_b).unwrap();
    // Every field but the time, the random id and the checksum; and the geometry: qemu's
    // force_size writes the maximum CHS (65535/16/255) to say "use current_size", we write the
    // VHD specification's CHS for the size; Hyper-V and Azure read current_size, equal here.
    assert_eq!(
        (
            ours.disk_type,
            ours.current_size,
            ours.original_size,
            ours.creator_app
        ),
        (
            theirs.disk_type,
            theirs.current_size,
            theirs.original_size,
            theirs.creator_app
        ),
    );
    assert_eq!(
        (ours.data_offset, ours.features, ours.version),
        (theirs.data_offset, theirs.features, theirs.version),
    );
    assert_eq!(
        ours.geometry,
        isotool::vhd::footer::Geometry::for_sectors(vsize / 512)
    );
}

#[test]
fn sparse_raw_vhdx_and_fixed_vhd_match_qemu_img() {
    let az = Azurite::start();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let runs = runs_3g();
    sparse_raw(&raw, 3 * GIB, &runs);
    let data: u64 = runs.iter().map(|r| r.1).sum();
    let oracle = dir.path().join("oracle.vhd");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vpc",
        "-o",
        "subformat=fixed,force_size=on",
        raw.to_str().unwrap(),
        oracle.to_str().unwrap(),
    ]);
    let vhdx = dir.path().join("disk.vhdx");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vhdx",
        "-o",
        "subformat=dynamic",
        raw.to_str().unwrap(),
        vhdx.to_str().unwrap(),
    ]);
    let oracle_md5 = file_md5(&oracle, 3 * GIB);
    for (src, blob) in [
        (&raw, "raw.vhd"),
        (&vhdx, "vhdx.vhd"),
        (&oracle, "fixed.vhd"),
    ] {
        let (ok, out, err) = upload(&az, src, "disks", blob, &[]);
        assert!(ok, "{blob}: {err}");
        let r = report(&out);
        assert_eq!(r["virtual_size"], 3 * GIB);
        assert_eq!(
            r["sent_bytes"],
            data + 512,
            "{blob}: only data and the footer are sent"
        );
        let c = az.client("disks", blob);
        check_against_oracle(&c, &oracle, &oracle_md5, &runs, 3 * GIB);
        let props = c.properties().unwrap().unwrap();
        let md5_b64 = props.md5.expect("Content-MD5 set");
        assert_eq!(md5_b64, r["md5_base64"].as_str().unwrap());
        assert_eq!(
            downloaded_md5(&c, 3 * GIB + 512),
            r["md5"].as_str().unwrap(),
            "Content-MD5 is the MD5 of the downloaded blob"
        );
        assert_eq!(props.len, 3 * GIB + 512);
    }
}

/// Kill the upload at about half, rerun: the blob is identical to the one-shot upload (same
/// SOURCE_DATE_EPOCH, same footer) and the rerun sends less than 60 % of the data. Then a page
/// corrupted in Azurite between two runs of a resume is caught by the final MD5 check.
#[test]
fn resume_after_kill_and_corrupted_page_caught() {
    let az = Azurite::start();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let runs = vec![(0, 96 * MIB), (512 * MIB, 160 * MIB)];
    sparse_raw(&raw, GIB, &runs);
    let data: u64 = runs.iter().map(|r| r.1).sum();
    // The reference: a one-shot upload.
    let (ok, out, err) = upload(&az, &raw, "cont", "ref.vhd", &[]);
    assert!(ok, "{err}");
    let reference = report(&out);
    // Interrupted run.
    let mut child = isotool()
        .args(["azure", "upload"])
        .arg(&raw)
        .args([
            "--container",
            "cont",
            "--blob",
            "r.vhd",
            "--parallel",
            "1",
            "--quiet",
        ])
        .args(["--connection-string", &az.connection_string()])
        .spawn()
        .unwrap();
    let c = az.client("cont", "r.vhd");
    let t0 = std::time::Instant::now();
    loop {
        let have: u64 = c
            .page_ranges()
            .map(|r| r.iter().map(|(a, b)| b - a).sum())
            .unwrap_or(0);
        if have >= data * 45 / 100 {
            child.kill().unwrap();
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the upload ended before it could be interrupted"
        );
        assert!(t0.elapsed().as_secs() < 300);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.wait().unwrap();
    let props = c.properties().unwrap().unwrap();
    assert!(
        props.md5.is_none(),
        "an interrupted upload has no Content-MD5"
    );
    // Rerun: resumes.
    let (ok, out, err) = upload(&az, &raw, "cont", "r.vhd", &[]);
    assert!(ok, "{err}");
    let r = report(&out);
    assert_eq!(r["resumed"], true);
    assert_eq!(r["verified"], true);
    let sent = r["sent_bytes"].as_u64().unwrap();
    assert!(sent < data * 60 / 100, "second run sent {sent} of {data}");
    assert_eq!(
        r["md5"], reference["md5"],
        "the resumed blob is the one-shot blob"
    );
    assert_eq!(
        downloaded_md5(&c, GIB + 512),
        reference["md5"].as_str().unwrap()
    );
    // A finished blob is refused without --overwrite.
    let (ok, _, err) = upload(&az, &raw, "cont", "r.vhd", &[]);
    assert!(
        !ok && err.contains("output-exists") && err.contains("--overwrite"),
        "{err}"
    );

    // Corruption between two runs of a resume.
    let mut child = isotool()
        .args(["azure", "upload"])
        .arg(&raw)
        .args([
            "--container",
            "cont",
            "--blob",
            "x.vhd",
            "--parallel",
            "1",
            "--quiet",
        ])
        .args(["--connection-string", &az.connection_string()])
        .spawn()
        .unwrap();
    let c = az.client("cont", "x.vhd");
    loop {
        let have: u64 = c
            .page_ranges()
            .map(|r| r.iter().map(|(a, b)| b - a).sum())
            .unwrap_or(0);
        if have >= data * 30 / 100 {
            child.kill().unwrap();
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the upload ended before it could be interrupted"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.wait().unwrap();
    c.put_page(MIB, &pattern(999, 512), GIB + 512).unwrap();
    let (ok, out, err) = upload(&az, &raw, "cont", "x.vhd", &[]);
    assert!(!ok, "a corrupted page must fail the upload: {out}");
    assert!(err.contains("bad-checksum") && err.contains("MD5"), "{err}");
    assert!(
        c.properties().unwrap().unwrap().md5.is_none(),
        "no Content-MD5 on a bad blob"
    );
    // --overwrite starts again and succeeds.
    let (ok, out, err) = upload(&az, &raw, "cont", "x.vhd", &["--overwrite"]);
    assert!(ok, "{err}");
    assert_eq!(report(&out)["md5"], reference["md5"]);
}

#[test]
fn another_source_refused_missing_container_and_credentials_errors() {
    let az = Azurite::start();
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.raw");
    let b = dir.path().join("b.raw");
    sparse_raw(&a, 8 * MIB, &[(0, MIB)]);
    sparse_raw(&b, 8 * MIB, &[(2 * MIB, MIB)]);
    // Missing container: created by default.
    let (ok, out, err) = upload(&az, &a, "newc", "a.vhd", &[]);
    assert!(ok, "{err}");
    assert_eq!(report(&out)["container_created"], true);
    // Another source onto the same blob: refused.
    let (ok, _, err) = upload(&az, &b, "newc", "a.vhd", &[]);
    assert!(!ok && err.contains("another source"), "{err}");
    // --no-create-container: clear error.
    let (ok, _, err) = upload(&az, &a, "absent", "a.vhd", &["--no-create-container"]);
    assert!(
        !ok && err.contains("absent") && err.contains("--no-create-container"),
        "{err}"
    );
    // Wrong key: authentication error naming the account, never the key.
    let wrong = "d3JvbmdrZXl3cm9uZ2tleXdyb25na2V5d3JvbmdrZXl3cm9uZ2tleQ==";
    let (ok, out, err) = run(isotool().args(["azure", "upload"]).arg(&a).args([
        "--container",
        "newc",
        "--blob",
        "w.vhd",
        "--connection-string",
        &az.connection_string_with_key(wrong),
    ]));
    assert!(!ok);
    assert!(
        err.contains("auth-failed") && err.contains("devstoreaccount1"),
        "{err}"
    );
    for leak in [wrong, &wrong[..20]] {
        assert!(
            !err.contains(leak) && !out.contains(leak),
            "key leaked: {err}"
        );
    }
    // Read-only SAS: permission error, signature never shown.
    let ro = az.account_sas("rl");
    let url = format!("{}/newc/ro.vhd?{ro}", az.base_url());
    let (ok, out, err) = run(isotool()
        .args(["azure", "upload"])
        .arg(&a)
        .args(["--sas-url", &url]));
    assert!(!ok && err.contains("permission-denied"), "{err}");
    let sig = ro.rsplit("sig=").next().unwrap();
    assert!(
        !err.contains(sig) && !out.contains(sig),
        "SAS signature leaked: {err}"
    );
    // A writable container SAS works.
    let rw = az.account_sas("rwc");
    let url = format!("{}/newc?{rw}", az.base_url());
    let (ok, out, err) = run(isotool().args(["azure", "upload"]).arg(&a).args([
        "--sas-url",
        &url,
        "--blob",
        "sas.vhd",
        "--json",
    ]));
    assert!(ok, "{err}");
    assert_eq!(report(&out)["sent_bytes"], MIB + 512);
    let sig = rw.rsplit("sig=").next().unwrap();
    assert!(!out.contains(sig) && !err.contains(sig));
}

/// `--dry-run` sends nothing (the endpoints are a closed port: any request would fail the run),
/// masks the SAS signature, and its counts are those of the real upload: short zero runs inside
/// data are sent with it (one call), a 1 MiB zero run is skipped; Get Page Ranges then covers
/// the data and the short run, nothing more.
#[test]
fn dry_run_sends_nothing_and_counts_what_upload_sends() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("d.raw");
    sparse_raw(&disk, 16 * MIB, &[(0, 3 * MIB)]);
    // Inside the data: 8 KiB of zeros (sent along) and 1 MiB of zeros (skipped).
    let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&vec![0u8; 8192], 256 << 10).unwrap();
    f.write_all_at(&vec![0u8; MIB as usize], MIB).unwrap();
    drop(f);
    let sig = "c2VjcmV0c2lnbmF0dXJlc2VjcmV0c2lnbmF0dXJlAA%3D%3D";
    let key = "d3JvbmdrZXl3cm9uZ2tleXdyb25na2V5d3JvbmdrZXl3cm9uZ2tleQ==";
    let closed_cs = format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    );
    let sas =
        format!("http://127.0.0.1:9/devstoreaccount1/cont/d.vhd?sv=2019-02-02&sp=rw&sig={sig}");
    let mut plans = Vec::new();
    for creds in [
        vec!["--connection-string", &closed_cs, "--container", "cont"],
        vec!["--sas-url", &sas],
    ] {
        let (ok, out, err) = run(isotool()
            .args(["azure", "upload", "--dry-run"])
            .arg(&disk)
            .args(&creds));
        assert!(ok, "{err}");
        assert!(out.contains("dry run: nothing sent"), "{out}");
        for leak in [sig, &sig[..20], key, &key[..20]] {
            assert!(
                !out.contains(leak) && !err.contains(leak),
                "secret leaked: {out}{err}"
            );
        }
        let (ok, json, err) = run(isotool()
            .args(["azure", "upload", "--dry-run", "--json"])
            .arg(&disk)
            .args(&creds));
        assert!(ok, "{err}");
        let r = report(&json);
        assert_eq!(r["dry_run"], true);
        assert_eq!(r["blob_size"], 16 * MIB + 512);
        plans.push(r);
    }
    assert!(
        plans[1]["blob_url"]
            .as_str()
            .unwrap()
            .ends_with("/cont/d.vhd?sv=2019-02-02&sp=rw&sig=***"),
        "{}",
        plans[1]["blob_url"]
    );
    let p = &plans[0];
    // Sent: [0, 1 MiB) with the 8 KiB zero run inside, [2 MiB, 3 MiB), the footer; one call each.
    assert_eq!(p["sent_bytes"], 2 * MIB + 512);
    assert_eq!(p["put_pages"], 3);
    assert_eq!(p["zero_bytes"], 14 * MIB);

    // The real upload does what the dry run said.
    let az = Azurite::start();
    let (ok, out, err) = upload(&az, &disk, "cont", "d.vhd", &[]);
    assert!(ok, "{err}");
    let r = report(&out);
    for k in [
        "sent_bytes",
        "put_pages",
        "zero_bytes",
        "md5",
        "sha256",
        "blob_size",
    ] {
        assert_eq!(r[k], p[k], "{k}: dry run and upload differ");
    }
    let c = az.client("cont", "d.vhd");
    assert_eq!(
        c.page_ranges().unwrap(),
        vec![(0, MIB), (2 * MIB, 3 * MIB), (16 * MIB, 16 * MIB + 512)],
        "page ranges: the data, the short zero run inside it, the footer"
    );
    assert_eq!(
        downloaded_md5(&c, 16 * MIB + 512),
        r["md5"].as_str().unwrap()
    );
}

/// A 4xx on Put Page fails the upload at once with Azure's code and message, never retried: the
/// blob an interrupted run leaves (same size and source identity, no Content-MD5) gets a lease
/// between the runs; the resume's first Put Page answers 412 LeaseIdMissing, and it is the only
/// Put Page Azurite logs (`--parallel 1`; a retried call would show `--attempts` of them).
#[test]
fn put_page_4xx_fails_at_once_with_azures_error() {
    use isotool::azure::pageblob::{META_SOURCE_ID, META_SOURCE_SIZE};
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("azurite-debug.log");
    let az = Azurite::start_with(&["--debug", log.to_str().unwrap()]);
    let raw = dir.path().join("disk.raw");
    sparse_raw(&raw, 64 * MIB, &[(0, 8 * MIB), (32 * MIB, 8 * MIB)]);
    let src = isotool::image::open_image(&raw, &Default::default()).unwrap();
    let meta = std::fs::metadata(&raw).unwrap();
    let id = isotool::azure::upload::source_identity(src.as_ref(), Some(&meta)).unwrap();
    let c = az.client("cont", "leased.vhd");
    c.create_container().unwrap();
    c.create_page_blob(
        64 * MIB + 512,
        &[
            (META_SOURCE_SIZE, id.size.to_string()),
            (META_SOURCE_ID, id.id.clone()),
        ],
    )
    .unwrap();
    let lease = az.acquire_lease("cont", "leased.vhd");
    let (ok, out, err) = run(isotool()
        .args(["azure", "upload"])
        .arg(&raw)
        .args(["--container", "cont", "--blob", "leased.vhd"])
        .args(["--parallel", "1", "--attempts", "6", "--quiet"])
        .args(["--connection-string", &az.connection_string()]));
    assert!(!ok, "a leased blob must refuse the pages: {out}");
    for want in [
        "HTTP 412",
        "LeaseIdMissing",
        "There is currently a lease on the blob and no lease ID was specified in the request",
        "writing pages of cont/leased.vhd",
        "devstoreaccount1",
    ] {
        assert!(err.contains(want), "{want:?} missing from: {err}");
    }
    assert!(!err.contains(&lease), "{err}");
    let text = std::fs::read_to_string(&log).unwrap();
    let put_pages = text
        .lines()
        .filter(|l| l.contains("RequestMethod=PUT") && l.contains("?comp=page"))
        .count();
    assert_eq!(
        put_pages, 1,
        "one Put Page, not retried (Azurite's log holds {put_pages})"
    );
    assert!(c.page_ranges().unwrap().is_empty(), "nothing was written");
}

/// A JWT that Azurite's `--oauth basic` accepts: Azure AD's issuer for `tenant`, the storage
/// audience, valid now (iat, nbf, exp: Azurite wants all three; it does not check the
/// signature: a fixed one stands in).
fn storage_jwt(tenant: &str) -> String {
    use base64::Engine;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256"});
    let claims = serde_json::json!({
        "aud": "https://storage.azure.com",
        "iss": format!("https://sts.windows.net/{tenant}/"),
        "iat": now - 300,
        "nbf": now - 300,
        "exp": now + 3600,
        "tid": tenant,
        "appid": "cid",
    });
    format!("{}.{}.c2lnbmF0dXJl", b64(&header), b64(&claims))
}

/// `--account-url` with a service principal: the token comes from the (loopback) token endpoint
/// for the storage scope, and Azurite (HTTPS, `--oauth basic`) accepts it as the only credential
/// of the upload; the blob is the source's fixed VHD. Neither the secret nor the token is
/// printed.
#[test]
fn bearer_token_upload_with_service_principal() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("az.pem"), dir.path().join("az.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let az = Azurite::start_with(&[
        "--oauth",
        "basic",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    let token = storage_jwt("tid");
    let s = azure_common::golden::GoldenServer::start_with("storage_token", &[("TOKEN", &token)]);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, format!("{}{}", s.ca_pem, ck.cert.pem())).unwrap();
    let raw = dir.path().join("disk.raw");
    sparse_raw(&raw, 24 * MIB, &[(MIB, 3 * MIB), (20 * MIB, MIB)]);
    let account_url = format!("https://127.0.0.1:{}/devstoreaccount1", az.port);
    let (ok, out, err) = run(isotool()
        .args(["azure", "upload"])
        .arg(&raw)
        .args(["--container", "oauth", "--blob", "t.vhd", "--json"])
        .args(["--account-url", &account_url, "--authority", &s.base])
        .arg("--ca-cert")
        .arg(&ca)
        .env("AZURE_TENANT_ID", "tid")
        .env("AZURE_CLIENT_ID", "cid")
        .env("AZURE_CLIENT_SECRET", "s3cr3t-storage-golden")
        .env_remove("AZURE_CLIENT_CERTIFICATE_PATH"));
    assert!(ok, "{err}");
    s.assert_all_matched();
    let r = report(&out);
    assert_eq!(r["sent_bytes"], 4 * MIB + 512);
    assert_eq!(r["container_created"], true);
    for leak in ["s3cr3t", &token[..40], &token[token.len() - 30..]] {
        assert!(!out.contains(leak) && !err.contains(leak), "leaked {leak}");
    }
    // The blob as stored, read back with the account key over HTTPS.
    let cs = format!(
        "DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey={};BlobEndpoint={account_url};",
        isotool::azure::credentials::DEV_ACCOUNT_KEY
    );
    let t = isotool::azure::credentials::parse_connection_string(&cs).unwrap();
    let cfg = isotool::azure::http::HttpConfig::default()
        .with_ca_file(&ca)
        .unwrap();
    let http = isotool::azure::http::Http::new(cfg, Default::default()).unwrap();
    let c = BlobClient::new(http, t, "oauth", "t.vhd");
    assert_eq!(
        c.properties().unwrap().unwrap().md5.as_deref(),
        r["md5_base64"].as_str()
    );
    assert_eq!(
        downloaded_md5(&c, 24 * MIB + 512),
        r["md5"].as_str().unwrap()
    );
    assert_eq!(
        c.page_ranges().unwrap(),
        vec![
            (MIB, 4 * MIB),
            (20 * MIB, 21 * MIB),
            (24 * MIB, 24 * MIB + 512)
        ]
    );
}
