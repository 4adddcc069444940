//! Result tables in the paper's layout: one row per method, the five column
//! groups (Overall, Tail Item, Head Item, Tail User, Head User) × metrics,
//! each cell the mean ± standard deviation over seeds, with `*` where the
//! method beats the row's base method significantly. Rows may have
//! different bases (the paper's Table 1 pairs each "+GAA"/"+HSU" row with
//! its own base).
//!
//! Significance respects seed variance: for every seed both rows ran, a
//! paired t-test over users compares that seed's run of the method with the
//! same seed's run of the base; `*` needs p < [`ALPHA`] with the method
//! ahead *in every such seed*, and the mean over seeds ahead. (Averaging
//! each user's values over seeds first, as an earlier version did, lets a
//! gain smaller than the seed-to-seed spread get a star.) Each cell also
//! carries each seed's p-value and a seed-level paired t-test of the
//! per-seed means, for readers who want the other view.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::groups::{Column, Ranking};
use crate::metrics::Metric;
use crate::ttest::paired_t_test;

/// Significance level for the `*` marker.
pub const ALPHA: f64 = 0.05;

/// One finished run: a method under one seed, ranked on the test targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub method: String,
    pub seed: u64,
    pub ranking: Ranking,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultTable {
    pub title: String,
    pub metrics: Vec<Metric>,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub method: String,
    /// The method this row is t-tested against.
    pub base: Option<String>,
    pub seeds: Vec<u64>,
    pub cells: Vec<Cell>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub column: Column,
    pub metric: Metric,
    pub mean: f64,
    pub std: f64,
    /// The largest of the per-seed p-values (the one that decides the
    /// star); absent for a row without a base or without a seed in common.
    pub p_value: Option<f64>,
    /// Per seed both rows ran: the paired t-test over users of that seed's
    /// runs (two-sided p) and whether the method was ahead.
    #[serde(default)]
    pub seed_tests: Vec<SeedTest>,
    /// Paired t-test over seeds of the per-seed means (needs 2 seeds in common).
    #[serde(default)]
    pub seed_level_p: Option<f64>,
    /// Ahead with p < [`ALPHA`] in every seed in common, and ahead on the mean.
    pub significant: bool,
}

/// One seed's comparison of a method with its base.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeedTest {
    pub seed: u64,
    /// Two-sided p of the paired t-test over the column's users.
    pub p: f64,
    /// Mean over users of method − base.
    pub mean_diff: f64,
}

impl ResultTable {
    /// Builds the table; methods keep the order of their first record.
    /// `base_of(method)` names the row a method is tested against.
    pub fn build(
        title: &str,
        records: &[RunRecord],
        metrics: &[Metric],
        base_of: &dyn Fn(&str) -> Option<String>,
    ) -> Self {
        let mut methods: Vec<&str> = Vec::new();
        for r in records {
            if !methods.contains(&r.method.as_str()) {
                methods.push(&r.method);
            }
        }
        let runs_of =
            |m: &str| -> Vec<&RunRecord> { records.iter().filter(|r| r.method == m).collect() };
        let rows = methods
            .iter()
            .map(|&method| {
                let base = base_of(method).filter(|b| b != method);
                let base_runs = base.as_deref().map(runs_of).filter(|r| !r.is_empty());
                let runs = runs_of(method);
                let mut cells = Vec::new();
                for column in Column::ALL {
                    for &metric in metrics {
                        let vals: Vec<f64> = runs
                            .iter()
                            .map(|r| r.ranking.column_mean(column, metric))
                            .collect();
                        let (mean, std) = mean_std(&vals);
                        let mut cell = Cell {
                            column,
                            metric,
                            mean,
                            std,
                            p_value: None,
                            seed_tests: Vec::new(),
                            seed_level_p: None,
                            significant: false,
                        };
                        if let Some(b) = &base_runs {
                            compare(&mut cell, &runs, b);
                        }
                        cells.push(cell);
                    }
                }
                Row {
                    method: method.to_string(),
                    base,
                    seeds: runs.iter().map(|r| r.seed).collect(),
                    cells,
                }
            })
            .collect();
        Self {
            title: title.to_string(),
            metrics: metrics.to_vec(),
            rows,
        }
    }

    /// The base every tested row shares, if there is exactly one.
    fn single_base(&self) -> Option<&str> {
        let mut bases = self.rows.iter().filter_map(|r| r.base.as_deref());
        let first = bases.next()?;
        bases.all(|b| b == first).then_some(first)
    }

