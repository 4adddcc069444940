//! An LLM-free, deterministic interest editor — an **approximation** of HSU.
//!
//! It reads the structured [`TaskHint`] of a request (never the prompt text)
//! and applies the paper's four operations to "facets" of the stage's items:
//! genres, categories and tags, or title keywords for items with neither.
//! Its answers use the exact format an LLM is asked for, so the engine's
//! parsing, storage and statistics run unchanged; every explanation starts
//! with [`APPROXIMATION_TAG`] and its back-end id says `rules`.
//!
//! Thresholds (all in [`RulesConfig`]):
//! - a facet is a *stage interest* when it covers at least `min_share` of the
//!   stage's items (if none does, the most frequent facet is taken);
//! - selection: no stage interests → retain; no overlap with the previous
//!   interests → delete (the paper's "complete conflict: output current
//!   ones"); new stage interests → add; same set but a different leading
//!   interest → update (re-rank); otherwise retain. A disallowed choice (an
//!   ablation) falls back to retain, update, add, delete in that order;
//! - at most `max_interests` interests are kept.

use std::collections::HashMap;

use hsuga_data::ItemAttrs;
use serde::{Deserialize, Serialize};

use crate::{
    BackendId, ChatBackend, ChatRequest, ChatResponse, Finish, LlmError, Op, TaskHint, Usage,
    estimate_tokens,
};

/// Printed at the start of every explanation the rules editor writes.
pub const APPROXIMATION_TAG: &str = "[rules approximation, no LLM]";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Share of a stage's items a facet must cover to count as an interest.
    pub min_share: f64,
    /// Most interests kept.
    pub max_interests: usize,
    /// Title keywords taken per item when it has no genres/categories/tags.
    pub keywords_per_item: usize,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            min_share: 0.3,
            max_interests: 5,
            keywords_per_item: 2,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RulesEditor {
    pub cfg: RulesConfig,
}

impl RulesEditor {
    pub fn new(cfg: RulesConfig) -> Self {
        Self { cfg }
    }

    /// The stage's interests, most frequent first.
    pub fn stage_interests(&self, items: &[ItemAttrs]) -> Vec<String> {
        let mut count: HashMap<String, (usize, usize)> = HashMap::new(); // facet -> (count, first seen)
        let mut order = 0;
        for item in items {
            let mut facets = facets(item, self.cfg.keywords_per_item);
            facets.sort();
            facets.dedup();
            for f in facets {
                let e = count.entry(f).or_insert((0, order));
                e.0 += 1;
                order += 1;
            }
        }
        let mut ranked: Vec<(String, usize, usize)> =
            count.into_iter().map(|(f, (c, o))| (f, c, o)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)).then(a.0.cmp(&b.0)));
        let need = (self.cfg.min_share * items.len() as f64).ceil().max(1.0) as usize;
        let mut out: Vec<String> = ranked
            .iter()
            .filter(|(_, c, _)| *c >= need)
            .map(|(f, _, _)| f.clone())
            .collect();
        if out.is_empty()
            && let Some((f, _, _)) = ranked.first()
        {
            out.push(f.clone());
        }
        out.truncate(self.cfg.max_interests);
        out
    }

    /// The operation the thresholds choose, before ablation fall-backs.
    pub fn choose(&self, current: &[String], previous: &[String]) -> Op {
        if current.is_empty() {
            return Op::Retain;
        }
        let overlap = current.iter().filter(|c| contains(previous, c)).count();
        if overlap == 0 {
            Op::Delete
        } else if overlap < current.len() {
            Op::Add
        } else if previous
            .first()
            .is_some_and(|p| !p.eq_ignore_ascii_case(&current[0]))
        {
            Op::Update
        } else {
            Op::Retain
        }
    }

    pub fn apply(&self, op: Op, current: &[String], previous: &[String]) -> Vec<String> {
        let mut out: Vec<String> = match op {
            Op::Retain => previous.to_vec(),
            Op::Add => {
                let mut v = previous.to_vec();
                v.extend(current.iter().filter(|c| !contains(previous, c)).cloned());
                v
            }
            Op::Delete => {
                let kept: Vec<String> = previous
                    .iter()
                    .filter(|p| contains(current, p))
                    .cloned()
                    .collect();
                if kept.is_empty() {
                    current.to_vec()
                } else {
                    kept
                }
            }
            Op::Update => {
                let mut v: Vec<String> = current
                    .iter()
                    .filter(|c| contains(previous, c))
                    .cloned()
                    .collect();
                v.extend(previous.iter().filter(|p| !contains(current, p)).cloned());
                v
            }
        };
        out.truncate(self.cfg.max_interests);
        out
    }

    fn answer(&self, hint: &TaskHint) -> String {
        match hint {
            TaskHint::Reason { items } => {
                let cur = self.stage_interests(items);
                final_answer(
                    &format!(
                        "the most frequent attributes of the stage's {} item(s)",
                        items.len()
                    ),
                    &cur,
                )
            }
            TaskHint::Select {
                items,
                previous,
                allowed,
            } => {
                let cur = self.stage_interests(items);
                let mut op = self.choose(&cur, previous);
                if !allowed.contains(&op) {
                    op = [Op::Retain, Op::Update, Op::Add, Op::Delete]
                        .into_iter()
                        .find(|o| allowed.contains(o))
                        .unwrap_or(op);
                }
                format!(
                    "Explanation: {APPROXIMATION_TAG} stage interests [{}] vs previous [{}].\nInstruction: {}",
                    cur.join("; "),
                    previous.join("; "),
                    op.number()
                )
            }
            TaskHint::Execute {
                op,
                items,
                previous,
            } => {
                let cur = self.stage_interests(items);
                final_answer(
                    &format!("{op} applied to the previous interests"),
                    &self.apply(*op, &cur, previous),
                )
            }
            TaskHint::Summarise { items, previous } => {
                let cur = self.stage_interests(items);
                let mut v = cur.clone();
                v.extend(previous.iter().filter(|p| !contains(&cur, p)).cloned());
                v.truncate(self.cfg.max_interests);
                final_answer("stage interests merged with the previous ones", &v)
            }
        }
    }
}

