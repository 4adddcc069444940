//! Training and evaluation throughput of every backbone at lengths 50 and
//! 200 (batch 128, hidden 64, BCE), on the same shapes as
//! `benches/reference/sasrec_torch.py`; optionally one whole SASRec epoch on
//! a `user item` file (Steam) with length-bucketed batches.
//!
//! ```text
//! cargo bench -p hsuga-train --bench throughput -- [--items N] [--lens 50 200]
//!     [--steps 10] [--backbones sasrec,bert4rec,gru4rec] [--epoch-data FILE]
//! ```
//! Prints one JSON object per measurement.

use std::time::Instant;

use hsuga_data::{Candidates, Split};
use hsuga_eval::Scorer;
use hsuga_model::burn::module::Module;
use hsuga_model::burn::optim::{AdamConfig, GradientsParams};
use hsuga_model::{Backbone, Batcher, Model, ModelConfig, Recommender, cpu};
use hsuga_train::{Job, TrainSettings};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Freed tensor buffers stay with the process: with glibc's allocator every
/// step page-faulted its large buffers back in (a fifth of a SASRec step);
/// `keep_freed_memory` in `main` stops mimalloc purging them in turn.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The `hsuga` binary's allocator setting, so benchmarks measure what it runs.
#[path = "../crates/cli/src/allocator.rs"]
// Its unit test is the binary's; a harness-less bench never runs it.
#[allow(dead_code)]
mod allocator;

struct Args {
    items: u32,
    batch: usize,
    lens: Vec<usize>,
    steps: usize,
    warmup: usize,
    backbones: Vec<Backbone>,
    epoch_data: Option<String>,
}

