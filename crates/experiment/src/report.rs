//! Aggregating finished runs into tables (`hsuga report <experiment dir>`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hsuga_data::Phase;
use hsuga_eval::table::{ResultTable, RunRecord};
use hsuga_eval::{Metric, Ranked, Ranking};
use hsuga_train::RunConfig;

use crate::ExperimentError;
use crate::RunReport;
use crate::config::ExperimentConfig;
use crate::plot::draw_plots;
use crate::tune::choose;

/// One dataset's table and where it was written.
#[derive(Debug, Clone)]
pub struct DatasetTable {
    pub dataset: String,
    /// The table of the selecting protocol (sampled, unless the experiment
    /// evaluates with full ranking only).
    pub table: ResultTable,
    /// The full-ranking table beside it, under `protocol = "both"`.
    pub full: Option<ResultTable>,
    pub dir: PathBuf,
    /// Sensitivity plots written (SVG; a PNG lies beside each).
    pub plots: Vec<PathBuf>,
    /// The tuned rows' validation scores per setting, the chosen one in
    /// bold (`tuning.md`); `None` when no row tunes.
    pub tuning: Option<String>,
}

/// Builds and writes the tables of every dataset in an experiment folder,
/// from whatever runs have finished (missing seeds are simply fewer seeds).
/// Everything comes from the run folders (`ranks.csv` carries each user's
/// groups), so no dataset is prepared again. Under `protocol = "both"` (or
/// `"full"`) the full-ranking table is written beside the sampled one as
/// `table-full.{md,csv,json}`.
pub fn report(exp_dir: &Path) -> Result<Vec<DatasetTable>, ExperimentError> {
    let file = exp_dir.join("experiment.toml");
    let cfg = ExperimentConfig::load_written(&file)?;
    let resolved = cfg.resolve()?;
    let metrics = Metric::at(&cfg.eval.ks);
    let mut out = Vec::new();
    let mut all_md = format!("# {}\n\n", cfg.name);
    for entry in sorted_dirs(exp_dir)? {
        let dataset = entry
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut records: BTreeMap<Ranked, Vec<RunRecord>> = BTreeMap::new();
        let mut tuning = String::new();
        let mut neighbours = String::new();
        let mut builds: BTreeMap<Option<String>, usize> = BTreeMap::new();
        for m in &cfg.methods {
            let folders: Vec<&str> = resolved
                .iter()
                .filter(|r| r.row == m.name)
                .map(|r| r.name.as_str())
                .collect();
            let mut finished = Vec::new();
            for folder in &folders {
                finished.push(finished_runs(&entry.join(folder))?);
            }
            let scores: Vec<Vec<f64>> = finished
                .iter()
                .map(|runs| runs.iter().map(|r| r.selection).collect())
                .collect();
            let Some(chosen) = choose(&scores) else {
                continue;
            };
            if folders.len() > 1 {
                tuning.push_str(&tuning_lines(&m.name, &folders, &scores, chosen));
            }
            if let Some(line) = neighbour_line(&m.name, &finished[chosen]) {
                neighbours.push_str(&line);
            }
            for run in &finished[chosen] {
                *builds.entry(run.build.clone()).or_default() += 1;
                let file = run.dir.join("config.toml");
                let text =
                    std::fs::read_to_string(&file).map_err(|e| ExperimentError::io(&file, e))?;
                let run_cfg = RunConfig::from_stored_toml(&text)
                    .map_err(|e| ExperimentError::io(&file, e))?;
                for (protocol, ranking) in read_rankings(&run.dir.join("ranks.csv"))? {
                    records.entry(protocol).or_default().push(RunRecord {
                        method: m.name.clone(),
                        seed: run_cfg.seed,
                        ranking,
                    });
                }
            }
        }
        if records.is_empty() {
            continue;
        }
        let mut tables = Vec::new();
        for (protocol, records) in &records {
            let (title, stem) = match protocol {
                Ranked::Sampled => (format!("{} — {}", cfg.name, dataset), "table".to_string()),
                Ranked::Full => (
                    format!("{} — {} (full ranking)", cfg.name, dataset),
                    "table-full".to_string(),
                ),
            };
            let table = ResultTable::build(&title, records, &metrics, &|m| cfg.base_of(m));
            table
                .write_all(&entry, &stem)
                .map_err(|e| ExperimentError::io(&entry, e))?;
            all_md.push_str(&table.to_markdown());
            all_md.push('\n');
            tables.push(table);
        }
        // Plots and the caller read the protocol that selects epochs.
        let table = tables.remove(0);
        let full = tables.pop();
        let file = entry.join("tuning.md");
        let tuning = if !tuning.is_empty() {
            let text = format!("{TUNING_HEAD}{tuning}");
            std::fs::write(&file, &text).map_err(|e| ExperimentError::io(&file, e))?;
            all_md.push_str(&text);
            all_md.push('\n');
            Some(text)
        } else {
            if file.is_file() {
                // From an earlier version of the experiment that tuned.
                std::fs::remove_file(&file).map_err(|e| ExperimentError::io(&file, e))?;
            }
            None
        };
        if !neighbours.is_empty() {
            all_md.push_str(NEIGHBOURS_HEAD);
            all_md.push_str(&neighbours);
            all_md.push('\n');
        }
        all_md.push_str(&builds_line(&builds));
        let plots = draw_plots(&cfg.plots, &table, &entry).map_err(ExperimentError::Io)?;
        for svg in &plots {
            let rel = svg.strip_prefix(exp_dir).unwrap_or(svg);
            all_md.push_str(&format!("![{}]({})\n\n", rel.display(), rel.display()));
        }
        out.push(DatasetTable {
            dataset,
            table,
            full,
            dir: entry,
            plots,
            tuning,
        });
    }
    let results = exp_dir.join("results.md");
    std::fs::write(&results, all_md).map_err(|e| ExperimentError::io(&results, e))?;
    Ok(out)
}

