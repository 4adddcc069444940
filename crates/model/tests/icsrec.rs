//! ICSRec's mechanism on tiny hand-checkable inputs: the InfoNCE's
//! negatives exclude every same-label (same-target) sample, its value
//! matches a hand computation, the samples are every training prefix with
//! same-target positives, and k-means finds two obvious clusters,
//! deterministically for a seed, with normalised centroids.

use hsuga_model::burn::tensor::{Tensor, TensorData};
use hsuga_model::icsrec::{KMeans, Samples, info_nce_fnm, info_nce_fnm_rows};
use hsuga_model::{IcsrecConfig, cpu, to_f32};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn t2(rows: &[&[f32]]) -> Tensor<2> {
    let d = rows[0].len();
    let data: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_data(TensorData::new(data, [rows.len(), d]), &cpu())
}

const E: f64 = std::f64::consts::E;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-5
}

/// Two samples, distinct targets, `z1 = z2 = [e1, e2]`, T = 1: `S` is 1
/// between equal vectors and 0 otherwise. Row 0's logits are `[S03 = 1 |
/// S01 = 0, S03... masked]`: its own label masks columns 0 and 2, leaving
/// columns 1 and 3 (both 0), so every row is `ln(1 + 2/e)`.
#[test]
fn info_nce_matches_a_hand_computed_2x2_value() {
    let z = t2(&[&[1.0, 0.0], &[0.0, 1.0]]);
    let l = to_f32(info_nce_fnm(z.clone(), z.clone(), &[1, 2], 1.0))[0] as f64;
    assert!(close(l, (1.0 + 2.0 / E).ln()), "{l}");
    // T = 0.5 doubles every logit: ln(1 + 2/e²).
    let l = to_f32(info_nce_fnm(z.clone(), z, &[1, 2], 0.5))[0] as f64;
    assert!(close(l, (1.0 + 2.0 / (E * E)).ln()), "{l}");
}

/// Three samples, targets `[7, 7, 9]`, `z1 = z2 = [e1, e1, e2]`. FNM masks
/// every column of the row's target: rows of target 7 keep only the two
/// target-9 columns (both 0): `ln(1 + 2/e)`; rows of target 9 keep the four
/// target-7 columns: `ln(1 + 4/e)`. Without FNM (only self and positive
/// dropped), row 0 would also hold the other target-7 sample's two
/// columns at 1: `-ln(e / (3e + 2))`, a different value.
#[test]
fn info_nce_masks_every_same_label_column_3x3() {
    let z = t2(&[&[1.0, 0.0], &[1.0, 0.0], &[0.0, 1.0]]);
    let rows: Vec<f64> = to_f32(info_nce_fnm_rows(z.clone(), z.clone(), &[7, 7, 9], 1.0))
        .into_iter()
        .map(f64::from)
        .collect();
    let (a, b) = ((1.0 + 2.0 / E).ln(), (1.0 + 4.0 / E).ln());
    let want = [a, a, b, a, a, b];
    for (i, (&g, &w)) in rows.iter().zip(&want).enumerate() {
        assert!(close(g, w), "row {i}: {g} != {w}");
    }
    assert!(!close(rows[0], -(E / (3.0 * E + 2.0)).ln()));
    let mean = to_f32(info_nce_fnm(z.clone(), z, &[7, 7, 9], 1.0))[0] as f64;
    assert!(close(mean, (4.0 * a + 2.0 * b) / 6.0), "{mean}");
}

/// The named test: ICSRec's negatives exclude same-target samples.
/// Moving both views of sample 1 anywhere leaves the loss of row 0 (same
/// target as sample 1) unchanged; moving sample 2 (another target), or
/// giving sample 1 another target, changes it.
#[test]
fn negatives_exclude_same_target_samples() {
    let row0 = |z1: &[&[f32]], z2: &[&[f32]], labels: &[u32]| {
        to_f32(info_nce_fnm_rows(t2(z1), t2(z2), labels, 1.0))[0]
    };
    let z1: [&[f32]; 3] = [&[1.0, 0.5], &[0.3, -0.2], &[-0.4, 0.9]];
    let z2: [&[f32]; 3] = [&[0.8, 0.1], &[0.2, 0.7], &[0.5, -0.6]];
    let base = row0(&z1, &z2, &[7, 7, 9]);
    let far1: [&[f32]; 3] = [z1[0], &[5.0, -3.0], z1[2]];
    let far2: [&[f32]; 3] = [z2[0], &[-4.0, 6.0], z2[2]];
    assert_eq!(base, row0(&far1, &far2, &[7, 7, 9]), "same target: masked");
    let moved: [&[f32]; 3] = [z1[0], z1[1], &[5.0, -3.0]];
    assert!((base - row0(&moved, &z2, &[7, 7, 9])).abs() > 1e-3);
    assert!((base - row0(&far1, &far2, &[7, 8, 9])).abs() > 1e-3);
}

