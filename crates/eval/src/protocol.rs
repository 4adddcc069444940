//! The one evaluation chain: a model encodes users ([`Scorer`]), this module
//! asks it for scores under the configured protocol, turns scores into
//! ranks ([`crate::metrics`]) and ranks into a [`Ranking`] per protocol.
//! Training-time validation, the final test pass, reports and any later
//! consumer (a service) go through [`evaluate`], so every number in a
//! table is ranked the same way.
//!
//! Two protocols ([`Protocol`]):
//! - **sampled**: the target against the user's stored negatives (drawn once
//!   per seed, [`hsuga_data::Candidates`]), as the paper reports;
//! - **full**: the target against every item but the ones in the user's
//!   input history (for the test phase that is training items plus the
//!   validation item); the target itself is never excluded. Sampled metrics
//!   are known to be biased (Krichene & Rendle, KDD 2020), so both are offered.

use hsuga_data::{Candidates, Groups, Phase, Split};
use serde::{Deserialize, Serialize};

use crate::groups::Ranking;
use crate::metrics::{Metric, rank_full, rank_sampled};

/// Which ranking protocol(s) a run evaluates with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// The target among the stored sampled negatives (the paper's protocol).
    #[default]
    Sampled,
    /// The target among all items, history excluded.
    Full,
    /// Both; model selection uses the sampled one.
    Both,
}

impl Protocol {
    pub fn sampled(self) -> bool {
        matches!(self, Protocol::Sampled | Protocol::Both)
    }

    pub fn full(self) -> bool {
        matches!(self, Protocol::Full | Protocol::Both)
    }

    /// The protocol whose validation numbers select the best epoch.
    pub fn selecting(self) -> Ranked {
        if self.sampled() {
            Ranked::Sampled
        } else {
            Ranked::Full
        }
    }
}

/// One of the two protocols, as a result is labelled with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ranked {
    Sampled,
    Full,
}

impl Ranked {
    /// The protocol that evaluates this one alone.
    pub fn only(self) -> Protocol {
        match self {
            Ranked::Sampled => Protocol::Sampled,
            Ranked::Full => Protocol::Full,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Ranked::Sampled => "sampled",
            Ranked::Full => "full",
        }
    }
}

fn d_ks() -> Vec<usize> {
    vec![10] // the paper's HR@10 / NDCG@10
}
fn d_select() -> Metric {
    Metric::Ndcg(10) // LLM-ESR code and the paper: best validation NDCG@10
}

/// `[eval]`: how a run is evaluated and how its best epoch is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    #[serde(default)]
    pub protocol: Protocol,
    /// Cut-offs of the reported HR@K and NDCG@K.
    #[serde(default = "d_ks")]
    pub ks: Vec<usize>,
    /// The validation metric that picks the best epoch (on the sampled
    /// protocol unless `protocol = "full"`).
    #[serde(default = "d_select")]
    pub select: Metric,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            protocol: Protocol::default(),
            ks: d_ks(),
            select: d_select(),
        }
    }
}

/// A bad `[eval]` table, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("eval.{key}: {message}")]
pub struct EvalConfigError {
    pub key: &'static str,
    pub message: String,
}

impl EvalConfig {
    pub fn validate(&self) -> Result<(), EvalConfigError> {
        let bad = |key, message: String| Err(EvalConfigError { key, message });
        if self.ks.is_empty() {
            return bad("ks", "needs at least one cut-off, e.g. [10]".into());
        }
        if let Some(k) = self.ks.iter().find(|&&k| k == 0) {
            return bad("ks", format!("cut-offs must be at least 1, got {k}"));
        }
        Ok(())
    }

    /// HR and NDCG at every configured cut-off, and the selection metric
    /// when its K is not among them.
    pub fn metrics(&self) -> Vec<Metric> {
        let mut ks = self.ks.clone();
        ks.sort_unstable();
        ks.dedup();
        let mut m = Metric::at(&ks);
        if !m.contains(&self.select) {
            m.push(self.select);
        }
        m
    }
}

