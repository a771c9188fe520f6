//! The MusicGen LM (`MusicgenForCausalLM` plus the top-level `enc_to_dec_proj`), written against
//! Hugging Face's `modeling_musicgen.py` with its key names:
//!
//! ```text
//! enc_to_dec_proj.{weight,bias}                          768 → H (text conditioning)
//! decoder.model.decoder.embed_tokens.{k}.weight          [vocab + 1, H], summed over codebooks
//! decoder.model.decoder.layers.{i}.self_attn.{q,k,v,out}_proj.weight
//! decoder.model.decoder.layers.{i}.encoder_attn.{q,k,v,out}_proj.weight
//! decoder.model.decoder.layers.{i}.{self_attn,encoder_attn,final}_layer_norm.{weight,bias}
//! decoder.model.decoder.layers.{i}.fc{1,2}.weight
//! decoder.model.decoder.layer_norm.{weight,bias}
//! decoder.lm_heads.{k}.weight                            [vocab, H]
//! ```
//!
//! Positions are sinusoidal (`cat[cos, sin]`, not stored). Each layer is pre-norm:
//! self-attention, cross-attention to the projected text, GELU (erf) feed-forward.
//! Self-attention keeps a KV cache; cross-attention K/V are computed once per generation.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;

use super::config::DecoderConfig;
use crate::error::Result;
use crate::models::nn::{
    attention, fast_path, gelu_erf, single_query_attention, HalfKv, LayerNorm, Linear, WeightMode,
};

const LN_EPS: f64 = 1e-5;

/// Text conditioning as the decoder consumes it: projected states `[B, L, H]` (already multiplied
/// by the mask) and the mask `[B, L]` (1 = token, 0 = padding / unconditional).
#[derive(Debug, Clone)]
pub struct Conditioning {
    pub states: Tensor,
    pub mask: Tensor,
}

impl Conditioning {
    /// Additive cross-attention mask `[B, 1, 1, L]`: 0 where attended, `f32::MIN` elsewhere (as
    /// HF; a fully masked row then attends uniformly to zero vectors and yields exactly 0).
    fn additive_mask(&self) -> Result<Tensor> {
        let (b, l) = self.mask.dims2()?;
        let m = self.mask.to_dtype(DType::F32)?;
        let add = ((m - 1.0)? * -(f32::MIN as f64))?; // 0 → MIN, 1 → 0
        Ok(add.reshape((b, 1, 1, l))?)
    }

    /// Batch of conditioned rows followed by as many unconditional rows (zeros, zero mask): the
    /// layout classifier-free guidance runs on.
    pub fn with_unconditional(&self) -> Result<Self> {
        Ok(Self {
            states: Tensor::cat(&[&self.states, &self.states.zeros_like()?], 0)?,
            mask: Tensor::cat(&[&self.mask, &self.mask.zeros_like()?], 0)?,
        })
    }

    pub fn batch_size(&self) -> Result<usize> {
        Ok(self.states.dim(0)?)
    }
}

/// `cat[cos(p·f), sin(p·f)]` with `f_i = exp(-i·ln(10000)/(half-1))`, computed in f32 as HF does.
pub fn sinusoidal_positions(num: usize, dim: usize, device: &Device) -> Result<Tensor> {
    let half = dim / 2;
    let step = -((10000f64).ln() / (half as f64 - 1.0)) as f32;
    let freqs: Vec<f32> = (0..half).map(|i| (i as f32 * step).exp()).collect();
    let mut data = Vec::with_capacity(num * dim);
    for p in 0..num {
        let row: Vec<f32> = freqs.iter().map(|f| p as f32 * f).collect();
        data.extend(row.iter().map(|a| a.cos()));
        data.extend(row.iter().map(|a| a.sin()));
        if dim % 2 == 1 {
            data.push(0.0);
        }
    }
    Ok(Tensor::from_vec(data, (num, dim), device)?)
}

