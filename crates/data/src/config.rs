//! Dataset description files (`configs/datasets/*.toml`).
//!
//! Two stages, as for every config in hsuga: [`DatasetConfig`] is the TOML as
//! written (unknown keys rejected, defaults filled); [`DatasetConfig::load`]
//! also resolves paths and checks them, so a typo fails before any work.
//!
//! Paths are relative to the dataset's folder: `data_dir` (relative to the
//! config file) when it exists, else a folder the files are fetched into
//! from the config's `[source]` (see [`crate::source`] for the order, and
//! `HSUGA_DATA_DIR`, which overrides it).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::groups::GroupRule;
use crate::preprocess::PreprocessConfig;
use crate::source::{DATA_DIR_ENV, SourceConfig, default_data_root, fetch_missing};
use crate::split::SplitConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    pub name: String,
    /// Root for the relative paths below (relative to the config file),
    /// used when it exists; after [`DatasetConfig::load`], the folder the
    /// files were read from.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Where the files come from when this machine lacks them.
    #[serde(default)]
    pub source: Option<SourceConfig>,
    pub interactions: InteractionSource,
    #[serde(default)]
    pub items: Option<ItemSource>,
    #[serde(default)]
    pub preprocess: PreprocessConfig,
    /// Which users are evaluated; part of the cache key like every setting.
    #[serde(default)]
    pub split: SplitConfig,
    #[serde(default)]
    pub groups: GroupRule,
    #[serde(default)]
    pub text: Option<TextConfig>,
}

fn yes() -> bool {
    true
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(".")
}

/// Where interactions come from, by format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "snake_case", deny_unknown_fields)]
pub enum InteractionSource {
    /// `user item` per line, in time order per user (the paper's `inter.txt`).
    UserItem {
        path: PathBuf,
        /// The paper's files hold integer ids; set false for string ids.
        #[serde(default = "yes")]
        numeric_ids: bool,
    },
    /// `user item item …` per line, items in time order (P5 / GRAM style).
    UserSequence { path: PathBuf },
    /// RecBole atomic `.inter` file (tab separated, typed header; ordered by
    /// the timestamp column when there is one).
    Recbole { path: PathBuf },
    /// Raw Amazon review JSON lines (2014 or 2018 release), gzipped or not.
    AmazonReviews { path: PathBuf },
    /// MovieLens `ratings.dat` (ML-1M, ML-10M): `UserID::MovieID::Rating::Timestamp`.
    Movielens { path: PathBuf },
    /// UCSD's Steam reviews (`steam_reviews.json.gz`): Python dict literals
    /// per line; user = `username`, item = `product_id`, time = `date`.
    SteamReviews { path: PathBuf },
}

/// Where item attributes come from, by format. Their ids must be the raw
/// item ids of the interaction file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "snake_case", deny_unknown_fields)]
pub enum ItemSource {
    /// A JSON `{raw id: int}` map plus a CSV with `global_product_id,name`.
    IdMapLookup { id_map: PathBuf, lookup: PathBuf },
    /// RecBole atomic `.item` file; columns named by `fields`.
    Recbole {
        path: PathBuf,
        #[serde(default)]
        fields: RecboleItemFields,
    },
    /// The Steam game catalogue (pandas JSON lines with bare NaN), keyed by app id.
    SteamGames { path: PathBuf },
    /// Raw Amazon metadata JSON lines (2014 or 2018 release), gzipped or not.
    AmazonMeta { path: PathBuf },
    /// MovieLens `movies.dat`: `MovieID::Title (Year)::Genre|Genre`, latin-1.
    Movielens { path: PathBuf },
}

/// Which RecBole item columns fill which attribute (header names without the `:type`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecboleItemFields {
    pub title: Option<String>,
    pub year: Option<String>,
    pub genres: Option<String>,
    pub categories: Option<String>,
    pub brand: Option<String>,
}

impl Default for RecboleItemFields {
    fn default() -> Self {
        Self {
            title: Some("movie_title".into()),
            year: Some("release_year".into()),
            genres: Some("class".into()),
            categories: None,
            brand: None,
        }
    }
}

/// How an item becomes text for embedders and prompts (rendered by the text crate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextConfig {
    /// e.g. `"Title: {title}, genres: {genres}"`; placeholders are `ItemAttrs` field names.
    pub template: String,
}

