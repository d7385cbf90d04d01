//! The `isotool` binary: argument parsing, rendering, progress drawing, exit codes and signal
//! handling (see [`cli`]); the work is done by the `isotool` library.

mod cli;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Makes SIGINT, SIGTERM and SIGHUP remove the temporary files of outputs being written
/// ([`isotool::output::remove_live_temps`]) before the process exits with status 128 + signal,
/// so an interrupted run leaves nothing behind; VMs started by `launch` are killed first. The signal is taken on a thread of its own, not
/// in a signal handler, so taking a lock and unlinking files is safe.
fn install_interrupt_cleanup() {
    let Ok(mut signals) = Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("interrupt-cleanup".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                isotool::launch::kill_live_vms();
                isotool::output::remove_live_temps();
                eprintln!("isotool: interrupted: temporary outputs removed");
                std::process::exit(128 + sig);
            }
        });
}

fn main() -> std::process::ExitCode {
    install_interrupt_cleanup();
    cli::main()
}
