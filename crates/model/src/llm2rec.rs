//! LLM2Rec (He et al., "LLM2Rec: Large Language Models Are Powerful
//! Embedding Models for Sequential Recommendation", KDD 2025), the
//! downstream stage, written after the official code
//! (`HappyPointer/LLM2Rec`: `seqrec/models/SASRec/_model.py`,
//! `seqrec/models/Embedding2.py`; BASELINES.md §5).
//!
//! Frozen item text embeddings `Z` pass through one linear adapter
//! `A = Linear(d_text → H)` (xavier-normal weight, zero bias; the official
//! `adapter_dims [-1]`), and `A(Z)` replaces the backbone's ID item table
//! everywhere: input tokens, training targets and negatives, and scoring
//! (`score(u, j) = A(Z[j]) · h_u`). The official downstream trains with
//! full-softmax cross-entropy over all items; the run config must say
//! `model.loss = "ce"` (checked when it is loaded).
//!
//! Labelled "LLM2Rec (w/o CSFT/IEM)" wherever it appears: the official
//! `Z` comes from Qwen2-0.5B after collaborative supervised fine-tuning and
//! LLM2Vec's MNTP + SimCSE stages (GPU-scale); the project's item text
//! embeddings (`inputs.item_text`, the ones LLMInit and LLM-ESR read) stand
//! in for them.
//!
//! Choices that are ours:
//! - BERT4Rec's mask token gets its own learned row (`N(0, 0.01)`, as
//!   LLMEmb's BERT4Rec does); HSUGA's port feeds it the zero text row, so
//!   its embedding is the adapter's bias.
//! - Padding is the zero row (the official row 0 is the embedding of the
//!   string "Null"; padding is masked out of attention here anyway).
//! - The adapted vectors enter the backbone as its ID vectors would
//!   (SASRec/BERT4Rec scale them by `√H` and add positions).
//! - The adapter maps the whole table once per step (or per evaluation
//!   pass), and a BCE/BPR step adapts only the items it reads
//!   ([`crate::dual::adapted_table`]), the same function as adapting per
//!   position.
//! - The backbone's own ID table stays in the module, unused and without
//!   gradient, so that every backbone builds as usual.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::dual::{adapted_table, zero_bias};
use crate::transformer::linear;

/// LLM2Rec's own `[method.llm2rec]` keys (none yet: its downstream stage
/// has no setting beyond the backbone's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Llm2recConfig {}

/// Standard deviation of a special token's initial row (LLMEmb's
/// `mask_embedding.normal_(0, 0.01)`; ours for LLM2Rec).
pub const SPECIAL_STD: f64 = 0.01;

/// Frozen text embeddings for LLM2Rec's item table.
#[derive(Debug, Clone, Copy)]
pub struct Llm2recSpec<'a> {
    /// Row-major `num_items × dim`; row `i - 1` is item `i`.
    pub text: &'a [f32],
    pub dim: usize,
}

/// The item table `A(Z)`; the backbone lives in the recommender.
#[derive(Module, Debug)]
pub struct Llm2rec {
    /// `[N, d]` frozen text embeddings (no gradient).
    text: Param<Tensor<2>>,
    /// `d → H`.
    adapter: Linear,
    /// `[V - N - 1, H]` rows of ids without text (BERT4Rec's mask token).
    special: Option<Param<Tensor<2>>>,
}

impl Llm2rec {
    /// `vocab` = rows of the backbone's table (padding + items + specials).
    pub fn new(
        spec: &Llm2recSpec<'_>,
        hidden: usize,
        num_items: usize,
        vocab: usize,
        device: &Device,
    ) -> Self {
        Self {
            text: frozen(spec.text, num_items, spec.dim, device),
            adapter: zero_bias(linear(spec.dim, hidden, device)),
            special: special_rows(vocab - num_items - 1, hidden, device),
        }
    }

    /// `[N, d]` the frozen text rows `Z`.
    pub fn text(&self) -> Tensor<2> {
        self.text.val()
    }

    /// The item table: row 0 zero, rows `1..=N` `A(Z)`, then the special
    /// rows; only the `used` items adapted when given.
    ///
    /// # Shapes
    /// - output: `[V, H]`
    pub fn table(&self, used: Option<Tensor<1, Int>>) -> Tensor<2> {
        adapted_table(
            self.text.val(),
            |x| self.adapter.forward(x),
            self.special.as_ref().map(Param::val),
            used,
        )
    }
}

/// `rows × dim` values as a parameter that takes no gradient.
pub(crate) fn frozen(data: &[f32], rows: usize, dim: usize, device: &Device) -> Param<Tensor<2>> {
    let t = Tensor::from_data(TensorData::new(data.to_vec(), [rows, dim]), device);
    Param::from_tensor(t).set_require_grad(false)
}

/// `count` learned rows of width `hidden`, `N(0, 0.01)`; none when `count`
/// is 0.
pub(crate) fn special_rows(
    count: usize,
    hidden: usize,
    device: &Device,
) -> Option<Param<Tensor<2>>> {
    (count > 0).then(|| {
        Param::from_tensor(Tensor::random(
            [count, hidden],
            Distribution::Normal(0.0, SPECIAL_STD),
            device,
        ))
    })
}
