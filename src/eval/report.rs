//! One objective evaluation of a model on a dataset split (`tunelab eval`): held-out
//! cross-entropy and perplexity per codebook on the split's tokens (the same tokens for every
//! model), FAD / FAD∞ / KAD between generated clips (the split's captions, fixed seeds) and the
//! split's audio on EnCodec encoder latents (128-d frames before quantisation), log-mel distance
//! per pair, and a memorisation check against the training segments.
//!
//! These FAD/KAD numbers use MusicGen's own EnCodec latents: they compare models within tunelab
//! and are **not comparable** with VGGish FAD published elsewhere.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::audio;
use crate::data::dataset::{read_segments, segment_slice};
use crate::data::dataset::{Segment, Split, SAMPLE_RATE};
use crate::data::token_cache::{codec_fingerprint, encode_dataset};
use crate::dsp::mel::log_mel_mse;
use crate::error::{Error, Result};
use crate::eval::metrics::fad::{bootstrap_ci, fad_inf, ConfidenceInterval, FadInf};
use crate::eval::metrics::kad::{kad_bootstrap, KadBootstrap, KadConfig};
use crate::eval::metrics::memorise::{flag_copies, frame_keys, mean_latent, nearest, CopyFlag};
use crate::generate::{generate, GenerateParams};
use crate::models::device::Precision;
use crate::models::musicgen::MusicGen;
use crate::models::Family;
use crate::store::spec::weights_sha256;
use crate::store::{LoadOptions, ModelSpec};
use crate::train::data::{make_batch, Example, TokenData};
use crate::train::loss::{codebook_cross_entropy, shift_right};

pub const LATENT_CAVEAT: &str = "FAD and KAD are computed on MusicGen's EnCodec encoder latents \
(128-d, 50 Hz): compare models within tunelab only; the numbers are not comparable with VGGish \
FAD published elsewhere.";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvalOptions {
    pub split: Split,
    /// Clips to generate (the first N segments of the split).
    pub clips: usize,
    /// Seconds per generated clip (at most the segment's length).
    pub seconds: f64,
    pub seed: u64,
    pub guidance_scale: f64,
    /// Longest excerpt for the held-out loss.
    pub max_seconds: f64,
    pub bootstrap: usize,
    /// A LAION-CLAP folder (HF layout, safetensors): adds the prompt–clip CLAP score.
    pub clap: Option<std::path::PathBuf>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            split: Split::Test,
            clips: 8,
            seconds: 10.0,
            seed: 0,
            guidance_scale: 3.0,
            max_seconds: 30.0,
            bootstrap: 200,
            clap: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOut {
    pub ce: f64,
    pub ppl: f64,
    pub ce_q: Vec<f64>,
    pub ppl_q: Vec<f64>,
    pub tokens: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipEval {
    pub segment: String,
    pub prompt: String,
    pub seed: u64,
    pub log_mel_mse: f64,
    /// Nearest training segment by mean latent, and its distance.
    pub nearest_train: String,
    pub nearest_distance: f64,
}

/// One model's evaluation. Every model gets the held-out loss; MusicGen models also get the
/// metrics on generated audio (`generated`). A Music Transformer's pieces are rendered through a
/// SoundFont, so audio metrics would measure the synthesiser as much as the model: its report
/// carries the held-out loss only, and says so by `generated: None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEval {
    pub model: String,
    /// SHA-256 over the model's `.safetensors` files, as a listening session records it, so a
    /// report is matched to the session's models by weights rather than by name.
    #[serde(default)]
    pub weights_sha256: String,
    pub held_out: HeldOut,
    #[serde(default)]
    pub generated: Option<GeneratedEval>,
    /// Everything but generation (loss, latents, metrics).
    pub eval_seconds: f64,
}

/// Metrics on clips generated from the split's captions (MusicGen).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedEval {
    pub fad: ConfidenceInterval,
    pub fad_inf: FadInf,
    pub kad: KadBootstrap,
    pub mean_log_mel_mse: f64,
    pub clips: Vec<ClipEval>,
    /// Generated clips sharing ≥ 1 s of tokens (all codebooks) with a training segment.
    pub copies: Vec<CopyFlag>,
    pub generated_frames: usize,
    pub generated_seconds: f64,
    pub reference_frames: usize,
    pub reference_seconds: f64,
    pub generation_seconds: f64,
    /// Prompt–clip CLAP similarity (with `EvalOptions::clap`).
    #[serde(default)]
    pub clap: Option<crate::eval::metrics::clap::ClapScore>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub dataset: String,
    pub split: Split,
    pub options: EvalOptions,
    pub models: Vec<ModelEval>,
    pub caveat: String,
}