    /// "Mean ± std over N seeds", naming the rows that have fewer (a grid
    /// still training): their means are over fewer runs, and their t-tests
    /// average per-user values over fewer seeds than their base's.
    fn seeds_line(&self) -> String {
        let most = self.rows.iter().map(|r| r.seeds.len()).max().unwrap_or(0);
        let plural = |n: usize| if n == 1 { "seed" } else { "seeds" };
        let mut line = format!("\nMean ± std over {most} {}", plural(most));
        let fewer: Vec<String> = self
            .rows
            .iter()
            .filter(|r| r.seeds.len() < most)
            .map(|r| format!("{} ({})", r.method, r.seeds.len()))
            .collect();
        if !fewer.is_empty() {
            line.push_str(&format!("; fewer for {}", fewer.join(", ")));
        }
        line.push('.');
        line
    }

    pub fn to_markdown(&self) -> String {
        let mut out = format!("### {}\n\n", self.title);
        let single = self.single_base();
        let tested = self.rows.iter().any(|r| r.base.is_some());
        let vs_column = tested && single.is_none();
        let mut head = String::from("| Method |");
        let mut sub = String::from("|---|");
        if vs_column {
            head.push_str(" vs |");
            sub.push_str("---|");
        }
        for c in Column::ALL {
            for m in &self.metrics {
                head.push_str(&format!(" {} {} |", c.label(), m.short()));
                sub.push_str("---:|");
            }
        }
        out.push_str(&head);
        out.push('\n');
        out.push_str(&sub);
        out.push('\n');
        for row in &self.rows {
            out.push_str(&format!("| {} |", row.method));
            if vs_column {
                out.push_str(&format!(" {} |", row.base.as_deref().unwrap_or("")));
            }
            for cell in &row.cells {
                let star = if cell.significant { "*" } else { "" };
                if row.seeds.len() > 1 {
                    out.push_str(&format!(" {:.4} ± {:.4}{star} |", cell.mean, cell.std));
                } else {
                    out.push_str(&format!(" {:.4}{star} |", cell.mean));
                }
            }
            out.push('\n');
        }
        out.push_str(&self.seeds_line());
        let test = format!(
            "with p < {ALPHA} in every seed (paired t-test over users, each seed against the \
             same seed of the base)."
        );
        match single {
            Some(base) => out.push_str(&format!(" `*`: better than {base} {test}")),
            None if tested => {
                out.push_str(&format!(" `*`: better than the row's `vs` method {test}"))
            }
            None => {}
        }
        out.push('\n');
        out
    }

    pub fn to_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record([
            "method",
            "base",
            "column",
            "metric",
            "mean",
            "std",
            "seeds",
            "p_value",
            "seed_p_values",
            "seed_level_p",
            "significant",
        ])
        .expect("writing to memory");
        for row in &self.rows {
            for c in &row.cells {
                w.write_record([
                    row.method.clone(),
                    row.base.clone().unwrap_or_default(),
                    c.column.label().to_string(),
                    c.metric.to_string(),
                    format!("{:.6}", c.mean),
                    format!("{:.6}", c.std),
                    row.seeds.len().to_string(),
                    c.p_value.map(|p| format!("{p:.3e}")).unwrap_or_default(),
                    c.seed_tests
                        .iter()
                        .map(|t| format!("{}:{:.3e}", t.seed, t.p))
                        .collect::<Vec<_>>()
                        .join(";"),
                    c.seed_level_p
                        .map(|p| format!("{p:.3e}"))
                        .unwrap_or_default(),
                    c.significant.to_string(),
                ])
                .expect("writing to memory");
            }
        }
        String::from_utf8(w.into_inner().expect("flush to memory")).expect("csv is UTF-8")
    }

    /// Writes `<stem>.md`, `<stem>.csv` and `<stem>.json` into `dir`.
    pub fn write_all(&self, dir: &Path, stem: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(format!("{stem}.md")), self.to_markdown())?;
        std::fs::write(dir.join(format!("{stem}.csv")), self.to_csv())?;
        let mut f = std::fs::File::create(dir.join(format!("{stem}.json")))?;
        serde_json::to_writer_pretty(&mut f, self).map_err(std::io::Error::other)?;
        f.write_all(b"\n")
    }
}

