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
use crate::models::checkpoint::{load_tensors, save_tensors, ModelFiles};
use crate::models::musicgen::config::MusicgenConfig;
use crate::train::config::{Mode, TrainConfig};
use crate::train::lora::peft_target_modules;
use crate::train::trainable::is_lm_key;
use crate::train::trainer::run_weights;
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
    if cfg.family == crate::train::config::Family::Midi {
        // A Music Transformer has one format: its model folder (LoRA merged, head on its base).
        return match format {
            ExportFormat::Hf => {
                let (config, tensors) =
                    crate::train::midi::resolve_run(run_dir, checkpoint, &Device::Cpu)?;
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
            let (config, tensors) = merged_model(run_dir, &cfg, &weights)?;
            export_hf(run_dir, &cfg, &config, &tensors, out)
        }
        ExportFormat::Audiocraft => {
            let (config, tensors) = merged_model(run_dir, &cfg, &weights)?;
            let lm = audiocraft_state_dict(&config, &tensors)?;
            save_tensors(&lm, &out.join("state_dict.safetensors"))?;
            let cfg_json = serde_json::to_vec_pretty(&config)
                .map_err(|e| Error::InvalidRequest(e.to_string()))?;
            atomic_write(&out.join("musicgen_config.json"), &cfg_json)
        }
    }
}

fn base_files(cfg: &TrainConfig) -> Result<ModelFiles> {
    let base = crate::models::hub::resolve_model(&cfg.model, &mut |_| {})?;
    ModelFiles::in_dir(&base)
}

/// The base model's tensors with the run's weights in place (LoRA merged), and the run's config.
pub fn merged_model(
    run_dir: &Path,
    cfg: &TrainConfig,
    weights: &HashMap<String, Tensor>,
) -> Result<(MusicgenConfig, HashMap<String, Tensor>)> {
    let config = MusicgenConfig::from_file(&run_dir.join("model").join("config.json"))?;
    let files = base_files(cfg)?;
    let mut tensors = load_tensors(&files.weights, DType::F32, &Device::Cpu)?;
    match cfg.mode {
        Mode::Lora => merge_lora(&mut tensors, weights, cfg.lora.alpha / cfg.lora.r as f64)?,
        Mode::Scratch => {
            tensors.retain(|k, _| !is_lm_key(k));
            tensors.extend(weights.clone());
        }
        Mode::Full | Mode::Head => {
            for (k, w) in weights {
                if !tensors.contains_key(k) {
                    return Err(Error::InvalidRequest(format!(
                        "the run trained {k}, which the base model lacks"
                    )));
                }
                tensors.insert(k.clone(), w.clone());
            }
        }
    }
    Ok((config, tensors))
}

/// `W ← W + scale · B · A` for every adapter (`base_model.model.<m>.lora_{A,B}.weight`).
pub fn merge_lora(
    tensors: &mut HashMap<String, Tensor>,
    adapters: &HashMap<String, Tensor>,
    scale: f64,
) -> Result<()> {
    for (name, a) in adapters {
        let Some(module) = name
            .strip_prefix("base_model.model.")
            .and_then(|n| n.strip_suffix(".lora_A.weight"))
        else {
            continue;
        };
        let b = adapters
            .get(&format!("base_model.model.{module}.lora_B.weight"))
            .ok_or_else(|| Error::InvalidRequest(format!("adapter {module} lacks lora_B")))?;
        let key = format!("{module}.weight");
        let w = tensors
            .get(&key)
            .ok_or_else(|| Error::InvalidRequest(format!("the base model lacks {key}")))?;
        let delta = (b.to_device(w.device())?.matmul(&a.to_device(w.device())?)? * scale)?;
        let merged = (w + delta)?;
        tensors.insert(key, merged);
    }
    Ok(())
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
    config: &MusicgenConfig,
    tensors: &HashMap<String, Tensor>,
    out: &Path,
) -> Result<()> {
    let files = base_files(cfg)?;
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
    let ac = AdapterConfig {
        peft_type: "LORA".into(),
        r: cfg.lora.r,
        lora_alpha: cfg.lora.alpha,
        lora_dropout: cfg.lora.dropout,
        target_modules: peft_target_modules(&cfg.lora),
        base_model_name_or_path: cfg.model.clone(),
        bias: "none".into(),
        fan_in_fan_out: false,
        inference_mode: true,
        task_type: None,
    };
    save_tensors(weights, &out.join("adapter_model.safetensors"))?;
    let bytes = serde_json::to_vec_pretty(&ac).map_err(|e| Error::InvalidRequest(e.to_string()))?;
    atomic_write(&out.join("adapter_config.json"), &bytes)
}