const TUNING_HEAD: &str = "Tuned rows report the setting with the best mean validation NDCG@K \
over its finished seeds (chosen: **bold**); test numbers play no part in the choice.\n\n\
| Row | Setting | Seeds | Valid NDCG@K (mean) |\n|---|---|---:|---:|\n";

const NEIGHBOURS_HEAD: &str = "Semantic neighbours of the distilling rows: mean Jaccard \
overlap of training items with each user's neighbours, and with as many random users \
(mean over seeds; self-distillation can only help where the first is well above the \
second).\n\n| Row | Neighbours | Random users | Ratio |\n|---|---:|---:|---:|\n";

/// The row's line of the neighbour table, from its runs' `neighbours.json`
/// (none when the row does not distil).
fn neighbour_line(row: &str, runs: &[Finished]) -> Option<String> {
    let read = |r: &Finished| -> Option<(f64, f64)> {
        let text = std::fs::read_to_string(r.dir.join("neighbours.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some((
            v["neighbour_jaccard"].as_f64()?,
            v["random_jaccard"].as_f64()?,
        ))
    };
    let got: Vec<(f64, f64)> = runs.iter().filter_map(read).collect();
    if got.is_empty() {
        return None;
    }
    let n = got.len() as f64;
    let near = got.iter().map(|g| g.0).sum::<f64>() / n;
    let random = got.iter().map(|g| g.1).sum::<f64>() / n;
    Some(format!(
        "| {row} | {near:.4} | {random:.4} | {:.1}× |\n",
        near / random.max(1e-12)
    ))
}

/// Which builds trained the runs behind a table: runs resumed or adopted
/// across builds that differ in numerical code do not reproduce each other
/// exactly, and this line is where a reader sees that they were mixed.
fn builds_line(builds: &BTreeMap<Option<String>, usize>) -> String {
    let list: Vec<String> = builds
        .iter()
        .map(|(b, n)| {
            let b = b
                .as_ref()
                .map_or("not recorded".into(), |b| format!("`{b}`"));
            format!("{b} ({n} run{})", if *n == 1 { "" } else { "s" })
        })
        .collect();
    format!("Trained by: {}.\n\n", list.join(", "))
}

/// One finished run of a folder, with its best validation value of the
/// selection metric and the build that trained it.
struct Finished {
    dir: PathBuf,
    selection: f64,
    build: Option<String>,
}

