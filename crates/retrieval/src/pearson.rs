//! GAA's active-user filter: Pearson correlation between two users'
//! binary training-interaction vectors, and a percentile cut.

use std::collections::HashSet;

use hsuga_data::Split;

/// Pearson correlation of two binary vectors over `n` items, from the set
/// sizes `a`, `b` and their overlap `c`:
/// r = (n·c − a·b) / √(a(n−a) · b(n−b)). `None` when a vector is constant.
pub fn pearson_binary(n: usize, a: usize, b: usize, c: usize) -> Option<f64> {
    let (n, a, b, c) = (n as f64, a as f64, b as f64, c as f64);
    let den = (a * (n - a) * b * (n - b)).sqrt();
    (den > 0.0).then(|| (n * c - a * b) / den)
}

/// The `p`-th percentile (0–100) with linear interpolation between order
/// statistics (NumPy's default). `values` must be non-empty.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = p / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Keeps, for each active user, the candidates at or above the τ-th
/// percentile of their correlations; always at least the best one.
pub(crate) fn filter_active(lists: &mut [Vec<u32>], active: &[bool], split: &Split, tau: f64) {
    let n = split.num_items as usize;
    // Training items only: validation and test targets must not leak here.
    let sets: Vec<HashSet<u32>> = split
        .train
        .iter()
        .map(|s| s.iter().copied().collect())
        .collect();
    for (u, list) in lists.iter_mut().enumerate() {
        if !active[u] || list.is_empty() {
            continue;
        }
        let me = &sets[u];
        let rs: Vec<f64> = list
            .iter()
            .map(|&v| {
                let other = &sets[v as usize];
                let c = me.intersection(other).count();
                pearson_binary(n, me.len(), other.len(), c).unwrap_or(-1.0)
            })
            .collect();
        let cut = percentile(&rs, tau);
        let best = rs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut i = 0;
        list.retain(|_| {
            let keep = rs[i] >= cut.min(best) - 1e-12;
            i += 1;
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_hand_values() {
        // Identical sets: r = 1.
        assert!((pearson_binary(10, 3, 3, 3).unwrap() - 1.0).abs() < 1e-12);
        // Disjoint sets of 5 in 10 (complements): r = −1.
        assert!((pearson_binary(10, 5, 5, 0).unwrap() + 1.0).abs() < 1e-12);
        // n=10, a=4, b=2, c=1: (10 − 8)/√(4·6·2·8) = 2/√384 = 0.10206207261596575
        assert!((pearson_binary(10, 4, 2, 1).unwrap() - 0.102_062_072_615_965_75).abs() < 1e-12);
        assert_eq!(pearson_binary(10, 0, 3, 0), None);
        assert_eq!(pearson_binary(10, 10, 3, 3), None);
    }

    #[test]
    fn percentile_interpolates_like_numpy() {
        // numpy.percentile([1, 2, 3, 4], 25) = 1.75; 50 → 2.5; 100 → 4.
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&v, 25.0), 1.75);
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert_eq!(percentile(&v, 100.0), 4.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
    }

    #[test]
    fn planted_leak_in_validation_and_test_is_ignored() {
        // User 0 (active) shares its validation and test items (8, 9) with
        // user 1, and one training item with user 2.
        let seqs = vec![vec![1, 2, 3, 8, 9], vec![4, 8, 9], vec![1, 6, 7, 5]];
        let split = Split::leave_one_out(&seqs, 9).unwrap();
        let mut lists = vec![vec![1, 2], vec![], vec![]];
        filter_active(&mut lists, &[true, false, false], &split, 50.0);
        // Training only: r(0,1) = −0.25, r(0,2) = 0.189 → keep user 2.
        assert_eq!(lists[0], vec![2]);

        // Had the full sequences been used (the official code's leak), user 1
        // would win: r = 0.158 vs −0.55.
        let full: Vec<HashSet<u32>> = seqs.iter().map(|s| s.iter().copied().collect()).collect();
        let leaky = |v: usize| {
            let c = full[0].intersection(&full[v]).count();
            pearson_binary(9, full[0].len(), full[v].len(), c).unwrap()
        };
        assert!(leaky(1) > leaky(2));
    }

    #[test]
    fn tail_users_are_untouched() {
        let split =
            Split::leave_one_out(&[vec![1, 2, 3], vec![4, 5, 6], vec![1, 5, 6]], 6).unwrap();
        let mut lists = vec![vec![1, 2], vec![0, 2], vec![0, 1]];
        filter_active(&mut lists, &[false, false, false], &split, 90.0);
        assert_eq!(lists, vec![vec![1, 2], vec![0, 2], vec![0, 1]]);
    }
}
