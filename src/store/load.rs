//! A resolved [`ModelSpec`] becomes a model on a device: one `load` for every caller.
//!
//! - MusicGen folder or Hub id: the checkpoint as it is.
//! - MusicGen run: its base model with the run's weights (EMA when kept); a LoRA run's adapters
//!   stay unmerged (what was trained is what runs), any other mode's weights replace the base's.
//! - Music Transformer folder or run: one complete set of tensors (a head run's weights on its
//!   base, a LoRA run's adapters merged).
//! - A LoRA adapter (a PEFT folder or a LoRA run) may be attached, unmerged, to a MusicGen.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::error::{Error, Result};
use crate::models::checkpoint::{load_tensors, ModelFiles};
use crate::models::device::Precision;
use crate::models::hub::DownloadProgress;
use crate::models::lora::{attach_lora, detach_lora, LoraConfig};
use crate::models::music_transformer::{MusicTransformer, MusicTransformerConfig};
use crate::models::musicgen::config::MusicgenConfig;
use crate::models::musicgen::{is_lm_key, MusicGen};
use crate::models::nn::WeightMode;
use crate::models::{peft, Family};
use crate::store::run;
use crate::store::run_config::{Mode, TrainConfig};
use crate::store::spec::ModelSpec;

/// A loaded model of either family.
pub enum Model {
    Musicgen(Box<MusicGen>),
    Midi(Box<MusicTransformer>),
}

/// What [`ModelSpec::load`] returns: the model and what was counted while its weights were
/// still the checkpoint's.
pub struct LoadedModel {
    pub model: Model,
    /// The language model's parameters, summed over its real tensors when loaded (MusicGen:
    /// the decoder, its heads and the text projection, plus any attached adapter; T5 and EnCodec,
    /// frozen parts of every MusicGen, are not counted. Music Transformer: every tensor).
    pub parameters: usize,
    /// The precision it computes in (a Music Transformer always f32).
    pub precision: Precision,
}

impl LoadedModel {
    pub fn family(&self) -> Family {
        match self.model {
            Model::Musicgen(_) => Family::Musicgen,
            Model::Midi(_) => Family::Midi,
        }
    }

    /// The MusicGen, or an error saying `spec` is a Music Transformer.
    pub fn into_musicgen(self, spec: &ModelSpec) -> Result<MusicGen> {
        match self.model {
            Model::Musicgen(m) => Ok(*m),
            Model::Midi(_) => Err(Error::InvalidRequest(format!(
                "{spec} is a Music Transformer, not a MusicGen"
            ))),
        }
    }

    /// The Music Transformer, or an error saying `spec` is a MusicGen.
    pub fn into_midi(self, spec: &ModelSpec) -> Result<MusicTransformer> {
        match self.model {
            Model::Midi(m) => Ok(*m),
            Model::Musicgen(_) => Err(Error::InvalidRequest(format!(
                "{spec} is a MusicGen, not a Music Transformer"
            ))),
        }
    }
}

/// How to load.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions<'a> {
    /// Storage of a MusicGen's large matrices (f32, q8, q4, q4k); a Music Transformer is f32.
    pub weights: WeightMode,
    /// A MusicGen's compute precision (f32, bf16, f16); a Music Transformer is f32.
    pub precision: Precision,
    /// A LoRA adapter to attach unmerged (a PEFT folder or a LoRA run; MusicGen only).
    pub adapter: Option<&'a ModelSpec>,
    /// Which checkpoint of a run (`best`, `last`, `step-000200`; default `last`). Runs only.
    pub checkpoint: Option<&'a str>,
}

