//! Every shipped run config parses and validates, and names a dataset config
//! that exists.

#[test]
fn shipped_experiment_configs_are_valid() {
    let dir = std::path::Path::new("../../configs/runs");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let cfg = hsuga_train::RunConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                std::path::Path::new("../..").join(&cfg.dataset).is_file(),
                "{}: dataset {} missing",
                path.display(),
                cfg.dataset
            );
            n += 1;
        }
    }
    assert!(n >= 6);
}

#[test]
fn shipped_model_configs_are_valid() {
    for name in ["sasrec", "bert4rec", "gru4rec"] {
        let path = format!("../../configs/models/{name}.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let m: hsuga_model::ModelConfig =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        m.validate().unwrap();
    }
}
