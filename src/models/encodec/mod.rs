//! EnCodec (the 32 kHz codec MusicGen tokenises audio with), written against Hugging Face's
//! `modeling_encodec.py` so that weights load under HF key names and results match it: SEANet
//! encoder/decoder with weight-normalised convolutions, **reflect** padding as in the published
//! config, a 2-layer LSTM, and a residual vector quantiser.
//!
//! Weight-norm tensors are read as `weight_g`/`weight_v`; the checkpoint loader renames
//! transformers 5.x's `parametrizations.weight.original0/1` to those names.
//! The codec is always frozen in tunelab, so effective conv weights are computed once at load.
//!
//! The convolutions run through OpenBLAS on its `blas::fast_path` (f32 on the CPU, the library
//! loaded, `TUNELAB_GENERIC_OPS` not set) and as candle's products and convolutions elsewhere.
//!
//! `layers.rs` holds the layers; `stream.rs` decodes codes chunk by chunk as they arrive, to the
//! same audio as [`EncodecModel::decode`] of the whole clip.

mod layers;
mod stream;

use candle_core::{DType, Device, IndexOp, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use layers::{Conv1d, ConvTranspose1d, Layer, Lstm, ResnetBlock};
pub use stream::{DecodeStream, MAX_CHUNK};

/// HF `EncodecConfig` (the fields that change the computation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    #[serde(default = "default_model_type")]
    pub model_type: String,
    pub sampling_rate: usize,
    pub audio_channels: usize,
    #[serde(default)]
    pub normalize: bool,
    pub target_bandwidths: Vec<f64>,
    pub upsampling_ratios: Vec<usize>,
    pub num_filters: usize,
    pub hidden_size: usize,
    pub codebook_size: usize,
    #[serde(default)]
    pub codebook_dim: Option<usize>,
    pub num_residual_layers: usize,
    pub kernel_size: usize,
    pub last_kernel_size: usize,
    pub residual_kernel_size: usize,
    pub dilation_growth_rate: usize,
    pub compress: usize,
    pub num_lstm_layers: usize,
    pub use_causal_conv: bool,
    pub pad_mode: String,
    pub norm_type: String,
    pub use_conv_shortcut: bool,
    #[serde(default = "one")]
    pub trim_right_ratio: f64,
    #[serde(default)]
    pub chunk_length_s: Option<f64>,
    #[serde(default)]
    pub overlap: Option<f64>,
}

fn default_model_type() -> String {
    "encodec".into()
}
fn one() -> f64 {
    1.0
}

impl Config {
    /// facebook/encodec_32khz, the codec of every mono MusicGen.
    pub fn encodec_32khz() -> Self {
        Self {
            model_type: "encodec".into(),
            sampling_rate: 32_000,
            audio_channels: 1,
            normalize: false,
            target_bandwidths: vec![2.2],
            upsampling_ratios: vec![8, 5, 4, 4],
            num_filters: 64,
            hidden_size: 128,
            codebook_size: 2048,
            codebook_dim: Some(128),
            num_residual_layers: 1,
            kernel_size: 7,
            last_kernel_size: 7,
            residual_kernel_size: 3,
            dilation_growth_rate: 2,
            compress: 2,
            num_lstm_layers: 2,
            use_causal_conv: false,
            pad_mode: "reflect".into(),
            norm_type: "weight_norm".into(),
            use_conv_shortcut: false,
            trim_right_ratio: 1.0,
            chunk_length_s: None,
            overlap: None,
        }
    }

    pub fn hop_length(&self) -> usize {
        self.upsampling_ratios.iter().product()
    }

    pub fn frame_rate(&self) -> f64 {
        (self.sampling_rate as f64 / self.hop_length() as f64).ceil()
    }

    pub fn codebook_dim(&self) -> usize {
        self.codebook_dim.unwrap_or(self.hidden_size)
    }

    /// Codebooks used at the highest target bandwidth (HF `num_quantizers`).
    pub fn num_quantizers(&self) -> usize {
        let bw = self.target_bandwidths.last().copied().unwrap_or(0.0);
        ((1000.0 * bw) / (self.frame_rate() * 10.0)).floor() as usize
    }
}

/// Builds a `layers.{i}` list, numbering the parameter-free ELUs as HF's `nn.ModuleList` does.
struct LayerList<'a> {
    vb: VarBuilder<'a>,
    layers: Vec<Layer>,
}

