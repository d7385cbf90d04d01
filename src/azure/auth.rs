//! Service-principal authentication (OAuth2 client credentials, Microsoft identity platform v2):
//! a client certificate (PKCS#12, as Packer's `client_cert_path`) signs a JWT client assertion
//! (RS256, `x5t` = base64url SHA-1 thumbprint), or a client secret is posted. The authority and
//! the scopes are configurable (sovereign clouds, Azure Stack, loopback tests).
//!
//! Spec: "Microsoft identity platform application authentication certificate credentials" and
//! "OAuth 2.0 client credentials flow"; RFC 7515/7519 (JWS/JWT), RFC 8017 §9.2 (EMSA-PKCS1-v1_5).

use super::http::{Http, Request};
use super::secret::Secret;
use crate::err;
use crate::error::Result;
use base64::Engine;
use std::path::Path;

/// Default authority host (public cloud).
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Scope of ARM tokens.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";
/// Scope of storage tokens.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";
/// Lifetime of a client assertion.
pub const ASSERTION_LIFETIME: u64 = 600;

/// DER DigestInfo prefix of SHA-256 (RFC 8017 §9.2, note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A certificate credential: the RSA key and its certificate.
#[derive(Clone)]
pub struct CertCredential {
    key: rsa::RsaPrivateKey,
    cert_der: Vec<u8>,
}

impl std::fmt::Debug for CertCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertCredential(x5t={})", self.x5t())
    }
}

impl CertCredential {
    /// From a PKCS#12 file (`.pfx`), with its password (empty when none).
    pub fn from_pkcs12_file(path: &Path, password: Option<&Secret>) -> Result<Self> {
        let data = crate::limits::read_limited(
            path,
            crate::limits::MAX_PKCS12_BYTES,
            "MAX_PKCS12_BYTES",
            "the client certificate",
        )?;
        Self::from_pkcs12(&data, password).map_err(|e| e.with_path(path))
    }

    /// From PKCS#12 bytes: the first of its keys that a certificate in it matches.
    pub fn from_pkcs12(data: &[u8], password: Option<&Secret>) -> Result<Self> {
        let pw = password.map_or("", Secret::expose);
        let c = super::pfx::read(data, pw, "the PKCS#12 certificate")?;
        let mut first_err = None;
        for key in &c.keys {
            match Self::from_parts(key, &c.certs) {
                Ok(cred) => return Ok(cred),
                Err(e) => first_err = first_err.or(Some(e)),
            }
        }
        Err(first_err
            .unwrap_or_else(|| err!(InvalidArgument, "the PKCS#12 file holds no private key")))
    }

    /// From a PKCS#8 DER private key and candidate certificates (the one whose public key matches
    /// is used).
    pub fn from_parts(pkcs8_der: &[u8], certs: &[Vec<u8>]) -> Result<Self> {
        use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
        use x509_cert::der::{Decode, Encode};
        crate::limits::check_rsa_pkcs8(pkcs8_der, "the certificate's key")?;
        let key = rsa::RsaPrivateKey::from_pkcs8_der(pkcs8_der).map_err(|e| {
            err!(
                Unsupported,
                "the certificate's key is not an RSA PKCS#8 key: {e}"
            )
        })?;
        let public = key.to_public_key();
        for der in certs {
            let Ok(c) = x509_cert::Certificate::from_der(der) else {
                continue;
            };
            let spki = c
                .tbs_certificate
                .subject_public_key_info
                .to_der()
                .unwrap_or_default();
            if rsa::RsaPublicKey::from_public_key_der(&spki).is_ok_and(|p| p == public) {
                return Ok(CertCredential {
                    key,
                    cert_der: der.clone(),
                });
            }
        }
        Err(err!(
            InvalidArgument,
            "no certificate in the file matches its private key"
        ))
    }

    /// The certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// `x5t`: base64url SHA-1 thumbprint of the certificate.
    pub fn x5t(&self) -> String {
        use sha1::Digest;
        b64url(&sha1::Sha1::digest(&self.cert_der))
    }

    /// RS256 signature of `msg`.
    pub fn sign_rs256(&self, msg: &[u8]) -> Result<Vec<u8>> {
        use sha2::Digest;
        let mut t = SHA256_DIGEST_INFO.to_vec();
        t.extend_from_slice(&sha2::Sha256::digest(msg));
        self.key
            .sign(rsa::Pkcs1v15Sign::new_unprefixed(), &t)
            .map_err(|e| err!(InvalidArgument, "RSA signing failed: {e}"))
    }
}

/// How the service principal proves itself.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // made once per run; boxing buys nothing
pub enum ClientCredential {
    /// A client secret.
    Secret(Secret),
    /// A certificate.
    Certificate(CertCredential),
}

