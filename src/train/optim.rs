//! Optimisation pieces candle lacks: an AdamW whose moments can be saved and restored (resume),
//! global-norm gradient clipping (as `torch.nn.utils.clip_grad_norm_`), an EMA of the weights,
//! and audiocraft's AdamW defaults.
//!
//! On the CPU the update, the clipping scale, the gradient norm and the EMA run in place, one
//! parallel pass per array: the composed tensor arithmetic made a dozen single-threaded passes
//! over every weight and allocated as many temporaries (3–4 s of a full fine-tuning step on
//! musicgen-small, 0.6 s fused). Elsewhere (CUDA), and with `TUNELAB_GENERIC_OPS=1`, the same
//! arithmetic runs as tensor ops (the in-place passes ask `models::nn::fast_path`).

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp2, InplaceOp3, Layout, Tensor, Var};
use candle_nn::ParamsAdamW;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::models::device::count_transfer;
use crate::models::nn::{contiguous_f32, fast_path, on_cpu_f32, Shortcut};

/// Where gradients are looked up: candle's `GradStore` or tunelab's accumulated [`Grads`].
pub trait GradSource {
    fn grad(&self, t: &Tensor) -> Option<&Tensor>;
    fn set_grad(&mut self, t: &Tensor, g: Tensor);
}

impl GradSource for GradStore {
    fn grad(&self, t: &Tensor) -> Option<&Tensor> {
        self.get(t)
    }
    fn set_grad(&mut self, t: &Tensor, g: Tensor) {
        self.insert(t, g);
    }
}

/// Gradients of the trained variables only, summed over backward passes (micro-batches,
/// checkpointed layers); intermediate gradients are not kept.
#[derive(Debug, Default)]
pub struct Grads {
    by_id: HashMap<candle_core::TensorId, Tensor>,
}

