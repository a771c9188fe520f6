//! Helpers shared by the integration tests: the tiny reference model and its fixtures.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use tunelab::models::musicgen::MusicGen;
use tunelab::models::nn::WeightMode;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn tiny_dir() -> PathBuf {
    fixtures().join("tiny-musicgen")
}

/// The device the parity and gradient tests run on: the CPU, or the one
/// `TUNELAB_TEST_DEVICE` names (`cuda`, `cuda:1`, …), as `scripts/gpu-check` runs them on a
/// GPU. A device that does not open fails the test rather than falling back.
pub fn device() -> Device {
    match std::env::var("TUNELAB_TEST_DEVICE") {
        Ok(d) => {
            let choice = d.parse().expect("TUNELAB_TEST_DEVICE names a device");
            tunelab::models::device::open(choice)
                .expect("the device TUNELAB_TEST_DEVICE names opens")
                .0
        }
        Err(_) => Device::Cpu,
    }
}

pub fn tiny() -> MusicGen {
    MusicGen::load(&tiny_dir(), &device(), WeightMode::F32).expect("tiny fixture loads")
}

/// A reference file's tensors, on the test device.
pub fn load(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join(name), &device()).expect("fixture loads")
}

pub fn ids(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::I64)
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|v| v as u32)
        .collect()
}

/// HF's padded id batch + attention mask → the unpadded id rows our text encoder takes.
pub fn unpadded_rows(ids: &Tensor, mask: &Tensor) -> Vec<Vec<u32>> {
    let ids = ids.to_dtype(DType::I64).unwrap().to_vec2::<i64>().unwrap();
    let mask = mask.to_dtype(DType::I64).unwrap().to_vec2::<i64>().unwrap();
    ids.iter()
        .zip(&mask)
        .map(|(i, m)| {
            i.iter()
                .zip(m)
                .filter(|(_, m)| **m == 1)
                .map(|(i, _)| *i as u32)
                .collect()
        })
        .collect()
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let host = |t: &Tensor| {
        t.to_dtype(DType::F32)
            .unwrap()
            .to_device(&Device::Cpu)
            .unwrap()
    };
    let (a, b) = (host(a), host(b));
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Greedy reference cases written by tools/make_fixtures.py.
#[derive(Debug, serde::Deserialize)]
pub struct GreedyCase {
    pub prompt: Option<String>,
    pub guidance_scale: f64,
    pub max_new_tokens: usize,
    pub codes: Vec<Vec<u32>>,
    #[serde(default)]
    pub unconditional: bool,
}

pub fn greedy_cases() -> Vec<GreedyCase> {
    let text = std::fs::read_to_string(fixtures().join("greedy_ref.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = v.get("cases").cloned().unwrap_or(v);
    serde_json::from_value(cases).unwrap()
}

/// Six 2 s tracks (tones and noise bursts) with captions, cut into 1 s segments.
pub fn dataset(dir: &Path) -> PathBuf {
    use tunelab::data::audio::write_wav;
    use tunelab::data::dataset::ImportOptions;
    use tunelab::data::import::import_dir;
    let src = dir.join("audio");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..6u32 {
        let f = 110.0 * (i + 2) as f32;
        let x: Vec<f32> = (0..64_000u32)
            .map(|n| {
                let t = n as f32 / 32_000.0;
                let burst = if (n / 4000 + i) % 3 == 0 { 0.2 } else { 0.0 };
                0.3 * (std::f32::consts::TAU * f * t).sin()
                    + burst * (((n.wrapping_mul(2654435761)) >> 16) as f32 / 65536.0 - 0.5)
            })
            .collect();
        write_wav(&src.join(format!("t{i}.wav")), &x, 32_000).unwrap();
        std::fs::write(
            src.join(format!("t{i}.txt")),
            format!("tone number {i} with noise"),
        )
        .unwrap();
    }
    let ds = dir.join("ds");
    let opts = ImportOptions {
        segment_seconds: 1.0,
        train: 0.5,
        valid: 0.25,
        auto_label: false,
        ..Default::default()
    };
    let r = import_dir(&src, &ds, &opts).unwrap();
    assert_eq!(r.imported.len(), 6);
    ds
}

/// Trains a run on the tiny model through the CLI (`tunelab train`), failing the test on error.
pub fn cli_train(ds: &Path, run: &Path, mode: &str, steps: usize, lr: &str) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .args([
            "train",
            "--mode",
            mode,
            "--steps",
            &steps.to_string(),
            "--lr",
            lr,
        ])
        .args(["--warmup", "1"])
        .arg("--model")
        .arg(tiny_dir())
        .arg("--dataset")
        .arg(ds)
        .arg("--run")
        .arg(run)
        .output()
        .expect("tunelab runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The LM with every weight trainable, built as the trainer builds it in `full` mode
/// (`train::trainable::build_lm`), its variables gathered in a `VarMap` by checkpoint name.
pub fn trainable_lm(
    cfg: &tunelab::models::musicgen::config::MusicgenConfig,
    tensors: &HashMap<String, Tensor>,
    device: &Device,
) -> (
    tunelab::models::musicgen::decoder::MusicgenLm,
    candle_nn::VarMap,
) {
    let mut tensors = tensors.clone();
    let (lm, vars) =
        tunelab::train::trainable::build_lm(cfg, &mut tensors, |_| true, device).unwrap();
    let varmap = candle_nn::VarMap::new();
    varmap.data().lock().unwrap().extend(vars);
    (lm, varmap)
}

/// The root mean square of `t`'s values (in f32).
pub fn rms(t: &Tensor) -> f32 {
    t.to_dtype(DType::F32)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
        .sqrt()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// A training observer that stops the run once it has logged step `.0` (`.1` is the last
/// step seen).
pub struct StopAt(pub usize, pub usize);

impl tunelab::train::events::Observer for StopAt {
    fn event(&mut self, e: &tunelab::train::events::TrainEvent) {
        if let tunelab::train::events::TrainEvent::Step(m) = e {
            self.1 = m.step;
        }
    }
    fn control(&mut self) -> tunelab::train::events::Control {
        if self.1 >= self.0 {
            tunelab::train::events::Control::Stop
        } else {
            tunelab::train::events::Control::Continue
        }
    }
}
