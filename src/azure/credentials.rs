//! Where a storage account is and how to authenticate to it: connection strings, SAS URLs,
//! bearer tokens, and the `AZURE_*` environment as Azure's SDKs name it.
//!
//! Nothing here prints a value it parsed: errors name the field (`AccountKey`, `sig`), never
//! its content.

use super::secret::Secret;
use crate::err;
use crate::error::Result;
use std::path::PathBuf;

/// The DNS suffix of public Azure storage endpoints.
pub const DEFAULT_ENDPOINT_SUFFIX: &str = "core.windows.net";
/// Azurite's (and the old storage emulator's) well-known account.
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known account key (public, documented by Microsoft for the emulator).
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How requests to the storage account are authorized.
#[derive(Clone, Debug)]
pub enum StorageAuth {
    /// Shared Key: the account key (base64, as the portal shows it).
    SharedKey(Secret),
    /// A shared access signature: the query string without `?`.
    Sas(Secret),
    /// An OAuth2 bearer token for `https://storage.azure.com/`.
    Bearer(Secret),
}

impl StorageAuth {
    /// The secret inside, for redaction.
    pub fn secret(&self) -> &Secret {
        match self {
            StorageAuth::SharedKey(s) | StorageAuth::Sas(s) | StorageAuth::Bearer(s) => s,
        }
    }
}

/// A Blob service endpoint, the account, the credentials, and (from a SAS URL) the container
/// and blob it names.
#[derive(Clone, Debug)]
pub struct StorageTarget {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]`.
    pub authority: String,
    /// Path prefix of the endpoint (`/devstoreaccount1` for Azurite's path-style URLs, else "").
    pub base_path: String,
    /// Storage account name.
    pub account: String,
    /// Credentials.
    pub auth: StorageAuth,
    /// Container named by a SAS URL.
    pub container: Option<String>,
    /// Blob named by a SAS URL.
    pub blob: Option<String>,
}

/// Splits `scheme://authority/path?query` (no fragment handling: Azure URLs have none).
pub fn split_url(url: &str) -> Result<(String, String, String, Option<String>)> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        err!(
            InvalidArgument,
            "not a URL (no scheme://): {}",
            super::secret::mask_query(url)
        )
    })?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(err!(
            InvalidArgument,
            "URL scheme must be http or https, not {scheme:?}"
        ));
    }
    let (before_q, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q.to_string())),
        None => (rest, None),
    };
    let (authority, path) = match before_q.find('/') {
        Some(i) => (&before_q[..i], &before_q[i..]),
        None => (before_q, ""),
    };
    if authority.is_empty() {
        return Err(err!(InvalidArgument, "URL has no host"));
    }
    Ok((
        scheme,
        authority.to_string(),
        path.trim_end_matches('/').to_string(),
        query,
    ))
}

/// True for hosts addressed path-style (`http://127.0.0.1:10000/account/...`): IP literals and
/// `localhost`, as Azurite and the storage emulator are.
fn is_path_style(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok()
}