impl ModelSpec {
    /// Loads the model on `device`; a Hub id is downloaded first, reporting `progress`.
    pub fn load(
        &self,
        device: &Device,
        opts: LoadOptions<'_>,
        progress: &mut dyn FnMut(&DownloadProgress),
    ) -> Result<LoadedModel> {
        if opts.checkpoint.is_some() && !self.is_run() {
            return Err(Error::InvalidRequest(format!(
                "{self} is not a training run: only a run has checkpoints to choose from"
            )));
        }
        match self {
            Self::MidiDir(_) | Self::MidiRun(_) => {
                if opts.adapter.is_some() {
                    return Err(Error::InvalidRequest(
                        "a Music Transformer takes no separate adapter: load its LoRA run instead"
                            .into(),
                    ));
                }
                let (cfg, tensors) = self.midi_tensors(opts.checkpoint, device)?;
                let parameters = tensors.values().map(|t| t.elem_count()).sum();
                let m = MusicTransformer::new(
                    &cfg,
                    VarBuilder::from_tensors(tensors, DType::F32, device),
                )?;
                Ok(LoadedModel {
                    model: Model::Midi(Box::new(m)),
                    parameters,
                    precision: Precision::F32,
                })
            }
            Self::PeftAdapter(_) => Err(Error::InvalidRequest(format!(
                "{self} is an adapter, not a model: load its base model and attach it"
            ))),
            Self::Hub(_) | Self::MusicgenDir(_) | Self::MusicgenRun(_) => {
                let mut m = match self {
                    Self::MusicgenRun(dir) => musicgen_run(dir, opts.checkpoint, device)?,
                    _ => MusicGen::load(&self.musicgen_dir(progress)?, device, WeightMode::F32)?,
                };
                let mut parameters = m.lm.tensors().values().map(|t| t.elem_count()).sum();
                if let Some(a) = opts.adapter {
                    parameters += attach_adapter(&mut m, a)?;
                }
                m.set_weight_mode(opts.weights)?;
                m.set_precision(opts.precision)?;
                Ok(LoadedModel {
                    precision: m.precision(),
                    model: Model::Musicgen(Box::new(m)),
                    parameters,
                })
            }
        }
    }

    /// A Music Transformer's config and complete tensors (a run's at `checkpoint`, default
    /// `last`; a head run's weights on its base, a LoRA run's adapters merged).
    pub fn midi_tensors(
        &self,
        checkpoint: Option<&str>,
        device: &Device,
    ) -> Result<(MusicTransformerConfig, HashMap<String, Tensor>)> {
        match self {
            Self::MidiDir(dir) => {
                let m = crate::models::music_transformer::load(dir, device)?;
                Ok((m.config().clone(), m.tensors()))
            }
            Self::MidiRun(dir) => midi_run_tensors(dir, checkpoint, device),
            other => Err(Error::MissingFile {
                path: other.local_dir().unwrap_or(Path::new("")).to_path_buf(),
                what: format!(
                    "Music Transformer (a model folder with config.json and model.safetensors, \
                     or a MIDI training run); {other} is not one"
                ),
            }),
        }
    }
}

/// A MIDI run's model at `checkpoint` (EMA weights when the run kept them).
fn midi_run_tensors(
    run_dir: &Path,
    checkpoint: Option<&str>,
    device: &Device,
) -> Result<(MusicTransformerConfig, HashMap<String, Tensor>)> {
    let (cfg, weights) = run::run_weights(run_dir, checkpoint)?;
    if cfg.family != Family::Midi {
        return Err(Error::bad_file(
            run::config_path(run_dir),
            "a MusicGen run, not a MIDI one",
        ));
    }
    let model_cfg =
        MusicTransformerConfig::from_file(&run::model_dir(run_dir).join("config.json"))?;
    let mut tensors = match cfg.mode {
        Mode::Scratch | Mode::Full => HashMap::new(),
        Mode::Head | Mode::Lora => {
            ModelSpec::resolve(&cfg.model)?
                .midi_tensors(None, device)?
                .1
        }
    };
    match cfg.mode {
        Mode::Lora => peft::merge(&mut tensors, &weights, &cfg.lora)?,
        _ => {
            for (k, v) in &weights {
                tensors.insert(k.clone(), v.to_device(device)?);
            }
        }
    }
    Ok((model_cfg, tensors))
}

/// The files of the MusicGen a run was trained from.
pub fn base_files(cfg: &TrainConfig) -> Result<ModelFiles> {
    let base = ModelSpec::resolve(&cfg.model)?.musicgen_dir(&mut |_| {})?;
    ModelFiles::in_dir(&base)
}

