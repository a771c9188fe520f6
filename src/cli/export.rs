//! `tunelab export R --format hf|peft|audiocraft --out DIR`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::train::export::{export_run, ExportFormat};

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
}

impl ExportArgs {
    pub fn run(&self) -> anyhow::Result<()> {
        export_run(
            &self.run,
            self.checkpoint.as_deref(),
            self.format,
            &self.out,
        )
        .with_context(|| format!("exporting {} as {:?}", self.run.display(), self.format))?;
        println!("exported {} to {}", self.run.display(), self.out.display());
        Ok(())
    }
}
