//! The EnCodec decoder run chunk by chunk: codes go in as they are generated (any number of
//! frames at a time) and every audio sample comes out as soon as no later frame can change it,
//! so a clip can be heard while the language model is still generating it.
//!
//! MusicGen's codec is non-causal, so "as soon as" has a delay, which each layer's state makes
//! explicit (the `[B, C, T]` signal between layers is cut along `T`):
//! - a stride-1 convolution keeps the last `kernel_eff - 1` samples of its padded input (the left
//!   context of its next output) and holds back its last `right` outputs until the input that
//!   completes their windows arrives. HF pads both ends of the whole signal (reflect, zeros or
//!   replicate): the left padding is built once the input is longer than either padding (HF pads a
//!   shorter signal differently, so a convolution whose whole input stays that short runs once on
//!   it at the end, as the whole-clip decode does), the right padding from the input's last
//!   `right + 1` samples at [`DecodeStream::finish`];
//! - a transposed convolution's output sample `j` is final once every input `t` with
//!   `t · stride ≤ j` has arrived: the `kernel - stride` samples after the last input's stride
//!   are kept as partial sums (the bias is added once a sample is final), HF's left trim is
//!   dropped from the start and its right trim from the end at `finish`;
//! - the LSTM carries each layer's `(h, c)` from one chunk to the next;
//! - a residual block's skip branch waits for its convolution branch to catch up.
//!
//! The delay, in samples at the codec's rate, is [`DecodeStream::lookahead_samples`] (the sum of
//! each layer's held-back samples scaled to the output rate): 2402 samples = 3.75 frames
//! (75 ms) for the 32 kHz codec, 1920 of them from the first convolution's 3 frames of right
//! context. The stitched output equals the whole-clip decode up to rounding, not bit for bit:
//! the same products are computed, but a transposed convolution's overlapping sums add in
//! another order, and the products over a chunk's few columns run as GEMVs where the whole clip
//! runs GEMMs, which sum in another order too. `tests/encodec_stream.rs` allows 1e-4 of full
//! scale and measured ≤ 5.3e-6 (the tiny fixture's codec) and ≤ 1.2e-6 (musicgen-small's
//! layout with random weights, output peak 1.13).

use candle_core::{DType, Tensor};

use super::layers::{pad1d, Conv1d, ConvTranspose1d, Layer, Lstm, ResnetBlock};
use super::EncodecModel;
use crate::error::{Error, Result};
use crate::models::nn::elu;

/// A piece of a `[B, C, T]` signal along `T`; `None` holds no samples (candle's convolutions
/// do not take empty signals, so an empty piece never reaches a layer).
type Piece = Option<Tensor>;

fn join(a: Piece, b: Piece) -> Result<Piece> {
    Ok(match (a, b) {
        (Some(a), Some(b)) => Some(Tensor::cat(&[&a, &b], 2)?),
        (a, None) => a,
        (None, b) => b,
    })
}

/// `x` cut after `n` samples: (the first `n`, the rest).
fn split(x: Tensor, n: usize) -> Result<(Piece, Piece)> {
    let t = x.dim(2)?;
    let n = n.min(t);
    let head = if n > 0 {
        Some(x.narrow(2, 0, n)?)
    } else {
        None
    };
    let tail = if n < t {
        Some(x.narrow(2, n, t - n)?)
    } else {
        None
    };
    Ok((head, tail))
}

/// The last `n` samples of `x` (all of it when shorter).
fn last(x: Piece, n: usize) -> Result<Piece> {
    match x {
        Some(x) => {
            let t = x.dim(2)?;
            Ok(split(x, t.saturating_sub(n))?.1)
        }
        None => Ok(None),
    }
}

/// A stride-1 convolution's state.
#[derive(Debug, Default)]
struct ConvState {
    /// Input before the convolution starts (it starts once longer than either padding).
    head: Piece,
    started: bool,
    /// The padded input from the next output's window on.
    window: Piece,
    /// The input's last `right + 1` samples, which the right padding is made of.
    tail: Piece,
}

