//! `tunelab eval --model M [--model M2 …] --dataset D [--split test]`: held-out CE/perplexity,
//! FAD/FAD∞/KAD on EnCodec latents, log-mel distance and a memorisation check for each model
//! (a Hub id, a local HF folder or a tunelab run), as a table and optionally JSON.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::data::dataset::Split;
use crate::eval::report::{evaluate_spec, EvalOptions, EvalReport, LATENT_CAVEAT};

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
    /// Write the report as JSON here (a listening session's `metrics.json` puts the numbers
    /// beside its votes).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// A LAION-CLAP folder (HF layout: config.json, model.safetensors, tokenizer.json,
    /// preprocessor_config.json) for the prompt–clip CLAP score; none ships with tunelab.
    #[arg(long)]
    pub clap: Option<PathBuf>,
    #[command(flatten)]
    pub device: super::device::DeviceArgs,
}

impl EvalArgs {
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
            clap: self.clap.clone(),
            ..Default::default()
        };
        let opened = self.device.open()?;
        let (device, precision) = (&opened.device, opened.precision);
        let mut models = Vec::new();
        for (i, spec) in self.models.iter().enumerate() {
            let adapter = self
                .adapter
                .as_deref()
                .filter(|_| i + 1 == self.models.len());
            eprintln!("evaluating {spec}…");
            let r = evaluate_spec(
                spec,
                adapter,
                &self.dataset,
                &opts,
                device,
                precision,
                &mut |s| eprintln!("  {s}"),
            )
            .with_context(|| format!("evaluating {spec}"))?;
            models.push(r);
        }
        let report = EvalReport {
            dataset: self.dataset.display().to_string(),
            split,
            options: opts,
            models,
            caveat: LATENT_CAVEAT.into(),
        };
        print!("{}", report_table(&report));
        if let Some(p) = &self.json {
            report
                .save(p)
                .with_context(|| format!("writing {}", p.display()))?;
        }
        Ok(())
    }
}

/// The report as a text table: held-out loss for every model, and the generated-audio metrics
/// for the models that have them (MusicGen).
pub fn report_table(report: &EvalReport) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<40} {:>8} {:>9} {:>9} {:>8}",
        "model", "CE", "PPL", "tokens", "eval s"
    );
    for m in &report.models {
        let _ = writeln!(
            t,
            "{:<40} {:>8.4} {:>9.2} {:>9} {:>8.2}",
            m.model, m.held_out.ce, m.held_out.ppl, m.held_out.tokens, m.eval_seconds
        );
        if m.held_out.ce_q.len() > 1 {
            let q: Vec<f64> = m
                .held_out
                .ce_q
                .iter()
                .map(|c| (c * 1000.0).round() / 1000.0)
                .collect();
            let _ = writeln!(t, "{:<40} per codebook CE {q:?}", "");
        }
    }
    if report.models.iter().any(|m| m.generated.is_some()) {
        let _ = writeln!(
            t,
            "\n{:<40} {:>22} {:>15} {:>22} {:>8} {:>6}",
            "generated clips", "FAD [95% CI]", "FAD∞ (r²)", "KAD×1000 [CI]", "mel MSE", "copies"
        );
        for m in &report.models {
            let Some(g) = &m.generated else { continue };
            let _ = writeln!(
                t,
                "{:<40} {:>8.3} [{:.3}, {:.3}] {:>8.3} ({:.2}) {:>6.3} [{:.3}, {:.3}] {:>8.4} {:>6}",
                m.model,
                g.fad.estimate,
                g.fad.lower,
                g.fad.upper,
                g.fad_inf.intercept,
                g.fad_inf.r2,
                g.kad.kad.scaled,
                g.kad.ci_scaled.lower,
                g.kad.ci_scaled.upper,
                g.mean_log_mel_mse,
                g.copies.len(),
            );
            if let Some(c) = &g.clap {
                let _ = writeln!(
                    t,
                    "{:<40} CLAP score {:.4} (mean prompt–clip cosine over {} clips)",
                    "",
                    c.mean,
                    c.clips.len()
                );
            }
            let _ = writeln!(
                t,
                "{:<40} {} generated frames ({:.1} s) vs {} reference frames ({:.1} s) · generation {:.1} s",
                "",
                g.generated_frames,
                g.generated_seconds,
                g.reference_frames,
                g.reference_seconds,
                g.generation_seconds
            );
        }
        let _ = writeln!(t, "{LATENT_CAVEAT}");
    } else {
        let _ = writeln!(
            t,
            "Held-out loss only: {} has no generated-audio metrics (MIDI pieces are judged by ear \
             and by loss).",
            report.dataset
        );
    }
    t
}