impl Grads {
    /// Adds the gradients `store` holds for `vars`.
    pub fn add_from(&mut self, store: &GradStore, vars: &[(String, Var)]) -> Result<()> {
        for (_, v) in vars {
            if let Some(g) = store.get(v.as_tensor()) {
                let id = v.as_tensor().id();
                let sum = match self.by_id.remove(&id) {
                    Some(old) => (old + g)?,
                    None => g.clone(),
                };
                self.by_id.insert(id, sum);
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

impl GradSource for Grads {
    fn grad(&self, t: &Tensor) -> Option<&Tensor> {
        self.by_id.get(&t.id())
    }
    fn set_grad(&mut self, t: &Tensor, g: Tensor) {
        self.by_id.insert(t.id(), g);
    }
}

/// `torch.optim.AdamW` over named variables, with its state exposed for checkpoints.
/// Variables without a gradient in a step are left untouched (as torch).
pub struct AdamW {
    params: ParamsAdamW,
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Updates applied so far (torch's `step` state; bias correction uses it).
    pub t: u64,
}

impl AdamW {
    pub fn new(vars: Vec<(String, Var)>, params: ParamsAdamW) -> Result<Self> {
        // Every moment owns its storage: the update writes them in place.
        let zeros = || {
            vars.iter()
                .map(|(_, v)| v.as_tensor().zeros_like())
                .collect::<candle_core::Result<Vec<_>>>()
        };
        let (m, v) = (zeros()?, zeros()?);
        Ok(Self {
            params,
            vars,
            m,
            v,
            t: 0,
        })
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.params.lr = lr;
    }

    /// One update as every run makes it: the global norm of the gradients of this optimizer's
    /// variables and, when it is finite, AdamW on the gradients clipped to `max_norm` (torch's
    /// `clip_grad_norm_` coefficient, folded into the update). Returns the norm before
    /// clipping; a non-finite norm updates nothing.
    pub fn clipped_step(&mut self, grads: &impl GradSource, max_norm: f64) -> Result<f64> {
        self.clipped_step_unscaled(grads, max_norm, 1.0)
    }

    /// [`Self::clipped_step`] for gradients of a loss multiplied by a loss scale: they are
    /// multiplied by `unscale` (1 / the loss scale) on the way, folded into the update like the
    /// clipping. Returns the norm of the unscaled gradients.
    pub fn clipped_step_unscaled(
        &mut self,
        grads: &impl GradSource,
        max_norm: f64,
        unscale: f64,
    ) -> Result<f64> {
        let vars: Vec<Var> = self.vars.iter().map(|(_, v)| v.clone()).collect();
        let norm = grad_norm(grads, &vars)? * unscale;
        if norm.is_finite() {
            self.step_scaled(grads, clip_coefficient(norm, max_norm) * unscale)?;
        }
        Ok(norm)
    }

    /// One update with every gradient multiplied by `grad_scale` first (the clipping
    /// coefficient from [`clip_coefficient`]), without materialising the scaled gradients.
    pub fn step_scaled(&mut self, grads: &impl GradSource, grad_scale: f64) -> Result<()> {
        self.t += 1;
        let p = &self.params;
        let bc1 = 1.0 - p.beta1.powi(self.t as i32);
        let bc2 = 1.0 - p.beta2.powi(self.t as i32);
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.grad(var.as_tensor()) else {
                continue;
            };
            let w = var.as_tensor();
            if fast_path([w, &self.m[i], &self.v[i], g]) {
                let g = g.contiguous()?;
                for (moment, beta, square) in
                    [(&self.m[i], p.beta1, false), (&self.v[i], p.beta2, true)]
                {
                    let blend = Blend {
                        beta: beta as f32,
                        scale: grad_scale as f32,
                        square,
                    };
                    moment.inplace_op2(&g, &blend)?;
                }
                w.inplace_op3(
                    &self.m[i],
                    &self.v[i],
                    &Update {
                        decay: (1.0 - p.lr * p.weight_decay) as f32,
                        inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
                        eps: p.eps as f32,
                        step: (p.lr / bc1) as f32,
                    },
                )?;
                continue;
            }
            let g = if grad_scale == 1.0 {
                g.clone()
            } else {
                (g * grad_scale)?
            };
            let m = ((&self.m[i] * p.beta1)? + (&g * (1.0 - p.beta1))?)?;
            let v = ((&self.v[i] * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let decayed = (w * (1.0 - p.lr * p.weight_decay))?;
            let denom = ((v.sqrt()? / bc2.sqrt())? + p.eps)?;
            let update = ((&m / denom)? * (p.lr / bc1))?;
            var.set(&(decayed - update)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Moments as named tensors (`m.<name>`, `v.<name>`) for a checkpoint.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("m.{name}"), self.m[i].clone());
            out.insert(format!("v.{name}"), self.v[i].clone());
        }
        out
    }

    /// Restores moments saved by [`AdamW::state`]; every variable must be present.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, t: u64) -> Result<()> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (prefix, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let key = format!("{prefix}.{name}");
                let saved = state
                    .get(&key)
                    .ok_or_else(|| Error::InvalidRequest(format!("optimizer state lacks {key}")))?;
                if saved.dims() != var.as_tensor().dims() {
                    return Err(Error::InvalidRequest(format!(
                        "optimizer state {key} has shape {:?}, the weight {:?}",
                        saved.dims(),
                        var.as_tensor().dims()
                    )));
                }
                *slot = saved.to_device(var.as_tensor().device())?;
            }
        }
        self.t = t;
        Ok(())
    }
}

/// Exponential moving average of named weights: `ema = decay · ema + (1 − decay) · w`.
pub struct Ema {
    pub decay: f64,
    pub weights: HashMap<String, Tensor>,
}

impl Ema {
    pub fn new(decay: f64, vars: &[(String, Var)]) -> Result<Self> {
        let weights = vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().detach().copy()?)))
            .collect::<Result<HashMap<_, _>>>()?;
        Ok(Self { decay, weights })
    }

