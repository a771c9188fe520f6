//! The engine worker: Command in, Event out, one Done per job, cancel between steps, and
//! generation features (seeding, continuation, sliding windows) on the tiny fixture model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use candle_core::Device;
use common::*;
use tunelab::engine::{Command, EngineHandle, Event, JobOutput};
use tunelab::generate::{generate, generate_codes_windowed, GenerateParams, Window};
use tunelab::models::musicgen::sampling::{Sampler, SamplingParams};

fn recv_done(rx: &mpsc::Receiver<Event>, job: u64) -> (Vec<Event>, Result<JobOutput, String>) {
    let mut seen = Vec::new();
    loop {
        let ev = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("engine answers");
        if let Event::Done { job: j, result } = &ev {
            if *j == job {
                return (seen, result.clone());
            }
        }
        seen.push(ev);
    }
}

#[test]
fn worker_loads_generates_with_progress_and_cancels() {
    let (tx, rx) = mpsc::channel();
    let wakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let w = wakes.clone();
    let engine = EngineHandle::spawn(
        tx,
        Arc::new(move || {
            w.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }),
    )
    .unwrap();

    // Generating with no model is an error event, not a panic.
    engine.send(Command::Generate {
        job: 1,
        params: GenerateParams::default(),
        stream: false,
    });
    let (_, r) = recv_done(&rx, 1);
    assert!(r.unwrap_err().contains("no model"));

    engine.send(Command::LoadModel {
        job: 2,
        spec: tiny_dir().display().to_string(),
        weights: Default::default(),
        adapter: None,
        checkpoint: None,
    });
    let (_, r) = recv_done(&rx, 2);
    let JobOutput::ModelLoaded(info) = r.unwrap() else {
        panic!("expected a model")
    };
    assert_eq!((info.codebooks, info.sample_rate), (4, 32_000));

    let params = GenerateParams {
        prompt: "calm piano".into(),
        duration: 0.5,
        seed: 3,
        ..Default::default()
    };
    engine.send(Command::Generate {
        job: 3,
        params,
        stream: false,
    });
    let (events, r) = recv_done(&rx, 3);
    let JobOutput::Clip(clip) = r.unwrap() else {
        panic!("expected a clip")
    };
    assert_eq!(clip.codes.len(), 4);
    assert_eq!(clip.codes[0].len(), 25);
    assert_eq!(clip.audio.len(), 25 * 640);
    let steps: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            Event::GenerateStep { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(steps.len(), 25 + 3, "one event per decoder step");
    assert!(steps.windows(2).all(|w| w[1] == w[0] + 1));
    assert!(wakes.load(std::sync::atomic::Ordering::SeqCst) >= steps.len());

    // Cancel: a long clip, cancelled at its first step event.
    let params = GenerateParams {
        prompt: "x".into(),
        duration: 25.0,
        ..Default::default()
    };
    engine.send(Command::Generate {
        job: 4,
        params,
        stream: false,
    });
    loop {
        if let Event::GenerateStep { job: 4, .. } =
            rx.recv_timeout(Duration::from_secs(60)).unwrap()
        {
            engine.cancel(4);
            break;
        }
    }
    let (events, r) = recv_done(&rx, 4);
    assert_eq!(r.unwrap_err(), "cancelled");
    assert!(events.len() < 1250 + 3, "stopped early");
    drop(engine); // joins the thread
}

#[test]
fn same_seed_same_clip_and_other_seed_other_clip() {
    let mut m = tiny();
    let p = |seed| GenerateParams {
        prompt: "folk fiddle".into(),
        duration: 0.4,
        seed,
        ..Default::default()
    };
    let a = generate(&mut m, &p(7), &mut |_| true).unwrap();
    let b = generate(&mut m, &p(7), &mut |_| true).unwrap();
    let c = generate(&mut m, &p(8), &mut |_| true).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.codes, c.codes);
}

