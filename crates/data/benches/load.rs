//! Prepares every shared dataset once, then times cached reloads.
//! `cargo bench -p hsuga-data --bench load`

use std::path::Path;
use std::time::Instant;

use hsuga_data::{DatasetConfig, candidates, prepare};

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cache = tempfile::tempdir().expect("temp dir");
    println!(
        "| dataset | first prepare (ms) | cached reload, median of 20 (ms) | candidates draw / reload (ms) |"
    );
    println!("|---|---:|---:|---:|");
    for name in ["fashion", "steam", "beauty", "ml-100k"] {
        let cfg = DatasetConfig::load(&repo.join(format!("configs/datasets/{name}.toml")))
            .expect("config");
        let t = Instant::now();
        let p = prepare(&cfg, cache.path()).expect("prepare");
        let first = t.elapsed().as_secs_f64() * 1e3;
        let mut times: Vec<f64> = (0..20)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(prepare(&cfg, cache.path()).expect("reload"));
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let t = Instant::now();
        candidates(&p, 100, 42).expect("draw");
        let draw = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        candidates(&p, 100, 42).expect("reload");
        let reload = t.elapsed().as_secs_f64() * 1e3;
        println!(
            "| {name} | {first:.1} | {:.1} | {draw:.1} / {reload:.1} |",
            times[10]
        );
    }
}
