//! Builds a blind A/B session: both models generate every prompt with the same seeds, each pair
//! is trimmed to the same length and loudness-matched (EBU R128, both to the target, lowered
//! together if the true peak would pass the ceiling), clips are written under opaque names (their
//! content hash) and the spec goes to line 1 of the session log.

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::loudness::match_pair;
use super::{sha256_hex, ModelRef, SessionClip, SessionLog, SessionSpec, Which};
use crate::data::audio::wav_bytes;
use crate::data::midi::decode;
use crate::error::{Error, Result};
use crate::generate::midi::{generate_events, prime_from_midi, MidiGenerateParams, RENDER_RATE};
use crate::generate::soundfont::{render, SoundFont};
use crate::generate::{generate, GenerateParams};
use crate::models::device::Precision;
use crate::models::music_transformer::MusicTransformer;
use crate::models::musicgen::MusicGen;
use crate::store::spec::weights_sha256;
use crate::store::{LoadOptions, Model, ModelSpec};
use crate::util::atomic_write;

/// What a session is made of (besides the two models).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionPlan {
    pub prompts: Vec<String>,
    pub seeds: Vec<u64>,
    pub seconds: f64,
    /// Scored trials per rater, fixed in advance.
    pub trials: usize,
    pub abx: bool,
    pub catch_every: usize,
    pub tie_allowed: bool,
    pub target_lufs: f64,
    pub max_true_peak_dbtp: f64,
    pub generation: GenerateParams,
    pub seed: u64,
}

impl Default for SessionPlan {
    fn default() -> Self {
        Self {
            prompts: Vec::new(),
            seeds: vec![0, 1],
            seconds: 8.0,
            trials: 20,
            abx: false,
            catch_every: 0,
            tie_allowed: true,
            target_lufs: -23.0,
            max_true_peak_dbtp: -1.0,
            generation: GenerateParams::default(),
            seed: 0,
        }
    }
}

/// What makes the clips of a contender: a MusicGen (prompts are text), or a Music Transformer
/// rendered through a SoundFont (a prompt is empty or `improv` for improv, else the path of a
/// MIDI file whose first `prime_seconds` the piece continues).
pub enum ClipMaker {
    Musicgen(Box<MusicGen>),
    Midi {
        model: Box<MusicTransformer>,
        soundfont: SoundFont,
        prime_seconds: f64,
    },
}

impl ClipMaker {
    fn sample_rate(&self) -> u32 {
        match self {
            Self::Musicgen(m) => m.sample_rate(),
            Self::Midi { .. } => RENDER_RATE,
        }
    }

    fn clip(&mut self, prompt: &str, seed: u64, plan: &SessionPlan) -> Result<Vec<f32>> {
        match self {
            Self::Musicgen(model) => {
                let params = GenerateParams {
                    prompt: prompt.to_string(),
                    duration: plan.seconds,
                    seed,
                    ..plan.generation.clone()
                };
                Ok(generate(model, &params, &mut |_| true)?.audio)
            }
            Self::Midi {
                model,
                soundfont,
                prime_seconds,
            } => {
                let p = prompt.trim();
                let prime = if p.is_empty() || p.eq_ignore_ascii_case("improv") {
                    Vec::new()
                } else {
                    prime_from_midi(Path::new(p), *prime_seconds)?
                };
                let params = MidiGenerateParams {
                    seconds: Some(plan.seconds),
                    seed,
                    prime,
                    ..Default::default()
                };
                let events = generate_events(model, &params, &mut |_| true)?;
                let audio = render(soundfont, &decode(&events), params.program, RENDER_RATE)?;
                // Trials are `seconds` long: the release tail and any overhang are cut.
                let n = (plan.seconds * RENDER_RATE as f64) as usize;
                Ok(audio.into_iter().take(n).collect())
            }
        }
    }
}

/// A model to test: how to name it and how to get it.
pub struct Contender<'a> {
    pub label: String,
    pub id: String,
    pub weights_sha256: String,
    /// Loads the model (called once, so only one model is in memory at a time).
    pub load: Box<dyn FnMut() -> Result<ClipMaker> + 'a>,
}