#[derive(Debug, Clone)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    num_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(cfg: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            q_proj: Linear::new(h, h, false, vb.pp("q_proj"))?,
            k_proj: Linear::new(h, h, false, vb.pp("k_proj"))?,
            v_proj: Linear::new(h, h, false, vb.pp("v_proj"))?,
            out_proj: Linear::new(h, h, false, vb.pp("out_proj"))?,
            num_heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
        })
    }

    pub fn linears(&self) -> [(&'static str, &Linear); 4] {
        [
            ("q_proj", &self.q_proj),
            ("k_proj", &self.k_proj),
            ("v_proj", &self.v_proj),
            ("out_proj", &self.out_proj),
        ]
    }

    pub fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 4] {
        [
            ("q_proj", &mut self.q_proj),
            ("k_proj", &mut self.k_proj),
            ("v_proj", &mut self.v_proj),
            ("out_proj", &mut self.out_proj),
        ]
    }

    /// `[B, S, H]` → `[B, heads, S, head_dim]`
    fn split_heads(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, s, _) = xs.dims3()?;
        Ok(xs
            .reshape((b, s, self.num_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    fn project_kv(&self, xs: &Tensor) -> Result<(Tensor, Tensor)> {
        let k = self.split_heads(&self.k_proj.forward(xs)?)?;
        let v = self.split_heads(&self.v_proj.forward(xs)?)?;
        Ok((k, v))
    }

    /// Attention of `xs` `[B, S, H]` over everything `kv` holds (its own positions appended
    /// already): a step of one position reads the f16 cache in place, a prefill of several
    /// widens it to f32 for the ordinary path.
    fn attend_half(&self, xs: &Tensor, kv: &HalfKv, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, s, h) = xs.dims3()?;
        if s > 1 {
            let (k, v) = kv.tensors(xs.device())?;
            return self.attend(xs, &k, &v, mask, true);
        }
        let scale = (self.head_dim as f64).powf(-0.5);
        let q = self.split_heads(&(self.q_proj.forward(xs)? * scale)?)?;
        let out = kv.attend(&q)?;
        let out = out.transpose(1, 2)?.reshape((b, s, h))?;
        self.out_proj.forward(&out)
    }

    /// `decoding`: a generation step (no gradient wanted), where one query position goes
    /// through [`single_query_attention`].
    fn attend(
        &self,
        xs: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        decoding: bool,
    ) -> Result<Tensor> {
        let (b, s, h) = xs.dims3()?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let q = self.split_heads(&(self.q_proj.forward(xs)? * scale)?)?;
        let fused = if decoding {
            single_query_attention(&q, k, v, mask)?
        } else {
            None
        };
        let out = match fused {
            Some(out) => out,
            None => attention(&q, k, v, mask)?,
        };
        let out = out.transpose(1, 2)?.reshape((b, s, h))?;
        self.out_proj.forward(&out)
    }
}

#[derive(Debug, Clone)]
pub struct DecoderLayer {
    pub self_attn: Attention,
    pub self_attn_layer_norm: LayerNorm,
    pub encoder_attn: Attention,
    pub encoder_attn_layer_norm: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
    pub final_layer_norm: LayerNorm,
}

impl DecoderLayer {
    fn new(cfg: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            self_attn_layer_norm: LayerNorm::new(h, LN_EPS, vb.pp("self_attn_layer_norm"))?,
            encoder_attn: Attention::new(cfg, vb.pp("encoder_attn"))?,
            encoder_attn_layer_norm: LayerNorm::new(h, LN_EPS, vb.pp("encoder_attn_layer_norm"))?,
            fc1: Linear::new(h, cfg.ffn_dim, false, vb.pp("fc1"))?,
            fc2: Linear::new(cfg.ffn_dim, h, false, vb.pp("fc2"))?,
            final_layer_norm: LayerNorm::new(h, LN_EPS, vb.pp("final_layer_norm"))?,
        })
    }

    fn forward(
        &self,
        xs: &Tensor,
        self_mask: Option<&Tensor>,
        cache: Option<&mut LayerCache>,
        cond: &Conditioning,
        cross_mask: &Tensor,
    ) -> Result<Tensor> {
        let h = self.self_attn_layer_norm.forward(xs)?;
        let (k, v) = self.self_attn.project_kv(&h)?;
        let decoding = cache.is_some();
        let (attended, cross) = match cache {
            Some(c) => {
                let attended = match &mut c.self_kv {
                    SelfKv::F32(kv) => {
                        let (k, v) = kv.append(&k, &v)?;
                        self.self_attn.attend(&h, &k, &v, self_mask, true)?
                    }
                    SelfKv::F16(kv) => {
                        kv.append(&k, &v)?;
                        self.self_attn.attend_half(&h, kv, self_mask)?
                    }
                };
                if c.cross_kv.is_none() {
                    c.cross_kv = Some(self.encoder_attn.project_kv(&cond.states)?);
                }
                (attended, c.cross_kv.clone())
            }
            None => (self.self_attn.attend(&h, &k, &v, self_mask, false)?, None),
        };
        let xs = (xs + attended)?;

        let h = self.encoder_attn_layer_norm.forward(&xs)?;
        let (ck, cv) = match cross {
            Some(kv) => kv,
            None => self.encoder_attn.project_kv(&cond.states)?,
        };
        let xs = (&xs
            + self
                .encoder_attn
                .attend(&h, &ck, &cv, Some(cross_mask), decoding)?)?;

        let h = self.final_layer_norm.forward(&xs)?;
        let h = self.fc2.forward(&gelu_erf(&self.fc1.forward(&h)?)?)?;
        Ok((xs + h)?)
    }
}