impl EvalReport {
    /// Writes the report as pretty JSON (atomic).
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::InvalidRequest(format!("serialising the report: {e}")))?;
        crate::util::atomic_write(path, &bytes)?;
        Ok(())
    }

    /// Reads a report written by [`EvalReport::save`] or `tunelab eval --json`.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::bad_file(path, format!("not an evaluation report: {e}")))
    }
}

fn segment_audio(seg: &Segment) -> Result<Vec<f32>> {
    let samples = audio::load_mono(&seg.path, SAMPLE_RATE)?;
    Ok(segment_slice(&samples, seg).to_vec())
}

/// EnCodec encoder latents of mono audio as frames `[T][128]`.
pub fn latent_frames(model: &MusicGen, samples: &[f32]) -> Result<Vec<Vec<f32>>> {
    let t = Tensor::from_slice(samples, (1, 1, samples.len()), model.device())?;
    let lat = model.codec()?.encode_latents(&t)?; // [1, D, T]
    let lat = lat.squeeze(0)?.t()?.to_dtype(DType::F32)?.contiguous()?;
    Ok(lat.to_vec2::<f32>()?)
}

/// Evaluates `model` on the dataset's split.
pub fn evaluate(
    model: &mut MusicGen,
    label: &str,
    dataset: &Path,
    opts: &EvalOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<ModelEval> {
    progress("tokenising the dataset (cached)");
    encode_dataset(dataset, model)?;
    let tokens = TokenData::load(dataset, &codec_fingerprint(model)?)?;
    let split = match opts.split {
        Split::Train => &tokens.train,
        Split::Valid => &tokens.valid,
        Split::Test => &tokens.test,
    };
    if split.is_empty() {
        return Err(Error::InvalidRequest(format!(
            "{}: the {:?} split is empty",
            dataset.display(),
            opts.split
        )));
    }
    let mut eval_time = 0f64;
    let started = Instant::now();
    progress("held-out cross-entropy");
    let held_out = held_out_ce(model, split, opts.max_seconds)?;

    progress("reference latents");
    let all = read_segments(dataset)?;
    let refs: Vec<&Segment> = all.iter().filter(|s| s.split == opts.split).collect();
    let ref_audio = refs
        .iter()
        .map(|s| segment_audio(s))
        .collect::<Result<Vec<_>>>()?;
    let train_segs: Vec<&Segment> = all.iter().filter(|s| s.split == Split::Train).collect();
    // Training audio is decoded one segment at a time (a corpus may not fit in memory twice).
    let train = train_segs
        .iter()
        .map(|s| Ok((s.id.clone(), segment_audio(s)?)));
    let train_codes: Vec<Vec<Vec<u32>>> = tokens.train.iter().map(|e| e.codes.clone()).collect();
    let references = References::new(model, ref_audio, train, &train_codes)?;
    eval_time += started.elapsed().as_secs_f64();

    let mut generated = Vec::new();
    let mut gen_time = 0f64;
    for (i, seg) in refs.iter().take(opts.clips).enumerate() {
        progress(&format!(
            "generating clip {} of {}",
            i + 1,
            opts.clips.min(refs.len())
        ));
        let params = GenerateParams {
            prompt: seg.caption.clone(),
            duration: opts.seconds.min(seg.duration),
            seed: opts.seed + i as u64,
            guidance_scale: opts.guidance_scale,
            ..Default::default()
        };
        let t = Instant::now();
        let clip = generate(model, &params, &mut |_| true)?;
        gen_time += t.elapsed().as_secs_f64();
        generated.push(GeneratedClip {
            segment: seg.id.clone(),
            prompt: seg.caption.clone(),
            seed: params.seed,
            audio: clip.audio,
            codes: clip.codes,
        });
    }
    progress("FAD, FAD∞, KAD");
    let (mut metrics, timings) = score_generated(model, &references, &generated, opts)?;
    metrics.generation_seconds = gen_time;
    eval_time += timings.total();
    if let Some(dir) = &opts.clap {
        progress("CLAP score");
        let t = Instant::now();
        let clap = crate::models::clap::Clap::load(dir, model.device())?;
        let items: Vec<(&str, &[f32])> = generated
            .iter()
            .map(|g| (g.prompt.as_str(), g.audio.as_slice()))
            .collect();
        metrics.clap = Some(crate::eval::metrics::clap::clap_score(&clap, &items)?);
        eval_time += t.elapsed().as_secs_f64();
    }
    Ok(ModelEval {
        model: label.to_string(),
        weights_sha256: String::new(),
        held_out,
        generated: Some(metrics),
        eval_seconds: eval_time,
    })
}

/// A generated clip, as the audio metrics need it (32 kHz mono and its codes
/// `[codebooks][frames]`).
#[derive(Debug, Clone)]
pub struct GeneratedClip {
    /// The reference segment it is compared with (same index in [`References::audio`]).
    pub segment: String,
    pub prompt: String,
    pub seed: u64,
    pub audio: Vec<f32>,
    pub codes: Vec<Vec<u32>>,
}

/// What generated clips are measured against: the split's audio and its latent frames, and the
/// training segments' mean latents and token frames (for the memorisation check).
pub struct References {
    pub audio: Vec<Vec<f32>>,
    pub frames: Vec<Vec<f32>>,
    pub train_ids: Vec<String>,
    pub train_means: Vec<Vec<f32>>,
    pub train_keys: Vec<Vec<u64>>,
}

impl References {
    /// Encodes the reference audio and the training segments `(id, audio)` (streamed) to
    /// EnCodec latents; `train_codes` are the training segments' tokens `[codebooks][frames]`.
    pub fn new(
        model: &MusicGen,
        audio: Vec<Vec<f32>>,
        train: impl IntoIterator<Item = Result<(String, Vec<f32>)>>,
        train_codes: &[Vec<Vec<u32>>],
    ) -> Result<Self> {
        let mut frames = Vec::new();
        for a in &audio {
            frames.extend(latent_frames(model, a)?);
        }
        let mut train_ids = Vec::new();
        let mut train_means = Vec::new();
        for item in train {
            let (id, a) = item?;
            train_means.push(mean_latent(&latent_frames(model, &a)?)?);
            train_ids.push(id);
        }
        let train_keys = train_codes
            .iter()
            .map(|c| {
                let rows: Vec<&[u32]> = c.iter().map(Vec::as_slice).collect();
                frame_keys(&rows)
            })
            .collect::<std::result::Result<_, _>>()?;
        Ok(Self {
            audio,
            frames,
            train_ids,
            train_means,
            train_keys,
        })
    }
}

/// Seconds spent in each stage of [`score_generated`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScoreTimings {
    pub latents: f64,
    pub log_mel: f64,
    pub nearest: f64,
    pub fad: f64,
    pub fad_inf: f64,
    pub kad: f64,
    pub copies: f64,
}

