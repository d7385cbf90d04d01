//! What the first-boot service reads, checked before a VM ever boots.

use super::{ConfigTree, Report, pem};
use base64::Engine as _;

/// Which consul agent the VM runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A consul client.
    Client,
    /// A consul server.
    Server,
}

impl std::str::FromStr for Role {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "client" => Ok(Role::Client),
            "server" => Ok(Role::Server),
            _ => Err(crate::err!(
                InvalidArgument,
                "role must be client or server, not {s:?}"
            )),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Client => "client",
            Role::Server => "server",
        })
    }
}

/// Root file whose absence makes the first-boot service do nothing.
pub const RUN_PROVISIONING: &str = "run_provisioning.json";
/// Root file whose absence blocks SSH.
pub const ALLOW_SSH: &str = "allow_ssh.json";
/// Consul datacenter and domain.
pub const CONSUL_REGION: &str = "consul/consul_region.json";
/// Consul gossip key.
pub const CONSUL_SECRETS: &str = "consul/consul_secrets.json";
/// Consul Connect settings (optional).
pub const CONSUL_CONNECT: &str = "consul/consul_connect.json";
/// Certificate private key.
pub const CERT_KEY: &str = "consul/certs/consul_cert.key";
/// Certificate.
pub const CERT_CRT: &str = "consul/certs/consul_cert.crt";
/// CA bundle.
pub const CERT_BUNDLE: &str = "consul/certs/consul_cert_bundle.crt";
/// Client location.
pub const CLIENT_LOCATION: &str = "consul/client/consul_client_location.json";
/// Server bootstrap.
pub const SERVER_BOOTSTRAP: &str = "consul/server/consul_server_bootstrap.json";
/// Server location.
pub const SERVER_LOCATION: &str = "consul/server/consul_server_location.json";
/// Unbound zones.
pub const UNBOUND_ZONES: &str = "unbound/unbound_zones.conf";

/// Parses a JSON file of the tree; findings for absence (when required) and syntax errors.
fn load_json(
    tree: &ConfigTree,
    rel: &str,
    required: bool,
    report: &mut Report,
) -> Option<serde_json::Value> {
    if !tree.has_file(rel) {
        if required {
            report.error(rel, None, "required file is missing");
        }
        return None;
    }
    let bytes = match tree.read(rel) {
        Ok(b) => b,
        Err(e) => {
            report.error(rel, None, format!("cannot be read: {}", e.message()));
            return None;
        }
    };
    // bounded (size, depth) before parsing; syntax errors carry positions, not content
    match crate::limits::parse_json(&bytes, "") {
        Ok(v) => Some(v),
        Err(e) => {
            report.error(rel, None, e.message().trim_start());
            None
        }
    }
}

fn require_keys(v: &serde_json::Value, rel: &str, keys: &[&str], report: &mut Report) {
    let Some(obj) = v.as_object() else {
        report.error(rel, None, "must be a JSON object");
        return;
    };
    for k in keys {
        match obj.get(*k) {
            None | Some(serde_json::Value::Null) => {
                report.error(rel, Some(k), "required key is missing")
            }
            Some(serde_json::Value::String(s)) if s.trim().is_empty() => {
                report.error(rel, Some(k), "required key is empty")
            }
            Some(_) => {}
        }
    }
}

fn check_gossip_key(v: &serde_json::Value, report: &mut Report) {
    let Some(obj) = v.as_object() else {
        report.error(CONSUL_SECRETS, None, "must be a JSON object");
        return;
    };
    match obj.get("encrypt") {
        None | Some(serde_json::Value::Null) => {
            report.error(CONSUL_SECRETS, Some("encrypt"), "required key is missing")
        }
        Some(serde_json::Value::String(s)) => {
            match base64::engine::general_purpose::STANDARD.decode(s.trim()) {
                Ok(k) if k.len() == 16 || k.len() == 32 => {}
                Ok(k) => report.error(
                    CONSUL_SECRETS,
                    Some("encrypt"),
                    format!(
                        "bad gossip key: it decodes to {} bytes; consul needs 16 or 32",
                        k.len()
                    ),
                ),
                Err(_) => report.error(
                    CONSUL_SECRETS,
                    Some("encrypt"),
                    "bad gossip key: it is not valid base64",
                ),
            }
        }
        Some(_) => report.error(
            CONSUL_SECRETS,
            Some("encrypt"),
            "bad gossip key: it must be a base64 string",
        ),
    }
}

