//! The `isotool` command line: argument parsing and rendering only; the work is in the library.

mod azure;
mod build;
mod disk;
mod iso;
mod json;
mod launch;
mod meta;
mod pack;
mod progress;
mod provisioning;
mod remaster;

use clap::{Parser, Subcommand, ValueEnum};
use isotool::error::Error;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

/// `println!` that ends the process quietly with status 0 when stdout is a closed pipe
/// (`isotool iso ls X.iso | head -1`), as coreutils do, instead of panicking.
macro_rules! outln {
    ($($t:tt)*) => {
        $crate::cli::stdout_write(format_args!("{}\n", format_args!($($t)*)))
    };
}
pub(crate) use outln;

/// Writes to stdout; a closed pipe ends the process with status 0, another error with 1.
pub(crate) fn stdout_write(args: std::fmt::Arguments<'_>) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_fmt(args) {
        stdout_failed(&e);
    }
}

/// How a failed write to stdout ends the process: quietly (0) for a closed pipe.
pub(crate) fn stdout_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("isotool: error: writing to stdout: {e}");
    std::process::exit(1);
}

/// Build installer ISOs, provisioning media, cloud-init seeds and VHD/VHDX disks.
#[derive(Debug, Parser)]
#[command(
    name = "isotool",
    version,
    about,
    propagate_version = true,
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Only results and errors: no progress, notes or summaries.
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail on stderr (every file edited or added, every phase).
    #[arg(long, short, global = true)]
    pub verbose: bool,
    /// Progress on stderr: auto (bars on a terminal, nothing otherwise), plain (a line every few
    /// seconds, for CI logs; `--progress` alone means plain), none.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "MODE",
        default_value_t = ProgressMode::Auto,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "plain"
    )]
    pub progress: ProgressMode,
    /// Do not flush outputs to stable storage before renaming them into place (faster; a power
    /// loss soon after may leave an incomplete file, as with qemu-img's or genisoimage's defaults).
    #[arg(long, global = true)]
    pub no_sync: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Convert a disk image between raw, VHD, VHDX, qcow2 and VMDK (input format probed from content).
    Convert(disk::ConvertArgs),
    /// Disk images: create.
    #[command(subcommand)]
    Disk(disk::DiskCommand),
    /// Describe a disk image: format, sizes, creator, parent chain, partitions.
    Info(disk::InfoArgs),
    /// Check a disk image against a target platform (azure, hyperv-gen1, hyperv-gen2).
    Validate(disk::ValidateArgs),
    /// Package a disk for a provider: OVA, GCP image tar.gz, Vagrant box (libvirt, VirtualBox).
    Pack(pack::PackArgs),
    // ISO commands
    /// Inspect ISO 9660 images: ls, extract, info.
    #[command(subcommand)]
    Iso(iso::IsoCommand),
    /// Make a stock installer ISO unattended (preseed / kickstart), keeping its boot records.
    Remaster(remaster::RemasterArgs),
    // provisioning and cloud-init commands
    /// Build the provisioning DVD (Rock Ridge + Joliet) from a checked config tree.
    ProvisioningCd(provisioning::ProvisioningCdArgs),
    /// Build a NoCloud seed (cidata ISO or FAT), or Azure custom data from a config tree.
    CloudInitSeed(provisioning::CloudInitSeedArgs),
    /// Boot the artifacts (qemu here; PowerShell for Hyper-V) and wait for the guest to power off.
    #[command(subcommand)]
    Launch(launch::LaunchCommand),
    /// Run a build file: remaster, media, install in a VM, convert per provider, SHA256SUMS.
    Build(build::BuildArgs),
    /// Azure: upload a disk as a page blob, create an image (VMs: `launch azure`).
    #[command(subcommand)]
    Azure(azure::AzureCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(meta::CompletionsArgs),
    /// Print the man page (roff) on stdout, or write one page per command into a directory.
    Man(meta::ManArgs),
}

/// How progress is shown (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// Bars when stderr is a terminal, nothing otherwise.
    Auto,
    /// Plain lines every few seconds, terminal or not (CI logs).
    Plain,
    /// Nothing.
    None,
}

/// What every command gets from the global options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ui {
    /// `-q`: no progress, notes or summaries.
    pub quiet: bool,
    /// `-v`: more detail.
    pub verbose: bool,
    /// `--progress`.
    pub progress: ProgressMode,
    /// Outputs are synced before their rename (not `--no-sync`).
    pub sync: bool,
}

impl Ui {
    /// The progress mode, `None` when quiet.
    pub fn progress(&self) -> ProgressMode {
        if self.quiet {
            ProgressMode::None
        } else {
            self.progress
        }
    }

