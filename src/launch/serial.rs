//! Reading the guest's serial console log while it grows: the last line for progress, the last
//! lines for errors, and the kernel's panic banner.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// How much of the end of the log is read for a tail.
const TAIL_BYTES: u64 = 16 * 1024;
/// Lines of serial log an error carries.
pub const ERROR_TAIL_LINES: usize = 20;
/// The line Linux prints when `panic()` has finished (it then hangs or reboots).
pub const KERNEL_PANIC_END: &str = "---[ end Kernel panic - not syncing";

/// Removes ANSI escape sequences (CSI and two-byte escapes), carriage returns and other control
/// characters except newline and tab.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for n in chars.by_ref() {
                        if ('@'..='~').contains(&n) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The last `TAIL_BYTES` of the log, cleaned (empty when the file is missing).
pub fn read_tail(path: &Path) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(TAIL_BYTES);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    if f.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = clean(&String::from_utf8_lossy(&bytes));
    if start > 0 {
        // Drop the partial first line.
        return text.split_once('\n').map(|x| x.1).unwrap_or("").to_string();
    }
    text
}

/// The last non-empty line of `text`, trimmed.
pub fn last_line(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The kernel's panic line (`Kernel panic - not syncing: ...`), if the log has one. After the
/// guest reset (`panic=N` reboots N seconds after a panic) this says why.
pub fn kernel_panic(text: &str) -> Option<String> {
    text.lines()
        .find(|l| l.contains("Kernel panic - not syncing") && !l.contains("---[ end"))
        .map(|l| l.trim().to_string())
}

/// The kernel's panic line once the panic has finished printing (the `---[ end Kernel panic`
/// banner): a guest still running after that only hangs or waits to reboot.
pub fn finished_kernel_panic(text: &str) -> Option<String> {
    if !text.contains(KERNEL_PANIC_END) {
        return None;
    }
    kernel_panic(text).or_else(|| Some("Kernel panic".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_escapes_and_finds_the_last_line() {
        let t = clean("\u{1b}[2J\u{1b}[01;01HBdsDxe: loading\r\nFIXTURE-DONE\r\n\r\n");
        assert_eq!(t, "BdsDxe: loading\nFIXTURE-DONE\n\n");
        assert_eq!(last_line(&t).as_deref(), Some("FIXTURE-DONE"));
        assert_eq!(last_line(""), None);
        assert_eq!(last_lines("a\nb\nc", 2), "b\nc");
    }

    #[test]
    fn a_finished_panic_is_recognised() {
        let log = "[ 1.0] sysrq: Trigger a crash\n[ 1.0] Kernel panic - not syncing: sysrq triggered crash\n[ 1.1] ---[ end Kernel panic - not syncing: sysrq triggered crash ]---\n";
        assert_eq!(
            finished_kernel_panic(log).as_deref(),
            Some("[ 1.0] Kernel panic - not syncing: sysrq triggered crash")
        );
        // The first line alone (panic still printing) is not yet a finished panic, but after
        // a reset it says why the guest reset.
        let started = "Kernel panic - not syncing: x\n";
        assert_eq!(finished_kernel_panic(started), None);
        assert_eq!(
            kernel_panic(started).as_deref(),
            Some("Kernel panic - not syncing: x")
        );
        assert_eq!(kernel_panic("all fine\n"), None);
    }

    #[test]
    fn tail_of_a_long_log_starts_at_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.log");
        let mut body = String::new();
        for i in 0..5000 {
            body.push_str(&format!("line {i}\n"));
        }
        std::fs::write(&p, &body).unwrap();
        let t = read_tail(&p);
        assert!(t.starts_with("line "));
        assert!(t.ends_with("line 4999\n"));
        assert_eq!(read_tail(&dir.path().join("none")), "");
    }
}