/// Sample mean and standard deviation (n − 1; 0 for a single value).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Fills the cell's tests against the base: one paired t-test over users
/// per seed both rows ran, then the seed-level test and the star.
fn compare(cell: &mut Cell, runs: &[&RunRecord], base: &[&RunRecord]) {
    let (column, metric) = (cell.column, cell.metric);
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for run in runs {
        let Some(b) = base.iter().find(|b| b.seed == run.seed) else {
            continue;
        };
        if !run.ranking.same_users(&b.ranking) {
            continue; // not the same split: nothing to pair
        }
        let users = run.ranking.users_in(column);
        let pick = |r: &RunRecord| -> Vec<f64> {
            users
                .iter()
                .map(|&u| metric.of_rank(r.ranking.ranks[u]))
                .collect()
        };
        let Ok(t) = paired_t_test(&pick(run), &pick(b)) else {
            continue;
        };
        cell.seed_tests.push(SeedTest {
            seed: run.seed,
            p: t.p,
            mean_diff: t.mean_diff,
        });
        ours.push(run.ranking.column_mean(column, metric));
        theirs.push(b.ranking.column_mean(column, metric));
    }
    if cell.seed_tests.is_empty() {
        return;
    }
    cell.p_value = cell.seed_tests.iter().map(|t| t.p).reduce(f64::max);
    cell.seed_level_p = paired_t_test(&ours, &theirs).ok().map(|t| t.p);
    let base_mean = mean_std(&theirs).0;
    cell.significant = cell
        .seed_tests
        .iter()
        .all(|t| t.p < ALPHA && t.mean_diff > 0.0)
        && mean_std(&ours).0 > base_mean;
}

#[cfg(test)]
mod tests {
    use super::*;
    use hsuga_data::{GroupRule, Groups, Phase, Split};

    fn setup() -> (Split, Groups) {
        let seqs: Vec<Vec<u32>> = (0..40)
            .map(|u| vec![u % 4 + 1, 5, 6, (u % 3) + 1])
            .collect();
        let split = Split::leave_one_out(&seqs, 6).unwrap();
        let groups = Groups::compute(&split, GroupRule::Pareto { ratio: 0.2 });
        (split, groups)
    }

    fn record(
        (split, groups): &(Split, Groups),
        method: &str,
        seed: u64,
        ranks: Vec<usize>,
    ) -> RunRecord {
        RunRecord {
            method: method.into(),
            seed,
            ranking: Ranking::new(Phase::Test, split, groups, ranks),
        }
    }

    #[test]
    fn mean_std_hand_values() {
        assert_eq!(mean_std(&[1.0, 2.0, 3.0]), (2.0, 1.0));
        assert_eq!(mean_std(&[0.5]), (0.5, 0.0));
    }

