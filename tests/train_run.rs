//! Training runs end to end on the tiny fixture model: every mode trains from the CLI with
//! curves in metrics.jsonl; a run killed with SIGKILL resumes exactly; non-finite steps are
//! skipped and stop the run; the engine pauses, resumes and stops a run; exports and adapters
//! give the model that was trained.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use candle_core::Device;
use common::*;
use tunelab::store::run::{load_checkpoint, weights_of};
use tunelab::store::run_config::{Mode, TrainConfig};
use tunelab::train::events::TrainEvent;
use tunelab::train::trainer::Trainer;

const BIN: &str = env!("CARGO_BIN_EXE_tunelab");

fn train_cmd(ds: &Path, run: &Path, mode: &str, steps: usize, extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["train", "--model"])
        .arg(tiny_dir())
        .arg("--dataset")
        .arg(ds)
        .arg("--run")
        .arg(run)
        .args(["--mode", mode, "--steps", &steps.to_string(), "--json"])
        .args(["--warmup", "2", "--eval-every", "4", "--save-every", "3"])
        .args(extra);
    if !extra.contains(&"--lr") {
        c.args(["--lr", "3e-3"]);
    }
    c
}

/// `(step, ce)` of every train line, the last line for a step winning (a resumed run repeats
/// the steps after its last checkpoint).
fn train_losses(run: &Path) -> Vec<(u64, f64)> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let mut by_step = std::collections::BTreeMap::new();
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if v["kind"] == "train" {
            by_step.insert(v["step"].as_u64().unwrap(), v["ce"].as_f64().unwrap());
        }
    }
    by_step.into_iter().collect()
}

fn run_ok(mut c: Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn every_mode_trains_from_the_cli_and_freezes_what_it_should() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    for (mode, extra) in [
        (
            "full",
            vec!["--checkpoint-every", "4", "--preview-prompt", "a calm tone"],
        ),
        ("lora", vec!["--lora-rank", "4"]),
        ("head", vec!["--head-layers", "1"]),
        (
            "scratch",
            vec![
                "--scratch-hidden",
                "32",
                "--scratch-layers",
                "2",
                "--scratch-heads",
                "2",
            ],
        ),
    ] {
        let run = tmp.path().join(format!("run-{mode}"));
        run_ok(train_cmd(&ds, &run, mode, 8, &extra));
        let losses = train_losses(&run);
        assert_eq!(losses.len(), 8, "{mode}: a train line per step");
        assert!(losses.iter().all(|(_, c)| c.is_finite() && *c > 0.0));
        let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        assert!(
            metrics.contains("\"kind\":\"valid\""),
            "{mode}: validation logged"
        );
        for key in [
            "\"ce_q\"",
            "\"ppl_q\"",
            "\"lr\"",
            "\"grad_norm\"",
            "\"tokens_per_s\"",
        ] {
            assert!(metrics.contains(key), "{mode}: {key} logged");
        }
        let (t, meta) = load_checkpoint(&run.join("checkpoints/last.safetensors")).unwrap();
        assert_eq!(meta["step"], "8");
        let w = weights_of(&t, "w.");
        let opt = weights_of(&t, "opt.");
        // Optimizer state exists exactly for the trained tensors.
        assert_eq!(opt.len(), 2 * w.len(), "{mode}");
        let names: Vec<&String> = w.keys().collect();
        match mode {
            "lora" => assert!(names.iter().all(|n| n.contains(".lora_"))),
            "head" => {
                assert!(names.iter().all(|n| n.contains("lm_heads")
                    || n.starts_with("enc_to_dec_proj")
                    || n.contains("layers.1.")
                    || n.contains("decoder.layer_norm")));
                assert!(names.iter().any(|n| n.contains("layers.1.fc1")));
            }
            "scratch" => {
                let e = &w["decoder.model.decoder.embed_tokens.0.weight"];
                assert_eq!(e.dims(), &[2049, 32]);
            }
            _ => assert!(names.iter().any(|n| n.contains("embed_tokens"))),
        }
        assert!(run.join("checkpoints/best.safetensors").is_file(), "{mode}");
        if mode == "full" {
            // Kept checkpoints and their preview clips.
            for step in ["000004", "000008"] {
                assert!(run
                    .join(format!("checkpoints/step-{step}.safetensors"))
                    .is_file());
                let wav = run.join(format!("previews/step-{step}.wav"));
                let audio = tunelab::data::audio::load_mono(&wav, 32_000).unwrap();
                assert!((audio.len() as f64 / 32_000.0 - 5.0).abs() < 0.1);
            }
        }
    }
}

