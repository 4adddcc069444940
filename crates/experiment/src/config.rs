//! The experiment file (`hsuga experiment --config E.toml`).
//!
//! ```toml
//! name = "table2-fashion"
//! datasets = ["fashion"]          # names under configs/datasets, or paths
//! seeds = [42, 43, 44]
//! base = "SASRec"                 # the row every other row is t-tested against
//!
//! [train]                         # shared training settings
//! patience = 20
//!
//! [[methods]]
//! name = "SASRec"
//! model = { backbone = "sasrec", max_len = 50 }
//!
//! [[methods]]
//! name = "GRU4Rec"
//! model = { backbone = "gru4rec" }
//! train = { lr = 0.001 }          # overrides the shared settings key by key
//!
//! [[methods]]
//! name = "GRU4Rec-long"
//! like = "GRU4Rec"                # an earlier row's settings, overridden key by key
//! model = { max_len = 200 }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use hsuga_eval::EvalConfig;
use hsuga_model::ModelConfig;
use hsuga_train::{InputsConfig, MethodConfig, Pretrained, TrainSettings};
use serde::{Deserialize, Serialize};

use crate::ExperimentError;
use crate::plot::PlotSpec;
use crate::tune::variants;

fn d_seeds() -> Vec<u64> {
    vec![42, 43, 44] // DESIGN §3
}
fn d_negatives() -> usize {
    100 // the paper's sampled protocol
}
fn d_out() -> String {
    "runs".into()
}

/// The file as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    pub name: String,
    pub datasets: Vec<String>,
    #[serde(default = "d_seeds")]
    pub seeds: Vec<u64>,
    #[serde(default)]
    pub base: Option<String>,
    #[serde(default = "d_negatives")]
    pub negatives: usize,
    /// How every run is evaluated (protocol, the tables' cut-offs, the
    /// selection metric); shared by all rows, so that rows compare.
    #[serde(default)]
    pub eval: EvalConfig,
    /// Runs go to `<out_dir>/<name>/<dataset>/<method>/seed-<seed>`.
    #[serde(default = "d_out")]
    pub out_dir: String,
    /// Training settings shared by every method.
    #[serde(default)]
    pub train: toml::Table,
    pub methods: Vec<MethodSpec>,
    /// Sensitivity plots drawn by the report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plots: Vec<PlotSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodSpec {
    /// Row label; also the run folder name.
    pub name: String,
    /// The method this row is t-tested against [default: the experiment's `base`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs: Option<String>,
    #[serde(default)]
    pub model: ModelConfig,
    /// What the method adds to the backbone (LLMInit, LLM-ESR, GAA, fusion).
    #[serde(default)]
    pub method: MethodConfig,
    /// Where its semantic inputs come from (produced on demand by the runner).
    #[serde(default)]
    pub inputs: InputsConfig,
    /// Per-method overrides of the shared `[train]` keys.
    #[serde(default)]
    pub train: toml::Table,
    /// Values searched on validation (`"method.distill.alpha" = [0.1, 0.01]`);
    /// see [`crate::tune`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tune: BTreeMap<String, Vec<toml::Value>>,
}

/// One run folder's method (a row, or one tuned variant of it) with its
/// training settings resolved and validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedMethod {
    /// The table row it belongs to.
    pub row: String,
    /// The run folder: the row, or `<row>@<key>=<value>,…` when tuned.
    pub name: String,
    pub model: ModelConfig,
    pub method: MethodConfig,
    pub inputs: InputsConfig,
    pub train: TrainSettings,
}

impl ExperimentConfig {
    /// The method a row is t-tested against.
    pub fn base_of(&self, method: &str) -> Option<String> {
        self.methods
            .iter()
            .find(|m| m.name == method)
            .and_then(|m| m.vs.clone())
            .or_else(|| self.base.clone())
    }