/// A service principal in a tenant.
#[derive(Clone, Debug)]
pub struct ServicePrincipal {
    /// Tenant id (or domain).
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// Credential.
    pub credential: ClientCredential,
    /// Authority host (default [`DEFAULT_AUTHORITY`]).
    pub authority: String,
}

/// An access token.
#[derive(Clone, Debug)]
pub struct Token {
    /// The bearer token.
    pub access_token: Secret,
    /// Lifetime in seconds from issue.
    pub expires_in: u64,
}

impl ServicePrincipal {
    /// The v2.0 token endpoint.
    pub fn token_endpoint(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.authority.trim_end_matches('/'),
            super::credentials::percent_encode(&self.tenant_id, false)
        )
    }

    /// The signed JWT client assertion (certificate credentials only).
    pub fn client_assertion(&self, now: u64, jti: &str) -> Result<String> {
        let ClientCredential::Certificate(c) = &self.credential else {
            return Err(err!(
                InvalidArgument,
                "a client assertion needs a certificate"
            ));
        };
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": c.x5t()});
        let claims = serde_json::json!({
            "aud": self.token_endpoint(),
            "exp": now + ASSERTION_LIFETIME,
            "iat": now,
            "iss": self.client_id,
            "jti": jti,
            "nbf": now,
            "sub": self.client_id,
        });
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let sig = c.sign_rs256(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", b64url(&sig)))
    }

    /// The form body of the token request for `scope`.
    pub fn token_request_body(&self, scope: &str, now: u64, jti: &str) -> Result<String> {
        use super::credentials::percent_encode as enc;
        let mut f = format!(
            "grant_type=client_credentials&client_id={}&scope={}",
            enc(&self.client_id, false),
            enc(scope, false)
        );
        match &self.credential {
            ClientCredential::Secret(s) => {
                f.push_str(&format!("&client_secret={}", enc(s.expose(), false)))
            }
            ClientCredential::Certificate(_) => f.push_str(&format!(
                "&client_assertion_type={}&client_assertion={}",
                enc(
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    false
                ),
                self.client_assertion(now, jti)?
            )),
        }
        Ok(f)
    }

    /// Gets a token for `scope` from the token endpoint.
    pub fn token(&self, http: &Http, scope: &str, now: u64, jti: &str) -> Result<Token> {
        let body = self.token_request_body(scope, now, jti)?;
        let url = self.token_endpoint();
        let r = http.send(&|| {
            Ok(Request {
                method: "POST",
                url: url.clone(),
                headers: vec![
                    (
                        "Content-Type".into(),
                        "application/x-www-form-urlencoded".into(),
                    ),
                    ("Accept".into(), "application/json".into()),
                ],
                body: body.as_bytes(),
            })
        })?;
        let v = crate::limits::parse_json(&r.body, "the token endpoint's response");
        if !r.ok() {
            let v = v.unwrap_or_default();
            let code = v["error"].as_str().unwrap_or("unknown");
            let desc = v["error_description"].as_str().unwrap_or_default();
            let desc = http
                .redactor()
                .redact(desc.lines().next().unwrap_or_default());
            return Err(err!(
                AuthFailed,
                "token endpoint refused service principal '{}' of tenant '{}' (HTTP {}, {code}): {desc}",
                self.client_id,
                self.tenant_id,
                r.status
            ));
        }
        let v = v?;
        let tok = v["access_token"]
            .as_str()
            .ok_or_else(|| err!(Remote, "the token endpoint's answer has no access_token"))?;
        Ok(Token {
            access_token: Secret::new(tok),
            expires_in: v["expires_in"].as_u64().unwrap_or(3600),
        })
    }
}

/// A fresh JWT id (random, from the build context's urandom path).
pub fn new_jti() -> String {
    let ctx = crate::context::BuildContext::random();
    crate::context::guid_string(&ctx.guid("jwt jti"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_form_and_endpoint() {
        let sp = ServicePrincipal {
            tenant_id: "tid".into(),
            client_id: "cid".into(),
            credential: ClientCredential::Secret(Secret::new("p&ss=w")),
            authority: "https://login.example/".into(),
        };
        assert_eq!(
            sp.token_endpoint(),
            "https://login.example/tid/oauth2/v2.0/token"
        );
        assert_eq!(
            sp.token_request_body(ARM_SCOPE, 0, "j").unwrap(),
            "grant_type=client_credentials&client_id=cid&scope=https%3A%2F%2Fmanagement.azure.com%2F.default&client_secret=p%26ss%3Dw"
        );
        assert!(sp.client_assertion(0, "j").is_err());
        assert!(!format!("{sp:?}").contains("p&ss"));
    }
}
