//! Sensitivity plots (`[[plots]]` in the experiment file): a metric against
//! a swept setting, one line per user/item group, as the paper's Figure 3.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hsuga_eval::table::ResultTable;
use hsuga_eval::{Column, Metric};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

/// One plot: which rows are points, and at which x.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlotSpec {
    /// File stem under `<dataset>/plots/`.
    pub name: String,
    pub x_label: String,
    /// Method name → its x value.
    pub points: BTreeMap<String, f64>,
}

/// The groups drawn: Figure 3a contrasts active (head) and long-tail users.
const LINES: [(Column, RGBColor); 3] = [
    (Column::Overall, BLACK),
    (Column::TailUser, RED),
    (Column::HeadUser, BLUE),
];

/// A line per group: `(x, mean)` sorted by x, for the rows the plot names.
fn series(spec: &PlotSpec, table: &ResultTable, metric: Metric) -> Vec<(Column, Vec<(f64, f64)>)> {
    LINES
        .iter()
        .map(|&(column, _)| {
            let mut pts: Vec<(f64, f64)> = table
                .rows
                .iter()
                .filter_map(|row| {
                    let x = *spec.points.get(&row.method)?;
                    let cell = row
                        .cells
                        .iter()
                        .find(|c| c.column == column && c.metric == metric)?;
                    Some((x, cell.mean))
                })
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            (column, pts)
        })
        .collect()
}

/// Writes `<dir>/plots/<name>.{svg,png}`; returns the SVG paths. Plots whose
/// rows have not run yet are skipped.
pub fn draw_plots(
    specs: &[PlotSpec],
    table: &ResultTable,
    dir: &Path,
) -> Result<Vec<PathBuf>, String> {
    let Some(&metric) = table
        .metrics
        .iter()
        .find(|m| matches!(m, Metric::Ndcg(_)))
        .or(table.metrics.first())
    else {
        return Ok(Vec::new());
    };
    let mut written = Vec::new();
    for spec in specs {
        let lines = series(spec, table, metric);
        if lines.iter().all(|(_, p)| p.len() < 2) {
            continue;
        }
        let out = dir.join("plots");
        std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        let svg = out.join(format!("{}.svg", spec.name));
        let png = out.join(format!("{}.png", spec.name));
        draw(
            SVGBackend::new(&svg, (640, 420)).into_drawing_area(),
            spec,
            &lines,
            metric,
        )?;
        draw(
            BitMapBackend::new(&png, (640, 420)).into_drawing_area(),
            spec,
            &lines,
            metric,
        )?;
        written.push(svg);
    }
    Ok(written)
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    spec: &PlotSpec,
    lines: &[(Column, Vec<(f64, f64)>)],
    metric: Metric,
) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Debug| format!("plot {}: {x:?}", spec.name);
    let xs = || lines.iter().flat_map(|(_, p)| p.iter().map(|q| q.0));
    let (x0, x1) = xs().fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    // A sweep over orders of magnitude (α) reads better on a log axis.
    let log = x0 > 0.0 && x1 / x0 >= 50.0;
    let tx = |x: f64| if log { x.log10() } else { x };
    let (x0, x1) = (tx(x0), tx(x1));
    let pad = ((x1 - x0) * 0.05).max(1e-9);
    let ys = || lines.iter().flat_map(|(_, p)| p.iter().map(|q| q.1));
    let (y0, y1) = ys().fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
    let ypad = ((y1 - y0) * 0.15).max(0.005);
    // Headroom for the legend, so that it covers no line.
    let top = ((y1 - y0) * 0.45).max(0.015);
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut c = ChartBuilder::on(&root)
        .caption(&spec.name, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x0 - pad..x1 + pad, (y0 - ypad).max(0.0)..y1 + top)
        .map_err(|x| e(&x))?;
    let x_desc = if log {
        format!("log10 {}", spec.x_label)
    } else {
        spec.x_label.clone()
    };
    c.configure_mesh()
        .x_desc(x_desc)
        .y_desc(metric.to_string())
        .draw()
        .map_err(|x| e(&x))?;
    for ((column, pts), (_, color)) in lines.iter().zip(LINES) {
        let pts: Vec<(f64, f64)> = pts.iter().map(|&(x, y)| (tx(x), y)).collect();
        c.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(column.label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|x| e(&x))?;
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))
}
