//! `TUNELAB_GENERIC_OPS=1` does what it says: with it, none of the CPU shortcuts (OpenBLAS, the
//! decoding GEMV, the fused ops, EnCodec's BLAS convolutions and LSTM, the optimiser's in-place
//! passes) runs over a training step, a generation and an EnCodec round trip of the tiny models;
//! without it, every one of them does (so the zero is no accident of what the step exercises).
//!
//! The switch is read once per process, so each side runs in a process of its own: the test
//! starts this test binary again, once with the switch and once without, on an ignored test
//! that does the work and checks its side (see `models::nn::Shortcut`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use common::*;
use tunelab::generate::generate_codes;
use tunelab::models::checkpoint::{load_tensors, ModelFiles};
use tunelab::models::music_transformer::{MusicTransformer, MusicTransformerConfig};
use tunelab::models::musicgen::config::MusicgenConfig;
use tunelab::models::musicgen::sampling::{Sampler, SamplingParams};
use tunelab::models::nn::{generic_ops, Shortcut, GENERIC_OPS_VAR};
use tunelab::train::loss::{codebook_cross_entropy, shift_right};
use tunelab::train::optim::{adamw_params, all_finite, AdamW, Ema};

/// The test that runs in the child processes.
const CHILD: &str = "shortcuts_run_exactly_when_the_switch_is_off";

#[test]
fn the_switch_turns_every_cpu_shortcut_off() {
    for generic in [false, true] {
        let mut child = Command::new(std::env::current_exe().unwrap());
        child.args([
            CHILD,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ]);
        if generic {
            child.env(GENERIC_OPS_VAR, "1");
        } else {
            child.env_remove(GENERIC_OPS_VAR);
        }
        let out = child.output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        let says = format!("{stdout}\n{stderr}");
        assert!(out.status.success(), "generic {generic}: {says}");
        // The child ran the test (a wrong name would pass with nothing run), on the side asked.
        assert!(
            stdout.contains("test result: ok. 1 passed"),
            "generic {generic}: {says}"
        );
        assert!(
            stdout.contains(&format!("generic ops: {generic};")),
            "generic {generic}: {says}"
        );
    }
}

#[test]
#[ignore = "run in a process of its own, with and without the switch, by the test above"]
fn shortcuts_run_exactly_when_the_switch_is_off() {
    let before = entries();
    every_path_of_the_tiny_models();
    let ran: Vec<(Shortcut, u64)> = entries()
        .into_iter()
        .zip(before)
        .map(|((s, after), (_, before))| (s, after - before))
        .collect();
    let generic = generic_ops();
    println!("generic ops: {generic}; shortcut entries: {ran:?}");
    if generic {
        assert!(ran.iter().all(|(_, n)| *n == 0), "{ran:?}");
        assert_eq!(tunelab::models::blas::product_totals().1, 0.0);
    } else {
        tunelab::models::blas::backend()
            .expect("OpenBLAS (libopenblas0) must be loaded for its shortcuts to run");
        for (s, n) in ran {
            assert!(
                n > 0,
                "{s:?} never ran: the test would not see it run with the switch"
            );
        }
    }
}

fn entries() -> Vec<(Shortcut, u64)> {
    Shortcut::ALL.iter().map(|s| (*s, s.entries())).collect()
}

/// A training step of the tiny MusicGen (forward, backward, clipped AdamW, EMA, finiteness),
/// a generation with classifier-free guidance (decoding steps against the KV cache), an EnCodec
/// round trip, and a forward and backward of a tiny Music Transformer.
fn every_path_of_the_tiny_models() {
    let dev = Device::Cpu;
    let files = ModelFiles::in_dir(&tiny_dir()).unwrap();
    let cfg = MusicgenConfig::from_file(&files.config).unwrap();
    let tensors = load_tensors(&files.weights, DType::F32, &dev).unwrap();
    let (lm, varmap) = trainable_lm(&cfg, &tensors, &dev);
    let mut frozen = tiny();
    let (states, mask) = frozen
        .text
        .encode(&["calm piano".into(), "loud rock drums and guitars".into()])
        .unwrap();
    let cond = lm.condition(&states, &mask).unwrap();
    let labels: Vec<u32> = (0..2 * 4 * 12).map(|i| (i * 37 % 2048) as u32).collect();
    let labels = Tensor::from_vec(labels, (2, 4, 12), &dev).unwrap();
    let logits = lm
        .forward(&shift_right(&labels, 2048).unwrap(), &cond, None)
        .unwrap();
    let out = codebook_cross_entropy(&logits, &labels, 2048).unwrap();
    let grads = out.loss.backward().unwrap();
    let named: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let mut opt = AdamW::new(named.clone(), adamw_params(1e-3)).unwrap();
    let mut ema = Ema::new(0.99, &named).unwrap();
    assert!(opt.clipped_step(&grads, 1.0).unwrap().is_finite());
    ema.update(&named).unwrap();
    assert!(all_finite(ema.weights.values()).unwrap());

    let cond = frozen.condition(&["calm piano".into()]).unwrap();
    let mut sampler = Sampler::new(SamplingParams::default(), 0);
    let codes = generate_codes(&frozen, &cond, 6, None, 3.0, &mut sampler, &mut |_| true).unwrap();
    let audio = frozen.decode_codes(&codes).unwrap();
    assert!(!audio.is_empty());
    let codec = frozen.codec().unwrap();
    let wave: Vec<f32> = (0..3200).map(|n| (n as f32 * 0.05).sin() * 0.3).collect();
    let wave = Tensor::from_vec(wave, (1, 1, 3200), &dev).unwrap();
    codec.encode(&wave).unwrap();

    let mcfg = MusicTransformerConfig::preset("tiny").unwrap();
    let weights = mcfg.init_tensors(0, &dev).unwrap();
    let vars: Vec<Var> = weights
        .values()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let trained = weights
        .keys()
        .cloned()
        .zip(vars.iter().map(|v| v.as_tensor().clone()))
        .collect();
    let model =
        MusicTransformer::new(&mcfg, VarBuilder::from_tensors(trained, DType::F32, &dev)).unwrap();
    let events: Vec<u32> = (0..24).map(|i| (i * 7 % 388) as u32).collect();
    let events = Tensor::from_vec(events, (1, 24), &dev).unwrap();
    let logits = model.forward(&events, None).unwrap();
    let grads = logits
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(vars.iter().any(|v| grads.get(v.as_tensor()).is_some()));
}
