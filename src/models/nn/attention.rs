//! Scaled dot-product attention, `softmax(q·kᵀ + mask)·v`: [`attention`] for training and
//! prompts (one op with a written-out backward on the CPU with OpenBLAS, so the scores are no
//! node of candle's graph) and [`single_query_attention`] for a decoding step (one query read
//! against a KV cache in place, no gradient). Both are CPU shortcuts: elsewhere, and with
//! `TUNELAB_GENERIC_OPS=1`, attention is composed of candle's products and the masked softmax.

use candle_core::{DType, Tensor};

use super::cpu::{contiguous_f32, cpu_f32, fast_path, Shortcut};
use super::simd::{dot, lane_max, lane_sum, wide};
use super::softmax::{masked_softmax, row_mask, softmax_bwd, softmax_masked_rows};
use crate::error::{Error, Result};
use crate::models::{blas, vmath};

/// `softmax(q·kᵀ + mask)·v` for `q` `[B, H, T, d]` (already scaled), `k`, `v` `[B, H, S, d]` and
/// an additive mask broadcastable to `[B, H, T, S]`; differentiable. On the CPU in f32 with
/// OpenBLAS it is one op whose backward is written out (`dP = g·vᵀ`, the softmax's backward,
/// then `dq = dS·k`, `dk = dSᵀ·q`, `dv = Pᵀ·g`): the scores and probabilities (32 MB each for
/// a batch of 2 × 10 s) are no longer nodes of candle's graph, whose backward zero-fills and adds
/// a gradient buffer for every node. Elsewhere it is the composed products and softmax.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    if takes_fused(q, k, v) {
        fused_attention(q, k, v, mask)
    } else {
        composed_attention(q, k, v, mask)
    }
}

/// Whether [`attention`] takes the fused op: 4-D tensors on OpenBLAS's [`blas::fast_path`].
fn takes_fused(q: &Tensor, k: &Tensor, v: &Tensor) -> bool {
    [q, k, v].iter().all(|t| t.rank() == 4) && blas::fast_path([q, k, v])
}

/// [`attention`] composed of products and the masked softmax, each recorded by candle's graph.
/// In reduced precision the softmax runs in f32 (as PyTorch's attention accumulates), its
/// probabilities going back to the inputs' precision for the second product.
fn composed_attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let scores = blas::matmul(q, false, k, true)?;
    if scores.dtype() == DType::F32 {
        let probs = masked_softmax(&scores, mask)?;
        return blas::matmul(&probs, false, v, false);
    }
    let mask = mask.map(|m| m.to_dtype(DType::F32)).transpose()?;
    let probs = masked_softmax(&scores.to_dtype(DType::F32)?, mask.as_ref())?;
    blas::matmul(&probs.to_dtype(v.dtype())?, false, v, false)
}

/// The fused form of [`attention`] (its forward fails without OpenBLAS: it has no other
/// backend). Its tests call it directly, so they cannot pass on the composed form.
fn fused_attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
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
        Shortcut::Attention.entered();
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
        Shortcut::Attention.entered();
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

/// Attention of one query position over `L` keys: `softmax(q·kᵀ + mask)·v` for `q`
/// `[B, heads, 1, D]` and `k`, `v` `[B, heads, L, D]` (strided views of a KV cache are read in
/// place), `mask` additive and broadcastable to `[B, heads, 1, L]`. This is a decoding step's
/// attention: candle's GEMM spent ≈ 10 ms of each MusicGen step on these 32 tiny products per
/// layer. It records no gradient (inference only) and returns `None` where it does not apply
/// (off its [`fast_path`], more than one query, or a key layout with strided rows).
pub fn single_query_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
) -> Result<Option<Tensor>> {
    if !fast_path([q, k, v]) {
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
    Shortcut::SingleQueryAttention.entered();
    let mut out = vec![0f32; b * h * d];
    // One part per (batch row, head), on the decoding team (see `team.rs`).
    super::team::for_each_chunk(&mut out, d, |bh, o| {
        let (bi, hi) = (bh / h, bh % h);
        let k0 = row(k_layout.start_offset(), kst, bi, hi, 0);
        let v0 = row(v_layout.start_offset(), vst, bi, hi, 0);
        let head = Head {
            q: &q[bh * d..(bh + 1) * d],
            k: &ks[k0..],
            k_stride: kst[2],
            v: &vs[v0..],
            v_stride: vst[2],
            len: l,
            mask: mask.as_ref().map(|m| &m[bh * l..(bh + 1) * l]),
        };
        head.attend(o);
    });
    drop((k_storage, v_storage));
    Ok(Some(Tensor::from_vec(out, (b, h, 1, d), k.device())?))
}

/// One head of one query position: its query, its keys and values (row `i` at `i · stride`,
/// `len` rows of the query's width) and its additive mask.
pub(super) struct Head<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub k_stride: usize,
    pub v: &'a [f32],
    pub v_stride: usize,
    pub len: usize,
    pub mask: Option<&'a [f32]>,
}

