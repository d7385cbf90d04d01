//! One HTTP(S) transport for storage, ARM and the token endpoint: a pooled agent, explicit
//! trust roots (`--ca-cert` for private clouds, proxies and loopback tests), and retries with
//! back-off on 5xx, 408, 429 and network errors, honouring `Retry-After`.

use super::secret::Redactor;
use crate::err;
use crate::error::Result;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How the transport behaves.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Timeout of one request (connect, send and receive).
    pub timeout: Duration,
    /// Attempts per request (1 = no retry).
    pub attempts: u32,
    /// First back-off delay; doubles each retry, capped at `max_backoff`.
    pub backoff: Duration,
    /// Largest back-off delay (and largest `Retry-After` honoured).
    pub max_backoff: Duration,
    /// PEM certificates to trust instead of the built-in web roots.
    pub ca_pem: Option<Vec<u8>>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            timeout: Duration::from_secs(120),
            attempts: 6,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            ca_pem: None,
        }
    }
}

impl HttpConfig {
    /// Trusts the certificates of a PEM file instead of the built-in roots.
    pub fn with_ca_file(mut self, path: &Path) -> Result<Self> {
        self.ca_pem = Some(crate::limits::read_limited(
            path,
            crate::limits::MAX_PEM_BYTES,
            "MAX_PEM_BYTES",
            "the CA certificate file",
        )?);
        Ok(self)
    }
}

/// A request to send. The body is borrowed: page data is never copied.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// `GET`, `PUT`, `POST`, `HEAD`, `DELETE`.
    pub method: &'static str,
    /// Full URL (may hold a SAS: never print it without masking).
    pub url: String,
    /// Headers as sent.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: &'a [u8],
}

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers (names lower-cased).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True for 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Seconds of a `Retry-After` header given in seconds.
    pub fn retry_after(&self) -> Option<Duration> {
        self.header("retry-after")?
            .trim()
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
    }
}

/// True for statuses worth retrying: 408, 429 and 5xx.
pub fn retryable(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// The back-off before retry number `attempt` (0-based): `base * 2^attempt`, capped, or the
/// server's `Retry-After` when it gave one (capped too).
pub fn backoff_delay(cfg: &HttpConfig, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exp = cfg
        .backoff
        .saturating_mul(1u32 << attempt.min(16))
        .min(cfg.max_backoff);
    retry_after.map_or(exp, |r| r.min(cfg.max_backoff))
}

/// The transport.
#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
    cfg: HttpConfig,
    redactor: Arc<Redactor>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http").field("cfg", &self.cfg).finish()
    }
}

