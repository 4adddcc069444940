//! Helpers shared by the real-data training tests.

use hsuga_data::{Candidates, Phase, Prepared};
use hsuga_train::{Metrics, rank_of_target};

/// Test NDCG@10 of ranking by training popularity: the floor a model must beat.
pub fn popularity_ndcg(p: &Prepared, c: &Candidates) -> f64 {
    let pop = p.split.train_popularity();
    let ranks: Vec<u32> = (0..p.split.num_users())
        .map(|u| {
            let negs = c.negatives(Phase::Test, u);
            let s: Vec<f32> = negs.iter().map(|&i| pop[i as usize] as f32).collect();
            rank_of_target(pop[p.split.test[u] as usize] as f32, &s, negs)
        })
        .collect();
    Metrics::from_ranks(&ranks, 10).ndcg
}
