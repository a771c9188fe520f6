//! The Music Transformer's token ids: the performance events of Oore et al. 2018 and the three
//! control tokens the model adds. They are the model's input and output space, so they live with
//! the model; `data::midi` encodes MIDI files into them and decodes them back.

/// First `NOTE_ON(pitch)` id; ids `0..128`.
pub const NOTE_ON: u32 = 0;
/// First `NOTE_OFF(pitch)` id; ids `128..256`.
pub const NOTE_OFF: u32 = 128;
/// First `TIME_SHIFT(k)` id; ids `256..356`, advancing time by `(k + 1) * 10 ms`.
pub const TIME_SHIFT: u32 = 256;
/// First `SET_VELOCITY(bin)` id; ids `356..388`, 32 bins over MIDI velocity 1..=127.
pub const SET_VELOCITY: u32 = 356;
/// Number of performance events (every id below this is an event).
pub const EVENTS: u32 = 388;
/// Padding token.
pub const PAD: u32 = 388;
/// Beginning-of-sequence token.
pub const BOS: u32 = 389;
/// End-of-sequence token.
pub const EOS: u32 = 390;
/// Vocabulary size: the events plus `PAD`, `BOS`, `EOS`.
pub const VOCAB: usize = 391;
/// Number of `TIME_SHIFT` events; the longest shift is this many steps (1 s).
pub const TIME_SHIFT_STEPS: u32 = 100;
/// Number of velocity bins.
pub const VELOCITY_BINS: u32 = 32;
