//! Models, candle only (no GUI, no audio device): MusicGen (T5 → LM → EnCodec) and shared layers.

pub mod blas;
pub mod checkpoint;
pub mod clap;
pub mod encodec;
pub mod gemv;
pub mod hub;
pub mod music_transformer;
pub mod musicgen;
pub mod nn;
pub mod t5;
pub mod vmath;
