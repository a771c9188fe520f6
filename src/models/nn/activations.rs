//! Element-wise activations, GELU (erf) and ELU: on the CPU in f32 each is one parallel custom
//! op each way ([`Pointwise`] names the function and its derivative, [`Fused`] makes it an op);
//! elsewhere (and with `TUNELAB_GENERIC_OPS=1`) candle's own.

use candle_core::Tensor;

use super::cpu::{contiguous_f32, fast_path, on_cpu_f32_pair, Shortcut};
use super::simd::wide;
use crate::error::Result;
use crate::models::vmath;

/// GELU with the exact erf (PyTorch `nn.GELU()`, HF `"gelu"`): `x · Φ(x)`. On the CPU in f32
/// it is one parallel pass each way (candle's `gelu_erf` runs single-threaded and its backward
/// composes ten element-wise ops, each with a fresh buffer); elsewhere it is candle's.
pub fn gelu_erf(xs: &Tensor) -> Result<Tensor> {
    if !fast_path([xs]) {
        return Ok(xs.gelu_erf()?);
    }
    Ok(xs.contiguous()?.apply_op1(Fused::<Gelu>::OP)?)
}

/// ELU with α = 1 (PyTorch `nn.ELU()`, EnCodec's activation): `x` where `x > 0`, else
/// `eˣ − 1`. On the CPU in f32 one parallel, vectorised pass each way (`vmath::exp_m1`;
/// candle's runs on one thread, a quarter of an EnCodec decode); elsewhere candle's.
pub fn elu(xs: &Tensor) -> Result<Tensor> {
    if !fast_path([xs]) {
        return Ok(xs.elu(1.0)?);
    }
    Ok(xs.contiguous()?.apply_op1(Fused::<Elu>::OP)?)
}

/// An element-wise activation and its derivative, made one custom op by [`Fused`]: a parallel
/// pass each way, monomorphised so both inline into the loop (each is `#[inline(always)]`:
/// otherwise the AVX2 loop calls a scalar function per element).
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
    #[inline(always)]
    fn f(x: f32) -> f32 {
        x * vmath::normal_cdf_pdf(x).0
    }
    /// d/dx x·Φ(x) = Φ(x) + x·φ(x)
    #[inline(always)]
    fn df(x: f32) -> f32 {
        let (cdf, pdf) = vmath::normal_cdf_pdf(x);
        cdf + x * pdf
    }
}

struct Elu;

impl Pointwise for Elu {
    const NAME: &'static str = "fused-elu";
    #[inline(always)]
    fn f(x: f32) -> f32 {
        if x > 0.0 {
            x
        } else {
            vmath::exp_m1(x)
        }
    }
    #[inline(always)]
    fn df(x: f32) -> f32 {
        if x > 0.0 {
            1.0
        } else {
            vmath::exp(x)
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
        Shortcut::Activation.entered();
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
        Shortcut::Activation.entered();
        let Some(dx) = on_cpu_f32_pair(arg, grad, |x, g| par_map2(x, g, |x, g| g * P::df(x)))?
        else {
            candle_core::bail!("{}: expected f32 CPU tensors", P::NAME)
        };
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::nn::force_generic_ops;
    use crate::models::nn::testing::seeded;
    use candle_core::Var;

    #[test]
    fn fused_gelu_matches_candle_and_its_gradient() {
        let _fast = force_generic_ops(false);
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
        // The fused op, and candle's ELU that a GPU (or TUNELAB_GENERIC_OPS=1) runs.
        for generic in [false, true] {
            let _forced = force_generic_ops(generic);
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
            assert!(
                d.to_scalar::<f32>().unwrap() < 1e-6,
                "generic {generic}: {d}"
            );
            let go = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let gw = (want * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let (a, b) = (go.get(xt).unwrap(), gw.get(xt).unwrap());
            let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
            assert!(
                d.to_scalar::<f32>().unwrap() < 1e-5,
                "generic {generic}: {d}"
            );
        }
    }
}
