//! ARM and the token endpoint against a loopback HTTPS server answering from recorded golden
//! exchanges (tests/azure_golden): image create (201 + Azure-AsyncOperation, 429 + Retry-After,
//! InProgress, Succeeded), a Failed operation, VM launch; the JWT client assertion verifies
//! with the certificate's public key; secrets never printed; --dry-run sends nothing.

use crate::azure_common;

use azure_common::golden::GoldenServer;
use azure_common::{isotool, run};
use base64::Engine;
use std::path::{Path, PathBuf};

/// A service principal certificate: RSA key, self-signed certificate, PKCS#12 with a password.
pub(crate) fn make_pfx(dir: &Path) -> (PathBuf, Vec<u8>, rsa::RsaPublicKey) {
    let r = crate::prov_fixture::rsa_pfx_with("pfx-pass", 1, 2048, 2048);
    let p = dir.join("sp.pfx");
    std::fs::write(&p, &r.pfx).unwrap();
    (p, r.cert_der, r.key.to_public_key())
}

fn arm_args<'a>(s: &'a GoldenServer, ca: &'a Path) -> Vec<String> {
    vec![
        "--subscription".into(),
        "sub".into(),
        "--tenant".into(),
        "tid".into(),
        "--client-id".into(),
        "cid".into(),
        "--authority".into(),
        s.base.clone(),
        "--arm-endpoint".into(),
        s.base.clone(),
        "--ca-cert".into(),
        ca.to_str().unwrap().into(),
        "--poll-seconds".into(),
        "0".into(),
    ]
}

pub(crate) fn image_cmd(s: &GoldenServer, dir: &Path, pfx: &Path) -> std::process::Command {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &s.ca_pem).unwrap();
    let mut c = isotool();
    c.args([
        "azure",
        "image",
        "create",
        "--blob-url",
        "https://acct.blob.core.windows.net/vhds/img.vhd",
    ])
    .args([
        "--name",
        "img",
        "--resource-group",
        "rg",
        "--location",
        "westeurope",
        "--generation",
        "V2",
    ])
    .args(arm_args(s, &ca))
    .arg("--client-cert")
    .arg(pfx)
    .env("AZURE_CLIENT_CERTIFICATE_PASSWORD", "pfx-pass")
    .env_remove("AZURE_CLIENT_SECRET");
    c
}

/// RS256 verification with the certificate's public key, x5t and claims.
fn check_assertion(jwt: &str, cert_der: &[u8], public: &rsa::RsaPublicKey, aud: &str) {
    use sha2::Digest;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: serde_json::Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["x5t"], b64.encode(sha1::Sha1::digest(cert_der)));
    assert_eq!(claims["aud"], aud);
    assert_eq!(
        (claims["iss"].as_str(), claims["sub"].as_str()),
        (Some("cid"), Some("cid"))
    );
    assert!(claims["exp"].as_u64().unwrap() > claims["nbf"].as_u64().unwrap());
    let mut t = vec![
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    t.extend_from_slice(&sha2::Sha256::digest(
        format!("{}.{}", parts[0], parts[1]).as_bytes(),
    ));
    let sig = b64.decode(parts[2]).unwrap();
    public
        .verify(rsa::Pkcs1v15Sign::new_unprefixed(), &t, &sig)
        .expect("the JWT verifies with the certificate's key");
    // And a tampered assertion does not.
    let mut t2 = t.clone();
    t2[30] ^= 1;
    assert!(
        public
            .verify(rsa::Pkcs1v15Sign::new_unprefixed(), &t2, &sig)
            .is_err()
    );
}

#[test]
fn image_create_golden_with_certificate_jwt() {
    let dir = tempfile::tempdir().unwrap();
    let (pfx, cert_der, public) = make_pfx(dir.path());
    let s = GoldenServer::start("image_create");
    let (ok, out, err) = run(&mut image_cmd(&s, dir.path(), &pfx));
    assert!(ok, "{err}");
    s.assert_all_matched();
    assert!(
        out.contains("/providers/Microsoft.Compute/images/img"),
        "{out}"
    );
    let forms = s.forms.lock().unwrap();
    let jwt = &forms[0]
        .iter()
        .find(|(k, _)| k == "client_assertion")
        .unwrap()
        .1;
    check_assertion(
        jwt,
        &cert_der,
        &public,
        &format!("{}/tid/oauth2/v2.0/token", s.base),
    );
    for text in [&out, &err] {
        assert!(
            !text.contains("tok-golden-123")
                && !text.contains(jwt.as_str())
                && !text.contains("pfx-pass")
        );
    }
}

