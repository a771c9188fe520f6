//! CLAP's text tower: RoBERTa (`ClapTextModel`: embeddings, post-LN encoder, first-token
//! tanh pooler). Inference only. Reference: transformers `models/clap/modeling_clap.py`.
//!
//! Prompts are encoded one at a time, without padding. That is exact, not an approximation:
//! HF's padded batch masks the padding keys out of every attention and derives the positions
//! from the non-padding tokens only, so each prompt's states are those of its unpadded run.

use candle_core::{Tensor, D};
use candle_nn::VarBuilder;

use super::config::{Activation, TextConfig};
use crate::error::{Error, Result};
use crate::models::nn::{LayerNorm, Linear};

/// Word + token-type + position embeddings, then LayerNorm.
pub struct TextEmbeddings {
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    token_type_embeddings: Tensor,
    layer_norm: LayerNorm,
    pad_token_id: u32,
    max_positions: usize,
}

impl TextEmbeddings {
    pub fn new(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            word_embeddings: vb.get((cfg.vocab_size, h), "word_embeddings.weight")?,
            position_embeddings: vb.get(
                (cfg.max_position_embeddings, h),
                "position_embeddings.weight",
            )?,
            token_type_embeddings: vb
                .get((cfg.type_vocab_size, h), "token_type_embeddings.weight")?,
            layer_norm: LayerNorm::new(h, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
            pad_token_id: cfg.pad_token_id,
            max_positions: cfg.max_position_embeddings,
        })
    }

    /// RoBERTa position ids: `padding_idx + cumsum(id != pad)` for real tokens, `padding_idx`
    /// for padding tokens (fairseq's `make_positions`).
    pub fn position_ids(&self, ids: &[u32]) -> Vec<u32> {
        let mut n = 0;
        ids.iter()
            .map(|&id| {
                if id == self.pad_token_id {
                    self.pad_token_id
                } else {
                    n += 1;
                    self.pad_token_id + n
                }
            })
            .collect()
    }

    /// `[1, L]` token ids → `[1, L, hidden]`.
    pub fn forward(&self, ids: &[u32]) -> Result<Tensor> {
        let vocab = self.word_embeddings.dim(0)?;
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= vocab) {
            return Err(Error::InvalidRequest(format!(
                "token id {bad} is outside the CLAP text vocabulary ({vocab} tokens)"
            )));
        }
        let pos = self.position_ids(ids);
        if let Some(&p) = pos
            .iter()
            .max()
            .filter(|&&p| p as usize >= self.max_positions)
        {
            return Err(Error::InvalidRequest(format!(
                "a prompt of {} tokens needs position {p}, but the CLAP text encoder has {} \
                 positions (at most {} tokens)",
                ids.len(),
                self.max_positions,
                self.max_positions - self.pad_token_id as usize - 1
            )));
        }
        let dev = self.word_embeddings.device();
        let ids_t = Tensor::new(ids, dev)?;
        let pos_t = Tensor::new(pos.as_slice(), dev)?;
        let words = self.word_embeddings.index_select(&ids_t, 0)?;
        // token_type_ids are the buffer's zeros.
        let types = self.token_type_embeddings.narrow(0, 0, 1)?;
        let positions = self.position_embeddings.index_select(&pos_t, 0)?;
        let x = words.broadcast_add(&types)?.add(&positions)?;
        self.layer_norm.forward(&x.unsqueeze(0)?)
    }
}

/// Self-attention with its output projection and post-LN (`attention.self` + `attention.output`).
pub struct TextAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    dense: Linear,
    layer_norm: LayerNorm,
    heads: usize,
    head_dim: usize,
}

