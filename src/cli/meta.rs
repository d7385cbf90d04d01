//! `completions` and `man`: the command line describing itself (clap_complete, clap_mangen).

use super::{Cli, Outcome};
use clap::{Args, CommandFactory};
use clap_complete::Shell;
use isotool::error::Result;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  isotool completions bash > ~/.local/share/bash-completion/completions/isotool
  isotool completions zsh > ~/.zfunc/_isotool
  isotool completions fish > ~/.config/fish/completions/isotool.fish

Exit status: 0 printed, 2 bad command line (an unknown shell).")]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  isotool man | man -l -
  isotool man --dir /usr/local/share/man/man1

Exit status: 0 printed or written, 1 error (DIR not writable), 2 bad command line.")]
pub(crate) struct ManArgs {
    /// Write isotool.1 and one isotool-COMMAND.1 per subcommand into DIR instead of printing
    /// the top page.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub(crate) fn completions(a: CompletionsArgs) -> Result<Outcome> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "isotool", &mut buf);
    write_stdout(&buf);
    Ok(Outcome::Ok)
}

pub(crate) fn man(a: ManArgs) -> Result<Outcome> {
    let cmd = Cli::command();
    match a.dir {
        Some(dir) => {
            clap_mangen::generate_to(cmd, &dir)
                .map_err(|e| isotool::Error::io(e, "writing the man pages").with_path(&dir))?;
        }
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut buf)
                .map_err(|e| isotool::Error::io(e, "rendering the man page"))?;
            write_stdout(&buf);
        }
    }
    Ok(Outcome::Ok)
}

fn write_stdout(buf: &[u8]) {
    use std::io::Write as _;
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(buf).and_then(|_| o.flush()) {
        super::stdout_failed(&e);
    }
}
