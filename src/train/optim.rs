//! Optimisation pieces candle lacks: an AdamW whose moments can be saved and restored (resume),
//! global-norm gradient clipping (as `torch.nn.utils.clip_grad_norm_`), an EMA of the weights,
//! and audiocraft's AdamW defaults.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::ParamsAdamW;

use crate::error::{Error, Result};

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
        let m = vars
            .iter()
            .map(|(_, v)| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
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

    pub fn vars(&self) -> impl Iterator<Item = &(String, Var)> {
        self.vars.iter()
    }

    pub fn step(&mut self, grads: &impl GradSource) -> Result<()> {
        self.t += 1;
        let p = &self.params;
        let bc1 = 1.0 - p.beta1.powi(self.t as i32);
        let bc2 = 1.0 - p.beta2.powi(self.t as i32);
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.grad(var.as_tensor()) else {
                continue;
            };
            let m = ((&self.m[i] * p.beta1)? + (g * (1.0 - p.beta1))?)?;
            let v = ((&self.v[i] * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let decayed = (var.as_tensor() * (1.0 - p.lr * p.weight_decay))?;
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
                *e = ((&*e * self.decay)? + (var.as_tensor().detach() * (1.0 - self.decay))?)?;
            }
        }
        Ok(())
    }
}

/// Are all values of the tensors finite?
pub fn all_finite<'a>(tensors: impl IntoIterator<Item = &'a Tensor>) -> Result<bool> {
    for t in tensors {
        let s = t
            .to_dtype(candle_core::DType::F32)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        if !s.is_finite() {
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
pub fn grad_norm(grads: &impl GradSource, vars: &[Var]) -> Result<f64> {
    let mut sq = 0f64;
    for v in vars {
        if let Some(g) = grads.grad(v.as_tensor()) {
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    Ok(sq.sqrt())
}

/// Scales gradients so their global norm is at most `max_norm`; returns the norm before
/// clipping. Same arithmetic as torch: `coef = max_norm / (norm + 1e-6)`, applied when < 1.
pub fn clip_grad_norm(grads: &mut impl GradSource, vars: &[Var], max_norm: f64) -> Result<f64> {
    let norm = grad_norm(grads, vars)?;
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for v in vars {
            if let Some(g) = grads.grad(v.as_tensor()) {
                let scaled = (g * coef)?;
                grads.set_grad(v.as_tensor(), scaled);
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
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
                opt.step(&loss.backward().unwrap()).unwrap();
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
        let a = Var::new(&[3f32, 0.], &dev).unwrap();
        let b = Var::new(&[0f32, 4.], &dev).unwrap();
        let loss = ((a.as_tensor() * Tensor::new(&[3f32, 0.], &dev).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            + (b.as_tensor() * Tensor::new(&[0f32, 4.], &dev).unwrap())
                .unwrap()
                .sum_all()
                .unwrap())
        .unwrap();
        let mut g = loss.backward().unwrap();
        let vars = [a.clone(), b.clone()];
        let before = clip_grad_norm(&mut g, &vars, 1.0).unwrap();
        assert!((before - 5.0).abs() < 1e-6);
        let after = grad_norm(&g, &vars).unwrap();
        assert!((after - 1.0).abs() < 1e-5, "{after}");
        // Below the threshold nothing changes.
        let again = clip_grad_norm(&mut g, &vars, 10.0).unwrap();
        assert!((again - after).abs() < 1e-9);
    }
}
