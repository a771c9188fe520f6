//! Music Transformer (Huang et al. 2018, "Music Transformer: Generating Music with Long-Term
//! Structure"): a decoder-only transformer over performance events (`data::midi`) whose
//! self-attention adds a learned **relative position** term, computed with the paper's
//! memory-efficient "skewing" (O(L·D) extra memory instead of Shaw et al.'s O(L²·D)).
//!
//! There is no Hugging Face layout for this model; ours follows the MusicGen decoder's names so
//! the same tools (LoRA targets, head-only training, checkpoints) read it the same way:
//!
//! ```text
//! model.embed_tokens.weight                               [vocab, H]
//! model.layers.{i}.self_attn.{q,k,v,out}_proj.{weight,bias}
//! model.layers.{i}.self_attn.relative_embeddings          [heads, max_len, head_dim]
//! model.layers.{i}.{self_attn_layer_norm,final_layer_norm}.{weight,bias}
//! model.layers.{i}.fc{1,2}.{weight,bias}
//! model.layer_norm.{weight,bias}
//! lm_head.weight                                          [vocab, H]
//! ```
//!
//! Row `r` of `relative_embeddings` is the distance `r - (max_len - 1)` (the last row is the
//! query's own position). No absolute positions: everything the model knows of order is relative,
//! so generation can slide a window of `max_len` events past the training length.
//! Layers are pre-norm (`x += Attn(LN(x))`, `x += FFN(LN(x))`) with GELU, as our MusicGen decoder.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

pub mod vocab;

use crate::error::{Error, Result};
use crate::models::nn::{masked_softmax, seeded_dropout, LayerNorm, Linear};

const LN_EPS: f64 = 1e-5;

/// The model's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MusicTransformerConfig {
    /// Always `"music_transformer"`: tells this folder from a MusicGen one.
    pub model_type: String,
    /// Events (388) plus PAD, BOS, EOS.
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub ffn_dim: usize,
    /// Longest relative distance attended to: the training length and the generation window.
    pub max_position_embeddings: usize,
    /// Dropout on the residual branches while training.
    pub dropout: f32,
}

impl Default for MusicTransformerConfig {
    fn default() -> Self {
        Self::preset("small").unwrap_or_else(|_| Self::tiny())
    }
}

pub const MODEL_TYPE: &str = "music_transformer";
pub const PRESETS: [&str; 3] = ["tiny", "small", "base"];

impl MusicTransformerConfig {
    fn tiny() -> Self {
        Self {
            model_type: MODEL_TYPE.into(),
            vocab_size: vocab::VOCAB,
            hidden_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            ffn_dim: 256,
            max_position_embeddings: 256,
            dropout: 0.1,
        }
    }

