//! `tunelab train --dataset D --model M --mode full|lora|head|scratch --steps N --run R`,
//! `tunelab train --family midi --dataset D --mode scratch --preset small --run R` (a Music
//! Transformer; `--model` names the model or run to continue from in the other modes) and
//! `tunelab train --resume R`, with a progress bar (step, loss, it/s, ETA).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::models::device::Precision;
use crate::models::lora::LoraTarget;
use crate::models::Family;
use crate::store::run_config::{EmaConfig, Mode, TrainConfig};
use crate::train::events::{Control, Observer, TrainEvent};
use crate::train::trainer::Trainer;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Continue the run in this folder from its last checkpoint (other options are ignored:
    /// the run's config.json rules).
    #[arg(long, conflicts_with_all = ["dataset", "model", "run"])]
    pub resume: Option<PathBuf>,
    /// Dataset folder (from `tunelab dataset import`).
    #[arg(long, required_unless_present = "resume")]
    pub dataset: Option<PathBuf>,
    /// Base model: a Hugging Face repo id or a local folder (MIDI: a Music Transformer folder
    /// or run to continue from; not needed for `--mode scratch`).
    #[arg(long)]
    pub model: Option<String>,
    /// musicgen (text → audio) or midi (Music Transformer on MIDI events).
    #[arg(long, default_value = "musicgen")]
    pub family: Family,
    /// MIDI `scratch` size: tiny, small or base.
    #[arg(long, default_value = "small")]
    pub preset: String,
    /// MIDI: longest training window in events (default: the model's window).
    #[arg(long)]
    pub max_events: Option<usize>,
    /// MIDI: random transposition of each excerpt within ± this many semitones.
    #[arg(long, default_value_t = 3)]
    pub transpose: u8,
    /// Folder of the new run.
    #[arg(long, required_unless_present = "resume")]
    pub run: Option<PathBuf>,
    #[arg(long, default_value = "full")]
    pub mode: Mode,
    #[arg(long, default_value_t = 1000)]
    pub steps: usize,
    #[arg(long, default_value_t = 2)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Longest training excerpt in seconds (longer segments are randomly cropped).
    #[arg(long, default_value_t = 10.0)]
    pub max_seconds: f64,
    /// Peak learning rate (default 1e-4; 2e-4 for LoRA).
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    #[arg(long, default_value_t = 0.1)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// Keep an EMA of the weights with this decay (used for eval and export).
    #[arg(long)]
    pub ema: Option<f64>,
    #[arg(long, default_value_t = 10)]
    pub ema_every: usize,
    #[arg(long, default_value_t = 16)]
    pub lora_rank: usize,
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f64,
    #[arg(long, default_value_t = 0.05)]
    pub lora_dropout: f32,
    /// Comma-separated: self_attn, cross_attn, ffn, lm_heads, enc_to_dec_proj.
    #[arg(long, default_value = "self_attn")]
    pub lora_targets: String,
    /// `head` mode: also train the last N decoder layers.
    #[arg(long, default_value_t = 0)]
    pub head_layers: usize,
    /// `scratch` mode size: hidden, layers, heads (ffn = 4 × hidden).
    #[arg(long, default_value_t = 256)]
    pub scratch_hidden: usize,
    #[arg(long, default_value_t = 4)]
    pub scratch_layers: usize,
    #[arg(long, default_value_t = 4)]
    pub scratch_heads: usize,
    /// `scratch` mode codebook interleaving: delay (MusicGen's), parallel or flatten (one
    /// codebook per decoder step, K× longer sequences).
    #[arg(long, default_value = "delay")]
    pub pattern: crate::models::musicgen::patterns::CodebookPattern,
    #[arg(long, default_value_t = 0.3)]
    pub condition_dropout: f64,
    #[arg(long, default_value_t = 0.3)]
    pub word_dropout: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 100)]
    pub eval_every: usize,
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: usize,
    #[arg(long, default_value_t = 50)]
    pub save_every: usize,
    /// Generate this prompt at every kept checkpoint (previews/step-N.wav).
    #[arg(long)]
    pub preview_prompt: Option<String>,
    /// Print one JSON line per step instead of a progress bar.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: super::device::DeviceArgs,
}