    #[test]
    fn stars_only_significant_improvements() {
        let split = setup();
        let base_ranks: Vec<usize> = (0..40).map(|u| 5 + u % 7).collect();
        let better: Vec<usize> = (0..40).map(|u| u % 3).collect();
        let recs = vec![
            record(&split, "SASRec", 42, base_ranks.clone()),
            record(&split, "SASRec", 43, base_ranks.clone()),
            record(&split, "Better", 42, better.clone()),
            record(&split, "Better", 43, better),
            record(&split, "Same", 42, base_ranks.clone()),
            record(&split, "Same", 43, base_ranks),
        ];
        let t = ResultTable::build("T", &recs, &[Metric::Hr(10), Metric::Ndcg(10)], &|_| {
            Some("SASRec".to_string())
        });
        assert_eq!(t.rows.len(), 3);
        assert_eq!(t.rows[1].seeds, vec![42, 43]);
        let overall_ndcg = |row: &Row| {
            row.cells
                .iter()
                .find(|c| c.column == Column::Overall && c.metric == Metric::Ndcg(10))
                .unwrap()
                .clone()
        };
        assert!(overall_ndcg(&t.rows[1]).significant);
        assert!(overall_ndcg(&t.rows[0]).p_value.is_none());
        let same = overall_ndcg(&t.rows[2]);
        assert_eq!(same.p_value, Some(1.0));
        assert!(!same.significant);
        let md = t.to_markdown();
        assert!(
            md.contains("| Method | Overall H@10 | Overall N@10 | Tail Item H@10"),
            "{md}"
        );
        assert!(md.contains("| Better | 1.0000 ± 0.0000* |"), "{md}");
        assert!(
            md.contains("better than SASRec with p < 0.05 in every seed"),
            "{md}"
        );
        assert!(md.contains("Mean ± std over 2 seeds."), "{md}");
        let better_cell = overall_ndcg(&t.rows[1]);
        assert_eq!(
            better_cell
                .seed_tests
                .iter()
                .map(|s| s.seed)
                .collect::<Vec<_>>(),
            vec![42, 43]
        );
        let csv = t.to_csv();
        assert_eq!(csv.lines().count(), 1 + 3 * 10);
        assert!(
            csv.lines()
                .next()
                .unwrap()
                .contains("seed_p_values,seed_level_p")
        );
        let dir = tempfile::tempdir().unwrap();
        t.write_all(dir.path(), "table2").unwrap();
        let back: ResultTable =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("table2.json")).unwrap())
                .unwrap();
        assert_eq!(back.to_markdown(), t.to_markdown());
    }

    #[test]
    fn rows_with_fewer_seeds_are_named() {
        let split = setup();
        let ranks: Vec<usize> = (0..40).map(|u| u % 7).collect();
        let recs = vec![
            record(&split, "A", 42, ranks.clone()),
            record(&split, "A", 43, ranks.clone()),
            record(&split, "A", 44, ranks.clone()),
            record(&split, "B", 42, ranks.clone()),
            record(&split, "C", 42, ranks.clone()),
            record(&split, "C", 43, ranks),
        ];
        let t = ResultTable::build("T", &recs, &[Metric::Ndcg(10)], &|_| None);
        let md = t.to_markdown();
        assert!(
            md.contains("Mean ± std over 3 seeds; fewer for B (1), C (2)."),
            "{md}"
        );
    }

    #[test]
    fn rows_with_their_own_base_get_a_vs_column() {
        let split = setup();
        let worse: Vec<usize> = (0..40).map(|u| 5 + u % 7).collect();
        let better: Vec<usize> = (0..40).map(|u| u % 3).collect();
        let recs = vec![
            record(&split, "A", 1, worse.clone()),
            record(&split, "A+GAA", 1, better.clone()),
            record(&split, "B", 1, better),
            record(&split, "B+GAA", 1, worse),
        ];
        let base_of = |m: &str| m.strip_suffix("+GAA").map(str::to_string);
        let t = ResultTable::build("T", &recs, &[Metric::Ndcg(10)], &base_of);
        let md = t.to_markdown();
        assert!(md.contains("| Method | vs | Overall N@10 |"), "{md}");
        assert!(md.contains("| A+GAA | A | 0.7176* |"), "{md}");
        assert!(md.contains("| B |  | 0.7176 |"), "{md}");
        // B+GAA is worse than its base: tested, but no star.
        let b_gaa = &t.rows[3];
        assert_eq!(b_gaa.base.as_deref(), Some("B"));
        let overall = &b_gaa.cells[0];
        assert_eq!(overall.column, Column::Overall);
        assert!(
            overall.p_value.is_some_and(|p| p < ALPHA) && !overall.significant,
            "{overall:?}"
        );
    }

    /// Regression (issue 15): a gain in one seed only got a star, because
    /// the t-test ran once over per-user values averaged over seeds.
    #[test]
    fn a_gain_in_one_seed_only_gets_no_star() {
        let split = setup();
        let base: Vec<usize> = (0..40).map(|u| 5 + u % 7).collect();
        let better: Vec<usize> = (0..40).map(|u| u % 3).collect();
        let recs = vec![
            record(&split, "SASRec", 42, base.clone()),
            record(&split, "SASRec", 43, base.clone()),
            record(&split, "Lucky", 42, better),
            record(&split, "Lucky", 43, base.clone()),
        ];
        let t = ResultTable::build("T", &recs, &[Metric::Ndcg(10)], &|_| {
            Some("SASRec".to_string())
        });
        let overall = &t.rows[1].cells[0];
        assert_eq!(overall.column, Column::Overall);
        // Seed 42 alone is a strong gain; seed 43 is identical to the base.
        assert!(overall.seed_tests[0].p < 1e-6, "{overall:?}");
        assert_eq!(overall.seed_tests[1].p, 1.0);
        assert_eq!(overall.p_value, Some(1.0));
        assert!(!overall.significant, "{overall:?}");
        // Averaged over seeds first, the old way, the same data is "significant".
        let avg = |r: &[&RunRecord]| -> Vec<f64> {
            (0..40)
                .map(|u| {
                    r.iter()
                        .map(|x| Metric::Ndcg(10).of_rank(x.ranking.ranks[u]))
                        .sum::<f64>()
                        / r.len() as f64
                })
                .collect()
        };
        let old = paired_t_test(&avg(&[&recs[2], &recs[3]]), &avg(&[&recs[0], &recs[1]])).unwrap();
        assert!(old.p < ALPHA, "the data must show the old bug: p {}", old.p);
        // A seed the base did not run is not tested.
        let recs2 = vec![
            record(&split, "SASRec", 42, base.clone()),
            record(&split, "Other", 44, base),
        ];
        let t = ResultTable::build("T", &recs2, &[Metric::Ndcg(10)], &|_| {
            Some("SASRec".to_string())
        });
        assert!(t.rows[1].cells[0].seed_tests.is_empty());
        assert!(t.rows[1].cells[0].p_value.is_none());
    }
}
