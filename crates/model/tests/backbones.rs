//! Shape, masking and learning checks for every backbone on toy data.

use hsuga_model::burn::module::Module;
use hsuga_model::burn::optim::{AdamConfig, GradientsParams};
use hsuga_model::{
    Backbone, BackboneConfig, Batcher, DualViewSpec, Extras, Fusion, Loss, Model, ModelConfig,
    Recommender, SasrecConfig, SequenceEncoder, cpu,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn cfg(backbone: Backbone, loss: Loss) -> ModelConfig {
    ModelConfig {
        loss,
        hidden: 16,
        max_len: 12,
        dropout: 0.1,
        ..ModelConfig::from(backbone)
    }
}

fn scores(model: &Recommender, b: &Batcher, hist: &[&[u32]], items: &[u32]) -> Vec<f32> {
    let batch = b.eval_batch(hist);
    let rows: Vec<Vec<u32>> = hist.iter().map(|_| items.to_vec()).collect();
    let cand = Recommender::candidate_tensor(&rows, &b.device);
    hsuga_model::to_f32(model.score_candidates(&batch, cand))
}

/// Every backbone, plain and with LLM-ESR's dual view (both views run
/// through the one backbone) and HSU fusion.
fn every_model(text: &[f32]) -> Vec<(String, ModelConfig, Extras<'_>)> {
    let mut out = Vec::new();
    for backbone in [Backbone::Sasrec, Backbone::Bert4rec, Backbone::Gru4rec] {
        for (name, extras) in [
            ("plain", Extras::default()),
            (
                "dual",
                Extras {
                    dual_view: Some(DualViewSpec {
                        text,
                        dim: 8,
                        cross_attention: false,
                    }),
                    ..Extras::default()
                },
            ),
            (
                "dual+cross+gate",
                Extras {
                    dual_view: Some(DualViewSpec {
                        text,
                        dim: 8,
                        cross_attention: true,
                    }),
                    fusion: Some((Fusion::Gate, 4)),
                    ..Extras::default()
                },
            ),
        ] {
            out.push((
                format!("{backbone:?}/{name}"),
                cfg(backbone, Loss::Bce),
                extras,
            ));
        }
    }
    out
}

/// A fixed item-text table for the dual view (`[30, 8]`).
fn toy_text() -> Vec<f32> {
    (0..30 * 8)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0)
        .collect()
}

/// A fixed user-semantic vector per user id (`[4]`), for fusion.
fn user_vec(u: usize) -> Vec<f32> {
    (0..4).map(|k| ((u * 4 + k) as f32 * 0.3).sin()).collect()
}

/// Candidate scores of `users` (ids into `hists`) scored together in one
/// evaluation batch.
fn scores_of(
    m: &Recommender,
    b: &Batcher,
    hists: &[Vec<u32>],
    users: &[usize],
    items: &[u32],
) -> Vec<f32> {
    use hsuga_model::burn::tensor::{Tensor, TensorData};
    let hist: Vec<&[u32]> = users.iter().map(|&u| hists[u].as_slice()).collect();
    let mut batch = b.eval_batch(&hist);
    let sem: Vec<f32> = users.iter().flat_map(|&u| user_vec(u)).collect();
    batch.user_semantic = Some(Tensor::from_data(
        TensorData::new(sem, [users.len(), 4]),
        &b.device,
    ));
    let rows: Vec<Vec<u32>> = users.iter().map(|_| items.to_vec()).collect();
    let cand = Recommender::candidate_tensor(&rows, &b.device);
    hsuga_model::to_f32(m.score_candidates(&batch, cand))
}

/// Regression (GRU4Rec read left padding as zero inputs, so its scores
/// depended on the longest history in the batch): a short history scored
/// alone and beside a long one gets the same scores, for every backbone.
#[test]
fn padding_does_not_change_a_users_scores() {
    let text = toy_text();
    for (name, c, extras) in every_model(&text) {
        let dev = cpu();
        dev.seed(1);
        let m = Recommender::with_extras(&c, 30, &extras, &dev)
            .unwrap()
            .valid();
        let b = Batcher::new(&c, 30, &dev);
        let hists = vec![vec![3, 4], vec![1, 2, 3, 4, 5, 6, 7, 8, 9]];
        let alone = scores_of(&m, &b, &hists, &[0], &[5, 6, 7]);
        let together = scores_of(&m, &b, &hists, &[0, 1], &[5, 6, 7]);
        for (a, t) in alone.iter().zip(&together[..3]) {
            assert!((a - t).abs() < 1e-4, "{name}: {alone:?} vs {together:?}");
        }
    }
}