fn final_answer(why: &str, interests: &[String]) -> String {
    let mut s = format!("Explanation: {APPROXIMATION_TAG} {why}.\nFinal interests:\n");
    if interests.is_empty() {
        s.push_str("none\n");
    }
    for (i, x) in interests.iter().enumerate() {
        s.push_str(&format!("{}. {x}\n", i + 1));
    }
    s
}

fn contains(list: &[String], x: &str) -> bool {
    list.iter().any(|l| l.eq_ignore_ascii_case(x))
}

const STOPWORDS: &[&str] = &[
    "the", "and", "for", "with", "from", "this", "that", "your", "into", "over", "under",
    "edition", "pack", "piece", "set", "size", "women", "womens", "men", "mens", "inch", "new",
];

/// An item's facets: genres, categories and tags; title keywords when none.
pub fn facets(item: &ItemAttrs, keywords: usize) -> Vec<String> {
    let mut out: Vec<String> = item
        .genres
        .iter()
        .chain(&item.categories)
        .chain(item.tags.iter().take(3))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if out.is_empty()
        && let Some(title) = &item.title
    {
        out.extend(
            title
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| w.chars().count() >= 4 && w.chars().all(char::is_alphabetic))
                .map(str::to_lowercase)
                .filter(|w| !STOPWORDS.contains(&w.as_str()))
                .take(keywords),
        );
    }
    out
}

impl ChatBackend for RulesEditor {
    fn id(&self) -> BackendId {
        BackendId {
            backend: "rules".into(),
            model: "rules-approximation-v1".into(),
        }
    }

    fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let hint = req.hint.as_ref().ok_or_else(|| {
            LlmError::Config(
                "the rules editor needs a structured task hint; it cannot answer free-form prompts"
                    .into(),
            )
        })?;
        let text = self.answer(hint);
        Ok(ChatResponse {
            usage: Usage {
                prompt_tokens: req
                    .messages
                    .iter()
                    .map(|m| estimate_tokens(&m.content))
                    .sum(),
                completion_tokens: estimate_tokens(&text),
                estimated: true,
            },
            text,
            finish: Finish::Stop,
            latency: std::time::Duration::ZERO,
            hidden_mean: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(genres: &[&str]) -> ItemAttrs {
        ItemAttrs {
            genres: genres.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn stage_interests_by_share() {
        let r = RulesEditor::default();
        let items = vec![
            item(&["Drama", "Romance"]),
            item(&["Drama"]),
            item(&["Comedy"]),
            item(&["Drama", "Comedy"]),
        ];
        assert_eq!(r.stage_interests(&items), s(&["Drama", "Comedy"]));
        // nothing reaches the share: the most frequent (first seen) is kept
        let items = vec![item(&["A"]), item(&["B"]), item(&["C"]), item(&["D"])];
        assert_eq!(r.stage_interests(&items), s(&["A"]));
        assert!(r.stage_interests(&[ItemAttrs::default()]).is_empty());
    }

    #[test]
    fn four_operations() {
        let r = RulesEditor::default();
        let prev = s(&["Drama", "Comedy"]);
        assert_eq!(r.choose(&s(&["Horror"]), &prev), Op::Delete);
        assert_eq!(r.apply(Op::Delete, &s(&["Horror"]), &prev), s(&["Horror"]));
        assert_eq!(r.choose(&s(&["Drama", "War"]), &prev), Op::Add);
        assert_eq!(
            r.apply(Op::Add, &s(&["Drama", "War"]), &prev),
            s(&["Drama", "Comedy", "War"])
        );
        assert_eq!(r.choose(&s(&["Comedy"]), &prev), Op::Update);
        assert_eq!(
            r.apply(Op::Update, &s(&["Comedy"]), &prev),
            s(&["Comedy", "Drama"])
        );
        assert_eq!(r.choose(&s(&["Drama"]), &prev), Op::Retain);
        assert_eq!(r.choose(&[], &prev), Op::Retain);
        assert_eq!(r.apply(Op::Delete, &s(&["Drama"]), &prev), s(&["Drama"]));
    }

    #[test]
    fn answers_are_labelled_and_respect_ablations() {
        let r = RulesEditor::default();
        let mut req = ChatRequest::new(vec![]);
        req.hint = Some(TaskHint::Select {
            items: vec![item(&["Horror"])],
            previous: s(&["Drama"]),
            allowed: vec![Op::Add, Op::Update, Op::Retain],
        });
        let a = r.chat(&req).unwrap().text;
        assert!(a.contains(APPROXIMATION_TAG), "{a}");
        assert!(a.ends_with("Instruction: 4"), "{a}");
        req.hint = None;
        assert!(r.chat(&req).is_err());
    }

    #[test]
    fn title_keywords_without_genres() {
        let it = ItemAttrs {
            title: Some("Chunky Tribal Necklace for Women".into()),
            ..Default::default()
        };
        assert_eq!(facets(&it, 2), s(&["chunky", "tribal"]));
    }
}