/// Per-layer generation state.
#[derive(Debug, Clone)]
pub struct LayerCache {
    self_kv: SelfKv,
    cross_kv: Option<(Tensor, Tensor)>,
}

/// Where a layer keeps its self-attention keys and values.
#[derive(Debug, Clone)]
enum SelfKv {
    /// In the compute precision, any device: exact (f32 weights, the parity suite).
    F32(candle_nn::kv_cache::KvCache),
    /// In f16 on the CPU (8- and 4-bit weights): half the bytes each step reads.
    F16(HalfKv),
}

/// Generation state of the whole decoder: self-attention K/V per layer, cross-attention K/V
/// (computed on the first step), and the number of positions already seen.
#[derive(Debug, Clone)]
pub struct DecoderCache {
    layers: Vec<LayerCache>,
    offset: usize,
}

impl DecoderCache {
    /// A cache in the compute precision for up to `max_len` positions.
    pub fn new(cfg: &DecoderConfig, max_len: usize) -> Self {
        Self::with(cfg, || {
            SelfKv::F32(candle_nn::kv_cache::KvCache::new(2, max_len))
        })
    }

    /// A cache for up to `max_len` positions keeping keys and values in f16 (CPU, f32
    /// compute; see `models::nn::HalfKv`).
    pub fn half(cfg: &DecoderConfig, max_len: usize) -> Self {
        Self::with(cfg, || SelfKv::F16(HalfKv::new(max_len)))
    }

    fn with(cfg: &DecoderConfig, kv: impl Fn() -> SelfKv) -> Self {
        let layers = (0..cfg.num_hidden_layers)
            .map(|_| LayerCache {
                self_kv: kv(),
                cross_kv: None,
            })
            .collect();
        Self { layers, offset: 0 }
    }

    pub fn offset(&self) -> usize {
        self.offset
    }
}

/// `MusicgenForConditionalGeneration` minus the frozen T5 and EnCodec: the trainable LM.
#[derive(Debug, Clone)]
pub struct MusicgenLm {
    pub enc_to_dec_proj: Linear,
    pub embed_tokens: Vec<Tensor>,
    pub layers: Vec<DecoderLayer>,
    pub layer_norm: LayerNorm,
    pub lm_heads: Vec<Linear>,
    positions: Tensor,
    cfg: DecoderConfig,
    /// The precision activations are computed in (f32, or bf16/f16 for reduced-precision
    /// inference and mixed-precision training). Layer norms and softmaxes run in f32 whatever
    /// it is; logits come out in it.
    compute: DType,
    /// Whether the large matrices are 8- or 4-bit ([`Self::convert_weights`]): generation then
    /// keeps its KV cache in f16 ([`Self::new_cache`]).
    quantised: bool,
}