#[test]
fn a_killed_run_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let extra = [
        "--lora-rank",
        "4",
        "--grad-accum",
        "2",
        "--ema",
        "0.9",
        "--ema-every",
        "2",
    ];
    // Uninterrupted reference.
    let a = tmp.path().join("a");
    run_ok(train_cmd(&ds, &a, "lora", 12, &extra));
    let want = train_losses(&a);
    assert_eq!(want.len(), 12);

    // Same run, killed after its step-6 checkpoint and at least one more step.
    let b = tmp.path().join("b");
    let mut child = train_cmd(&ds, &b, "lora", 12, &extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(b.join("metrics.jsonl")).unwrap_or_default();
        let saved6 = text.contains("\"kind\":\"checkpoint\",\"name\":\"last\",\"step\":6");
        let past = text.contains("\"step\":7") && text.contains("\"kind\":\"train\"");
        if saved6 && past {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        assert!(start.elapsed() < Duration::from_secs(300), "run too slow");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = train_losses(&b);
    assert!(
        before.len() < 12,
        "killed mid-run ({} steps logged)",
        before.len()
    );

    let mut resume = Command::new(BIN);
    resume.arg("train").arg("--resume").arg(&b).arg("--json");
    run_ok(resume);
    let got = train_losses(&b);
    assert_eq!(got.len(), 12);
    for ((s1, l1), (s2, l2)) in want.iter().zip(&got) {
        assert_eq!(s1, s2);
        assert_eq!(l1, l2, "step {s1}: resumed loss differs");
    }
    // The final weights (and EMA) are identical too.
    let wa = load_checkpoint(&a.join("checkpoints/last.safetensors"))
        .unwrap()
        .0;
    let wb = load_checkpoint(&b.join("checkpoints/last.safetensors"))
        .unwrap()
        .0;
    assert_eq!(wa.len(), wb.len());
    for (k, t) in &wa {
        assert_eq!(max_abs_diff(t, &wb[k]), 0.0, "{k}");
    }
}

#[test]
fn non_finite_steps_are_skipped_and_stop_the_run_without_a_bad_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let run = tmp.path().join("run");
    let cfg = TrainConfig {
        dataset: ds,
        model: tiny_dir().display().to_string(),
        mode: Mode::Head,
        steps: 20,
        save_every: 1,
        max_bad_steps: 3,
        eval_every: 0,
        ..Default::default()
    };
    let mut t = Trainer::create(cfg, &run, &Device::Cpu, &mut |_| {}).unwrap();
    let mut events = Vec::new();
    // Two good steps, then poison a trained weight.
    t.cfg.steps = 2;
    t.run(&mut |e: &tunelab::train::events::TrainEvent| events.push(e.clone()))
        .unwrap();
    let good = load_checkpoint(&run.join("checkpoints/last.safetensors"))
        .unwrap()
        .0;
    t.cfg.steps = 20;
    let (name, var) = t
        .trainable()
        .next()
        .map(|(n, v)| (n.clone(), v.clone()))
        .unwrap();
    let poisoned = (var.as_tensor().ones_like().unwrap() * f64::NAN).unwrap();
    var.set(&poisoned).unwrap();
    let err = t
        .run(&mut |e: &tunelab::train::events::TrainEvent| events.push(e.clone()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("diverged") && err.contains("3 non-finite"),
        "{err}"
    );
    let skips = events
        .iter()
        .filter(|e| matches!(e, tunelab::train::events::TrainEvent::Skipped { .. }))
        .count();
    assert_eq!(skips, 3);
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.matches("\"kind\":\"skip\"").count(), 3);
    // `last` still holds the good weights of step 2.
    let after = load_checkpoint(&run.join("checkpoints/last.safetensors"))
        .unwrap()
        .0;
    assert_eq!(
        max_abs_diff(&after[&format!("w.{name}")], &good[&format!("w.{name}")]),
        0.0
    );
}

