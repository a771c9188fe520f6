//! The MIDI family end to end on a tiny Music Transformer: import a folder of MIDI (bad files
//! reported), every trainable tensor gets a gradient, training from scratch lowers the loss,
//! transfer learning (full, LoRA, head) continues from a run, a stopped run resumes exactly,
//! and improv / primed generation writes MIDI that reads back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use candle_core::Device;
use tunelab::data::dataset::ImportOptions;
use tunelab::data::midi::{midi_bytes, read_midi, Note};
use tunelab::data::midi_dataset::{is_midi_dataset, read_pieces};
use tunelab::generate::midi::{generate_events, prime_from_midi, MidiGenerateParams};
use tunelab::models::music_transformer::vocab::EVENTS;
use tunelab::models::Family;
use tunelab::store::run_config::{Mode, TrainConfig};
use tunelab::store::ModelSpec;
use tunelab::train::events::TrainEvent;
use tunelab::train::trainer::Trainer;

use common::StopAt;

/// A scale-and-arpeggio piece in `key` (semitones above C), `bars` bars long: regular enough
/// that a tiny model learns it in a few steps.
fn piece(key: u8, bars: usize) -> Vec<Note> {
    let mut notes = Vec::new();
    let mut t = 0.0;
    for bar in 0..bars {
        for (i, step) in [0u8, 4, 7, 12, 7, 4].iter().enumerate() {
            let pitch = 48 + key + step + if bar % 2 == 1 { 2 } else { 0 };
            notes.push(Note {
                pitch,
                velocity: 60 + (i as u8) * 8,
                start: t,
                end: t + 0.2,
            });
            t += 0.25;
        }
    }
    notes
}

fn write(path: &Path, notes: &[Note]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, midi_bytes(notes, 0).unwrap()).unwrap();
}

/// A folder of 12 pieces (every key) plus two bad files; imported into a dataset.
fn midi_dataset(root: &Path) -> PathBuf {
    let src = root.join("src");
    for key in 0..12u8 {
        write(&src.join(format!("piece-{key:02}.mid")), &piece(key, 6));
    }
    std::fs::write(src.join("broken.mid"), b"MThd\0\0\0\x06\0\x01").unwrap();
    std::fs::write(src.join("empty.mid"), midi_bytes(&[], 0).unwrap()).unwrap();
    std::fs::write(
        src.join("piece-03.json"),
        r#"{"title": "Arpeggio in E flat", "composer": "Test", "meter": "3/4"}"#,
    )
    .unwrap();
    let out = root.join("ds");
    let opts = ImportOptions {
        train: 0.7,
        valid: 0.3,
        ..Default::default()
    };
    let report = tunelab::data::import::import_dir(&src, &out, &opts).unwrap();
    assert_eq!(report.imported.len(), 12, "{report:?}");
    assert_eq!(report.failed.len(), 2, "{report:?}");
    assert!(report
        .failed
        .iter()
        .all(|(p, e)| e.contains(&p.display().to_string()) || e.contains("no notes")));
    out
}

fn config(ds: &Path, mode: Mode, model: &str, steps: usize) -> TrainConfig {
    let mut cfg = TrainConfig {
        dataset: ds.to_path_buf(),
        model: model.to_string(),
        family: Family::Midi,
        mode,
        steps,
        batch_size: 4,
        lr: Some(3e-3),
        warmup_steps: 2,
        eval_every: steps,
        save_every: 2,
        ..Default::default()
    };
    cfg.midi.preset = "tiny".into();
    cfg.midi.max_events = Some(64);
    cfg.lora.targets = vec![
        tunelab::models::lora::LoraTarget::SelfAttn,
        tunelab::models::lora::LoraTarget::Ffn,
    ];
    cfg
}

fn run(cfg: TrainConfig, dir: &Path) -> Vec<TrainEvent> {
    let mut events = Vec::new();
    let mut t = Trainer::create(cfg, dir, &Device::Cpu, &mut |_| {}).unwrap();
    t.run(&mut |e: &TrainEvent| events.push(e.clone())).unwrap();
    events
}