/// Users `[1, 2, 3]`, `[4, 2]`, `[5]`: samples `(0,1) → 2`, `(0,2) → 3`,
/// `(1,1) → 2` (the one-item user has none); the two target-2 samples are
/// each other's positive, the target-3 sample falls back to itself.
#[test]
fn samples_are_every_prefix_with_same_target_positives() {
    let s = Samples::new(&[vec![1, 2, 3], vec![4, 2], vec![5]]);
    assert_eq!(s.len(), 3);
    assert_eq!(
        (0..3).map(|i| s.at(i)).collect::<Vec<_>>(),
        vec![(0, 1), (0, 2), (1, 1)]
    );
    assert_eq!(s.with_target(2), &[(0, 1), (1, 1)]);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..20 {
        assert_eq!(s.positive((0, 1), 2, &mut rng), (1, 1));
        assert_eq!(s.positive((1, 1), 2, &mut rng), (0, 1));
        assert_eq!(s.positive((0, 2), 3, &mut rng), (0, 2));
    }
    // Three same-target samples: both others are drawn, never itself.
    let s = Samples::new(&[vec![1, 2], vec![3, 2], vec![4, 2]]);
    let mut seen = [0; 3];
    for _ in 0..60 {
        let (u, _) = s.positive((1, 1), 2, &mut rng);
        seen[u] += 1;
    }
    assert!(seen[1] == 0 && seen[0] > 0 && seen[2] > 0, "{seen:?}");
}

/// Two tight groups around (10, 0) and (0, 10): k = 2 puts each group in
/// its own cluster, the raw centroids are the group means, the normalised
/// ones unit rows, and the same seed gives the same centroids.
#[test]
fn kmeans_finds_two_clusters_deterministically() {
    let pts: Vec<f32> = vec![
        10.0, 0.0, 11.0, 0.5, 9.0, -0.5, 10.0, 1.0, // group A
        0.0, 10.0, 0.5, 11.0, -0.5, 9.0, 1.0, 10.0, // group B
    ];
    let dev = cpu();
    let km = KMeans::train(&pts, 2, 2, 20, &mut ChaCha8Rng::seed_from_u64(1), &dev);
    let a = km.assign(&pts, &dev);
    assert!(a[..4].iter().all(|&x| x == a[0]), "{a:?}");
    assert!(a[4..].iter().all(|&x| x == a[4]) && a[0] != a[4], "{a:?}");
    let (ca, cb) = (
        &km.centroids[a[0] * 2..a[0] * 2 + 2],
        &km.centroids[a[4] * 2..a[4] * 2 + 2],
    );
    assert!(
        (ca[0] - 10.0).abs() < 1e-5 && (ca[1] - 0.25).abs() < 1e-5,
        "{ca:?}"
    );
    assert!(
        (cb[0] - 0.25).abs() < 1e-5 && (cb[1] - 10.0).abs() < 1e-5,
        "{cb:?}"
    );
    for r in km.normalised.chunks(2) {
        assert!(
            ((r[0] * r[0] + r[1] * r[1]).sqrt() - 1.0).abs() < 1e-6,
            "{r:?}"
        );
    }
    let n = &km.normalised[a[0] * 2..a[0] * 2 + 2];
    let norm = (10.0f32 * 10.0 + 0.25 * 0.25).sqrt();
    assert!((n[0] - 10.0 / norm).abs() < 1e-6 && (n[1] - 0.25 / norm).abs() < 1e-6);
    for seed in [1, 2, 3] {
        let x = KMeans::train(&pts, 2, 2, 20, &mut ChaCha8Rng::seed_from_u64(seed), &dev);
        let y = KMeans::train(&pts, 2, 2, 20, &mut ChaCha8Rng::seed_from_u64(seed), &dev);
        assert_eq!(x, y, "seed {seed}");
    }
    // A query: nearest by L2 on the raw centroids; the normalised row of
    // its intent.
    let q = km.assign(&[9.0, 2.0, -1.0, 7.0], &dev);
    assert_eq!(q, vec![a[0], a[4]]);
    let rows = to_f32(km.normalised_rows(&q, &dev));
    assert_eq!(&rows[..2], n);
}

#[test]
fn bad_keys_are_errors_naming_the_key() {
    let bad = |c: IcsrecConfig, want: &str| {
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    };
    let d = IcsrecConfig::default;
    assert_eq!((d().lambda, d().beta, d().intents), (0.3, 0.1, 256));
    bad(
        IcsrecConfig {
            lambda: -0.1,
            ..d()
        },
        "method.icsrec.lambda",
    );
    bad(IcsrecConfig { beta: -1.0, ..d() }, "method.icsrec.beta");
    bad(IcsrecConfig { intents: 0, ..d() }, "method.icsrec.intents");
    bad(
        IcsrecConfig {
            intents: 30_000,
            ..d()
        },
        "method.icsrec.intents (30000) must not exceed method.icsrec.cluster_points",
    );
    bad(
        IcsrecConfig {
            temperature: 0.0,
            ..d()
        },
        "method.icsrec.temperature",
    );
    d().validate().unwrap();
}
