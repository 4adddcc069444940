//! Run-folder outputs: `log.csv`, `log.json`, `result.json`, `ranks.csv`
//! and the training curve (`curve.svg`, `curve.png`).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::error::TrainError;
use crate::trainer::{EpochLog, Outcome};

pub fn write_logs(dir: &Path, history: &[EpochLog]) -> Result<(), TrainError> {
    let mut csv = String::from("epoch,loss,seconds,train_seqs_per_s,valid_hr,valid_ndcg,best\n");
    for l in history {
        let (hr, ndcg) = l.valid.map_or((String::new(), String::new()), |m| {
            (format!("{:.6}", m.hr), format!("{:.6}", m.ndcg))
        });
        let _ = writeln!(
            csv,
            "{},{:.6},{:.3},{:.1},{},{},{}",
            l.epoch, l.loss, l.seconds, l.train_seqs_per_s, hr, ndcg, l.best
        );
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
    let mut csv = String::from("user,valid_rank,test_rank\n");
    for (u, (v, t)) in o.valid_ranks.iter().zip(&o.test_ranks).enumerate() {
        let _ = writeln!(csv, "{u},{v},{t}");
    }
    std::fs::write(dir.join("ranks.csv"), csv)?;
    Ok(())
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
        .filter_map(|l| l.valid.map(|m| (l.epoch as f64, m.ndcg)))
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
