//! Per-user ranks → metrics overall and per head/tail group, the five column
//! groups of the paper's tables. Item groups are judged on the target item.

use std::collections::BTreeMap;

use hsuga_data::{Candidates, Groups, Phase, Split};
use serde::{Deserialize, Serialize};

use crate::metrics::{Metric, rank_against};

/// A column group of the paper's tables, in the paper's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Column {
    Overall,
    TailItem,
    HeadItem,
    TailUser,
    HeadUser,
}

impl Column {
    pub const ALL: [Column; 5] = [
        Column::Overall,
        Column::TailItem,
        Column::HeadItem,
        Column::TailUser,
        Column::HeadUser,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Column::Overall => "Overall",
            Column::TailItem => "Tail Item",
            Column::HeadItem => "Head Item",
            Column::TailUser => "Tail User",
            Column::HeadUser => "Head User",
        }
    }

    /// Whether `user`, whose target is `target`, belongs to this column.
    pub fn contains(self, groups: &Groups, user: usize, target: u32) -> bool {
        let head_item = groups.head_items[target as usize];
        let head_user = groups.head_users[user];
        match self {
            Column::Overall => true,
            Column::TailItem => !head_item,
            Column::HeadItem => head_item,
            Column::TailUser => !head_user,
            Column::HeadUser => head_user,
        }
    }
}

/// The outcome of ranking every user's held-out target once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranking {
    pub phase: Phase,
    /// `ranks[u]`: 0-based rank of user `u`'s target.
    pub ranks: Vec<usize>,
    pub targets: Vec<u32>,
}

impl Ranking {
    pub fn new(phase: Phase, split: &Split, ranks: Vec<usize>) -> Self {
        let targets = match phase {
            Phase::Valid => split.valid.clone(),
            Phase::Test => split.test.clone(),
        };
        assert_eq!(ranks.len(), targets.len(), "one rank per user");
        Self {
            phase,
            ranks,
            targets,
        }
    }

    /// The per-user value of `metric`, for t-tests.
    pub fn per_user(&self, metric: Metric) -> Vec<f64> {
        self.ranks.iter().map(|&r| metric.of_rank(r)).collect()
    }

    /// Users in `column`, in order.
    pub fn users_in(&self, column: Column, groups: &Groups) -> Vec<usize> {
        (0..self.ranks.len())
            .filter(|&u| column.contains(groups, u, self.targets[u]))
            .collect()
    }

    pub fn summarize(&self, groups: &Groups, metrics: &[Metric]) -> Summary {
        let columns = Column::ALL
            .iter()
            .map(|&column| {
                let users = self.users_in(column, groups);
                let values = metrics
                    .iter()
                    .map(|&m| {
                        let sum: f64 = users.iter().map(|&u| m.of_rank(self.ranks[u])).sum();
                        let mean = if users.is_empty() {
                            0.0
                        } else {
                            sum / users.len() as f64
                        };
                        (m.to_string(), mean)
                    })
                    .collect();
                ColumnSummary {
                    column,
                    users: users.len(),
                    values,
                }
            })
            .collect();
        Summary { columns }
    }
}

/// Metric means per column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub columns: Vec<ColumnSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSummary {
    pub column: Column,
    pub users: usize,
    /// Metric name (`NDCG@10`) → mean over the column's users.
    pub values: BTreeMap<String, f64>,
}

impl Summary {
    pub fn get(&self, column: Column, metric: Metric) -> Option<f64> {
        self.columns
            .iter()
            .find(|c| c.column == column)?
            .values
            .get(&metric.to_string())
            .copied()
    }
}

/// The sampled-protocol candidate list for one user: the target first, then
/// the stored negatives (padding 0s dropped).
pub fn candidate_items(split: &Split, cands: &Candidates, phase: Phase, user: usize) -> Vec<u32> {
    let target = match phase {
        Phase::Valid => split.valid[user],
        Phase::Test => split.test[user],
    };
    std::iter::once(target)
        .chain(
            cands
                .negatives(phase, user)
                .iter()
                .copied()
                .filter(|&i| i != 0),
        )
        .collect()
}

/// Rank from scores aligned with [`candidate_items`] (target score first).
pub fn rank_of_first(scores: &[f32]) -> usize {
    rank_against(scores[0], &scores[1..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use hsuga_data::GroupRule;

    /// 5 users, targets chosen so groups are known by hand.
    fn setup() -> (Split, Groups) {
        // Train lengths 4,1,1,1,1 → with ratio 0.2 user 0 is the one head user.
        // Training popularity: item 1 → 4 (user 0) + 1, item 2 → 3.
        let seqs = vec![
            vec![1, 1, 1, 1, 5, 2],
            vec![2, 5, 1],
            vec![2, 5, 3],
            vec![2, 5, 4],
            vec![1, 5, 2],
        ];
        let split = Split::leave_one_out(&seqs, 5).unwrap();
        // 5 items × 0.2 = 1 head item: item 1 (pop 5).
        let groups = Groups::compute(&split, GroupRule::Pareto { ratio: 0.2 });
        assert_eq!(
            groups.head_items,
            vec![false, true, false, false, false, false]
        );
        assert_eq!(groups.head_users, vec![true, false, false, false, false]);
        (split, groups)
    }

    #[test]
    fn columns_aggregate_by_hand() {
        let (split, groups) = setup();
        // Ranks: 0, 1, 20, 2, 0. Targets: 2, 1, 3, 4, 2.
        let r = Ranking::new(Phase::Test, &split, vec![0, 1, 20, 2, 0]);
        let s = r.summarize(&groups, &[Metric::Hr(10), Metric::Ndcg(10)]);
        let n1 = 1.0 / 3f64.log2();
        // Overall: HR = 4/5; NDCG = (1 + n1 + 0 + 0.5 + 1) / 5.
        assert!((s.get(Column::Overall, Metric::Hr(10)).unwrap() - 0.8).abs() < 1e-12);
        let nd = (2.5 + n1) / 5.0;
        assert!((s.get(Column::Overall, Metric::Ndcg(10)).unwrap() - nd).abs() < 1e-12);
        // Head item: only user 1 (target 1, rank 1).
        assert_eq!(s.columns[2].users, 1);
        assert!((s.get(Column::HeadItem, Metric::Ndcg(10)).unwrap() - n1).abs() < 1e-12);
        // Tail item: users 0, 2, 3, 4 → HR 3/4.
        assert_eq!(s.get(Column::TailItem, Metric::Hr(10)).unwrap(), 0.75);
        // Head user: user 0, rank 0. Tail users: 1..5 → NDCG (n1 + 0 + .5 + 1)/4.
        assert_eq!(s.get(Column::HeadUser, Metric::Ndcg(10)).unwrap(), 1.0);
        let tail = (n1 + 1.5) / 4.0;
        assert!((s.get(Column::TailUser, Metric::Ndcg(10)).unwrap() - tail).abs() < 1e-12);
    }

    #[test]
    fn candidate_lists_put_target_first_and_drop_padding() {
        let split = Split::leave_one_out(&[vec![1, 2, 3]], 5).unwrap();
        let c = Candidates::draw(&split, 4, 7);
        assert_eq!(candidate_items(&split, &c, Phase::Test, 0), vec![3, 4, 5]);
        assert_eq!(candidate_items(&split, &c, Phase::Valid, 0), vec![2, 4, 5]);
        assert_eq!(rank_of_first(&[0.3, 0.3, 0.1]), 1);
    }
}
