//! PEM certificates and private keys: parse them, and check that a private key belongs to a
//! certificate (RSA and EC P-256: what `consul tls cert create` and openssl make).
//!
//! Error strings here never include key material, nor the underlying parser's message for keys
//! (a parser could echo bytes it did not like).

use p256::pkcs8::DecodePrivateKey as _;
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::DecodePublicKey as _;
use x509_cert::Certificate;
use x509_cert::der::{Decode as _, Encode as _};

/// A private key we can derive a public key from.
#[derive(Debug)]
pub enum PrivateKey {
    /// RSA (PKCS#1 or PKCS#8).
    Rsa(Box<rsa::RsaPrivateKey>),
    /// EC on P-256 (SEC1 or PKCS#8).
    P256(p256::SecretKey),
}

fn labels(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("-----BEGIN "))
        .filter_map(|l| l.strip_suffix("-----"))
        .collect()
}

/// [`crate::limits::check_pem`] as the message of this module's errors.
fn bounded(bytes: &[u8]) -> Result<(), String> {
    crate::limits::check_pem(bytes, "it").map_err(|e| e.message().to_string())
}

/// Parses one PEM certificate.
pub fn parse_certificate(bytes: &[u8]) -> Result<Certificate, String> {
    bounded(bytes)?;
    let text = std::str::from_utf8(bytes).map_err(|_| "is not PEM text".to_string())?;
    match labels(text).first() {
        Some(&"CERTIFICATE") => {}
        Some(l) => return Err(format!("holds a PEM {l:?}, not a CERTIFICATE")),
        None => return Err("holds no PEM block".to_string()),
    }
    let mut certs = certificates(text, "the certificate")?;
    Ok(certs.swap_remove(0))
}

/// Every `CERTIFICATE` block of `text`, each decoded to DER first and then parsed from the
/// buffer: the der crate's streaming PEM reader (`Certificate::from_pem`, `load_pem_chain`)
/// loops forever on a block whose DER claims more bytes than the block holds (a truncated
/// certificate; found by the `x509-der` fuzz target).
fn certificates(text: &str, what: &str) -> Result<Vec<Certificate>, String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let stop = rest[start..]
            .find(END)
            .map(|i| start + i + END.len())
            .ok_or_else(|| format!("{what} has no END line"))?;
        let (_, der) = x509_cert::der::pem::decode_vec(&rest.as_bytes()[start..stop])
            .map_err(|e| format!("{what} is not valid PEM: {e}"))?;
        out.push(Certificate::from_der(&der).map_err(|e| format!("{what} does not parse: {e}"))?);
        rest = &rest[stop..];
    }
    if out.is_empty() {
        return Err(format!("{what} holds no PEM certificate"));
    }
    Ok(out)
}

/// Parses a bundle of one or more PEM certificates; returns how many.
pub fn parse_bundle(bytes: &[u8]) -> Result<usize, String> {
    bounded(bytes)?;
    let text = std::str::from_utf8(bytes).map_err(|_| "is not PEM text".to_string())?;
    let ls = labels(text);
    if ls.is_empty() {
        return Err("holds no PEM certificate".to_string());
    }
    if let Some(l) = ls.iter().find(|l| **l != "CERTIFICATE") {
        return Err(format!(
            "holds a PEM {l:?}; a bundle holds certificates only"
        ));
    }
    let certs = certificates(text, "a certificate of the bundle")?;
    Ok(certs.len())
}