    /// `tiny` (tests, seconds to train), `small` (the demo: minutes on a laptop CPU), `base`
    /// (the paper's size class: 6 layers × 512, hours on a CPU).
    pub fn preset(name: &str) -> Result<Self> {
        let t = Self::tiny();
        Ok(match name {
            "tiny" => t,
            // 2.8 M parameters: the demo model (5.7 MB in fp16).
            "small" => Self {
                hidden_size: 256,
                num_hidden_layers: 4,
                num_attention_heads: 8,
                ffn_dim: 512,
                max_position_embeddings: 512,
                ..t
            },
            "base" => Self {
                hidden_size: 512,
                num_hidden_layers: 6,
                num_attention_heads: 8,
                ffn_dim: 2048,
                max_position_embeddings: 1024,
                ..t
            },
            other => {
                return Err(Error::InvalidRequest(format!(
                    "unknown Music Transformer preset {other:?} (tiny, small, base)"
                )))
            }
        })
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    pub fn validate(&self) -> Result<()> {
        if self.model_type != MODEL_TYPE {
            return Err(Error::InvalidRequest(format!(
                "model_type is {:?}, not {MODEL_TYPE:?}",
                self.model_type
            )));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
            || self.num_hidden_layers == 0
            || self.max_position_embeddings < 2
            || self.vocab_size < vocab::VOCAB
        {
            return Err(Error::InvalidRequest(format!(
                "not a usable Music Transformer size: {self:?}"
            )));
        }
        Ok(())
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: Self = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(path, format!("not a Music Transformer config: {e}")))?;
        cfg.validate()
            .map_err(|e| Error::bad_file(path, e.to_string()))?;
        Ok(cfg)
    }

    /// Every tensor name and shape of this configuration (what `new` reads).
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (h, f, v) = (self.hidden_size, self.ffn_dim, self.vocab_size);
        let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
        for i in 0..self.num_hidden_layers {
            let p = format!("model.layers.{i}");
            for n in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                out.push((format!("{p}.self_attn.{n}.weight"), vec![h, h]));
                out.push((format!("{p}.self_attn.{n}.bias"), vec![h]));
            }
            out.push((
                format!("{p}.self_attn.relative_embeddings"),
                vec![
                    self.num_attention_heads,
                    self.max_position_embeddings,
                    self.head_dim(),
                ],
            ));
            for n in ["self_attn_layer_norm", "final_layer_norm"] {
                out.push((format!("{p}.{n}.weight"), vec![h]));
                out.push((format!("{p}.{n}.bias"), vec![h]));
            }
            out.push((format!("{p}.fc1.weight"), vec![f, h]));
            out.push((format!("{p}.fc1.bias"), vec![f]));
            out.push((format!("{p}.fc2.weight"), vec![h, f]));
            out.push((format!("{p}.fc2.bias"), vec![h]));
        }
        out.push(("model.layer_norm.weight".into(), vec![h]));
        out.push(("model.layer_norm.bias".into(), vec![h]));
        out.push(("lm_head.weight".into(), vec![v, h]));
        out
    }

    /// Fresh weights: N(0, 0.02) matrices and embeddings, zero biases, unit norms; seeded.
    pub fn init_tensors(&self, seed: u64, device: &Device) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (name, shape) in self.tensor_shapes() {
            let n: usize = shape.iter().product();
            let h = name.bytes().fold(seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            });
            let data: Vec<f32> = if name.ends_with("layer_norm.weight") {
                vec![1.0; n]
            } else if name.ends_with(".bias") {
                vec![0.0; n]
            } else {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(h);
                (0..n).map(|_| normal(&mut rng) * 0.02).collect()
            };
            out.insert(name, Tensor::from_vec(data, shape, device)?);
        }
        Ok(out)
    }
}

fn normal(rng: &mut impl Rng) -> f32 {
    // Box–Muller: enough for initial weights, and it keeps `rand_distr` out of the tree.
    let u1 = rng.random::<f32>().max(f32::MIN_POSITIVE);
    let u2 = rng.random::<f32>();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// Self-attention with learned relative positions (one table per head).
#[derive(Debug, Clone)]
pub struct RelativeAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    /// `[heads, max_len, head_dim]`
    pub relative_embeddings: Tensor,
    num_heads: usize,
    head_dim: usize,
    max_len: usize,
}

