//! The user's music before a model sees it: decoding and writing audio, MIDI files ↔ events,
//! datasets (their format, importing a folder, MIDI datasets), automatic labels, the token
//! cache (EnCodec codes per segment) and what the studio's dataset browser reads.

pub mod audio;
pub mod browse;
pub mod dataset;
pub mod import;
pub mod labels;
pub mod midi;
pub mod midi_dataset;
pub mod token_cache;