/// Regression (GRU4Rec read left padding as zero inputs): a left-padded
/// row's GRU4Rec states at its real positions are the unpadded row's states,
/// and the padded positions carry the zero initial state.
#[test]
fn gru4rec_left_padding_leaves_real_positions_unchanged() {
    let dev = cpu();
    dev.seed(4);
    let c = cfg(Backbone::Gru4rec, Loss::Bce);
    let m = Recommender::new(&c, 30, &dev).unwrap().valid();
    let b = Batcher::new(&c, 30, &dev);
    let short: &[u32] = &[3, 4, 8];
    let long: &[u32] = &[1, 2, 3, 4, 5, 6, 7];
    let alone = hsuga_model::to_f32(m.encoder.encode(&b.seq_batch(&[short]))); // [1, 3, 16]
    let padded = m.encoder.encode(&b.seq_batch(&[short, long])); // [2, 7, 16]
    let row = hsuga_model::to_f32(padded.narrow(0, 0, 1)); // [1, 7, 16]
    let (pad, real) = row.split_at(4 * 16);
    assert!(pad.iter().all(|&x| x == 0.0), "padding states {pad:?}");
    let worst = alone
        .iter()
        .zip(real)
        .map(|(a, p)| (a - p).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-5, "real positions moved by {worst}");
}

/// A user's scores do not depend on the evaluation batch size: each of 256
/// users of lengths 1 to 20 (`max_len` 12, so some are truncated) scored
/// alone equals the same user scored in one batch of all 256, for every
/// backbone, plain and with the dual view and fusion.
#[test]
fn a_users_scores_are_the_same_at_eval_batch_sizes_1_and_256() {
    let text = toy_text();
    let hists: Vec<Vec<u32>> = (0..256usize)
        .map(|u| {
            let len = 1 + (u * 7) % 20;
            (0..len)
                .map(|k| ((u * 5 + k * 3) % 30 + 1) as u32)
                .collect()
        })
        .collect();
    let items = [1u32, 5, 12, 29, 30];
    let all: Vec<usize> = (0..hists.len()).collect();
    for (name, c, extras) in every_model(&text) {
        let dev = cpu();
        dev.seed(6);
        let m = Recommender::with_extras(&c, 30, &extras, &dev)
            .unwrap()
            .valid();
        let b = Batcher::new(&c, 30, &dev);
        let together = scores_of(&m, &b, &hists, &all, &items);
        let mut worst = (0f32, 0usize);
        for u in all.iter().copied() {
            let alone = scores_of(&m, &b, &hists, &[u], &items);
            let k = items.len();
            for (a, t) in alone.iter().zip(&together[u * k..(u + 1) * k]) {
                let d = (a - t).abs() / (1.0 + a.abs());
                if d > worst.0 {
                    worst = (d, u);
                }
            }
        }
        assert!(
            worst.0 < 1e-4,
            "{name}: user {} (length {}) differs by {}",
            worst.1,
            hists[worst.1].len(),
            worst.0
        );
    }
}

#[test]
fn causal_sasrec_does_not_look_ahead() {
    let dev = cpu();
    dev.seed(2);
    let c = cfg(Backbone::Sasrec, Loss::Bce);
    let m = Recommender::new(&c, 30, &dev).unwrap().valid();
    let b = Batcher::new(&c, 30, &dev);
    let h1 = m.encoder.encode(&b.seq_batch(&[&[1, 2, 3, 4]]));
    let h2 = m.encoder.encode(&b.seq_batch(&[&[1, 2, 3, 9]]));
    let first = |h: hsuga_model::burn::tensor::Tensor<3>| -> Vec<f32> {
        hsuga_model::to_f32(h.narrow(1, 0, 3))
    };
    let (a, z) = (first(h1.clone()), first(h2.clone()));
    for (x, y) in a.iter().zip(&z) {
        assert!((x - y).abs() < 1e-5, "earlier positions changed");
    }
    // Without the causal mask they do change.
    let c = ModelConfig {
        backbone: BackboneConfig::Sasrec(SasrecConfig {
            causal: false,
            ..SasrecConfig::default()
        }),
        ..c
    };
    dev.seed(2);
    let m = Recommender::new(&c, 30, &dev).unwrap().valid();
    let b = Batcher::new(&c, 30, &dev);
    let a = first(m.encoder.encode(&b.seq_batch(&[&[1, 2, 3, 4]])));
    let z = first(m.encoder.encode(&b.seq_batch(&[&[1, 2, 3, 9]])));
    assert!(a.iter().zip(&z).any(|(x, y)| (x - y).abs() > 1e-4));
}

