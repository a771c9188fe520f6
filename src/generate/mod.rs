//! Turning a prompt into a clip: conditioning, the decoding loop over the model's codebook
//! pattern (delay, parallel or flatten) with classifier-free guidance, continuation from audio,
//! sliding windows beyond the model's 30 s, and EnCodec decoding: of the whole clip at the end
//! ([`generate`]), or frame by frame while the clip is generated, each frame handed to EnCodec's
//! streaming decoder as soon as all its codebooks exist and the audio handed out as soon as it
//! is final ([`generate_streaming`]).

pub mod midi;
pub mod quality;
pub mod soundfont;

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::audio;
use crate::error::{Error, Result};
use crate::models::device::count_transfer;
use crate::models::encodec::DecodeStream;
use crate::models::musicgen::decoder::MusicgenLm;
use crate::models::musicgen::decoder::{Conditioning, DecoderCache};
use crate::models::musicgen::sampling::{guide, Sampler, SamplingParams};
use crate::models::musicgen::MusicGen;

/// audiocraft generates at most 30 s at once and slides the window by 18 s beyond that.
pub const WINDOW_SECONDS: f64 = 30.0;
pub const STRIDE_SECONDS: f64 = 18.0;

/// Everything that determines a clip (with the model and its weights).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateParams {
    /// Text description; empty = unconditional.
    pub prompt: String,
    /// Length of the returned clip in seconds (prompt audio included, as audiocraft).
    pub duration: f64,
    pub seed: u64,
    pub sampling: SamplingParams,
    /// Classifier-free guidance scale; 1.0 disables guidance.
    pub guidance_scale: f64,
    /// Audio to continue (any format; resampled to the model's rate, mono).
    pub prompt_audio: Option<PathBuf>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            duration: 10.0,
            seed: 0,
            sampling: SamplingParams::default(),
            guidance_scale: 3.0,
            prompt_audio: None,
        }
    }
}

/// Progress reported after each decoder step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepProgress {
    pub step: usize,
    pub total: usize,
}

/// A generated clip.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    /// `[K][T]` un-delayed codes: exactly what the EnCodec decoder received.
    pub codes: Vec<Vec<u32>>,
    pub audio: Vec<f32>,
    pub sample_rate: u32,
}

/// Called after every decoder step; returning `false` cancels. `Send`: the decoding loop runs on
/// a thread of the compute pool (see [`generate_codes_windowed`]).
pub type StepFn<'a> = dyn FnMut(StepProgress) -> bool + Send + 'a;

/// Audio of a clip that no later frame can change, handed out while the clip is generated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioChunk<'a> {
    /// Index in the clip (prompt audio included) of the first sample.
    pub start: usize,
    pub samples: &'a [f32],
}

/// Receives the streamed audio, chunk after chunk, in order and without gaps. `Send`, as
/// [`StepFn`].
pub type AudioFn<'a> = dyn FnMut(AudioChunk<'_>) + Send + 'a;

/// Called with each generated frame as soon as all its codebooks exist (after the codebook
/// pattern's delay): its index in the clip and its K codes. Frames of an audio prompt are not
/// passed (they were known before the first step). An error stops the generation.
pub type FrameFn<'a> = dyn FnMut(usize, &[u32]) -> Result<()> + Send + 'a;

/// Generates `params.duration` seconds of audio.
pub fn generate(
    model: &mut MusicGen,
    params: &GenerateParams,
    on_step: &mut StepFn,
) -> Result<Clip> {
    let (frames, prompt_codes, cond) = prepare(model, params)?;
    let mut sampler = Sampler::new(params.sampling, params.seed);
    let codes = generate_codes(
        model,
        &cond,
        frames,
        prompt_codes.as_deref(),
        params.guidance_scale,
        &mut sampler,
        on_step,
    )?;
    let audio = model.decode_codes(&codes)?;
    Ok(Clip {
        codes,
        audio,
        sample_rate: model.sample_rate(),
    })
}