#[test]
fn exports_and_adapters_give_the_trained_model() {
    use tunelab::models::musicgen::MusicGen;
    use tunelab::models::nn::WeightMode;
    use tunelab::store::load::attach_adapter;
    use tunelab::store::ModelSpec;
    use tunelab::train::export::{export_run, ExportFormat};
    let apply_adapter = |m: &mut MusicGen, dir: &std::path::Path| {
        attach_adapter(m, &ModelSpec::resolve(&dir.display().to_string())?)
    };
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let run = tmp.path().join("lora");
    run_ok(train_cmd(
        &ds,
        &run,
        "lora",
        4,
        &[
            "--lora-rank",
            "4",
            "--lr",
            "2e-2",
            "--lora-targets",
            "self_attn,cross_attn,lm_heads",
        ],
    ));
    let hf = tmp.path().join("hf");
    let peft = tmp.path().join("peft");
    export_run(&run, None, ExportFormat::Hf, &hf).unwrap();
    export_run(&run, None, ExportFormat::Peft, &peft).unwrap();
    let ac = tmp.path().join("ac");
    export_run(&run, None, ExportFormat::Audiocraft, &ac).unwrap();

    let logits = |m: &mut MusicGen| {
        let cond = m
            .condition(&["tone number 3 with noise".to_string()])
            .unwrap();
        let codes = candle_core::Tensor::from_vec(
            (0..4 * 9)
                .map(|i| (i * 37 % 2048) as u32)
                .collect::<Vec<_>>(),
            (1, 4, 9),
            &Device::Cpu,
        )
        .unwrap();
        m.lm.forward(&codes, &cond, None).unwrap()
    };
    let mut base = MusicGen::load(&tiny_dir(), &Device::Cpu, WeightMode::F32).unwrap();
    let base_logits = logits(&mut base);
    let mut merged = MusicGen::load(&hf, &Device::Cpu, WeightMode::F32).unwrap();
    let merged_logits = logits(&mut merged);
    let mut unmerged = MusicGen::load(&tiny_dir(), &Device::Cpu, WeightMode::F32).unwrap();
    apply_adapter(&mut unmerged, &peft).unwrap();
    let unmerged_logits = logits(&mut unmerged);
    let run_spec = ModelSpec::resolve(&run.display().to_string()).unwrap();
    let mut as_run = run_spec
        .load(&Device::Cpu, Default::default(), &mut |_| {})
        .and_then(|m| m.into_musicgen(&run_spec))
        .unwrap();
    let run_logits = logits(&mut as_run);
    assert!(max_abs_diff(&merged_logits, &unmerged_logits) < 1e-4);
    assert!(max_abs_diff(&run_logits, &unmerged_logits) < 1e-5);
    assert!(
        max_abs_diff(&base_logits, &merged_logits) > 1e-2,
        "the adapter changed nothing"
    );
    // An adapter that does not fit is refused by name.
    let cfg_path = peft.join("adapter_config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replace("\"r\": 4", "\"r\": 8");
    std::fs::write(&cfg_path, text).unwrap();
    let mut m = MusicGen::load(&tiny_dir(), &Device::Cpu, WeightMode::F32).unwrap();
    let e = apply_adapter(&mut m, &peft).unwrap_err().to_string();
    assert!(e.contains("do not fit r = 8"), "{e}");
    // audiocraft names: fused attention projections.
    let sd = tunelab::models::checkpoint::load_tensors(
        &[ac.join("state_dict.safetensors")],
        candle_core::DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(
        sd["transformer.layers.0.self_attn.in_proj_weight"].dims(),
        &[96, 32]
    );
    assert!(sd.contains_key("condition_provider.conditioners.description.output_proj.bias"));
    assert!(sd.contains_key("linears.3.weight") && sd.contains_key("out_norm.weight"));
}

#[test]
fn the_engine_streams_pauses_resumes_and_stops_training() {
    use std::sync::mpsc;
    use std::sync::Arc;
    use tunelab::engine::{Command as C, EngineHandle, Event, JobOutput};
    use tunelab::train::events::TrainEvent;
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let run = tmp.path().join("run");
    let cfg = TrainConfig {
        dataset: ds,
        model: tiny_dir().display().to_string(),
        mode: Mode::Lora,
        steps: 400,
        save_every: 1000,
        eval_every: 0,
        ..Default::default()
    };
    let (tx, rx) = mpsc::channel();
    let engine = EngineHandle::spawn(tx, Arc::new(|| {})).unwrap();
    engine.send(C::Train {
        job: 1,
        run_dir: run.clone(),
        config: Some(Box::new(cfg)),
    });
    let mut steps = Vec::new();
    let mut paused_seen = false;
    let mut sent_pause = false;
    let mut sent_resume = false;
    let mut sent_stop = false;
    let summary = loop {
        match rx.recv_timeout(Duration::from_secs(120)).unwrap() {
            Event::Train { events, paused, .. } => {
                for e in events {
                    if let TrainEvent::Step(m) = e {
                        steps.push(m.step);
                    }
                }
                if paused {
                    paused_seen = true;
                    // While paused no step arrives.
                    let n = steps.len();
                    std::thread::sleep(Duration::from_millis(600));
                    while let Ok(Event::Train { events, .. }) = rx.try_recv() {
                        assert!(events.iter().all(|e| !matches!(e, TrainEvent::Step(_))));
                    }
                    assert_eq!(steps.len(), n);
                    engine.send(C::ResumeTraining);
                    sent_resume = true;
                }
                if !sent_pause && steps.len() >= 3 {
                    engine.send(C::PauseTraining);
                    sent_pause = true;
                }
                if sent_resume && !sent_stop && steps.len() >= 6 {
                    engine.send(C::StopTraining);
                    sent_stop = true;
                }
            }
            Event::Done { job: 1, result } => match result.unwrap() {
                JobOutput::Trained(s) => break s,
                _ => panic!("wrong output"),
            },
            _ => {}
        }
    };
    assert!(paused_seen);
    assert!(!summary.finished);
    assert!(summary.step >= 6 && summary.step < 400);
    let want: Vec<usize> = (1..=summary.step).collect();
    assert_eq!(steps, want, "every step streamed once, in order");
    // Stopped runs are resumable: `last` holds the stop step.
    let (_, meta) = load_checkpoint(&run.join("checkpoints/last.safetensors")).unwrap();
    assert_eq!(meta["step"], summary.step.to_string());
}

#[test]
fn a_scratch_lm_with_the_parallel_pattern_trains_and_generates() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let run = tmp.path().join("par");
    run_ok(train_cmd(
        &ds,
        &run,
        "scratch",
        6,
        &[
            "--scratch-hidden",
            "32",
            "--scratch-layers",
            "2",
            "--scratch-heads",
            "2",
            "--pattern",
            "parallel",
        ],
    ));
    let cfg = std::fs::read_to_string(run.join("model/config.json")).unwrap();
    assert!(cfg.contains("\"codebook_pattern\": \"parallel\""), "{cfg}");
    assert_eq!(train_losses(&run).len(), 6);
    // The run generates with its own pattern: 1 s = 50 frames in 51 decoder steps.
    let wav = tmp.path().join("p.wav");
    let codes = tmp.path().join("p.json");
    let mut g = Command::new(BIN);
    g.args(["generate", "--prompt", "tone", "--duration", "1", "--out"])
        .arg(&wav)
        .arg("--save-codes")
        .arg(&codes)
        .arg("--model")
        .arg(&run);
    run_ok(g);
    let c: Vec<Vec<u32>> = serde_json::from_str(&std::fs::read_to_string(&codes).unwrap()).unwrap();
    assert_eq!(c.len(), 4);
    assert!(c
        .iter()
        .all(|r| r.len() == 50 && r.iter().all(|t| *t < 2048)));
    // An unknown pattern is refused by name.
    let mut bad = train_cmd(
        &ds,
        &tmp.path().join("bad"),
        "scratch",
        1,
        &["--pattern", "zigzag"],
    );
    let out = bad.output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("zigzag"));
}