/// Each user repeats a short cycle; every backbone/loss must learn to
/// predict the next item far better than chance.
#[test]
fn every_backbone_and_loss_learns_a_cycle() {
    let n = 40u32;
    let seqs: Vec<Vec<u32>> = (0..64u32)
        .map(|u| (0..10u32).map(|k| (u * 7 + k * 3) % n + 1).collect())
        .collect();
    for (backbone, loss) in [
        (Backbone::Sasrec, Loss::Bce),
        (Backbone::Sasrec, Loss::Bpr),
        (Backbone::Sasrec, Loss::Ce),
        (Backbone::Bert4rec, Loss::Bce),
        (Backbone::Gru4rec, Loss::Bce),
    ] {
        let c = cfg(backbone, loss);
        let dev = cpu().autodiff();
        dev.seed(3);
        let mut m = Recommender::new(&c, n, &dev).unwrap();
        let b = Batcher::new(&c, n, &dev);
        let mut opt = AdamConfig::new().init();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        let mut first = None;
        let mut last = 0.0;
        for _ in 0..60 {
            let tb = b.train_batch(&refs, |r, i| seqs[r].contains(&i), &mut rng);
            let loss = m.loss(&tb);
            last = loss.clone().into_scalar::<f32>();
            first.get_or_insert(last);
            let g = GradientsParams::from_grads(loss.backward(), &m);
            m = opt.step(1e-2, m, g);
        }
        let first = first.unwrap();
        assert!(
            last.is_finite() && last < first * 0.7,
            "{backbone:?}/{loss:?}: {first} -> {last}"
        );
        // Next item of the cycle ranks first among all items for most users.
        let plain = m.valid();
        let eb = Batcher::new(&c, n, &plain.encoder.item_table().device());
        let hist: Vec<&[u32]> = seqs.iter().map(|s| &s[..9]).collect();
        let all = hsuga_model::to_f32(plain.score_all(&eb.eval_batch(&hist)));
        let hits = seqs
            .iter()
            .enumerate()
            .filter(|(u, s)| {
                let row = &all[u * n as usize..(u + 1) * n as usize];
                let t = row[s[9] as usize - 1];
                // Ranked among items the user has not seen (the protocol).
                (1..=n)
                    .filter(|i| !s[..9].contains(i) && row[*i as usize - 1] > t)
                    .count()
                    < 3
            })
            .count();
        assert!(
            hits > 40,
            "{backbone:?}/{loss:?}: only {hits}/64 users hit@3"
        );
    }
}

#[test]
fn bad_configs_are_rejected() {
    let dev = cpu();
    let e = Recommender::new(
        &ModelConfig {
            max_len: 0,
            ..ModelConfig::default()
        },
        10,
        &dev,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("max_len"), "{e}");
    let e = Recommender::new(
        &ModelConfig {
            heads: 3,
            ..ModelConfig::default()
        },
        10,
        &dev,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("heads"), "{e}");
}

