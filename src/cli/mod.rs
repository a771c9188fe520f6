//! The headless CLI, on the same engine as the studio. One file per subcommand.
//!
//! The CLI never imports the studio's module (both are edges, and the CLI also builds without
//! the `gui` feature): what it needs of the studio (open it, benchmark it) it asks of a
//! [`Studio`] that the binary's composition root, `main.rs`, passes in. `main.rs` also gives
//! `--tab` its possible values from `ui::Tab`, the one place the tab names live.

pub mod bench;
pub mod bench_eval;
pub mod bench_kernels;
pub mod bench_train;
pub mod dataset;
pub mod demo;
pub mod device;
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
    /// Without a subcommand the studio opens, on this tab.
    #[arg(long)]
    pub tab: Option<String>,
    /// Without a subcommand: open the studio on this listening session (a `session.jsonl`
    /// made by `tunelab listen new`), ready to rate (the Listen tab).
    #[arg(long, conflicts_with = "tab")]
    pub session: Option<std::path::PathBuf>,
    /// With `--session`: the rater's name (answers are kept per rater); without it the
    /// studio asks.
    #[arg(long, requires = "session")]
    pub rater: Option<String>,
}

/// How the studio is asked to open (the command line without a subcommand).
#[derive(Debug, Clone, Copy, Default)]
pub struct Opening<'a> {
    /// A `--tab` value.
    pub tab: Option<&'a str>,
    /// A listening session to rate (`--session`), and who rates it (`--rater`).
    pub session: Option<&'a std::path::Path>,
    pub rater: Option<&'a str>,
}

impl Cli {
    /// Runs the subcommand, or without one opens the studio.
    pub fn run(self, studio: &dyn Studio) -> anyhow::Result<()> {
        match self.command {
            Some(cmd) => cmd.run(studio),
            None => studio.open(Opening {
                tab: self.tab.as_deref(),
                session: self.session.as_deref(),
                rater: self.rater.as_deref(),
            }),
        }
    }
}

/// What the CLI asks of the studio, provided by `main.rs` (the real one with feature `gui`,
/// else [`NoStudio`]).
pub trait Studio {
    /// Opens the studio window: on a tab, or on a listening session to rate.
    fn open(&self, how: Opening<'_>) -> anyhow::Result<()>;
    /// `tunelab bench ui`: the headless studio's frame times.
    fn bench(&self, args: &bench::BenchUiArgs) -> anyhow::Result<()>;
}

/// A build without the studio (no `gui` feature): says so.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoStudio;

impl Studio for NoStudio {
    fn open(&self, _how: Opening<'_>) -> anyhow::Result<()> {
        anyhow::bail!(
            "this build has no studio (built without the `gui` feature); see `tunelab --help`"
        )
    }
    fn bench(&self, _args: &bench::BenchUiArgs) -> anyhow::Result<()> {
        anyhow::bail!("this build has no studio (built without the `gui` feature)")
    }
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
    pub fn run(self, studio: &dyn Studio) -> anyhow::Result<()> {
        match self {
            Self::Generate(a) => a.run(),
            Self::Models(a) => a.run(),
            Self::Dataset(d) => d.run(),
            Self::Bench(b) => b.run(studio),
            Self::Train(a) => a.run(),
            Self::Export(a) => a.run(),
            Self::Eval(a) => a.run(),
            Self::Listen(a) => a.run(),
            Self::Demo(a) => a.run(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Records what the CLI asked of the studio.
    #[derive(Default)]
    struct Recorder(RefCell<Vec<String>>);

    impl Studio for Recorder {
        fn open(&self, how: Opening<'_>) -> anyhow::Result<()> {
            self.0.borrow_mut().push(match how.session {
                Some(s) => format!("open session {} by {:?}", s.display(), how.rater),
                None => format!("open {:?}", how.tab),
            });
            Ok(())
        }
        fn bench(&self, a: &bench::BenchUiArgs) -> anyhow::Result<()> {
            self.0
                .borrow_mut()
                .push(format!("bench {} {} {}", a.steps, a.seconds, a.json));
            Ok(())
        }
    }

    #[test]
    fn the_studio_and_its_benchmark_go_through_the_studio_given() {
        let r = Recorder::default();
        Cli::try_parse_from(["tunelab", "--tab", "listen"])
            .unwrap()
            .run(&r)
            .unwrap();
        Cli::try_parse_from(["tunelab"]).unwrap().run(&r).unwrap();
        Cli::try_parse_from(["tunelab", "--session", "s/session.jsonl", "--rater", "ana"])
            .unwrap()
            .run(&r)
            .unwrap();
        assert!(
            Cli::try_parse_from(["tunelab", "--session", "s.jsonl", "--tab", "train"]).is_err(),
            "a session opens on the Listen tab"
        );
        assert!(
            Cli::try_parse_from(["tunelab", "--rater", "ana"]).is_err(),
            "a rater rates a session"
        );
        Cli::try_parse_from(["tunelab", "bench", "ui", "--steps", "3", "--json"])
            .unwrap()
            .run(&r)
            .unwrap();
        assert_eq!(
            r.0.borrow().as_slice(),
            [
                "open Some(\"listen\")",
                "open None",
                "open session s/session.jsonl by Some(\"ana\")",
                "bench 3 5 true"
            ]
        );
        let e = Cli::try_parse_from(["tunelab"])
            .unwrap()
            .run(&NoStudio)
            .unwrap_err();
        assert!(e.to_string().contains("no studio"), "{e}");
    }
}
