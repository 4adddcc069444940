//! Leave-one-out split (SASRec / LLM-ESR): per user the last item is the test
//! target, the second to last the validation target, the rest is training.
//!
//! Optionally ([`SplitConfig::min_eval_interactions`]) only users with enough
//! interactions are evaluated; the others keep every interaction for
//! training and have no targets. That is SASRec.pytorch's current
//! `data_partition` (`min_eval_interactions = 4`), which evaluates 3,959 of
//! Amazon Fashion's 9,094 users.

use serde::{Deserialize, Serialize};

use crate::candidates::Phase;
use crate::error::{DataError, Result};

/// Which users are evaluated (`[split]` in a dataset TOML).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitConfig {
    /// With a value `m`, a user with fewer than `m` interactions (after
    /// preprocessing) is not evaluated: the whole sequence is training data
    /// (item popularity, neighbours, HSU histories and the trainer all see
    /// it) and there is no validation or test target. `4` reproduces
    /// SASRec.pytorch's `data_partition`. Unset, every user is evaluated,
    /// which leave-one-out allows from 3 interactions on. At least 3.
    pub min_eval_interactions: Option<usize>,
}

/// Per-user training prefixes and held-out targets. User `u` is index `u`
/// everywhere (0-based); items are 1-based with 0 reserved for padding.
///
/// A user who is not evaluated (see [`SplitConfig`]) has `valid[u] == 0`
/// and `test[u] == 0` (0 is never an item) and `train[u]` is the whole
/// sequence. Every consumer that ranks targets or averages metrics must
/// visit only [`Split::evaluated_users`] (or ask [`Split::target`], which
/// is `None` for them); everything that only reads `train` needs no change.
/// Marking them in the targets, rather than with an extra field, keeps the
/// struct's shape, so code that builds a `Split` by hand is unaffected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub num_items: u32,
    pub train: Vec<Vec<u32>>,
    pub valid: Vec<u32>,
    pub test: Vec<u32>,
}

impl Split {
    /// The target stored for a user who is not evaluated.
    pub const NO_TARGET: u32 = 0;

    /// Splits full time-ordered sequences, evaluating every user; each must
    /// hold at least 3 items so that training keeps one.
    pub fn leave_one_out(sequences: &[Vec<u32>], num_items: u32) -> Result<Self> {
        Self::leave_one_out_with(sequences, num_items, &SplitConfig::default())
    }

    /// Splits full time-ordered sequences under `cfg`: users with fewer than
    /// `cfg.min_eval_interactions` items go wholly into training; every
    /// other user must hold at least 3 items.
    pub fn leave_one_out_with(
        sequences: &[Vec<u32>],
        num_items: u32,
        cfg: &SplitConfig,
    ) -> Result<Self> {
        let min_eval = cfg.min_eval_interactions.unwrap_or(0);
        let mut train = Vec::with_capacity(sequences.len());
        let mut valid = Vec::with_capacity(sequences.len());
        let mut test = Vec::with_capacity(sequences.len());
        for (u, seq) in sequences.iter().enumerate() {
            let n = seq.len();
            if seq.contains(&Self::NO_TARGET) {
                return Err(DataError::Invalid(format!(
                    "user index {u} holds item 0; items are numbered from 1 (0 is padding)"
                )));
            }
            if n < min_eval {
                train.push(seq.clone());
                valid.push(Self::NO_TARGET);
                test.push(Self::NO_TARGET);
                continue;
            }
            if n < 3 {
                return Err(DataError::Invalid(format!(
                    "user index {u} has {n} interaction(s); leave-one-out needs at least 3 \
                     (raise min_user_interactions to 3 or more)"
                )));
            }
            train.push(seq[..n - 2].to_vec());
            valid.push(seq[n - 2]);
            test.push(seq[n - 1]);
        }
        Ok(Self {
            num_items,
            train,
            valid,
            test,
        })
    }

    pub fn num_users(&self) -> usize {
        self.train.len()
    }

    /// Whether `user` has validation and test targets to rank.
    pub fn is_evaluated(&self, user: usize) -> bool {
        self.test[user] != Self::NO_TARGET
    }

    /// The users to rank and average metrics over, ascending.
    pub fn evaluated_users(&self) -> Vec<usize> {
        (0..self.num_users())
            .filter(|&u| self.is_evaluated(u))
            .collect()
    }

    pub fn num_evaluated(&self) -> usize {
        (0..self.num_users())
            .filter(|&u| self.is_evaluated(u))
            .count()
    }

    /// `user`'s held-out item for `phase`; `None` when the user is not evaluated.
    pub fn target(&self, phase: Phase, user: usize) -> Option<u32> {
        let t = match phase {
            Phase::Valid => self.valid[user],
            Phase::Test => self.test[user],
        };
        (t != Self::NO_TARGET).then_some(t)
    }

    /// The model input when scoring the validation target: the training
    /// prefix (for a user who is not evaluated, the whole sequence).
    pub fn valid_input(&self, user: usize) -> &[u32] {
        &self.train[user]
    }

    /// The model input when scoring the test target: training prefix +
    /// validation item (for a user who is not evaluated, the whole sequence).
    pub fn test_input(&self, user: usize) -> Vec<u32> {
        let mut s = self.train[user].clone();
        if self.is_evaluated(user) {
            s.push(self.valid[user]);
        }
        s
    }

    /// The model input for `phase` (see [`Self::valid_input`], [`Self::test_input`]).
    pub fn input(&self, phase: Phase, user: usize) -> Vec<u32> {
        match phase {
            Phase::Valid => self.valid_input(user).to_vec(),
            Phase::Test => self.test_input(user),
        }
    }

