//! `tunelab bench …`: numbers for the speed and memory targets (never asserted in tests).

use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::reference::run_python_json;
use crate::generate::quality::{compare_codes, CompareParams, QualityReport, Side};
use crate::generate::{default_window, generate_codes, generate_codes_streaming};
use crate::memory::peak_rss_bytes;
use crate::models::device::Precision;
use crate::models::musicgen::config::{MusicgenConfig, Preset};
use crate::models::musicgen::decoder::Conditioning;
use crate::models::musicgen::sampling::{Sampler, SamplingParams};
use crate::models::musicgen::MusicGen;
use crate::models::nn::WeightMode;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Generation speed on the full musicgen-small layout with random weights (no download).
    Generate(BenchGenerateArgs),
    /// Training step time and peak memory (full and LoRA) on the musicgen-small layout with
    /// random weights, batch 2 × 10 s; plus dataset import + tokenisation throughput.
    Train(super::bench_train::BenchTrainArgs),
    /// Objective evaluation excluding generation (EnCodec latents, log-mel, FAD/FAD∞/KAD with
    /// intervals, copy check): N clips × S s on the musicgen-small layout (default 50 × 10 s).
    Eval(super::bench_eval::BenchEvalArgs),
    /// The decoding step's matrix kernels (f32, q8, q4) on musicgen-small's shapes, two rows,
    /// against a plain read of the same bytes: milliseconds per step and GB/s.
    Kernels(super::bench_kernels::BenchKernelsArgs),
    /// The studio's UI frame time (p50 / p95 / max) while a tiny Music Transformer trains and
    /// then generates: the app runs headless (layout and tessellation, no window). Needs the
    /// `gui` feature.
    Ui(BenchUiArgs),
}

#[derive(Debug, Args)]
pub struct BenchUiArgs {
    /// Training steps to time frames over.
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    /// Seconds of the piece generated afterwards.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Where the studio's engine runs: auto, cpu, cuda, cuda:N, metal.
    #[arg(long, default_value = "auto")]
    pub device: crate::models::device::DeviceChoice,
}

impl BenchCommand {
    /// Runs the benchmark; the studio's (`ui`) through `studio`, which the CLI cannot name.
    pub fn run(self, studio: &dyn super::Studio) -> anyhow::Result<()> {
        match self {
            Self::Generate(a) => a.run(),
            Self::Train(a) => a.run(),
            Self::Eval(a) => a.run(),
            Self::Kernels(a) => a.run(),
            Self::Ui(a) => studio.bench(&a),
        }
    }
}

#[derive(Debug, Args)]
pub struct BenchGenerateArgs {
    /// Seconds of audio to generate.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Weight precision: f32, q8, q4 or q4k.
    #[arg(long, default_value = "f32")]
    pub weights: WeightMode,
    /// small, medium or large.
    #[arg(long, default_value = "small")]
    pub size: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also run `tools/bench_pytorch.py` (needs python3 with torch and transformers) on the same
    /// layout, length, device and precision, one after the other, and print the ratios.
    #[arg(long)]
    pub pytorch: bool,
    /// Decode with EnCodec while generating, each frame as soon as its codebooks exist (the
    /// path the studio plays from), and report when the first audio came out.
    #[arg(long)]
    pub streaming: bool,
    /// Skip the quality pass (a reduced weight mode or precision is otherwise compared with f32
    /// on the same weights after the timed run).
    #[arg(long)]
    pub no_quality: bool,
    #[command(flatten)]
    pub device: super::device::DeviceArgs,
}

#[derive(Debug, Serialize)]
struct GenerateReport {
    model: String,
    weights: String,
    /// Where it ran (`cpu`, `cuda:0`), the device's name, and the LM's precision.
    device: String,
    device_name: String,
    precision: String,
    threads: usize,
    audio_seconds: f64,
    frames: usize,
    decode_steps: usize,
    t5_seconds: f64,
    lm_seconds: f64,
    ms_per_step: f64,
    encodec_decode_seconds: f64,
    wall_seconds: f64,
    real_time_factor: f64,
    peak_rss_mb: f64,
    /// Host↔device transfers per decoding step (the sampled ids up, the logits down).
    transfers_per_step: f64,
    /// With `--streaming` only.
    #[serde(flatten)]
    streamed: Option<StreamFigures>,
}

