//! Layer norm over the last dimension (PyTorch `nn.LayerNorm`): on the CPU in f32 one custom op
//! with a written-out backward (candle 0.11's fused `LayerNorm` records none), elsewhere (and
//! with `TUNELAB_GENERIC_OPS=1`) the composed form, which is also the fused op's reference in the
//! tests.

use candle_core::{DType, Tensor, D};
use candle_nn::VarBuilder;

use super::cpu::{contiguous_f32, fast_path, Shortcut};
use super::simd::{lane_sum_f64, wide};
use crate::error::Result;

/// Layer norm over the last dimension that records a backward (PyTorch `nn.LayerNorm`).
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

    /// Normalises in f32 whatever the input's precision (as autocast runs layer norm), and
    /// returns the input's precision.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if xs.dtype() != DType::F32 && self.weight.dtype() == DType::F32 {
            let y = self.forward(&xs.to_dtype(DType::F32)?)?;
            return Ok(y.to_dtype(xs.dtype())?);
        }
        let fused = fast_path([xs, &self.weight, &self.bias])
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
        Shortcut::LayerNorm.entered();
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
        Shortcut::LayerNorm.entered();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::nn::force_generic_ops;
    use crate::models::nn::softmax;
    use crate::models::nn::testing::seeded;
    use candle_core::{DType, Device, Var};

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
        let _fast = force_generic_ops(false);
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
        let diff = crate::testing::max_abs_diff;
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
}