fn losses(events: &[TrainEvent]) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step(m) => Some(m.ce),
            _ => None,
        })
        .collect()
}

fn valid_ce(events: &[TrainEvent]) -> f64 {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            TrainEvent::Valid(v) => Some(v.ce),
            _ => None,
        })
        .unwrap()
}

/// A MIDI run's model config and complete tensors, as every caller gets them.
fn resolve_run(
    run: &std::path::Path,
    checkpoint: Option<&str>,
    device: &Device,
) -> tunelab::Result<(
    tunelab::models::music_transformer::MusicTransformerConfig,
    std::collections::HashMap<String, candle_core::Tensor>,
)> {
    ModelSpec::MidiRun(run.to_path_buf()).midi_tensors(checkpoint, device)
}

#[test]
fn import_reads_metadata_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let ds = midi_dataset(dir.path());
    assert!(is_midi_dataset(&ds));
    let pieces = read_pieces(&ds).unwrap();
    assert_eq!(pieces.len(), 12);
    assert!(pieces
        .iter()
        .all(|p| !p.events.is_empty() && p.events.iter().all(|&t| t < EVENTS)));
    let segs = std::fs::read_to_string(ds.join("segments.jsonl")).unwrap();
    let line = segs.lines().find(|l| l.contains("piece-03")).unwrap();
    let seg: tunelab::data::dataset::Segment = serde_json::from_str(line).unwrap();
    assert_eq!(seg.info.title.as_deref(), Some("Arpeggio in E flat"));
    assert_eq!(seg.info.artist.as_deref(), Some("Test"));
    assert_eq!(seg.info.meter.as_deref(), Some("3/4"));
    assert_eq!(seg.info.bpm, Some(120.0)); // from the file's tempo
    assert!((seg.duration - 8.95).abs() < 0.02, "{}", seg.duration);
}

#[test]
fn every_trainable_tensor_gets_a_finite_nonzero_gradient() {
    use tunelab::train::midi::MidiLearner;
    use tunelab::train::optim::{GradSource, Grads};
    let dir = tempfile::tempdir().unwrap();
    let ds = midi_dataset(dir.path());
    for mode in [Mode::Scratch, Mode::Lora] {
        let mut cfg = config(&ds, mode, "", 1);
        let run_dir = dir.path().join(format!("grad-{mode:?}"));
        if mode == Mode::Lora {
            // LoRA on a model folder: B starts at zero, so A's gradient is zero at step 0;
            // start B from non-zero values through a tiny scratch run's adapters instead.
            let base = dir.path().join("base");
            run(config(&ds, Mode::Scratch, "", 1), &base);
            cfg.model = base.display().to_string();
        }
        let built = MidiLearner::build(
            &cfg,
            &run_dir,
            &Device::Cpu,
            &mut |_| {},
            &Default::default(),
        )
        .unwrap();
        let mut learner = built.learner;
        let vars = built.vars;
        if mode == Mode::Lora {
            for (n, v) in &vars {
                if n.contains("lora_B") {
                    v.set(&(v.as_tensor().ones_like().unwrap() * 0.01).unwrap())
                        .unwrap();
                }
            }
        }
        learner.set_dropout_seed(None);
        let mut grads = Grads::default();
        learner
            .micro_batch(&cfg, 0, &vars, 1.0, &mut grads)
            .unwrap();
        assert!(!vars.is_empty());
        for (name, v) in &vars {
            let g = grads
                .grad(v.as_tensor())
                .unwrap_or_else(|| panic!("{mode:?}: no gradient for {name}"));
            let g: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
            assert!(
                g.iter().all(|x| x.is_finite()),
                "{name}: non-finite gradient"
            );
            assert!(
                g.iter().any(|x| *x != 0.0),
                "{mode:?}: zero gradient for {name}"
            );
        }
    }
}