/// As [`generate`] (the same codes), with the audio handed to `on_audio` while it is generated:
/// each frame goes to EnCodec's streaming decoder as soon as its codebooks exist, and every
/// sample as soon as it is final (EnCodec's right context makes that 2402 samples, 3.75 frames,
/// after its frame at 32 kHz). An audio prompt's own audio is decoded into the clip but not
/// handed out: the first chunk starts at the prompt's end. The returned clip's audio is the
/// streamed audio (it equals the whole-clip decode of [`generate`] within 1e-4; see
/// `models::encodec::stream`). Cancelling (`on_step` returning `false`) stops the audio too.
pub fn generate_streaming(
    model: &mut MusicGen,
    params: &GenerateParams,
    on_step: &mut StepFn,
    on_audio: &mut AudioFn,
) -> Result<Clip> {
    let (frames, prompt_codes, cond) = prepare(model, params)?;
    let mut sampler = Sampler::new(params.sampling, params.seed);
    let (codes, audio) = generate_audio_streaming(
        model,
        &cond,
        frames,
        prompt_codes.as_deref(),
        params.guidance_scale,
        &mut sampler,
        on_step,
        default_window(model),
        on_audio,
    )?;
    Ok(Clip {
        codes,
        audio,
        sample_rate: model.sample_rate(),
    })
}

/// What [`prepare`] returns: the clip's frames, the audio prompt's codes, the conditioning.
type Prepared = (usize, Option<Vec<Vec<u32>>>, Conditioning);

/// Checks `params` and conditions the model.
fn prepare(model: &mut MusicGen, params: &GenerateParams) -> Result<Prepared> {
    params.sampling.validate()?;
    if !(params.duration > 0.0 && params.duration.is_finite()) {
        return Err(Error::InvalidRequest(format!(
            "duration must be positive, got {}",
            params.duration
        )));
    }
    if !(params.guidance_scale.is_finite()) {
        return Err(Error::InvalidRequest(
            "guidance scale must be finite".into(),
        ));
    }
    let frames = (params.duration * model.frame_rate()).round().max(1.0) as usize;
    let prompt_codes = match &params.prompt_audio {
        Some(p) => {
            let samples = audio::load_mono(p, model.sample_rate())?;
            let codes = model.encode_audio(&samples)?;
            let t = codes.first().map(|c| c.len()).unwrap_or(0);
            if t >= frames {
                return Err(Error::InvalidRequest(format!(
                    "{}: the prompt audio ({:.1} s) is not shorter than the requested duration ({:.1} s)",
                    p.display(),
                    t as f64 / model.frame_rate(),
                    params.duration
                )));
            }
            Some(codes)
        }
        None => None,
    };
    let cond = model.condition(std::slice::from_ref(&params.prompt))?;
    Ok((frames, prompt_codes, cond))
}

/// [`generate_codes_windowed`] with the audio decoded while the codes are generated (see
/// [`generate_streaming`]): the codes and the whole clip's audio, prompt included.
#[allow(clippy::too_many_arguments)]
pub fn generate_audio_streaming(
    model: &MusicGen,
    cond: &Conditioning,
    frames: usize,
    prompt: Option<&[Vec<u32>]>,
    guidance_scale: f64,
    sampler: &mut Sampler,
    on_step: &mut StepFn,
    window: Window,
    on_audio: &mut AudioFn,
) -> Result<(Vec<Vec<u32>>, Vec<f32>)> {
    let mut out = AudioOut::new(model, prompt, on_audio)?;
    let codes = generate_codes_streaming(
        model,
        cond,
        frames,
        prompt,
        guidance_scale,
        sampler,
        on_step,
        window,
        &mut |_, col| out.frame(col),
    )?;
    let audio = out.finish()?;
    Ok((codes, audio))
}

/// Between the decoding loop and the caller: the streaming decoder, the clip's audio so far,
/// and the caller's `on_audio`, which gets every sample past the audio prompt.
struct AudioOut<'m, 'f, 'g> {
    stream: DecodeStream<'m>,
    device: Device,
    audio: Vec<f32>,
    prompt_samples: usize,
    on_audio: &'f mut AudioFn<'g>,
}

