//! From a raw log to a clean dataset, as LLM-ESR / SASRec do it: keep
//! positive interactions, order each user's items by time, drop short users
//! (optionally an iterative k-core, or LLM-ESR's one-pass filter), and remap
//! ids to 1..N with 0 as padding.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::attrs::ItemAttrs;
use crate::raw::{RawItemTable, RawLog};

/// Filtering settings (`[preprocess]` in a dataset TOML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreprocessConfig {
    /// Users with fewer interactions are dropped (3 = the least leave-one-out needs).
    pub min_user_interactions: usize,
    /// With a value, also drop items with fewer interactions, repeating both
    /// filters until nothing changes (iterative k-core).
    pub min_item_interactions: Option<usize>,
    /// Interactions with a rating below this are not positive and are dropped.
    pub min_rating: Option<f32>,
    /// How the two minimums are applied. Left out of the serialised form
    /// at its default, so the cache keys of configs without it are the
    /// ones they had before it existed.
    #[serde(skip_serializing_if = "CoreFilter::is_iterative")]
    pub core_filter: CoreFilter,
}

/// How `min_user_interactions` and `min_item_interactions` filter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoreFilter {
    /// Drop short users, then rare items among the users kept, and repeat
    /// until nothing changes: every user and item meets its minimum
    /// (SASRec's k-core).
    #[default]
    Iterative,
    /// LLM-ESR's `filter_common` then `filter_minmum` (its
    /// `data/data_process.py`): items with fewer than
    /// `min_item_interactions` in the whole log are removed once, then
    /// users left with fewer than `min_user_interactions` are dropped;
    /// items may end with fewer interactions than the minimum. This is the
    /// filter behind the HSUGA paper's Beauty and Fashion (3 and 3).
    OnePass,
}

impl CoreFilter {
    fn is_iterative(&self) -> bool {
        *self == CoreFilter::Iterative
    }
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self {
            min_user_interactions: 3,
            min_item_interactions: None,
            min_rating: None,
            core_filter: CoreFilter::Iterative,
        }
    }
}

/// What preprocessing kept and removed, so nothing is lost silently.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrepReport {
    pub raw_users: usize,
    pub raw_items: usize,
    pub raw_interactions: usize,
    pub dropped_by_rating: usize,
    pub dropped_users: usize,
    pub dropped_items: usize,
    pub dropped_interactions: usize,
    /// Histogram of the lengths of dropped users: (length, count).
    pub dropped_user_lengths: Vec<(usize, usize)>,
    pub k_core_rounds: usize,
    /// Items in the interactions that the attribute table does not describe.
    pub items_without_attributes: usize,
}

/// A preprocessed dataset. User `u` (0-based index) has `sequences[u]`;
/// items are 1..=`num_items`, and `item_ids[i - 1]` is item `i`'s raw id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub name: String,
    pub num_items: u32,
    pub sequences: Vec<Vec<u32>>,
    pub user_ids: Vec<String>,
    pub item_ids: Vec<String>,
    /// Empty when the dataset has no item table; else `item_attrs[i - 1]` is item `i`'s.
    pub item_attrs: Vec<ItemAttrs>,
    pub report: PrepReport,
}

impl Dataset {
    pub fn num_users(&self) -> usize {
        self.sequences.len()
    }

    pub fn num_interactions(&self) -> usize {
        self.sequences.iter().map(Vec::len).sum()
    }

    pub fn has_item_text(&self) -> bool {
        self.item_attrs.iter().any(|a| !a.is_empty())
    }

    /// The attributes of item `item` (1-based), if the dataset has any.
    pub fn attrs(&self, item: u32) -> Option<&ItemAttrs> {
        self.item_attrs.get((item as usize).checked_sub(1)?)
    }
}

