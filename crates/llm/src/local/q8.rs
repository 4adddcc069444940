//! Q8_0 matrix × vector products for decoding (one token at a time).
//!
//! Why our own kernel: decoding one token is ~135M multiply-adds over weights
//! that do not fit in cache, so it is bound by how fast the quantized dot
//! products stream. Candle runs each of them as a separate `QMatMul` (with
//! per-call input quantisation, f16 → f32 scale conversion in the inner loop
//! and one FMA dependency chain per row). Here the scales are converted once
//! at load; rows are packed in groups of four, block-interleaved (block `b`
//! of rows `4g..4g + 4` side by side), so that one pass streams the weights
//! strictly sequentially while four rows share each loaded input block and
//! keep four independent FMA chains (processing four plain rows at once was
//! 25% *slower* than one at a time: four short streams defeat the hardware
//! prefetcher); Q/K/V and gate/up are fused into one matrix each; and the
//! rows of one product are split over the calling rayon pool.
//!
//! The arithmetic mirrors what candle 0.11 computed on a CPU with AVX512-VNNI
//! (the reference machine), so that greedy answers stay token for token the
//! same — they can hinge on the last bit of a near tie. Two input formats:
//! - [`Input::Q8_0`] (candle's `vec_dot_q8_0_q8_0`, rows of any length): the
//!   input is quantised per 32-block to i8 with an f16-rounded scale; each
//!   block's integer dot product is scaled by `d_w * d_x` and accumulated
//!   into 8 f32 lanes with FMA, then summed in candle's order.
//! - [`Input::Q8K`] (candle's repacked VNNI kernel, used for rows that are
//!   whole 256-blocks — the FFN down projection): the input is quantised per
//!   256 values with an f32 scale (ggml's Q8_K); each 32-block's exact
//!   integer dot product is added as `fma(isum, d_w * d_x, acc)`, one chain
//!   per row.
//!
//! The AVX2 paths gave those results bit for bit on that machine; the scalar
//! fallback (no AVX2) differs in the last bits only. Nothing relies on the
//! bits: tests compare each [`Kernel`] this CPU can run with the others and
//! with an f64 product of the same quantized values, within a tolerance.

use half::f16;
use rayon::prelude::*;

/// Values per Q8_0 block.
pub const QK: usize = 32;
/// Values per Q8_K input block.
const QK_K: usize = 256;
/// Bytes per ggml Q8_0 block: an f16 scale, then 32 i8.
const GGML_BLOCK_BYTES: usize = 2 + QK;
/// Rows per packed group.
const GROUP: usize = 4;

/// A Q8_0 matrix with its block scales kept as f32, rows packed in groups of
/// [`GROUP`]: block `b` of row `r` is at block index
/// `(r / 4 * blocks_per_row + b) * 4 + r % 4` (the last group padded with
/// zero rows).
#[derive(Debug, Clone)]
pub struct Q8Matrix {
    rows: usize,
    cols: usize,
    input: Input,
    /// `padded rows * cols` quantized values, packed.
    qs: Vec<i8>,
    /// `padded rows * cols / QK` block scales, packed.
    d: Vec<f32>,
}

/// One block quantised as ggml does (`quantize_row_q8_0_reference`): the
/// scale is `max|x| / 127` rounded to f16, values `round(x / scale)` with the
/// unrounded scale.
fn quantize_q8_0(x: &[f32], q: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in q.iter_mut().zip(x) {
        *q = (v * id).round() as i8;
    }
    f16::from_f32(d).to_f32()
}

impl Q8Matrix {
    /// From ggml Q8_0 bytes (`rows * cols / 32` blocks of an f16 scale and 32 i8).
    pub fn from_ggml_q8_0(rows: usize, cols: usize, bytes: &[u8]) -> Self {
        assert!(
            cols.is_multiple_of(QK),
            "{cols} columns are not whole blocks"
        );
        let nb = rows * cols / QK;
        assert_eq!(bytes.len(), nb * GGML_BLOCK_BYTES, "Q8_0 data size");
        let mut qs = Vec::with_capacity(rows * cols);
        let mut d = Vec::with_capacity(nb);
        for b in bytes.chunks_exact(GGML_BLOCK_BYTES) {
            d.push(f16::from_le_bytes([b[0], b[1]]).to_f32());
            qs.extend(b[2..].iter().map(|&v| v as i8));
        }
        Self::pack(rows, cols, &qs, &d)
    }