impl TrainArgs {
    fn config(&self) -> anyhow::Result<TrainConfig> {
        let Some(dataset) = &self.dataset else {
            bail!("--dataset is required for a new run");
        };
        let model = match (&self.model, self.family, self.mode) {
            (Some(m), _, _) => m.clone(),
            (None, Family::Midi, Mode::Scratch) => String::new(),
            (None, Family::Midi, _) => {
                bail!("--model (the Music Transformer or MIDI run to continue from) is required for --mode {:?}", self.mode)
            }
            (None, Family::Musicgen, _) => bail!("--model is required for a new run"),
        };
        let targets = self
            .lora_targets
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.parse::<LoraTarget>())
            .collect::<Result<Vec<_>, _>>()?;
        let mut cfg = TrainConfig {
            dataset: dataset.clone(),
            model,
            family: self.family,
            mode: self.mode,
            steps: self.steps,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            max_seconds: self.max_seconds,
            lr: self.lr,
            warmup_steps: self.warmup,
            weight_decay: self.weight_decay,
            clip_grad_norm: self.clip,
            ema: self.ema.map(|decay| EmaConfig {
                decay,
                every: self.ema_every,
            }),
            head_layers: self.head_layers,
            condition_dropout: self.condition_dropout,
            word_dropout: self.word_dropout,
            seed: self.seed,
            eval_every: self.eval_every,
            checkpoint_every: self.checkpoint_every,
            save_every: self.save_every,
            preview_prompt: self.preview_prompt.clone(),
            ..Default::default()
        };
        cfg.lora.r = self.lora_rank;
        cfg.lora.alpha = self.lora_alpha;
        cfg.lora.dropout = self.lora_dropout;
        cfg.lora.targets = targets;
        cfg.scratch.hidden_size = self.scratch_hidden;
        cfg.scratch.num_hidden_layers = self.scratch_layers;
        cfg.scratch.num_attention_heads = self.scratch_heads;
        cfg.scratch.ffn_dim = 4 * self.scratch_hidden;
        cfg.scratch.pattern = self.pattern;
        cfg.midi.preset = self.preset.clone();
        cfg.midi.max_events = self.max_events;
        cfg.midi.transpose = self.transpose;
        Ok(cfg)
    }

    pub fn run(&self) -> anyhow::Result<()> {
        let (device, info) = crate::models::device::open(self.device.device)?;
        crate::models::device::set_tf32(self.device.tf32);
        let mut say = |s: &str| eprintln!("{s}…");
        let mut trainer = match &self.resume {
            Some(dir) => {
                eprintln!("device: {info} (the run's precision: see its config.json)");
                Trainer::resume(dir, &device, &mut say)
                    .with_context(|| format!("resuming the run in {}", dir.display()))?
            }
            None => {
                let mut cfg = self.config()?;
                // Mixed precision by default where it pays (a GPU); a Music Transformer is f32.
                cfg.precision = match self.device.precision {
                    Some(p) => p,
                    None if cfg.family == Family::Midi => Precision::F32,
                    None => info.default_precision(),
                };
                if !info.supports(cfg.precision) {
                    anyhow::bail!("{info} cannot train in {}", cfg.precision);
                }
                eprintln!("device: {info} · {}", cfg.precision);
                let run = self.run.clone().unwrap_or_default();
                Trainer::create(cfg, &run, &device, &mut say)
                    .with_context(|| format!("starting a run in {}", run.display()))?
            }
        };
        let mut printer = Printer::new(self.json, trainer.cfg.steps as u64, trainer.step() as u64);
        let summary = trainer.run(&mut printer)?;
        printer.bar.finish_and_clear();
        println!(
            "{} at step {} · run {}{}",
            if summary.finished {
                "finished"
            } else {
                "stopped"
            },
            summary.step,
            summary.run_dir.display(),
            summary
                .best_valid_ce
                .map(|c| format!(" · best valid ce {c:.4}"))
                .unwrap_or_default()
        );
        Ok(())
    }
}

struct Printer {
    json: bool,
    bar: ProgressBar,
}

impl Printer {
    fn new(json: bool, total: u64, done: u64) -> Self {
        let bar = if json {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps · {msg} · {per_sec} · ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(done);
        Self { json, bar }
    }
}

impl Observer for Printer {
    fn event(&mut self, e: &TrainEvent) {
        match e {
            TrainEvent::Step(m) => {
                if self.json {
                    if let Ok(s) = serde_json::to_string(m) {
                        println!("{s}");
                    }
                }
                self.bar.set_position(m.step as u64);
                self.bar.set_message(format!(
                    "loss {:.4} · lr {:.2e} · {:.0} tok/s",
                    m.ce, m.lr, m.tokens_per_s
                ));
            }
            TrainEvent::Valid(v) => self.bar.println(format!(
                "step {}: valid ce {:.4} (ppl {:.1})",
                v.step, v.ce, v.ppl
            )),
            TrainEvent::Skipped { step, reason } => {
                self.bar.println(format!("step {step} skipped: {reason}"))
            }
            TrainEvent::Preview { path, .. } => {
                self.bar.println(format!("preview {}", path.display()))
            }
            TrainEvent::Started { .. } | TrainEvent::Checkpoint { .. } => {}
        }
    }

    fn control(&mut self) -> Control {
        Control::Continue
    }
}
