//! Broken config trees: each gets its named message (file and key), every error is reported at
//! once, secrets never appear, and no output (nor temp file) is left behind.

use crate::prov_fixture::*;
use std::path::Path;

type Mutation = fn(&Path);

struct Case {
    name: &'static str,
    mutate: Mutation,
    role: Option<&'static str>,
    expect: &'static [&'static str],
}

fn rm(root: &Path, rel: &str) {
    std::fs::remove_file(root.join(rel)).unwrap();
}

const CASES: &[Case] = &[
    Case {
        name: "missing region",
        mutate: |r| rm(r, "consul/consul_region.json"),
        role: None,
        expect: &["consul/consul_region.json: required file is missing"],
    },
    Case {
        name: "missing secrets",
        mutate: |r| rm(r, "consul/consul_secrets.json"),
        role: None,
        expect: &["consul/consul_secrets.json: required file is missing"],
    },
    Case {
        name: "missing unbound zones",
        mutate: |r| rm(r, "unbound/unbound_zones.conf"),
        role: None,
        expect: &["unbound/unbound_zones.conf: required file is missing"],
    },
    Case {
        name: "missing client location",
        mutate: |r| rm(r, "consul/client/consul_client_location.json"),
        role: Some("client"),
        expect: &["consul/client/consul_client_location.json: required file is missing"],
    },
    Case {
        name: "server role without server files",
        mutate: |_| {},
        role: Some("server"),
        expect: &[
            "consul/server/consul_server_bootstrap.json: required file is missing",
            "consul/server/consul_server_location.json: required file is missing",
        ],
    },
    Case {
        name: "bad JSON",
        mutate: |r| {
            write(
                r,
                "consul/consul_region.json",
                b"{\"datacenter\": \"dc1\",,}",
            )
        },
        role: None,
        expect: &[
            "consul/consul_region.json: is not valid JSON",
            "line 1, column",
        ],
    },
    Case {
        name: "bad JSON in a resource file",
        mutate: |r| write(r, "resource/app/settings.json", b"[1, 2"),
        role: None,
        expect: &["resource/app/settings.json: is not valid JSON"],
    },
    Case {
        name: "missing key",
        mutate: |r| write(r, "consul/consul_region.json", b"{\"datacenter\": \"dc1\"}"),
        role: None,
        expect: &["consul/consul_region.json: key `domain`: required key is missing"],
    },
    Case {
        name: "missing gossip key",
        mutate: |r| write(r, "consul/consul_secrets.json", b"{}"),
        role: None,
        expect: &["consul/consul_secrets.json: key `encrypt`: required key is missing"],
    },
    Case {
        name: "gossip key of 11 bytes",
        mutate: |r| {
            write(
                r,
                "consul/consul_secrets.json",
                b"{\"encrypt\": \"dG9vLXNob3J0ISE=\"}",
            )
        },
        role: None,
        expect: &[
            "consul/consul_secrets.json: key `encrypt`: bad gossip key: it decodes to 11 bytes",
        ],
    },
    Case {
        name: "gossip key not base64",
        mutate: |r| {
            write(
                r,
                "consul/consul_secrets.json",
                b"{\"encrypt\": \"n0t base64 %%%\"}",
            )
        },
        role: None,
        expect: &[
            "consul/consul_secrets.json: key `encrypt`: bad gossip key: it is not valid base64",
        ],
    },
    Case {
        name: "certificate without key",
        mutate: |r| {
            add_certs(r, &ec_certs());
            rm(r, "consul/certs/consul_cert.key");
        },
        role: None,
        expect: &["consul/certs/consul_cert.key: missing: a certificate without its key"],
    },
    Case {
        name: "key not matching",
        mutate: |r| {
            let a = ec_certs();
            let b = ec_certs();
            add_certs(r, &a);
            write(r, "consul/certs/consul_cert.key", b.key_pem.as_bytes());
        },
        role: None,
        expect: &["consul/certs/consul_cert.key: key does not match"],
    },
    Case {
        name: "RSA key with EC certificate",
        mutate: |r| {
            add_certs(r, &ec_certs());
            write(
                r,
                "consul/certs/consul_cert.key",
                rsa_certs().key_pem.as_bytes(),
            );
        },
        role: None,
        expect: &["consul/certs/consul_cert.key: key does not match: the key is RSA"],
    },
    Case {
        name: "certificate that is not PEM",
        mutate: |r| {
            add_certs(r, &ec_certs());
            write(r, "consul/certs/consul_cert.crt", b"not a certificate\n");
        },
        role: None,
        expect: &["consul/certs/consul_cert.crt: holds no PEM block"],
    },
    Case {
        name: "escaping symlink",
        mutate: |r| {
            std::os::unix::fs::symlink("/etc/passwd", r.join("resource_passwd")).unwrap();
        },
        role: None,
        expect: &["resource_passwd: symlink to /etc/passwd leaves the tree; refused"],
    },
    Case {
        name: "escaping relative symlink",
        mutate: |r| {
            std::fs::create_dir_all(r.join("res")).unwrap();
            std::os::unix::fs::symlink("../../outside.txt", r.join("res/link")).unwrap();
        },
        role: None,
        expect: &["res/link: symlink to ../../outside.txt leaves the tree; refused"],
    },
    Case {
        name: "name too long for the media",
        mutate: |r| write(r, &format!("resource/{}", "n".repeat(120)), b"x"),
        role: None,
        expect: &["the name is 120 bytes long; at most 100 fit on the media"],
    },
    Case {
        name: "fifo",
        mutate: |r| {
            let p = std::ffi::CString::new(r.join("pipe").to_str().unwrap()).unwrap();
            // SAFETY: valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o644) }, 0);
        },
        role: None,
        expect: &["pipe: is a fifo; refused"],
    },
    Case {
        name: "both roles",
        mutate: |r| write(r, "consul/server/consul_server_location.json", b"{}"),
        role: None,
        expect: &["both consul/client/ and consul/server/ exist: give --role"],
    },
    Case {
        name: "every problem at once",
        mutate: |r| {
            rm(r, "consul/consul_region.json");
            write(
                r,
                "consul/consul_secrets.json",
                b"{\"encrypt\": \"dG9vLXNob3J0ISE=\"}",
            );
            rm(r, "unbound/unbound_zones.conf");
        },
        role: None,
        expect: &[
            "3 error(s)",
            "consul/consul_region.json: required file is missing",
            "consul/consul_secrets.json: key `encrypt`: bad gossip key",
            "unbound/unbound_zones.conf: required file is missing",
        ],
    },
];

