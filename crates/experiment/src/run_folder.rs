//! One configured run into its folder (`<out_dir>/<name>/seed-<seed>`):
//! the resolved config is written before training; a folder holding another
//! config is refused (nothing overwritten); a finished run is not redone; an
//! unfinished one resumes.

use std::path::{Path, PathBuf};

use hsuga_data::{Candidates, Prepared};
use hsuga_eval::{Means, Metric, Ranked, Summary};
use serde::{Deserialize, Serialize};

use hsuga_train::{Job, Progress, RunConfig, SemanticInputs, TrainError, fit};

/// What `hsuga train` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub dir: PathBuf,
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub train_seconds: f64,
    /// The metric that chose the best epoch.
    pub select: Metric,
    /// Validation at the best epoch, on the selecting protocol.
    pub valid: Means,
    /// Test metrics per protocol, the selecting protocol's first.
    pub test: Vec<Means>,
    /// Test metrics per column of the paper's Table 2, per protocol (in the
    /// order of `test`).
    pub groups: Vec<(Ranked, Summary)>,
    /// True when the folder already held a finished run.
    pub reused: bool,
    /// The build that finished the run ([`BUILD`]); absent in runs from
    /// before builds were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
}

impl RunReport {
    /// The selecting protocol's test metrics.
    pub fn headline(&self) -> Option<&Means> {
        self.test.first()
    }

    /// The best epoch's value of the selection metric on validation.
    pub fn selection(&self) -> f64 {
        self.valid.get(self.select)
    }
}

/// This build: the crate version and the commit it was compiled from
/// (`0.1.0+g0123456789`), or the version alone outside a git checkout.
pub const BUILD: &str = env!("HSUGA_BUILD");

/// Written last, after the ranks: its presence marks a finished run.
pub(crate) const REPORT: &str = "report.json";

/// The resolved config, written before training.
pub(crate) const CONFIG: &str = "config.toml";

/// The digest of the semantic inputs the run started on.
pub const INPUTS_DIGEST: &str = "inputs.sha256";

/// Whether a run folder holds a finished run.
pub fn is_finished(dir: &Path) -> bool {
    dir.join(REPORT).is_file()
}

/// A finished run folder read back for use (serving): its resolved config
/// and its report. Each error names the folder and the piece that is
/// missing or unreadable, and says whether the run is unfinished.
pub fn read_finished(dir: &Path) -> Result<(RunConfig, RunReport), TrainError> {
    let fail = |msg: String| TrainError::RunDir {
        dir: dir.display().to_string(),
        msg,
    };
    if !dir.is_dir() {
        return Err(fail("is not a folder".into()));
    }
    let cfg_file = dir.join(CONFIG);
    let text = std::fs::read_to_string(&cfg_file)
        .map_err(|e| fail(format!("{CONFIG}: {e} (not a run folder?)")))?;
    let cfg = RunConfig::from_stored_toml(&text).map_err(|e| fail(format!("{CONFIG}: {e}")))?;
    if !is_finished(dir) {
        return Err(fail(format!(
            "is unfinished (no {REPORT}); finish it with `hsuga train` first"
        )));
    }
    let report =
        std::fs::read_to_string(dir.join(REPORT)).map_err(|e| fail(format!("{REPORT}: {e}")))?;
    let report: RunReport =
        serde_json::from_str(&report).map_err(|e| fail(format!("{REPORT}: {e}")))?;
    Ok((cfg, report))
}

/// The run folder of a config.
pub fn run_dir(cfg: &RunConfig) -> PathBuf {
    Path::new(&cfg.out_dir)
        .join(&cfg.name)
        .join(format!("seed-{}", cfg.seed))
}

/// A stored config as `cfg` compares it: parsed, so that a setting added
/// since the run started (absent from its file) reads as its default, and
/// with `cfg`'s progress flag, which does not change results.
pub(crate) fn stored_config(text: &str, cfg: &RunConfig) -> Option<RunConfig> {
    Some(comparable(RunConfig::from_stored_toml(text).ok()?, cfg))
}

/// A parsed stored config with what does not define a run taken from
/// `cfg`: the progress display, and `out_dir`, which only locates the run
/// (the folder compared was found through `cfg`'s, however it was written:
/// relative, absolute, with a trailing slash, or before a move).
pub(crate) fn comparable(mut old: RunConfig, cfg: &RunConfig) -> RunConfig {
    old.train.progress = cfg.train.progress;
    old.out_dir.clone_from(&cfg.out_dir);
    old
}