/// Percent-encodes everything but RFC 3986 unreserved characters (and `/` when `keep_slash`).
pub fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (and `+` as space when `plus_space`); bad escapes stay as they are.
pub fn percent_decode(s: &str, plus_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a storage connection string (`DefaultEndpointsProtocol`, `AccountName`, `AccountKey`,
/// `BlobEndpoint`, `EndpointSuffix`, `SharedAccessSignature`, `UseDevelopmentStorage=true`).
pub fn parse_connection_string(cs: &str) -> Result<StorageTarget> {
    let get = connection_string_parts(cs)?;
    let auth = match (get.get("accountkey"), get.get("sharedaccesssignature")) {
        (Some(k), _) => {
            decode_key(k)?;
            StorageAuth::SharedKey(Secret::new(k.clone()))
        }
        (None, Some(sas)) => StorageAuth::Sas(Secret::new(sas.trim_start_matches('?'))),
        (None, None) => {
            return Err(err!(
                InvalidArgument,
                "connection string has neither AccountKey nor SharedAccessSignature"
            ));
        }
    };
    let (scheme, authority, base_path, account) = blob_endpoint(&get)?;
    if account.is_empty() {
        return Err(err!(
            InvalidArgument,
            "connection string: empty AccountName"
        ));
    }
    Ok(StorageTarget {
        scheme,
        authority,
        base_path,
        account,
        auth,
        container: None,
        blob: None,
    })
}

/// The `Key=Value;...` parts by lower-case key, with Azurite's defaults filled in under
/// `UseDevelopmentStorage=true`.
fn connection_string_parts(cs: &str) -> Result<std::collections::HashMap<String, String>> {
    let mut get = std::collections::HashMap::new();
    for part in cs.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            err!(
                InvalidArgument,
                "connection string: a part has no '=' (expected Key=Value;...)"
            )
        })?;
        get.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    if get
        .get("usedevelopmentstorage")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        get.entry("accountname".into())
            .or_insert(DEV_ACCOUNT.into());
        get.entry("accountkey".into())
            .or_insert(DEV_ACCOUNT_KEY.into());
        get.entry("blobendpoint".into())
            .or_insert(format!("http://127.0.0.1:10000/{DEV_ACCOUNT}"));
    }
    Ok(get)
}

/// (scheme, authority, base path, account) of the blob service: from `BlobEndpoint`, or built
/// from `AccountName`, `DefaultEndpointsProtocol` and `EndpointSuffix`.
fn blob_endpoint(
    get: &std::collections::HashMap<String, String>,
) -> Result<(String, String, String, String)> {
    let account = get.get("accountname").cloned();
    Ok(match get.get("blobendpoint") {
        Some(ep) => {
            let (scheme, authority, path, _) = split_url(ep)?;
            let account = match account {
                Some(a) => a,
                None if is_path_style(&authority) => path.trim_start_matches('/').to_string(),
                None => authority.split('.').next().unwrap_or_default().to_string(),
            };
            (scheme, authority, path, account)
        }
        None => {
            let account = account.ok_or_else(|| {
                err!(
                    InvalidArgument,
                    "connection string has neither AccountName nor BlobEndpoint"
                )
            })?;
            let scheme = get
                .get("defaultendpointsprotocol")
                .map_or("https".to_string(), |s| s.to_ascii_lowercase());
            let suffix = get
                .get("endpointsuffix")
                .map_or(DEFAULT_ENDPOINT_SUFFIX, String::as_str);
            (
                scheme,
                format!("{account}.blob.{suffix}"),
                String::new(),
                account,
            )
        }
    })
}

/// Decodes a base64 account key; the error names the field, never the value.
pub fn decode_key(key: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .map_err(|_| err!(InvalidArgument, "AccountKey is not valid base64"))
}

/// Parses a container or blob SAS URL (`https://acct.blob.core.windows.net/c[/blob]?sv=..&sig=..`,
/// or Azurite's `http://127.0.0.1:N/acct/c[/blob]?...`).
pub fn parse_sas_url(url: &str) -> Result<StorageTarget> {
    let (scheme, authority, path, query) = split_url(url)?;
    let query = query.filter(|q| q.split('&').any(|kv| kv.starts_with("sig=")));
    let query = query.ok_or_else(|| {
        err!(
            InvalidArgument,
            "the SAS URL has no signature (no sig= in its query string)"
        )
    })?;
    let mut segs: Vec<&str> = path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (account, base_path) = if is_path_style(&authority) {
        if segs.is_empty() {
            return Err(err!(
                InvalidArgument,
                "SAS URL names no account in its path"
            ));
        }
        let a = segs.remove(0).to_string();
        (a.clone(), format!("/{a}"))
    } else {
        (
            authority.split('.').next().unwrap_or_default().to_string(),
            String::new(),
        )
    };
    let container = (!segs.is_empty()).then(|| percent_decode(segs.remove(0), false));
    let blob = (!segs.is_empty()).then(|| percent_decode(&segs.join("/"), false));
    Ok(StorageTarget {
        scheme,
        authority,
        base_path,
        account,
        auth: StorageAuth::Sas(Secret::new(query)),
        container,
        blob,
    })
}