#[test]
fn a_scratch_lm_with_the_flatten_pattern_trains_and_generates() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let run = tmp.path().join("flat");
    run_ok(train_cmd(
        &ds,
        &run,
        "scratch",
        6,
        &[
            "--scratch-hidden",
            "32",
            "--scratch-layers",
            "2",
            "--scratch-heads",
            "2",
            "--pattern",
            "flatten",
        ],
    ));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("model/config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["decoder"]["codebook_pattern"], "flatten", "{cfg}");
    // Room for a whole 30 s window unrolled: 1500 frames × 4 codebooks + the BOS.
    assert!(
        cfg["decoder"]["max_position_embeddings"].as_u64().unwrap() > 4 * 1500,
        "{cfg}"
    );
    let losses = train_losses(&run);
    assert_eq!(losses.len(), 6);
    assert!(losses.iter().all(|(_, ce)| ce.is_finite()), "{losses:?}");
    // From about ln 2049 at random init, going down (the run is seeded).
    assert!(losses[5].1 < losses[0].1, "{losses:?}");
    // The run generates with its own pattern: 1 s = 50 frames in 4 × 50 + 1 decoder steps,
    // back in frame order.
    let wav = tmp.path().join("f.wav");
    let codes = tmp.path().join("f.json");
    let mut g = Command::new(BIN);
    g.args(["generate", "--prompt", "tone", "--duration", "1", "--out"])
        .arg(&wav)
        .arg("--save-codes")
        .arg(&codes)
        .arg("--model")
        .arg(&run);
    run_ok(g);
    let c: Vec<Vec<u32>> = serde_json::from_str(&std::fs::read_to_string(&codes).unwrap()).unwrap();
    assert_eq!(c.len(), 4);
    assert!(c
        .iter()
        .all(|r| r.len() == 50 && r.iter().all(|t| *t < 2048)));
    assert!(wav.exists());
    // Fine-tuning a pretrained MusicGen cannot switch its pattern.
    for mode in ["lora", "full"] {
        let mut bad = train_cmd(
            &ds,
            &tmp.path().join(format!("bad-{mode}")),
            mode,
            1,
            &["--pattern", "flatten"],
        );
        let out = bad.output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("flatten") && err.contains("scratch"), "{err}");
    }
}

