//! CLAP configuration, mirroring Hugging Face's `config.json` (`ClapConfig` with its
//! `text_config` / `audio_config`) and the feature extractor's `preprocessor_config.json`.
//! Field names are HF's; absent fields take HF's defaults (those of laion/clap-htsat-unfused
//! where HF's class default differs only for the fused model).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// An integer or an `[h, w]` pair (HF accepts both for `patch_size` / `patch_stride`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrPair {
    One(usize),
    Pair([usize; 2]),
}

impl IntOrPair {
    pub fn pair(self) -> (usize, usize) {
        match self {
            Self::One(v) => (v, v),
            Self::Pair([a, b]) => (a, b),
        }
    }
}

/// The RoBERTa text tower (`ClapTextConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub pad_token_id: u32,
}

impl Default for TextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 50265,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: "gelu".into(),
            max_position_embeddings: 514,
            type_vocab_size: 1,
            layer_norm_eps: 1e-12,
            pad_token_id: 1,
        }
    }
}

/// The HTSAT audio tower (`ClapAudioConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AudioConfig {
    pub window_size: usize,
    pub num_mel_bins: usize,
    pub spec_size: usize,
    pub hidden_act: String,
    pub patch_size: IntOrPair,
    pub patch_stride: IntOrPair,
    /// Width of the last stage (`patch_embeds_hidden_size · 2^(stages − 1)`), the projection's input.
    pub hidden_size: usize,
    pub depths: Vec<usize>,
    pub num_attention_heads: Vec<usize>,
    pub enable_fusion: bool,
    pub patch_embed_input_channels: usize,
    pub flatten_patch_embeds: bool,
    pub patch_embeds_hidden_size: usize,
    pub enable_patch_layer_norm: bool,
    pub qkv_bias: bool,
    pub mlp_ratio: f64,
    pub layer_norm_eps: f64,
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            window_size: 8,
            num_mel_bins: 64,
            spec_size: 256,
            hidden_act: "gelu".into(),
            patch_size: IntOrPair::One(4),
            patch_stride: IntOrPair::Pair([4, 4]),
            hidden_size: 768,
            depths: vec![2, 2, 6, 2],
            num_attention_heads: vec![4, 8, 16, 32],
            enable_fusion: false,
            patch_embed_input_channels: 1,
            flatten_patch_embeds: true,
            patch_embeds_hidden_size: 96,
            enable_patch_layer_norm: true,
            qkv_bias: true,
            mlp_ratio: 4.0,
            layer_norm_eps: 1e-5,
        }
    }
}

impl AudioConfig {
    /// `spec_size / num_mel_bins`: how many time chunks are stacked along the frequency axis.
    pub fn freq_ratio(&self) -> usize {
        self.spec_size / self.num_mel_bins.max(1)
    }

    /// Frames the model takes (`spec_size · freq_ratio`; shorter inputs are interpolated).
    pub fn spec_width(&self) -> usize {
        self.spec_size * self.freq_ratio()
    }

    /// Mel bins the model takes (`spec_size / freq_ratio`).
    pub fn spec_height(&self) -> usize {
        self.spec_size / self.freq_ratio().max(1)
    }

    /// Channels of stage `i` (`patch_embeds_hidden_size · 2^i`).
    pub fn stage_dim(&self, i: usize) -> usize {
        self.patch_embeds_hidden_size << i
    }

    /// Channels after the last stage.
    pub fn num_features(&self) -> usize {
        self.stage_dim(self.depths.len().saturating_sub(1))
    }
}

/// The whole `config.json` of a `ClapModel` checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClapConfig {
    #[serde(default = "default_model_type")]
    pub model_type: String,
    #[serde(default)]
    pub text_config: TextConfig,
    #[serde(default)]
    pub audio_config: AudioConfig,
    #[serde(default = "default_projection_dim")]
    pub projection_dim: usize,
    #[serde(default = "default_projection_act")]
    pub projection_hidden_act: String,
}

fn default_model_type() -> String {
    "clap".into()
}

fn default_projection_dim() -> usize {
    512
}

fn default_projection_act() -> String {
    "relu".into()
}

