//! CLAP's audio tower: HTSAT (`ClapAudioEncoder`) for the unfused model. Inference only.
//! Reference: transformers `models/clap/modeling_clap.py`.
//!
//! Input features `[B, 1, T, F]` (frames × mel bins) → batch norm over the mel bins → bicubic
//! interpolation of the time axis up to `spec_size · freq_ratio` frames (`align_corners=True`,
//! PyTorch's cubic convolution with A = −0.75) → the spectrogram folded into a
//! `spec_size × spec_size` image (`freq_ratio` time chunks stacked along frequency) → a strided
//! conv patch embedding with LayerNorm → Swin stages (window attention with a relative position
//! bias, every odd block on cyclically shifted windows with HF's −100 region mask, patch merging
//! between stages) → LayerNorm → the mean over all positions (HF's group reshapes and
//! `AdaptiveAvgPool1d(1)` reduce to exactly that mean).

use candle_core::{Tensor, D};
use candle_nn::VarBuilder;

use super::config::{Activation, AudioConfig};
use crate::error::{Error, Result};
use crate::models::nn::{LayerNorm, Linear};

/// PyTorch's default `nn.LayerNorm` / `nn.BatchNorm2d` epsilon (HTSAT's patch-embed, merging,
/// final norms and the input batch norm do not take the config's).
const TORCH_EPS: f64 = 1e-5;

/// `nn.BatchNorm2d` in eval mode over the mel bins: `x · α + β` with `α = w / √(var + ε)` and
/// `β = b − mean · α` (PyTorch's CPU formulation).
pub struct MelBatchNorm {
    alpha: Tensor,
    beta: Tensor,
}

impl MelBatchNorm {
    pub fn new(bins: usize, vb: VarBuilder) -> Result<Self> {
        let w = vb.get(bins, "weight")?;
        let b = vb.get(bins, "bias")?;
        let mean = vb.get(bins, "running_mean")?;
        let var = vb.get(bins, "running_var")?;
        let alpha = w.div(&(var + TORCH_EPS)?.sqrt()?)?;
        let beta = b.sub(&mean.mul(&alpha)?)?;
        Ok(Self { alpha, beta })
    }

    /// `[.., F]` → same shape.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.broadcast_mul(&self.alpha)?.broadcast_add(&self.beta)?)
    }
}

/// PyTorch's cubic convolution kernels (A = −0.75), in f32 as its CPU kernel computes them.
fn cubic_coefficients(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let cc1 = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let cc2 = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [cc2(t + 1.0), cc1(t), cc1(1.0 - t), cc2(2.0 - t)]
}

/// The `[out, in]` matrix of `F.interpolate(mode="bicubic", align_corners=True)` along one axis
/// (border samples clamped, as PyTorch does).
pub fn bicubic_matrix(input: usize, output: usize) -> Vec<f32> {
    let scale = if output > 1 {
        (input - 1) as f32 / (output - 1) as f32
    } else {
        0.0
    };
    let mut m = vec![0f32; output * input];
    for i in 0..output {
        let real = scale * i as f32;
        let idx = (real.floor() as usize).min(input - 1);
        let t = (real - idx as f32).clamp(0.0, 1.0);
        for (j, w) in cubic_coefficients(t).into_iter().enumerate() {
            let src = (idx + j).saturating_sub(1).min(input - 1);
            m[i * input + src] += w;
        }
    }
    m
}

/// `patch_embed`: conv (kernel `patch_size`, stride `patch_stride`), flattened to tokens,
/// optional LayerNorm.
pub struct PatchEmbed {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
    norm: Option<LayerNorm>,
}

impl PatchEmbed {
    pub fn new(cfg: &AudioConfig, vb: VarBuilder) -> Result<Self> {
        let (p, _) = cfg.patch_size.pair();
        let (s, _) = cfg.patch_stride.pair();
        let c = cfg.patch_embeds_hidden_size;
        Ok(Self {
            weight: vb.get((c, cfg.patch_embed_input_channels, p, p), "proj.weight")?,
            bias: vb.get(c, "proj.bias")?,
            stride: s,
            padding: (p - s) / 2,
            norm: if cfg.enable_patch_layer_norm {
                Some(LayerNorm::new(c, TORCH_EPS, vb.pp("norm"))?)
            } else {
                None
            },
        })
    }

