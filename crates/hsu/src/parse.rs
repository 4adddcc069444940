//! Reading answers: `Instruction: N` and `Final interests: …`, robustly, and
//! telling usable answers from degenerate ones.
//!
//! Accepted interest lists: numbered (`1.`, `1)`), bulleted (`-`, `*`, `•`),
//! labelled (`Interest 1: …`, several per line too), or one line split by
//! `;`. Markdown emphasis is ignored. Unusable (a [`ParseError`]):
//! an empty answer; no `Final interests` section and no labelled list; only
//! labels without content (SmolLM2-135M's "Interest 1: Interest 2: …" on the
//! paper's stage-1 prompt); mostly repeated entries; a copy of the prompt's
//! worked example; an answer cut by `max_tokens` with nothing complete left.
//!
//! Constrained output: [`selection_schema`] and [`interests_schema`] are the
//! JSON shapes a server that supports `response_format` is asked for
//! (`{"explanation": …, "instruction": N}` and `{"explanation": …,
//! "interests": […]}`); both parsers take those answers too, and one cut by
//! `max_tokens` keeps its complete interests. JSON of any other shape is
//! read as text, where it finds no list or instruction: a recorded failure.

use hsuga_llm::{Finish, JsonSchema, Op};
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty answer")]
    Empty,
    #[error("no `Final interests` list in the answer")]
    NoInterests,
    #[error("degenerate answer: {0}")]
    Degenerate(String),
    #[error("no `Instruction: N` in the answer")]
    NoInstruction,
    #[error("instruction {0:?} is not 1, 2, 3 or 4")]
    BadInstruction(String),
    #[error("answer cut by max_tokens before any complete interest")]
    Truncated,
}

impl ParseError {
    /// Short stable name for statistics.
    pub fn kind(&self) -> &'static str {
        match self {
            ParseError::Empty => "empty",
            ParseError::NoInterests => "no_interests",
            ParseError::Degenerate(_) => "degenerate",
            ParseError::NoInstruction => "no_instruction",
            ParseError::BadInstruction(_) => "bad_instruction",
            ParseError::Truncated => "truncated",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedInterests {
    pub explanation: String,
    pub interests: Vec<String>,
}

const MAX_INTEREST_CHARS: usize = 300;

/// Finds the last case-insensitive occurrence of `needle` (ASCII) in `hay`.
fn rfind_ci(hay: &str, needle: &str) -> Option<usize> {
    let h = hay.to_ascii_lowercase();
    h.rfind(&needle.to_ascii_lowercase())
}

fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let h = hay.to_ascii_lowercase();
    h.find(&needle.to_ascii_lowercase())
}

/// The explanation: the text after `Explanation:` up to `end_marker`, or empty.
fn explanation(text: &str, end: usize) -> String {
    let head = &text[..end];
    let start = find_ci(head, "explanation")
        .map(|i| {
            let rest = &head[i + "explanation".len()..];
            i + "explanation".len() + rest.find(':').map(|c| c + 1).unwrap_or(0)
        })
        .unwrap_or(0);
    clean(&head[start..]).chars().take(2000).collect::<String>()
}

fn clean(s: &str) -> String {
    let s = s.replace("**", "").replace("__", "");
    let mut t = s.trim();
    // Strip one pair of enclosing brackets or quotes ("[Reason for action]").
    for (open, close) in [('[', ']'), ('"', '"'), ('\'', '\''), ('`', '`')] {
        if t.len() >= 2 && t.starts_with(open) && t.ends_with(close) {
            t = t[1..t.len() - 1].trim();
        }
    }
    t.to_string()
}

/// Is `s` (lower-case) an "Interest N" label (possibly followed by `:`)?
fn is_label(s: &str) -> bool {
    let t = s.trim().trim_end_matches(':').trim();
    let Some(rest) = t.strip_prefix("interest") else {
        return false;
    };
    let rest = rest.trim_start_matches('s').trim();
    rest.is_empty() || rest.chars().all(|c| c.is_ascii_digit())
}

/// Splits `Interest 1: a Interest 2: b` into `["a", "b"]` (labels dropped).
fn split_labels(line: &str) -> Vec<String> {
    let lower = line.to_ascii_lowercase();
    let mut cuts = Vec::new();
    let mut from = 0;
    while let Some(i) = lower[from..].find("interest") {
        let at = from + i;
        let after = &lower[at + "interest".len()..];
        let digits: usize = after
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .count();
        let ws = after.len() - after.trim_start().len();
        let tail = &after[ws + digits..];
        if digits > 0 && tail.trim_start().starts_with(':') {
            let colon = ws + digits + tail.find(':').unwrap_or(0) + 1;
            cuts.push((at, at + "interest".len() + colon));
        }
        from = at + "interest".len();
    }
    if cuts.is_empty() {
        return vec![line.to_string()];
    }
    let mut out = Vec::new();
    if !line[..cuts[0].0].trim().is_empty() {
        out.push(line[..cuts[0].0].to_string());
    }
    for (k, &(_, end)) in cuts.iter().enumerate() {
        let stop = cuts.get(k + 1).map(|c| c.0).unwrap_or(line.len());
        out.push(line[end..stop].to_string());
    }
    out
}

/// Strips a list marker: `1.`, `1)`, `-`, `*`, `•`, `(1)`.
fn strip_marker(s: &str) -> &str {
    let s = s.trim_start();
    let s = s
        .strip_prefix(['-', '*', '•', '+'])
        .map(str::trim_start)
        .unwrap_or(s);
    let digits = s.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && digits <= 3 {
        let rest = &s[digits..];
        if let Some(r) = rest.strip_prefix(['.', ')', ':']) {
            return r.trim_start();
        }
    }
    if let Some(r) = s.strip_prefix('(') {
        let d = r.chars().take_while(char::is_ascii_digit).count();
        if d > 0 && r[d..].starts_with(')') {
            return r[d + 1..].trim_start();
        }
    }
    s
}

/// Byte offset of a numbered list's first line (`1.` or `1)` at a line start).
fn numbered_list_start(text: &str) -> Option<usize> {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with("1.") || t.starts_with("1)") {
            return Some(at + (line.len() - t.len()));
        }
        at += line.len();
    }
    None
}

