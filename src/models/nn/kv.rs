//! A decoding step's self-attention cache in fewer bits on the CPU: [`CompactKv`], in f16
//! ([`HalfKv`]) or in 8 bits with a scale per row ([`ByteKv`]).
//!
//! With 8- or 4-bit weights, the KV cache is what a MusicGen decoding step reads most after the
//! weights: every step reads all keys and values so far, for both rows of classifier-free
//! guidance (musicgen-small: 24 layers · 2 · 2 · 1024 values a position, 393 KB in f32; at the
//! 250th position of a 10 s clip that is 98 MB a step against 189 MB of 4-bit weights). Stored
//! in f16 it is half that, in 8 bits a quarter. With AVX2 and FMA (and F16C for f16: every
//! x86-64 CPU with AVX2 in practice) a head's keys and values are widened eight at a time in
//! registers as the scores and the weighted sum read them (`x86` below), so a step reads each
//! cached value once, as two bytes or one; elsewhere each head is first widened into an f32
//! scratch. The arithmetic is f32 either way.
//!
//! - f16 keeps 11 significant bits: a key or value is rounded by at most 2⁻¹¹ of itself (values
//!   of a layer norm's scale stay far inside f16's range; one beyond it becomes ±inf and is an
//!   error, never a silent NaN).
//! - 8 bits: each row of a head (one position's `D` values) is `scale · q`, `q ∈ [−127, 127]`,
//!   `scale` its largest magnitude over 127: a value is off by at most half a step, 1/254 of the
//!   row's largest magnitude.
//!
//! Generation with f32 weights keeps the f32 cache (the parity suite runs on it); the quality
//! figures of the quantised modes include this rounding.

use std::cell::RefCell;

use candle_core::Tensor;
use half::f16;
use half::slice::HalfFloatSliceExt;

use super::attention::Head;
use super::cpu::Shortcut;
use crate::error::{Error, Result};

/// How a [`CompactKv`] stores one row of a head (`D` values).
pub trait KvElement: Copy + Default + Send + Sync + std::fmt::Debug + 'static {
    /// Stores the finite `src` in `dst` and returns the scale that multiplies it back; an
    /// error where a value cannot be held.
    fn store(src: &[f32], dst: &mut [Self]) -> Result<f32>;
    /// `dst = scale · src`.
    fn widen(src: &[Self], scale: f32, dst: &mut [f32]);
    /// `o = softmax(q·kᵀ)·v` over one head's rows (`o.len()` values each, row `i` scaled by
    /// `ks[i]`, `vs[i]`) with the values widened in registers; false, leaving `o` alone, where
    /// the CPU lacks the instructions or the width is not a multiple of 8.
    fn attend_in_registers(
        q: &[f32],
        k: (&[Self], &[f32]),
        v: (&[Self], &[f32]),
        o: &mut [f32],
    ) -> bool;
}

impl KvElement for f16 {
    fn store(src: &[f32], dst: &mut [Self]) -> Result<f32> {
        let max = f16::MAX.to_f32();
        if let Some(bad) = src.iter().find(|x| x.abs() > max) {
            return Err(Error::InvalidRequest(format!(
                "KV cache: a key or value of {bad} does not fit f16 (the model's activations are out of range)"
            )));
        }
        dst.convert_from_f32_slice(src);
        Ok(1.0)
    }

    fn widen(src: &[Self], _scale: f32, dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }

    fn attend_in_registers(
        q: &[f32],
        k: (&[Self], &[f32]),
        v: (&[Self], &[f32]),
        o: &mut [f32],
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        if x86::available() {
            return x86::attend::<x86::Half>(q, k, v, o);
        }
        let _ = (q, k, v, o);
        false
    }
}

impl KvElement for i8 {
    fn store(src: &[f32], dst: &mut [Self]) -> Result<f32> {
        let amax = src.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = amax / 127.0;
        let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
        // Rounded to nearest (ties to even) by adding and subtracting 1.5 · 2²³, which
        // vectorises where `f32::round` is a call per value; |x · inv| ≤ 127.
        const MAGIC: f32 = 12_582_912.0;
        for (q, &x) in dst.iter_mut().zip(src) {
            *q = ((x * inv + MAGIC) - MAGIC).clamp(-127.0, 127.0) as i8;
        }
        Ok(scale)
    }

    fn widen(src: &[Self], scale: f32, dst: &mut [f32]) {
        for (d, &q) in dst.iter_mut().zip(src) {
            *d = q as f32 * scale;
        }
    }

