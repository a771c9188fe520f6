//! Everything a training run is configured by, in one serde struct written to the run's
//! `config.json` exactly as resolved (so a run can be reproduced or resumed from it alone). It
//! lives in the store, not in `train/`, because it is the run folder's manifest: loading a run
//! as a model (evaluation, listening tests, the studio) reads it without the training loop.
//! Defaults are audiocraft's: AdamW betas (0.9, 0.95), eps 1e-8, weight decay 0.1, clipping 1.0,
//! linear warmup then cosine decay, condition dropout 0.3, word dropout 0.3, caption merge 0.25.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::device::Precision;
use crate::models::lora::LoraConfig;
use crate::models::musicgen::patterns::CodebookPattern;
use crate::models::Family;

/// The Music Transformer side of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MidiTrainConfig {
    /// Size of a `scratch` model (`tiny`, `small`, `base`).
    pub preset: String,
    /// Training excerpts are at most this many events (`None` = the model's window).
    pub max_events: Option<usize>,
    /// Each excerpt is transposed by a uniform draw in `-transpose ..= transpose` semitones (the
    /// paper's pitch augmentation); notes pushed out of range are dropped.
    pub transpose: u8,
}

impl Default for MidiTrainConfig {
    fn default() -> Self {
        Self {
            preset: "small".into(),
            max_events: None,
            transpose: 3,
        }
    }
}

/// What is trained. T5 and EnCodec are always frozen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every LM weight.
    #[default]
    Full,
    /// Low-rank adapters on a frozen LM.
    Lora,
    /// `lm_heads` and `enc_to_dec_proj` (optionally the last N layers too).
    Head,
    /// A freshly initialised LM of a preset size.
    Scratch,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Full, Mode::Lora, Mode::Head, Mode::Scratch];

    /// The mode's name, as `config.json` and the CLI spell it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Lora => "lora",
            Mode::Head => "head",
            Mode::Scratch => "scratch",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "unknown training mode {s:?} (full, lora, head, scratch)"
                ))
            })
    }
}

/// Size of a from-scratch LM (T5, EnCodec and the vocabulary come from the base model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScratchConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub ffn_dim: usize,
    /// Seed of the initial weights.
    pub init_seed: u64,
    /// Codebook interleaving of the new LM (generation follows it).
    pub pattern: CodebookPattern,
}

impl Default for ScratchConfig {
    fn default() -> Self {
        Self {
            hidden_size: 256,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            ffn_dim: 1024,
            init_seed: 0,
            pattern: CodebookPattern::Delay,
        }
    }
}

/// Exponential moving average of the trained weights (used for evaluation and export).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EmaConfig {
    pub decay: f64,
    /// Update the average every this many optimizer steps.
    pub every: usize,
}

