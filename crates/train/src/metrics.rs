//! Sampled-ranking evaluation: each user's held-out item ranked against the
//! stored negatives of [`hsuga_data::Candidates`]; ties count against the
//! target, so a constant scorer ranks last.

use hsuga_data::{Candidates, Phase, Split};
use hsuga_model::burn::tensor::{Int, Tensor, TensorData};
use hsuga_model::{Batcher, Recommender, SeqBatch, Tables};
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

/// One pass over every user's validation or test input.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// 0-based rank of each user's target (index = user).
    pub ranks: Vec<u32>,
    /// `[U, D]` row-major: each user's last-position representation. For
    /// [`Phase::Valid`] the input is the whole training sequence, exactly
    /// what the self-distillation teacher encodes, so the teacher cache is
    /// refreshed from it for free.
    pub reps: Vec<f32>,
    pub dim: usize,
}

/// Attaches the rows' user semantic embeddings to a batch, for fusing models.
pub fn attach_users(batch: &mut SeqBatch, user_semantic: Option<&Tensor<2>>, users: &[usize]) {
    if let Some(sem) = user_semantic {
        let idx: Vec<i64> = users.iter().map(|&u| u as i64).collect();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [users.len()]), &sem.device());
        batch.user_semantic = Some(sem.clone().select(0, idx));
    }
}

/// Users in length order (batches pad little), in chunks.
fn length_chunks(split: &Split, users: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order = users.to_vec();
    order.sort_by_key(|&u| split.train[u].len());
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

/// `[b, D]` last-position representations of one chunk of histories.
fn represent_chunk(
    model: &Recommender,
    tables: &Tables,
    batcher: &Batcher,
    histories: &[&[u32]],
    users: &[usize],
    user_semantic: Option<&Tensor<2>>,
) -> Tensor<2> {
    let mut batch = batcher.eval_batch(histories);
    attach_users(&mut batch, user_semantic, users);
    model.represent_last(tables, &batch)
}

/// Each listed user's representation of their whole training sequence
/// (row-major `users.len() × D`, in the order given). `model` should be a
/// plain (eval-mode) copy.
pub fn represent_users(
    model: &Recommender,
    batcher: &Batcher,
    split: &Split,
    users: &[usize],
    batch_size: usize,
    user_semantic: Option<&Tensor<2>>,
) -> (Vec<f32>, usize) {
    let tables = model.tables();
    let d = tables.scoring.dims()[1];
    let slot: std::collections::HashMap<usize, usize> =
        users.iter().enumerate().map(|(i, &u)| (u, i)).collect();
    let mut out = vec![0f32; users.len() * d];
    for chunk in length_chunks(split, users, batch_size) {
        let hist: Vec<&[u32]> = chunk.iter().map(|&u| split.train[u].as_slice()).collect();
        let reps = hsuga_model::to_f32(represent_chunk(
            model,
            &tables,
            batcher,
            &hist,
            &chunk,
            user_semantic,
        ));
        for (j, u) in chunk.iter().enumerate() {
            let i = slot[u];
            out[i * d..(i + 1) * d].copy_from_slice(&reps[j * d..(j + 1) * d]);
        }
    }
    (out, d)
}

/// Ranks every user's validation or test target and keeps their
/// representations. `model` should be a plain (non-autodiff) copy:
/// `model.valid()`; `user_semantic` (`[U, S]`) is needed by fusing models.
pub fn evaluate(
    model: &Recommender,
    batcher: &Batcher,
    split: &Split,
    cands: &Candidates,
    phase: Phase,
    batch_size: usize,
    user_semantic: Option<&Tensor<2>>,
) -> Evaluation {
    let users = split.num_users();
    let tables = model.tables();
    let d = tables.scoring.dims()[1];
    let mut ranks = vec![0u32; users];
    let mut reps = vec![0f32; users * d];
    let all: Vec<usize> = (0..users).collect();
    for chunk in length_chunks(split, &all, batch_size) {
        let inputs: Vec<Vec<u32>> = chunk
            .iter()
            .map(|&u| match phase {
                Phase::Valid => split.valid_input(u).to_vec(),
                Phase::Test => split.test_input(u),
            })
            .collect();
        let refs: Vec<&[u32]> = inputs.iter().map(|v| v.as_slice()).collect();
        let h = represent_chunk(model, &tables, batcher, &refs, &chunk, user_semantic);
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
        let scores = hsuga_model::to_f32(model.score_reps(&tables, h.clone(), cand));
        let h = hsuga_model::to_f32(h);
        for (j, &u) in chunk.iter().enumerate() {
            let s = &scores[j * c..(j + 1) * c];
            ranks[u] = rank_of_target(s[0], &s[1..], cands.negatives(phase, u));
            reps[u * d..(u + 1) * d].copy_from_slice(&h[j * d..(j + 1) * d]);
        }
    }
    Evaluation {
        ranks,
        reps,
        dim: d,
    }
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
