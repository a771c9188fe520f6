//! MusicGen's part of a training run: the base checkpoint resolved and loaded (T5 and EnCodec
//! frozen), the LM built for the mode (full, head, LoRA, scratch), the dataset encoded through
//! the token cache, text conditioning cached per caption, and the loss of a batch computed with
//! activation checkpointing (or a plain backward).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};

use crate::data::token_cache::{codec_fingerprint, encode_dataset};
use crate::error::{Error, Result};
use crate::generate::{generate, GenerateParams};
use crate::models::checkpoint::{load_tensors, ModelFiles};
use crate::models::device::count_transfer;
use crate::models::lora::{attach_lora, set_dropout_seed, LoraConfig};
use crate::models::musicgen::config::{GenerationConfig, MusicgenConfig};
use crate::models::musicgen::decoder::Conditioning;
use crate::models::musicgen::is_lm_key;
use crate::models::musicgen::MusicGen;
use crate::models::peft;
use crate::store::run_config::{Mode, TrainConfig};
use crate::store::{run, ModelSpec};
use crate::train::checkpointing::loss_and_grads;
use crate::train::data::{make_batch, train_batch, Augment, Batch, Example, TokenData};
use crate::train::learner::{Built, Learner, MicroBatch};
use crate::train::loss::{codebook_cross_entropy, shift_right, LossOutput};
use crate::train::optim::Grads;
use crate::train::trainable::{build_lm, is_head_key, scratch_lm_tensors};
use crate::util::atomic_write;

/// T5 states kept per caption before the cache is emptied.
const CACHE_LIMIT: usize = 4096;

pub struct MusicgenLearner {
    /// T5 and EnCodec (frozen) and, as `model.lm`, the LM being trained.
    pub model: MusicGen,
    data: TokenData,
    text_cache: HashMap<String, Tensor>,
    mode: Mode,
    lora: LoraConfig,
}

impl MusicgenLearner {
    /// Resolves and loads the base model, builds the LM for the mode (LoRA adapters start from
    /// `saved` when resuming), writes the run's `model/` folder and encodes the dataset.
    pub fn build(
        cfg: &TrainConfig,
        run_dir: &Path,
        device: &Device,
        progress: &mut dyn FnMut(&str),
        saved: &HashMap<String, Tensor>,
    ) -> Result<Built> {
        progress("resolving the base model");
        let base = ModelSpec::resolve(&cfg.model)?.musicgen_dir(&mut |_| {})?;
        progress("loading the base model");
        let files = ModelFiles::in_dir(&base)?;
        let mut config = MusicgenConfig::from_file(&files.config)?;
        let mut tensors = load_tensors(&files.weights, DType::F32, device)?;
        if cfg.mode == Mode::Scratch {
            let s = &cfg.scratch;
            config.decoder.hidden_size = s.hidden_size;
            config.decoder.num_hidden_layers = s.num_hidden_layers;
            config.decoder.num_attention_heads = s.num_attention_heads;
            config.decoder.ffn_dim = s.ffn_dim;
            config.decoder.codebook_pattern = s.pattern;
            // Positions are sinusoidal (no weights): room for the longest training crop and a
            // whole generation window in the new pattern (flatten needs K·T of them).
            let k = config.decoder.num_codebooks;
            let frames = (cfg.max_seconds.max(crate::generate::WINDOW_SECONDS)
                * config.frame_rate())
            .round()
            .max(1.0) as usize;
            config.decoder.max_position_embeddings = config
                .decoder
                .max_position_embeddings
                .max(s.pattern.len(frames, k));
            tensors.retain(|k, _| !is_lm_key(k));
            tensors.extend(scratch_lm_tensors(
                &config.decoder,
                config.t5_hidden_size(),
                s.init_seed,
                device,
            )?);
        }
        // The run's own copy of the model's description (a scratch run has its own decoder).
        let model_dir = run::model_dir(run_dir);
        let config_json =
            serde_json::to_vec_pretty(&config).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        atomic_write(&model_dir.join("config.json"), &config_json)?;
        if let Some(tok) = &files.tokenizer {
            let bytes = std::fs::read(tok).map_err(|e| Error::io(tok, e))?;
            atomic_write(&model_dir.join("tokenizer.json"), &bytes)?;
        }

        let (lm, vars) = match cfg.mode {
            Mode::Full | Mode::Scratch => build_lm(&config, &mut tensors, |_| true, device)?,
            Mode::Head => {
                let total = config.decoder.num_hidden_layers;
                let layers = cfg.head_layers.min(total);
                build_lm(
                    &config,
                    &mut tensors,
                    |n| is_head_key(n, layers, total),
                    device,
                )?
            }
            Mode::Lora => build_lm(&config, &mut tensors, |_| false, device)?,
        };
        // `tensors` now holds the LM's own tensors: the model built here shares them.
        let mut model = MusicGen::from_tensors(
            config.clone(),
            GenerationConfig::default(),
            tensors,
            files.tokenizer.as_deref(),
            device,
            &files.weights_label(),
        )?;
        model.lm = lm;
        // Mixed precision: the weights stay f32 masters, the passes run in the run's precision.
        model.lm.set_compute_dtype(cfg.precision.dtype());
        model.source = Some(base.to_path_buf());

        let mut vars = vars;
        if cfg.mode == Mode::Lora {
            let init: HashMap<String, Tensor> = saved
                .iter()
                .map(|(k, v)| (peft::live_name(k), v.clone()))
                .collect();
            let adapters = attach_lora(&mut model.lm, &cfg.lora, &init, cfg.seed)?;
            vars = peft::adapter_vars(adapters);
        }

        progress("encoding the dataset (cached)");
        let report = encode_dataset(&cfg.dataset, &model)?;
        if !report.failed.is_empty() {
            tracing::warn!("{} segments failed to encode", report.failed.len());
        }
        let data = TokenData::load(&cfg.dataset, &codec_fingerprint(&model)?)?;
        if cfg.preview_prompt.is_none() {
            // Nothing in this run turns codes into audio.
            model.release_codec();
        }
        Ok(Built {
            learner: Box::new(Self {
                model,
                data,
                text_cache: HashMap::new(),
                mode: cfg.mode,
                lora: cfg.lora.clone(),
            }),
            vars,
        })
    }