/// The finished runs (one per seed folder) of a method folder, if any.
fn finished_runs(method_dir: &Path) -> Result<Vec<Finished>, ExperimentError> {
    if !method_dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for dir in sorted_dirs(method_dir)? {
        if !crate::is_finished(&dir) {
            continue;
        }
        let file = dir.join("report.json");
        let text = std::fs::read_to_string(&file).map_err(|e| ExperimentError::io(&file, e))?;
        let r: RunReport =
            serde_json::from_str(&text).map_err(|e| ExperimentError::io(&file, e))?;
        out.push(Finished {
            dir,
            selection: r.selection(),
            build: r.build,
        });
    }
    Ok(out)
}

/// The tuning table's lines for one row.
fn tuning_lines(row: &str, folders: &[&str], scores: &[Vec<f64>], chosen: usize) -> String {
    let mut out = String::new();
    for (i, (folder, s)) in folders.iter().zip(scores).enumerate() {
        let setting = folder.split_once('@').map_or(*folder, |(_, s)| s);
        let mean = if s.is_empty() {
            "–".to_string()
        } else {
            format!("{:.4}", s.iter().sum::<f64>() / s.len() as f64)
        };
        let (a, b) = if i == chosen { ("**", "**") } else { ("", "") };
        out.push_str(&format!(
            "| {row} | {a}{setting}{b} | {} | {a}{mean}{b} |\n",
            s.len()
        ));
    }
    out
}

fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>, ExperimentError> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ExperimentError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    Ok(v)
}