#[test]
fn continuation_keeps_the_prompt_codes() {
    let mut m = tiny();
    let r = load("encodec_ref.safetensors");
    let wave = r["wave"].flatten_all().unwrap().to_vec1::<f32>().unwrap(); // 0.5 s
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prompt.wav");
    tunelab::data::audio::write_wav(&path, &wave, 32_000).unwrap();
    let prompt_codes = m
        .encode_audio(&tunelab::data::audio::load_mono(&path, 32_000).unwrap())
        .unwrap();
    let params = GenerateParams {
        prompt: "calm piano".into(),
        duration: 1.0,
        prompt_audio: Some(path.clone()),
        ..Default::default()
    };
    let clip = generate(&mut m, &params, &mut |_| true).unwrap();
    assert_eq!(clip.codes[0].len(), 50);
    for (row, p) in clip.codes.iter().zip(&prompt_codes) {
        assert_eq!(&row[..p.len()], &p[..]);
    }
    // A prompt as long as the clip is refused with the file named.
    let e = generate(
        &mut m,
        &GenerateParams {
            duration: 0.3,
            ..params
        },
        &mut |_| true,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("prompt.wav") && e.contains("not shorter"), "{e}");
}

#[test]
fn sliding_window_extends_beyond_the_window_and_starts_like_one_window() {
    let mut m = tiny();
    let cond = m.condition(&["ambient pads".to_string()]).unwrap();
    let params = SamplingParams::default();
    let w = Window {
        frames: 20,
        stride: 12,
    };
    let mut s1 = Sampler::new(params, 11);
    let long =
        generate_codes_windowed(&m, &cond, 45, None, 3.0, &mut s1, &mut |_| true, w).unwrap();
    assert!(long.iter().all(|r| r.len() == 45));
    let mut s2 = Sampler::new(params, 11);
    let one = generate_codes_windowed(&m, &cond, 20, None, 3.0, &mut s2, &mut |_| true, w).unwrap();
    for (a, b) in long.iter().zip(&one) {
        assert_eq!(&a[..20], &b[..]);
    }
    assert!(generate_codes_windowed(
        &m,
        &cond,
        45,
        None,
        3.0,
        &mut s2,
        &mut |_| true,
        Window {
            frames: 20,
            stride: 0
        }
    )
    .is_err());
    let _ = Device::Cpu;
}

/// The flatten pattern (set on the tiny model: generation only reads the pattern from the config)
/// steps K times per frame, keeps an audio prompt's frames, slides its window like the delay
/// pattern, and returns codes in frame order.
#[test]
fn flatten_generation_steps_once_per_codebook_and_frame() {
    use tunelab::models::musicgen::patterns::CodebookPattern;
    let mut m = tiny();
    m.config.decoder.codebook_pattern = CodebookPattern::Flatten;
    let k = m.num_codebooks();
    let cond = m.condition(&["ambient pads".to_string()]).unwrap();
    let params = SamplingParams::default();
    let w = Window {
        frames: 20,
        stride: 12,
    };
    let mut steps = Vec::new();
    let mut s1 = Sampler::new(params, 5);
    let one = generate_codes_windowed(
        &m,
        &cond,
        20,
        None,
        3.0,
        &mut s1,
        &mut |p| {
            steps.push((p.step, p.total));
            true
        },
        w,
    )
    .unwrap();
    assert_eq!(one.len(), k);
    assert!(one
        .iter()
        .all(|r| r.len() == 20 && r.iter().all(|t| *t < 2048)));
    // One step per (frame, codebook) after the BOS.
    assert_eq!(steps.len(), 20 * k);
    assert!(steps.iter().all(|&(s, t)| t == 20 * k + 1 && s < t));
    // Longer than a window: the first window is the same, every frame is there.
    let mut s2 = Sampler::new(params, 5);
    let long =
        generate_codes_windowed(&m, &cond, 45, None, 3.0, &mut s2, &mut |_| true, w).unwrap();
    assert!(long.iter().all(|r| r.len() == 45));
    for (a, b) in long.iter().zip(&one) {
        assert_eq!(&a[..20], &b[..]);
    }
    // A prompt's frames are kept as they are, in every codebook.
    let prompt: Vec<Vec<u32>> = (0..k)
        .map(|q| (0..7).map(|t| (q * 100 + t) as u32).collect())
        .collect();
    let mut s3 = Sampler::new(params, 5);
    let cont =
        generate_codes_windowed(&m, &cond, 20, Some(&prompt), 3.0, &mut s3, &mut |_| true, w)
            .unwrap();
    for (row, p) in cont.iter().zip(&prompt) {
        assert_eq!(row.len(), 20);
        assert_eq!(&row[..7], &p[..]);
    }
    // The whole-clip path decodes a clip of the requested length.
    let clip = generate(
        &mut m,
        &GenerateParams {
            prompt: "calm piano".into(),
            duration: 0.5,
            ..Default::default()
        },
        &mut |_| true,
    )
    .unwrap();
    assert!(clip.codes.iter().all(|r| r.len() == 25));
    assert!(!clip.audio.is_empty());
}

