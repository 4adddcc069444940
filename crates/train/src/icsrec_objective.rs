//! ICSRec's intent contrast as a training [`Objective`] (the mechanism is in
//! [`hsuga_model::icsrec`]; the rec loss is the backbone's own full-softmax
//! CE): the prefix samples and their same-target index are built once per
//! run from the training split; every epoch clusters a seeded sample of
//! training prefixes, encoded in eval mode with the epoch's starting
//! weights; each step draws contrastive anchors from the batch users'
//! prefixes and their same-target positives, encodes both views with the
//! model being trained (each row fused with its own user's semantic
//! vector when the model fuses) and adds `λ L_CICL + β L_FICL`.
//!
//! The clustering runs at the epoch's first step rather than in
//! [`Objective::start_epoch`], because encoding needs a batcher and, with
//! fusion, the users' vectors, which only [`Step`] carries; no optimiser
//! step has happened in the epoch by then, so the weights are the epoch's
//! starting ones — those of the plain copy `start_epoch` keeps — and the
//! draws come from the epoch's own stream either way, so a resumed run
//! clusters as the uninterrupted one does.

use hsuga_data::Split;
use hsuga_model::burn::tensor::Tensor;
use hsuga_model::icsrec::{KMeans, Sample, Samples, info_nce_fnm};
use hsuga_model::{IcsrecConfig, Model, Recommender, SeqBatch, to_f32};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::TrainError;
use crate::objective::{EpochStart, Objective, Step};
use crate::scoring::attach_users;

/// Rows per forward of the clustering pass.
const CLUSTER_BATCH: usize = 512;

/// ICSRec's run state.
pub struct IcsrecObjective {
    cfg: IcsrecConfig,
    samples: Samples,
    /// This epoch's stream for anchors and positives.
    rng: ChaCha8Rng,
    /// Set by `start_epoch`: the epoch's starting weights (plain), the
    /// samples to cluster and the k-means seed, consumed by the epoch's
    /// first step. The k-means has its own stream, so that how many draws
    /// it takes (empty-cluster splits depend on the data) never moves the
    /// anchors and positives.
    pending: Option<(Recommender, Vec<Sample>, u64)>,
    /// This epoch's intents.
    kmeans: Option<KMeans>,
    /// The last step's views: anchors, then their positives (for tests).
    views: Vec<Sample>,
}

impl IcsrecObjective {
    /// Indexes every training prefix; more intents than training samples is
    /// an error naming `method.icsrec.intents`, raised before any training.
    pub fn new(cfg: &IcsrecConfig, split: &Split) -> Result<Self, TrainError> {
        cfg.validate()?;
        let samples = Samples::new(&split.train);
        if cfg.intents > samples.len() {
            return Err(TrainError::Config(format!(
                "method.icsrec.intents = {} exceeds the {} training samples (prefixes) of \
                 this dataset: k-means needs at least one sample per intent; lower \
                 method.icsrec.intents",
                cfg.intents,
                samples.len()
            )));
        }
        tracing::info!(samples = samples.len(), "ICSRec training prefixes");
        Ok(Self {
            cfg: cfg.clone(),
            samples,
            rng: ChaCha8Rng::seed_from_u64(0),
            pending: None,
            kmeans: None,
            views: Vec::new(),
        })
    }

    /// The training samples and their same-target index.
    pub fn samples(&self) -> &Samples {
        &self.samples
    }

    /// This epoch's intents, once its first step has run.
    pub fn kmeans(&self) -> Option<&KMeans> {
        self.kmeans.as_ref()
    }

    /// The last step's contrastive samples: its anchors, then their
    /// positives.
    pub fn last_views(&self) -> &[Sample] {
        &self.views
    }

