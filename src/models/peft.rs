//! PEFT's side of LoRA: how adapter tensors are named (in a live model and in
//! `adapter_model.safetensors`), `adapter_config.json`, reading an adapter folder, and merging
//! adapters into base weights (`W ← W + (alpha / r) · B · A`) — the one merge every export and
//! every merged load uses, for both model families.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::checkpoint::load_tensors;
use crate::models::lora::{Adapter, LoraConfig, LoraTarget};

/// PEFT's `adapter_config.json` (the fields PEFT needs to rebuild the adapters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    pub peft_type: String,
    pub r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f32,
    pub target_modules: Vec<String>,
    pub base_model_name_or_path: String,
    pub bias: String,
    pub fan_in_fan_out: bool,
    pub inference_mode: bool,
    pub task_type: Option<String>,
}

impl AdapterConfig {
    /// The config PEFT needs for adapters trained with `lora` on `base`.
    pub fn for_lora(lora: &LoraConfig, base: &str) -> Self {
        Self {
            peft_type: "LORA".into(),
            r: lora.r,
            lora_alpha: lora.alpha,
            lora_dropout: lora.dropout,
            target_modules: target_modules(lora),
            base_model_name_or_path: base.to_string(),
            bias: "none".into(),
            fan_in_fan_out: false,
            inference_mode: true,
            task_type: None,
        }
    }

    /// The adapters' configuration for inference (no dropout).
    pub fn lora_config(&self) -> LoraConfig {
        LoraConfig {
            r: self.r,
            alpha: self.lora_alpha,
            targets: targets_from_modules(&self.target_modules),
            dropout: 0.0,
        }
    }
}

/// Is `dir` a PEFT adapter folder?
pub fn is_adapter_dir(dir: &Path) -> bool {
    dir.join("adapter_config.json").is_file()
}

/// PEFT's name in a live model (`….lora_A.default.weight`) → in `adapter_model.safetensors`.
pub fn file_name(live: &str) -> String {
    live.replace(".default.weight", ".weight")
}

/// The inverse of [`file_name`].
pub fn live_name(file: &str) -> String {
    if file.ends_with(".default.weight") {
        return file.to_string();
    }
    file.strip_suffix(".weight")
        .map(|p| format!("{p}.default.weight"))
        .unwrap_or_else(|| file.to_string())
}

/// Adapter tensors keyed by their file names, renamed to live names and moved to `device`
/// (what [`crate::models::lora::attach_lora`] takes as starting values).
pub fn live_tensors(
    file_tensors: &HashMap<String, Tensor>,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    file_tensors
        .iter()
        .map(|(k, v)| Ok((live_name(k), v.to_device(device)?)))
        .collect()
}

/// The adapters' trainable tensors by their names in `adapter_model.safetensors`.
pub fn adapter_vars(adapters: Vec<Adapter>) -> Vec<(String, Var)> {
    adapters
        .into_iter()
        .flat_map(|a| {
            let (na, nb) = a.peft_names();
            [(file_name(&na), a.a), (file_name(&nb), a.b)]
        })
        .collect()
}

/// Reads a PEFT adapter folder: its config and tensors (`base_model.model.….lora_X.weight`).
pub fn read(dir: &Path) -> Result<(AdapterConfig, HashMap<String, Tensor>)> {
    let p = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
    let ac: AdapterConfig = serde_json::from_str(&text)
        .map_err(|e| Error::bad_file(&p, format!("not a PEFT adapter config: {e}")))?;
    if ac.peft_type != "LORA" {
        return Err(Error::bad_file(
            &p,
            format!("{} adapters are not supported (LoRA only)", ac.peft_type),
        ));
    }
    let w = dir.join("adapter_model.safetensors");
    if !w.is_file() {
        return Err(Error::MissingFile {
            path: w,
            what: "adapter weights (safetensors)".into(),
        });
    }
    Ok((ac, load_tensors(&[w], DType::F32, &Device::Cpu)?))
}

/// PEFT's `target_modules` for the config (module name suffixes).
pub fn target_modules(cfg: &LoraConfig) -> Vec<String> {
    let mut out = Vec::new();
    for t in &cfg.targets {
        match t {
            LoraTarget::SelfAttn => out.extend(
                [
                    "self_attn.q_proj",
                    "self_attn.k_proj",
                    "self_attn.v_proj",
                    "self_attn.out_proj",
                ]
                .map(String::from),
            ),
            LoraTarget::CrossAttn => out.extend(
                [
                    "encoder_attn.q_proj",
                    "encoder_attn.k_proj",
                    "encoder_attn.v_proj",
                    "encoder_attn.out_proj",
                ]
                .map(String::from),
            ),
            LoraTarget::Ffn => out.extend(["fc1", "fc2"].map(String::from)),
            LoraTarget::LmHeads => out
                .extend(["lm_heads.0", "lm_heads.1", "lm_heads.2", "lm_heads.3"].map(String::from)),
            LoraTarget::EncToDecProj => out.push("enc_to_dec_proj".into()),
        }
    }
    out
}

