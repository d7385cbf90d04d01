//! PKCS#12 (`.pfx`, RFC 7292) reading with bounded work: the service principal's key and
//! certificates. Every key derivation (the MAC, each encrypted safe, each shrouded key bag) is
//! charged to a [`KdfBudget`] before it runs, in two rounds: what is visible in the file first,
//! then, once the encrypted safes are open, every key bag they hid, before any is decrypted.
//! So a hostile file is refused having spent at most the visible work, and never more than
//! [`MAX_PKCS12_ITERATIONS`](crate::limits::MAX_PKCS12_ITERATIONS) in all.
//!
//! Supported as openssl and Windows write them: password integrity (HMAC with SHA-1 or SHA-2),
//! PBES2 (PBKDF2 with HMAC-SHA-2, AES-CBC) and the legacy PKCS#12 PBEs (SHA-1 with 3-key 3DES
//! or 40-bit RC2). scrypt, public-key integrity and enveloped safes are refused by name.
//!
//! Spec: RFC 7292 (PKCS #12 v1.1) §4-5 and appendix B (its key derivation), RFC 8018 §6.2
//! (PBES2), RFC 5652 §8 (EncryptedData).

use crate::err;
use crate::error::Result;
use crate::limits::KdfBudget;
use cms::cert::x509::spki::AlgorithmIdentifierOwned;
use cms::content_info::ContentInfo;
use der::asn1::{ContextSpecific, ObjectIdentifier as Oid, OctetString};
use der::{Decode, Encode};
use pkcs12::kdf::{Pkcs12KeyType, derive_key_utf8};

const ID_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.1");
const ID_ENCRYPTED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.6");
const SHA1: Oid = Oid::new_unwrap("1.3.14.3.2.26");
const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");

/// What a PKCS#12 file holds: its private keys (PKCS#8 DER, in file order) and certificates
/// (X.509 DER).
#[derive(Default)]
pub struct Contents {
    /// The private keys, PKCS#8 DER.
    pub keys: Vec<Vec<u8>>,
    /// The X.509 certificates, DER.
    pub certs: Vec<Vec<u8>>,
}

/// An encrypted thing found and not yet decrypted: its algorithm and ciphertext.
struct Sealed {
    alg: AlgorithmIdentifierOwned,
    data: Vec<u8>,
}

fn bad(what: &str, part: &str, e: impl std::fmt::Display) -> crate::Error {
    err!(
        InvalidArgument,
        "{what}: {part} is not valid PKCS#12 DER ({e})"
    )
}

/// Reads the PKCS#12 file `data` with `password`; `what` names it in errors.
pub fn read(data: &[u8], password: &str, what: &str) -> Result<Contents> {
    crate::limits::check_pkcs12(data, what)?;
    let pfx = pkcs12::Pfx::from_der(data).map_err(|e| bad(what, "the PFX", e))?;
    if pfx.auth_safe.content_type != ID_DATA {
        return Err(err!(
            Unsupported,
            "{what}: integrity mode {} (public-key) is not supported, only a password MAC",
            pfx.auth_safe.content_type
        ));
    }
    let auth_safe = octets(&pfx.auth_safe, what, "the authenticated safe")?;
    let safes = Vec::<ContentInfo>::from_der(&auth_safe)
        .map_err(|e| bad(what, "the authenticated safe", e))?;
    let mut plain = Vec::new();
    let mut sealed = Vec::new();
    for (i, safe) in safes.iter().enumerate() {
        match safe.content_type {
            ID_DATA => plain.push(octets(safe, what, "a safe")?),
            ID_ENCRYPTED_DATA => sealed.push(encrypted_safe(safe, what)?),
            t => {
                return Err(err!(
                    Unsupported,
                    "{what}: safe {i} of type {t} is not supported"
                ));
            }
        }
    }
    // round 1: the work visible before decrypting anything
    let mut budget = KdfBudget::new(what);
    let mac_cost = pfx.mac_data.as_ref().map_or(Ok(0), |m| mac_cost(m, what))?;
    let safes_cost = cost_of(&sealed, what)?;
    budget.charge(mac_cost + safes_cost, "its MAC and encrypted safes")?;
    if let Some(m) = &pfx.mac_data {
        verify_mac(m, password, &auth_safe, what)?;
    }
    for s in &sealed {
        plain.push(decrypt(s, password, what, "an encrypted safe")?);
    }
    // round 2: the key bags, those the encrypted safes hid included, before any is decrypted
    let mut out = Contents::default();
    let mut shrouded = Vec::new();
    for safe in &plain {
        read_bags(safe, what, &mut out, &mut shrouded)?;
    }
    let n = shrouded.len();
    budget.charge(
        cost_of(&shrouded, what)?,
        &format!("{n} shrouded key bag(s)"),
    )?;
    for s in &shrouded {
        out.keys
            .push(decrypt(s, password, what, "a shrouded key bag")?);
    }
    Ok(out)
}

/// The OCTET STRING content of a `data` ContentInfo.
fn octets(ci: &ContentInfo, what: &str, part: &str) -> Result<Vec<u8>> {
    ci.content
        .decode_as::<OctetString>()
        .map(|o| o.into_bytes().into_vec())
        .map_err(|e| bad(what, part, e))
}

