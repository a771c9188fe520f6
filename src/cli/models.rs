//! `tunelab models`: MusicGen checkpoints in the Hugging Face cache.

use clap::Args;

use crate::models::hub;

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// List every cached model, not only MusicGen.
    #[arg(long)]
    pub all: bool,
}

impl ModelsArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let models = hub::cached_models(self.all);
        if models.is_empty() {
            println!(
                "no models in {} (download one with `tunelab generate --model facebook/musicgen-small …`)",
                hub::cache_dir().display()
            );
            return Ok(());
        }
        for m in models {
            println!(
                "{:<40} {:>10.1} MB  {:<18} {}",
                m.repo_id,
                m.size_bytes as f64 / 1e6,
                m.model_type,
                m.dir.display()
            );
        }
        Ok(())
    }
}
