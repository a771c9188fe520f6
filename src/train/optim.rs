//! Optimisation pieces candle lacks: global-norm gradient clipping (as
//! `torch.nn.utils.clip_grad_norm_`) and audiocraft's AdamW defaults.

use candle_core::backprop::GradStore;
use candle_core::Var;
use candle_nn::ParamsAdamW;

use crate::error::Result;

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
pub fn grad_norm(grads: &GradStore, vars: &[Var]) -> Result<f64> {
    let mut sq = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
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
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let norm = grad_norm(grads, vars)?;
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for v in vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                let scaled = (g * coef)?;
                grads.insert(v.as_tensor(), scaled);
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

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
