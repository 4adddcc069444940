//! One commit point per epoch, so a run killed at any moment resumes from a
//! whole epoch: weights, optimiser and progress all of the same epoch.
//!
//! An epoch writes its weights and optimiser state under names that carry
//! the epoch (`last.e7.bpk`, `last.e7.optim.bpk`, each through a scratch
//! file, fsync and rename), then commits by renaming a fresh `state.json`
//! into place, and only then removes the previous epoch's pair. Whatever
//! the kill interrupted, `state.json` names an epoch whose pair is complete
//! on disk; files of an uncommitted epoch and scratch files are removed on
//! resume. (Writing both under fixed names, as earlier builds did, let a
//! kill between the two leave epoch-N weights beside epoch-(N−1) state and
//! optimiser, and the resumed run silently diverged.) `best.bpk` stays one
//! atomic file: a kill after it was replaced but before the commit replays
//! that epoch, which training's determinism makes write the same weights.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::TrainError;

/// Where an epoch's weights go.
pub fn weights(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("last.e{epoch}.bpk"))
}

/// Where an epoch's optimiser state goes.
pub fn optimiser(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("last.e{epoch}.optim.bpk"))
}

/// The fixed names of earlier builds.
const LEGACY: [&str; 2] = ["last.bpk", "last.optim.bpk"];

fn io(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |e| TrainError::Checkpoint(format!("{}: {e}", path.display()))
}

/// Flushes a written file to disk (burn's optimiser writer renames without
/// telling us whether it synced).
pub fn sync(path: &Path) -> Result<(), TrainError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io(path))
}

/// The commit point: `state.json` replaced in one rename, then the folder
/// itself synced so the rename survives a power cut.
pub fn commit(dir: &Path, state_json: &str) -> Result<(), TrainError> {
    let tmp = dir.join("state.json.tmp");
    let path = dir.join("state.json");
    std::fs::write(&tmp, state_json).map_err(io(&tmp))?;
    sync(&tmp)?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    // Directories can be opened and synced on Unix; elsewhere this is a no-op.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The weights and optimiser files to resume `epochs_done` from: this
/// build's pair for that epoch, else an earlier build's fixed names.
/// Refuses, naming the files, when neither is complete.
pub fn resume_files(dir: &Path, epochs_done: usize) -> Result<(PathBuf, PathBuf), TrainError> {
    let (w, o) = (weights(dir, epochs_done), optimiser(dir, epochs_done));
    if w.is_file() && o.is_file() {
        return Ok((w, o));
    }
    let (lw, lo) = (dir.join(LEGACY[0]), dir.join(LEGACY[1]));
    if !w.exists() && !o.exists() && lw.is_file() && lo.is_file() {
        tracing::warn!(
            dir = %dir.display(),
            "resuming from an earlier build's last.bpk / last.optim.bpk (written without a commit point)"
        );
        return Ok((lw, lo));
    }
    Err(TrainError::Checkpoint(format!(
        "{}: state.json says {epochs_done} epochs are done, but {} and {} are not both there; \
         the run folder was changed by hand or by another program: remove it to retrain",
        dir.display(),
        w.display(),
        o.display()
    )))
}

/// Removes every epoch pair but `keep`'s, scratch files of interrupted
/// writes, and, once this build's pair exists, an earlier build's files.
pub fn remove_stale(dir: &Path, keep: usize) -> Result<(), TrainError> {
    let own = [weights(dir, keep), optimiser(dir, keep)];
    let have_own = own.iter().all(|p| p.is_file());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let epoch_file = name
            .strip_prefix("last.e")
            .and_then(|r| r.split('.').next())
            .is_some_and(|n| n.parse::<usize>().is_ok());
        let stale = (epoch_file && !own.contains(&path))
            || name.ends_with(".tmp")
            || (have_own && LEGACY.contains(&name.as_str()));
        if stale && path.is_file() {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) {
        std::fs::write(dir.join(name), b"x").unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn an_uncommitted_epoch_and_scratch_files_are_removed_the_committed_pair_kept() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for n in [
            "last.e3.bpk",
            "last.e3.optim.bpk",
            // Epoch 4 got its weights written, then the kill came.
            "last.e4.bpk",
            "last.e4.optim.bpk.1234-0.tmp",
            "best.bpk",
            "state.json",
            "log.csv",
        ] {
            touch(d, n);
        }
        let (w, o) = resume_files(d, 3).unwrap();
        assert_eq!((w, o), (weights(d, 3), optimiser(d, 3)));
        remove_stale(d, 3).unwrap();
        assert_eq!(
            names(d),
            [
                "best.bpk",
                "last.e3.bpk",
                "last.e3.optim.bpk",
                "log.csv",
                "state.json"
            ]
        );
    }

    #[test]
    fn a_missing_half_of_the_pair_is_refused_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "last.e5.bpk");
        let e = resume_files(dir.path(), 5).unwrap_err().to_string();
        assert!(
            e.contains("last.e5.bpk") && e.contains("last.e5.optim.bpk"),
            "{e}"
        );
        assert!(e.contains("5 epochs"), "{e}");
    }

    #[test]
    fn an_earlier_builds_fixed_names_still_resume_and_go_once_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        touch(d, "last.bpk");
        touch(d, "last.optim.bpk");
        assert_eq!(
            resume_files(d, 9).unwrap(),
            (d.join("last.bpk"), d.join("last.optim.bpk"))
        );
        remove_stale(d, 9).unwrap();
        assert!(
            d.join("last.bpk").exists(),
            "kept until this build's pair exists"
        );
        touch(d, "last.e10.bpk");
        touch(d, "last.e10.optim.bpk");
        remove_stale(d, 10).unwrap();
        assert_eq!(names(d), ["last.e10.bpk", "last.e10.optim.bpk"]);
    }
}
