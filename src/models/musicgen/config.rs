//! MusicGen configuration, mirroring Hugging Face's `config.json` (`MusicgenConfig` with its three
//! sub-configs) and `generation_config.json`. Presets reproduce facebook/musicgen-{small,medium,large}.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::encodec;
use crate::models::musicgen::patterns::CodebookPattern;

/// The LM decoder (`MusicgenDecoderConfig`). Field names are HF's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DecoderConfig {
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub num_hidden_layers: usize,
    pub ffn_dim: usize,
    pub num_attention_heads: usize,
    pub hidden_size: usize,
    pub num_codebooks: usize,
    pub audio_channels: usize,
    pub activation_function: String,
    pub scale_embedding: bool,
    pub dropout: f64,
    pub attention_dropout: f64,
    pub activation_dropout: f64,
    pub layerdrop: f64,
    pub pad_token_id: u32,
    pub bos_token_id: u32,
    pub tie_word_embeddings: bool,
    pub model_type: String,
    /// tunelab's field for LMs trained from scratch with another interleaving (absent in HF
    /// configs = MusicGen's delay pattern).
    #[serde(skip_serializing_if = "CodebookPattern::is_delay")]
    pub codebook_pattern: CodebookPattern,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            vocab_size: 2048,
            max_position_embeddings: 2048,
            num_hidden_layers: 24,
            ffn_dim: 4096,
            num_attention_heads: 16,
            hidden_size: 1024,
            num_codebooks: 4,
            audio_channels: 1,
            activation_function: "gelu".into(),
            scale_embedding: false,
            dropout: 0.1,
            attention_dropout: 0.0,
            activation_dropout: 0.0,
            layerdrop: 0.0,
            pad_token_id: 2048,
            bos_token_id: 2048,
            tie_word_embeddings: false,
            model_type: "musicgen_decoder".into(),
            codebook_pattern: CodebookPattern::Delay,
        }
    }
}

impl DecoderConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// The whole `config.json` of a `MusicgenForConditionalGeneration` checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MusicgenConfig {
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// Kept as JSON and parsed by candle's T5 (its `Config` mirrors HF's `T5Config`).
    pub text_encoder: serde_json::Value,
    pub audio_encoder: encodec::Config,
    pub decoder: DecoderConfig,
}

fn default_model_type() -> String {
    "musicgen".into()
}

/// `generation_config.json`, with audiocraft's sampling defaults where HF's file is silent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationConfig {
    pub guidance_scale: Option<f64>,
    pub max_length: Option<usize>,
    pub decoder_start_token_id: Option<u32>,
    pub pad_token_id: Option<u32>,
    pub temperature: Option<f64>,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            guidance_scale: Some(3.0),
            max_length: Some(1500),
            decoder_start_token_id: Some(2048),
            pad_token_id: Some(2048),
            temperature: None,
            top_k: None,
            top_p: None,
        }
    }
}

/// The published sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Preset {
    Small,
    Medium,
    Large,
}

impl Preset {
    pub fn repo_id(self) -> &'static str {
        match self {
            Self::Small => "facebook/musicgen-small",
            Self::Medium => "facebook/musicgen-medium",
            Self::Large => "facebook/musicgen-large",
        }
    }
}

impl MusicgenConfig {
    /// The configuration of a published checkpoint, as in its `config.json`.
    pub fn preset(preset: Preset) -> Self {
        let (hidden_size, num_hidden_layers, num_attention_heads) = match preset {
            Preset::Small => (1024, 24, 16),
            Preset::Medium => (1536, 48, 24),
            Preset::Large => (2048, 48, 32),
        };
        let decoder = DecoderConfig {
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            ffn_dim: 4 * hidden_size,
            ..DecoderConfig::default()
        };
        Self {
            model_type: "musicgen".into(),
            text_encoder: t5_base_config(),
            audio_encoder: encodec::Config::encodec_32khz(),
            decoder,
        }
    }