impl RelativeAttention {
    fn new(cfg: &MusicTransformerConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            q_proj: Linear::new(h, h, true, vb.pp("q_proj"))?,
            k_proj: Linear::new(h, h, true, vb.pp("k_proj"))?,
            v_proj: Linear::new(h, h, true, vb.pp("v_proj"))?,
            out_proj: Linear::new(h, h, true, vb.pp("out_proj"))?,
            relative_embeddings: vb.get(
                (
                    cfg.num_attention_heads,
                    cfg.max_position_embeddings,
                    cfg.head_dim(),
                ),
                "relative_embeddings",
            )?,
            num_heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
            max_len: cfg.max_position_embeddings,
        })
    }

    pub fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 4] {
        [
            ("q_proj", &mut self.q_proj),
            ("k_proj", &mut self.k_proj),
            ("v_proj", &mut self.v_proj),
            ("out_proj", &mut self.out_proj),
        ]
    }

    fn split_heads(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, s, _) = xs.dims3()?;
        Ok(xs
            .reshape((b, s, self.num_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    /// `xs` `[B, S, H]`. Without a cache S ≤ max_len and position 0 is the first event. With a
    /// cache, S = 1 (one new event) or the cache is empty (a prime of ≤ max_len events).
    fn forward(
        &self,
        xs: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<&mut KvWindow>,
    ) -> Result<Tensor> {
        let (b, s, h) = xs.dims3()?;
        let q = self.split_heads(&self.q_proj.forward(xs)?)?;
        let k = self.split_heads(&self.k_proj.forward(xs)?)?;
        let v = self.split_heads(&self.v_proj.forward(xs)?)?;
        let (k, v, fresh) = match cache {
            Some(c) => {
                let fresh = c.is_empty();
                if !fresh && s != 1 {
                    return Err(Error::InvalidRequest(
                        "a warm generation cache takes one event at a time".into(),
                    ));
                }
                let (k, v) = c.append(&k, &v, self.max_len)?;
                (k, v, fresh)
            }
            None => (k, v, true),
        };
        let n = k.dim(2)?;
        let rel = if fresh {
            if s > self.max_len {
                return Err(Error::InvalidRequest(format!(
                    "{s} events exceed the model's window of {}",
                    self.max_len
                )));
            }
            self.relative_logits(&q, s)?
        } else {
            // One query at the newest position: key j is at distance j - (n - 1).
            let er = self
                .relative_embeddings
                .narrow(1, self.max_len - n, n)?
                .t()?
                .unsqueeze(0)?;
            q.broadcast_matmul(&er)?
        };
        let scale = (self.head_dim as f64).powf(-0.5);
        let scores = ((q.matmul(&k.t()?)? + rel)? * scale)?;
        let probs = masked_softmax(&scores, mask)?;
        let out = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, s, h))?;
        self.out_proj.forward(&out)
    }

    /// `S_rel[i, j] = q_i · E[j - i]` for `j ≤ i` via the skewing trick: `Q Eᵀ` `[.., S, S]`
    /// (column `r` = distance `r - (S - 1)`), pad one zero column on the left, view as
    /// `[.., S + 1, S]`, drop the first row. Entries above the diagonal are junk (masked).
    fn relative_logits(&self, q: &Tensor, s: usize) -> Result<Tensor> {
        let (b, heads, _, _) = q.dims4()?;
        let er = self
            .relative_embeddings
            .narrow(1, self.max_len - s, s)?
            .t()?
            .unsqueeze(0)?;
        let qe = q.broadcast_matmul(&er)?; // [B, h, S, S]
        let padded = qe.pad_with_zeros(D::Minus1, 1, 0)?; // [B, h, S, S + 1]
        let skewed = padded.reshape((b, heads, s + 1, s))?;
        Ok(skewed.narrow(2, 1, s)?)
    }
}

/// The self-attention keys and values of one layer during generation, at most `max_len` long
/// (older events slide out: relative attention needs no absolute position).
#[derive(Debug, Clone, Default)]
pub struct KvWindow {
    kv: Option<(Tensor, Tensor)>,
}

impl KvWindow {
    pub fn len(&self) -> usize {
        self.kv
            .as_ref()
            .and_then(|(k, _)| k.dim(2).ok())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn append(&mut self, k: &Tensor, v: &Tensor, max_len: usize) -> Result<(Tensor, Tensor)> {
        let (k, v) = match self.kv.take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, k], 2)?, Tensor::cat(&[&pv, v], 2)?),
            None => (k.clone(), v.clone()),
        };
        let n = k.dim(2)?;
        let (k, v) = if n > max_len {
            (
                k.narrow(2, n - max_len, max_len)?.contiguous()?,
                v.narrow(2, n - max_len, max_len)?.contiguous()?,
            )
        } else {
            (k, v)
        };
        self.kv = Some((k.clone(), v.clone()));
        Ok((k, v))
    }
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub self_attn: RelativeAttention,
    pub self_attn_layer_norm: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
    pub final_layer_norm: LayerNorm,
}

impl Layer {
    fn new(cfg: &MusicTransformerConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            self_attn: RelativeAttention::new(cfg, vb.pp("self_attn"))?,
            self_attn_layer_norm: LayerNorm::new(h, LN_EPS, vb.pp("self_attn_layer_norm"))?,
            fc1: Linear::new(h, cfg.ffn_dim, true, vb.pp("fc1"))?,
            fc2: Linear::new(cfg.ffn_dim, h, true, vb.pp("fc2"))?,
            final_layer_norm: LayerNorm::new(h, LN_EPS, vb.pp("final_layer_norm"))?,
        })
    }
}

/// The generation state: one key/value window per layer.
#[derive(Debug, Clone)]
pub struct Cache {
    layers: Vec<KvWindow>,
}

impl Cache {
    pub fn new(cfg: &MusicTransformerConfig) -> Self {
        Self {
            layers: vec![KvWindow::default(); cfg.num_hidden_layers],
        }
    }

