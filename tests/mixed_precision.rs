//! Reduced precision on the CPU (what a GPU runs by default), against f32 on the same model:
//! inference logits in bf16 and f16, one mixed-precision training step (loss and update), a short
//! mixed-precision run whose loss falls like the f32 run's, f16's dynamic loss scale backing
//! off when the gradients overflow, and every training mode with activation checkpointing and
//! EMA keeping f32 on disk, resuming exactly and exporting. The tolerances are stated where they
//! are checked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use candle_core::{DType, Tensor};
use common::*;
use tunelab::models::device::Precision;
use tunelab::models::nn::WeightMode;
use tunelab::store::run::{load_checkpoint, weights_of, WEIGHTS};
use tunelab::store::run_config::{EmaConfig, Mode, TrainConfig};
use tunelab::train::events::TrainEvent;
use tunelab::train::export::{export_run, ExportFormat};
use tunelab::train::trainer::Trainer;

#[test]
fn reduced_precision_logits_stay_close_to_f32() {
    let r = load("decoder_ref.safetensors");
    let ids = ids(&r["text_ids"]);
    // `[B·K, S]` as HF feeds it → `[B, K, S]`.
    let dec = &r["decoder_input_ids"];
    let (bk, s) = dec.dims2().unwrap();
    let codes = dec
        .to_dtype(DType::U32)
        .unwrap()
        .reshape((bk / 4, 4, s))
        .unwrap();
    let logits = |p: Precision| {
        let mut m =
            tunelab::models::musicgen::MusicGen::load(&tiny_dir(), &device(), WeightMode::F32)
                .unwrap();
        m.set_precision(p).unwrap();
        assert_eq!(m.precision(), p);
        let (states, mask) = m.text.encode_id_batch(std::slice::from_ref(&ids)).unwrap();
        let cond = m.lm.condition(&states, &mask).unwrap();
        let out = m.lm.forward(&codes, &cond, None).unwrap();
        assert_eq!(
            out.dtype(),
            p.dtype(),
            "logits come out in the compute precision"
        );
        out.to_dtype(DType::F32).unwrap()
    };
    let f32 = logits(Precision::F32);
    let scale = rms(&f32);
    // bf16 keeps 8 bits of mantissa, f16 11: relative errors of a few 1e-3 per operation,
    // compounded over the layers. Bounds: 5 % (bf16) and 1 % (f16) of the logits' RMS.
    for (p, bound) in [(Precision::Bf16, 0.05f32), (Precision::F16, 0.01)] {
        let got = logits(p);
        let err = max_abs_diff(&got, &f32) / scale;
        println!("{p}: max |Δ| = {err:.4} of the logits' RMS");
        assert!(err < bound, "{p}: {err} of the RMS");
    }
    // 8-bit weights are a CPU format: f32 only.
    let mut q =
        tunelab::models::musicgen::MusicGen::load(&tiny_dir(), &device(), WeightMode::Q8).unwrap();
    let e = q.set_precision(Precision::Bf16).unwrap_err().to_string();
    assert!(e.contains("run in f32"), "{e}");
}

fn run_cfg(ds: &std::path::Path, precision: Precision, steps: usize) -> TrainConfig {
    TrainConfig {
        dataset: ds.to_path_buf(),
        model: tiny_dir().display().to_string(),
        mode: Mode::Full,
        steps,
        warmup_steps: 1,
        lr: Some(1e-2),
        eval_every: 0,
        save_every: 1,
        condition_dropout: 0.0,
        word_dropout: 0.0,
        precision,
        // f16: a loss scale the tiny model's gradients fit under from the first step (the
        // back-off from a larger one has its own test).
        loss_scale: tunelab::store::run_config::LossScaleConfig {
            init: 256.0,
            growth_interval: 2000,
        },
        ..Default::default()
    }
}

