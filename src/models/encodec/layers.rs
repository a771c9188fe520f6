//! EnCodec's layers, each mirroring its HF module: weight-normalised convolutions with HF's
//! padding rules, the transposed convolutions that upsample, the residual LSTM and the SEANet
//! residual block. Whole signals go through `forward`; the pieces that `forward` is made of
//! (padding, the unpadded convolution, the untrimmed transposed convolution, one LSTM step run
//! from a given state) are what the streaming decoder (`stream.rs`) runs chunk by chunk, so both
//! compute the same products.

use candle_core::{IndexOp, Tensor, D};
use candle_nn::VarBuilder;

use super::Config;
use crate::error::{Error, Result};
use crate::models::nn::{contiguous_f32, elu, Linear, Shortcut, WeightMode};
use crate::models::{blas, gemv};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PadMode {
    Reflect,
    Zeros,
    Replicate,
}

pub(super) fn pad_mode(cfg: &Config) -> Result<PadMode> {
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
pub(super) fn pad1d(xs: &Tensor, left: usize, right: usize, mode: PadMode) -> Result<Tensor> {
    if left == 0 && right == 0 {
        return Ok(xs.clone());
    }
    match mode {
        PadMode::Zeros => Ok(xs.pad_with_zeros(D::Minus1, left, right)?),
        PadMode::Replicate => Ok(xs.pad_with_same(D::Minus1, left, right)?),
        PadMode::Reflect => {
            let len = xs.dim(D::Minus1)?;
            let max_pad = left.max(right);
            // `index_select` reads contiguous tensors only (the streaming decoder pads slices).
            let (xs, extra) = if len <= max_pad {
                let extra = max_pad - len + 1;
                (xs.pad_with_zeros(D::Minus1, 0, extra)?, extra)
            } else {
                (xs.contiguous()?, 0)
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
pub(super) struct Conv1d {
    weight: Tensor,
    /// Per kernel tap `k`: `weight[:, :, k]` `[c_out, c_in]`, for the stride-1 path.
    taps: Vec<Tensor>,
    bias: Tensor,
    pub(super) stride: usize,
    dilation: usize,
    pub(super) kernel_eff: usize,
    causal: bool,
    pub(super) pad: PadMode,
}

impl Conv1d {
    pub(super) fn new(
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

    pub(super) fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let len = xs.dim(D::Minus1)?;
        let padding_total = self.kernel_eff - self.stride;
        // HF `_get_extra_padding_for_conv1d`: pad so the last window is complete.
        let n_frames =
            (len as f64 - self.kernel_eff as f64 + padding_total as f64) / self.stride as f64 + 1.0;
        let n_frames = n_frames.ceil() as i64 - 1;
        let ideal = n_frames * self.stride as i64 + self.kernel_eff as i64 - padding_total as i64;
        let extra = (ideal - len as i64).max(0) as usize;
        let (left, right) = self.padding();
        let xs = pad1d(xs, left, right + extra, self.pad)?;
        self.forward_valid(&xs)
    }

    /// HF's (left, right) padding, before the extra right padding that completes the last
    /// window of a strided convolution (none at stride 1).
    pub(super) fn padding(&self) -> (usize, usize) {
        let padding_total = self.kernel_eff - self.stride;
        if self.causal {
            (padding_total, 0)
        } else {
            let right = padding_total / 2;
            (padding_total - right, right)
        }
    }

    /// The convolution of an already padded signal: every output whose window lies inside it.
    pub(super) fn forward_valid(&self, xs: &Tensor) -> Result<Tensor> {
        // Taps with a handful of input channels (the first conv reads mono audio) would be
        // rank-1 products; im2col's one product over `c_in × kernel` is faster there.
        if self.stride == 1 && self.weight.dim(1)? >= 8 {
            return self.forward_taps(xs);
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
            let taps: Vec<&Tensor> = self.taps.iter().collect();
            in_place(&taps, |taps| {
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
        })
    }
}

/// Up to this many input columns, a transposed convolution's product is a GEMV streaming its
/// weight once: the streaming decoder's first one gets a frame at a time, and OpenBLAS's GEMM
/// packs (copies) the whole weight for every call, tripling the time.
const GEMV_COLUMNS: usize = 2;

/// Runs `f` on the values of contiguous f32 CPU tensors read in place: the weights, which a
/// copy per call would cost more than the product when the streaming decoder convolves a few
/// samples at a time. Called on [`blas::fast_path`] only (f32 on the CPU).
fn in_place<R>(ts: &[&Tensor], f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R> {
    let guards: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(guards.len());
    for (storage, layout) in &guards {
        let candle_core::Storage::Cpu(cpu) = &**storage else {
            return Err(Error::InvalidRequest(
                "EnCodec: a CPU convolution's weight is not on the CPU".into(),
            ));
        };
        slices.push(contiguous_f32(cpu, layout, "EnCodec weight")?);
    }
    f(&slices)
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
pub(super) struct ConvTranspose1d {
    weight: Tensor,
    /// `weight` as `[c_out · kernel, c_in]`, for the row-streaming GEMV on a few columns.
    rows: Tensor,
    bias: Tensor,
    pub(super) stride: usize,
    pub(super) kernel: usize,
    causal: bool,
    trim_right_ratio: f64,
}

impl ConvTranspose1d {
    pub(super) fn new(
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
        let rows = weight.reshape((c_in, c_out * kernel))?.t()?.contiguous()?;
        Ok(Self {
            weight,
            rows,
            bias,
            stride,
            kernel,
            causal: cfg.use_causal_conv,
            trim_right_ratio: cfg.trim_right_ratio,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let ys = self.untrimmed(xs, true)?;
        let (left, right) = self.trim();
        let len = ys.dim(D::Minus1)?;
        Ok(ys.narrow(D::Minus1, left, len - left - right)?)
    }

    /// HF's (left, right) trim of the untrimmed output, `kernel - stride` samples in all.
    pub(super) fn trim(&self) -> (usize, usize) {
        let padding_total = self.kernel.saturating_sub(self.stride);
        let right = if self.causal {
            ((padding_total as f64 * self.trim_right_ratio).ceil() as usize).min(padding_total)
        } else {
            padding_total / 2
        };
        (padding_total - right, right)
    }

    /// The untrimmed transposed convolution, `(T - 1) · stride + kernel` samples, with the bias
    /// or without it (the streaming decoder adds it once where chunks overlap).
    pub(super) fn untrimmed(&self, xs: &Tensor, with_bias: bool) -> Result<Tensor> {
        Ok(match self.forward_blas(xs, with_bias)? {
            Some(ys) => ys,
            None => {
                let ys = xs.conv_transpose1d(&self.weight, 0, 0, self.stride, 1, 1)?;
                if with_bias {
                    ys.broadcast_add(&self.bias.reshape((1, (), 1))?)?
                } else {
                    ys
                }
            }
        })
    }

    /// The bias as `[1, C_out, 1]`, for the samples the streaming decoder completes.
    pub(super) fn bias(&self) -> Result<Tensor> {
        Ok(self.bias.reshape((1, (), 1))?)
    }
}

impl ConvTranspose1d {
    /// The untrimmed transposed convolution plus bias through OpenBLAS: one product
    /// `Z[(c_out, k), t] = Σ_c W[c, c_out, k] · x[c, t]`, then each column `t` of `Z` is added at
    /// output positions `t · stride + k` (col2im), one output channel per task. `None` off the
    /// CPU, outside f32 or without OpenBLAS.
    fn forward_blas(&self, xs: &Tensor, with_bias: bool) -> Result<Option<Tensor>> {
        use rayon::prelude::*;
        let (b, c_in, t) = xs.dims3()?;
        let (_, c_out, kk) = self.weight.dims3()?;
        if t == 0 {
            return Ok(None);
        }
        let s = self.stride;
        let n_out = (t - 1) * s + kk;
        on_blas_input(xs, &self.weight, "transposed convolution input", |x| {
            let bias = self.bias.to_vec1::<f32>()?;
            in_place(&[&self.weight, &self.rows], |w| {
                let (w, rows) = (w[0], w[1]); // [c_in, c_out·K], [c_out·K, c_in]
                let mut ys = vec![0f32; b * c_out * n_out];
                let mut z = vec![0f32; c_out * kk * t];
                for (xi, yi) in x.chunks(c_in * t).zip(ys.chunks_mut(c_out * n_out)) {
                    if t <= GEMV_COLUMNS {
                        let xt: Vec<f32> = (0..t)
                            .flat_map(|ti| (0..c_in).map(move |c| xi[c * t + ti]))
                            .collect();
                        let zt = gemv::rows_matmul(rows, &xt, t, c_in, c_out * kk);
                        for (o, zo) in z.chunks_mut(t).enumerate() {
                            for (ti, v) in zo.iter_mut().enumerate() {
                                *v = zt[ti * c_out * kk + o];
                            }
                        }
                    } else {
                        let dims = (c_out * kk, t, c_in);
                        let (a, bb) = ((w, true, c_out * kk), (xi, false, t));
                        if !blas::gemm(dims, a, bb, false, &mut z)? {
                            return Ok(None);
                        }
                    }
                    yi.par_chunks_mut(n_out)
                        .zip(z.par_chunks(kk * t))
                        .zip(&bias)
                        .for_each(|((row, zc), bv)| {
                            row.fill(if with_bias { *bv } else { 0.0 });
                            for (k, zk) in zc.chunks(t).enumerate() {
                                for (ti, v) in zk.iter().enumerate() {
                                    row[ti * s + k] += v;
                                }
                            }
                        });
                }
                Ok(Some(Tensor::from_vec(ys, (b, c_out, n_out), xs.device())?))
            })
        })
    }
}

/// Multi-layer LSTM over a `[B, C, T]` signal with a residual connection (HF `EncodecLSTM`).
#[derive(Debug, Clone)]
pub(super) struct Lstm {
    /// Per layer: (W_ih^T [C, 4C], W_hh as a frozen linear layer, b_ih + b_hh [4C]). The
    /// recurrent product has one row per step, where the row-streaming kernel is fastest.
    layers: Vec<(Tensor, Linear, Tensor)>,
    /// Per layer, W_ih as a frozen linear layer too: the input projection of the one or two
    /// steps the streaming decoder runs at a time is a GEMV (a GEMM repacks the whole weight
    /// for every call).
    w_ih_rows: Vec<Linear>,
    dim: usize,
}

impl Lstm {
    pub(super) fn new(cfg: &Config, dim: usize, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("lstm");
        let mut layers = Vec::with_capacity(cfg.num_lstm_layers);
        let mut w_ih_rows = Vec::with_capacity(cfg.num_lstm_layers);
        for l in 0..cfg.num_lstm_layers {
            let w_ih = vb.get((4 * dim, dim), &format!("weight_ih_l{l}"))?;
            let w_hh = vb.get((4 * dim, dim), &format!("weight_hh_l{l}"))?;
            let b_ih = vb.get(4 * dim, &format!("bias_ih_l{l}"))?;
            let b_hh = vb.get(4 * dim, &format!("bias_hh_l{l}"))?;
            let mut w_hh = Linear::from_weight(w_hh, None);
            w_hh.convert(WeightMode::F32)?;
            let mut rows = Linear::from_weight(w_ih.clone(), None);
            rows.convert(WeightMode::F32)?;
            w_ih_rows.push(rows);
            layers.push((w_ih.t()?.contiguous()?, w_hh, (b_ih + b_hh)?));
        }
        Ok(Self {
            layers,
            w_ih_rows,
            dim,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut state = self.zero_state(xs)?;
        self.forward_from(xs, &mut state)
    }

    /// Each layer's `(h, c)` before the first step: zeros, as `nn.LSTM` starts.
    pub(super) fn zero_state(&self, xs: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        let b = xs.dim(0)?;
        let h = Tensor::zeros((b, self.dim), xs.dtype(), xs.device())?;
        Ok(vec![(h.clone(), h); self.layers.len()])
    }

    /// The LSTM over `xs` started from `state`, which it leaves as it is after the last step:
    /// a signal cut in chunks and run chunk after chunk gives the steps of the whole signal.
    pub(super) fn forward_from(
        &self,
        xs: &Tensor,
        state: &mut [(Tensor, Tensor)],
    ) -> Result<Tensor> {
        if let Some(ys) = self.forward_fused(xs, state)? {
            return Ok(ys);
        }
        let (b, _c, t) = xs.dims3()?;
        let input = xs.permute((2, 0, 1))?.contiguous()?; // [T, B, C]
        let mut seq = input.clone();
        let layers = self.layers.iter().zip(&self.w_ih_rows);
        for (((w_ih, w_hh, bias), rows), (h, c)) in layers.zip(state.iter_mut()) {
            // The input projection for every time step at once; only h @ W_hh is sequential.
            let flat = seq.reshape((t * b, self.dim))?;
            let proj = if t * b <= 2 {
                rows.forward(&flat)?
            } else {
                flat.matmul(w_ih)?
            };
            let gx = proj.broadcast_add(bias)?.reshape((t, b, 4 * self.dim))?;
            let mut outs = Vec::with_capacity(t);
            for step in 0..t {
                let g = (gx.i(step)? + w_hh.forward(h)?)?;
                let i = candle_nn::ops::sigmoid(&g.narrow(1, 0, self.dim)?)?;
                let f = candle_nn::ops::sigmoid(&g.narrow(1, self.dim, self.dim)?)?;
                let gg = g.narrow(1, 2 * self.dim, self.dim)?.tanh()?;
                let o = candle_nn::ops::sigmoid(&g.narrow(1, 3 * self.dim, self.dim)?)?;
                *c = ((f * &*c)? + (i * gg)?)?;
                *h = (o * c.tanh()?)?;
                outs.push(h.clone());
            }
            seq = Tensor::stack(&outs, 0)?;
        }
        Ok((seq + input)?.permute((1, 2, 0))?.contiguous()?)
    }
}

impl Lstm {
    /// [`Self::forward_from`] on the CPU in f32 with OpenBLAS, the weights read in place: the
    /// input projection of every step is one OpenBLAS product (a GEMV for one or two steps),
    /// each step's `W_hh · h` the row-streaming GEMV, and its gates one loop over the values
    /// (candle's path makes a dozen tensors of each step: with a chunk of 16 frames the
    /// projection through candle's GEMM alone took a fifth of a frame's decode). The same
    /// formulas as candle's sigmoid and tanh; the products sum in another order. `None` off
    /// [`blas::fast_path`].
    fn forward_fused(&self, xs: &Tensor, state: &mut [(Tensor, Tensor)]) -> Result<Option<Tensor>> {
        let mut tensors: Vec<&Tensor> = vec![xs];
        for ((w_ih_t, w_hh, bias), rows) in self.layers.iter().zip(&self.w_ih_rows) {
            let (Some(w_hh), Some(w_ih)) = (w_hh.weight(), rows.weight()) else {
                return Ok(None);
            };
            tensors.extend([w_ih_t, w_hh, bias, w_ih]);
        }
        let states = state.iter().flat_map(|(h, c)| [h, c]);
        if !blas::fast_path(tensors.iter().copied()) || !blas::fast_path(states) {
            return Ok(None);
        }
        let (b, c, t) = xs.dims3()?;
        let n = self.dim;
        if c != n || state.len() != self.layers.len() {
            return Err(Error::InvalidRequest(format!(
                "EnCodec LSTM of width {n} and {} layers got {c} channels and {} states",
                self.layers.len(),
                state.len()
            )));
        }
        Shortcut::Recurrence.entered();
        // [B, C, T] → rows of [T, B, C].
        let x = xs.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let mut input = vec![0f32; t * b * n];
        for (bi, xb) in x.chunks_exact(n * t).enumerate() {
            for (ci, xc) in xb.chunks_exact(t).enumerate() {
                for (ti, v) in xc.iter().enumerate() {
                    input[(ti * b + bi) * n + ci] = *v;
                }
            }
        }
        let weights = &tensors[1..1 + 4 * self.layers.len()];
        let mut seq = input.clone();
        in_place(weights, |w| {
            for (layer, (h, c)) in w.chunks_exact(4).zip(state.iter_mut()) {
                let [w_ih_t, w_hh, bias, w_ih] = [layer[0], layer[1], layer[2], layer[3]];
                let mut gx = if t * b <= 2 {
                    gemv::rows_matmul(w_ih, &seq, t * b, n, 4 * n)
                } else {
                    let mut gx = vec![0f32; t * b * 4 * n];
                    let dims = (t * b, 4 * n, n);
                    if !blas::gemm(
                        dims,
                        (&seq, false, n),
                        (w_ih_t, false, 4 * n),
                        false,
                        &mut gx,
                    )? {
                        return Err(Error::InvalidRequest(
                            "EnCodec LSTM: OpenBLAS declined its product".into(),
                        ));
                    }
                    gx
                };
                for row in gx.chunks_exact_mut(4 * n) {
                    row.iter_mut().zip(bias).for_each(|(g, b)| *g += b);
                }
                let mut hv = h.flatten_all()?.to_vec1::<f32>()?;
                let mut cv = c.flatten_all()?.to_vec1::<f32>()?;
                for (step, out) in seq.chunks_exact_mut(b * n).enumerate() {
                    let gh = gemv::rows_matmul(w_hh, &hv, b, n, 4 * n);
                    let gx = &gx[step * b * 4 * n..(step + 1) * b * 4 * n];
                    for bi in 0..b {
                        let (g, r) = (&gx[bi * 4 * n..][..4 * n], &gh[bi * 4 * n..][..4 * n]);
                        let (hb, cb) = (&mut hv[bi * n..][..n], &mut cv[bi * n..][..n]);
                        for j in 0..n {
                            let gate = |k: usize| g[k * n + j] + r[k * n + j];
                            let (i, f) = (sigmoid(gate(0)), sigmoid(gate(1)));
                            let (gg, o) = (gate(2).tanh(), sigmoid(gate(3)));
                            cb[j] = f * cb[j] + i * gg;
                            hb[j] = o * cb[j].tanh();
                        }
                    }
                    out.copy_from_slice(&hv);
                }
                *h = Tensor::from_vec(hv, (b, n), xs.device())?;
                *c = Tensor::from_vec(cv, (b, n), xs.device())?;
            }
            Ok(())
        })?;
        // The residual, back to [B, C, T].
        let mut ys = vec![0f32; b * n * t];
        for (ti, rows) in seq.chunks_exact(b * n).enumerate() {
            for (bi, row) in rows.chunks_exact(n).enumerate() {
                let skip = &input[(ti * b + bi) * n..][..n];
                for (ci, (v, s)) in row.iter().zip(skip).enumerate() {
                    ys[(bi * n + ci) * t + ti] = v + s;
                }
            }
        }
        Ok(Some(Tensor::from_vec(ys, (b, n, t), xs.device())?))
    }
}

/// candle's sigmoid, `1 / (exp(-x) + 1)`.
fn sigmoid(x: f32) -> f32 {
    ((-x).exp() + 1.0).recip()
}

#[derive(Debug, Clone)]
pub(super) struct ResnetBlock {
    pub(super) conv1: Conv1d,
    pub(super) conv2: Conv1d,
    pub(super) shortcut: Option<Conv1d>,
}

impl ResnetBlock {
    pub(super) fn new(
        cfg: &Config,
        dim: usize,
        dilations: [usize; 2],
        vb: VarBuilder,
    ) -> Result<Self> {
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
pub(super) enum Layer {
    Conv(Conv1d),
    ConvTr(ConvTranspose1d),
    Res(ResnetBlock),
    Lstm(Lstm),
    Elu,
}

impl Layer {
    pub(super) fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::Conv(c) => c.forward(xs),
            Self::ConvTr(c) => c.forward(xs),
            Self::Res(r) => r.forward(xs),
            Self::Lstm(l) => l.forward(xs),
            Self::Elu => elu(xs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The fused CPU LSTM equals candle's composed steps (the generic path, which the GPU
    /// runs) on a signal cut in chunks of 3, 1 (the GEMV projection) and 4 steps, with the
    /// state carried from chunk to chunk, for a batch of two.
    #[test]
    fn fused_lstm_equals_the_composed_steps() {
        use crate::models::nn::testing::seeded;
        crate::models::blas::loaded_for("the fused LSTM");
        let (n, b, t) = (24, 2, 8);
        let mut weights = std::collections::HashMap::new();
        for l in 0..2 {
            let seed = 10 * l as u64;
            weights.insert(
                format!("lstm.weight_ih_l{l}"),
                seeded(seed, (4 * n, n), 0.3),
            );
            weights.insert(
                format!("lstm.weight_hh_l{l}"),
                seeded(seed + 1, (4 * n, n), 0.3),
            );
            let bias = |s| seeded(s, (1, 4 * n), 0.1).squeeze(0).unwrap();
            weights.insert(format!("lstm.bias_ih_l{l}"), bias(seed + 2));
            weights.insert(format!("lstm.bias_hh_l{l}"), bias(seed + 3));
        }
        let vb = VarBuilder::from_tensors(weights, candle_core::DType::F32, &Device::Cpu);
        let lstm = Lstm::new(&Config::encodec_32khz(), n, vb).unwrap();
        let xs = seeded(7, (b * n, t), 1.0).reshape((b, n, t)).unwrap();
        let run = |generic: bool| {
            let _path = crate::models::nn::force_generic_ops(generic);
            let before = Shortcut::Recurrence.entries();
            let mut state = lstm.zero_state(&xs).unwrap();
            let mut outs = Vec::new();
            for (at, len) in [(0, 3), (3, 1), (4, 4)] {
                let chunk = xs.narrow(2, at, len).unwrap();
                outs.push(lstm.forward_from(&chunk, &mut state).unwrap());
            }
            let ran = Shortcut::Recurrence.entries() - before;
            assert_eq!(ran, if generic { 0 } else { 3 }, "generic {generic}");
            let (h, c) = state.pop().unwrap();
            (Tensor::cat(&outs, 2).unwrap(), h, c)
        };
        let (fused, generic) = (run(false), run(true));
        let err = |a: &Tensor, b: &Tensor| {
            let e = (a - b).unwrap().abs().unwrap().max_all().unwrap();
            e.to_scalar::<f32>().unwrap()
        };
        assert_eq!(fused.0.dims(), &[b, n, t]);
        assert!(
            err(&fused.0, &generic.0) < 1e-5,
            "{}",
            err(&fused.0, &generic.0)
        );
        assert!(err(&fused.1, &generic.1) < 1e-5 && err(&fused.2, &generic.2) < 1e-5);
        // Not the input passed through: the LSTM changed it.
        assert!(err(&fused.0, &xs) > 0.1);
    }

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
}