impl Default for EmaConfig {
    fn default() -> Self {
        Self {
            decay: 0.99,
            every: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Dataset folder (from `tunelab dataset import`).
    pub dataset: PathBuf,
    /// Base model: a local HF-format folder or a Hub repo id (MIDI: a model folder or a run to
    /// continue from, empty for `scratch`).
    pub model: String,
    pub family: Family,
    pub mode: Mode,
    /// Optimizer steps (each = `grad_accum` micro-batches).
    pub steps: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    /// Longest training excerpt; longer segments are cropped at a random offset.
    pub max_seconds: f64,
    /// Peak learning rate; `None` = 1e-4 (full, head, scratch) or 2e-4 (LoRA).
    pub lr: Option<f64>,
    pub warmup_steps: usize,
    /// The cosine ends at `lr * min_lr_ratio`.
    pub min_lr_ratio: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub clip_grad_norm: f64,
    /// Recompute each layer in the backward pass instead of keeping its activations (far less
    /// memory for one extra forward).
    pub activation_checkpointing: bool,
    pub ema: Option<EmaConfig>,
    pub lora: LoraConfig,
    /// `head` mode: also train the last N decoder layers.
    pub head_layers: usize,
    pub scratch: ScratchConfig,
    pub midi: MidiTrainConfig,
    /// Probability that a caption is replaced by the empty condition (keeps CFG working).
    pub condition_dropout: f64,
    /// Probability that each caption word is dropped.
    pub word_dropout: f64,
    /// Probability that the metadata fields are merged into a description.
    pub merge_fields: f64,
    pub seed: u64,
    pub log_every: usize,
    /// Validation every N steps (0 = never).
    pub eval_every: usize,
    /// Validation batches per evaluation (0 = the whole valid split).
    pub eval_batches: usize,
    /// Kept checkpoints every N steps (0 = only `last` and `best`).
    pub checkpoint_every: usize,
    /// `last` is rewritten every N steps (and at the end).
    pub save_every: usize,
    /// Stop after this many non-finite steps in a row.
    pub max_bad_steps: usize,
    /// Generate a preview clip for this prompt at each kept checkpoint (MIDI runs generate an
    /// unprimed piece whenever this is set: their models take no text).
    pub preview_prompt: Option<String>,
    pub preview_seconds: f64,
    /// Precision of the forward and backward passes: f32, bf16 (mixed precision: f32 master
    /// weights and AdamW moments), or f16 (the same, with dynamic loss scaling). Checkpoints are
    /// f32 whatever it is.
    pub precision: Precision,
    /// f16's dynamic loss scaling (as PyTorch's `GradScaler`).
    pub loss_scale: LossScaleConfig,
    /// The device the run was created on, as `id (name)`; each start and resume also logs its
    /// device in `metrics.jsonl`.
    pub device: String,
}

/// f16's dynamic loss scale: the loss is multiplied by `init` before the backward pass; a step
/// whose gradients overflow is skipped and halves the scale; `growth_interval` good steps in a
/// row double it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LossScaleConfig {
    pub init: f64,
    pub growth_interval: u64,
}

impl Default for LossScaleConfig {
    fn default() -> Self {
        Self {
            init: 65536.0,
            growth_interval: 2000,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            dataset: PathBuf::new(),
            model: String::new(),
            family: Family::Musicgen,
            mode: Mode::Full,
            steps: 1000,
            batch_size: 2,
            grad_accum: 1,
            max_seconds: 10.0,
            lr: None,
            warmup_steps: 100,
            min_lr_ratio: 0.0,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            clip_grad_norm: 1.0,
            activation_checkpointing: true,
            ema: None,
            lora: LoraConfig::default(),
            head_layers: 0,
            scratch: ScratchConfig::default(),
            midi: MidiTrainConfig::default(),
            condition_dropout: 0.3,
            word_dropout: 0.3,
            merge_fields: 0.25,
            seed: 0,
            log_every: 1,
            eval_every: 100,
            eval_batches: 0,
            checkpoint_every: 0,
            save_every: 50,
            max_bad_steps: 5,
            preview_prompt: None,
            preview_seconds: 5.0,
            precision: Precision::F32,
            loss_scale: LossScaleConfig::default(),
            device: String::new(),
        }
    }
}

impl TrainConfig {
    /// The learning rate actually used.
    pub fn peak_lr(&self) -> f64 {
        self.lr.unwrap_or(match self.mode {
            Mode::Lora => 2e-4,
            _ => 1e-4,
        })
    }