/// The losses of a run's steps, and its weights at the end.
fn train(
    dir: &std::path::Path,
    cfg: TrainConfig,
) -> (
    Vec<f64>,
    Vec<TrainEvent>,
    std::collections::HashMap<String, Tensor>,
) {
    let run = dir.join(format!("run-{}-{}", cfg.precision, cfg.steps));
    let mut t = Trainer::create(cfg, &run, &device(), &mut |_| {}).unwrap();
    let mut events = Vec::new();
    t.run(&mut |e: &TrainEvent| events.push(e.clone())).unwrap();
    let losses = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step(m) => Some(m.ce),
            _ => None,
        })
        .collect();
    let (saved, _) = load_checkpoint(&run.join("checkpoints/last.safetensors")).unwrap();
    (losses, events, weights_of(&saved, WEIGHTS))
}

#[test]
fn one_mixed_precision_step_matches_the_f32_step() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let base = tunelab::models::checkpoint::load_tensors(
        &[tiny_dir().join("model.safetensors")],
        DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let (l32, _, w32) = train(tmp.path(), run_cfg(&ds, Precision::F32, 1));
    for (p, loss_bound) in [(Precision::Bf16, 0.02), (Precision::F16, 0.005)] {
        let (lp, _, wp) = train(tmp.path(), run_cfg(&ds, p, 1));
        // The loss: within 2 % (bf16) or 0.5 % (f16) of f32's.
        let rel = (lp[0] - l32[0]).abs() / l32[0];
        println!("{p}: loss {} vs {} (rel {rel:.2e})", lp[0], l32[0]);
        assert!(rel < loss_bound, "{p}: loss {} vs {}", lp[0], l32[0]);
        // The update (AdamW's first step moves every weight by ≈ lr · sign(g)): the mixed
        // precision update differs from f32's by less than 10 % of its size on average
        // (elements whose gradient sign flips between precisions move the other way).
        let (mut diff, mut size) = (0f64, 0f64);
        for (name, w) in &w32 {
            let b = base[name].to_device(w.device()).unwrap();
            let d32 = (w - &b).unwrap();
            let dp = (&wp[name] - &b).unwrap();
            let sum = |t: Tensor| {
                t.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap() as f64
            };
            diff += sum((&dp - &d32).unwrap());
            size += sum(d32);
        }
        println!("{p}: update differs by {:.3} of its size", diff / size);
        assert!(size > 0.0 && diff / size < 0.1, "{p}: {}", diff / size);
    }
}

/// Mean of the first and of the last `n` losses.
fn ends(losses: &[f64], n: usize) -> (f64, f64) {
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    (mean(&losses[..n]), mean(&losses[losses.len() - n..]))
}

#[test]
fn a_short_mixed_precision_run_learns_like_the_f32_run() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let (l32, _, _) = train(tmp.path(), run_cfg(&ds, Precision::F32, 20));
    let (first, last) = ends(&l32, 5);
    assert!(last < 0.8 * first, "f32 learns: {l32:?}");
    for p in [Precision::Bf16, Precision::F16] {
        let (lp, events, _) = train(tmp.path(), run_cfg(&ds, p, 20));
        println!("{p}: {lp:?}\n  f32: {l32:?}");
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, TrainEvent::Skipped { .. })),
            "{p}: no step skipped"
        );
        // It learns, and its last five losses average within 5 % of f32's.
        let (pf, pl) = ends(&lp, 5);
        assert!(pl < 0.8 * pf, "{p} learns: {lp:?}");
        assert!(
            (pl - last).abs() / last < 0.05,
            "{p} ends at {pl}, f32 at {last}"
        );
    }
}

#[test]
fn an_f16_overflow_backs_the_loss_scale_off_and_is_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let mut cfg = run_cfg(&ds, Precision::F16, 30);
    // f16 reaches 65504: gradients of a loss scaled by 2^30 overflow, and the scale halves
    // until they fit.
    cfg.loss_scale.init = 2f64.powi(30);
    let (losses, events, _) = train(tmp.path(), cfg);
    let backoffs: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Skipped { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert!(!backoffs.is_empty(), "no overflow at a loss scale of 2^40");
    assert!(
        backoffs.iter().all(|r| r.contains("backed off")),
        "{backoffs:?}"
    );
    assert!(!losses.is_empty(), "training went on once the scale fitted");
    let run = tmp.path().join("run-f16-30");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(
        metrics.matches("backed off").count(),
        backoffs.len(),
        "every back-off is in metrics.jsonl"
    );
    // The run's manifest says where and how it ran.
    let cfg = tunelab::store::run::read_config(&run).unwrap();
    assert_eq!(cfg.precision, Precision::F16);
    assert!(cfg.device.starts_with("cpu") || cfg.device.starts_with("cuda"));
}

