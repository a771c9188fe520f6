//! Small layers shared by our models, written so that **every op records a backward**: candle
//! 0.11's fused `softmax_last_dim` and `LayerNorm` do not, which silently loses gradients on a
//! training path. Inference uses the same code, so what we train is what we run.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::blas;
use crate::models::gemv::rows_matmul;

/// How the large matrices of a model are stored for inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightMode {
    /// fp32, bit-for-bit the checkpoint's values (training and parity).
    #[default]
    F32,
    /// 8-bit block quantisation (ggml q8_0) through candle's quantized matmul.
    Q8,
    /// 4-bit k-quant (ggml q4_K): smallest and fastest, least exact.
    Q4k,
}

impl std::str::FromStr for WeightMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Self::F32),
            "q8" => Ok(Self::Q8),
            "q4k" => Ok(Self::Q4k),
            // candle's CPU bf16 matmul is ~40x slower than f32 (measured), so it is not offered.
            other => Err(Error::InvalidRequest(format!(
                "unknown weight mode `{other}` (expected f32, q8 or q4k)"
            ))),
        }
    }
}

impl std::fmt::Display for WeightMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Q8 => "q8",
            Self::Q4k => "q4k",
        })
    }
}

#[derive(Debug, Clone)]
enum Weight {
    /// `[out, in]`, fp32 (may be a `Var` when training).
    Dense(Tensor),
    /// `[out, in]`, contiguous and frozen (inference). On the CPU, inputs of few rows (decoding)
    /// go through [`rows_matmul`], which streams the weight once; candle's GEMM packs the whole
    /// matrix on every call and runs ~3x slower there (measured).
    Frozen(Tensor),
    Quant(Arc<QMatMul>),
}

/// A low-rank adapter `x · Aᵀ · Bᵀ · (alpha / r)` added to a frozen linear layer (PEFT's LoRA).
#[derive(Debug, Clone)]
pub struct Lora {
    /// `[r, in]`
    pub a: Tensor,
    /// `[out, r]`
    pub b: Tensor,
    pub scale: f64,
    /// Dropout on the adapter's input while training (PEFT's `lora_dropout`).
    pub dropout: f32,
    /// Seed of this forward's dropout mask; `None` = evaluation (no dropout). The trainer sets a
    /// fresh seed per step, so masks are reproducible and a resumed run draws the same ones.
    pub dropout_seed: Option<u64>,
}

impl Lora {
    fn input(&self, xs: &Tensor) -> Result<Tensor> {
        seeded_dropout(xs, self.dropout, self.dropout_seed)
    }
}

/// Inverted dropout with probability `p` whose mask is drawn from `seed` (so a recomputed or
/// resumed forward draws the same one); `None` = evaluation (identity).
pub fn seeded_dropout(xs: &Tensor, p: f32, seed: Option<u64>) -> Result<Tensor> {
    let Some(seed) = seed.filter(|_| p > 0.0) else {
        return Ok(xs.clone());
    };
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let keep = 1.0 - p;
    let mask: Vec<f32> = (0..xs.elem_count())
        .map(|_| {
            if rng.random::<f32>() < keep {
                1.0 / keep
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, xs.shape(), xs.device())?.to_dtype(xs.dtype())?;
    Ok((xs * mask)?)
}

/// `y = x Wᵀ (+ b) (+ LoRA)`, HF `nn.Linear` semantics.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    pub lora: Option<Lora>,
}

impl Linear {
    pub fn new(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = if bias {
            Some(vb.get(out_dim, "bias")?)
        } else {
            None
        };
        Ok(Self {
            weight: Weight::Dense(weight),
            bias,
            lora: None,
        })
    }

    pub fn from_weight(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight: Weight::Dense(weight),
            bias,
            lora: None,
        }
    }

    /// The fp32 weight (`None` once quantised).
    pub fn weight(&self) -> Option<&Tensor> {
        match &self.weight {
            Weight::Dense(w) | Weight::Frozen(w) => Some(w),
            Weight::Quant(_) => None,
        }
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Lays the weight out for inference in `mode` (frozen from then on).
    pub fn convert(&mut self, mode: WeightMode) -> Result<()> {
        let (Weight::Dense(w) | Weight::Frozen(w)) = &self.weight else {
            return Ok(());
        };
        let quant = |dt: GgmlDType| -> Result<Weight> {
            // Block formats need whole blocks per row; a layer that has none stays fp32.
            if !w.dim(1)?.is_multiple_of(dt.block_size()) {
                return Ok(Weight::Frozen(w.detach().contiguous()?));
            }
            let q = QTensor::quantize(&w.detach(), dt)?;
            Ok(Weight::Quant(Arc::new(QMatMul::from_qtensor(q)?)))
        };
        self.weight = match mode {
            WeightMode::F32 => Weight::Frozen(w.detach().contiguous()?),
            WeightMode::Q8 => quant(GgmlDType::Q8_0)?,
            WeightMode::Q4k => quant(GgmlDType::Q4K)?,
        };
        Ok(())
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let y = match &self.weight {
            Weight::Dense(w) => matmul_t(xs, w)?,
            Weight::Frozen(w) => frozen_matmul(xs, w)?,
            Weight::Quant(q) => q.forward(xs)?,
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        match &self.lora {
            Some(l) => {
                let delta = matmul_t(&matmul_t(&l.input(xs)?, &l.a)?, &l.b)?;
                Ok((y + (delta * l.scale)?)?)
            }
            None => Ok(y),
        }
    }
}

/// `x · wᵀ` for `x` of any rank ≥ 2 (flattened to 2-D so the GEMM sees one large matrix),
/// through OpenBLAS on the CPU when it is installed ([`blas::linear`]: ≈ 2.4× candle's GEMM
/// here, and no gradient for a frozen `w`).
pub fn matmul_t(xs: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = xs.dims();
    let in_dim = dims[dims.len() - 1];
    let lead: usize = dims[..dims.len() - 1].iter().product();
    let y = blas::linear(&xs.reshape((lead, in_dim))?, w)?;
    let mut out = dims.to_vec();
    let last = out.len() - 1;
    out[last] = w.dim(0)?;
    Ok(y.reshape(out)?)
}

/// Rows of `x` up to which [`rows_matmul`] beats candle's GEMM.
const SMALL_M: usize = 16;

fn frozen_matmul(xs: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = xs.dims();
    let in_dim = dims[dims.len() - 1];
    let lead: usize = dims[..dims.len() - 1].iter().product();
    if lead > SMALL_M || !xs.device().is_cpu() || xs.dtype() != candle_core::DType::F32 {
        return matmul_t(xs, w);
    }
    let (out_dim, w_in) = w.dims2()?;
    if w_in != in_dim {
        return Err(Error::InvalidRequest(format!(
            "linear layer expects {w_in} inputs, got {in_dim}"
        )));
    }
    let x = xs.flatten_all()?.to_vec1::<f32>()?;
    let (storage, layout) = w.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return matmul_t(xs, w);
    };
    let data = cpu.as_slice::<f32>()?;
    let start = layout.start_offset();
    let y = rows_matmul(
        &data[start..start + out_dim * in_dim],
        &x,
        lead,
        in_dim,
        out_dim,
    );
    drop(storage);
    let mut out = dims.to_vec();
    let last = out.len() - 1;
    out[last] = out_dim;
    Ok(Tensor::from_vec(y, out, xs.device())?)
}

/// Layer norm over the last dimension, composed of differentiable ops (PyTorch `nn.LayerNorm`).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            bias: vb.get(dim, "bias")?,
            eps,
        })
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let fused = xs.device().is_cpu()
            && [xs, &self.weight, &self.bias]
                .iter()
                .all(|t| t.dtype() == DType::F32)
            && self.weight.rank() == 1
            && xs.dims().last() == Some(&self.weight.dim(0)?);
        if fused {
            return Ok(xs.contiguous()?.apply_op3(
                &self.weight.contiguous()?,
                &self.bias.contiguous()?,
                FusedLayerNorm {
                    eps: self.eps,
                    grad_weight: self.weight.track_op(),
                    grad_bias: self.bias.track_op(),
                },
            )?);
        }
        self.composed(xs)
    }

    /// The same, composed of candle ops (other devices and dtypes; the fused op's reference).
    fn composed(&self, xs: &Tensor) -> Result<Tensor> {
        let mean = xs.mean_keepdim(D::Minus1)?;
        let xc = xs.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xn = xc.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        Ok(xn.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)?)
    }
}

