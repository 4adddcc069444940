//! `hsuga data stats|prepare`: the paper's Table 8 columns and cached splits.

use std::time::Instant;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use hsuga_data::DatasetStats;

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
    }
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