impl ClapConfig {
    /// Reads and checks a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: Self = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(path, format!("not a CLAP config: {e}")))?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Refuses what the port does not run (the fused model) or what cannot be a valid model.
    pub fn validate(&self, path: &Path) -> Result<()> {
        if self.model_type != "clap" {
            return Err(Error::bad_file(
                path,
                format!(
                    "model type `{}` is not a CLAP model (expected `clap`)",
                    self.model_type
                ),
            ));
        }
        let a = &self.audio_config;
        if a.enable_fusion {
            return Err(Error::Unsupported {
                path: path.into(),
                what:
                    "the fused CLAP audio encoder (`enable_fusion`, e.g. laion/clap-htsat-fused; \
                       use an unfused checkpoint such as laion/clap-htsat-unfused)"
                        .into(),
            });
        }
        let unsupported = |what: String| Error::Unsupported {
            path: path.into(),
            what,
        };
        if a.patch_embed_input_channels != 1 || !a.flatten_patch_embeds {
            return Err(unsupported(
                "an HTSAT patch embedding with several input channels or unflattened output".into(),
            ));
        }
        let (ph, pw) = a.patch_size.pair();
        let (sh, sw) = a.patch_stride.pair();
        if ph != pw || sh != sw || ph < sh {
            return Err(unsupported(format!(
                "a non-square HTSAT patch ({ph}x{pw}, stride {sh}x{sw})"
            )));
        }
        let bad = |m: String| Error::bad_file(path, m);
        if a.depths.is_empty() || a.depths.len() != a.num_attention_heads.len() {
            return Err(bad(format!(
                "audio_config: {} depths but {} head counts",
                a.depths.len(),
                a.num_attention_heads.len()
            )));
        }
        if a.num_mel_bins == 0 || a.spec_size < a.num_mel_bins || a.window_size == 0 || sh == 0 {
            return Err(bad(format!(
                "audio_config: spec_size {} / num_mel_bins {} / window_size {} / patch_stride {sh} \
                 do not make an HTSAT input",
                a.spec_size, a.num_mel_bins, a.window_size
            )));
        }
        if a.spec_height() != a.num_mel_bins || a.spec_height() * a.freq_ratio() != a.spec_size {
            return Err(unsupported(format!(
                "an HTSAT input of {0}x{0} that is not {1} mel bins × {2} time chunks \
                 (HF would interpolate the mel axis)",
                a.spec_size,
                a.num_mel_bins,
                a.freq_ratio()
            )));
        }
        let grid = a.spec_size / sh;
        for i in 0..a.depths.len() {
            let res = grid >> i;
            if !grid.is_multiple_of(1 << i)
                || res < a.window_size
                || (i == 0 && !a.spec_size.is_multiple_of(sh))
            {
                return Err(bad(format!(
                    "audio_config: stage {i} works on a {res}x{res} grid (spec_size {} / \
                     patch_stride {sh} / 2^{i}), which must be whole and at least the \
                     window_size {}",
                    a.spec_size, a.window_size
                )));
            }
        }
        for (i, &h) in a.num_attention_heads.iter().enumerate() {
            if h == 0 || !a.stage_dim(i).is_multiple_of(h) {
                return Err(bad(format!(
                    "audio_config: stage {i} width {} is not a multiple of its {h} heads",
                    a.stage_dim(i)
                )));
            }
        }
        if a.hidden_size != a.num_features() {
            return Err(bad(format!(
                "audio_config: hidden_size {} differs from the last stage width {}",
                a.hidden_size,
                a.num_features()
            )));
        }
        let t = &self.text_config;
        if t.num_attention_heads == 0 || !t.hidden_size.is_multiple_of(t.num_attention_heads) {
            return Err(bad(format!(
                "text_config: hidden_size {} is not a multiple of {} heads",
                t.hidden_size, t.num_attention_heads
            )));
        }
        if t.type_vocab_size == 0 || t.max_position_embeddings <= t.pad_token_id as usize + 1 {
            return Err(bad(
                "text_config: no room for token types or positions".into()
            ));
        }
        for act in [&t.hidden_act, &a.hidden_act, &self.projection_hidden_act] {
            Activation::parse(act).map_err(&bad)?;
        }
        Ok(())
    }
}

/// The activations CLAP checkpoints use (HF's `ACT2FN` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: the exact, erf-based GELU.
    Gelu,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    Relu,
    Silu,
    Tanh,
}

