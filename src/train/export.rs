//! Exports of a training run:
//! - `hf`: a complete Hugging Face MusicGen folder (`config.json`, `model.safetensors`,
//!   `tokenizer.json`, `generation_config.json`) loadable by `tunelab generate` and by
//!   transformers' `MusicgenForConditionalGeneration.from_pretrained`; a LoRA run is merged
//!   into the base (`W + alpha/r · B·A`).
//! - `peft`: `adapter_config.json` + `adapter_model.safetensors` with PEFT's key names, loadable
//!   by `PeftModel.from_pretrained(base, dir)` (LoRA runs only).
//! - `audiocraft`: the LM's `state_dict` under audiocraft's names (fused `in_proj_weight`,
//!   `linear1/2`, `norm1/norm_cross/norm2`, `out_norm`, `linears`, `emb`, and the text projection
//!   as `condition_provider.conditioners.description.output_proj`), as safetensors
//!   (`tools/to_audiocraft_bin.py` wraps it into audiocraft's `state_dict.bin` pickle).
//!
//! The weights exported are the EMA weights when the run kept an EMA, else the live ones.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::checkpoint::{save_tensors, ModelFiles};
use crate::models::musicgen::config::MusicgenConfig;
use crate::models::peft::AdapterConfig;
use crate::models::Family;
use crate::store::load::{base_files, musicgen_run_tensors};
use crate::store::run::run_weights;
use crate::store::run_config::{Mode, TrainConfig};
use crate::store::ModelSpec;
use crate::util::atomic_write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Hf,
    Peft,
    Audiocraft,
}

impl std::str::FromStr for ExportFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "hf" => Ok(Self::Hf),
            "peft" => Ok(Self::Peft),
            "audiocraft" => Ok(Self::Audiocraft),
            o => Err(Error::InvalidRequest(format!(
                "unknown export format {o:?} (hf, peft, audiocraft)"
            ))),
        }
    }
}

/// Exports the run in `run_dir` (checkpoint `last` unless named) as `format` into `out`.
pub fn export_run(
    run_dir: &Path,
    checkpoint: Option<&str>,
    format: ExportFormat,
    out: &Path,
) -> Result<()> {
    export_run_as(run_dir, checkpoint, format, out, DType::F32)
}

/// [`export_run`] with the weights stored as `dtype` (f32, f16 or bf16): halves a model
/// folder's size (the demo model ships in f16). MusicGen exports are f32 only.
pub fn export_run_as(
    run_dir: &Path,
    checkpoint: Option<&str>,
    format: ExportFormat,
    out: &Path,
    dtype: DType,
) -> Result<()> {
    let (cfg, weights) = run_weights(run_dir, checkpoint)?;
    if cfg.family == Family::Midi {
        // A Music Transformer has one format: its model folder (LoRA merged, head on its base).
        return match format {
            ExportFormat::Hf => {
                let (config, tensors) = ModelSpec::MidiRun(run_dir.to_path_buf())
                    .midi_tensors(checkpoint, &Device::Cpu)?;
                let tensors = tensors
                    .into_iter()
                    .map(|(k, v)| Ok((k, v.to_dtype(dtype)?)))
                    .collect::<Result<HashMap<_, _>>>()?;
                crate::models::music_transformer::save(out, &config, &tensors)
            }
            other => Err(Error::InvalidRequest(format!(
                "{}: a MIDI run exports as a model folder (--format hf), not {other:?}",
                run_dir.display()
            ))),
        };
    }
    if dtype != DType::F32 {
        return Err(Error::InvalidRequest(
            "MusicGen runs export in f32 (reduced precision is chosen when loading)".into(),
        ));
    }
    match format {
        ExportFormat::Peft => export_peft(&cfg, &weights, out),
        ExportFormat::Hf => {
            let base = base_files(&cfg)?;
            let (config, tensors) = musicgen_run_tensors(run_dir, &cfg, &weights, &base)?;
            export_hf(run_dir, &cfg, &base, &config, &tensors, out)
        }
        ExportFormat::Audiocraft => {
            let base = base_files(&cfg)?;
            let (config, tensors) = musicgen_run_tensors(run_dir, &cfg, &weights, &base)?;
            let lm = audiocraft_state_dict(&config, &tensors)?;
            save_tensors(&lm, &out.join("state_dict.safetensors"))?;
            let cfg_json = serde_json::to_vec_pretty(&config)
                .map_err(|e| Error::InvalidRequest(e.to_string()))?;
            atomic_write(&out.join("musicgen_config.json"), &cfg_json)
        }
    }
}

/// transformers ≥ 4.4x spells weight norm as parametrizations; write what it writes.
fn hf_key(name: &str) -> String {
    if let Some(p) = name.strip_suffix("weight_g") {
        format!("{p}parametrizations.weight.original0")
    } else if let Some(p) = name.strip_suffix("weight_v") {
        format!("{p}parametrizations.weight.original1")
    } else {
        name.to_string()
    }
}

