//! HSU used alone (HSUGA paper §3.5, eq. 7): the user's semantic embedding
//! `s` is fused into the sequence representation, `h̃ = φ(h, s)`, and items
//! are scored against `h̃`. The paper names addition, gating and
//! concatenation followed by projection without fixing their form; ours:
//! - `add`: `h + W s`
//! - `gate`: `LN(h + σ(g)·W s)` with a scalar `g` initialised to −6, so
//!   training starts from the plain backbone (σ(−6) ≈ 0.0025) and opens the
//!   gate only as far as the semantic signal helps;
//! - `concat`: `P [h; W s]`.
//!
//! `s` is the same for every position of a user's sequence, so it is fused
//! at every position (the per-position training loss sees it too).

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::transformer::linear;

/// How HSU user embeddings join the sequence representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fusion {
    /// No fusion (the user embeddings, if any, only pick neighbours).
    #[default]
    None,
    Add,
    Gate,
    Concat,
}

/// Gate logit at initialisation (ours; "very negative" per DESIGN §4).
pub const GATE_INIT: f32 = -6.0;

/// The fusion layer for one [`Fusion`] kind other than `None`.
#[derive(Module, Debug)]
pub struct FusionLayer {
    /// `W`: semantic dimension → representation dimension.
    project: Linear,
    gate: Option<Param<Tensor<1>>>,
    norm: Option<LayerNorm>,
    /// `P`: `2D → D` (concat only).
    mix: Option<Linear>,
}

impl FusionLayer {
    /// `d_sem` = user embedding size; `d_rep` = representation size.
    pub fn new(kind: Fusion, d_sem: usize, d_rep: usize, eps: f64, device: &Device) -> Self {
        let gate = kind == Fusion::Gate;
        Self {
            project: linear(d_sem, d_rep, device),
            gate: gate.then(|| Param::from_tensor(Tensor::full([1], GATE_INIT, device))),
            norm: gate.then(|| LayerNormConfig::new(d_rep).with_epsilon(eps).init(device)),
            mix: (kind == Fusion::Concat).then(|| linear(2 * d_rep, d_rep, device)),
        }
    }

    /// # Shapes
    /// - `h`: `[B, T, D]`; `s`: `[B, S]`; output: `[B, T, D]`
    pub fn forward(&self, h: Tensor<3>, s: Tensor<2>) -> Tensor<3> {
        let [b, t, d] = h.dims();
        let ws = self.project.forward(s).reshape([b, 1, d]); // [B, 1, D]
        if let (Some(g), Some(norm)) = (&self.gate, &self.norm) {
            let open = sigmoid(g.val()).reshape([1, 1, 1]);
            return norm.forward(h + ws * open);
        }
        if let Some(mix) = &self.mix {
            return crate::transformer::linear_rows(
                mix,
                Tensor::cat(vec![h, ws.expand([b, t, d])], 2),
            );
        }
        h + ws
    }
}
