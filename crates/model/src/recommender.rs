//! One recommender over any backbone: the [`SequenceEncoder`] interface,
//! the losses, and scoring (paper eq. 5: dot product of the sequence
//! representation with item embeddings). Optional parts, each its own
//! module: LLM-ESR's dual view ([`DualView`]), HSU fusion ([`FusionLayer`]),
//! PCA-initialised collaborative items (LLMInit, via [`Extras`]), and item
//! tables made from frozen text that replace the ID table ([`TextItems`]:
//! LLM2Rec, LLMEmb).

use burn::module::{Module, Param};
use burn::tensor::activation::{log_sigmoid, log_softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::batch::{SeqBatch, TrainBatch};
use crate::config::{Loss, ModelConfig};
use crate::contract::Model;
use crate::dual::{DualView, DualViewSpec};
use crate::error::ModelError;
use crate::fusion::{Fusion, FusionLayer};
use crate::llm2rec::{Llm2rec, Llm2recSpec};
use crate::llmemb::{Llmemb, LlmembSpec};
use crate::melt::Melt;
use crate::registry::Encoder;
use crate::rlmrec::{Rlmrec, RlmrecSpec};

/// What every backbone offers: per-position representations of a history
/// and the item table that scores them.
pub trait SequenceEncoder {
    /// # Shapes
    /// - output: `[B, T, H]`
    fn encode(&self, batch: &SeqBatch) -> Tensor<3>;
    /// The same encoder over item vectors the caller looked up (LLM-ESR's
    /// semantic view).
    ///
    /// # Shapes
    /// - `items`: `[B, T, H]`; output: `[B, T, H]`
    fn encode_embedded(&self, items: Tensor<3>, batch: &SeqBatch) -> Tensor<3>;
    /// `[V, H]` item embeddings; row `i` scores item `i` for `1 <= i <= N`.
    fn item_table(&self) -> Tensor<2>;
    /// The trainable item table, so that LLMInit can overwrite its rows.
    fn item_weight_mut(&mut self) -> &mut Param<Tensor<2>>;

    /// The representation that predicts the next item: the last position
    /// (batches are left-padded, so it is the last real item — or, for
    /// BERT4Rec, the appended mask token).
    ///
    /// # Shapes
    /// - output: `[B, H]`
    fn encode_last(&self, batch: &SeqBatch) -> Tensor<2> {
        last(self.encode(batch))
    }

    /// [`Self::encode_last`] over item vectors the caller looked up.
    ///
    /// # Shapes
    /// - `items`: `[B, T, H]`; output: `[B, H]`
    fn encode_embedded_last(&self, items: Tensor<3>, batch: &SeqBatch) -> Tensor<2> {
        last(self.encode_embedded(items, batch))
    }
}

/// Replaces the collaborative rows of items `1..=N` (LLMInit), keeping
/// padding and special-token rows.
fn set_item_rows(encoder: &mut impl SequenceEncoder, rows: Tensor<2>) {
    let weight = encoder.item_weight_mut();
    let old = weight.val();
    let [v, _] = old.dims();
    let [n, _] = rows.dims();
    let mut parts = vec![old.clone().narrow(0, 0, 1), rows];
    if v > n + 1 {
        parts.push(old.narrow(0, n + 1, v - n - 1));
    }
    // A fresh leaf: the concatenation itself must not be tracked.
    *weight = Param::from_tensor(Tensor::cat(parts, 0).detach());
}

/// `table[items]`.
///
/// # Shapes
/// - `table`: `[V, H]`; `items`: `[B, T]`; output: `[B, T, H]`
fn gather(table: Tensor<2>, items: Tensor<2, Int>) -> Tensor<3> {
    let [b, t] = items.dims();
    let [_, h] = table.dims();
    table.select(0, items.reshape([b * t])).reshape([b, t, h])
}

/// What a model adds to its backbone; `Extras::default()` is the plain
/// backbone.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extras<'a> {
    /// LLMInit: row-major `num_items × hidden` initial collaborative rows
    /// (row `i - 1` = item `i`), e.g. PCA of the item text embeddings.
    pub item_init: Option<&'a [f32]>,
    /// LLM-ESR's semantic view.
    pub dual_view: Option<DualViewSpec<'a>>,
    /// HSU fusion: the kind and the user embedding size.
    pub fusion: Option<(Fusion, usize)>,
    /// An item table from frozen text that replaces the ID table.
    pub text_items: Option<TextItemsSpec<'a>>,
    /// RLMRec's projectors (trained by its objective; scoring unchanged).
    pub rlmrec: Option<RlmrecSpec>,
    /// MELT's two branches (trained by its objective; `W_U` transfers
    /// tail users at inference).
    pub melt: bool,
}