fn encrypted_safe(ci: &ContentInfo, what: &str) -> Result<Sealed> {
    let ed = ci
        .content
        .decode_as::<cms::encrypted_data::EncryptedData>()
        .map_err(|e| bad(what, "an encrypted safe", e))?;
    let info = ed.enc_content_info;
    Ok(Sealed {
        alg: info.content_enc_alg,
        data: info
            .encrypted_content
            .map_or(Vec::new(), |o| o.into_bytes().into_vec()),
    })
}

/// Adds the keys and certificates of the SafeContents `der` to `out`, and its shrouded key bags
/// to `shrouded`. Other bags (CRLs, secrets, nested safes) are skipped.
fn read_bags(der: &[u8], what: &str, out: &mut Contents, shrouded: &mut Vec<Sealed>) -> Result<()> {
    let bags = pkcs12::safe_bag::SafeContents::from_der(der).map_err(|e| bad(what, "a safe", e))?;
    for bag in bags {
        match bag.bag_id {
            pkcs12::PKCS_12_KEY_BAG_OID => {
                let k = ContextSpecific::<der::Any>::from_der(&bag.bag_value)
                    .map_err(|e| bad(what, "a key bag", e))?;
                out.keys
                    .push(k.value.to_der().map_err(|e| bad(what, "a key bag", e))?);
            }
            pkcs12::PKCS_12_PKCS8_KEY_BAG_OID => {
                let k = ContextSpecific::<pkcs12::pbe_params::EncryptedPrivateKeyInfo>::from_der(
                    &bag.bag_value,
                )
                .map_err(|e| bad(what, "a shrouded key bag", e))?;
                shrouded.push(Sealed {
                    alg: k.value.encryption_algorithm,
                    data: k.value.encrypted_data.into_bytes().into_vec(),
                });
            }
            pkcs12::PKCS_12_CERT_BAG_OID => {
                let c = ContextSpecific::<pkcs12::CertBag>::from_der(&bag.bag_value)
                    .map_err(|e| bad(what, "a certificate bag", e))?;
                if c.value.cert_id == pkcs12::PKCS_12_X509_CERT_OID {
                    out.certs.push(c.value.cert_value.into_bytes().into_vec());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The PKCS#12 PBEs (RFC 7292 appendix C) read here: (key length, cipher).
fn pkcs12_pbe(oid: &Oid) -> Option<(usize, Pbe1)> {
    match *oid {
        pkcs12::PKCS_12_PBE_WITH_SHAAND3_KEY_TRIPLE_DES_CBC => Some((24, Pbe1::TripleDes)),
        pkcs12::PKCS_12_PBEWITH_SHAAND40_BIT_RC2_CBC => Some((5, Pbe1::Rc2)),
        _ => None,
    }
}

#[derive(Clone, Copy)]
enum Pbe1 {
    TripleDes,
    Rc2,
}

/// The parsed parameters of an encryption algorithm.
enum Scheme {
    Pbes2(pkcs5::pbes2::Parameters),
    Pbe1(Pbe1, pkcs12::pbe_params::Pkcs12PbeParams, usize),
}

fn scheme(alg: &AlgorithmIdentifierOwned, what: &str) -> Result<Scheme> {
    let params = || {
        alg.parameters
            .as_ref()
            .ok_or_else(|| bad(what, "an encryption algorithm", "no parameters"))
    };
    if alg.oid == pkcs5::pbes2::PBES2_OID {
        let p = params()?
            .decode_as::<pkcs5::pbes2::Parameters>()
            .map_err(|e| bad(what, "the PBES2 parameters", e))?;
        return Ok(Scheme::Pbes2(p));
    }
    if let Some((key_len, cipher)) = pkcs12_pbe(&alg.oid) {
        let p = params()?
            .decode_as::<pkcs12::pbe_params::Pkcs12PbeParams>()
            .map_err(|e| bad(what, "the PBE parameters", e))?;
        return Ok(Scheme::Pbe1(cipher, p, key_len));
    }
    Err(err!(
        Unsupported,
        "{what}: encryption algorithm {} is not supported (PBES2 with PBKDF2, or the \
         PKCS#12 PBEs with 3DES or 40-bit RC2)",
        alg.oid
    ))
}

/// Iterations counted as positive numbers (RFC 7292 and 8018 say 1..MAX).
fn positive(n: i64, what: &str) -> Result<u64> {
    u64::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| {
        bad(
            what,
            "an iteration count",
            format_args!("{n} is not positive"),
        )
    })
}

/// Output blocks of `out_len` bytes needed for `len` bytes.
fn blocks(len: usize, out_len: usize) -> u64 {
    len.div_ceil(out_len) as u64
}

/// The key-derivation iterations decrypting `s` costs.
fn cost(s: &Sealed, what: &str) -> Result<u64> {
    use pkcs5::pbes2::{Kdf, Pbkdf2Prf};
    match scheme(&s.alg, what)? {
        Scheme::Pbes2(p) => {
            let Kdf::Pbkdf2(k) = &p.kdf else {
                return Err(err!(
                    Unsupported,
                    "{what}: PBES2 with scrypt is not supported"
                ));
            };
            let prf_len = match k.prf {
                Pbkdf2Prf::HmacWithSha1 => 20,
                Pbkdf2Prf::HmacWithSha224 => 28,
                Pbkdf2Prf::HmacWithSha256 => 32,
                Pbkdf2Prf::HmacWithSha384 => 48,
                Pbkdf2Prf::HmacWithSha512 => 64,
                _ => 20, // any other (none today) counted at the smallest block
            };
            let n = positive(i64::from(k.iteration_count), what)?;
            Ok(n * blocks(p.encryption.key_size(), prf_len))
        }
        // key and IV (8 bytes) from SHA-1 (20-byte blocks)
        Scheme::Pbe1(_, p, key_len) => {
            Ok(positive(i64::from(p.iterations), what)? * (blocks(key_len, 20) + 1))
        }
    }
}

fn cost_of(sealed: &[Sealed], what: &str) -> Result<u64> {
    sealed
        .iter()
        .try_fold(0u64, |sum, s| Ok(sum.saturating_add(cost(s, what)?)))
}

fn wrong_password(what: &str, part: &str) -> crate::Error {
    err!(
        InvalidArgument,
        "{what}: cannot decrypt {part} (wrong password, or a damaged file)"
    )
}

/// Decrypts `s` (its cost already charged); `part` names it in errors.
fn decrypt(s: &Sealed, password: &str, what: &str, part: &str) -> Result<Vec<u8>> {
    use cbc::cipher::{BlockModeDecrypt as _, KeyIvInit as _, block_padding::Pkcs7};
    match scheme(&s.alg, what)? {
        // PBES2 passwords are the UTF-8 bytes (as openssl writes them)
        Scheme::Pbes2(p) => p
            .decrypt(password, &s.data)
            .map_err(|_| wrong_password(what, part)),
        Scheme::Pbe1(cipher, p, key_len) => {
            let derive = |id, len| {
                derive_key_utf8::<sha1::Sha1>(password, p.salt.as_bytes(), id, p.iterations, len)
                    .map_err(|e| bad(what, "the password", e))
            };
            let key = derive(Pkcs12KeyType::EncryptionKey, key_len)?;
            let iv = derive(Pkcs12KeyType::Iv, 8)?;
            let plain = match cipher {
                Pbe1::TripleDes => cbc::Decryptor::<des::TdesEde3>::new_from_slices(&key, &iv)
                    .map_err(|e| bad(what, part, e))?
                    .decrypt_padded_vec::<Pkcs7>(&s.data),
                Pbe1::Rc2 => cbc::Decryptor::<rc2::Rc2>::new_from_slices(&key, &iv)
                    .map_err(|e| bad(what, part, e))?
                    .decrypt_padded_vec::<Pkcs7>(&s.data),
            };
            plain.map_err(|_| wrong_password(what, part))
        }
    }
}

fn mac_cost(m: &pkcs12::MacData, what: &str) -> Result<u64> {
    positive(i64::from(m.iterations), what)
}

/// Checks the MAC of the authenticated safe (RFC 7292 appendix B: the key from the password).
fn verify_mac(m: &pkcs12::MacData, password: &str, data: &[u8], what: &str) -> Result<()> {
    macro_rules! check {
        ($d:ty) => {{
            use hmac::{KeyInit as _, Mac as _};
            let len = <$d as sha2::Digest>::output_size();
            let salt = m.mac_salt.as_bytes();
            derive_key_utf8::<$d>(password, salt, Pkcs12KeyType::Mac, m.iterations, len)
                .ok()
                .and_then(|key| hmac::Hmac::<$d>::new_from_slice(&key).ok())
                .map(|mut mac| {
                    mac.update(data);
                    mac.verify_slice(m.mac.digest.as_bytes()).is_ok()
                })
        }};
    }
    let ok = match m.mac.algorithm.oid {
        SHA1 => check!(sha1::Sha1),
        SHA256 => check!(sha2::Sha256),
        SHA384 => check!(sha2::Sha384),
        SHA512 => check!(sha2::Sha512),
        o => return Err(err!(Unsupported, "{what}: MAC digest {o} is not supported")),
    };
    match ok {
        Some(true) => Ok(()),
        _ => Err(err!(
            InvalidArgument,
            "{what}: the MAC does not match (wrong password, or a damaged file)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_count_every_output_block() {
        assert_eq!(blocks(24, 20), 2);
        assert_eq!(blocks(32, 32), 1);
        assert_eq!(blocks(5, 20), 1);
        assert!(positive(0, "x").is_err());
        assert!(positive(-5, "x").is_err());
        assert_eq!(positive(2048, "x").unwrap(), 2048);
    }

    #[test]
    fn garbage_is_a_named_error_not_a_panic() {
        for b in [&b""[..], b"\x30\x00", b"\x30\x03\x02\x01\x03", b"junk"] {
            let e = read(b, "", "t.pfx").err().unwrap();
            assert!(e.to_string().contains("t.pfx"), "{e}");
        }
    }
}
