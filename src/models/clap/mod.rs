//! LAION-CLAP (contrastive text–audio embeddings) in Hugging Face format, for an optional
//! text–audio score. No weights ship with tunelab: the user points [`Clap::load`] at a
//! folder holding an unfused CLAP checkpoint (e.g. laion/clap-htsat-unfused) as safetensors.
//!
//! Text: RoBERTa → first-token tanh pooler → `text_projection` → L2 norm
//! ([`Clap::get_text_features`]). Audio: resampled to the extractor's rate (48 kHz) → log-mel
//! ([`features`]) → HTSAT → mean pooling → `audio_projection` → L2 norm
//! ([`Clap::get_audio_features`]). Both mirror HF's `ClapModel` methods of the same names.
//!
//! Reference: transformers `models/clap/{modeling,feature_extraction}_clap.py`; parity is checked
//! against the random-weight fixture written by `tools/make_clap_fixture.py`.
//!
//! Caveat: HF crops clips longer than the extractor's window (10 s) at a random offset; tunelab
//! always takes the first window, so a score is reproducible but only sees the clip's start.

pub mod audio;
pub mod config;
pub mod features;
pub mod text;

#[cfg(test)]
pub(crate) mod tests;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::error::{Error, Result};
use crate::models::checkpoint::{load_tensors, ModelFiles};
use audio::AudioEncoder;
use config::{Activation, ClapConfig, FeatureExtractorConfig};
use features::FeatureExtractor;
use text::{l2_normalize, Projection, TextModel};

/// The feature extractor's settings file.
pub const PREPROCESSOR_CONFIG: &str = "preprocessor_config.json";

/// A loaded CLAP model with its tokenizer and feature extractor.
pub struct Clap {
    pub config: ClapConfig,
    pub features: FeatureExtractor,
    text_model: TextModel,
    text_projection: Projection,
    audio_encoder: AudioEncoder,
    audio_projection: Projection,
    tokenizer: Option<(tokenizers::Tokenizer, PathBuf)>,
    device: Device,
    /// Where it was loaded from (`None` when built from a `VarBuilder`).
    pub source: Option<PathBuf>,
}

impl std::fmt::Debug for Clap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clap")
            .field("source", &self.source)
            .field("projection_dim", &self.config.projection_dim)
            .finish()
    }
}

/// Turns candle's "cannot find tensor" / "shape mismatch" into errors naming the file and tensor.
fn tensor_error(label: &Path, e: Error) -> Error {
    fn inner(label: &Path, e: candle_core::Error) -> Error {
        match e {
            candle_core::Error::CannotFindTensor { path } => Error::BadTensor {
                path: label.into(),
                name: path,
                problem: "missing".into(),
            },
            candle_core::Error::UnexpectedShape { msg, expected, got } => Error::BadTensor {
                path: label.into(),
                name: msg
                    .strip_prefix("shape mismatch for ")
                    .unwrap_or(&msg)
                    .to_string(),
                problem: format!("shape {:?}, expected {:?}", got.dims(), expected.dims()),
            },
            candle_core::Error::WithBacktrace { inner: e, .. }
            | candle_core::Error::WithPath { inner: e, .. }
            | candle_core::Error::Context { inner: e, .. } => inner(label, *e),
            other => Error::bad_file(label, other.to_string()),
        }
    }
    match e {
        Error::Candle(c) => inner(label, c),
        other => other,
    }
}