/// A run's checkpoint is chosen by name when loading; naming one for a model that is not a run,
/// or one the run does not have, is refused.
#[test]
fn a_runs_checkpoint_loads_by_name() {
    use tunelab::data::midi::{write_midi, Note};
    use tunelab::models::music_transformer::{save, MusicTransformerConfig};
    use tunelab::models::Family;
    use tunelab::store::run_config::{Mode, TrainConfig};
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("mt");
    let cfg = MusicTransformerConfig::preset("tiny").unwrap();
    save(&model, &cfg, &cfg.init_tensors(0, &Device::Cpu).unwrap()).unwrap();
    let songs = tmp.path().join("songs");
    for k in 0..4u8 {
        let notes: Vec<Note> = (0..16)
            .map(|i| Note {
                pitch: 60 + k + [0, 4, 7][i % 3],
                velocity: 70,
                start: i as f64 * 0.2,
                end: i as f64 * 0.2 + 0.15,
            })
            .collect();
        write_midi(&songs.join(format!("s{k}.mid")), &notes, 0).unwrap();
    }
    let ds = tmp.path().join("ds");
    tunelab::data::import::import_dir(&songs, &ds, &Default::default()).unwrap();
    let (tx, rx) = mpsc::channel();
    let engine = EngineHandle::spawn(tx, Arc::new(|| {})).unwrap();
    let mut config = TrainConfig {
        dataset: ds,
        model: model.display().to_string(),
        family: Family::Midi,
        mode: Mode::Full,
        steps: 2,
        batch_size: 2,
        eval_every: 0,
        checkpoint_every: 1,
        ..Default::default()
    };
    config.midi.max_events = Some(32);
    let run = tmp.path().join("run");
    engine.send(Command::Train {
        job: 1,
        run_dir: run.clone(),
        config: Some(Box::new(config)),
    });
    recv_done(&rx, 1).1.unwrap();
    let load = |job, spec: &std::path::Path, checkpoint: &str| {
        engine.send(Command::LoadModel {
            job,
            spec: spec.display().to_string(),
            weights: Default::default(),
            adapter: None,
            checkpoint: Some(checkpoint.into()),
        });
        recv_done(&rx, job).1
    };
    assert!(matches!(
        load(2, &run, "step-000001"),
        Ok(JobOutput::ModelLoaded(_))
    ));
    assert!(load(3, &run, "step-000099").is_err());
    assert!(load(4, &model, "best")
        .unwrap_err()
        .contains("not a training run"));
}

/// A cancel names its job: sent in the same frame as a new command it still stops the running
/// job (it used to be cleared by the send), and a queued job cancelled before it starts never
/// runs, while the others run.
#[test]
fn a_cancel_stops_only_its_own_job() {
    let (tx, rx) = mpsc::channel();
    let engine = EngineHandle::spawn(tx, Arc::new(|| {})).unwrap();
    engine.send(Command::LoadModel {
        job: 1,
        spec: tiny_dir().display().to_string(),
        weights: Default::default(),
        adapter: None,
        checkpoint: None,
    });
    recv_done(&rx, 1).1.unwrap();
    let gen = |job, duration| Command::Generate {
        job,
        params: GenerateParams {
            prompt: "x".into(),
            duration,
            ..Default::default()
        },
        stream: false,
    };
    engine.send(gen(2, 25.0));
    loop {
        if let Event::GenerateStep { job: 2, .. } =
            rx.recv_timeout(Duration::from_secs(60)).unwrap()
        {
            // One frame: cancel the running job, queue two more, cancel the second of them.
            engine.cancel(2);
            engine.send(gen(3, 0.2));
            engine.send(gen(4, 0.2));
            engine.cancel(4);
            break;
        }
    }
    let (events, r) = recv_done(&rx, 2);
    assert_eq!(r.unwrap_err(), "cancelled");
    assert!(events.len() < 1250 + 3, "job 2 stopped early");
    let (_, r) = recv_done(&rx, 3);
    assert!(matches!(r, Ok(JobOutput::Clip(_))), "job 3 ran: {r:?}");
    let (events, r) = recv_done(&rx, 4);
    assert_eq!(r.unwrap_err(), "cancelled");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::GenerateStep { job: 4, .. })),
        "job 4 never started"
    );
}

