//! Audio heard while it is generated: frames handed to EnCodec's streaming decoder as soon as
//! their codebooks exist, across sliding windows and after an audio prompt; the streamed audio is
//! the returned clip's and equals the whole-clip decode (within 1e-4); cancelling stops it; the
//! engine sends it as `Event::Audio`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tunelab::engine::{Command, EngineHandle, Event, JobOutput};
use tunelab::error::Error;
use tunelab::generate::{
    generate, generate_audio_streaming, generate_codes_streaming, generate_codes_windowed,
    generate_streaming, AudioChunk, GenerateParams, Window,
};
use tunelab::models::musicgen::sampling::{Sampler, SamplingParams};

const BOUND: f32 = 1e-4;

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Collects streamed chunks, checking that each starts where the last ended.
#[derive(Default)]
struct Heard {
    first: Option<usize>,
    audio: Vec<f32>,
    chunks: usize,
}

impl Heard {
    fn take(&mut self, c: AudioChunk) {
        let first = *self.first.get_or_insert(c.start);
        assert_eq!(c.start, first + self.audio.len(), "chunks are contiguous");
        assert!(!c.samples.is_empty());
        self.audio.extend_from_slice(c.samples);
        self.chunks += 1;
    }
}

#[test]
fn streamed_generation_is_the_clip_and_the_whole_clip_decode() {
    let mut m = tiny();
    let params = GenerateParams {
        prompt: "calm piano".into(),
        duration: 0.5,
        seed: 4,
        ..Default::default()
    };
    let plain = generate(&mut m, &params, &mut |_| true).unwrap();
    let mut heard = Heard::default();
    let clip = generate_streaming(&mut m, &params, &mut |_| true, &mut |c| heard.take(c)).unwrap();
    // The same codes (the decoding loop is untouched); the audio streamed, chunk by chunk.
    assert_eq!(clip.codes, plain.codes);
    assert_eq!(heard.first, Some(0));
    // 25 frames decode in chunks of 1, 2, 4, 8 and the last 10 at the end; with the decoder's
    // lookahead of 3.75 frames the first two give no audio yet: three pieces are heard.
    assert_eq!(heard.chunks, 3, "{} chunks", heard.chunks);
    assert_eq!(heard.audio, clip.audio, "the streamed audio is the clip's");
    let err = max_diff(&clip.audio, &plain.audio);
    assert!(err <= BOUND, "streamed vs whole-clip decode: {err}");
    println!("25 frames streamed: max abs error {err:e} against the whole-clip decode");
}

