//! Item text templates: how an item's attributes become one line of text for
//! embedders and prompts (the paper's Figure 4a).
//!
//! # The template language
//!
//! A template is literal text with placeholders in braces; the placeholders are
//! the [`ItemAttrs`] field names: `{title}`, `{year}`, `{brand}` (single
//! values) and `{genres}`, `{categories}`, `{specs}`, `{tags}` (lists, joined
//! with `", "`). `{{` and `}}` are literal braces. An unknown placeholder or an
//! unbalanced brace is an error when the template is parsed (that is, when the
//! dataset config is loaded), never when an item is rendered.
//!
//! # Missing fields
//!
//! A template is cut into *clauses*, one per placeholder: the literal text
//! before the placeholder (back to the previous clause) plus closing
//! punctuation right after it (`)`, `]`, `"`, `'`). A clause whose field is
//! missing or empty is left out whole, so `"Title: {title} ({year}), genres:
//! {genres}"` renders an item without a year as `"Title: Heat, genres:
//! Action"` rather than `"Title: Heat (), genres: Action"`. Separators left
//! dangling at the start of the result (`,`, `;`, spaces) are trimmed. An item
//! with no field that the template uses renders as the empty string; callers
//! decide what to do with it (see [`render_items`]).

use std::fmt;

use hsuga_data::ItemAttrs;
use sha2::{Digest, Sha256};

use crate::error::{Result, TextError};

/// One [`ItemAttrs`] field that a template may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Title,
    Year,
    Brand,
    Genres,
    Categories,
    Specs,
    Tags,
}

impl Field {
    /// Every field, in declaration order.
    pub const ALL: [Field; 7] = [
        Field::Title,
        Field::Year,
        Field::Brand,
        Field::Genres,
        Field::Categories,
        Field::Specs,
        Field::Tags,
    ];

    /// The placeholder name (the `ItemAttrs` field name).
    pub fn name(self) -> &'static str {
        match self {
            Field::Title => "title",
            Field::Year => "year",
            Field::Brand => "brand",
            Field::Genres => "genres",
            Field::Categories => "categories",
            Field::Specs => "specs",
            Field::Tags => "tags",
        }
    }

    fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The field's text for one item; `None` when missing or blank.
    pub fn value(self, attrs: &ItemAttrs) -> Option<String> {
        let single = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let list = |v: &[String]| {
            let parts: Vec<&str> = v
                .iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .collect();
            (!parts.is_empty()).then(|| parts.join(", "))
        };
        match self {
            Field::Title => single(&attrs.title),
            Field::Year => single(&attrs.year),
            Field::Brand => single(&attrs.brand),
            Field::Genres => list(&attrs.genres),
            Field::Categories => list(&attrs.categories),
            Field::Specs => list(&attrs.specs),
            Field::Tags => list(&attrs.tags),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A clause: literal text, an optional field, and literal text after it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    before: String,
    field: Option<Field>,
    after: String,
}

/// A parsed, validated item template. Build with [`Template::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    clauses: Vec<Clause>,
}

/// Closing punctuation that stays with the placeholder before it.
const CLOSERS: &[char] = &[')', ']', '"', '\''];

