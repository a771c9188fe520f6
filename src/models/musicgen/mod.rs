//! MusicGen in Hugging Face format: T5 text encoder → LM over 4 EnCodec codebooks (delay
//! pattern, classifier-free guidance) → EnCodec 32 kHz decoder.
//!
//! Reference: transformers `models/musicgen/modeling_musicgen.py`; parity is checked against
//! fixtures written by `tools/make_fixtures.py`.

pub mod config;
pub mod decoder;
pub mod patterns;
pub mod sampling;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::models::checkpoint::{load_tensors, ModelFiles};
use crate::models::device::Precision;
use crate::models::encodec::EncodecModel;
use crate::models::nn::WeightMode;
use crate::models::t5::TextEncoder;
use config::{GenerationConfig, MusicgenConfig};
use decoder::{Conditioning, MusicgenLm};

/// Is this checkpoint key the LM's (the decoder with its heads, or the text projection), the
/// part that training changes? T5 (`text_encoder.`) and EnCodec (`audio_encoder.`) are not.
pub fn is_lm_key(name: &str) -> bool {
    name.starts_with("decoder.") || name.starts_with("enc_to_dec_proj.")
}

/// A loaded MusicGen: the frozen text encoder and codec, and the LM.
pub struct MusicGen {
    pub config: MusicgenConfig,
    pub generation: GenerationConfig,
    pub text: TextEncoder,
    /// `None` once released ([`MusicGen::release_codec`]).
    codec: Option<EncodecModel>,
    pub lm: MusicgenLm,
    /// Where it was loaded from (`None` for in-memory random models).
    pub source: Option<PathBuf>,
    pub weight_mode: WeightMode,
}

impl MusicGen {
    /// Loads an HF-format MusicGen directory (`config.json`, safetensors, `tokenizer.json`).
    pub fn load(dir: &Path, device: &Device, mode: WeightMode) -> Result<Self> {
        let files = ModelFiles::in_dir(dir)?;
        let config = MusicgenConfig::from_file(&files.config)?;
        let generation = match &files.generation_config {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
                serde_json::from_str(&text)
                    .map_err(|e| Error::bad_file(p, format!("not a generation config: {e}")))?
            }
            None => GenerationConfig::default(),
        };
        let tensors = load_tensors(&files.weights, DType::F32, device)?;
        let mut model = Self::from_tensors(
            config,
            generation,
            tensors,
            files.tokenizer.as_deref(),
            device,
            &files.weights_label(),
        )?;
        model.source = Some(dir.to_path_buf());
        model.set_weight_mode(mode)?;
        Ok(model)
    }

    /// Builds the model from named tensors (HF keys). `label` names the weights in errors.
    pub fn from_tensors(
        config: MusicgenConfig,
        generation: GenerationConfig,
        tensors: HashMap<String, Tensor>,
        tokenizer: Option<&Path>,
        device: &Device,
        label: &Path,
    ) -> Result<Self> {
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        Self::from_varbuilder(config, generation, vb, tokenizer, label)
    }

    pub fn from_varbuilder(
        config: MusicgenConfig,
        generation: GenerationConfig,
        vb: VarBuilder,
        tokenizer: Option<&Path>,
        label: &Path,
    ) -> Result<Self> {
        // candle reports a missing or mis-shaped tensor by name; add the file.
        let wrap = |e: Error| match e {
            Error::Candle(c) => Error::bad_file(label, c.to_string()),
            other => other,
        };
        let t5_cfg = config.t5_config(label)?;
        let text = TextEncoder::new(&t5_cfg, vb.pp("text_encoder"), tokenizer).map_err(wrap)?;
        let codec =
            EncodecModel::new(&config.audio_encoder, vb.pp("audio_encoder")).map_err(wrap)?;
        let lm = MusicgenLm::new(&config.decoder, t5_cfg.d_model, vb.clone()).map_err(wrap)?;
        Ok(Self {
            config,
            generation,
            text,
            codec: Some(codec),
            lm,
            source: None,
            weight_mode: WeightMode::F32,
        })
    }

    /// A model of the given layout with random weights (benchmarks and tests; nothing to
    /// download). Also returns the tensors, so they can be saved as a checkpoint.
    pub fn random(
        config: MusicgenConfig,
        seed: u64,
        device: &Device,
    ) -> Result<(Self, HashMap<String, Tensor>)> {
        let backend = RandomInit::new(seed);
        let vb = VarBuilder::from_backend(Box::new(backend.clone()), DType::F32, device.clone());
        let model = Self::from_varbuilder(
            config,
            GenerationConfig::default(),
            vb,
            None,
            Path::new("<random>"),
        )?;
        let tensors = backend.take();
        Ok((model, tensors))
    }

    /// The codec alone, of layout `cfg`, with the random weights [`Self::random`] gives it
    /// (tests and benchmarks of EnCodec at a published size, without building the LM).
    pub fn random_codec(
        cfg: &crate::models::encodec::Config,
        seed: u64,
        device: &Device,
    ) -> Result<EncodecModel> {
        let backend = RandomInit::new(seed);
        let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone());
        EncodecModel::new(cfg, vb.pp("audio_encoder"))
    }

    /// Lays the LM's matrices out for inference in `mode` (the model is frozen from then on).
    pub fn set_weight_mode(&mut self, mode: WeightMode) -> Result<()> {
        self.lm.convert_weights(mode)?;
        self.weight_mode = mode;
        Ok(())
    }

    /// Runs the LM in `precision` for inference: its large weights are stored in it (bf16 or
    /// f16 halve their memory) and its activations computed in it; T5 and EnCodec stay f32
    /// (they run once per prompt and once per clip). 8- and 4-bit weights are CPU formats and
    /// run in f32 only.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        if precision == Precision::F32 {
            return Ok(());
        }
        if self.weight_mode != WeightMode::F32 {
            return Err(Error::InvalidRequest(format!(
                "{} weights run in f32: choose --weights f32 with --dtype {precision}",
                self.weight_mode
            )));
        }
        self.lm.to_inference_dtype(precision.dtype())
    }

    /// The LM's compute precision.
    pub fn precision(&self) -> Precision {
        match self.lm.compute_dtype() {
            DType::BF16 => Precision::Bf16,
            DType::F16 => Precision::F16,
            _ => Precision::F32,
        }
    }

    pub fn device(&self) -> &Device {
        self.lm.device()
    }

    /// The EnCodec model (audio ↔ codes); an error once released.
    pub fn codec(&self) -> Result<&EncodecModel> {
        self.codec.as_ref().ok_or_else(|| {
            Error::InvalidRequest(
                "this model's EnCodec was released (a training run without previews)".into(),
            )
        })
    }

    /// Drops the EnCodec weights (0.24 GB for musicgen-small): a training run that never turns
    /// codes into audio only needs them to encode its dataset.
    pub fn release_codec(&mut self) {
        self.codec = None;
    }

    pub fn sample_rate(&self) -> u32 {
        self.config.sample_rate()
    }

    pub fn frame_rate(&self) -> f64 {
        self.config.frame_rate()
    }

    pub fn num_codebooks(&self) -> usize {
        self.config.decoder.num_codebooks
    }

    /// Text prompts → decoder conditioning (empty prompt = unconditional).
    pub fn condition(&mut self, prompts: &[String]) -> Result<Conditioning> {
        let (states, mask) = self.text.encode(prompts)?;
        self.lm.condition(&states, &mask)
    }

    /// Audio `[N]` at the codec rate → codes `[K][T]`.
    pub fn encode_audio(&self, samples: &[f32]) -> Result<Vec<Vec<u32>>> {
        let t = Tensor::from_slice(samples, (1, 1, samples.len()), self.device())?;
        let codes = self.codec()?.encode(&t)?;
        Ok(codes.squeeze(0)?.to_dtype(DType::U32)?.to_vec2::<u32>()?)
    }

    /// Codes `[K][T]` → audio samples at the codec rate.
    pub fn decode_codes(&self, codes: &[Vec<u32>]) -> Result<Vec<f32>> {
        let k = codes.len();
        let t = codes.first().map(|c| c.len()).unwrap_or(0);
        if t == 0 {
            return Ok(Vec::new());
        }
        let codec = self.codec()?;
        let size = codec.config().codebook_size;
        if codes
            .iter()
            .any(|r| r.len() != t || r.iter().any(|&c| c as usize >= size))
        {
            return Err(Error::InvalidRequest(format!(
                "codes to decode must be rows of equal length, each code below {size}"
            )));
        }
        let flat: Vec<u32> = codes.iter().flatten().copied().collect();
        let codes = Tensor::from_vec(flat, (1, k, t), self.device())?;
        let audio = codec.decode(&codes)?;
        Ok(audio.flatten_all()?.to_vec1::<f32>()?)
    }

    /// One line for the UI and logs: layout, sample rate and weight mode.
    pub fn describe(&self) -> String {
        let d = &self.config.decoder;
        format!(
            "MusicGen: decoder {} layers × {} hidden, {} heads, {} codebooks, {} Hz, weights {}, \
             computing in {}",
            d.num_hidden_layers,
            d.hidden_size,
            d.num_attention_heads,
            d.num_codebooks,
            self.sample_rate(),
            self.weight_mode,
            self.precision()
        )
    }
}