/// Layer norm as one op on the CPU in f32: each row's mean and variance in f64, rows in
/// parallel; the backward recomputes them from the input (nothing else is kept) and gives
/// `dx = rstd · (g·w − mean(g·w) − x̂ · mean(g·w·x̂))`, and `dw = Σ g·x̂`, `db = Σ g` only for a
/// trained weight and bias, summed in a fixed order (runs stay bit-reproducible).
struct FusedLayerNorm {
    eps: f64,
    grad_weight: bool,
    grad_bias: bool,
}

/// Rows per parallel task.
const LN_ROWS: usize = 16;

/// `(mean, 1 / sqrt(var + eps))` of one row.
#[inline(always)]
fn row_stats(x: &[f32], eps: f64) -> (f32, f32) {
    let n = x.len().max(1) as f64;
    let mean = lane_sum_f64(x, f64::from) / n;
    let var = lane_sum_f64(x, |v| (f64::from(v) - mean).powi(2)) / n;
    (mean as f32, (1.0 / (var + eps).sqrt()) as f32)
}

/// `Σ f(x)` in eight independent f64 lanes (one running sum is a serial chain the compiler
/// keeps scalar).
#[inline(always)]
fn lane_sum_f64(x: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let (chunks, tail) = x.as_chunks::<8>();
    for c in chunks {
        for i in 0..8 {
            acc[i] += f(c[i]);
        }
    }
    acc.iter().sum::<f64>() + tail.iter().map(|&v| f(v)).sum::<f64>()
}

/// The f32 elements of a contiguous CPU tensor in a custom op (`what` names it in errors).
pub(crate) fn contiguous_f32<'a>(
    s: &'a candle_core::CpuStorage,
    l: &candle_core::Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let Some((a, b)) = l.contiguous_offsets() else {
        return Err(candle_core::Error::Msg(format!("{what} is not contiguous")));
    };
    Ok(&cpu_f32(s, what)?[a..b])
}

/// Runs `f` on the values of an f32 CPU tensor (made contiguous first); `None` for other
/// devices and dtypes.
pub(crate) fn on_cpu_f32<R>(
    t: &Tensor,
    f: impl FnOnce(&[f32]) -> R,
) -> candle_core::Result<Option<R>> {
    if !t.device().is_cpu() || t.dtype() != DType::F32 {
        return Ok(None);
    }
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(s) => Ok(Some(f(contiguous_f32(s, layout, "tensor")?))),
        _ => Ok(None),
    }
}

/// [`on_cpu_f32`] for two tensors at once.
fn on_cpu_f32_pair<R>(
    a: &Tensor,
    b: &Tensor,
    f: impl FnOnce(&[f32], &[f32]) -> R,
) -> candle_core::Result<Option<R>> {
    Ok(on_cpu_f32(a, |a| on_cpu_f32(b, |b| f(a, b)))?
        .transpose()?
        .flatten())
}

