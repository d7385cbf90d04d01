//! The preseed as the build puts it on the disc: the shipped file with the image's identity
//! filled in (`isotool/image_name`, `isotool/image_short_name`, `isotool/image_version`), which
//! the installed system's first-boot service names the host after. Kickstarts go as they are.

/// The questions the build answers, in the order they are appended when absent.
pub const IMAGE_QUESTIONS: [&str; 3] = [
    "isotool/image_name",
    "isotool/image_short_name",
    "isotool/image_version",
];

fn question_of(line: &str) -> Option<&str> {
    let t = line.trim_start();
    if t.starts_with('#') {
        return None;
    }
    t.split_whitespace().nth(1)
}

/// `text` with each `(question, value)` answered as `d-i QUESTION string VALUE`: an existing
/// answer (and its continuation lines) is replaced in place, a missing one appended.
pub fn answer(text: &str, answers: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len() + 200);
    let mut done = vec![false; answers.len()];
    let mut skipping = false;
    for line in text.lines() {
        if skipping {
            skipping = line.ends_with('\\');
            continue;
        }
        let hit = question_of(line).and_then(|q| answers.iter().position(|(a, _)| *a == q));
        match hit {
            Some(i) => {
                out.push_str(&format!("d-i {} string {}\n", answers[i].0, answers[i].1));
                done[i] = true;
                skipping = line.ends_with('\\');
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for (i, (q, v)) in answers.iter().enumerate() {
        if !done[i] {
            out.push_str(&format!("d-i {q} string {v}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_in_place_and_appends_missing() {
        let text = "# d-i isotool/image_name string commented\nd-i isotool/image_name string base\nd-i isotool/image_version string \\\n  0.1.0\nd-i other string x\n";
        let got = answer(
            text,
            &[
                ("isotool/image_name", "web"),
                ("isotool/image_version", "1.2.3"),
                ("isotool/image_short_name", "w"),
            ],
        );
        assert_eq!(
            got,
            "# d-i isotool/image_name string commented\nd-i isotool/image_name string web\nd-i isotool/image_version string 1.2.3\nd-i other string x\nd-i isotool/image_short_name string w\n"
        );
    }
}