impl<'a> LayerList<'a> {
    fn new(vb: VarBuilder<'a>) -> Self {
        Self {
            vb: vb.pp("layers"),
            layers: Vec::new(),
        }
    }
    fn next_vb(&self) -> VarBuilder<'a> {
        self.vb.pp(self.layers.len().to_string())
    }
    fn push(&mut self, layer: Layer) {
        self.layers.push(layer);
    }
}

fn run(layers: &[Layer], xs: &Tensor) -> Result<Tensor> {
    let mut xs = xs.clone();
    for l in layers {
        xs = l.forward(&xs)?;
    }
    Ok(xs)
}

#[derive(Debug, Clone)]
struct Encoder {
    layers: Vec<Layer>,
}

impl Encoder {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let mut ll = LayerList::new(vb);
        let conv = Conv1d::new(
            cfg,
            cfg.audio_channels,
            cfg.num_filters,
            cfg.kernel_size,
            1,
            1,
            ll.next_vb(),
        )?;
        ll.push(Layer::Conv(conv));
        let mut scaling = 1;
        for &ratio in cfg.upsampling_ratios.iter().rev() {
            let dim = scaling * cfg.num_filters;
            for j in 0..cfg.num_residual_layers {
                let dil = [cfg.dilation_growth_rate.pow(j as u32), 1];
                let block = ResnetBlock::new(cfg, dim, dil, ll.next_vb())?;
                ll.push(Layer::Res(block));
            }
            ll.push(Layer::Elu);
            let conv = Conv1d::new(cfg, dim, dim * 2, ratio * 2, ratio, 1, ll.next_vb())?;
            ll.push(Layer::Conv(conv));
            scaling *= 2;
        }
        let dim = scaling * cfg.num_filters;
        let lstm = Lstm::new(cfg, dim, ll.next_vb())?;
        ll.push(Layer::Lstm(lstm));
        ll.push(Layer::Elu);
        let conv = Conv1d::new(
            cfg,
            dim,
            cfg.hidden_size,
            cfg.last_kernel_size,
            1,
            1,
            ll.next_vb(),
        )?;
        ll.push(Layer::Conv(conv));
        Ok(Self { layers: ll.layers })
    }
}

#[derive(Debug, Clone)]
struct Decoder {
    layers: Vec<Layer>,
}

impl Decoder {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let mut ll = LayerList::new(vb);
        let mut scaling = 1usize << cfg.upsampling_ratios.len();
        let dim = scaling * cfg.num_filters;
        let conv = Conv1d::new(
            cfg,
            cfg.hidden_size,
            dim,
            cfg.kernel_size,
            1,
            1,
            ll.next_vb(),
        )?;
        ll.push(Layer::Conv(conv));
        let lstm = Lstm::new(cfg, dim, ll.next_vb())?;
        ll.push(Layer::Lstm(lstm));
        for &ratio in &cfg.upsampling_ratios {
            let dim = scaling * cfg.num_filters;
            ll.push(Layer::Elu);
            let conv = ConvTranspose1d::new(cfg, dim, dim / 2, ratio * 2, ratio, ll.next_vb())?;
            ll.push(Layer::ConvTr(conv));
            for j in 0..cfg.num_residual_layers {
                let dil = [cfg.dilation_growth_rate.pow(j as u32), 1];
                let block = ResnetBlock::new(cfg, dim / 2, dil, ll.next_vb())?;
                ll.push(Layer::Res(block));
            }
            scaling /= 2;
        }
        ll.push(Layer::Elu);
        let conv = Conv1d::new(
            cfg,
            cfg.num_filters,
            cfg.audio_channels,
            cfg.last_kernel_size,
            1,
            1,
            ll.next_vb(),
        )?;
        ll.push(Layer::Conv(conv));
        Ok(Self { layers: ll.layers })
    }
}

/// Residual vector quantiser: one codebook `[codebook_size, dim]` per quantiser.
#[derive(Debug, Clone)]
struct Quantizer {
    /// `[size, dim]` and its transpose, plus `||e||^2` per entry.
    codebooks: Vec<(Tensor, Tensor, Tensor)>,
}