/// The contender named `spec` (see [`ModelSpec::resolve`]): a Music Transformer (model folder
/// or MIDI run; pieces rendered through `soundfont`, default the first installed) or a MusicGen
/// (Hub id, folder or run), loaded on `device` in `precision` (a MusicGen's) when its turn comes.
pub fn contender(
    label: &str,
    spec: &str,
    prime_seconds: f64,
    soundfont: Option<PathBuf>,
    device: &Device,
    precision: Precision,
) -> Result<Contender<'static>> {
    use crate::generate::soundfont::find_soundfont;
    let model = ModelSpec::resolve(spec)?;
    // A Hub id is downloaded now, so its snapshot can be hashed into the session's spec.
    let (model, dir) = match model {
        ModelSpec::Hub(_) => {
            let dir = model.musicgen_dir(&mut |_| {})?;
            (ModelSpec::MusicgenDir(dir.clone()), dir)
        }
        other => {
            let dir = other.local_dir().map(Path::to_path_buf).unwrap_or_default();
            (other, dir)
        }
    };
    let device = device.clone();
    Ok(Contender {
        label: label.into(),
        id: spec.into(),
        weights_sha256: weights_sha256(&dir),
        load: Box::new(move || {
            let opts = LoadOptions {
                precision,
                ..Default::default()
            };
            let loaded = model.load(&device, opts, &mut |_| {})?;
            Ok(match loaded.model {
                Model::Musicgen(m) => ClipMaker::Musicgen(m),
                Model::Midi(m) => {
                    let sf = match &soundfont {
                        Some(p) => p.clone(),
                        None => find_soundfont()?,
                    };
                    ClipMaker::Midi {
                        model: m,
                        soundfont: SoundFont::load(&sf)?,
                        prime_seconds,
                    }
                }
            })
        }),
    })
}

/// Generates, matches and writes every clip into `dir/clips/`, and creates `dir/session.jsonl`.
pub fn prepare_session<'a>(
    dir: &Path,
    id: &str,
    plan: &SessionPlan,
    mut a: Contender<'a>,
    mut b: Contender<'a>,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    if plan.prompts.is_empty() || plan.seeds.is_empty() {
        return Err(Error::InvalidRequest(
            "a session needs at least one prompt and one seed".into(),
        ));
    }
    let mut audio: [Vec<Vec<f32>>; 2] = [Vec::new(), Vec::new()];
    let mut rates = [0u32; 2];
    for (slot, c) in [&mut a, &mut b].into_iter().enumerate() {
        let mut maker = (c.load)()?;
        rates[slot] = maker.sample_rate();
        for (pi, prompt) in plan.prompts.iter().enumerate() {
            for &seed in &plan.seeds {
                progress(&format!("{}: prompt {} seed {seed}", c.label, pi + 1));
                audio[slot].push(maker.clip(prompt, seed, plan)?);
            }
        }
    }
    if rates[0] != rates[1] {
        return Err(Error::InvalidRequest(format!(
            "{} makes {} Hz audio and {} {} Hz: compare models of one family",
            a.label, rates[0], b.label, rates[1]
        )));
    }
    let rate = rates[0];
    let clip_dir = dir.join("clips");
    let mut clips = Vec::new();
    let mut i = 0;
    for pi in 0..plan.prompts.len() {
        for &seed in &plan.seeds {
            let m = match_pair(
                &audio[0][i],
                &audio[1][i],
                rate,
                plan.target_lufs,
                plan.max_true_peak_dbtp,
            )?;
            for (which, samples, gain) in
                [(Which::A, &m.a, m.gain_a_db), (Which::B, &m.b, m.gain_b_db)]
            {
                let bytes = wav_bytes(samples, rate)?;
                let sha = sha256_hex(&bytes);
                let path = clip_dir.join(format!("{sha}.wav"));
                atomic_write(&path, &bytes)?;
                clips.push(SessionClip {
                    prompt_idx: pi,
                    seed,
                    model: which,
                    path,
                    sha256: sha,
                    gain_db: gain,
                });
            }
            i += 1;
        }
    }
    let spec = SessionSpec {
        id: id.to_string(),
        model_a: ModelRef {
            label: a.label,
            id: a.id,
            weights_sha256: a.weights_sha256,
        },
        model_b: ModelRef {
            label: b.label,
            id: b.id,
            weights_sha256: b.weights_sha256,
        },
        prompts: plan.prompts.clone(),
        clips_per_prompt: plan.seeds.len(),
        seconds: plan.seconds,
        seeds: plan.seeds.clone(),
        generation: serde_json::to_value(&plan.generation)
            .map_err(|e| Error::InvalidRequest(e.to_string()))?,
        trials: plan.trials,
        abx: plan.abx,
        catch_every: plan.catch_every,
        tie_allowed: plan.tie_allowed,
        seed: plan.seed,
        clips,
    };
    let log = dir.join("session.jsonl");
    SessionLog::create(&log, spec)?;
    Ok(log)
}