    pub fn update(&mut self, vars: &[(String, Var)]) -> Result<()> {
        for (name, var) in vars {
            if let Some(e) = self.weights.get_mut(name) {
                if fast_path([&*e, var.as_tensor()]) {
                    e.inplace_op2(
                        &var.as_tensor().contiguous()?,
                        &Blend {
                            beta: self.decay as f32,
                            scale: 1.0,
                            square: false,
                        },
                    )?;
                    continue;
                }
                *e = ((&*e * self.decay)? + (var.as_tensor().detach() * (1.0 - self.decay))?)?;
            }
        }
        Ok(())
    }
}

/// Are all values of the tensors finite?
pub fn all_finite<'a>(tensors: impl IntoIterator<Item = &'a Tensor>) -> Result<bool> {
    for t in tensors {
        let in_place = in_place(t, |x| {
            x.par_chunks(CHUNK).all(|c| c.iter().all(|v| v.is_finite()))
        })?;
        let finite = match in_place {
            Some(finite) => finite,
            // `0 · x` is 0 for every finite x and NaN otherwise, and a sum keeps a NaN (a
            // maximum would not: candle's, as CUDA's `fmaxf`, passes over NaN).
            None => t
                .to_dtype(DType::F32)?
                .affine(0.0, 0.0)?
                .sum_all()?
                .to_scalar::<f32>()?
                .is_finite(),
        };
        if !finite {
            return Ok(false);
        }
    }
    Ok(true)
}

/// audiocraft's AdamW: betas (0.9, 0.95), eps 1e-8, weight decay 0.1 (decoupled, as torch).
pub fn adamw_params(lr: f64) -> ParamsAdamW {
    ParamsAdamW {
        lr,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
    }
}

/// Global L2 norm of the gradients of `vars` (missing gradients count as zero).
///
/// On the CPU each gradient is summed in place; on a device every gradient's sum of squares
/// stays there until one transfer brings them all to the host, where they are added in order.
pub fn grad_norm(grads: &impl GradSource, vars: &[Var]) -> Result<f64> {
    let mut sq = 0f64;
    let mut on_device = Vec::new();
    for v in vars {
        if let Some(g) = grads.grad(v.as_tensor()) {
            match in_place_sum_of_squares(g)? {
                Some(s) => sq += s,
                // f64 where the device has it (Metal has not: f32 there).
                None => {
                    let acc = if g.device().is_metal() {
                        DType::F32
                    } else {
                        DType::F64
                    };
                    on_device.push(g.to_dtype(acc)?.sqr()?.sum_all()?);
                }
            }
        }
    }
    count_transfer();
    if !on_device.is_empty() {
        let sums = Tensor::stack(&on_device, 0)?;
        let sums = match sums.dtype() {
            DType::F64 => sums.to_vec1::<f64>()?,
            _ => sums.to_vec1::<f32>()?.into_iter().map(f64::from).collect(),
        };
        for s in sums {
            sq += s;
        }
    }
    Ok(sq.sqrt())
}

/// torch's clipping coefficient for gradients of global norm `norm`: `max_norm / (norm + 1e-6)`
/// when that is below 1, else 1.
pub fn clip_coefficient(norm: f64, max_norm: f64) -> f64 {
    (max_norm / (norm + 1e-6)).min(1.0)
}

/// Σ x² of a tensor on the CPU shortcuts' fast path, in place and accumulated in f64 (`None`
/// elsewhere).
fn in_place_sum_of_squares(t: &Tensor) -> Result<Option<f64>> {
    in_place(t, |x| {
        x.par_chunks(CHUNK)
            .map(|c| c.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>())
            .sum()
    })
}

/// Elements per parallel task of the in-place passes.
const CHUNK: usize = 1 << 15;