impl Head<'_> {
    /// `out = softmax(q·kᵀ + mask)·v`, zeros where every key is masked with −inf (as the fused
    /// softmax). Compiled for AVX2 where the CPU has it; the softmax is the fused one's
    /// (`vmath::exp`, lane-wise sums). Rows outside `k` or `v` panic: callers check the layout.
    pub fn attend(&self, out: &mut [f32]) {
        let d = self.q.len();
        wide(
            #[inline(always)]
            || {
                let mut p = vec![0f32; self.len];
                for (li, p) in p.iter_mut().enumerate() {
                    let at = li * self.k_stride;
                    *p = dot(&self.k[at..at + d], self.q);
                }
                if let Some(m) = self.mask {
                    p.iter_mut().zip(m).for_each(|(p, m)| *p += m);
                }
                if !softmax_scores(&mut p) {
                    return;
                }
                for (li, &w) in p.iter().enumerate() {
                    let at = li * self.v_stride;
                    for (o, v) in out.iter_mut().zip(&self.v[at..at + d]) {
                        *o += w * v;
                    }
                }
            },
        )
    }
}

/// `p ← softmax(p)` for one query's scores (`vmath::exp`, lane-wise maximum and sum); false,
/// leaving `p` as it was, when every score is −inf (a fully masked row, whose output stays
/// zero). Inlined, so inside [`wide`] it compiles for AVX2.
#[inline(always)]
pub(super) fn softmax_scores(p: &mut [f32]) -> bool {
    let max = lane_max(p);
    if max == f32::NEG_INFINITY {
        return false;
    }
    for x in p.iter_mut() {
        *x = vmath::exp(*x - max);
    }
    let inv = 1.0 / lane_sum(p);
    for x in p.iter_mut() {
        *x *= inv;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::nn::testing::seeded;
    use crate::models::nn::{force_generic_ops, softmax};
    use candle_core::{Device, Var};

    /// The fused attention against candle's own composed products and softmax.
    #[test]
    fn fused_attention_matches_the_composed_form_and_its_gradients() {
        // The op runs only with OpenBLAS; without, `attention` takes the composed form and a
        // test through it would compare that form with itself.
        crate::models::blas::loaded_for("the fused attention");
        let _fast = force_generic_ops(false);
        matches_candle(fused_attention);
        // And `attention` takes the op for such tensors, unless TUNELAB_GENERIC_OPS=1.
        let x = seeded(5, (4, 2), 1.0).reshape((1, 2, 2, 2)).unwrap();
        assert!(takes_fused(&x, &x, &x));
        let _generic = force_generic_ops(true);
        assert!(!takes_fused(&x, &x, &x));
    }

    /// The form `attention` takes off the CPU and without OpenBLAS, against candle's own: with
    /// the CPU's products and fused softmax, and as a GPU runs it (candle's products and the
    /// composed softmax, `TUNELAB_GENERIC_OPS=1`).
    #[test]
    fn composed_attention_matches_candle_and_its_gradients() {
        for generic in [false, true] {
            let _forced = force_generic_ops(generic);
            matches_candle(composed_attention);
        }
    }

    /// `attend` against candle's own composed products and softmax, forward and the gradients
    /// of q, k and v: self-attention with a causal mask shared by the batch, cross-attention
    /// (S ≠ T) with a padding mask per batch item, and no mask; and with k frozen, which must
    /// get no gradient.
    fn matches_candle(
        attend: impl Fn(&Tensor, &Tensor, &Tensor, Option<&Tensor>) -> Result<Tensor>,
    ) {
        let diff = crate::testing::max_abs_diff;
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
            let ours = attend(q.as_tensor(), &kt, v.as_tensor(), mask).unwrap();
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

    #[test]
    fn single_query_attention_equals_the_composed_attention() {
        let _fast = force_generic_ops(false);
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
        // And so it does with TUNELAB_GENERIC_OPS=1.
        let _generic = force_generic_ops(true);
        assert!(single_query_attention(&q, &kc, &vc, None)
            .unwrap()
            .is_none());
    }
}
