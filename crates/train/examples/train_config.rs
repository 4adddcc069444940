//! `hsuga train` without the CLI's other subcommands (handy while they are
//! being built): `cargo run --release -p hsuga-train --example train_config
//! -- CONFIG.toml [SEED]`.

use std::path::Path;

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let path = argv.get(1).expect("usage: train_config CONFIG.toml [SEED]");
    let mut cfg = hsuga_train::RunConfig::load(Path::new(path)).unwrap_or_else(|e| panic!("{e}"));
    if let Some(s) = argv.get(2) {
        cfg.seed = s.parse().expect("seed");
    }
    let dcfg = hsuga_data::DatasetConfig::load(Path::new(&cfg.dataset)).expect("dataset config");
    let cache = std::env::var("HSUGA_CACHE_DIR").unwrap_or_else(|_| "/tmp/hsuga-cache".into());
    let data = hsuga_data::prepare(&dcfg, Path::new(&cache)).expect("prepare");
    let cands = hsuga_data::candidates(&data, cfg.negatives, cfg.seed).expect("candidates");
    let r = hsuga_train::run(&cfg, &data, &cands, &Default::default(), Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    println!("{}", serde_json::to_string(&r).unwrap());
}