/// What every model offers evaluation: encode a chunk of users from their
/// input histories once, then score candidate lists or the whole catalogue
/// against that encoding.
pub trait Scorer {
    /// A chunk of encoded users (a `[B, D]` tensor for the neural models).
    type Encoded;

    /// Item ids run `1..=num_items`; 0 is padding.
    fn num_items(&self) -> usize;

    /// Encodes `histories[j]`, the input of user `users[j]`.
    fn encode(&self, users: &[usize], histories: &[&[u32]]) -> Self::Encoded;

    /// Row-major `B × C` scores of `candidates[j]` (all rows equally long)
    /// for encoded user `j`.
    fn score_candidates(&self, users: &Self::Encoded, candidates: &[Vec<u32>]) -> Vec<f32>;

    /// Row-major `B × N` scores of every item; column `i` is item `i + 1`.
    fn score_all(&self, users: &Self::Encoded) -> Vec<f32>;
}

/// Each protocol's ranking of one phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseRanks {
    pub sampled: Option<Ranking>,
    pub full: Option<Ranking>,
}

impl PhaseRanks {
    pub fn get(&self, protocol: Ranked) -> Option<&Ranking> {
        match protocol {
            Ranked::Sampled => self.sampled.as_ref(),
            Ranked::Full => self.full.as_ref(),
        }
    }

    /// The rankings present, the selecting protocol's first.
    pub fn each(&self, cfg: &EvalConfig) -> Vec<(Ranked, &Ranking)> {
        let first = cfg.protocol.selecting();
        let other = match first {
            Ranked::Sampled => Ranked::Full,
            Ranked::Full => Ranked::Sampled,
        };
        [first, other]
            .into_iter()
            .filter_map(|p| self.get(p).map(|r| (p, r)))
            .collect()
    }

    /// The selecting protocol's ranking (every evaluation computes it).
    pub fn selecting(&self, cfg: &EvalConfig) -> &Ranking {
        self.get(cfg.protocol.selecting())
            .expect("the selecting protocol is always evaluated")
    }

    /// The value of `cfg.select` on the selecting protocol, over all users.
    pub fn selection(&self, cfg: &EvalConfig) -> f64 {
        self.get(cfg.protocol.selecting())
            .map_or(0.0, |r| r.mean(cfg.select))
    }
}