impl ConvState {
    fn push(&mut self, conv: &Conv1d, x: Tensor) -> Result<Piece> {
        let (left, right) = conv.padding();
        if right > 0 {
            self.tail = last(join(self.tail.take(), Some(x.clone()))?, right + 1)?;
        }
        let x = if self.started {
            x
        } else {
            let head = match self.head.take() {
                Some(h) => Tensor::cat(&[&h, &x], 2)?,
                None => x,
            };
            if head.dim(2)? <= left.max(right) {
                self.head = Some(head);
                return Ok(None);
            }
            self.started = true;
            pad1d(&head, left, 0, conv.pad)?
        };
        self.window = join(self.window.take(), Some(x))?;
        self.convolve(conv)
    }

    /// Every output whose window is complete; keeps the left context of the next one.
    fn convolve(&mut self, conv: &Conv1d) -> Result<Piece> {
        let Some(w) = self.window.take() else {
            return Ok(None);
        };
        let (n, e) = (w.dim(2)?, conv.kernel_eff);
        if n < e {
            self.window = Some(w);
            return Ok(None);
        }
        let ys = conv.forward_valid(&w)?;
        self.window = last(Some(w), e - 1)?;
        Ok(Some(ys))
    }

    fn finish(&mut self, conv: &Conv1d) -> Result<Piece> {
        if !self.started {
            // A signal no longer than the padding: HF's padding of short signals, at once.
            return self.head.take().map(|h| conv.forward(&h)).transpose();
        }
        let (_, right) = conv.padding();
        if right > 0 {
            let tail = self.tail.take().ok_or_else(|| {
                Error::InvalidRequest("EnCodec stream: no input to pad at the end".into())
            })?;
            let t = tail.dim(2)?;
            let pad = pad1d(&tail, 0, right, conv.pad)?.narrow(2, t, right)?;
            self.window = join(self.window.take(), Some(pad))?;
        }
        self.convolve(conv)
    }
}

/// A transposed convolution's state.
#[derive(Debug)]
struct ConvTrState {
    /// Sums (without the bias) at the `kernel - stride` untrimmed positions that the next input
    /// still adds to.
    partial: Piece,
    /// Untrimmed samples still to drop at the start (HF's left trim).
    skip: usize,
}

impl ConvTrState {
    fn new(conv: &ConvTranspose1d) -> Self {
        Self {
            partial: None,
            skip: conv.trim().0,
        }
    }

    fn push(&mut self, conv: &ConvTranspose1d, x: Tensor) -> Result<Piece> {
        let m = x.dim(2)?;
        let z = conv.untrimmed(&x, false)?;
        let z = match self.partial.take() {
            Some(p) => {
                let ov = p.dim(2)?;
                let (a, b) = split(z, ov)?;
                let a = a.ok_or_else(|| Error::InvalidRequest("EnCodec stream: overlap".into()))?;
                join(Some((a + p)?), b)?
            }
            None => Some(z),
        };
        let Some(z) = z else { return Ok(None) };
        let (done, rest) = split(z, m * conv.stride)?;
        self.partial = rest;
        self.emit(conv, done)
    }

    fn finish(&mut self, conv: &ConvTranspose1d) -> Result<Piece> {
        let right = conv.trim().1;
        let Some(p) = self.partial.take() else {
            return Ok(None);
        };
        let keep = p.dim(2)?.saturating_sub(right);
        let done = split(p, keep)?.0;
        self.emit(conv, done)
    }

    /// Final sums → output samples: the bias added, HF's left trim dropped.
    fn emit(&mut self, conv: &ConvTranspose1d, done: Piece) -> Result<Piece> {
        let Some(d) = done else { return Ok(None) };
        let d = d.broadcast_add(&conv.bias()?)?;
        let t = d.dim(2)?;
        let drop = self.skip.min(t);
        self.skip -= drop;
        Ok(split(d, drop)?.1)
    }
}

/// A residual block's state.
#[derive(Debug, Default)]
struct ResState {
    conv1: ConvState,
    conv2: ConvState,
    shortcut: ConvState,
    /// The skip branch's samples that the convolution branch has not reached yet.
    skip: Piece,
}