impl StorageTarget {
    /// A target for an account URL (`https://acct.blob.core.windows.net`) with a bearer token.
    pub fn from_account_url(url: &str, auth: StorageAuth) -> Result<Self> {
        let (scheme, authority, path, _) = split_url(url)?;
        let account = if is_path_style(&authority) {
            path.trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string()
        } else {
            authority.split('.').next().unwrap_or_default().to_string()
        };
        if account.is_empty() {
            return Err(err!(
                InvalidArgument,
                "cannot tell the account from the URL {url}"
            ));
        }
        Ok(StorageTarget {
            scheme,
            authority,
            base_path: path,
            account,
            auth,
            container: None,
            blob: None,
        })
    }

    /// The encoded path of a container or blob: `/base/container[/blob]`.
    pub fn path(&self, container: &str, blob: Option<&str>) -> String {
        let mut p = format!("{}/{}", self.base_path, percent_encode(container, false));
        if let Some(b) = blob {
            p.push('/');
            p.push_str(&percent_encode(b, true));
        }
        p
    }

    /// The full URL of a container or blob with `query` (already encoded pairs), plus the SAS.
    pub fn url(&self, container: &str, blob: Option<&str>, query: &[(&str, &str)]) -> String {
        let mut q: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v, false)))
            .collect();
        if let StorageAuth::Sas(s) = &self.auth {
            q.push(s.expose().to_string());
        }
        let mut u = format!(
            "{}://{}{}",
            self.scheme,
            self.authority,
            self.path(container, blob)
        );
        if !q.is_empty() {
            u.push('?');
            u.push_str(&q.join("&"));
        }
        u
    }

    /// The blob's URL without credentials (for ARM's `blobUri`, messages and metadata).
    pub fn public_url(&self, container: &str, blob: &str) -> String {
        format!(
            "{}://{}{}",
            self.scheme,
            self.authority,
            self.path(container, Some(blob))
        )
    }
}

/// The `AZURE_*` variables Azure's SDKs and CLI read (names as they spell them).
#[derive(Clone, Debug, Default)]
pub struct AzureEnv {
    /// `AZURE_STORAGE_CONNECTION_STRING`.
    pub storage_connection_string: Option<Secret>,
    /// `AZURE_CLIENT_ID`.
    pub client_id: Option<String>,
    /// `AZURE_TENANT_ID`.
    pub tenant_id: Option<String>,
    /// `AZURE_CLIENT_SECRET`.
    pub client_secret: Option<Secret>,
    /// `AZURE_CLIENT_CERTIFICATE_PATH` (PKCS#12 `.pfx`, as Packer's `client_cert_path`).
    pub client_certificate_path: Option<PathBuf>,
    /// `AZURE_CLIENT_CERTIFICATE_PASSWORD`.
    pub client_certificate_password: Option<Secret>,
    /// `AZURE_SUBSCRIPTION_ID`.
    pub subscription_id: Option<String>,
    /// `AZURE_AUTHORITY_HOST` (default `https://login.microsoftonline.com`).
    pub authority_host: Option<String>,
}