    /// Checks what can be checked without loading anything.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidRequest(m.to_string()));
        if self.steps == 0 {
            return bad("steps must be at least 1");
        }
        if self.batch_size == 0 || self.grad_accum == 0 {
            return bad("batch size and gradient accumulation must be at least 1");
        }
        if self.max_seconds.is_nan() || self.max_seconds <= 0.0 {
            return bad("max_seconds must be positive");
        }
        if !self.peak_lr().is_finite() || self.peak_lr() <= 0.0 {
            return bad("the learning rate must be a positive number");
        }
        for (name, p) in [
            ("condition_dropout", self.condition_dropout),
            ("word_dropout", self.word_dropout),
            ("merge_fields", self.merge_fields),
            ("min_lr_ratio", self.min_lr_ratio),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::InvalidRequest(format!(
                    "{name} must be within 0..1 (got {p})"
                )));
            }
        }
        if !(0.0..1.0).contains(&(self.lora.dropout as f64)) {
            return bad("LoRA dropout must be within 0..1");
        }
        if let Some(e) = &self.ema {
            if !(0.0..1.0).contains(&e.decay) || e.every == 0 {
                return bad("EMA decay must be within 0..1 and its period at least 1");
            }
        }
        if self.family == Family::Midi && self.precision != Precision::F32 {
            return bad("a Music Transformer trains in f32 (--dtype f32)");
        }
        if !(self.loss_scale.init.is_finite() && self.loss_scale.init >= 1.0)
            || self.loss_scale.growth_interval == 0
        {
            return bad("the loss scale must start at 1 or more and grow every 1 or more steps");
        }
        if self.family == Family::Midi && self.mode == Mode::Scratch {
            crate::models::music_transformer::MusicTransformerConfig::preset(&self.midi.preset)?;
        }
        if self.family == Family::Midi && self.mode != Mode::Scratch && self.model.trim().is_empty()
        {
            return bad("a MIDI run in this mode continues from a model: name its folder or run");
        }
        if self.scratch.num_attention_heads == 0
            || !self
                .scratch
                .hidden_size
                .is_multiple_of(self.scratch.num_attention_heads)
        {
            return bad("scratch hidden size must be a multiple of the number of heads");
        }
        // A pretrained MusicGen is always `delay`, and a run being fine-tuned keeps the pattern
        // it was trained with: only a new (scratch) LM chooses its own.
        if self.scratch.pattern != CodebookPattern::Delay
            && (self.family != Family::Musicgen || self.mode != Mode::Scratch)
        {
            return Err(Error::InvalidRequest(format!(
                "the {} codebook pattern applies to a MusicGen LM trained from scratch \
                 (--mode scratch) only: fine-tuning keeps the base model's own pattern \
                 (delay for a pretrained MusicGen)",
                self.scratch.pattern.name()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_are_the_serde_names() {
        for m in Mode::ALL {
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                format!("\"{}\"", m.name())
            );
            assert_eq!(m.name().parse::<Mode>().unwrap(), m);
        }
        assert!("partial".parse::<Mode>().is_err());
    }

    #[test]
    fn config_round_trips_and_validates() {
        let c = TrainConfig {
            mode: Mode::Lora,
            ..Default::default()
        };
        assert_eq!(c.peak_lr(), 2e-4);
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<TrainConfig>(&j).unwrap(), c);
        let bad = TrainConfig {
            word_dropout: 1.5,
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("word_dropout"));
    }

    #[test]
    fn only_a_scratch_lm_chooses_its_codebook_pattern() {
        for pattern in [CodebookPattern::Parallel, CodebookPattern::Flatten] {
            let scratch = ScratchConfig {
                pattern,
                ..Default::default()
            };
            let ok = TrainConfig {
                mode: Mode::Scratch,
                scratch: scratch.clone(),
                ..Default::default()
            };
            ok.validate().unwrap();
            for mode in [Mode::Full, Mode::Lora, Mode::Head] {
                let c = TrainConfig {
                    mode,
                    scratch: scratch.clone(),
                    ..Default::default()
                };
                let e = c.validate().unwrap_err().to_string();
                assert!(e.contains("scratch") && e.contains("pattern"), "{e}");
            }
        }
        let j = r#"{"scratch": {"pattern": "flatten"}, "mode": "scratch"}"#;
        let c: TrainConfig = serde_json::from_str(j).unwrap();
        assert_eq!(c.scratch.pattern, CodebookPattern::Flatten);
    }
}