/// Reads a run's `ranks.csv` (see `hsuga_train::log::ranks_csv`): one
/// test [`Ranking`] per protocol it holds, each user's groups included.
fn read_rankings(path: &Path) -> Result<Vec<(Ranked, Ranking)>, ExperimentError> {
    let text = std::fs::read_to_string(path).map_err(|e| ExperimentError::io(path, e))?;
    let bad = |line: usize, m: &str| ExperimentError::Run {
        path: format!("{}:{line}", path.display()),
        message: m.to_string(),
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(user), Some(item), Some(head_user), Some(head_item)) = (
        col("user"),
        col("test_item"),
        col("head_user"),
        col("head_item"),
    ) else {
        return Err(bad(
            1,
            "expected the columns user, test_item, head_user and head_item \
             (a run folder from an older build: train it again)",
        ));
    };
    let protocols: Vec<(Ranked, usize)> = [
        (Ranked::Sampled, col("test_rank")),
        (Ranked::Full, col("test_full_rank")),
    ]
    .into_iter()
    .filter_map(|(p, c)| c.map(|c| (p, c)))
    .collect();
    if protocols.is_empty() {
        return Err(bad(1, "no test_rank or test_full_rank column"));
    }
    let mut users: Vec<usize> = Vec::new();
    let mut targets = Vec::new();
    let mut head_users = Vec::new();
    let mut head_targets = Vec::new();
    let mut ranks: Vec<Vec<usize>> = vec![Vec::new(); protocols.len()];
    for (i, line) in lines.enumerate() {
        let n = i + 2;
        let f: Vec<&str> = line.split(',').collect();
        let field = |c: usize, what: &str| -> Result<&str, ExperimentError> {
            f.get(c)
                .copied()
                .ok_or_else(|| bad(n, &format!("no {what} field")))
        };
        let number = |c: usize, what: &str| -> Result<usize, ExperimentError> {
            field(c, what)?
                .parse()
                .map_err(|_| bad(n, &format!("{what} is not a number")))
        };
        let u = number(user, "user")?;
        if users.last().is_some_and(|&last| u <= last) {
            return Err(bad(n, "users must be listed in ascending order, each once"));
        }
        users.push(u);
        targets.push(number(item, "test_item")? as u32);
        let flag = |c: usize, what: &str| -> Result<bool, ExperimentError> {
            match field(c, what)? {
                "1" | "true" => Ok(true),
                "0" | "false" => Ok(false),
                _ => Err(bad(n, &format!("{what} must be 0 or 1"))),
            }
        };
        head_users.push(flag(head_user, "head_user")?);
        head_targets.push(flag(head_item, "head_item")?);
        for (r, &(p, c)) in ranks.iter_mut().zip(&protocols) {
            r.push(number(
                c,
                if p == Ranked::Full {
                    "test_full_rank"
                } else {
                    "test_rank"
                },
            )?);
        }
    }
    if targets.is_empty() {
        return Err(bad(1, "no users"));
    }
    Ok(protocols
        .iter()
        .zip(ranks)
        .map(|(&(p, _), ranks)| {
            (
                p,
                Ranking {
                    phase: Phase::Test,
                    users: users.clone(),
                    ranks,
                    targets: targets.clone(),
                    head_users: head_users.clone(),
                    head_targets: head_targets.clone(),
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbour_line_averages_the_runs_that_distil() {
        let dir = tempfile::tempdir().unwrap();
        let run = |name: &str, json: Option<&str>| {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            if let Some(j) = json {
                std::fs::write(d.join("neighbours.json"), j).unwrap();
            }
            Finished {
                dir: d,
                selection: 0.0,
                build: None,
            }
        };
        let runs = [
            run(
                "a",
                Some(r#"{"neighbour_jaccard": 0.2, "random_jaccard": 0.05, "users": 3}"#),
            ),
            run(
                "b",
                Some(r#"{"neighbour_jaccard": 0.4, "random_jaccard": 0.15, "users": 3}"#),
            ),
            run("c", None),
        ];
        assert_eq!(
            neighbour_line("LLM-ESR", &runs).unwrap(),
            "| LLM-ESR | 0.3000 | 0.1000 | 3.0× |\n"
        );
        assert_eq!(neighbour_line("SASRec", &runs[2..]), None);
    }

    #[test]
    fn builds_line_counts_runs_per_build() {
        let builds = BTreeMap::from([(Some("0.1.0+gabc".to_string()), 2), (None, 1)]);
        assert_eq!(
            builds_line(&builds),
            "Trained by: not recorded (1 run), `0.1.0+gabc` (2 runs).\n\n"
        );
    }

    #[test]
    fn ranks_file_gives_a_self_contained_ranking_per_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ranks.csv");
        std::fs::write(
            &p,
            "user,valid_rank,test_rank,valid_full_rank,test_full_rank,test_item,head_user,head_item\n\
             0,3,4,30,40,7,1,0\n1,0,9,2,90,8,0,1\n",
        )
        .unwrap();
        let got = read_rankings(&p).unwrap();
        assert_eq!(got.len(), 2);
        let (p0, sampled) = &got[0];
        let (p1, full) = &got[1];
        assert_eq!((*p0, *p1), (Ranked::Sampled, Ranked::Full));
        assert_eq!(sampled.ranks, vec![4, 9]);
        assert_eq!(full.ranks, vec![40, 90]);
        assert_eq!(sampled.targets, vec![7, 8]);
        assert_eq!(sampled.head_users, vec![true, false]);
        assert_eq!(full.head_targets, vec![false, true]);

        let e = |text: &str| {
            std::fs::write(&p, text).unwrap();
            read_rankings(&p).unwrap_err().to_string()
        };
        let old = e("user,valid_rank,test_rank\n0,3,4\n");
        assert!(
            old.contains("older build") && old.contains("ranks.csv:1"),
            "{old}"
        );
        let head = "user,valid_rank,test_rank,test_item,head_user,head_item\n";
        let x = e(&format!("{head}0,3,x,7,1,0\n"));
        assert!(x.contains("ranks.csv:2") && x.contains("test_rank"), "{x}");
        let back = e(&format!("{head}2,3,4,7,1,0\n1,1,1,7,1,0\n"));
        assert!(
            back.contains("ranks.csv:3") && back.contains("ascending"),
            "{back}"
        );
        // Users without a target (min_eval_interactions) leave gaps.
        std::fs::write(&p, format!("{head}0,3,4,7,1,0\n2,1,1,8,0,0\n")).unwrap();
        assert_eq!(read_rankings(&p).unwrap()[0].1.users, vec![0, 2]);
        let flag = e(&format!("{head}0,3,4,7,2,0\n"));
        assert!(flag.contains("head_user must be 0 or 1"), "{flag}");
    }
}
