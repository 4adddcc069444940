//! How collaborative the semantic neighbours are: the mean Jaccard overlap
//! of training item sets between each user and its neighbours, beside the
//! same for as many random other users. Self-distillation pulls a user
//! toward its neighbours' mean; where neighbours share no more items than
//! random users do, that is a pull toward the population's mean instead,
//! and it costs quality — so a run reports this before it trains.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use hsuga_data::Split;

use crate::Neighbours;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NeighbourQuality {
    /// Mean over users (with at least one neighbour) of the mean Jaccard
    /// overlap with their neighbours' training items.
    pub neighbour_jaccard: f64,
    /// The same with each neighbour replaced by a uniformly drawn other user.
    pub random_jaccard: f64,
    /// Users with at least one neighbour.
    pub users: usize,
}

/// `|a ∩ b| / |a ∪ b|` of two sorted, deduplicated lists (0 when both are empty).
fn jaccard(a: &[u32], b: &[u32]) -> f64 {
    let (mut i, mut j, mut both) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                both += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - both;
    if union == 0 {
        0.0
    } else {
        both as f64 / union as f64
    }
}

/// Measures `neighbours` against random users (drawn from `seed`).
pub fn neighbour_quality(neighbours: &Neighbours, split: &Split, seed: u64) -> NeighbourQuality {
    let sets = split.train_item_sets();
    let n = sets.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut near, mut random, mut users) = (0.0, 0.0, 0usize);
    for (u, set) in sets.iter().enumerate() {
        let nb = neighbours.of(u);
        if nb.is_empty() || n < 2 {
            continue;
        }
        let k = nb.len() as f64;
        near += nb
            .iter()
            .map(|&v| jaccard(set, &sets[v as usize]))
            .sum::<f64>()
            / k;
        random += (0..nb.len())
            .map(|_| {
                // Uniform over the other users.
                let mut v = rng.random_range(0..n - 1);
                if v >= u {
                    v += 1;
                }
                jaccard(set, &sets[v])
            })
            .sum::<f64>()
            / k;
        users += 1;
    }
    let mean = |x: f64| if users == 0 { 0.0 } else { x / users as f64 };
    NeighbourQuality {
        neighbour_jaccard: mean(near),
        random_jaccard: mean(random),
        users,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaccard_by_hand() {
        assert_eq!(jaccard(&[1, 2, 3], &[2, 3, 4]), 0.5); // {2,3} of {1,2,3,4}
        assert_eq!(jaccard(&[1], &[2]), 0.0);
        assert_eq!(jaccard(&[], &[]), 0.0);
        assert_eq!(jaccard(&[5, 7], &[5, 7]), 1.0);
    }

    #[test]
    fn overlap_of_chosen_neighbours_by_hand() {
        // Training sets (leave-one-out drops the last two items):
        // u0 {1,2,3}, u1 {1,2,4}, u2 {7,8,9}.
        let seqs = vec![
            vec![1, 2, 3, 5, 6],
            vec![1, 2, 4, 5, 6],
            vec![7, 8, 9, 5, 6],
        ];
        let split = Split::leave_one_out(&seqs, 9).unwrap();
        let nb = Neighbours::from_lists(vec![vec![1], vec![0, 2], vec![]]);
        let q = neighbour_quality(&nb, &split, 1);
        // u0 → u1: 2/4; u1 → (u0: 2/4, u2: 0) = 1/4; u2 has none.
        assert_eq!(q.users, 2);
        assert!((q.neighbour_jaccard - (0.5 + 0.25) / 2.0).abs() < 1e-12);
        // Random partners are other users: u0 draws u1 (0.5) or u2 (0).
        assert!((0.0..=0.5).contains(&q.random_jaccard));
    }
}