impl ScoreTimings {
    pub fn total(&self) -> f64 {
        self.latents
            + self.log_mel
            + self.nearest
            + self.fad
            + self.fad_inf
            + self.kad
            + self.copies
    }
}

/// The audio metrics of `generated` (clip `i` paired with reference clip `i` for the log-mel
/// distance) against `refs`. `generation_seconds` is left at 0 for the caller.
pub fn score_generated(
    model: &MusicGen,
    refs: &References,
    generated: &[GeneratedClip],
    opts: &EvalOptions,
) -> Result<(GeneratedEval, ScoreTimings)> {
    let mut tm = ScoreTimings::default();
    let mut frames = Vec::new();
    let mut gen_keys = Vec::new();
    let mut clips = Vec::new();
    let mut gen_seconds = 0f64;
    for (i, g) in generated.iter().enumerate() {
        gen_seconds += g.audio.len() as f64 / SAMPLE_RATE as f64;
        let t = Instant::now();
        let f = latent_frames(model, &g.audio)?;
        tm.latents += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (ni, nd) = nearest(&mean_latent(&f)?, &refs.train_means)?;
        tm.nearest += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let reference = refs.audio.get(i).ok_or_else(|| {
            Error::InvalidRequest(format!("no reference clip for generated clip {i}"))
        })?;
        let mel = log_mel_mse(&g.audio, reference, SAMPLE_RATE)?;
        tm.log_mel += t.elapsed().as_secs_f64();
        clips.push(ClipEval {
            segment: g.segment.clone(),
            prompt: g.prompt.clone(),
            seed: g.seed,
            log_mel_mse: mel,
            nearest_train: refs.train_ids.get(ni).cloned().unwrap_or_default(),
            nearest_distance: nd,
        });
        frames.extend(f);
        let rows: Vec<&[u32]> = g.codes.iter().map(Vec::as_slice).collect();
        gen_keys.push(frame_keys(&rows)?);
    }
    let t = Instant::now();
    let fad = bootstrap_ci(&frames, &refs.frames, opts.bootstrap.max(20), opts.seed)?;
    tm.fad = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let n = frames.len();
    let sizes: Vec<usize> = [8, 4, 2, 1].iter().map(|d| (n / d).max(2)).collect();
    let fad_inf = fad_inf(&frames, &refs.frames, &sizes, 10, opts.seed)?;
    tm.fad_inf = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let kad = kad_bootstrap(
        &frames,
        &refs.frames,
        &KadConfig {
            seed: opts.seed,
            ..Default::default()
        },
        opts.bootstrap.max(100),
    )?;
    tm.kad = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let copies = flag_copies(&gen_keys, &refs.train_keys, 50)?;
    tm.copies = t.elapsed().as_secs_f64();
    let mean_mel = clips.iter().map(|c| c.log_mel_mse).sum::<f64>() / clips.len().max(1) as f64;
    Ok((
        GeneratedEval {
            fad: fad.recentred(),
            fad_inf,
            kad,
            mean_log_mel_mse: mean_mel,
            clips,
            copies,
            generated_frames: n,
            generated_seconds: gen_seconds,
            reference_frames: refs.frames.len(),
            reference_seconds: refs.audio.iter().map(|a| a.len()).sum::<usize>() as f64
                / SAMPLE_RATE as f64,
            generation_seconds: 0.0,
            clap: None,
        },
        tm,
    ))
}

