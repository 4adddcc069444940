//! Every experiment under configs/experiments parses, resolves, and names
//! datasets and HSU configs that exist: a typo fails here, not an hour into
//! a grid.

use std::path::Path;

use hsuga_experiment::ExperimentConfig;

#[test]
fn shipped_experiments_resolve() {
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut n = 0;
    for entry in std::fs::read_dir(configs.join("experiments")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let cfg = ExperimentConfig::load(&path).unwrap();
        let methods = cfg
            .resolve()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for d in &cfg.datasets {
            let f = configs.join("datasets").join(format!("{d}.toml"));
            assert!(f.is_file(), "{}: no dataset {d}", path.display());
        }
        for m in &methods {
            if let Some(name) = m.inputs.user_semantic.as_ref().and_then(|u| u.hsu_config()) {
                let f = configs.join("hsu").join(format!("{name}.toml"));
                assert!(
                    f.is_file(),
                    "{}: {}: no {}",
                    path.display(),
                    m.name,
                    f.display()
                );
            }
        }
        n += 1;
    }
    assert!(n >= 8, "only {n} experiment files found");
}
