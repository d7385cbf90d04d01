//! The Blob service calls a page-blob upload needs, with Azure's limits enforced on our side
//! (Azurite is lenient: it accepts pages over 4 MiB and ranges past the end; Azure does not).
//!
//! Spec: Blob service REST API: Put Blob, Put Page, Get Page Ranges, Get Blob Properties,
//! Set Blob Properties, Create Container, Get Blob (version 2021-08-06).

use super::credentials::{StorageAuth, StorageTarget};
use super::http::{Http, Request, Response};
use crate::err;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// Blob service version we speak.
pub const API_VERSION: &str = "2021-08-06";
/// Page size: Put Page ranges start and end on it.
pub const PAGE: u64 = 512;
/// Largest Put Page body.
pub const MAX_PUT_PAGE: u64 = 4 << 20;
/// Largest page blob.
pub const MAX_PAGE_BLOB: u64 = 8 << 40;
/// Metadata names written at creation (source identity, for resume).
pub const META_SOURCE_SIZE: &str = "isotoolsourcesize";
/// Metadata: identity of the source (see [`super::upload::source_identity`]).
pub const META_SOURCE_ID: &str = "isotoolsourceid";

/// What Get Blob Properties tells.
#[derive(Debug, Clone, Default)]
pub struct BlobProps {
    /// Blob length.
    pub len: u64,
    /// `PageBlob`, `BlockBlob`, `AppendBlob`.
    pub blob_type: String,
    /// `Content-MD5` (base64) when set.
    pub md5: Option<String>,
    /// Metadata (names lower-cased).
    pub metadata: BTreeMap<String, String>,
}

/// A client for one blob in one container.
#[derive(Clone, Debug)]
pub struct BlobClient {
    http: Http,
    target: StorageTarget,
    container: String,
    blob: String,
    clock: fn() -> u64,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks a Put Page range against Azure's rules: 512-aligned start and length, non-empty,
/// at most 4 MiB, inside the blob.
pub fn check_page_range(offset: u64, len: u64, blob_len: u64) -> Result<()> {
    let bad = |why: &str| {
        Err(err!(
            InvalidArgument,
            "Put Page of {len} bytes at offset {offset}: {why} (blob is {blob_len} bytes)"
        ))
    };
    if len == 0 {
        return bad("empty range");
    }
    if !offset.is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) {
        return bad("start and length must be multiples of 512");
    }
    if len > MAX_PUT_PAGE {
        return bad("more than 4 MiB in one call");
    }
    if offset.checked_add(len).is_none_or(|e| e > blob_len) {
        return bad("range ends past the end of the blob");
    }
    Ok(())
}

/// Checks a container name: 3-63 characters, lower-case letters, digits and single hyphens,
/// starting and ending with a letter or digit (Azure answers a bare `OutOfRangeInput` otherwise).
pub fn check_container_name(name: &str) -> Result<()> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok = (3..=63).contains(&name.len())
        && ok_chars
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(err!(
            InvalidArgument,
            "container name {name:?}: Azure wants 3-63 lower-case letters, digits and single \
             hyphens, starting and ending with a letter or digit"
        ))
    }
}

impl BlobClient {
    /// A client for `container/blob` at `target`.
    pub fn new(http: Http, target: StorageTarget, container: &str, blob: &str) -> Self {
        BlobClient {
            http,
            target,
            container: container.to_string(),
            blob: blob.to_string(),
            clock: now_unix,
        }
    }

    /// The account name.
    pub fn account(&self) -> &str {
        &self.target.account
    }

    /// The blob's URL without credentials.
    pub fn public_url(&self) -> String {
        self.target.public_url(&self.container, &self.blob)
    }

    /// `container/blob`, for messages.
    pub fn name(&self) -> String {
        format!("{}/{}", self.container, self.blob)
    }