    /// Events currently in the window.
    pub fn len(&self) -> usize {
        self.layers.first().map(KvWindow::len).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone)]
pub struct MusicTransformer {
    pub embed_tokens: Tensor,
    pub layers: Vec<Layer>,
    pub layer_norm: LayerNorm,
    pub lm_head: Linear,
    /// Seed of this forward's dropout masks; `None` = evaluation (no dropout). The trainer sets
    /// one per micro-batch so runs and resumes are reproducible.
    pub dropout_seed: Option<u64>,
    cfg: MusicTransformerConfig,
}

impl MusicTransformer {
    /// `vb` at the checkpoint root (keys `model.*`, `lm_head.*`).
    pub fn new(cfg: &MusicTransformerConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let h = cfg.hidden_size;
        let m = vb.pp("model");
        let embed_tokens = m.pp("embed_tokens").get((cfg.vocab_size, h), "weight")?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::new(cfg, m.pp("layers").pp(i.to_string())))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embed_tokens,
            layers,
            layer_norm: LayerNorm::new(h, LN_EPS, m.pp("layer_norm"))?,
            lm_head: Linear::new(h, cfg.vocab_size, false, vb.pp("lm_head"))?,
            dropout_seed: None,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &MusicTransformerConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        self.embed_tokens.device()
    }

    /// Events `[B, S]` (u32) → logits `[B, S, vocab]`. With a cache the window grows by S.
    pub fn forward(&self, tokens: &Tensor, mut cache: Option<&mut Cache>) -> Result<Tensor> {
        let (b, s) = tokens.dims2()?;
        let mut xs = self
            .embed_tokens
            .index_select(&tokens.flatten_all()?, 0)?
            .reshape((b, s, ()))?;
        let mask = if s > 1 {
            Some(causal_mask(s, xs.device())?)
        } else {
            None
        };
        let p = self.cfg.dropout;
        for (i, layer) in self.layers.iter().enumerate() {
            let seed = self
                .dropout_seed
                .map(|d| d ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let window = cache.as_mut().and_then(|c| c.layers.get_mut(i));
            let h = layer.self_attn_layer_norm.forward(&xs)?;
            let a = layer.self_attn.forward(&h, mask.as_ref(), window)?;
            xs = (xs + seeded_dropout(&a, p, seed)?)?;
            let h = layer.final_layer_norm.forward(&xs)?;
            let f = layer
                .fc2
                .forward(&crate::models::nn::gelu_erf(&layer.fc1.forward(&h)?)?)?;
            xs = (xs + seeded_dropout(&f, p, seed.map(|s| s.rotate_left(17)))?)?;
        }
        self.lm_head.forward(&self.layer_norm.forward(&xs)?)
    }

    /// Every tensor by checkpoint name (shared storage).
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        let mut put = |n: String, t: Option<&Tensor>| {
            if let Some(t) = t {
                out.insert(n, t.detach());
            }
        };
        put("model.embed_tokens.weight".into(), Some(&self.embed_tokens));
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let a = &l.self_attn;
            for (n, lin) in [
                ("q_proj", &a.q_proj),
                ("k_proj", &a.k_proj),
                ("v_proj", &a.v_proj),
                ("out_proj", &a.out_proj),
            ] {
                put(format!("{p}.self_attn.{n}.weight"), lin.weight());
                put(format!("{p}.self_attn.{n}.bias"), lin.bias());
            }
            put(
                format!("{p}.self_attn.relative_embeddings"),
                Some(&a.relative_embeddings),
            );
            for (n, ln) in [
                ("self_attn_layer_norm", &l.self_attn_layer_norm),
                ("final_layer_norm", &l.final_layer_norm),
            ] {
                put(format!("{p}.{n}.weight"), Some(&ln.weight));
                put(format!("{p}.{n}.bias"), Some(&ln.bias));
            }
            for (n, lin) in [("fc1", &l.fc1), ("fc2", &l.fc2)] {
                put(format!("{p}.{n}.weight"), lin.weight());
                put(format!("{p}.{n}.bias"), lin.bias());
            }
        }
        put(
            "model.layer_norm.weight".into(),
            Some(&self.layer_norm.weight),
        );
        put("model.layer_norm.bias".into(), Some(&self.layer_norm.bias));
        put("lm_head.weight".into(), self.lm_head.weight());
        out
    }

    /// The linear layers LoRA can adapt, by module path.
    pub fn lora_targets(
        &mut self,
        attention: bool,
        ffn: bool,
        head: bool,
    ) -> Vec<(String, &mut Linear)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let p = format!("model.layers.{i}");
            if attention {
                for (n, l) in layer.self_attn.linears_mut() {
                    out.push((format!("{p}.self_attn.{n}"), l));
                }
            }
            if ffn {
                out.push((format!("{p}.fc1"), &mut layer.fc1));
                out.push((format!("{p}.fc2"), &mut layer.fc2));
            }
        }
        if head {
            out.push(("lm_head".to_string(), &mut self.lm_head));
        }
        out
    }
}