/// Parses an answer that should end with a `Final interests` list.
pub fn parse_interests(
    text: &str,
    finish: Finish,
    max_interests: usize,
    example: &[String],
) -> Result<ParsedInterests, ParseError> {
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    if let Some((explanation, raw)) = json_interests(text) {
        // Only complete JSON strings are taken: none is cut.
        return judge(raw, 0, false, finish, max_interests, example, explanation);
    }
    let (start, body) = match rfind_ci(text, "final interests") {
        Some(i) => {
            let rest = &text[i + "final interests".len()..];
            let rest = rest.trim_start_matches(['*', '_', ' ']);
            let rest = rest.strip_prefix(':').unwrap_or(rest);
            (i, rest)
        }
        None => match find_ci(text, "interest 1").or_else(|| numbered_list_start(text)) {
            Some(i) => (i, &text[i..]),
            None => return Err(ParseError::NoInterests),
        },
    };
    // Anything after the list that starts a new section is not an interest.
    let mut lines: Vec<&str> = Vec::new();
    for line in body.lines() {
        let l = line.trim().to_ascii_lowercase();
        let l = l.trim_start_matches(['*', '#', ' ']);
        if l.starts_with("explanation") || l.starts_with("note") || l.starts_with("instruction") {
            break;
        }
        lines.push(line);
    }
    let mut raw: Vec<String> = Vec::new();
    let mut labels_only = 0usize;
    for line in &lines {
        for part in split_labels(line) {
            let pieces: Vec<String> = if part.contains(';') {
                part.split(';').map(str::to_string).collect()
            } else {
                vec![part]
            };
            for p in pieces {
                let c = clean(strip_marker(&clean(&p)));
                let c = c.trim_end_matches([',', '.', ';']).trim().to_string();
                if c.is_empty() {
                    labels_only += 1;
                    continue;
                }
                if is_label(&c.to_ascii_lowercase()) || c == "..." || c == "…" {
                    labels_only += 1;
                    continue;
                }
                raw.push(c.chars().take(MAX_INTEREST_CHARS).collect());
            }
        }
    }
    // Labels with nothing between them count as empties too.
    let label_count = body.to_ascii_lowercase().matches("interest ").count();
    let cut = finish == Finish::Length;
    let why = explanation(text, start);
    judge(
        raw,
        labels_only.max(label_count),
        cut,
        finish,
        max_interests,
        example,
        why,
    )
}