fn check_certs(tree: &ConfigTree, report: &mut Report) {
    let files = [CERT_KEY, CERT_CRT, CERT_BUNDLE];
    let present: Vec<bool> = files.iter().map(|f| tree.has_file(f)).collect();
    if !present.iter().any(|p| *p) {
        return;
    }
    for (f, p) in files.iter().zip(&present) {
        if !p {
            let why = match *f {
                CERT_KEY => {
                    "missing: a certificate without its key (the certificate files go together: all three or none)"
                }
                CERT_CRT => {
                    "missing: a key without its certificate (the certificate files go together: all three or none)"
                }
                _ => {
                    "missing: the CA bundle (the certificate files go together: all three or none)"
                }
            };
            report.error(f, None, why);
        }
    }
    let read = |rel: &str, report: &mut Report| match tree.read(rel) {
        Ok(b) => Some(b),
        Err(e) => {
            report.error(rel, None, format!("cannot be read: {}", e.message()));
            None
        }
    };
    let cert = if present[1] {
        read(CERT_CRT, report).and_then(|b| match pem::parse_certificate(&b) {
            Ok(c) => Some(c),
            Err(m) => {
                report.error(CERT_CRT, None, m);
                None
            }
        })
    } else {
        None
    };
    let key = if present[0] {
        read(CERT_KEY, report).and_then(|b| match pem::parse_private_key(&b) {
            Ok(k) => Some(k),
            Err(m) => {
                report.error(CERT_KEY, None, m);
                None
            }
        })
    } else {
        None
    };
    if present[2]
        && let Some(b) = read(CERT_BUNDLE, report)
        && let Err(m) = pem::parse_bundle(&b)
    {
        report.error(CERT_BUNDLE, None, m);
    }
    if let (Some(c), Some(k)) = (&cert, &key)
        && let Err(m) = pem::key_matches(c, k)
    {
        report.error(CERT_KEY, None, format!("key does not match: {m}"));
    }
}

/// Checks `tree` against the layout of the first-boot service; returns the role used (given,
/// or found from `consul/client/` / `consul/server/`), `None` when it cannot be told.
pub fn validate(tree: &ConfigTree, role: Option<Role>, report: &mut Report) -> Option<Role> {
    if !tree.has_file(RUN_PROVISIONING) {
        report.warn(
            RUN_PROVISIONING,
            None,
            "absent: the first-boot service will do nothing",
        );
    }
    if !tree.has_file(ALLOW_SSH) {
        report.warn(ALLOW_SSH, None, "absent: SSH will be blocked on the VM");
    }
    if let Some(v) = load_json(tree, CONSUL_REGION, true, report) {
        require_keys(&v, CONSUL_REGION, &["datacenter", "domain"], report);
    }
    if let Some(v) = load_json(tree, CONSUL_SECRETS, true, report) {
        check_gossip_key(&v, report);
    }
    check_certs(tree, report);
    let role = match role {
        Some(r) => Some(r),
        None => match (tree.has_dir("consul/client"), tree.has_dir("consul/server")) {
            (true, false) => Some(Role::Client),
            (false, true) => Some(Role::Server),
            (true, true) => {
                report.error(
                    "consul",
                    None,
                    "both consul/client/ and consul/server/ exist: give --role client or --role server",
                );
                None
            }
            (false, false) => {
                report.error(
                    "consul",
                    None,
                    "neither consul/client/ nor consul/server/ exists: cannot tell the role; give --role",
                );
                None
            }
        },
    };
    match role {
        Some(Role::Client) => {
            load_json(tree, CLIENT_LOCATION, true, report);
        }
        Some(Role::Server) => {
            load_json(tree, SERVER_BOOTSTRAP, true, report);
            load_json(tree, SERVER_LOCATION, true, report);
        }
        None => {}
    }
    match tree.get(UNBOUND_ZONES) {
        None => report.error(UNBOUND_ZONES, None, "required file is missing"),
        Some(e) if e.size == 0 => report.warn(UNBOUND_ZONES, None, "is empty"),
        Some(_) => {}
    }
    // Every other JSON file of the tree must parse too.
    let mut loaded = vec![CONSUL_REGION, CONSUL_SECRETS];
    match role {
        Some(Role::Client) => loaded.push(CLIENT_LOCATION),
        Some(Role::Server) => loaded.extend([SERVER_BOOTSTRAP, SERVER_LOCATION]),
        None => {}
    }
    let others: Vec<String> = tree
        .files()
        .filter(|e| e.rel.to_ascii_lowercase().ends_with(".json"))
        .filter(|e| !loaded.contains(&e.rel.as_str()))
        .map(|e| e.rel.clone())
        .collect();
    for rel in others {
        load_json(tree, &rel, false, report);
    }
    role
}
