//! Softmax over the last dimension that records a backward ([`softmax`]; candle 0.11's fused
//! `softmax_last_dim` records none), and the masked softmax of attention ([`masked_softmax`]):
//! on the CPU in f32 one custom op whose backward keeps only its output; elsewhere (and with
//! `TUNELAB_GENERIC_OPS=1`) the composed form. The row kernels here ([`softmax_masked_rows`],
//! [`softmax_bwd`]) are shared with the fused attention.

use candle_core::{DType, Tensor, D};

use super::cpu::{contiguous_f32, cpu_f32, fast_path, on_cpu_f32_pair, Shortcut};
use super::simd::{dot, lane_max, lane_sum, wide};
use crate::error::Result;
use crate::models::vmath;

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
    if !fast_path([scores]) || scores.rank() != 4 {
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
pub(super) fn row_mask(mask: &Tensor, shape: impl Into<candle_core::Shape>) -> Result<Tensor> {
    let m = mask.to_dtype(DType::F32)?.broadcast_as(shape)?;
    Ok(if m.stride().last() == Some(&1) {
        m
    } else {
        m.contiguous()?
    })
}

/// The fused softmax (see [`masked_softmax`]).
struct FusedSoftmax;

impl candle_core::CustomOp1 for FusedSoftmax {
    fn name(&self) -> &'static str {
        "fused-softmax"
    }

    fn cpu_fwd(
        &self,
        s: &candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        Shortcut::Softmax.entered();
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
        Shortcut::Softmax.entered();
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
                        *o = vmath::exp(*o - max);
                    }
                    let inv = 1.0 / lane_sum(o);
                    for o in o.iter_mut() {
                        *o *= inv;
                    }
                },
            )
        });
}

/// Softmax over the last dimension of 4-D `x` (contiguous, shape `dims`) plus `mask` where
/// given: a layout with `dims` as its shape (broadcast strides allowed) whose rows are read in
/// place as slices.
pub(super) fn softmax_masked_rows(
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

/// The softmax's backward from its output `y` and the gradient `g`: `dx = y ⊙ (g − Σ g ⊙ y)`,
/// one parallel pass on the CPU in f32 and composed of candle ops elsewhere. Only the fused ops
/// call it, whose forward already took the shortcut.
pub(super) fn softmax_bwd(y: &Tensor, g: &Tensor) -> candle_core::Result<Tensor> {
    use rayon::prelude::*;
    let t = y.dims().last().copied().unwrap_or(1).max(1);
    let fused = on_cpu_f32_pair(y, g, |yv, gv| {
        Shortcut::Softmax.entered();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::nn::force_generic_ops;
    use candle_core::{Device, Var};

    #[test]
    fn fused_masked_softmax_matches_the_composed_form_and_its_gradient() {
        let _fast = force_generic_ops(false);
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
}