#[test]
fn scratch_training_learns_and_transfer_learning_continues_from_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let ds = midi_dataset(dir.path());
    let base = dir.path().join("base");
    let ev = run(config(&ds, Mode::Scratch, "", 30), &base);
    let l = losses(&ev);
    assert_eq!(l.len(), 30);
    let first = l[..3].iter().sum::<f64>() / 3.0;
    let last = l[27..].iter().sum::<f64>() / 3.0;
    assert!(
        first > 5.0,
        "a fresh model is near uniform over 391 events: {first}"
    );
    assert!(last < first - 2.0, "loss {first:.2} → {last:.2}");
    let base_ce = valid_ce(&ev);
    assert!(base.join("metrics.jsonl").is_file());
    assert!(base.join("checkpoints/last.safetensors").is_file());
    assert!(base.join("checkpoints/best.safetensors").is_file());

    // Transfer: each mode starts from the base run's weights (its validation loss, not a fresh
    // model's) and trains only what the mode names.
    for mode in [Mode::Full, Mode::Lora, Mode::Head] {
        let r = dir.path().join(format!("transfer-{mode:?}"));
        let mut cfg = config(&ds, mode, &base.display().to_string(), 4);
        cfg.lr = Some(1e-3);
        let mut t = Trainer::create(cfg, &r, &Device::Cpu, &mut |_| {}).unwrap();
        let start = t.evaluate().unwrap().ce;
        assert!(
            (start - base_ce).abs() < 1e-4,
            "{mode:?}: starts at {start}, base ended at {base_ce}"
        );
        let names: Vec<String> = t.trainable().map(|(n, _)| n.clone()).collect();
        match mode {
            Mode::Lora => assert!(names.iter().all(|n| n.contains("lora_"))),
            Mode::Head => assert!(names
                .iter()
                .all(|n| n.starts_with("lm_head") || n.starts_with("model.layer_norm"))),
            _ => assert!(names.iter().any(|n| n.contains("relative_embeddings"))),
        }
        t.run(&mut |_: &TrainEvent| {}).unwrap();
        // The run resolves to a complete model (adapters merged, head on its base).
        let (mcfg, tensors) = resolve_run(&r, None, &Device::Cpu).unwrap();
        assert_eq!(tensors.len(), mcfg.tensor_shapes().len());
    }
}

/// Stops after 3 steps, resumes, and ends with exactly the weights of an uninterrupted run.
#[test]
fn a_stopped_run_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let ds = midi_dataset(dir.path());
    let whole = dir.path().join("whole");
    run(config(&ds, Mode::Scratch, "", 6), &whole);
    let parts = dir.path().join("parts");
    let mut t = Trainer::create(
        config(&ds, Mode::Scratch, "", 6),
        &parts,
        &Device::Cpu,
        &mut |_| {},
    )
    .unwrap();
    let s = t.run(&mut StopAt(3, 0)).unwrap();
    assert!(!s.finished);
    drop(t);
    let mut t = Trainer::resume(&parts, &Device::Cpu, &mut |_| {}).unwrap();
    assert_eq!(t.step(), 3);
    assert!(t.run(&mut |_: &TrainEvent| {}).unwrap().finished);
    let (_, a) = resolve_run(&whole, None, &Device::Cpu).unwrap();
    let (_, b) = resolve_run(&parts, None, &Device::Cpu).unwrap();
    for (k, v) in &a {
        let d = (v - &b[k])
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(d, 0.0, "{k} differs after resume");
    }
}

