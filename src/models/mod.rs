//! The models, candle maths only (no datasets, no run folders, no GUI, no audio device):
//! MusicGen (T5 → LM → EnCodec), the Music Transformer and CLAP; checkpoint files and the
//! Hugging Face Hub; LoRA adapters (`lora`) with PEFT's naming and merge (`peft`); and what the
//! models share: layers and ops that record a backward (`nn`), CPU matrix products (`blas`,
//! `gemv`) and vectorised maths (`vmath`).

pub mod blas;
pub mod checkpoint;
pub mod clap;
pub mod device;
pub mod encodec;
pub mod gemv;
pub mod hub;
pub mod lora;
pub mod music_transformer;
pub mod musicgen;
pub mod nn;
pub mod peft;
pub mod qgemv;
pub mod t5;
pub mod vmath;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The model families tunelab runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// MusicGen: text → EnCodec tokens → audio.
    #[default]
    Musicgen,
    /// Music Transformer: MIDI performance events.
    Midi,
}

impl std::str::FromStr for Family {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "musicgen" | "audio" => Ok(Self::Musicgen),
            "midi" | "music-transformer" | "music_transformer" => Ok(Self::Midi),
            other => Err(Error::InvalidRequest(format!(
                "unknown model family {other:?} (musicgen, midi)"
            ))),
        }
    }
}
