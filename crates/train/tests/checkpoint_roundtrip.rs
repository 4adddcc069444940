//! Checkpoints (burnpack through burn-store) round-trip every backbone and
//! the dual-view + fusion model exactly: a model filled from another
//! model's checkpoint scores every item bit for bit as that model does (same
//! code, same machine), and carries its parameter ids, which the resumed
//! optimiser's state is keyed by. Wrong files are refused with errors that
//! say why: another model, another shape, missing or extra tensors, the
//! safetensors format of earlier builds, garbage.

use std::collections::BTreeMap;
use std::path::Path;

use hsuga_eval::Scorer;
use hsuga_model::burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use hsuga_model::burn::tensor::{Tensor, TensorData};
use hsuga_model::{Batcher, DualViewSpec, Extras, Fusion, ModelConfig, Recommender, cpu};
use hsuga_train::{MethodConfig, ModelScorer, RunConfig, checkpoint, model_tag};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// burn's device RNG is process-global: model builds take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const ITEMS: u32 = 30;
const TEXT_DIM: usize = 6;
const USER_DIM: usize = 5;
const USERS: usize = 4;

/// A run config's model and method, from TOML as a user writes them (the
/// inputs the method needs are named, never read).
fn config(model: &str, method: &str) -> (ModelConfig, MethodConfig) {
    let mut inputs = String::new();
    if method.contains("dual_view") {
        inputs += "item_text = { file = \"i.safetensors\" }\n";
    }
    if method.contains("fusion") {
        inputs += "user_semantic = { file = \"u.safetensors\" }\n";
    }
    let cfg = RunConfig::from_toml(&format!(
        "name = \"x\"\ndataset = \"d.toml\"\n[model]\n{model}\n[method]\n{method}\n\
         [inputs]\n{inputs}"
    ))
    .unwrap();
    (cfg.model, cfg.method)
}

/// The four models checked: each backbone alone, and SASRec with LLM-ESR's
/// dual view (cross-attention on) and HSU's gate fusion.
fn models() -> Vec<(&'static str, ModelConfig, MethodConfig)> {
    let small = "hidden = 8\nmax_len = 10\nheads = 2";
    vec![
        (
            "sasrec",
            config(&format!("backbone = \"sasrec\"\n{small}\nlayers = 2"), ""),
        ),
        (
            "bert4rec",
            config(&format!("backbone = \"bert4rec\"\n{small}\nlayers = 2"), ""),
        ),
        (
            "gru4rec",
            config("backbone = \"gru4rec\"\nhidden = 8\nmax_len = 10", ""),
        ),
        (
            "sasrec + dual view + gate fusion",
            config(
                &format!("backbone = \"sasrec\"\n{small}"),
                "dual_view = true\ncross_attention = true\nfusion = \"gate\"",
            ),
        ),
    ]
    .into_iter()
    .map(|(name, (m, me))| (name, m, me))
    .collect()
}

fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn text() -> Vec<f32> {
    uniform(ITEMS as usize * TEXT_DIM, 11)
}

fn user_semantic() -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(uniform(USERS * USER_DIM, 12), [USERS, USER_DIM]),
        &cpu(),
    )
}

/// Builds the model as the trainer does (backbone + method parts), on a
/// device seeded with `seed`.
fn build(cfg: &ModelConfig, method: &MethodConfig, text: &[f32], seed: u64) -> Recommender {
    let dev = cpu();
    dev.seed(seed);
    let extras = Extras {
        item_init: None,
        dual_view: method.dual_view.then_some(DualViewSpec {
            text,
            dim: TEXT_DIM,
            cross_attention: method.cross_attention,
        }),
        fusion: (method.fusion != Fusion::None).then_some((method.fusion, USER_DIM)),
        ..Extras::default()
    };
    Recommender::with_extras(cfg, ITEMS, &extras, &dev).unwrap()
}

/// Replaces every float parameter with values drawn from `seed`, so that no
/// parameter keeps an initial value two models share (LayerNorm's ones and
/// zeros): a parameter the loader skipped would then show.
struct Scramble(ChaCha8Rng);

impl ModuleMapper for Scramble {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, old, mapper) = param.consume();
        let dims = old.dims();
        let n = dims.iter().product();
        let data: Vec<f32> = (0..n).map(|_| self.0.random_range(-0.5f32..0.5)).collect();
        let mut t = Tensor::<D>::from_data(TensorData::new(data, dims), &old.device());
        if old.is_require_grad() {
            t = t.require_grad();
        }
        Param::from_mapped_value(id, t, mapper)
    }
}

