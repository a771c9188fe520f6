//! The frozen T5 text encoder (candle-transformers' `T5EncoderModel`, HF key names under
//! `text_encoder.`) with its `tokenizer.json`.
//!
//! candle's T5 takes no attention mask, so a batch is encoded one prompt at a time and padded
//! afterwards. That is exact, not an approximation: T5's relative position bias depends only on
//! distances, so an unpadded prompt gives the same states as HF's masked batch at every real
//! token, and the padding positions are zeroed and masked out of cross-attention anyway.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::t5;

use crate::error::{Error, Result};

pub struct TextEncoder {
    model: t5::T5EncoderModel,
    tokenizer: Option<(tokenizers::Tokenizer, PathBuf)>,
    hidden: usize,
    device: Device,
}

impl TextEncoder {
    /// `vb` points at the `text_encoder.` prefix; `tokenizer` is `tokenizer.json` (optional: a
    /// model without one can still run unconditionally or from given token ids).
    pub fn new(cfg: &t5::Config, vb: VarBuilder, tokenizer: Option<&Path>) -> Result<Self> {
        let device = vb.device().clone();
        let model = t5::T5EncoderModel::load(vb, cfg)?;
        let tokenizer = match tokenizer {
            Some(p) => {
                let t = tokenizers::Tokenizer::from_file(p)
                    .map_err(|e| Error::bad_file(p, format!("not a tokenizers JSON file: {e}")))?;
                Some((t, p.to_path_buf()))
            }
            None => None,
        };
        Ok(Self {
            model,
            tokenizer,
            hidden: cfg.d_model,
            device,
        })
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Token ids of `text` with T5's closing `</s>`.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let Some((tok, path)) = &self.tokenizer else {
            return Err(Error::MissingFile {
                path: "tokenizer.json".into(),
                what: "the model has no tokenizer, so it cannot read a text prompt".into(),
            });
        };
        let enc = tok
            .encode(text, true)
            .map_err(|e| Error::bad_file(path, format!("cannot tokenize {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// T5 last hidden states for one sequence of ids → `[1, L, d_model]`.
    pub fn encode_ids(&mut self, ids: &[u32]) -> Result<Tensor> {
        let t = Tensor::new(ids, &self.device)?.unsqueeze(0)?;
        Ok(self.model.forward(&t)?)
    }

    /// Prompts → states `[B, L, d_model]` and mask `[B, L]` (u32). An empty (or blank) prompt is
    /// unconditional: zero states with a zero mask, exactly what MusicGen's CFG uses.
    pub fn encode(&mut self, prompts: &[String]) -> Result<(Tensor, Tensor)> {
        let ids = prompts
            .iter()
            .map(|p| {
                if p.trim().is_empty() {
                    Ok(Vec::new())
                } else {
                    self.tokenize(p)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        self.encode_id_batch(&ids)
    }

    /// Token id rows (an empty row = unconditional) → padded states and mask, as HF's masked
    /// batch gives them after `* mask`.
    pub fn encode_id_batch(&mut self, rows: &[Vec<u32>]) -> Result<(Tensor, Tensor)> {
        let max_len = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut states = Vec::with_capacity(rows.len());
        let mut mask = Vec::with_capacity(rows.len() * max_len);
        for ids in rows {
            let n = ids.len();
            let s = if n == 0 {
                Tensor::zeros((1, max_len, self.hidden), DType::F32, &self.device)?
            } else {
                self.encode_ids(ids)?.pad_with_zeros(1, 0, max_len - n)?
            };
            states.push(s);
            mask.extend((0..max_len).map(|i| u32::from(i < n)));
        }
        let states = Tensor::cat(&states, 0)?;
        let mask = Tensor::from_vec(mask, (rows.len(), max_len), &self.device)?;
        Ok((states, mask))
    }
}