impl candle_core::CustomOp3 for FusedLayerNorm {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
    }

    fn cpu_fwd(
        &self,
        sx: &candle_core::CpuStorage,
        lx: &candle_core::Layout,
        sw: &candle_core::CpuStorage,
        lw: &candle_core::Layout,
        sb: &candle_core::CpuStorage,
        lb: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let x = contiguous_f32(sx, lx, "layer norm input")?;
        let w = contiguous_f32(sw, lw, "layer norm weight")?;
        let b = contiguous_f32(sb, lb, "layer norm bias")?;
        let h = w.len().max(1);
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(h * LN_ROWS)
            .zip(x.par_chunks(h * LN_ROWS))
            .for_each(|(o, x)| {
                wide(
                    #[inline(always)]
                    || {
                        for (o, x) in o.chunks_mut(h).zip(x.chunks(h)) {
                            let (mean, rstd) = row_stats(x, self.eps);
                            for (((o, &x), &w), &b) in o.iter_mut().zip(x).zip(w).zip(b) {
                                *o = (x - mean) * rstd * w + b;
                            }
                        }
                    },
                )
            });
        Ok((candle_core::CpuStorage::F32(out), lx.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        use rayon::prelude::*;
        let h = w.elem_count().max(1);
        let xv = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let gv = g.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let wv = w.to_vec1::<f32>()?;
        let mut dx = vec![0f32; xv.len()];
        // Per task: dx rows, and partial Σ g·x̂ and Σ g for the weight and bias.
        let partials: Vec<[Vec<f32>; 2]> = dx
            .par_chunks_mut(h * LN_ROWS)
            .zip(xv.par_chunks(h * LN_ROWS).zip(gv.par_chunks(h * LN_ROWS)))
            .map(|(dx, (x, g))| {
                wide(
                    #[inline(always)]
                    || {
                        let mut dw = vec![0f32; h];
                        let mut db = vec![0f32; h];
                        for ((dx, x), g) in dx.chunks_mut(h).zip(x.chunks(h)).zip(g.chunks(h)) {
                            let (mean, rstd) = row_stats(x, self.eps);
                            // Σ g·w and Σ g·w·x̂ in eight f64 lanes each.
                            let (mut s1, mut s2) = ([0f64; 8], [0f64; 8]);
                            for (i, ((&x, &g), &w)) in x.iter().zip(g).zip(&wv).enumerate() {
                                let xh = (x - mean) * rstd;
                                let gw = f64::from(g * w);
                                s1[i % 8] += gw;
                                s2[i % 8] += gw * f64::from(xh);
                            }
                            let (s1, s2) = (s1.iter().sum::<f64>(), s2.iter().sum::<f64>());
                            let (m1, m2) = ((s1 / h as f64) as f32, (s2 / h as f64) as f32);
                            for (i, ((dx, &x), &g)) in dx.iter_mut().zip(x).zip(g).enumerate() {
                                let xh = (x - mean) * rstd;
                                *dx = rstd * (g * wv[i] - m1 - xh * m2);
                                dw[i] += g * xh;
                                db[i] += g;
                            }
                        }
                        [dw, db]
                    },
                )
            })
            .collect();
        let sum = |which: usize| -> Vec<f32> {
            let mut acc = vec![0f32; h];
            for p in &partials {
                for (a, v) in acc.iter_mut().zip(&p[which]) {
                    *a += v;
                }
            }
            acc
        };
        let dx = Tensor::from_vec(dx, x.shape(), x.device())?;
        let dw = if self.grad_weight {
            Some(Tensor::from_vec(sum(0), w.shape(), w.device())?)
        } else {
            None
        };
        let db = if self.grad_bias {
            Some(Tensor::from_vec(sum(1), w.shape(), w.device())?)
        } else {
            None
        };
        Ok((Some(dx), dw, db))
    }
}

/// Softmax over the last dimension that records a backward (max-subtracted exp / sum).
pub fn softmax(xs: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::softmax(xs, D::Minus1)?)
}

/// `softmax(scores + mask)` over the last dimension, `mask` broadcastable to `scores`
/// (`[S, T]` causal or `[B, 1, 1, T]` padding). On the CPU in f32 it is one fused op whose
/// backward keeps only its input and output (`dx = y ⊙ (g − Σ g ⊙ y)`): training keeps two
/// `[B, heads, S, T]` tensors per attention instead of the five of the composed form. Other
/// devices and dtypes use the composed form (also differentiable).
pub fn masked_softmax(scores: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    if !scores.device().is_cpu() || scores.dtype() != DType::F32 || scores.rank() != 4 {
        let x = match mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores.clone(),
        };
        return softmax(&x);
    }
    let scores = scores.contiguous()?;
    match mask {
        Some(m) => Ok(scores.apply_op2(&row_mask(m, scores.shape())?, FusedSoftmax)?),
        None => Ok(scores.apply_op1(FusedSoftmax)?),
    }
}

/// `mask` in f32 broadcast to `shape`, with a unit last stride: the fused ops read each row's
/// mask as a slice, in place.
fn row_mask(mask: &Tensor, shape: impl Into<candle_core::Shape>) -> Result<Tensor> {
    let m = mask.to_dtype(DType::F32)?.broadcast_as(shape)?;
    Ok(if m.stride().last() == Some(&1) {
        m
    } else {
        m.contiguous()?
    })
}

/// GELU with the exact erf (PyTorch `nn.GELU()`, HF `"gelu"`): `x · Φ(x)`. On the CPU in f32
/// it is one parallel pass each way (candle's `gelu_erf` runs single-threaded and its backward
/// composes ten element-wise ops, each with a fresh buffer); elsewhere it is candle's.
pub fn gelu_erf(xs: &Tensor) -> Result<Tensor> {
    if !xs.device().is_cpu() || xs.dtype() != DType::F32 {
        return Ok(xs.gelu_erf()?);
    }
    Ok(xs.contiguous()?.apply_op1(Fused::<Gelu>::OP)?)
}

/// ELU with α = 1 (PyTorch `nn.ELU()`, EnCodec's activation): `x` where `x > 0`, else
/// `eˣ − 1`. On the CPU in f32 one parallel pass each way (candle's runs on one thread, a
/// quarter of an EnCodec decode); elsewhere candle's.
pub fn elu(xs: &Tensor) -> Result<Tensor> {
    if !xs.device().is_cpu() || xs.dtype() != DType::F32 {
        return Ok(xs.elu(1.0)?);
    }
    Ok(xs.contiguous()?.apply_op1(Fused::<Elu>::OP)?)
}

/// An element-wise activation and its derivative, made one custom op by [`Fused`]: a parallel
/// pass each way, monomorphised so both inline into the loop.
trait Pointwise: Send + Sync + 'static {
    const NAME: &'static str;
    fn f(x: f32) -> f32;
    fn df(x: f32) -> f32;
}

