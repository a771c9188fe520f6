//! LoRA adapters on the MusicGen LM with PEFT's conventions: `y = W x + (alpha / r) · B (A x)`,
//! A `[r, in]`, B `[out, r]` (zero at start), keys
//! `base_model.model.<module path>.lora_{A,B}.default.weight` (`.default` is dropped in
//! `adapter_model.safetensors`). The base weights stay plain tensors (no gradient buffers).

use std::collections::HashMap;

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::musicgen::decoder::MusicgenLm;
use crate::models::nn::{Linear, Lora};

/// Which projections get adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraTarget {
    SelfAttn,
    CrossAttn,
    Ffn,
    LmHeads,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f64,
    pub targets: Vec<LoraTarget>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: 16,
            alpha: 16.0,
            targets: vec![LoraTarget::SelfAttn],
        }
    }
}

/// One adapter's trainable tensors, named as PEFT names them in a live model.
pub struct Adapter {
    pub module: String,
    pub a: Var,
    pub b: Var,
}

impl Adapter {
    pub fn peft_names(&self) -> (String, String) {
        (
            format!("base_model.model.{}.lora_A.default.weight", self.module),
            format!("base_model.model.{}.lora_B.default.weight", self.module),
        )
    }
}

fn targets<'a>(lm: &'a mut MusicgenLm, cfg: &LoraConfig) -> Vec<(String, &'a mut Linear)> {
    let mut out = Vec::new();
    for (i, layer) in lm.layers.iter_mut().enumerate() {
        let p = format!("decoder.model.decoder.layers.{i}");
        if cfg.targets.contains(&LoraTarget::SelfAttn) {
            for (n, l) in layer.self_attn.linears_mut() {
                out.push((format!("{p}.self_attn.{n}"), l));
            }
        }
        if cfg.targets.contains(&LoraTarget::CrossAttn) {
            for (n, l) in layer.encoder_attn.linears_mut() {
                out.push((format!("{p}.encoder_attn.{n}"), l));
            }
        }
        if cfg.targets.contains(&LoraTarget::Ffn) {
            out.push((format!("{p}.fc1"), &mut layer.fc1));
            out.push((format!("{p}.fc2"), &mut layer.fc2));
        }
    }
    if cfg.targets.contains(&LoraTarget::LmHeads) {
        for (k, h) in lm.lm_heads.iter_mut().enumerate() {
            out.push((format!("decoder.lm_heads.{k}"), h));
        }
    }
    out
}

/// Attaches adapters to `lm`. `init` may give starting values by PEFT name (resuming, tests);
/// otherwise A is Kaiming-uniform as PEFT and B is zero.
pub fn attach_lora(
    lm: &mut MusicgenLm,
    cfg: &LoraConfig,
    init: &HashMap<String, Tensor>,
) -> Result<Vec<Adapter>> {
    if cfg.r == 0 {
        return Err(Error::InvalidRequest("LoRA rank must be at least 1".into()));
    }
    let scale = cfg.alpha / cfg.r as f64;
    let device = lm.device().clone();
    let mut adapters = Vec::new();
    for (module, linear) in targets(lm, cfg) {
        let w = linear.weight().ok_or_else(|| {
            Error::InvalidRequest(format!("{module}: LoRA needs fp32 base weights"))
        })?;
        let (out_dim, in_dim) = w.dims2()?;
        let adapter_a = format!("base_model.model.{module}.lora_A.default.weight");
        let adapter_b = format!("base_model.model.{module}.lora_B.default.weight");
        let a = match init.get(&adapter_a) {
            Some(t) => t.to_dtype(DType::F32)?,
            None => {
                let bound = (1.0 / in_dim as f64).sqrt(); // kaiming_uniform(a=sqrt(5))
                Tensor::rand(-bound as f32, bound as f32, (cfg.r, in_dim), &device)?
            }
        };
        let b = match init.get(&adapter_b) {
            Some(t) => t.to_dtype(DType::F32)?,
            None => Tensor::zeros((out_dim, cfg.r), DType::F32, &device)?,
        };
        if a.dims() != [cfg.r, in_dim] || b.dims() != [out_dim, cfg.r] {
            return Err(Error::InvalidRequest(format!(
                "{module}: adapter shapes {:?} / {:?} do not fit r = {} on [{out_dim}, {in_dim}]",
                a.dims(),
                b.dims(),
                cfg.r
            )));
        }
        let a = Var::from_tensor(&a)?;
        let b = Var::from_tensor(&b)?;
        linear.lora = Some(Lora {
            a: a.as_tensor().clone(),
            b: b.as_tensor().clone(),
            scale,
        });
        adapters.push(Adapter { module, a, b });
    }
    Ok(adapters)
}