/// Is this key trained in `head` mode (the output head, final norm with any layer, and the last
/// `layers` of `total`)?
pub fn is_head_key(name: &str, layers: usize, total: usize) -> bool {
    if name.starts_with("lm_head.") {
        return true;
    }
    if layers > 0 && name.starts_with("model.layer_norm.") {
        return true;
    }
    name.strip_prefix("model.layers.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|i| i.parse::<usize>().ok())
        .is_some_and(|i| i + layers >= total)
}

/// `[S, S]` additive causal mask.
fn causal_mask(s: usize, device: &Device) -> Result<Tensor> {
    let data: Vec<f32> = (0..s)
        .flat_map(|i| (0..s).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(data, (s, s), device)?)
}

/// Loads `config.json` + `model.safetensors` from a model folder.
pub fn load(dir: &Path, device: &Device) -> Result<MusicTransformer> {
    let cfg = MusicTransformerConfig::from_file(&dir.join("config.json"))?;
    let weights = dir.join("model.safetensors");
    let tensors = crate::models::checkpoint::load_tensors(
        std::slice::from_ref(&weights),
        DType::F32,
        device,
    )?;
    for (name, shape) in cfg.tensor_shapes() {
        match tensors.get(&name) {
            None => {
                return Err(Error::BadTensor {
                    path: weights,
                    name,
                    problem: "missing".into(),
                })
            }
            Some(t) if t.dims() != shape.as_slice() => {
                return Err(Error::BadTensor {
                    path: weights,
                    name,
                    problem: format!("shape {:?}, expected {shape:?}", t.dims()),
                })
            }
            Some(_) => {}
        }
    }
    MusicTransformer::new(&cfg, VarBuilder::from_tensors(tensors, DType::F32, device))
}

/// Writes a model folder (`config.json`, `model.safetensors`), atomically per file.
pub fn save(
    dir: &Path,
    cfg: &MusicTransformerConfig,
    tensors: &HashMap<String, Tensor>,
) -> Result<()> {
    let json = serde_json::to_vec_pretty(cfg).map_err(|e| Error::InvalidRequest(e.to_string()))?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    meta.insert("model_type".to_string(), MODEL_TYPE.to_string());
    crate::models::checkpoint::save_tensors_with_metadata(
        tensors,
        Some(meta),
        &dir.join("model.safetensors"),
    )?;
    crate::util::atomic_write(&dir.join("config.json"), &json)
}

/// Is `dir` a Music Transformer model folder?
pub fn is_model_dir(dir: &Path) -> bool {
    MusicTransformerConfig::from_file(&dir.join("config.json")).is_ok()
        && dir.join("model.safetensors").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(seed: u64) -> MusicTransformer {
        let cfg = MusicTransformerConfig::preset("tiny").unwrap();
        let t = cfg.init_tensors(seed, &Device::Cpu).unwrap();
        MusicTransformer::new(&cfg, VarBuilder::from_tensors(t, DType::F32, &Device::Cpu)).unwrap()
    }

    /// The skewed relative logits equal the direct definition `q_i · E[j - i + L - 1]`.
    #[test]
    fn skewing_equals_the_direct_relative_logits() {
        let m = tiny(1);
        let a = &m.layers[0].self_attn;
        let s = 7;
        let q = Tensor::randn(0f32, 1.0, (2, 4, s, 16), &Device::Cpu).unwrap();
        let skewed = a.relative_logits(&q, s).unwrap();
        assert_eq!(skewed.dims4().unwrap(), (2, 4, s, s));
        let sk = skewed
            .reshape((8, s * s))
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let qv = q.reshape((8, s * 16)).unwrap().to_vec2::<f32>().unwrap();
        let e = a.relative_embeddings.to_vec3::<f32>().unwrap();
        let l = a.max_len;
        for bh in 0..8 {
            let head = bh % 4;
            for i in 0..s {
                for j in 0..=i {
                    let row = &e[head][l - 1 - (i - j)];
                    let want: f32 = (0..16).map(|d| qv[bh][i * 16 + d] * row[d]).sum();
                    let got = sk[bh][i * s + j];
                    assert!(
                        (want - got).abs() < 1e-4,
                        "bh {bh} i {i} j {j}: {got} vs {want}"
                    );
                }
            }
        }
    }

    /// Decoding one event at a time through the cache gives the logits of the full forward.
    #[test]
    fn cached_decoding_matches_the_full_forward() {
        let m = tiny(2);
        let ids: Vec<u32> = vec![389, 60, 300, 188, 62, 270, 190, 64, 5, 17];
        let t = Tensor::new(ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let full = m.forward(&t, None).unwrap().squeeze(0).unwrap();
        let mut cache = Cache::new(m.config());
        // A prime of 4 events, then one at a time.
        let mut rows = vec![m
            .forward(&t.narrow(1, 0, 4).unwrap(), Some(&mut cache))
            .unwrap()
            .squeeze(0)
            .unwrap()];
        for i in 4..ids.len() {
            rows.push(
                m.forward(&t.narrow(1, i, 1).unwrap(), Some(&mut cache))
                    .unwrap()
                    .squeeze(0)
                    .unwrap(),
            );
        }
        let stepped = Tensor::cat(&rows, 0).unwrap();
        let diff = (full - stepped)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "max |Δ| = {diff}");
        assert_eq!(cache.len(), ids.len());
    }

    /// Past the window the cache keeps the last `max_len` events and still decodes.
    #[test]
    fn the_window_slides() {
        let mut cfg = MusicTransformerConfig::preset("tiny").unwrap();
        cfg.max_position_embeddings = 4;
        // One layer: an old event's keys depend only on itself, so the slid window must equal a
        // fresh pass over the last 4 events (deeper layers carry history from before the window).
        cfg.num_hidden_layers = 1;
        let t = cfg.init_tensors(3, &Device::Cpu).unwrap();
        let m = MusicTransformer::new(&cfg, VarBuilder::from_tensors(t, DType::F32, &Device::Cpu))
            .unwrap();
        let mut cache = Cache::new(&cfg);
        let ids = [389u32, 60, 300, 188, 62, 270, 190];
        let mut last = None;
        for id in ids {
            let x = Tensor::new(&[[id]], &Device::Cpu).unwrap();
            last = Some(m.forward(&x, Some(&mut cache)).unwrap());
        }
        assert_eq!(cache.len(), 4);
        // The window's last logits = a fresh forward over the last 4 events.
        let tail = Tensor::new(&[[188u32, 62, 270, 190]], &Device::Cpu).unwrap();
        let fresh = m.forward(&tail, None).unwrap().narrow(1, 3, 1).unwrap();
        let diff = (last.unwrap() - fresh)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "{diff}");
        // Longer than the window without a cache is refused.
        let long = Tensor::new(&[[1u32, 2, 3, 4, 5]], &Device::Cpu).unwrap();
        assert!(m.forward(&long, None).is_err());
    }

    #[test]
    fn a_model_folder_round_trips_and_bad_shapes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let m = tiny(4);
        save(dir.path(), m.config(), &m.tensors()).unwrap();
        assert!(is_model_dir(dir.path()));
        let back = load(dir.path(), &Device::Cpu).unwrap();
        let x = Tensor::new(&[[389u32, 60, 61]], &Device::Cpu).unwrap();
        let d = (m.forward(&x, None).unwrap() - back.forward(&x, None).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(d, 0.0);
        let mut t = m.tensors();
        t.insert(
            "lm_head.weight".into(),
            Tensor::zeros((3, 3), DType::F32, &Device::Cpu).unwrap(),
        );
        save(dir.path(), m.config(), &t).unwrap();
        let err = load(dir.path(), &Device::Cpu).unwrap_err().to_string();
        assert!(
            err.contains("lm_head.weight") && err.contains("model.safetensors"),
            "{err}"
        );
    }
}