    /// From plain row-major values and block scales.
    fn pack(rows: usize, cols: usize, qs: &[i8], d: &[f32]) -> Self {
        let nb = cols / QK;
        let padded = rows.next_multiple_of(GROUP);
        let mut m = Self {
            rows,
            cols,
            input: if cols.is_multiple_of(QK_K) {
                Input::Q8K
            } else {
                Input::Q8_0
            },
            qs: vec![0; padded * cols],
            d: vec![0.0; padded * nb],
        };
        for r in 0..rows {
            for b in 0..nb {
                let at = m.block_index(r, b);
                m.d[at] = d[r * nb + b];
                m.qs[at * QK..(at + 1) * QK].copy_from_slice(&qs[(r * nb + b) * QK..][..QK]);
            }
        }
        m
    }

    /// Where block `b` of row `r` is packed.
    fn block_index(&self, r: usize, b: usize) -> usize {
        (r / GROUP * (self.cols / QK) + b) * GROUP + r % GROUP
    }

    /// Quantises row-major f32 values (`rows * cols`).
    pub fn quantize(rows: usize, cols: usize, x: &[f32]) -> Self {
        assert!(
            cols.is_multiple_of(QK),
            "{cols} columns are not whole blocks"
        );
        assert_eq!(x.len(), rows * cols);
        let mut qs = vec![0i8; rows * cols];
        let d: Vec<f32> = x
            .chunks_exact(QK)
            .zip(qs.chunks_exact_mut(QK))
            .map(|(x, q)| quantize_q8_0(x, q))
            .collect();
        Self::pack(rows, cols, &qs, &d)
    }

    /// Stacks matrices with the same column count (fused projections); each
    /// must have whole groups of rows.
    pub fn concat_rows(parts: &[Q8Matrix]) -> Self {
        let cols = parts[0].cols;
        assert!(
            parts
                .iter()
                .all(|p| p.cols == cols && p.rows.is_multiple_of(GROUP))
        );
        Self {
            rows: parts.iter().map(|p| p.rows).sum(),
            cols,
            input: parts[0].input,
            qs: parts.iter().flat_map(|p| p.qs.iter().copied()).collect(),
            d: parts.iter().flat_map(|p| p.d.iter().copied()).collect(),
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// `out[r] = W[r] · x` for every row, quantising `x` into `xq` first.
    /// With `threads > 1` the rows are split into chunks run on the current
    /// rayon pool.
    pub fn matvec(&self, x: &[f32], xq: &mut Q8Vec, out: &mut [f32], threads: usize) {
        self.matvec_with(Kernel::best(), x, xq, out, threads)
    }

    /// [`Q8Matrix::matvec`] on a chosen kernel (tests run every kernel the
    /// CPU has; `kernel` must be one of [`Kernel::available`]).
    fn matvec_with(
        &self,
        kernel: Kernel,
        x: &[f32],
        xq: &mut Q8Vec,
        out: &mut [f32],
        threads: usize,
    ) {
        assert_eq!(x.len(), self.cols);
        assert_eq!(out.len(), self.rows);
        xq.quantize(x, self.input);
        let xq = &*xq;
        if threads <= 1 || self.rows < 256 {
            self.rows_into(kernel, 0, xq, out);
            return;
        }
        // A few chunks per thread so that a thread slowed by other load on
        // the machine does not hold the others up; whole groups.
        let chunk = self.rows.div_ceil(threads * 4).next_multiple_of(GROUP);
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, o)| self.rows_into(kernel, i * chunk, xq, o));
    }

