//! Ranking metrics. A rank is 0-based: the number of competing items that
//! score at least as high as the target. Ties therefore count against the
//! target, so a constant scorer ranks last instead of first (the peers'
//! `argsort(argsort(·))` lets ties fall in the target's favour).

/// The rank of `target` among `others` (0 = best). A NaN target ranks last;
/// NaN competitors are ignored only if the target is a number and they are
/// not comparable, which we treat as "not above".
pub fn rank_against(target: f32, others: &[f32]) -> usize {
    if target.is_nan() {
        return others.len();
    }
    others.iter().filter(|&&s| s >= target).count()
}

/// Full-ranking rank over a score vector indexed by item id (index 0 is
/// padding and never competes). Items in `exclude` (the user's history) do
/// not compete either, except the target itself.
pub fn rank_full(scores: &[f32], target: u32, exclude: &[u32]) -> usize {
    let t = scores[target as usize];
    if t.is_nan() {
        return scores.len() - 1;
    }
    let above = scores[1..]
        .iter()
        .enumerate()
        .filter(|&(i, &s)| i + 1 != target as usize && s >= t)
        .count();
    let mut excluded: Vec<u32> = exclude
        .iter()
        .copied()
        .filter(|&i| i != target && i != 0)
        .collect();
    excluded.sort_unstable();
    excluded.dedup();
    let excluded_above = excluded
        .iter()
        .filter(|&&i| scores[i as usize] >= t)
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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