fn parse() -> Args {
    let mut a = Args {
        items: 12_101,
        batch: 128,
        lens: vec![50, 200],
        steps: 10,
        warmup: 2,
        backbones: vec![Backbone::Sasrec, Backbone::Bert4rec, Backbone::Gru4rec],
        epoch_data: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let next = |i: usize| argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--items" => a.items = next(i).parse().expect("--items N"),
            "--batch" => a.batch = next(i).parse().expect("--batch N"),
            "--steps" => a.steps = next(i).parse().expect("--steps N"),
            "--warmup" => a.warmup = next(i).parse().expect("--warmup N"),
            "--epoch-data" => a.epoch_data = Some(next(i)),
            "--backbones" => {
                a.backbones = next(i)
                    .split(',')
                    .map(|b| match b {
                        "sasrec" => Backbone::Sasrec,
                        "bert4rec" => Backbone::Bert4rec,
                        "gru4rec" => Backbone::Gru4rec,
                        other => panic!("unknown backbone {other}"),
                    })
                    .collect()
            }
            "--lens" => {
                a.lens.clear();
                while let Some(v) = argv.get(i + 1).and_then(|v| v.parse().ok()) {
                    a.lens.push(v);
                    i += 1;
                }
                i -= 1;
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn step_bench(a: &Args, backbone: Backbone, len: usize) {
    let cfg = ModelConfig {
        backbone: backbone.into(),
        max_len: len.max(200),
        ..ModelConfig::default()
    };
    let dev = cpu().autodiff();
    dev.seed(0);
    let mut model = Recommender::new(&cfg, a.items, &dev).unwrap();
    let batcher = Batcher::new(&cfg, a.items, &dev);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    // Sequences of len + 1 items: len inputs and len next-item targets.
    let seqs: Vec<Vec<u32>> = (0..a.batch)
        .map(|_| (0..=len).map(|_| rng.random_range(1..=a.items)).collect())
        .collect();
    let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
    let mut optim = AdamConfig::new().init();
    let mut times = Vec::new();
    for i in 0..a.warmup + a.steps {
        let t0 = Instant::now();
        let tb = batcher.train_batch(&refs, |_, _| false, &mut rng);
        let loss = model.loss(&tb);
        let _ = loss.clone().into_scalar::<f32>();
        let g = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, g);
        if i >= a.warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    let step = median(times);
    let plain = model.valid();
    let eb = Batcher::new(&cfg, a.items, &cpu());
    let hist: Vec<&[u32]> = seqs.iter().map(|s| &s[..len]).collect();
    let cand: Vec<Vec<u32>> = (0..a.batch)
        .map(|_| (0..101).map(|_| rng.random_range(1..=a.items)).collect())
        .collect();
    let t0 = Instant::now();
    for _ in 0..a.steps {
        let batch = eb.eval_batch(&hist);
        let c = Recommender::candidate_tensor(&cand, &eb.device);
        let _ = plain.score_candidates(&batch, c).into_data();
    }
    let eval = t0.elapsed().as_secs_f64() / a.steps as f64;
    // Full ranking, as hsuga-eval runs it: every item scored, each user's
    // history excluded, the target ranked among the rest.
    let scorer = hsuga_train::ModelScorer::new(&plain, &eb, None);
    let users: Vec<usize> = (0..a.batch).collect();
    let n = a.items as usize;
    let t0 = Instant::now();
    let mut sink = 0usize;
    for _ in 0..a.steps {
        let enc = scorer.encode(&users, &hist);
        let scores = scorer.score_all(&enc);
        let mut row = vec![0f32; n + 1];
        for (j, h) in hist.iter().enumerate() {
            row[1..].copy_from_slice(&scores[j * n..(j + 1) * n]);
            sink += hsuga_eval::rank_full(&row, seqs[j][len], h);
        }
    }
    let full = t0.elapsed().as_secs_f64() / a.steps as f64;
    std::hint::black_box(sink);
    println!(
        "{{\"impl\": \"hsuga-burn\", \"backbone\": \"{}\", \"len\": {len}, \"batch\": {}, \"items\": {}, \"step_ms\": {:.2}, \"train_seqs_per_s\": {:.1}, \"eval_users_per_s\": {:.1}, \"eval_full_users_per_s\": {:.1}}}",
        backbone.name().to_lowercase(),
        a.batch,
        a.items,
        step * 1000.0,
        a.batch as f64 / step,
        a.batch as f64 / eval,
        a.batch as f64 / full
    );
}

fn epoch_bench(a: &Args, path: &str) {
    let text = std::fs::read_to_string(path).expect("epoch data");
    let mut seqs: Vec<Vec<u32>> = Vec::new();
    let mut ids = std::collections::HashMap::new();
    let mut n_items = 0;
    for line in text.lines() {
        let mut p = line.split_whitespace();
        let (Some(u), Some(i)) = (p.next(), p.next()) else {
            continue;
        };
        let i: u32 = i.parse().expect("item id");
        n_items = n_items.max(i);
        let next = ids.len();
        let u = *ids.entry(u.to_string()).or_insert(next);
        if u == seqs.len() {
            seqs.push(Vec::new());
        }
        seqs[u].push(i);
    }
    seqs.retain(|s| s.len() >= 3);
    let split = Split::leave_one_out(&seqs, n_items).unwrap();
    let cands = Candidates::draw(&split, 100, 42);
    let model = ModelConfig {
        max_len: 200,
        ..ModelConfig::default()
    };
    let train = TrainSettings {
        epochs: 1,
        batch_size: a.batch,
        progress: false,
        ..TrainSettings::default()
    };
    let job = Job {
        model: &model,
        train: &train,
        eval: &Default::default(),
        method: &Default::default(),
        semantic: &Default::default(),
        seed: 42,
        split: &split,
        groups: &hsuga_data::Groups::compute(&split, hsuga_data::GroupRule::Pareto { ratio: 0.2 }),
        candidates: &cands,
        run_dir: None,
        device: cpu(),
        progress: Default::default(),
    };
    let o = hsuga_train::fit(&job).unwrap();
    let e = &o.history[0];
    println!(
        "{{\"impl\": \"hsuga-burn\", \"backbone\": \"sasrec\", \"epoch_data\": \"{}\", \"epoch_s\": {:.2}, \"users\": {}, \"padded_to\": \"longest in batch (length buckets)\"}}",
        std::path::Path::new(path)
            .parent()
            .and_then(|p| p.file_name())
            .map_or(String::new(), |p| p.to_string_lossy().into_owned()),
        e.seconds,
        split.train.iter().filter(|s| s.len() >= 2).count()
    );
}

/// Peak resident memory of this process so far, in MiB (Linux).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    allocator::keep_freed_memory();
    let a = parse();
    for &b in &a.backbones {
        for &len in &a.lens {
            step_bench(&a, b, len);
        }
    }
    if let Some(p) = &a.epoch_data {
        epoch_bench(&a, p);
    }
    println!(
        "{{\"impl\": \"hsuga-burn\", \"peak_rss_mib\": {:.0}}}",
        peak_rss_mib()
    );
}