/// Poisons one trained weight with NaN, so every later step is skipped.
fn poison(t: &Trainer) {
    let (_, var) = t.trainable().next().unwrap();
    let nan = (var.as_tensor().ones_like().unwrap() * f64::NAN).unwrap();
    var.set(&nan).unwrap();
}

/// Stops the run at the first `control` after a skipped step.
#[derive(Default)]
struct StopAfterSkip {
    events: Vec<TrainEvent>,
}

impl tunelab::train::events::Observer for StopAfterSkip {
    fn event(&mut self, e: &TrainEvent) {
        self.events.push(e.clone());
    }
    fn control(&mut self) -> tunelab::train::events::Control {
        if self
            .events
            .iter()
            .any(|e| matches!(e, TrainEvent::Skipped { .. }))
        {
            tunelab::train::events::Control::Stop
        } else {
            tunelab::train::events::Control::Continue
        }
    }
}

#[test]
fn stop_is_honoured_while_steps_are_skipped_and_the_last_step_always_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let cfg = |steps| TrainConfig {
        dataset: ds.clone(),
        model: tiny_dir().display().to_string(),
        mode: Mode::Head,
        steps,
        save_every: 100,
        max_bad_steps: 5,
        eval_every: 1,
        ..Default::default()
    };
    // Stop during skipped steps: the run ends at once (it used to skip on to "diverged"),
    // refusing to overwrite `last` with non-finite weights.
    let run = tmp.path().join("stop");
    let mut t = Trainer::create(cfg(20), &run, &Device::Cpu, &mut |_| {}).unwrap();
    t.cfg.steps = 2;
    t.run(&mut |_: &TrainEvent| {}).unwrap();
    let good = load_checkpoint(&run.join("checkpoints/last.safetensors"))
        .unwrap()
        .0;
    t.cfg.steps = 20;
    poison(&t);
    let mut obs = StopAfterSkip::default();
    let err = t.run(&mut obs).unwrap_err().to_string();
    assert!(err.contains("non-finite") && err.contains("last"), "{err}");
    let skips = obs
        .events
        .iter()
        .filter(|e| matches!(e, TrainEvent::Skipped { .. }))
        .count();
    assert_eq!(skips, 1, "the stop came after the first skipped step");
    let after = load_checkpoint(&run.join("checkpoints/last.safetensors"))
        .unwrap()
        .0;
    for (k, v) in &good {
        assert_eq!(max_abs_diff(v, &after[k]), 0.0, "{k}");
    }

    // A run whose last step is skipped still validates and tries to save `last`: it reports
    // the non-finite weights instead of ending as if finished.
    let run = tmp.path().join("end");
    let mut t = Trainer::create(cfg(3), &run, &Device::Cpu, &mut |_| {}).unwrap();
    t.cfg.steps = 2;
    t.run(&mut |_: &TrainEvent| {}).unwrap();
    t.cfg.steps = 3;
    poison(&t);
    let mut events = Vec::new();
    let err = t
        .run(&mut |e: &TrainEvent| events.push(e.clone()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("non-finite"), "{err}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TrainEvent::Valid(v) if v.step == 3)),
        "the final validation ran: {events:?}"
    );
    // Only the first (good) part of the run ended; the poisoned one did not claim to.
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.matches("\"kind\":\"end\"").count(), 1, "{metrics}");
}

