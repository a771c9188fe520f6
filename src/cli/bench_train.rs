//! `tunelab bench train`: seconds per optimizer step and peak RSS for `full` and `lora` (r16 on
//! self-attn q/k/v/out) on the musicgen-small layout with random weights, batch 2 × 10 s, through
//! the real path (safetensors on disk → run → steps). Each mode runs in its own process so its
//! peak RSS is its own. Also measures import + tokenisation throughput (seconds of audio per
//! second). The random layout has no tokenizer, so captions are dropped (the null condition):
//! T5 costs ~0.04 s per caption and its states are cached per caption anyway.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::Device;
use clap::Args;
use serde::{Deserialize, Serialize};

use super::peak_rss_bytes;
use crate::data::audio::write_wav;
use crate::data::dataset::{import_dir, ImportOptions};
use crate::data::token_cache::encode_dataset;
use crate::models::checkpoint::save_tensors;
use crate::models::musicgen::config::{MusicgenConfig, Preset};
use crate::models::musicgen::MusicGen;
use crate::train::config::{Mode, TrainConfig};
use crate::train::lora::{LoraConfig, LoraTarget};
use crate::train::trainer::{TrainEvent, Trainer};

#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    /// full, lora, or both (each in a child process).
    #[arg(long, default_value = "both")]
    pub mode: String,
    /// Optimizer steps to time (the first is reported separately as warm-up).
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// Working folder for the random model and the dataset (reused between runs).
    #[arg(long)]
    pub work: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    /// Also run `tools/bench_train_pytorch.py` (python3 with torch, transformers and peft) for
    /// each mode right after ours, and compare against those numbers instead of the recorded ones.
    #[arg(long)]
    pub pytorch: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ModeReport {
    mode: String,
    threads: usize,
    batch: String,
    trainable_parameters: usize,
    first_step_seconds: f64,
    seconds_per_step: f64,
    tokens_per_second: f64,
    peak_rss_mb: f64,
    pytorch_seconds_per_step: f64,
    pytorch_peak_rss_mb: f64,
    /// "measured in this run" (`--pytorch`) or where the recorded numbers come from.
    pytorch_source: String,
    time_ratio: f64,
    memory_ratio: f64,
    /// Seconds per step in OpenBLAS products (0 without OpenBLAS) and their work, so a report
    /// says how much of a step is matrix products and how fast this CPU ran them.
    #[serde(default)]
    product_seconds_per_step: f64,
    #[serde(default)]
    product_gflop_per_step: f64,
}

/// PyTorch 2.15 / transformers 5.23 on this machine class (shared/FACTS.md §7).
const PYTORCH: [(&str, f64, f64); 2] = [("full", 10.7, 10_200.0), ("lora", 7.3, 6_800.0)];

