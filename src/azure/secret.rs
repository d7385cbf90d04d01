//! Secrets that never print, and masking of the places they could leak through (URLs, server
//! messages).

use std::fmt;

/// A secret value (account key, SAS signature, token, client secret, password).
///
/// `Debug` and `Display` print `***`; the value is reached only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The value, for signing or sending; never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The mask written in place of a secret.
pub const MASK: &str = "***";

/// Query parameters whose values are secrets (SAS signatures, OAuth codes and secrets).
const SECRET_PARAMS: &[&str] = &[
    "sig",
    "signature",
    "client_secret",
    "client_assertion",
    "access_token",
    "code",
];

/// Masks the values of secret query parameters in a URL (or a form body).
pub fn mask_query(url: &str) -> String {
    let (head, query) = match url.find('?') {
        Some(i) => (&url[..=i], &url[i + 1..]),
        None if url.contains('=') && !url.contains('/') => ("", url),
        None => return url.to_string(),
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()) => {
                format!("{k}={MASK}")
            }
            _ => kv.to_string(),
        })
        .collect();
    format!("{head}{}", parts.join("&"))
}

/// Replaces every known secret (and its URL-encoded form) in a text by [`MASK`].
#[derive(Clone, Default, Debug)]
pub struct Redactor {
    secrets: Vec<Secret>,
}

impl Redactor {
    /// A redactor for these secrets (empty ones are ignored).
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        Redactor {
            secrets: secrets.into_iter().filter(|s| s.0.len() >= 4).collect(),
        }
    }

    /// Adds a secret.
    pub fn add(&mut self, s: &Secret) {
        if s.0.len() >= 4 {
            self.secrets.push(s.clone());
        }
    }

    /// `text` with every secret, every secret query parameter and every base64 MAC (44
    /// characters ending in `=`, as Azure quotes request signatures) masked.
    pub fn redact(&self, text: &str) -> String {
        let mut t = mask_query(text);
        for s in &self.secrets {
            t = t.replace(s.expose(), MASK);
            let enc = super::credentials::percent_encode(s.expose(), false);
            if enc != s.expose() {
                t = t.replace(&enc, MASK);
            }
        }
        mask_macs(&t)
    }
}

/// Masks base64 runs of 44 characters ending with `=` (a SHA-256 HMAC): Azure quotes the
/// signature it expected in `AuthenticationFailed` messages.
fn mask_macs(t: &str) -> String {
    let b = t.as_bytes();
    let is_b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    let mut out = String::with_capacity(t.len());
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        if is_b64(b[i]) && (i == 0 || !is_b64(b[i - 1])) {
            let mut j = i;
            while j < b.len() && is_b64(b[j]) {
                j += 1;
            }
            if j - i == 43 && b.get(j) == Some(&b'=') {
                out.push_str(&t[copied..i]);
                out.push_str(MASK);
                copied = j + 1;
                i = j + 1;
                continue;
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out.push_str(&t[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats() {
        let s = Secret::new("hunter2-key");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
    }

    #[test]
    fn query_signatures_masked() {
        assert_eq!(
            mask_query("https://a.blob.core.windows.net/c/b.vhd?sv=2020&sp=rw&sig=abc%2Bdef&se=1"),
            "https://a.blob.core.windows.net/c/b.vhd?sv=2020&sp=rw&sig=***&se=1"
        );
        assert_eq!(
            mask_query("grant_type=x&client_secret=s3cr3t&client_id=id"),
            "grant_type=x&client_secret=***&client_id=id"
        );
        assert_eq!(mask_query("https://x/y"), "https://x/y");
    }

    #[test]
    fn redactor_masks_values_encodings_and_macs() {
        let r = Redactor::new([Secret::new("ab+c/d=="), Secret::new("")]);
        let mac = "dGhpcyBpcyBhIDMyIGJ5dGUgbWFjIGZvciB0ZXN0aW4=";
        assert_eq!(mac.len(), 44);
        let t = format!("key ab+c/d== enc ab%2Bc%2Fd%3D%3D mac '{mac}' short 'abc='");
        assert_eq!(r.redact(&t), "key *** enc *** mac '***' short 'abc='");
    }
}
