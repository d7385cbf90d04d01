//! Helpers of the Azure tests: Azurite started on 127.0.0.1 and a free port with a temporary
//! location (stopped on drop), sparse test disks, and the library's blob client.
#![allow(dead_code)]

use isotool::azure::credentials::{DEV_ACCOUNT, DEV_ACCOUNT_KEY, parse_connection_string};
use isotool::azure::http::{Http, HttpConfig};
use isotool::azure::pageblob::BlobClient;
use isotool::azure::secret::Redactor;
use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod golden;

pub const MIB: u64 = 1 << 20;

/// Azurite's blob service, running until dropped.
pub struct Azurite {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Azurite {
    /// Starts `azurite-blob` from `tests/azurite/node_modules` (installed by `.ci/install-deps`
    /// with `npm ci`); the test fails when it is missing.
    pub fn start() -> Azurite {
        Self::start_with(&[])
    }

    /// Same, with more arguments (`--debug FILE`, `--oauth basic --cert C --key K`).
    pub fn start_with(extra: &[&str]) -> Azurite {
        let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/azurite/node_modules/.bin/azurite-blob");
        assert!(
            bin.exists(),
            "Azurite is required: run `npm ci` in tests/azurite (.ci/install-deps does): {} missing",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(&bin)
            .args([
                "--location",
                dir.path().to_str().unwrap(),
                "--blobHost",
                "127.0.0.1",
            ])
            .args([
                "--blobPort",
                &port.to_string(),
                "--skipApiVersionCheck",
                "--silent",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting azurite-blob");
        let mut a = Azurite {
            child,
            port,
            _dir: dir,
        };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = a.child.try_wait() {
                panic!("azurite-blob exited early: {st}");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(180),
                "azurite-blob did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        a
    }

    /// The connection string of the well-known dev account at this instance.
    pub fn connection_string(&self) -> String {
        self.connection_string_with_key(DEV_ACCOUNT_KEY)
    }

    pub fn connection_string_with_key(&self, key: &str) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={key};BlobEndpoint=http://127.0.0.1:{}/{DEV_ACCOUNT};",
            self.port
        )
    }

    /// A client for `container/blob` (shared key).
    pub fn client(&self, container: &str, blob: &str) -> BlobClient {
        let t = parse_connection_string(&self.connection_string()).unwrap();
        let http = Http::new(HttpConfig::default(), Redactor::default()).unwrap();
        BlobClient::new(http, t, container, blob)
    }

    /// An account SAS (version 2019-02-02) for the blob service with `perms`.
    pub fn account_sas(&self, perms: &str) -> String {
        use base64::Engine;
        let sv = "2019-02-02";
        let se = "2099-01-01T00:00:00Z";
        let sts = format!("{DEV_ACCOUNT}\n{perms}\nb\nsco\n\n{se}\n\nhttps,http\n{sv}\n");
        let key = base64::engine::general_purpose::STANDARD
            .decode(DEV_ACCOUNT_KEY)
            .unwrap();
        let sig = isotool::azure::sharedkey::hmac_sha256_b64(&key, &sts);
        let sig = isotool::azure::credentials::percent_encode(&sig, false);
        format!("sv={sv}&ss=b&srt=sco&sp={perms}&se={se}&spr=https,http&sig={sig}")
    }

    /// Acquires an infinite lease on a blob (Lease Blob, Shared Key); returns the lease id.
    pub fn acquire_lease(&self, container: &str, blob: &str) -> String {
        use isotool::azure::http::Request;
        use isotool::azure::sharedkey::{authorization, http_date};
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut headers: Vec<(String, String)> = [
            ("x-ms-date", http_date(now)),
            ("x-ms-version", isotool::azure::pageblob::API_VERSION.into()),
            ("x-ms-lease-action", "acquire".into()),
            ("x-ms-lease-duration", "-1".into()),
            ("Content-Length", "0".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let path = format!("/{DEV_ACCOUNT}/{container}/{blob}");
        let auth = authorization(
            DEV_ACCOUNT,
            DEV_ACCOUNT_KEY,
            "PUT",
            &path,
            "comp=lease",
            &headers,
        )
        .unwrap();
        headers.push(("Authorization".into(), auth));
        let http = Http::new(HttpConfig::default(), Redactor::default()).unwrap();
        let r = http
            .send_once(&Request {
                method: "PUT",
                url: format!("{}/{container}/{blob}?comp=lease", self.base_url()),
                headers,
                body: &[],
            })
            .unwrap();
        assert_eq!(
            r.status,
            201,
            "Lease Blob: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.header("x-ms-lease-id").unwrap().to_string()
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/{DEV_ACCOUNT}", self.port)
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), never a zero 512-byte page.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A sparse raw disk of `size` bytes with pattern data at `runs` (offset, len); returns the runs.
pub fn sparse_raw(path: &Path, size: u64, runs: &[(u64, u64)]) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    for (i, &(off, len)) in runs.iter().enumerate() {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(8 * MIB);
            f.write_all_at(
                &pattern(i as u64 * 1000 + done / MIB, n as usize),
                off + done,
            )
            .unwrap();
            done += n;
        }
    }
    f.sync_all().unwrap();
}

/// The isotool binary.
pub fn isotool() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_isotool"));
    c.env("SOURCE_DATE_EPOCH", "1700000000");
    c.env_remove("AZURE_STORAGE_CONNECTION_STRING");
    c
}

/// Runs isotool, returning (success, stdout, stderr).
pub fn run(c: &mut Command) -> (bool, String, String) {
    let o = c.output().expect("running isotool");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// MD5 (hex) of `len` bytes of a file from its start.
pub fn file_md5(path: &Path, len: u64) -> String {
    use md5::Digest;
    let mut f = std::fs::File::open(path).unwrap().take(len);
    let mut h = md5::Md5::new();
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    isotool::checksum::hex(&h.finalize())
}

/// Runs qemu-img (the oracle; the test fails when it is missing).
pub fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("qemu-img is required for this oracle test (apt-get install qemu-utils): {e}")
        });
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn tmp_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
