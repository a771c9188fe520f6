//! `tunelab dataset import <audio-dir> --out <dataset-dir>`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::data::dataset::ImportOptions;
use crate::data::import::import_dir;

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Decode a folder of audio (WAV/FLAC/MP3/OGG) into a dataset: segments, splits by track,
    /// audiocraft-compatible data.jsonl, and a report of files that could not be read.
    Import(ImportArgs),
    /// Encode every segment with the model's EnCodec into the dataset's token cache (segments
    /// already cached for this codec and content are skipped).
    Encode(EncodeArgs),
}

#[derive(Debug, Args)]
pub struct EncodeArgs {
    pub dataset: PathBuf,
    /// A Hugging Face repo id or a local model directory (its codec is used).
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub device: super::device::DeviceArgs,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    pub audio_dir: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    /// Segment length in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub segment_seconds: f64,
    /// Keep a file's last partial segment if it is at least this fraction of a segment.
    #[arg(long, default_value_t = 0.8)]
    pub min_segment_ratio: f64,
    /// Train and validation shares (the rest is test), assigned per track.
    #[arg(long, default_value_t = 0.8)]
    pub train: f64,
    #[arg(long, default_value_t = 0.1)]
    pub valid: f64,
    /// Do not estimate tempo and key where the metadata lacks them.
    #[arg(long)]
    pub no_auto_labels: bool,
}

impl DatasetCommand {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Import(a) => {
                let opts = ImportOptions {
                    segment_seconds: a.segment_seconds,
                    min_segment_ratio: a.min_segment_ratio,
                    train: a.train,
                    valid: a.valid,
                    auto_label: !a.no_auto_labels,
                };
                let r = import_dir(&a.audio_dir, &a.out, &opts)
                    .with_context(|| format!("importing {}", a.audio_dir.display()))?;
                println!(
                    "imported {} files ({:.1} min, {} segments) into {}",
                    r.imported.len(),
                    r.seconds / 60.0,
                    r.segments,
                    a.out.display()
                );
                for (p, e) in &r.failed {
                    println!("  skipped {}: {e}", p.display());
                }
                Ok(())
            }
            Self::Encode(a) => {
                let spec = crate::store::ModelSpec::resolve(&a.model)
                    .with_context(|| format!("finding model {}", a.model))?;
                let opened = a.device.open()?;
                let model = spec
                    .load(&opened.device, Default::default(), &mut |_| {})
                    .and_then(|m| m.into_musicgen(&spec))
                    .with_context(|| format!("loading {spec}"))?;
                let t = std::time::Instant::now();
                let r = crate::data::token_cache::encode_dataset(&a.dataset, &model)
                    .with_context(|| format!("encoding {}", a.dataset.display()))?;
                println!(
                    "encoded {} segments, {} already cached, in {:.1} s",
                    r.encoded,
                    r.cached,
                    t.elapsed().as_secs_f64()
                );
                for (id, e) in &r.failed {
                    println!("  failed {id}: {e}");
                }
                Ok(())
            }
        }
    }
}
