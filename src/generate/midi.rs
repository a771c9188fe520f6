//! Music Transformer generation: "improv" (from nothing) or "primed" (continuing the first
//! seconds of a MIDI file or a dataset piece), one event at a time through the sliding KV
//! window, seeded; the result is written as `.mid` and rendered to `.wav` through a SoundFont.

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::data::midi::{decode, duration_of, encode, read_midi, write_midi, Note};
use crate::error::{Error, Result};
use crate::generate::StepProgress;
use crate::models::music_transformer::vocab::{BOS, EOS, EVENTS, PAD};
use crate::models::music_transformer::{Cache, MusicTransformer};
use crate::models::musicgen::sampling::{Sampler, SamplingParams};

/// Sample rate of rendered pieces.
pub const RENDER_RATE: u32 = 44_100;

/// Everything that determines a piece (with the model and its weights).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MidiGenerateParams {
    /// Length of the continuation in seconds of music (the sum of its time shifts)...
    pub seconds: Option<f64>,
    /// ...or in events (the first reached ends the piece).
    pub events: Option<usize>,
    pub seed: u64,
    pub sampling: SamplingParams,
    /// Events to continue (empty = improv).
    pub prime: Vec<u32>,
    /// General MIDI program of the written file and the rendering (0 = piano).
    pub program: u8,
}

impl Default for MidiGenerateParams {
    fn default() -> Self {
        Self {
            seconds: Some(20.0),
            events: None,
            seed: 0,
            sampling: Self::default_sampling(),
            prime: Vec::new(),
            program: 0,
        }
    }
}

impl MidiGenerateParams {
    /// Temperature 1.0 over the whole vocabulary with a 0.95 nucleus: the event vocabulary is
    /// small, and cutting its unlikely tail avoids stray notes without flattening the music.
    pub fn default_sampling() -> SamplingParams {
        SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.95,
        }
    }
}

/// The events of the first `seconds` of a MIDI file (notes that start before, cut there).
pub fn prime_from_midi(path: &Path, seconds: f64) -> Result<Vec<u32>> {
    let (notes, _) = read_midi(path)?;
    Ok(encode(&first_seconds(&notes, seconds)))
}

/// Notes starting before `seconds`, ending there at the latest.
pub fn first_seconds(notes: &[Note], seconds: f64) -> Vec<Note> {
    notes
        .iter()
        .filter(|n| n.start < seconds)
        .map(|n| Note {
            end: n.end.min(seconds),
            ..*n
        })
        .filter(|n| n.end > n.start)
        .collect()
}

/// The prime followed by the generated events.
pub fn generate_events(
    model: &MusicTransformer,
    params: &MidiGenerateParams,
    on_step: &mut dyn FnMut(StepProgress) -> bool,
) -> Result<Vec<u32>> {
    params.sampling.validate()?;
    let limit = match (params.seconds, params.events) {
        (Some(s), _) if !(s > 0.0 && s.is_finite()) => {
            return Err(Error::InvalidRequest(format!(
                "length must be a positive number of seconds, got {s}"
            )))
        }
        (_, Some(0)) => {
            return Err(Error::InvalidRequest(
                "length must be at least 1 event".into(),
            ))
        }
        (None, None) => {
            return Err(Error::InvalidRequest(
                "give a length in seconds or in events".into(),
            ))
        }
        // A model that never advances time would otherwise run forever: 400 events per
        // second is far beyond any real performance (~ 20–80).
        (Some(s), e) => e
            .unwrap_or(usize::MAX)
            .min((s * 400.0).ceil() as usize + 64),
        (None, Some(e)) => e,
    };
    if params.prime.iter().any(|&t| t >= EVENTS) {
        return Err(Error::InvalidRequest(
            "the prime holds tokens that are not events".into(),
        ));
    }
    let window = model.config().max_position_embeddings;
    let mut context = vec![BOS];
    context.extend(&params.prime);
    if context.len() > window {
        context.drain(..context.len() - window);
    }
    let device = model.device();
    let mut cache = Cache::new(model.config());
    let input = Tensor::from_vec(context.clone(), (1, context.len()), device)?;
    let logits = model.forward(&input, Some(&mut cache))?;
    let mut last = logits
        .narrow(1, context.len() - 1, 1)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mut sampler = Sampler::new(params.sampling, params.seed);
    let mut out = params.prime.clone();
    let mut generated = Vec::new();
    for step in 0..limit {
        // The length is the user's: never end early, never emit structure tokens.
        for t in [PAD, BOS, EOS] {
            if let Some(l) = last.get_mut(t as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
        let token = sampler.sample(&last);
        generated.push(token);
        out.push(token);
        if !on_step(StepProgress {
            step: step + 1,
            total: limit,
        }) {
            return Err(Error::Cancelled);
        }
        if params.seconds.is_some_and(|s| duration_of(&generated) >= s) {
            break;
        }
        if step + 1 == limit {
            break;
        }
        let input = Tensor::from_vec(vec![token], (1, 1), device)?;
        last = model
            .forward(&input, Some(&mut cache))?
            .flatten_all()?
            .to_vec1::<f32>()?;
    }
    Ok(out)
}

/// A generated piece as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// Prime and continuation, as events.
    pub events: Vec<u32>,
    pub notes: usize,
    pub midi: PathBuf,
    /// The rendering (`None` when no SoundFont could be used: see `render_error`).
    pub wav: Option<PathBuf>,
    /// Mono samples of the rendering at `sample_rate` (empty without one).
    pub audio: Vec<f32>,
    pub sample_rate: u32,
    pub render_error: Option<String>,
}

impl Piece {
    /// The file to listen to: the rendering, else the MIDI.
    pub fn playable(&self) -> &Path {
        self.wav.as_deref().unwrap_or(&self.midi)
    }
}

/// Writes `stem.mid` and renders `stem.wav` through `soundfont` (default: the first one
/// installed). Without a usable SoundFont the MIDI is still written and the reason is kept.
pub fn write_piece(
    events: &[u32],
    stem: &Path,
    program: u8,
    soundfont: Option<&Path>,
) -> Result<Piece> {
    let notes = decode(events);
    let midi = stem.with_extension("mid");
    write_midi(&midi, &notes, program)?;
    let mut piece = Piece {
        events: events.to_vec(),
        notes: notes.len(),
        midi,
        wav: None,
        audio: Vec::new(),
        sample_rate: RENDER_RATE,
        render_error: None,
    };
    let rendered = soundfont
        .map(Path::to_path_buf)
        .map_or_else(crate::generate::soundfont::find_soundfont, Ok)
        .and_then(|p| crate::generate::soundfont::SoundFont::load(&p))
        .and_then(|sf| crate::generate::soundfont::render(&sf, &notes, program, RENDER_RATE));
    match rendered {
        Ok(audio) => {
            let wav = stem.with_extension("wav");
            let bytes = crate::data::audio::wav_bytes(&audio, RENDER_RATE)?;
            crate::util::atomic_write(&wav, &bytes)?;
            piece.wav = Some(wav);
            piece.audio = audio;
        }
        Err(e) => {
            tracing::warn!("not rendering {}: {e}", piece.midi.display());
            piece.render_error = Some(e.to_string());
        }
    }
    Ok(piece)
}
