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
                    "NaN" | "Infinity" | "None" => "null",
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
    }
}