impl MusicgenLm {
    /// The LM's current tensors by checkpoint name (frozen and trainable alike; shared storage).
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        let d = "decoder.model.decoder";
        let mut put = |n: String, t: Option<&Tensor>| {
            if let Some(t) = t {
                out.insert(n, t.detach());
            }
        };
        put(
            "enc_to_dec_proj.weight".into(),
            self.enc_to_dec_proj.weight(),
        );
        put("enc_to_dec_proj.bias".into(), self.enc_to_dec_proj.bias());
        for (k, e) in self.embed_tokens.iter().enumerate() {
            put(format!("{d}.embed_tokens.{k}.weight"), Some(e));
        }
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("{d}.layers.{i}");
            for (n, lin) in l.self_attn.linears() {
                put(format!("{p}.self_attn.{n}.weight"), lin.weight());
            }
            for (n, lin) in l.encoder_attn.linears() {
                put(format!("{p}.encoder_attn.{n}.weight"), lin.weight());
            }
            put(format!("{p}.fc1.weight"), l.fc1.weight());
            put(format!("{p}.fc2.weight"), l.fc2.weight());
            for (n, ln) in [
                ("self_attn_layer_norm", &l.self_attn_layer_norm),
                ("encoder_attn_layer_norm", &l.encoder_attn_layer_norm),
                ("final_layer_norm", &l.final_layer_norm),
            ] {
                put(format!("{p}.{n}.weight"), Some(&ln.weight));
                put(format!("{p}.{n}.bias"), Some(&ln.bias));
            }
        }
        put(
            format!("{d}.layer_norm.weight"),
            Some(&self.layer_norm.weight),
        );
        put(format!("{d}.layer_norm.bias"), Some(&self.layer_norm.bias));
        for (k, h) in self.lm_heads.iter().enumerate() {
            put(format!("decoder.lm_heads.{k}.weight"), h.weight());
        }
        out
    }

    /// `vb` is the checkpoint root (keys `enc_to_dec_proj.*` and `decoder.*`).
    pub fn new(cfg: &DecoderConfig, text_hidden: usize, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let enc_to_dec_proj = Linear::new(text_hidden, h, true, vb.pp("enc_to_dec_proj"))?;
        let vbd = vb.pp("decoder").pp("model").pp("decoder");
        let embed_tokens = (0..cfg.num_codebooks)
            .map(|k| {
                vbd.pp("embed_tokens")
                    .pp(k.to_string())
                    .get((cfg.vocab_size + 1, h), "weight")
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::new(cfg, vbd.pp("layers").pp(i.to_string())))
            .collect::<Result<Vec<_>>>()?;
        let layer_norm = LayerNorm::new(h, LN_EPS, vbd.pp("layer_norm"))?;
        let lm_heads = (0..cfg.num_codebooks)
            .map(|k| {
                Linear::new(
                    h,
                    cfg.vocab_size,
                    false,
                    vb.pp("decoder").pp("lm_heads").pp(k.to_string()),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let positions = sinusoidal_positions(cfg.max_position_embeddings, h, vb.device())?;
        Ok(Self {
            enc_to_dec_proj,
            embed_tokens,
            layers,
            layer_norm,
            lm_heads,
            positions,
            cfg: cfg.clone(),
            compute: DType::F32,
            quantised: false,
        })
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        self.positions.device()
    }

    /// The precision activations are computed in.
    pub fn compute_dtype(&self) -> DType {
        self.compute
    }

    /// Computes in `dtype` from now on, the weights staying as they are (mixed-precision
    /// training: f32 master weights are cast where they are used, and their gradients come back
    /// in f32).
    pub fn set_compute_dtype(&mut self, dtype: DType) {
        self.compute = dtype;
    }

    /// Stores the large weights (projections, heads, embeddings) in `dtype` and computes in it:
    /// reduced-precision inference (layer norms keep f32 parameters).
    pub fn to_inference_dtype(&mut self, dtype: DType) -> Result<()> {
        for layer in &mut self.layers {
            for (_, l) in layer.self_attn.linears_mut() {
                l.to_dtype(dtype)?;
            }
            for (_, l) in layer.encoder_attn.linears_mut() {
                l.to_dtype(dtype)?;
            }
            layer.fc1.to_dtype(dtype)?;
            layer.fc2.to_dtype(dtype)?;
        }
        for head in &mut self.lm_heads {
            head.to_dtype(dtype)?;
        }
        self.enc_to_dec_proj.to_dtype(dtype)?;
        for table in &mut self.embed_tokens {
            *table = table.detach().to_dtype(dtype)?;
        }
        self.compute = dtype;
        Ok(())
    }

    /// Lays the large matrices out for inference in `mode` (embeddings stay fp32).
    pub fn convert_weights(&mut self, mode: WeightMode) -> Result<()> {
        for layer in &mut self.layers {
            for (_, l) in layer.self_attn.linears_mut() {
                l.convert(mode)?;
            }
            for (_, l) in layer.encoder_attn.linears_mut() {
                l.convert(mode)?;
            }
            layer.fc1.convert(mode)?;
            layer.fc2.convert(mode)?;
        }
        for head in &mut self.lm_heads {
            head.convert(mode)?;
        }
        self.enc_to_dec_proj.convert(WeightMode::F32)?;
        // Layers narrower than a block stay f32 (q4k's blocks of 256 on the test fixture).
        self.quantised = self
            .layers
            .iter()
            .any(|l| l.fc1.is_quantised() || l.self_attn.q_proj.is_quantised());
        Ok(())
    }

    /// The generation cache for up to `max_len` positions: f16 keys and values when the
    /// weights are 8- or 4-bit and the step runs on the CPU's f32 path (half of what a step
    /// reads besides the weights), else in the compute precision (exact: f32 weights keep the
    /// parity suite's cache).
    pub fn new_cache(&self, max_len: usize) -> DecoderCache {
        if self.quantised && fast_path(&self.embed_tokens) {
            DecoderCache::half(&self.cfg, max_len)
        } else {
            DecoderCache::new(&self.cfg, max_len)
        }
    }

    /// T5 states `[B, L, 768]` and mask `[B, L]` → what the decoder attends to
    /// (`enc_to_dec_proj(states) * mask`).
    pub fn condition(&self, text_states: &Tensor, mask: &Tensor) -> Result<Conditioning> {
        let proj = self
            .enc_to_dec_proj
            .forward(&text_states.to_dtype(self.compute)?)?;
        let m = mask.to_dtype(proj.dtype())?.unsqueeze(D::Minus1)?;
        Ok(Conditioning {
            states: proj.broadcast_mul(&m)?,
            mask: mask.clone(),
        })
    }

    /// Codes `[B, K, S]` (u32, 2048 = pad/BOS) → logits `[B, K, S, vocab]` (in the compute
    /// precision).
    ///
    /// With a cache, positions continue from what the cache has seen and the cache grows by S.
    pub fn forward(
        &self,
        codes: &Tensor,
        cond: &Conditioning,
        mut cache: Option<&mut DecoderCache>,
    ) -> Result<Tensor> {
        let s = codes.dim(2)?;
        let offset = cache.as_ref().map(|c| c.offset).unwrap_or(0);
        let mut xs = self.embed(codes, offset)?;
        let self_mask = if s > 1 {
            Some(causal_mask(s, offset, xs.device())?)
        } else {
            None
        };
        let cross_mask = cond.additive_mask()?;
        for (i, layer) in self.layers.iter().enumerate() {
            let lc = cache.as_mut().and_then(|c| c.layers.get_mut(i));
            xs = layer.forward(&xs, self_mask.as_ref(), lc, cond, &cross_mask)?;
        }
        if let Some(c) = cache {
            c.offset += s;
        }
        self.head(&xs)
    }

    /// Summed codebook embeddings of `codes` `[B, K, S]` plus sinusoidal positions from
    /// `offset`: the first layer's input `[B, S, H]`.
    pub fn embed(&self, codes: &Tensor, offset: usize) -> Result<Tensor> {
        let (b, k, s) = codes.dims3()?;
        let mut xs: Option<Tensor> = None;
        for (i, table) in self.embed_tokens.iter().enumerate().take(k) {
            let ids = codes.narrow(1, i, 1)?.flatten_all()?;
            // Summed in f32 whatever the tables' precision.
            let e = table
                .index_select(&ids, 0)?
                .reshape((b, s, ()))?
                .to_dtype(DType::F32)?;
            xs = Some(match xs {
                Some(x) => (x + e)?,
                None => e,
            });
        }
        let Some(mut xs) = xs else {
            return Err(crate::error::Error::InvalidRequest(
                "decoder input has no codebooks".into(),
            ));
        };
        if self.cfg.scale_embedding {
            xs = (xs * (self.cfg.hidden_size as f64).sqrt())?;
        }
        if offset + s > self.cfg.max_position_embeddings {
            return Err(crate::error::Error::InvalidRequest(format!(
                "sequence of {} positions exceeds the model's {}",
                offset + s,
                self.cfg.max_position_embeddings
            )));
        }
        let pos = self.positions.narrow(0, offset, s)?;
        Ok(xs.broadcast_add(&pos)?.to_dtype(self.compute)?)
    }

    /// Layer `i` on a whole sequence from position 0 (training; no cache).
    pub fn layer_forward(&self, i: usize, xs: &Tensor, cond: &Conditioning) -> Result<Tensor> {
        let layer = self.layers.get(i).ok_or_else(|| {
            crate::error::Error::InvalidRequest(format!("the decoder has no layer {i}"))
        })?;
        let s = xs.dim(1)?;
        let self_mask = if s > 1 {
            Some(causal_mask(s, 0, xs.device())?)
        } else {
            None
        };
        layer.forward(xs, self_mask.as_ref(), None, cond, &cond.additive_mask()?)
    }

    /// Final layer norm and the codebook heads: `[B, S, H]` → logits `[B, K, S, vocab]`.
    pub fn head(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = self.layer_norm.forward(xs)?;
        let logits = self
            .lm_heads
            .iter()
            .map(|h| h.forward(&xs))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::stack(&logits, 1)?)
    }
}

/// `[S, offset + S]` additive mask: position `i` sees keys `0 ..= offset + i`.
fn causal_mask(s: usize, offset: usize, device: &Device) -> Result<Tensor> {
    let total = offset + s;
    let data: Vec<f32> = (0..s)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > offset + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(data, (s, total), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_hf_formula() {
        let p = sinusoidal_positions(4, 8, &Device::Cpu).unwrap();
        let v = p.to_vec2::<f32>().unwrap();
        // half = 4, f_i = exp(-i ln(1e4) / 3): position 1, i = 1 → cos(0.0464159)
        let f1 = (-(10000f64.ln()) / 3.0).exp();
        assert!((v[1][1] as f64 - f1.cos()).abs() < 1e-6);
        assert!((v[1][5] as f64 - f1.sin()).abs() < 1e-6);
        assert_eq!(v[0][..4], [1.0, 1.0, 1.0, 1.0]);
        assert_eq!(v[0][4..], [0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn causal_mask_respects_offset() {
        let m = causal_mask(2, 3, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(m[0][3], 0.0);
        assert!(m[0][4].is_infinite());
        assert_eq!(m[1][4], 0.0);
    }
}