/// Each float parameter's id, by module path.
#[derive(Default)]
struct Ids {
    path: Vec<String>,
    ids: BTreeMap<String, u64>,
}

impl ModuleVisitor for Ids {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.ids.insert(self.path.join("."), param.id.val());
    }
}

fn ids(m: &Recommender) -> BTreeMap<String, u64> {
    let mut v = Ids::default();
    m.visit(&mut v);
    v.ids
}

/// Every item's score for four users of different history lengths.
fn scores(m: &Recommender, cfg: &ModelConfig, users: &Tensor<2>) -> Vec<f32> {
    let batcher = Batcher::new(cfg, ITEMS, &cpu());
    let users = m.fuses_users().then_some(users);
    let scorer = ModelScorer::new(m, &batcher, users);
    let hist: Vec<Vec<u32>> = (0..USERS as u32)
        .map(|u| {
            (0..3 + 2 * u)
                .map(|k| 1 + (5 * u + 7 * k) % ITEMS)
                .collect()
        })
        .collect();
    let rows: Vec<&[u32]> = hist.iter().map(Vec::as_slice).collect();
    let enc = scorer.encode(&[0, 1, 2, 3], &rows);
    scorer.score_all(&enc)
}

fn tag(cfg: &ModelConfig, method: &MethodConfig) -> String {
    model_tag(cfg, ITEMS) + &method.tag()
}

#[test]
fn every_backbone_and_the_dual_view_fusion_model_round_trip_exactly() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (text, users) = (text(), user_semantic());
    let dir = tempfile::tempdir().unwrap();
    for (name, cfg, method) in models() {
        let saved = build(&cfg, &method, &text, 1).map(&mut Scramble(ChaCha8Rng::seed_from_u64(5)));
        let want = scores(&saved, &cfg, &users);
        assert!(want.iter().all(|s| s.is_finite()), "{name}: {want:?}");
        let path = dir
            .path()
            .join(format!("{}.safetensors", name.replace(' ', "_")));
        checkpoint::save(&saved, &tag(&cfg, &method), &path).unwrap();

        let fresh = build(&cfg, &method, &text, 2);
        assert_ne!(
            scores(&fresh, &cfg, &users),
            want,
            "{name}: a fresh model already scores like the saved one; the test would be vacuous"
        );
        let loaded = checkpoint::load(fresh, &tag(&cfg, &method), &path).unwrap();
        assert_eq!(
            scores(&loaded, &cfg, &users),
            want,
            "{name}: scores changed"
        );
        assert_eq!(
            ids(&loaded),
            ids(&saved),
            "{name}: parameter ids not restored"
        );

        // The same through bytes in memory.
        let bytes = checkpoint::to_bytes(&saved, &tag(&cfg, &method)).unwrap();
        let fresh = build(&cfg, &method, &text, 3);
        let loaded = checkpoint::from_bytes(fresh, &tag(&cfg, &method), &bytes).unwrap();
        assert_eq!(scores(&loaded, &cfg, &users), want, "{name}: from bytes");
    }
}

/// Every way a file can be wrong for the model that loads it.
#[test]
fn a_checkpoint_for_another_model_or_shape_is_refused_naming_why() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let text = text();
    let dir = tempfile::tempdir().unwrap();
    let all = models();
    let (_, sas, plain) = &all[0];
    let (_, gru, _) = &all[2];
    let (_, dual_cfg, dual) = &all[3];
    let path = dir.path().join("best.bpk");
    checkpoint::save(&build(sas, plain, &text, 1), &tag(sas, plain), &path).unwrap();
    let err = |m: Recommender, tag: &str, path: &Path| match checkpoint::load(m, tag, path) {
        Ok(_) => panic!("{} loaded into a model it does not fit", path.display()),
        Err(e) => e.to_string(),
    };

    // Another backbone: the tags differ, and both are named.
    let e = err(build(gru, plain, &text, 2), &tag(gru, plain), &path);
    assert!(e.contains("SASRec") && e.contains("GRU4Rec"), "{e}");
    assert!(e.contains("best.bpk"), "names the file: {e}");

    // Same tag, but the model has parts the file lacks (dual view, fusion).
    let e = err(build(dual_cfg, dual, &text, 2), &tag(sas, plain), &path);
    assert!(e.contains("has no tensor `dual."), "{e}");

    // Same tag, the file has parts the model lacks.
    let fused = dir.path().join("fused.safetensors");
    checkpoint::save(&build(dual_cfg, dual, &text, 1), "t", &fused).unwrap();
    let e = err(build(sas, plain, &text, 2), "t", &fused);
    assert!(e.contains("not in the model: `dual."), "{e}");

    // Same tag, other shapes.
    let (wide, _) = config(
        "backbone = \"sasrec\"\nhidden = 16\nmax_len = 10\nheads = 2\nlayers = 2",
        "",
    );
    let e = err(build(&wide, plain, &text, 2), &tag(sas, plain), &path);
    assert!(
        e.contains("Shape mismatch") && e.contains("encoder."),
        "{e}"
    );
}

