//! Prompt sets (`configs/prompts/*.toml`) and the small template language.
//!
//! A prompt set holds the paper's four prompt families (appendix A, Figure 4):
//! the user-history line, stage-1 interest reasoning, drift selection
//! (1 delete / 2 modify / 3 add / 4 retain) and the four edit prompts, plus the
//! two comparisons (recursive summary, one-call CoT). Placeholders are
//! `{name}`; `{{` and `}}` are literal braces. Unknown placeholders are
//! rejected when the set is loaded, never when the 10,000th user is rendered.
//!
//! Order matters for servers' prefix caches: every request starts with the
//! same system message and the instruction text comes before the user's
//! history, and an edit request continues the selection conversation, so it
//! shares that whole prefix.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{HsuError, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSet {
    pub name: String,
    /// The shared first message of every request.
    pub system: String,
    /// One history line: `{order}` (1-based within the stage), `{item}`.
    pub history_line: String,
    /// Stage 1: `{history}`.
    pub reason: String,
    /// Stage ≥ 2 drift selection: `{history}`, `{previous_interests}`.
    pub select: String,
    /// Edit prompts, sent as the next turn after the selection answer.
    pub add: String,
    pub delete: String,
    pub update: String,
    pub retain: String,
    /// "w/o Interest Updater": `{history}`, `{previous_interests}`.
    pub recursive: String,
    /// One-call chain-of-thought summary of the whole history: `{history}`.
    pub cot: String,
    /// Interests of a worked example in the prompts: an answer that repeats
    /// them copied the example and is treated as unusable.
    #[serde(default)]
    pub example_interests: Vec<String>,
    /// Worked examples sent as earlier chat turns (user: the prompt rendered
    /// with the example's history, assistant: the example's answer) before
    /// the real input. Small models follow a turn-level example far better
    /// than one embedded in the instructions, and the examples stay part of
    /// the shared prefix.
    #[serde(default)]
    pub examples: Vec<Example>,
}

/// One worked example for a prompt family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    pub prompt: ExampleFor,
    /// History lines as the prompt would show them.
    pub history: String,
    #[serde(default)]
    pub previous_interests: String,
    pub answer: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExampleFor {
    Reason,
    Select,
    Recursive,
    Cot,
}

const HISTORY: &[&str] = &["history"];
const HISTORY_PREV: &[&str] = &["history", "previous_interests"];
const EDIT: &[&str] = &["previous_interests"];

