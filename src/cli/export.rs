//! `tunelab export R --format hf|peft|audiocraft --out DIR` (a MIDI run: `--format hf`, a
//! Music Transformer folder, optionally `--f16`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::train::export::{export_run_as, ExportFormat};

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The training run folder.
    pub run: PathBuf,
    /// hf (full HF folder; LoRA merged), peft (adapter only), audiocraft (LM state dict).
    #[arg(long)]
    pub format: ExportFormat,
    /// Which checkpoint: last (default), best, or step-NNNNNN.
    #[arg(long)]
    pub checkpoint: Option<String>,
    #[arg(long)]
    pub out: PathBuf,
    /// Store the weights in f16 (MIDI model folders; half the size).
    #[arg(long)]
    pub f16: bool,
}

impl ExportArgs {
    pub fn run(&self) -> anyhow::Result<()> {
        let dtype = if self.f16 {
            candle_core::DType::F16
        } else {
            candle_core::DType::F32
        };
        export_run_as(
            &self.run,
            self.checkpoint.as_deref(),
            self.format,
            &self.out,
            dtype,
        )
        .with_context(|| format!("exporting {} as {:?}", self.run.display(), self.format))?;
        println!("exported {} to {}", self.run.display(), self.out.display());
        // transformers decodes every MusicGen with the delay pattern and ignores the field.
        let pattern = std::fs::read_to_string(self.out.join("config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["decoder"]["codebook_pattern"].as_str().map(String::from));
        if let Some(p) = pattern.filter(|p| p != "delay") {
            eprintln!(
                "note: this LM uses the {p} codebook pattern (config.json's `codebook_pattern`): \
                 tunelab generates with it, but transformers assumes `delay` and would decode it \
                 wrongly"
            );
        }
        Ok(())
    }
}