impl ResState {
    fn push(&mut self, block: &ResnetBlock, x: Tensor) -> Result<Piece> {
        let skip = match &block.shortcut {
            Some(s) => self.shortcut.push(s, x.clone())?,
            None => Some(x.clone()),
        };
        self.skip = join(self.skip.take(), skip)?;
        let ys = match self.conv1.push(&block.conv1, elu(&x)?)? {
            Some(y) => self.conv2.push(&block.conv2, elu(&y)?)?,
            None => None,
        };
        self.add(ys)
    }

    fn finish(&mut self, block: &ResnetBlock) -> Result<Piece> {
        if let Some(s) = &block.shortcut {
            let tail = self.shortcut.finish(s)?;
            self.skip = join(self.skip.take(), tail)?;
        }
        let ys = match self.conv1.finish(&block.conv1)? {
            Some(y) => self.conv2.push(&block.conv2, elu(&y)?)?,
            None => None,
        };
        let ys = join(ys, self.conv2.finish(&block.conv2)?)?;
        self.add(ys)
    }

    fn add(&mut self, ys: Piece) -> Result<Piece> {
        let Some(ys) = ys else { return Ok(None) };
        let skip = self.skip.take().ok_or_else(|| {
            Error::InvalidRequest("EnCodec stream: residual branch ahead of its input".into())
        })?;
        let (head, rest) = split(skip, ys.dim(2)?)?;
        self.skip = rest;
        let head = head.ok_or_else(|| {
            Error::InvalidRequest("EnCodec stream: residual branch ahead of its input".into())
        })?;
        Ok(Some((head + ys)?))
    }
}

#[derive(Debug)]
enum State {
    Conv(ConvState),
    ConvTr(ConvTrState),
    Res(Box<ResState>),
    /// Each LSTM layer's `(h, c)`, made at the first chunk (its batch size and dtype).
    Lstm(Option<Vec<(Tensor, Tensor)>>),
    Elu,
}

impl State {
    fn new(layer: &Layer) -> Result<Self> {
        Ok(match layer {
            Layer::Conv(c) => {
                if c.stride != 1 {
                    return Err(Error::InvalidRequest(
                        "EnCodec stream: the decoder has a strided convolution".into(),
                    ));
                }
                Self::Conv(ConvState::default())
            }
            Layer::ConvTr(c) => {
                if c.kernel < c.stride {
                    return Err(Error::InvalidRequest(
                        "EnCodec stream: a transposed convolution's kernel is shorter than its \
                         stride"
                            .into(),
                    ));
                }
                Self::ConvTr(ConvTrState::new(c))
            }
            Layer::Res(r) => {
                let strided = [Some(&r.conv1), Some(&r.conv2), r.shortcut.as_ref()];
                if strided.into_iter().flatten().any(|c| c.stride != 1) {
                    return Err(Error::InvalidRequest(
                        "EnCodec stream: a residual block has a strided convolution".into(),
                    ));
                }
                Self::Res(Box::default())
            }
            Layer::Lstm(_) => Self::Lstm(None),
            Layer::Elu => Self::Elu,
        })
    }

    fn push(&mut self, layer: &Layer, x: Tensor) -> Result<Piece> {
        match (self, layer) {
            (Self::Conv(s), Layer::Conv(c)) => s.push(c, x),
            (Self::ConvTr(s), Layer::ConvTr(c)) => s.push(c, x),
            (Self::Res(s), Layer::Res(r)) => s.push(r, x),
            (Self::Lstm(s), Layer::Lstm(l)) => lstm_push(s, l, &x).map(Some),
            (Self::Elu, Layer::Elu) => Ok(Some(elu(&x)?)),
            _ => Err(mismatch()),
        }
    }

    fn finish(&mut self, layer: &Layer) -> Result<Piece> {
        match (self, layer) {
            (Self::Conv(s), Layer::Conv(c)) => s.finish(c),
            (Self::ConvTr(s), Layer::ConvTr(c)) => s.finish(c),
            (Self::Res(s), Layer::Res(r)) => s.finish(r),
            (Self::Lstm(_), Layer::Lstm(_)) | (Self::Elu, Layer::Elu) => Ok(None),
            _ => Err(mismatch()),
        }
    }
}

fn mismatch() -> Error {
    Error::InvalidRequest("EnCodec stream: state and layer out of step".into())
}

