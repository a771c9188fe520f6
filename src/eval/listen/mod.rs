//! The blind listening test (A/B, optional ABX) of a fine-tuned model against a baseline.
//!
//! Why: whether a fine-tune is better is decided by ears, blind, with honest statistics; these
//! modules are the engine side (no UI): they plan, record and score sessions.
//!
//! What:
//! - [`stats`]: exact binomial tests, intervals, power, cluster bootstrap;
//! - [`loudness`]: EBU R128 loudness matching of clip pairs;
//! - [`session`]: trial planning, the crash-safe session log, blinding,
//!   results and exports;
//! - [`error`]: the shared [`ListenError`].

pub mod error;
pub mod loudness;
pub mod prepare;
pub mod session;
pub mod stats;

pub use error::ListenError;
