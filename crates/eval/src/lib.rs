//! Evaluation: ranking metrics with ties counted against the target
//! ([`metrics`]), aggregation overall and per head/tail group in the paper's
//! column layout ([`groups`]), paired t-tests ([`ttest`]), and result tables
//! over methods × seeds as Markdown, CSV and JSON ([`table`]).

pub mod groups;
pub mod metrics;
pub mod table;
pub mod ttest;

pub use groups::{Column, Ranking, Summary, candidate_items, rank_of_first};
pub use metrics::{Metric, hit, ndcg, rank_against, rank_full};
pub use ttest::{TTest, paired_t_test};