    /// Encodes the pending samples with the epoch's starting weights (eval
    /// mode) and clusters them.
    fn cluster(&mut self, step: &Step<'_>) {
        let Some((plain, mut points, seed)) = self.pending.take() else {
            return;
        };
        // By prefix length: batches pad little.
        points.sort_by_key(|&(u, t)| (t.min(step.batcher.max_len()), u));
        let tables = plain.tables();
        let mut reps: Vec<f32> = Vec::new();
        let mut dim = 0;
        for chunk in points.chunks(CLUSTER_BATCH) {
            let hist: Vec<&[u32]> = chunk
                .iter()
                .map(|&(u, t)| &step.split.train[u][..t])
                .collect();
            let users: Vec<usize> = chunk.iter().map(|&(u, _)| u).collect();
            let mut batch = step.batcher.eval_batch(&hist);
            attach_users(&mut batch, step.user_semantic, &users);
            let h = plain.represent_last(&tables, &without_autodiff(batch));
            dim = h.dims()[1];
            reps.extend(to_f32(h));
        }
        let device = step.student.device().inner();
        self.kmeans = Some(KMeans::train(
            &reps,
            dim,
            self.cfg.intents,
            self.cfg.kmeans_iters,
            &mut ChaCha8Rng::seed_from_u64(seed),
            &device,
        ));
    }
}

/// The batch on the plain device (the clustering pass runs the plain
/// copy; its dropout is off there).
fn without_autodiff(b: SeqBatch) -> SeqBatch {
    SeqBatch {
        items: b.items.without_autodiff(),
        positions: b.positions.without_autodiff(),
        keep: b.keep.without_autodiff(),
        attn_bias: b.attn_bias.without_autodiff(),
        user_semantic: b.user_semantic.map(Tensor::without_autodiff),
        ..b
    }
}

impl Objective for IcsrecObjective {
    fn start_epoch(&mut self, start: EpochStart<'_>) {
        self.rng = ChaCha8Rng::seed_from_u64(start.rng.random());
        let kmeans_seed = start.rng.random();
        let n = self.samples.len();
        let m = self.cfg.cluster_points.min(n);
        let points = rand::seq::index::sample(start.rng, n, m)
            .into_iter()
            .map(|i| self.samples.at(i))
            .collect();
        self.pending = Some((start.model.clone(), points, kmeans_seed));
        self.kmeans = None;
    }

    fn loss(&mut self, step: &Step<'_>) -> Tensor<1> {
        self.cluster(step);
        let device = step.student.device();
        let train = &step.split.train;
        // Anchors: `samples_per_user` uniform training positions of each
        // batch user with a sample; positives: same-target samples.
        let mut anchors: Vec<Sample> = Vec::new();
        let mut targets: Vec<u32> = Vec::new();
        for &u in step.users {
            let len = train[u].len();
            if len < 2 {
                continue;
            }
            for _ in 0..self.cfg.samples_per_user {
                let t = self.rng.random_range(1..len);
                anchors.push((u, t));
                targets.push(train[u][t]);
            }
        }
        let b = anchors.len();
        if b == 0 {
            return Tensor::zeros([1], &device);
        }
        let positives: Vec<Sample> = anchors
            .iter()
            .zip(&targets)
            .map(|(&a, &y)| self.samples.positive(a, y, &mut self.rng))
            .collect();
        // One forward of 2B rows, each fused with its own user's vector.
        let views: Vec<Sample> = anchors.iter().chain(&positives).copied().collect();
        let hist: Vec<&[u32]> = views.iter().map(|&(u, t)| &train[u][..t]).collect();
        let users: Vec<usize> = views.iter().map(|&(u, _)| u).collect();
        self.views = views.clone();
        let mut batch = step.batcher.eval_batch(&hist);
        attach_users(&mut batch, step.user_semantic, &users);
        let tables = step.model.tables();
        let z = step.model.represent_last(&tables, &batch); // [2B, D]
        let (z1, z2) = (z.clone().narrow(0, 0, b), z.narrow(0, b, b));
        let t = self.cfg.temperature;
        let cicl = info_nce_fnm(z1.clone(), z2.clone(), &targets, t);
        let km = self
            .kmeans
            .as_ref()
            .expect("start_epoch ran before the first step");
        let plain = device.clone().inner();
        let ficl = [z1, z2]
            .into_iter()
            .map(|zv| {
                let ids = km.assign(&to_f32(zv.clone().detach()), &plain);
                let c = km.normalised_rows(&ids, &plain);
                let c = Tensor::from_data(c.into_data(), &device);
                let labels: Vec<u32> = ids.iter().map(|&j| j as u32).collect();
                info_nce_fnm(zv, c, &labels, t)
            })
            .reduce(|a, b| a + b)
            .expect("two views");
        cicl.mul_scalar(self.cfg.lambda) + ficl.mul_scalar(self.cfg.beta)
    }
}
