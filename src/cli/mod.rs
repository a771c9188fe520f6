//! The headless CLI, on the same engine as the studio. One file per subcommand.

pub mod bench;
pub mod bench_eval;
pub mod bench_train;
pub mod dataset;
pub mod demo;
pub mod eval;
pub mod export;
pub mod generate;
pub mod listen;
pub mod models;
pub mod reference;
pub mod train;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tunelab",
    version,
    about = "Fine-tune music generation models and prove the result by ear."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Commands>,
    /// Without a subcommand the studio opens; this picks its tab (models, generate, dataset,
    /// train, listen).
    #[arg(long)]
    pub tab: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Generate a clip from a text prompt (and optionally an audio prompt to continue).
    Generate(generate::GenerateArgs),
    /// Datasets: import a folder of audio.
    #[command(subcommand)]
    Dataset(dataset::DatasetCommand),
    /// Fine-tune (full, LoRA, head) or train from scratch on a dataset; or resume a run.
    Train(Box<train::TrainArgs>),
    /// Objective evaluation: held-out CE, FAD/FAD∞/KAD on EnCodec latents, mel distance,
    /// memorisation, for one or more models on a dataset split.
    Eval(Box<eval::EvalArgs>),
    /// Blind A/B listening sessions: prepare one, or score logs.
    #[command(subcommand)]
    Listen(listen::ListenCommand),
    /// Export a training run: a full HF folder, a PEFT adapter, or audiocraft names.
    Export(export::ExportArgs),
    /// List MusicGen models found in the Hugging Face cache.
    Models(models::ModelsArgs),
    /// Make the offline MIDI demo ready (import its datasets) and print where it is.
    Demo(demo::DemoArgs),
    /// Benchmarks that print numbers (speed, memory).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

impl Commands {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Generate(a) => a.run(),
            Self::Models(a) => a.run(),
            Self::Dataset(d) => d.run(),
            Self::Bench(b) => b.run(),
            Self::Train(a) => a.run(),
            Self::Export(a) => a.run(),
            Self::Eval(a) => a.run(),
            Self::Listen(a) => a.run(),
            Self::Demo(a) => a.run(),
        }
    }
}