impl AzureEnv {
    /// Reads the variables through `lookup` (the binary passes `std::env::var`; tests a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| lookup(k).filter(|v| !v.is_empty());
        AzureEnv {
            storage_connection_string: get("AZURE_STORAGE_CONNECTION_STRING").map(Secret::new),
            client_id: get("AZURE_CLIENT_ID"),
            tenant_id: get("AZURE_TENANT_ID"),
            client_secret: get("AZURE_CLIENT_SECRET").map(Secret::new),
            client_certificate_path: get("AZURE_CLIENT_CERTIFICATE_PATH").map(PathBuf::from),
            client_certificate_password: get("AZURE_CLIENT_CERTIFICATE_PASSWORD").map(Secret::new),
            subscription_id: get("AZURE_SUBSCRIPTION_ID"),
            authority_host: get("AZURE_AUTHORITY_HOST"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azurite_connection_string() {
        let cs = format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
        );
        let t = parse_connection_string(&cs).unwrap();
        assert_eq!(t.scheme, "http");
        assert_eq!(t.authority, "127.0.0.1:10000");
        assert_eq!(t.base_path, "/devstoreaccount1");
        assert_eq!(t.account, "devstoreaccount1");
        assert_eq!(
            t.url("c", Some("d i/s k.vhd"), &[("comp", "page")]),
            "http://127.0.0.1:10000/devstoreaccount1/c/d%20i/s%20k.vhd?comp=page"
        );
        assert!(format!("{t:?}").contains("Secret(***)"));
        assert!(!format!("{t:?}").contains("Eby8"));
    }

    #[test]
    fn public_cloud_connection_string() {
        let t = parse_connection_string(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.chinacloudapi.cn",
        )
        .unwrap();
        assert_eq!(t.authority, "acct.blob.core.chinacloudapi.cn");
        assert_eq!(t.base_path, "");
        assert_eq!(
            t.url("c", None, &[]),
            "https://acct.blob.core.chinacloudapi.cn/c"
        );
    }

    #[test]
    fn connection_string_errors_never_quote_the_key() {
        let e = parse_connection_string("AccountName=a;AccountKey=not*base64!").unwrap_err();
        assert!(e.to_string().contains("AccountKey"), "{e}");
        assert!(!e.to_string().contains("not*base64"), "{e}");
        assert!(parse_connection_string("AccountName=a").is_err());
        assert!(parse_connection_string("garbage").is_err());
    }

    #[test]
    fn sas_urls() {
        let t = parse_sas_url(
            "https://acct.blob.core.windows.net/vhds/disk.vhd?sv=2021-08-06&sr=b&sp=rcw&sig=AbC%2F",
        )
        .unwrap();
        assert_eq!(t.account, "acct");
        assert_eq!(t.container.as_deref(), Some("vhds"));
        assert_eq!(t.blob.as_deref(), Some("disk.vhd"));
        assert_eq!(
            t.url("vhds", Some("disk.vhd"), &[("comp", "page")]),
            "https://acct.blob.core.windows.net/vhds/disk.vhd?comp=page&sv=2021-08-06&sr=b&sp=rcw&sig=AbC%2F"
        );
        let t = parse_sas_url("http://127.0.0.1:4444/devstoreaccount1/c?sv=1&sig=x").unwrap();
        assert_eq!(
            (t.account.as_str(), t.base_path.as_str()),
            ("devstoreaccount1", "/devstoreaccount1")
        );
        assert_eq!(t.container.as_deref(), Some("c"));
        assert_eq!(t.blob, None);
        let e = parse_sas_url("https://a.blob.core.windows.net/c?sv=1").unwrap_err();
        assert!(e.to_string().contains("sig="), "{e}");
    }

    #[test]
    fn percent_coding() {
        assert_eq!(percent_encode("a b/c+d", true), "a%20b/c%2Bd");
        assert_eq!(percent_decode("a%20b%2fc+d%", false), "a b/c+d%");
        assert_eq!(percent_decode("a+b", true), "a b");
    }

    #[test]
    fn env_lookup() {
        let e = AzureEnv::from_lookup(|k| match k {
            "AZURE_CLIENT_ID" => Some("cid".into()),
            "AZURE_CLIENT_SECRET" => Some("s3cret".into()),
            "AZURE_TENANT_ID" => Some(String::new()),
            _ => None,
        });
        assert_eq!(e.client_id.as_deref(), Some("cid"));
        assert_eq!(e.client_secret.as_ref().map(Secret::expose), Some("s3cret"));
        assert_eq!(e.tenant_id, None);
        assert!(!format!("{e:?}").contains("s3cret"));
    }
}
