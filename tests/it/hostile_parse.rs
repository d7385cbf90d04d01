//! Bounded work on hostile JSON, PEM, PKCS#12 and TOML (issue 11, item 5): each input is
//! refused by a named limit (the constant's name is in the error), before the parser runs, so a
//! 64 MiB hostile file costs no more than reading its size. Nothing here is timed: the proof
//! that the work is bounded is that the refusal names the size or depth limit.

use crate::prov_fixture::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

/// `provisioning-cd --dry-run` over `tree`: (success, stderr).
fn dry_run(tree: &Path) -> (bool, String) {
    let o = run(&[
        "provisioning-cd",
        "--from",
        tree.to_str().unwrap(),
        "--dry-run",
    ]);
    (o.status.success(), stderr(&o))
}

/// A sparse 64 MiB file (a hostile input that costs nothing to make).
fn sparse_64mib(p: &Path) {
    let f = std::fs::File::create(p).unwrap();
    f.set_len(64 << 20).unwrap();
}

#[test]
fn deeply_nested_config_json_names_max_json_depth() {
    let d = tempfile::tempdir().unwrap();
    valid_tree(d.path());
    // 100k levels: serde_json alone said "Syntax error at line 1, column 128"
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    write(d.path(), "consul/consul_region.json", deep.as_bytes());
    let (ok, err) = dry_run(d.path());
    assert!(!ok, "{err}");
    assert!(
        err.contains("consul/consul_region.json: nests deeper than MAX_JSON_DEPTH (64 levels)"),
        "{err}"
    );
}

#[test]
fn oversized_config_json_names_its_limit() {
    let d = tempfile::tempdir().unwrap();
    valid_tree(d.path());
    // 2 MiB of blanks around a valid object: parsed in full before (and then valid)
    let mut big = vec![b' '; 2 << 20];
    big.extend_from_slice(b"{\"datacenter\": \"dc1\", \"domain\": \"x\"}");
    write(d.path(), "consul/consul_region.json", &big);
    let (ok, err) = dry_run(d.path());
    assert!(!ok, "{err}");
    assert!(err.contains("over MAX_JSON_BYTES (1048576 bytes)"), "{err}");
    // 64 MiB: refused from its size, never read
    sparse_64mib(&d.path().join("consul/consul_region.json"));
    let (ok, err) = dry_run(d.path());
    assert!(!ok, "{err}");
    assert!(
        err.contains("is 67108864 bytes, over MAX_CHECKED_FILE (16777216 bytes)"),
        "{err}"
    );
}

#[test]
fn oversized_pem_bundle_names_max_pem_bytes() {
    let d = tempfile::tempdir().unwrap();
    valid_tree(d.path());
    let c = ec_certs();
    add_certs(d.path(), &c);
    // 12 MiB of valid certificates (under the tree's read limit): all parsed before
    let n = (12 << 20) / c.bundle_pem.len();
    write(
        d.path(),
        "consul/certs/consul_cert_bundle.crt",
        c.bundle_pem.repeat(n).as_bytes(),
    );
    let (ok, err) = dry_run(d.path());
    assert!(!ok, "{err}");
    assert!(
        err.contains("consul/certs/consul_cert_bundle.crt: it is")
            && err.contains("over MAX_PEM_BYTES (1048576 bytes)"),
        "{err}"
    );
}

#[test]
fn oversized_rsa_key_names_max_rsa_bits() {
    use rsa::pkcs1::der::Encode as _;
    let d = tempfile::tempdir().unwrap();
    valid_tree(d.path());
    add_certs(d.path(), &rsa_certs());
    // a PKCS#1 key whose modulus is 32768 bits (not a real key: the check comes first)
    let big = vec![0xC3u8; 4096];
    let small = [3u8];
    fn u(b: &[u8]) -> rsa::pkcs1::UintRef<'_> {
        rsa::pkcs1::UintRef::new(b).unwrap()
    }
    let big = big.as_slice();
    let k = rsa::pkcs1::RsaPrivateKey {
        modulus: u(big),
        public_exponent: u(&[1, 0, 1]),
        private_exponent: u(big),
        prime1: u(&small[..]),
        prime2: u(&small[..]),
        exponent1: u(&small[..]),
        exponent2: u(&small[..]),
        coefficient: u(&small[..]),
        other_prime_infos: None,
    };
    let der = k.to_der().unwrap();
    let pem = x509_cert::der::pem::encode_string(
        "RSA PRIVATE KEY",
        x509_cert::der::pem::LineEnding::LF,
        &der,
    )
    .unwrap();
    write(d.path(), "consul/certs/consul_cert.key", pem.as_bytes());
    let (ok, err) = dry_run(d.path());
    assert!(!ok, "{err}");
    assert!(
        err.contains("the key has an RSA modulus of 32768 bits, over MAX_RSA_BITS (16384)"),
        "{err}"
    );
}