    /// Builds a signed request. `blob == false` addresses the container.
    fn request<'a>(
        &self,
        method: &'static str,
        blob: bool,
        query: &[(&str, &str)],
        mut headers: Vec<(String, String)>,
        body: &'a [u8],
    ) -> Result<Request<'a>> {
        let b = blob.then_some(self.blob.as_str());
        let url = self.target.url(&self.container, b, query);
        headers.push((
            "x-ms-date".into(),
            super::sharedkey::http_date((self.clock)()),
        ));
        headers.push(("x-ms-version".into(), API_VERSION.into()));
        if method == "PUT" || method == "POST" {
            headers.push(("Content-Length".into(), body.len().to_string()));
        }
        match &self.target.auth {
            StorageAuth::SharedKey(key) => {
                let path = self.target.path(&self.container, b);
                let q = url.split_once('?').map_or("", |(_, q)| q);
                let a = super::sharedkey::authorization(
                    &self.target.account,
                    key.expose(),
                    method,
                    &path,
                    q,
                    &headers,
                )?;
                headers.push(("Authorization".into(), a));
            }
            StorageAuth::Bearer(t) => {
                headers.push(("Authorization".into(), format!("Bearer {}", t.expose())));
            }
            StorageAuth::Sas(_) => {}
        }
        Ok(Request {
            method,
            url,
            headers,
            body,
        })
    }

    fn send(
        &self,
        method: &'static str,
        blob: bool,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<Response> {
        let hs: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        self.http
            .send(&|| self.request(method, blob, query, hs.clone(), body))
    }

    /// The error for a failed response: Azure's code and message, the account named, secrets
    /// masked; authentication and permission failures get their own kinds.
    pub fn service_error(&self, r: &Response, what: &str) -> Error {
        let (code, message) = error_code_message(r);
        let red = self.http.redactor();
        let message = red.redact(&message);
        let acct = &self.target.account;
        let target = format!("{what} {} in storage account '{acct}'", self.name());
        // A Shared Key grants everything: its 403 is always a bad key (Azurite answers
        // AuthorizationFailure where Azure answers AuthenticationFailed).
        let auth_failed = r.status == 401
            || (r.status == 403
                && (code == "AuthenticationFailed"
                    || message.contains("failed to authenticate")
                    || matches!(self.target.auth, StorageAuth::SharedKey(_))));
        match (r.status, auth_failed) {
            (_, true) => err!(
                AuthFailed,
                "{target}: the account refused the credentials (HTTP {}, {code}): {message} \
                 (check the account key, SAS or token for account '{acct}')",
                r.status
            ),
            (403, _) => err!(
                PermissionDenied,
                "{target}: permission denied (HTTP 403, {code}): {message} (a read-only or \
                 expired SAS, or a role without write access)"
            ),
            (404, _) => err!(
                NotFound,
                "{target}: not found (HTTP 404, {code}): {message}"
            ),
            _ => err!(Remote, "{target}: HTTP {} {code}: {message}", r.status),
        }
    }

    /// Creates the container; an existing one is fine. Returns true when it was created.
    pub fn create_container(&self) -> Result<bool> {
        let r = self.send("PUT", false, &[("restype", "container")], &[], &[])?;
        match r.status {
            201 => Ok(true),
            409 if error_code_message(&r).0 == "ContainerAlreadyExists" => Ok(false),
            _ => Err(self.service_error(&r, "creating container for")),
        }
    }

    /// Get Blob Properties; `Ok(None)` when the blob does not exist, `NotFound` naming the
    /// container when the container does not.
    pub fn properties(&self) -> Result<Option<BlobProps>> {
        let r = self.send("HEAD", true, &[], &[], &[])?;
        if r.status == 404 {
            return match r.header("x-ms-error-code") {
                Some("ContainerNotFound") => Err(err!(
                    NotFound,
                    "container '{}' does not exist in storage account '{}'",
                    self.container,
                    self.target.account
                )),
                _ => Ok(None),
            };
        }
        if !r.ok() {
            // A HEAD answer has no body: ask again with GET to quote Azure's code and message.
            let g = self.send("GET", true, &[("comp", "metadata")], &[], &[])?;
            let r = if g.ok() { r } else { g };
            return Err(self.service_error(&r, "reading the properties of"));
        }
        let mut p = BlobProps {
            len: r
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            blob_type: r.header("x-ms-blob-type").unwrap_or_default().to_string(),
            md5: r
                .header("content-md5")
                .filter(|v| !v.is_empty())
                .map(str::to_string),
            metadata: BTreeMap::new(),
        };
        for (k, v) in &r.headers {
            if let Some(name) = k.strip_prefix("x-ms-meta-") {
                p.metadata.insert(name.to_ascii_lowercase(), v.clone());
            }
        }
        Ok(Some(p))
    }

    /// Put Blob: a new (or replaced) empty page blob of `size` bytes with `metadata`.
    pub fn create_page_blob(&self, size: u64, metadata: &[(&str, String)]) -> Result<()> {
        if !size.is_multiple_of(PAGE) || size > MAX_PAGE_BLOB {
            return Err(err!(
                InvalidArgument,
                "a page blob is a multiple of 512 bytes and at most 8 TiB, not {size} bytes"
            ));
        }
        let mut h: Vec<(&str, String)> = vec![
            ("x-ms-blob-type", "PageBlob".into()),
            ("x-ms-blob-content-length", size.to_string()),
        ];
        let names: Vec<String> = metadata
            .iter()
            .map(|(k, _)| format!("x-ms-meta-{k}"))
            .collect();
        for (n, (_, v)) in names.iter().zip(metadata) {
            h.push((n.as_str(), v.clone()));
        }
        let r = self.send("PUT", true, &[], &h, &[])?;
        if r.status != 201 {
            return Err(self.service_error(&r, "creating page blob"));
        }
        Ok(())
    }

    /// Put Page: writes `data` at `offset` (checked by [`check_page_range`] against `blob_len`),
    /// with a transactional CRC-64 (`x-ms-content-crc64`) the service verifies.
    pub fn put_page(&self, offset: u64, data: &[u8], blob_len: u64) -> Result<()> {
        check_page_range(offset, data.len() as u64, blob_len)?;
        let range = format!("bytes={}-{}", offset, offset + data.len() as u64 - 1);
        let h = [
            ("x-ms-page-write", "update".to_string()),
            ("x-ms-range", range),
            ("x-ms-content-crc64", content_crc64(data)),
        ];
        let r = self.send("PUT", true, &[("comp", "page")], &h, data)?;
        if r.status != 201 {
            return Err(self.service_error(&r, "writing pages of").at(offset));
        }
        Ok(())
    }

    /// Get Page Ranges: the written ranges as `[start, end)`, sorted, merged.
    pub fn page_ranges(&self) -> Result<Vec<(u64, u64)>> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        let mut marker = String::new();
        loop {
            let mut q = vec![("comp", "pagelist")];
            if !marker.is_empty() {
                q.push(("marker", marker.as_str()));
            }
            let r = self.send("GET", true, &q, &[], &[])?;
            if !r.ok() {
                return Err(self.service_error(&r, "listing the pages of"));
            }
            let (ranges, next) = parse_page_list(&r.body)?;
            for (a, b) in ranges {
                match out.last_mut() {
                    Some(l) if l.1 >= a => l.1 = l.1.max(b),
                    _ => out.push((a, b)),
                }
            }
            if next.is_empty() {
                return Ok(out);
            }
            marker = next;
        }
    }

    /// Get Blob of a range.
    pub fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let h = [(
            "x-ms-range",
            format!("bytes={}-{}", offset, offset + len - 1),
        )];
        let r = self.send("GET", true, &[], &h, &[])?;
        if r.status != 206 && r.status != 200 {
            return Err(self.service_error(&r, "reading").at(offset));
        }
        if r.body.len() as u64 != len {
            return Err(err!(
                Remote,
                "reading {len} bytes at offset {offset} of {}: got {} bytes",
                self.name(),
                r.body.len()
            ));
        }
        Ok(r.body)
    }

    /// Set Blob Properties: Content-MD5 and Content-Type together (a call that omits one
    /// clears it).
    pub fn set_md5_and_type(&self, md5_b64: &str, content_type: &str) -> Result<()> {
        let h = [
            ("x-ms-blob-content-md5", md5_b64.to_string()),
            ("x-ms-blob-content-type", content_type.to_string()),
        ];
        let r = self.send("PUT", true, &[("comp", "properties")], &h, &[])?;
        if r.status != 200 {
            return Err(self.service_error(&r, "setting the properties of"));
        }
        Ok(())
    }
}

