//! Neighbour retrieval for retrieval-augmented self-distillation.
//!
//! LLM-ESR gives every user the K users whose semantic embeddings are most
//! cosine-similar. GAA (HSUGA paper §3.4) makes this group-aware: active
//! users (top `active_ratio` by training length) and long-tail users get
//! their own K, and an active user keeps only the candidates whose Pearson
//! correlation with them — on **training interactions only** — is at or above
//! the τ-th percentile of that user's candidate correlations (at least one is
//! always kept). The official HSUGA code builds those vectors from the full
//! sequences, validation and test items included; we do not.
//!
//! The principal types: [`RetrievalConfig`], [`UserEmbeddings`],
//! [`Neighbours`]; the entry point is [`retrieve`].

mod cosine;
mod pearson;
mod quality;

use hsuga_data::{GroupRule, Groups, Split};
use serde::{Deserialize, Serialize};

pub use cosine::top_k_cosine;
pub use pearson::{pearson_binary, percentile};
pub use quality::{NeighbourQuality, neighbour_quality};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RetrievalError {
    #[error("{0} user embeddings for {1} users: embeddings must match the dataset's users")]
    CountMismatch(usize, usize),
    #[error("embedding data of length {len} is not a multiple of dimension {dim}")]
    BadShape { len: usize, dim: usize },
    #[error("K = {k} neighbours asked for, but only {others} other users exist")]
    KTooLarge { k: usize, others: usize },
    #[error("K must be at least 1")]
    KZero,
    #[error("percentile τ = {0} is outside [0, 100]")]
    BadPercentile(f64),
    #[error("active-user ratio {0} must be strictly between 0 and 1")]
    BadRatio(f64),
    #[error("{ks} neighbour counts for {users} users: one K per user is needed")]
    KCountMismatch { ks: usize, users: usize },
}

/// How neighbours are chosen (validated before any work by [`RetrievalConfig::validate`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum RetrievalConfig {
    /// LLM-ESR: the same K for everyone, no filter.
    Uniform { k: usize },
    /// GAA. `percentile = None` is the "w/o active-user filter" ablation.
    GroupAware {
        /// Share of users counted as active (paper: 20%).
        active_ratio: f64,
        k_active: usize,
        k_tail: usize,
        /// τ in [0, 100]; paper grid {25, 50, 75}.
        percentile: Option<f64>,
    },
}

impl RetrievalConfig {
    pub fn validate(&self, num_users: usize) -> Result<(), RetrievalError> {
        let others = num_users.saturating_sub(1);
        let check_k = |k: usize| match k {
            0 => Err(RetrievalError::KZero),
            k if k > others => Err(RetrievalError::KTooLarge { k, others }),
            _ => Ok(()),
        };
        match *self {
            RetrievalConfig::Uniform { k } => check_k(k),
            RetrievalConfig::GroupAware {
                active_ratio,
                k_active,
                k_tail,
                percentile,
            } => {
                if !(active_ratio > 0.0 && active_ratio < 1.0) {
                    return Err(RetrievalError::BadRatio(active_ratio));
                }
                if let Some(p) = percentile
                    && !(0.0..=100.0).contains(&p)
                {
                    return Err(RetrievalError::BadPercentile(p));
                }
                check_k(k_active)?;
                check_k(k_tail)
            }
        }
    }
}

/// Row-major `num_users × dim` semantic user embeddings (user index order).
#[derive(Debug, Clone, PartialEq)]
pub struct UserEmbeddings {
    pub dim: usize,
    pub data: Vec<f32>,
}

impl UserEmbeddings {
    pub fn new(dim: usize, data: Vec<f32>) -> Result<Self, RetrievalError> {
        if dim == 0 || !data.len().is_multiple_of(dim) {
            return Err(RetrievalError::BadShape {
                len: data.len(),
                dim,
            });
        }
        Ok(Self { dim, data })
    }

    pub fn num_users(&self) -> usize {
        self.data.len() / self.dim
    }
}

/// Each user's neighbours (variable count: the teacher is a masked mean).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neighbours {
    offsets: Vec<usize>,
    ids: Vec<u32>,
}

impl Neighbours {
    pub fn of(&self, user: usize) -> &[u32] {
        &self.ids[self.offsets[user]..self.offsets[user + 1]]
    }