struct Fused<P>(std::marker::PhantomData<P>);

impl<P> Fused<P> {
    const OP: Self = Self(std::marker::PhantomData);
}

struct Gelu;

impl Pointwise for Gelu {
    const NAME: &'static str = "fused-gelu-erf";
    fn f(x: f32) -> f32 {
        x * super::vmath::normal_cdf_pdf(x).0
    }
    /// d/dx x·Φ(x) = Φ(x) + x·φ(x)
    fn df(x: f32) -> f32 {
        let (cdf, pdf) = super::vmath::normal_cdf_pdf(x);
        cdf + x * pdf
    }
}

struct Elu;

impl Pointwise for Elu {
    const NAME: &'static str = "fused-elu";
    fn f(x: f32) -> f32 {
        if x > 0.0 {
            x
        } else {
            x.exp_m1()
        }
    }
    fn df(x: f32) -> f32 {
        if x > 0.0 {
            1.0
        } else {
            x.exp()
        }
    }
}

/// Applies `f` element-wise over equal-length slices in parallel chunks.
fn par_map2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    use rayon::prelude::*;
    let mut out = vec![0f32; a.len()];
    out.par_chunks_mut(1 << 14)
        .zip(a.par_chunks(1 << 14).zip(b.par_chunks(1 << 14)))
        .for_each(|(o, (a, b))| {
            wide(
                #[inline(always)]
                || {
                    for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
                        *o = f(*a, *b);
                    }
                },
            )
        });
    out
}

impl<P: Pointwise> candle_core::CustomOp1 for Fused<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn cpu_fwd(
        &self,
        s: &candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let x = contiguous_f32(s, l, P::NAME)?;
        let out = par_map2(x, x, |x, _| P::f(x));
        Ok((candle_core::CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let Some(dx) = on_cpu_f32_pair(arg, grad, |x, g| par_map2(x, g, |x, g| g * P::df(x)))?
        else {
            candle_core::bail!("{}: expected f32 CPU tensors", P::NAME)
        };
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// `Σ a·b` in 16 independent lanes, which the compiler vectorises (a plain `sum()` of products
/// is a serial chain of scalar additions: strict float order).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ac, at) = a.as_chunks::<16>();
    let (bc, bt) = b.as_chunks::<16>();
    for (x, y) in ac.iter().zip(bc) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = at.iter().zip(bt).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// `Σ a` in 16 independent lanes (vectorised, as [`dot`]).
fn lane_sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (chunks, tail) = a.as_chunks::<16>();
    for x in chunks {
        for i in 0..16 {
            acc[i] += x[i];
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// Attention of one query position over `L` keys: `softmax(q·kᵀ + mask)·v` for `q`
/// `[B, heads, 1, D]` and `k`, `v` `[B, heads, L, D]` (strided views of a KV cache are read in
/// place), `mask` additive and broadcastable to `[B, heads, 1, L]`. This is a decoding step's
/// attention: candle's GEMM spent ≈ 10 ms of each MusicGen step on these 32 tiny products per
/// layer. It records no gradient (inference only) and returns `None` where it does not apply
/// (not the CPU, not f32, more than one query, or a key layout with strided rows).
pub fn single_query_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
) -> Result<Option<Tensor>> {
    use rayon::prelude::*;
    let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    if !(cpu_f32(q) && cpu_f32(k) && cpu_f32(v)) {
        return Ok(None);
    }
    let (b, h, s, d) = q.dims4()?;
    let (kb, kh, l, kd) = k.dims4()?;
    if s != 1 || (kb, kh, kd) != (b, h, d) || v.dims() != k.dims() || l == 0 {
        return Ok(None);
    }
    let q = q.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let mask = match mask {
        Some(m) => Some(
            m.to_dtype(DType::F32)?
                .broadcast_as((b, h, 1, l))?
                .contiguous()?
                .flatten_all()?
                .to_vec1::<f32>()?,
        ),
        None => None,
    };
    let (k_storage, k_layout) = k.storage_and_layout();
    let (v_storage, v_layout) = v.storage_and_layout();
    let (candle_core::Storage::Cpu(kc), candle_core::Storage::Cpu(vc)) = (&*k_storage, &*v_storage)
    else {
        return Ok(None);
    };
    let (ks, vs) = (kc.as_slice::<f32>()?, vc.as_slice::<f32>()?);
    let (kst, vst) = (k_layout.stride(), v_layout.stride());
    if kst[3] != 1 || vst[3] != 1 {
        return Ok(None);
    }
    // Offset of row (bi, hi, li) of a `[B, heads, L, D]` layout with contiguous rows.
    let row = |start: usize, st: &[usize], bi: usize, hi: usize, li: usize| -> usize {
        start + bi * st[0] + hi * st[1] + li * st[2]
    };
    // Every row must lie inside its storage before any is read.
    let fits = |data: &[f32], start: usize, st: &[usize]| {
        row(start, st, b - 1, h - 1, l - 1) + d <= data.len()
    };
    if !fits(ks, k_layout.start_offset(), kst) || !fits(vs, v_layout.start_offset(), vst) {
        return Err(Error::InvalidRequest(
            "attention: key/value layout exceeds its storage".into(),
        ));
    }
    let mut out = vec![0f32; b * h * d];
    out.par_chunks_mut(d).enumerate().for_each(|(bh, o)| {
        let (bi, hi) = (bh / h, bh % h);
        let qv = &q[bh * d..(bh + 1) * d];
        let mut p: Vec<f32> = (0..l)
            .map(|li| {
                let at = row(k_layout.start_offset(), kst, bi, hi, li);
                dot(&ks[at..at + d], qv) + mask.as_ref().map_or(0.0, |m| m[bh * l + li])
            })
            .collect();
        let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            return; // every key masked with -inf: zeros, as the fused softmax
        }
        let mut sum = 0f32;
        for x in p.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        let inv = 1.0 / sum;
        for (li, w) in p.iter().enumerate() {
            let at = row(v_layout.start_offset(), vst, bi, hi, li);
            let w = w * inv;
            for (o, v) in o.iter_mut().zip(&vs[at..at + d]) {
                *o += w * v;
            }
        }
    });
    drop((k_storage, v_storage));
    Ok(Some(Tensor::from_vec(out, (b, h, 1, d), k.device())?))
}

/// The fused softmax (see [`masked_softmax`]).
struct FusedSoftmax;

/// Softmax of each row of `t` values, plus the row's additive mask where `mask_row` gives one.
fn softmax_rows<'m>(
    x: &[f32],
    out: &mut [f32],
    t: usize,
    mask_row: impl Fn(usize) -> Option<&'m [f32]> + Sync,
) {
    use rayon::prelude::*;
    out.par_chunks_mut(t)
        .zip(x.par_chunks(t))
        .enumerate()
        .for_each(|(row, (o, xs))| {
            let mask = mask_row(row);
            wide(
                #[inline(always)]
                || {
                    match mask {
                        Some(m) => {
                            for ((o, &v), &m) in o.iter_mut().zip(xs).zip(m) {
                                *o = v + m;
                            }
                        }
                        None => o.copy_from_slice(xs),
                    }
                    let max = lane_max(o);
                    if max == f32::NEG_INFINITY {
                        o.fill(0.0);
                        return;
                    }
                    for o in o.iter_mut() {
                        *o = super::vmath::exp(*o - max);
                    }
                    let inv = 1.0 / lane_sum(o);
                    for o in o.iter_mut() {
                        *o *= inv;
                    }
                },
            )
        });
}

/// The largest value, in 16 lanes (`f32::max` ignores NaN and stays scalar; a NaN here makes
/// the row NaN through `exp` anyway).
#[inline(always)]
fn lane_max(a: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let (chunks, tail) = a.as_chunks::<16>();
    for x in chunks {
        for i in 0..16 {
            acc[i] = if x[i] > acc[i] { x[i] } else { acc[i] };
        }
    }
    let mut max = f32::NEG_INFINITY;
    for &v in acc.iter().chain(tail) {
        max = if v > max { v } else { max };
    }
    max
}

fn cpu_f32<'a>(s: &'a candle_core::CpuStorage, what: &str) -> candle_core::Result<&'a [f32]> {
    match s {
        candle_core::CpuStorage::F32(v) => Ok(v),
        _ => Err(candle_core::Error::Msg(format!("{what} is not f32"))),
    }
}