#[test]
fn the_training_path_takes_pad_and_bos_from_the_model_config() {
    use tunelab::models::musicgen::config::MusicgenConfig;
    use tunelab::models::musicgen::MusicGen;
    // A MusicGen whose codebooks have 1024 entries: its config says pad = BOS = 1024 (id 2048
    // does not exist in its embeddings).
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = MusicgenConfig::from_file(&tiny_dir().join("config.json")).unwrap();
    cfg.audio_encoder.codebook_size = 1024;
    cfg.decoder.vocab_size = 1024;
    cfg.decoder.pad_token_id = 1024;
    cfg.decoder.bos_token_id = 1024;
    let model = tmp.path().join("model-1024");
    let (_, tensors) = MusicGen::random(cfg.clone(), 5, &Device::Cpu).unwrap();
    tunelab::models::checkpoint::save_tensors(&tensors, &model.join("model.safetensors")).unwrap();
    std::fs::write(
        model.join("config.json"),
        serde_json::to_vec_pretty(&cfg).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        tiny_dir().join("tokenizer.json"),
        model.join("tokenizer.json"),
    )
    .unwrap();
    let ds = dataset(tmp.path());
    for checkpointing in [true, false] {
        let run = tmp.path().join(format!("run-{checkpointing}"));
        let cfg = TrainConfig {
            dataset: ds.clone(),
            model: model.display().to_string(),
            mode: Mode::Head,
            steps: 2,
            eval_every: 2,
            activation_checkpointing: checkpointing,
            ..Default::default()
        };
        let mut t = Trainer::create(cfg, &run, &Device::Cpu, &mut |_| {}).unwrap();
        let mut events = Vec::new();
        t.run(&mut |e: &TrainEvent| events.push(e.clone())).unwrap();
        let steps: Vec<f64> = events
            .iter()
            .filter_map(|e| match e {
                TrainEvent::Step(m) => Some(m.ce),
                _ => None,
            })
            .collect();
        assert_eq!(steps.len(), 2);
        // Cross-entropy over 1024 codes starts near ln(1024) ≈ 6.9, not ln(2048).
        assert!(
            steps.iter().all(|ce| ce.is_finite() && *ce < 7.5),
            "{steps:?}"
        );
        assert!(events.iter().any(|e| matches!(e, TrainEvent::Valid(_))));
    }
}