impl<'m, 'f, 'g> AudioOut<'m, 'f, 'g> {
    /// Starts the stream with the audio prompt's frames: its audio is the clip's start, and
    /// the context of the first generated frame.
    fn new(
        model: &'m MusicGen,
        prompt: Option<&[Vec<u32>]>,
        on_audio: &'f mut AudioFn<'g>,
    ) -> Result<Self> {
        let stream = model.codec()?.decode_stream(model.num_codebooks())?;
        let p_len = prompt.and_then(|p| p.first()).map_or(0, |r| r.len());
        let mut out = Self {
            stream,
            device: model.device().clone(),
            audio: Vec::new(),
            prompt_samples: p_len * model.config.audio_encoder.hop_length(),
            on_audio,
        };
        if let Some(p) = prompt.filter(|_| p_len > 0) {
            if p.iter().any(|r| r.len() != p_len) {
                return Err(Error::InvalidRequest(
                    "prompt codes must be rows of equal length".into(),
                ));
            }
            let flat: Vec<u32> = p.iter().flatten().copied().collect();
            let codes = Tensor::from_vec(flat, (1, p.len(), p_len), &out.device)?;
            let y = out.stream.push(&codes)?;
            out.append(&y)?;
        }
        Ok(out)
    }

    fn frame(&mut self, col: &[u32]) -> Result<()> {
        let y = self.stream.push_frame(col)?;
        self.append(&y)
    }

    fn finish(self) -> Result<Vec<f32>> {
        let Self {
            stream,
            mut audio,
            prompt_samples,
            on_audio,
            ..
        } = self;
        hand_out(&mut audio, prompt_samples, on_audio, &stream.finish()?)?;
        Ok(audio)
    }

    fn append(&mut self, y: &Tensor) -> Result<()> {
        hand_out(&mut self.audio, self.prompt_samples, self.on_audio, y)
    }
}

/// Adds decoded audio `y` to the clip so far and hands out what lies past the prompt.
fn hand_out(
    audio: &mut Vec<f32>,
    prompt_samples: usize,
    on_audio: &mut AudioFn,
    y: &Tensor,
) -> Result<()> {
    let samples = y.flatten_all()?.to_vec1::<f32>()?;
    let start = audio.len();
    audio.extend_from_slice(&samples);
    let skip = prompt_samples.saturating_sub(start).min(samples.len());
    if skip < samples.len() {
        on_audio(AudioChunk {
            start: start + skip,
            samples: &samples[skip..],
        });
    }
    Ok(())
}

/// The longest sequence generated in one window, in frames.
pub fn window_frames(model: &MusicGen) -> usize {
    let by_time = (WINDOW_SECONDS * model.frame_rate()).round() as usize;
    let pattern = model.config.decoder.codebook_pattern;
    let by_positions = pattern.max_frames(
        model.config.decoder.max_position_embeddings,
        model.num_codebooks(),
    );
    by_time.min(by_positions).max(1)
}

/// Codes for `frames` frames (prompt included), sliding audiocraft's window (30 s, 18 s stride)
/// when longer than the model's.
pub fn generate_codes(
    model: &MusicGen,
    cond: &Conditioning,
    frames: usize,
    prompt: Option<&[Vec<u32>]>,
    guidance_scale: f64,
    sampler: &mut Sampler,
    on_step: &mut StepFn,
) -> Result<Vec<Vec<u32>>> {
    generate_codes_windowed(
        model,
        cond,
        frames,
        prompt,
        guidance_scale,
        sampler,
        on_step,
        default_window(model),
    )
}

/// audiocraft's window (30 s, or what the model's positions allow) and stride (18 s).
pub fn default_window(model: &MusicGen) -> Window {
    let window = window_frames(model);
    let stride = ((STRIDE_SECONDS * model.frame_rate()).round() as usize).clamp(1, window);
    Window {
        frames: window,
        stride,
    }
}

/// Sliding-window geometry in frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub frames: usize,
    pub stride: usize,
}