#[test]
fn improv_and_primed_generation_write_midi() {
    let dir = tempfile::tempdir().unwrap();
    let ds = midi_dataset(dir.path());
    let base = dir.path().join("base");
    run(config(&ds, Mode::Scratch, "", 2), &base);
    let (mcfg, tensors) = resolve_run(&base, None, &Device::Cpu).unwrap();
    let model = tunelab::models::music_transformer::MusicTransformer::new(
        &mcfg,
        candle_nn::VarBuilder::from_tensors(tensors, candle_core::DType::F32, &Device::Cpu),
    )
    .unwrap();
    // Improv of 3 s: same seed → same piece; the piece lasts at least the requested time.
    let p = MidiGenerateParams {
        seconds: Some(3.0),
        seed: 7,
        ..Default::default()
    };
    let a = generate_events(&model, &p, &mut |_| true).unwrap();
    let b = generate_events(&model, &p, &mut |_| true).unwrap();
    assert_eq!(a, b);
    assert!(a.iter().all(|&t| t < EVENTS));
    assert!(tunelab::data::midi::duration_of(&a) >= 3.0 - 1e-9);
    // Primed: continues the first 2 s of a piece; the output starts with the prime.
    let src = dir.path().join("src/piece-05.mid");
    let prime = prime_from_midi(&src, 2.0).unwrap();
    assert!(!prime.is_empty());
    let p = MidiGenerateParams {
        seconds: None,
        events: Some(40),
        prime: prime.clone(),
        seed: 1,
        ..Default::default()
    };
    let out = generate_events(&model, &p, &mut |_| true).unwrap();
    assert_eq!(&out[..prime.len()], prime.as_slice());
    assert_eq!(out.len(), prime.len() + 40);
    // Written as MIDI (and WAV when a SoundFont is installed, as the set-up does).
    let stem = dir.path().join("out/piece");
    let piece = tunelab::generate::midi::write_piece(&out, &stem, 0, None).unwrap();
    assert_eq!(piece.render_error, None, "the set-up installs a SoundFont");
    assert_eq!(piece.playable().extension().unwrap(), "wav");
    assert!(
        piece.audio.iter().any(|s| s.abs() > 1e-3),
        "the rendering is silent"
    );
    // A SoundFont the user picked that cannot be used: the MIDI is still written, with why.
    let bad = dir.path().join("font.sf3");
    std::fs::write(&bad, b"RIFF").unwrap();
    let p2 = tunelab::generate::midi::write_piece(&out, &dir.path().join("out/p2"), 0, Some(&bad))
        .unwrap();
    assert!(
        p2.render_error
            .as_deref()
            .is_some_and(|e| e.contains(".sf3")),
        "{:?}",
        p2.render_error
    );
    assert!(p2.midi.is_file() && p2.wav.is_none());
    let (notes, _) = read_midi(&stem.with_extension("mid")).unwrap();
    assert!(!notes.is_empty());
    // Cancelling stops the job.
    let err = generate_events(&model, &p, &mut |s| s.step < 5).unwrap_err();
    assert!(err.to_string().contains("cancelled"));
}

