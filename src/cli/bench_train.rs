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

use crate::data::audio::write_wav;
use crate::data::dataset::ImportOptions;
use crate::data::import::import_dir;
use crate::data::token_cache::encode_dataset;
use crate::memory::peak_rss_bytes;
use crate::models::checkpoint::save_tensors;
use crate::models::lora::{LoraConfig, LoraTarget};
use crate::models::musicgen::config::{MusicgenConfig, Preset};
use crate::models::musicgen::MusicGen;
use crate::store::run_config::{Mode, TrainConfig};
use crate::train::events::TrainEvent;
use crate::train::trainer::Trainer;

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
    /// each mode right after ours, and compare against it (without it, no comparison is made).
    #[arg(long)]
    pub pytorch: bool,
    /// Clips per batch.
    #[arg(long, default_value_t = 2)]
    pub batch_size: usize,
    /// Seconds per clip (the dataset's clips are this long).
    #[arg(long, default_value_t = 10.0)]
    pub max_seconds: f64,
    #[command(flatten)]
    pub device: super::device::DeviceArgs,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ModeReport {
    mode: String,
    /// Where it ran (`cpu`, `cuda:0`), the device's name, and the passes' precision.
    #[serde(default)]
    device: String,
    #[serde(default)]
    device_name: String,
    #[serde(default)]
    precision: String,
    threads: usize,
    batch: String,
    trainable_parameters: usize,
    first_step_seconds: f64,
    seconds_per_step: f64,
    tokens_per_second: f64,
    peak_rss_mb: f64,
    /// Seconds per step in OpenBLAS products (0 without OpenBLAS) and their work, so a report
    /// says how much of a step is matrix products and how fast this CPU ran them.
    #[serde(default)]
    product_seconds_per_step: f64,
    #[serde(default)]
    product_gflop_per_step: f64,
    /// Host↔device transfers per step (losses, counts, the gradient norm).
    #[serde(default)]
    transfers_per_step: f64,
    /// On a GPU: the most device memory in use (total − free) seen after a step, in MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gpu_memory_peak_mb: Option<f64>,
    /// PyTorch on the same batch, measured in this run (`--pytorch`); absent otherwise, and
    /// then the report makes no comparison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pytorch: Option<Reference>,
}

/// PyTorch's numbers from the same run, and ours relative to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Reference {
    seconds_per_step: f64,
    peak_rss_mb: f64,
    time_ratio: f64,
    memory_ratio: f64,
}

impl ModeReport {
    /// The report's line(s) as printed.
    fn describe(&self) -> String {
        let mut s = format!(
            "{:5} {} on {} ({}, {}) · {} trainable · {:.2} s/step (first {:.2}) · {:.0} tok/s · \
             peak RSS {:.0} MB · {:.1} transfers/step",
            self.mode,
            self.batch,
            self.device,
            self.device_name,
            self.precision,
            self.trainable_parameters,
            self.seconds_per_step,
            self.first_step_seconds,
            self.tokens_per_second,
            self.peak_rss_mb,
            self.transfers_per_step,
        );
        if let Some(gpu) = self.gpu_memory_peak_mb {
            s.push_str(&format!(" · GPU memory in use {gpu:.0} MB"));
        }
        match &self.pytorch {
            Some(p) => s.push_str(&format!(
                " · PyTorch in this run {:.2} s, {:.0} MB → time {:.2}×, memory {:.2}×",
                p.seconds_per_step, p.peak_rss_mb, p.time_ratio, p.memory_ratio
            )),
            None => s.push_str(" · (--pytorch measures PyTorch beside it)"),
        }
        if self.product_seconds_per_step > 0.0 {
            s.push_str(&format!(
                "\n      matrix products (OpenBLAS): {:.2} s/step ({:.0} % of the step), {:.0} GFLOP at {:.0} GFLOP/s",
                self.product_seconds_per_step,
                100.0 * self.product_seconds_per_step / self.seconds_per_step,
                self.product_gflop_per_step,
                self.product_gflop_per_step / self.product_seconds_per_step
            ));
        }
        s
    }
}