fn lstm_push(state: &mut Option<Vec<(Tensor, Tensor)>>, lstm: &Lstm, x: &Tensor) -> Result<Tensor> {
    let st = match state {
        Some(st) => st,
        None => state.insert(lstm.zero_state(x)?),
    };
    lstm.forward_from(x, st)
}

/// Steady-state delay of the decoder in output samples: what each layer holds back, at its own
/// rate, times the upsampling after it. (The first samples of a clip wait a little longer
/// only where a convolution's left padding is longer than its right one.)
fn lookahead(layers: &[Layer], hop: usize) -> usize {
    let mut rate = 1; // samples per frame at the current layer
    let mut total = 0;
    for layer in layers {
        match layer {
            Layer::Conv(c) => total += c.padding().1 * hop / rate,
            Layer::Res(r) => {
                let held = [Some(&r.conv1), Some(&r.conv2)];
                total += held
                    .into_iter()
                    .flatten()
                    .map(|c| c.padding().1)
                    .sum::<usize>()
                    * hop
                    / rate;
            }
            Layer::ConvTr(c) => {
                rate *= c.stride;
                total += c.trim().0 * hop / rate;
            }
            Layer::Lstm(_) | Layer::Elu => {}
        }
    }
    total
}

/// Frames [`DecodeStream::push_frame`] decodes together at most (320 ms of audio at 50 frames a
/// second). Its first chunk is one frame and each next one twice as long up to this, so the
/// first audio comes as early as the lookahead allows and later frames share the per-op costs
/// of a decode.
pub const MAX_CHUNK: usize = 16;

/// EnCodec decoding as codes arrive: [`DecodeStream::push`] each chunk of frames (or
/// [`DecodeStream::push_frame`] each frame), then [`DecodeStream::finish`]; the outputs,
/// concatenated, are the whole clip's [`EncodecModel::decode`] (within rounding; see the
/// module docs).
#[derive(Debug)]
pub struct DecodeStream<'a> {
    model: &'a EncodecModel,
    codebooks: usize,
    states: Vec<State>,
    /// Frames given to [`Self::push_frame`] and not decoded yet (a code per codebook each), and
    /// how many make its next chunk.
    pending: Vec<Vec<u32>>,
    chunk: usize,
    /// Batch size, fixed by the first chunk.
    batch: Option<usize>,
    frames: usize,
    samples: usize,
}

impl EncodecModel {
    /// A streaming decoder for codes of `codebooks` codebooks (as [`Self::decode`] takes).
    pub fn decode_stream(&self, codebooks: usize) -> Result<DecodeStream<'_>> {
        let have = self.quantizer.codebooks.len();
        if codebooks == 0 || codebooks > have {
            return Err(Error::InvalidRequest(format!(
                "EnCodec stream: {codebooks} codebooks asked for, the codec has {have}"
            )));
        }
        let states = self
            .decoder
            .layers
            .iter()
            .map(State::new)
            .collect::<Result<_>>()?;
        Ok(DecodeStream {
            model: self,
            codebooks,
            states,
            pending: Vec::new(),
            chunk: 1,
            batch: None,
            frames: 0,
            samples: 0,
        })
    }
}