/// A blind A/B session between two Music Transformers (a run and its fine-tune): both continue
/// the same primes with the same seeds, rendered through the SoundFont, loudness-matched.
#[test]
fn a_listening_session_compares_two_midi_models() {
    use tunelab::eval::listen::prepare::{prepare_session, ClipMaker, Contender, SessionPlan};
    use tunelab::eval::listen::SessionLog;
    use tunelab::generate::soundfont::{find_soundfont, SoundFont};
    let dir = tempfile::tempdir().unwrap();
    let ds = midi_dataset(dir.path());
    let base = dir.path().join("base");
    run(config(&ds, Mode::Scratch, "", 2), &base);
    let tuned = dir.path().join("tuned");
    run(
        config(&ds, Mode::Full, &base.display().to_string(), 2),
        &tuned,
    );
    let maker = |run: PathBuf| {
        move || {
            let (cfg, t) = resolve_run(&run, None, &Device::Cpu)?;
            let model = tunelab::models::music_transformer::MusicTransformer::new(
                &cfg,
                candle_nn::VarBuilder::from_tensors(t, candle_core::DType::F32, &Device::Cpu),
            )?;
            Ok(ClipMaker::Midi {
                model: Box::new(model),
                soundfont: SoundFont::load(&find_soundfont()?)?,
                prime_seconds: 1.5,
            })
        }
    };
    let contender = |label: &str, run: &Path| Contender {
        label: label.into(),
        id: run.display().to_string(),
        weights_sha256: "test".into(),
        load: Box::new(maker(run.to_path_buf())),
    };
    let prime = dir.path().join("src/piece-02.mid").display().to_string();
    let plan = SessionPlan {
        prompts: vec![prime],
        seeds: vec![0, 1],
        seconds: 3.0,
        trials: 4,
        ..Default::default()
    };
    let out = dir.path().join("session");
    let log = prepare_session(
        &out,
        "midi",
        &plan,
        contender("A", &base),
        contender("B", &tuned),
        &mut |_| {},
    )
    .unwrap();
    let session = SessionLog::open(&log).unwrap();
    let clips = &session.spec().clips;
    assert_eq!(clips.len(), 4, "one pair per prime and seed");
    let mut loudness = Vec::new();
    for c in clips {
        let r = hound::WavReader::open(&c.path).unwrap();
        assert_eq!(r.spec().sample_rate, tunelab::generate::midi::RENDER_RATE);
        let x = tunelab::data::audio::load_mono(&c.path, 44_100).unwrap();
        assert_eq!(x.len(), 3 * 44_100, "trimmed to the trial length");
        loudness.push(
            tunelab::eval::listen::loudness::measure(&x, 44_100)
                .unwrap()
                .integrated_lufs,
        );
    }
    for pair in loudness.chunks(2) {
        assert!((pair[0] - pair[1]).abs() < 0.5, "matched: {pair:?}");
    }
}