/// A Music Transformer's held-out cross-entropy over every event of the split's pieces (windows
/// of the model's length). `ce_q` / `ppl_q` hold the one event stream.
pub fn evaluate_midi(
    model: &crate::models::music_transformer::MusicTransformer,
    label: &str,
    dataset: &Path,
    split: Split,
) -> Result<ModelEval> {
    let started = Instant::now();
    let pieces: Vec<_> = crate::data::midi_dataset::read_pieces(dataset)?
        .into_iter()
        .filter(|p| p.split == split)
        .collect();
    if pieces.is_empty() {
        return Err(Error::InvalidRequest(format!(
            "{}: the {split:?} split has no piece",
            dataset.display()
        )));
    }
    let window = model.config().max_position_embeddings;
    let (ce, tokens) = crate::train::midi::cross_entropy(model, &pieces, window, 8, usize::MAX)?;
    Ok(ModelEval {
        model: label.to_string(),
        weights_sha256: String::new(),
        held_out: HeldOut {
            ce,
            ppl: ce.exp(),
            ce_q: vec![ce],
            ppl_q: vec![ce.exp()],
            tokens,
        },
        generated: None,
        eval_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Evaluates the model named `spec` (Hub id, folder or run of either family) on `dataset`: a
/// MIDI dataset gets [`evaluate_midi`], an audio dataset [`evaluate`]. `adapter`, a LoRA
/// adapter (PEFT folder or run), applies to a MusicGen. The report carries the weights' hash.
pub fn evaluate_spec(
    spec: &str,
    adapter: Option<&Path>,
    dataset: &Path,
    opts: &EvalOptions,
    device: &candle_core::Device,
    precision: Precision,
    progress: &mut dyn FnMut(&str),
) -> Result<ModelEval> {
    let model = ModelSpec::resolve(spec)?;
    let midi_model = model.family() == Family::Midi;
    if crate::data::midi_dataset::is_midi_dataset(dataset) != midi_model {
        return Err(Error::InvalidRequest(format!(
            "{spec} is a {} model but {} is a{} dataset",
            if midi_model { "MIDI" } else { "MusicGen" },
            dataset.display(),
            if midi_model { "n audio" } else { " MIDI" },
        )));
    }
    let adapter = adapter
        .map(|a| ModelSpec::resolve(&a.display().to_string()))
        .transpose()?;
    if midi_model {
        progress("held-out cross-entropy");
        let load = LoadOptions {
            adapter: adapter.as_ref(),
            ..Default::default()
        };
        let m = model.load(device, load, &mut |_| {})?.into_midi(&model)?;
        let mut r = evaluate_midi(&m, spec, dataset, opts.split)?;
        r.weights_sha256 = model.local_dir().map(weights_sha256).unwrap_or_default();
        return Ok(r);
    }
    // A Hub id is hashed in the snapshot it was downloaded to.
    let dir = match &model {
        ModelSpec::Hub(_) => model.musicgen_dir(&mut |_| {})?,
        other => other.local_dir().map(Path::to_path_buf).unwrap_or_default(),
    };
    let load = LoadOptions {
        adapter: adapter.as_ref(),
        precision,
        ..Default::default()
    };
    let mut m = model
        .load(device, load, &mut |_| {})?
        .into_musicgen(&model)?;
    let (label, hash_dir) = match adapter.as_ref().and_then(ModelSpec::local_dir) {
        Some(a) => (format!("{spec} + {}", a.display()), a.to_path_buf()),
        None => (spec.to_string(), dir),
    };
    let mut r = evaluate(&mut m, &label, dataset, opts, progress)?;
    r.weights_sha256 = weights_sha256(&hash_dir);
    Ok(r)
}

/// Token-weighted cross-entropy per codebook over the examples (their own captions), each
/// cropped to `max_seconds` and to the model's positions.
pub fn held_out_ce(
    model: &mut MusicGen,
    examples: &[Example],
    max_seconds: f64,
) -> Result<HeldOut> {
    let k = model.num_codebooks();
    let mut max_frames = (max_seconds * model.frame_rate()).round().max(1.0) as usize;
    // A model with fewer positions than the crop needs (a scratch model sized for its own
    // training crop) is scored on the longest crop it takes, from each example's start, as
    // training crops to `--max-seconds`.
    let (pattern, positions) = (
        model.config.decoder.codebook_pattern,
        model.config.decoder.max_position_embeddings,
    );
    while max_frames > 1 && pattern.len(max_frames, k) > positions {
        max_frames -= 1;
    }
    let mut ce_sum = vec![0f64; k];
    let mut tok = vec![0usize; k];
    for ex in examples {
        let pad = model.config.decoder.pad_token_id;
        let batch = make_batch(
            &[(ex, ex.caption.clone())],
            max_frames,
            pad,
            model.config.decoder.codebook_pattern,
            None,
            model.device(),
        )?;
        let cond = model.condition(&batch.captions)?;
        let inputs = shift_right(&batch.labels, model.config.decoder.bos_token_id)?;
        let logits = model.lm.forward(&inputs, &cond, None)?;
        let out = codebook_cross_entropy(&logits.detach(), &batch.labels, pad)?;
        for q in 0..k {
            ce_sum[q] += out.ce[q] as f64 * out.tokens[q] as f64;
            tok[q] += out.tokens[q];
        }
    }
    let ce_q: Vec<f64> = (0..k).map(|q| ce_sum[q] / tok[q].max(1) as f64).collect();
    let ce = ce_q.iter().sum::<f64>() / k.max(1) as f64;
    Ok(HeldOut {
        ce,
        ppl: ce.exp(),
        ppl_q: ce_q.iter().map(|c| c.exp()).collect(),
        ce_q,
        tokens: tok.iter().sum(),
    })
}