    /// The same product for `n` input vectors at once (batched decoding):
    /// `xs` is `(n, cols)` row-major, `out` `(n, rows)`, `out[i * rows + r]
    /// = W[r] · x_i`. `xq` holds the inputs' quantised copies.
    ///
    /// Why it pays: decoding is bound by streaming the weights from memory.
    /// Here each packed group of four rows (a few KB) is read from memory
    /// once and then, from the L1 cache, multiplied with all `n` inputs. Each
    /// `(row, input)` pair runs the very kernel and summation order of
    /// [`Q8Matrix::matvec`], so batching changes no bit of a product.
    pub fn matmul(
        &self,
        xs: &[f32],
        n: usize,
        xq: &mut Vec<Q8Vec>,
        out: &mut [f32],
        threads: usize,
    ) {
        self.matmul_with(Kernel::best(), xs, n, xq, out, threads)
    }

    fn matmul_with(
        &self,
        kernel: Kernel,
        xs: &[f32],
        n: usize,
        xq: &mut Vec<Q8Vec>,
        out: &mut [f32],
        threads: usize,
    ) {
        assert_eq!(xs.len(), n * self.cols);
        assert_eq!(out.len(), n * self.rows);
        xq.resize_with(n.max(xq.len()), Q8Vec::default);
        for (x, q) in xs.chunks_exact(self.cols).zip(xq.iter_mut()) {
            q.quantize(x, self.input);
        }
        let xq = &xq[..n];
        let groups = self.rows.div_ceil(GROUP);
        let out_ptr = SharedOut(out.as_mut_ptr());
        let run = |g0: usize, g1: usize| {
            let mut r4 = [0f32; GROUP];
            for g in g0..g1 {
                let live = (self.rows - g * GROUP).min(GROUP);
                for (i, x) in xq.iter().enumerate() {
                    self.group_into(kernel, g, x, &mut r4);
                    // SAFETY: rows `g*4..g*4+live` of input `i` are inside
                    // `out` (its length was asserted), and each group is
                    // written by exactly one task, so no two tasks touch
                    // the same element.
                    unsafe {
                        let dst = out_ptr.at(i * self.rows + g * GROUP);
                        std::ptr::copy_nonoverlapping(r4.as_ptr(), dst, live);
                    }
                }
            }
        };
        if threads <= 1 || self.rows < 256 {
            run(0, groups);
            return;
        }
        let chunk = groups.div_ceil(threads * 4);
        (0..groups.div_ceil(chunk))
            .into_par_iter()
            .for_each(|c| run(c * chunk, ((c + 1) * chunk).min(groups)));
    }

    /// The four rows of packed group `g` times one input, as
    /// [`Q8Matrix::rows_into`] computes them.
    #[inline]
    fn group_into(&self, kernel: Kernel, g: usize, x: &Q8Vec, out: &mut [f32; GROUP]) {
        assert!(x.qs.len() == self.cols && x.input == self.input);
        #[cfg(target_arch = "x86_64")]
        if kernel == Kernel::Avx2 {
            assert!(avx2::available(), "the AVX2 kernel needs AVX2 and FMA");
            // SAFETY: AVX2 and FMA are present; `g` is a group of the
            // (padded) matrix and `x` has its column count (asserted).
            *out = unsafe {
                match self.input {
                    Input::Q8_0 => avx2::group_q8_0(self, g, x),
                    Input::Q8K => avx2::group_q8k(self, g, x),
                }
            };
            return;
        }
        for (k, o) in out.iter_mut().enumerate() {
            let r = g * GROUP + k;
            *o = if r < self.rows {
                self.dot_scalar(r, x)
            } else {
                0.0
            };
        }
    }