/// The MIDI family from the command line: import → train from scratch → evaluate → export (f16)
/// → generate from the run and from the exported folder (MIDI + rendering).
#[test]
fn the_cli_trains_evaluates_exports_and_generates_midi() {
    use std::process::Command;
    let bin = env!("CARGO_BIN_EXE_tunelab");
    let dir = tempfile::tempdir().unwrap();
    let ds = midi_dataset(dir.path());
    let ok = |args: &[&str]| {
        let out = Command::new(bin).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "tunelab {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let run = dir.path().join("run");
    let (ds_s, run_s) = (ds.display().to_string(), run.display().to_string());
    ok(&[
        "train",
        "--family",
        "midi",
        "--mode",
        "scratch",
        "--preset",
        "tiny",
        "--dataset",
        &ds_s,
        "--run",
        &run_s,
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--max-events",
        "32",
        "--eval-every",
        "3",
        "--json",
    ]);
    let eval = ok(&[
        "eval",
        "--model",
        &run_s,
        "--dataset",
        &ds_s,
        "--split",
        "valid",
    ]);
    assert!(eval.contains(&run_s), "{eval}");
    let folder = dir.path().join("exported");
    ok(&[
        "export",
        &run_s,
        "--format",
        "hf",
        "--f16",
        "--out",
        &folder.display().to_string(),
    ]);
    let st = std::fs::read(folder.join("model.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&st).unwrap();
    assert!(meta
        .tensors()
        .values()
        .all(|t| t.dtype == safetensors::Dtype::F16));
    for (model, out) in [(&run, "a.mid"), (&folder, "b.mid")] {
        let out = dir.path().join(out);
        let text = ok(&[
            "generate",
            "--model",
            &model.display().to_string(),
            "--duration",
            "2",
            "--seed",
            "4",
            "--out",
            &out.display().to_string(),
        ]);
        assert!(text.contains("rendered"), "{text}");
        assert!(out.is_file() && out.with_extension("wav").is_file());
    }
    // A MIDI run in a mode that continues from a model needs one.
    let out = Command::new(bin)
        .args([
            "train",
            "--family",
            "midi",
            "--mode",
            "full",
            "--dataset",
            &ds_s,
            "--run",
        ])
        .arg(dir.path().join("r2"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model"));
}

/// The offline first run: `tunelab demo` imports the shipped collections, and the shipped model
/// (trained by tunelab on the chorales) loads and knows the chorales far better than chance.
#[test]
fn the_shipped_demo_is_ready_offline() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .arg("demo")
        .env("TUNELAB_DEMO_DIR", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let classical = read_pieces(&dir.path().join("datasets/classical")).unwrap();
    let folk = read_pieces(&dir.path().join("datasets/folk")).unwrap();
    assert_eq!((classical.len(), folk.len()), (250, 500));
    let model_dir = tunelab::demo::model_dir();
    let (cfg, tensors) = ModelSpec::resolve(&model_dir.display().to_string())
        .and_then(|s| s.midi_tensors(None, &Device::Cpu))
        .unwrap();
    let model = tunelab::models::music_transformer::MusicTransformer::new(
        &cfg,
        candle_nn::VarBuilder::from_tensors(tensors, candle_core::DType::F32, &Device::Cpu),
    )
    .unwrap();
    let some = |pieces: &[tunelab::data::midi_dataset::DatasetPiece]| -> Vec<_> {
        pieces
            .iter()
            .filter(|p| p.split == tunelab::data::dataset::Split::Valid)
            .take(4)
            .cloned()
            .collect()
    };
    let (ce_c, _) =
        tunelab::train::midi::cross_entropy(&model, &some(&classical), 256, 4, 2).unwrap();
    let (ce_f, _) = tunelab::train::midi::cross_entropy(&model, &some(&folk), 256, 4, 2).unwrap();
    let uniform = (tunelab::models::music_transformer::vocab::VOCAB as f64).ln();
    assert!(ce_c < 3.0, "chorales CE {ce_c:.3} (uniform {uniform:.3})");
    assert!(
        ce_f > ce_c + 1.0,
        "folk is new to it: {ce_f:.3} vs {ce_c:.3}"
    );
}

/// The engine prepares a session between two MIDI runs (as the studio's Listen panel asks),
/// streaming progress and answering with a log that opens.
#[test]
fn the_engine_prepares_a_midi_session() {
    use std::sync::mpsc;
    use tunelab::engine::{Command, EngineHandle, Event, JobOutput};
    use tunelab::eval::listen::prepare::SessionPlan;
    let dir = tempfile::tempdir().unwrap();
    let ds = midi_dataset(dir.path());
    let base = dir.path().join("base");
    run(config(&ds, Mode::Scratch, "", 1), &base);
    let tuned = dir.path().join("tuned");
    run(
        config(&ds, Mode::Lora, &base.display().to_string(), 1),
        &tuned,
    );
    let (tx, rx) = mpsc::channel();
    let engine = EngineHandle::spawn(tx, std::sync::Arc::new(|| {})).unwrap();
    engine.send(Command::PrepareSession {
        job: 9,
        dir: dir.path().join("session"),
        model_a: base.display().to_string(),
        model_b: tuned.display().to_string(),
        plan: Box::new(SessionPlan {
            prompts: vec!["improv".into()],
            seeds: vec![3],
            seconds: 2.0,
            trials: 2,
            ..Default::default()
        }),
        prime_seconds: 1.0,
    });
    let mut progress = 0;
    let log = loop {
        match rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .unwrap()
        {
            Event::Progress { job: 9, .. } => progress += 1,
            Event::Done { job: 9, result } => match result.unwrap() {
                JobOutput::SessionReady(log) => break log,
                other => panic!("{other:?}"),
            },
            _ => {}
        }
    };
    assert!(progress >= 2, "one progress line per model and prompt");
    let s = tunelab::eval::listen::SessionLog::open(&log).unwrap();
    assert_eq!(s.spec().clips.len(), 2);
    assert_eq!(s.spec().model_b.id, tuned.display().to_string());
}
