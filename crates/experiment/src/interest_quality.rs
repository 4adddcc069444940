//! How good HSU's interests are on their own, before any recommender is
//! trained on them (issue 18, item 4): each user's final interests, embedded
//! by the item text embedder, rank that user's fixed validation candidates
//! (the validation target and its stored negatives) by cosine to the items'
//! text embeddings. HR@K / NDCG@K of that ranking measure whether the
//! interests point at what the user does next, comparable across back-ends,
//! prompts and HSU/CoT without the noise of training. Beside it: the same
//! ranking from the mean of the user's training items' text embeddings
//! (LLM-ESR's "item-mean" user vector, no LLM), and chance (`K / (1 + n)`).
//!
//! Only the validation targets are used: the test targets stay untouched by
//! anything that may be used to choose a configuration.

use hsuga_data::{Candidates, Phase, Split};
use hsuga_eval::metrics::{hit, ndcg, rank_sampled};
use hsuga_text::Embeddings;
use serde::{Deserialize, Serialize};

/// Mean HR@K and NDCG@K of one way of representing users.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RankQuality {
    pub users: usize,
    pub k: usize,
    pub hr: f64,
    pub ndcg: f64,
}

/// The cosine of two vectors (0 when either is all zeros).
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        dot += f64::from(*x) * f64::from(*y);
        na += f64::from(*x) * f64::from(*x);
        nb += f64::from(*y) * f64::from(*y);
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        (dot / (na.sqrt() * nb.sqrt())) as f32
    }
}

/// Row of item `item` (1-based ids; row `item - 1`).
fn item_row(items: &Embeddings, item: u32) -> &[f32] {
    let r = item as usize - 1;
    &items.data[r * items.dim..(r + 1) * items.dim]
}

/// 0-based rank of user `u`'s validation target among its stored
/// validation negatives, scoring each item by cosine to `user`; ties count
/// against the target (the evaluation chain's rule).
pub fn validation_rank(
    user: &[f32],
    u: usize,
    items: &Embeddings,
    split: &Split,
    candidates: &Candidates,
) -> usize {
    let negatives = candidates.negatives(Phase::Valid, u);
    let target = cosine(user, item_row(items, split.valid[u]));
    // Id 0 pads a user with fewer unseen items than negatives; it does not
    // compete (rank_sampled skips it), so its score is never read.
    let scores: Vec<f32> = negatives
        .iter()
        .map(|&i| {
            if i == 0 {
                0.0
            } else {
                cosine(user, item_row(items, i))
            }
        })
        .collect();
    rank_sampled(target, &scores, negatives)
}

/// Mean HR@`k` / NDCG@`k` over `users` (dataset user indices), user `j` of
/// which is represented by `vectors[j]`.
pub fn rank_quality(
    users: &[usize],
    vectors: &[Vec<f32>],
    items: &Embeddings,
    split: &Split,
    candidates: &Candidates,
    k: usize,
) -> RankQuality {
    let (mut h, mut n) = (0.0, 0.0);
    for (&u, v) in users.iter().zip(vectors) {
        let rank = validation_rank(v, u, items, split, candidates);
        h += hit(rank, k);
        n += ndcg(rank, k);
    }
    let m = users.len().max(1) as f64;
    RankQuality {
        users: users.len(),
        k,
        hr: h / m,
        ndcg: n / m,
    }
}

/// The mean of user `u`'s training items' rows (LLM-ESR's item-mean user).
pub fn item_mean(u: usize, items: &Embeddings, split: &Split) -> Vec<f32> {
    let mut mean = vec![0f32; items.dim];
    let train = &split.train[u];
    for &i in train {
        for (m, x) in mean.iter_mut().zip(item_row(items, i)) {
            *m += x;
        }
    }
    let n = train.len().max(1) as f32;
    mean.iter_mut().for_each(|m| *m /= n);
    mean
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Items 1..=3 on the axes of a 3-d space, item 4 between items 1 and 2.
    fn items() -> Embeddings {
        Embeddings {
            rows: 4,
            dim: 3,
            data: vec![
                1.0, 0.0, 0.0, // item 1
                0.0, 1.0, 0.0, // item 2
                0.0, 0.0, 1.0, // item 3
                1.0, 1.0, 0.0, // item 4
            ],
        }
    }

    fn split() -> Split {
        Split {
            num_items: 4,
            train: vec![vec![1, 1], vec![3]],
            valid: vec![1, 2],
            test: vec![2, 3],
        }
    }

    /// Three negatives per user from four items: every item the user has
    /// not seen, plus 0 padding — user 0 gets {3, 4}, user 1 {1, 4}, in an
    /// order the ranks do not depend on.
    fn candidates() -> Candidates {
        let c = Candidates::draw(&split(), 3, 42);
        let sorted = |u: usize| {
            let mut v = c.negatives(Phase::Valid, u).to_vec();
            v.sort();
            v
        };
        assert_eq!((sorted(0), sorted(1)), (vec![0, 3, 4], vec![0, 1, 4]));
        c
    }

    #[test]
    fn the_target_ranks_by_cosine_with_ties_against_it() {
        let (items, split, cands) = (items(), split(), candidates());
        // User 0 (target 1) along item 1: the target (cos 1) beats item 4
        // (0.707) and item 3 (0); the padding does not compete.
        assert_eq!(
            validation_rank(&[1.0, 0.0, 0.0], 0, &items, &split, &cands),
            0
        );
        // Along item 3: item 3 scores 1, and item 4 scores 0 like the
        // target: a tie counts against it.
        assert_eq!(
            validation_rank(&[0.0, 0.0, 1.0], 0, &items, &split, &cands),
            2
        );
        // User 1 (target 2) along (1, 1, 0): item 4 (1.0) beats the target
        // (0.707), which ties item 1 (0.707): rank 2.
        assert_eq!(
            validation_rank(&[1.0, 1.0, 0.0], 1, &items, &split, &cands),
            2
        );
    }

    #[test]
    fn hr_and_ndcg_are_the_means_over_users() {
        let (items, split, cands) = (items(), split(), candidates());
        let q = rank_quality(
            &[0, 1],
            &[vec![1.0, 0.0, 0.0], vec![1.0, 1.0, 0.0]],
            &items,
            &split,
            &cands,
            2,
        );
        // Ranks 0 and 2: HR@2 = (1 + 0) / 2; NDCG@2 = (1/log2(2) + 0) / 2.
        assert_eq!(q.users, 2);
        assert!((q.hr - 0.5).abs() < 1e-12);
        assert!((q.ndcg - 0.5).abs() < 1e-12);
    }

    #[test]
    fn item_mean_averages_the_training_rows_only() {
        let (items, split) = (items(), split());
        // User 0 trained on item 1 twice; its validation item is not mixed in.
        assert_eq!(item_mean(0, &items, &split), vec![1.0, 0.0, 0.0]);
        assert_eq!(item_mean(1, &items, &split), vec![0.0, 0.0, 1.0]);
    }
}