/// Parses a PEM private key (PKCS#8, SEC1 `EC PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY`).
pub fn parse_private_key(bytes: &[u8]) -> Result<PrivateKey, String> {
    bounded(bytes)?;
    let text = std::str::from_utf8(bytes).map_err(|_| "is not PEM text".to_string())?;
    let label = labels(text)
        .into_iter()
        .find(|l| l.ends_with("PRIVATE KEY"))
        .ok_or_else(|| "holds no PEM private key".to_string())?;
    // Some tools put an `EC PARAMETERS` block first: parse the key block alone.
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin).ok_or("holds no PEM private key")?;
    let stop = text[start..]
        .find(&end)
        .map(|i| start + i + end.len())
        .ok_or("the PEM private key has no END line")?;
    let block = &text[start..stop];
    if let Ok((_, der)) = x509_cert::der::pem::decode_vec(block.as_bytes()) {
        let pkcs1 = label == "RSA PRIVATE KEY";
        let r = if pkcs1 {
            crate::limits::check_rsa_pkcs1(&der, "the key")
        } else {
            crate::limits::check_rsa_pkcs8(&der, "the key")
        };
        r.map_err(|e| e.message().to_string())?;
    }
    let parsed = match label {
        "PRIVATE KEY" => p256::SecretKey::from_pkcs8_pem(block)
            .map(PrivateKey::P256)
            .or_else(|_| {
                rsa::RsaPrivateKey::from_pkcs8_pem(block).map(|k| PrivateKey::Rsa(Box::new(k)))
            })
            .ok(),
        "EC PRIVATE KEY" => p256::SecretKey::from_sec1_pem(block)
            .map(PrivateKey::P256)
            .ok(),
        "RSA PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs1_pem(block)
            .map(|k| PrivateKey::Rsa(Box::new(k)))
            .ok(),
        "ENCRYPTED PRIVATE KEY" => {
            return Err(
                "is an encrypted private key; the first-boot service needs it in clear".to_string(),
            );
        }
        other => return Err(format!("holds a PEM {other:?}, which is not supported")),
    };
    parsed.ok_or_else(|| {
        format!(
            "the {label} does not parse as an RSA or EC P-256 key (other curves are not supported)"
        )
    })
}

/// Checks that `key` is the private half of `cert`'s public key.
pub fn key_matches(cert: &Certificate, key: &PrivateKey) -> Result<(), String> {
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| format!("the certificate's public key cannot be encoded: {e}"))?;
    let same = match key {
        PrivateKey::P256(k) => match p256::PublicKey::from_public_key_der(&spki) {
            Ok(p) => p == k.public_key(),
            Err(_) => {
                return Err(
                    "the key is EC P-256 but the certificate's public key is not".to_string(),
                );
            }
        },
        PrivateKey::Rsa(k) => match rsa::RsaPublicKey::from_public_key_der(&spki) {
            Ok(p) => p == k.to_public_key(),
            Err(_) => {
                return Err("the key is RSA but the certificate's public key is not".to_string());
            }
        },
    };
    if same {
        Ok(())
    } else {
        Err("the private key does not match the certificate's public key".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_certificates_match_or_not() {
        let k1 = rcgen::KeyPair::generate().unwrap();
        let k2 = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["a.consul".to_string()]).unwrap();
        let cert = params.self_signed(&k1).unwrap();
        let c = parse_certificate(cert.pem().as_bytes()).unwrap();
        let key1 = parse_private_key(k1.serialize_pem().as_bytes()).unwrap();
        let key2 = parse_private_key(k2.serialize_pem().as_bytes()).unwrap();
        assert!(key_matches(&c, &key1).is_ok());
        assert!(
            key_matches(&c, &key2)
                .unwrap_err()
                .contains("does not match")
        );
        assert_eq!(
            parse_bundle(format!("{}{}", cert.pem(), cert.pem()).as_bytes()),
            Ok(2)
        );
    }

    #[test]
    fn unsupported_and_broken_keys_are_named_without_their_bytes() {
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let e = parse_private_key(p384.serialize_pem().as_bytes()).unwrap_err();
        assert!(e.contains("other curves are not supported"), "{e}");
        let body = "MHcCAQEEIBADBADBADBADBADBADBADBADBADBADBADBADBADBADBADBAD";
        let e = parse_private_key(
            format!("-----BEGIN EC PRIVATE KEY-----\n{body}\n-----END EC PRIVATE KEY-----\n")
                .as_bytes(),
        )
        .unwrap_err();
        assert!(!e.contains("BADBAD"), "{e}");
        let e = parse_private_key(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(e.contains("encrypted"), "{e}");
        let e = parse_certificate(p384.serialize_pem().as_bytes()).unwrap_err();
        assert!(e.contains("not a CERTIFICATE"), "{e}");
        assert!(parse_bundle(b"").is_err());
    }
}
