//! The Music Transformer's part of a training run: the model (fresh from a preset, or the
//! weights of a model folder or of an earlier run — transfer learning), its trainable tensors
//! for the mode, the event dataset, and batches of event windows.
//!
//! A training example is a window of at most `max_events + 1` tokens of `BOS, events…, EOS`
//! (a random window of a longer piece), transposed by a random number of semitones (the
//! paper's augmentation); inputs are the window minus its last token, labels minus its first;
//! batches are padded with PAD, which the loss ignores.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use rand::Rng;

use crate::data::dataset::Split;
use crate::data::midi_dataset::{read_pieces, DatasetPiece};
use crate::error::{Error, Result};
use crate::models::device::count_transfer;
use crate::models::lora::{attach_lora_to, LoraConfig, LoraTarget};
use crate::models::music_transformer::vocab::{BOS, EOS, NOTE_OFF, NOTE_ON, PAD};
use crate::models::music_transformer::{is_head_key, MusicTransformer, MusicTransformerConfig};
use crate::models::peft;
use crate::store::run_config::{Mode, TrainConfig};
use crate::store::ModelSpec;
use crate::train::data::{rng_for, sample_index};
use crate::train::learner::{Built, Learner, MicroBatch};
use crate::train::loss::codebook_cross_entropy;
use crate::train::optim::Grads;

const PURPOSE_CROP: u64 = 2;
const PURPOSE_TRANSPOSE: u64 = 5;

pub struct MidiLearner {
    pub model: MusicTransformer,
    train: Vec<DatasetPiece>,
    valid: Vec<DatasetPiece>,
    lora: Option<LoraConfig>,
}

impl MidiLearner {
    pub fn build(
        cfg: &TrainConfig,
        run_dir: &Path,
        device: &Device,
        progress: &mut dyn FnMut(&str),
        saved: &HashMap<String, Tensor>,
    ) -> Result<Built> {
        progress("preparing the Music Transformer");
        let (model_cfg, tensors) = if cfg.mode == Mode::Scratch {
            let c = MusicTransformerConfig::preset(&cfg.midi.preset)?;
            let t = c.init_tensors(cfg.scratch.init_seed, device)?;
            (c, t)
        } else {
            ModelSpec::resolve(&cfg.model)?.midi_tensors(None, device)?
        };
        let json = serde_json::to_vec_pretty(&model_cfg)
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        crate::util::atomic_write(
            &crate::store::run::model_dir(run_dir).join("config.json"),
            &json,
        )?;

        let total = model_cfg.num_hidden_layers;
        let trainable = |n: &str| match cfg.mode {
            Mode::Full | Mode::Scratch => true,
            Mode::Head => is_head_key(n, cfg.head_layers.min(total), total),
            Mode::Lora => false,
        };
        let mut map = HashMap::new();
        let mut vars = Vec::new();
        for (name, t) in tensors {
            let t = t.to_dtype(DType::F32)?.to_device(device)?;
            if trainable(&name) {
                let v = Var::from_tensor(&t)?;
                map.insert(name.clone(), v.as_tensor().clone());
                vars.push((name, v));
            } else {
                map.insert(name, t);
            }
        }
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut model = MusicTransformer::new(
            &model_cfg,
            VarBuilder::from_tensors(map, DType::F32, device),
        )?;

        let lora = (cfg.mode == Mode::Lora).then(|| cfg.lora.clone());
        if let Some(l) = &lora {
            let t = &l.targets;
            if t.contains(&LoraTarget::CrossAttn) || t.contains(&LoraTarget::EncToDecProj) {
                return Err(Error::InvalidRequest(
                    "the Music Transformer has no cross-attention or text projection: LoRA \
                     targets are self_attn, ffn, lm_heads"
                        .into(),
                ));
            }
            let init: HashMap<String, Tensor> = saved
                .iter()
                .map(|(k, v)| (peft::live_name(k), v.clone()))
                .collect();
            let targets = model.lora_targets(
                t.contains(&LoraTarget::SelfAttn),
                t.contains(&LoraTarget::Ffn),
                t.contains(&LoraTarget::LmHeads),
            );
            let adapters = attach_lora_to(targets, l, &init, cfg.seed, device)?;
            vars = peft::adapter_vars(adapters);
        }

        progress("reading the MIDI dataset");
        let pieces = read_pieces(&cfg.dataset)?;
        let (mut train, mut valid) = (Vec::new(), Vec::new());
        for p in pieces.into_iter().filter(|p| !p.events.is_empty()) {
            match p.split {
                Split::Train => train.push(p),
                Split::Valid => valid.push(p),
                Split::Test => {}
            }
        }
        if train.is_empty() {
            return Err(Error::InvalidRequest(format!(
                "MIDI dataset {} has no training piece",
                cfg.dataset.display()
            )));
        }
        Ok(Built {
            learner: Box::new(Self {
                model,
                train,
                valid,
                lora,
            }),
            vars,
        })
    }

    fn window(&self, cfg: &TrainConfig) -> usize {
        let w = self.model.config().max_position_embeddings;
        cfg.midi.max_events.map_or(w, |m| m.clamp(1, w))
    }
}