impl candle_core::CustomOp1 for FusedSoftmax {
    fn name(&self) -> &'static str {
        "fused-softmax"
    }

    fn cpu_fwd(
        &self,
        s: &candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let x = contiguous_f32(s, l, "softmax input")?;
        let t = l.dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; x.len()];
        softmax_rows(x, &mut out, t, |_| None);
        Ok((candle_core::CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        softmax_bwd(res, grad).map(Some)
    }
}

fn softmax_bwd(y: &Tensor, g: &Tensor) -> candle_core::Result<Tensor> {
    use rayon::prelude::*;
    let t = y.dims().last().copied().unwrap_or(1).max(1);
    let fused = on_cpu_f32_pair(y, g, |yv, gv| {
        let mut dx = vec![0f32; yv.len()];
        dx.par_chunks_mut(t)
            .zip(yv.par_chunks(t).zip(gv.par_chunks(t)))
            .for_each(|(dx, (y, g))| {
                wide(
                    #[inline(always)]
                    || {
                        let d = dot(g, y);
                        for ((dx, &y), &g) in dx.iter_mut().zip(y).zip(g) {
                            *dx = y * (g - d);
                        }
                    },
                )
            });
        dx
    })?;
    match fused {
        Some(dx) => Tensor::from_vec(dx, y.shape(), y.device()),
        None => {
            let dot = (g * y)?.sum_keepdim(D::Minus1)?;
            g.broadcast_sub(&dot)? * y
        }
    }
}

/// Runs `f` compiled for the widest vector instructions this CPU has (AVX2 + FMA through
/// `pulp`; the build targets baseline x86-64, whose 4-wide SSE the compiler otherwise uses for
/// the element-wise loops of `f`, which must be `#[inline(always)]` to be compiled inside).
#[inline(always)]
fn wide<R>(f: impl FnOnce() -> R) -> R {
    // Detected once (it is called per row).
    static ARCH: std::sync::LazyLock<pulp::Arch> = std::sync::LazyLock::new(pulp::Arch::new);
    ARCH.dispatch(f)
}

/// Softmax over the last dimension of 4-D `x` (contiguous, shape `dims`) plus `mask` where
/// given: a layout with `dims` as its shape (broadcast strides allowed) whose rows are read in
/// place as slices.
fn softmax_masked_rows(
    x: &[f32],
    dims: &[usize],
    mask: Option<(&[f32], &candle_core::Layout)>,
) -> candle_core::Result<Vec<f32>> {
    if dims.len() != 4 || mask.is_some_and(|(_, l)| l.dims() != dims) {
        return Err(candle_core::Error::Msg(
            "fused softmax wants 4-D scores and mask".into(),
        ));
    }
    let (hh, ss, t) = (dims[1], dims[2], dims[3]);
    if dims.contains(&0) {
        return Ok(Vec::new());
    }
    let mut out = vec![0f32; x.len()];
    let Some((m, l2)) = mask else {
        softmax_rows(x, &mut out, t, |_| None);
        return Ok(out);
    };
    let st = l2.stride();
    let off = l2.start_offset();
    // Each row's mask is read as a slice: unit last stride, every row inside the storage.
    let last_row = off + (dims[0] - 1) * st[0] + (hh - 1) * st[1] + (ss - 1) * st[2];
    if st[3] != 1 || last_row + t > m.len() {
        return Err(candle_core::Error::Msg(format!(
            "fused softmax: mask layout {st:?} + {off} does not cover scores {dims:?}"
        )));
    }
    softmax_rows(x, &mut out, t, |row| {
        let (bi, rest) = (row / (hh * ss), row % (hh * ss));
        let (hi, si) = (rest / ss, rest % ss);
        let base = off + bi * st[0] + hi * st[1] + si * st[2];
        m.get(base..base + t)
    });
    Ok(out)
}

