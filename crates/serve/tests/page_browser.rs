//! The web page at `/` in a real browser: headless Chromium (Debian's
//! `chromium` package) loads it from a service on loopback that serves a
//! SASRec + HSU fusion run (`rules` back-end) trained here on ML-100K, and
//! the test reads the DOM Chromium renders (`--dump-dom` once the page's
//! requests have settled, `--virtual-time-budget`): the picked user's
//! history with titles, their HSU interest trail stage by stage, their
//! recommendations; then the page adds an interaction (its `add=` link,
//! which runs the Add button's code) and both the history and the
//! recommendations change.
//!
//! No DevTools protocol: the tree has no websocket client, and the page
//! honours `?user=…&add=…#token=…` and marks `body[data-state]` when it has
//! settled, which is all a dump needs. Needs `chromium` on PATH (or
//! `$CHROMIUM`) and MiniLM (`hsuga models fetch all-minilm-l6-v2`); fails,
//! saying how to install it, when Chromium is missing.

mod common;

use common::{models_dir, repo, source};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use hsuga_serve::{BatchConfig, Limits, Options, Run, Service};

const TOKEN: &str = "page-browser-test-token";

/// The browser: `$CHROMIUM`, else the first of Debian's and the usual
/// names on PATH.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "headless Chromium is needed to test the web page and none was found \
         (chromium, chromium-browser or google-chrome on PATH, or $CHROMIUM); \
         install it with: apt-get update && apt-get install -y chromium"
    );
}

fn copy_tree(from: &Path, to: &Path) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    std::fs::create_dir_all(to).unwrap();
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            let _ = std::fs::copy(&p, to.join(e.file_name()));
        }
    }
}

/// A tiny fusion run (hidden 16, max length 20, one epoch) and its cache;
/// the user's MiniLM embedding caches are copied in to spare the catalogue.
fn trained(root: &Path) -> (PathBuf, PathBuf) {
    let cache = root.join("cache");
    let user_cache = std::env::var_os("HSUGA_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/hsuga")));
    if let Some(c) = user_cache {
        copy_tree(
            &c.join("embeddings/ml-100k"),
            &cache.join("embeddings/ml-100k"),
        );
    }
    let dataset = repo().join("configs/datasets/ml-100k.toml");
    let cfg = hsuga_train::RunConfig::from_toml(&format!(
        "name = \"page\"\ndataset = \"{}\"\nout_dir = \"{}\"\n\
         [model]\nhidden = 16\nmax_len = 20\n[train]\nepochs = 1\nprogress = false\n\
         [method]\nfusion = \"gate\"\n\
         [inputs]\nitem_text = \"all-minilm-l6-v2\"\nuser_semantic = {{ hsu = \"rules\" }}\n",
        dataset.display(),
        root.join("runs").display()
    ))
    .unwrap();
    let dirs = hsuga_experiment::InputDirs {
        cache_dir: &cache,
        models_dir: &models_dir(),
        hsu_configs: &repo().join("configs/hsu"),
    };
    let resolve = |entry: &str| Ok(PathBuf::from(entry));
    let report = hsuga_experiment::train_one(&cfg, &dirs, &resolve, Default::default()).unwrap();
    (report.dir, cache)
}

/// The service on 127.0.0.1 (a free port), on a runtime of its own thread.
fn serve(svc: Arc<Service>) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            hsuga_serve::serve(listener, svc, std::future::pending())
                .await
                .unwrap();
        });
    });
    rx.recv().unwrap()
}

/// The DOM Chromium renders for `url` once the page has settled.
fn dump(browser: &Path, url: &str, profile: &Path) -> String {
    let out = Command::new(browser)
        .args([
            "--headless=new",
            // Root in containers and CI: Chromium's sandbox needs user namespaces.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            // Virtual time waits for the page's fetches and runs its timers;
            // the dump is taken when the budget is spent.
            "--virtual-time-budget=30000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", browser.display()));
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed on {url} ({}):\n{}\n{dom}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// Text as Chromium serialises it in a text node.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\u{a0}', "&nbsp;")
}

/// The inner HTML of the element with `id` (its first closing tag of the
/// same name; the page's lists and table bodies do not nest).
fn element<'a>(dom: &'a str, tag: &str, id: &str) -> &'a str {
    let open = format!("<{tag} id=\"{id}\"");
    let start = dom
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag} id={id}> in\n{dom}"));
    let body = &dom[start..];
    let body = &body[body.find('>').unwrap() + 1..];
    &body[..body
        .find(&format!("</{tag}>"))
        .unwrap_or_else(|| panic!("<{tag} id={id}> is not closed"))]
}

/// The `<li>` entries of a list: (title text, raw id).
fn entries(list: &str) -> Vec<(String, String)> {
    list.split("<li>")
        .skip(1)
        .map(|li| {
            let (title, rest) = li.split_once(" <span class=\"id\">[").unwrap();
            let id = rest.split_once("]</span>").unwrap().0;
            (title.to_string(), id.to_string())
        })
        .collect()
}

/// The cells' text of each row of a table body.
fn rows(tbody: &str) -> Vec<Vec<String>> {
    tbody
        .split("<tr>")
        .skip(1)
        .map(|tr| {
            tr.split("<td")
                .skip(1)
                .map(|td| {
                    let inner = &td[td.find('>').unwrap() + 1..];
                    inner.split_once("</td>").unwrap().0.to_string()
                })
                .collect()
        })
        .collect()
}

fn state(dom: &str) -> &str {
    let at = dom
        .find("<body data-state=\"")
        .unwrap_or_else(|| panic!("the page never settled (no body[data-state]):\n{dom}"));
    let rest = &dom[at + "<body data-state=\"".len()..];
    &rest[..rest.find('"').unwrap()]
}

