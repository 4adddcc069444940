//! The training curve of a run folder (`curve.svg`, `curve.png`): loss and
//! validation NDCG per epoch, drawn from the trainer's epoch log after the
//! run, so the trainer itself draws nothing.

use std::path::Path;

use hsuga_eval::Metric;
use hsuga_train::EpochLog;
use plotters::prelude::*;

/// The validation value drawn on the curve: the first NDCG@K logged.
fn curve_value(m: &hsuga_eval::Means) -> f64 {
    m.values
        .iter()
        .find(|(k, _)| matches!(k, Metric::Ndcg(_)))
        .or_else(|| m.values.iter().next())
        .map_or(0.0, |(_, &v)| v)
}

/// Loss and validation NDCG per epoch, side by side.
pub(crate) fn plot_curves(dir: &Path, history: &[EpochLog]) -> Result<(), String> {
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