    /// `[B, 1, H, W]` image → `[B, H/s · W/s, C]` tokens.
    pub fn forward(&self, img: &Tensor) -> Result<Tensor> {
        let y = img.conv2d(&self.weight, self.padding, self.stride, 1, 1)?;
        let y = y.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)?;
        let y = y.flatten_from(2)?.transpose(1, 2)?;
        match &self.norm {
            Some(n) => n.forward(&y),
            None => Ok(y),
        }
    }
}

/// `(B, H, W, C)` → `(B · nW, ws², C)`.
fn window_partition(x: &Tensor, ws: usize) -> Result<Tensor> {
    let (b, h, w, c) = x.dims4()?;
    Ok(x.reshape((b, h / ws, ws, w / ws, ws, c))?
        .permute((0, 1, 3, 2, 4, 5))?
        .contiguous()?
        .reshape((b * (h / ws) * (w / ws), ws * ws, c))?)
}

/// `(B · nW, ws², C)` → `(B, H, W, C)`.
fn window_reverse(x: &Tensor, ws: usize, b: usize, h: usize, w: usize) -> Result<Tensor> {
    let c = x.dim(D::Minus1)?;
    Ok(x.reshape((b, h / ws, w / ws, ws, ws, c))?
        .permute((0, 1, 3, 2, 4, 5))?
        .contiguous()?
        .reshape((b, h, w, c))?)
}

/// Window self-attention (`attention.self` + `attention.output.dense`) with the relative
/// position bias of the configured window, gathered once at load.
pub struct WindowAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    dense: Linear,
    /// `[1, heads, ws², ws²]`
    bias: Tensor,
    heads: usize,
    head_dim: usize,
}

impl WindowAttention {
    pub fn new(cfg: &AudioConfig, dim: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        let ws = cfg.window_size;
        let s = vb.pp("self");
        let table = s.get(
            ((2 * ws - 1) * (2 * ws - 1), heads),
            "relative_position_bias_table",
        )?;
        // HF's create_relative_position_index (the checkpoint's buffer holds the same values).
        let n = ws * ws;
        let index: Vec<u32> = (0..n)
            .flat_map(|i| {
                (0..n).map(move |j| {
                    let dh = (i / ws) as i64 - (j / ws) as i64 + ws as i64 - 1;
                    let dw = (i % ws) as i64 - (j % ws) as i64 + ws as i64 - 1;
                    (dh * (2 * ws as i64 - 1) + dw) as u32
                })
            })
            .collect();
        let index = Tensor::from_vec(index, n * n, table.device())?;
        let bias = table
            .index_select(&index, 0)?
            .reshape((n, n, heads))?
            .permute((2, 0, 1))?
            .contiguous()?
            .unsqueeze(0)?;
        Ok(Self {
            query: Linear::new(dim, dim, cfg.qkv_bias, s.pp("query"))?,
            key: Linear::new(dim, dim, cfg.qkv_bias, s.pp("key"))?,
            value: Linear::new(dim, dim, cfg.qkv_bias, s.pp("value"))?,
            dense: Linear::new(dim, dim, true, vb.pp("output").pp("dense"))?,
            bias,
            heads,
            head_dim: dim / heads,
        })
    }

