//! Models, candle maths only (no datasets, no GUI, no audio device): MusicGen (T5 → LM →
//! EnCodec), Music Transformer and CLAP; checkpoint and Hugging Face hub loading; and what they
//! share: layers and ops that record a backward (`nn`), CPU matrix products (`blas`, `gemv`)
//! and vectorised maths (`vmath`).

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
