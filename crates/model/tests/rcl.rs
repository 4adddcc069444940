//! RCL's mechanism on tiny hand-checkable inputs: the similarity counts
//! shared real items (padding is not one), the percentile runs over the
//! dense matrix with its zeros, weak positives lie above the threshold,
//! strong positives share the last item, and the relative clip keeps every
//! weak-positive logit at or below the batch's smallest strong-positive
//! logit, in the clip itself and in the loss.

use hsuga_model::burn::tensor::{Tensor, TensorData};
use hsuga_model::rcl::{Similarity, dense_percentile, rcl_loss, relative_clip, strong_positives};
use hsuga_model::{RclConfig, cpu, to_f32};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn t2(rows: &[&[f32]]) -> Tensor<2> {
    let d = rows[0].len();
    let data: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_data(TensorData::new(data, [rows.len(), d]), &cpu())
}

/// Four users: {1,2,3}, {2,3,4}, {3}, {9}. S(0,1) = 2, S(0,2) = S(1,2) = 1,
/// everything else 0: of the 16 dense cells, 10 zeros, four 1s, two 2s.
fn four() -> Similarity {
    Similarity::new(&[&[1, 2, 3], &[2, 3, 4], &[3], &[9]])
}

#[test]
fn similarity_counts_shared_items_and_not_padding() {
    let s = four();
    assert_eq!(
        (s.get(0, 1), s.get(1, 0), s.get(0, 2), s.get(1, 2)),
        (2, 2, 1, 1)
    );
    assert_eq!((s.get(0, 0), s.get(3, 0), s.get(2, 3)), (0, 0, 0));
    assert_eq!(s.histogram(), vec![10, 4, 2]);
    // Zero-padded windows (as the official rows are) and repeats: the same
    // matrix, not +1 for the shared padding id.
    let padded = Similarity::new(&[
        &[0, 0, 1, 2, 3],
        &[0, 2, 3, 3, 4],
        &[0, 0, 0, 0, 3],
        &[0, 9],
    ]);
    assert_eq!(padded.histogram(), vec![10, 4, 2]);
    assert_eq!(padded.get(0, 1), 2);
}

/// numpy's `percentile([0]*10 + [1]*4 + [2]*2, p)`: p50 → 0 (over the
/// non-zero cells alone it would be 1), p75 → 1, p90 → 1.5 (between
/// ranks 13 and 14), p0 → 0, p100 → 2.
#[test]
fn percentile_runs_over_the_dense_matrix_with_its_zeros() {
    let h = four().histogram();
    for (p, want) in [
        (50.0, 0.0),
        (75.0, 1.0),
        (90.0, 1.5),
        (0.0, 0.0),
        (100.0, 2.0),
    ] {
        let got = dense_percentile(&h, p);
        assert!((got - want).abs() < 1e-12, "p{p}: {got} != {want}");
    }
}