    fn attend_in_registers(
        q: &[f32],
        k: (&[Self], &[f32]),
        v: (&[Self], &[f32]),
        o: &mut [f32],
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        if x86::available() {
            return x86::attend::<x86::Byte>(q, k, v, o);
        }
        let _ = (q, k, v, o);
        false
    }
}

/// Keys and values `[B, heads, capacity, D]` in f16, the first `len` positions filled.
pub type HalfKv = CompactKv<f16>;
/// Keys and values `[B, heads, capacity, D]` in 8 bits with a scale per row.
pub type ByteKv = CompactKv<i8>;

/// Keys and values `[B, heads, capacity, D]` stored as `E`, with one scale per row
/// (`[B, heads, capacity]`), the first `len` positions filled.
#[derive(Debug, Clone)]
pub struct CompactKv<E> {
    capacity: usize,
    /// `(B, heads, D)`, fixed by the first append.
    dims: Option<(usize, usize, usize)>,
    len: usize,
    k: Vec<E>,
    v: Vec<E>,
    k_scale: Vec<f32>,
    v_scale: Vec<f32>,
}

thread_local! {
    /// One head's keys and values widened to f32 (reused across calls on a thread).
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl<E: KvElement> CompactKv<E> {
    /// An empty cache for up to `capacity` positions.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            dims: None,
            len: 0,
            k: Vec::new(),
            v: Vec::new(),
            k_scale: Vec::new(),
            v_scale: Vec::new(),
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `k`, `v` `[B, heads, S, D]` (f32, any device-CPU layout). Nothing is kept when a
    /// value is not finite or does not fit.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<()> {
        let (b, h, s, d) = k.dims4()?;
        if v.dims() != k.dims() {
            return Err(Error::InvalidRequest(format!(
                "KV cache: keys {:?} and values {:?} differ in shape",
                k.dims(),
                v.dims()
            )));
        }
        if let Some(dims) = self.dims {
            if dims != (b, h, d) {
                return Err(Error::InvalidRequest(format!(
                    "KV cache holds [{}, {}, _, {}], got {:?}",
                    dims.0,
                    dims.1,
                    dims.2,
                    k.dims()
                )));
            }
        }
        if self.len + s > self.capacity {
            return Err(Error::InvalidRequest(format!(
                "KV cache of {} positions cannot take {} more after {}",
                self.capacity, s, self.len
            )));
        }
        let kx = k.flatten_all()?.to_vec1::<f32>()?;
        let vx = v.flatten_all()?.to_vec1::<f32>()?;
        if let Some(bad) = kx.iter().chain(&vx).find(|x| !x.is_finite()) {
            return Err(Error::InvalidRequest(format!(
                "KV cache: a key or value of {bad} (the model's activations are out of range)"
            )));
        }
        // Stored into copies first, so a value that does not fit leaves the cache as it was.
        let mut kq = vec![E::default(); kx.len()];
        let mut vq = vec![E::default(); vx.len()];
        let mut ks = Vec::with_capacity(b * h * s);
        let mut vs = Vec::with_capacity(b * h * s);
        for ((kr, vr), (kqr, vqr)) in kx
            .chunks_exact(d)
            .zip(vx.chunks_exact(d))
            .zip(kq.chunks_exact_mut(d).zip(vq.chunks_exact_mut(d)))
        {
            ks.push(E::store(kr, kqr)?);
            vs.push(E::store(vr, vqr)?);
        }
        if self.dims.is_none() {
            self.dims = Some((b, h, d));
            let n = b * h * self.capacity;
            self.k = vec![E::default(); n * d];
            self.v = vec![E::default(); n * d];
            self.k_scale = vec![0.0; n];
            self.v_scale = vec![0.0; n];
        }
        for bh in 0..b * h {
            let row = bh * self.capacity + self.len;
            let from = bh * s..(bh + 1) * s;
            self.k[row * d..(row + s) * d].copy_from_slice(&kq[from.start * d..from.end * d]);
            self.v[row * d..(row + s) * d].copy_from_slice(&vq[from.start * d..from.end * d]);
            self.k_scale[row..row + s].copy_from_slice(&ks[from.clone()]);
            self.v_scale[row..row + s].copy_from_slice(&vs[from]);
        }
        self.len += s;
        Ok(())
    }

    /// Everything held, widened to f32 `[B, heads, len, D]` tensors (a prefill of several
    /// positions attends through the ordinary path).
    pub fn tensors(&self, device: &candle_core::Device) -> Result<(Tensor, Tensor)> {
        let (b, h, d) = self.dims.ok_or_else(empty)?;
        let widen = |x: &[E], scale: &[f32]| {
            let mut out = vec![0f32; b * h * self.len * d];
            for (bh, o) in out.chunks_exact_mut(self.len * d).enumerate() {
                let row = bh * self.capacity;
                for (i, o) in o.chunks_exact_mut(d).enumerate() {
                    let r = row + i;
                    E::widen(&x[r * d..(r + 1) * d], scale[r], o);
                }
            }
            Tensor::from_vec(out, (b, h, self.len, d), device)
        };
        Ok((
            widen(&self.k, &self.k_scale)?,
            widen(&self.v, &self.v_scale)?,
        ))
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
            let (row, at) = (bh * cap, bh * cap * d);
            let k = (&self.k[at..at + l * d], &self.k_scale[row..row + l]);
            let v = (&self.v[at..at + l * d], &self.v_scale[row..row + l]);
            let q = &qv[bh * d..(bh + 1) * d];
            if E::attend_in_registers(q, k, v, o) {
                return;
            }
            SCRATCH.with_borrow_mut(|(ks, vs)| {
                ks.resize(l * d, 0.0);
                vs.resize(l * d, 0.0);
                for (i, (kr, vr)) in ks
                    .chunks_exact_mut(d)
                    .zip(vs.chunks_exact_mut(d))
                    .enumerate()
                {
                    E::widen(&k.0[i * d..(i + 1) * d], k.1[i], kr);
                    E::widen(&v.0[i * d..(i + 1) * d], v.1[i], vr);
                }
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

/// One head's scores and weighted sum read straight from the compact cache: eight values
/// widened a time (`vcvtph2ps` for f16, a sign extension and a conversion for 8 bits) and used
/// at once, so no widened copy is written and read back.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    use half::f16;

    /// Whether the CPU has AVX2, FMA and F16C (the kernels are compiled with all three, for
    /// either element; every CPU with AVX2 has F16C in practice).
    pub fn available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
        })
    }

    /// Eight stored values widened to f32.
    pub trait Widen {
        type Item;
        /// # Safety
        /// Eight values from `at` lie inside the caller's slice; the CPU has what
        /// [`available`] checked for this element.
        unsafe fn widen8(at: *const Self::Item) -> __m256;
    }

    pub struct Half;
    impl Widen for Half {
        type Item = f16;
        #[inline(always)]
        unsafe fn widen8(at: *const f16) -> __m256 {
            // SAFETY: see the trait; `f16` is a transparent u16.
            unsafe { _mm256_cvtph_ps(_mm_loadu_si128(at.cast())) }
        }
    }

    pub struct Byte;
    impl Widen for Byte {
        type Item = i8;
        #[inline(always)]
        unsafe fn widen8(at: *const i8) -> __m256 {
            // SAFETY: see the trait (an 8-byte load).
            unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(at.cast()))) }
        }
    }

    /// [`super::KvElement::attend_in_registers`] once [`available`] said yes.
    pub fn attend<W: Widen>(
        q: &[f32],
        (k, ks): (&[W::Item], &[f32]),
        (v, vs): (&[W::Item], &[f32]),
        o: &mut [f32],
    ) -> bool {
        let d = q.len();
        let rows = ks.len();
        if d != o.len()
            || !d.is_multiple_of(8)
            || k.len() != rows * d
            || v.len() != rows * d
            || vs.len() != rows
        {
            return false;
        }
        let mut p = vec![0f32; rows];
        // SAFETY: the CPU has AVX2, FMA (and F16C for f16; the caller checked); `k` and `v`
        // hold `rows` rows of `d` values, `d` a multiple of 8, as `q` and `o` hold, and the
        // scales one per row (checked above).
        unsafe { scores::<W>(q, k, ks, &mut p) };
        if super::super::simd::wide(
            #[inline(always)]
            || super::super::attention::softmax_scores(&mut p),
        ) {
            // SAFETY: as above.
            unsafe { weighted_sum::<W>(&p, v, vs, o) };
        }
        true
    }

    /// `p[i] = (q · k[i]) · ks[i]` for the `p.len()` rows of `k` (`q.len()` values each, a
    /// multiple of 8).
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and what `W` needs; `k` holds `p.len() · q.len()` values, `ks`
    /// `p.len()` scales.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scores<W: Widen>(q: &[f32], k: &[W::Item], ks: &[f32], p: &mut [f32]) {
        let d = q.len();
        for ((i, p), &scale) in p.iter_mut().enumerate().zip(ks) {
            let row = k[i * d..(i + 1) * d].as_ptr();
            let mut acc = [_mm256_setzero_ps(); 2];
            for c in (0..d).step_by(8) {
                // SAFETY: `c + 8 ≤ d`, inside the row and inside `q`.
                unsafe {
                    let x = _mm256_loadu_ps(q.as_ptr().add(c));
                    acc[c / 8 % 2] = _mm256_fmadd_ps(W::widen8(row.add(c)), x, acc[c / 8 % 2]);
                }
            }
            let s = _mm256_add_ps(acc[0], acc[1]);
            let s = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            *p = _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s))) * scale;
        }
    }

    /// `out += Σ_i p[i] · vs[i] · v[i]` for the `p.len()` rows of `v` (`out.len()` values
    /// each, a multiple of 8), 32 outputs a pass kept in registers.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and what `W` needs; `v` holds `p.len() · out.len()` values, `vs`
    /// `p.len()` scales.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn weighted_sum<W: Widen>(p: &[f32], v: &[W::Item], vs: &[f32], out: &mut [f32]) {
        let d = out.len();
        for (g, out) in out.chunks_mut(32).enumerate() {
            let lanes = out.len() / 8;
            let mut acc = [_mm256_setzero_ps(); 4];
            for (i, (&w, &scale)) in p.iter().zip(vs).enumerate() {
                let w = _mm256_set1_ps(w * scale);
                let row = v[i * d + g * 32..i * d + g * 32 + out.len()].as_ptr();
                for (l, acc) in acc.iter_mut().enumerate().take(lanes) {
                    // SAFETY: `8 · l + 8 ≤ out.len()`, inside this part of the row.
                    *acc = _mm256_fmadd_ps(unsafe { W::widen8(row.add(8 * l)) }, w, *acc);
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
        for d in [64, 40, 12] {
            attends_as_the_f32_path::<f16>(d, 1.0 / 2048.0, 2e-3);
        }
    }

    /// The same for 8 bits: a value within half a step (1/254 of its row's largest magnitude).
    #[test]
    fn byte_cache_attends_as_the_f32_path() {
        for d in [64, 40, 12] {
            attends_as_the_f32_path::<i8>(d, 1.0 / 254.0, 2e-2);
        }
    }

    /// `rounding`: the largest error of a stored value relative to the largest value;
    /// `attention`: the largest error of the attention relative to its largest output.
    fn attends_as_the_f32_path<E: KvElement>(d: usize, rounding: f32, attention: f32) {
        let _fast = crate::models::nn::force_generic_ops(false);
        let (b, h) = (2, 3);
        let mut kv = CompactKv::<E>::new(40);
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
        assert!(rel(&kr, &k) <= rounding && rel(&kr, &k) > 0.0, "width {d}");
        let same = single_query_attention(&q, &kr, &vr, None).unwrap().unwrap();
        let diff = (&got - &same).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6, "width {d}");
        let exact = single_query_attention(&q, &k, &v, None).unwrap().unwrap();
        assert!(
            rel(&got, &exact) < attention,
            "width {d}: {}",
            rel(&got, &exact)
        );
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

    /// 8 bits: a non-finite value is refused and nothing is kept; a row of zeros (scale 0)
    /// stays zeros, not NaN.
    #[test]
    fn byte_cache_refuses_nonfinite_values_and_keeps_zero_rows() {
        let mut kv = ByteKv::new(2);
        let ones = Tensor::ones((1, 2, 1, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        let mut bad = vec![1f32; 16];
        bad[5] = f32::NAN;
        let bad = Tensor::from_vec(bad, (1, 2, 1, 8), &Device::Cpu).unwrap();
        assert!(kv.append(&ones, &bad).is_err(), "NaN");
        assert!(kv.is_empty());
        let zeros = ones.zeros_like().unwrap();
        kv.append(&zeros, &zeros).unwrap();
        let (k, v) = kv.tensors(&Device::Cpu).unwrap();
        let max = |t: &Tensor| {
            t.abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert_eq!((max(&k), max(&v)), (0.0, 0.0));
        let out = kv.attend(&ones).unwrap();
        assert_eq!(max(&out), 0.0);
    }
}