/// CRC-64/NVME, the transactional checksum of the Blob service (`x-ms-content-crc64`, version
/// 2019-02-02 and later; Azurite computes it on every Put Page). Table-driven, several GB/s:
/// about ten times cheaper than a per-request MD5, for the client and for the service.
static CRC64: crc::Crc<u64, crc::Table<16>> =
    crc::Crc::<u64, crc::Table<16>>::new(&crc::CRC_64_NVME);

/// The `x-ms-content-crc64` value of `data`: base64 of the CRC's 8 bytes, least significant
/// first (as the service computes and returns it).
pub fn content_crc64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(CRC64.checksum(data).to_le_bytes())
}

/// Azure's error code (the `x-ms-error-code` header or `<Code>`) and `<Message>` (first line).
pub fn error_code_message(r: &Response) -> (String, String) {
    let texts = xml_texts(&r.body, &["Code", "Message"]);
    let code = r
        .header("x-ms-error-code")
        .map(str::to_string)
        .or_else(|| {
            texts
                .iter()
                .find(|(k, _)| k == "Code")
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|| format!("HTTP{}", r.status));
    let message = texts
        .iter()
        .find(|(k, _)| k == "Message")
        .map(|(_, v)| v.lines().next().unwrap_or_default().to_string())
        .unwrap_or_else(|| String::from_utf8_lossy(&r.body).chars().take(200).collect());
    (code, message)
}

/// Texts of the elements named in `names`, in document order (bad XML yields what was read).
pub fn xml_texts(xml: &[u8], names: &[&str]) -> Vec<(String, String)> {
    use quick_xml::events::Event;
    let mut rd = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut cur: Option<String> = None;
    let mut out = Vec::new();
    loop {
        match rd.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => {
                let n = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                cur = names.contains(&n.as_str()).then_some(n);
            }
            Ok(Event::Text(t)) => {
                if let Some(n) = cur.take() {
                    let v = t.decode().map(|c| c.into_owned()).unwrap_or_default();
                    out.push((
                        n,
                        quick_xml::escape::unescape(&v)
                            .map(|c| c.into_owned())
                            .unwrap_or(v),
                    ));
                }
            }
            Ok(Event::End(_)) => cur = None,
            Ok(Event::Eof) | Err(_) => return out,
            _ => {}
        }
        buf.clear();
    }
}

