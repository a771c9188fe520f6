//! Data: decoding, resampling and writing audio.

pub mod audio;
pub mod browse;
pub mod dataset;
pub mod labels;
pub mod midi;
pub mod midi_dataset;
pub mod token_cache;