/// As [`generate_codes`] with an explicit window: the first window is generated as a whole;
/// each next one is prompted with the last `frames - stride` frames and adds up to `stride`.
///
/// The loop runs on a thread of rayon's pool, the pool that splits each step's matrix products:
/// called from outside it, every product handed its work over and slept until woken, and that
/// hand-off cost 7 % of a musicgen-small step (102 → 95 ms, `tunelab bench generate`).
#[allow(clippy::too_many_arguments)]
pub fn generate_codes_windowed(
    model: &MusicGen,
    cond: &Conditioning,
    frames: usize,
    prompt: Option<&[Vec<u32>]>,
    guidance_scale: f64,
    sampler: &mut Sampler,
    on_step: &mut StepFn,
    window: Window,
) -> Result<Vec<Vec<u32>>> {
    generate_codes_hooked(
        model,
        cond,
        frames,
        prompt,
        guidance_scale,
        sampler,
        on_step,
        window,
        &mut |_, _| Ok(()),
        None,
    )
}

/// As [`generate_codes_windowed`], handing every generated frame to `on_frame` as soon as all
/// its codebooks exist, in order: in a following window, the frames it adds (its context was
/// handed over by the window before).
#[allow(clippy::too_many_arguments)]
pub fn generate_codes_streaming(
    model: &MusicGen,
    cond: &Conditioning,
    frames: usize,
    prompt: Option<&[Vec<u32>]>,
    guidance_scale: f64,
    sampler: &mut Sampler,
    on_step: &mut StepFn,
    window: Window,
    on_frame: &mut FrameFn,
) -> Result<Vec<Vec<u32>>> {
    generate_codes_hooked(
        model,
        cond,
        frames,
        prompt,
        guidance_scale,
        sampler,
        on_step,
        window,
        on_frame,
        None,
    )
}

/// Sees every decoder step of [`generate_codes_observed`]: the quality harness
/// ([`quality`]) drives an f32 model in lockstep through it, so it sees exactly the inputs the
/// generating model saw.
pub trait StepObserver: Send {
    /// A window of `len` decoder positions starts: whatever the observer caches starts afresh.
    fn start_window(&mut self, len: usize) -> Result<()>;
    /// One decoder step: its input ids `[B, K, S]` as the model was fed them (CFG's batch layout,
    /// the prompt's prefill included), and for each codebook sampled at this step its index and
    /// the guided logits the sampler drew from ([`guided_row`]). Codebooks in pad slots or forced
    /// by a prompt are not listed.
    fn observe(&mut self, input: &Tensor, sampled: &[(usize, Vec<f32>)]) -> Result<()>;
}

/// As [`generate_codes_windowed`], with an observer of every step.
#[allow(clippy::too_many_arguments)]
pub fn generate_codes_observed(
    model: &MusicGen,
    cond: &Conditioning,
    frames: usize,
    prompt: Option<&[Vec<u32>]>,
    guidance_scale: f64,
    sampler: &mut Sampler,
    on_step: &mut StepFn,
    window: Window,
    observer: &mut dyn StepObserver,
) -> Result<Vec<Vec<u32>>> {
    generate_codes_hooked(
        model,
        cond,
        frames,
        prompt,
        guidance_scale,
        sampler,
        on_step,
        window,
        &mut |_, _| Ok(()),
        Some(observer),
    )
}

