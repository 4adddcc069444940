//! Evaluation, score → rank → metric, in one place: the [`Scorer`] contract
//! every model implements and the sampled and full-ranking protocols
//! ([`protocol`]), ranking metrics with ties and non-finite scores counted
//! against the target ([`metrics`]), aggregation overall and per head/tail
//! group in the paper's column layout ([`groups`]), paired t-tests
//! ([`ttest`]), and result tables over methods × seeds as Markdown, CSV and
//! JSON ([`table`]).

pub mod groups;
pub mod metrics;
pub mod protocol;
pub mod table;
pub mod ttest;

pub use groups::{Column, Means, Ranking, Summary};
pub use metrics::{BadMetric, Metric, hit, ndcg, rank_against, rank_full, rank_sampled};
pub use protocol::{
    EvalConfig, EvalConfigError, PhaseRanks, Protocol, Ranked, Scorer, evaluate, length_chunks,
};
pub use ttest::{TTest, paired_t_test};