    /// Reads and validates `config.json`; refuses stereo and melody checkpoints with a clear error.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let raw: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(path, format!("not valid JSON: {e}")))?;
        let model_type = raw
            .get("model_type")
            .and_then(|v| v.as_str())
            .unwrap_or("musicgen");
        match model_type {
            "musicgen" => {}
            "musicgen_melody" => {
                return Err(Error::Unsupported {
                    path: path.into(),
                    what: "MusicGen-Melody (chroma conditioning)".into(),
                })
            }
            other => {
                return Err(Error::bad_file(
                    path,
                    format!("unknown model type `{other}` (expected `musicgen`)"),
                ))
            }
        }
        let cfg: Self = serde_json::from_value(raw)
            .map_err(|e| Error::bad_file(path, format!("not a MusicGen config: {e}")))?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    pub fn validate(&self, path: &Path) -> Result<()> {
        let d = &self.decoder;
        if d.audio_channels != 1 || self.audio_encoder.audio_channels != 1 {
            return Err(Error::Unsupported {
                path: path.into(),
                what: "stereo MusicGen (audio_channels = 2)".into(),
            });
        }
        if d.activation_function != "gelu" {
            return Err(Error::Unsupported {
                path: path.into(),
                what: format!("decoder activation `{}`", d.activation_function),
            });
        }
        if d.num_attention_heads == 0 || !d.hidden_size.is_multiple_of(d.num_attention_heads) {
            return Err(Error::bad_file(
                path,
                format!(
                    "decoder hidden_size {} is not divisible by num_attention_heads {}",
                    d.hidden_size, d.num_attention_heads
                ),
            ));
        }
        let n_q = self.audio_encoder.num_quantizers();
        if n_q != d.num_codebooks {
            return Err(Error::bad_file(
                path,
                format!(
                    "decoder has {} codebooks but the audio encoder's bandwidth gives {n_q}",
                    d.num_codebooks
                ),
            ));
        }
        if self.audio_encoder.codebook_size != d.vocab_size {
            return Err(Error::bad_file(
                path,
                format!(
                    "decoder vocab_size {} differs from the codec's codebook_size {}",
                    d.vocab_size, self.audio_encoder.codebook_size
                ),
            ));
        }
        self.t5_config(path)?;
        Ok(())
    }

    /// The text encoder's configuration, parsed by candle's T5.
    pub fn t5_config(&self, path: &Path) -> Result<candle_transformers::models::t5::Config> {
        serde_json::from_value(self.text_encoder.clone())
            .map_err(|e| Error::bad_file(path, format!("text_encoder is not a T5 config: {e}")))
    }

    pub fn t5_hidden_size(&self) -> usize {
        self.text_encoder
            .get("d_model")
            .and_then(|v| v.as_u64())
            .unwrap_or(768) as usize
    }

    /// Frames per second of the codec (50 for the 32 kHz EnCodec).
    pub fn frame_rate(&self) -> f64 {
        self.audio_encoder.frame_rate()
    }

    pub fn sample_rate(&self) -> u32 {
        self.audio_encoder.sampling_rate as u32
    }
}

/// `t5-base`'s encoder configuration, as embedded in facebook/musicgen-* `config.json`.
pub fn t5_base_config() -> serde_json::Value {
    serde_json::json!({
        "model_type": "t5",
        "vocab_size": 32128,
        "d_model": 768,
        "d_kv": 64,
        "d_ff": 3072,
        "num_layers": 12,
        "num_heads": 12,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "dropout_rate": 0.1,
        "layer_norm_epsilon": 1e-6,
        "initializer_factor": 1.0,
        "feed_forward_proj": "relu",
        "is_encoder_decoder": true,
        "use_cache": true,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_have_published_sizes() {
        for (p, h, l) in [
            (Preset::Small, 1024, 24),
            (Preset::Medium, 1536, 48),
            (Preset::Large, 2048, 48),
        ] {
            let c = MusicgenConfig::preset(p);
            c.validate(Path::new("preset")).unwrap();
            assert_eq!((c.decoder.hidden_size, c.decoder.num_hidden_layers), (h, l));
            assert_eq!(c.decoder.num_codebooks, 4);
            assert_eq!(c.frame_rate(), 50.0);
        }
    }

    #[test]
    fn stereo_and_melody_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        let mut v = serde_json::to_value(MusicgenConfig::preset(Preset::Small)).unwrap();
        v["decoder"]["audio_channels"] = 2.into();
        std::fs::write(&p, v.to_string()).unwrap();
        let e = MusicgenConfig::from_file(&p).unwrap_err().to_string();
        assert!(
            e.contains("stereo") && e.contains("not supported yet"),
            "{e}"
        );
        v["model_type"] = "musicgen_melody".into();
        std::fs::write(&p, v.to_string()).unwrap();
        let e = MusicgenConfig::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("Melody") && e.contains("config.json"), "{e}");
        v["model_type"] = "llama".into();
        std::fs::write(&p, v.to_string()).unwrap();
        let e = MusicgenConfig::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("unknown model type `llama`"), "{e}");
    }
}
