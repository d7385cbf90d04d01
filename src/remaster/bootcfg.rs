//! Boot-configuration edits: isolinux (`isolinux.cfg`, `txt.cfg`) and GRUB (`grub.cfg`).
//! Pure text in, text out; the stock entries are kept.

use crate::err;
use crate::error::Result;

/// Which installer family the unattended entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Debian installer (Ubuntu 18.04 server): `auto=true priority=critical preseed/file=...`.
    Preseed,
    /// Anaconda (RHEL / CentOS 7): `inst.ks=cdrom:/NAME`.
    Kickstart,
}

/// The unattended entry's parameters.
#[derive(Debug, Clone)]
pub struct Unattended {
    /// Installer family.
    pub flavor: Flavor,
    /// Path of the seed file on the disc, e.g. `/preseed/auto.seed` or `/ks.cfg`.
    pub seed_path: String,
    /// Extra kernel arguments (before `---`).
    pub extra_args: Vec<String>,
    /// Timeout in seconds.
    pub timeout: u32,
}

impl Unattended {
    fn seed_args(&self) -> Vec<String> {
        match self.flavor {
            Flavor::Preseed => vec![
                "auto=true".into(),
                "priority=critical".into(),
                format!("preseed/file=/cdrom{}", self.seed_path),
            ],
            Flavor::Kickstart => vec![format!("inst.ks=cdrom:{}", self.seed_path)],
        }
    }

    /// Builds the kernel arguments from the stock entry's: seed arguments first, stock
    /// arguments without their seed/file ones, extra arguments, then `initrd=`, `quiet` and
    /// `---` with what follows it (arguments for the installed system).
    pub fn kernel_args(&self, stock: &str) -> String {
        let toks: Vec<&str> = stock.split_whitespace().collect();
        let (before, after) = match toks.iter().position(|t| *t == "---") {
            Some(i) => (&toks[..i], Some(&toks[i + 1..])),
            None => (&toks[..], None),
        };
        let dropped = |t: &str| {
            let k = t.split('=').next().unwrap_or(t);
            matches!(
                k,
                "file" | "auto" | "priority" | "preseed/file" | "url" | "inst.ks" | "ks"
            ) || t == "rd.live.check"
        };
        let mut out = self.seed_args();
        let mut tail = Vec::new();
        for t in before {
            if dropped(t) {
                continue;
            }
            if self.flavor == Flavor::Preseed && (t.starts_with("initrd=") || *t == "quiet") {
                tail.push(t.to_string());
            } else {
                out.push(t.to_string());
            }
        }
        out.extend(self.extra_args.iter().cloned());
        out.extend(tail);
        if let Some(a) = after {
            out.push("---".into());
            out.extend(a.iter().map(|s| s.to_string()));
        }
        out.join(" ")
    }
}

/// Label name of the added isolinux entry.
pub const LABEL: &str = "unattended";
/// Title of the added GRUB entry.
pub const GRUB_TITLE: &str = "Unattended install";

fn keyword(line: &str) -> (String, &str) {
    let t = line.trim_start();
    let mut it = t.splitn(2, char::is_whitespace);
    let k = it.next().unwrap_or("").to_ascii_lowercase();
    let rest = it.next().unwrap_or("").trim();
    (k, rest)
}