/// Run folders from builds before burnpack hold safetensors under the same
/// names; resuming or scoring one must say so, not panic or half-load.
#[test]
fn an_old_safetensors_checkpoint_is_refused_with_a_clear_message() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let text = text();
    let (_, sas, plain) = models().swap_remove(0);
    let dir = tempfile::tempdir().unwrap();
    // The earlier format: f32 tensors by module path, the tag in the metadata.
    let bytes: Vec<u8> = [0.5f32; 8].iter().flat_map(|x| x.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![8], &bytes).unwrap();
    let meta = std::collections::HashMap::from([("hsuga.model".to_string(), tag(&sas, &plain))]);
    let old =
        safetensors::serialize([("encoder.Sasrec.net.norm.gamma", view)], Some(meta)).unwrap();
    let path = dir.path().join("last.bpk");
    std::fs::write(&path, &old).unwrap();
    // An earlier build's run folder: `last.safetensors`, no `last.bpk`.
    let earlier = dir.path().join("best.safetensors");
    std::fs::write(&earlier, &old).unwrap();
    let e = checkpoint::load(
        build(&sas, &plain, &text, 2),
        &tag(&sas, &plain),
        &dir.path().join("best.bpk"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("best.safetensors") && e.contains("earlier hsuga build"),
        "{e}"
    );
    let e = checkpoint::load(build(&sas, &plain, &text, 2), &tag(&sas, &plain), &path)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("last.bpk")
            && e.contains("safetensors checkpoint from an earlier hsuga build")
            && e.contains("retrain"),
        "{e}"
    );
    let e = checkpoint::from_bytes(build(&sas, &plain, &text, 2), "t", &old)
        .unwrap_err()
        .to_string();
    assert!(e.contains("earlier hsuga build"), "{e}");

    // Anything else that is not burnpack, including an empty file.
    for junk in [&b"not a checkpoint at all"[..], b""] {
        std::fs::write(&path, junk).unwrap();
        let e = checkpoint::load(build(&sas, &plain, &text, 2), "t", &path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a burnpack checkpoint"), "{e}");
    }
}

/// Save + load time and file size of a SASRec over 12,000 items, hidden 64
/// (the figures in `checkpoint.rs`'s doc comment):
/// `cargo test -p hsuga-train --test checkpoint_roundtrip -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn measure_save_and_load_of_a_12k_item_sasrec() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (cfg, method) = config("backbone = \"sasrec\"\nhidden = 64", "");
    let n = 12_000;
    let dev = cpu();
    dev.seed(1);
    let model = Recommender::new(&cfg, n, &dev).unwrap();
    let tag = model_tag(&cfg, n) + &method.tag();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("best.bpk");
    let reps = 10;
    let t = std::time::Instant::now();
    for _ in 0..reps {
        checkpoint::save(&model, &tag, &path).unwrap();
    }
    let save = t.elapsed().as_secs_f64() / reps as f64;
    let t = std::time::Instant::now();
    for _ in 0..reps {
        dev.seed(2);
        Recommender::new(&cfg, n, &dev)
            .unwrap()
            .visit(&mut Materialize);
    }
    let build = t.elapsed().as_secs_f64() / reps as f64;
    let t = std::time::Instant::now();
    for _ in 0..reps {
        dev.seed(2);
        let fresh = Recommender::new(&cfg, n, &dev).unwrap();
        fresh.visit(&mut Materialize);
        checkpoint::load(fresh, &tag, &path).unwrap();
    }
    let load = t.elapsed().as_secs_f64() / reps as f64;
    eprintln!(
        "save {:.1} ms, build {:.1} ms, build + load {:.1} ms, {} bytes",
        save * 1e3,
        build * 1e3,
        load * 1e3,
        std::fs::metadata(&path).unwrap().len()
    );
}

/// Draws a lazily initialised model's weights (the trainer builds models so).
struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        param.val();
    }
}