impl DecodeStream<'_> {
    /// The next frames, codes `[B, K, n]` (any integer dtype, `n` may be 0) → the audio
    /// `[B, C, m]` that they make final (`m` may be 0). Wrong shapes and codes outside the
    /// codebooks are errors, and leave the stream as it was.
    pub fn push(&mut self, codes: &Tensor) -> Result<Tensor> {
        let (b, k, n) = codes.dims3().map_err(|_| {
            Error::InvalidRequest(format!(
                "EnCodec stream: codes must be [batch, codebooks, frames], got {:?}",
                codes.dims()
            ))
        })?;
        if k != self.codebooks {
            return Err(Error::InvalidRequest(format!(
                "EnCodec stream: {k} codebooks given, the stream decodes {}",
                self.codebooks
            )));
        }
        if self.batch.is_some_and(|have| have != b) || b == 0 {
            return Err(Error::InvalidRequest(format!(
                "EnCodec stream: a chunk of batch {b} after chunks of batch {:?}",
                self.batch
            )));
        }
        let codes = match codes.dtype() {
            DType::U8 | DType::U32 | DType::I64 => codes.to_dtype(DType::I64)?,
            other => {
                return Err(Error::InvalidRequest(format!(
                    "EnCodec stream: codes must be integers, got {other:?}"
                )))
            }
        };
        let size = self.model.cfg.codebook_size as i64;
        if let Some(bad) = codes
            .flatten_all()?
            .to_vec1::<i64>()?
            .into_iter()
            .find(|c| !(0..size).contains(c))
        {
            return Err(Error::InvalidRequest(format!(
                "EnCodec stream: code {bad} outside the codebook (0..{size})"
            )));
        }
        self.batch = Some(b);
        if n == 0 {
            return self.empty();
        }
        let emb = self
            .model
            .quantizer
            .decode(&codes.to_dtype(DType::U32)?.contiguous()?)?;
        self.frames += n;
        let mut x = Some(emb);
        for (st, layer) in self.states.iter_mut().zip(&self.model.decoder.layers) {
            x = match x {
                Some(x) => st.push(layer, x)?,
                None => break,
            };
        }
        self.out(x)
    }

    /// One frame of batch 1 (a code per codebook) → the audio it makes final, which is empty
    /// until a chunk of frames is full (see [`MAX_CHUNK`]). A wrong frame is an error at once
    /// and is not kept.
    pub fn push_frame(&mut self, codes: &[u32]) -> Result<Tensor> {
        if codes.len() != self.codebooks {
            return Err(Error::InvalidRequest(format!(
                "EnCodec stream: a frame of {} codes, the stream decodes {}",
                codes.len(),
                self.codebooks
            )));
        }
        let size = self.model.cfg.codebook_size;
        if let Some(bad) = codes.iter().find(|&&c| c as usize >= size) {
            return Err(Error::InvalidRequest(format!(
                "EnCodec stream: code {bad} outside the codebook (0..{size})"
            )));
        }
        self.pending.push(codes.to_vec());
        if self.pending.len() < self.chunk {
            return self.empty();
        }
        self.chunk = (self.chunk * 2).min(MAX_CHUNK);
        self.push_pending()
    }

    /// Decodes the frames [`Self::push_frame`] holds.
    fn push_pending(&mut self) -> Result<Tensor> {
        let (k, n) = (self.codebooks, self.pending.len());
        let mut flat = vec![0u32; k * n];
        for (t, col) in self.pending.drain(..).enumerate() {
            for (c, &v) in col.iter().enumerate() {
                flat[c * n + t] = v;
            }
        }
        let device = self.model.device().clone();
        self.push(&Tensor::from_vec(flat, (1, k, n), &device)?)
    }

    /// The rest of the audio: the frames [`Self::push_frame`] still holds, and what the last
    /// [`Self::lookahead_samples`] were waiting for, which is the end of the clip.
    pub fn finish(mut self) -> Result<Tensor> {
        let held = if self.pending.is_empty() {
            None
        } else {
            Some(self.push_pending()?)
        };
        let mut x: Piece = None;
        for (st, layer) in self.states.iter_mut().zip(&self.model.decoder.layers) {
            let pushed = match x {
                Some(x) => st.push(layer, x)?,
                None => None,
            };
            x = join(pushed, st.finish(layer)?)?;
        }
        let rest = self.out(x)?;
        match held {
            Some(held) => Ok(Tensor::cat(&[held, rest], 2)?),
            None => Ok(rest),
        }
    }

    /// Frames pushed so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Samples (per channel) returned so far.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// How many samples of the frames pushed so far are held back for the frames to come:
    /// once past the first few frames, `samples() == frames() · hop - lookahead_samples()`.
    pub fn lookahead_samples(&self) -> usize {
        lookahead(&self.model.decoder.layers, self.model.cfg.hop_length())
    }

    fn out(&mut self, x: Piece) -> Result<Tensor> {
        match x {
            Some(x) => {
                self.samples += x.dim(2)?;
                Ok(x)
            }
            None => self.empty(),
        }
    }

    fn empty(&self) -> Result<Tensor> {
        let shape = (self.batch.unwrap_or(1), self.model.cfg.audio_channels, 0);
        Ok(Tensor::zeros(
            shape,
            self.model.dtype(),
            self.model.device(),
        )?)
    }
}
