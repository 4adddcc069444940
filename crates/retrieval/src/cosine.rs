//! Exact top-K cosine neighbours. Rows are L2-normalised once; then each
//! rayon task multiplies one block of [`BLOCK`] users against all users with
//! `matrixmultiply`'s packed sgemm (runtime-dispatched AVX2/FMA or AVX-512
//! kernels) and keeps each row's K best in a bounded heap. 22k users × 384
//! dims takes seconds (release build), about half the time candle's matmul
//! took here, and memory stays at one `BLOCK × users` score buffer per
//! thread. (A plain dot-product loop compiles to SSE2 only on the baseline
//! x86-64 target: it measured over ten times slower than the packed kernel.)
//!
//! Why sgemm per block rather than one threaded product: each block's scores
//! are consumed (top-K) while they are hot in cache, and the single-threaded
//! kernel sums every score in the same order whatever the block boundaries
//! or thread count, so the neighbours are identical on every rerun on a
//! machine. Across CPUs (AVX2 vs AVX-512 kernels) scores may differ in the
//! last bits, so a near-tie can order differently there.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use crate::{RetrievalError, UserEmbeddings};

/// Users whose similarity rows are computed by one task (`BLOCK × users`
/// floats each: 11 MB at 22k users). sgemm re-packs the right-hand matrix
/// (all users) on every call, so small blocks pay for that: 64 rows measured
/// a quarter to a half slower than 128–256 here; 128 keeps sixteen threads'
/// buffers at the old single 1024-row block's size.
const BLOCK: usize = 128;