/// Users in training-length order (chunks pad little), in chunks.
pub fn length_chunks(split: &Split, users: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order = users.to_vec();
    order.sort_by_key(|&u| split.train[u].len());
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

/// Ranks every user's `phase` target under `protocol`. `seen` is called with
/// each chunk's users and their encoding (the trainer keeps the validation
/// pass's representations as its self-distillation teacher cache).
#[allow(clippy::too_many_arguments)]
pub fn evaluate<S: Scorer>(
    scorer: &S,
    split: &Split,
    groups: &Groups,
    cands: &Candidates,
    phase: Phase,
    protocol: Protocol,
    batch_size: usize,
    mut seen: impl FnMut(&[usize], &S::Encoded),
) -> PhaseRanks {
    let users = split.num_users();
    let n = scorer.num_items();
    let mut sampled = protocol.sampled().then(|| vec![0usize; users]);
    let mut full = protocol.full().then(|| vec![0usize; users]);
    let all: Vec<usize> = (0..users).collect();
    // Users without a target are encoded (`seen` may want them) but not ranked.
    let target = |u: usize| split.target(phase, u);
    for chunk in length_chunks(split, &all, batch_size) {
        let inputs: Vec<Vec<u32>> = chunk.iter().map(|&u| split.input(phase, u)).collect();
        let refs: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
        let enc = scorer.encode(&chunk, &refs);
        // Rows of the chunk that are ranked.
        let ranked: Vec<usize> = (0..chunk.len())
            .filter(|&j| target(chunk[j]).is_some())
            .collect();
        if ranked.is_empty() {
            seen(&chunk, &enc);
            continue;
        }
        if let Some(ranks) = sampled.as_mut() {
            // Every row gets a candidate list (the scorer scores the chunk);
            // rows without a target are scored on a dummy and ignored.
            let rows: Vec<Vec<u32>> = chunk
                .iter()
                .map(|&u| {
                    let t = target(u).unwrap_or(1);
                    let mut r = Vec::with_capacity(cands.per_user + 1);
                    r.push(t);
                    // Padding (0) is scored as the target and skipped when ranking.
                    r.extend(
                        cands
                            .negatives(phase, u)
                            .iter()
                            .map(|&i| if i == 0 { t } else { i }),
                    );
                    r
                })
                .collect();
            let c = rows[0].len();
            let scores = scorer.score_candidates(&enc, &rows);
            for &j in &ranked {
                let u = chunk[j];
                let s = &scores[j * c..(j + 1) * c];
                ranks[u] = rank_sampled(s[0], &s[1..], cands.negatives(phase, u));
            }
        }
        if let Some(ranks) = full.as_mut() {
            let scores = scorer.score_all(&enc);
            // `rank_full` indexes by item id: one padding column in front.
            let mut row = vec![0f32; n + 1];
            for &j in &ranked {
                let u = chunk[j];
                row[1..].copy_from_slice(&scores[j * n..(j + 1) * n]);
                let t = target(u).expect("ranked rows have targets");
                ranks[u] = rank_full(&row, t, &inputs[j]);
            }
        }
        seen(&chunk, &enc);
    }
    let evaluated = split.evaluated_users();
    let ranking = |ranks: Vec<usize>| {
        let ranks = evaluated.iter().map(|&u| ranks[u]).collect();
        Ranking::new(phase, split, groups, ranks)
    };
    PhaseRanks {
        sampled: sampled.map(ranking),
        full: full.map(ranking),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hsuga_data::GroupRule;

    /// Scores item `i` as `table[i]`, whoever the user is.
    struct Fixed(Vec<f32>);

    impl Scorer for Fixed {
        type Encoded = usize;
        fn num_items(&self) -> usize {
            self.0.len() - 1
        }
        fn encode(&self, users: &[usize], _: &[&[u32]]) -> usize {
            users.len()
        }
        fn score_candidates(&self, b: &usize, candidates: &[Vec<u32>]) -> Vec<f32> {
            assert_eq!(*b, candidates.len());
            candidates
                .iter()
                .flat_map(|r| r.iter().map(|&i| self.0[i as usize]))
                .collect()
        }
        fn score_all(&self, b: &usize) -> Vec<f32> {
            (0..*b).flat_map(|_| self.0[1..].to_vec()).collect()
        }
    }

    fn data() -> (Split, Groups, Candidates) {
        let seqs: Vec<Vec<u32>> = (0..30)
            .map(|u| vec![(u % 5) + 1, (u % 7) + 6, (u % 3) + 13, (u % 4) + 16])
            .collect();
        let split = Split::leave_one_out(&seqs, 20).unwrap();
        let groups = Groups::compute(&split, GroupRule::Pareto { ratio: 0.2 });
        let cands = Candidates::draw(&split, 10, 42);
        (split, groups, cands)
    }

    #[test]
    fn a_constant_scorer_scores_zero_through_the_real_path() {
        let (split, groups, cands) = data();
        let r = evaluate(
            &Fixed(vec![0.5; 21]),
            &split,
            &groups,
            &cands,
            Phase::Test,
            Protocol::Both,
            7,
            |_, _| {},
        );
        for ranking in [r.sampled.unwrap(), r.full.unwrap()] {
            assert_eq!(ranking.mean(Metric::Hr(10)), 0.0);
            assert_eq!(ranking.mean(Metric::Ndcg(10)), 0.0);
        }
    }

    #[test]
    fn full_ranking_excludes_the_input_history_but_never_the_target() {
        // One user: train [1, 2], valid 3, test 2 (a repeat). Items 1..=5.
        let split = Split::leave_one_out(&[vec![1, 2, 3, 2]], 5).unwrap();
        let groups = Groups::compute(&split, GroupRule::Pareto { ratio: 0.2 });
        let cands = Candidates::draw(&split, 2, 1);
        // Item 1 and 3 (history) score above the target; item 5 too.
        let scorer = Fixed(vec![0.0, 0.9, 0.5, 0.8, 0.1, 0.7]);
        let r = evaluate(
            &scorer,
            &split,
            &groups,
            &cands,
            Phase::Test,
            Protocol::Full,
            4,
            |_, _| {},
        );
        assert!(r.sampled.is_none());
        // Competing: 4 (0.1) and 5 (0.7); 1 and 3 are history.
        assert_eq!(r.full.unwrap().ranks, vec![1]);
        // Validation input is [1, 2]: target 3 competes with 4 and 5 only.
        let v = evaluate(
            &scorer,
            &split,
            &groups,
            &cands,
            Phase::Valid,
            Protocol::Full,
            4,
            |_, _| {},
        );
        assert_eq!(v.full.unwrap().ranks, vec![0]);
    }

    #[test]
    fn every_user_is_seen_once_and_batch_size_does_not_change_ranks() {
        let (split, groups, cands) = data();
        let scorer = Fixed((0..21).map(|i| (i * 7 % 11) as f32).collect());
        let run = |b| {
            let mut seen = Vec::new();
            let r = evaluate(
                &scorer,
                &split,
                &groups,
                &cands,
                Phase::Valid,
                Protocol::Both,
                b,
                |users, _| seen.extend_from_slice(users),
            );
            seen.sort_unstable();
            assert_eq!(seen, (0..30).collect::<Vec<_>>());
            r
        };
        assert_eq!(run(1), run(256));
    }

    #[test]
    fn eval_config_rejects_bad_keys_and_lists_metrics() {
        let c: EvalConfig = toml::from_str("protocol = \"both\"\nks = [20, 5]").unwrap();
        assert_eq!(c.select, Metric::Ndcg(10));
        assert_eq!(
            c.metrics(),
            vec![
                Metric::Hr(5),
                Metric::Ndcg(5),
                Metric::Hr(20),
                Metric::Ndcg(20),
                Metric::Ndcg(10)
            ]
        );
        let e = toml::from_str::<EvalConfig>("protocol = \"partial\"").unwrap_err();
        assert!(e.to_string().contains("partial"), "{e}");
        let e = toml::from_str::<EvalConfig>("select = \"MRR@10\"").unwrap_err();
        assert!(e.to_string().contains("MRR@10"), "{e}");
        let c: EvalConfig = toml::from_str("ks = [10, 0]").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "ks");
        assert!(EvalConfig::default().validate().is_ok());
    }

    #[test]
    fn users_without_a_target_are_encoded_but_not_ranked() {
        // Users 1 and 3 have fewer than 4 interactions: train-only.
        let seqs: Vec<Vec<u32>> = vec![
            vec![1, 2, 3, 4],
            vec![2, 3, 5],
            vec![3, 4, 5, 6, 1],
            vec![6, 2, 1],
        ];
        let cfg = hsuga_data::SplitConfig {
            min_eval_interactions: Some(4),
        };
        let split = Split::leave_one_out_with(&seqs, 6, &cfg).unwrap();
        assert_eq!(split.evaluated_users(), vec![0, 2]);
        let groups = Groups::compute(&split, GroupRule::Pareto { ratio: 0.2 });
        let cands = Candidates::draw(&split, 2, 3);
        let scorer = Fixed((0..7).map(|i| i as f32).collect());
        let mut seen = Vec::new();
        let r = evaluate(
            &scorer,
            &split,
            &groups,
            &cands,
            Phase::Test,
            Protocol::Both,
            8,
            |users, _| seen.extend_from_slice(users),
        );
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2, 3], "every user is encoded");
        for ranking in [r.sampled.unwrap(), r.full.unwrap()] {
            assert_eq!(ranking.users, vec![0, 2]);
            assert_eq!(ranking.targets, vec![4, 1]);
            assert_eq!(ranking.ranks.len(), 2);
        }
    }
}