/// The windowed decoding loop with both hooks: frames handed over as they complete, and an
/// observer of every step.
#[allow(clippy::too_many_arguments)]
fn generate_codes_hooked(
    model: &MusicGen,
    cond: &Conditioning,
    frames: usize,
    prompt: Option<&[Vec<u32>]>,
    guidance_scale: f64,
    sampler: &mut Sampler,
    on_step: &mut StepFn,
    window: Window,
    on_frame: &mut FrameFn,
    mut observer: Option<&mut dyn StepObserver>,
) -> Result<Vec<Vec<u32>>> {
    rayon::scope(|_| {
        // Decoder steps of a window of `n` frames (n + K for the delay pattern, n + 1 for
        // parallel, n·K + 1 for flatten).
        let pattern = model.config.decoder.codebook_pattern;
        let kc = model.num_codebooks();
        let steps = |n: usize| pattern.len(n, kc);
        let Window {
            frames: win,
            stride,
        } = window;
        if stride == 0 || stride > win {
            return Err(Error::InvalidRequest(format!(
                "window stride {stride} must be in 1..={win}"
            )));
        }
        let first = frames.min(win);
        let context = win - stride;
        // New frames added by each following window; the plan also sizes the progress bar.
        let mut follow = Vec::new();
        let mut have = first;
        while have < frames {
            let new = (frames - have).min(stride);
            follow.push(new);
            have += new;
        }
        let total = steps(first) + follow.iter().map(|n| steps(context + n)).sum::<usize>();
        let mut codes = generate_window(
            model,
            cond,
            first,
            prompt,
            guidance_scale,
            sampler,
            Observers {
                on_step: &mut *on_step,
                on_frame: &mut *on_frame,
                step: observer.as_deref_mut(),
            },
            Offsets {
                step: 0,
                frame: 0,
                total,
            },
        )?;
        let mut done = steps(first);
        for new in follow {
            let have = codes[0].len();
            let mut ctx: Vec<Vec<u32>> =
                codes.iter().map(|c| c[have - context..].to_vec()).collect();
            // A prompt longer than one window keeps forcing its frames in the next windows.
            if let Some(p) = prompt {
                for (row, prow) in ctx.iter_mut().zip(p) {
                    if prow.len() > have {
                        row.extend_from_slice(&prow[have..prow.len().min(have + new)]);
                    }
                }
            }
            let next = generate_window(
                model,
                cond,
                context + new,
                Some(&ctx),
                guidance_scale,
                sampler,
                Observers {
                    on_step: &mut *on_step,
                    on_frame: &mut *on_frame,
                    step: observer.as_deref_mut(),
                },
                Offsets {
                    step: done,
                    frame: have - context,
                    total,
                },
            )?;
            done += steps(context + new);
            for (row, n) in codes.iter_mut().zip(next) {
                row.extend_from_slice(&n[context..]);
            }
        }
        Ok(codes)
    })
}

/// What a window reports to: progress per step, each frame once complete, and (the quality
/// harness) every step's input and guided logits.
struct Observers<'a, 'b, 'c, 'o> {
    on_step: &'a mut StepFn<'b>,
    on_frame: &'a mut FrameFn<'c>,
    step: Option<&'a mut (dyn StepObserver + 'o)>,
}

/// Where a window sits in the whole generation: its first step and first frame, and the steps
/// of the whole generation.
#[derive(Debug, Clone, Copy)]
struct Offsets {
    step: usize,
    frame: usize,
    total: usize,
}

