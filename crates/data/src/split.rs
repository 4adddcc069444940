//! Leave-one-out split (SASRec / LLM-ESR): per user the last item is the test
//! target, the second to last the validation target, the rest is training.

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// Per-user training prefixes and held-out targets. User `u` is index `u`
/// everywhere (0-based); items are 1-based with 0 reserved for padding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub num_items: u32,
    pub train: Vec<Vec<u32>>,
    pub valid: Vec<u32>,
    pub test: Vec<u32>,
}

impl Split {
    /// Splits full time-ordered sequences; each must hold at least 3 items so
    /// that training keeps one.
    pub fn leave_one_out(sequences: &[Vec<u32>], num_items: u32) -> Result<Self> {
        let mut train = Vec::with_capacity(sequences.len());
        let mut valid = Vec::with_capacity(sequences.len());
        let mut test = Vec::with_capacity(sequences.len());
        for (u, seq) in sequences.iter().enumerate() {
            let n = seq.len();
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

    /// The model input when scoring the validation target: the training prefix.
    pub fn valid_input(&self, user: usize) -> &[u32] {
        &self.train[user]
    }

    /// The model input when scoring the test target: training prefix + validation item.
    pub fn test_input(&self, user: usize) -> Vec<u32> {
        let mut s = self.train[user].clone();
        s.push(self.valid[user]);
        s
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
        all.push(self.valid[user]);
        all.push(self.test[user]);
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

    #[test]
    fn short_user_is_an_error_not_a_panic() {
        let err = Split::leave_one_out(&[vec![1, 2]], 2).unwrap_err();
        assert!(err.to_string().contains("at least 3"), "{err}");
    }
}