/// Scoring and the teacher read only the last position, which the models
/// compute on a shortcut (one query in the final block); it must equal the
/// last position of the full encoding for every backbone and extra.
#[test]
fn last_position_shortcut_equals_the_full_encoding() {
    use hsuga_model::burn::tensor::{Tensor, TensorData};
    let dev = cpu();
    let text: Vec<f32> = (0..30 * 8)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0)
        .collect();
    let histories: [&[u32]; 3] = [&[3, 4], &[1, 2, 3, 4, 5, 6, 7, 8, 9], &[7]];
    for backbone in [Backbone::Sasrec, Backbone::Bert4rec, Backbone::Gru4rec] {
        for (heads, causal) in [(1, true), (2, false)] {
            for (dual, cross, fusion) in [
                (false, false, None),
                (true, false, None),
                (true, true, None),
                (false, false, Some(Fusion::Gate)),
                (true, false, Some(Fusion::Concat)),
            ] {
                dev.seed(3);
                let mut c = ModelConfig {
                    heads,
                    ..cfg(backbone, Loss::Bce)
                };
                if let BackboneConfig::Sasrec(s) = &mut c.backbone {
                    s.causal = causal;
                }
                let extras = Extras {
                    dual_view: dual.then_some(DualViewSpec {
                        text: &text,
                        dim: 8,
                        cross_attention: cross,
                    }),
                    fusion: fusion.map(|f| (f, 4)),
                    ..Extras::default()
                };
                let m = Recommender::with_extras(&c, 30, &extras, &dev)
                    .unwrap()
                    .valid();
                let b = Batcher::new(&c, 30, &dev);
                let mut batch = b.eval_batch(&histories);
                let users: Vec<f32> = (0..12).map(|i| (i as f32 * 0.3).sin()).collect();
                batch.user_semantic = Some(Tensor::from_data(TensorData::new(users, [3, 4]), &dev));
                let tables = m.tables();
                let full = m.represent(&tables, &batch);
                let [n, t, d] = full.dims();
                let want = hsuga_model::to_f32(full.narrow(1, t - 1, 1).reshape([n, d]));
                let got = hsuga_model::to_f32(m.represent_last(&tables, &batch));
                let worst = want
                    .iter()
                    .zip(&got)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst < 1e-5,
                    "{backbone:?} heads {heads} dual {dual} cross {cross} {fusion:?}: {worst}"
                );
            }
        }
    }
}

/// Candidate scores (a product-and-sum per row) agree with full-catalogue
/// scores (one matrix product) at the same items.
#[test]
fn candidate_scores_match_full_catalogue_scores() {
    let dev = cpu();
    dev.seed(5);
    let c = cfg(Backbone::Sasrec, Loss::Bce);
    let m = Recommender::new(&c, 30, &dev).unwrap().valid();
    let b = Batcher::new(&c, 30, &dev);
    let hist: [&[u32]; 2] = [&[3, 4, 5], &[9, 1]];
    let items = [1u32, 7, 30, 12];
    let some = scores(&m, &b, &hist, &items);
    let all = hsuga_model::to_f32(m.score_all(&b.eval_batch(&hist))); // [2, 30]
    for (r, _) in hist.iter().enumerate() {
        for (j, &i) in items.iter().enumerate() {
            let want = all[r * 30 + (i as usize - 1)];
            let got = some[r * items.len() + j];
            assert!(
                (want - got).abs() < 1e-5,
                "row {r} item {i}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn last_target_only_supervises_each_rows_last_slot() {
    let dev = cpu();
    let ints = |t: hsuga_model::burn::tensor::Tensor<1, hsuga_model::burn::tensor::Int>| {
        t.into_data().convert::<i64>().try_to_vec::<i64>().unwrap()
    };
    let seqs: [&[u32]; 3] = [&[1, 2, 3, 4], &[5, 6], &[7]];
    for backbone in [Backbone::Sasrec, Backbone::Gru4rec] {
        let mut c = cfg(backbone, Loss::Bce);
        let b = Batcher::new(&c, 30, &dev);
        let all = b.train_batch(&seqs, |_, _| false, &mut ChaCha8Rng::seed_from_u64(1));
        // Inputs [1 2 3], [0 0 5], [0 0 0] (T = 3): every next item.
        assert_eq!(ints(all.targets), vec![2, 3, 4, 6]);
        assert_eq!(ints(all.rows), vec![0, 1, 2, 5]);
        match &mut c.backbone {
            BackboneConfig::Sasrec(s) => s.last_target_only = true,
            BackboneConfig::Gru4rec(g) => g.last_target_only = true,
            BackboneConfig::Bert4rec(_) => unreachable!(),
        }
        let b = Batcher::new(&c, 30, &dev);
        let last = b.train_batch(&seqs, |_, _| false, &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(ints(last.targets), vec![4, 6], "{backbone:?}");
        assert_eq!(ints(last.rows), vec![2, 5], "{backbone:?}");
    }
    // BERT4Rec chooses its targets by masking: the flag is not its own.
    let e = toml::from_str::<ModelConfig>("backbone = \"bert4rec\"\nlast_target_only = true")
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.last_target_only"), "{e}");
}
