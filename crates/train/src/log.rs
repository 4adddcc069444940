//! Run-folder outputs of training: `log.csv`, `log.json`, `result.json` and
//! `ranks.csv` (the curve is drawn by the experiment layer).

use std::fmt::Write as _;
use std::path::Path;

use hsuga_eval::{Metric, PhaseRanks, Ranking};

use crate::error::TrainError;
use crate::trainer::{EpochLog, Outcome};

pub fn write_logs(dir: &Path, history: &[EpochLog]) -> Result<(), TrainError> {
    // One column per validation metric, named as in the config (`valid NDCG@10`).
    let metrics: Vec<Metric> = history
        .iter()
        .find_map(|l| l.valid.as_ref())
        .map(|m| m.values.keys().copied().collect())
        .unwrap_or_default();
    let mut csv = String::from("epoch,loss,seconds,train_seqs_per_s");
    for m in &metrics {
        let _ = write!(csv, ",valid {m}");
    }
    csv.push_str(",best\n");
    for l in history {
        let _ = write!(
            csv,
            "{},{:.6},{:.3},{:.1}",
            l.epoch, l.loss, l.seconds, l.train_seqs_per_s
        );
        for &m in &metrics {
            match &l.valid {
                Some(v) => write!(csv, ",{:.6}", v.get(m)),
                None => write!(csv, ","),
            }
            .expect("writing to a String");
        }
        let _ = writeln!(csv, ",{}", l.best);
    }
    std::fs::write(dir.join("log.csv"), csv)?;
    std::fs::write(dir.join("log.json"), serde_json::to_string_pretty(history)?)?;
    Ok(())
}

pub fn write_outcome(dir: &Path, o: &Outcome) -> Result<(), TrainError> {
    let summary = serde_json::json!({
        "best_epoch": o.best_epoch,
        "epochs_run": o.epochs_run,
        "stopped_early": o.stopped_early,
        "train_seconds": o.train_seconds,
        "valid": o.best_valid,
        "test": o.test,
    });
    std::fs::write(
        dir.join("result.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    std::fs::write(dir.join("ranks.csv"), ranks_csv(&o.valid, &o.test_rankings))?;
    Ok(())
}

/// `ranks.csv`: one line per evaluated user (its index) with each protocol's 0-based validation
/// and test rank (`valid_rank,test_rank` sampled; `valid_full_rank,
/// test_full_rank` full), the test item and its groups, so that a report
/// can rebuild every column of the tables from this file alone.
pub fn ranks_csv(valid: &PhaseRanks, test: &PhaseRanks) -> String {
    let mut cols: Vec<(&str, &Ranking)> = Vec::new();
    if let (Some(v), Some(t)) = (&valid.sampled, &test.sampled) {
        cols.push(("valid_rank", v));
        cols.push(("test_rank", t));
    }
    if let (Some(v), Some(t)) = (&valid.full, &test.full) {
        cols.push(("valid_full_rank", v));
        cols.push(("test_full_rank", t));
    }
    let Some(&(_, any)) = cols.first() else {
        return String::new();
    };
    let mut csv = String::from("user");
    for (name, _) in &cols {
        csv.push(',');
        csv.push_str(name);
    }
    csv.push_str(",test_item,head_user,head_item\n");
    let t = test.sampled.as_ref().or(test.full.as_ref()).unwrap_or(any);
    for i in 0..any.ranks.len() {
        let _ = write!(csv, "{}", t.users[i]);
        for (_, r) in &cols {
            let _ = write!(csv, ",{}", r.ranks[i]);
        }
        let _ = writeln!(
            csv,
            ",{},{},{}",
            t.targets[i], t.head_users[i] as u8, t.head_targets[i] as u8
        );
    }
    csv
}