/// One window: the decoding loop over the model's codebook pattern (one decoder step per
/// position; at each step only the codebooks that the pattern places there are sampled, a single
/// one for flatten). Frames `< prompt length` are forced to the prompt's codes.
#[allow(clippy::too_many_arguments)]
fn generate_window<'o>(
    model: &MusicGen,
    cond: &Conditioning,
    frames: usize,
    prompt: Option<&[Vec<u32>]>,
    guidance_scale: f64,
    sampler: &mut Sampler,
    observers: Observers<'_, '_, '_, 'o>,
    offsets: Offsets,
) -> Result<Vec<Vec<u32>>> {
    let Observers {
        on_step,
        on_frame,
        step: mut observer,
    } = observers;
    let k = model.num_codebooks();
    let pad = model.config.decoder.pad_token_id;
    let vocab = model.config.decoder.vocab_size;
    let pattern = model.config.decoder.codebook_pattern;
    let len = pattern.len(frames, k);
    let p_len = prompt
        .map(|p| p.first().map(|r| r.len()).unwrap_or(0))
        .unwrap_or(0);
    if let Some(p) = prompt {
        if p.len() != k || p.iter().any(|r| r.len() != p_len) {
            return Err(Error::InvalidRequest(format!(
                "prompt codes must be {k} rows of equal length"
            )));
        }
    }
    let cond = batch_conditioning(cond, guidance_scale)?;
    let batch = cond.batch_size()?;
    let device = model.device().clone();

    // delayed[k][pos]; position 0 is BOS (= pad) for every codebook.
    let mut delayed = vec![vec![pad; len]; k];
    if let Some(p) = prompt {
        for (kk, row) in p.iter().enumerate() {
            for (t, &c) in row.iter().enumerate().take(frames) {
                delayed[kk][pattern.position(t, kk, k)] = c;
            }
        }
    }
    let mut cache = model.lm.new_cache(len);
    if let Some(o) = observer.as_deref_mut() {
        o.start_window(len)?;
    }
    // Every position before codebook 0's frame p_len is forced by the prompt (or is padding), so
    // that is the first sampled position (p_len + 1, or p_len·K + 1 for flatten); its input
    // columns are fed in one prefill step.
    let mut pos = pattern.position(p_len, 0, k);
    let mut input_cols = 0..pos;
    // The next frame to hand over: complete once its last codebook (the latest position in
    // every pattern) is sampled.
    let mut next_frame = p_len;
    while pos < len {
        let mut cols = Vec::with_capacity(batch * k * input_cols.len());
        for _ in 0..batch {
            for row in &delayed {
                cols.extend(input_cols.clone().map(|c| row[c]));
            }
        }
        let s = input_cols.len();
        // The step's two transfers: the input ids up, the last logits down.
        count_transfer();
        let input = Tensor::from_vec(cols, (batch, k, s), &device)?;
        let rows = last_logits(&model.lm, &input, &cond, &mut cache)?;
        count_transfer();
        let mut sampled = Vec::new();
        for (kk, slots) in delayed.iter_mut().enumerate() {
            let Some(t) = pattern.frame_at(pos, kk, k, frames) else {
                continue; // pad slot
            };
            if t < p_len {
                continue; // forced by the prompt
            }
            let row = guided_row(&rows, kk, guidance_scale, vocab);
            slots[pos] = sampler.sample(&row);
            if observer.is_some() {
                sampled.push((kk, row));
            }
        }
        if let Some(o) = observer.as_deref_mut() {
            o.observe(&input, &sampled)?;
        }
        if !on_step(StepProgress {
            step: offsets.step + pos,
            total: offsets.total,
        }) {
            return Err(Error::Cancelled);
        }
        while next_frame < frames && pattern.position(next_frame, k - 1, k) <= pos {
            let col: Vec<u32> = (0..k)
                .map(|kk| delayed[kk][pattern.position(next_frame, kk, k)])
                .collect();
            on_frame(offsets.frame + next_frame, &col)?;
            next_frame += 1;
        }
        input_cols = pos..pos + 1;
        pos += 1;
    }
    Ok(pattern.revert(&delayed, frames))
}

/// The conditioning batch a step runs on: with guidance (scale ≠ 1) the conditioned rows and
/// as many unconditional ones, else the conditioned rows alone.
pub(crate) fn batch_conditioning(cond: &Conditioning, guidance_scale: f64) -> Result<Conditioning> {
    if guidance_scale != 1.0 {
        cond.with_unconditional()
    } else {
        Ok(cond.clone())
    }
}

/// One decoder step through `lm` with its cache: the logits of the last input position, in f32,
/// `[B][K][V]`.
pub(crate) fn last_logits(
    lm: &MusicgenLm,
    input: &Tensor,
    cond: &Conditioning,
    cache: &mut DecoderCache,
) -> Result<Vec<Vec<Vec<f32>>>> {
    let s = input.dim(2)?;
    let logits = lm.forward(input, cond, Some(cache))?;
    let last = logits
        .narrow(2, s - 1, 1)?
        .squeeze(2)?
        .to_dtype(DType::F32)?;
    Ok(last.to_vec3::<f32>()?)
}

/// Codebook `kk`'s logits as the sampler sees them: guided when the batch carries the
/// unconditional rows (scale ≠ 1, `uncond + scale · (cond − uncond)`), cut to the vocabulary.
pub(crate) fn guided_row(
    rows: &[Vec<Vec<f32>>],
    kk: usize,
    guidance_scale: f64,
    vocab: usize,
) -> Vec<f32> {
    let mut row = if guidance_scale != 1.0 {
        guide(&rows[0][kk], &rows[1][kk], guidance_scale as f32)
    } else {
        rows[0][kk].clone()
    };
    row.truncate(vocab);
    row
}
