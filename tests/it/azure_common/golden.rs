//! A loopback HTTPS server (rustls, rcgen self-signed certificate) that checks each request
//! against recorded golden exchanges and answers as Azure documents it.

use serde_json::Value;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// One form-encoded body, as (name, value) pairs.
pub type Form = Vec<(String, String)>;

/// The server; `base` is `https://127.0.0.1:PORT`, `ca_pem` its certificate.
pub struct GoldenServer {
    pub base: String,
    pub ca_pem: String,
    left: Arc<Mutex<VecDeque<Value>>>,
    pub mismatches: Arc<Mutex<Vec<String>>>,
    /// Token request forms as received (for JWT checks).
    pub forms: Arc<Mutex<Vec<Form>>>,
}

fn form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                isotool::azure::credentials::percent_decode(v, true),
            )
        })
        .collect()
}

impl GoldenServer {
    /// Serves the exchanges of `tests/azure_golden/NAME.json` in order.
    pub fn start(name: &str) -> GoldenServer {
        Self::start_with(name, &[])
    }

    /// Same, with `{{KEY}}` placeholders of the golden file replaced by values.
    pub fn start_with(name: &str, values: &[(&str, &str)]) -> GoldenServer {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/azure_golden")
            .join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("https://127.0.0.1:{}", l.local_addr().unwrap().port());
        let mut text = text.replace("{{BASE}}", &base);
        for (k, v) in values {
            text = text.replace(&format!("{{{{{k}}}}}"), v);
        }
        let v: Value = serde_json::from_str(&text).unwrap();
        let left = Arc::new(Mutex::new(
            v["exchanges"]
                .as_array()
                .unwrap()
                .iter()
                .cloned()
                .collect::<VecDeque<_>>(),
        ));
        let ck = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ])
        .unwrap();
        let ca_pem = ck.cert.pem();
        let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
        let cfg = Arc::new(cfg);
        let s = GoldenServer {
            base,
            ca_pem,
            left: left.clone(),
            mismatches: Arc::new(Mutex::new(Vec::new())),
            forms: Arc::new(Mutex::new(Vec::new())),
        };
        let (mm, forms) = (s.mismatches.clone(), s.forms.clone());
        std::thread::spawn(move || {
            for sock in l.incoming().flatten() {
                let (cfg, left, mm, forms) = (cfg.clone(), left.clone(), mm.clone(), forms.clone());
                std::thread::spawn(move || {
                    let conn = rustls::ServerConnection::new(cfg).unwrap();
                    let tls = rustls::StreamOwned::new(conn, sock);
                    let mut r = BufReader::new(tls);
                    while let Some((method, target, headers, body)) = read_request(&mut r) {
                        let resp = answer(&left, &mm, &forms, &method, &target, &headers, &body);
                        if r.get_mut().write_all(&resp).is_err() {
                            return;
                        }
                        let _ = r.get_mut().flush();
                    }
                });
            }
        });
        s
    }

    /// Exchanges not yet consumed.
    pub fn remaining(&self) -> usize {
        self.left.lock().unwrap().len()
    }

    pub fn assert_all_matched(&self) {
        let mm = self.mismatches.lock().unwrap();
        assert!(
            mm.is_empty(),
            "requests differing from the golden ones:\n{}",
            mm.join("\n")
        );
        assert_eq!(self.remaining(), 0, "golden exchanges not consumed");
    }
}

type Req = (String, String, Vec<(String, String)>, Vec<u8>);

fn read_request<R: Read>(r: &mut BufReader<R>) -> Option<Req> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let n: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; n];
    r.read_exact(&mut body).ok()?;
    Some((method, target, headers, body))
}

fn answer(
    left: &Mutex<VecDeque<Value>>,
    mm: &Mutex<Vec<String>>,
    forms: &Mutex<Vec<Vec<(String, String)>>>,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Vec<u8> {
    let Some(x) = left.lock().unwrap().pop_front() else {
        mm.lock()
            .unwrap()
            .push(format!("unexpected extra request {method} {target}"));
        return b"HTTP/1.1 500 Unexpected\r\nContent-Length: 0\r\n\r\n".to_vec();
    };
    let mut bad = Vec::new();
    if x["method"] != method || x["path"] != target {
        bad.push(format!(
            "expected {} {}, got {method} {target}",
            x["method"], x["path"]
        ));
    }
    let text = String::from_utf8_lossy(body);
    if let Some(want) = x.get("form") {
        let got = form(&text);
        forms.lock().unwrap().push(got.clone());
        for (k, v) in want.as_object().unwrap() {
            if !got
                .iter()
                .any(|(gk, gv)| gk == k && gv == v.as_str().unwrap())
            {
                bad.push(format!("form field {k}: expected {v}, got {got:?}"));
            }
        }
    } else if let Some(want) = x.get("body") {
        let got: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if &got != want {
            bad.push(format!(
                "body of {method} {target}:\n  expected {want}\n  got      {got}"
            ));
        }
    } else if !body.is_empty() {
        bad.push(format!("unexpected body on {method} {target}: {text}"));
    }
    if let Some(auth) = x.get("authorization") {
        let got = headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.as_str());
        if got != auth.as_str() {
            bad.push(format!(
                "{method} {target}: Authorization {got:?}, expected {auth}"
            ));
        }
    }
    if !bad.is_empty() {
        mm.lock().unwrap().extend(bad);
        return b"HTTP/1.1 400 Mismatch\r\nContent-Length: 0\r\n\r\n".to_vec();
    }
    let status = x["status"].as_u64().unwrap();
    let rbody = x.get("response").map(|v| v.to_string()).unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        rbody.len()
    );
    if let Some(h) = x.get("headers").and_then(Value::as_object) {
        for (k, v) in h {
            out.push_str(&format!("{k}: {}\r\n", v.as_str().unwrap()));
        }
    }
    out.push_str("\r\n");
    out.push_str(&rbody);
    out.into_bytes()
}