    /// The text conditioning of a batch: T5 states cached per caption, `""` = null condition.
    fn condition(&mut self, captions: &[String]) -> Result<Conditioning> {
        let (states, mask) = self.text_batch(captions)?;
        self.model.lm.condition(&states, &mask)
    }

    /// Padded T5 states `[B, L, d]` and mask `[B, L]` of the captions.
    fn text_batch(&mut self, captions: &[String]) -> Result<(Tensor, Tensor)> {
        let hidden = self.model.text.hidden_size();
        let device = self.model.device().clone();
        let mut rows = Vec::with_capacity(captions.len());
        for c in captions {
            if c.trim().is_empty() {
                rows.push(None);
                continue;
            }
            if !self.text_cache.contains_key(c) {
                if self.text_cache.len() >= CACHE_LIMIT {
                    self.text_cache.clear();
                }
                let (states, mask) = self.model.text.encode(std::slice::from_ref(c))?;
                let n = mask.sum_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()? as usize;
                self.text_cache
                    .insert(c.clone(), states.squeeze(0)?.narrow(0, 0, n.max(1))?);
            }
            rows.push(self.text_cache.get(c).cloned());
        }
        let len = rows
            .iter()
            .map(|r| r.as_ref().map(|t| t.dim(0)).transpose())
            .collect::<candle_core::Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(1);
        let mut states = Vec::with_capacity(rows.len());
        let mut mask = Vec::with_capacity(rows.len() * len);
        for r in &rows {
            let (s, n) = match r {
                Some(t) => {
                    let n = t.dim(0)?;
                    let pad = Tensor::zeros((len - n, hidden), DType::F32, &device)?;
                    (Tensor::cat(&[t, &pad], 0)?, n)
                }
                None => (Tensor::zeros((len, hidden), DType::F32, &device)?, 0),
            };
            states.push(s);
            mask.extend((0..len).map(|i| u32::from(i < n)));
        }
        let states = Tensor::stack(&states, 0)?;
        count_transfer();
        let mask = Tensor::from_vec(mask, (rows.len(), len), &device)?;
        Ok((states, mask))
    }

    /// Loss (differentiable), per-codebook CE and counted tokens of a batch.
    fn loss_of(&mut self, batch: &Batch) -> Result<LossOutput> {
        let cond = self.condition(&batch.captions)?;
        let inputs = shift_right(&batch.labels, self.bos())?;
        let logits = self.model.lm.forward(&inputs, &cond, None)?;
        codebook_cross_entropy(&logits, &batch.labels, self.pad())
    }

    /// The id that pads the codebook pattern and that the loss ignores.
    fn pad(&self) -> u32 {
        self.model.config.decoder.pad_token_id
    }

