//! Per-user ranks → metrics overall and per head/tail group, the five column
//! groups of the paper's tables. Item groups are judged on the target item.

use std::collections::BTreeMap;

use hsuga_data::{Groups, Phase, Split};
use serde::{Deserialize, Serialize};

use crate::metrics::Metric;
use crate::protocol::Ranked;

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

    /// Whether a user in the given groups belongs to this column.
    pub fn contains(self, head_user: bool, head_target: bool) -> bool {
        match self {
            Column::Overall => true,
            Column::TailItem => !head_target,
            Column::HeadItem => head_target,
            Column::TailUser => !head_user,
            Column::HeadUser => head_user,
        }
    }
}

/// The outcome of ranking every evaluated user's held-out target once,
/// with what the paper's columns need to know about each user: whether the
/// user is a head user and whether the target is a head item. A ranking is
/// therefore self-contained: a report reads it back from a run folder's
/// `ranks.csv` without preparing the dataset again. Entry `i` is user
/// `users[i]`; users without a target (a dataset's `[split]
/// min_eval_interactions`) have no entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranking {
    pub phase: Phase,
    /// The evaluated users, ascending.
    pub users: Vec<usize>,
    /// 0-based rank of each entry's target.
    pub ranks: Vec<usize>,
    pub targets: Vec<u32>,
    pub head_users: Vec<bool>,
    /// Whether each entry's target is a head item.
    pub head_targets: Vec<bool>,
}

impl Ranking {
    /// `ranks[i]` is the rank of the `i`-th of `split.evaluated_users()`.
    pub fn new(phase: Phase, split: &Split, groups: &Groups, ranks: Vec<usize>) -> Self {
        let users = split.evaluated_users();
        assert_eq!(ranks.len(), users.len(), "one rank per evaluated user");
        let targets: Vec<u32> = users
            .iter()
            .map(|&u| {
                split
                    .target(phase, u)
                    .expect("evaluated users have targets")
            })
            .collect();
        let head_targets = targets
            .iter()
            .map(|&t| groups.head_items[t as usize])
            .collect();
        let head_users = users.iter().map(|&u| groups.head_users[u]).collect();
        Self {
            phase,
            users,
            ranks,
            targets,
            head_users,
            head_targets,
        }
    }

    /// The per-user value of `metric`, for t-tests.
    pub fn per_user(&self, metric: Metric) -> Vec<f64> {
        self.ranks.iter().map(|&r| metric.of_rank(r)).collect()
    }

    /// The mean of `metric` over all users (0 when there are none).
    pub fn mean(&self, metric: Metric) -> f64 {
        mean(
            self.ranks.iter().map(|&r| metric.of_rank(r)),
            self.ranks.len(),
        )
    }

    /// Entries (indices into `ranks`) in `column`, in order.
    pub fn users_in(&self, column: Column) -> Vec<usize> {
        (0..self.ranks.len())
            .filter(|&u| column.contains(self.head_users[u], self.head_targets[u]))
            .collect()
    }

    /// Whether two rankings rank the same users' same targets (runs of one
    /// split), so that their per-user values can be paired.
    pub fn same_users(&self, other: &Ranking) -> bool {
        self.users == other.users
            && self.targets == other.targets
            && self.head_users == other.head_users
    }

    /// The mean of `metric` over the entries of `column` (0 when it has none).
    pub fn column_mean(&self, column: Column, metric: Metric) -> f64 {
        self.mean_over(&self.users_in(column), metric)
    }

    fn mean_over(&self, entries: &[usize], metric: Metric) -> f64 {
        mean(
            entries.iter().map(|&i| metric.of_rank(self.ranks[i])),
            entries.len(),
        )
    }

    pub fn summarize(&self, metrics: &[Metric]) -> Summary {
        let columns = Column::ALL
            .iter()
            .map(|&column| {
                let users = self.users_in(column);
                let values = metrics
                    .iter()
                    .map(|&m| (m.to_string(), self.mean_over(&users, m)))
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

/// The mean of each metric over all users of one protocol's ranking: what
/// a training log, a run's report and a progress line show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Means {
    pub protocol: Ranked,
    pub users: usize,
    pub values: BTreeMap<Metric, f64>,
}

impl Means {
    pub fn of(protocol: Ranked, ranking: &Ranking, metrics: &[Metric]) -> Self {
        Self {
            protocol,
            users: ranking.ranks.len(),
            values: metrics.iter().map(|&m| (m, ranking.mean(m))).collect(),
        }
    }

    /// The value of `metric` (0 when it was not computed).
    pub fn get(&self, metric: Metric) -> f64 {
        self.values.get(&metric).copied().unwrap_or(0.0)
    }

    /// `HR@10 0.1234  NDCG@10 0.5678` (a `(full)` suffix under full ranking).
    pub fn describe(&self) -> String {
        let mut s: Vec<String> = self
            .values
            .iter()
            .map(|(m, v)| format!("{m} {v:.4}"))
            .collect();
        if self.protocol == Ranked::Full {
            s.push("(full)".into());
        }
        s.join("  ")
    }
}

fn mean(values: impl Iterator<Item = f64>, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        values.sum::<f64>() / n as f64
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
        let r = Ranking::new(Phase::Test, &split, &groups, vec![0, 1, 20, 2, 0]);
        let s = r.summarize(&[Metric::Hr(10), Metric::Ndcg(10)]);
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
}