/// Above the p90 threshold 1.5 only the pair (0, 1) qualifies; users with
/// none are their own weak positive with similarity 0.
#[test]
fn weak_positives_lie_above_the_threshold() {
    let s = four();
    for seed in 0..5 {
        let w = s.weak_positives(1.5, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(w, vec![(1, 2), (0, 2), (2, 0), (3, 0)]);
    }
    // Above 0.5: user 2 draws uniformly from users 0 and 1; both appear.
    let mut seen = [false; 4];
    for seed in 0..40 {
        let w = s.weak_positives(0.5, &mut ChaCha8Rng::seed_from_u64(seed));
        assert!(w[2].0 == 0 || w[2].0 == 1, "{w:?}");
        seen[w[2].0] = true;
    }
    assert!(seen[0] && seen[1]);
}

#[test]
fn strong_positives_share_the_last_item_and_are_never_self_when_others_do() {
    let last = [Some(5), Some(5), Some(7), None, Some(5)];
    let mut drawn = [false; 5];
    for seed in 0..40 {
        let s = strong_positives(&last, &mut ChaCha8Rng::seed_from_u64(seed));
        assert!(s[0] == 1 || s[0] == 4, "{s:?}");
        assert!(s[1] == 0 || s[1] == 4, "{s:?}");
        assert_eq!((s[2], s[3]), (2, 3));
        drawn[s[0]] = true;
    }
    assert!(drawn[1] && drawn[4], "uniform over both others");
}

/// Y's diagonal is (0.9, 0.5): y_min = 0.5. W's diagonal (0.8, 0.4):
/// 0.8 is clipped to 0.5, 0.4 stays, off-diagonal entries stay.
#[test]
fn weak_logit_after_the_clip_never_exceeds_the_smallest_strong_logit() {
    let y = t2(&[&[0.9, 0.1], &[0.2, 0.5]]);
    let w = t2(&[&[0.8, 0.3], &[0.1, 0.4]]);
    let got = to_f32(relative_clip(y, w));
    assert_eq!(got, vec![0.5, 0.3, 0.1, 0.4]);
}

fn loss(cfg: &RclConfig, k_y: Tensor<2>, k_w: Tensor<2>, omega: &[f32]) -> f64 {
    let q = t2(&[&[1.0, 0.0], &[0.0, 1.0]]);
    to_f32(rcl_loss(cfg, q, k_y, k_w, omega, &cpu()))[0] as f64
}

/// q = I, k_y = [(1,1), (0,1)]: q k_yᵀ = [[1,0],[1,1]], row-normalised
/// Y = [[1,0],[s,s]] (s = 1/√2), so y_min = s. k_w = I: W = I, W_00 = 1 > s
/// is clipped to s (and W_11 too). With T = 0.1:
/// L_y = (log(1+e^−10) + log 2)/2, L_w = log(1 + e^{−10s}) and
/// L = 0.1 (L_y + L_w) = 0.0347445; without the clip L_w = log(1+e^−10),
/// L = 0.0346642.
#[test]
fn the_loss_matches_the_hand_computed_case_with_and_without_the_clip() {
    let k_y = || t2(&[&[1.0, 1.0], &[0.0, 1.0]]);
    let k_w = || t2(&[&[1.0, 0.0], &[0.0, 1.0]]);
    let on = RclConfig::default();
    let got = loss(&on, k_y(), k_w(), &[1.0, 1.0]);
    assert!((got - 0.034_744_525_496_131_54).abs() < 1e-6, "{got}");
    let off = RclConfig {
        relative_clip: false,
        ..RclConfig::default()
    };
    let got = loss(&off, k_y(), k_w(), &[1.0, 1.0]);
    assert!((got - 0.034_664_168_862_879_8).abs() < 1e-6, "{got}");
    // Weights: with k_w = [(1,0), (1,1)], W = rownorm([[1,1],[0,1]]) =
    // [[s,s],[0,1]], clipped to [[s,s],[0,s]]: CE_0 = log 2,
    // CE_1 = log(1 + e^{−10s}). ω = (3, 0) keeps row 0 alone (0.1039743),
    // (0, 3) row 1 alone (0.0347445), (3, 1) their 3:1 mean (0.0866669).
    let k_w2 = || t2(&[&[1.0, 0.0], &[1.0, 1.0]]);
    for (omega, want) in [
        ([3.0, 0.0], 0.103_974_347_028_952_64),
        ([0.0, 3.0], 0.034_744_525_496_131_54),
        ([3.0, 1.0], 0.086_666_891_645_747_35),
    ] {
        let got = loss(&on, k_y(), k_w2(), &omega);
        assert!((got - want).abs() < 1e-6, "{omega:?}: {got} != {want}");
    }
    let only_y = loss(&on, k_y(), k_w(), &[0.0, 0.0]);
    let l_y = ((1.0f64 + (-10.0f64).exp()).ln() + 2f64.ln()) / 2.0;
    assert!((only_y - 0.1 * l_y).abs() < 1e-6, "{only_y}");
}

/// A weak positive whose row-normalised logit is below y_min is untouched:
/// the clip only ever lowers a diagonal entry.
#[test]
fn the_clip_never_raises_a_weak_logit() {
    let y = t2(&[&[0.9, 0.1, 0.0], &[0.2, 0.7, 0.3], &[0.0, 0.1, 0.8]]);
    let w = t2(&[&[0.95, 0.0, 0.1], &[0.3, 0.2, 0.1], &[0.0, 0.0, 0.75]]);
    let got = to_f32(relative_clip(y, w));
    assert_eq!(got, vec![0.7, 0.0, 0.1, 0.3, 0.2, 0.1, 0.0, 0.0, 0.7]);
}