    pub fn num_users(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Largest neighbour count (the padded width of a teacher batch).
    pub fn max_len(&self) -> usize {
        self.offsets
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(0)
    }

    fn from_lists(lists: Vec<Vec<u32>>) -> Self {
        let mut offsets = Vec::with_capacity(lists.len() + 1);
        offsets.push(0);
        let mut ids = Vec::new();
        for l in lists {
            ids.extend(l);
            offsets.push(ids.len());
        }
        Self { offsets, ids }
    }
}

/// Which users GAA treats as active: the top `ratio` by training length,
/// ties to the lower index (the same rule as the head-user group).
pub fn active_users(split: &Split, ratio: f64) -> Vec<bool> {
    Groups::compute(split, GroupRule::Pareto { ratio }).head_users
}

/// Retrieves neighbours for every user; never returns the user itself.
pub fn retrieve(
    emb: &UserEmbeddings,
    split: &Split,
    cfg: &RetrievalConfig,
) -> Result<Neighbours, RetrievalError> {
    let n = split.num_users();
    if emb.num_users() != n {
        return Err(RetrievalError::CountMismatch(emb.num_users(), n));
    }
    cfg.validate(n)?;
    let _span = tracing::info_span!("retrieve", users = n).entered();
    let lists = match *cfg {
        RetrievalConfig::Uniform { k } => {
            let ks = vec![k; n];
            top_k_cosine(emb, &ks)?
        }
        RetrievalConfig::GroupAware {
            active_ratio,
            k_active,
            k_tail,
            percentile,
        } => {
            let active = active_users(split, active_ratio);
            let ks: Vec<usize> = active
                .iter()
                .map(|&a| if a { k_active } else { k_tail })
                .collect();
            let mut lists = top_k_cosine(emb, &ks)?;
            if let Some(tau) = percentile {
                pearson::filter_active(&mut lists, &active, split, tau);
            }
            lists
        }
    };
    Ok(Neighbours::from_lists(lists))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Users 0–5; train lengths make user 0 the single active user at 20%.
    fn split() -> Split {
        let seqs = vec![
            vec![1, 2, 3, 4, 5, 6, 7, 8],
            vec![1, 2, 9, 10],
            vec![1, 2, 3],
            vec![4, 5, 6],
            vec![7, 8, 9],
            vec![1, 9, 10],
        ];
        Split::leave_one_out(&seqs, 10).unwrap()
    }

    fn emb() -> UserEmbeddings {
        // 2-d directions; users 1..5 fan out from user 0's direction.
        let angles = [0.0f32, 0.1, 0.25, 0.3, 0.45, 1.5];
        UserEmbeddings::new(2, angles.iter().flat_map(|a| [a.cos(), a.sin()]).collect()).unwrap()
    }

    #[test]
    fn never_returns_self_even_for_identical_embeddings() {
        let e = UserEmbeddings::new(2, vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0]).unwrap();
        let s = Split::leave_one_out(&[vec![1, 2, 3], vec![1, 2, 3], vec![1, 2, 3]], 3).unwrap();
        let nb = retrieve(&e, &s, &RetrievalConfig::Uniform { k: 2 }).unwrap();
        for u in 0..3 {
            assert!(!nb.of(u).contains(&(u as u32)), "user {u}: {:?}", nb.of(u));
            assert_eq!(nb.of(u).len(), 2);
        }
    }

    #[test]
    fn uniform_returns_most_similar_in_order() {
        let nb = retrieve(&emb(), &split(), &RetrievalConfig::Uniform { k: 3 }).unwrap();
        assert_eq!(nb.of(0), &[1, 2, 3]);
        assert_eq!(nb.of(3), &[2, 4, 1]);
        assert_eq!(nb.max_len(), 3);
    }

    #[test]
    fn group_aware_k_per_group_and_filter_keeps_at_least_one() {
        let cfg = RetrievalConfig::GroupAware {
            active_ratio: 0.2,
            k_active: 4,
            k_tail: 2,
            percentile: Some(100.0),
        };
        let nb = retrieve(&emb(), &split(), &cfg).unwrap();
        // Active user 0: τ = 100 keeps only the best-correlated candidate(s).
        assert!(!nb.of(0).is_empty() && nb.of(0).len() < 4, "{:?}", nb.of(0));
        // Tail users: exactly k_tail, unfiltered.
        for u in 1..6 {
            assert_eq!(nb.of(u).len(), 2, "user {u}");
        }
        let no_filter = RetrievalConfig::GroupAware {
            active_ratio: 0.2,
            k_active: 4,
            k_tail: 2,
            percentile: None,
        };
        assert_eq!(
            retrieve(&emb(), &split(), &no_filter).unwrap().of(0),
            &[1, 2, 3, 4]
        );
    }

    #[test]
    fn bad_settings_fail_before_work() {
        let s = split();
        let e = emb();
        assert_eq!(
            retrieve(&e, &s, &RetrievalConfig::Uniform { k: 6 }),
            Err(RetrievalError::KTooLarge { k: 6, others: 5 })
        );
        let bad = RetrievalConfig::GroupAware {
            active_ratio: 0.2,
            k_active: 2,
            k_tail: 2,
            percentile: Some(120.0),
        };
        assert_eq!(
            retrieve(&e, &s, &bad),
            Err(RetrievalError::BadPercentile(120.0))
        );
        let short = UserEmbeddings::new(2, vec![0.0; 4]).unwrap();
        assert_eq!(
            retrieve(&short, &s, &RetrievalConfig::Uniform { k: 1 }),
            Err(RetrievalError::CountMismatch(2, 6))
        );
        assert!(UserEmbeddings::new(3, vec![0.0; 4]).is_err());
    }
}