/// The streamed path's figures (`--streaming`). There, `lm_seconds` and `ms_per_step` leave
/// out the EnCodec time spent between steps, which `encodec_decode_seconds` counts (with the
/// tail decoded at the end).
#[derive(Debug, Serialize)]
struct StreamFigures {
    /// From the prompt given (T5 included) to the first audio chunk out of the decoder.
    first_audio_seconds: f64,
    /// EnCodec time per frame handed over during the generation.
    decode_ms_per_frame: f64,
    /// The decoder's delay: frames whose audio waits for the frames after them.
    lookahead_frames: f64,
}

/// What the streamed path measured.
struct Streamed {
    audio_samples: usize,
    decode_seconds: f64,
    figures: StreamFigures,
}

/// Generates `frames` frames as `generate_audio_streaming` does (each frame to EnCodec's
/// streaming decoder as soon as its codebooks exist), timing the decoder apart from the LM and
/// the first audio out from `t0`.
fn stream_codes(
    model: &MusicGen,
    cond: &crate::models::musicgen::decoder::Conditioning,
    frames: usize,
    sampler: &mut Sampler,
    t0: Instant,
) -> anyhow::Result<(Vec<Vec<u32>>, Streamed)> {
    let codec = model.codec()?;
    let k = model.num_codebooks();
    let mut stream = codec.decode_stream(k)?;
    let lookahead = stream.lookahead_samples() as f64 / codec.config().hop_length() as f64;
    let mut decode = 0.0;
    let mut first: Option<f64> = None;
    let mut samples = 0;
    let codes = generate_codes_streaming(
        model,
        cond,
        frames,
        None,
        3.0,
        sampler,
        &mut |_| true,
        default_window(model),
        &mut |_, col| {
            let t = Instant::now();
            let audio = stream.push_frame(col)?.flatten_all()?.to_vec1::<f32>()?;
            decode += t.elapsed().as_secs_f64();
            if !audio.is_empty() && first.is_none() {
                first = Some(t0.elapsed().as_secs_f64());
            }
            samples += audio.len();
            Ok(())
        },
    )?;
    let t = Instant::now();
    let in_loop = decode;
    samples += stream.finish()?.flatten_all()?.to_vec1::<f32>()?.len();
    decode += t.elapsed().as_secs_f64();
    let first_audio_seconds = first.unwrap_or_else(|| t0.elapsed().as_secs_f64());
    Ok((
        codes,
        Streamed {
            audio_samples: samples,
            decode_seconds: decode,
            figures: StreamFigures {
                first_audio_seconds,
                decode_ms_per_frame: in_loop * 1000.0 / frames.max(1) as f64,
                lookahead_frames: lookahead,
            },
        },
    ))
}

