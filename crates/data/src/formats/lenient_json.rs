//! Turns the almost-JSON lines that public datasets ship into strict JSON:
//! pandas writes bare `NaN`/`Infinity` (the Steam catalogue), and the 2014
//! Amazon metadata and the Steam review dumps are Python dict literals
//! (single-quoted strings, `True`/`False`/`None`).

use std::borrow::Cow;

/// Rewrites `line` as strict JSON; returns it unchanged when it needs nothing.
pub fn to_strict_json(line: &str) -> Cow<'_, str> {
    let looks_python = line.trim_start().starts_with("{'");
    if !looks_python && !line.contains("NaN") && !line.contains("Infinity") {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 16);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => copy_string(c, &mut chars, &mut out),
            c if c.is_ascii_alphabetic() => {
                let mut word = String::from(c);
                while let Some(&n) = chars.peek() {
                    if !n.is_ascii_alphanumeric() {
                        break;
                    }
                    word.push(n);
                    chars.next();
                }
                out.push_str(match word.as_str() {
                    // pandas' NaN, Python's repr of float('nan') / float('inf').
                    "NaN" | "Infinity" | "None" | "nan" | "inf" => "null",
                    "True" => "true",
                    "False" => "false",
                    w => w,
                });
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Copies a string literal opened by `quote` as a double-quoted JSON string.
fn copy_string(quote: char, chars: &mut std::iter::Peekable<std::str::Chars>, out: &mut String) {
    out.push('"');
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\'') => out.push('\''),
                Some('x') => {
                    let hex: String = chars.by_ref().take(2).collect();
                    out.push_str("\\u00");
                    out.push_str(&hex);
                }
                // Python's `\U0001f600` has no JSON spelling: write the
                // character itself (an invalid one stays an error for
                // serde to report with its line).
                Some('U') => {
                    let hex: String = chars.by_ref().take(8).collect();
                    match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                        Some(c) if !matches!(c, '"' | '\\') && !c.is_control() => out.push(c),
                        Some(c) => out.push_str(&format!("\\u{:04x}", c as u32)),
                        None => {
                            out.push_str("\\U");
                            out.push_str(&hex);
                        }
                    }
                }
                Some(e) => {
                    out.push('\\');
                    out.push(e);
                }
                None => out.push_str("\\\\"),
            },
            '"' if quote == '\'' => out.push_str("\\\""),
            c if c == quote => break,
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> serde_json::Value {
        serde_json::from_str(&to_strict_json(s)).unwrap()
    }

    #[test]
    fn strict_json_passes_through_untouched() {
        assert!(matches!(to_strict_json(r#"{"a": 1}"#), Cow::Borrowed(_)));
    }

    #[test]
    fn bare_nan_becomes_null_but_not_inside_strings() {
        let v = parse(r#"{"price": NaN, "title": "NaN Quest", "x": Infinity}"#);
        assert!(v["price"].is_null() && v["x"].is_null());
        assert_eq!(v["title"], "NaN Quest");
    }

    #[test]
    fn python_literals_become_json() {
        let v = parse(
            r#"{'asin': '0001', 'title': "Rock 'n' Roll \"Hits\"", 'ok': True, 'n': None, 'c': [['A', 'B']], 's': 'It\'s', 'e': 'caf\xe9'}"#,
        );
        assert_eq!(v["title"], "Rock 'n' Roll \"Hits\"");
        assert_eq!(v["ok"], true);
        assert!(v["n"].is_null());
        assert_eq!(v["c"][0][1], "B");
        assert_eq!(v["s"], "It's");
        assert_eq!(v["e"], "café");
        let v = parse("{'hours': nan, 'x': inf, 'text': 'nan inf'}");
        assert!(v["hours"].is_null() && v["x"].is_null());
        assert_eq!(v["text"], "nan inf");
    }

    /// Python writes characters outside the BMP that it deems unprintable
    /// as `\U` + 8 hex digits, which JSON has no spelling for.
    #[test]
    fn python_long_unicode_escapes_become_characters() {
        let v = parse(r#"{'text': 'gg \U0001f600 \U000e0001!'}"#);
        assert_eq!(v["text"], "gg \u{1f600} \u{e0001}!");
        assert!(
            serde_json::from_str::<serde_json::Value>(&to_strict_json(r#"{'t': '\Uffffffff'}"#))
                .is_err()
        );
    }
}
