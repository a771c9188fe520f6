//! Products of a few input rows with a large row-major weight matrix: one decoding step.
//!
//! A decoding step of MusicGen multiplies 2 rows (the conditional and the unconditional branch
//! of classifier-free guidance) with every weight of the decoder, so it is bound by how fast the
//! weights stream from memory, not by arithmetic. [`rows_matmul`] reads each weight row once for
//! all inputs, splits the output rows into a few contiguous spans per thread, and on CPUs with
//! AVX-512 walks four weight rows at a time with software prefetch, loads aligned to cache lines.
//!
//! Measured on a 2-core Xeon with AVX-512 (a CPU without it runs the portable kernel), 1.41 GB
//! of decoder-shaped matrices, 2 input rows:
//! a plain read of the memory reaches 23 GB/s; the portable kernel (one row at a time, AVX2
//! through `pulp`) 14.5 GB/s; the four-row AVX-512 kernel with prefetch 24 GB/s. OpenBLAS's
//! `sgemm` with 2 rows reaches only 10 GB/s on these shapes.
//!
//! A CPU shortcut: its caller (`models::nn::linear`) asks `models::nn::fast_path` first, so
//! `TUNELAB_GENERIC_OPS=1` leaves these products to candle.
//!
//! The AVX-512 kernel is `unsafe` (CPU intrinsics): it runs only after the CPU reported the
//! feature at run time, and reads only inside slices whose lengths are checked first.
#![allow(unsafe_code)]

use crate::models::nn::{team, Shortcut};

/// `y[m, o] = Σ_i x[m, i] · w[o, i]` for a row-major `w` `[out, in]` and `x` `[m, in]`; returns
/// `y` row-major `[m, out]`.
///
/// # Panics
/// Never for consistent sizes; `w` must hold `out_dim · in_dim` values and `x` `m · in_dim`
/// (checked by the caller, asserted in debug builds).
pub fn rows_matmul(w: &[f32], x: &[f32], m: usize, in_dim: usize, out_dim: usize) -> Vec<f32> {
    debug_assert!(w.len() >= out_dim * in_dim && x.len() >= m * in_dim);
    Shortcut::Gemv.entered();
    if m == 0 || out_dim == 0 {
        return Vec::new();
    }
    // A few contiguous spans per thread of the decoding team (`models::nn::team`, which stays
    // awake between a step's products); spans are whole groups of four rows.
    let threads = team::threads();
    let block = out_dim
        .div_ceil(4 * threads)
        .next_multiple_of(ROWS)
        .max(ROWS);
    let mut yt = vec![0f32; out_dim * m]; // [out, m]
    let fast = avx512::available();
    team::for_each_chunk(&mut yt, block * m, |b, chunk| {
        let first = b * block;
        let rows = chunk.len() / m;
        let w = &w[first * in_dim..(first + rows) * in_dim];
        if fast {
            avx512::block(w, x, m, in_dim, chunk);
        } else {
            portable_block(w, x, m, in_dim, chunk);
        }
    });
    let mut y = vec![0f32; m * out_dim];
    for o in 0..out_dim {
        for j in 0..m {
            y[j * out_dim + o] = yt[o * m + j];
        }
    }
    y
}

/// Weight rows walked together by the AVX-512 kernel.
const ROWS: usize = 4;

/// `chunk[r · m + j] = w[r] · x[j]` for the rows of `w` (row-major, `in_dim` wide).
fn portable_block(w: &[f32], x: &[f32], m: usize, in_dim: usize, chunk: &mut [f32]) {
    pulp::Arch::new().dispatch(RowsBlock {
        w,
        x,
        m,
        in_dim,
        chunk,
    })
}

struct RowsBlock<'a> {
    w: &'a [f32],
    x: &'a [f32],
    m: usize,
    in_dim: usize,
    chunk: &'a mut [f32],
}