impl PromptSet {
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let set: PromptSet = toml::from_str(text).map_err(|e| HsuError::Template {
            file: origin.to_string(),
            message: e.to_string(),
        })?;
        set.validate(origin)?;
        Ok(set)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| HsuError::io(path, e))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The paper's prompts as shipped in `configs/prompts/paper.toml`.
    pub fn builtin_paper() -> Self {
        Self::parse(
            include_str!("../../../configs/prompts/paper.toml"),
            "paper.toml",
        )
        .expect("the shipped paper prompt set is valid")
    }

    /// The small-model variant (one worked example), `configs/prompts/small.toml`.
    pub fn builtin_small() -> Self {
        Self::parse(
            include_str!("../../../configs/prompts/small.toml"),
            "small.toml",
        )
        .expect("the shipped small prompt set is valid")
    }

    fn validate(&self, origin: &str) -> Result<()> {
        let check = |field: &str, t: &str, allowed: &[&str], required: &[&str]| {
            let names = placeholders(t).map_err(|m| HsuError::Template {
                file: origin.to_string(),
                message: format!("`{field}`: {m}"),
            })?;
            for n in &names {
                if !allowed.contains(&n.as_str()) {
                    return Err(HsuError::Template {
                        file: origin.to_string(),
                        message: format!(
                            "`{field}` uses unknown placeholder {{{n}}}; allowed: {}",
                            allowed
                                .iter()
                                .map(|a| format!("{{{a}}}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
            }
            for r in required {
                if !names.iter().any(|n| n == r) {
                    return Err(HsuError::Template {
                        file: origin.to_string(),
                        message: format!("`{field}` must contain {{{r}}}"),
                    });
                }
            }
            Ok(())
        };
        check("system", &self.system, &[], &[])?;
        check(
            "history_line",
            &self.history_line,
            &["order", "item"],
            &["item"],
        )?;
        check("reason", &self.reason, HISTORY, HISTORY)?;
        check("select", &self.select, HISTORY_PREV, HISTORY_PREV)?;
        for (f, t) in [
            ("add", &self.add),
            ("delete", &self.delete),
            ("update", &self.update),
            ("retain", &self.retain),
        ] {
            check(f, t, EDIT, &[])?;
        }
        check("recursive", &self.recursive, HISTORY_PREV, HISTORY_PREV)?;
        check("cot", &self.cot, HISTORY, HISTORY)?;
        Ok(())
    }

    /// The example turns for a prompt family (user, assistant pairs).
    pub fn example_turns(&self, kind: ExampleFor, template: &str) -> Vec<(String, String)> {
        self.examples
            .iter()
            .filter(|e| e.prompt == kind)
            .map(|e| {
                let user = render(
                    template,
                    &[
                        ("history", e.history.trim()),
                        ("previous_interests", e.previous_interests.trim()),
                    ],
                );
                (user.trim().to_string(), e.answer.trim().to_string())
            })
            .collect()
    }

    /// The numbered history block of a stage, from rendered item texts.
    pub fn history(&self, items: &[String]) -> String {
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                render(
                    &self.history_line,
                    &[("order", &(i + 1).to_string()), ("item", item)],
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The previous interests as the prompts show them.
pub fn interest_list(interests: &[String]) -> String {
    if interests.is_empty() {
        return "(none)".into();
    }
    interests
        .iter()
        .enumerate()
        .map(|(i, x)| format!("{}. {x}", i + 1))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The placeholder names in a template, or why it is malformed.
pub fn placeholders(t: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = t.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|p| p.1) == Some('{') => {
                chars.next();
            }
            '}' if chars.peek().map(|p| p.1) == Some('}') => {
                chars.next();
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some((_, '}')) => break,
                        Some((_, ch)) if ch.is_ascii_alphanumeric() || ch == '_' => name.push(ch),
                        _ => return Err(format!("unclosed or invalid placeholder at byte {i}")),
                    }
                }
                if name.is_empty() {
                    return Err(format!("empty placeholder {{}} at byte {i}"));
                }
                out.push(name);
            }
            '}' => return Err(format!("stray '}}' at byte {i} (write '}}}}' for a brace)")),
            _ => {}
        }
    }
    Ok(out)
}

/// Fills `{name}` placeholders (validated templates only; unknown names stay empty).
pub fn render(t: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(t.len() + 64);
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let name: String = chars.by_ref().take_while(|&ch| ch != '}').collect();
                if let Some((_, v)) = vars.iter().find(|(n, _)| *n == name) {
                    out.push_str(v);
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The dataset's item template (`[text] template`) for HSU prompts.
///
/// Rendering is the text crate's ([`hsuga_text::item_text`]): the same
/// clause rules for missing fields and the same `"item <raw id>"` fallback
/// as the embedder, so the LLM reads exactly the text that is embedded
/// (issue 15: a second renderer here rendered missing fields differently).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemTemplate {
    template: hsuga_text::Template,
}

impl ItemTemplate {
    /// The dataset's `[text] template`, or its title alone when the config
    /// has none (the one attribute every item table carries).
    pub fn for_dataset(cfg: &hsuga_data::DatasetConfig) -> Result<Self> {
        Self::new(
            cfg.text
                .as_ref()
                .map(|t| t.template.as_str())
                .unwrap_or("Title: {title}"),
        )
    }

    pub fn new(template: &str) -> Result<Self> {
        let template = hsuga_text::Template::parse(template).map_err(|e| HsuError::Template {
            file: "dataset [text] template".into(),
            message: e.to_string(),
        })?;
        Ok(Self { template })
    }

    /// The text crate's template.
    pub fn template(&self) -> &hsuga_text::Template {
        &self.template
    }

    /// Item `item` (1-based) of `dataset`, as the embedder sees it.
    pub fn render(&self, dataset: &hsuga_data::Dataset, item: u32) -> String {
        hsuga_text::item_text(dataset, item, &self.template)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_escapes() {
        assert_eq!(placeholders("a {x} {{y}} {z_1}").unwrap(), vec!["x", "z_1"]);
        assert!(placeholders("a {x").is_err());
        assert!(placeholders("a }").is_err());
        assert!(placeholders("{}").is_err());
        assert_eq!(render("{a}-{{b}}-{c}", &[("a", "1")]), "1-{b}-");
    }

    #[test]
    fn shipped_sets_are_valid() {
        let p = PromptSet::builtin_paper();
        assert_eq!(p.name, "paper");
        let s = PromptSet::builtin_small();
        assert!(!s.example_interests.is_empty());
        // The shared instruction comes first: history is near the end.
        assert!(p.select.find("{history}").unwrap() > p.select.len() / 3);
    }

    #[test]
    fn unknown_placeholder_is_rejected_at_load() {
        let mut text = include_str!("../../../configs/prompts/paper.toml").to_string();
        text = text.replacen("stage.\n{history}", "stage.\n{user_history}", 1);
        let e = PromptSet::parse(&text, "p.toml").unwrap_err().to_string();
        assert!(e.contains("user_history"), "{e}");
        assert!(ItemTemplate::new("{title} {rating}").is_err());
    }

    #[test]
    fn history_block() {
        let p = PromptSet::builtin_paper();
        assert_eq!(p.history(&["a".into(), "b".into()]), "No.1 a\nNo.2 b");
    }
}
