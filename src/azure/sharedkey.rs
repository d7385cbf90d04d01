//! Shared Key authorization of Blob service requests.
//!
//! Spec: "Authorize with Shared Key" (Azure Storage REST API), string-to-sign for the Blob
//! service, version 2009-09-19 and later:
//!
//! ```text
//! VERB \n Content-Encoding \n Content-Language \n Content-Length \n Content-MD5 \n
//! Content-Type \n Date \n If-Modified-Since \n If-Match \n If-None-Match \n
//! If-Unmodified-Since \n Range \n CanonicalizedHeaders CanonicalizedResource
//! ```
//!
//! Content-Length is empty when 0 (version 2015-02-21 and later). CanonicalizedHeaders are the
//! `x-ms-*` headers, lower-cased, sorted, `name:value\n`. CanonicalizedResource is
//! `/account/encoded-path` then, per query parameter sorted by lower-cased name,
//! `\nname:value[,value]` with decoded values.

use super::credentials::percent_decode;
use crate::error::Result;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Standard headers that take part in the string-to-sign, in order.
const SIGNED_HEADERS: [&str; 11] = [
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
];

/// The string to sign for a request. `headers` are (name, value) as sent; `path` is the encoded
/// URI path; `query` is the raw query string (without `?`).
pub fn string_to_sign(
    method: &str,
    account: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
) -> String {
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let mut s = String::with_capacity(256);
    s.push_str(method);
    s.push('\n');
    for h in SIGNED_HEADERS {
        let mut v = find(h);
        if h == "content-length" && v == "0" {
            v.clear();
        }
        s.push_str(&v);
        s.push('\n');
    }
    let mut ms: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().starts_with("x-ms-"))
        .map(|(k, v)| (k.to_ascii_lowercase(), unfold(v)))
        .collect();
    ms.sort();
    for (k, v) in ms {
        s.push_str(&format!("{k}:{v}\n"));
    }
    s.push_str(&canonicalized_resource(account, path, query));
    s
}

/// Trims and replaces line folds / runs of whitespace by one space (outside quotes, as the spec
/// says; header values we send never hold quotes).
fn unfold(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `/account/path` + sorted `\nname:value` query lines.
pub fn canonicalized_resource(account: &str, path: &str, query: &str) -> String {
    let mut r = format!("/{account}{}", if path.is_empty() { "/" } else { path });
    let mut params: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        params
            .entry(percent_decode(k, false).to_ascii_lowercase())
            .or_default()
            .push(percent_decode(v, false));
    }
    for (k, mut vs) in params {
        vs.sort();
        r.push_str(&format!("\n{k}:{}", vs.join(",")));
    }
    r
}

/// Base64 HMAC-SHA256 of `msg` under `key` (raw bytes).
pub fn hmac_sha256_b64(key: &[u8], msg: &str) -> String {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts any key size");
    m.update(msg.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}

/// The `Authorization` header value: `SharedKey account:signature`.
pub fn authorization(
    account: &str,
    key_b64: &str,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
) -> Result<String> {
    let key = super::credentials::decode_key(key_b64)?;
    let sts = string_to_sign(method, account, path, query, headers);
    Ok(format!(
        "SharedKey {account}:{}",
        hmac_sha256_b64(&key, &sts)
    ))
}

/// An RFC 1123 date (`x-ms-date`) for Unix seconds.
pub fn http_date(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix / 86400;
    let secs = unix % 86400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    /// The example of "Authorize with Shared Key" (Blob service, Get Container Metadata through
    /// the emulator's path-style URL `GET http://myaccount/mycontainer?restype=container&comp=metadata&timeout=20`
    /// is shown there for `/myaccount/myaccount/mycontainer`).
    #[test]
    fn documented_string_to_sign() {
        let headers = [
            h("x-ms-date", "Sun, 11 Oct 2009 21:49:13 GMT"),
            h("x-ms-version", "2009-09-19"),
        ];
        let s = string_to_sign(
            "GET",
            "myaccount",
            "/myaccount/mycontainer",
            "restype=container&comp=metadata&timeout=20",
            &headers,
        );
        let want = "GET\n\n\n\n\n\n\n\n\n\n\n\n\
                    x-ms-date:Sun, 11 Oct 2009 21:49:13 GMT\nx-ms-version:2009-09-19\n\
                    /myaccount/myaccount/mycontainer\ncomp:metadata\nrestype:container\ntimeout:20";
        assert_eq!(s, want);
    }

    /// The documented Put Blob example's standard headers land in their slots; a zero
    /// Content-Length is empty; x-ms headers are lower-cased, sorted and unfolded.
    #[test]
    fn headers_in_their_slots() {
        let headers = [
            h("Content-Length", "0"),
            h("x-ms-Version", "2021-08-06"),
            h("x-ms-blob-type", "PageBlob"),
            h("x-ms-meta-Name", "  a   b "),
            h("Content-Type", "application/octet-stream"),
            h("Range", "bytes=0-511"),
        ];
        let s = string_to_sign("PUT", "acct", "/c/b.vhd", "", &headers);
        assert_eq!(
            s,
            "PUT\n\n\n\n\napplication/octet-stream\n\n\n\n\n\nbytes=0-511\n\
             x-ms-blob-type:PageBlob\nx-ms-meta-name:a b\nx-ms-version:2021-08-06\n/acct/c/b.vhd"
        );
    }

    /// HMAC-SHA256 against RFC 4231 test case 2 (key "Jefe").
    #[test]
    fn hmac_rfc4231_case2() {
        let mac = hmac_sha256_b64(b"Jefe", "what do ya want for nothing?");
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(mac)
            .unwrap();
        assert_eq!(
            crate::checksum::hex(&raw),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn query_values_decoded_and_grouped() {
        assert_eq!(
            canonicalized_resource("a", "/c", "b=2&A=1&b=1&x=%2F"),
            "/a/c\na:1\nb:1,2\nx:/"
        );
        assert_eq!(canonicalized_resource("a", "", ""), "/a/");
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(1_255_297_753), "Sun, 11 Oct 2009 21:49:13 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    }
}
