//! Linear layers: [`Linear`] (`y = x Wᵀ + b`, HF `nn.Linear`) with an optional LoRA adapter
//! ([`Lora`], whose input dropout is seeded so a resumed run draws the same masks), and the
//! [`WeightMode`] its weight is laid out in for inference. Training products go through
//! [`matmul_t`] (OpenBLAS when loaded, no gradient for a frozen weight); a frozen weight times a
//! few rows (a decoding step) through [`rows_matmul`], which streams the weight once. Both are
//! CPU shortcuts ([`fast_path`]); elsewhere, and with `TUNELAB_GENERIC_OPS=1`, candle's matmul.
//! Weights quantised to 8 or 4 bits on the CPU are [`QMatrix`]es (a decoding step's few rows go
//! through its integer kernel); on other devices candle's `QMatMul` of the same ggml format.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::cpu::fast_path;
use crate::error::{Error, Result};
use crate::models::blas;
use crate::models::gemv::rows_matmul;
use crate::models::qgemv::{QFormat, QMatrix};

/// How the large matrices of a model are stored for inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightMode {
    /// fp32, bit-for-bit the checkpoint's values (training and parity).
    #[default]
    F32,
    /// 8-bit blocks of 32, an integer scale each under an f32 scale per 256 weights:
    /// tunelab's integer kernel on the CPU (`models::qgemv`); candle's q8_0 elsewhere.
    Q8,
    /// 4-bit blocks in the same layout: the same kernel, half the bytes; candle's q4_0
    /// elsewhere.
    Q4,
    /// 4-bit k-quant (ggml q4_K) through candle's quantized matmul.
    Q4k,
}

impl WeightMode {
    /// Every mode, most exact first.
    pub const ALL: [Self; 4] = [Self::F32, Self::Q8, Self::Q4, Self::Q4k];

    /// What the studio loads a MusicGen in unless told otherwise: see README's speed and
    /// quality table for why.
    pub const STUDIO_DEFAULT: Self = Self::Q8;
}

impl std::str::FromStr for WeightMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Self::F32),
            "q8" => Ok(Self::Q8),
            "q4" => Ok(Self::Q4),
            "q4k" => Ok(Self::Q4k),
            // candle's CPU bf16 matmul is ~40x slower than f32 (measured), so it is not offered.
            other => Err(Error::InvalidRequest(format!(
                "unknown weight mode `{other}` (expected f32, q8, q4 or q4k)"
            ))),
        }
    }
}

impl std::fmt::Display for WeightMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Q8 => "q8",
            Self::Q4 => "q4",
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
    /// 8- or 4-bit blocks on the CPU: few rows through [`QMatrix::matmul_rows`], more (a
    /// prompt) through OpenBLAS on the dequantised matrix, built for that call only.
    Packed(Arc<QMatrix>),
    /// candle's quantized matmul (any device).
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
    /// Whether the weight is stored in 8 or 4 bits (a layer narrower than a block stays f32).
    pub fn is_quantised(&self) -> bool {
        matches!(self.weight, Weight::Packed(_) | Weight::Quant(_))
    }

    pub fn weight(&self) -> Option<&Tensor> {
        match &self.weight {
            Weight::Dense(w) | Weight::Frozen(w) => Some(w),
            Weight::Packed(_) | Weight::Quant(_) => None,
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
        // tunelab's own blocks on the CPU (f32 weights), candle's of the same format elsewhere.
        let packed = |format: QFormat, dt: GgmlDType| -> Result<Weight> {
            let (rows, cols) = w.dims2()?;
            if !w.device().is_cpu() || w.dtype() != candle_core::DType::F32 {
                return quant(dt);
            }
            if !cols.is_multiple_of(crate::models::qgemv::BLOCK) {
                return Ok(Weight::Frozen(w.detach().contiguous()?));
            }
            let values = w.detach().flatten_all()?.to_vec1::<f32>()?;
            Ok(Weight::Packed(Arc::new(QMatrix::quantize(
                &values, rows, cols, format,
            )?)))
        };
        self.weight = match mode {
            WeightMode::F32 => Weight::Frozen(w.detach().contiguous()?),
            WeightMode::Q8 => packed(QFormat::Int8, GgmlDType::Q8_0)?,
            WeightMode::Q4 => packed(QFormat::Int4, GgmlDType::Q4_0)?,
            WeightMode::Q4k => quant(GgmlDType::Q4K)?,
        };
        Ok(())
    }

    /// `y = x Wᵀ + b (+ LoRA)`, computed in `xs`'s precision: f32 weights (a training run's
    /// master weights) are cast to it, so with bf16 inputs this is mixed precision, and the
    /// gradients flow back to the f32 weights through the casts.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let dt = xs.dtype();
        let y = match &self.weight {
            Weight::Dense(w) => matmul_t(xs, &cast(w, dt)?)?,
            Weight::Frozen(w) => frozen_matmul(xs, &cast(w, dt)?)?,
            Weight::Packed(q) => packed_matmul(xs, q)?,
            Weight::Quant(q) => q.forward(xs)?,
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(&cast(b, dt)?)?,
            None => y,
        };
        match &self.lora {
            Some(l) => {
                let down = matmul_t(&l.input(xs)?, &cast(&l.a, dt)?)?;
                let delta = matmul_t(&down, &cast(&l.b, dt)?)?;
                Ok((y + (delta * l.scale)?)?)
            }
            None => Ok(y),
        }
    }

    /// Stores the (frozen) weight and bias in `dtype` for inference in reduced precision
    /// (halves the memory and bandwidth of bf16/f16); quantised weights stay as they are.
    pub fn to_dtype(&mut self, dtype: candle_core::DType) -> Result<()> {
        if let Weight::Dense(w) | Weight::Frozen(w) = &self.weight {
            self.weight = Weight::Frozen(w.detach().to_dtype(dtype)?);
        }
        if let Some(b) = &self.bias {
            self.bias = Some(b.detach().to_dtype(dtype)?);
        }
        Ok(())
    }
}

