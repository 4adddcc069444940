//! `hsuga data stats|prepare|fetch|list`: the paper's Table 8 columns,
//! cached splits, and getting datasets onto the machine.

use std::time::Instant;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use hsuga_data::{DatasetConfig, DatasetStats};

use crate::{Globals, datasets};

#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Users, items, sparsity, average length and group sizes.
    Stats {
        /// Dataset names (configs/datasets/<name>.toml) or config paths.
        #[arg(required = true)]
        datasets: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Markdown)]
        format: Format,
    },
    /// Preprocess, split and draw evaluation candidates into the cache.
    Prepare {
        dataset: String,
        /// Seeds to draw candidates for.
        #[arg(long, value_delimiter = ',', default_value = "42,43,44")]
        seeds: Vec<u64>,
        /// Negatives per user for the sampled protocol.
        #[arg(long, default_value_t = 100)]
        negatives: usize,
    },
    /// Download a dataset's files from its config's [source], each checked
    /// by sha256 (every command also does this on first use).
    Fetch {
        /// Dataset names (configs/datasets/<name>.toml) or config paths.
        #[arg(required = true)]
        datasets: Vec<String>,
        /// Seconds without data before a download attempt gives up.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Further attempts after a dropped or stalled download, each resuming.
        #[arg(long, default_value_t = 3)]
        retries: u32,
    },
    /// Every known dataset: where its files are, or where they would be fetched from.
    List,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Markdown,
    Csv,
    Json,
}

pub fn run(args: DataArgs, g: &Globals) -> Result<()> {
    match args.command {
        DataCommand::Stats { datasets, format } => stats(&datasets, format, g),
        DataCommand::Prepare {
            dataset,
            seeds,
            negatives,
        } => prepare(&dataset, &seeds, negatives, g),
        DataCommand::Fetch {
            datasets,
            timeout,
            retries,
        } => fetch(&datasets, timeout, retries, g),
        DataCommand::List => list(g),
    }
}

fn fetch(names: &[String], timeout: u64, retries: u32, g: &Globals) -> Result<()> {
    let opts = hsuga_data::HttpOptions {
        read_timeout: std::time::Duration::from_secs(timeout),
        retries,
        ..Default::default()
    };
    for name in names {
        let path = datasets::config_path(name, &g.datasets_dir)?;
        let cfg = DatasetConfig::read(&path)?;
        let report = hsuga_data::fetch_missing(&cfg, &opts)?;
        if cfg.source.is_none() {
            // Nothing to fetch from: the files must already be there.
            DatasetConfig::load(&path)?;
        }
        println!(
            "{}: {} fetched, {} already present, in {}",
            cfg.name,
            report.fetched.len(),
            report.present.len(),
            cfg.data_dir.display()
        );
    }
    Ok(())
}

/// Megabytes, for people.
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// `hsuga data list` (also part of `hsuga doctor`): every dataset config,
/// whether its files are here, and what a fetch would download from where.
pub fn list(g: &Globals) -> Result<()> {
    let mut paths: Vec<_> = std::fs::read_dir(&g.datasets_dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", g.datasets_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    println!("| dataset | files | folder | fetched from |");
    println!("|---|---|---|---|");
    for path in paths {
        let cfg = match DatasetConfig::read(&path) {
            Ok(c) => c,
            Err(e) => {
                println!("| {} | unreadable: {e} | | |", path.display());
                continue;
            }
        };
        let files = cfg.input_files();
        let on_disk: Vec<u64> = files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok().map(|m| m.len()))
            .collect();
        let state = if on_disk.len() == files.len() {
            format!("present ({})", mb(on_disk.iter().sum()))
        } else {
            let size = cfg
                .source
                .as_ref()
                .and_then(|s| s.download_bytes(&cfg.data_dir))
                .map_or(String::new(), |b| format!(", {} to download", mb(b)));
            format!(
                "{} of {} missing{size}",
                files.len() - on_disk.len(),
                files.len()
            )
        };
        let source = match &cfg.source {
            None => "no source: place the files by hand".to_string(),
            Some(s) => match &s.wheel {
                Some(w) => format!("PyPI wheel {}=={}", w.package, w.version),
                None => {
                    let hosts: std::collections::BTreeSet<&str> = s
                        .files
                        .iter()
                        .filter_map(|f| f.url.as_deref())
                        .filter_map(|u| u.split('/').nth(2))
                        .collect();
                    hosts.into_iter().collect::<Vec<_>>().join(", ")
                }
            },
        };
        println!(
            "| {} | {state} | {} | {source} |",
            cfg.name,
            cfg.data_dir.display()
        );
    }
    Ok(())
}

fn stats(names: &[String], format: Format, g: &Globals) -> Result<()> {
    let mut all = Vec::new();
    let mut notes = Vec::new();
    for name in names {
        let p = datasets::load(name, g)?;
        let r = &p.dataset.report;
        if r.dropped_users > 0 || r.dropped_by_rating > 0 {
            let lengths: Vec<String> = r
                .dropped_user_lengths
                .iter()
                .map(|(len, n)| format!("{n} with {len}"))
                .collect();
            notes.push(format!(
                "{}: before filtering {} users / {} items / {} interactions; dropped {} users ({}), {} items, {} interactions ({} by rating)",
                p.dataset.name,
                r.raw_users,
                r.raw_items,
                r.raw_interactions,
                r.dropped_users,
                lengths.join(", "),
                r.dropped_items,
                r.dropped_interactions,
                r.dropped_by_rating,
            ));
        }
        if r.items_without_attributes > 0 {
            notes.push(format!(
                "{}: {} of {} items have no row in the item file (their text is empty)",
                p.dataset.name, r.items_without_attributes, p.dataset.num_items
            ));
        }
        all.push((DatasetStats::of(&p), p.groups.rule.clone()));
    }
    match format {
        Format::Json => {
            let stats: Vec<&DatasetStats> = all.iter().map(|(s, _)| s).collect();
            println!("{}", serde_json::to_string_pretty(&stats)?);
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            for (s, _) in &all {
                w.serialize(s)?;
            }
            w.flush()?;
        }
        Format::Markdown => {
            println!(
                "| Dataset | #Users | #Items | #Interactions | Sparsity | Avg. length | Head / tail users | Head / tail items | Groups |"
            );
            println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
            for (s, rule) in &all {
                println!(
                    "| {} | {} | {} | {} | {:.2}% | {:.2} | {} / {} | {} / {} | {} |",
                    s.name,
                    s.users,
                    s.items,
                    s.interactions,
                    100.0 * s.sparsity,
                    s.avg_length,
                    s.head_users,
                    s.tail_users,
                    s.head_items,
                    s.tail_items,
                    rule
                );
            }
            for n in notes {
                println!("\n{n}");
            }
        }
    }
    Ok(())
}

fn prepare(name: &str, seeds: &[u64], negatives: usize, g: &Globals) -> Result<()> {
    let start = Instant::now();
    let p = datasets::load(name, g)?;
    for &seed in seeds {
        hsuga_data::candidates(&p, negatives, seed)?;
    }
    println!(
        "{}: {} users, {} items; split and candidates for seeds {:?} in {} ({:.2} s)",
        p.dataset.name,
        p.dataset.num_users(),
        p.dataset.num_items,
        seeds,
        p.dir.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
