//! MusicGen's training loss, as HF's `labels` path and audiocraft compute it: labels are the
//! pre-delayed codes; the decoder input is the labels shifted right with the BOS (2048) first;
//! positions labelled 2048 (the pattern's padding: delay steps, the other codebooks' steps of
//! flatten) are ignored; the loss is the mean over codebooks of each codebook's mean
//! cross-entropy. Every op records a backward.

use candle_core::{DType, IndexOp, Tensor, D};

use crate::error::{Error, Result};
use crate::models::device::count_transfer;

/// Loss and its per-codebook parts.
#[derive(Debug, Clone)]
pub struct LossOutput {
    /// Scalar, differentiable.
    pub loss: Tensor,
    /// Cross-entropy of each codebook (nats).
    pub ce: Vec<f32>,
    /// Tokens that counted, per codebook.
    pub tokens: Vec<usize>,
}

impl LossOutput {
    pub fn ppl(&self) -> Vec<f32> {
        self.ce.iter().map(|c| c.exp()).collect()
    }
}

/// Decoder inputs for `labels` `[B, K, T]`: shifted right by one with `bos` in front.
pub fn shift_right(labels: &Tensor, bos: u32) -> Result<Tensor> {
    let (b, k, t) = labels.dims3()?;
    let start = Tensor::full(bos, (b, k, 1), labels.device())?;
    if t <= 1 {
        return Ok(start);
    }
    Ok(Tensor::cat(&[&start, &labels.narrow(2, 0, t - 1)?], 2)?.contiguous()?)
}

/// `log_softmax` over the last dimension, composed of differentiable ops.
pub fn log_softmax(xs: &Tensor) -> Result<Tensor> {
    let max = xs.max_keepdim(D::Minus1)?.detach();
    let shifted = xs.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// Cross-entropy of `logits` `[B, K, T, V]` against `labels` `[B, K, T]` (u32), ignoring
/// `ignore`. A codebook with no counted token contributes nothing (HF would give NaN). The
/// logits may be in reduced precision: the cross-entropy is computed in f32. Two values cross
/// from the device to the host (the token counts and the per-codebook cross-entropies).
pub fn codebook_cross_entropy(logits: &Tensor, labels: &Tensor, ignore: u32) -> Result<LossOutput> {
    let (b, k, t, v) = logits.dims4()?;
    if labels.dims() != [b, k, t] {
        return Err(Error::InvalidRequest(format!(
            "labels {:?} do not match logits {:?}",
            labels.dims(),
            logits.dims()
        )));
    }
    let logits = logits.to_dtype(DType::F32)?;
    let mask = labels.ne(ignore)?; // u8 [B, K, T]
    let maskf = mask.to_dtype(DType::F32)?;
    count_transfer();
    let counts = maskf.sum(2)?.sum(0)?.to_vec1::<f32>()?; // [K]
    let mut parts = Vec::with_capacity(k);
    let mut counted = Vec::with_capacity(k);
    for (kk, &count) in counts.iter().enumerate() {
        if count == 0.0 {
            continue;
        }
        let lg = logits.i((.., kk))?.reshape((b * t, v))?;
        let lab = labels.i((.., kk))?.flatten_all()?;
        let m = mask.i((.., kk))?.flatten_all()?;
        let safe = m.where_cond(&lab, &lab.zeros_like()?)?;
        let logp = log_softmax(&lg)?;
        let picked = logp.gather(&safe.unsqueeze(1)?, 1)?.squeeze(1)?;
        let nll = (picked.neg()? * maskf.i((.., kk))?.flatten_all()?)?.sum_all()?;
        parts.push((nll / count as f64)?);
        counted.push(kk);
    }
    if parts.is_empty() {
        return Err(Error::InvalidRequest(
            "no position to learn from: every label is padding".into(),
        ));
    }
    let stacked = Tensor::stack(&parts, 0)?;
    count_transfer();
    let values = stacked.detach().to_vec1::<f32>()?;
    let mut ce = vec![0f32; k];
    for (&kk, &c) in counted.iter().zip(&values) {
        ce[kk] = c;
    }
    let tokens = counts.iter().map(|&c| c as usize).collect();
    // HF divides the sum by the number of codebooks.
    let loss = (stacked.sum_all()? / k as f64)?;
    Ok(LossOutput { loss, ce, tokens })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn shift_right_puts_bos_first() {
        let l = Tensor::new(&[[[5u32, 6, 7]]], &Device::Cpu).unwrap();
        let s = shift_right(&l, 2048).unwrap();
        assert_eq!(s.to_vec3::<u32>().unwrap(), vec![vec![vec![2048, 5, 6]]]);
    }

    #[test]
    fn cross_entropy_matches_closed_form_and_ignores_padding() {
        let dev = Device::Cpu;
        // B=1, K=2, T=2, V=3
        let logits = Var::new(
            &[[[[1f32, 2., 3.], [0., 0., 0.]], [[2., 0., 0.], [1., 1., 5.]]]],
            &dev,
        )
        .unwrap();
        let labels = Tensor::new(&[[[2u32, 9], [0, 2]]], &dev).unwrap(); // 9 = ignored
        let out = codebook_cross_entropy(logits.as_tensor(), &labels, 9).unwrap();
        let lse = |xs: [f32; 3]| xs.iter().map(|x| x.exp()).sum::<f32>().ln();
        let ce0 = lse([1., 2., 3.]) - 3.0;
        let ce1 = ((lse([2., 0., 0.]) - 2.0) + (lse([1., 1., 5.]) - 5.0)) / 2.0;
        assert!((out.ce[0] - ce0).abs() < 1e-6 && (out.ce[1] - ce1).abs() < 1e-6);
        assert_eq!(out.tokens, vec![1, 2]);
        let loss = out.loss.to_scalar::<f32>().unwrap();
        assert!((loss - (ce0 + ce1) / 2.0).abs() < 1e-6);
        let g = out.loss.backward().unwrap();
        let g = g
            .get(logits.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        // The ignored position gets no gradient; the others do.
        assert!(g[3..6].iter().all(|v| *v == 0.0));
        assert!(g[0..3].iter().any(|v| v.abs() > 1e-3));
    }
}