/// Reads a PEFT adapter folder: its config and tensors (`base_model.model.….lora_X.weight`).
pub fn read_peft(dir: &Path) -> Result<(AdapterConfig, HashMap<String, Tensor>)> {
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

/// LoRA targets from PEFT's `target_modules`.
fn targets_from_modules(modules: &[String]) -> Vec<crate::train::lora::LoraTarget> {
    use crate::train::lora::LoraTarget as T;
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

/// Attaches a LoRA adapter, unmerged, to a loaded model: `adapter` is a PEFT folder
/// (`adapter_config.json` + `adapter_model.safetensors`) or a tunelab LoRA run.
pub fn apply_adapter(model: &mut crate::models::musicgen::MusicGen, adapter: &Path) -> Result<()> {
    let (lcfg, tensors) = if adapter.join("adapter_config.json").is_file() {
        let (ac, t) = read_peft(adapter)?;
        let cfg = crate::train::lora::LoraConfig {
            r: ac.r,
            alpha: ac.lora_alpha,
            targets: targets_from_modules(&ac.target_modules),
            dropout: 0.0,
        };
        (cfg, t)
    } else {
        let (cfg, w) = run_weights(adapter, None)?;
        if cfg.mode != Mode::Lora {
            return Err(Error::InvalidRequest(format!(
                "{} is a {:?} run, not an adapter: pass it as --model",
                adapter.display(),
                cfg.mode
            )));
        }
        (
            crate::train::lora::LoraConfig {
                dropout: 0.0,
                ..cfg.lora
            },
            w,
        )
    };
    let device = model.device().clone();
    let init = tensors
        .iter()
        .map(|(k, v)| {
            Ok((
                crate::train::trainer::peft_live_name(k),
                v.to_device(&device)?,
            ))
        })
        .collect::<Result<HashMap<_, _>>>()?;
    let adapters = crate::train::lora::attach_lora(&mut model.lm, &lcfg, &init, 0)?;
    // Modules the configuration covers but the file lacks keep B = 0 (no effect); a tensor
    // in the file that found no module means the adapter does not fit this model.
    let attached: std::collections::HashSet<String> = adapters
        .iter()
        .flat_map(|a| {
            let (x, y) = a.peft_names();
            [x, y]
        })
        .collect();
    if let Some(stray) = init.keys().find(|k| !attached.contains(*k)) {
        crate::train::lora::detach_lora(&mut model.lm, &lcfg);
        return Err(Error::bad_file(
            adapter,
            format!("adapter tensor {stray} matches no module of this model"),
        ));
    }
    Ok(())
}

/// Is `dir` a tunelab training run?
pub fn is_run_dir(dir: &Path) -> bool {
    dir.join("checkpoints").is_dir() && dir.join("model").join("config.json").is_file()
}

/// Loads a run as a model: the base with the run's weights (a LoRA run's adapter unmerged).
pub fn load_run_model(
    run_dir: &Path,
    checkpoint: Option<&str>,
    device: &Device,
    mode: crate::models::nn::WeightMode,
) -> Result<crate::models::musicgen::MusicGen> {
    use crate::models::musicgen::MusicGen;
    let (cfg, weights) = run_weights(run_dir, checkpoint)?;
    let files = base_files(&cfg)?;
    let mut model = if cfg.mode == Mode::Lora {
        let base = crate::models::hub::resolve_model(&cfg.model, &mut |_| {})?;
        let mut m = MusicGen::load(&base, device, crate::models::nn::WeightMode::F32)?;
        let init = weights
            .iter()
            .map(|(k, v)| {
                Ok((
                    crate::train::trainer::peft_live_name(k),
                    v.to_device(device)?,
                ))
            })
            .collect::<Result<HashMap<_, _>>>()?;
        let lcfg = crate::train::lora::LoraConfig {
            dropout: 0.0,
            ..cfg.lora.clone()
        };
        crate::train::lora::attach_lora(&mut m.lm, &lcfg, &init, 0)?;
        m
    } else {
        let (config, tensors) = merged_model(run_dir, &cfg, &weights)?;
        let tensors = tensors
            .into_iter()
            .map(|(k, v)| Ok((k, v.to_device(device)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        MusicGen::from_tensors(
            config,
            Default::default(),
            tensors,
            files.tokenizer.as_deref(),
            device,
            &run_dir.join("checkpoints"),
        )?
    };
    model.source = Some(run_dir.to_path_buf());
    model.set_weight_mode(mode)?;
    Ok(model)
}