/// `softmax(q·kᵀ + mask)·v` for `q` `[B, H, T, d]` (already scaled), `k`, `v` `[B, H, S, d]` and
/// an additive mask broadcastable to `[B, H, T, S]`; differentiable. On the CPU in f32 with
/// OpenBLAS it is one op whose backward is written out (`dP = g·vᵀ`, the softmax's backward,
/// then `dq = dS·k`, `dk = dSᵀ·q`, `dv = Pᵀ·g`): the scores and probabilities (32 MB each for
/// a batch of 2 × 10 s) are no longer nodes of candle's graph, whose backward zero-fills and adds
/// a gradient buffer for every node. Elsewhere it is the composed products and softmax.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let fused = q.device().is_cpu()
        && [q, k, v]
            .iter()
            .all(|t| t.dtype() == DType::F32 && t.rank() == 4)
        && blas::backend().is_some();
    if !fused {
        let scores = blas::matmul(q, false, k, true)?;
        let probs = masked_softmax(&scores, mask)?;
        return blas::matmul(&probs, false, v, false);
    }
    let (b, h, t, _) = q.dims4()?;
    let s = k.dim(2)?;
    let mask = mask.map(|m| row_mask(m, (b, h, t, s))).transpose()?;
    let op = FusedAttention {
        mask,
        probs: std::sync::Mutex::new(None),
        grads: [q.track_op(), k.track_op(), v.track_op()],
    };
    Ok(q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)?)
}

/// See [`attention`]. The forward keeps the probabilities for the backward.
struct FusedAttention {
    mask: Option<Tensor>,
    probs: std::sync::Mutex<Option<Tensor>>,
    /// Which of q, k, v need a gradient.
    grads: [bool; 3],
}

impl candle_core::CustomOp3 for FusedAttention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
        s3: &candle_core::CpuStorage,
        l3: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (q, k, v) = (
            contiguous_f32(s1, l1, "attention queries")?,
            contiguous_f32(s2, l2, "attention keys")?,
            contiguous_f32(s3, l3, "attention values")?,
        );
        let (qd, kd, vd) = (l1.dims(), l2.dims(), l3.dims());
        if qd.len() != 4 || kd.len() != 4 || kd != vd || qd[..2] != kd[..2] || qd[3] != kd[3] {
            return Err(candle_core::Error::Msg(format!(
                "attention shapes do not fit: q {qd:?}, k {kd:?}, v {vd:?}"
            )));
        }
        let (b, h, t, d, s) = (qd[0], qd[1], qd[2], qd[3], kd[2]);
        let (scores, _, _) = blas::batched((q, (b * h, t, d), false), (k, (b * h, s, d), true))?;
        let dims = [b, h, t, s];
        let probs = match &self.mask {
            Some(m) => {
                let (ms, ml) = m.storage_and_layout();
                let candle_core::Storage::Cpu(ms) = &*ms else {
                    return Err(candle_core::Error::Msg(
                        "attention mask not on the CPU".into(),
                    ));
                };
                softmax_masked_rows(&scores, &dims, Some((cpu_f32(ms, "attention mask")?, ml)))?
            }
            None => softmax_masked_rows(&scores, &dims, None)?,
        };
        drop(scores);
        let (out, _, _) = blas::batched((&probs, (b * h, t, s), false), (v, (b * h, s, d), false))?;
        let probs = Tensor::from_vec(probs, (b, h, t, s), &candle_core::Device::Cpu)?;
        *self.probs.lock().unwrap_or_else(|e| e.into_inner()) = Some(probs);
        Ok((
            candle_core::CpuStorage::F32(out),
            candle_core::Shape::from((b, h, t, d)),
        ))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let probs = self.probs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(p) = probs else {
            return Err(candle_core::Error::Msg(
                "attention backward before its forward".into(),
            ));
        };
        let [gq, gk, gv] = self.grads;
        let dv = if gv {
            Some(blas::product(&p, true, g, false)?)
        } else {
            None
        };
        if !gq && !gk {
            return Ok((None, None, dv));
        }
        let dp = blas::product(g, false, v, true)?;
        let ds = softmax_bwd(&p, &dp)?;
        drop(dp);
        let dq = if gq {
            Some(blas::product(&ds, false, k, false)?)
        } else {
            None
        };
        let dk = if gk {
            Some(blas::product(&ds, true, q, false)?)
        } else {
            None
        };
        Ok((dq, dk, dv))
    }
}