/// Runs a read-only in-place pass `f` over the values of `t` where it is on the CPU shortcuts'
/// [`fast_path`]; `None` elsewhere (the caller composes tensor ops).
fn in_place<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<Option<R>> {
    if !fast_path([t]) {
        return Ok(None);
    }
    Shortcut::Optimizer.entered();
    Ok(on_cpu_f32(t, f)?)
}

/// The f32 values a contiguous layout covers, writable.
fn f32s_mut<'a>(s: &'a mut CpuStorage, l: &Layout) -> candle_core::Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => candle_core::bail!("expected contiguous f32 values"),
    }
}

fn same_len(a: usize, b: usize, what: &str) -> candle_core::Result<()> {
    if a != b {
        candle_core::bail!("{what}: {a} values against {b}")
    }
    Ok(())
}

/// `a ← β·a + (1 − β)·(s·x)`, or with `square` `a ← β·a + (1 − β)·(s·x)²`: an AdamW moment
/// (`x` the gradient, `s` the clipping scale) or an EMA step (`x` the weights).
struct Blend {
    beta: f32,
    scale: f32,
    square: bool,
}

impl InplaceOp2 for Blend {
    fn name(&self) -> &'static str {
        "blend"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        Shortcut::Optimizer.entered();
        let (a, x) = (
            f32s_mut(s1, l1)?,
            contiguous_f32(s2, l2, "optimizer input")?,
        );
        same_len(a.len(), x.len(), "blend")?;
        let (beta, rest, scale, square) = (self.beta, 1.0 - self.beta, self.scale, self.square);
        a.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(a, x)| {
                for (a, &x) in a.iter_mut().zip(x) {
                    let x = x * scale;
                    let x = if square { x * x } else { x };
                    *a = *a * beta + x * rest;
                }
            });
        Ok(())
    }
}

/// `w ← w·(1 − lr·wd) − lr/bc1 · m / (√v/√bc2 + ε)`: AdamW's decoupled decay and step.
struct Update {
    decay: f32,
    inv_sqrt_bc2: f32,
    eps: f32,
    step: f32,
}