    /// `[B·nW, N, C]` windows, `mask` `[nW, N, N]` for shifted windows.
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (bw, n, c) = x.dims3()?;
        let split = |t: Tensor| -> Result<Tensor> {
            Ok(t.reshape((bw, n, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = split(self.query.forward(x)?)?;
        let k = split(self.key.forward(x)?)?;
        let v = split(self.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?;
        let mut scores = scores.broadcast_add(&self.bias)?;
        if let Some(m) = mask {
            let nw = m.dim(0)?;
            scores = scores
                .reshape((bw / nw, nw, self.heads, n, n))?
                .broadcast_add(&m.unsqueeze(1)?.unsqueeze(0)?)?
                .reshape((bw, self.heads, n, n))?;
        }
        // Inference only (CLAP is never trained here): the fused softmax has no backward.
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((bw, n, c))?;
        self.dense.forward(&ctx)
    }
}

/// HF's shifted-window mask: positions of the padded `hp × wp` grid fall in 3 × 3 regions;
/// pairs from different regions get −100. `[nW, ws², ws²]`.
fn shift_mask(hp: usize, wp: usize, ws: usize, shift: usize) -> Vec<f32> {
    let region =
        |i: usize, size: usize| usize::from(i >= size - ws) + usize::from(i >= size - shift);
    let mut windows = Vec::new();
    for wh in 0..hp / ws {
        for ww in 0..wp / ws {
            let ids: Vec<usize> = (0..ws * ws)
                .map(|k| {
                    let (h, w) = (wh * ws + k / ws, ww * ws + k % ws);
                    region(h, hp) * 3 + region(w, wp)
                })
                .collect();
            for &a in &ids {
                for &b in &ids {
                    windows.push(if a == b { 0.0 } else { -100.0 });
                }
            }
        }
    }
    windows
}

/// One Swin block at a fixed input resolution (HF's `ClapAudioLayer`).
pub struct SwinBlock {
    layernorm_before: LayerNorm,
    attention: WindowAttention,
    layernorm_after: LayerNorm,
    intermediate: Linear,
    output: Linear,
    act: Activation,
    height: usize,
    width: usize,
    window: usize,
    shift: usize,
    /// `[nW, ws², ws²]` for shifted blocks.
    mask: Option<Tensor>,
}

impl SwinBlock {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: &AudioConfig,
        dim: usize,
        heads: usize,
        (height, width): (usize, usize),
        shift: usize,
        act: Activation,
        vb: VarBuilder,
    ) -> Result<Self> {
        // HF's set_shift_and_window_size: a grid no larger than the window is one window.
        let (mut window, mut shift) = (cfg.window_size, shift);
        if height.min(width) <= window {
            shift = 0;
            window = height.min(width);
        }
        if window != cfg.window_size {
            return Err(Error::InvalidRequest(format!(
                "HTSAT grid {height}x{width} is smaller than the {0}x{0} window (HF cannot run \
                 this configuration either)",
                cfg.window_size
            )));
        }
        let hidden = (cfg.mlp_ratio * dim as f64) as usize;
        let attention = WindowAttention::new(cfg, dim, heads, vb.pp("attention"))?;
        let mask = if shift > 0 {
            let hp = height.div_ceil(window) * window;
            let wp = width.div_ceil(window) * window;
            let n = window * window;
            let m = shift_mask(hp, wp, window, shift);
            let nw = m.len() / (n * n);
            Some(Tensor::from_vec(m, (nw, n, n), attention.bias.device())?)
        } else {
            None
        };
        Ok(Self {
            layernorm_before: LayerNorm::new(dim, cfg.layer_norm_eps, vb.pp("layernorm_before"))?,
            attention,
            layernorm_after: LayerNorm::new(dim, cfg.layer_norm_eps, vb.pp("layernorm_after"))?,
            intermediate: Linear::new(dim, hidden, true, vb.pp("intermediate").pp("dense"))?,
            output: Linear::new(hidden, dim, true, vb.pp("output").pp("dense"))?,
            act,
            height,
            width,
            window,
            shift,
            mask,
        })
    }

    /// `[B, H·W, C]` → same.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, c) = x.dims3()?;
        let (h, w, ws) = (self.height, self.width, self.window);
        let y = self.layernorm_before.forward(x)?.reshape((b, h, w, c))?;
        let (pad_r, pad_b) = ((ws - w % ws) % ws, (ws - h % ws) % ws);
        let y = y.pad_with_zeros(2, 0, pad_r)?.pad_with_zeros(1, 0, pad_b)?;
        let (hp, wp) = (h + pad_b, w + pad_r);
        let s = self.shift as i32;
        let y = if s > 0 {
            y.roll(-s, 1)?.roll(-s, 2)?
        } else {
            y
        };
        let windows = window_partition(&y, ws)?;
        let attn = self.attention.forward(&windows, self.mask.as_ref())?;
        let y = window_reverse(&attn, ws, b, hp, wp)?;
        let y = if s > 0 { y.roll(s, 1)?.roll(s, 2)? } else { y };
        let y = y.narrow(1, 0, h)?.narrow(2, 0, w)?.reshape((b, h * w, c))?;
        let x = (x + y)?;
        let z = self.layernorm_after.forward(&x)?;
        let z = self
            .output
            .forward(&self.act.apply(&self.intermediate.forward(&z)?)?)?;
        Ok((x + z)?)
    }
}

/// `downsample`: 2 × 2 neighbourhoods concatenated (HF's order: (0,0), (1,0), (0,1), (1,1) as
/// (row, column)), LayerNorm, linear `4C → 2C` without bias.
pub struct PatchMerging {
    norm: LayerNorm,
    reduction: Linear,
    height: usize,
    width: usize,
}

impl PatchMerging {
    pub fn new(dim: usize, (height, width): (usize, usize), vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm: LayerNorm::new(4 * dim, TORCH_EPS, vb.pp("norm"))?,
            reduction: Linear::new(4 * dim, 2 * dim, false, vb.pp("reduction"))?,
            height,
            width,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, c) = x.dims3()?;
        let (h, w) = (self.height, self.width);
        let x = x
            .reshape((b, h, w, c))?
            .pad_with_zeros(2, 0, w % 2)?
            .pad_with_zeros(1, 0, h % 2)?;
        let (h2, w2) = (h.div_ceil(2), w.div_ceil(2));
        let x = x.reshape((b, h2, 2, w2, 2, c))?;
        let part = |row: usize, col: usize| -> Result<Tensor> {
            Ok(x.narrow(2, row, 1)?
                .narrow(4, col, 1)?
                .reshape((b, h2 * w2, c))?)
        };
        let cat = Tensor::cat(&[part(0, 0)?, part(1, 0)?, part(0, 1)?, part(1, 1)?], 2)?;
        self.reduction.forward(&self.norm.forward(&cat)?)
    }
}

/// One stage: its blocks and the merging that follows (all but the last stage).
pub struct Stage {
    blocks: Vec<SwinBlock>,
    downsample: Option<PatchMerging>,
}

/// `audio_model.audio_encoder`.
pub struct AudioEncoder {
    batch_norm: MelBatchNorm,
    patch_embed: PatchEmbed,
    layers: Vec<Stage>,
    norm: LayerNorm,
    spec_size: usize,
    spec_width: usize,
    spec_height: usize,
    freq_ratio: usize,
}

impl AudioEncoder {
    pub fn new(cfg: &AudioConfig, vb: VarBuilder) -> Result<Self> {
        let act = Activation::parse(&cfg.hidden_act).map_err(Error::InvalidRequest)?;
        let (stride, _) = cfg.patch_stride.pair();
        let grid = cfg.spec_size / stride;
        let n = cfg.depths.len();
        let mut layers = Vec::with_capacity(n);
        for (i, (&depth, &heads)) in cfg.depths.iter().zip(&cfg.num_attention_heads).enumerate() {
            let dim = cfg.stage_dim(i);
            let res = (grid >> i, grid >> i);
            let vs = vb.pp("layers").pp(i);
            let blocks = (0..depth)
                .map(|j| {
                    let shift = if j % 2 == 0 { 0 } else { cfg.window_size / 2 };
                    SwinBlock::new(cfg, dim, heads, res, shift, act, vs.pp("blocks").pp(j))
                })
                .collect::<Result<Vec<_>>>()?;
            let downsample = if i + 1 < n {
                Some(PatchMerging::new(dim, res, vs.pp("downsample"))?)
            } else {
                None
            };
            layers.push(Stage { blocks, downsample });
        }
        Ok(Self {
            batch_norm: MelBatchNorm::new(cfg.num_mel_bins, vb.pp("batch_norm"))?,
            patch_embed: PatchEmbed::new(cfg, vb.pp("patch_embed"))?,
            layers,
            norm: LayerNorm::new(cfg.num_features(), TORCH_EPS, vb.pp("norm"))?,
            spec_size: cfg.spec_size,
            spec_width: cfg.spec_width(),
            spec_height: cfg.spec_height(),
            freq_ratio: cfg.freq_ratio(),
        })
    }