/// A MusicGen run's complete tensors on the CPU: the base model's (`base`, from
/// [`base_files`]) with the run's weights in place (a LoRA run's adapters merged), and the run's
/// model config.
pub fn musicgen_run_tensors(
    run_dir: &Path,
    cfg: &TrainConfig,
    weights: &HashMap<String, Tensor>,
    base: &ModelFiles,
) -> Result<(MusicgenConfig, HashMap<String, Tensor>)> {
    let config = MusicgenConfig::from_file(&run::model_dir(run_dir).join("config.json"))?;
    let files = base;
    let mut tensors = load_tensors(&files.weights, DType::F32, &Device::Cpu)?;
    match cfg.mode {
        Mode::Lora => peft::merge(&mut tensors, weights, &cfg.lora)?,
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

/// A MusicGen run as a model: the base with the run's weights (a LoRA run's adapter unmerged).
fn musicgen_run(run_dir: &Path, checkpoint: Option<&str>, device: &Device) -> Result<MusicGen> {
    let (cfg, weights) = run::run_weights(run_dir, checkpoint)?;
    let mut model = if cfg.mode == Mode::Lora {
        let base = ModelSpec::resolve(&cfg.model)?.musicgen_dir(&mut |_| {})?;
        let mut m = MusicGen::load(&base, device, WeightMode::F32)?;
        let lcfg = LoraConfig {
            dropout: 0.0,
            ..cfg.lora.clone()
        };
        attach_lora(&mut m.lm, &lcfg, &peft::live_tensors(&weights, device)?, 0)?;
        m
    } else {
        let files = base_files(&cfg)?;
        let (config, tensors) = musicgen_run_tensors(run_dir, &cfg, &weights, &files)?;
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
            &run::checkpoints_dir(run_dir),
        )?
    };
    model.source = Some(run_dir.to_path_buf());
    Ok(model)
}

/// Attaches a LoRA adapter, unmerged, to a loaded MusicGen: `adapter` is a PEFT folder
/// (`adapter_config.json` + `adapter_model.safetensors`) or a tunelab LoRA run. Returns the
/// adapter's parameter count.
pub fn attach_adapter(model: &mut MusicGen, adapter: &ModelSpec) -> Result<usize> {
    let (lcfg, tensors, dir) = match adapter {
        ModelSpec::PeftAdapter(dir) => {
            let (ac, t) = peft::read(dir)?;
            (ac.lora_config(), t, dir)
        }
        ModelSpec::MusicgenRun(dir) => {
            let (cfg, w) = run::run_weights(dir, None)?;
            if cfg.mode != Mode::Lora {
                return Err(Error::InvalidRequest(format!(
                    "{} is a {} run, not an adapter: pass it as --model",
                    dir.display(),
                    cfg.mode.name()
                )));
            }
            (
                LoraConfig {
                    dropout: 0.0,
                    ..cfg.lora
                },
                w,
                dir,
            )
        }
        other => {
            return Err(Error::InvalidRequest(format!(
                "{other} is not a LoRA adapter (a PEFT folder or a LoRA run)"
            )))
        }
    };
    let device = model.device().clone();
    let init = peft::live_tensors(&tensors, &device)?;
    let adapters = attach_lora(&mut model.lm, &lcfg, &init, 0)?;
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
        detach_lora(&mut model.lm, &lcfg);
        return Err(Error::bad_file(
            dir,
            format!("adapter tensor {stray} matches no module of this model"),
        ));
    }
    Ok(adapters
        .iter()
        .map(|a| a.a.as_tensor().elem_count() + a.b.as_tensor().elem_count())
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_a_model_or_not_a_run_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let adapter = tmp.path().join("adapter");
        std::fs::create_dir_all(&adapter).unwrap();
        let e = ModelSpec::PeftAdapter(adapter)
            .load(&Device::Cpu, LoadOptions::default(), &mut |_| {})
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("is an adapter"), "{e}");
        let mt = tmp.path().join("mt");
        let cfg = MusicTransformerConfig::preset("tiny").unwrap();
        let t = cfg.init_tensors(0, &Device::Cpu).unwrap();
        crate::models::music_transformer::save(&mt, &cfg, &t).unwrap();
        let with_checkpoint = LoadOptions {
            checkpoint: Some("best"),
            ..Default::default()
        };
        let e = ModelSpec::MidiDir(mt.clone())
            .load(&Device::Cpu, with_checkpoint, &mut |_| {})
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("not a training run"), "{e}");
        // The folder loads, with every tensor counted.
        let loaded = ModelSpec::MidiDir(mt)
            .load(&Device::Cpu, LoadOptions::default(), &mut |_| {})
            .unwrap();
        assert_eq!(loaded.family(), Family::Midi);
        assert_eq!(
            loaded.parameters,
            t.values().map(|x| x.elem_count()).sum::<usize>()
        );
    }
}
