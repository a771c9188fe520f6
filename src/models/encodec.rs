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

use candle_core::{DType, Device, IndexOp, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::blas;
use crate::models::nn::{contiguous_f32, elu, Linear, Shortcut, WeightMode};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PadMode {
    Reflect,
    Zeros,
    Replicate,
}

fn pad_mode(cfg: &Config) -> Result<PadMode> {
    match cfg.pad_mode.as_str() {
        "reflect" => Ok(PadMode::Reflect),
        "constant" | "zeros" => Ok(PadMode::Zeros),
        "replicate" => Ok(PadMode::Replicate),
        other => Err(Error::InvalidRequest(format!(
            "EnCodec pad_mode `{other}` is not supported"
        ))),
    }
}

/// Pads the last dimension; `reflect` behaves as PyTorch's, including HF's trick for inputs
/// shorter than the padding (zero-extend on the right first, then cut that extension off).
fn pad1d(xs: &Tensor, left: usize, right: usize, mode: PadMode) -> Result<Tensor> {
    if left == 0 && right == 0 {
        return Ok(xs.clone());
    }
    match mode {
        PadMode::Zeros => Ok(xs.pad_with_zeros(D::Minus1, left, right)?),
        PadMode::Replicate => Ok(xs.pad_with_same(D::Minus1, left, right)?),
        PadMode::Reflect => {
            let len = xs.dim(D::Minus1)?;
            let max_pad = left.max(right);
            let (xs, extra) = if len <= max_pad {
                let extra = max_pad - len + 1;
                (xs.pad_with_zeros(D::Minus1, 0, extra)?, extra)
            } else {
                (xs.clone(), 0)
            };
            let n = len + extra;
            // Indices: left reflection (left..1), the signal, right reflection (n-2 ..).
            let idx: Vec<u32> = (1..=left)
                .rev()
                .chain(0..n)
                .chain((0..right).map(|i| n - 2 - i))
                .map(|i| i as u32)
                .collect();
            let idx = Tensor::from_vec(idx, left + n + right, xs.device())?;
            let padded = xs.index_select(&idx, xs.rank() - 1)?;
            let end = left + n + right - extra;
            Ok(padded.narrow(D::Minus1, 0, end)?)
        }
    }
}

/// Weight-normalised weight: `g * v / ||v||`, the norm over every dim but the first.
fn weight_norm(vb: &VarBuilder, shape: (usize, usize, usize)) -> Result<Tensor> {
    let g = vb.get((shape.0, 1, 1), "weight_g")?;
    let v = vb.get(shape, "weight_v")?;
    let norm = v.sqr()?.sum_keepdim((1, 2))?.sqrt()?;
    Ok(v.broadcast_mul(&g)?.broadcast_div(&norm)?)
}

fn conv_weight(cfg: &Config, vb: &VarBuilder, shape: (usize, usize, usize)) -> Result<Tensor> {
    match cfg.norm_type.as_str() {
        "weight_norm" => weight_norm(vb, shape),
        other => Err(Error::InvalidRequest(format!(
            "EnCodec norm_type `{other}` is not supported (only weight_norm)"
        ))),
    }
}

#[derive(Debug, Clone)]
struct Conv1d {
    weight: Tensor,
    /// Per kernel tap `k`: `weight[:, :, k]` `[c_out, c_in]`, for the stride-1 path.
    taps: Vec<Tensor>,
    bias: Tensor,
    stride: usize,
    dilation: usize,
    kernel_eff: usize,
    causal: bool,
    pad: PadMode,
}

impl Conv1d {
    fn new(
        cfg: &Config,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        dilation: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let vb = vb.pp("conv");
        let weight = conv_weight(cfg, &vb, (c_out, c_in, kernel))?;
        let bias = vb.get(c_out, "bias")?;
        let taps = (0..kernel)
            .map(|k| weight.narrow(2, k, 1)?.squeeze(2)?.contiguous())
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            weight,
            taps,
            bias,
            stride,
            dilation,
            kernel_eff: (kernel - 1) * dilation + 1,
            causal: cfg.use_causal_conv,
            pad: pad_mode(cfg)?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let len = xs.dim(D::Minus1)?;
        let padding_total = self.kernel_eff - self.stride;
        // HF `_get_extra_padding_for_conv1d`: pad so the last window is complete.
        let n_frames =
            (len as f64 - self.kernel_eff as f64 + padding_total as f64) / self.stride as f64 + 1.0;
        let n_frames = n_frames.ceil() as i64 - 1;
        let ideal = n_frames * self.stride as i64 + self.kernel_eff as i64 - padding_total as i64;
        let extra = (ideal - len as i64).max(0) as usize;
        let xs = if self.causal {
            pad1d(xs, padding_total, extra, self.pad)?
        } else {
            let right = padding_total / 2;
            let left = padding_total - right;
            pad1d(xs, left, right + extra, self.pad)?
        };
        // Taps with a handful of input channels (the first conv reads mono audio) would be
        // rank-1 products; im2col's one product over `c_in × kernel` is faster there.
        if self.stride == 1 && self.weight.dim(1)? >= 8 {
            return self.forward_taps(&xs);
        }
        let ys = xs.conv1d(&self.weight, 0, self.stride, self.dilation, 1)?;
        Ok(ys.broadcast_add(&self.bias.reshape((1, (), 1))?)?)
    }

    /// Stride-1 convolution as a sum over kernel taps, `y = Σ_k W_k · x[:, k·d .. k·d + L]`,
    /// in the signal's own `[C, T]` layout: each tap's window is a strided view of the padded
    /// signal, so neither an im2col matrix (`kernel` times the signal) nor a transposed copy is
    /// built, and a 1×1 convolution is a single matrix product.
    fn forward_taps(&self, xs: &Tensor) -> Result<Tensor> {
        if let Some(ys) = self.forward_taps_blas(xs)? {
            return Ok(ys);
        }
        let (b, _c, lp) = xs.dims3()?;
        let l_out = lp + 1 - self.kernel_eff;
        let bias = self.bias.reshape(((), 1))?;
        let mut outs = Vec::with_capacity(b);
        for i in 0..b {
            let x = xs.get(i)?; // [C, Lp]
            let mut acc: Option<Tensor> = None;
            for (k, w) in self.taps.iter().enumerate() {
                let part = w.matmul(&x.narrow(1, k * self.dilation, l_out)?)?;
                acc = Some(match acc {
                    Some(a) => (a + part)?,
                    None => part,
                });
            }
            let y = acc.ok_or_else(|| Error::InvalidRequest("conv with no taps".into()))?;
            outs.push(y.broadcast_add(&bias)?);
        }
        Ok(Tensor::stack(&outs, 0)?)
    }
}

impl Conv1d {
    /// [`Self::forward_taps`] through OpenBLAS (≈ 2.4× candle's GEMM here): each tap's product
    /// reads its window of the padded signal in place and accumulates into one output that
    /// starts as the bias. `None` off the CPU, outside f32 or without OpenBLAS.
    fn forward_taps_blas(&self, xs: &Tensor) -> Result<Option<Tensor>> {
        let (b, c_in, lp) = xs.dims3()?;
        let c_out = self.bias.dim(0)?;
        let l_out = lp + 1 - self.kernel_eff;
        on_blas_input(xs, &self.weight, "convolution input", |x| {
            let bias = self.bias.to_vec1::<f32>()?;
            let taps = self
                .taps
                .iter()
                .map(|w| w.flatten_all()?.to_vec1::<f32>())
                .collect::<candle_core::Result<Vec<_>>>()?;
            let mut ys = vec![0f32; b * c_out * l_out];
            for (xi, yi) in x.chunks(c_in * lp).zip(ys.chunks_mut(c_out * l_out)) {
                for (row, bv) in yi.chunks_mut(l_out).zip(&bias) {
                    row.fill(*bv);
                }
                for (k, w) in taps.iter().enumerate() {
                    let window = &xi[k * self.dilation..];
                    let dims = (c_out, l_out, c_in);
                    if !blas::gemm(dims, (w, false, c_in), (window, false, lp), true, yi)? {
                        return Ok(None);
                    }
                }
            }
            Ok(Some(Tensor::from_vec(ys, (b, c_out, l_out), xs.device())?))
        })
    }
}

/// Runs a BLAS path `f` on the contiguous f32 values of `xs` (convolved with `weight`); `None`
/// (the caller falls back to candle) off [`blas::fast_path`].
fn on_blas_input(
    xs: &Tensor,
    weight: &Tensor,
    what: &str,
    f: impl FnOnce(&[f32]) -> Result<Option<Tensor>>,
) -> Result<Option<Tensor>> {
    if !blas::fast_path([xs, weight]) {
        return Ok(None);
    }
    Shortcut::Convolution.entered();
    let xs = xs.contiguous()?;
    let (storage, layout) = xs.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Ok(None);
    };
    f(contiguous_f32(cpu, layout, what)?)
}

