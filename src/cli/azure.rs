//! `isotool azure upload | image create` and `isotool launch azure`: argument parsing, credentials from the
//! command line and the `AZURE_*` environment, progress and rendering. Secrets are read from
//! the environment or files, never echoed.

use super::{Outcome, human_bytes, outln, print_json};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use isotool::azure::arm::{self, ArmClient, Generation, ImageSpec, VmSpec};
use isotool::azure::auth::{self, CertCredential, ClientCredential, ServicePrincipal};
use isotool::azure::credentials::{self, AzureEnv, StorageAuth, StorageTarget};
use isotool::azure::http::{Http, HttpConfig};
use isotool::azure::pageblob::BlobClient;
use isotool::azure::secret::{Redactor, Secret};
use isotool::azure::upload::{self, UploadOptions, UploadProgress, Verify};
use isotool::context::BuildContext;
use isotool::disk::ImageKind;
use isotool::err;
use isotool::error::Result;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Subcommand)]
pub(crate) enum AzureCommand {
    /// Upload a raw, VHD or VHDX disk to a page blob as an Azure fixed VHD (sparse, parallel,
    /// resumable, MD5 set at the end).
    Upload(UploadArgs),
    /// Managed images.
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Create a managed image from an uploaded VHD blob.
    Create(ImageCreateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct HttpArgs {
    /// PEM file of CA certificates to trust instead of the built-in roots (private clouds,
    /// TLS-inspecting proxies, test servers).
    #[arg(long, value_name = "PEM", env = "ISOTOOL_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Attempts per request (retries with back-off on 5xx, 408, 429 and timeouts).
    #[arg(long, default_value_t = 6)]
    attempts: u32,
}

impl HttpArgs {
    fn http(&self, redactor: Redactor) -> Result<Http> {
        let mut cfg = HttpConfig {
            attempts: self.attempts.max(1),
            ..HttpConfig::default()
        };
        if let Some(p) = &self.ca_cert {
            cfg = cfg.with_ca_file(p)?;
        }
        Http::new(cfg, redactor)
    }
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  isotool azure upload disk.vhdx --container images --connection-string \"$CS\"
  isotool azure upload disk.raw --sas-url \"$CONTAINER_SAS_URL\" --blob web-1.0.vhd --json
  isotool azure upload disk.vhdx --container images --dry-run   # with $AZURE_STORAGE_CONNECTION_STRING

Exit status: 0 uploaded (or, with --dry-run, read), 1 error (a rerun resumes an interrupted
upload), 2 bad command line, 130 interrupted.")]
pub(crate) struct UploadArgs {
    /// The disk (raw, VHD or VHDX, recognised from its content).
    disk: PathBuf,
    /// Container (created when missing, unless --no-create-container). Optional with a SAS URL
    /// that names it.
    #[arg(long)]
    container: Option<String>,
    /// Blob name (default: the disk's file name with a .vhd extension).
    #[arg(long)]
    blob: Option<String>,
    /// Storage connection string (default: $AZURE_STORAGE_CONNECTION_STRING). Its BlobEndpoint
    /// is honoured (Azurite, sovereign clouds).
    #[arg(long, conflicts_with = "sas_url", hide_env_values = true)]
    connection_string: Option<String>,
    /// A container or blob SAS URL (e.g. a managed disk's grant-access URL).
    #[arg(long)]
    sas_url: Option<String>,
    /// Account URL (https://ACCOUNT.blob.core.windows.net) to use with a service principal's
    /// token (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_CLIENT_SECRET or
    /// AZURE_CLIENT_CERTIFICATE_PATH).
    #[arg(long, conflicts_with_all = ["sas_url", "connection_string"])]
    account_url: Option<String>,
    /// Authority host for the service principal.
    #[arg(long, env = "AZURE_AUTHORITY_HOST", default_value = auth::DEFAULT_AUTHORITY)]
    authority: String,
    /// Parallel connections.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    parallel: u16,
    /// Replace a finished blob or a blob of another source.
    #[arg(long)]
    overwrite: bool,
    /// Fail when the container does not exist instead of creating it.
    #[arg(long)]
    no_create_container: bool,
    /// Download the finished blob and check its MD5 (always | resumed: only when pages of an
    /// earlier run were reused | never).
    #[arg(long, value_enum, default_value_t = VerifyArg::Resumed)]
    verify: VerifyArg,
    /// Apply a VHDX's pending log in memory while reading (the input is not modified).
    #[arg(long)]
    replay_log: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Read the disk and print what would be sent (blob URL with the SAS signature masked, size
    /// of the fixed VHD, bytes of data and of zeros skipped, Put Page calls, digests); no
    /// request at all (a new blob is assumed: resuming needs the blob's page list).
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    http: HttpArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum VerifyArg {
    Always,
    Resumed,
    Never,
}

fn env() -> AzureEnv {
    AzureEnv::from_lookup(|k| std::env::var(k).ok())
}

/// The service principal from flags and `AZURE_*` variables (secrets from the environment only).
fn service_principal(
    tenant: Option<String>,
    client_id: Option<String>,
    cert: Option<PathBuf>,
    authority: &str,
) -> Result<ServicePrincipal> {
    let e = env();
    let tenant_id = tenant.or(e.tenant_id).ok_or_else(|| {
        err!(
            InvalidArgument,
            "no tenant: pass --tenant or set AZURE_TENANT_ID"
        )
    })?;
    let client_id = client_id.or(e.client_id).ok_or_else(|| {
        err!(
            InvalidArgument,
            "no client id: pass --client-id or set AZURE_CLIENT_ID"
        )
    })?;
    let credential = match (cert.or(e.client_certificate_path), e.client_secret) {
        (Some(p), _) => ClientCredential::Certificate(CertCredential::from_pkcs12_file(
            &p,
            e.client_certificate_password.as_ref(),
        )?),
        (None, Some(s)) => ClientCredential::Secret(s),
        (None, None) => {
            return Err(err!(
                InvalidArgument,
                "no service-principal credential: pass --client-cert (or AZURE_CLIENT_CERTIFICATE_PATH) or set AZURE_CLIENT_SECRET"
            ));
        }
    };
    Ok(ServicePrincipal {
        tenant_id,
        client_id,
        credential,
        authority: authority.to_string(),
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn storage_target(a: &UploadArgs) -> Result<StorageTarget> {
    if let Some(cs) = &a.connection_string {
        return credentials::parse_connection_string(cs);
    }
    if let Some(u) = &a.sas_url {
        return credentials::parse_sas_url(u);
    }
    if let Some(u) = &a.account_url {
        if a.dry_run {
            return StorageTarget::from_account_url(u, StorageAuth::Bearer(Secret::new("dry-run")));
        }
        let sp = service_principal(None, None, None, &a.authority)?;
        let red = Redactor::default();
        let http = a.http.http(red)?;
        let tok = sp.token(&http, auth::STORAGE_SCOPE, now(), &auth::new_jti())?;
        return StorageTarget::from_account_url(u, StorageAuth::Bearer(tok.access_token));
    }
    match env().storage_connection_string {
        Some(cs) => credentials::parse_connection_string(cs.expose()),
        None => Err(err!(
            InvalidArgument,
            "no storage credentials: pass --connection-string, --sas-url or --account-url, or set AZURE_STORAGE_CONNECTION_STRING"
        )),
    }
}

/// The upload's progress bar: stream position, bytes sent and skipped, rate, ETA.
struct UploadBar {
    pb: ProgressBar,
    sent: AtomicU64,
    skipped: AtomicU64,
}

impl UploadBar {
    fn new(hidden: bool) -> Self {
        let target = if hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let pb = ProgressBar::with_draw_target(None, target);
        pb.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        UploadBar {
            pb,
            sent: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    fn message(&self) {
        self.pb.set_message(format!(
            "sent {} skipped {}",
            human_bytes(self.sent.load(Ordering::Relaxed)),
            human_bytes(self.skipped.load(Ordering::Relaxed))
        ));
    }
}

impl UploadProgress for UploadBar {
    fn start(&self, total: u64) {
        self.pb.set_length(total);
    }
    fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
        self.pb.inc(n);
        self.message();
    }
    fn skipped(&self, n: u64, _present: bool) {
        self.skipped.fetch_add(n, Ordering::Relaxed);
        self.pb.inc(n);
        self.message();
    }
    fn note(&self, msg: &str) {
        if !self.pb.is_hidden() {
            self.pb.suspend(|| eprintln!("note: {msg}"));
        }
    }
    fn phase(&self, name: &str) {
        self.pb.set_message(name.to_string());
    }
    fn finish(&self) {
        self.pb.finish_and_clear();
    }
}

pub(crate) fn azure(c: AzureCommand, quiet: bool) -> Result<Outcome> {
    match c {
        AzureCommand::Upload(a) => upload_cmd(a, quiet),
        AzureCommand::Image(ImageCommand::Create(a)) => image_create(a),
    }
}

fn upload_cmd(a: UploadArgs, quiet: bool) -> Result<Outcome> {
    super::refuse_dash(&a.disk, "the disk")?;
    let ctx = BuildContext::from_env()?;
    let target = storage_target(&a)?;
    let container = a
        .container
        .clone()
        .or(target.container.clone())
        .ok_or_else(|| {
            err!(
                InvalidArgument,
                "no container: pass --container (or a SAS URL that names one)"
            )
        })?;
    let blob = match a.blob.clone().or(target.blob.clone()) {
        Some(b) => b,
        None => {
            let stem = a
                .disk
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "disk".into());
            format!("{stem}.vhd")
        }
    };
    isotool::azure::pageblob::check_container_name(&container)?;
    let redactor = Redactor::new([target.auth.secret().clone()]);
    let shown_url = redactor.redact(&isotool::azure::secret::mask_query(&target.url(
        &container,
        Some(&blob),
        &[],
    )));
    let http = a.http.http(redactor)?;
    let client = BlobClient::new(http, target, &container, &blob);
    let src = isotool::image::open_image(
        &a.disk,
        &isotool::disk::OpenOptions {
            replay_log: a.replay_log,
        },
    )?;
    let format = src.info().format;
    let bar = UploadBar::new(quiet || a.json);
    if a.dry_run {
        let r =
            upload::plan(src.as_ref(), &shown_url, &ctx, &bar).map_err(|e| e.with_path(&a.disk))?;
        return render_upload(&a, format, (&container, &blob), &r);
    }
    let meta = std::fs::metadata(&a.disk).ok();
    let id =
        upload::source_identity(src.as_ref(), meta.as_ref()).map_err(|e| e.with_path(&a.disk))?;
    let opts = UploadOptions {
        parallel: a.parallel as usize,
        overwrite: a.overwrite,
        create_container: !a.no_create_container,
        verify: match a.verify {
            VerifyArg::Always => Verify::Always,
            VerifyArg::Resumed => Verify::Resumed,
            VerifyArg::Never => Verify::Never,
        },
    };
    let r = upload::upload(src.as_ref(), &id, &client, &opts, &ctx, &bar)
        .map_err(|e| e.with_path(&a.disk))?;
    render_upload(&a, format, (&container, &blob), &r)
}

/// `isotool azure upload --json` (docs/json.md, `isotool/azure-upload/1`): the disk, its format
/// in `info`'s vocabulary, the container and blob, then the report's fields in their order. No
/// secret: the URL is the blob's without any query.
#[derive(Serialize)]
struct UploadJson<'a> {
    schema: &'static str,
    disk: String,
    input_format: &'static str,
    container: &'a str,
    blob: &'a str,
    #[serde(flatten)]
    report: &'a upload::UploadReport,
}

fn render_upload(
    a: &UploadArgs,
    format: ImageKind,
    (container, blob): (&str, &str),
    r: &upload::UploadReport,
) -> Result<Outcome> {
    if a.json {
        print_json(&UploadJson {
            schema: "isotool/azure-upload/1",
            disk: a.disk.display().to_string(),
            input_format: format.as_str(),
            container,
            blob,
            report: r,
        })?;
    } else if r.dry_run {
        outln!("dry run: nothing sent to {}", r.blob_url);
        outln!(
            "  fixed VHD of {} bytes (virtual size {} = {} MiB, then the 512-byte footer)",
            r.blob_size,
            r.virtual_size,
            r.virtual_size >> 20
        );
        outln!(
            "  would send {} ({} bytes) in {} Put Page calls; zeros skipped {} ({} bytes)",
            human_bytes(r.sent_bytes),
            r.sent_bytes,
            r.put_pages,
            human_bytes(r.zero_bytes),
            r.zero_bytes
        );
        outln!("  md5 {} (Content-MD5 {})", r.md5, r.md5_base64);
        outln!("  sha256 {}", r.sha256);
    } else {
        outln!("uploaded {} to {}", a.disk.display(), r.blob_url);
        outln!(
            "  sent {} in {} Put Page calls; already there {}; zeros skipped {}{}",
            human_bytes(r.sent_bytes),
            r.put_pages,
            human_bytes(r.present_bytes),
            human_bytes(r.zero_bytes),
            if r.verified {
                "; stored blob verified"
            } else {
                ""
            }
        );
        outln!("  md5 {} (Content-MD5 {})", r.md5, r.md5_base64);
        outln!("  sha256 {}", r.sha256);
    }
    Ok(Outcome::Ok)
}

#[derive(Debug, Args)]
pub(crate) struct ArmArgs {
    /// Subscription id.
    #[arg(long, env = "AZURE_SUBSCRIPTION_ID")]
    subscription: Option<String>,
    /// Tenant id (default $AZURE_TENANT_ID).
    #[arg(long)]
    tenant: Option<String>,
    /// Service principal's client id (default $AZURE_CLIENT_ID).
    #[arg(long)]
    client_id: Option<String>,
    /// Client certificate, PKCS#12 (default $AZURE_CLIENT_CERTIFICATE_PATH; password in
    /// $AZURE_CLIENT_CERTIFICATE_PASSWORD). Without it, $AZURE_CLIENT_SECRET is used.
    #[arg(long, value_name = "PFX")]
    client_cert: Option<PathBuf>,
    /// Authority host (sovereign clouds, Azure Stack).
    #[arg(long, env = "AZURE_AUTHORITY_HOST", default_value = auth::DEFAULT_AUTHORITY)]
    authority: String,
    /// Resource Manager endpoint.
    #[arg(long, env = "ISOTOOL_ARM_ENDPOINT", default_value = arm::DEFAULT_ENDPOINT)]
    arm_endpoint: String,
    /// Print every request (method, URL, body; secrets masked) and send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the result as JSON (with --dry-run: the requests that would be sent, masked).
    #[arg(long)]
    json: bool,
    /// Seconds between polls of a long-running operation when Azure gives no Retry-After.
    #[arg(long, default_value_t = 5)]
    poll_seconds: u64,
    #[command(flatten)]
    http: HttpArgs,
}

impl ArmArgs {
    fn client(&self) -> Result<ArmClient> {
        let sub = self.subscription.clone().ok_or_else(|| {
            err!(
                InvalidArgument,
                "no subscription: pass --subscription or set AZURE_SUBSCRIPTION_ID"
            )
        })?;
        let sp = service_principal(
            self.tenant.clone(),
            self.client_id.clone(),
            self.client_cert.clone(),
            &self.authority,
        )?;
        let mut red = Redactor::default();
        if let ClientCredential::Secret(s) = &sp.credential {
            red.add(s);
        }
        let jti = auth::new_jti();
        let token = if self.dry_run {
            Secret::new("dry-run")
        } else {
            let http = self.http.http(red.clone())?;
            sp.token(&http, auth::ARM_SCOPE, now(), &jti)?.access_token
        };
        red.add(&token);
        let http = self.http.http(red)?;
        let mut c = ArmClient::new(http, &self.arm_endpoint, &sub, token, self.dry_run);
        c.poll_interval = std::time::Duration::from_secs(self.poll_seconds);
        let body = sp.token_request_body(auth::ARM_SCOPE, now(), &jti)?;
        c.record("POST", &sp.token_endpoint(), &body);
        Ok(c)
    }
}

/// `isotool azure image create --json` (`isotool/azure-image-create/1`).
#[derive(Serialize)]
struct ImageCreateJson<'a> {
    schema: &'static str,
    dry_run: bool,
    image_id: &'a str,
    generation: Generation,
    /// The VHD blob's URL, any query masked.
    blob_url: &'a str,
    /// Requests made (or, dry run, to make), secrets masked.
    requests: Vec<arm::LoggedRequest>,
}

/// `isotool launch azure --json` (`isotool/launch-azure/1`).
#[derive(Serialize)]
struct LaunchAzureJson<'a> {
    schema: &'static str,
    dry_run: bool,
    vm_id: &'a str,
    public_ip: Option<&'a str>,
    size: &'a str,
    image_id: &'a str,
    admin_username: &'a str,
    ssh_source: &'a str,
    /// Bytes of custom data (its content is never printed: it may carry secrets).
    custom_data_bytes: usize,
    requests: Vec<arm::LoggedRequest>,
}

fn print_requests(c: &ArmClient) {
    for r in c.requests() {
        outln!("{} {}", r.method, r.url);
        if !r.body.is_empty() {
            outln!("{}", r.body);
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GenArg {
    V1,
    V2,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  isotool azure image create --blob-url https://ACCOUNT.blob.core.windows.net/images/disk.vhd \\
      --name web-1.0 --resource-group RG --location westeurope --generation V2
  isotool azure image create --blob-url URL --name N --resource-group RG --location L \\
      --generation V1 --dry-run --json   # the requests, secrets masked

Exit status: 0 created (or printed with --dry-run), 1 error, 2 bad command line.")]
pub(crate) struct ImageCreateArgs {
    /// URL of the uploaded VHD blob (no SAS).
    #[arg(long)]
    blob_url: String,
    /// Image name.
    #[arg(long)]
    name: String,
    /// Resource group.
    #[arg(long)]
    resource_group: String,
    /// Region (e.g. westeurope).
    #[arg(long)]
    location: String,
    /// Hyper-V generation: V1 (BIOS) or V2 (UEFI).
    #[arg(long, value_enum, ignore_case = true)]
    generation: GenArg,
    /// OS type of the disk.
    #[arg(long, default_value = "Linux")]
    os_type: String,
    #[command(flatten)]
    arm: ArmArgs,
}

fn image_create(a: ImageCreateArgs) -> Result<Outcome> {
    if a.blob_url.contains('?') {
        // ARM reads the blob with the subscription's own access; a SAS in blobUri would be
        // sent to ARM and stored in the image's properties.
        return Err(err!(
            InvalidArgument,
            "--blob-url {}: pass the blob's URL without a query (no SAS): the image is made \
             from a storage account of the same subscription",
            isotool::azure::secret::mask_query(&a.blob_url)
        ));
    }
    let c = a.arm.client()?;
    let spec = ImageSpec {
        resource_group: a.resource_group,
        name: a.name,
        location: a.location,
        blob_url: a.blob_url.clone(),
        generation: match a.generation {
            GenArg::V1 => Generation::V1,
            GenArg::V2 => Generation::V2,
        },
        os_type: a.os_type,
    };
    let r = arm::create_image(&c, &spec);
    if a.arm.dry_run && !a.arm.json {
        print_requests(&c);
    }
    let id = r?;
    if a.arm.json {
        print_json(&ImageCreateJson {
            schema: "isotool/azure-image-create/1",
            dry_run: a.arm.dry_run,
            image_id: &id,
            generation: spec.generation,
            blob_url: &spec.blob_url,
            requests: c.requests(),
        })?;
    } else if !a.arm.dry_run {
        outln!("image {id}");
    }
    Ok(Outcome::Ok)
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  isotool launch azure --name web --image web-1.0 --resource-group RG --location westeurope \\
      --ssh-public-key ~/.ssh/id_ed25519.pub --config config/ --ssh-source 203.0.113.7/32
  isotool launch azure --name web --image web-1.0 --resource-group RG --location westeurope \\
      --ssh-public-key id.pub --custom-data custom-data.txt --dry-run   # the requests, masked

Exit status: 0 the VM runs (or the requests were printed with --dry-run), 1 error, 2 bad
command line.")]
pub(crate) struct LaunchArgs {
    /// VM name (network resources are NAME-vnet, NAME-ip, NAME-nsg and NAME-nic).
    #[arg(long)]
    name: String,
    /// Image: a resource id, or a name in the resource group.
    #[arg(long)]
    image: String,
    /// Resource group.
    #[arg(long)]
    resource_group: String,
    /// Region.
    #[arg(long)]
    location: String,
    /// VM size.
    #[arg(long, default_value = arm::DEFAULT_VM_SIZE)]
    size: String,
    /// Admin user name.
    #[arg(long, default_value = "azureuser")]
    admin_username: String,
    /// OpenSSH public key file for the admin user.
    #[arg(long)]
    ssh_public_key: PathBuf,
    /// Source addresses (CIDR, or `*` for any: the default, as `az vm create`'s default
    /// `default-allow-ssh` rule; a note says so) allowed to reach SSH on the public IP.
    #[arg(long, default_value = "*")]
    ssh_source: String,
    /// Config tree whose Azure custom data (as `cloud-init-seed --azure --from DIR` builds it,
    /// after the same validation) is passed.
    #[arg(
        long,
        conflicts_with = "custom_data",
        required_unless_present = "custom_data"
    )]
    config: Option<PathBuf>,
    /// With --config: consul role (found from the tree when not given).
    #[arg(long, value_parser = super::provisioning::parse_role, requires = "config")]
    role: Option<isotool::provisioning::Role>,
    /// A custom-data file (e.g. written by `cloud-init-seed --azure`).
    #[arg(long)]
    custom_data: Option<PathBuf>,
    #[command(flatten)]
    arm: ArmArgs,
}

/// Reads an OpenSSH public key file (`TYPE BASE64 [COMMENT]` on one line). Anything else is
/// refused before any request, without echoing the content: a private key given by mistake
/// (`--ssh-public-key ~/.ssh/id_ed25519`) would otherwise be printed by `--dry-run` and sent to
/// Azure inside the VM's request body.
fn read_ssh_public_key(path: &std::path::Path) -> Result<String> {
    use isotool::error::IoContext;
    use std::io::Read;
    const MAX: u64 = 16 << 10;
    const TYPES: [&str; 7] = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    let what = "reading the SSH public key";
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX + 1).read_to_end(&mut bytes))
        .ctx(path, what)?;
    let refuse = |why: &str| {
        Err(err!(
            InvalidArgument,
            "--ssh-public-key: {why}; pass the public key file (one line `ssh-ed25519 AAAA... \
             comment`, e.g. ~/.ssh/id_ed25519.pub)"
        )
        .with_path(path))
    };
    let text = String::from_utf8_lossy(&bytes);
    if text.contains("PRIVATE KEY") {
        return refuse("this is a private key (it is never sent or printed)");
    }
    if bytes.len() as u64 > MAX {
        return refuse(&format!("larger than {MAX} bytes: not a public key"));
    }
    let line = text.trim();
    let mut words = line.split_ascii_whitespace();
    let (kind, body) = (words.next(), words.next());
    let base64 = |b: &str| {
        b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
    };
    match (kind, body) {
        (Some(k), Some(b)) if TYPES.contains(&k) && base64(b) && !line.contains('\n') => {
            Ok(line.to_string())
        }
        _ => refuse("not an OpenSSH public key"),
    }
}

/// The `--custom-data` file, read no further than Azure's limit (AZURE_MAX_CUSTOM_DATA bytes,
/// decoded), which a larger file is refused by.
fn read_custom_data(f: &std::path::Path) -> Result<String> {
    let max = isotool::cloudinit::azure::AZURE_MAX_CUSTOM_DATA;
    let buf = isotool::limits::read_limited(f, max, "AZURE_MAX_CUSTOM_DATA", "the custom data")?;
    String::from_utf8(buf).map_err(|e| {
        err!(
            InvalidArgument,
            "the custom data is not UTF-8 text (byte {})",
            e.utf8_error().valid_up_to()
        )
        .with_path(f)
    })
}

/// `isotool launch azure`.
pub(crate) fn launch(a: LaunchArgs, quiet: bool) -> Result<Outcome> {
    let custom_data = match (&a.config, &a.custom_data) {
        (Some(dir), _) => {
            let (tree, _) = super::provisioning::checked_tree(dir, a.role, &[], quiet)?;
            isotool::cloudinit::azure::azure_custom_data(&tree)?
        }
        (None, Some(f)) => read_custom_data(f)?,
        (None, None) => {
            return Err(err!(
                InvalidArgument,
                "pass --config DIR or --custom-data FILE"
            ));
        }
    };
    let key = read_ssh_public_key(&a.ssh_public_key)?;
    let c = a.arm.client()?;
    let image_id = if a.image.starts_with("/subscriptions/") {
        a.image.clone()
    } else {
        c.resource_id(&a.resource_group, "Microsoft.Compute/images", &a.image)
    };
    let spec = VmSpec {
        resource_group: a.resource_group,
        name: a.name,
        location: a.location,
        image_id,
        size: a.size,
        admin_username: a.admin_username,
        ssh_public_key: key,
        custom_data,
        ssh_source: a.ssh_source,
    };
    if spec.ssh_source == "*" && !quiet && !a.arm.json {
        eprintln!(
            "note: SSH (port 22) on the public IP is open to any address, as `az vm create` \
             opens it; pass --ssh-source ADDRESS/32 to allow only yours"
        );
    }
    let r = arm::launch_vm(&c, &spec);
    if a.arm.dry_run && !a.arm.json {
        print_requests(&c);
    }
    let vm = r?;
    if a.arm.json {
        print_json(&LaunchAzureJson {
            schema: "isotool/launch-azure/1",
            dry_run: a.arm.dry_run,
            vm_id: &vm.vm_id,
            public_ip: vm.public_ip.as_deref(),
            size: &spec.size,
            image_id: &spec.image_id,
            admin_username: &spec.admin_username,
            ssh_source: &spec.ssh_source,
            custom_data_bytes: spec.custom_data.len(),
            requests: c.requests(),
        })?;
    } else if !a.arm.dry_run {
        outln!("vm {} running", vm.vm_id);
        if let Some(ip) = &vm.public_ip {
            outln!("  public ip {ip} (ssh {}@{ip})", spec.admin_username);
        }
    }
    Ok(Outcome::Ok)
}