impl Quantizer {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("layers");
        let mut codebooks = Vec::new();
        for i in 0..cfg.num_quantizers() {
            let embed = vb
                .pp(i.to_string())
                .pp("codebook")
                .get((cfg.codebook_size, cfg.codebook_dim()), "embed")?;
            let sq = embed.sqr()?.sum_keepdim(1)?.t()?.contiguous()?; // [1, size]
            let et = embed.t()?.contiguous()?;
            codebooks.push((embed, et, sq));
        }
        Ok(Self { codebooks })
    }

    /// `[B, D, T]` latents → `[B, K, T]` codes.
    fn encode(&self, latents: &Tensor) -> Result<Tensor> {
        let (b, d, t) = latents.dims3()?;
        let mut residual = latents.transpose(1, 2)?.reshape((b * t, d))?;
        let mut all = Vec::with_capacity(self.codebooks.len());
        for (embed, et, sq) in &self.codebooks {
            // argmax of -(|x|^2 - 2 x.e + |e|^2), as HF computes it.
            let x2 = residual.sqr()?.sum_keepdim(1)?;
            let dist = x2
                .broadcast_sub(&(residual.matmul(et)? * 2.0)?)?
                .broadcast_add(sq)?
                .neg()?;
            let idx = dist.argmax(D::Minus1)?; // [B*T]
            let q = embed.index_select(&idx, 0)?;
            residual = (residual - q)?;
            all.push(idx.reshape((b, t))?);
        }
        Ok(Tensor::stack(&all, 1)?)
    }

    /// `[B, K, T]` codes → `[B, D, T]` summed embeddings.
    fn decode(&self, codes: &Tensor) -> Result<Tensor> {
        let (b, k, t) = codes.dims3()?;
        if k > self.codebooks.len() {
            return Err(Error::InvalidRequest(format!(
                "{k} codebooks given, the codec has {}",
                self.codebooks.len()
            )));
        }
        let mut sum: Option<Tensor> = None;
        for (i, (embed, _, _)) in self.codebooks.iter().take(k).enumerate() {
            let idx = codes.i((.., i, ..))?.flatten_all()?;
            let q = embed.index_select(&idx, 0)?.reshape((b, t, ()))?;
            sum = Some(match sum {
                Some(s) => (s + q)?,
                None => q,
            });
        }
        let sum = sum.ok_or_else(|| Error::InvalidRequest("no codebooks to decode".into()))?;
        Ok(sum.transpose(1, 2)?.contiguous()?)
    }
}

/// The codec: `encode` audio `[B, 1, N]` → codes `[B, K, T]`; `decode` codes → audio `[B, 1, T·hop]`.
#[derive(Debug, Clone)]
pub struct EncodecModel {
    encoder: Encoder,
    decoder: Decoder,
    quantizer: Quantizer,
    cfg: Config,
}

impl EncodecModel {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        if cfg.normalize {
            return Err(Error::InvalidRequest(
                "EnCodec with normalize = true is not supported (MusicGen's codec does not normalise)"
                    .into(),
            ));
        }
        if cfg.chunk_length_s.is_some() {
            return Err(Error::InvalidRequest(
                "chunked EnCodec (chunk_length_s) is not supported (MusicGen's codec is unchunked)"
                    .into(),
            ));
        }
        Ok(Self {
            encoder: Encoder::new(cfg, vb.pp("encoder"))?,
            decoder: Decoder::new(cfg, vb.pp("decoder"))?,
            quantizer: Quantizer::new(cfg, vb.pp("quantizer"))?,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Encoder output before quantisation, `[B, hidden, T]` (used for FAD on codec latents).
    pub fn encode_latents(&self, audio: &Tensor) -> Result<Tensor> {
        run(&self.encoder.layers, audio)
    }

    /// Audio `[B, 1, N]` at the codec's rate → codes `[B, K, ceil(N / hop)]` (u32).
    pub fn encode(&self, audio: &Tensor) -> Result<Tensor> {
        let latents = self.encode_latents(audio)?;
        self.quantizer.encode(&latents)
    }

    /// Codes `[B, K, T]` → audio `[B, 1, T · hop]`.
    pub fn decode(&self, codes: &Tensor) -> Result<Tensor> {
        let emb = self.quantizer.decode(codes)?;
        run(&self.decoder.layers, &emb)
    }

    pub fn device(&self) -> &Device {
        self.quantizer
            .codebooks
            .first()
            .map(|c| c.0.device())
            .unwrap_or(&Device::Cpu)
    }

    pub fn dtype(&self) -> DType {
        self.quantizer
            .codebooks
            .first()
            .map(|c| c.0.dtype())
            .unwrap_or(DType::F32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_codec_has_four_codebooks_at_50_hz() {
        let c = Config::encodec_32khz();
        assert_eq!(c.hop_length(), 640);
        assert_eq!(c.frame_rate(), 50.0);
        assert_eq!(c.num_quantizers(), 4);
    }
}