/// The verdict on an answer's interest entries, however they were written:
/// usable, or why not. `labels`: interest labels seen without content;
/// `cut`: the last entry may be cut mid-sentence.
fn judge(
    mut raw: Vec<String>,
    labels: usize,
    cut: bool,
    finish: Finish,
    max_interests: usize,
    example: &[String],
    explanation: String,
) -> Result<ParsedInterests, ParseError> {
    if raw.len() == 1 && raw[0].eq_ignore_ascii_case("none") {
        return Ok(ParsedInterests {
            explanation,
            interests: Vec::new(),
        });
    }
    if cut && raw.len() > 1 {
        raw.pop(); // the last one may be cut mid-sentence
    }
    if raw.is_empty() {
        if finish == Finish::Length {
            return Err(ParseError::Truncated);
        }
        if labels >= 2 {
            return Err(ParseError::Degenerate(
                "only interest labels without content".into(),
            ));
        }
        return Err(ParseError::NoInterests);
    }
    if raw
        .iter()
        .all(|r| r.chars().filter(|c| c.is_alphabetic()).count() < 3)
    {
        return Err(ParseError::Degenerate("no interest has any words".into()));
    }
    let total = raw.len();
    let mut seen = std::collections::HashSet::new();
    raw.retain(|r| seen.insert(r.to_lowercase()));
    if total >= 6 && raw.len() * 2 < total {
        return Err(ParseError::Degenerate(format!(
            "{total} entries but only {} distinct",
            raw.len()
        )));
    }
    if raw.iter().all(|r| {
        let l = r.to_ascii_lowercase();
        l.contains("title:") || l.starts_with("no.")
    }) {
        return Err(ParseError::Degenerate(
            "repeated the item history instead of interests".into(),
        ));
    }
    if !example.is_empty()
        && raw.len() >= example.len()
        && raw
            .iter()
            .zip(example)
            .all(|(a, b)| a.eq_ignore_ascii_case(b.trim()))
    {
        return Err(ParseError::Degenerate(
            "copied the prompt's worked example".into(),
        ));
    }
    raw.truncate(max_interests);
    Ok(ParsedInterests {
        explanation,
        interests: raw,
    })
}

/// An answer in [`interests_schema`]'s shape: (explanation, entries). Cut
/// short by `max_tokens`, its complete entries. `None` when the text is no
/// such JSON object, not even the start of one.
fn json_interests(text: &str) -> Option<(String, Vec<String>)> {
    let t = text.trim();
    if !t.starts_with('{') {
        return None;
    }
    if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(t) {
        let list = o.get("interests")?.as_array()?;
        let raw = list
            .iter()
            .filter_map(Value::as_str)
            .map(clean_entry)
            .collect();
        return Some((json_explanation(&o), raw));
    }
    // Cut short: the complete strings of the `interests` array.
    let key = t.find("\"interests\"")?;
    let rest = &t[key + "\"interests\"".len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let mut rest = rest.strip_prefix('[')?;
    let mut raw = Vec::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.starts_with(']') {
            return Some((String::new(), raw));
        }
        let mut strings = serde_json::Deserializer::from_str(rest).into_iter::<String>();
        match strings.next() {
            Some(Ok(s)) => {
                raw.push(clean_entry(&s));
                rest = &rest[strings.byte_offset()..];
            }
            _ => return Some((String::new(), raw)),
        }
    }
}

fn json_explanation(o: &serde_json::Map<String, Value>) -> String {
    o.get("explanation")
        .and_then(Value::as_str)
        .map(|e| clean(e).chars().take(2000).collect())
        .unwrap_or_default()
}

/// One interest as the text parser leaves it: markers, emphasis and
/// trailing punctuation gone, bounded in length.
fn clean_entry(s: &str) -> String {
    let c = clean(strip_marker(&clean(s)));
    c.trim_end_matches([',', '.', ';'])
        .trim()
        .chars()
        .take(MAX_INTEREST_CHARS)
        .collect()
}

