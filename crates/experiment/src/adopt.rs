//! Taking over a finished run from another experiment. The paper's tables
//! repeat rows (Table 3's full HSUGA is Table 2's, and so is Table 4's
//! 20 % / 50 % cell), and each retrains for minutes to hours; a run whose
//! every setting but its name and folder is the one asked for, trained on
//! semantic inputs of the same digest, is copied instead. The copy records
//! where it came from, so a table can be traced back to the run that made it.

use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use hsuga_train::{RunConfig, TrainError};

use crate::run_folder::{CONFIG, INPUTS_DIGEST, REPORT, RunReport, comparable, run_dir};

/// Names the run folder that trained an adopted run.
pub const ADOPTED_FROM: &str = "adopted-from.txt";

/// `<root>/<experiment>/<dataset>/<method>/seed-<n>/config.toml`, with a
/// little slack for roots given one level higher or lower.
const MAX_DEPTH: usize = 6;

/// The finished runs under some folders, read once so that a grid's runs
/// each look them up without walking the tree again.
#[derive(Debug)]
pub struct Finished {
    /// Folder, input digest and parsed config of each, in path order.
    runs: Vec<(PathBuf, String, RunConfig)>,
}

impl Finished {
    /// Every finished run folder under `roots` (a missing root is an error).
    pub fn scan(roots: &[PathBuf]) -> Result<Self, TrainError> {
        let mut runs = Vec::new();
        for root in roots {
            if !root.is_dir() {
                return Err(TrainError::Config(format!(
                    "reuse-from {}: not a folder",
                    root.display()
                )));
            }
            let configs = WalkDir::new(root)
                .max_depth(MAX_DEPTH)
                .sort_by_file_name()
                .into_iter()
                // An unreadable corner of the tree only means fewer candidates.
                .filter_map(Result::ok)
                .filter(|e| e.file_name() == CONFIG);
            for entry in configs {
                let dir = entry.path().parent().unwrap_or(root);
                let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
                if !dir.join(REPORT).is_file() {
                    continue;
                }
                let config = read(CONFIG).and_then(|t| RunConfig::from_stored_toml(&t).ok());
                if let (Some(digest), Some(config)) = (read(INPUTS_DIGEST), config) {
                    runs.push((dir.to_path_buf(), digest.trim().to_string(), config));
                }
            }
        }
        Ok(Self { runs })
    }

    /// The first run with the same inputs, and the same config once name
    /// and folder are set aside.
    fn find(&self, cfg: &RunConfig, digest: &str) -> Option<PathBuf> {
        let own = run_dir(cfg);
        self.runs
            .iter()
            .find(|(dir, d, old)| {
                *dir != own && d == digest && {
                    // `comparable` already sets the folder aside.
                    let mut old = comparable(old.clone(), cfg);
                    old.name.clone_from(&cfg.name);
                    old == *cfg
                }
            })
            .map(|(dir, _, _)| dir.clone())
    }
}

