//! The LM as a training mode sees it: which weights are `Var`s (trainable, with gradients and
//! optimizer state) and which stay plain tensors (frozen: no gradient buffers, no moments).
//! T5 and EnCodec are never part of it.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::models::musicgen::config::{DecoderConfig, MusicgenConfig};
use crate::models::musicgen::decoder::MusicgenLm;
use crate::models::musicgen::is_lm_key;

/// Is this key trained in `head` mode (heads, the text projection, and the last `layers` of
/// `total` decoder layers)?
pub fn is_head_key(name: &str, layers: usize, total: usize) -> bool {
    if name.starts_with("decoder.lm_heads.") || name.starts_with("enc_to_dec_proj.") {
        return true;
    }
    if layers > 0 && name.starts_with("decoder.model.decoder.layer_norm.") {
        return true;
    }
    name.strip_prefix("decoder.model.decoder.layers.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|i| i.parse::<usize>().ok())
        .is_some_and(|i| i + layers >= total)
}

/// Builds the LM from checkpoint tensors; those whose name passes `trainable` become `Var`s
/// (returned with their names, sorted), the rest stay frozen tensors. The LM's entries are
/// taken out of `tensors` one by one (a `Var` is a copy, so the original is freed at once) and
/// put back as the LM's own tensors (shared storage), so the map can still build the rest.
pub fn build_lm(
    cfg: &MusicgenConfig,
    tensors: &mut HashMap<String, Tensor>,
    trainable: impl Fn(&str) -> bool,
    device: &Device,
) -> Result<(MusicgenLm, Vec<(String, Var)>)> {
    let mut map = HashMap::new();
    let mut vars = Vec::new();
    let names: Vec<String> = tensors.keys().filter(|n| is_lm_key(n)).cloned().collect();
    for name in names {
        let Some(t) = tensors.remove(&name) else {
            continue;
        };
        let t = t.to_dtype(DType::F32)?.to_device(device)?;
        if trainable(&name) {
            let v = Var::from_tensor(&t)?;
            drop(t);
            map.insert(name.clone(), v.as_tensor().clone());
            vars.push((name, v));
        } else {
            map.insert(name, t);
        }
    }
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let vb = VarBuilder::from_tensors(map, DType::F32, device);
    let lm = MusicgenLm::new(&cfg.decoder, cfg.t5_hidden_size(), vb)?;
    tensors.extend(lm.tensors());
    Ok((lm, vars))
}

/// Fresh LM weights for training from scratch, initialised as HF's `_init_weights`: normal
/// (std 0.02) for linear and embedding weights, zero biases, unit layer-norm scales.
pub fn scratch_lm_tensors(
    decoder: &DecoderConfig,
    text_hidden: usize,
    seed: u64,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    MusicgenLm::new(decoder, text_hidden, vb)?;
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::InvalidRequest("var map poisoned".into()))?;
    let mut out = HashMap::new();
    for (name, var) in data.iter() {
        let shape = var.as_tensor().shape().clone();
        let n = shape.elem_count();
        let values: Vec<f32> = if name.ends_with("bias") {
            vec![0.0; n]
        } else if name.contains("layer_norm") {
            vec![1.0; n]
        } else {
            let h = name.bytes().fold(seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            });
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(h);
            (0..n)
                .map(|_| {
                    let u1: f32 = rng.random::<f32>().max(1e-7);
                    let u2: f32 = rng.random();
                    0.02 * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
                })
                .collect()
        };
        out.insert(name.clone(), Tensor::from_vec(values, shape, device)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_mode_selects_heads_projection_and_last_layers() {
        assert!(is_head_key("decoder.lm_heads.3.weight", 0, 24));
        assert!(is_head_key("enc_to_dec_proj.bias", 0, 24));
        assert!(!is_head_key(
            "decoder.model.decoder.layers.23.fc1.weight",
            0,
            24
        ));
        assert!(is_head_key(
            "decoder.model.decoder.layers.23.fc1.weight",
            2,
            24
        ));
        assert!(is_head_key(
            "decoder.model.decoder.layers.22.fc1.weight",
            2,
            24
        ));
        assert!(!is_head_key(
            "decoder.model.decoder.layers.21.fc1.weight",
            2,
            24
        ));
        assert!(!is_head_key(
            "decoder.model.decoder.embed_tokens.0.weight",
            2,
            24
        ));
    }
}
