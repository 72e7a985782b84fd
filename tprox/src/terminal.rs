//! Text from submissions and proxies, made safe to print on the grader's terminal.
//!
//! A submission's name is a directory name its student chose, and a proxy's output is
//! whatever it printed: either may hold escape sequences that move the cursor, rewrite a line
//! (a forged "[3/3] alice: 9 of 9 points"), set the window title or, on some terminals, write
//! to files. Before such text reaches a terminal, its control characters (C0 and C1, and the
//! bidirectional overrides that reorder what is shown) are written out as escapes (`\x1b`),
//! so the grader sees them rather than their effect.

use std::fmt::Write;

/// `text` with every control character escaped, newlines and tabs kept.
pub fn printable(text: &str) -> String {
    escape(text, true)
}

/// `text` on one line: newlines and tabs escaped too.
pub fn one_line(text: &str) -> String {
    escape(text, false)
}

fn escape(text: &str, keep_lines: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' if keep_lines => out.push(c),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || is_bidi_override(c) => {
                let _ = match c as u32 {
                    code @ 0..=0xff => write!(out, "\\x{code:02x}"),
                    code => write!(out, "\\u{{{code:x}}}"),
                };
            }
            c => out.push(c),
        }
    }
    out
}

/// The characters that reorder how the text around them is shown (the "Trojan Source"
/// characters).
fn is_bidi_override(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_shown_not_obeyed() {
        let forged = "mallory\r\x1b[2K[3/3] alice: 9 of 9 points\x1b]0;title\x07\u{9b}31m";
        let shown = one_line(forged);
        assert_eq!(
            shown,
            "mallory\\r\\x1b[2K[3/3] alice: 9 of 9 points\\x1b]0;title\\x07\\x9b31m"
        );
        assert!(!shown.chars().any(|c| c.is_control()));
        assert_eq!(printable("a\n\tb\x1b"), "a\n\tb\\x1b");
        assert_eq!(one_line("a\nb"), "a\\nb");
        assert_eq!(one_line("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(one_line("ünïcode stays"), "ünïcode stays");
    }
}
