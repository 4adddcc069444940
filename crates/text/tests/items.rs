//! Item texts of the real datasets (configs/datasets/*.toml on ../shared/data)
//! and the item-embedding store end to end, with a cheap deterministic embedder.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use hsuga_data::{DatasetConfig, Prepared, prepare};
use hsuga_text::{
    Outcome, Result, Template, TextEmbedder, TextError, item_embeddings, render_items, template_for,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(name: &str, cache: &Path) -> (DatasetConfig, Prepared) {
    let cfg = DatasetConfig::load(&repo().join(format!("configs/datasets/{name}.toml"))).unwrap();
    let p = prepare(&cfg, cache).unwrap();
    (cfg, p)
}

fn text_of<'a>(p: &Prepared, texts: &'a [String], raw_id: &str) -> &'a str {
    let i = p.dataset.item_ids.iter().position(|r| r == raw_id).unwrap();
    &texts[i]
}

#[test]
fn ml100k_items_render_title_year_genres() {
    let cache = tempfile::tempdir().unwrap();
    let (cfg, p) = load("ml-100k", cache.path());
    let t = template_for(&cfg).unwrap();
    let r = render_items(&p.dataset, &t).unwrap();
    assert_eq!(r.texts.len(), p.dataset.num_items as usize);
    assert_eq!(
        text_of(&p, &r.texts, "1"),
        "Title: Toy Story (1995), genres: Animation, Children's, Comedy"
    );
    assert_eq!(
        text_of(&p, &r.texts, "2"),
        "Title: GoldenEye (1995), genres: Action, Adventure, Thriller"
    );
    // No text is left with an empty clause.
    assert!(
        r.texts
            .iter()
            .all(|s| !s.contains("()") && !s.ends_with(':'))
    );
}

#[test]
fn beauty_items_render_titles_and_fall_back_for_untitled() {
    let cache = tempfile::tempdir().unwrap();
    let (cfg, p) = load("beauty", cache.path());
    let t = template_for(&cfg).unwrap();
    let r = render_items(&p.dataset, &t).unwrap();
    assert_eq!(r.texts.len(), 12101);
    // This copy has no categories: the clause is dropped, titles remain.
    assert!(r.texts.iter().all(|s| !s.contains("categories:")));
    let titled = r.texts.iter().filter(|s| s.starts_with("title: ")).count();
    // SOURCE.txt: 7 products have an empty name; they are kept with a fallback.
    assert_eq!(r.fallback_items.len(), 12101 - titled);
    assert!(r.fallback_items.len() <= 7, "{}", r.fallback_items.len());
    for &i in &r.fallback_items {
        assert!(r.texts[i as usize - 1].starts_with("item "));
    }
}

#[test]
fn datasets_without_item_text_say_so() {
    let cache = tempfile::tempdir().unwrap();
    for name in ["fashion", "steam"] {
        let (cfg, p) = load(name, cache.path());
        let t = template_for(&cfg).unwrap();
        let err = render_items(&p.dataset, &t).unwrap_err();
        assert!(matches!(err, TextError::NoItemText { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(name) && msg.contains("no item text"), "{msg}");
    }
}

/// Deterministic, cheap: character statistics.
struct Chars {
    calls: AtomicUsize,
}
impl TextEmbedder for Chars {
    fn model_id(&self) -> &str {
        "chars"
    }
    fn dim(&self) -> usize {
        4
    }
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        self.calls.fetch_add(texts.len(), Ordering::SeqCst);
        Ok(texts
            .iter()
            .map(|t| {
                let n = t.chars().count() as f32;
                let up = t.chars().filter(|c| c.is_uppercase()).count() as f32;
                let sp = t.chars().filter(|c| *c == ' ').count() as f32;
                vec![n, up, sp, 1.0]
            })
            .collect())
    }
}

#[test]
fn item_store_recomputes_only_on_change() {
    let cache = tempfile::tempdir().unwrap();
    let (cfg, p) = load("ml-100k", cache.path());
    let t = template_for(&cfg).unwrap();
    let e = Chars {
        calls: AtomicUsize::new(0),
    };
    let n = p.dataset.num_items as usize;
    let mut last = 0;
    let a = item_embeddings(&p.dataset, &t, &e, cache.path(), false, &mut |d, total| {
        assert_eq!(total, n);
        last = d;
    })
    .unwrap();
    assert_eq!(a.outcome, Outcome::Computed);
    assert_eq!(last, n);
    assert_eq!((a.embeddings.rows, a.embeddings.dim), (n, 4));
    assert_eq!(e.calls.load(Ordering::SeqCst), n);

    let b = item_embeddings(&p.dataset, &t, &e, cache.path(), false, &mut |_, _| {}).unwrap();
    assert_eq!(b.outcome, Outcome::Loaded);
    assert_eq!(b.embeddings, a.embeddings);
    assert_eq!(e.calls.load(Ordering::SeqCst), n, "nothing recomputed");

    // Another template: recomputed.
    let t2 = Template::parse("Title: {title}").unwrap();
    let c = item_embeddings(&p.dataset, &t2, &e, cache.path(), false, &mut |_, _| {}).unwrap();
    assert_eq!(c.outcome, Outcome::Recomputed);
    assert_eq!(e.calls.load(Ordering::SeqCst), 2 * n);
    // --force recomputes even when valid.
    let d = item_embeddings(&p.dataset, &t2, &e, cache.path(), true, &mut |_, _| {}).unwrap();
    assert_ne!(d.outcome, Outcome::Loaded);
    assert_eq!(e.calls.load(Ordering::SeqCst), 3 * n);
    // The store is where the conventions say, and complete.
    let (m, _) = d.store.open_expecting(4).unwrap();
    assert_eq!(m.key.rows, n);
    assert!(
        d.store
            .dir()
            .starts_with(cache.path().join("embeddings/ml-100k/items"))
    );
}