impl BenchTrainArgs {
    pub fn run(&self) -> anyhow::Result<()> {
        let work = self
            .work
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("tunelab-bench-train"));
        let opened = self.device.open()?;
        let (model_dir, dataset, import) = prepare(&work, self.max_seconds, &opened.device)?;
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
                    .args(["--batch-size", &self.batch_size.to_string()])
                    .args(["--max-seconds", &self.max_seconds.to_string()])
                    .args(["--device", &self.device.device.to_string()])
                    .args(
                        self.device
                            .precision
                            .iter()
                            .flat_map(|p| ["--dtype", p.name()]),
                    )
                    .args(self.device.tf32.then_some("--tf32"))
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
            println!("{}", r.describe());
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
        let opened = self.device.open()?;
        let cfg = TrainConfig {
            dataset: dataset.to_path_buf(),
            model: model_dir.display().to_string(),
            mode: mode.parse::<Mode>()?,
            steps: self.steps,
            batch_size: self.batch_size,
            max_seconds: self.max_seconds,
            precision: opened.precision,
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
        let mut trainer = Trainer::create(cfg, &run, &opened.device, &mut |_| {})?;
        let mut steps = Vec::new();
        let mut products = crate::models::blas::product_totals();
        let transfers = crate::models::device::transfers();
        let mut gpu_peak: Option<u64> = None;
        trainer.run(&mut |e: &TrainEvent| {
            if let TrainEvent::Step(m) = e {
                if let Some(used) = crate::models::device::memory_in_use(&opened.device) {
                    gpu_peak = Some(gpu_peak.unwrap_or(0).max(used));
                }
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
        let transfers = (crate::models::device::transfers() - transfers) as f64;
        let peak = peak_rss_bytes().unwrap_or(0) as f64 / 1e6;
        let gpu_memory_peak_mb = gpu_peak.map(|b| b as f64 / 1e6);
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
        let pytorch = if self.pytorch {
            // PyTorch settles over its first steps (measured 13.5, 8.4, 6.8, 7.6, 6.6 s for LoRA).
            let steps = self.steps.max(4).to_string();
            let on_gpu = opened.device.is_cuda();
            let (batch, seconds) = (self.batch_size.to_string(), self.max_seconds.to_string());
            let mut args = vec![
                "--mode",
                mode,
                "--steps",
                &steps,
                "--device",
                if on_gpu { "cuda" } else { "cpu" },
                "--dtype",
                opened.precision.name(),
                "--batch",
                &batch,
                "--seconds",
                &seconds,
            ];
            args.extend(opened.tf32.then_some("--tf32"));
            let v = super::reference::run_python_json("bench_train_pytorch.py", &args)?;
            let num = |k: &str| v[k].as_f64().context(format!("PyTorch report lacks {k}"));
            let s = num("seconds_per_step")?;
            // Memory is compared where it is spent: the GPU's, or the process's on the CPU.
            let (mb, ours) = match (on_gpu, gpu_memory_peak_mb) {
                (true, Some(g)) => (num("peak_gpu_mb")?, g),
                _ => (num("peak_rss_mb")?, peak),
            };
            Some(Reference {
                seconds_per_step: s,
                peak_rss_mb: mb,
                time_ratio: sps / s,
                memory_ratio: ours / mb,
            })
        } else {
            None
        };
        Ok(ModeReport {
            mode: mode.into(),
            device: opened.info.id.clone(),
            device_name: opened.info.name.clone(),
            precision: opened.precision.to_string(),
            threads: candle_core::utils::get_num_threads(),
            batch: format!("{} × {} s", self.batch_size, self.max_seconds),
            trainable_parameters: trainable,
            first_step_seconds: steps.first().map(|s| s.0).unwrap_or(f64::NAN),
            seconds_per_step: sps,
            tokens_per_second: tps,
            peak_rss_mb: peak,
            product_seconds_per_step: product_s,
            product_gflop_per_step: product_gflop,
            transfers_per_step: transfers / steps.len().max(1) as f64,
            gpu_memory_peak_mb,
            pytorch,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ImportReport {
    audio_seconds: f64,
    seconds: f64,
    audio_per_second: f64,
}

/// The random musicgen-small model on disk, a dataset of 6 clips of `seconds` (at least 10),
/// and the import throughput.
fn prepare(
    work: &Path,
    seconds: f64,
    device: &Device,
) -> anyhow::Result<(PathBuf, PathBuf, ImportReport)> {
    let seconds = seconds.max(10.0);
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
    let audio = audio.join(format!("{seconds}s"));
    std::fs::create_dir_all(&audio)?;
    let samples = (seconds * 32_000.0) as u32;
    for i in 0..6u32 {
        let p = audio.join(format!("clip{i}.wav"));
        if !p.is_file() {
            let f = 110.0 * (i + 2) as f32;
            let x: Vec<f32> = (0..samples)
                .map(|n| 0.3 * (std::f32::consts::TAU * f * n as f32 / 32_000.0).sin())
                .collect();
            write_wav(&p, &x, 32_000)?;
        }
    }
    let dataset = work.join(format!("dataset-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dataset);
    let model = MusicGen::load(&model_dir, device, crate::models::nn::WeightMode::F32)?;
    let t = Instant::now();
    let opts = ImportOptions {
        segment_seconds: seconds,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(pytorch: Option<Reference>) -> ModeReport {
        ModeReport {
            mode: "lora".into(),
            threads: 2,
            batch: "2 × 10 s".into(),
            trainable_parameters: 3_145_728,
            first_step_seconds: 20.0,
            seconds_per_step: 16.0,
            tokens_per_second: 125.0,
            peak_rss_mb: 3000.0,
            product_seconds_per_step: 11.0,
            product_gflop_per_step: 2385.0,
            transfers_per_step: 9.0,
            gpu_memory_peak_mb: None,
            device: "cpu".into(),
            device_name: "test".into(),
            precision: "f32".into(),
            pytorch,
        }
    }

    #[test]
    fn no_comparison_without_a_reference_measured_in_the_same_run() {
        let alone = report(None);
        let text = alone.describe();
        assert!(
            !text.contains("time ") && !text.contains("PyTorch in this run"),
            "{text}"
        );
        let json = serde_json::to_value(&alone).unwrap();
        assert!(json.get("pytorch").is_none(), "{json}");
        assert!(!json.to_string().contains("ratio"), "{json}");
        let measured = report(Some(Reference {
            seconds_per_step: 8.0,
            peak_rss_mb: 6000.0,
            time_ratio: 2.0,
            memory_ratio: 0.5,
        }));
        let text = measured.describe();
        assert!(text.contains("time 2.00×, memory 0.50×"), "{text}");
        let back: ModeReport =
            serde_json::from_value(serde_json::to_value(&measured).unwrap()).unwrap();
        assert_eq!(back, measured);
    }
}
