//! Run-folder outputs: `log.csv`, `log.json`, `result.json`, `ranks.csv`
//! and the training curve (`curve.svg`, `curve.png`).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

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

/// The validation value drawn on the curve: the first NDCG@K logged.
fn curve_value(m: &hsuga_eval::Means) -> f64 {
    m.values
        .iter()
        .find(|(k, _)| matches!(k, Metric::Ndcg(_)))
        .or_else(|| m.values.iter().next())
        .map_or(0.0, |(_, &v)| v)
}

/// Loss and validation NDCG per epoch, side by side.
pub fn plot_curves(dir: &Path, history: &[EpochLog]) -> Result<(), String> {
    let svg = dir.join("curve.svg");
    draw(
        SVGBackend::new(&svg, (900, 360)).into_drawing_area(),
        history,
    )?;
    let png = dir.join("curve.png");
    draw(
        BitMapBackend::new(&png, (900, 360)).into_drawing_area(),
        history,
    )?;
    Ok(())
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    h: &[EpochLog],
) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Debug| format!("{x:?}");
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let (left, right) = root.split_horizontally(450);
    let n = h.len().max(1) as f64;
    let loss: Vec<(f64, f64)> = h.iter().map(|l| (l.epoch as f64, l.loss)).collect();
    let (lo, hi) = loss
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &(_, y)| (a.min(y), b.max(y)));
    let (lo, hi) = if lo <= hi {
        (lo, hi + 1e-9)
    } else {
        (0.0, 1.0)
    };
    let mut c = ChartBuilder::on(&left)
        .caption("training loss", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(1f64..n.max(2.0), lo..hi)
        .map_err(|x| e(&x))?;
    c.configure_mesh()
        .x_desc("epoch")
        .draw()
        .map_err(|x| e(&x))?;
    c.draw_series(LineSeries::new(loss, &BLUE))
        .map_err(|x| e(&x))?;
    let nd: Vec<(f64, f64)> = h
        .iter()
        .filter_map(|l| l.valid.as_ref().map(|m| (l.epoch as f64, curve_value(m))))
        .collect();
    let top = nd.iter().map(|p| p.1).fold(0.0f64, f64::max).max(1e-3) * 1.1;
    let mut c = ChartBuilder::on(&right)
        .caption("valid NDCG@K", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(1f64..n.max(2.0), 0f64..top)
        .map_err(|x| e(&x))?;
    c.configure_mesh()
        .x_desc("epoch")
        .draw()
        .map_err(|x| e(&x))?;
    c.draw_series(LineSeries::new(nd, &RED))
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
