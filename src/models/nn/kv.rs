//! A decoding step's self-attention cache in f16 on the CPU ([`HalfKv`]).
//!
//! With 8- or 4-bit weights, the KV cache is what a MusicGen decoding step reads most after the
//! weights: every step reads all keys and values so far, for both rows of classifier-free
//! guidance (musicgen-small: 24 layers · 2 · 2 · 1024 values a position, 393 KB in f32; at the
//! 250th position of a 10 s clip that is 98 MB a step against 189 MB of 4-bit weights). Stored
//! in f16 it is half that. With AVX2, FMA and F16C (every x86-64 CPU with AVX2 in practice) a
//! head's keys and values are widened eight at a time in registers as the scores and the
//! weighted sum read them (`x86` below), so a step reads each cached value once, as two bytes;
//! elsewhere each head is first widened into an f32 scratch. The arithmetic is f32 either way.
//!
//! f16 keeps 11 significant bits: a key or value is rounded by at most 2⁻¹¹ of itself (values
//! of a layer norm's scale stay far inside f16's range; one beyond it becomes ±inf and is an
//! error, never a silent NaN). Generation with f32 weights keeps the f32 cache (the parity
//! suite runs on it); the quality figures of the quantised modes include this rounding.

use std::cell::RefCell;

use candle_core::Tensor;
use half::f16;
use half::slice::HalfFloatSliceExt;

use super::attention::Head;
use super::cpu::Shortcut;
use crate::error::{Error, Result};

/// Keys and values `[B, heads, capacity, D]` in f16, the first `len` positions filled.
#[derive(Debug, Clone)]
pub struct HalfKv {
    capacity: usize,
    /// `(B, heads, D)`, fixed by the first append.
    dims: Option<(usize, usize, usize)>,
    len: usize,
    k: Vec<f16>,
    v: Vec<f16>,
}