    /// The decoder's start id (the first input of the BOS-shifted labels).
    fn bos(&self) -> u32 {
        self.model.config.decoder.bos_token_id
    }

    fn max_frames(&self, cfg: &TrainConfig) -> usize {
        (cfg.max_seconds * self.model.frame_rate()).round().max(1.0) as usize
    }

    /// Per-codebook CE over examples (captions as given, no augmentation, crops from the start).
    fn cross_entropy_on(
        &mut self,
        cfg: &TrainConfig,
        examples: &[Example],
        batches: usize,
    ) -> Result<(Vec<f64>, usize)> {
        let k = self.model.num_codebooks();
        let max_frames = self.max_frames(cfg);
        let mut ce_sum = vec![0f64; k];
        let mut tok = vec![0usize; k];
        for chunk in examples.chunks(cfg.batch_size.max(1)).take(batches) {
            let items: Vec<(&Example, String)> =
                chunk.iter().map(|e| (e, e.caption.clone())).collect();
            let batch = make_batch(
                &items,
                max_frames,
                self.pad(),
                self.model.config.decoder.codebook_pattern,
                None,
                self.model.device(),
            )?;
            let out = self.loss_of(&batch)?;
            for q in 0..k {
                ce_sum[q] += out.ce[q] as f64 * out.tokens[q] as f64;
                tok[q] += out.tokens[q];
            }
        }
        let total = tok.iter().sum();
        Ok((
            (0..k).map(|q| ce_sum[q] / tok[q].max(1) as f64).collect(),
            total,
        ))
    }
}

impl Learner for MusicgenLearner {
    fn streams(&self) -> usize {
        self.model.num_codebooks()
    }

    fn set_dropout_seed(&mut self, seed: Option<u64>) {
        if self.mode == Mode::Lora {
            set_dropout_seed(&mut self.model.lm, &self.lora, seed);
        }
    }

    fn micro_batch(
        &mut self,
        cfg: &TrainConfig,
        position: u64,
        vars: &[(String, Var)],
        scale: f64,
        grads: &mut Grads,
    ) -> Result<MicroBatch> {
        let aug = Augment {
            condition_dropout: cfg.condition_dropout,
            word_dropout: cfg.word_dropout,
            merge_fields: cfg.merge_fields,
        };
        let batch = train_batch(
            &self.data,
            cfg.seed,
            position,
            cfg.batch_size,
            self.max_frames(cfg),
            aug,
            self.pad(),
            self.model.config.decoder.codebook_pattern,
            self.model.device(),
        )?;
        let out = if cfg.activation_checkpointing {
            let (states, mask) = self.text_batch(&batch.captions)?;
            let inputs = shift_right(&batch.labels, self.bos())?;
            loss_and_grads(
                &self.model.lm,
                (&states, &mask),
                &inputs,
                &batch.labels,
                vars,
                scale,
                grads,
            )?
        } else {
            let out = self.loss_of(&batch)?;
            count_transfer();
            if out.loss.to_scalar::<f32>()?.is_finite() {
                grads.add_from(&(&out.loss * scale)?.backward()?, vars)?;
            }
            out
        };
        count_transfer();
        Ok(MicroBatch {
            loss: out.loss.to_scalar::<f32>()? as f64,
            ce: out.ce.iter().map(|&c| c as f64).collect(),
            tokens: out.tokens,
            total_tokens: batch.tokens,
        })
    }

    fn has_valid(&self) -> bool {
        !self.data.valid.is_empty()
    }

    fn valid_cross_entropy(
        &mut self,
        cfg: &TrainConfig,
        batches: usize,
    ) -> Result<(Vec<f64>, usize)> {
        // Borrowed out of `self` for the pass (no copy of the split's codes).
        let examples = std::mem::take(&mut self.data.valid);
        let result = self.cross_entropy_on(cfg, &examples, batches);
        self.data.valid = examples;
        result
    }

    fn preview(&mut self, cfg: &TrainConfig, stem: &Path) -> Result<PathBuf> {
        let params = GenerateParams {
            prompt: cfg.preview_prompt.clone().unwrap_or_default(),
            duration: cfg.preview_seconds,
            seed: cfg.seed,
            ..Default::default()
        };
        let clip = generate(&mut self.model, &params, &mut |_| true)?;
        let path = stem.with_extension("wav");
        let bytes = crate::data::audio::wav_bytes(&clip.audio, clip.sample_rate)?;
        atomic_write(&path, &bytes)?;
        Ok(path)
    }
}