    /// Interaction counts per item over training sequences only (index = item id).
    pub fn train_popularity(&self) -> Vec<u32> {
        let mut pop = vec![0u32; self.num_items as usize + 1];
        for seq in &self.train {
            for &i in seq {
                pop[i as usize] += 1;
            }
        }
        pop
    }

    /// Each user's distinct training items, sorted (for membership tests and
    /// set overlaps).
    pub fn train_item_sets(&self) -> Vec<Vec<u32>> {
        self.train
            .iter()
            .map(|s| {
                let mut v = s.clone();
                v.sort_unstable();
                v.dedup();
                v
            })
            .collect()
    }

    /// Every item the user ever touched (train, valid and test), sorted and
    /// deduplicated: negatives must avoid all of them.
    pub fn interacted(&self, user: usize) -> Vec<u32> {
        let mut all = self.train[user].clone();
        if self.is_evaluated(user) {
            all.push(self.valid[user]);
            all.push(self.test[user]);
        }
        all.sort_unstable();
        all.dedup();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_is_test_second_last_is_valid() {
        let seqs = vec![vec![5, 3, 9, 1], vec![2, 2, 7]];
        let s = Split::leave_one_out(&seqs, 9).unwrap();
        assert_eq!(s.train, vec![vec![5, 3], vec![2]]);
        assert_eq!(s.valid, vec![9, 2]);
        assert_eq!(s.test, vec![1, 7]);
        assert_eq!(s.valid_input(0), &[5, 3]);
        assert_eq!(s.test_input(0), vec![5, 3, 9]);
        assert_eq!(s.test_input(1), vec![2, 2]);
    }

    #[test]
    fn popularity_counts_training_only() {
        let seqs = vec![vec![1, 2, 3, 4], vec![1, 1, 4]];
        let s = Split::leave_one_out(&seqs, 4).unwrap();
        // train = [1,2], [1]; items 3 and 4 appear only as targets.
        assert_eq!(s.train_popularity(), vec![0, 2, 1, 0, 0]);
    }

    #[test]
    fn interacted_covers_targets() {
        let seqs = vec![vec![4, 2, 4, 7]];
        let s = Split::leave_one_out(&seqs, 8).unwrap();
        assert_eq!(s.interacted(0), vec![2, 4, 7]);
    }

    fn sasrec_pytorch() -> SplitConfig {
        SplitConfig {
            min_eval_interactions: Some(4),
        }
    }

    #[test]
    fn users_below_min_eval_train_on_everything_and_have_no_target() {
        // Lengths 3, 4, 5: only the last two reach 4.
        let seqs = vec![vec![1, 2, 3], vec![4, 5, 6, 7], vec![1, 3, 5, 7, 9]];
        let s = Split::leave_one_out_with(&seqs, 9, &sasrec_pytorch()).unwrap();
        assert_eq!(s.train, vec![vec![1, 2, 3], vec![4, 5], vec![1, 3, 5]]);
        assert_eq!(s.valid, vec![0, 6, 7]);
        assert_eq!(s.test, vec![0, 7, 9]);
        assert_eq!(s.evaluated_users(), vec![1, 2]);
        assert_eq!(s.num_evaluated(), 2);
        assert!(!s.is_evaluated(0) && s.is_evaluated(1));
        assert_eq!(s.target(Phase::Valid, 0), None);
        assert_eq!(s.target(Phase::Test, 0), None);
        assert_eq!(s.target(Phase::Valid, 2), Some(7));
        assert_eq!(s.target(Phase::Test, 2), Some(9));
        // Inputs never carry the missing target (0 would be padding).
        assert_eq!(s.test_input(0), vec![1, 2, 3]);
        assert_eq!(s.input(Phase::Valid, 0), vec![1, 2, 3]);
        assert_eq!(s.test_input(1), vec![4, 5, 6]);
        assert_eq!(s.interacted(0), vec![1, 2, 3]);
        assert_eq!(s.interacted(1), vec![4, 5, 6, 7]);
        // Item 3 counts twice in training now: user 0's last item is no target.
        assert_eq!(s.train_popularity(), vec![0, 2, 1, 2, 1, 2, 0, 0, 0, 0]);
    }

    #[test]
    fn min_eval_keeps_even_users_too_short_for_leave_one_out() {
        let seqs = vec![vec![2], vec![1, 2], vec![1, 2, 3, 4]];
        let s = Split::leave_one_out_with(&seqs, 4, &sasrec_pytorch()).unwrap();
        assert_eq!(s.train, vec![vec![2], vec![1, 2], vec![1, 2]]);
        assert_eq!(s.evaluated_users(), vec![2]);
    }

    #[test]
    fn unset_min_eval_evaluates_everyone_as_before() {
        let seqs = vec![vec![1, 2, 3], vec![4, 5, 6, 7]];
        let a = Split::leave_one_out(&seqs, 7).unwrap();
        let b = Split::leave_one_out_with(&seqs, 7, &SplitConfig::default()).unwrap();
        let c = Split::leave_one_out_with(
            &seqs,
            7,
            &SplitConfig {
                min_eval_interactions: Some(3),
            },
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.evaluated_users(), vec![0, 1]);
        assert_eq!(a.train, vec![vec![1], vec![4, 5]]);
    }

    #[test]
    fn item_zero_is_an_error_not_a_silent_unevaluated_user() {
        let err = Split::leave_one_out(&[vec![1, 2, 0]], 2).unwrap_err();
        assert!(err.to_string().contains("item 0"), "{err}");
    }

    #[test]
    fn short_user_is_an_error_not_a_panic() {
        let err = Split::leave_one_out(&[vec![1, 2]], 2).unwrap_err();
        assert!(err.to_string().contains("at least 3"), "{err}");
    }
}