impl Clap {
    /// Loads a CLAP folder: `config.json`, `model.safetensors` (or a sharded index),
    /// `tokenizer.json` and `preprocessor_config.json`. Pickle weights are refused.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let files = ModelFiles::in_dir(dir)?;
        let config = ClapConfig::from_file(&files.config)?;
        let tokenizer = files.tokenizer.clone().ok_or_else(|| Error::MissingFile {
            path: dir.join("tokenizer.json"),
            what: "the CLAP text tokenizer (RoBERTa `tokenizer.json`)".into(),
        })?;
        let pre = dir.join(PREPROCESSOR_CONFIG);
        if !pre.is_file() {
            return Err(Error::MissingFile {
                path: pre,
                what: "the CLAP feature extractor settings".into(),
            });
        }
        let fe = FeatureExtractorConfig::from_file(&pre)?;
        if fe.feature_size != config.audio_config.num_mel_bins {
            return Err(Error::bad_file(
                &pre,
                format!(
                    "feature_size {} differs from the model's num_mel_bins {} ({})",
                    fe.feature_size,
                    config.audio_config.num_mel_bins,
                    files.config.display()
                ),
            ));
        }
        let label = files.weights_label();
        let tensors = load_tensors(&files.weights, DType::F32, device)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let mut model = Self::from_varbuilder(config, fe, vb, Some(&tokenizer), &label)?;
        model.source = Some(dir.to_path_buf());
        Ok(model)
    }

    /// Builds the model from a `VarBuilder` at the checkpoint's root (HF keys `text_model.*`,
    /// `text_projection.*`, `audio_model.audio_encoder.*`, `audio_projection.*`). `label` names
    /// the weights in errors.
    pub fn from_varbuilder(
        config: ClapConfig,
        features: FeatureExtractorConfig,
        vb: VarBuilder,
        tokenizer: Option<&Path>,
        label: &Path,
    ) -> Result<Self> {
        config.validate(label)?;
        features.validate(label)?;
        let device = vb.device().clone();
        let wrap = |e: Error| tensor_error(label, e);
        let proj_act =
            Activation::parse(&config.projection_hidden_act).map_err(Error::InvalidRequest)?;
        let dim = config.projection_dim;
        let text_model = TextModel::new(&config.text_config, vb.pp("text_model")).map_err(wrap)?;
        let text_projection = Projection::new(
            config.text_config.hidden_size,
            dim,
            proj_act,
            vb.pp("text_projection"),
        )
        .map_err(wrap)?;
        let audio_encoder = AudioEncoder::new(
            &config.audio_config,
            vb.pp("audio_model").pp("audio_encoder"),
        )
        .map_err(wrap)?;
        let audio_projection = Projection::new(
            config.audio_config.hidden_size,
            dim,
            proj_act,
            vb.pp("audio_projection"),
        )
        .map_err(wrap)?;
        let tokenizer = match tokenizer {
            Some(p) => {
                let mut t = tokenizers::Tokenizer::from_file(p)
                    .map_err(|e| Error::bad_file(p, format!("not a tokenizers JSON file: {e}")))?;
                // As HF's `tokenizer(text)`: whatever truncation or padding the file stores is
                // not applied (a prompt too long for the positions is an error instead).
                t.with_truncation(None)
                    .map_err(|e| Error::bad_file(p, format!("cannot disable truncation: {e}")))?;
                t.with_padding(None);
                Some((t, p.to_path_buf()))
            }
            None => None,
        };
        Ok(Self {
            config,
            features: FeatureExtractor::new(features),
            text_model,
            text_projection,
            audio_encoder,
            audio_projection,
            tokenizer,
            device,
            source: None,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Width of the shared embedding space.
    pub fn projection_dim(&self) -> usize {
        self.config.projection_dim
    }

    /// The rate the audio tower's features are computed at (48 kHz for LAION-CLAP).
    pub fn sample_rate(&self) -> u32 {
        self.features.config.sampling_rate
    }

    /// Token ids of `text` with RoBERTa's `<s>` … `</s>`.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let Some((tok, path)) = &self.tokenizer else {
            return Err(Error::MissingFile {
                path: "tokenizer.json".into(),
                what: "the CLAP model has no tokenizer, so it cannot read a text prompt".into(),
            });
        };
        let enc = tok
            .encode(text, true)
            .map_err(|e| Error::bad_file(path, format!("cannot tokenize {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text pooler output `[1, hidden]` (before the projection) of one id sequence.
    pub fn text_pooled(&self, ids: &[u32]) -> Result<Tensor> {
        self.text_model.pooled(ids)
    }

    /// Projected, L2-normalised text embedding `[1, projection_dim]` of one id sequence.
    pub fn text_embedding_from_ids(&self, ids: &[u32]) -> Result<Tensor> {
        l2_normalize(&self.text_projection.forward(&self.text_pooled(ids)?)?)
    }

    /// HF `ClapModel.get_text_features`: prompts → `[B, projection_dim]`, L2-normalised.
    pub fn get_text_features<S: AsRef<str>>(&self, prompts: &[S]) -> Result<Tensor> {
        if prompts.is_empty() {
            return Err(Error::InvalidRequest("CLAP: no prompts".into()));
        }
        let rows = prompts
            .iter()
            .map(|p| self.text_embedding_from_ids(&self.tokenize(p.as_ref())?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&rows, 0)?)
    }

    /// Log-mel input features `[1, 1, frames, mel bins]` of one clip at [`Self::sample_rate`].
    pub fn input_features(&self, clip: &[f32]) -> Result<Tensor> {
        let data = self.features.compute(clip)?;
        let n_mels = self.features.n_mels();
        let frames = data.len() / n_mels;
        Ok(Tensor::from_vec(
            data,
            (1, 1, frames, n_mels),
            &self.device,
        )?)
    }

    /// Audio pooler output `[B, hidden]` (before the projection) of input features `[B, 1, T, F]`.
    pub fn audio_pooled(&self, input_features: &Tensor) -> Result<Tensor> {
        self.audio_encoder.forward(input_features)
    }

    /// HF `ClapModel.get_audio_features`: input features `[B, 1, T, F]` → `[B, projection_dim]`,
    /// L2-normalised.
    pub fn get_audio_features(&self, input_features: &Tensor) -> Result<Tensor> {
        let pooled = self.audio_pooled(&input_features.to_dtype(DType::F32)?)?;
        l2_normalize(&self.audio_projection.forward(&pooled)?)
    }

    /// Embeddings `[B, projection_dim]` of mono clips at `sample_rate` Hz: each is resampled to
    /// the extractor's rate (`dsp::resample`, as audio import does), turned into features and embedded.
    pub fn audio_embeddings<A: AsRef<[f32]>>(
        &self,
        clips: &[A],
        sample_rate: u32,
    ) -> Result<Tensor> {
        if clips.is_empty() {
            return Err(Error::InvalidRequest("CLAP: no audio clips".into()));
        }
        let rows = clips
            .iter()
            .map(|c| {
                let x = crate::dsp::resample(c.as_ref(), sample_rate, self.sample_rate())?;
                self.get_audio_features(&self.input_features(&x)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&rows, 0)?)
    }
}