#[test]
fn broken_trees_get_named_messages_and_no_output() {
    let mut failures = Vec::new();
    for case in CASES {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("a/config");
        valid_tree(&tree);
        std::fs::write(dir.path().join("a/outside.txt"), b"outside").unwrap();
        (case.mutate)(&tree);
        let outdir = dir.path().join("out");
        std::fs::create_dir(&outdir).unwrap();
        let out = outdir.join("provision.iso");
        let mut args = vec![
            "provisioning-cd",
            "--from",
            tree.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        if let Some(r) = case.role {
            args.extend(["--role", r]);
        }
        let o = run(&args);
        let err = stderr(&o);
        if o.status.success() {
            failures.push(format!("{}: succeeded", case.name));
            continue;
        }
        for e in case.expect {
            if !err.contains(e) {
                failures.push(format!("{}: expected {e:?} in:\n{err}", case.name));
            }
        }
        if !err.contains("[invalid-config]") {
            failures.push(format!(
                "{}: not an invalid-config error:\n{err}",
                case.name
            ));
        }
        for secret in [GOSSIP_KEY, "dG9vLXNob3J0ISE=", "n0t base64", "PRIVATE KEY"] {
            if err.contains(secret) {
                failures.push(format!("{}: a secret value reached stderr", case.name));
            }
        }
        if !names_in(&outdir).is_empty() {
            failures.push(format!(
                "{}: left {:?} behind",
                case.name,
                names_in(&outdir)
            ));
        }
        // The Azure custom data and NoCloud seed refuse the same tree.
        let cd = outdir.join("custom-data.txt");
        let o = run(&[
            "cloud-init-seed",
            "--from",
            tree.to_str().unwrap(),
            "--azure",
            "-o",
            cd.to_str().unwrap(),
        ]);
        let role_given = case.role.is_some();
        if o.status.success() && !role_given {
            failures.push(format!("{}: cloud-init-seed --azure succeeded", case.name));
        }
        if !o.status.success() && !names_in(&outdir).is_empty() {
            failures.push(format!("{}: custom data left behind", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn matching_certificates_are_accepted() {
    let ec = ec_certs();
    let rsa = rsa_certs();
    let sec1 = Certs {
        key_pem: to_sec1(&ec.key_pem),
        cert_pem: ec.cert_pem.clone(),
        bundle_pem: format!("{}{}", ec.bundle_pem, ec.cert_pem),
    };
    for (name, c) in [("ec pkcs8", &ec), ("ec sec1", &sec1), ("rsa pkcs1", &rsa)] {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("config");
        valid_tree(&tree);
        add_certs(&tree, c);
        let out = dir.path().join("p.iso");
        let o = run(&[
            "provisioning-cd",
            "--from",
            tree.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert!(out.exists());
    }
}

#[test]
fn absent_optional_files_are_warnings_naming_the_consequence() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("config");
    valid_tree(&tree);
    rm(&tree, "run_provisioning.json");
    rm(&tree, "allow_ssh.json");
    let out = dir.path().join("p.iso");
    let o = run(&[
        "provisioning-cd",
        "--from",
        tree.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "warning: run_provisioning.json: absent: the first-boot service will do nothing"
        ),
        "{err}"
    );
    assert!(
        err.contains("warning: allow_ssh.json: absent: SSH will be blocked"),
        "{err}"
    );
}

#[test]
fn role_is_found_from_the_tree_or_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("config");
    valid_tree(&tree);
    std::fs::remove_dir_all(tree.join("consul/client")).unwrap();
    let out = dir.path().join("p.iso");
    let args = [
        "provisioning-cd",
        "--from",
        tree.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    let o = run(&args);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot tell the role"),
        "{}",
        stderr(&o)
    );
    write(
        &tree,
        "consul/server/consul_server_bootstrap.json",
        b"{\"expect\": 3}",
    );
    write(&tree, "consul/server/consul_server_location.json", b"{}");
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    // the result line is on stdout (diagnostics on stderr)
    assert!(stdout(&o).contains("role server"), "{}", stdout(&o));
}
