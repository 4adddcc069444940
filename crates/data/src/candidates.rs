//! Sampled-ranking candidates: per user, `n` distinct items the user never
//! interacted with, drawn uniformly. They are drawn once per seed and stored
//! with the split, so every evaluation of every run under that seed ranks
//! against the same negatives (the peers redraw them at each evaluation).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::split::Split;

/// Negatives for the validation and test targets, `per_user` per user, flat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidates {
    pub seed: u64,
    pub per_user: usize,
    valid: Vec<u32>,
    test: Vec<u32>,
}

/// Which held-out target a ranking is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Valid,
    Test,
}

impl Candidates {
    /// Draws the negatives. Each (seed, phase, user) has its own random
    /// stream, so results do not depend on thread count or user order.
    ///
    /// A user who has interacted with so many items that fewer than
    /// `per_user` remain gets all remaining items, padded with 0 (padding is
    /// never a real item, so callers must skip 0).
    pub fn draw(split: &Split, per_user: usize, seed: u64) -> Self {
        let draw_phase = |phase: u64| -> Vec<u32> {
            (0..split.num_users())
                .into_par_iter()
                .flat_map_iter(|u| {
                    let mut rng = ChaCha8Rng::seed_from_u64(seed);
                    rng.set_stream(phase << 40 | u as u64);
                    sample_user(&split.interacted(u), split.num_items, per_user, &mut rng)
                })
                .collect()
        };
        Self {
            seed,
            per_user,
            valid: draw_phase(1),
            test: draw_phase(2),
        }
    }

    pub fn negatives(&self, phase: Phase, user: usize) -> &[u32] {
        let all = match phase {
            Phase::Valid => &self.valid,
            Phase::Test => &self.test,
        };
        &all[user * self.per_user..(user + 1) * self.per_user]
    }

    pub fn num_users(&self) -> usize {
        self.valid.len().checked_div(self.per_user).unwrap_or(0)
    }

    /// Whether these candidates fit `split`: its users, the requested seed
    /// and count, and every id an item of the catalogue (or the 0 padding).
    pub fn check(&self, split: &Split, per_user: usize, seed: u64) -> Result<(), String> {
        let users = split.num_users();
        if self.seed != seed || self.per_user != per_user {
            return Err(format!(
                "holds seed {} × {} negatives, {seed} × {per_user} were asked for",
                self.seed, self.per_user
            ));
        }
        for (phase, ids) in [("validation", &self.valid), ("test", &self.test)] {
            if ids.len() != users * per_user {
                return Err(format!(
                    "{} {phase} candidates, {users} users × {per_user} expected",
                    ids.len()
                ));
            }
            if let Some(bad) = ids.iter().find(|&&i| i > split.num_items) {
                return Err(format!(
                    "{phase} candidate id {bad} is past the catalogue's {} items",
                    split.num_items
                ));
            }
        }
        Ok(())
    }
}

/// Distinct uniform draws from `1..=num_items` minus `exclude` (sorted).
fn sample_user(exclude: &[u32], num_items: u32, n: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let available = num_items as usize - exclude.len();
    let mut out = Vec::with_capacity(n);
    if available <= n {
        out.extend((1..=num_items).filter(|i| exclude.binary_search(i).is_err()));
        out.resize(n, 0);
        return out;
    }
    // Rejection sampling: `available > n`, and users touch a small share of
    // the catalogue, so this ends quickly.
    while out.len() < n {
        let i = rng.random_range(1..=num_items);
        if exclude.binary_search(&i).is_err() && !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy_seqs() -> Vec<Vec<u32>> {
        (0..50)
            .map(|u| vec![u % 30 + 1, (u * 7) % 30 + 1, (u * 11) % 30 + 1, 3])
            .collect()
    }

    fn toy_split() -> Split {
        Split::leave_one_out(&toy_seqs(), 300).unwrap()
    }

    #[test]
    fn never_an_interacted_item_or_target() {
        let s = toy_split();
        let c = Candidates::draw(&s, 100, 42);
        for u in 0..s.num_users() {
            let seen = s.interacted(u);
            for phase in [Phase::Valid, Phase::Test] {
                let negs = c.negatives(phase, u);
                assert_eq!(negs.len(), 100);
                for &i in negs {
                    assert!((1..=300).contains(&i));
                    assert!(!seen.contains(&i), "user {u} got interacted item {i}");
                }
                assert!(!negs.contains(&s.test[u]) && !negs.contains(&s.valid[u]));
                let mut d = negs.to_vec();
                d.sort_unstable();
                d.dedup();
                assert_eq!(d.len(), 100, "duplicates for user {u}");
            }
        }
    }

    #[test]
    fn reproducible_per_seed_and_different_across_seeds() {
        let s = toy_split();
        let a = Candidates::draw(&s, 100, 42);
        let b = Candidates::draw(&s, 100, 42);
        let c = Candidates::draw(&s, 100, 43);
        assert_eq!(a, b);
        assert_ne!(a.negatives(Phase::Test, 0), c.negatives(Phase::Test, 0));
        assert_ne!(a.negatives(Phase::Valid, 0), a.negatives(Phase::Test, 0));
        assert_eq!(a.num_users(), 50);
    }

    #[test]
    fn small_catalogue_takes_everything_left_and_pads() {
        let s = Split::leave_one_out(&[vec![1, 2, 3]], 5).unwrap();
        let c = Candidates::draw(&s, 4, 1);
        assert_eq!(c.negatives(Phase::Test, 0), &[4, 5, 0, 0]);
    }

    #[test]
    fn candidates_of_another_split_or_seed_are_refused() {
        let split = toy_split();
        let c = Candidates::draw(&split, 10, 3);
        assert_eq!(c.check(&split, 10, 3), Ok(()));
        assert!(c.check(&split, 10, 4).unwrap_err().contains("seed 3"));
        // The same users with a catalogue of 100 items: ids up to 300 drawn.
        let small = Split::leave_one_out(&toy_seqs(), 100).unwrap();
        let e = c.check(&small, 10, 3).unwrap_err();
        assert!(e.contains("past the catalogue's 100 items"), "{e}");
        let fewer = Split::leave_one_out(&toy_seqs()[..2], 300).unwrap();
        assert!(c.check(&fewer, 10, 3).unwrap_err().contains("users"));
    }
}