#[derive(Debug, Clone)]
struct ConvTranspose1d {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    kernel: usize,
    causal: bool,
    trim_right_ratio: f64,
}

impl ConvTranspose1d {
    fn new(
        cfg: &Config,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let vb = vb.pp("conv");
        let weight = conv_weight(cfg, &vb, (c_in, c_out, kernel))?;
        let bias = vb.get(c_out, "bias")?;
        Ok(Self {
            weight,
            bias,
            stride,
            kernel,
            causal: cfg.use_causal_conv,
            trim_right_ratio: cfg.trim_right_ratio,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let ys = match self.forward_blas(xs)? {
            Some(ys) => ys,
            None => xs
                .conv_transpose1d(&self.weight, 0, 0, self.stride, 1, 1)?
                .broadcast_add(&self.bias.reshape((1, (), 1))?)?,
        };
        let padding_total = self.kernel - self.stride;
        let right = if self.causal {
            (padding_total as f64 * self.trim_right_ratio).ceil() as usize
        } else {
            padding_total / 2
        };
        let left = padding_total - right;
        let len = ys.dim(D::Minus1)?;
        Ok(ys.narrow(D::Minus1, left, len - left - right)?)
    }
}

impl ConvTranspose1d {
    /// The untrimmed transposed convolution plus bias through OpenBLAS: one product
    /// `Z[(c_out, k), t] = Σ_c W[c, c_out, k] · x[c, t]`, then each column `t` of `Z` is added at
    /// output positions `t · stride + k` (col2im), one output channel per task. `None` off the
    /// CPU, outside f32 or without OpenBLAS.
    fn forward_blas(&self, xs: &Tensor) -> Result<Option<Tensor>> {
        use rayon::prelude::*;
        let (b, c_in, t) = xs.dims3()?;
        let (_, c_out, kk) = self.weight.dims3()?;
        if t == 0 {
            return Ok(None);
        }
        let s = self.stride;
        let n_out = (t - 1) * s + kk;
        on_blas_input(xs, &self.weight, "transposed convolution input", |x| {
            let w = self.weight.flatten_all()?.to_vec1::<f32>()?; // [c_in, c_out·K]
            let bias = self.bias.to_vec1::<f32>()?;
            let mut ys = vec![0f32; b * c_out * n_out];
            let mut z = vec![0f32; c_out * kk * t];
            for (xi, yi) in x.chunks(c_in * t).zip(ys.chunks_mut(c_out * n_out)) {
                let dims = (c_out * kk, t, c_in);
                if !blas::gemm(dims, (&w, true, c_out * kk), (xi, false, t), false, &mut z)? {
                    return Ok(None);
                }
                yi.par_chunks_mut(n_out)
                    .zip(z.par_chunks(kk * t))
                    .zip(&bias)
                    .for_each(|((row, zc), bv)| {
                        row.fill(*bv);
                        for (k, zk) in zc.chunks(t).enumerate() {
                            for (ti, v) in zk.iter().enumerate() {
                                row[ti * s + k] += v;
                            }
                        }
                    });
            }
            Ok(Some(Tensor::from_vec(ys, (b, c_out, n_out), xs.device())?))
        })
    }
}

/// Multi-layer LSTM over a `[B, C, T]` signal with a residual connection (HF `EncodecLSTM`).
#[derive(Debug, Clone)]
struct Lstm {
    /// Per layer: (W_ih^T [C, 4C], W_hh as a frozen linear layer, b_ih + b_hh [4C]). The
    /// recurrent product has one row per step, where the row-streaming kernel is fastest.
    layers: Vec<(Tensor, Linear, Tensor)>,
    dim: usize,
}

impl Lstm {
    fn new(cfg: &Config, dim: usize, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("lstm");
        let mut layers = Vec::with_capacity(cfg.num_lstm_layers);
        for l in 0..cfg.num_lstm_layers {
            let w_ih = vb.get((4 * dim, dim), &format!("weight_ih_l{l}"))?;
            let w_hh = vb.get((4 * dim, dim), &format!("weight_hh_l{l}"))?;
            let b_ih = vb.get(4 * dim, &format!("bias_ih_l{l}"))?;
            let b_hh = vb.get(4 * dim, &format!("bias_hh_l{l}"))?;
            let mut w_hh = Linear::from_weight(w_hh, None);
            w_hh.convert(WeightMode::F32)?;
            layers.push((w_ih.t()?.contiguous()?, w_hh, (b_ih + b_hh)?));
        }
        Ok(Self { layers, dim })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, _c, t) = xs.dims3()?;
        let input = xs.permute((2, 0, 1))?.contiguous()?; // [T, B, C]
        let mut seq = input.clone();
        for (w_ih, w_hh, bias) in &self.layers {
            // The input projection for every time step at once; only h @ W_hh is sequential.
            let gx = seq
                .reshape((t * b, self.dim))?
                .matmul(w_ih)?
                .broadcast_add(bias)?
                .reshape((t, b, 4 * self.dim))?;
            let mut h = Tensor::zeros((b, self.dim), xs.dtype(), xs.device())?;
            let mut c = h.clone();
            let mut outs = Vec::with_capacity(t);
            for step in 0..t {
                let g = (gx.i(step)? + w_hh.forward(&h)?)?;
                let i = candle_nn::ops::sigmoid(&g.narrow(1, 0, self.dim)?)?;
                let f = candle_nn::ops::sigmoid(&g.narrow(1, self.dim, self.dim)?)?;
                let gg = g.narrow(1, 2 * self.dim, self.dim)?.tanh()?;
                let o = candle_nn::ops::sigmoid(&g.narrow(1, 3 * self.dim, self.dim)?)?;
                c = ((f * &c)? + (i * gg)?)?;
                h = (o * c.tanh()?)?;
                outs.push(h.clone());
            }
            seq = Tensor::stack(&outs, 0)?;
        }
        Ok((seq + input)?.permute((1, 2, 0))?.contiguous()?)
    }
}

#[derive(Debug, Clone)]
struct ResnetBlock {
    conv1: Conv1d,
    conv2: Conv1d,
    shortcut: Option<Conv1d>,
}

impl ResnetBlock {
    fn new(cfg: &Config, dim: usize, dilations: [usize; 2], vb: VarBuilder) -> Result<Self> {
        let hidden = dim / cfg.compress;
        let vbb = vb.pp("block");
        // block.0 and block.2 are ELUs.
        let conv1 = Conv1d::new(
            cfg,
            dim,
            hidden,
            cfg.residual_kernel_size,
            1,
            dilations[0],
            vbb.pp("1"),
        )?;
        let conv2 = Conv1d::new(cfg, hidden, dim, 1, 1, dilations[1], vbb.pp("3"))?;
        let shortcut = if cfg.use_conv_shortcut {
            Some(Conv1d::new(cfg, dim, dim, 1, 1, 1, vb.pp("shortcut"))?)
        } else {
            None
        };
        Ok(Self {
            conv1,
            conv2,
            shortcut,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let ys = self.conv1.forward(&elu(xs)?)?;
        let ys = self.conv2.forward(&elu(&ys)?)?;
        let res = match &self.shortcut {
            Some(s) => s.forward(xs)?,
            None => xs.clone(),
        };
        Ok((res + ys)?)
    }
}

#[derive(Debug, Clone)]
enum Layer {
    Conv(Conv1d),
    ConvTr(ConvTranspose1d),
    Res(ResnetBlock),
    Lstm(Lstm),
    Elu,
}

impl Layer {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::Conv(c) => c.forward(xs),
            Self::ConvTr(c) => c.forward(xs),
            Self::Res(r) => r.forward(xs),
            Self::Lstm(l) => l.forward(xs),
            Self::Elu => elu(xs),
        }
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
    fn reflect_padding_matches_pytorch() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[[1f32, 2., 3., 4., 5.]]], &dev).unwrap();
        // torch.nn.functional.pad(x, (3, 2), mode="reflect") = [4,3,2,1,2,3,4,5,4,3]
        let y = pad1d(&x, 3, 2, PadMode::Reflect).unwrap();
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![4., 3., 2., 1., 2., 3., 4., 5., 4., 3.]
        );
        // Short input: HF zero-extends [1, 2] to [1, 2, 0, 0] first, reflects (3, 3), then cuts 2.
        let x = Tensor::new(&[[[1f32, 2.]]], &dev).unwrap();
        let y = pad1d(&x, 3, 3, PadMode::Reflect).unwrap();
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![0., 0., 2., 1., 2., 0., 0., 0.]
        );
    }

    #[test]
    fn published_codec_has_four_codebooks_at_50_hz() {
        let c = Config::encodec_32khz();
        assert_eq!(c.hop_length(), 640);
        assert_eq!(c.frame_rate(), 50.0);
        assert_eq!(c.num_quantizers(), 4);
    }
}