    /// The same, with progress hidden when `hide` (e.g. `--json` without an explicit mode).
    pub fn hiding_bars(self, hide: bool) -> Ui {
        Ui {
            progress: match self.progress {
                ProgressMode::Auto if hide => ProgressMode::None,
                p => p,
            },
            ..self
        }
    }

    /// A summary line (what was written) on stdout, unless quiet.
    pub fn summary(&self, args: std::fmt::Arguments<'_>) {
        if !self.quiet {
            stdout_write(format_args!("{args}\n"));
        }
    }

    /// A detail on stderr, only with `-v`.
    pub fn detail(&self, args: std::fmt::Arguments<'_>) {
        if self.verbose {
            eprintln!("{args}");
        }
    }
}

/// The exit codes every command shares (shown in `--help`).
pub(crate) const EXIT_CODES: &str = "\
Exit status:
  0    success (also when stdout is a closed pipe)
  1    error (the message names the file, structure, field and offset)
  2    bad command line
  3    validate: something blocks the target
  130  interrupted (SIGINT; 128 + signal for SIGTERM, SIGHUP): temporary outputs removed";

/// An input that must be an existing file (not a directory): a missing or unreadable path is an
/// error naming it, before anything else runs.
pub(crate) fn require_file(p: &Path, what: &str) -> isotool::Result<()> {
    use isotool::error::IoContext;
    refuse_dash(p, what)?;
    let meta = std::fs::File::open(p)
        .and_then(|f| f.metadata())
        .ctx(p, &format!("opening {what}"))?;
    if meta.is_dir() {
        return Err(std::io::Error::from(std::io::ErrorKind::IsADirectory))
            .ctx(p, &format!("opening {what}"));
    }
    Ok(())
}

/// `-` where only a file makes sense: refused with the reason.
pub(crate) fn refuse_dash(p: &Path, what: &str) -> isotool::Result<()> {
    if p.as_os_str() == "-" {
        return Err(isotool::err!(
            InvalidArgument,
            "{what} cannot be `-` (stdin/stdout): it must be a file (written under a temporary name, synced, then renamed; or read at random offsets); give a path (./- for a file named -)"
        ));
    }
    Ok(())
}

/// What a subcommand returns: success, or an exit code with nothing more to print.
pub(crate) enum Outcome {
    Ok,
    Exit(u8),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = cli.quiet;
    // Outputs are synced before their rename unless --no-sync: passed to each command.
    let sync = !cli.no_sync;
    let ui = Ui {
        quiet,
        verbose: cli.verbose,
        progress: cli.progress,
        sync,
    };
    let result = match cli.command {
        Command::Convert(a) => disk::convert(a, ui),
        Command::Disk(c) => disk::disk(c, ui),
        Command::Info(a) => disk::info(a),
        Command::Validate(a) => disk::validate(a),
        Command::Pack(a) => pack::pack(a, ui),
        // ISO commands
        Command::Iso(c) => iso::iso(c, ui),
        Command::Remaster(a) => remaster::remaster(a, ui),
        // provisioning and cloud-init commands
        Command::ProvisioningCd(a) => provisioning::provisioning_cd(a, ui),
        Command::CloudInitSeed(a) => provisioning::cloud_init_seed(a, ui),
        Command::Launch(c) => launch::launch(c, ui),
        Command::Build(a) => build::build(a, ui),
        Command::Azure(c) => azure::azure(c, quiet),
        Command::Completions(a) => meta::completions(a),
        Command::Man(a) => meta::man(a),
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Exit(n)) => ExitCode::from(n),
        Err(e) => {
            report_error(&e);
            ExitCode::from(1)
        }
    }
}

fn report_error(e: &Error) {
    eprintln!("isotool: error: {e}");
}

/// Prints JSON to stdout.
pub(crate) fn print_json(v: &impl serde::Serialize) -> isotool::Result<()> {
    let s =
        serde_json::to_string_pretty(v).map_err(|e| isotool::err!(Io, "rendering JSON: {e}"))?;
    outln!("{s}");
    Ok(())
}

/// Human-readable byte counts in binary units, with the `humansize` crate: `1000 B`,
/// `1.50 KiB`, `64.00 MiB` (whole bytes below 1 KiB, two decimals above).
pub(crate) fn human_bytes(n: u64) -> String {
    if n < 1024 {
        return format!("{n} B");
    }
    humansize::format_size(n, humansize::BINARY.decimal_zeroes(2))
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn human_bytes_keeps_its_format() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.00 KiB");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(64 << 20), "64.00 MiB");
        assert_eq!(human_bytes((5 << 30) + (1 << 29)), "5.50 GiB");
        assert_eq!(human_bytes(3 << 40), "3.00 TiB");
    }
}
