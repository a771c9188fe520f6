//! `tunelab eval --model M [--model M2 …] --dataset D [--split test]`: held-out CE/perplexity,
//! FAD/FAD∞/KAD on EnCodec latents, log-mel distance and a memorisation check for each model
//! (a Hub id, a local HF folder or a tunelab run), as a table and optionally JSON.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::data::dataset::Split;
use crate::eval::report::{evaluate, EvalOptions, EvalReport, LATENT_CAVEAT};
use crate::models::nn::WeightMode;
use crate::train::export::{apply_adapter, is_run_dir, load_run_model};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Models to compare (repeat): Hub id, local folder, or training run.
    #[arg(long = "model", required = true)]
    pub models: Vec<String>,
    /// A LoRA adapter (PEFT folder or run) applied to the last --model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    #[arg(long)]
    pub dataset: PathBuf,
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Clips generated per model (from the split's captions, seeds seed..seed+N).
    #[arg(long, default_value_t = 8)]
    pub clips: usize,
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// A Music Transformer's held-out cross-entropy on a MIDI dataset split.
#[derive(Debug, Clone, serde::Serialize)]
struct MidiHeldOut {
    model: String,
    dataset: String,
    split: Split,
    pieces: usize,
    ce: f64,
    ppl: f64,
    tokens: usize,
    seconds: f64,
}

impl EvalArgs {
    /// MIDI datasets: held-out CE / PPL over every event of the split's pieces (windows of the
    /// model's length); generation metrics are audio-only.
    fn midi(&self, split: Split) -> anyhow::Result<()> {
        let device = candle_core::Device::Cpu;
        let pieces: Vec<_> = crate::data::midi_dataset::read_pieces(&self.dataset)?
            .into_iter()
            .filter(|p| p.split == split)
            .collect();
        if pieces.is_empty() {
            anyhow::bail!("{} has no {split:?} piece", self.dataset.display());
        }
        let mut out = Vec::new();
        println!(
            "{:<50} {:>8} {:>9} {:>9} {:>8}",
            "model", "CE", "PPL", "tokens", "s"
        );
        for spec in &self.models {
            let started = std::time::Instant::now();
            let model = crate::train::midi::load_model(spec, &device)
                .with_context(|| format!("loading {spec}"))?;
            let (ce, tokens) = crate::train::midi::cross_entropy(
                &model,
                &pieces,
                model.config().max_position_embeddings,
                8,
                usize::MAX,
            )?;
            let r = MidiHeldOut {
                model: spec.clone(),
                dataset: self.dataset.display().to_string(),
                split,
                pieces: pieces.len(),
                ce,
                ppl: ce.exp(),
                tokens,
                seconds: started.elapsed().as_secs_f64(),
            };
            println!(
                "{:<50} {:>8.4} {:>9.2} {:>9} {:>8.1}",
                r.model, r.ce, r.ppl, r.tokens, r.seconds
            );
            out.push(r);
        }
        if let Some(p) = &self.json {
            crate::util::atomic_write(p, &serde_json::to_vec_pretty(&out)?)
                .with_context(|| format!("writing {}", p.display()))?;
        }
        Ok(())
    }

    pub fn run(&self) -> anyhow::Result<()> {
        let split = match self.split.as_str() {
            "train" => Split::Train,
            "valid" => Split::Valid,
            "test" => Split::Test,
            o => anyhow::bail!("unknown split {o} (train, valid, test)"),
        };
        let opts = EvalOptions {
            split,
            clips: self.clips,
            seconds: self.seconds,
            seed: self.seed,
            ..Default::default()
        };
        if crate::data::midi_dataset::is_midi_dataset(&self.dataset) {
            return self.midi(split);
        }
        let device = candle_core::Device::Cpu;
        let mut models = Vec::new();
        for (i, spec) in self.models.iter().enumerate() {
            let dir = crate::models::hub::resolve_model(spec, &mut |_| {})
                .with_context(|| format!("finding {spec}"))?;
            let mut m = if is_run_dir(&dir) {
                load_run_model(&dir, None, &device, WeightMode::F32)?
            } else {
                crate::models::musicgen::MusicGen::load(&dir, &device, WeightMode::F32)?
            };
            let mut label = spec.clone();
            if i + 1 == self.models.len() {
                if let Some(a) = &self.adapter {
                    apply_adapter(&mut m, a)?;
                    label = format!("{spec} + {}", a.display());
                }
            }
            eprintln!("evaluating {label}…");
            let r = evaluate(&mut m, &label, &self.dataset, &opts, &mut |s| {
                eprintln!("  {s}")
            })
            .with_context(|| format!("evaluating {label}"))?;
            models.push(r);
        }
        let report = EvalReport {
            dataset: self.dataset.display().to_string(),
            split,
            options: opts,
            models,
            caveat: LATENT_CAVEAT.into(),
        };
        println!(
            "{:<40} {:>8} {:>9} {:>22} {:>9} {:>16} {:>8} {:>6} {:>8}",
            "model",
            "CE",
            "PPL",
            "FAD [95% CI]",
            "FAD∞",
            "KAD×1000 [CI]",
            "mel MSE",
            "copies",
            "eval s"
        );
        for m in &report.models {
            println!(
                "{:<40} {:>8.4} {:>9.2} {:>8.3} [{:.3}, {:.3}] {:>9.3} {:>6.3} [{:.3}, {:.3}] {:>8.4} {:>6} {:>8.2}",
                m.model,
                m.held_out.ce,
                m.held_out.ppl,
                m.fad.estimate,
                m.fad.lower,
                m.fad.upper,
                m.fad_inf.intercept,
                m.kad.kad.scaled,
                m.kad.ci_scaled.lower,
                m.kad.ci_scaled.upper,
                m.mean_log_mel_mse,
                m.copies.len(),
                m.eval_seconds
            );
            println!(
                "{:<40} per codebook CE {:?} · {} tokens · {} generated frames ({:.1} s) vs {} reference frames ({:.1} s) · generation {:.1} s",
                "",
                m.held_out.ce_q.iter().map(|c| (c * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
                m.held_out.tokens,
                m.generated_frames,
                m.generated_seconds,
                m.reference_frames,
                m.reference_seconds,
                m.generation_seconds
            );
        }
        println!("{LATENT_CAVEAT}");
        if let Some(p) = &self.json {
            crate::util::atomic_write(p, &serde_json::to_vec_pretty(&report)?)
                .with_context(|| format!("writing {}", p.display()))?;
        }
        Ok(())
    }
}