thread_local! {
    /// One head's keys and values widened to f32 (reused across calls on a thread).
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl HalfKv {
    /// An empty cache for up to `capacity` positions.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            dims: None,
            len: 0,
            k: Vec::new(),
            v: Vec::new(),
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `k`, `v` `[B, heads, S, D]` (f32, any device-CPU layout).
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<()> {
        let (b, h, s, d) = k.dims4()?;
        if v.dims() != k.dims() {
            return Err(Error::InvalidRequest(format!(
                "KV cache: keys {:?} and values {:?} differ in shape",
                k.dims(),
                v.dims()
            )));
        }
        match self.dims {
            None => {
                self.dims = Some((b, h, d));
                let n = b * h * self.capacity * d;
                self.k = vec![f16::ZERO; n];
                self.v = vec![f16::ZERO; n];
            }
            Some(dims) if dims != (b, h, d) => {
                return Err(Error::InvalidRequest(format!(
                    "KV cache holds [{}, {}, _, {}], got {:?}",
                    dims.0,
                    dims.1,
                    dims.2,
                    k.dims()
                )));
            }
            Some(_) => {}
        }
        if self.len + s > self.capacity {
            return Err(Error::InvalidRequest(format!(
                "KV cache of {} positions cannot take {} more after {}",
                self.capacity, s, self.len
            )));
        }
        let kx = k.flatten_all()?.to_vec1::<f32>()?;
        let vx = v.flatten_all()?.to_vec1::<f32>()?;
        let max = f16::MAX.to_f32();
        if let Some(bad) = kx
            .iter()
            .chain(&vx)
            .find(|x| !x.is_finite() || x.abs() > max)
        {
            return Err(Error::InvalidRequest(format!(
                "KV cache: a key or value of {bad} does not fit f16 (the model's activations are out of range)"
            )));
        }
        for bh in 0..b * h {
            let at = (bh * self.capacity + self.len) * d;
            let from = bh * s * d..(bh + 1) * s * d;
            self.k[at..at + s * d].convert_from_f32_slice(&kx[from.clone()]);
            self.v[at..at + s * d].convert_from_f32_slice(&vx[from]);
        }
        self.len += s;
        Ok(())
    }

    /// Everything held, widened to f32 `[B, heads, len, D]` tensors (a prefill of several
    /// positions attends through the ordinary path).
    pub fn tensors(&self, device: &candle_core::Device) -> Result<(Tensor, Tensor)> {
        let (b, h, d) = self.dims.ok_or_else(empty)?;
        let widen = |x: &[f16]| {
            let mut out = vec![0f32; b * h * self.len * d];
            for (bh, o) in out.chunks_exact_mut(self.len * d).enumerate() {
                let at = bh * self.capacity * d;
                x[at..at + self.len * d].convert_to_f32_slice(o);
            }
            Tensor::from_vec(out, (b, h, self.len, d), device)
        };
        Ok((widen(&self.k)?, widen(&self.v)?))
    }

    /// `softmax(q·kᵀ)·v` of one query position `q` `[B, heads, 1, D]` (already scaled) over
    /// every position held, no mask: a decoding step's self-attention.
    pub fn attend(&self, q: &Tensor) -> Result<Tensor> {
        let (b, h, d) = self.dims.ok_or_else(empty)?;
        let (qb, qh, s, qd) = q.dims4()?;
        if (qb, qh, s, qd) != (b, h, 1, d) {
            return Err(Error::InvalidRequest(format!(
                "KV cache of [{b}, {h}, _, {d}] attended by a query of {:?}",
                q.dims()
            )));
        }
        let qv = q.flatten_all()?.to_vec1::<f32>()?;
        let (l, cap) = (self.len, self.capacity);
        Shortcut::SingleQueryAttention.entered();
        let mut out = vec![0f32; b * h * d];
        super::team::for_each_chunk(&mut out, d, |bh, o| {
            let at = bh * cap * d;
            let (k, v) = (&self.k[at..at + l * d], &self.v[at..at + l * d]);
            let q = &qv[bh * d..(bh + 1) * d];
            if attend_in_registers(q, k, v, o) {
                return;
            }
            SCRATCH.with_borrow_mut(|(ks, vs)| {
                ks.resize(l * d, 0.0);
                vs.resize(l * d, 0.0);
                k.convert_to_f32_slice(ks);
                v.convert_to_f32_slice(vs);
                Head {
                    q,
                    k: ks,
                    k_stride: d,
                    v: vs,
                    v_stride: d,
                    len: l,
                    mask: None,
                }
                .attend(o);
            })
        });
        Ok(Tensor::from_vec(out, (b, h, 1, d), q.device())?)
    }
}

fn empty() -> Error {
    Error::InvalidRequest("KV cache: nothing appended yet".into())
}

/// `o = softmax(q·kᵀ)·v` for one head (`k`, `v`: `o.len()` values a position) with the f16
/// values widened in registers (`x86`); false, leaving `o` alone, where the CPU lacks the
/// instructions or the head's width is not a multiple of 8.
#[allow(unsafe_code)]
fn attend_in_registers(q: &[f32], k: &[f16], v: &[f16], o: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if x86::available() && q.len() == o.len() && q.len().is_multiple_of(8) {
        let d = q.len();
        let mut p = vec![0f32; k.len() / d];
        if v.len() != k.len() {
            return false;
        }
        let wide = x86::avx512() && d.is_multiple_of(16);
        // SAFETY: the CPU has AVX2, FMA and F16C (checked above), and AVX-512F where `wide`;
        // `k` and `v` hold `p.len()` rows of `d` values, `d` a multiple of 8 (of 16 where
        // `wide`), as `q` and `o` hold.
        unsafe {
            if wide {
                x86::scores16(q, k, &mut p)
            } else {
                x86::scores(q, k, &mut p)
            }
        };
        if super::simd::wide(
            #[inline(always)]
            || super::attention::softmax_scores(&mut p),
        ) {
            // SAFETY: as above.
            unsafe {
                if wide {
                    x86::weighted_sum16(&p, v, o)
                } else {
                    x86::weighted_sum(&p, v, o)
                }
            };
        }
        return true;
    }
    false
}

/// One head's scores and weighted sum read straight from the f16 cache: eight values widened
/// a time with F16C (`vcvtph2ps`) and used at once, so no widened copy is written and read back.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    use half::f16;

    pub fn available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
        })
    }

    /// Whether the CPU has AVX-512F (for the 16-wide forms).
    pub fn avx512() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
    }

    /// Eight f16 at `at` widened to f32.
    #[inline(always)]
    unsafe fn widen(at: *const f16) -> __m256 {
        // SAFETY: the caller reads eight values inside its slice; `f16` is a transparent u16.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(at.cast())) }
    }

    /// `p[i] = q · k[i]` for the `p.len()` rows of `k` (`q.len()` values each, a multiple of 8).
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `k` holds `p.len() · q.len()` values.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn scores(q: &[f32], k: &[f16], p: &mut [f32]) {
        let d = q.len();
        debug_assert!(d.is_multiple_of(8) && k.len() >= p.len() * d);
        // Four keys a pass: four independent chains, and one set of horizontal sums for the
        // four (`vhaddps` twice over, then the two 128-bit halves added).
        let first = p.len() / 4 * 4;
        let mut quads = p.chunks_exact_mut(4);
        for (n, out) in (&mut quads).enumerate() {
            let rows = k[4 * n * d..(4 * n + 4) * d].as_ptr();
            let mut acc = [_mm256_setzero_ps(); 4];
            for c in (0..d).step_by(8) {
                // SAFETY: `c + 8 ≤ d`: inside each of the four rows and inside `q`.
                unsafe {
                    let x = _mm256_loadu_ps(q.as_ptr().add(c));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm256_fmadd_ps(widen(rows.add(r * d + c)), x, *acc);
                    }
                }
            }
            let t = _mm256_hadd_ps(
                _mm256_hadd_ps(acc[0], acc[1]),
                _mm256_hadd_ps(acc[2], acc[3]),
            );
            let s = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps::<1>(t));
            // SAFETY: `out` holds four values.
            unsafe { _mm_storeu_ps(out.as_mut_ptr(), s) };
        }
        for (i, p) in quads.into_remainder().iter_mut().enumerate() {
            let i = first + i;
            let row = k[i * d..(i + 1) * d].as_ptr();
            let mut acc = _mm256_setzero_ps();
            for c in (0..d).step_by(8) {
                // SAFETY: `c + 8 ≤ d`, inside the row and inside `q`.
                unsafe {
                    let x = _mm256_loadu_ps(q.as_ptr().add(c));
                    acc = _mm256_fmadd_ps(widen(row.add(c)), x, acc);
                }
            }
            let s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            *p = _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
        }
    }

    /// `out += Σ_i p[i] · v[i]` for the `p.len()` rows of `v` (`out.len()` values each, a
    /// multiple of 8), 32 outputs a pass kept in registers.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `v` holds `p.len() · out.len()` values.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn weighted_sum(p: &[f32], v: &[f16], out: &mut [f32]) {
        let d = out.len();
        debug_assert!(d.is_multiple_of(8) && v.len() >= p.len() * d);
        for (g, out) in out.chunks_mut(32).enumerate() {
            let lanes = out.len() / 8;
            let mut acc = [_mm256_setzero_ps(); 4];
            for (i, &w) in p.iter().enumerate() {
                let w = _mm256_set1_ps(w);
                let row = v[i * d + g * 32..i * d + g * 32 + out.len()].as_ptr();
                for (l, acc) in acc.iter_mut().enumerate().take(lanes) {
                    // SAFETY: `8 · l + 8 ≤ out.len()`, inside this part of the row.
                    *acc = _mm256_fmadd_ps(unsafe { widen(row.add(8 * l)) }, w, *acc);
                }
            }
            for (l, acc) in acc.iter().enumerate().take(lanes) {
                // SAFETY: as above, inside `out`.
                unsafe {
                    let at = out.as_mut_ptr().add(8 * l);
                    _mm256_storeu_ps(at, _mm256_add_ps(_mm256_loadu_ps(at), *acc));
                }
            }
        }
    }

    /// How far ahead of its reads a 16-wide kernel prefetches the cache, in f16 values (4 KiB: in
    /// a benchmark that evicts the cache between layers, as a step's weights do, this read
    /// the cache 12–20 % faster than without).
    const AHEAD: usize = 2048;

    /// Sixteen f16 at `at` widened to f32.
    #[inline(always)]
    unsafe fn widen16(at: *const f16) -> __m512 {
        // SAFETY: the caller reads sixteen values inside its slice.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(at.cast())) }
    }

    /// [`scores`] sixteen values a load: four keys a pass, each key's sixteen lanes folded to
    /// eight before the same horizontal sums.
    ///
    /// # Safety
    /// The CPU has AVX-512F, AVX2, FMA and F16C; `q.len()` is a multiple of 16; `k` holds
    /// `p.len() · q.len()` values.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub unsafe fn scores16(q: &[f32], k: &[f16], p: &mut [f32]) {
        let d = q.len();
        debug_assert!(d.is_multiple_of(16) && k.len() >= p.len() * d);
        let fold = |a: __m512| {
            _mm256_add_ps(
                _mm512_castps512_ps256(a),
                _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a))),
            )
        };
        let first = p.len() / 4 * 4;
        let mut quads = p.chunks_exact_mut(4);
        for (n, out) in (&mut quads).enumerate() {
            let rows = k[4 * n * d..(4 * n + 4) * d].as_ptr();
            for line in (0..4 * d).step_by(32) {
                _mm_prefetch::<_MM_HINT_T0>(rows.wrapping_add(line + AHEAD).cast());
            }
            let mut acc = [_mm512_setzero_ps(); 4];
            for c in (0..d).step_by(16) {
                // SAFETY: `c + 16 ≤ d`: inside each of the four rows and inside `q`.
                unsafe {
                    let x = _mm512_loadu_ps(q.as_ptr().add(c));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm512_fmadd_ps(widen16(rows.add(r * d + c)), x, *acc);
                    }
                }
            }
            let t = _mm256_hadd_ps(
                _mm256_hadd_ps(fold(acc[0]), fold(acc[1])),
                _mm256_hadd_ps(fold(acc[2]), fold(acc[3])),
            );
            let s = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps::<1>(t));
            // SAFETY: `out` holds four values.
            unsafe { _mm_storeu_ps(out.as_mut_ptr(), s) };
        }
        for (i, p) in quads.into_remainder().iter_mut().enumerate() {
            let i = first + i;
            let row = k[i * d..(i + 1) * d].as_ptr();
            let mut acc = _mm512_setzero_ps();
            for c in (0..d).step_by(16) {
                // SAFETY: `c + 16 ≤ d`, inside the row and inside `q`.
                unsafe {
                    acc = _mm512_fmadd_ps(
                        widen16(row.add(c)),
                        _mm512_loadu_ps(q.as_ptr().add(c)),
                        acc,
                    );
                }
            }
            *p = _mm512_reduce_add_ps(acc);
        }
    }

    /// [`weighted_sum`] sixteen values a load: up to 64 outputs a pass in four registers, two
    /// rows at a time into two sets of sums (independent chains), added at the end.
    ///
    /// # Safety
    /// The CPU has AVX-512F, AVX2, FMA and F16C; `out.len()` is a multiple of 16; `v` holds
    /// `p.len() · out.len()` values.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub unsafe fn weighted_sum16(p: &[f32], v: &[f16], out: &mut [f32]) {
        let d = out.len();
        debug_assert!(d.is_multiple_of(16) && v.len() >= p.len() * d);
        for (g, out) in out.chunks_mut(64).enumerate() {
            let lanes = out.len() / 16;
            let mut even = [_mm512_setzero_ps(); 4];
            let mut odd = [_mm512_setzero_ps(); 4];
            let mut pairs = p.chunks_exact(2);
            let at = |i: usize| v[i * d + g * 64..i * d + g * 64 + out.len()].as_ptr();
            for (n, w) in (&mut pairs).enumerate() {
                let (w0, w1) = (_mm512_set1_ps(w[0]), _mm512_set1_ps(w[1]));
                let (r0, r1) = (at(2 * n), at(2 * n + 1));
                for line in (0..out.len()).step_by(32) {
                    _mm_prefetch::<_MM_HINT_T0>(r0.wrapping_add(line + AHEAD).cast());
                    _mm_prefetch::<_MM_HINT_T0>(r1.wrapping_add(line + AHEAD).cast());
                }
                for l in 0..lanes {
                    // SAFETY: `16 · l + 16 ≤ out.len()`, inside this part of both rows.
                    unsafe {
                        even[l] = _mm512_fmadd_ps(widen16(r0.add(16 * l)), w0, even[l]);
                        odd[l] = _mm512_fmadd_ps(widen16(r1.add(16 * l)), w1, odd[l]);
                    }
                }
            }
            if let [w] = pairs.remainder() {
                let (w, r) = (_mm512_set1_ps(*w), at(p.len() - 1));
                for (l, acc) in even.iter_mut().enumerate().take(lanes) {
                    // SAFETY: as above, inside the last row.
                    *acc = _mm512_fmadd_ps(unsafe { widen16(r.add(16 * l)) }, w, *acc);
                }
            }
            for l in 0..lanes {
                // SAFETY: as above, inside `out`.
                unsafe {
                    let at = out.as_mut_ptr().add(16 * l);
                    let sum = _mm512_add_ps(even[l], odd[l]);
                    _mm512_storeu_ps(at, _mm512_add_ps(_mm512_loadu_ps(at), sum));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::nn::single_query_attention;
    use crate::models::nn::testing::seeded;
    use candle_core::{Device, IndexOp};

    /// The f16 cache attends as the f32 path does on the same (f16-rounded) keys and values,
    /// and within f16's rounding of the exact f32 attention: widths of whole 32-value groups
    /// (MusicGen's 64), a group and a remainder (40), and one the register path leaves to the
    /// scratch path (12).
    #[test]
    fn half_cache_attends_as_the_f32_path() {
        for d in [64, 40, 12, 48, 80] {
            attends_as_the_f32_path(d);
        }
    }

    /// The 8-wide register kernels against a plain f64 sum over the same f16 values, for widths
    /// of one to two 64-value passes and key counts with and without remainders.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn register_kernels_equal_a_plain_sum() {
        assert!(
            x86::available(),
            "AVX2, FMA and F16C are needed by this test"
        );
        check_register_kernels(false);
    }

    /// [`register_kernels_equal_a_plain_sum`] for the 16-wide kernels: ignored by default,
    /// visibly, rather than passing without testing anything on a CPU without AVX-512;
    /// `scripts/test` runs it where the CPU has it.
    #[cfg(target_arch = "x86_64")]
    #[test]
    #[ignore = "needs a CPU with AVX-512 (fails without): run it there with `-- --ignored avx512`"]
    fn the_avx512_attention_kernels_equal_a_plain_sum() {
        assert!(x86::available() && x86::avx512(), "this CPU has no AVX-512");
        check_register_kernels(true);
    }

    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    fn check_register_kernels(wide: bool) {
        for d in [16, 48, 64, 80, 128] {
            for len in [1, 2, 5, 37] {
                let f = |seed, n| {
                    seeded(seed, (1, n), 1.0)
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                };
                let q = f(1, d);
                let k: Vec<f16> = f(2, len * d).iter().map(|&x| f16::from_f32(x)).collect();
                let v: Vec<f16> = f(3, len * d).iter().map(|&x| f16::from_f32(x)).collect();
                let p: Vec<f32> = f(4, len).iter().map(|x| x.abs() / len as f32).collect();
                let score =
                    |i: usize| -> f64 { (0..d).map(|c| q[c] as f64 * k[i * d + c].to_f64()).sum() };
                let sum = |c: usize| -> f64 {
                    (0..len).map(|i| p[i] as f64 * v[i * d + c].to_f64()).sum()
                };
                let check = |got: &[f32], want: &dyn Fn(usize) -> f64, what: &str| {
                    for (i, g) in got.iter().enumerate() {
                        assert!(
                            (*g as f64 - want(i)).abs() < 1e-4,
                            "{what} d {d} len {len} [{i}]"
                        );
                    }
                };
                let mut s = vec![0f32; len];
                let mut o = vec![0.5f32; d];
                // SAFETY: the callers checked the CPU; the lengths are as the kernels require.
                unsafe {
                    if wide {
                        x86::scores16(&q, &k, &mut s);
                        x86::weighted_sum16(&p, &v, &mut o);
                    } else {
                        x86::scores(&q, &k, &mut s);
                        x86::weighted_sum(&p, &v, &mut o);
                    }
                }
                check(&s, &score, "scores");
                check(&o, &|c| 0.5 + sum(c), "weighted sum");
            }
        }
    }

    fn attends_as_the_f32_path(d: usize) {
        let _fast = crate::models::nn::force_generic_ops(false);
        let (b, h) = (2, 3);
        let mut kv = HalfKv::new(40);
        let k = seeded(1, (b * h * 37, d), 1.0)
            .reshape((b, h, 37, d))
            .unwrap();
        let v = seeded(2, (b * h * 37, d), 1.0)
            .reshape((b, h, 37, d))
            .unwrap();
        // A prefill of 30 positions, then seven steps of one.
        kv.append(
            &k.i((.., .., ..30, ..)).unwrap(),
            &v.i((.., .., ..30, ..)).unwrap(),
        )
        .unwrap();
        for t in 30..37 {
            let (kt, vt) = (
                k.i((.., .., t..t + 1, ..)).unwrap(),
                v.i((.., .., t..t + 1, ..)).unwrap(),
            );
            kv.append(&kt, &vt).unwrap();
        }
        assert_eq!(kv.len(), 37);
        let q = seeded(3, (b * h, d), 0.3).reshape((b, h, 1, d)).unwrap();
        let got = kv.attend(&q).unwrap();
        let (kr, vr) = kv.tensors(&Device::Cpu).unwrap();
        // Rounded keys and values: at most 2⁻¹¹ relative off the originals.
        let rel = |a: &Tensor, b: &Tensor| {
            let e = (a - b).unwrap().abs().unwrap().max_all().unwrap();
            let m = b.abs().unwrap().max_all().unwrap();
            e.to_scalar::<f32>().unwrap() / m.to_scalar::<f32>().unwrap()
        };
        assert!(rel(&kr, &k) <= 1.0 / 2048.0 && rel(&kr, &k) > 0.0);
        let same = single_query_attention(&q, &kr, &vr, None).unwrap().unwrap();
        let diff = (&got - &same).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6, "width {d}");
        let exact = single_query_attention(&q, &k, &v, None).unwrap().unwrap();
        assert!(rel(&got, &exact) < 2e-3, "width {d}: {}", rel(&got, &exact));
    }

    #[test]
    fn overflow_shape_and_capacity_are_refused() {
        let mut kv = HalfKv::new(2);
        let ones = Tensor::ones((1, 2, 1, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(kv.attend(&ones).is_err(), "nothing appended yet");
        let big = (&ones * 1e6).unwrap();
        assert!(kv.append(&big, &ones).is_err(), "beyond f16");
        assert!(kv.is_empty());
        kv.append(&ones, &ones).unwrap();
        let other = Tensor::ones((1, 3, 1, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(kv.append(&other, &other).is_err(), "another shape");
        kv.append(&ones, &ones).unwrap();
        assert!(kv.append(&ones, &ones).is_err(), "full");
        assert_eq!(kv.len(), 2);
    }
}