impl Template {
    /// Parses a template; unknown placeholders and stray braces are errors.
    pub fn parse(source: &str) -> Result<Self> {
        let bad = |msg: String| TextError::Template {
            template: source.to_string(),
            msg,
        };
        // Tokenise into literal runs and placeholders.
        let mut pieces: Vec<(String, Option<Field>)> = Vec::new();
        let mut lit = String::new();
        let mut chars = source.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, n)| n) == Some('{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek().map(|&(_, n)| n) == Some('}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '}')) => break,
                            Some((_, ch)) => name.push(ch),
                            None => return Err(bad(format!("unclosed '{{' at byte {at}"))),
                        }
                    }
                    let field = Field::from_name(name.trim()).ok_or_else(|| {
                        let known: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
                        bad(format!(
                            "unknown placeholder {{{name}}}; known: {}",
                            known.join(", ")
                        ))
                    })?;
                    pieces.push((std::mem::take(&mut lit), Some(field)));
                }
                '}' => return Err(bad(format!("stray '}}' at byte {at} (write '}}}}')"))),
                _ => lit.push(c),
            }
        }
        if pieces.is_empty() {
            return Err(bad(
                "no placeholder: every item would render the same".into()
            ));
        }
        // Closing punctuation right after a placeholder belongs to its clause.
        let mut clauses: Vec<Clause> = Vec::with_capacity(pieces.len() + 1);
        for (before, field) in pieces {
            let mut before = before;
            if let Some(prev) = clauses.last_mut() {
                let closers = before.len() - before.trim_start_matches(CLOSERS).len();
                prev.after = before[..closers].to_string();
                before = before[closers..].to_string();
            }
            clauses.push(Clause {
                before,
                field,
                after: String::new(),
            });
        }
        let tail = lit;
        let closers = tail.len() - tail.trim_start_matches(CLOSERS).len();
        if let Some(prev) = clauses.last_mut() {
            prev.after = tail[..closers].to_string();
        }
        let rest = &tail[closers..];
        if !rest.is_empty() {
            clauses.push(Clause {
                before: rest.to_string(),
                field: None,
                after: String::new(),
            });
        }
        Ok(Self {
            source: source.to_string(),
            clauses,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The fields the template uses, in order of appearance.
    pub fn fields(&self) -> Vec<Field> {
        self.clauses.iter().filter_map(|c| c.field).collect()
    }

    /// Hex sha256 of the template source (part of the embedding store's key).
    pub fn hash(&self) -> String {
        hex(&Sha256::digest(self.source.as_bytes()))
    }

    /// Renders one item; see the module docs for missing fields.
    pub fn render(&self, attrs: &ItemAttrs) -> String {
        let mut out = String::new();
        let mut any = false;
        for clause in &self.clauses {
            match clause.field {
                Some(field) => {
                    if let Some(v) = field.value(attrs) {
                        out.push_str(&clause.before);
                        out.push_str(&v);
                        out.push_str(&clause.after);
                        any = true;
                    }
                }
                // Trailing literal text is kept only after some field.
                None if any => out.push_str(&clause.before),
                None => {}
            }
        }
        if !any {
            return String::new();
        }
        out.trim_start_matches(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '|'))
            .trim_end()
            .to_string()
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for Template {
    type Err = TextError;
    fn from_str(s: &str) -> Result<Self> {
        Template::parse(s)
    }
}

/// The template of a dataset config's `[text]` section, parsed and checked.
pub fn template_for(cfg: &hsuga_data::DatasetConfig) -> Result<Template> {
    let text = cfg.text.as_ref().ok_or_else(|| TextError::NoTemplate {
        dataset: cfg.name.clone(),
    })?;
    Template::parse(&text.template)
}

/// Renders one item with a template (shorthand for [`Template::render`]).
pub fn render_item(attrs: &ItemAttrs, template: &Template) -> String {
    template.render(attrs)
}

/// The rendered text of every item of a dataset, item `i` at index `i - 1`.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemTexts {
    pub texts: Vec<String>,
    /// 1-based ids of the items that rendered empty and got the fallback text.
    pub fallback_items: Vec<u32>,
}

/// Renders every item of a dataset for embedding.
///
/// Items whose template fields are all missing get the fallback text
/// `"item <raw id>"` (so each still gets its own, distinct vector) and are
/// listed in [`ItemTexts::fallback_items`] — never dropped. A dataset with no
/// item table at all is an error ([`TextError::NoItemText`]): semantic methods
/// cannot run on it.
pub fn render_items(dataset: &hsuga_data::Dataset, template: &Template) -> Result<ItemTexts> {
    require_item_text(dataset)?;
    let mut texts = Vec::with_capacity(dataset.num_items as usize);
    let mut fallback_items = Vec::new();
    for item in 1..=dataset.num_items {
        let (text, fallback) = item_text_or_fallback(dataset, item, template);
        if fallback {
            fallback_items.push(item);
        }
        texts.push(text);
    }
    if !fallback_items.is_empty() {
        tracing::warn!(
            dataset = %dataset.name,
            items = fallback_items.len(),
            "items without any template field; embedded as \"item <raw id>\""
        );
    }
    Ok(ItemTexts {
        texts,
        fallback_items,
    })
}

/// The text of one item (1-based id) exactly as [`render_items`] gives it to
/// the embedder: the template's rendering, or `"item <raw id>"` when no field
/// the template uses is present. HSU prompts show items through this same
/// function, so the LLM reads the text the embedder embeds.
pub fn item_text(dataset: &hsuga_data::Dataset, item: u32, template: &Template) -> String {
    item_text_or_fallback(dataset, item, template).0
}

/// [`item_text`], and whether it is the fallback.
fn item_text_or_fallback(
    dataset: &hsuga_data::Dataset,
    item: u32,
    template: &Template,
) -> (String, bool) {
    let text = dataset
        .attrs(item)
        .map(|a| template.render(a))
        .unwrap_or_default();
    if text.trim().is_empty() {
        let raw = (item as usize)
            .checked_sub(1)
            .and_then(|i| dataset.item_ids.get(i))
            .map(String::as_str)
            .unwrap_or("?");
        (format!("item {raw}"), true)
    } else {
        (text, false)
    }
}

/// Fails with a clear message when a dataset carries no item text.
pub fn require_item_text(dataset: &hsuga_data::Dataset) -> Result<()> {
    if dataset.has_item_text() {
        Ok(())
    } else {
        Err(TextError::NoItemText {
            dataset: dataset.name.clone(),
        })
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs() -> ItemAttrs {
        ItemAttrs {
            title: Some("Heat".into()),
            year: Some("1995".into()),
            brand: None,
            genres: vec!["Action".into(), "Crime".into()],
            categories: vec!["Skin Care".into(), "Face".into()],
            specs: vec!["Single-player".into(), "Steam Achievements".into()],
            tags: vec![],
        }
    }

    fn render(t: &str, a: &ItemAttrs) -> String {
        Template::parse(t).unwrap().render(a)
    }

    const ML100K: &str = "Title: {title} ({year}), genres: {genres}";
    const STEAM: &str = "Title: {title}, genres: {genres}, game specs: {specs}";
    const BEAUTY: &str = "title: {title} categories: {categories}";
    const FASHION: &str = "Title: {title}";

    #[test]
    fn renders_each_dataset_template() {
        let a = attrs();
        assert_eq!(
            render(ML100K, &a),
            "Title: Heat (1995), genres: Action, Crime"
        );
        assert_eq!(
            render(STEAM, &a),
            "Title: Heat, genres: Action, Crime, game specs: Single-player, Steam Achievements"
        );
        assert_eq!(
            render(BEAUTY, &a),
            "title: Heat categories: Skin Care, Face"
        );
        assert_eq!(render(FASHION, &a), "Title: Heat");
    }

    #[test]
    fn missing_fields_drop_their_clause() {
        let mut a = attrs();
        a.year = None;
        assert_eq!(render(ML100K, &a), "Title: Heat, genres: Action, Crime");
        a.genres.clear();
        assert_eq!(render(ML100K, &a), "Title: Heat");
        a.categories.clear();
        assert_eq!(render(BEAUTY, &a), "title: Heat");
        let mut b = attrs();
        b.title = None;
        assert_eq!(render(ML100K, &b), "(1995), genres: Action, Crime");
        assert_eq!(
            render(STEAM, &b),
            "genres: Action, Crime, game specs: Single-player, Steam Achievements"
        );
        assert_eq!(render(FASHION, &ItemAttrs::default()), "");
        // Blank strings count as missing.
        let c = ItemAttrs {
            title: Some("  ".into()),
            genres: vec![" ".into()],
            ..Default::default()
        };
        assert_eq!(render(ML100K, &c), "");
    }

    #[test]
    fn trailing_literal_and_braces() {
        let a = attrs();
        assert_eq!(render("{title}.", &a), "Heat.");
        assert_eq!(render("{{{title}}}", &a), "{Heat}");
        assert_eq!(render("\"{title}\" by {brand}", &a), "\"Heat\"");
        assert_eq!(render("{title}.", &ItemAttrs::default()), "");
    }

    #[test]
    fn bad_templates_fail_at_parse() {
        let e = Template::parse("Title: {name}").unwrap_err().to_string();
        assert!(e.contains("unknown placeholder {name}"), "{e}");
        assert!(e.contains("title"), "{e}");
        assert!(Template::parse("Title: {title").is_err());
        assert!(Template::parse("Title: title}").is_err());
        assert!(Template::parse("no placeholder").is_err());
    }

    #[test]
    fn fields_and_hash() {
        let t = Template::parse(ML100K).unwrap();
        assert_eq!(t.fields(), vec![Field::Title, Field::Year, Field::Genres]);
        assert_eq!(t.hash().len(), 64);
        assert_ne!(t.hash(), Template::parse(FASHION).unwrap().hash());
    }
}
