//! Small layers shared by our models, written so that **every op records a backward**: candle
//! 0.11's fused `softmax_last_dim` and `LayerNorm` do not, which silently loses gradients on a
//! training path. Inference uses the same code, so what we train is what we run.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the large matrices of a model are stored for inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightMode {
    /// fp32, bit-for-bit the checkpoint's values (training and parity).
    #[default]
    F32,
    /// bf16 weights, fp32 activations.
    Bf16,
    /// 8-bit block quantisation (ggml q8_0) through candle's quantized matmul.
    Q8,
}

impl std::str::FromStr for WeightMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            "q8" => Ok(Self::Q8),
            other => Err(Error::InvalidRequest(format!(
                "unknown weight mode `{other}` (expected f32, bf16 or q8)"
            ))),
        }
    }
}

impl std::fmt::Display for WeightMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::Q8 => "q8",
        })
    }
}

#[derive(Debug, Clone)]
enum Weight {
    /// `[out, in]`, fp32 (may be a `Var` when training).
    Dense(Tensor),
    /// `[out, in]` in bf16; the input is cast down and the output back up.
    Bf16(Tensor),
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

    /// The dense weight (`None` once quantised).
    pub fn weight(&self) -> Option<&Tensor> {
        match &self.weight {
            Weight::Dense(w) => Some(w),
            _ => None,
        }
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Converts the weight for inference in `mode` (a no-op for f32).
    pub fn convert(&mut self, mode: WeightMode) -> Result<()> {
        let Weight::Dense(w) = &self.weight else {
            return Ok(());
        };
        self.weight = match mode {
            WeightMode::F32 => return Ok(()),
            WeightMode::Bf16 => Weight::Bf16(w.to_dtype(DType::BF16)?),
            WeightMode::Q8 => {
                let q = QTensor::quantize(w, GgmlDType::Q8_0)?;
                Weight::Quant(Arc::new(QMatMul::from_qtensor(q)?))
            }
        };
        Ok(())
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let y = match &self.weight {
            Weight::Dense(w) => matmul_t(xs, w)?,
            Weight::Bf16(w) => matmul_t(&xs.to_dtype(DType::BF16)?, w)?.to_dtype(xs.dtype())?,
            Weight::Quant(q) => q.forward(xs)?,
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        match &self.lora {
            Some(l) => {
                let delta = matmul_t(&matmul_t(xs, &l.a)?, &l.b)?;
                Ok((y + (delta * l.scale)?)?)
            }
            None => Ok(y),
        }
    }
}

/// `x · wᵀ` for `x` of any rank ≥ 2 (flattened to 2-D so the GEMM sees one large matrix).
pub fn matmul_t(xs: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = xs.dims();
    let in_dim = dims[dims.len() - 1];
    let lead: usize = dims[..dims.len() - 1].iter().product();
    let y = xs.reshape((lead, in_dim))?.matmul(&w.t()?)?;
    let mut out = dims.to_vec();
    let last = out.len() - 1;
    out[last] = w.dim(0)?;
    Ok(y.reshape(out)?)
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
        let mean = xs.mean_keepdim(D::Minus1)?;
        let xc = xs.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xn = xc.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        Ok(xn.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)?)
    }
}

/// Softmax over the last dimension that records a backward (max-subtracted exp / sum).
pub fn softmax(xs: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::softmax(xs, D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

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

    #[test]
    fn quantized_linear_is_close_to_dense() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 0.1, (64, 256), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 3, 256), &dev).unwrap();
        let dense = Linear::from_weight(w.clone(), None);
        let y = dense.forward(&x).unwrap();
        for mode in [WeightMode::Bf16, WeightMode::Q8] {
            let mut l = Linear::from_weight(w.clone(), None);
            l.convert(mode).unwrap();
            let yq = l.forward(&x).unwrap();
            assert_eq!(yq.dims(), &[2, 3, 64]);
            let err = (yq - &y).unwrap().abs().unwrap().max_all().unwrap();
            let err = err.to_scalar::<f32>().unwrap();
            assert!(err < 0.05, "{mode}: {err}");
        }
    }
}