    /// Batch norm and `reshape_mel2img`: `[B, 1, T, F]` features → `[B, 1, S, S]` image.
    pub fn mel_to_image(&self, features: &Tensor) -> Result<Tensor> {
        let (b, c, t, f) = features.dims4()?;
        if c != 1 || f != self.spec_height || t > self.spec_width || t == 0 {
            return Err(Error::InvalidRequest(format!(
                "CLAP audio features of shape [{b}, {c}, {t}, {f}]: the model takes [B, 1, T, \
                 {}] with 1 ≤ T ≤ {}",
                self.spec_height, self.spec_width
            )));
        }
        let x = self.batch_norm.forward(features)?.reshape((b, t, f))?;
        let x = if t < self.spec_width {
            let m = bicubic_matrix(t, self.spec_width);
            let m = Tensor::from_vec(m, (self.spec_width, t), x.device())?;
            m.broadcast_matmul(&x)?
        } else {
            x
        };
        let r = self.freq_ratio;
        Ok(x.reshape((b, r, self.spec_width / r, f))?
            .permute((0, 1, 3, 2))?
            .contiguous()?
            .reshape((b, 1, f * r, self.spec_width / r))?)
    }

    /// Pooler output `[B, num_features]`: the mean of the final-norm tokens.
    pub fn forward(&self, features: &Tensor) -> Result<Tensor> {
        let img = self.mel_to_image(features)?;
        let (_, _, h, w) = img.dims4()?;
        if h != self.spec_size || w != self.spec_size {
            return Err(Error::InvalidRequest(format!(
                "HTSAT input {h}x{w} does not match the model's {0}x{0}",
                self.spec_size
            )));
        }
        let mut x = self.patch_embed.forward(&img)?;
        for stage in &self.layers {
            for block in &stage.blocks {
                x = block.forward(&x)?;
            }
            if let Some(d) = &stage.downsample {
                x = d.forward(&x)?;
            }
        }
        Ok(self.norm.forward(&x)?.mean(1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bicubic_rows_sum_to_one_and_hit_the_corners() {
        let m = bicubic_matrix(101, 256);
        for row in m.chunks(101) {
            let s: f32 = row.iter().sum();
            assert!((s - 1.0).abs() < 1e-6, "{s}");
        }
        // align_corners: the first and last outputs are the first and last inputs.
        assert_eq!(m[0], 1.0);
        assert_eq!(m[255 * 101 + 100], 1.0);
        // Same size is the identity.
        let id = bicubic_matrix(5, 5);
        for i in 0..5 {
            for j in 0..5 {
                assert_eq!(id[i * 5 + j], f32::from(u8::from(i == j)));
            }
        }
    }

    #[test]
    fn shift_mask_separates_the_rolled_regions() {
        // 8x8 grid, window 4, shift 2: four windows; only the top-left one is a single region.
        let m = shift_mask(8, 8, 4, 2);
        assert_eq!(m.len(), 4 * 16 * 16);
        assert!(m[..256].iter().all(|&v| v == 0.0));
        for w in 1..4 {
            assert!(m[w * 256..(w + 1) * 256].contains(&-100.0));
        }
        // The last window mixes 4 regions: each token sees 4 of the 16.
        let last = &m[3 * 256..];
        assert!(last
            .chunks(16)
            .all(|r| r.iter().filter(|&&v| v == 0.0).count() == 4));
    }
}