/// For each user `u`, the `ks[u]` most similar other users, most similar
/// first (ties to the lower index). `ks[u]` larger than the number of other
/// users returns them all.
pub fn top_k_cosine(emb: &UserEmbeddings, ks: &[usize]) -> Result<Vec<Vec<u32>>, RetrievalError> {
    let (n, d) = (emb.num_users(), emb.dim);
    if ks.len() != n {
        return Err(RetrievalError::KCountMismatch {
            ks: ks.len(),
            users: n,
        });
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let unit: Vec<f32> = emb
        .data
        .par_chunks(d)
        .flat_map_iter(|row| {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            let inv = if norm > 0.0 { 1.0 / norm } else { 0.0 };
            row.iter().map(move |x| x * inv)
        })
        .collect();
    let out = unit
        .par_chunks(BLOCK * d)
        .enumerate()
        .map_init(
            || vec![0.0f32; BLOCK * n],
            |sims, (b, block)| {
                let start = b * BLOCK;
                let rows = block.len() / d;
                similarities(block, &unit, d, &mut sims[..rows * n]);
                sims[..rows * n]
                    .chunks_exact(n)
                    .enumerate()
                    .map(|(r, row)| top_k_row(row, start + r, ks[start + r]))
                    .collect::<Vec<_>>()
            },
        )
        .flatten_iter()
        .collect();
    Ok(out)
}

/// `out[r * n + j] = block[r] · all[j]` for the `rows = block.len() / d` rows
/// of `block` and the `n = all.len() / d` rows of `all` (both row-major with
/// `d` columns).
fn similarities(block: &[f32], all: &[f32], d: usize, out: &mut [f32]) {
    let (rows, n) = (block.len() / d, all.len() / d);
    assert!(
        block.len() == rows * d && all.len() == n * d && out.len() == rows * n,
        "similarities: inconsistent shapes"
    );
    // SAFETY: A = `block` read as rows × d with strides (d, 1): its last
    // element is (rows-1)·d + d-1 < block.len(). B = `all` transposed, d × n
    // with strides (1, d): last element (d-1) + (n-1)·d < all.len().
    // C = `out`, rows × n with strides (n, 1): last element rows·n - 1 <
    // out.len(), no two elements alias, and it is exclusively borrowed.
    // With β = 0, C is only written. All dimensions fit in isize (they index
    // allocated slices).
    unsafe {
        matrixmultiply::sgemm(
            rows,
            d,
            n,
            1.0,
            block.as_ptr(),
            d as isize,
            1,
            all.as_ptr(),
            1,
            d as isize,
            0.0,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// A candidate neighbour ordered so that the heap's maximum is the *worst*
/// kept one: lower similarity, or on equal similarity the higher index.
#[derive(Clone, Copy)]
struct Cand {
    sim: f32,
    id: u32,
}

impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        other.sim.total_cmp(&self.sim).then(self.id.cmp(&other.id))
    }
}

impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Cand {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Cand {}

/// The `k` best of `sims` except index `me`, best first. Scanning in index
/// order, a later candidate replaces the worst kept one only when strictly
/// better, so equal similarities keep the lower index.
fn top_k_row(sims: &[f32], me: usize, k: usize) -> Vec<u32> {
    let k = k.min(sims.len().saturating_sub(1));
    if k == 0 {
        return Vec::new();
    }
    let mut heap = BinaryHeap::with_capacity(k + 1);
    for (j, &sim) in sims.iter().enumerate() {
        if j == me {
            continue;
        }
        let c = Cand { sim, id: j as u32 };
        if heap.len() < k {
            heap.push(c);
        } else if let Some(mut worst) = heap.peek_mut()
            && c < *worst
        {
            *worst = c;
        }
    }
    heap.into_sorted_vec().into_iter().map(|c| c.id).collect()
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn matches_brute_force_on_random_vectors() {
        // Deterministic pseudo-random data; more users than one block.
        let (n, d) = (1500, 8);
        let mut rng = ChaCha8Rng::seed_from_u64(12345);
        let data: Vec<f32> = (0..n * d).map(|_| rng.random::<f32>() - 0.5).collect();
        let emb = UserEmbeddings::new(d, data.clone()).unwrap();
        let got = top_k_cosine(&emb, &vec![5; n]).unwrap();
        for u in [0usize, 777, 1499] {
            let cos = |a: usize, b: usize| {
                let (ra, rb) = (&data[a * d..(a + 1) * d], &data[b * d..(b + 1) * d]);
                let dot: f32 = ra.iter().zip(rb).map(|(p, q)| p * q).sum();
                let na: f32 = ra.iter().map(|p| p * p).sum::<f32>().sqrt();
                let nb: f32 = rb.iter().map(|p| p * p).sum::<f32>().sqrt();
                dot / (na * nb)
            };
            let mut want: Vec<usize> = (0..n).filter(|&v| v != u).collect();
            want.sort_by(|&a, &b| cos(u, b).total_cmp(&cos(u, a)));
            // Compare similarities within a tolerance, not indices: the two
            // sums round differently, so a near-tie may order either way.
            for (rank, (&g, &w)) in got[u].iter().zip(&want[..5]).enumerate() {
                let (cg, cw) = (cos(u, g as usize), cos(u, w));
                assert!(
                    (cg - cw).abs() < 1e-5,
                    "user {u} rank {rank}: {g} ({cg}) vs {w} ({cw})"
                );
            }
            assert_eq!(got[u].len(), 5);
        }
    }

    /// Hand-computed cosines of four 3-d vectors, spanning two blocks'
    /// worth of offsets (user 3 is scored against users 0–2 from a different
    /// row of the product than user 0 is).
    #[test]
    fn similarities_equal_hand_computed_cosines() {
        // Rows already unit length: e1, (e1+e2)/√2, e2, (e1+e2+e3)/√3.
        let (h, t) = (std::f32::consts::FRAC_1_SQRT_2, 1.0 / 3f32.sqrt());
        let unit = [1.0, 0.0, 0.0, h, h, 0.0, 0.0, 1.0, 0.0, t, t, t];
        let mut out = [f32::NAN; 16];
        similarities(&unit, &unit, 3, &mut out);
        #[rustfmt::skip]
        let want = [
            1.0,     h,             0.0,     t,
            h,       1.0,           h,       2.0 * h * t,
            0.0,     h,             1.0,     t,
            t,       2.0 * h * t,   t,       1.0,
        ];
        for (i, (g, w)) in out.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() < 1e-6,
                "entry ({}, {}): {g} vs {w}",
                i / 4,
                i % 4
            );
        }
        // A block that starts at row 1: rows 1–2 against all four.
        let mut part = [f32::NAN; 8];
        similarities(&unit[3..9], &unit, 3, &mut part);
        for (i, (g, w)) in part.iter().zip(&want[4..12]).enumerate() {
            assert!(
                (g - w).abs() < 1e-6,
                "block entry ({}, {}): {g} vs {w}",
                i / 4,
                i % 4
            );
        }
        // 2·(1/√2)(1/√3) = √(2/3) ≈ 0.8165, the cosine of (1,1,0) and (1,1,1).
        assert!((2.0 * h * t - 0.816_496_6).abs() < 1e-6);
    }

    /// Un-normalised inputs: cosine, not dot product, decides the order
    /// (user 1 is long and at 45°, user 2 short and nearly parallel to user 0).
    #[test]
    fn ranks_by_cosine_not_dot_product() {
        let emb = UserEmbeddings::new(2, vec![1.0, 0.0, 10.0, 10.0, 1.0, 0.1, -1.0, 5.0]).unwrap();
        let got = top_k_cosine(&emb, &[3, 3, 3, 3]).unwrap();
        // cos(0,·): u1 0.7071, u2 0.9950, u3 -0.1961 (dot order would be 1, 2, 3).
        assert_eq!(got[0], vec![2, 1, 3]);
        // cos(1,·): u0 0.7071, u2 0.7740, u3 0.5547 (dot order would be 3, 2, 0).
        assert_eq!(got[1], vec![2, 0, 3]);
    }

    #[test]
    fn top_k_row_ties_go_to_the_lower_index_and_skip_self() {
        let sims = [0.5, 0.9, 0.5, 0.9, 0.1, 0.5];
        assert_eq!(top_k_row(&sims, 1, 3), vec![3, 0, 2]);
        assert_eq!(top_k_row(&sims, 4, 10), vec![1, 3, 0, 2, 5]);
        assert_eq!(top_k_row(&sims, 0, 0), Vec::<u32>::new());
        assert_eq!(top_k_row(&[1.0], 0, 1), Vec::<u32>::new());
    }

    #[test]
    fn k_list_of_the_wrong_length_is_an_error_not_a_panic() {
        let emb = UserEmbeddings::new(1, vec![1.0, 2.0, 3.0]).unwrap();
        assert_eq!(
            top_k_cosine(&emb, &[1, 1]),
            Err(RetrievalError::KCountMismatch { ks: 2, users: 3 })
        );
    }
}