    /// Rows `row0..row0 + out.len()`; `row0` starts a group.
    fn rows_into(&self, kernel: Kernel, row0: usize, x: &Q8Vec, out: &mut [f32]) {
        assert!(row0.is_multiple_of(GROUP) && row0 + out.len() <= self.rows);
        assert!(x.qs.len() == self.cols && x.input == self.input);
        #[cfg(target_arch = "x86_64")]
        if kernel == Kernel::Avx2 {
            assert!(avx2::available(), "the AVX2 kernel needs AVX2 and FMA");
            for (i, o) in out.chunks_mut(GROUP).enumerate() {
                let g = row0 / GROUP + i;
                // SAFETY: AVX2 and FMA are present; `g` is a group of the
                // (padded) matrix and `x` has its column count (asserted).
                let r = unsafe {
                    match self.input {
                        Input::Q8_0 => avx2::group_q8_0(self, g, x),
                        Input::Q8K => avx2::group_q8k(self, g, x),
                    }
                };
                o.copy_from_slice(&r[..o.len()]);
            }
            return;
        }
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.dot_scalar(row0 + i, x);
        }
    }

    /// The reference, without SIMD.
    fn dot_scalar(&self, row: usize, x: &Q8Vec) -> f32 {
        let mut sum = 0f32;
        for b in 0..self.cols / QK {
            let at = self.block_index(row, b);
            let w = &self.qs[at * QK..(at + 1) * QK];
            let v = &x.qs[b * QK..(b + 1) * QK];
            let sumi: i32 = w.iter().zip(v).map(|(&a, &b)| a as i32 * b as i32).sum();
            sum = match x.input {
                Input::Q8_0 => sum + sumi as f32 * (self.d[at] * x.d[b]),
                Input::Q8K => (sumi as f32).mul_add(self.d[at] * x.d[b * QK / QK_K], sum),
            };
        }
        sum
    }
}

/// `out`'s base pointer, shared by the tasks of one [`Q8Matrix::matmul`]
/// (each writes only its own groups' elements).
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: the tasks write disjoint elements (see `matmul_with`).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// # Safety
    /// `i` must be inside the slice the pointer came from.
    unsafe fn at(self, i: usize) -> *mut f32 {
        // SAFETY: as the caller promises.
        unsafe { self.0.add(i) }
    }
}

/// Which matrix–vector kernel runs a product: picked once per call from the
/// CPU's features ([`Kernel::best`]); tests run each of [`Kernel::available`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// Plain Rust, any CPU.
    Scalar,
    /// AVX2 + FMA intrinsics (x86-64 only).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx2,
}

impl Kernel {
    fn best() -> Self {
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            return Kernel::Avx2;
        }
        Kernel::Scalar
    }

    /// The kernels this CPU can run, the fallback first.
    #[cfg(test)]
    fn available() -> Vec<Self> {
        let mut k = vec![Kernel::Scalar];
        if Kernel::best() != Kernel::Scalar {
            k.push(Kernel::best());
        }
        k
    }
}

/// How a product's input vector is quantised (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Input {
    /// Per 32 values, f16-rounded scale.
    #[default]
    Q8_0,
    /// Per 256 values, f32 scale.
    Q8K,
}

/// A quantised input vector, shared by every row of one product.
#[derive(Debug, Clone, Default)]
pub struct Q8Vec {
    input: Input,
    qs: Vec<i8>,
    /// One scale per 32 ([`Input::Q8_0`]) or 256 ([`Input::Q8K`]) values.
    d: Vec<f32>,
}

impl Q8Vec {
    /// Quantises `x` into this buffer (reusing its allocation).
    pub fn quantize(&mut self, x: &[f32], input: Input) {
        self.input = input;
        self.qs.resize(x.len(), 0);
        self.d.clear();
        match input {
            Input::Q8_0 => {
                assert!(x.len().is_multiple_of(QK));
                self.d.extend(
                    x.chunks_exact(QK)
                        .zip(self.qs.chunks_exact_mut(QK))
                        .map(|(x, q)| quantize_q8_0(x, q)),
                );
            }
            Input::Q8K => {
                assert!(x.len().is_multiple_of(QK_K));
                self.d.extend(
                    x.chunks_exact(QK_K)
                        .zip(self.qs.chunks_exact_mut(QK_K))
                        .map(|(x, q)| quantize_q8k(x, q)),
                );
            }
        }
    }
}