#[test]
fn the_page_shows_history_trail_and_recommendations_and_adds_an_interaction() {
    // First, so that a machine without it fails before training anything.
    let browser = chromium();
    let root = tempfile::tempdir().unwrap();
    let profile = tempfile::tempdir().unwrap();
    let (dir, cache) = trained(root.path());
    let svc = Service::new(
        Run::load(&dir, &source(&cache)).unwrap(),
        source(&cache),
        Options {
            state: root.path().join("interactions.sqlite"),
            token: Some(TOKEN.into()),
            limits: Limits::default(),
            batch: BatchConfig::default(),
            hsu_queue: 16,
        },
    )
    .unwrap();
    let addr = serve(svc.clone());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let user = "5";

    // What the routes answer, to compare the page with.
    let info = svc.user(user).unwrap();
    let recs = rt.block_on(svc.recommend_user(user, None, false)).unwrap();
    let interests = svc.interests(user).unwrap();
    assert!(!interests.stages.is_empty(), "user {user} has no HSU trail");

    let dom = dump(
        &browser,
        &format!("http://{addr}/?user={user}"),
        profile.path(),
    );
    assert_eq!(state(&dom), "shown", "{dom}");
    assert_eq!(element(&dom, "p", "status"), "", "{dom}");
    // The run line.
    let run = svc.info();
    assert_eq!(
        element(&dom, "p", "run"),
        format!(
            "{} · {} on {} · {} items, {} users",
            run.name, run.backbone, run.dataset, run.items, run.users
        )
    );
    // History: the last 30, newest first, titles from the dataset.
    let shown = entries(element(&dom, "ol", "history"));
    let want: Vec<(String, String)> = info
        .history
        .iter()
        .rev()
        .take(30)
        .map(|i| (escaped(i.title.as_deref().unwrap()), i.item.clone()))
        .collect();
    assert_eq!(shown, want);
    assert!(
        element(&dom, "span", "count")
            .contains(&format!("({} items, 0 added here)", info.history.len())),
        "{dom}"
    );
    // Recommendations: the route's ten, in its order, with titles.
    let shown_recs = entries(element(&dom, "ol", "recs"));
    let rec_ids: Vec<String> = recs.items.iter().map(|i| i.item.clone()).collect();
    assert_eq!(
        shown_recs
            .iter()
            .map(|(_, id)| id.clone())
            .collect::<Vec<_>>(),
        rec_ids
    );
    for ((title, _), item) in shown_recs.iter().zip(&recs.items) {
        assert_eq!(title, &escaped(item.title.as_deref().unwrap()));
    }
    // The HSU trail, one row per stage: its number, the stage's items by
    // title, the operation (the first stage reasons), the explanation and
    // the interests after it; the current interests above it.
    let table = element(&dom, "table", "trail");
    let tbody = &table[table.find("<tbody>").unwrap()..];
    let trail = rows(tbody);
    assert_eq!(trail.len(), interests.stages.len(), "{dom}");
    for (row, stage) in trail.iter().zip(&interests.stages) {
        assert_eq!(row[0], (stage.stage + 1).to_string());
        let first_item = info
            .history
            .iter()
            .find(|i| i.item == stage.items[0])
            .unwrap();
        assert!(
            row[1].starts_with(&escaped(first_item.title.as_deref().unwrap())),
            "{row:?}"
        );
        assert!(
            row[2].starts_with(stage.operation.as_deref().unwrap_or("—")),
            "{row:?}"
        );
        assert_eq!(row[3], escaped(&stage.explanation));
        assert_eq!(row[4], escaped(&stage.interests.join("; ")));
    }
    assert_eq!(trail[0][2], "reason");
    assert_eq!(
        element(&dom, "p", "interests"),
        escaped(&interests.interests.join("; "))
    );
    assert!(
        element(&dom, "span", "hsu-state").contains(&format!(
            "({} complete stages of {} items; up to date; embedding: training)",
            interests.complete_stages, interests.stage_length
        )),
        "{dom}"
    );

    // Adding the top recommendation from the page (the Add button's code,
    // with the token from the fragment): it is stored, heads the history,
    // and leaves the recommendations, which the new history rescored.
    let top = &recs.items[0];
    let dom = dump(
        &browser,
        &format!("http://{addr}/?user={user}&add={}#token={TOKEN}", top.item),
        profile.path(),
    );
    assert_eq!(state(&dom), "added", "{dom}");
    let after = svc.user(user).unwrap();
    assert_eq!(after.history.len(), info.history.len() + 1);
    assert_eq!(after.history.last().unwrap().item, top.item);
    let shown = entries(element(&dom, "ol", "history"));
    assert_eq!(
        shown[0],
        (escaped(top.title.as_deref().unwrap()), top.item.clone())
    );
    assert!(
        element(&dom, "span", "count")
            .contains(&format!("({} items, 1 added here)", info.history.len() + 1)),
        "{dom}"
    );
    let new_recs: Vec<String> = entries(element(&dom, "ol", "recs"))
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(new_recs.len(), 10);
    assert!(!new_recs.contains(&top.item), "{new_recs:?}");
    let routed = rt.block_on(svc.recommend_user(user, None, false)).unwrap();
    assert_eq!(
        new_recs,
        routed
            .items
            .iter()
            .map(|i| i.item.clone())
            .collect::<Vec<_>>()
    );
    assert_ne!(new_recs, rec_ids);
    // The token (read from the fragment into the password field) is not
    // rendered anywhere in the page.
    assert!(!dom.contains(TOKEN), "the token is in the rendered page");
}