/// Copies a finished run of `cfg` found in `finished` into `cfg`'s folder
/// (which must hold no config yet) and returns its report; `None` when none
/// matches. `digest` is that of the inputs `cfg` would train on.
pub fn adopt(
    cfg: &RunConfig,
    digest: &str,
    finished: &Finished,
) -> Result<Option<RunReport>, TrainError> {
    let Some(src) = finished.find(cfg, digest) else {
        return Ok(None);
    };
    let dst = run_dir(cfg);
    let fail = |what: &Path, e: std::io::Error| TrainError::RunDir {
        dir: dst.display().to_string(),
        msg: format!("adopting {}: {}: {e}", src.display(), what.display()),
    };
    std::fs::create_dir_all(&dst).map_err(|e| fail(&dst, e))?;
    let mut report: Option<RunReport> = None;
    for entry in std::fs::read_dir(&src).map_err(|e| fail(&src, e))? {
        let from = entry.map_err(|e| fail(&src, e))?.path();
        let name = from.file_name().unwrap_or_default();
        // The source's lock file belongs to the source.
        if !from.is_file() || name == CONFIG || name == ".lock" {
            continue;
        }
        if name == REPORT {
            let text = std::fs::read_to_string(&from).map_err(|e| fail(&from, e))?;
            report = Some(serde_json::from_str(&text).map_err(|e| fail(&from, e.into()))?);
            continue;
        }
        let to = dst.join(name);
        std::fs::copy(&from, &to).map_err(|e| fail(&to, e))?;
    }
    let mut report = report.ok_or_else(|| TrainError::RunDir {
        dir: dst.display().to_string(),
        msg: format!(
            "adopting {}: its report vanished while copying",
            src.display()
        ),
    })?;
    std::fs::write(dst.join(CONFIG), cfg.to_toml())?;
    // A copy of a copy names the run that trained.
    let origin = std::fs::read_to_string(src.join(ADOPTED_FROM))
        .unwrap_or_else(|_| format!("{}\n", src.display()));
    std::fs::write(dst.join(ADOPTED_FROM), origin)?;
    report.dir = dst.clone();
    // Last: the report marks the run finished.
    std::fs::write(dst.join(REPORT), serde_json::to_string_pretty(&report)?)?;
    report.reused = true;
    tracing::info!(from = %src.display(), to = %dst.display(), "adopted a finished run");
    Ok(Some(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_folder::check_dir;
    use hsuga_eval::{Means, Metric, Ranked};

    fn ndcg(r: &RunReport) -> f64 {
        r.headline().unwrap().get(Metric::Ndcg(10))
    }

    fn scan(roots: &[PathBuf]) -> Finished {
        Finished::scan(roots).unwrap()
    }

    fn config(out_dir: &Path, name: &str, extra: &str) -> RunConfig {
        let text = format!(
            "name = \"{name}\"\ndataset = \"d\"\nout_dir = \"{}\"\n{extra}",
            out_dir.display()
        );
        RunConfig::from_toml(&text).unwrap()
    }

    /// A finished run folder as `run` leaves it.
    fn finished(cfg: &RunConfig, digest: &str, ndcg: f64) -> PathBuf {
        let dir = run_dir(cfg);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(CONFIG), cfg.to_toml()).unwrap();
        std::fs::write(dir.join(INPUTS_DIGEST), digest).unwrap();
        std::fs::write(dir.join("best.bpk"), b"weights").unwrap();
        let test = Means {
            protocol: Ranked::Sampled,
            users: 3,
            values: [(Metric::Hr(10), 0.5), (Metric::Ndcg(10), ndcg)].into(),
        };
        let report = RunReport {
            dir: dir.clone(),
            best_epoch: 4,
            epochs_run: 9,
            train_seconds: 1.0,
            select: Metric::Ndcg(10),
            valid: test.clone(),
            test: vec![test],
            groups: vec![],
            reused: false,
            build: None,
        };
        std::fs::write(dir.join(REPORT), serde_json::to_string(&report).unwrap()).unwrap();
        dir
    }

    #[test]
    fn a_finished_run_with_the_same_settings_and_inputs_is_copied() {
        let root = tempfile::tempdir().unwrap();
        let other = root.path().join("table2/ml-100k");
        let src = finished(&config(&other, "HSUGA", ""), "abc", 0.42);
        let mine = root.path().join("table3/ml-100k");
        let cfg = config(&mine, "full", "");
        let got = adopt(&cfg, "abc", &scan(&[root.path().to_path_buf()]))
            .unwrap()
            .expect("adopted");
        let dst = run_dir(&cfg);
        assert_eq!((ndcg(&got), got.reused, &got.dir), (0.42, true, &dst));
        assert_eq!(std::fs::read(dst.join("best.bpk")).unwrap(), b"weights");
        let from = std::fs::read_to_string(dst.join(ADOPTED_FROM)).unwrap();
        assert_eq!(from.trim(), src.display().to_string());
        // The copy is a finished run of its own config, with its own folder.
        let again = check_dir(&cfg).unwrap().expect("finished");
        assert_eq!((ndcg(&again), &again.dir), (0.42, &dst));
        // Adopted again elsewhere, it still names the run that trained.
        let third = config(&root.path().join("table4/ml-100k"), "p50", "");
        adopt(&third, "abc", &scan(&[mine]))
            .unwrap()
            .expect("adopted");
        let from = std::fs::read_to_string(run_dir(&third).join(ADOPTED_FROM)).unwrap();
        assert_eq!(from.trim(), src.display().to_string());
    }

    #[test]
    fn other_settings_other_inputs_or_unfinished_runs_are_not_adopted() {
        let root = tempfile::tempdir().unwrap();
        let roots = [root.path().to_path_buf()];
        let other = root.path().join("a");
        let mine = root.path().join("b");
        finished(&config(&other, "x", "seed = 43\n"), "abc", 0.4);
        finished(&config(&other, "y", "[model]\ndropout = 0.3\n"), "abc", 0.4);
        finished(&config(&other, "z", ""), "def", 0.4);
        let unfinished = finished(&config(&other, "w", ""), "abc", 0.4);
        std::fs::remove_file(unfinished.join(REPORT)).unwrap();
        let cfg = config(&mine, "r", "");
        assert!(adopt(&cfg, "abc", &scan(&roots)).unwrap().is_none());
        assert!(!run_dir(&cfg).exists());
        // The matching one, once there, is found among them.
        finished(&config(&other, "v", ""), "abc", 0.45);
        assert_eq!(
            ndcg(&adopt(&cfg, "abc", &scan(&roots)).unwrap().unwrap()),
            0.45
        );
    }

    #[test]
    fn a_missing_root_is_an_error_naming_it() {
        let root = tempfile::tempdir().unwrap();
        let e = Finished::scan(&[root.path().join("nope")]).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }
}