impl DatasetConfig {
    /// Reads, validates and resolves a dataset config, fetching the files
    /// its folder lacks from its `[source]` (the first use of a dataset on
    /// a machine).
    pub fn load(path: &Path) -> Result<Self> {
        let cfg = Self::read(path)?;
        fetch_missing(&cfg, &hsuga_fetch::http::HttpOptions::default())?;
        cfg.check_files(path)?;
        Ok(cfg)
    }

    /// [`DatasetConfig::load`] without fetching or checking that the files
    /// exist: where they are, or would be put.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let mut cfg: Self = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start].matches('\n').count() + 1)
                .unwrap_or(0);
            DataError::config(path, format!("line {line}: {}", e.message()))
        })?;
        if let Some(src) = &cfg.source {
            let inputs: Vec<PathBuf> = cfg
                .input_files()
                .into_iter()
                .map(Path::to_path_buf)
                .collect();
            src.validate(path, &inputs)?;
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let local = base.join(&cfg.data_dir);
        let data_dir = if std::env::var_os(DATA_DIR_ENV).is_some()
            || (cfg.source.is_some() && !local.is_dir())
        {
            default_data_root().join(&cfg.name)
        } else {
            local
        };
        cfg.data_dir = data_dir.clone();
        cfg.resolve_paths(&data_dir);
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Every input file exists.
    fn check_files(&self, path: &Path) -> Result<()> {
        for file in self.input_files() {
            if !file.is_file() {
                return Err(DataError::config(
                    path,
                    format!(
                        "data file {} does not exist (data_dir = {}{}; place the file there or \
                         set {DATA_DIR_ENV} to the folder holding <name>/ folders)",
                        file.display(),
                        self.data_dir.display(),
                        if self.source.is_none() {
                            ", and the config has no [source] to fetch it from"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        Ok(())
    }

    fn resolve_paths(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| *p = dir.join(&*p);
        match &mut self.interactions {
            InteractionSource::UserItem { path, .. }
            | InteractionSource::UserSequence { path }
            | InteractionSource::Recbole { path }
            | InteractionSource::AmazonReviews { path }
            | InteractionSource::Movielens { path }
            | InteractionSource::SteamReviews { path } => fix(path),
        }
        match &mut self.items {
            Some(ItemSource::IdMapLookup { id_map, lookup }) => {
                fix(id_map);
                fix(lookup);
            }
            Some(
                ItemSource::Recbole { path, .. }
                | ItemSource::SteamGames { path }
                | ItemSource::AmazonMeta { path }
                | ItemSource::Movielens { path },
            ) => fix(path),
            None => {}
        }
    }

    fn validate(&self, path: &Path) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(DataError::config(path, "`name` is empty"));
        }
        match self.split.min_eval_interactions {
            Some(m) if m < 3 => {
                return Err(DataError::config(
                    path,
                    format!(
                        "split.min_eval_interactions = {m}: an evaluated user needs at least 3 \
                         (training, validation and test items)"
                    ),
                ));
            }
            // Shorter users are kept whole for training, not split.
            Some(_) => {}
            None if self.preprocess.min_user_interactions < 3 => {
                return Err(DataError::config(
                    path,
                    format!(
                        "preprocess.min_user_interactions = {}: leave-one-out needs at least 3 \
                         (or set split.min_eval_interactions to keep shorter users for training only)",
                        self.preprocess.min_user_interactions
                    ),
                ));
            }
            None => {}
        }
        match self.groups {
            GroupRule::Pareto { ratio } if !(ratio > 0.0 && ratio < 1.0) => {
                return Err(DataError::config(
                    path,
                    format!("groups.ratio = {ratio}: must be strictly between 0 and 1"),
                ));
            }
            _ => {}
        }
        if self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            return Err(DataError::config(
                path,
                format!("name {:?} must be a plain folder name", self.name),
            ));
        }
        Ok(())
    }

    /// Every file the dataset is read from (for existence checks and the cache hash).
    pub fn input_files(&self) -> Vec<&Path> {
        let mut files: Vec<&Path> = vec![match &self.interactions {
            InteractionSource::UserItem { path, .. }
            | InteractionSource::UserSequence { path }
            | InteractionSource::Recbole { path }
            | InteractionSource::AmazonReviews { path }
            | InteractionSource::Movielens { path }
            | InteractionSource::SteamReviews { path } => path,
        }];
        match &self.items {
            Some(ItemSource::IdMapLookup { id_map, lookup }) => {
                files.push(id_map);
                files.push(lookup);
            }
            Some(
                ItemSource::Recbole { path, .. }
                | ItemSource::SteamGames { path }
                | ItemSource::AmazonMeta { path }
                | ItemSource::Movielens { path },
            ) => files.push(path),
            None => {}
        }
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn resolves_paths_relative_to_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        write(&dir.path().join("d"), "inter.txt", "1 1\n");
        let cfg = write(
            dir.path(),
            "x.toml",
            "name = \"x\"\ndata_dir = \"d\"\n[interactions]\nformat = \"user_item\"\npath = \"inter.txt\"\n",
        );
        let c = DatasetConfig::load(&cfg).unwrap();
        assert_eq!(c.input_files(), vec![dir.path().join("d/inter.txt")]);
        assert_eq!(c.groups, GroupRule::Pareto { ratio: 0.2 });
        assert_eq!(c.preprocess.min_user_interactions, 3);
        assert_eq!(c.split.min_eval_interactions, None);
    }

    #[test]
    fn min_eval_interactions_below_three_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "i.txt", "1 1\n");
        let body = |extra: &str| {
            format!(
                "name = \"x\"\n[interactions]\nformat = \"user_item\"\npath = \"i.txt\"\n{extra}"
            )
        };
        let cfg = write(
            dir.path(),
            "a.toml",
            &body("[split]\nmin_eval_interactions = 2\n"),
        );
        let err = DatasetConfig::load(&cfg).unwrap_err().to_string();
        assert!(
            err.contains("a.toml") && err.contains("split.min_eval_interactions = 2"),
            "{err}"
        );

        let cfg = write(
            dir.path(),
            "b.toml",
            &body("[split]\nmin_eval_interactons = 4\n"),
        );
        let err = DatasetConfig::load(&cfg).unwrap_err().to_string();
        assert!(err.contains("min_eval_interactons"), "{err}");

        // Users too short to split are allowed only when they are not evaluated.
        let short = "[preprocess]\nmin_user_interactions = 1\n";
        let cfg = write(dir.path(), "c.toml", &body(short));
        let err = DatasetConfig::load(&cfg).unwrap_err().to_string();
        assert!(
            err.contains("preprocess.min_user_interactions = 1"),
            "{err}"
        );
        let both = format!("{short}[split]\nmin_eval_interactions = 4\n");
        let cfg = write(dir.path(), "d.toml", &body(&both));
        let c = DatasetConfig::load(&cfg).unwrap();
        assert_eq!(c.split.min_eval_interactions, Some(4));
    }

    #[test]
    fn typo_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            dir.path(),
            "x.toml",
            "name = \"x\"\n[interactions]\nformat = \"user_item\"\npath = \"a\"\n[preprocess]\nmin_user_interactoins = 3\n",
        );
        let err = DatasetConfig::load(&cfg).unwrap_err().to_string();
        assert!(err.contains("x.toml"), "{err}");
        assert!(err.contains("line 6"), "{err}");
        assert!(err.contains("min_user_interactoins"), "{err}");
    }

    #[test]
    fn unknown_format_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            dir.path(),
            "x.toml",
            "name = \"x\"\n[interactions]\nformat = \"parquet\"\npath = \"a\"\n",
        );
        let err = DatasetConfig::load(&cfg).unwrap_err().to_string();
        assert!(err.contains("parquet"), "{err}");
        assert!(err.contains("user_item"), "{err}");
    }

    #[test]
    fn missing_data_file_and_bad_ratio() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            dir.path(),
            "x.toml",
            "name = \"x\"\n[interactions]\nformat = \"user_item\"\npath = \"nope.txt\"\n",
        );
        let err = DatasetConfig::load(&cfg).unwrap_err().to_string();
        assert!(
            err.contains("nope.txt") && err.contains("does not exist"),
            "{err}"
        );

        write(dir.path(), "i.txt", "");
        let cfg = write(
            dir.path(),
            "y.toml",
            "name = \"y\"\n[interactions]\nformat = \"user_item\"\npath = \"i.txt\"\n[groups]\nrule = \"pareto\"\nratio = 1.5\n",
        );
        let err = DatasetConfig::load(&cfg).unwrap_err().to_string();
        assert!(err.contains("groups.ratio"), "{err}");
    }
}