impl TextAttention {
    pub fn new(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let s = vb.pp("self");
        let o = vb.pp("output");
        Ok(Self {
            query: Linear::new(h, h, true, s.pp("query"))?,
            key: Linear::new(h, h, true, s.pp("key"))?,
            value: Linear::new(h, h, true, s.pp("value"))?,
            dense: Linear::new(h, h, true, o.pp("dense"))?,
            layer_norm: LayerNorm::new(h, cfg.layer_norm_eps, o.pp("LayerNorm"))?,
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, c) = x.dims3()?;
        let split = |t: Tensor| -> Result<Tensor> {
            Ok(t.reshape((b, l, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = split(self.query.forward(x)?)?;
        let k = split(self.key.forward(x)?)?;
        let v = split(self.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? * (self.head_dim as f64).powf(-0.5))?;
        // Inference only (CLAP is never trained here): the fused softmax has no backward.
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, l, c))?;
        let y = self.dense.forward(&ctx)?;
        self.layer_norm.forward(&(y + x)?)
    }
}

/// One encoder layer: attention, then `intermediate` (dense + act) and `output` (dense, post-LN).
pub struct TextLayer {
    attention: TextAttention,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    act: Activation,
}

impl TextLayer {
    pub fn new(cfg: &TextConfig, act: Activation, vb: VarBuilder) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            attention: TextAttention::new(cfg, vb.pp("attention"))?,
            intermediate: Linear::new(h, i, true, vb.pp("intermediate").pp("dense"))?,
            output: Linear::new(i, h, true, vb.pp("output").pp("dense"))?,
            output_norm: LayerNorm::new(h, cfg.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
            act,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = self.attention.forward(x)?;
        let y = self
            .output
            .forward(&self.act.apply(&self.intermediate.forward(&a)?)?)?;
        self.output_norm.forward(&(y + a)?)
    }
}

/// `text_model`: embeddings, encoder layers and the pooler (`tanh(dense(h[:, 0]))`).
pub struct TextModel {
    embeddings: TextEmbeddings,
    layers: Vec<TextLayer>,
    pooler: Linear,
}

impl TextModel {
    pub fn new(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let act = Activation::parse(&cfg.hidden_act).map_err(Error::InvalidRequest)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| TextLayer::new(cfg, act, vb.pp("encoder").pp("layer").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings: TextEmbeddings::new(cfg, vb.pp("embeddings"))?,
            layers,
            pooler: Linear::new(
                cfg.hidden_size,
                cfg.hidden_size,
                true,
                vb.pp("pooler").pp("dense"),
            )?,
        })
    }

    /// Last hidden states `[1, L, hidden]` of one unpadded id sequence.
    pub fn last_hidden_state(&self, ids: &[u32]) -> Result<Tensor> {
        if ids.is_empty() {
            return Err(Error::InvalidRequest(
                "CLAP text encoder: empty token sequence".into(),
            ));
        }
        let mut x = self.embeddings.forward(ids)?;
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        Ok(x)
    }

    /// Pooler output `[1, hidden]` of one unpadded id sequence.
    pub fn pooled(&self, ids: &[u32]) -> Result<Tensor> {
        let h = self.last_hidden_state(ids)?;
        let first = h.narrow(1, 0, 1)?.squeeze(1)?;
        Ok(self.pooler.forward(&first)?.tanh()?)
    }
}

/// `text_projection` / `audio_projection`: `linear2(act(linear1(x)))`.
pub struct Projection {
    linear1: Linear,
    linear2: Linear,
    act: Activation,
}

impl Projection {
    pub fn new(in_dim: usize, dim: usize, act: Activation, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            linear1: Linear::new(in_dim, dim, true, vb.pp("linear1"))?,
            linear2: Linear::new(dim, dim, true, vb.pp("linear2"))?,
            act,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear2
            .forward(&self.act.apply(&self.linear1.forward(x)?)?)
    }
}

/// `F.normalize(x, dim=-1)`: `x / max(‖x‖₂, 1e-12)` over the last dimension.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(1e-12)?;
    Ok(x.broadcast_div(&norm)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn roberta_positions_start_after_the_padding_index_and_skip_padding() {
        let cfg = TextConfig {
            vocab_size: 10,
            hidden_size: 4,
            max_position_embeddings: 8,
            ..Default::default()
        };
        let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
        let e = TextEmbeddings::new(&cfg, vb).unwrap();
        assert_eq!(e.position_ids(&[0, 5, 7, 2]), vec![2, 3, 4, 5]);
        assert_eq!(e.position_ids(&[0, 5, 2, 1, 1]), vec![2, 3, 4, 1, 1]);
        // 6 real tokens need position 7, the last of 8; 7 tokens do not fit.
        assert!(e.forward(&[0, 4, 4, 4, 4, 2]).is_ok());
        let err = e.forward(&[0, 4, 4, 4, 4, 4, 2]).unwrap_err().to_string();
        assert!(err.contains("at most 6 tokens"), "{err}");
        assert!(e.forward(&[0, 10]).is_err());
    }

    #[test]
    fn l2_normalize_matches_f_normalize() {
        let x = Tensor::new(&[[3f32, 4.0], [0.0, 0.0]], &Device::Cpu).unwrap();
        let y = l2_normalize(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(y, vec![vec![0.6, 0.8], vec![0.0, 0.0]]);
    }
}