#[test]
fn failed_operation_is_a_named_error_with_azures_message() {
    let dir = tempfile::tempdir().unwrap();
    let (pfx, _, _) = make_pfx(dir.path());
    let s = GoldenServer::start("image_failed");
    let (ok, _, err) = run(&mut image_cmd(&s, dir.path(), &pfx));
    assert!(!ok);
    s.assert_all_matched();
    assert!(
        err.contains("operation-failed")
            && err.contains("InvalidVhd")
            && err.contains("cookie value 'conectix'"),
        "{err}"
    );
}

/// `isotool launch azure --config DIR`: the VM's customData is what `cloud-init-seed --azure
/// --from DIR` writes; public IP, NSG and NIC as recorded; waits for PowerState/running.
#[test]
fn vm_launch_golden_with_client_secret() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("config");
    crate::prov_fixture::valid_tree(&tree);
    crate::prov_fixture::add_certs(&tree, &crate::prov_fixture::ec_certs());
    let seed = dir.path().join("seed.txt");
    let (ok, _, err) = run(isotool()
        .args(["cloud-init-seed", "--azure", "--from"])
        .arg(&tree)
        .arg("-o")
        .arg(&seed));
    assert!(ok, "{err}");
    let seed_b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&seed).unwrap());
    let s = GoldenServer::start_with("vm_create", &[("CUSTOM_DATA", &seed_b64)]);
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/azure_golden/vm_create.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let cd = dir.path().join("custom-data");
    std::fs::write(&cd, golden["custom_data"].as_str().unwrap()).unwrap();
    let key = dir.path().join("id.pub");
    std::fs::write(&key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGoldenKeyGoldenKeyGoldenKeyGoldenKeyGolden golden@test\n").unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &s.ca_pem).unwrap();
    let mut c = isotool();
    c.args([
        "launch",
        "azure",
        "--name",
        "vm1",
        "--image",
        "img",
        "--resource-group",
        "rg",
        "--location",
        "westeurope",
        "--ssh-source",
        "203.0.113.0/24",
    ])
    .arg("--ssh-public-key")
    .arg(&key)
    .arg("--config")
    .arg(&tree)
    .args(arm_args(&s, &ca))
    .env("AZURE_CLIENT_SECRET", "s3cr3t-golden-value")
    .env_remove("AZURE_CLIENT_CERTIFICATE_PATH");
    let (ok, out, err) = run(&mut c);
    assert!(ok, "{err}");
    s.assert_all_matched();
    assert!(out.contains("virtualMachines/vm1 running"), "{out}");
    assert!(out.contains("public ip 20.61.0.17"), "{out}");
    assert!(!out.contains("s3cr3t") && !err.contains("s3cr3t"));

    // --dry-run: every request printed, secrets masked, nothing sent (the endpoints are closed).
    let closed = "https://127.0.0.1:9";
    let mut c = isotool();
    c.args([
        "launch",
        "azure",
        "--name",
        "vm1",
        "--image",
        "img",
        "--resource-group",
        "rg",
        "--location",
        "westeurope",
        "--dry-run",
    ])
    .arg("--ssh-public-key")
    .arg(&key)
    .arg("--custom-data")
    .arg(&cd)
    .args([
        "--subscription",
        "sub",
        "--tenant",
        "tid",
        "--client-id",
        "cid",
        "--authority",
        closed,
        "--arm-endpoint",
        closed,
    ])
    .env("AZURE_CLIENT_SECRET", "s3cr3t-golden-value")
    .env_remove("AZURE_CLIENT_CERTIFICATE_PATH");
    let (ok, out, err) = run(&mut c);
    assert!(ok, "{err}");
    assert!(
        out.contains("POST https://127.0.0.1:9/tid/oauth2/v2.0/token"),
        "{out}"
    );
    assert!(out.contains("client_secret=***"), "{out}");
    assert!(out.contains("PUT https://127.0.0.1:9/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1?api-version=2024-03-01"), "{out}");
    assert!(out.contains("\"customData\":\"*** ("), "{out}");
    assert!(
        out.contains("publicIPAddresses/vm1-ip") && out.contains("networkSecurityGroups/vm1-nsg"),
        "{out}"
    );
    assert!(!out.contains("s3cr3t") && !err.contains("s3cr3t"));
}
