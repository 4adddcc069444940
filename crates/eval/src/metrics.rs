//! Ranking metrics. A rank is 0-based: the number of competing items that
//! score at least as high as the target. Ties therefore count against the
//! target, so a constant scorer ranks last instead of first (the peers'
//! `argsort(argsort(·))` lets ties fall in the target's favour).
//!
//! Scores that are not finite never help the target: a NaN or infinite
//! target score ranks last, and a NaN competitor counts as above the target.
//! (A model whose scores overflowed must not look good; an earlier copy of
//! this code in the trainer ranked a NaN target *first*, because `s >= NaN`
//! is false for every competitor.)

use std::str::FromStr;

/// Whether a competitor scoring `s` is ranked at or above a finite target `t`.
fn at_or_above(s: f32, t: f32) -> bool {
    s >= t || s.is_nan()
}

/// The rank of `target` among `others` (0 = best).
pub fn rank_against(target: f32, others: &[f32]) -> usize {
    if !target.is_finite() {
        return others.len();
    }
    others.iter().filter(|&&s| at_or_above(s, target)).count()
}

/// Sampled-protocol rank: the target against the stored negatives, where a
/// negative id of 0 is padding (a user with fewer unseen items than the
/// negatives asked for) and does not compete.
pub fn rank_sampled(target: f32, negatives: &[f32], negative_ids: &[u32]) -> usize {
    let real = negative_ids.iter().filter(|&&id| id != 0).count();
    if !target.is_finite() {
        return real;
    }
    negatives
        .iter()
        .zip(negative_ids)
        .filter(|&(&s, &id)| id != 0 && at_or_above(s, target))
        .count()
}

/// Full-ranking rank over a score vector indexed by item id (index 0 is
/// padding and never competes). Items in `exclude` (the user's history) do
/// not compete either, except the target itself, which is never excluded.
pub fn rank_full(scores: &[f32], target: u32, exclude: &[u32]) -> usize {
    let t = scores[target as usize];
    let mut excluded: Vec<u32> = exclude
        .iter()
        .copied()
        .filter(|&i| i != target && i != 0 && (i as usize) < scores.len())
        .collect();
    excluded.sort_unstable();
    excluded.dedup();
    if !t.is_finite() {
        // Every other item that competes.
        return scores.len() - 2 - excluded.len();
    }
    let above = scores[1..]
        .iter()
        .enumerate()
        .filter(|&(i, &s)| i + 1 != target as usize && at_or_above(s, t))
        .count();
    let excluded_above = excluded
        .iter()
        .filter(|&&i| at_or_above(scores[i as usize], t))
        .count();
    above - excluded_above
}

/// HR@k: 1 when the target is in the top k.
pub fn hit(rank: usize, k: usize) -> f64 {
    if rank < k { 1.0 } else { 0.0 }
}

/// NDCG@k with one relevant item: 1 / log2(rank + 2) inside the top k.
pub fn ndcg(rank: usize, k: usize) -> f64 {
    if rank < k {
        1.0 / ((rank + 2) as f64).log2()
    } else {
        0.0
    }
}

/// A metric at a cut-off, as named in tables (`HR@10`, `NDCG@10`).
///
/// Written as its name in configs and result files (`select = "NDCG@10"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    Hr(usize),
    Ndcg(usize),
}

impl Metric {
    pub fn of_rank(self, rank: usize) -> f64 {
        match self {
            Metric::Hr(k) => hit(rank, k),
            Metric::Ndcg(k) => ndcg(rank, k),
        }
    }

    /// Short column label as in the paper (`H@10`, `N@10`).
    pub fn short(self) -> String {
        match self {
            Metric::Hr(k) => format!("H@{k}"),
            Metric::Ndcg(k) => format!("N@{k}"),
        }
    }

    /// All HR and NDCG metrics at the given cut-offs.
    pub fn at(ks: &[usize]) -> Vec<Metric> {
        ks.iter()
            .flat_map(|&k| [Metric::Hr(k), Metric::Ndcg(k)])
            .collect()
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Metric::Hr(k) => write!(f, "HR@{k}"),
            Metric::Ndcg(k) => write!(f, "NDCG@{k}"),
        }
    }
}

/// Why a metric name did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a metric: expected HR@K or NDCG@K with K >= 1, e.g. NDCG@10")]
pub struct BadMetric(pub String);

impl FromStr for Metric {
    type Err = BadMetric;

    /// `HR@10`, `NDCG@10` (any case; `H@10` and `N@10` as in table headers).
    fn from_str(s: &str) -> Result<Self, BadMetric> {
        let bad = || BadMetric(s.to_string());
        let (name, k) = s.trim().split_once('@').ok_or_else(bad)?;
        let k: usize = k.trim().parse().map_err(|_| bad())?;
        if k == 0 {
            return Err(bad());
        }
        match name.trim().to_ascii_lowercase().as_str() {
            "hr" | "h" | "hit" => Ok(Metric::Hr(k)),
            "ndcg" | "n" => Ok(Metric::Ndcg(k)),
            _ => Err(bad()),
        }
    }
}