/// A VarBuilder backend that invents every tensor it is asked for (Gaussian, scaled by fan-in;
/// norms at 1) and remembers them, so a model of any published layout can be built without a
/// download and saved as a checkpoint.
#[derive(Clone)]
struct RandomInit {
    seed: u64,
    made: std::sync::Arc<Mutex<HashMap<String, Tensor>>>,
}

impl RandomInit {
    fn new(seed: u64) -> Self {
        Self {
            seed,
            made: Default::default(),
        }
    }

    fn take(&self) -> HashMap<String, Tensor> {
        self.made.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl candle_nn::var_builder::SimpleBackend for RandomInit {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut made = self
            .made
            .lock()
            .map_err(|_| candle_core::Error::Msg("random init poisoned".into()))?;
        if let Some(t) = made.get(name) {
            return Ok(t.clone());
        }
        // A per-name seed keeps the values independent of construction order.
        let h = name
            .bytes()
            .fold(self.seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            });
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(h);
        let n = s.elem_count();
        let dims = s.dims();
        let is_scale =
            (name.contains("layer_norm") && name.ends_with("weight")) || name.ends_with("weight_g");
        let data: Vec<f32> = if is_scale {
            vec![1.0; n]
        } else if name.ends_with("bias") {
            vec![0.0; n]
        } else {
            let fan_in = if dims.len() >= 2 {
                dims[1..].iter().product::<usize>()
            } else {
                dims.first().copied().unwrap_or(1)
            };
            let std = if name.contains("embed") || name.contains("shared") {
                1.0
            } else {
                (fan_in as f32).powf(-0.5)
            };
            (0..n)
                .map(|_| {
                    // Box–Muller
                    let u1: f32 = rng.random::<f32>().max(1e-7);
                    let u2: f32 = rng.random();
                    std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
                })
                .collect()
        };
        let t = Tensor::from_vec(data, s, dev)?.to_dtype(dtype)?;
        made.insert(name.to_string(), t.clone());
        Ok(t)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        Err(candle_core::Error::Msg(format!(
            "random init needs a shape for {name}"
        )))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        // T5 probes for its shared embedding under this name first.
        name.ends_with("shared.weight")
    }
}