/// A PKCS#12 file holding `keys` RSA keys, each shrouded with `iterations` PBKDF2 rounds.
fn pfx(keys: usize, iterations: u32) -> Vec<u8> {
    rsa_pfx(keys, iterations, 2048).pfx
}

#[test]
fn pkcs12_size_and_key_derivation_work_are_bounded() {
    use isotool::azure::auth::CertCredential;
    use isotool::azure::secret::Secret;
    let d = tempfile::tempdir().unwrap();
    let pw = Secret::new("pw");
    // an ordinary file still loads
    CertCredential::from_pkcs12(&pfx(1, 2048), Some(&pw)).unwrap();
    // 64 MiB: refused from its size, never read (read whole and misparsed before)
    let big = d.path().join("big.pfx");
    sparse_64mib(&big);
    let e = CertCredential::from_pkcs12_file(&big, Some(&pw)).unwrap_err();
    assert!(
        e.to_string()
            .contains("is 67108864 bytes, over MAX_PKCS12_BYTES (1048576 bytes)"),
        "{e}"
    );
    // five keys at 1,000,000 rounds each (each within p12-keystore's own cap): about 5 M
    // rounds of PBKDF2 before, refused before the first one now. (Making the file costs
    // those rounds once, in the writer; the reader must not spend them again.)
    let hostile = pfx(5, 1_000_000);
    let e = CertCredential::from_pkcs12(&hostile, Some(&pw)).unwrap_err();
    assert_eq!(e.kind(), isotool::ErrorKind::LimitExceeded, "{e}");
    assert!(e.to_string().contains("MAX_PKCS12_ITERATIONS"), "{e}");
}

/// A loopback HTTP server answering every request with `status` and `body`; returns its base
/// URL. The thread ends with the test process.
fn answer_with(status: u16, body: Vec<u8>) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s);
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut req = vec![0u8; len];
            let _ = r.read_exact(&mut req);
            let mut s = r.into_inner();
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    base
}

fn token_from(base: String) -> isotool::Result<isotool::azure::auth::Token> {
    use isotool::azure::auth::{ARM_SCOPE, ClientCredential, ServicePrincipal};
    use isotool::azure::http::{Http, HttpConfig};
    use isotool::azure::secret::{Redactor, Secret};
    let http = Http::new(
        HttpConfig {
            attempts: 1,
            ..HttpConfig::default()
        },
        Redactor::new([]),
    )
    .unwrap();
    let sp = ServicePrincipal {
        tenant_id: "tid".into(),
        client_id: "cid".into(),
        credential: ClientCredential::Secret(Secret::new("client-secret")),
        authority: base,
    };
    sp.token(&http, ARM_SCOPE, 0, "jti")
}

#[test]
fn hostile_token_responses_name_their_limit() {
    // a deep document: read as "no access_token" before (the parse error was dropped)
    let deep = ("[".repeat(200_000) + &"]".repeat(200_000)).into_bytes();
    let e = token_from(answer_with(200, deep)).unwrap_err();
    assert_eq!(e.kind(), isotool::ErrorKind::LimitExceeded, "{e}");
    assert!(
        e.to_string()
            .contains("the token endpoint's response nests deeper than MAX_JSON_DEPTH"),
        "{e}"
    );
    // a 2 MiB valid answer with an access token, padded: accepted before
    let mut big = br#"{"access_token": "t", "expires_in": 3600, "pad": ""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 2 << 20));
    big.extend_from_slice(b"\"}");
    let e = token_from(answer_with(200, big)).unwrap_err();
    assert!(e.to_string().contains("over MAX_JSON_BYTES"), "{e}");
    // an ordinary answer still works
    let ok = br#"{"access_token": "tok", "expires_in": 60}"#.to_vec();
    let t = token_from(answer_with(200, ok)).unwrap();
    assert_eq!((t.access_token.expose(), t.expires_in), ("tok", 60));
}

#[test]
fn hostile_build_files_name_their_limit() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("build.toml");
    sparse_64mib(&f);
    let o = run(&["build", f.to_str().unwrap(), "--dry-run"]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("the build file is 67108864 bytes, over MAX_BUILD_FILE (1048576 bytes)"),
        "{err}"
    );
    let deep = format!("name = {}1{}\n", "[".repeat(5000), "]".repeat(5000));
    std::fs::write(&f, deep).unwrap();
    let o = run(&["build", f.to_str().unwrap(), "--dry-run"]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(err.contains("TOML_MAX_DEPTH: 80 levels"), "{err}");
}