/// The settings in which two configs differ, as `key: stored → given`
/// (dotted keys, `unset` for a key one side lacks).
pub(crate) fn differences(stored: &RunConfig, given: &RunConfig) -> Vec<String> {
    fn flatten(prefix: &str, t: &toml::Table, out: &mut Vec<(String, String)>) {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(inner) => flatten(&key, inner, out),
                other => out.push((key, other.to_string())),
            }
        }
    }
    let table = |c: &RunConfig| {
        let mut out = Vec::new();
        if let Ok(t) = toml::from_str::<toml::Table>(&c.to_toml()) {
            flatten("", &t, &mut out);
        }
        out
    };
    let (a, b) = (table(stored), table(given));
    let get = |side: &[(String, String)], k: &str| {
        side.iter()
            .find(|(key, _)| key == k)
            .map_or("unset".to_string(), |(_, v)| v.clone())
    };
    let mut keys: Vec<&String> = a.iter().chain(&b).map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (get(&a, k), get(&b, k));
            (x != y).then(|| format!("{k}: {x} → {y}"))
        })
        .collect()
}

/// A run folder held by one process: an OS advisory lock on its `.lock`
/// file (which holds the holder's pid, for the message). The OS drops the
/// lock when the holder exits, however it exits, so a folder left by a
/// killed run is taken over by the next one without ceremony; a second
/// live process on the same folder stops at once.
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    pub fn acquire(dir: &Path) -> Result<Self, TrainError> {
        use std::io::{Read, Seek, Write};
        std::fs::create_dir_all(dir)?;
        let path = dir.join(".lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(TrainError::RunDir {
                    dir: dir.display().to_string(),
                    msg: format!(
                        "is in use by another hsuga process (pid {}); wait for it to finish \
                         or stop it, then run again (it resumes)",
                        holder.trim()
                    ),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(Self { _file: file })
    }
}

/// Checks the folder before any data work: `Ok(Some(report))` when the run
/// is already finished.
pub fn check_dir(cfg: &RunConfig) -> Result<Option<RunReport>, TrainError> {
    let dir = run_dir(cfg);
    let cfg_file = dir.join(CONFIG);
    if !cfg_file.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&cfg_file)?;
    let stored = stored_config(&text, cfg);
    if stored.as_ref() != Some(cfg) {
        let what = match &stored {
            Some(old) => differences(old, cfg).join("; "),
            None => format!("its {CONFIG} does not parse as a run config"),
        };
        return Err(TrainError::RunDir {
            dir: dir.display().to_string(),
            msg: format!(
                "holds a run with a different config ({what}); choose another name or \
                 out_dir (nothing was overwritten)"
            ),
        });
    }
    if is_finished(&dir) {
        let report = dir.join(REPORT);
        let mut r: RunReport =
            serde_json::from_str(&std::fs::read_to_string(&report)?).map_err(|e| {
                TrainError::RunDir {
                    dir: dir.display().to_string(),
                    msg: format!(
                        "{}: {e}; delete it to evaluate the run's best checkpoint again",
                        report.display()
                    ),
                }
            })?;
        r.reused = true;
        return Ok(Some(r));
    }
    Ok(None)
}