/// Longest explanation a constrained answer may give, in characters: the
/// interests must still fit in `max_tokens` after it.
const SCHEMA_EXPLANATION_CHARS: u32 = 200;
/// Longest interest a constrained answer may give, in characters.
const SCHEMA_INTEREST_CHARS: u32 = 80;

/// The JSON answer to a drift-selection prompt: an explanation, then one of
/// the `allowed` operation numbers (the paper's order: reason first).
pub fn selection_schema(allowed: &[Op]) -> JsonSchema {
    let numbers: Vec<u8> = allowed.iter().map(|o| o.number()).collect();
    JsonSchema {
        name: "hsu_selection".into(),
        schema: json!({
            "type": "object",
            "properties": {
                "explanation": {"type": "string", "maxLength": SCHEMA_EXPLANATION_CHARS},
                "instruction": {"type": "integer", "enum": numbers},
            },
            "required": ["explanation", "instruction"],
            "additionalProperties": false,
        }),
    }
}

/// The JSON answer to a prompt that ends in a list of interests (stage-1
/// reasoning, the edit operations, recursive and CoT summaries).
pub fn interests_schema(max_interests: usize) -> JsonSchema {
    JsonSchema {
        name: "hsu_interests".into(),
        schema: json!({
            "type": "object",
            "properties": {
                "explanation": {"type": "string", "maxLength": SCHEMA_EXPLANATION_CHARS},
                "interests": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1, "maxLength": SCHEMA_INTEREST_CHARS},
                    "minItems": 1,
                    "maxItems": max_interests.max(1),
                },
            },
            "required": ["explanation", "interests"],
            "additionalProperties": false,
        }),
    }
}

