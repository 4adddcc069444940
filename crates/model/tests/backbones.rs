//! Shape, masking and learning checks for every backbone on toy data.

use hsuga_model::burn::module::Module;
use hsuga_model::burn::optim::{AdamConfig, GradientsParams};
use hsuga_model::{Backbone, Batcher, Loss, ModelConfig, Recommender, SequenceEncoder, cpu};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn cfg(backbone: Backbone, loss: Loss) -> ModelConfig {
    ModelConfig {
        backbone,
        loss,
        hidden: 16,
        max_len: 12,
        dropout: 0.1,
        ..ModelConfig::default()
    }
}

fn scores(model: &Recommender, b: &Batcher, hist: &[&[u32]], items: &[u32]) -> Vec<f32> {
    let batch = b.eval_batch(hist);
    let rows: Vec<Vec<u32>> = hist.iter().map(|_| items.to_vec()).collect();
    let cand = Recommender::candidate_tensor(&rows, &b.device);
    hsuga_model::to_f32(model.score_candidates(&batch, cand))
}

#[test]
fn padding_does_not_change_a_users_scores() {
    for backbone in [Backbone::Sasrec, Backbone::Bert4rec] {
        let dev = cpu();
        dev.seed(1);
        let c = cfg(backbone, Loss::Bce);
        let m = Recommender::new(&c, 30, &dev).unwrap().valid();
        let b = Batcher::new(&c, 30, &dev);
        let short: &[u32] = &[3, 4];
        let long: &[u32] = &[1, 2, 3, 4, 5, 6, 7, 8, 9];
        let alone = scores(&m, &b, &[short], &[5, 6, 7]);
        let together = scores(&m, &b, &[short, long], &[5, 6, 7]);
        for (a, t) in alone.iter().zip(&together[..3]) {
            assert!(
                (a - t).abs() < 1e-4,
                "{backbone:?}: {alone:?} vs {together:?}"
            );
        }
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
    let c = ModelConfig { causal: false, ..c };
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
    use hsuga_model::{DualViewSpec, Extras, Fusion};
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
                let c = ModelConfig {
                    heads,
                    causal,
                    ..cfg(backbone, Loss::Bce)
                };
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
        c.last_target_only = true;
        let b = Batcher::new(&c, 30, &dev);
        let last = b.train_batch(&seqs, |_, _| false, &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(ints(last.targets), vec![4, 6], "{backbone:?}");
        assert_eq!(ints(last.rows), vec![2, 5], "{backbone:?}");
    }
    let bert = ModelConfig {
        last_target_only: true,
        ..cfg(Backbone::Bert4rec, Loss::Bce)
    };
    assert!(bert.validate().is_err());
}