/// The parameter count shown for a model is summed over its real tensors: for a MusicGen the
/// LM (decoder, heads, text projection), for a Music Transformer every tensor.
#[test]
fn a_loaded_model_counts_its_real_tensors() {
    let (tx, rx) = mpsc::channel();
    let engine = EngineHandle::spawn(tx, Arc::new(|| {})).unwrap();
    engine.send(Command::LoadModel {
        job: 1,
        spec: tiny_dir().display().to_string(),
        weights: Default::default(),
        adapter: None,
        checkpoint: None,
    });
    let JobOutput::ModelLoaded(info) = recv_done(&rx, 1).1.unwrap() else {
        panic!("expected a model")
    };
    let file = load("tiny-musicgen/model.safetensors");
    let lm: usize = file
        .iter()
        .filter(|(k, _)| k.starts_with("decoder.") || k.starts_with("enc_to_dec_proj."))
        .map(|(_, t)| t.elem_count())
        .sum();
    assert_eq!(info.parameters, lm);
    // The same with 8-bit weights: counted before quantisation.
    engine.send(Command::LoadModel {
        job: 2,
        spec: tiny_dir().display().to_string(),
        weights: tunelab::models::nn::WeightMode::Q8,
        adapter: None,
        checkpoint: None,
    });
    let JobOutput::ModelLoaded(info) = recv_done(&rx, 2).1.unwrap() else {
        panic!("expected a model")
    };
    assert_eq!(info.parameters, lm);
    assert!(
        info.description.contains("weights q8"),
        "{}",
        info.description
    );

    let midi = tunelab::demo::model_dir();
    engine.send(Command::LoadModel {
        job: 3,
        spec: midi.display().to_string(),
        weights: Default::default(),
        adapter: None,
        checkpoint: None,
    });
    let JobOutput::ModelLoaded(info) = recv_done(&rx, 3).1.unwrap() else {
        panic!("expected a model")
    };
    let tensors =
        candle_core::safetensors::load(midi.join("model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(
        info.parameters,
        tensors.values().map(|t| t.elem_count()).sum::<usize>()
    );
}

/// 8-bit weights compute in f32: on a device set to bf16 a q8 request (the studio's default)
/// loads f32 weights in bf16 instead of failing, and the description says what was loaded.
#[test]
fn quantised_weights_on_a_reduced_precision_device_load_in_f32_weights() {
    use tunelab::models::device::{DeviceChoice, Precision};
    let (tx, rx) = mpsc::channel();
    let engine = EngineHandle::spawn(tx, Arc::new(|| {})).unwrap();
    engine.send(Command::SetDevice {
        job: 1,
        device: DeviceChoice::Cpu,
        precision: Some(Precision::Bf16),
        tf32: false,
    });
    assert!(recv_done(&rx, 1).1.is_ok());
    engine.send(Command::LoadModel {
        job: 2,
        spec: tiny_dir().display().to_string(),
        weights: tunelab::models::nn::WeightMode::Q8,
        adapter: None,
        checkpoint: None,
    });
    let JobOutput::ModelLoaded(info) = recv_done(&rx, 2).1.unwrap() else {
        panic!("expected a model")
    };
    assert_eq!(info.precision, Precision::Bf16);
    assert!(
        info.description.contains("weights f32, computing in bf16"),
        "{}",
        info.description
    );
}
