//! The run folder: the one place that knows its layout and its checkpoint format, for the
//! trainer that writes it and for everything that reads it (loading a run as a model, exports,
//! the studio's run list).
//!
//! ```text
//! RUN/config.json                       the resolved TrainConfig (the run's manifest)
//! RUN/model/{config.json,tokenizer.json} the model as the run sees it (a scratch LM's own size)
//! RUN/metrics.jsonl                     append-only, one JSON object per event
//! RUN/checkpoints/NAME.safetensors      last, best, step-NNNNNN; atomic
//! RUN/previews/step-NNNNNN.*            preview clips or pieces
//! ```
//!
//! A checkpoint holds the trained tensors under `w.`, the EMA under `ema.` and (in `last` only)
//! the AdamW moments under `opt.`; its metadata says `format = tunelab-run-checkpoint`, the
//! mode, the step and (in `last`) the run state for an exact resume.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::models::checkpoint::{load_tensors, read_metadata, save_tensors_with_metadata};
use crate::models::Family;
use crate::store::run_config::{Mode, TrainConfig};
use crate::util::atomic_write;

/// The checkpoint metadata's format tag.
pub const CHECKPOINT_FORMAT: &str = "tunelab-run-checkpoint";
/// Prefix of the trained tensors in a checkpoint.
pub const WEIGHTS: &str = "w.";
/// Prefix of the EMA of the trained tensors.
pub const EMA: &str = "ema.";
/// Prefix of the optimizer state (in `last`).
pub const OPTIMIZER: &str = "opt.";

/// Is `dir` a tunelab training run?
pub fn is_run_dir(dir: &Path) -> bool {
    dir.join("checkpoints").is_dir() && model_dir(dir).join("config.json").is_file()
}

pub fn config_path(run_dir: &Path) -> PathBuf {
    run_dir.join("config.json")
}

/// The model's description as the run sees it (`config.json`, `tokenizer.json`).
pub fn model_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("model")
}

pub fn metrics_path(run_dir: &Path) -> PathBuf {
    run_dir.join("metrics.jsonl")
}

pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// `checkpoints/<name>.safetensors` (`last`, `best`, `step-000200`).
pub fn checkpoint_path(run_dir: &Path, name: &str) -> PathBuf {
    checkpoints_dir(run_dir).join(format!("{name}.safetensors"))
}

/// The stem of the preview made at `step` (`previews/step-000200`; the learner adds the
/// extension).
pub fn preview_stem(run_dir: &Path, step: usize) -> PathBuf {
    run_dir.join("previews").join(format!("step-{step:06}"))
}

/// A run's resolved `config.json`.
pub fn read_config(run_dir: &Path) -> Result<TrainConfig> {
    let path = config_path(run_dir);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::bad_file(&path, format!("not a training config: {e}")))
}

/// Writes the run's manifest (atomically).
pub fn write_config(run_dir: &Path, cfg: &TrainConfig) -> Result<()> {
    let json = serde_json::to_vec_pretty(cfg).map_err(|e| Error::InvalidRequest(e.to_string()))?;
    atomic_write(&config_path(run_dir), &json)
}

/// The family a run trains, from its manifest.
pub fn family(run_dir: &Path) -> Result<Family> {
    Ok(read_config(run_dir)?.family)
}

/// A run checkpoint's tensors and metadata.
pub fn load_checkpoint(path: &Path) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let meta = read_metadata(path)?;
    if meta.get("format").map(String::as_str) != Some(CHECKPOINT_FORMAT) {
        return Err(Error::bad_file(path, "not a tunelab run checkpoint"));
    }
    let tensors = load_tensors(&[path.to_path_buf()], DType::F32, &Device::Cpu)?;
    Ok((tensors, meta))
}

/// Writes a checkpoint: `tensors` already carry their prefixes ([`WEIGHTS`], [`EMA`],
/// [`OPTIMIZER`]); `run_state` (JSON) makes it resumable.
pub fn save_checkpoint(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
    mode: Mode,
    step: usize,
    run_state: Option<String>,
) -> Result<()> {
    let mut meta = HashMap::from([
        ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
        // JSON-encoded, as the first runs wrote it (`"lora"`).
        ("mode".to_string(), format!("\"{}\"", mode.name())),
        ("step".to_string(), step.to_string()),
    ]);
    if let Some(st) = run_state {
        meta.insert("run_state".to_string(), st);
    }
    save_tensors_with_metadata(tensors, Some(meta), path)
}

/// The tensors under `prefix`, with the prefix removed.
pub fn weights_of(t: &HashMap<String, Tensor>, prefix: &str) -> HashMap<String, Tensor> {
    t.iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|n| (n.to_string(), v.clone())))
        .collect()
}

/// The final weights a run produced for export or generation: EMA when the run kept one, else
/// the live weights, from `checkpoint` (default `last`). Names are HF names (PEFT file names
/// for a LoRA run).
pub fn run_weights(
    run_dir: &Path,
    checkpoint: Option<&str>,
) -> Result<(TrainConfig, HashMap<String, Tensor>)> {
    let cfg = read_config(run_dir)?;
    let (t, _) = load_checkpoint(&checkpoint_path(run_dir, checkpoint.unwrap_or("last")))?;
    let ema = weights_of(&t, EMA);
    Ok((
        cfg,
        if ema.is_empty() {
            weights_of(&t, WEIGHTS)
        } else {
            ema
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_says_its_mode_and_step_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        for (i, mode) in [Mode::Full, Mode::Lora, Mode::Head, Mode::Scratch]
            .into_iter()
            .enumerate()
        {
            let path = checkpoint_path(run, &format!("step-{i:06}"));
            let w = Tensor::new(&[1f32, 2., 3.], &Device::Cpu).unwrap();
            let tensors = HashMap::from([(format!("{WEIGHTS}x"), w)]);
            save_checkpoint(&path, &tensors, mode, 7 + i, Some("{}".into())).unwrap();
            let (t, meta) = load_checkpoint(&path).unwrap();
            // The mode is the run's, JSON-encoded (never empty).
            let m: Mode = serde_json::from_str(&meta["mode"]).unwrap();
            assert_eq!(m, mode);
            assert_eq!(meta["step"], (7 + i).to_string());
            assert_eq!(meta["run_state"], "{}");
            assert_eq!(
                weights_of(&t, WEIGHTS)["x"].to_vec1::<f32>().unwrap(),
                [1., 2., 3.]
            );
        }
        let plain = run.join("plain.safetensors");
        crate::models::checkpoint::save_tensors(&HashMap::new(), &plain).unwrap();
        let e = load_checkpoint(&plain).unwrap_err().to_string();
        assert!(e.contains("not a tunelab run checkpoint"), "{e}");
    }
}