impl Http {
    /// A transport; `redactor` masks secrets in any error it builds.
    pub fn new(cfg: HttpConfig, redactor: Redactor) -> Result<Self> {
        use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
        let mut tls = TlsConfig::builder();
        if let Some(pem) = &cfg.ca_pem {
            let mut certs: Vec<Certificate<'static>> = Vec::new();
            for item in ureq::tls::parse_pem(pem) {
                if let Ok(PemItem::Certificate(c)) = item {
                    certs.push(c);
                }
            }
            if certs.is_empty() {
                return Err(err!(
                    InvalidArgument,
                    "the CA file holds no PEM certificate"
                ));
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(cfg.timeout))
            .max_idle_connections_per_host(64)
            .user_agent(concat!("isotool/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build()
            .into();
        Ok(Http {
            agent,
            cfg,
            redactor: Arc::new(redactor),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &HttpConfig {
        &self.cfg
    }

    /// The redactor for secrets of this transport.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Sends one request, no retry. `Err` only for network failures (message redacted).
    pub fn send_once(&self, req: &Request<'_>) -> Result<Response> {
        let mut b = ureq::http::Request::builder()
            .method(req.method)
            .uri(&req.url);
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        let r = b.body(req.body).map_err(|e| {
            err!(
                InvalidArgument,
                "building a request: {}",
                self.redactor.redact(&e.to_string())
            )
        })?;
        let mut resp = self.agent.run(r).map_err(|e| {
            err!(
                Network,
                "{} {}: {}",
                req.method,
                self.redactor.redact(&req.url),
                self.redactor.redact(&e.to_string())
            )
        })?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let body = if req.method == "HEAD" {
            Vec::new()
        } else {
            resp.body_mut()
                .with_config()
                .limit(crate::limits::MAX_HTTP_BODY)
                .read_to_vec()
                .map_err(|e| match e {
                    ureq::Error::BodyExceedsLimit(n) => err!(
                        LimitExceeded,
                        "a response body is over MAX_HTTP_BODY ({n} bytes): refused"
                    ),
                    e => err!(
                        Network,
                        "reading a response: {}",
                        self.redactor.redact(&e.to_string())
                    ),
                })?
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Sends a request built by `make` (called again for each attempt, so signatures and dates
    /// are fresh), retrying 5xx, 408, 429 and network errors with back-off. Returns the last
    /// response, whatever its status; `Err` when the network failed on every attempt.
    pub fn send<'a>(&self, make: &dyn Fn() -> Result<Request<'a>>) -> Result<Response> {
        let mut attempt = 0;
        loop {
            let req = make()?;
            let last = attempt + 1 >= self.cfg.attempts;
            match self.send_once(&req) {
                Ok(r) if !retryable(r.status) || last => return Ok(r),
                Ok(r) => std::thread::sleep(backoff_delay(&self.cfg, attempt, r.retry_after())),
                Err(e) if last => return Err(e),
                Err(_) => std::thread::sleep(backoff_delay(&self.cfg, attempt, None)),
            }
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_policy() {
        for s in [408, 429, 500, 503, 599] {
            assert!(retryable(s), "{s}");
        }
        for s in [200, 201, 400, 401, 403, 404, 409, 412] {
            assert!(!retryable(s), "{s}");
        }
        let cfg = HttpConfig::default();
        assert_eq!(backoff_delay(&cfg, 0, None), Duration::from_millis(500));
        assert_eq!(backoff_delay(&cfg, 3, None), Duration::from_secs(4));
        assert_eq!(backoff_delay(&cfg, 30, None), Duration::from_secs(30));
        assert_eq!(
            backoff_delay(&cfg, 0, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            backoff_delay(&cfg, 0, Some(Duration::from_secs(700))),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn bad_ca_file_is_an_error() {
        let cfg = HttpConfig {
            ca_pem: Some(b"not a pem".to_vec()),
            ..HttpConfig::default()
        };
        assert!(Http::new(cfg, Redactor::default()).is_err());
    }

    /// A local server that answers 503 twice then 200: `send` retries and returns the 200;
    /// a 404 is returned at once.
    #[test]
    fn retries_until_success_and_not_on_4xx() {
        use std::io::{BufRead, BufReader, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let mut seen = 0;
            for (i, st) in ["503 Busy", "503 Busy", "200 OK", "404 Nope"]
                .iter()
                .enumerate()
            {
                let (s, _) = l.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).unwrap() > 2 {
                    line.clear();
                }
                let mut s = s;
                write!(
                    s,
                    "HTTP/1.1 {st}\r\nContent-Length: 1\r\nConnection: close\r\n\r\n{i}"
                )
                .unwrap();
                seen += 1;
            }
            seen
        });
        let cfg = HttpConfig {
            backoff: Duration::from_millis(5),
            ..HttpConfig::default()
        };
        let h = Http::new(cfg, Redactor::default()).unwrap();
        let url = format!("http://127.0.0.1:{port}/x");
        let mk = || {
            Ok(Request {
                method: "GET",
                url: url.clone(),
                headers: vec![],
                body: &[],
            })
        };
        let r = h.send(&mk).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, b"2".as_slice()));
        let r = h.send(&mk).unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(t.join().unwrap(), 4);
    }
}