/// The inputs of a [`TextItems`] system.
#[derive(Debug, Clone, Copy)]
pub enum TextItemsSpec<'a> {
    Llm2rec(Llm2recSpec<'a>),
    Llmemb(LlmembSpec<'a>),
}

/// Systems whose item table is made from frozen item text by an adapter and
/// replaces the backbone's ID table everywhere (inputs, targets, negatives,
/// scoring); each lives in its own file. The `match`es on this enum are
/// their registry. (One model per process: the size difference between
/// variants does not matter.)
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum TextItems {
    /// LLM2Rec's downstream stage ([`crate::llm2rec`]).
    Llm2rec(Llm2rec),
    /// LLMEmb's RAT stage ([`crate::llmemb`]).
    Llmemb(Llmemb),
}

impl TextItems {
    fn new(
        spec: &TextItemsSpec<'_>,
        hidden: usize,
        n: usize,
        vocab: usize,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let (text, dim) = match spec {
            TextItemsSpec::Llm2rec(s) => (s.text, s.dim),
            TextItemsSpec::Llmemb(s) => (s.text, s.dim),
        };
        if dim == 0 || text.len() != n * dim {
            return Err(ModelError::Input(format!(
                "item text holds {} values; {n} items × dimension {dim} expected",
                text.len()
            )));
        }
        Ok(match spec {
            TextItemsSpec::Llm2rec(s) => Self::Llm2rec(Llm2rec::new(s, hidden, n, vocab, device)),
            TextItemsSpec::Llmemb(s) => {
                s.cfg.validate()?;
                if let Some(srs) = s.srs
                    && srs.len() != n * hidden
                {
                    return Err(ModelError::Input(format!(
                        "the pretrained item table holds {} values; {n} items × hidden {hidden} \
                         expected",
                        srs.len()
                    )));
                }
                Self::Llmemb(Llmemb::new(s, hidden, n, vocab, device))
            }
        })
    }

    /// The item table of the current weights; only the `used` items
    /// adapted when given.
    ///
    /// # Shapes
    /// - output: `[V, H]`
    fn table(&self, used: Option<Tensor<1, Int>>) -> Tensor<2> {
        match self {
            Self::Llm2rec(m) => m.table(used),
            Self::Llmemb(m) => m.table(used),
        }
    }

    /// The system's own training loss beside the ranking loss, if any.
    fn extra_loss(&self, table: &Tensor<2>, batch: &TrainBatch) -> Option<Tensor<1>> {
        match self {
            Self::Llm2rec(_) => None,
            Self::Llmemb(m) => Some(m.align_loss(table, batch.targets.clone())),
        }
    }
}

/// Item tables computed once per step (training) or per pass (evaluation),
/// so the adapter never runs per position or per batch of users.
#[derive(Debug, Clone)]
pub struct Tables {
    /// `[V, H]` the collaborative (backbone) table.
    collaborative: Tensor<2>,
    /// `[V, H]` the adapted semantic table (dual view only).
    semantic: Option<Tensor<2>>,
    /// `[V, D]` the table that scores representations (`D = 2H` with the
    /// dual view: `[e_co; e_se]`).
    pub scoring: Tensor<2>,
}

/// A sequential recommender: encoder (+ dual view, + fusion) + loss. Build
/// it on `device.autodiff()` to train, and call [`Module::valid`] for a
/// plain copy to evaluate.
#[derive(Module, Debug)]
pub struct Recommender {
    pub encoder: Encoder,
    pub dual: Option<DualView>,
    pub fusion: Option<FusionLayer>,
    /// LLM2Rec's or LLMEmb's item table, replacing the encoder's.
    pub text_items: Option<TextItems>,
    /// RLMRec's semantic → collaborative projectors ([`crate::rlmrec`]):
    /// read by its training objective only, never by scoring.
    pub rlmrec: Option<Rlmrec>,
    /// MELT's user and item branches ([`crate::melt`]): trained by its
    /// objective; at inference `W_U` transfers the tail users'
    /// representations ([`Model::represent_last`]).
    pub melt: Option<Melt>,
    #[module(skip)]
    loss: Loss,
    num_items: usize,
}

impl Recommender {
    /// Builds a freshly initialised plain backbone for a catalogue of
    /// `num_items` items (ids `1..=num_items`). Seed the device first for
    /// reproducible initialisation.
    pub fn new(cfg: &ModelConfig, num_items: u32, device: &Device) -> Result<Self, ModelError> {
        Self::with_extras(cfg, num_items, &Extras::default(), device)
    }

    /// Builds a backbone with the given [`Extras`], checking their shapes.
    pub fn with_extras(
        cfg: &ModelConfig,
        num_items: u32,
        extras: &Extras<'_>,
        device: &Device,
    ) -> Result<Self, ModelError> {
        cfg.validate()?;
        if num_items == 0 {
            return Err(ModelError::Input("the catalogue has no items".into()));
        }
        let n = num_items as usize;
        if extras.text_items.is_some() && (extras.item_init.is_some() || extras.dual_view.is_some())
        {
            return Err(ModelError::Input(
                "an item table from text (LLM2Rec, LLMEmb) replaces the ID table: it takes \
                 neither LLMInit rows nor the dual view"
                    .into(),
            ));
        }
        let mut encoder = cfg.backbone.encoder(cfg, num_items, device);
        if let Some(rows) = extras.item_init {
            if rows.len() != n * cfg.hidden {
                return Err(ModelError::Input(format!(
                    "initial item rows hold {} values; {n} items × hidden {} expected",
                    rows.len(),
                    cfg.hidden
                )));
            }
            let t = Tensor::from_data(TensorData::new(rows.to_vec(), [n, cfg.hidden]), device);
            set_item_rows(&mut encoder, t);
        }
        let vocab = encoder.item_table().dims()[0];
        let dual = match extras.dual_view {
            Some(spec) => {
                if spec.dim == 0 || spec.text.len() != n * spec.dim {
                    return Err(ModelError::Input(format!(
                        "item text holds {} values; {n} items × dimension {} expected",
                        spec.text.len(),
                        spec.dim
                    )));
                }
                Some(DualView::new(cfg, &spec, n, vocab, device))
            }
            None => None,
        };
        let d_rep = if dual.is_some() {
            2 * cfg.hidden
        } else {
            cfg.hidden
        };
        let fusion = match extras.fusion {
            None | Some((Fusion::None, _)) => None,
            Some((_, 0)) => {
                return Err(ModelError::Input(
                    "fusion needs user embeddings of dimension at least 1".into(),
                ));
            }
            Some((kind, d_sem)) => Some(FusionLayer::new(
                kind,
                d_sem,
                d_rep,
                cfg.layer_norm_eps,
                device,
            )),
        };
        let text_items = match &extras.text_items {
            Some(spec) => Some(TextItems::new(spec, cfg.hidden, n, vocab, device)?),
            None => None,
        };
        let rlmrec = match &extras.rlmrec {
            Some(spec) => Some(Rlmrec::new(spec, d_rep, device)?),
            None => None,
        };
        if extras.melt
            && (dual.is_some() || fusion.is_some() || text_items.is_some() || rlmrec.is_some())
        {
            return Err(ModelError::Input(
                "MELT's branches read the plain backbone's representation: it takes no dual \
                 view, fusion, item table from text or RLMRec"
                    .into(),
            ));
        }
        let melt = extras.melt.then(|| Melt::new(cfg.hidden, device));
        Ok(Self {
            encoder,
            dual,
            fusion,
            text_items,
            rlmrec,
            melt,
            loss: cfg.loss,
            num_items: n,
        })
    }

    /// Whether the representation needs [`SeqBatch::user_semantic`].
    pub fn fuses_users(&self) -> bool {
        self.fusion.is_some()
    }

    /// [`Self::tables`], adapting only the `used` item ids when given.
    fn tables_for(&self, used: Option<Tensor<1, Int>>) -> Tables {
        let (collaborative, used) = match &self.text_items {
            Some(t) => (t.table(used), None),
            None => (self.encoder.item_table(), used),
        };
        let semantic = self.dual.as_ref().map(|d| d.table_rows(used));
        let scoring = match &semantic {
            Some(se) => Tensor::cat(vec![collaborative.clone(), se.clone()], 1),
            None => collaborative.clone(),
        };
        Tables {
            collaborative,
            semantic,
            scoring,
        }
    }

    /// Per-position representations.
    ///
    /// # Shapes
    /// - output: `[B, T, D]` (`D = 2H` with the dual view)
    ///
    /// # Panics
    /// With fusion, when `batch.user_semantic` is not set.
    pub fn represent(&self, tables: &Tables, batch: &SeqBatch) -> Tensor<3> {
        let h = match (&self.dual, &tables.semantic) {
            (Some(dual), Some(se_table)) => {
                let b = batch.batch;
                let x = stacked_views(tables, se_table, batch);
                let both = self.encoder.encode_embedded(x, &batch.doubled());
                let co = both.clone().narrow(0, 0, b);
                let se = both.narrow(0, b, b);
                dual.fuse(co, se, batch)
            }
            _ if self.text_items.is_some() => self.encoder.encode_embedded(
                gather(tables.collaborative.clone(), batch.items.clone()),
                batch,
            ),
            _ => self.encoder.encode(batch),
        };
        match &self.fusion {
            Some(f) => f.forward(
                h,
                batch
                    .user_semantic
                    .clone()
                    .expect("a fusing model needs SeqBatch::user_semantic"),
            ),
            None => h,
        }
    }

    /// The distinct item ids (`1..=N`) a BCE/BPR step reads: inputs,
    /// targets and negatives.
    fn used_items(&self, batch: &TrainBatch) -> Tensor<1, Int> {
        let host = |t: Tensor<1, Int>| -> Vec<i64> {
            t.into_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .expect("int tensor converts to i64")
        };
        let [b, t] = batch.input.items.dims();
        let mut ids = host(batch.input.items.clone().reshape([b * t]));
        ids.extend(host(batch.targets.clone()));
        ids.extend(host(batch.negatives.clone()));
        let n = self.num_items as i64;
        ids.retain(|&i| (1..=n).contains(&i));
        ids.sort_unstable();
        ids.dedup();
        let m = ids.len();
        Tensor::from_data(TensorData::new(ids, [m]), &batch.targets.device())
    }

    /// Candidate ids as a device tensor.
    pub fn candidate_tensor(rows: &[Vec<u32>], device: &Device) -> Tensor<2, Int> {
        let b = rows.len();
        let c = rows.first().map_or(0, |r| r.len());
        let flat: Vec<i64> = rows
            .iter()
            .flat_map(|r| r.iter().map(|&i| i as i64))
            .collect();
        Tensor::from_data(TensorData::new(flat, [b, c]), device)
    }
}

impl Model for Recommender {
    type Tables = Tables;

    fn num_items(&self) -> usize {
        self.num_items
    }

    /// The item tables of the current weights (the adapter runs here, once).
    fn tables(&self) -> Tables {
        self.tables_for(None)
    }

    /// The representation that predicts the next item (the last position;
    /// batches are left-padded).
    ///
    /// # Shapes
    /// - output: `[B, D]`
    fn represent_last(&self, tables: &Tables, batch: &SeqBatch) -> Tensor<2> {
        let h = match (&self.dual, &tables.semantic) {
            // Cross-attention reads the other view at every position.
            (Some(dual), Some(_)) if dual.cross_attends() => {
                return last(self.represent(tables, batch));
            }
            (Some(_), Some(se_table)) => {
                let b = batch.batch;
                let x = stacked_views(tables, se_table, batch);
                let both = self.encoder.encode_embedded_last(x, &batch.doubled()); // [2B, H]
                Tensor::cat(vec![both.clone().narrow(0, 0, b), both.narrow(0, b, b)], 1)
            }
            _ if self.text_items.is_some() => self.encoder.encode_embedded_last(
                gather(tables.collaborative.clone(), batch.items.clone()),
                batch,
            ),
            _ => self.encoder.encode_last(batch),
        };
        match &self.fusion {
            Some(f) => {
                let [b, d] = h.dims();
                let s = batch
                    .user_semantic
                    .clone()
                    .expect("a fusing model needs SeqBatch::user_semantic");
                f.forward(h.reshape([b, 1, d]), s).reshape([b, d])
            }
            // MELT: the tail users' transfer, by each row's flag when the
            // caller attached one (the user's training length), else by
            // the history's length (see `crate::melt`).
            None => match &self.melt {
                Some(m) => {
                    let tail = match &batch.user_semantic {
                        Some(flags) => flags.clone(),
                        None => m.tail_by_length(batch.items.clone(), self.num_items),
                    };
                    m.transfer(h, tail)
                }
                None => h,
            },
        }
    }

    /// One training forward: the ranking loss (`[1]`) and each row's
    /// last-position representation (`[B, D]`, the self-distillation
    /// student), from one encoding and one adapted table.
    fn train_forward(&self, batch: &TrainBatch) -> (Tensor<1>, Tensor<2>) {
        // CE scores the whole catalogue; BCE/BPR read only the step's items.
        let adapts = self.dual.is_some() || self.text_items.is_some();
        let used = (adapts && self.loss != Loss::Ce).then(|| self.used_items(batch));
        let tables = self.tables_for(used);
        let extra = self
            .text_items
            .as_ref()
            .and_then(|t| t.extra_loss(&tables.collaborative, batch));
        let h = self.represent(&tables, &batch.input);
        let [b, t, d] = h.dims();
        let student = last(h.clone());
        let hs = h.reshape([b * t, d]).select(0, batch.rows.clone()); // [M, D]
        let table = tables.scoring;
        let loss = match self.loss {
            Loss::Bce | Loss::Bpr => {
                let pos = (hs.clone() * table.clone().select(0, batch.targets.clone())).sum_dim(1); // [M, 1]
                let neg = (hs * table.select(0, batch.negatives.clone())).sum_dim(1);
                match self.loss {
                    Loss::Bce => (log_sigmoid(pos).mean() + log_sigmoid(neg.neg()).mean()).neg(),
                    _ => log_sigmoid(pos - neg).mean().neg(),
                }
            }
            Loss::Ce => {
                let items = table.narrow(0, 1, self.num_items); // [N, D]
                let logp = log_softmax(hs.matmul(items.transpose()), 1); // [M, N]
                let idx = batch.targets.clone().sub_scalar(1).unsqueeze_dim::<2>(1); // [M, 1]
                logp.gather(1, idx).mean().neg()
            }
        };
        let loss = match extra {
            Some(e) => loss + e,
            None => loss,
        };
        (loss, student)
    }

    /// Scores candidates against representations already computed.
    ///
    /// # Shapes
    /// - `reps`: `[B, D]`; `candidates`: `[B, C]`; output: `[B, C]`
    fn score_reps(
        &self,
        tables: &Tables,
        reps: Tensor<2>,
        candidates: Tensor<2, Int>,
    ) -> Tensor<2> {
        let [b, d] = reps.dims();
        let e = gather(tables.scoring.clone(), candidates); // [B, C, D]
        let [_, c, _] = e.dims();
        // One product-and-sum, not B tiny [C×D]·[D×1] matrix products.
        (e * reps.reshape([b, 1, d])).sum_dim(2).reshape([b, c])
    }

    fn score_all_reps(&self, tables: &Tables, reps: Tensor<2>) -> Tensor<2> {
        let items = tables.scoring.clone().narrow(0, 1, self.num_items);
        reps.matmul(items.transpose())
    }

    fn dim(&self, tables: &Tables) -> usize {
        tables.scoring.dims()[1]
    }
}

/// Both views' item vectors stacked on the batch axis, so the shared
/// backbone encodes them in one pass.
///
/// # Shapes
/// - output: `[2B, T, H]` (collaborative rows first)
fn stacked_views(tables: &Tables, se_table: &Tensor<2>, batch: &SeqBatch) -> Tensor<3> {
    Tensor::cat(
        vec![
            gather(tables.collaborative.clone(), batch.items.clone()),
            gather(se_table.clone(), batch.items.clone()),
        ],
        0,
    )
}

/// The last position of `[B, T, D]` as `[B, D]`.
fn last(h: Tensor<3>) -> Tensor<2> {
    let [b, t, d] = h.dims();
    h.narrow(1, t - 1, 1).reshape([b, d])
}
