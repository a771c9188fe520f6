//! LoRA adapters attached to a model's linear layers with PEFT's conventions:
//! `y = W x + (alpha / r) · B (A x)`, A `[r, in]`, B `[out, r]` (zero at start), keys
//! `base_model.model.<module path>.lora_{A,B}.default.weight` (`.default` is dropped in
//! `adapter_model.safetensors`; see [`crate::models::peft`]). The base weights stay plain tensors
//! (no gradient buffers). Training attaches fresh adapters; loading attaches saved ones unmerged.

use std::collections::HashMap;

use candle_core::{DType, Tensor, Var};
use rand::{Rng, SeedableRng};
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
    EncToDecProj,
}

impl std::str::FromStr for LoraTarget {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim() {
            "self_attn" | "self-attn" => Self::SelfAttn,
            "cross_attn" | "cross-attn" | "encoder_attn" => Self::CrossAttn,
            "ffn" | "fc" => Self::Ffn,
            "lm_heads" | "heads" => Self::LmHeads,
            "enc_to_dec_proj" => Self::EncToDecProj,
            other => {
                return Err(Error::InvalidRequest(format!(
                    "unknown LoRA target {other:?} (self_attn, cross_attn, ffn, lm_heads, enc_to_dec_proj)"
                )))
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f64,
    pub targets: Vec<LoraTarget>,
    /// Dropout on the adapters' input while training.
    #[serde(default)]
    pub dropout: f32,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: 16,
            alpha: 16.0,
            targets: vec![LoraTarget::SelfAttn],
            dropout: 0.05,
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
    if cfg.targets.contains(&LoraTarget::EncToDecProj) {
        out.push(("enc_to_dec_proj".to_string(), &mut lm.enc_to_dec_proj));
    }
    out
}

/// Sets (training) or clears (evaluation) the dropout seeds of every adapter: each adapter gets
/// its own seed derived from `seed`.
pub fn set_dropout_seed(lm: &mut MusicgenLm, cfg: &LoraConfig, seed: Option<u64>) {
    for (i, (_, linear)) in targets(lm, cfg).into_iter().enumerate() {
        if let Some(l) = linear.lora.as_mut() {
            l.dropout_seed = seed.map(|s| s ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
    }
}

/// Removes the adapters (after merging or to get the base model back).
pub fn detach_lora(lm: &mut MusicgenLm, cfg: &LoraConfig) {
    for (_, linear) in targets(lm, cfg) {
        linear.lora = None;
    }
}

/// Attaches adapters to `lm`. `init` may give starting values by PEFT name (resuming, tests);
/// otherwise A is Kaiming-uniform as PEFT (drawn from `seed`) and B is zero.
pub fn attach_lora(
    lm: &mut MusicgenLm,
    cfg: &LoraConfig,
    init: &HashMap<String, Tensor>,
    seed: u64,
) -> Result<Vec<Adapter>> {
    let device = lm.device().clone();
    attach_lora_to(targets(lm, cfg), cfg, init, seed, &device)
}

/// [`attach_lora`] on any model's linear layers, given by module path.
pub fn attach_lora_to(
    targets: Vec<(String, &mut Linear)>,
    cfg: &LoraConfig,
    init: &HashMap<String, Tensor>,
    seed: u64,
    device: &candle_core::Device,
) -> Result<Vec<Adapter>> {
    if cfg.r == 0 {
        return Err(Error::InvalidRequest("LoRA rank must be at least 1".into()));
    }
    let scale = cfg.alpha / cfg.r as f64;
    let mut adapters = Vec::new();
    for (module, linear) in targets {
        let w = linear.weight().ok_or_else(|| {
            Error::InvalidRequest(format!("{module}: LoRA needs fp32 base weights"))
        })?;
        let (out_dim, in_dim) = w.dims2()?;
        let adapter_a = format!("base_model.model.{module}.lora_A.default.weight");
        let adapter_b = format!("base_model.model.{module}.lora_B.default.weight");
        let a = match init.get(&adapter_a) {
            Some(t) => t.to_dtype(DType::F32)?,
            None => {
                // kaiming_uniform(a=sqrt(5)) as PEFT, from a generator seeded per module so a run
                // is reproducible.
                let bound = (1.0 / in_dim as f64).sqrt() as f32;
                let h = module.bytes().fold(seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
                    (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
                });
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(h);
                let values: Vec<f32> = (0..cfg.r * in_dim)
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                Tensor::from_vec(values, (cfg.r, in_dim), device)?
            }
        };
        let b = match init.get(&adapter_b) {
            Some(t) => t.to_dtype(DType::F32)?,
            None => Tensor::zeros((out_dim, cfg.r), DType::F32, device)?,
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
            dropout: cfg.dropout,
            dropout_seed: None,
        });
        adapters.push(Adapter { module, a, b });
    }
    Ok(adapters)
}