impl BenchGenerateArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let preset = match self.size.as_str() {
            "small" => Preset::Small,
            "medium" => Preset::Medium,
            "large" => Preset::Large,
            other => anyhow::bail!("unknown size {other} (small, medium, large)"),
        };
        let opened = self.device.open()?;
        let device = opened.device.clone();
        let (mut model, tensors) =
            MusicGen::random(MusicgenConfig::preset(preset), 0, &device).context("building")?;
        drop(tensors);
        model.set_weight_mode(self.weights)?;
        model.set_precision(opened.precision)?;
        let frames = (self.seconds * model.frame_rate()).round() as usize;
        let k = model.num_codebooks();

        let t0 = Instant::now();
        // T5 on a 12-token prompt (random weights: the ids are what matters).
        let ids = prompt_ids();
        let states = model.text.encode_ids(&ids)?;
        let mask = candle_core::Tensor::ones((1, 12), candle_core::DType::U32, &device)?;
        let cond = model.lm.condition(&states, &mask)?;
        device.synchronize()?;
        let t5 = t0.elapsed().as_secs_f64();

        let mut sampler = Sampler::new(SamplingParams::default(), 0);
        let t1 = Instant::now();
        let transfers = crate::models::device::transfers();
        let (codes, streamed) = if self.streaming {
            let (codes, s) = stream_codes(&model, &cond, frames, &mut sampler, t0)?;
            (codes, Some(s))
        } else {
            let codes =
                generate_codes(&model, &cond, frames, None, 3.0, &mut sampler, &mut |_| {
                    true
                })?;
            (codes, None)
        };
        let transfers = crate::models::device::transfers() - transfers;
        let lm = t1.elapsed().as_secs_f64();
        let t2 = Instant::now();
        let (lm, audio_len) = match &streamed {
            Some(s) => (lm - s.decode_seconds, s.audio_samples),
            None => (lm, model.decode_codes(&codes)?.len()),
        };
        let dec = match &streamed {
            Some(s) => s.decode_seconds,
            None => t2.elapsed().as_secs_f64(),
        };
        let wall = t0.elapsed().as_secs_f64();
        let steps = frames + k - 1;
        let audio_seconds = audio_len as f64 / model.sample_rate() as f64;
        let r = GenerateReport {
            model: preset.repo_id().to_string() + " layout, random weights",
            weights: self.weights.to_string(),
            device: opened.info.id.clone(),
            device_name: opened.info.name.clone(),
            precision: opened.precision.to_string(),
            threads: candle_core::utils::get_num_threads(),
            audio_seconds,
            frames,
            decode_steps: steps,
            t5_seconds: t5,
            lm_seconds: lm,
            ms_per_step: lm * 1000.0 / steps as f64,
            encodec_decode_seconds: dec,
            wall_seconds: wall,
            real_time_factor: audio_seconds / wall,
            peak_rss_mb: peak_rss_bytes().map(|b| b as f64 / 1e6).unwrap_or(f64::NAN),
            transfers_per_step: transfers as f64 / steps as f64,
            streamed: streamed.map(|s| s.figures),
        };
        // After the report's timings and peak memory were read: the pass changes neither.
        let quality = if self.no_quality {
            None
        } else {
            quality_pass(preset, &model, &cond, frames, &opened)?
        };
        let reference = if self.pytorch {
            Some(run_pytorch(self.seconds, &opened)?)
        } else {
            None
        };
        if self.json {
            let mut v = serde_json::to_value(&r)?;
            if let Some(p) = &reference {
                v["pytorch"] = p.clone();
            }
            if let Some(q) = &quality {
                add_quality_fields(&mut v, q)?;
            }
            println!("{v}");
        } else {
            println!("model            {}", r.model);
            println!(
                "device           {} ({}), {} compute, {} weights ({} CPU threads)",
                r.device, r.device_name, r.precision, r.weights, r.threads
            );
            println!(
                "audio            {:.2} s ({} frames, {} decoder steps, CFG 3, top-k 250)",
                r.audio_seconds, r.frames, r.decode_steps
            );
            println!("T5 (12 tokens)   {:.3} s", r.t5_seconds);
            println!(
                "LM               {:.2} s = {:.1} ms/step",
                r.lm_seconds, r.ms_per_step
            );
            println!("EnCodec decode   {:.2} s", r.encodec_decode_seconds);
            if let Some(f) = &r.streamed {
                println!(
                    "streamed         first audio after {:.2} s, EnCodec {:.1} ms/frame between \
                     steps, {:.2} frames of lookahead",
                    f.first_audio_seconds, f.decode_ms_per_frame, f.lookahead_frames
                );
            }
            println!(
                "wall             {:.2} s, real-time factor {:.3}",
                r.wall_seconds, r.real_time_factor
            );
            println!("peak RSS         {:.0} MB", r.peak_rss_mb);
            println!(
                "transfers        {:.1} host↔device per step",
                r.transfers_per_step
            );
            print_quality(quality.as_ref(), self.no_quality);
            if let Some(p) = &reference {
                let f = |k: &str| p.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
                let (step, wall) = (f("step_ms_median"), f("generate_wall_s"));
                println!("PyTorch          {step:.1} ms/step, {wall:.2} s generate wall, EnCodec {:.2} s, RTF {:.3}", f("encodec_decode_ms") / 1000.0, f("rtf"));
                println!(
                    "ratio (tunelab / PyTorch): {:.2}x per step, {:.2}x wall",
                    r.ms_per_step / step,
                    r.wall_seconds / wall
                );
            }
        }
        Ok(())
    }
}