/// Every tensor of every `.safetensors` file under `dir`, by file and name.
fn safetensors_under(dir: &std::path::Path) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "safetensors") {
            for (k, v) in candle_core::safetensors::load(&p, &candle_core::Device::Cpu).unwrap() {
                out.push((format!("{}:{k}", p.display()), v));
            }
        }
    }
    out
}

#[test]
fn every_mode_with_checkpointing_and_ema_keeps_f32_on_disk_resumes_exactly_and_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    for precision in [Precision::Bf16, Precision::F16] {
        for mode in [Mode::Full, Mode::Lora, Mode::Head, Mode::Scratch] {
            let tag = format!("{precision}-{}", mode.name());
            let cfg = TrainConfig {
                mode,
                activation_checkpointing: true,
                ema: Some(EmaConfig {
                    decay: 0.9,
                    every: 1,
                }),
                ..run_cfg(&ds, precision, 4)
            };
            // Uninterrupted.
            let whole = tmp.path().join(format!("whole-{tag}"));
            let mut t = Trainer::create(cfg.clone(), &whole, &device(), &mut |_| {}).unwrap();
            let mut skipped = 0;
            let s = t
                .run(&mut |e: &TrainEvent| {
                    if matches!(e, TrainEvent::Skipped { .. }) {
                        skipped += 1;
                    }
                })
                .unwrap();
            assert!(s.finished, "{tag}: {s:?}");
            assert_eq!(skipped, 0, "{tag}: a step was skipped");
            drop(t);
            let (a, _) = load_checkpoint(&whole.join("checkpoints/last.safetensors")).unwrap();
            assert!(
                a.keys().any(|k| k.contains("ema")),
                "{tag}: the checkpoint holds the EMA weights: {:?}",
                a.keys().collect::<Vec<_>>()
            );
            for (k, v) in &a {
                assert!(
                    matches!(v.dtype(), DType::F32 | DType::U32 | DType::I64 | DType::U8),
                    "{tag}: {k} is stored as {:?}, not f32",
                    v.dtype()
                );
            }

            // Stopped after step 2 and resumed: the same bits, weights, moments and EMA alike.
            let parts = tmp.path().join(format!("parts-{tag}"));
            let mut t = Trainer::create(cfg, &parts, &device(), &mut |_| {}).unwrap();
            assert!(!t.run(&mut StopAt(2, 0)).unwrap().finished, "{tag}");
            drop(t);
            let mut t = Trainer::resume(&parts, &device(), &mut |_| {}).unwrap();
            assert_eq!(t.step(), 2, "{tag}");
            assert!(t.run(&mut |_: &TrainEvent| {}).unwrap().finished, "{tag}");
            drop(t);
            let (b, _) = load_checkpoint(&parts.join("checkpoints/last.safetensors")).unwrap();
            assert_eq!(a.len(), b.len(), "{tag}");
            for (k, v) in &a {
                let d = max_abs_diff(
                    &v.to_dtype(DType::F32).unwrap(),
                    &b[k].to_dtype(DType::F32).unwrap(),
                );
                assert_eq!(d, 0.0, "{tag}: {k} differs after resume");
            }

            // Exports (PEFT for adapters, an HF folder otherwise) are f32 and finite.
            let (format, kind) = match mode {
                Mode::Lora => (ExportFormat::Peft, "peft"),
                _ => (ExportFormat::Hf, "hf"),
            };
            let out = tmp.path().join(format!("export-{tag}-{kind}"));
            export_run(&whole, None, format, &out).unwrap();
            let tensors = safetensors_under(&out);
            assert!(!tensors.is_empty(), "{tag}: nothing exported");
            for (k, v) in &tensors {
                assert_eq!(v.dtype(), DType::F32, "{tag}: {k}");
                assert!(
                    v.flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                        .iter()
                        .all(|x| x.is_finite()),
                    "{tag}: {k} is not finite"
                );
            }
        }
    }
}
