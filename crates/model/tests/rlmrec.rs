//! RLMRec-Con's mechanism on tiny hand-checkable inputs: the official
//! InfoNCE (normalised rows, temperature, denominator over the given set),
//! the user term's denominator over all users (a user outside the batch
//! changes the loss; with `user_denominator = "batch"` it does not), and
//! scoring left exactly as the backbone's.

use hsuga_model::burn::module::{Module, ModuleVisitor, Param};
use hsuga_model::burn::tensor::{Int, Tensor, TensorData};
use hsuga_model::rlmrec::{ItemRows, KdInputs, info_nce};
use hsuga_model::{
    Backbone, Batcher, Extras, Loss, Model, ModelConfig, Recommender, RlmrecConfig, RlmrecSpec,
    UserDenominator, cpu, to_f32,
};

fn t2(rows: &[&[f32]]) -> Tensor<2> {
    let d = rows[0].len();
    let data: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_data(TensorData::new(data, [rows.len(), d]), &cpu())
}

fn scalar(t: Tensor<1>) -> f64 {
    to_f32(t)[0] as f64
}

/// 2×2: a = I, b = [(1,0), (1,1)], All = b, τ = 0.5. By hand:
/// row 1: −2 + log(e² + e^√2); row 2: −√2 + log(1 + e^√2) = 0.66017.
#[test]
fn info_nce_matches_the_hand_computed_2x2_case() {
    let a = t2(&[&[1.0, 0.0], &[0.0, 1.0]]);
    let b = t2(&[&[1.0, 0.0], &[1.0, 1.0]]);
    let got = scalar(info_nce(a, b.clone(), b, 0.5));
    assert!((got - 0.660_169_300_120_264_2).abs() < 1e-5, "{got}");
}

/// 3-row denominator that is not `b`: a = diag(3, 2) (normalised to I),
/// b = I, All = [(1,0), (0,1), (−1,0)], τ = 1. By hand:
/// (−1 + log(e + 1 + 1/e)) + (−1 + log(2 + e)) = 0.95905.
#[test]
fn info_nce_normalises_and_sums_over_the_given_denominator() {
    let a = t2(&[&[3.0, 0.0], &[0.0, 2.0]]);
    let b = t2(&[&[1.0, 0.0], &[0.0, 1.0]]);
    let all = t2(&[&[1.0, 0.0], &[0.0, 1.0], &[-1.0, 0.0]]);
    let got = scalar(info_nce(a, b, all, 1.0));
    assert!((got - 0.959_050_678_376_431_2).abs() < 1e-5, "{got}");
}

const H: usize = 8;
const N: usize = 7;

fn cfg(backbone: Backbone) -> ModelConfig {
    ModelConfig {
        loss: Loss::Bce,
        hidden: H,
        max_len: 5,
        dropout: 0.0,
        ..ModelConfig::from(backbone)
    }
}

struct Materialize;
impl ModuleVisitor for Materialize {
    fn visit_float<const K: usize>(&mut self, param: &Param<Tensor<K>>) {
        param.val();
    }
}

fn rlmrec_model(backbone: Backbone) -> Recommender {
    let extras = Extras {
        rlmrec: Some(RlmrecSpec {
            user_dim: 3,
            item_dim: 4,
        }),
        ..Extras::default()
    };
    let m = Recommender::with_extras(&cfg(backbone), N as u32, &extras, &cpu()).unwrap();
    m.visit(&mut Materialize);
    m
}

/// `L_kd` of a fixed batch of users 0 and 1, with `users` as the user
/// semantic matrix (4 users).
fn kd(m: &Recommender, denominator: UserDenominator, users: &[&[f32]]) -> f64 {
    let rl = m.rlmrec.as_ref().unwrap();
    let cfg = RlmrecConfig {
        user_denominator: denominator,
        ..RlmrecConfig::default()
    };
    let h = t2(&[&[0.3; H], &[-0.2; H]]);
    let idx = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1], [2]), &cpu());
    let x = KdInputs {
        user_semantic: t2(users),
        users: idx,
        items: Some(ItemRows {
            e_pos: t2(&[&[0.1; H], &[0.4; H]]),
            e_neg: t2(&[&[-0.1; H], &[0.2; H]]),
            z_pos: t2(&[&[1.0, 0.0, 0.5, 0.0], &[0.0, 1.0, 0.0, 0.5]]),
            z_neg: t2(&[&[0.0, 0.0, 1.0, 0.0], &[0.5, 0.5, 0.0, 1.0]]),
        }),
    };
    scalar(rl.kd_loss(&cfg, h, x))
}

/// The official user term's denominator runs over every user's projected
/// vector: changing the semantic vector of user 3, who is not in the batch,
/// changes the loss. Over the batch only, it must not.
#[test]
fn user_denominator_spans_all_users() {
    let m = rlmrec_model(Backbone::Sasrec);
    let before: [&[f32]; 4] = [
        &[1.0, 0.0, 0.0],
        &[0.0, 1.0, 0.0],
        &[0.0, 0.0, 1.0],
        &[1.0, 1.0, 0.0],
    ];
    let after: [&[f32]; 4] = [
        &[1.0, 0.0, 0.0],
        &[0.0, 1.0, 0.0],
        &[0.0, 0.0, 1.0],
        &[-3.0, 2.0, 5.0],
    ];
    let (a, b) = (
        kd(&m, UserDenominator::All, &before),
        kd(&m, UserDenominator::All, &after),
    );
    assert!((a - b).abs() > 1e-7, "all users: {a} vs {b}");
    let (a, b) = (
        kd(&m, UserDenominator::Batch, &before),
        kd(&m, UserDenominator::Batch, &after),
    );
    assert!((a - b).abs() < 1e-9, "batch users: {a} vs {b}");
}

/// Inference is the backbone's: RLMRec's model, given the plain backbone's
/// encoder weights, scores every candidate exactly as the backbone does.
#[test]
fn scores_equal_the_plain_backbones_with_the_same_encoder() {
    for backbone in [Backbone::Sasrec, Backbone::Bert4rec, Backbone::Gru4rec] {
        let c = cfg(backbone);
        let plain = Recommender::new(&c, N as u32, &cpu()).unwrap();
        plain.visit(&mut Materialize);
        let mut rl = rlmrec_model(backbone);
        rl.encoder = plain.encoder.clone();
        let b = Batcher::new(&c, N as u32, &cpu());
        let hist: [&[u32]; 2] = [&[1, 2, 3], &[4, 5, 6, 7, 1]];
        let batch = b.eval_batch(&hist);
        let cand = Recommender::candidate_tensor(&[vec![1, 2, 3, 4], vec![5, 6, 7, 1]], &cpu());
        let p = to_f32(plain.score_candidates(&batch, cand.clone()));
        let r = to_f32(rl.score_candidates(&batch, cand));
        assert_eq!(p, r, "{backbone:?}");
        assert_eq!(
            to_f32(plain.score_all(&batch)),
            to_f32(rl.score_all(&batch)),
            "{backbone:?}"
        );
    }
}