/// The 12 token ids the benchmark's T5 encodes (random weights: the ids are what matters).
fn prompt_ids() -> Vec<u32> {
    (0..12).map(|i| 100 + i * 37).collect()
}

/// The untimed quality pass: the benchmarked model generates the same clip again (same seed,
/// CFG 3, top-k 250) while an f32 model of the same random weights is fed the same ids in
/// lockstep (`generate::quality`). `None` when the model is f32 weights computing in f32:
/// there is nothing to compare it with but itself.
fn quality_pass(
    preset: Preset,
    model: &MusicGen,
    cond: &Conditioning,
    frames: usize,
    on: &super::device::Opened,
) -> anyhow::Result<Option<QualityReport>> {
    if model.weight_mode == WeightMode::F32 && model.precision() == Precision::F32 {
        return Ok(None);
    }
    let (mut reference, tensors) = MusicGen::random(MusicgenConfig::preset(preset), 0, &on.device)
        .context("building the f32 reference")?;
    drop(tensors);
    reference.set_weight_mode(WeightMode::F32)?;
    let states = reference.text.encode_ids(&prompt_ids())?;
    let mask = candle_core::Tensor::ones((1, 12), candle_core::DType::U32, &on.device)?;
    let reference_cond = reference.lm.condition(&states, &mask)?;
    let params = CompareParams {
        frames,
        prompt: None,
        guidance_scale: 3.0,
        sampling: SamplingParams::default(),
        seed: 0,
        window: default_window(model),
    };
    let compared = compare_codes(
        Side { model, cond },
        Side {
            model: &reference,
            cond: &reference_cond,
        },
        &params,
        &mut |_| true,
    )?;
    Ok(Some(compared.quality))
}

/// The quality figures as top-level fields of the JSON report (NaN becomes null).
fn add_quality_fields(v: &mut serde_json::Value, q: &QualityReport) -> anyhow::Result<()> {
    let fields = [
        ("kl_mean", q.kl_mean),
        ("kl_p99", q.kl_p99),
        ("top1_agreement", q.top1_agreement),
        ("logit_rel_err_max", q.logit_rel_err_max),
        ("logit_rel_err_mean", q.logit_rel_err_mean),
    ];
    for (name, value) in fields {
        v[name] = serde_json::to_value(value)?;
    }
    v["kl_mean_by_codebook"] = serde_json::to_value(&q.kl_mean_by_codebook)?;
    v["quality_codebook_steps"] = q.compared.into();
    Ok(())
}

fn print_quality(q: Option<&QualityReport>, skipped: bool) {
    match q {
        Some(q) => {
            println!(
                "quality vs f32   KL {:.2e} mean, {:.2e} p99 (nats, before top-k); top-1 agreement \
                 {:.1} %; logit error {:.3} max, {:.3} mean (× RMS); {} codebook-steps",
                q.kl_mean,
                q.kl_p99,
                q.top1_agreement * 100.0,
                q.logit_rel_err_max,
                q.logit_rel_err_mean,
                q.compared
            );
        }
        None if skipped => println!("quality vs f32   skipped (--no-quality)"),
        None => println!("quality vs f32   f32 is the reference"),
    }
}

/// Runs the PyTorch reference benchmark on the same device and precision and returns its JSON
/// report.
fn run_pytorch(seconds: f64, on: &super::device::Opened) -> anyhow::Result<serde_json::Value> {
    let device = if on.device.is_cuda() { "cuda" } else { "cpu" };
    let seconds = seconds.to_string();
    let mut args = vec![
        "--seconds",
        &seconds,
        "--device",
        device,
        "--dtype",
        on.precision.name(),
    ];
    args.extend(on.tf32.then_some("--tf32"));
    run_python_json("bench_pytorch.py", &args)
}