/// Edits `isolinux.cfg`-style timeout settings: `timeout` (tenths of a second, at least 1 since
/// 0 waits forever), `prompt 0`, and disables a gfxboot UI (it waits for a key press).
/// Returns the new text and whether a gfxboot line was disabled.
pub fn edit_isolinux_timeout(cfg: &str, timeout_s: u32) -> (String, bool) {
    let tenths = (timeout_s.saturating_mul(10)).max(1);
    let mut out = String::new();
    let mut saw_timeout = false;
    let mut saw_prompt = false;
    let mut gfx = false;
    for line in cfg.lines() {
        let (k, rest) = keyword(line);
        match k.as_str() {
            "timeout" => {
                saw_timeout = true;
                out.push_str(&format!("timeout {tenths}\n"));
            }
            "prompt" => {
                saw_prompt = true;
                out.push_str("prompt 0\n");
            }
            "ui" if rest.to_ascii_lowercase().starts_with("gfxboot") => {
                gfx = true;
                out.push_str(&format!(
                    "# {line} (disabled by isotool: gfxboot waits for a key)\n"
                ));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if !saw_prompt {
        out.push_str("prompt 0\n");
    }
    if !saw_timeout {
        out.push_str(&format!("timeout {tenths}\n"));
    }
    (out, gfx)
}

/// The seed path an unattended entry's kernel arguments name (`preseed/file=/cdrom/X` or
/// `inst.ks=cdrom:X`).
fn seed_path_in(line: &str) -> Option<String> {
    line.split_whitespace().find_map(|t| {
        t.strip_prefix("preseed/file=/cdrom")
            .or_else(|| t.strip_prefix("inst.ks=cdrom:"))
            .map(str::to_string)
    })
}

/// What removing an earlier run's unattended entry found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Previous {
    /// An entry was removed.
    pub removed: bool,
    /// The seed path it named.
    pub seed_path: Option<String>,
}

/// Removes the `label unattended` block an earlier remaster added (from its `label` line to the
/// next `label`), so the config can be edited again. `default unattended` is kept: the new
/// block takes the same name.
pub fn strip_syslinux_unattended(cfg: &str) -> (String, Previous) {
    let mut out = String::new();
    let mut prev = Previous::default();
    let mut skipping = false;
    for line in cfg.lines() {
        let (k, rest) = keyword(line);
        if k == "label" {
            skipping = rest == LABEL;
            prev.removed |= skipping;
        }
        if skipping {
            if (k == "append" || k == "kernel") && prev.seed_path.is_none() {
                prev.seed_path = seed_path_in(rest);
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    (out, prev)
}

/// Removes the `menuentry "Unattended install"` block an earlier remaster added (to its
/// closing brace), so the config can be edited again.
pub fn strip_grub_unattended(cfg: &str) -> (String, Previous) {
    let head = format!("menuentry \"{GRUB_TITLE}\"");
    let mut out = String::new();
    let mut prev = Previous::default();
    let mut depth: Option<i32> = None;
    for line in cfg.lines() {
        if depth.is_none() && line.trim_start().starts_with(&head) {
            depth = Some(0);
            prev.removed = true;
        }
        if let Some(d) = depth.as_mut() {
            *d += line.matches('{').count() as i32 - line.matches('}').count() as i32;
            if prev.seed_path.is_none() {
                prev.seed_path = seed_path_in(line);
            }
            if *d <= 0 {
                depth = None;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    (out, prev)
}

/// True when a syslinux config has a label with a kernel and an append line.
pub fn has_syslinux_entry(cfg: &str) -> bool {
    first_syslinux_entry(cfg).is_some()
}

fn first_syslinux_entry(cfg: &str) -> Option<(String, String)> {
    let mut in_label = false;
    let mut kernel = None;
    let mut append = None;
    for line in cfg.lines() {
        let (k, rest) = keyword(line);
        match k.as_str() {
            "label" => {
                if let (Some(k), Some(a)) = (&kernel, &append) {
                    return Some((String::clone(k), String::clone(a)));
                }
                in_label = true;
                kernel = None;
                append = None;
            }
            "kernel" | "linux" if in_label => kernel = Some(rest.to_string()),
            "append" if in_label => append = Some(rest.to_string()),
            _ => {}
        }
    }
    match (kernel, append) {
        (Some(k), Some(a)) => Some((k, a)),
        _ => None,
    }
}

/// Adds the unattended label before the first label of a syslinux config, makes it the
/// default (`default unattended` unless the default is a menu module, and `menu default`),
/// and removes `menu default` from the stock labels.
pub fn edit_syslinux_labels(cfg: &str, u: &Unattended) -> Result<String> {
    let (kernel, append) = first_syslinux_entry(cfg)
        .ok_or_else(|| err!(NotFound, "no label with a kernel and an append line"))?;
    let labels: Vec<String> = cfg
        .lines()
        .filter_map(|l| {
            let (k, r) = keyword(l);
            (k == "label").then(|| r.to_string())
        })
        .collect();
    if labels.iter().any(|l| l == LABEL) {
        return Err(err!(
            InvalidArgument,
            "the config already has a label {LABEL:?} (already remastered?)"
        ));
    }
    let title = match u.flavor {
        Flavor::Preseed => "^Unattended install",
        Flavor::Kickstart => "^Unattended install (kickstart)",
    };
    let block = format!(
        "label {LABEL}\n  menu label {title}\n  menu default\n  kernel {kernel}\n  append {}\n",
        u.kernel_args(&append)
    );
    let mut out = String::new();
    let mut inserted = false;
    let mut saw_default = false;
    for line in cfg.lines() {
        let (k, rest) = keyword(line);
        if k == "label" && !inserted {
            if !saw_default {
                out.push_str(&format!("default {LABEL}\n"));
                saw_default = true;
            }
            out.push_str(&block);
            inserted = true;
        }
        if k == "default" {
            saw_default = true;
            if rest == LABEL || labels.iter().any(|l| l == rest) {
                out.push_str(&format!("default {LABEL}\n"));
                continue;
            }
        }
        if k == "menu" && rest.trim().eq_ignore_ascii_case("default") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// True when a GRUB config has a menuentry with a linux line.
pub fn has_grub_entry(cfg: &str) -> bool {
    first_grub_entry(cfg).is_some()
}

fn first_grub_entry(cfg: &str) -> Option<(Vec<String>, usize)> {
    let lines: Vec<&str> = cfg.lines().collect();
    let start = lines.iter().position(|l| keyword(l).0 == "menuentry")?;
    let mut depth = 0i32;
    let mut body = Vec::new();
    for l in &lines[start..] {
        depth += l.matches('{').count() as i32 - l.matches('}').count() as i32;
        body.push(l.to_string());
        if depth <= 0 {
            break;
        }
    }
    body.iter()
        .any(|l| matches!(keyword(l).0.as_str(), "linux" | "linuxefi" | "linux16"))
        .then_some((body, start))
}

/// Adds an "Unattended install" menuentry before the first one, `set default=0` and
/// `set timeout=N` (every existing `set default` / `set timeout` is replaced).
pub fn edit_grub(cfg: &str, u: &Unattended) -> Result<String> {
    let (body, start) =
        first_grub_entry(cfg).ok_or_else(|| err!(NotFound, "no menuentry with a linux line"))?;
    if cfg.contains(&format!("menuentry \"{GRUB_TITLE}\"")) {
        return Err(err!(
            InvalidArgument,
            "grub.cfg already has an {GRUB_TITLE:?} entry (already remastered?)"
        ));
    }
    let mut entry = format!("menuentry \"{GRUB_TITLE}\" {{\n");
    for l in body.iter().skip(1) {
        let (k, rest) = keyword(l);
        let indent: String = l.chars().take_while(|c| c.is_whitespace()).collect();
        match k.as_str() {
            "linux" | "linuxefi" | "linux16" => {
                let mut it = rest.splitn(2, char::is_whitespace);
                let kernel = it.next().unwrap_or("");
                let args = it.next().unwrap_or("");
                entry.push_str(&format!("{indent}{k}\t{kernel} {}\n", u.kernel_args(args)));
            }
            _ => {
                entry.push_str(l);
                entry.push('\n');
            }
        }
    }
    let mut out = String::new();
    let mut saw_timeout = false;
    let mut saw_default = false;
    for (i, line) in cfg.lines().enumerate() {
        if i == start {
            if !saw_default {
                out.push_str("set default=0\n");
            }
            if !saw_timeout {
                out.push_str(&format!("set timeout={}\n", u.timeout));
            }
            out.push_str(&entry);
        }
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        if t.starts_with("set timeout=") {
            saw_timeout = true;
            out.push_str(&format!("{indent}set timeout={}\n", u.timeout));
            continue;
        }
        if t.starts_with("set default=") {
            saw_default = true;
            out.push_str(&format!("{indent}set default=0\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// Refuses kernel arguments that would break the config lines.
pub fn check_kernel_arg(a: &str) -> Result<()> {
    if a.is_empty()
        || a == "---"
        || a.chars().any(|c| {
            c.is_whitespace() || c.is_control() || c == '"' || c == '{' || c == '}' || c == ';'
        })
    {
        return Err(err!(
            InvalidArgument,
            "kernel argument {a:?}: must be one word without quotes, braces, ';' or '---'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TXT: &str = "default install\nlabel install\n  menu label ^Install Ubuntu Server\n  kernel /install/vmlinuz\n  append  file=/cdrom/preseed/ubuntu-server.seed vga=788 initrd=/install/initrd.gz quiet ---\nlabel hd\n  localboot 0x80\n";
    const GRUB: &str = "set timeout=5\nmenuentry \"Install Ubuntu Server\" {\n\tset gfxpayload=keep\n\tlinux\t/install/vmlinuz  file=/cdrom/preseed/ubuntu-server.seed  quiet ---\n\tinitrd\t/install/initrd.gz\n}\n";

    fn u() -> Unattended {
        Unattended {
            flavor: Flavor::Preseed,
            seed_path: "/preseed/auto.seed".into(),
            extra_args: vec!["console=ttyS0".into()],
            timeout: 1,
        }
    }

    #[test]
    fn txt_cfg_gets_a_default_first_label() {
        let out = edit_syslinux_labels(TXT, &u()).unwrap();
        assert!(
            out.starts_with("default unattended\nlabel unattended\n"),
            "{out}"
        );
        assert!(out.contains("  append auto=true priority=critical preseed/file=/cdrom/preseed/auto.seed vga=788 console=ttyS0 initrd=/install/initrd.gz quiet ---\n"), "{out}");
        assert!(out.contains("label install\n"), "stock entry kept");
        assert!(
            out.contains("file=/cdrom/preseed/ubuntu-server.seed"),
            "stock args kept"
        );
        assert!(
            edit_syslinux_labels(&out, &u()).is_err(),
            "second edit refused"
        );
    }

    #[test]
    fn isolinux_cfg_timeout_prompt_gfxboot() {
        let (o, gfx) = edit_isolinux_timeout(
            "default vesamenu.c32\nprompt 1\ntimeout 300\nui gfxboot bootlogo\n",
            2,
        );
        assert!(gfx);
        assert_eq!(
            o,
            "default vesamenu.c32\nprompt 0\ntimeout 20\n# ui gfxboot bootlogo (disabled by isotool: gfxboot waits for a key)\n"
        );
        let (o, _) = edit_isolinux_timeout("", 0);
        assert_eq!(o, "prompt 0\ntimeout 1\n");
    }

    #[test]
    fn grub_cfg_gets_default_entry() {
        let out = edit_grub(GRUB, &u()).unwrap();
        assert!(
            out.starts_with("set timeout=1\nset default=0\nmenuentry \"Unattended install\" {\n"),
            "{out}"
        );
        assert!(out.contains("\tlinux\t/install/vmlinuz auto=true priority=critical preseed/file=/cdrom/preseed/auto.seed console=ttyS0 quiet ---\n"), "{out}");
        assert!(out.contains("menuentry \"Install Ubuntu Server\""));
        assert!(!out.contains("set timeout=5"));
    }

    #[test]
    fn kickstart_lines() {
        let iso = "default vesamenu.c32\ntimeout 600\nlabel linux\n  menu label ^Install CentOS 7\n  kernel vmlinuz\n  append initrd=initrd.img inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64 quiet\nlabel check\n  menu label Test this ^media & install CentOS 7\n  menu default\n  kernel vmlinuz\n  append initrd=initrd.img inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64 rd.live.check quiet\n";
        let k = Unattended {
            flavor: Flavor::Kickstart,
            seed_path: "/ks.cfg".into(),
            extra_args: vec![],
            timeout: 1,
        };
        let out = edit_syslinux_labels(iso, &k).unwrap();
        assert!(out.contains("  append inst.ks=cdrom:/ks.cfg initrd=initrd.img inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64 quiet\n"), "{out}");
        assert_eq!(out.matches("menu default").count(), 1);
        assert!(out.starts_with("default vesamenu.c32\n"));
        let g = "set default=\"1\"\nset timeout=60\nmenuentry 'Install CentOS 7' --class fedora {\n\tlinuxefi /images/pxeboot/vmlinuz inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64 quiet\n\tinitrdefi /images/pxeboot/initrd.img\n}\n";
        let out = edit_grub(g, &k).unwrap();
        assert!(out.contains("\tlinuxefi\t/images/pxeboot/vmlinuz inst.ks=cdrom:/ks.cfg inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64 quiet\n"), "{out}");
        assert!(out.starts_with("set default=0\nset timeout=1\n"));
    }

    #[test]
    fn a_second_run_replaces_the_unattended_entries() {
        let first = edit_syslinux_labels(TXT, &u()).unwrap();
        let (stripped, prev) = strip_syslinux_unattended(&first);
        assert_eq!(prev.seed_path.as_deref(), Some("/preseed/auto.seed"));
        assert!(prev.removed);
        let mut v = u();
        v.seed_path = "/preseed/two.seed".into();
        let second = edit_syslinux_labels(&stripped, &v).unwrap();
        let direct = edit_syslinux_labels(TXT, &v).unwrap();
        assert_eq!(
            second, direct,
            "a rerun gives what one run with the new seed gives"
        );
        assert_eq!(second.matches("label unattended").count(), 1);
        let g1 = edit_grub(GRUB, &u()).unwrap();
        let (gs, gp) = strip_grub_unattended(&g1);
        assert_eq!(gp.seed_path.as_deref(), Some("/preseed/auto.seed"));
        let g2 = edit_grub(&gs, &v).unwrap();
        assert_eq!(g2, edit_grub(GRUB, &v).unwrap());
        // a stock config has nothing to strip
        assert_eq!(
            strip_syslinux_unattended(TXT),
            (TXT.to_string(), Previous::default())
        );
        assert_eq!(
            strip_grub_unattended(GRUB),
            (GRUB.to_string(), Previous::default())
        );
    }

    #[test]
    fn bad_kernel_args_refused() {
        assert!(check_kernel_arg("console=ttyS0,115200").is_ok());
        assert!(check_kernel_arg("a b").is_err());
        assert!(check_kernel_arg("---").is_err());
        assert!(check_kernel_arg("x\"y").is_err());
    }
}
