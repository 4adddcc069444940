//! The paper's Table 8 columns plus group sizes.

use serde::{Deserialize, Serialize};

use crate::prepare::Prepared;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetStats {
    pub name: String,
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    /// 1 − interactions / (users · items).
    pub sparsity: f64,
    pub avg_length: f64,
    /// Users with validation and test targets (all of them unless
    /// `split.min_eval_interactions` is set).
    pub evaluated_users: usize,
    pub head_users: usize,
    pub tail_users: usize,
    pub head_items: usize,
    pub tail_items: usize,
    pub dropped_users: usize,
    pub dropped_items: usize,
    pub dropped_interactions: usize,
}

/// How many (user, item) cells the interactions fill.
fn distinct_pairs(sequences: &[Vec<u32>]) -> usize {
    sequences
        .iter()
        .map(|s| {
            let mut items = s.clone();
            items.sort_unstable();
            items.dedup();
            items.len()
        })
        .sum()
}

impl DatasetStats {
    pub fn of(p: &Prepared) -> Self {
        let d = &p.dataset;
        let (users, items, inter) = (d.num_users(), d.num_items as usize, d.num_interactions());
        Self {
            name: d.name.clone(),
            users,
            items,
            interactions: inter,
            // Distinct (user, item) pairs: a repeated purchase fills no new
            // cell of the matrix (counting it drove Fashion-like data with
            // many repeats below 0%).
            sparsity: 1.0 - distinct_pairs(&d.sequences) as f64 / (users as f64 * items as f64),
            avg_length: inter as f64 / users as f64,
            evaluated_users: p.split.num_evaluated(),
            head_users: p.groups.num_head_users(),
            tail_users: users - p.groups.num_head_users(),
            head_items: p.groups.num_head_items(),
            tail_items: items - p.groups.num_head_items(),
            dropped_users: d.report.dropped_users,
            dropped_items: d.report.dropped_items,
            dropped_interactions: d.report.dropped_interactions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_fill_no_new_cell() {
        // User 1 bought item 3 three times: 4 interactions, 2 cells.
        assert_eq!(distinct_pairs(&[vec![3, 3, 3, 5], vec![1]]), 3);
    }
}