fn export_hf(
    run_dir: &Path,
    cfg: &TrainConfig,
    files: &ModelFiles,
    config: &MusicgenConfig,
    tensors: &HashMap<String, Tensor>,
    out: &Path,
) -> Result<()> {
    let renamed: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| (hf_key(k), v.clone()))
        .collect();
    save_tensors(&renamed, &out.join("model.safetensors"))?;
    let mut config_json =
        serde_json::to_value(config).map_err(|e| Error::InvalidRequest(e.to_string()))?;
    // transformers needs the composite model's own fields, which our struct does not model.
    if let Ok(text) = std::fs::read_to_string(&files.config) {
        if let Ok(serde_json::Value::Object(base)) = serde_json::from_str(&text) {
            if let Some(o) = config_json.as_object_mut() {
                for (k, v) in base {
                    if !matches!(k.as_str(), "decoder" | "text_encoder" | "audio_encoder") {
                        o.entry(k).or_insert(v);
                    }
                }
            }
        }
    }
    let bytes = serde_json::to_vec_pretty(&config_json)
        .map_err(|e| Error::InvalidRequest(e.to_string()))?;
    atomic_write(&out.join("config.json"), &bytes)?;
    for (src, name) in [
        (files.tokenizer.clone(), "tokenizer.json"),
        (files.generation_config.clone(), "generation_config.json"),
    ] {
        if let Some(p) = src {
            let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            atomic_write(&out.join(name), &bytes)?;
        }
    }
    for extra in [
        "tokenizer_config.json",
        "special_tokens_map.json",
        "spiece.model",
        "preprocessor_config.json",
    ] {
        let p = files.config.with_file_name(extra);
        if p.is_file() {
            let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            atomic_write(&out.join(extra), &bytes)?;
        }
    }
    let note = serde_json::json!({"exported_from": run_dir, "mode": cfg.mode, "base": cfg.model});
    atomic_write(
        &out.join("tunelab_export.json"),
        note.to_string().as_bytes(),
    )
}

fn export_peft(cfg: &TrainConfig, weights: &HashMap<String, Tensor>, out: &Path) -> Result<()> {
    if cfg.mode != Mode::Lora {
        return Err(Error::InvalidRequest(format!(
            "a {:?} run has no adapter: export it as hf or audiocraft",
            cfg.mode
        )));
    }
    let ac = AdapterConfig::for_lora(&cfg.lora, &cfg.model);
    save_tensors(weights, &out.join("adapter_model.safetensors"))?;
    let bytes = serde_json::to_vec_pretty(&ac).map_err(|e| Error::InvalidRequest(e.to_string()))?;
    atomic_write(&out.join("adapter_config.json"), &bytes)
}

/// The LM's tensors under audiocraft's names.
pub fn audiocraft_state_dict(
    config: &MusicgenConfig,
    tensors: &HashMap<String, Tensor>,
) -> Result<HashMap<String, Tensor>> {
    let get = |k: &str| {
        tensors
            .get(k)
            .cloned()
            .ok_or_else(|| Error::InvalidRequest(format!("model lacks {k}")))
    };
    let d = "decoder.model.decoder";
    let mut out = HashMap::new();
    let proj = "condition_provider.conditioners.description.output_proj";
    out.insert(format!("{proj}.weight"), get("enc_to_dec_proj.weight")?);
    out.insert(format!("{proj}.bias"), get("enc_to_dec_proj.bias")?);
    for k in 0..config.decoder.num_codebooks {
        out.insert(
            format!("emb.{k}.weight"),
            get(&format!("{d}.embed_tokens.{k}.weight"))?,
        );
        out.insert(
            format!("linears.{k}.weight"),
            get(&format!("decoder.lm_heads.{k}.weight"))?,
        );
    }
    for i in 0..config.decoder.num_hidden_layers {
        let h = format!("{d}.layers.{i}");
        let a = format!("transformer.layers.{i}");
        for (hf, ac) in [
            ("self_attn", "self_attn"),
            ("encoder_attn", "cross_attention"),
        ] {
            let q = get(&format!("{h}.{hf}.q_proj.weight"))?;
            let k = get(&format!("{h}.{hf}.k_proj.weight"))?;
            let v = get(&format!("{h}.{hf}.v_proj.weight"))?;
            out.insert(
                format!("{a}.{ac}.in_proj_weight"),
                Tensor::cat(&[&q, &k, &v], 0)?,
            );
            out.insert(
                format!("{a}.{ac}.out_proj.weight"),
                get(&format!("{h}.{hf}.out_proj.weight"))?,
            );
        }
        out.insert(
            format!("{a}.linear1.weight"),
            get(&format!("{h}.fc1.weight"))?,
        );
        out.insert(
            format!("{a}.linear2.weight"),
            get(&format!("{h}.fc2.weight"))?,
        );
        for (hf, ac) in [
            ("self_attn_layer_norm", "norm1"),
            ("encoder_attn_layer_norm", "norm_cross"),
            ("final_layer_norm", "norm2"),
        ] {
            for p in ["weight", "bias"] {
                out.insert(format!("{a}.{ac}.{p}"), get(&format!("{h}.{hf}.{p}"))?);
            }
        }
    }
    for p in ["weight", "bias"] {
        out.insert(
            format!("out_norm.{p}"),
            get(&format!("{d}.layer_norm.{p}"))?,
        );
    }
    Ok(out)
}