/// Loss of a batch of token windows (each `inputs ++ [last label]`), padded with PAD.
pub fn window_loss(
    model: &MusicTransformer,
    windows: &[Vec<u32>],
) -> Result<crate::train::loss::LossOutput> {
    let len = windows
        .iter()
        .map(|w| w.len().saturating_sub(1))
        .max()
        .unwrap_or(0);
    if len == 0 {
        return Err(Error::InvalidRequest("an empty MIDI batch".into()));
    }
    let mut inputs = Vec::with_capacity(windows.len() * len);
    let mut labels = Vec::with_capacity(windows.len() * len);
    for w in windows {
        let n = w.len().saturating_sub(1);
        inputs.extend(&w[..n]);
        inputs.extend(std::iter::repeat_n(PAD, len - n));
        labels.extend(&w[1..=n]);
        labels.extend(std::iter::repeat_n(PAD, len - n));
    }
    let device = model.device();
    count_transfer();
    let inputs = Tensor::from_vec(inputs, (windows.len(), len), device)?;
    let labels = Tensor::from_vec(labels, (windows.len(), 1, len), device)?;
    let logits = model.forward(&inputs, None)?.unsqueeze(1)?;
    codebook_cross_entropy(&logits, &labels, PAD)
}

/// `BOS, events…, EOS`.
fn sequence(p: &DatasetPiece) -> Vec<u32> {
    let mut s = Vec::with_capacity(p.events.len() + 2);
    s.push(BOS);
    s.extend(&p.events);
    s.push(EOS);
    s
}

/// Shifts every note event by `semitones`, dropping notes pushed out of 0..=127.
pub fn transpose(tokens: &[u32], semitones: i32) -> Vec<u32> {
    if semitones == 0 {
        return tokens.to_vec();
    }
    tokens
        .iter()
        .filter_map(|&t| {
            let base = if t < NOTE_OFF {
                NOTE_ON
            } else if t < NOTE_OFF + 128 {
                NOTE_OFF
            } else {
                return Some(t);
            };
            let p = (t - base) as i32 + semitones;
            (0..128).contains(&p).then_some(base + p as u32)
        })
        .collect()
}

impl Learner for MidiLearner {
    fn streams(&self) -> usize {
        1
    }

    fn set_dropout_seed(&mut self, seed: Option<u64>) {
        self.model.dropout_seed = seed;
        if self.lora.is_some() {
            for (i, (_, linear)) in self
                .model
                .lora_targets(true, true, true)
                .into_iter()
                .enumerate()
            {
                if let Some(l) = linear.lora.as_mut() {
                    l.dropout_seed =
                        seed.map(|s| s ^ (i as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
                }
            }
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
        let window = self.window(cfg) + 1;
        let n = self.train.len();
        let mut windows = Vec::with_capacity(cfg.batch_size);
        for i in 0..cfg.batch_size as u64 {
            let piece = &self.train[sample_index(n, cfg.seed, position + i)];
            let seq = sequence(piece);
            let mut crop = rng_for(cfg.seed, PURPOSE_CROP, position + i);
            let start = if seq.len() > window {
                crop.random_range(0..=seq.len() - window)
            } else {
                0
            };
            let w = &seq[start..(start + window).min(seq.len())];
            let t = cfg.midi.transpose as i32;
            let shift = if t > 0 {
                rng_for(cfg.seed, PURPOSE_TRANSPOSE, position + i).random_range(-t..=t)
            } else {
                0
            };
            windows.push(transpose(w, shift));
        }
        let out = window_loss(&self.model, &windows)?;
        count_transfer();
        let loss = out.loss.to_scalar::<f32>()? as f64;
        if loss.is_finite() {
            grads.add_from(&(&out.loss * scale)?.backward()?, vars)?;
        }
        Ok(MicroBatch {
            loss,
            ce: out.ce.iter().map(|&c| c as f64).collect(),
            total_tokens: out.tokens.iter().sum(),
            tokens: out.tokens,
        })
    }

    fn has_valid(&self) -> bool {
        !self.valid.is_empty()
    }

    fn valid_cross_entropy(
        &mut self,
        cfg: &TrainConfig,
        batches: usize,
    ) -> Result<(Vec<f64>, usize)> {
        let (ce, tokens) = cross_entropy(
            &self.model,
            &self.valid,
            self.window(cfg),
            cfg.batch_size,
            batches,
        )?;
        Ok((vec![ce], tokens))
    }

    fn preview(&mut self, cfg: &TrainConfig, stem: &Path) -> Result<PathBuf> {
        let params = crate::generate::midi::MidiGenerateParams {
            seconds: Some(cfg.preview_seconds),
            seed: cfg.seed,
            ..Default::default()
        };
        let events = crate::generate::midi::generate_events(&self.model, &params, &mut |_| true)?;
        Ok(crate::generate::midi::write_piece(&events, stem, 0, None)?
            .playable()
            .to_path_buf())
    }
}

/// Token-weighted cross-entropy of `model` over every event of `pieces` (no augmentation):
/// each `BOS, events…, EOS` is cut into consecutive windows of `window` predictions, batched by
/// `batch_size`, at most `batches` batches: `(ce, tokens)`.
pub fn cross_entropy(
    model: &MusicTransformer,
    pieces: &[DatasetPiece],
    window: usize,
    batch_size: usize,
    batches: usize,
) -> Result<(f64, usize)> {
    let window = window.max(1);
    let windows: Vec<Vec<u32>> = pieces
        .iter()
        .flat_map(|p| {
            let s = sequence(p);
            let n = s.len();
            (0..n.saturating_sub(1))
                .step_by(window)
                .map(move |start| s[start..(start + window + 1).min(n)].to_vec())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut sum = 0f64;
    let mut tokens = 0usize;
    for chunk in windows.chunks(batch_size.max(1)).take(batches) {
        let out = window_loss(model, chunk)?;
        sum += out.ce[0] as f64 * out.tokens[0] as f64;
        tokens += out.tokens[0];
    }
    Ok((sum / tokens.max(1) as f64, tokens))
}