impl pulp::WithSimd for RowsBlock<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let n = self.in_dim;
        for (row, ys) in self.w.chunks_exact(n).zip(self.chunk.chunks_mut(self.m)) {
            let (wv, wt) = S::as_simd_f32s(row);
            // Two inputs per pass: each weight vector is loaded once for both (decoding with
            // classifier-free guidance has exactly two rows).
            let mut j = 0;
            while j < self.m {
                let pair = j + 1 < self.m;
                let x0 = &self.x[j * n..(j + 1) * n];
                let x1 = if pair {
                    &self.x[(j + 1) * n..(j + 2) * n]
                } else {
                    x0
                };
                let (x0v, x0t) = S::as_simd_f32s(x0);
                let (x1v, x1t) = S::as_simd_f32s(x1);
                let z = simd.splat_f32s(0.0);
                let (mut a0, mut a1, mut b0, mut b1) = (z, z, z, z);
                let (w2, wr) = wv.as_chunks::<2>();
                let (p2, _) = x0v.as_chunks::<2>();
                let (q2, _) = x1v.as_chunks::<2>();
                for ((w, p), q) in w2.iter().zip(p2).zip(q2) {
                    a0 = simd.mul_add_e_f32s(w[0], p[0], a0);
                    a1 = simd.mul_add_e_f32s(w[1], p[1], a1);
                    b0 = simd.mul_add_e_f32s(w[0], q[0], b0);
                    b1 = simd.mul_add_e_f32s(w[1], q[1], b1);
                }
                if let (Some(w), Some(p), Some(q)) = (wr.first(), x0v.last(), x1v.last()) {
                    a0 = simd.mul_add_e_f32s(*w, *p, a0);
                    b0 = simd.mul_add_e_f32s(*w, *q, b0);
                }
                let ta: f32 = wt.iter().zip(x0t).map(|(a, b)| a * b).sum();
                let tb: f32 = wt.iter().zip(x1t).map(|(a, b)| a * b).sum();
                ys[j] = simd.reduce_sum_f32s(simd.add_f32s(a0, a1)) + ta;
                if pair {
                    ys[j + 1] = simd.reduce_sum_f32s(simd.add_f32s(b0, b1)) + tb;
                }
                j += 2;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    /// f32 lanes in one AVX-512 register.
    const LANES: usize = 16;
    /// How far ahead of the loads the weight rows are prefetched, in floats (2 KiB; measured
    /// best of 64–512 floats: 24.6 GB/s against 21.7 without prefetch).
    const AHEAD: usize = 512;

    pub fn available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
    }

    /// The AVX-512 form of [`super::portable_block`] (which it falls back to without AVX-512).
    pub fn block(w: &[f32], x: &[f32], m: usize, in_dim: usize, chunk: &mut [f32]) {
        let rows = chunk.len() / m;
        if !available() || w.len() != rows * in_dim || x.len() < m * in_dim {
            return super::portable_block(w, x, m, in_dim, chunk);
        }
        let mut r = 0;
        while r < rows {
            let take = (rows - r).min(super::ROWS);
            let mut j = 0;
            while j < m {
                let x0 = &x[j * in_dim..(j + 1) * in_dim];
                let x1 = if j + 1 < m {
                    &x[(j + 1) * in_dim..(j + 2) * in_dim]
                } else {
                    x0
                };
                let w = &w[r * in_dim..(r + take) * in_dim];
                // SAFETY: the CPU has AVX-512F (checked above); `w` holds `take` rows of
                // `in_dim` floats and `x0`/`x1` `in_dim` floats each; the kernel's masked loads
                // read nothing else (prefetches are hints and never fault).
                let (a, b) = unsafe { dot_rows(w, take, x0, x1, j == 0) };
                for t in 0..take {
                    chunk[(r + t) * m + j] = a[t];
                    if j + 1 < m {
                        chunk[(r + t) * m + j + 1] = b[t];
                    }
                }
                j += 2;
            }
            r += take;
        }
    }

    /// Dot products of `take` (1–4) rows of `w` with `x0` and with `x1`.
    #[target_feature(enable = "avx512f")]
    unsafe fn dot_rows(
        w: &[f32],
        take: usize,
        x0: &[f32],
        x1: &[f32],
        prefetch: bool,
    ) -> ([f32; 4], [f32; 4]) {
        let n = x0.len();
        let mut a = [0f32; 4];
        let mut b = [0f32; 4];
        match take {
            4 => {
                let rows = [&w[..n], &w[n..2 * n], &w[2 * n..3 * n], &w[3 * n..4 * n]];
                // SAFETY: forwarded from the caller.
                unsafe { kernel::<4>(rows, x0, x1, prefetch, &mut a, &mut b) }
            }
            _ => {
                for t in 0..take {
                    let row = [&w[t * n..(t + 1) * n]];
                    let (mut a1, mut b1) = ([0f32], [0f32]);
                    // SAFETY: forwarded from the caller.
                    unsafe { kernel::<1>(row, x0, x1, prefetch, &mut a1, &mut b1) };
                    a[t] = a1[0];
                    b[t] = b1[0];
                }
            }
        }
        (a, b)
    }

    /// `a[r] = rows[r] · x0`, `b[r] = rows[r] · x1` (into the first `R` entries).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn kernel<const R: usize>(
        rows: [&[f32]; R],
        x0: &[f32],
        x1: &[f32],
        prefetch: bool,
        a: &mut [f32],
        b: &mut [f32],
    ) {
        let n = x0.len();
        debug_assert!(x1.len() == n && rows.iter().all(|r| r.len() == n));
        let mut acc0 = [_mm512_setzero_ps(); R];
        let mut acc1 = [_mm512_setzero_ps(); R];
        // Weight loads on 64-byte boundaries (a load across two cache lines costs ≈ 10 % of
        // the bandwidth here): the first `lead` floats, up to the boundary, are one masked step.
        // Rows `n` floats apart share the boundary when `n` is a multiple of 16. That step puts
        // float `i` in lane `(i − lead) mod 16`, as every later step does, and the lanes are
        // rotated back before they are summed: each lane then sums floats `c, c + 16, …` in
        // order whatever the alignment, so the result does not depend on where the weights
        // happen to lie in memory (two copies of a model give the same bits).
        let lead = (64 - rows[0].as_ptr() as usize % 64) % 64 / 4;
        let mut step = |i: usize, back: usize, mask: __mmask16| {
            // SAFETY: `mask` selects lanes whose floats `i − back + lane` lie in `0..n`;
            // masked-off lanes are not read. Every slice holds `n` floats; a prefetch past the
            // end cannot fault.
            unsafe {
                let p = _mm512_maskz_loadu_ps(mask, x0.as_ptr().wrapping_add(i).wrapping_sub(back));
                let q = _mm512_maskz_loadu_ps(mask, x1.as_ptr().wrapping_add(i).wrapping_sub(back));
                for r in 0..R {
                    let row = rows[r].as_ptr().wrapping_add(i).wrapping_sub(back);
                    if prefetch {
                        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(AHEAD).cast());
                    }
                    let v = _mm512_maskz_loadu_ps(mask, row);
                    acc0[r] = _mm512_fmadd_ps(v, p, acc0[r]);
                    acc1[r] = _mm512_fmadd_ps(v, q, acc1[r]);
                }
            }
        };
        let lanes = |count: usize| -> __mmask16 { ((1u32 << count) - 1) as __mmask16 };
        let mut i = 0;
        let mut rotate = 0;
        if lead > 0 && lead < n {
            // Floats 0..lead into the top `lead` lanes.
            step(0, LANES - lead, lanes(lead) << (LANES - lead));
            i = lead;
            rotate = lead;
        }
        while i + LANES <= n {
            step(i, 0, lanes(LANES));
            i += LANES;
        }
        if i < n {
            step(i, 0, lanes(n - i));
        }
        // Lane `l` ← lane `(l − rotate) mod 16`: float `i` back in lane `i mod 16`.
        let from: [i32; LANES] = std::array::from_fn(|l| ((l + LANES - rotate) % LANES) as i32);
        // SAFETY: `from` holds 16 i32.
        let from = unsafe { _mm512_loadu_si512(from.as_ptr().cast()) };
        for r in 0..R {
            a[r] = _mm512_reduce_add_ps(_mm512_permutexvar_ps(from, acc0[r]));
            b[r] = _mm512_reduce_add_ps(_mm512_permutexvar_ps(from, acc1[r]));
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx512 {
    pub fn available() -> bool {
        false
    }
    pub fn block(w: &[f32], x: &[f32], m: usize, in_dim: usize, chunk: &mut [f32]) {
        super::portable_block(w, x, m, in_dim, chunk)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `y = x · wᵀ` for row-major `w` `[out, n]` and `x` `[m, n]`, the plain way.
    pub(crate) fn naive(w: &[f32], x: &[f32], m: usize, n: usize, out: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * out];
        for j in 0..m {
            for o in 0..out {
                y[j * out + o] = (0..n).map(|i| x[j * n + i] * w[o * n + i]).sum();
            }
        }
        y
    }

    /// `len` values in [-1, 1] from a xorshift of `seed`.
    pub(crate) fn values(seed: u32, len: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).max(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// Runs `check(w, x, m, in_dim, out_dim, want)` on every case: widths with and without a
    /// multiple of 16 (masked steps), weights starting off a 64-byte boundary (the aligning
    /// first step), output counts that leave 1–3 rows after the groups of four, odd and even
    /// input rows.
    fn for_each_case(check: impl Fn(&[f32], &[f32], usize, usize, usize, &[f32])) {
        let cases = [
            (1, 64, 9),
            (2, 1024, 37),
            (3, 70, 130),
            (5, 48, 6),
            (2, 16, 1),
            (2, 7, 5),
        ];
        for (&(m, n, out), skip) in cases.iter().zip([0, 1, 3, 0, 2, 1]) {
            let w = values(1, out * n + skip);
            let w = &w[skip..];
            let x = values(2, m * n);
            let want = naive(w, &x, m, n, out);
            check(w, &x, m, n, out, &want);
        }
    }

    /// `rows_matmul` takes the AVX-512 kernel where the CPU has it and the portable one
    /// elsewhere, so this alone never reaches the AVX-512 kernel on a CPU without it: that one
    /// has its own test below.
    /// The same weights at every offset from a cache line give the same bits (the AVX-512
    /// kernel aligns its loads, and once summed its lanes in an order that depended on it: two
    /// copies of one model disagreed in the last bits).
    #[test]
    fn the_product_does_not_depend_on_where_the_weights_lie() {
        let (m, n, out) = (2, 200, 9);
        let w = values(5, out * n);
        let x = values(6, m * n);
        let first = rows_matmul(&w, &x, m, n, out);
        for offset in 0..16 {
            let mut buffer = vec![0f32; offset + w.len()];
            buffer[offset..].copy_from_slice(&w);
            let y = rows_matmul(&buffer[offset..], &x, m, n, out);
            let same = y
                .iter()
                .zip(&first)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "offset {offset}: {y:?} vs {first:?}");
        }
    }

    #[test]
    fn rows_matmul_and_the_portable_kernel_equal_the_naive_product() {
        for_each_case(|w, x, m, n, out, want| {
            let got = rows_matmul(w, x, m, n, out);
            let mut portable = vec![0f32; out * m];
            portable_block(w, x, m, n, &mut portable);
            for j in 0..m {
                for o in 0..out {
                    let tol = 1e-5 * n as f32;
                    let v = want[j * out + o];
                    assert!(
                        (got[j * out + o] - v).abs() < tol,
                        "{m}x{n}x{out} [{j},{o}]"
                    );
                    assert!((portable[o * m + j] - v).abs() < tol, "portable [{j},{o}]");
                }
            }
        });
    }

    /// The AVX-512 kernel, called directly (`block` falls back to the portable kernel without
    /// AVX-512F, hence the check). A CPU without AVX-512F cannot run it, so it is ignored by
    /// default, visibly, rather than passing there without testing anything; on a CPU with it,
    /// the test above reaches this kernel too.
    #[cfg(target_arch = "x86_64")]
    #[test]
    #[ignore = "needs a CPU with AVX-512F (fails without): run it there with `-- --ignored`"]
    fn the_avx512_kernel_equals_the_naive_product() {
        assert!(
            avx512::available(),
            "this CPU has no AVX-512F: the AVX-512 kernel cannot run here"
        );
        for_each_case(|w, x, m, n, out, want| {
            let mut chunk = vec![0f32; out * m];
            avx512::block(w, x, m, n, &mut chunk);
            for j in 0..m {
                for o in 0..out {
                    let tol = 1e-5 * n as f32;
                    let v = want[j * out + o];
                    assert!(
                        (chunk[o * m + j] - v).abs() < tol,
                        "avx512 {m}x{n}x{out} [{j},{o}]"
                    );
                }
            }
        });
    }
}