/// `t` in `dtype` (the same tensor when it already is).
fn cast(t: &Tensor, dtype: candle_core::DType) -> Result<Tensor> {
    if t.dtype() == dtype {
        Ok(t.clone())
    } else {
        Ok(t.to_dtype(dtype)?)
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
    if lead > SMALL_M || !fast_path([xs, w]) {
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

/// `x · wᵀ` for a [`QMatrix`] `w`: the integer kernel for a few f32 rows on the CPU; otherwise
/// (a prompt's many rows, `TUNELAB_GENERIC_OPS=1`) the dequantised matrix, for this call only.
fn packed_matmul(xs: &Tensor, w: &QMatrix) -> Result<Tensor> {
    let dims = xs.dims();
    let in_dim = dims[dims.len() - 1];
    let lead: usize = dims[..dims.len() - 1].iter().product();
    let (out_dim, w_in) = w.dims();
    if w_in != in_dim {
        return Err(Error::InvalidRequest(format!(
            "linear layer expects {w_in} inputs, got {in_dim}"
        )));
    }
    let mut out = dims.to_vec();
    let last = out.len() - 1;
    out[last] = out_dim;
    if lead <= SMALL_M && fast_path([xs]) {
        let x = xs.flatten_all()?.to_vec1::<f32>()?;
        let y = w.matmul_rows(&x, lead)?;
        return Ok(Tensor::from_vec(y, out, xs.device())?);
    }
    let dense =
        Tensor::from_vec(w.dequantize(), (out_dim, in_dim), xs.device())?.to_dtype(xs.dtype())?;
    let y = if fast_path([xs]) {
        matmul_t(xs, &dense)?
    } else {
        xs.reshape((lead, in_dim))?.matmul(&dense.t()?)?
    };
    Ok(y.reshape(out)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::nn::testing::seeded;

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
        // Six rows take the integer kernel, twenty the dequantised product.
        let many = seeded(5, (20, 256), 1.0);
        let y_many = dense.forward(&many).unwrap();
        for mode in WeightMode::ALL {
            let mut l = Linear::from_weight(w.clone(), None);
            l.convert(mode).unwrap();
            for (x, y) in [(&x, &y), (&many, &y_many)] {
                let yq = l.forward(x).unwrap();
                assert_eq!(yq.dims(), y.dims());
                let err = (yq - y).unwrap().abs().unwrap().max_all().unwrap();
                let err = err.to_scalar::<f32>().unwrap();
                let tol = match mode {
                    WeightMode::F32 => 1e-5,
                    // Relative to outputs of std ~1.6; q8_0 also quantises the activations.
                    WeightMode::Q8 => 0.08,
                    // 4 bits: an error of ≈ 0.13 standard deviation (measured max 0.44 for q4,
                    // whose symmetric levels are coarser than q4k's offset ones).
                    WeightMode::Q4 => 0.6,
                    WeightMode::Q4k => 0.4,
                };
                assert!(err < tol, "{mode}: {err}");
            }
        }
    }
}