impl candle_core::CustomOp2 for FusedSoftmax {
    fn name(&self) -> &'static str {
        "fused-masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let x = contiguous_f32(s1, l1, "softmax scores")?;
        let m = cpu_f32(s2, "softmax mask")?;
        let out = softmax_masked_rows(x, l1.dims(), Some((m, l2)))?;
        Ok((candle_core::CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _scores: &Tensor,
        _mask: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(softmax_bwd(res, grad)?), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn fused_masked_softmax_matches_the_composed_form_and_its_gradient() {
        let dev = Device::Cpu;
        let x = Var::new(
            &[[
                [[0.3f32, -1.0, 2.0], [1.0, 0.5, -0.5]],
                [[2.0, 2.0, 0.1], [-3.0, 0.0, 1.0]],
            ]],
            &dev,
        )
        .unwrap(); // [1, 2, 2, 3]
        let causal = Tensor::new(
            &[[0f32, f32::NEG_INFINITY, f32::NEG_INFINITY], [0., 0., 0.]],
            &dev,
        )
        .unwrap();
        let w = Tensor::new(&[1f32, -2., 0.5], &dev).unwrap();
        for mask in [None, Some(&causal)] {
            let fused = masked_softmax(x.as_tensor(), mask).unwrap();
            let plain = match mask {
                Some(m) => softmax(&x.as_tensor().broadcast_add(m).unwrap()).unwrap(),
                None => softmax(x.as_tensor()).unwrap(),
            };
            let d = (&fused - &plain).unwrap().abs().unwrap().max_all().unwrap();
            assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
            let gf = fused
                .broadcast_mul(&w)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let gp = plain
                .broadcast_mul(&w)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let d = (gf.get(x.as_tensor()).unwrap() - gp.get(x.as_tensor()).unwrap())
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap();
            assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
        }
    }

    #[test]
    fn fused_gelu_matches_candle_and_its_gradient() {
        let x = Var::from_tensor(&(seeded(7, (9, 301), 1.0) * 3.0).unwrap()).unwrap();
        let w = seeded(8, (9, 301), 1.0);
        let ours = gelu_erf(x.as_tensor()).unwrap();
        let want = x.as_tensor().gelu_erf().unwrap();
        let d = (&ours - &want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
        let go = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gw = (want * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let (a, b) = (
            go.get(x.as_tensor()).unwrap(),
            gw.get(x.as_tensor()).unwrap(),
        );
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-5, "{d}");
    }

    #[test]
    fn fused_elu_matches_the_composed_form_and_its_gradient() {
        let x = Var::from_tensor(&(seeded(9, (7, 333), 1.0) * 3.0).unwrap()).unwrap();
        let w = seeded(10, (7, 333), 1.0);
        let xt = x.as_tensor();
        let ours = elu(xt).unwrap();
        // relu(x) + e^min(x, 0) − 1, from ops candle differentiates.
        let want = (xt.relu().unwrap() + xt.minimum(0f32).unwrap().exp().unwrap())
            .unwrap()
            .affine(1.0, -1.0)
            .unwrap();
        let d = (&ours - &want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6, "{d}");
        let go = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gw = (want * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let (a, b) = (go.get(xt).unwrap(), gw.get(xt).unwrap());
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-5, "{d}");
    }

    #[test]
    fn single_query_attention_equals_the_composed_attention() {
        let (b, h, d, max) = (2, 3, 16, 10);
        let q = seeded(11, (b * h, d), 1.0).reshape((b, h, 1, d)).unwrap();
        // Keys and values as a KV cache holds them: the first `l` of `max` positions, a
        // strided view.
        let kc = seeded(12, (b * h * max, d), 1.0)
            .reshape((b, h, max, d))
            .unwrap();
        let vc = seeded(13, (b * h * max, d), 1.0)
            .reshape((b, h, max, d))
            .unwrap();
        for l in [1, 7, max] {
            let k = kc.narrow(2, 0, l).unwrap();
            let v = vc.narrow(2, 0, l).unwrap();
            // Batch 0 sees its first two keys masked; batch 1 has every key masked with
            // f32::MIN, as classifier-free guidance's unconditional row in cross-attention.
            let mask: Vec<f32> = (0..b * l)
                .map(|i| match (i / l, i % l) {
                    (0, j) if j < 2 && l > 2 => f32::MIN,
                    (0, _) => 0.0,
                    _ => f32::MIN,
                })
                .collect();
            let mask = Tensor::from_vec(mask, (b, 1, 1, l), &Device::Cpu).unwrap();
            for m in [None, Some(&mask)] {
                let got = single_query_attention(&q, &k, &v, m).unwrap().unwrap();
                let scores = q.matmul(&k.t().unwrap()).unwrap();
                let want = masked_softmax(&scores, m)
                    .unwrap()
                    .matmul(&v.contiguous().unwrap())
                    .unwrap();
                assert_eq!(got.dims(), want.dims());
                let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
                assert!(diff.to_scalar::<f32>().unwrap() < 1e-5, "l {l}: {diff}");
            }
        }
        // Where it does not apply it declines rather than computing something else.
        let two = Tensor::cat(&[&q, &q], 2).unwrap();
        assert!(single_query_attention(&two, &kc, &vc, None)
            .unwrap()
            .is_none());
    }

    #[test]
    fn layer_norm_and_softmax_propagate_gradients() {
        let dev = Device::Cpu;
        let x = Var::new(&[[1f32, 2., 4.], [0.5, -1., 3.]], &dev).unwrap();
        let ln = LayerNorm {
            weight: Var::new(&[1f32, 0.5, 2.], &dev)
                .unwrap()
                .as_tensor()
                .clone(),
            bias: Tensor::zeros(3, DType::F32, &dev).unwrap(),
            eps: 1e-5,
        };
        let y = softmax(&ln.forward(x.as_tensor()).unwrap()).unwrap();
        let w = Tensor::new(&[[1f32, 2., 3.], [3., 2., 1.]], &dev).unwrap();
        let loss = (y * w).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let g = grads.get(x.as_tensor()).expect("x gets a gradient");
        let g = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(g.iter().all(|v| v.is_finite()) && g.iter().any(|v| v.abs() > 1e-4));
    }

    #[test]
    fn fused_layer_norm_equals_the_composed_one_with_gradients() {
        let x = Var::from_tensor(
            &(seeded(20, (6, 40), 2.0) + 0.7)
                .unwrap()
                .reshape((2, 3, 40))
                .unwrap(),
        )
        .unwrap();
        let ln = LayerNorm {
            weight: Var::from_tensor(
                &(seeded(21, (1, 40), 0.5) + 1.0)
                    .unwrap()
                    .squeeze(0)
                    .unwrap(),
            )
            .unwrap()
            .as_tensor()
            .clone(),
            bias: Var::from_tensor(&seeded(22, (1, 40), 0.5).squeeze(0).unwrap())
                .unwrap()
                .as_tensor()
                .clone(),
            eps: 1e-5,
        };
        let g = seeded(23, (6, 40), 1.0).reshape((2, 3, 40)).unwrap();
        let fused = ln.forward(x.as_tensor()).unwrap();
        let plain = ln.composed(x.as_tensor()).unwrap();
        let diff = crate::models::clap::tests::max_abs_diff;
        assert!(diff(&fused, &plain) < 1e-5);
        let gf = (fused * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let gp = (plain * &g).unwrap().sum_all().unwrap().backward().unwrap();
        for t in [x.as_tensor(), &ln.weight, &ln.bias] {
            let (a, b) = (gf.get(t).unwrap(), gp.get(t).unwrap());
            assert_eq!(a.dims(), b.dims());
            assert!(diff(a, b) < 1e-4, "{}", diff(a, b));
        }
        // A frozen weight and bias get no gradient; the input still does.
        let frozen = LayerNorm {
            weight: ln.weight.detach(),
            bias: ln.bias.detach(),
            eps: 1e-5,
        };
        let g2 = frozen
            .forward(x.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(g2.get(x.as_tensor()).is_some() && g2.get(&frozen.weight).is_none());
    }

    #[test]
    fn layer_norm_matches_closed_form() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[1f32, 2., 3.]], &dev).unwrap();
        let ln = LayerNorm {
            weight: Tensor::ones(3, DType::F32, &dev).unwrap(),
            bias: Tensor::zeros(3, DType::F32, &dev).unwrap(),
            eps: 0.0,
        };
        let y = ln
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let s = (2.0f32 / 3.0).sqrt();
        for (a, b) in y.iter().zip([-1.0 / s, 0.0, 1.0 / s]) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    /// The fused attention against candle's own composed products and softmax, forward and the
    /// gradients of q, k and v: self-attention with a causal mask shared by the batch,
    /// cross-attention (S ≠ T) with a padding mask per batch item, and no mask; and with k
    /// frozen, which must get no gradient.
    #[test]
    fn fused_attention_matches_the_composed_form_and_its_gradients() {
        let diff = crate::models::clap::tests::max_abs_diff;
        let (b, h, t, d) = (2, 3, 5, 4);
        let dev = Device::Cpu;
        let causal: Vec<f32> = (0..t * t)
            .map(|i| {
                if i % t > i / t {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let causal = Tensor::from_vec(causal, (1, 1, t, t), &dev).unwrap();
        let padding = Tensor::new(
            &[
                [[[0f32, 0., 0., 0., 0., -1e9]]],
                [[[0., 0., 0., -1e9, -1e9, -1e9]]],
            ],
            &dev,
        )
        .unwrap(); // [2, 1, 1, 6]
        for (s, mask, freeze_k) in [
            (t, Some(&causal), false),
            (6, Some(&padding), false),
            (6, None, false),
            (t, Some(&causal), true),
        ] {
            let q = Var::from_tensor(
                &seeded(1, (b * h * t, d), 1.0)
                    .reshape((b, h, t, d))
                    .unwrap(),
            )
            .unwrap();
            let k0 = seeded(2, (b * h * s, d), 1.0)
                .reshape((b, h, s, d))
                .unwrap();
            let k = Var::from_tensor(&k0).unwrap();
            let v = Var::from_tensor(
                &seeded(3, (b * h * s, d), 1.0)
                    .reshape((b, h, s, d))
                    .unwrap(),
            )
            .unwrap();
            let g = seeded(4, (b * h * t, d), 1.0)
                .reshape((b, h, t, d))
                .unwrap();
            let kt = if freeze_k {
                k0.clone()
            } else {
                k.as_tensor().clone()
            };
            let ours = attention(q.as_tensor(), &kt, v.as_tensor(), mask).unwrap();
            let scores = q.as_tensor().matmul(&kt.t().unwrap()).unwrap();
            let scores = match mask {
                Some(m) => scores.broadcast_add(m).unwrap(),
                None => scores,
            };
            let want = softmax(&scores).unwrap().matmul(v.as_tensor()).unwrap();
            assert_eq!(ours.dims(), &[b, h, t, d]);
            assert!(diff(&ours, &want) < 1e-5, "forward, s = {s}");
            let go = (ours * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let gw = (want * &g).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, x) in [("q", q.as_tensor()), ("k", &kt), ("v", v.as_tensor())] {
                if freeze_k && name == "k" {
                    assert!(go.get(x).is_none(), "a frozen k got a gradient");
                    continue;
                }
                let (a, w) = (go.get(x).unwrap(), gw.get(x).unwrap());
                assert_eq!(a.dims(), w.dims());
                assert!(
                    diff(a, w) < 1e-5,
                    "gradient of {name}, s = {s}: {}",
                    diff(a, w)
                );
            }
        }
    }

    /// Seeded Gaussian data, so these tests are deterministic.
    fn seeded(seed: u64, shape: (usize, usize), std: f32) -> Tensor {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n = shape.0 * shape.1;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                let (u1, u2): (f32, f32) = (rng.random::<f32>().max(1e-7), rng.random());
                std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn rows_matmul_equals_matmul() {
        let w = seeded(1, (130, 70), 1.0);
        let x = seeded(2, (3, 70), 1.0);
        let want = x.matmul(&w.t().unwrap()).unwrap().to_vec2::<f32>().unwrap();
        let wv = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let got = rows_matmul(&wv, &xv, 3, 70, 130);
        for (j, row) in want.iter().enumerate() {
            for (o, v) in row.iter().enumerate() {
                assert!((got[j * 130 + o] - v).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn quantized_linear_is_close_to_dense() {
        let w = seeded(3, (64, 256), 0.1);
        let x = seeded(4, (6, 256), 1.0).reshape((2, 3, 256)).unwrap();
        let dense = Linear::from_weight(w.clone(), None);
        let y = dense.forward(&x).unwrap();
        for mode in [WeightMode::F32, WeightMode::Q8, WeightMode::Q4k] {
            let mut l = Linear::from_weight(w.clone(), None);
            l.convert(mode).unwrap();
            let yq = l.forward(&x).unwrap();
            assert_eq!(yq.dims(), &[2, 3, 64]);
            let err = (yq - &y).unwrap().abs().unwrap().max_all().unwrap();
            let err = err.to_scalar::<f32>().unwrap();
            let tol = match mode {
                WeightMode::F32 => 1e-5,
                // Relative to outputs of std ~1.6; q8_0 also quantises the activations.
                WeightMode::Q8 => 0.08,
                WeightMode::Q4k => 0.4,
            };
            assert!(err < tol, "{mode}: {err}");
        }
    }
}