/// Parses a drift-selection answer: `(operation, explanation)`.
pub fn parse_instruction(text: &str) -> Result<(Op, String), ParseError> {
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(text.trim())
        && let Some(v) = o.get("instruction")
    {
        let op = match v {
            Value::Number(n) => n.as_i64().and_then(Op::from_number),
            Value::String(s) => Op::parse_name(s),
            _ => None,
        }
        .ok_or_else(|| ParseError::BadInstruction(v.to_string()))?;
        return Ok((op, json_explanation(&o)));
    }
    let Some(i) = rfind_ci(text, "instruction") else {
        return Err(ParseError::NoInstruction);
    };
    let rest = &text[i + "instruction".len()..];
    let rest = rest.trim_start_matches(|c: char| {
        c.is_whitespace() || matches!(c, ':' | '[' | '*' | '"' | '\'' | '`' | '=' | '(')
    });
    let word: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == ' ')
        .take(24)
        .collect();
    let first_digit = word.chars().next().filter(char::is_ascii_digit);
    let op = match first_digit {
        Some(d) => {
            let n: String = word.chars().take_while(char::is_ascii_digit).collect();
            if n.len() > 1 {
                return Err(ParseError::BadInstruction(n));
            }
            Op::from_number(i64::from(d.to_digit(10).unwrap_or(0)))
                .ok_or_else(|| ParseError::BadInstruction(d.to_string()))?
        }
        None => {
            let w = word.trim().to_ascii_lowercase();
            if w.is_empty() {
                return Err(ParseError::NoInstruction);
            }
            Op::parse_name(&w)
                .or_else(|| w.split_whitespace().next().and_then(Op::parse_name))
                .or_else(|| w.starts_with("no change").then_some(Op::Retain))
                .ok_or(ParseError::BadInstruction(w))?
        }
    };
    Ok((op, explanation(text, i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(t: &str) -> Vec<String> {
        parse_interests(t, Finish::Stop, 10, &[]).unwrap().interests
    }

    fn err(t: &str) -> ParseError {
        parse_interests(t, Finish::Stop, 10, &[]).unwrap_err()
    }

    #[test]
    fn interest_list_formats() {
        assert_eq!(
            ok("Explanation: likes action.\nFinal interests:\n1. Action films\n2) Crime dramas"),
            vec!["Action films", "Crime dramas"]
        );
        assert_eq!(
            ok("Final interests: Interest 1: Action films. Interest 2: Sci-fi adventures"),
            vec!["Action films", "Sci-fi adventures"]
        );
        assert_eq!(
            ok("**Final Interests:**\n- **Romance**\n- Comedies\n\nNote: nothing else"),
            vec!["Romance", "Comedies"]
        );
        assert_eq!(
            ok("Final interests: westerns; war films"),
            vec!["westerns", "war films"]
        );
        assert_eq!(
            ok("Interest 1: thrillers\nInterest 2: horror"),
            vec!["thrillers", "horror"]
        );
        let p = parse_interests(
            "Explanation: mostly dramas\nFinal interests:\n1. Drama",
            Finish::Stop,
            10,
            &[],
        )
        .unwrap();
        assert_eq!(p.explanation, "mostly dramas");
        let (_, why) = parse_instruction("Explanation: [new genre]\nInstruction: [3]").unwrap();
        assert_eq!(why, "new genre");
        let (_, why) = parse_instruction("Explanation: [tag] kept.\nInstruction: 4").unwrap();
        assert_eq!(why, "[tag] kept.");
    }

    /// Regression: SmolLM2-135M's answer to the paper's stage-1 prompt.
    #[test]
    fn degenerate_label_list_is_a_failure() {
        let e =
            err("Explanation:\n Final interests: Interest 1: Interest 2: Interest 3: Interest 4:");
        assert!(matches!(e, ParseError::Degenerate(_)), "{e:?}");
        let e = err("Final interests:\nInterest 1:\nInterest 2:\nInterest 3:");
        assert!(matches!(e, ParseError::Degenerate(_)), "{e:?}");
        assert_eq!(err("   "), ParseError::Empty);
        assert_eq!(
            err("I think the user likes movies."),
            ParseError::NoInterests
        );
        let rep = format!("Final interests:\n{}", "1. Drama\n".repeat(8) + "2. War\n");
        assert!(matches!(err(&rep), ParseError::Degenerate(_)));
        let ex = vec!["Animated family films".to_string(), "Musicals".to_string()];
        let e = parse_interests(
            "Final interests:\n1. Animated family films\n2. Musicals\n3. Comedy",
            Finish::Stop,
            10,
            &ex,
        )
        .unwrap_err();
        assert!(matches!(e, ParseError::Degenerate(_)));
    }

    #[test]
    fn unlabelled_lists_and_echoed_history() {
        assert_eq!(
            ok("Explanation: The user's interests are:\n1. Westerns\n2. War films"),
            vec!["Westerns", "War films"]
        );
        let e = err("Final interests:\n1. No.1 Title: Heat (1995)\n2. Title: Casino (1995)");
        assert!(matches!(e, ParseError::Degenerate(_)), "{e:?}");
    }

    #[test]
    fn truncated_and_enormous_answers() {
        let p = parse_interests(
            "Final interests:\n1. Drama\n2. Come",
            Finish::Length,
            10,
            &[],
        )
        .unwrap();
        assert_eq!(p.interests, vec!["Drama"]);
        assert_eq!(
            parse_interests("Explanation: the user likes", Finish::Length, 10, &[]).unwrap_err(),
            ParseError::NoInterests
        );
        assert_eq!(
            parse_interests("Final interests:\n1.", Finish::Length, 10, &[]).unwrap_err(),
            ParseError::Truncated
        );
        let big: String = (0..5000)
            .map(|i| format!("{}. topic number {i}\n", i + 1))
            .collect();
        let p =
            parse_interests(&format!("Final interests:\n{big}"), Finish::Stop, 10, &[]).unwrap();
        assert_eq!(p.interests.len(), 10);
        let long = "x".repeat(100_000);
        let p =
            parse_interests(&format!("Final interests: a{long}"), Finish::Stop, 10, &[]).unwrap();
        assert_eq!(p.interests[0].chars().count(), MAX_INTEREST_CHARS);
    }

    /// Constrained answers (the schemas' JSON) parse like text ones.
    #[test]
    fn json_answers() {
        let p = parse_interests(
            "{\n  \"explanation\": \"Mostly **dramas**.\",\n  \"interests\": [\"1. Drama films\", \"Thrillers.\"]\n}",
            Finish::Stop,
            10,
            &[],
        )
        .unwrap();
        assert_eq!(p.interests, vec!["Drama films", "Thrillers"]);
        assert_eq!(p.explanation, "Mostly dramas.");
        assert_eq!(
            parse_instruction("{\"explanation\": \"new genre\", \"instruction\": 3}").unwrap(),
            (Op::Add, "new genre".to_string())
        );
        assert_eq!(
            parse_instruction("{\"instruction\": \"retain\"}")
                .unwrap()
                .0,
            Op::Retain
        );
        assert_eq!(
            parse_instruction("{\"explanation\": \"x\", \"instruction\": 9}"),
            Err(ParseError::BadInstruction("9".into()))
        );
        // Cut by max_tokens inside the list: the complete entries are kept.
        let cut = "{\"explanation\": \"a\", \"interests\": [\"Drama\", \"Film noir\", \"Wes";
        assert_eq!(
            parse_interests(cut, Finish::Length, 10, &[])
                .unwrap()
                .interests,
            vec!["Drama", "Film noir"]
        );
        let cut = "{\"explanation\": \"a\", \"interests\": [\"Wes";
        assert_eq!(
            parse_interests(cut, Finish::Length, 10, &[]).unwrap_err(),
            ParseError::Truncated
        );
        // The same checks as for text: repeats, the worked example.
        let rep = format!(
            "{{\"explanation\": \"\", \"interests\": [{}\"War\"]}}",
            "\"Drama\", ".repeat(8)
        );
        assert!(matches!(err(&rep), ParseError::Degenerate(_)));
        let ex = vec!["Musicals".to_string()];
        let e = parse_interests(
            "{\"explanation\": \"\", \"interests\": [\"Musicals\"]}",
            Finish::Stop,
            10,
            &ex,
        )
        .unwrap_err();
        assert!(matches!(e, ParseError::Degenerate(_)), "{e:?}");
    }

    /// Valid JSON of the wrong shape is a recorded failure, never interests.
    #[test]
    fn json_of_the_wrong_shape_is_unusable() {
        assert_eq!(err("{\"answer\": \"Drama\"}"), ParseError::NoInterests);
        assert_eq!(
            err("{\"explanation\": \"x\", \"interests\": \"Drama, Comedy\"}"),
            ParseError::NoInterests
        );
        assert_eq!(err("{\"interests\": []}"), ParseError::NoInterests);
        assert_eq!(err("[\"Drama\", \"Comedy\"]"), ParseError::NoInterests);
        assert_eq!(
            parse_instruction("{\"explanation\": \"x\", \"operation\": 3}"),
            Err(ParseError::NoInstruction)
        );
        assert!(parse_instruction("{\"instruction\": [3]}").is_err());
    }

    #[test]
    fn schemas_name_the_allowed_operations_and_the_list_bound() {
        let s = selection_schema(&[Op::Delete, Op::Retain]).schema;
        assert_eq!(s["properties"]["instruction"]["enum"], json!([1, 4]));
        assert_eq!(s["required"], json!(["explanation", "instruction"]));
        let s = interests_schema(7).schema;
        assert_eq!(s["properties"]["interests"]["maxItems"], json!(7));
        assert_eq!(s["additionalProperties"], json!(false));
    }

    #[test]
    fn instructions() {
        assert_eq!(
            parse_instruction("Explanation: new genre.\nInstruction: 3").unwrap(),
            (Op::Add, "new genre.".to_string())
        );
        assert_eq!(parse_instruction("Instruction:[1]").unwrap().0, Op::Delete);
        assert_eq!(
            parse_instruction("**Instruction:** 2").unwrap().0,
            Op::Update
        );
        assert_eq!(
            parse_instruction("Instruction: no change").unwrap().0,
            Op::Retain
        );
        assert_eq!(
            parse_instruction("instruction = addition").unwrap().0,
            Op::Add
        );
        assert_eq!(
            parse_instruction("Explanation: add thrillers"),
            Err(ParseError::NoInstruction)
        );
        assert_eq!(
            parse_instruction("Instruction: 7"),
            Err(ParseError::BadInstruction("7".into()))
        );
        assert_eq!(
            parse_instruction("Instruction: 12"),
            Err(ParseError::BadInstruction("12".into()))
        );
        assert_eq!(parse_instruction(""), Err(ParseError::Empty));
        assert!(parse_instruction("Instruction:").is_err());
    }
}