impl BenchTrainArgs {
    pub fn run(&self) -> anyhow::Result<()> {
        let work = self
            .work
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("tunelab-bench-train"));
        let (model_dir, dataset, import) = prepare(&work)?;
        let modes: Vec<&str> = match self.mode.as_str() {
            "both" => vec!["full", "lora"],
            "full" => vec!["full"],
            "lora" => vec!["lora"],
            o => bail!("unknown mode {o} (full, lora, both)"),
        };
        let mut reports = Vec::new();
        if modes.len() == 1 {
            reports.push(self.run_mode(modes[0], &model_dir, &dataset, &work)?);
        } else {
            for m in modes {
                let exe = std::env::current_exe()?;
                let out = std::process::Command::new(exe)
                    .args(["bench", "train", "--json", "--mode", m, "--steps"])
                    .arg(self.steps.to_string())
                    .arg("--work")
                    .arg(&work)
                    .args(self.pytorch.then_some("--pytorch"))
                    .output()
                    .context("running the benchmark child")?;
                if !out.status.success() {
                    bail!("{m}: {}", String::from_utf8_lossy(&out.stderr));
                }
                let text = String::from_utf8_lossy(&out.stdout);
                let v: serde_json::Value = serde_json::from_str(text.trim())?;
                reports.push(serde_json::from_value(v["modes"][0].clone())?);
            }
        }
        let all = serde_json::json!({"modes": reports, "import": import});
        if self.json {
            println!("{all}");
            return Ok(());
        }
        println!(
            "import + tokenise: {:.1} s of audio in {:.1} s ({:.1}× real time)",
            import.audio_seconds, import.seconds, import.audio_per_second
        );
        for r in &reports {
            println!(
                "{:5} {} · {} trainable · {:.2} s/step (first {:.2}) · {:.0} tok/s · peak {:.0} MB · vs PyTorch {:.2} s, {:.0} MB ({}) → time {:.2}×, memory {:.2}×",
                r.mode,
                r.batch,
                r.trainable_parameters,
                r.seconds_per_step,
                r.first_step_seconds,
                r.tokens_per_second,
                r.peak_rss_mb,
                r.pytorch_seconds_per_step,
                r.pytorch_peak_rss_mb,
                r.pytorch_source,
                r.time_ratio,
                r.memory_ratio
            );
            if r.product_seconds_per_step > 0.0 {
                println!(
                    "      matrix products (OpenBLAS): {:.2} s/step ({:.0} % of the step), {:.0} GFLOP at {:.0} GFLOP/s",
                    r.product_seconds_per_step,
                    100.0 * r.product_seconds_per_step / r.seconds_per_step,
                    r.product_gflop_per_step,
                    r.product_gflop_per_step / r.product_seconds_per_step
                );
            }
        }
        Ok(())
    }

    fn run_mode(
        &self,
        mode: &str,
        model_dir: &Path,
        dataset: &Path,
        work: &Path,
    ) -> anyhow::Result<ModeReport> {
        let run = work.join(format!("run-{mode}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run);
        let cfg = TrainConfig {
            dataset: dataset.to_path_buf(),
            model: model_dir.display().to_string(),
            mode: mode.parse::<Mode>()?,
            steps: self.steps,
            batch_size: 2,
            max_seconds: 10.0,
            warmup_steps: 1,
            condition_dropout: 1.0,
            eval_every: 0,
            save_every: usize::MAX,
            lora: LoraConfig {
                r: 16,
                alpha: 16.0,
                targets: vec![LoraTarget::SelfAttn],
                dropout: 0.0,
            },
            ..Default::default()
        };
        let mut trainer = Trainer::create(cfg, &run, &Device::Cpu, &mut |_| {})?;
        let mut steps = Vec::new();
        let mut products = crate::models::blas::product_totals();
        trainer.run(&mut |e: &TrainEvent| {
            if let TrainEvent::Step(m) = e {
                let now = crate::models::blas::product_totals();
                let (secs, flop) = (now.0 - products.0, now.1 - products.1);
                products = now;
                eprintln!(
                    "step {}: {:.2} s, of which products {:.2} s ({:.0} GFLOP at {:.0} GFLOP/s)",
                    m.step,
                    m.seconds,
                    secs,
                    flop / 1e9,
                    flop / 1e9 / secs.max(1e-9)
                );
                steps.push((m.seconds, m.tokens_per_s, secs, flop));
            }
        })?;
        let peak = peak_rss_bytes().unwrap_or(0) as f64 / 1e6;
        let trainable = trainer.trainable_parameters();
        drop(trainer);
        let _ = std::fs::remove_dir_all(&run);
        let timed = if steps.len() > 1 {
            &steps[1..]
        } else {
            &steps[..]
        };
        let mean = |f: fn(&(f64, f64, f64, f64)) -> f64| {
            timed.iter().map(f).sum::<f64>() / timed.len().max(1) as f64
        };
        let (sps, tps) = (mean(|s| s.0), mean(|s| s.1));
        let (product_s, product_gflop) = (mean(|s| s.2), mean(|s| s.3) / 1e9);
        let (pt_s, pt_mb, source) = if self.pytorch {
            // PyTorch settles over its first steps (measured 13.5, 8.4, 6.8, 7.6, 6.6 s for LoRA).
            let steps = self.steps.max(4).to_string();
            let v = super::bench::run_python_json(
                "bench_train_pytorch.py",
                &["--mode", mode, "--steps", &steps],
            )?;
            let num = |k: &str| v[k].as_f64().context(format!("PyTorch report lacks {k}"));
            (
                num("seconds_per_step")?,
                num("peak_rss_mb")?,
                "measured in this run".to_string(),
            )
        } else {
            let (_, s, mb) =
                PYTORCH
                    .iter()
                    .copied()
                    .find(|p| p.0 == mode)
                    .unwrap_or(("", f64::NAN, f64::NAN));
            (s, mb, "recorded, shared/FACTS.md".to_string())
        };
        Ok(ModeReport {
            mode: mode.into(),
            threads: candle_core::utils::get_num_threads(),
            batch: "2 × 10 s".into(),
            trainable_parameters: trainable,
            first_step_seconds: steps.first().map(|s| s.0).unwrap_or(f64::NAN),
            seconds_per_step: sps,
            tokens_per_second: tps,
            peak_rss_mb: peak,
            pytorch_seconds_per_step: pt_s,
            pytorch_peak_rss_mb: pt_mb,
            pytorch_source: source,
            time_ratio: sps / pt_s,
            memory_ratio: peak / pt_mb,
            product_seconds_per_step: product_s,
            product_gflop_per_step: product_gflop,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ImportReport {
    audio_seconds: f64,
    seconds: f64,
    audio_per_second: f64,
}

/// The random musicgen-small model on disk, a 6 × 10 s dataset, and the import throughput.
fn prepare(work: &Path) -> anyhow::Result<(PathBuf, PathBuf, ImportReport)> {
    let model_dir = work.join("musicgen-small-random");
    if !model_dir.join("model.safetensors").is_file() {
        eprintln!(
            "writing a random musicgen-small to {}…",
            model_dir.display()
        );
        let cfg = MusicgenConfig::preset(Preset::Small);
        let (_, tensors) = MusicGen::random(cfg.clone(), 0, &Device::Cpu)?;
        save_tensors(&tensors, &model_dir.join("model.safetensors"))?;
        crate::util::atomic_write(
            &model_dir.join("config.json"),
            &serde_json::to_vec_pretty(&cfg)?,
        )?;
    }
    let audio = work.join("audio");
    std::fs::create_dir_all(&audio)?;
    for i in 0..6u32 {
        let p = audio.join(format!("clip{i}.wav"));
        if !p.is_file() {
            let f = 110.0 * (i + 2) as f32;
            let x: Vec<f32> = (0..320_000u32)
                .map(|n| 0.3 * (std::f32::consts::TAU * f * n as f32 / 32_000.0).sin())
                .collect();
            write_wav(&p, &x, 32_000)?;
        }
    }
    let dataset = work.join(format!("dataset-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dataset);
    let model = MusicGen::load(&model_dir, &Device::Cpu, crate::models::nn::WeightMode::F32)?;
    let t = Instant::now();
    let opts = ImportOptions {
        segment_seconds: 10.0,
        train: 1.0,
        valid: 0.0,
        ..Default::default()
    };
    let r = import_dir(&audio, &dataset, &opts)?;
    encode_dataset(&dataset, &model)?;
    let seconds = t.elapsed().as_secs_f64();
    let report = ImportReport {
        audio_seconds: r.seconds,
        seconds,
        audio_per_second: r.seconds / seconds,
    };
    Ok((model_dir, dataset, report))
}