/// LoRA targets from PEFT's `target_modules`.
fn targets_from_modules(modules: &[String]) -> Vec<LoraTarget> {
    use LoraTarget as T;
    let mut out = Vec::new();
    let mut add = |t: T| {
        if !out.contains(&t) {
            out.push(t);
        }
    };
    for m in modules {
        let m = m.as_str();
        if m.contains("encoder_attn") {
            add(T::CrossAttn);
        } else if m.contains("self_attn") {
            add(T::SelfAttn);
        } else if matches!(m, "q_proj" | "k_proj" | "v_proj" | "out_proj") {
            // A bare name matches both attentions in PEFT.
            add(T::SelfAttn);
            add(T::CrossAttn);
        } else if m.contains("fc1") || m.contains("fc2") {
            add(T::Ffn);
        } else if m.contains("lm_heads") {
            add(T::LmHeads);
        } else if m.contains("enc_to_dec_proj") {
            add(T::EncToDecProj);
        }
    }
    out
}

/// `W ← W + (alpha / r) · B · A` for every adapter in `adapters` (PEFT file names,
/// `base_model.model.<module>.lora_{A,B}.weight`), on the device of each base weight.
pub fn merge(
    tensors: &mut HashMap<String, Tensor>,
    adapters: &HashMap<String, Tensor>,
    lora: &LoraConfig,
) -> Result<()> {
    let scale = lora.alpha / lora.r.max(1) as f64;
    for (name, a) in adapters {
        let Some(module) = name
            .strip_prefix("base_model.model.")
            .and_then(|n| n.strip_suffix(".lora_A.weight"))
        else {
            continue;
        };
        let b = adapters
            .get(&format!("base_model.model.{module}.lora_B.weight"))
            .ok_or_else(|| {
                Error::InvalidRequest(format!("adapter {module} has lora_A but no lora_B"))
            })?;
        let key = format!("{module}.weight");
        let w = tensors.get(&key).ok_or_else(|| {
            Error::InvalidRequest(format!(
                "adapter {module} fits no weight of the base model (it lacks {key})"
            ))
        })?;
        let delta = (b.to_device(w.device())?.matmul(&a.to_device(w.device())?)? * scale)?;
        let merged = (w + delta)?;
        tensors.insert(key, merged);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_a_merge_adds_the_scaled_product() {
        let live = "base_model.model.decoder.lm_heads.0.lora_A.default.weight";
        assert_eq!(
            file_name(live),
            "base_model.model.decoder.lm_heads.0.lora_A.weight"
        );
        assert_eq!(live_name(&file_name(live)), live);
        assert_eq!(live_name(live), live);

        let dev = Device::Cpu;
        let w = Tensor::new(&[[1f32, 0.], [0., 1.]], &dev).unwrap();
        let a = Tensor::new(&[[1f32, 2.]], &dev).unwrap(); // [r=1, in=2]
        let b = Tensor::new(&[[3f32], [4.]], &dev).unwrap(); // [out=2, r=1]
        let mut tensors = HashMap::from([("m.weight".to_string(), w)]);
        let adapters = HashMap::from([
            ("base_model.model.m.lora_A.weight".to_string(), a),
            ("base_model.model.m.lora_B.weight".to_string(), b.clone()),
        ]);
        let lora = LoraConfig {
            r: 1,
            alpha: 2.0,
            targets: vec![],
            dropout: 0.0,
        };
        merge(&mut tensors, &adapters, &lora).unwrap();
        // W + 2 · B·A = I + 2 · [[3, 6], [4, 8]]
        let got = tensors["m.weight"].to_vec2::<f32>().unwrap();
        assert_eq!(got, vec![vec![7., 12.], vec![8., 17.]]);

        let only_a = HashMap::from([(
            "base_model.model.m.lora_A.weight".to_string(),
            Tensor::new(&[[1f32, 2.]], &dev).unwrap(),
        )]);
        let e = merge(&mut tensors, &only_a, &lora).unwrap_err().to_string();
        assert!(e.contains("no lora_B"), "{e}");
        let stray = HashMap::from([
            (
                "base_model.model.x.lora_A.weight".to_string(),
                Tensor::new(&[[1f32, 2.]], &dev).unwrap(),
            ),
            ("base_model.model.x.lora_B.weight".to_string(), b),
        ]);
        let e = merge(&mut tensors, &stray, &lora).unwrap_err().to_string();
        assert!(e.contains("fits no weight"), "{e}");
    }
}