/// Parses a `PageList` document: `PageRange` `[start, end)` pairs (ClearRange skipped) and
/// the `NextMarker` ("" when none).
pub fn parse_page_list(xml: &[u8]) -> Result<(Vec<(u64, u64)>, String)> {
    use quick_xml::events::Event;
    let mut rd = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    let (mut ranges, mut next) = (Vec::new(), String::new());
    let mut start: Option<u64> = None;
    let bad = |what: &str| err!(Remote, "Get Page Ranges: malformed answer ({what})");
    loop {
        match rd
            .read_event_into(&mut buf)
            .map_err(|e| bad(&e.to_string()))?
        {
            Event::Start(e) => {
                stack.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned())
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Text(t) => {
                let v = t
                    .decode()
                    .map_err(|e| bad(&e.to_string()))?
                    .trim()
                    .to_string();
                let n = stack.len();
                let parent = n.checked_sub(2).map(|i| stack[i].as_str());
                match (parent, stack.last().map(String::as_str)) {
                    (Some("PageRange"), Some("Start")) => {
                        start = Some(v.parse().map_err(|_| bad("Start is not a number"))?)
                    }
                    (Some("PageRange"), Some("End")) => {
                        let end: u64 = v.parse().map_err(|_| bad("End is not a number"))?;
                        let s = start.take().ok_or_else(|| bad("End before Start"))?;
                        if end < s {
                            return Err(bad("End before Start"));
                        }
                        ranges.push((s, end + 1));
                    }
                    (_, Some("NextMarker")) => next = v,
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    ranges.sort_unstable();
    Ok((ranges, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Azure's limits, which Azurite does not enforce.
    #[test]
    fn put_page_limits() {
        let blob = 16 << 20;
        assert!(check_page_range(0, 512, blob).is_ok());
        assert!(check_page_range(0, MAX_PUT_PAGE, blob).is_ok());
        assert!(check_page_range(blob - 512, 512, blob).is_ok());
        for (o, l) in [
            (0, 0),
            (1, 512),
            (0, 513),
            (0, MAX_PUT_PAGE + 512),
            (blob, 512),
            (blob - 512, 1024),
            (u64::MAX - 511, 512),
        ] {
            let e = check_page_range(o, l, blob).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{o} {l}");
        }
    }

    /// CRC-64/NVME's check value, and the encoding of the header (little-endian, base64).
    #[test]
    fn crc64_of_put_page() {
        assert_eq!(CRC64.checksum(b"123456789"), 0xae8b_1486_0a79_9888);
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD
            .decode(content_crc64(b"123456789"))
            .unwrap();
        assert_eq!(b, 0xae8b_1486_0a79_9888u64.to_le_bytes());
    }

    #[test]
    fn container_names() {
        for n in ["abc", "disk-images", "a1b"] {
            assert!(check_container_name(n).is_ok(), "{n}");
        }
        for n in ["c", "ab", "Abc", "a--b", "-ab", "ab-", "a_b"] {
            assert!(check_container_name(n).is_err(), "{n}");
        }
    }

    #[test]
    fn page_list_parsing() {
        let xml = br#"<?xml version="1.0" encoding="utf-8"?><PageList><PageRange><Start>0</Start><End>511</End></PageRange><ClearRange><Start>512</Start><End>1023</End></ClearRange><PageRange><Start>4096</Start><End>1052671</End></PageRange><NextMarker>m2</NextMarker></PageList>"#;
        let (r, next) = parse_page_list(xml).unwrap();
        assert_eq!(r, vec![(0, 512), (4096, 1_052_672)]);
        assert_eq!(next, "m2");
        let (r, next) = parse_page_list(b"<PageList />").unwrap();
        assert!(r.is_empty() && next.is_empty());
        assert!(
            parse_page_list(b"<PageList><PageRange><Start>x</Start></PageRange></PageList>")
                .is_err()
        );
        assert!(
            parse_page_list(
                b"<PageList><PageRange><Start>9</Start><End>1</End></PageRange></PageList>"
            )
            .is_err()
        );
    }

    #[test]
    fn error_body_parsing() {
        let r = Response {
            status: 403,
            headers: vec![],
            body: b"<?xml version=\"1.0\"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request.\nRequestId:1</Message></Error>".to_vec(),
        };
        let (c, m) = error_code_message(&r);
        assert_eq!(c, "AuthenticationFailed");
        assert_eq!(m, "Server failed to authenticate the request.");
    }
}