pub fn preprocess(
    name: &str,
    log: RawLog,
    items: Option<&RawItemTable>,
    cfg: &PreprocessConfig,
) -> Dataset {
    let mut report = PrepReport {
        raw_interactions: log.interactions.len(),
        ..Default::default()
    };

    // Intern raw ids, keeping first-appearance order.
    let mut user_index: HashMap<String, usize> = HashMap::new();
    let mut item_index: HashMap<String, usize> = HashMap::new();
    let mut users: Vec<String> = Vec::new();
    let mut item_names: Vec<String> = Vec::new();
    // Per user: (time, file position, item index).
    let mut per_user: Vec<Vec<(f64, usize, usize)>> = Vec::new();
    for (pos, it) in log.interactions.into_iter().enumerate() {
        let u = *user_index.entry(it.user.clone()).or_insert_with(|| {
            users.push(it.user.clone());
            per_user.push(Vec::new());
            users.len() - 1
        });
        let i = *item_index.entry(it.item.clone()).or_insert_with(|| {
            item_names.push(it.item.clone());
            item_names.len() - 1
        });
        if let (Some(min), Some(r)) = (cfg.min_rating, it.rating)
            && r < min
        {
            report.dropped_by_rating += 1;
            continue;
        }
        per_user[u].push((it.time.unwrap_or(0.0), pos, i));
    }
    report.raw_users = users.len();
    report.raw_items = item_names.len();

    // Time order; equal times keep file order.
    let mut seqs: Vec<Vec<usize>> = per_user
        .into_iter()
        .map(|mut v| {
            v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            v.into_iter().map(|(_, _, i)| i).collect()
        })
        .collect();

    // Filter users (and items, for k-core) until stable.
    let mut keep_user = vec![true; seqs.len()];
    let mut keep_item = vec![true; item_names.len()];
    let mut dropped_lengths: HashMap<usize, usize> = HashMap::new();
    let one_pass = cfg.core_filter == CoreFilter::OnePass;
    if let (true, Some(min_item)) = (one_pass, cfg.min_item_interactions) {
        // Counted over the whole log, before any user is dropped (a user
        // shorter than the minimum loses all of it below anyway).
        let mut counts = vec![0usize; item_names.len()];
        seqs.iter().flatten().for_each(|&i| counts[i] += 1);
        for (keep, &c) in keep_item.iter_mut().zip(&counts) {
            *keep = c >= min_item;
        }
    }
    loop {
        report.k_core_rounds += 1;
        let mut changed = false;
        for (u, seq) in seqs.iter_mut().enumerate() {
            if !keep_user[u] {
                continue;
            }
            seq.retain(|&i| keep_item[i]);
            if seq.len() < cfg.min_user_interactions {
                keep_user[u] = false;
                *dropped_lengths.entry(seq.len()).or_default() += 1;
                changed = true;
            }
        }
        let Some(min_item) = cfg.min_item_interactions.filter(|_| !one_pass) else {
            break;
        };
        let mut counts = vec![0usize; item_names.len()];
        for (u, seq) in seqs.iter().enumerate() {
            if keep_user[u] {
                seq.iter().for_each(|&i| counts[i] += 1);
            }
        }
        for (i, &c) in counts.iter().enumerate() {
            if keep_item[i] && c < min_item {
                keep_item[i] = false;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }

    // Remap. Numeric raw ids keep their numeric order (so the paper's
    // pre-remapped files keep their ids); others keep first-appearance order.
    let mut used = vec![false; item_names.len()];
    for (u, seq) in seqs.iter().enumerate() {
        if keep_user[u] {
            seq.iter().for_each(|&i| used[i] = true);
        }
    }
    let item_order = id_order(&item_names, &used);
    let mut new_item = vec![0u32; item_names.len()];
    for (rank, &i) in item_order.iter().enumerate() {
        new_item[i] = rank as u32 + 1;
    }
    let user_order = id_order(&users, &keep_user);

    let sequences: Vec<Vec<u32>> = user_order
        .iter()
        .map(|&u| seqs[u].iter().map(|&i| new_item[i]).collect())
        .collect();
    let kept_interactions: usize = sequences.iter().map(Vec::len).sum();
    report.dropped_users = report.raw_users - user_order.len();
    report.dropped_items = report.raw_items - item_order.len();
    report.dropped_interactions =
        report.raw_interactions - report.dropped_by_rating - kept_interactions;
    let mut hist: Vec<(usize, usize)> = dropped_lengths.into_iter().collect();
    hist.sort_unstable();
    report.dropped_user_lengths = hist;

    let item_ids: Vec<String> = item_order.iter().map(|&i| item_names[i].clone()).collect();
    let item_attrs = match items {
        Some(table) => item_ids
            .iter()
            .map(|id| {
                table.get(id).cloned().unwrap_or_else(|| {
                    report.items_without_attributes += 1;
                    ItemAttrs::default()
                })
            })
            .collect(),
        None => Vec::new(),
    };
    if report.items_without_attributes > 0 {
        // A cut-short item file, or another catalogue's: say so, since
        // their text (and everything semantic) will be empty.
        tracing::warn!(
            dataset = name,
            items = report.items_without_attributes,
            of = item_ids.len(),
            "items of the interactions have no row in the item file"
        );
    }

    Dataset {
        name: name.to_string(),
        num_items: item_order.len() as u32,
        sequences,
        user_ids: user_order.iter().map(|&u| users[u].clone()).collect(),
        item_ids,
        item_attrs,
        report,
    }
}

/// Indices of kept ids in output order: numeric order when every kept id is
/// an integer, first-appearance order otherwise.
fn id_order(names: &[String], keep: &[bool]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..names.len()).filter(|&i| keep[i]).collect();
    let numeric: Option<Vec<u64>> = idx.iter().map(|&i| names[i].parse().ok()).collect();
    if let Some(nums) = numeric {
        let mut pairs: Vec<(u64, usize)> = nums.into_iter().zip(idx).collect();
        pairs.sort_unstable();
        idx = pairs.into_iter().map(|(_, i)| i).collect();
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::RawInteraction;

    fn log(rows: &[(&str, &str, Option<f64>, Option<f32>)]) -> RawLog {
        RawLog {
            interactions: rows
                .iter()
                .map(|&(u, i, t, r)| RawInteraction {
                    user: u.into(),
                    item: i.into(),
                    time: t,
                    rating: r,
                })
                .collect(),
        }
    }

    #[test]
    fn orders_by_time_and_remaps_numerically() {
        let l = log(&[
            ("7", "30", Some(3.0), None),
            ("7", "10", Some(1.0), None),
            ("7", "20", Some(2.0), None),
            ("2", "20", Some(5.0), None),
            ("2", "20", Some(5.0), None),
            ("2", "30", Some(4.0), None),
        ]);
        let d = preprocess("t", l, None, &PreprocessConfig::default());
        // Users numeric order: "2" then "7"; items 10→1, 20→2, 30→3.
        assert_eq!(d.user_ids, vec!["2", "7"]);
        assert_eq!(d.sequences, vec![vec![3, 2, 2], vec![1, 2, 3]]);
        assert_eq!(d.num_items, 3);
        assert_eq!(d.report.dropped_users, 0);
    }

    #[test]
    fn drops_short_users_and_reports_them() {
        let l = log(&[
            ("a", "x", None, None),
            ("b", "x", None, None),
            ("b", "y", None, None),
            ("b", "z", None, None),
            ("c", "q", None, None),
            ("c", "x", None, None),
        ]);
        let d = preprocess("t", l, None, &PreprocessConfig::default());
        assert_eq!(d.user_ids, vec!["b"]);
        assert_eq!(d.item_ids, vec!["x", "y", "z"]);
        assert_eq!(d.report.dropped_users, 2);
        assert_eq!(d.report.dropped_items, 1); // "q" only appeared for user c
        assert_eq!(d.report.dropped_interactions, 3);
        assert_eq!(d.report.dropped_user_lengths, vec![(1, 1), (2, 1)]);
    }

    #[test]
    fn rating_filter_and_iterative_k_core() {
        // Item "r" is rare (1 use): with k-core 2 it goes, which makes user
        // "b" too short, which makes item "s" rare, and so on.
        let l = log(&[
            ("a", "p", None, Some(5.0)),
            ("a", "q", None, Some(5.0)),
            ("a", "s", None, Some(1.0)),
            ("b", "p", None, Some(5.0)),
            ("b", "q", None, Some(5.0)),
            ("c", "p", None, Some(5.0)),
            ("c", "q", None, Some(5.0)),
            ("c", "r", None, Some(5.0)),
        ]);
        let cfg = PreprocessConfig {
            min_user_interactions: 2,
            min_item_interactions: Some(2),
            min_rating: Some(3.0),
            core_filter: CoreFilter::Iterative,
        };
        let d = preprocess("t", l, None, &cfg);
        assert_eq!(d.report.dropped_by_rating, 1);
        assert_eq!(d.item_ids, vec!["p", "q"]);
        assert_eq!(d.sequences, vec![vec![1, 2], vec![1, 2], vec![1, 2]]);
        assert!(d.report.k_core_rounds >= 2);
    }

    /// LLM-ESR's filter on a log where it differs from the iterative one:
    /// item counts come from the whole log, once.
    #[test]
    fn one_pass_filter_counts_items_on_the_whole_log_once() {
        // Raw item counts: p 5, q 5, r 3 (2 of them by "z", who has only 2
        // interactions), s 1. In one pass only "s" goes: "a" (p q s) falls
        // to 2 and is dropped with "z"; "r" stays, with 1 interaction left.
        // Iteratively, dropping "z" first leaves "r" with 1 use, so "r" goes
        // too, and with it user "c" (p q r).
        let l = log(&[
            ("a", "p", None, None),
            ("a", "q", None, None),
            ("a", "s", None, None),
            ("b", "p", None, None),
            ("b", "q", None, None),
            ("b", "p", None, None),
            ("c", "p", None, None),
            ("c", "q", None, None),
            ("c", "r", None, None),
            ("d", "p", None, None),
            ("d", "q", None, None),
            ("d", "q", None, None),
            ("z", "r", None, None),
            ("z", "r", None, None),
        ]);
        let one = PreprocessConfig {
            min_user_interactions: 3,
            min_item_interactions: Some(2),
            min_rating: None,
            core_filter: CoreFilter::OnePass,
        };
        let d = preprocess("t", l.clone(), None, &one);
        assert_eq!(d.user_ids, vec!["b", "c", "d"]);
        assert_eq!(d.item_ids, vec!["p", "q", "r"]);
        // "r" ends with 1 interaction, below the minimum, as in LLM-ESR.
        assert_eq!(
            d.sequences,
            vec![vec![1, 2, 1], vec![1, 2, 3], vec![1, 2, 2]]
        );
        assert_eq!(d.report.dropped_users, 2);
        assert_eq!(d.report.dropped_items, 1);
        assert_eq!(d.report.k_core_rounds, 1);
        assert_eq!(d.report.dropped_user_lengths, vec![(2, 2)]);

        let iterative = PreprocessConfig {
            core_filter: CoreFilter::Iterative,
            ..one
        };
        let d = preprocess("t", l, None, &iterative);
        assert_eq!(d.user_ids, vec!["b", "d"]);
        assert_eq!(d.item_ids, vec!["p", "q"]);
        assert_eq!(d.sequences, vec![vec![1, 2, 1], vec![1, 2, 2]]);
        assert_eq!(d.report.dropped_user_lengths, vec![(2, 3)]);
    }

    #[test]
    fn attributes_follow_the_remap() {
        let l = log(&[
            ("u", "b", None, None),
            ("u", "a", None, None),
            ("u", "c", None, None),
        ]);
        let mut table = RawItemTable::new();
        table.insert(
            "a".into(),
            ItemAttrs {
                title: Some("Alpha".into()),
                ..Default::default()
            },
        );
        let d = preprocess("t", l, Some(&table), &PreprocessConfig::default());
        assert_eq!(d.attrs(2).unwrap().title.as_deref(), Some("Alpha"));
        assert!(d.attrs(1).unwrap().is_empty());
        assert_eq!(d.report.items_without_attributes, 2);
        assert!(d.attrs(0).is_none());
    }
}