impl InplaceOp3 for Update {
    fn name(&self) -> &'static str {
        "adamw-update"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<()> {
        Shortcut::Optimizer.entered();
        let (w, m, v) = (
            f32s_mut(s1, l1)?,
            contiguous_f32(s2, l2, "optimizer input")?,
            contiguous_f32(s3, l3, "optimizer input")?,
        );
        same_len(w.len(), m.len(), "adamw update")?;
        same_len(w.len(), v.len(), "adamw update")?;
        w.par_chunks_mut(CHUNK)
            .zip(m.par_chunks(CHUNK).zip(v.par_chunks(CHUNK)))
            .for_each(|(w, (m, v))| {
                for ((w, &m), &v) in w.iter_mut().zip(m).zip(v) {
                    let denom = v.sqrt() * self.inv_sqrt_bc2 + self.eps;
                    *w = *w * self.decay - m / denom * self.step;
                }
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::nn::force_generic_ops;
    use candle_core::Device;

    #[test]
    fn adamw_matches_candles_and_restores_its_state() {
        // Same arithmetic as candle's AdamW (checked against torch in tests/training.rs), and a
        // restored copy continues exactly.
        let dev = Device::Cpu;
        let run = |steps: usize, restore_at: Option<usize>| -> Vec<f32> {
            let w = Var::new(&[1f32, -2., 0.5], &dev).unwrap();
            let mut opt = AdamW::new(vec![("w".into(), w.clone())], adamw_params(0.1)).unwrap();
            for s in 0..steps {
                if Some(s) == restore_at {
                    let st = opt.state();
                    let t = opt.t;
                    opt = AdamW::new(vec![("w".into(), w.clone())], adamw_params(0.1)).unwrap();
                    opt.load_state(&st, t).unwrap();
                }
                let target = Tensor::new(&[0.3f32, 0.1, -0.7], &dev).unwrap();
                let loss = (w.as_tensor() - &target)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap();
                opt.step_scaled(&loss.backward().unwrap(), 1.0).unwrap();
            }
            w.as_tensor().to_vec1::<f32>().unwrap()
        };
        let plain = run(5, None);
        assert_eq!(plain, run(5, Some(3)));
        let w = Var::new(&[1f32, -2., 0.5], &dev).unwrap();
        let mut reference =
            <candle_nn::AdamW as candle_nn::Optimizer>::new(vec![w.clone()], adamw_params(0.1))
                .unwrap();
        for _ in 0..5 {
            let target = Tensor::new(&[0.3f32, 0.1, -0.7], &dev).unwrap();
            let loss = (w.as_tensor() - &target)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            candle_nn::Optimizer::step(&mut reference, &loss.backward().unwrap()).unwrap();
        }
        let want = w.as_tensor().to_vec1::<f32>().unwrap();
        for (a, b) in plain.iter().zip(&want) {
            assert!((a - b).abs() < 1e-6, "{plain:?} vs {want:?}");
        }
    }

    #[test]
    fn the_in_place_update_equals_the_tensor_arithmetic() {
        // f32 on the CPU takes the fused in-place path; f64 the composed tensor ops. Both with
        // a clipping coefficient, over more values than one parallel chunk, and a transposed
        // (non-contiguous) gradient.
        let dev = Device::Cpu;
        let n = CHUNK + 77;
        let w0 = Tensor::randn(0f32, 1., (n, 3), &dev).unwrap();
        let targets: Vec<Tensor> = (0..3)
            .map(|_| Tensor::randn(0f32, 1., (3, n), &dev).unwrap())
            .collect();
        let run = |dtype: DType| -> (Vec<f32>, Vec<f32>) {
            let w = Var::from_tensor(&w0.to_dtype(dtype).unwrap()).unwrap();
            let mut opt = AdamW::new(vec![("w".into(), w.clone())], adamw_params(0.01)).unwrap();
            let mut ema = Ema::new(0.9, &[("w".to_string(), w.clone())]).unwrap();
            for (s, target) in targets.iter().enumerate() {
                let target = target.to_dtype(dtype).unwrap().t().unwrap();
                let loss = ((w.as_tensor() - &target).unwrap().sqr().unwrap().sum_all())
                    .unwrap()
                    .affine(0.5 + s as f64, 0.)
                    .unwrap();
                let g = loss.backward().unwrap();
                let norm = grad_norm(&g, std::slice::from_ref(&w)).unwrap();
                let coef = clip_coefficient(norm, 1.0);
                assert!(coef < 1.0, "{norm}");
                opt.step_scaled(&g, coef).unwrap();
                ema.update(&[("w".to_string(), w.clone())]).unwrap();
            }
            let flat = |t: &Tensor| {
                let t = t.to_dtype(DType::F32).unwrap();
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            };
            (flat(w.as_tensor()), flat(&ema.weights["w"]))
        };
        let (fused, fused_ema) = {
            let _fast = force_generic_ops(false);
            run(DType::F32)
        };
        let (composed, composed_ema) = run(DType::F64);
        // f32 as a GPU (or TUNELAB_GENERIC_OPS=1) runs it: the composed ops.
        let (generic, generic_ema) = {
            let _generic = force_generic_ops(true);
            run(DType::F32)
        };
        let w0 = w0.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut moved = 0;
        for i in 0..fused.len() {
            assert!(
                (fused[i] - composed[i]).abs() < 1e-5,
                "{i}: {} vs {}",
                fused[i],
                composed[i]
            );
            assert!((fused_ema[i] - composed_ema[i]).abs() < 1e-5, "ema {i}");
            assert!((generic[i] - composed[i]).abs() < 1e-5, "generic {i}");
            assert!(
                (generic_ema[i] - composed_ema[i]).abs() < 1e-5,
                "generic ema {i}"
            );
            moved += usize::from((fused[i] - w0[i]).abs() > 1e-3);
        }
        assert!(moved > fused.len() / 2, "{moved} of {} moved", fused.len());
        for generic in [false, true] {
            let _forced = force_generic_ops(generic);
            assert!(all_finite([&Tensor::new(&[1f32, 2.], &dev).unwrap()]).unwrap());
            assert!(!all_finite([&Tensor::new(&[1f32, f32::NAN], &dev).unwrap()]).unwrap());
            assert!(!all_finite([&Tensor::new(&[f32::INFINITY], &dev).unwrap()]).unwrap());
            // A NaN after a larger value, which a maximum would pass over.
            let late_nan = Tensor::new(&[5f32, f32::NAN, -1.], &dev).unwrap();
            assert!(!all_finite([&late_nan]).unwrap(), "generic {generic}");
        }
    }

    #[test]
    fn ema_moves_towards_the_weights() {
        let dev = Device::Cpu;
        let w = Var::new(&[0f32, 0.], &dev).unwrap();
        let vars = vec![("w".to_string(), w.clone())];
        let mut ema = Ema::new(0.9, &vars).unwrap();
        w.set(&Tensor::new(&[1f32, 2.], &dev).unwrap()).unwrap();
        ema.update(&vars).unwrap();
        let e = ema.weights["w"].to_vec1::<f32>().unwrap();
        assert!((e[0] - 0.1).abs() < 1e-6 && (e[1] - 0.2).abs() < 1e-6);
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let dev = Device::Cpu;
        let grads_of = |a: &Var, b: &Var| {
            ((a.as_tensor() * Tensor::new(&[3f32, 0.], &dev).unwrap())
                .unwrap()
                .sum_all()
                .unwrap()
                + (b.as_tensor() * Tensor::new(&[0f32, 4.], &dev).unwrap())
                    .unwrap()
                    .sum_all()
                    .unwrap())
            .unwrap()
            .backward()
            .unwrap()
        };
        let a = Var::new(&[3f32, 0.], &dev).unwrap();
        let b = Var::new(&[0f32, 4.], &dev).unwrap();
        let g = grads_of(&a, &b);
        let vars = [a.clone(), b.clone()];
        let before = grad_norm(&g, &vars).unwrap();
        assert!((before - 5.0).abs() < 1e-6);
        // The coefficient scales the global norm to the maximum…
        let coef = clip_coefficient(before, 1.0);
        let named = vec![("a".to_string(), a.clone()), ("b".to_string(), b.clone())];
        let mut scaled = Grads::default();
        scaled.add_from(&g, &named).unwrap();
        for v in &vars {
            let s = (scaled.grad(v.as_tensor()).unwrap() * coef).unwrap();
            scaled.set_grad(v.as_tensor(), s);
        }
        let after = grad_norm(&scaled, &vars).unwrap();
        assert!((after - 1.0).abs() < 1e-5, "{after}");
        // …and below the threshold nothing changes.
        assert_eq!(clip_coefficient(before, 10.0), 1.0);
        // The runs' step returns the norm before clipping and updates (AdamW's first step:
        // decoupled decay, then lr · ĝ / (|ĝ| + eps), the sign of the clipped gradient).
        let mut opt = AdamW::new(named, adamw_params(0.1)).unwrap();
        let norm = opt.clipped_step(&g, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-6);
        let got_a = a.as_tensor().to_vec1::<f32>().unwrap();
        assert!(
            (got_a[0] - (3.0 - 0.1 * (1.0 + 0.1 * 3.0))).abs() < 1e-5,
            "{got_a:?}"
        );
        // A non-finite norm updates nothing.
        let nan = Tensor::new(&[f32::NAN, 0.], &dev).unwrap();
        let g = (a.as_tensor() * &nan)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let w = a.as_tensor().to_vec1::<f32>().unwrap();
        assert!(!opt.clipped_step(&g, 1.0).unwrap().is_finite());
        assert_eq!(a.as_tensor().to_vec1::<f32>().unwrap(), w);
    }
}