impl serde::Serialize for Metric {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Metric {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_counts_ties_against_target() {
        assert_eq!(rank_against(0.5, &[0.1, 0.2, 0.3]), 0);
        assert_eq!(rank_against(0.5, &[0.9, 0.5, 0.3]), 2);
        // A constant scorer: every negative ties, so the target is last.
        assert_eq!(rank_against(1.0, &[1.0; 100]), 100);
        assert_eq!(rank_against(f32::NAN, &[0.0; 7]), 7);
    }

    /// Regression: the trainer's copy of the rank function ranked a NaN
    /// target first (`s >= NaN` is false for every competitor).
    #[test]
    fn nan_and_infinite_target_scores_rank_last_everywhere() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            assert_eq!(rank_against(bad, &[0.0, 1.0, -1.0]), 3, "{bad}");
            assert_eq!(rank_sampled(bad, &[0.0, 1.0, -1.0], &[4, 0, 6]), 2, "{bad}");
            // Items 1..=5, target 2, item 4 in history: 3 items compete.
            let s = [0.0, 0.1, bad, 0.3, 0.4, 0.5];
            assert_eq!(rank_full(&s, 2, &[4]), 3, "{bad}");
        }
        // A NaN competitor counts against a finite target.
        assert_eq!(rank_against(0.5, &[f32::NAN, 0.1]), 1);
        assert_eq!(rank_sampled(0.5, &[f32::NAN, 0.1], &[3, 4]), 1);
        assert_eq!(rank_full(&[0.0, f32::NAN, 0.5, 0.1], 2, &[]), 1);
    }

    #[test]
    fn sampled_rank_skips_padding_negatives() {
        assert_eq!(rank_sampled(1.0, &[1.0, 1.0, 0.5], &[3, 4, 5]), 2);
        assert_eq!(
            rank_sampled(1.0, &[0.0, 2.0], &[3, 0]),
            0,
            "padding skipped"
        );
    }

    #[test]
    fn metric_names_parse_and_round_trip() {
        assert_eq!("NDCG@10".parse::<Metric>(), Ok(Metric::Ndcg(10)));
        assert_eq!("hr@5".parse::<Metric>(), Ok(Metric::Hr(5)));
        assert_eq!("N@20".parse::<Metric>(), Ok(Metric::Ndcg(20)));
        for bad in ["NDCG@0", "NDCG", "MRR@10", "HR@x", ""] {
            assert!(bad.parse::<Metric>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&Metric::Ndcg(10)).unwrap();
        assert_eq!(json, "\"NDCG@10\"");
        assert_eq!(
            serde_json::from_str::<Metric>(&json).unwrap(),
            Metric::Ndcg(10)
        );
    }

    #[test]
    fn hr_and_ndcg_hand_values() {
        assert_eq!(hit(0, 10), 1.0);
        assert_eq!(hit(9, 10), 1.0);
        assert_eq!(hit(10, 10), 0.0);
        assert_eq!(ndcg(0, 10), 1.0);
        // rank 1 → 1/log2(3) = 0.6309297535714575
        assert!((ndcg(1, 10) - 0.630_929_753_571_457_5).abs() < 1e-15);
        // rank 2 → 1/log2(4) = 0.5
        assert_eq!(ndcg(2, 10), 0.5);
        // rank 9 → 1/log2(11) = 0.2890648263178879
        assert!((ndcg(9, 10) - 0.2890648263178879).abs() < 1e-15);
        assert_eq!(ndcg(10, 10), 0.0);
        assert_eq!(ndcg(3, 3), 0.0);
    }

    #[test]
    fn full_ranking_skips_padding_history_and_ties_count() {
        // Items 1..=5; scores: pad, 0.9, 0.5, 0.5, 0.8, 0.1; target 2.
        let s = [9.0, 0.9, 0.5, 0.5, 0.8, 0.1];
        // Above or tied: items 1, 3, 4 → rank 3.
        assert_eq!(rank_full(&s, 2, &[]), 3);
        // Item 1 is history: it does not compete; the target in history still counts.
        assert_eq!(rank_full(&s, 2, &[1, 2, 1]), 2);
    }

    #[test]
    fn metric_labels() {
        assert_eq!(Metric::Ndcg(10).to_string(), "NDCG@10");
        assert_eq!(Metric::Hr(5).short(), "H@5");
        assert_eq!(
            Metric::at(&[5, 10]),
            vec![
                Metric::Hr(5),
                Metric::Ndcg(5),
                Metric::Hr(10),
                Metric::Ndcg(10)
            ]
        );
    }
}
