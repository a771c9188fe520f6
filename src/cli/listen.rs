//! `tunelab listen new …` prepares a blind A/B session (same prompts and seeds for both models,
//! loudness-matched clips, trials fixed in advance); `tunelab listen results LOG…` scores one or
//! more sessions (pooled) and exports CSV/JSON with full provenance.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::eval::listen::prepare::{contender, prepare_session, SessionPlan};
use crate::eval::listen::stats::{min_wins_for_significance, power_votes, TiePolicy};
use crate::eval::listen::{answers_to_csv, pool, results_to_csv, ResultsOptions, SessionLog};
use crate::eval::report::EvalReport;
use crate::eval::verdict::{export_json, metrics_path, table, verdict};

#[derive(Debug, Subcommand)]
pub enum ListenCommand {
    /// Generate and loudness-match the clips of a blind A/B session between two models.
    New(NewArgs),
    /// Score one or more session logs (pooled) and export the results.
    Results(ResultsArgs),
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// Model A (e.g. the baseline): Hub id, local folder or training run.
    #[arg(long)]
    pub model_a: String,
    /// Model B (e.g. the fine-tune).
    #[arg(long)]
    pub model_b: String,
    /// A prompt (repeat), or use --prompts-file. For Music Transformers a prompt is `improv`
    /// or a MIDI file whose first `--prime-seconds` both models continue.
    #[arg(long = "prompt")]
    pub prompts: Vec<String>,
    /// MIDI: seconds of each prime file that the pieces continue.
    #[arg(long, default_value_t = 5.0)]
    pub prime_seconds: f64,
    /// MIDI: the SoundFont (.sf2) both models' pieces are rendered with (default: the first
    /// installed).
    #[arg(long)]
    pub soundfont: Option<PathBuf>,
    /// One prompt per line.
    #[arg(long)]
    pub prompts_file: Option<PathBuf>,
    /// Seeds per prompt (clips per prompt).
    #[arg(long, default_value_t = 2)]
    pub clips_per_prompt: usize,
    #[arg(long, default_value_t = 8.0)]
    pub seconds: f64,
    /// Scored trials per rater, fixed now (see the power hint).
    #[arg(long, default_value_t = 20)]
    pub trials: usize,
    #[arg(long)]
    pub abx: bool,
    /// A catch trial (identical clips) after every N scored trials (0 = none).
    #[arg(long, default_value_t = 0)]
    pub catch_every: usize,
    #[arg(long, default_value_t = -23.0)]
    pub target_lufs: f64,
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: super::device::DeviceArgs,
}

#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// Session logs (session.jsonl) to pool.
    #[arg(required = true)]
    pub logs: Vec<PathBuf>,
    /// Count "no preference" as half a win each instead of excluding it.
    #[arg(long)]
    pub split_ties: bool,
    #[arg(long)]
    pub csv: Option<PathBuf>,
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The objective report shown beside the votes (default: `metrics.json` beside the first
    /// log, if there; write one with `tunelab eval … --json <session>/metrics.json`).
    #[arg(long)]
    pub metrics: Option<PathBuf>,
}

impl ListenCommand {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Self::New(a) => a.run(),
            Self::Results(a) => a.run(),
        }
    }
}

impl NewArgs {
    fn run(self) -> anyhow::Result<()> {
        let mut prompts = self.prompts.clone();
        if let Some(f) = &self.prompts_file {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            prompts.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from),
            );
        }
        let plan = SessionPlan {
            prompts,
            seeds: (0..self.clips_per_prompt as u64).collect(),
            seconds: self.seconds,
            trials: self.trials,
            abx: self.abx,
            catch_every: self.catch_every,
            target_lufs: self.target_lufs,
            ..Default::default()
        };
        let id = format!(
            "{}-{}",
            self.out
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        );
        let opened = self.device.open()?;
        let log = prepare_session(
            &self.out,
            &id,
            &plan,
            contender(
                "A",
                &self.model_a,
                self.prime_seconds,
                self.soundfont.clone(),
                &opened.device,
                opened.precision,
            )?,
            contender(
                "B",
                &self.model_b,
                self.prime_seconds,
                self.soundfont.clone(),
                &opened.device,
                opened.precision,
            )?,
            &mut |s| eprintln!("{s}"),
        )?;
        let need = min_wins_for_significance(self.trials as u64, 0.05);
        println!("session ready: {}", log.display());
        println!(
            "{} scored trials per rater{}; detecting a true 65 % preference with 80 % power needs ≈ {} votes in total",
            self.trials,
            need.map(|k| format!(" (B must win ≥ {k} of {} for p < 0.05 with one rater)", self.trials))
                .unwrap_or_default(),
            power_votes(0.65, 0.05, 0.8).map(|n| n.to_string()).unwrap_or_else(|| "?".into())
        );
        Ok(())
    }
}

impl ResultsArgs {
    fn run(self) -> anyhow::Result<()> {
        let logs = self
            .logs
            .iter()
            .map(|p| SessionLog::open(p).with_context(|| format!("opening {}", p.display())))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let opts = ResultsOptions {
            tie_policy: if self.split_ties {
                TiePolicy::Split
            } else {
                TiePolicy::Exclude
            },
            ..Default::default()
        };
        let r = pool(&logs, &opts)?;
        let metrics_file = match &self.metrics {
            Some(p) => Some(p.clone()),
            None => Some(metrics_path(&self.logs[0])).filter(|p| p.exists()),
        };
        let report = metrics_file
            .map(|p| EvalReport::load(&p).with_context(|| format!("reading {}", p.display())))
            .transpose()?;
        print!("{}", table(&verdict(&r, report.as_ref())));
        if let Some(b) = &r.bootstrap {
            println!(
                "cluster bootstrap over raters and prompts ({} replicates, seed {}): B's share {:.3}, {:.3}",
                b.iters, b.seed, b.mean, b.interval
            );
        }
        if let Some(a) = &r.abx {
            println!("ABX: {a:?}");
        }
        println!(
            "catch trials failed: {} of {}",
            r.catch_failures, r.catch_trials
        );
        for p in &r.per_prompt {
            println!("  prompt {p:?}");
        }
        for p in &r.per_rater {
            println!("  rater {p:?}");
        }
        if let Some(p) = &self.csv {
            let text = results_to_csv(&r) + "\n" + &answers_to_csv(&logs);
            crate::util::atomic_write(p, text.as_bytes())?;
        }
        if let Some(p) = &self.json {
            crate::util::atomic_write(p, export_json(&logs, &r, report.as_ref())?.as_bytes())?;
        }
        Ok(())
    }
}