    /// The `experiment.toml` a grid wrote into its folder, possibly by an
    /// earlier build: each row's model keys that its backbone never read are
    /// dropped first ([`hsuga_model::drop_foreign_keys`]).
    pub fn load_written(path: &Path) -> Result<Self, ExperimentError> {
        let what =
            |e: &dyn std::fmt::Display| ExperimentError::Config(format!("{}: {e}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| what(&e))?;
        let mut doc: toml::Table = toml::from_str(&text).map_err(|e| what(&e))?;
        if let Some(toml::Value::Array(rows)) = doc.get_mut("methods") {
            for row in rows.iter_mut().filter_map(toml::Value::as_table_mut) {
                if let Some(toml::Value::Table(model)) = row.get_mut("model") {
                    hsuga_model::drop_foreign_keys(model);
                }
            }
        }
        let text = toml::to_string(&doc).map_err(|e| what(&e))?;
        Self::parse(&text).map_err(|e| what(&e))
    }

    pub fn load(path: &Path) -> Result<Self, ExperimentError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ExperimentError::Config(format!("{}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| ExperimentError::Config(format!("{}: {e}", path.display())))
    }

    /// Parses an experiment file, expanding each row's `like`. Every row,
    /// and every value it tunes, is checked here, naming the row: a `[model]`
    /// key the row's backbone lacks fails at load, written or tuned.
    pub fn parse(text: &str) -> Result<Self, String> {
        let cfg = Self::parse_rows(text)?;
        for m in &cfg.methods {
            variants(m).map_err(|e| format!("method `{}`: {e}", m.name))?;
        }
        Ok(cfg)
    }

    /// The typed parse with `like` expanded. A row that does not parse is
    /// named; errors in rows as written also carry their line and column.
    fn parse_rows(text: &str) -> Result<Self, String> {
        let mut doc: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let failing_row = |rows: &[toml::Value]| {
            rows.iter()
                .filter_map(toml::Value::as_table)
                .find_map(|row| {
                    MethodSpec::deserialize(toml::Value::Table(row.clone()))
                        .err()
                        .map(|e| (row_name(row), e))
                })
        };
        let rows = match doc.get_mut("methods") {
            Some(toml::Value::Array(rows)) if rows.iter().any(|r| r.get("like").is_some()) => rows,
            other => {
                let rows = match other {
                    Some(toml::Value::Array(rows)) => std::mem::take(rows),
                    _ => Vec::new(),
                };
                // Parsed from the text, errors carry line and column.
                return toml::from_str(text).map_err(|e: toml::de::Error| {
                    match failing_row(&rows) {
                        Some((name, _)) => format!("method `{name}`: {e}"),
                        None => e.to_string(),
                    }
                });
            }
        };
        expand_like(rows)?;
        // An expanded row has no place in the text: name it instead.
        if let Some((name, e)) = failing_row(rows) {
            return Err(format!("method `{name}`: {e}"));
        }
        toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())
    }

    /// Checks everything that can be checked before the first run starts.
    pub fn resolve(&self) -> Result<Vec<ResolvedMethod>, ExperimentError> {
        let bad = |m: String| Err(ExperimentError::Config(m));
        if self.name.is_empty() || self.name.contains(['/', '\\']) {
            return bad(format!("name `{}` must be a plain folder name", self.name));
        }
        if self.datasets.is_empty() || self.seeds.is_empty() || self.methods.is_empty() {
            return bad("an experiment needs at least one dataset, seed and method".into());
        }
        self.eval
            .validate()
            .map_err(|e| ExperimentError::Config(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for m in &self.methods {
            if m.name.is_empty() || m.name.contains(['/', '\\', '@']) || !seen.insert(&m.name) {
                return bad(format!(
                    "method name `{}` is empty, not a plain folder name (no / \\ @), or repeated",
                    m.name
                ));
            }
            for v in variants(m)
                .map_err(|e| ExperimentError::Config(format!("method `{}`: {e}", m.name)))?
            {
                out.push(self.resolve_one(&m.name, &v.folder, &v.spec)?);
            }
        }
        check_pretrained_rows(&out)?;
        for base in self
            .methods
            .iter()
            .filter_map(|m| m.vs.as_ref())
            .chain(&self.base)
        {
            if !self.methods.iter().any(|m| &m.name == base) {
                return bad(format!("base `{base}` is not one of the methods"));
            }
        }
        // A misspelt point would silently vanish from its plot.
        for plot in &self.plots {
            if let Some(row) = plot
                .points
                .keys()
                .find(|row| !self.methods.iter().any(|m| &&m.name == row))
            {
                return bad(format!(
                    "plot `{}` names `{row}`, which is not one of the methods",
                    plot.name
                ));
            }
        }
        Ok(out)
    }

    fn resolve_one(
        &self,
        row: &str,
        folder: &str,
        m: &MethodSpec,
    ) -> Result<ResolvedMethod, ExperimentError> {
        let what =
            |e: &dyn std::fmt::Display| ExperimentError::Config(format!("method `{folder}`: {e}"));
        let mut table = self.train.clone();
        table.extend(m.train.clone());
        let train: TrainSettings = toml::Value::Table(table)
            .try_into()
            .map_err(|e| what(&format!("train: {e}")))?;
        hsuga_train::check_settings(&m.model, &train, &self.eval, &m.method, Some(&m.inputs))
            .map_err(|e| what(&e))?;
        Ok(ResolvedMethod {
            row: row.to_string(),
            name: folder.to_string(),
            model: m.model.clone(),
            method: m.method.clone(),
            inputs: m.inputs.clone(),
            train,
        })
    }
}

/// Checks each `method.pretrained = { row = … }` against the grid: the row
/// exists, is not tuned (one run per seed to read), reads no trained run
/// itself (its runs train in the grid's first stage), and is a SASRec with
/// an ID item table and the same hidden size (LLMEmb's `E_srs`), or, for
/// CITIES, a plain backbone row with this row's `[model]`. Its runs
/// are found per dataset and seed when the grid runs
/// ([`for_seed`]).
fn check_pretrained_rows(rows: &[ResolvedMethod]) -> Result<(), ExperimentError> {
    for r in rows {
        let Some(Pretrained::Row(src)) = &r.method.pretrained else {
            continue;
        };
        let bad = |msg: String| {
            Err(ExperimentError::Config(format!(
                "method `{}`: method.pretrained = {{ row = \"{src}\" }}: {msg}",
                r.name
            )))
        };
        let runs: Vec<&ResolvedMethod> = rows.iter().filter(|o| &o.row == src).collect();
        let source = match runs.as_slice() {
            [] => return bad("no row of the experiment has that name".into()),
            [one] if one.name == *src => *one,
            _ => return bad("that row is tuned; name one run folder per seed instead".into()),
        };
        if source.row == r.row {
            return bad("a row cannot read its own runs".into());
        }
        if source.method.pretrained.is_some() {
            return bad("that row reads a trained run itself; chains are not supported".into());
        }
        if r.method.reads_pretrained_backbone() {
            // CITIES evaluates that row's backbone unchanged; MELT trains it on.
            if source.method != MethodConfig::default() {
                return bad(
                    "that row has method parts; CITIES and MELT start from a plain backbone row"
                        .into(),
                );
            }
            let diff = hsuga_train::cities::model_differences(&source.model, &r.model);
            if !diff.is_empty() {
                return bad(format!(
                    "that row's [model] differs from this one's ({}); CITIES evaluates that \
                     backbone unchanged, so they must match",
                    diff.join("; ")
                ));
            }
            continue;
        }
        if source.model.kind() != hsuga_model::Backbone::Sasrec || source.method.text_items() {
            return bad(format!(
                "that row is a {} run{}; LLMEmb aligns to the ID item table of a SASRec",
                source.model.kind().name(),
                if source.method.text_items() {
                    " whose items come from text"
                } else {
                    ""
                }
            ));
        }
        if source.model.hidden != r.model.hidden {
            return bad(format!(
                "that row has model.hidden = {}, this one {}: they must match",
                source.model.hidden, r.model.hidden
            ));
        }
    }
    Ok(())
}

/// `method` with `pretrained = { row = … }` turned into that row's run
/// folder for one dataset and seed (`<dataset_dir>/<row>/seed-<seed>`, where
/// the grid's runner puts it); any other method unchanged.
pub fn for_seed(method: &MethodConfig, dataset_dir: &Path, seed: u64) -> MethodConfig {
    let mut m = method.clone();
    if let Some(Pretrained::Row(row)) = &m.pretrained {
        let dir = dataset_dir.join(row).join(format!("seed-{seed}"));
        m.pretrained = Some(Pretrained::Run(dir.display().to_string()));
    }
    m
}

/// `like = "ROW"` starts a row from an earlier row's tables (all but its
/// name) and overrides them key by key, so an ablation or a sweep point
/// states only what it changes and cannot drift from its reference when
/// the reference is edited.
fn expand_like(rows: &mut [toml::Value]) -> Result<(), String> {
    for i in 0..rows.len() {
        let (earlier, rest) = rows.split_at_mut(i);
        let toml::Value::Table(row) = &mut rest[0] else {
            continue; // the typed parse names the bad row
        };
        let Some(like) = row.remove("like") else {
            continue;
        };
        let name = row_name(row);
        let like = like
            .as_str()
            .ok_or_else(|| format!("method `{name}`: like must be a row name"))?;
        let mut merged = earlier
            .iter()
            .filter_map(toml::Value::as_table)
            .find(|r| row_name(r) == like)
            .ok_or_else(|| format!("method `{name}`: like = `{like}` names no earlier row"))?
            .clone();
        merged.remove("name");
        overlay(&mut merged, std::mem::take(row));
        *row = merged;
    }
    Ok(())
}

fn row_name(row: &toml::Table) -> String {
    row.get("name")
        .and_then(toml::Value::as_str)
        .unwrap_or("?")
        .to_string()
}

/// Writes `over` onto `base`, descending into tables both have.
fn overlay(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => overlay(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
datasets = ["ml-100k"]
base = "A"
[train]
patience = 3
epochs = 7
[[methods]]
name = "A"
model = { backbone = "sasrec" }
[[methods]]
name = "B"
model = { backbone = "gru4rec" }
train = { epochs = 2 }
"#;

    #[test]
    fn method_train_overrides_shared_keys() {
        let cfg: ExperimentConfig = toml::from_str(GOOD).unwrap();
        let m = cfg.resolve().unwrap();
        assert_eq!((m[0].train.patience, m[0].train.epochs), (3, 7));
        assert_eq!((m[1].train.patience, m[1].train.epochs), (3, 2));
        assert_eq!(cfg.seeds, vec![42, 43, 44]);
    }

    #[test]
    fn bad_configs_are_rejected_before_any_run() {
        let cfg: ExperimentConfig =
            toml::from_str(&GOOD.replace("base = \"A\"", "base = \"Z\"")).unwrap();
        assert!(cfg.resolve().unwrap_err().to_string().contains("base `Z`"));
        let cfg: ExperimentConfig =
            toml::from_str(&GOOD.replace("epochs = 2", "epochz = 2")).unwrap();
        let e = cfg.resolve().unwrap_err().to_string();
        assert!(e.contains("method `B`") && e.contains("epochz"), "{e}");
        let e = ExperimentConfig::parse(&GOOD.replace("\"gru4rec\"", "\"gru5rec\"")).unwrap_err();
        assert!(e.contains("gru5rec") && e.contains("line 13"), "{e}");
        let plot = "[[plots]]\nname = \"p\"\nx_label = \"x\"\npoints = { A = 1, C = 2 }\n";
        let cfg: ExperimentConfig = toml::from_str(&format!("{GOOD}{plot}")).unwrap();
        let e = cfg.resolve().unwrap_err().to_string();
        assert!(e.contains("plot `p` names `C`"), "{e}");
        let cfg: ExperimentConfig =
            toml::from_str(&format!("{GOOD}{}", plot.replace("C = 2", "B = 2"))).unwrap();
        assert!(cfg.resolve().is_ok());
    }

    #[test]
    fn like_starts_from_an_earlier_row_and_overrides_key_by_key() {
        let text = r#"
name = "t"
datasets = ["ml-100k"]
[[methods]]
name = "A"
model = { backbone = "sasrec", max_len = 200, dropout = 0.2 }
method = { item_init = "pca", dual_view = true, distill = { alpha = 0.01 } }
inputs = { item_text = "all-minilm-l6-v2", user_semantic = "item-mean" }
train = { lr = 0.002 }
[[methods]]
name = "B"
like = "A"
method = { distill = { group_aware = false } }
[[methods]]
name = "C"
like = "B"
model = { max_len = 50 }
"#;
        let m = ExperimentConfig::parse(text).unwrap().resolve().unwrap();
        let (a, b, c) = (&m[0], &m[1], &m[2]);
        assert_eq!(b.model, a.model);
        assert_eq!(b.train, a.train);
        assert_eq!(b.method.item_init, a.method.item_init);
        let (da, db) = (
            a.method.distill.as_ref().unwrap(),
            b.method.distill.as_ref().unwrap(),
        );
        assert_eq!(db.alpha, da.alpha, "the sibling key inside distill is kept");
        assert!(da.group_aware && !db.group_aware);
        assert_eq!((c.model.max_len, c.model.dropout), (50, 0.2));
        assert!(
            !c.method.distill.as_ref().unwrap().group_aware,
            "like is transitive"
        );
        assert_eq!((b.name.as_str(), c.name.as_str()), ("B", "C"));

        let later = text.replace("like = \"A\"", "like = \"C\"");
        let e = ExperimentConfig::parse(&later).unwrap_err();
        assert!(
            e.contains("method `B`") && e.contains("`C` names no earlier row"),
            "{e}"
        );
        let e = ExperimentConfig::parse(&text.replace("like = \"A\"", "like = 3")).unwrap_err();
        assert!(e.contains("like must be a row name"), "{e}");
        let e = ExperimentConfig::parse(&text.replace("max_len = 50", "max_len = \"long\""))
            .unwrap_err();
        assert!(e.contains("method `C`") && e.contains("max_len"), "{e}");
        assert_eq!(b.inputs, a.inputs, "inputs are inherited too");
    }

    #[test]
    fn a_flag_the_rows_backbone_lacks_fails_at_load_naming_the_row() {
        let e = ExperimentConfig::parse(&GOOD.replace(
            "model = { backbone = \"gru4rec\" }",
            "model = { backbone = \"gru4rec\", attend_padding = true }",
        ))
        .unwrap_err();
        assert!(
            e.contains("method `B`") && e.contains("model.attend_padding"),
            "{e}"
        );
        let tuned = GOOD.replace(
            "train = { epochs = 2 }",
            "train = { epochs = 2 }\ntune = { \"model.causal\" = [true, false] }",
        );
        let e = ExperimentConfig::parse(&tuned).unwrap_err();
        assert!(
            e.contains("method `B`") && e.contains("model.causal"),
            "{e}"
        );
    }

    /// `pretrained = { row = … }` names a plain SASRec row of the grid, read
    /// per dataset and seed; a row it cannot read fails at load.
    #[test]
    fn a_pretrained_row_is_checked_at_load_and_resolved_per_seed() {
        let grid = |sasrec: &str, llmemb: &str| {
            format!(
                "name = \"t\"\ndatasets = [\"ml-100k\"]\n[[methods]]\nname = \"SASRec\"\n{sasrec}\n\
                 [[methods]]\nname = \"LLMEmb\"\nmethod = {{ llmemb = {{}}, pretrained = {{ row = \
                 \"SASRec\" }} }}\ninputs = {{ item_text = \"all-minilm-l6-v2\" }}\n{llmemb}\n"
            )
        };
        let resolve = |text: &str| {
            ExperimentConfig::parse(text)
                .map_err(|e| e.to_string())?
                .resolve()
                .map_err(|e| e.to_string())
        };
        let rows = resolve(&grid("", "")).unwrap();
        let m = for_seed(&rows[1].method, Path::new("runs/t/ml-100k"), 43);
        assert_eq!(
            m.pretrained,
            Some(Pretrained::Run(
                Path::new("runs/t/ml-100k/SASRec/seed-43")
                    .display()
                    .to_string()
            ))
        );
        let cases = [
            (grid("model = { hidden = 32 }", ""), "model.hidden = 32"),
            (
                grid("model = { backbone = \"gru4rec\" }", ""),
                "GRU4Rec run",
            ),
            (
                grid("tune = { \"train.lr\" = [0.001, 0.01] }", ""),
                "that row is tuned",
            ),
            (
                grid("", "").replace("row = \"SASRec\"", "row = \"SASRek\""),
                "no row of the experiment",
            ),
            (
                grid("", "").replace("row = \"SASRec\"", "row = \"LLMEmb\""),
                "cannot read its own runs",
            ),
            (
                grid("", "").replace("inputs = { item_text = \"all-minilm-l6-v2\" }", ""),
                "need inputs.item_text",
            ),
        ];
        for (text, want) in cases {
            let e = resolve(&text).unwrap_err();
            assert!(
                e.contains("method `LLMEmb`") && e.contains(want),
                "{want}: {e}"
            );
        }
        // LLM2Rec with the dual view, named by its row.
        let e = resolve(&format!(
            "{}[[methods]]\nname = \"LLM2Rec\"\nmodel = {{ loss = \"ce\" }}\n\
             method = {{ llm2rec = {{}}, dual_view = true }}\n\
             inputs = {{ item_text = \"all-minilm-l6-v2\" }}\n",
            grid("", "")
        ))
        .unwrap_err();
        assert!(
            e.contains("method `LLM2Rec`") && e.contains("method.dual_view"),
            "{e}"
        );
    }

    /// Regression (issue 15): a row with `dual_view = true` and no inputs
    /// resolved as valid and failed only when its run started.
    #[test]
    fn a_method_lacking_or_misusing_inputs_fails_at_load_naming_the_row() {
        let rows = [
            (
                "method = { dual_view = true, distill = {} }",
                "method `LLM-ESR`",
                "inputs.item_text",
            ),
            (
                "inputs = { item_text = \"all-minilm-l6-v2\", user_semantic = \"item-mean\" }",
                "method `LLM-ESR`",
                "inputs.user_semantic is read only by",
            ),
        ];
        for (row, name, key) in rows {
            let text = format!(
                "name = \"t\"\ndatasets = [\"ml-100k\"]\n[[methods]]\nname = \"SASRec\"\n\
                 [[methods]]\nname = \"LLM-ESR\"\n{row}\n"
            );
            let e = ExperimentConfig::parse(&text)
                .unwrap()
                .resolve()
                .unwrap_err()
                .to_string();
            assert!(e.contains(name) && e.contains(key), "{row}: {e}");
        }
        let bad_eval = format!("{GOOD}[eval]\nks = [0]\n");
        let e = ExperimentConfig::parse(&bad_eval)
            .unwrap()
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.contains("eval.ks"), "{e}");
        let e =
            ExperimentConfig::parse(&format!("{GOOD}[eval]\nprotocol = \"some\"\n")).unwrap_err();
        assert!(e.contains("some") && e.contains("line"), "{e}");
    }
}