impl Activation {
    pub fn parse(name: &str) -> std::result::Result<Self, String> {
        Ok(match name {
            "gelu" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Self::GeluTanh,
            "relu" => Self::Relu,
            "silu" | "swish" => Self::Silu,
            "tanh" => Self::Tanh,
            other => return Err(format!("unsupported activation `{other}`")),
        })
    }

    pub fn apply(self, xs: &candle_core::Tensor) -> Result<candle_core::Tensor> {
        Ok(match self {
            Self::Gelu => xs.gelu_erf()?,
            Self::GeluTanh => xs.gelu()?,
            Self::Relu => xs.relu()?,
            Self::Silu => xs.silu()?,
            Self::Tanh => xs.tanh()?,
        })
    }
}

/// How clips shorter than the extractor's window are filled (`padding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// Whole copies of the clip, then zeros (laion/clap-htsat-unfused).
    Repeatpad,
    /// Copies of the clip, the last one cut at the window's end.
    Repeat,
    /// Zeros.
    Pad,
}

/// `preprocessor_config.json` of a `ClapFeatureExtractor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureExtractorConfig {
    /// Mel bins.
    pub feature_size: usize,
    pub sampling_rate: u32,
    pub hop_length: usize,
    /// Window length in seconds (HF multiplies it by the rate and ignores a stored
    /// `nb_max_samples`).
    pub max_length_s: f64,
    pub fft_window_size: usize,
    pub frequency_min: f64,
    pub frequency_max: f64,
    /// `rand_trunc` (the unfused model) or `fusion` (refused).
    pub truncation: String,
    pub padding: Padding,
}

impl Default for FeatureExtractorConfig {
    /// laion/clap-htsat-unfused's settings.
    fn default() -> Self {
        Self {
            feature_size: 64,
            sampling_rate: 48_000,
            hop_length: 480,
            max_length_s: 10.0,
            fft_window_size: 1024,
            frequency_min: 50.0,
            frequency_max: 14_000.0,
            truncation: "rand_trunc".into(),
            padding: Padding::Repeatpad,
        }
    }
}

impl FeatureExtractorConfig {
    /// Reads and checks a `preprocessor_config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: Self = serde_json::from_str(&text).map_err(|e| {
            Error::bad_file(path, format!("not a CLAP feature extractor config: {e}"))
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    pub fn validate(&self, path: &Path) -> Result<()> {
        if self.truncation != "rand_trunc" {
            return Err(Error::Unsupported {
                path: path.into(),
                what: format!(
                    "feature extractor truncation `{}` (only the unfused model's `rand_trunc`)",
                    self.truncation
                ),
            });
        }
        let n_bins = self.fft_window_size / 2 + 1;
        if self.feature_size == 0
            || self.sampling_rate == 0
            || self.hop_length == 0
            || self.fft_window_size < 2
            || self.max_samples() <= self.fft_window_size / 2
            || !(0.0..=self.frequency_max).contains(&self.frequency_min)
            || n_bins < 2
        {
            return Err(Error::bad_file(
                path,
                "feature extractor settings make no spectrogram (zero sizes, a window shorter \
                 than half an FFT, or frequency_min > frequency_max)",
            ));
        }
        Ok(())
    }

    /// Samples per clip window (`max_length_s · sampling_rate`).
    pub fn max_samples(&self) -> usize {
        (self.max_length_s * f64::from(self.sampling_rate)).round() as usize
    }

    /// Frames per window (centred STFT).
    pub fn n_frames(&self) -> usize {
        1 + self.max_samples() / self.hop_length
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_unfused_checkpoint() {
        let a = AudioConfig::default();
        assert_eq!(
            (a.freq_ratio(), a.spec_width(), a.spec_height()),
            (4, 1024, 64)
        );
        assert_eq!(a.num_features(), 768);
        let f = FeatureExtractorConfig::default();
        assert_eq!((f.max_samples(), f.n_frames()), (480_000, 1001));
        let c: ClapConfig = serde_json::from_str(r#"{"model_type": "clap"}"#).unwrap();
        c.validate(Path::new("config.json")).unwrap();
        let fused: ClapConfig =
            serde_json::from_str(r#"{"audio_config": {"enable_fusion": true}}"#).unwrap();
        let e = fused.validate(Path::new("x/config.json")).unwrap_err();
        assert!(e.to_string().contains("fused"), "{e}");
    }
}
