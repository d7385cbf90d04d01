//! Shared helpers of the provisioning / cloud-init integration tests: a valid config tree,
//! generated certificates, oracle lookup, running the binary.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The sample gossip key of generated trees (32 bytes, base64).
pub const GOSSIP_KEY: &str = "c2VjcmV0LWdvc3NpcC1rZXktZm9yLXRlc3RzLTAwMDA=";

pub use crate::oracle::need;

pub fn isotool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_isotool"))
}

/// Runs isotool with SOURCE_DATE_EPOCH set.
pub fn run(args: &[&str]) -> Output {
    isotool()
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("running isotool")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// Certificates of a tree.
pub struct Certs {
    pub key_pem: String,
    pub cert_pem: String,
    pub bundle_pem: String,
}

/// EC P-256 certificate and key (PKCS#8 PEM), self-signed, plus a CA bundle.
pub fn ec_certs() -> Certs {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["server.dc1.consul".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    Certs {
        key_pem: key.serialize_pem(),
        cert_pem: cert.pem(),
        bundle_pem: ca.pem(),
    }
}

/// The same key in SEC1 form (`EC PRIVATE KEY`, what `consul tls cert create` writes).
pub fn to_sec1(pkcs8_pem: &str) -> String {
    use p256::pkcs8::DecodePrivateKey;
    let k = p256::SecretKey::from_pkcs8_pem(pkcs8_pem).unwrap();
    k.to_sec1_pem(p256::pkcs8::LineEnding::LF)
        .unwrap()
        .to_string()
}

/// RSA 2048 certificate and key (PKCS#1 PEM).
pub fn rsa_certs() -> Certs {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::EncodePrivateKey;
    let k = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    let pkcs8 = k.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    let key =
        rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec!["server.dc1.consul".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    Certs {
        key_pem: k
            .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap()
            .to_string(),
        cert_pem: cert.pem(),
        bundle_pem: cert.pem(),
    }
}

/// A valid client-role tree (no certificates).
pub fn valid_tree(root: &Path) {
    write(root, "run_provisioning.json", b"{\"run\": true}\n");
    write(root, "allow_ssh.json", b"{\"allow\": true}\n");
    write(
        root,
        "consul/consul_region.json",
        b"{\"datacenter\": \"dc1\", \"domain\": \"consulverse\"}\n",
    );
    write(
        root,
        "consul/consul_secrets.json",
        format!("{{\"encrypt\": \"{GOSSIP_KEY}\"}}\n").as_bytes(),
    );
    write(root, "consul/consul_connect.json", b"{\"enabled\": true}\n");
    write(
        root,
        "consul/client/consul_client_location.json",
        b"{\"location\": \"here\"}\n",
    );
    write(
        root,
        "unbound/unbound_zones.conf",
        b"stub-zone:\n  name: \"consulverse\"\n  stub-addr: 127.0.0.1@8600\n",
    );
}

pub fn add_certs(root: &Path, c: &Certs) {
    write(root, "consul/certs/consul_cert.key", c.key_pem.as_bytes());
    write(root, "consul/certs/consul_cert.crt", c.cert_pem.as_bytes());
    write(
        root,
        "consul/certs/consul_cert_bundle.crt",
        c.bundle_pem.as_bytes(),
    );
}

/// Every file of a directory tree (relative path -> bytes), following nothing.
pub fn files_of(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let m = std::fs::metadata(&p).unwrap();
            if m.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = Default::default();
    walk(root, root, &mut out);
    out
}

/// Names in a directory (to check no temp file was left behind).
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// An RSA key, its self-signed certificate, and a PKCS#12 file (password `pw`) holding the key
/// and certificate `keys` times, shrouded with `iterations` PBKDF2 rounds, MAC `mac_iterations`.
/// (A service principal's certificate as Azure takes it is [`rsa_pfx_with`] one key.)
pub struct RsaPfx {
    pub key: rsa::RsaPrivateKey,
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    pub pfx: Vec<u8>,
}

pub fn rsa_pfx(keys: usize, iterations: u32, mac_iterations: u32) -> RsaPfx {
    rsa_pfx_with("pw", keys, iterations, mac_iterations)
}

/// [`rsa_pfx`] with the PKCS#12 password `password`.
pub fn rsa_pfx_with(password: &str, keys: usize, iterations: u32, mac_iterations: u32) -> RsaPfx {
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    let der = key.to_pkcs8_der().unwrap();
    let kp = rcgen::KeyPair::try_from(der.as_bytes()).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["sp.isotool.test".to_string()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    let mut ks = p12_keystore::KeyStore::new();
    for i in 0..keys {
        let chain = p12_keystore::PrivateKeyChain::new(
            format!("k{i}").as_bytes(),
            p12_keystore::PrivateKey::from_der(der.as_bytes()).unwrap(),
            [p12_keystore::Certificate::from_der(cert.der()).unwrap()],
        );
        ks.add_entry(
            &format!("k{i}"),
            p12_keystore::KeyStoreEntry::PrivateKeyChain(chain),
        );
    }
    let pfx = ks
        .writer(password)
        .encryption_iterations(iterations)
        .mac_iterations(mac_iterations)
        .write()
        .unwrap();
    RsaPfx {
        key,
        cert_der: cert.der().to_vec(),
        cert_pem: cert.pem(),
        pfx,
    }
}
