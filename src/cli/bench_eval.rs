//! `tunelab bench eval`: the objective evaluation's cost **excluding generation** on the
//! musicgen-small layout (random weights; its EnCodec is the real 32 kHz layout), for N clips of
//! S seconds (default 50 × 10 s, issue #7's yardstick) against N reference clips and a training
//! bank of the same size: EnCodec latents, log-mel distance, nearest training segment, FAD with
//! its bootstrap interval, FAD∞, KAD with its interval, and the token n-gram copy check.
//!
//! The clips are synthetic (harmonic tones with vibrato, a pulse and noise, each with its own
//! pitch and seed): the metrics' cost depends on the number of frames, not on what they contain.

use std::time::Instant;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use crate::data::dataset::SAMPLE_RATE;
use crate::eval::report::{score_generated, EvalOptions, GeneratedClip, References, ScoreTimings};
use crate::memory::peak_rss_bytes;
use crate::models::musicgen::config::{MusicgenConfig, Preset};
use crate::models::musicgen::MusicGen;

#[derive(Debug, Args)]
pub struct BenchEvalArgs {
    /// Generated clips (and as many reference and training clips).
    #[arg(long, default_value_t = 50)]
    pub clips: usize,
    /// Seconds per clip.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Bootstrap resamples for the FAD and KAD intervals (the eval default).
    #[arg(long, default_value_t = EvalOptions::default().bootstrap)]
    pub bootstrap: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: super::device::DeviceArgs,
}

#[derive(Debug, Serialize)]
struct EvalBench {
    model: String,
    /// Where it ran (`cpu`, `cuda:0`) and the device's name.
    device: String,
    device_name: String,
    threads: usize,
    clips: usize,
    seconds_per_clip: f64,
    generated_frames: usize,
    reference_frames: usize,
    /// EnCodec latents of the reference clips and the training bank (once per dataset).
    references_seconds: f64,
    /// Tokenising the generated stand-ins (generation yields these for free; not counted).
    codes_seconds: f64,
    scoring: ScoreTimings,
    /// References + scoring: everything an eval does besides generating.
    total_seconds: f64,
    fad: f64,
    kad_x1000: f64,
    peak_rss_mb: f64,
}

/// A deterministic 32 kHz stand-in clip: a few harmonics of `f0` with vibrato, a 2 Hz pulse and
/// seeded noise.
fn synthetic_clip(i: usize, seconds: f64) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let n = (seconds * SAMPLE_RATE as f64) as usize;
    let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
    let f0 = 110.0 * 2f32.powf((i % 24) as f32 / 12.0);
    let sr = SAMPLE_RATE as f32;
    (0..n)
        .map(|t| {
            let x = t as f32 / sr;
            let vib = 1.0 + 0.004 * (std::f32::consts::TAU * 5.0 * x).sin();
            let tone: f32 = (1..=4)
                .map(|h| (std::f32::consts::TAU * f0 * h as f32 * vib * x).sin() / h as f32)
                .sum();
            let pulse = 0.5 + 0.5 * (std::f32::consts::TAU * 2.0 * x).sin().max(0.0);
            0.15 * tone * pulse + 0.02 * (rng.random::<f32>() * 2.0 - 1.0)
        })
        .collect()
}

impl BenchEvalArgs {
    pub fn run(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.clips >= 2, "--clips must be at least 2");
        let opened = self.device.open()?;
        let device = opened.device.clone();
        let (model, tensors) = MusicGen::random(MusicgenConfig::preset(Preset::Small), 0, &device)
            .context("building the musicgen-small layout")?;
        drop(tensors);
        let n = self.clips;
        eprintln!("synthesising {} clips of {} s…", 3 * n, self.seconds);
        let reference: Vec<Vec<f32>> = (0..n)
            .map(|i| synthetic_clip(1000 + i, self.seconds))
            .collect();
        let train: Vec<(String, Vec<f32>)> = (0..n)
            .map(|i| (format!("train-{i}"), synthetic_clip(2000 + i, self.seconds)))
            .collect();

        let t = Instant::now();
        let mut generated = Vec::with_capacity(n);
        let mut train_codes = Vec::with_capacity(n);
        for (i, (_, train_audio)) in train.iter().enumerate() {
            let audio = synthetic_clip(i, self.seconds);
            let codes = model.encode_audio(&audio)?;
            generated.push(GeneratedClip {
                segment: format!("ref-{i}"),
                prompt: String::new(),
                seed: i as u64,
                audio,
                codes,
            });
            train_codes.push(model.encode_audio(train_audio)?);
        }
        let codes_seconds = t.elapsed().as_secs_f64();

        eprintln!("reference and training latents…");
        let t = Instant::now();
        let refs = References::new(&model, reference, train.into_iter().map(Ok), &train_codes)?;
        let references_seconds = t.elapsed().as_secs_f64();
        eprintln!("scoring…");
        let opts = EvalOptions {
            bootstrap: self.bootstrap,
            ..Default::default()
        };
        let (metrics, scoring) = score_generated(&model, &refs, &generated, &opts)?;
        let r = EvalBench {
            model: "facebook/musicgen-small layout (EnCodec 32 kHz), random weights".into(),
            device: opened.info.id.clone(),
            device_name: opened.info.name.clone(),
            threads: candle_core::utils::get_num_threads(),
            clips: n,
            seconds_per_clip: self.seconds,
            generated_frames: metrics.generated_frames,
            reference_frames: metrics.reference_frames,
            references_seconds,
            codes_seconds,
            total_seconds: references_seconds + scoring.total(),
            scoring,
            fad: metrics.fad.estimate,
            kad_x1000: metrics.kad.kad.scaled,
            peak_rss_mb: peak_rss_bytes().map(|b| b as f64 / 1e6).unwrap_or(f64::NAN),
        };
        if self.json {
            println!("{}", serde_json::to_string(&r)?);
            return Ok(());
        }
        let s = &r.scoring;
        println!("model              {} ({} threads)", r.model, r.threads);
        println!(
            "clips              {} × {} s generated vs {} × {} s reference, {} training",
            r.clips, r.seconds_per_clip, r.clips, r.seconds_per_clip, r.clips
        );
        println!(
            "frames             {} generated, {} reference (128-d latents)",
            r.generated_frames, r.reference_frames
        );
        println!(
            "reference latents  {:.2} s (reference + training bank)",
            r.references_seconds
        );
        println!("generated latents  {:.2} s", s.latents);
        println!("log-mel distance   {:.2} s", s.log_mel);
        println!("nearest training   {:.3} s", s.nearest);
        println!(
            "FAD + bootstrap    {:.2} s ({} resamples)",
            s.fad, self.bootstrap
        );
        println!("FAD∞               {:.2} s", s.fad_inf);
        println!("KAD + bootstrap    {:.2} s", s.kad);
        println!("copy check         {:.3} s", s.copies);
        println!(
            "total              {:.2} s excluding generation (tokenising the stand-ins: {:.2} s, not counted)",
            r.total_seconds, r.codes_seconds
        );
        println!("FAD {:.3} · KAD×1000 {:.3}", r.fad, r.kad_x1000);
        println!("peak RSS           {:.0} MB", r.peak_rss_mb);
        Ok(())
    }
}