/// One 256-block quantised as ggml's `quantize_row_q8_K_reference` (and
/// candle) do: scale `-max / 127` for the value of largest magnitude.
fn quantize_q8k(x: &[f32], q: &mut [i8]) -> f32 {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        q.fill(0);
        return 0.0;
    }
    let iscale = -127f32 / max;
    for (q, &v) in q.iter_mut().zip(x) {
        *q = (iscale * v).round().clamp(-128.0, 127.0) as i8;
    }
    1.0 / iscale
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{GROUP, Q8Matrix, Q8Vec, QK, QK_K};

    pub fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// The 8 f32 lane sums of one block's products (candle's
    /// `mul_sum_i8_pairs_float`): |w| (unsigned) times x with w's sign.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn block_lanes(w: __m256i, x: __m256i) -> __m256 {
        let aw = _mm256_sign_epi8(w, w);
        let sx = _mm256_sign_epi8(x, w);
        let pairs = _mm256_maddubs_epi16(aw, sx);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), pairs))
    }

    /// candle's `hsum_float_8`, same order.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(x: __m256) -> f32 {
        let r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
        let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        let r = _mm_add_ss(r, _mm_movehdup_ps(r));
        _mm_cvtss_f32(r)
    }

    /// The four rows of packed group `g`, [`Input::Q8_0`]: each input block
    /// is loaded once for all of them and each row keeps its own FMA chain.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; `g` is a group of `m`, `x` has `m`'s
    /// column count.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn group_q8_0(m: &Q8Matrix, g: usize, x: &Q8Vec) -> [f32; GROUP] {
        let nb = m.cols / QK;
        let mut acc = [_mm256_setzero_ps(); GROUP];
        let base = g * nb * GROUP;
        let (w, xq) = (m.qs.as_ptr(), x.qs.as_ptr());
        for b in 0..nb {
            // SAFETY: block b of the input and of the group are in bounds.
            let xv = unsafe { _mm256_loadu_si256(xq.add(b * QK) as *const __m256i) };
            let xd = x.d[b];
            let at = base + b * GROUP;
            for (r, acc) in acc.iter_mut().enumerate() {
                let wv = unsafe { _mm256_loadu_si256(w.add((at + r) * QK) as *const __m256i) };
                let d = _mm256_set1_ps(m.d[at + r] * xd);
                *acc = _mm256_fmadd_ps(d, block_lanes(wv, xv), *acc);
            }
        }
        acc.map(|a| hsum(a))
    }

    /// The four rows of packed group `g`, [`Input::Q8K`]: per 32-block, the
    /// four rows' exact integer dot products are reduced into one vector
    /// and added as `fma(isum, d_w * d_x, acc)`, one lane (chain) per row.
    ///
    /// # Safety
    /// As [`group_q8_0`].
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn group_q8k(m: &Q8Matrix, g: usize, x: &Q8Vec) -> [f32; GROUP] {
        let nb = m.cols / QK;
        let base = g * nb * GROUP;
        let (w, xq) = (m.qs.as_ptr(), x.qs.as_ptr());
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm_setzero_ps();
        for b in 0..nb {
            // SAFETY: block b of the input and of the group are in bounds.
            let xv = unsafe { _mm256_loadu_si256(xq.add(b * QK) as *const __m256i) };
            // |x| as unsigned, the sign moved onto the weights: Q8_K inputs
            // may be -128, Q8_0 weights are within ±127.
            let ax = _mm256_sign_epi8(xv, xv);
            let at = base + b * GROUP;
            let isum = |r: usize| {
                let wv = unsafe { _mm256_loadu_si256(w.add((at + r) * QK) as *const __m256i) };
                _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(wv, xv)), ones)
            };
            let h01 = _mm256_hadd_epi32(isum(0), isum(1));
            let h23 = _mm256_hadd_epi32(isum(2), isum(3));
            let h = _mm256_hadd_epi32(h01, h23);
            let isums = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
            // SAFETY: the group's 4 scales of block b are in bounds.
            let dw = unsafe { _mm_loadu_ps(m.d.as_ptr().add(at)) };
            let d = _mm_mul_ps(dw, _mm_set1_ps(x.d[b * QK / QK_K]));
            acc = _mm_fmadd_ps(_mm_cvtepi32_ps(isums), d, acc);
        }
        let mut out = [0f32; GROUP];
        // SAFETY: `out` holds 4 f32.
        unsafe { _mm_storeu_ps(out.as_mut_ptr(), acc) };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        // A small LCG: deterministic values in [-1, 1) with some outliers.
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|i| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let v = (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0;
                if i % 97 == 0 { v * 8.0 } else { v }
            })
            .collect()
    }

    /// Every row's product over the same quantized values in f64: what a
    /// kernel computes, up to f32 rounding of its partial sums.
    fn exact_q8(m: &Q8Matrix, row: usize, x: &Q8Vec) -> f64 {
        (0..m.cols / QK)
            .map(|b| {
                let at = m.block_index(row, b);
                let sumi: i64 = (0..QK)
                    .map(|i| m.qs[at * QK + i] as i64 * x.qs[b * QK + i] as i64)
                    .sum();
                let xd = match x.input {
                    Input::Q8_0 => x.d[b],
                    Input::Q8K => x.d[b * QK / QK_K],
                };
                sumi as f64 * m.d[at] as f64 * xd as f64
            })
            .sum()
    }

    /// The sum of the products' magnitudes, the scale of a row's rounding.
    fn magnitude(m: &Q8Matrix, row: usize, x: &Q8Vec) -> f64 {
        (0..m.cols)
            .map(|c| {
                let at = m.block_index(row, c / QK);
                let xd = match x.input {
                    Input::Q8_0 => x.d[c / QK],
                    Input::Q8K => x.d[c / QK_K],
                };
                (m.qs[at * QK + c % QK] as f64 * m.d[at] as f64 * x.qs[c] as f64 * xd as f64).abs()
            })
            .sum()
    }

    /// Each kernel this CPU can run (the scalar fallback always, AVX2 where
    /// present), on one and two threads, against the f64 product of the same
    /// quantized values and against each other. The tolerance: each kernel
    /// sums `cols / 32` block products in f32 in its own order, so it is off
    /// by a few ulps of the sum of magnitudes (measured: at most 1.9e-8 of
    /// it here, both kernels); 1e-5 of it leaves a wide margin and still catches a wrong
    /// block, scale or sign (errors of whole products, ≳ 1e-2 of it).
    #[test]
    fn every_kernel_this_cpu_runs_matches_the_f64_product() {
        let kernels = Kernel::available();
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            kernels.contains(&Kernel::Avx2),
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
        );
        for (rows, cols, input) in [(37, 96, Input::Q8_0), (300, 512, Input::Q8K)] {
            let m = Q8Matrix::quantize(rows, cols, &data(rows * cols, 11));
            assert_eq!(m.input, input);
            let xf = data(cols, 12);
            let mut xq = Q8Vec::default();
            xq.quantize(&xf, input);
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            let mut outs = Vec::new();
            for &k in &kernels {
                for threads in [1, 2] {
                    let mut out = vec![0f32; rows];
                    pool.install(|| m.matvec_with(k, &xf, &mut xq.clone(), &mut out, threads));
                    for (r, &o) in out.iter().enumerate() {
                        let want = exact_q8(&m, r, &xq);
                        let mag = magnitude(&m, r, &xq);
                        let tol = 1e-5 * mag.max(1e-3);
                        assert!(
                            (o as f64 - want).abs() <= tol,
                            "{k:?}, {threads} thread(s), {input:?}, row {r}: {o} vs {want}"
                        );
                    }
                    outs.push((k, out));
                }
            }
            for (k, out) in &outs[1..] {
                for (r, (a, b)) in out.iter().zip(&outs[0].1).enumerate() {
                    let tol = 1e-5 * a.abs().max(b.abs()).max(1.0);
                    assert!((a - b).abs() <= tol, "{k:?} vs scalar, row {r}: {a} {b}");
                }
            }
        }
    }

    #[test]
    fn matvec_matches_the_scalar_reference_and_f32() {
        // 96 columns: Q8_0 input; 512: Q8_K input (whole 256-blocks).
        for (rows, cols, input) in [(37, 96, Input::Q8_0), (13, 512, Input::Q8K)] {
            let w = data(rows * cols, 1);
            let m = Q8Matrix::quantize(rows, cols, &w);
            assert_eq!(m.input, input);
            let xf = data(cols, 2);
            let mut xq = Q8Vec::default();
            for threads in [1, 2] {
                let mut out = vec![0f32; rows];
                m.matvec(&xf, &mut xq, &mut out, threads);
                for (r, &o) in out.iter().enumerate() {
                    let reference = m.dot_scalar(r, &xq);
                    let tol = 1e-5 * reference.abs().max(1.0);
                    assert!((o - reference).abs() <= tol, "{o} {reference}");
                    // Quantisation error: a few percent of the products' scale.
                    let exact: f32 = (0..cols).map(|c| w[r * cols + c] * xf[c]).sum();
                    let scale: f32 = (0..cols).map(|c| (w[r * cols + c] * xf[c]).abs()).sum();
                    assert!((o - exact).abs() < 0.03 * scale, "{o} {exact} {scale}");
                }
            }
        }
    }

    /// The batched product against one matrix–vector product per input,
    /// for each kernel, one and two threads, row counts with a partial last
    /// group, both input formats. Tolerance 0: both run the same kernel on
    /// the same quantised values in the same order (a pairing bug — input
    /// `i`'s row written to input `j`, a skipped group — moves whole values).
    #[test]
    fn batched_product_equals_one_product_per_input() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for (rows, cols) in [(37, 96), (1030, 64), (300, 512)] {
            let m = Q8Matrix::quantize(rows, cols, &data(rows * cols, 21));
            for n in [1, 3, 8] {
                let xs = data(n * cols, 22 + n as u32);
                for &k in &Kernel::available() {
                    for threads in [1, 2] {
                        let mut out = vec![f32::NAN; n * rows];
                        let mut xq = Vec::new();
                        pool.install(|| m.matmul_with(k, &xs, n, &mut xq, &mut out, threads));
                        for i in 0..n {
                            let mut one = vec![0f32; rows];
                            m.matvec_with(
                                k,
                                &xs[i * cols..(i + 1) * cols],
                                &mut Q8Vec::default(),
                                &mut one,
                                1,
                            );
                            assert_eq!(
                                &out[i * rows..(i + 1) * rows],
                                &one[..],
                                "{k:?} {rows}x{cols}, n = {n}, input {i}, {threads} thread(s)"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn q8k_input_maps_the_largest_magnitude_to_127() {
        let mut x: Vec<f32> = (0..256).map(|i| i as f32 / 256.0).collect();
        x[7] = -2.0;
        let mut q = Q8Vec::default();
        q.quantize(&x, Input::Q8K);
        // ggml's sign convention: scale = 1 / (-127 / max), here positive.
        assert_eq!(q.d, [1.0 / (-127f32 / -2.0)]);
        assert_eq!((q.qs[7], q.qs[0], q.qs[255]), (-127, 0, 63));
    }

    #[test]
    fn large_matvec_splits_rows_like_one_thread() {
        let (rows, cols) = (1030, 64);
        let m = Q8Matrix::quantize(rows, cols, &data(rows * cols, 3));
        let x = data(cols, 4);
        let mut xq = Q8Vec::default();
        let (mut one, mut two) = (vec![0f32; rows], vec![0f32; rows]);
        m.matvec(&x, &mut xq, &mut one, 1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| m.matvec(&x, &mut xq, &mut two, 2));
        assert_eq!(one, two);
    }

    #[test]
    fn ggml_bytes_round_trip() {
        let (rows, cols) = (3, 64);
        let m = Q8Matrix::quantize(rows, cols, &data(rows * cols, 5));
        let mut bytes = Vec::new();
        for r in 0..rows {
            for b in 0..cols / QK {
                let at = m.block_index(r, b);
                bytes.extend(f16::from_f32(m.d[at]).to_le_bytes());
                bytes.extend(m.qs[at * QK..(at + 1) * QK].iter().map(|&v| v as u8));
            }
        }
        let back = Q8Matrix::from_ggml_q8_0(rows, cols, &bytes);
        assert_eq!((&back.qs, &back.d), (&m.qs, &m.d));
        let (rows, cols) = (8, 64);
        let a = Q8Matrix::quantize(rows, cols, &data(rows * cols, 6));
        let b = Q8Matrix::quantize(rows, cols, &data(rows * cols, 7));
        let fused = Q8Matrix::concat_rows(&[a.clone(), b.clone()]);
        assert_eq!(fused.rows(), 16);
        let mut x = Q8Vec::default();
        x.quantize(&data(cols, 8), Input::Q8_0);
        for r in 0..rows {
            assert_eq!(fused.dot_scalar(r, &x), a.dot_scalar(r, &x));
            assert_eq!(fused.dot_scalar(rows + r, &x), b.dot_scalar(r, &x));
        }
    }
}
