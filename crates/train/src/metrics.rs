//! Sampled-ranking evaluation: each user's held-out item ranked against the
//! stored negatives of [`hsuga_data::Candidates`]; ties count against the
//! target, so a constant scorer ranks last.

use hsuga_data::{Candidates, Phase, Split};
use hsuga_model::{Batcher, Recommender};
use serde::{Deserialize, Serialize};

/// HR@K and NDCG@K averaged over users.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub k: usize,
    pub hr: f64,
    pub ndcg: f64,
    pub users: usize,
}

impl Metrics {
    /// From 0-based ranks.
    pub fn from_ranks(ranks: &[u32], k: usize) -> Self {
        let n = ranks.len().max(1) as f64;
        let hr = ranks.iter().filter(|&&r| (r as usize) < k).count() as f64 / n;
        let ndcg = ranks
            .iter()
            .filter(|&&r| (r as usize) < k)
            .map(|&r| 1.0 / (r as f64 + 2.0).log2())
            .sum::<f64>()
            / n;
        Self {
            k,
            hr,
            ndcg,
            users: ranks.len(),
        }
    }
}

/// 0-based rank of the target among the negatives: how many valid
/// negatives score at least as high. Padding negatives (id 0) are skipped.
pub fn rank_of_target(target: f32, negatives: &[f32], negative_ids: &[u32]) -> u32 {
    negatives
        .iter()
        .zip(negative_ids)
        .filter(|&(&s, &id)| id != 0 && (s >= target || s.is_nan()))
        .count() as u32
}

/// Ranks of every user's validation or test target (index = user).
/// `model` should be a plain (non-autodiff) copy: `model.valid()`.
pub fn evaluate_ranks(
    model: &Recommender,
    batcher: &Batcher,
    split: &Split,
    cands: &Candidates,
    phase: Phase,
    batch_size: usize,
) -> Vec<u32> {
    let users = split.num_users();
    let mut ranks = Vec::with_capacity(users);
    let mut order: Vec<usize> = (0..users).collect();
    // Group similar lengths so batches pad little; ranks are put back in
    // user order below.
    let len = |u: usize| split.train[u].len();
    order.sort_by_key(|&u| len(u));
    let mut out = vec![0u32; users];
    for chunk in order.chunks(batch_size.max(1)) {
        let inputs: Vec<Vec<u32>> = chunk
            .iter()
            .map(|&u| match phase {
                Phase::Valid => split.valid_input(u).to_vec(),
                Phase::Test => split.test_input(u),
            })
            .collect();
        let refs: Vec<&[u32]> = inputs.iter().map(|v| v.as_slice()).collect();
        let batch = batcher.eval_batch(&refs);
        let rows: Vec<Vec<u32>> = chunk
            .iter()
            .map(|&u| {
                let target = match phase {
                    Phase::Valid => split.valid[u],
                    Phase::Test => split.test[u],
                };
                let mut r = Vec::with_capacity(cands.per_user + 1);
                r.push(target);
                // Padding (0) is scored as the target and skipped when ranking.
                r.extend(
                    cands
                        .negatives(phase, u)
                        .iter()
                        .map(|&i| if i == 0 { target } else { i }),
                );
                r
            })
            .collect();
        let c = rows[0].len();
        let cand = Recommender::candidate_tensor(&rows, &batcher.device);
        let scores = hsuga_model::to_f32(model.score_candidates(&batch, cand));
        for (j, &u) in chunk.iter().enumerate() {
            let s = &scores[j * c..(j + 1) * c];
            out[u] = rank_of_target(s[0], &s[1..], cands.negatives(phase, u));
        }
    }
    ranks.extend(out);
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_count_against_the_target() {
        assert_eq!(rank_of_target(1.0, &[1.0, 1.0, 0.5], &[3, 4, 5]), 2);
        assert_eq!(
            rank_of_target(1.0, &[0.0, 2.0], &[3, 0]),
            0,
            "padding skipped"
        );
    }

    #[test]
    fn hr_and_ndcg_from_ranks() {
        let m = Metrics::from_ranks(&[0, 1, 20, 9], 10);
        assert!((m.hr - 0.75).abs() < 1e-12);
        let want = (1.0 + 1.0 / 3f64.log2() + 1.0 / 11f64.log2()) / 4.0;
        assert!((m.ndcg - want).abs() < 1e-12);
    }
}
