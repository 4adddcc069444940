//! Head/tail groups of users and items, the columns of the paper's tables.
//!
//! Two rules: the paper's Pareto split (head = top `ratio` of users by
//! training length, of items by training popularity) and the LLM-ESR code's
//! fixed thresholds, kept for parity with published numbers.
//!
//! Groups are computed over every user, evaluated or not (see
//! [`Split::is_evaluated`]): they describe the dataset, so setting
//! `split.min_eval_interactions` does not move a user between head and tail
//! beyond what the longer training sequences of unevaluated users do.

use serde::{Deserialize, Serialize};

use crate::split::Split;

/// How users and items are divided into head and tail.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum GroupRule {
    /// Head = the top `ratio` share by count (paper §4.1: 20%). Ties at the
    /// boundary go to the lower id, so the head holds exactly
    /// `round(ratio · n)` members.
    Pareto { ratio: f64 },
    /// LLM-ESR's rule: a user is head when the test input (training +
    /// validation item; for a user who is not evaluated, the whole
    /// sequence) has at least `ts_user` items; an item is head when its
    /// training popularity is at least `ts_item`.
    Threshold { ts_user: u32, ts_item: u32 },
}

impl Default for GroupRule {
    fn default() -> Self {
        Self::Pareto { ratio: 0.2 }
    }
}

/// Group membership; `head_items` is indexed by item id (index 0 = padding, never head).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Groups {
    /// The rule, described (the tagged enum itself does not fit the binary cache).
    pub rule: String,
    pub head_users: Vec<bool>,
    pub head_items: Vec<bool>,
}

impl Groups {
    pub fn compute(split: &Split, rule: GroupRule) -> Self {
        let pop = split.train_popularity();
        let (head_users, head_items) = match rule {
            GroupRule::Pareto { ratio } => {
                let lens: Vec<u32> = split.train.iter().map(|s| s.len() as u32).collect();
                let mut items = top_share(&pop[1..], ratio);
                items.insert(0, false);
                (top_share(&lens, ratio), items)
            }
            GroupRule::Threshold { ts_user, ts_item } => {
                let users = (0..split.num_users())
                    .map(|u| {
                        let input = split.train[u].len() + usize::from(split.is_evaluated(u));
                        input as u32 >= ts_user
                    })
                    .collect();
                let items = pop
                    .iter()
                    .enumerate()
                    .map(|(i, &p)| i > 0 && p >= ts_item)
                    .collect();
                (users, items)
            }
        };
        Self {
            rule: format!("{rule:?}"),
            head_users,
            head_items,
        }
    }

    pub fn num_head_users(&self) -> usize {
        self.head_users.iter().filter(|&&h| h).count()
    }

    pub fn num_head_items(&self) -> usize {
        self.head_items.iter().filter(|&&h| h).count()
    }
}

/// Marks the `round(ratio · n)` largest counts; ties broken by lower index.
fn top_share(counts: &[u32], ratio: f64) -> Vec<bool> {
    let n = counts.len();
    let k = ((ratio * n as f64).round() as usize).min(n);
    let mut order: Vec<usize> = (0..n).collect();
    // Stable sort keeps lower indices first among equal counts.
    order.sort_by(|&a, &b| counts[b].cmp(&counts[a]));
    let mut head = vec![false; n];
    for &i in &order[..k] {
        head[i] = true;
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_with_train_lengths(lens: &[usize]) -> Split {
        let seqs: Vec<Vec<u32>> = lens
            .iter()
            .map(|&l| {
                let mut s: Vec<u32> = (0..l).map(|i| (i % 5) as u32 + 1).collect();
                s.extend([5, 5]);
                s
            })
            .collect();
        Split::leave_one_out(&seqs, 5).unwrap()
    }

    #[test]
    fn pareto_users_exact_boundary() {
        // 10 users; 20% = 2 head users: the two longest (lengths 9 and 7).
        let s = split_with_train_lengths(&[1, 9, 2, 3, 7, 1, 2, 3, 4, 5]);
        let g = Groups::compute(&s, GroupRule::Pareto { ratio: 0.2 });
        let heads: Vec<usize> = (0..10).filter(|&u| g.head_users[u]).collect();
        assert_eq!(heads, vec![1, 4]);
    }

    #[test]
    fn pareto_ties_go_to_lower_id() {
        // Lengths 3,5,5,5,1: 20% of 5 = 1 head; three users tie at 5 → user 1.
        let s = split_with_train_lengths(&[3, 5, 5, 5, 1]);
        let g = Groups::compute(&s, GroupRule::Pareto { ratio: 0.2 });
        assert_eq!(g.head_users, vec![false, true, false, false, false]);
        // 25% of 5 = 1.25 → 1 head; 30% = 1.5 → 2 heads.
        let g = Groups::compute(&s, GroupRule::Pareto { ratio: 0.3 });
        assert_eq!(g.head_users, vec![false, true, true, false, false]);
    }

    #[test]
    fn pareto_items_by_training_popularity() {
        // Item 3 appears 3× in training, item 1 twice, item 2 once, 4 and 5 only as targets.
        let seqs = vec![vec![3, 3, 1, 4, 5], vec![1, 3, 2, 5, 4]];
        let s = Split::leave_one_out(&seqs, 5).unwrap();
        // 5 items × 0.4 = 2 head items: 3 and 1.
        let g = Groups::compute(&s, GroupRule::Pareto { ratio: 0.4 });
        assert_eq!(g.head_items, vec![false, true, false, true, false, false]);
        assert_eq!(g.num_head_items(), 2);
    }

    #[test]
    fn threshold_rule_matches_llm_esr() {
        // Test input lengths: 2+1=3 and 4+1=5; ts_user = 5 → only user 1 is head.
        let seqs = vec![vec![1, 2, 3, 4], vec![1, 1, 1, 2, 3, 4]];
        let s = Split::leave_one_out(&seqs, 4).unwrap();
        let g = Groups::compute(
            &s,
            GroupRule::Threshold {
                ts_user: 5,
                ts_item: 4,
            },
        );
        assert_eq!(g.head_users, vec![false, true]);
        // Training popularity: item 1 → 4, item 2 → 2.
        assert_eq!(g.head_items, vec![false, true, false, false, false]);
    }

    #[test]
    fn threshold_rule_counts_an_unevaluated_users_whole_sequence_once() {
        // User 0 (3 items) is not evaluated: its test input is its 3 items,
        // not 3 + a missing validation item.
        let seqs = vec![vec![1, 2, 3], vec![1, 2, 3, 4]];
        let s = Split::leave_one_out_with(
            &seqs,
            4,
            &crate::split::SplitConfig {
                min_eval_interactions: Some(4),
            },
        )
        .unwrap();
        let rule = |ts_user| GroupRule::Threshold {
            ts_user,
            ts_item: 1,
        };
        assert_eq!(Groups::compute(&s, rule(3)).head_users, vec![true, true]);
        assert_eq!(Groups::compute(&s, rule(4)).head_users, vec![false, false]);
    }
}
