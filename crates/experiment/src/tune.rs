//! Hyperparameter search on validation, as the paper's appendix B.2 does:
//! a method row may list `tune = { "method.distill.alpha" = [0.1, 0.01] }`;
//! every combination trains as its own run folder (`<row>@alpha=0.1`), and
//! the row reports the combination with the best mean validation NDCG@K
//! over its finished seeds. Test numbers never take part in the choice.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::MethodSpec;

/// One combination of a method's tuned values.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// The run folder (`<row>` when nothing is tuned).
    pub folder: String,
    pub spec: MethodSpec,
}

/// Every combination of `spec.tune` (just the spec itself when empty).
pub fn variants(spec: &MethodSpec) -> Result<Vec<Variant>, String> {
    let mut out = vec![Variant {
        folder: spec.name.clone(),
        spec: MethodSpec {
            tune: BTreeMap::new(),
            ..spec.clone()
        },
    }];
    let mut labels = std::collections::HashSet::new();
    for (key, values) in &spec.tune {
        let label = key.rsplit('.').next().unwrap_or(key);
        if !labels.insert(label) {
            return Err(format!(
                "tune keys must end in different names (`{label}` twice)"
            ));
        }
        if values.is_empty() {
            return Err(format!("tune `{key}` lists no values"));
        }
        let mut next = Vec::new();
        for v in &out {
            for value in values {
                let sep = if v.folder == spec.name { '@' } else { ',' };
                next.push(Variant {
                    folder: format!("{}{sep}{label}={}", v.folder, show(value)),
                    spec: set(&v.spec, key, value)?,
                });
            }
        }
        out = next;
    }
    Ok(out)
}

/// A value as it appears in a folder name.
fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.replace(['/', '\\'], "_"),
        other => other.to_string(),
    }
}

/// The spec with `key` (`model.…`, `method.…`, `inputs.…` or `train.…`)
/// set to `value`; the result is checked like any written config.
fn set(spec: &MethodSpec, key: &str, value: &toml::Value) -> Result<MethodSpec, String> {
    let (head, rest) = key.split_once('.').ok_or_else(|| {
        format!("tune key `{key}` must start with model., method., inputs. or train.")
    })?;
    let path: Vec<&str> = rest.split('.').collect();
    let mut out = spec.clone();
    let bad = |e: String| format!("tune `{key}` = {value}: {e}");
    match head {
        "model" => out.model = set_in(&spec.model, &path, value).map_err(bad)?,
        "method" => out.method = set_in(&spec.method, &path, value).map_err(bad)?,
        "inputs" => out.inputs = set_in(&spec.inputs, &path, value).map_err(bad)?,
        "train" => out.train = set_in(&spec.train, &path, value).map_err(bad)?,
        _ => {
            return Err(format!(
                "tune key `{key}` must start with model., method., inputs. or train."
            ));
        }
    }
    Ok(out)
}

/// Round-trips through TOML so the usual field checks apply.
fn set_in<T: Serialize + DeserializeOwned>(
    v: &T,
    path: &[&str],
    value: &toml::Value,
) -> Result<T, String> {
    let mut root = toml::Value::try_from(v).map_err(|e| e.to_string())?;
    let mut cur = &mut root;
    for (i, seg) in path.iter().enumerate() {
        let table = cur
            .as_table_mut()
            .ok_or_else(|| format!("`{seg}` is inside a value, not a table"))?;
        if i + 1 == path.len() {
            table.insert((*seg).to_string(), value.clone());
            break;
        }
        cur = table
            .entry(seg.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    root.try_into().map_err(|e: toml::de::Error| e.to_string())
}

/// The variant a row reports: highest mean validation score, first on ties.
/// `scores[i]` holds variant `i`'s per-seed validation scores (empty: none
/// finished; such a variant is never chosen).
pub fn choose(scores: &[Vec<f64>]) -> Option<usize> {
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    scores
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.is_empty())
        .fold(None, |best: Option<(usize, f64)>, (i, s)| match best {
            Some((_, b)) if b >= mean(s) => best,
            _ => Some((i, mean(s))),
        })
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> MethodSpec {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn every_combination_is_a_folder_with_the_value_set() {
        let s = spec(
            r#"
name = "HSUGA"
model = { backbone = "sasrec" }
method = { dual_view = true, distill = {} }
tune = { "method.distill.alpha" = [0.1, 0.01], "train.lr" = [0.001, 0.0005] }
"#,
        );
        let v = variants(&s).unwrap();
        let names: Vec<&str> = v.iter().map(|v| v.folder.as_str()).collect();
        assert_eq!(
            names,
            [
                "HSUGA@alpha=0.1,lr=0.001",
                "HSUGA@alpha=0.1,lr=0.0005",
                "HSUGA@alpha=0.01,lr=0.001",
                "HSUGA@alpha=0.01,lr=0.0005",
            ]
        );
        assert_eq!(v[2].spec.method.distill.as_ref().unwrap().alpha, 0.01);
        assert_eq!(v[1].spec.train["lr"].as_float(), Some(0.0005));
        assert!(v.iter().all(|v| v.spec.tune.is_empty()));
        // Nothing tuned: the row itself.
        let plain = spec("name = \"SASRec\"");
        assert_eq!(variants(&plain).unwrap()[0].folder, "SASRec");
    }

    #[test]
    fn bad_tune_keys_are_named() {
        for (tune, needle) in [
            (r#"{ "alpha" = [0.1] }"#, "must start with"),
            (r#"{ "method.distill.alpah" = [0.1] }"#, "alpah"),
            (r#"{ "method.distill.alpha" = [] }"#, "no values"),
            (
                r#"{ "method.distill.alpha" = [0.1], "train.alpha" = [1] }"#,
                "`alpha` twice",
            ),
        ] {
            let s = spec(&format!("name = \"X\"\ntune = {tune}"));
            let e = variants(&s).unwrap_err();
            assert!(e.contains(needle), "{tune}: {e}");
        }
    }

    #[test]
    fn choice_is_the_best_validation_mean() {
        assert_eq!(choose(&[vec![0.5, 0.3], vec![0.45, 0.4], vec![]]), Some(1));
        // Ties keep the first listed; unfinished variants never win.
        assert_eq!(choose(&[vec![0.4], vec![0.4]]), Some(0));
        assert_eq!(choose(&[vec![], vec![0.1]]), Some(1));
        assert_eq!(choose(&[vec![], vec![]]), None);
    }
}