/// Trains (or resumes) the configured run on prepared data, with the
/// semantic matrices its method reads (checked before training starts).
pub fn run(
    cfg: &RunConfig,
    data: &Prepared,
    cands: &Candidates,
    semantic: &SemanticInputs,
    progress: Progress,
) -> Result<RunReport, TrainError> {
    if let Some(done) = check_dir(cfg)? {
        return Ok(done);
    }
    cfg.validate()?;
    semantic.check(&cfg.method, cfg.model.hidden, &data.split)?;
    let dir = run_dir(cfg);
    let _held = RunLock::acquire(&dir)?;
    // Another process may have finished it while this one waited to start.
    if let Some(done) = check_dir(cfg)? {
        return Ok(done);
    }
    let inputs_file = dir.join(INPUTS_DIGEST);
    let digest = semantic.digest();
    match std::fs::read_to_string(&inputs_file) {
        Ok(old) if old.trim() != digest => {
            return Err(TrainError::RunDir {
                dir: dir.display().to_string(),
                msg: "holds a run started on other semantic inputs (an HSU or embedding \
                      setting changed since); resume it with the old inputs, or start it \
                      again in another out_dir (nothing was overwritten)"
                    .into(),
            });
        }
        Ok(_) => {}
        Err(_) => std::fs::write(&inputs_file, &digest)?,
    }
    std::fs::write(dir.join(CONFIG), cfg.to_toml())?;
    let out = fit(&Job {
        model: &cfg.model,
        train: &cfg.train,
        eval: &cfg.eval,
        method: &cfg.method,
        semantic,
        seed: cfg.seed,
        split: &data.split,
        groups: &data.groups,
        candidates: cands,
        run_dir: Some(&dir),
        device: hsuga_model::cpu(),
        progress,
    })?;
    if let Err(e) = crate::curve::plot_curves(&dir, &out.history) {
        tracing::warn!("training curve not drawn: {e}");
    }
    let metrics = cfg.eval.metrics();
    let groups = out
        .test_rankings
        .each(&cfg.eval)
        .into_iter()
        .map(|(p, r)| (p, r.summarize(&metrics)))
        .collect();
    let report = RunReport {
        dir: dir.clone(),
        best_epoch: out.best_epoch,
        epochs_run: out.epochs_run,
        train_seconds: out.train_seconds,
        select: cfg.eval.select,
        valid: out.best_valid,
        test: out.test,
        groups,
        reused: false,
        build: Some(BUILD.to_string()),
    };
    std::fs::write(dir.join(REPORT), serde_json::to_string_pretty(&report)?)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(dir: &tempfile::TempDir, extra: &str) -> RunConfig {
        let text = format!(
            "name = \"r\"\ndataset = \"d\"\nout_dir = \"{}\"\n{extra}",
            dir.path().display()
        );
        RunConfig::from_toml(&text).unwrap()
    }

    /// The folder of a run that started with `cfg` (its config written).
    fn started(cfg: &RunConfig) -> PathBuf {
        let folder = run_dir(cfg);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(CONFIG), cfg.to_toml()).unwrap();
        folder
    }

    #[test]
    fn a_setting_added_since_a_run_started_reads_as_its_default() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = stored(&dir, "");
        let folder = run_dir(&cfg);
        std::fs::create_dir_all(&folder).unwrap();
        // What an older version wrote: the resolved config without the new key.
        let old: String = cfg
            .to_toml()
            .lines()
            .filter(|l| !l.starts_with("last_target_only"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(old, cfg.to_toml());
        std::fs::write(folder.join(CONFIG), old).unwrap();
        assert!(check_dir(&cfg).unwrap().is_none());
        // A real change is still refused, naming what changed.
        let other = stored(&dir, "[model]\ndropout = 0.3\n");
        let e = check_dir(&other).unwrap_err().to_string();
        assert!(e.contains("model.dropout: 0.5 → 0.3"), "{e}");
    }

    #[test]
    fn a_truncated_report_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = stored(&dir, "");
        let folder = started(&cfg);
        std::fs::write(folder.join(REPORT), "{\"dir\": \"x").unwrap();
        let e = check_dir(&cfg).err().unwrap().to_string();
        assert!(
            e.contains(&folder.join(REPORT).display().to_string()),
            "{e}"
        );
        assert!(e.contains("delete it"), "{e}");
    }

    #[test]
    fn a_held_run_folder_is_refused_naming_the_holder_and_free_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let held = RunLock::acquire(dir.path()).unwrap();
        let e = RunLock::acquire(dir.path()).err().unwrap().to_string();
        assert!(
            e.contains(&format!(
                "in use by another hsuga process (pid {})",
                std::process::id()
            )),
            "{e}"
        );
        drop(held);
        RunLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn the_same_folder_written_another_way_is_the_same_run() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = stored(&dir, "");
        started(&cfg);
        // A trailing slash, and the path through a `.` component.
        for written in [
            format!("{}/", dir.path().display()),
            format!("{}/./", dir.path().display()),
        ] {
            let mut again = cfg.clone();
            again.out_dir = written.clone();
            assert!(check_dir(&again).unwrap().is_none(), "{written}");
        }
        // Moved: the folder's config still names the old place.
        let moved = tempfile::tempdir().unwrap();
        let target = moved.path().join("elsewhere");
        std::fs::rename(dir.path(), &target).unwrap();
        let mut there = cfg.clone();
        there.out_dir = target.display().to_string();
        assert!(check_dir(&there).unwrap().is_none());
    }
}