#[test]
fn frames_are_handed_over_once_their_codebooks_exist() {
    let mut m = tiny();
    let k = m.num_codebooks();
    let cond = m.condition(&["ambient pads".to_string()]).unwrap();
    let w = Window {
        frames: 20,
        stride: 12,
    };
    let mut s1 = Sampler::new(SamplingParams::default(), 11);
    let want =
        generate_codes_windowed(&m, &cond, 45, None, 3.0, &mut s1, &mut |_| true, w).unwrap();
    let mut s2 = Sampler::new(SamplingParams::default(), 11);
    let steps = std::sync::atomic::AtomicUsize::new(0);
    let mut got: Vec<(usize, usize, Vec<u32>)> = Vec::new();
    let codes = generate_codes_streaming(
        &m,
        &cond,
        45,
        None,
        3.0,
        &mut s2,
        &mut |_| {
            steps.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            true
        },
        w,
        &mut |t, col| {
            got.push((
                t,
                steps.load(std::sync::atomic::Ordering::SeqCst),
                col.to_vec(),
            ));
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(codes, want, "handing frames over changes no code");
    assert_eq!(got.len(), 45);
    for (i, (t, _, col)) in got.iter().enumerate() {
        assert_eq!(*t, i, "in order, each once");
        let frame: Vec<u32> = codes.iter().map(|r| r[*t]).collect();
        assert_eq!(col, &frame);
    }
    // In the first window, frame t's last codebook is sampled at step t + K (delay pattern).
    for (t, step, _) in &got[..20] {
        assert_eq!(*step, t + k, "frame {t}");
    }
    // An error from the observer stops the generation.
    let mut s3 = Sampler::new(SamplingParams::default(), 11);
    let e = generate_codes_streaming(
        &m,
        &cond,
        45,
        None,
        3.0,
        &mut s3,
        &mut |_| true,
        w,
        &mut |t, _| {
            if t == 3 {
                Err(Error::Cancelled)
            } else {
                Ok(())
            }
        },
    );
    assert!(matches!(e, Err(Error::Cancelled)));
}

/// Longer than one window (20 frames, stride 12), with and without an audio prompt, one of them
/// longer than a window: the streamed audio equals the whole-clip decode of the same codes, and
/// a prompt's own audio is not streamed.
#[test]
fn streaming_across_windows_and_after_a_prompt() {
    let mut m = tiny();
    let k = m.num_codebooks();
    let hop = 640;
    let cond = m.condition(&["ambient pads".to_string()]).unwrap();
    let w = Window {
        frames: 20,
        stride: 12,
    };
    let prompt = |n: usize| -> Vec<Vec<u32>> {
        (0..k)
            .map(|q| (0..n).map(|t| ((q * 100 + t * 7) % 2048) as u32).collect())
            .collect()
    };
    for p_len in [0, 7, 25] {
        let p = prompt(p_len);
        let p = (p_len > 0).then_some(&p[..]);
        let mut s1 = Sampler::new(SamplingParams::default(), 3);
        let want =
            generate_codes_windowed(&m, &cond, 45, p, 3.0, &mut s1, &mut |_| true, w).unwrap();
        let mut s2 = Sampler::new(SamplingParams::default(), 3);
        let mut heard = Heard::default();
        let (codes, audio) =
            generate_audio_streaming(&m, &cond, 45, p, 3.0, &mut s2, &mut |_| true, w, &mut |c| {
                heard.take(c)
            })
            .unwrap();
        assert_eq!(codes, want, "prompt {p_len}");
        assert_eq!(audio.len(), 45 * hop);
        assert_eq!(
            heard.first,
            Some(p_len * hop),
            "the prompt's audio is not streamed"
        );
        assert_eq!(heard.audio, audio[p_len * hop..], "prompt {p_len}");
        let whole = m.decode_codes(&codes).unwrap();
        let err = max_diff(&audio, &whole);
        assert!(err <= BOUND, "prompt {p_len}: {err}");
        println!("45 frames, window 20/12, prompt {p_len}: max abs error {err:e}");
    }
}

#[test]
fn cancelling_stops_the_audio() {
    let mut m = tiny();
    let params = GenerateParams {
        prompt: "x".into(),
        duration: 2.0,
        ..Default::default()
    };
    // Both observers run on the generation's thread, one after the other.
    let cancelled = AtomicBool::new(false);
    let (mut before, mut after) = (0, 0);
    let r = generate_streaming(
        &mut m,
        &params,
        &mut |p| {
            if p.step >= 20 {
                cancelled.store(true, Ordering::SeqCst);
            }
            !cancelled.load(Ordering::SeqCst)
        },
        &mut |_| {
            if cancelled.load(Ordering::SeqCst) {
                after += 1
            } else {
                before += 1
            }
        },
    );
    assert!(matches!(r, Err(Error::Cancelled)));
    assert!(before > 0, "audio streamed before the cancel");
    assert_eq!(after, 0, "no audio after the cancel");
}

/// An engine asked to load the tiny fixture (job 1), and its events.
fn engine_with_tiny() -> (EngineHandle, mpsc::Receiver<Event>) {
    let (tx, rx) = mpsc::channel();
    let engine = EngineHandle::spawn(tx, Arc::new(|| {})).unwrap();
    engine.send(Command::LoadModel {
        job: 1,
        spec: tiny_dir().display().to_string(),
        weights: Default::default(),
        adapter: None,
        checkpoint: None,
    });
    (engine, rx)
}

#[test]
fn the_engine_streams_audio_events_that_make_the_clip() {
    let (engine, rx) = engine_with_tiny();
    let params = GenerateParams {
        prompt: "calm piano".into(),
        duration: 0.6,
        seed: 2,
        ..Default::default()
    };
    engine.send(Command::Generate {
        job: 2,
        params,
        stream: true,
    });
    let mut heard = Vec::new();
    let mut steps_after_first_audio = 0;
    let clip = loop {
        match rx
            .recv_timeout(Duration::from_secs(120))
            .expect("engine answers")
        {
            Event::Audio {
                job: 2,
                start,
                samples,
                sample_rate,
            } => {
                assert_eq!(sample_rate, 32_000);
                assert_eq!(start, heard.len(), "chunks are contiguous");
                heard.extend(samples);
            }
            Event::GenerateStep { job: 2, .. } if !heard.is_empty() => {
                steps_after_first_audio += 1;
            }
            Event::Done { job: 2, result } => match result.unwrap() {
                JobOutput::Clip(c) => break c,
                _ => panic!("expected a clip"),
            },
            Event::Done { job: 1, result } => {
                result.unwrap();
            }
            _ => {}
        }
    };
    assert!(
        steps_after_first_audio > 10,
        "audio arrives while generating ({steps_after_first_audio} steps after the first)"
    );
    assert_eq!(clip.audio.len(), 30 * 640);
    assert_eq!(heard, clip.audio);
    // And that clip is the whole-clip decode of its codes.
    let m = tiny();
    let err = max_diff(&heard, &m.decode_codes(&clip.codes).unwrap());
    assert!(err <= BOUND, "{err}");
}

/// Without `stream` the engine decodes the clip whole at the end (faster in all) and sends no
/// audio events; the clip has the same codes as a streamed one.
#[test]
fn the_engine_sends_no_audio_unless_asked_to_stream() {
    let (engine, rx) = engine_with_tiny();
    let params = GenerateParams {
        prompt: "calm piano".into(),
        duration: 0.4,
        seed: 5,
        ..Default::default()
    };
    let mut clips = Vec::new();
    for (job, stream) in [(2, false), (3, true)] {
        engine.send(Command::Generate {
            job,
            params: params.clone(),
            stream,
        });
        let mut audio_events = 0;
        let clip = loop {
            match rx
                .recv_timeout(Duration::from_secs(120))
                .expect("engine answers")
            {
                Event::Audio { job: j, .. } if j == job => audio_events += 1,
                Event::Done { job: j, result } if j == job => match result.unwrap() {
                    JobOutput::Clip(c) => break c,
                    _ => panic!("expected a clip"),
                },
                Event::Done { result, .. } => {
                    result.unwrap();
                }
                _ => {}
            }
        };
        assert_eq!(
            audio_events > 0,
            stream,
            "job {job}: {audio_events} audio events"
        );
        clips.push(clip);
    }
    assert_eq!(clips[0].codes, clips[1].codes);
    let err = max_diff(&clips[0].audio, &clips[1].audio);
    assert!(err <= BOUND, "{err}");
}
