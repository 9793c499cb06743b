//! File names from the other side, reduced to something safe to create.
//!
//! The sender's name is a suggestion. The receiver keeps only a base name: no directories, no
//! `..`, no absolute paths, no control characters, no Windows device names, bounded length.
//! Nor anything that makes a name show as something it is not: bidirectional controls
//! (`report\u{202E}fdp.exe` displays as `reportexe.pdf`) and zero-width characters are
//! replaced, and a leading dot, which would hide the file, becomes `_`.
//! Whatever the input, the result names a plain, visible file directly inside the chosen folder.

/// Characters that change how the rest of a name displays, or do not display at all:
/// bidirectional embeddings, overrides, isolates and marks, zero-width characters, and the
/// byte-order mark.
fn is_deceptive(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// Reduce `name` to a safe base name; never empty, never `.` or `..`, never hidden.
pub fn safe_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_control() || is_deceptive(c) || matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches(|c: char| c.is_whitespace()).trim_end_matches('.');
    let mut out = match trimmed {
        "" | "." | ".." => "file".to_owned(),
        t => t.to_owned(),
    };
    if out.starts_with('.') {
        out.replace_range(..1, "_");
    }
    let stem = out.split('.').next().unwrap_or_default().to_ascii_uppercase();
    let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || (stem.len() == 4
            && (stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.as_bytes()[3].is_ascii_digit());
    if reserved {
        out.insert(0, '_');
    }
    // Keep within the 255-byte limit of common file systems, leaving room for temp suffixes.
    let mut end = out.len().min(200);
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out
}

#[cfg(test)]
mod tests {
    use super::safe_file_name;

    #[test]
    fn hostile_names_become_plain_base_names() {
        for (input, expected) in [
            ("report.pdf", "report.pdf"),
            ("../../etc/passwd", "passwd"),
            ("/etc/shadow", "shadow"),
            ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
            ("..", "file"),
            (".", "file"),
            ("", "file"),
            ("dir/", "file"),
            ("a\u{0}b\nc", "a_b_c"),
            ("CON", "_CON"),
            ("com1.txt", "_com1.txt"),
            ("C:evil", "C_evil"),
            ("trailing. ", "trailing"),
            (".bashrc", "_bashrc"),
            ("..hidden", "_.hidden"),
            ("report\u{202E}fdp.exe", "report_fdp.exe"),
            ("a\u{2066}b\u{2069}\u{200B}c\u{FEFF}", "a_b__c_"),
        ] {
            assert_eq!(safe_file_name(input), expected, "{input:?}");
        }
        assert!(safe_file_name(&"é".repeat(300)).len() <= 200);
    }
}
