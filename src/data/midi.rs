//! MIDI ↔ Music Transformer events (placeholder: constants only until the module lands).
pub const EVENTS: u32 = 388;
pub const PAD: u32 = 388;
pub const BOS: u32 = 389;
pub const EOS: u32 = 390;
pub const VOCAB: usize = 391;
