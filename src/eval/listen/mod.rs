//! The blind listening test (A/B, optional ABX) of a fine-tuned model against a baseline.
//!
//! Why: whether a fine-tune is better is decided by ears, blind, with honest statistics; these
//! modules are the engine side (no UI): they plan, record and score sessions.
//!
//! What, one concern per module:
//! - [`model`]: the session's data model (spec, clips, trials, answers) and SHA-256 helpers;
//! - [`plan`]: the deterministic trial plan per (spec, rater);
//! - [`log`]: the crash-safe, append-only session log;
//! - [`blind`]: what a UI may show during a session, and the unblinding after it;
//! - [`results`]: tallies, exact test, ABX, cluster bootstrap, pooling of sessions;
//! - [`export`]: CSV and JSON exports with provenance;
//! - [`stats`]: exact binomial tests, intervals, power, cluster bootstrap;
//! - [`loudness`]: EBU R128 loudness matching of clip pairs;
//! - [`prepare`]: generating and loudness-matching the clips of a new session;
//! - [`error`]: the shared [`ListenError`].
//!
//! The session types are re-exported here (`eval::listen::SessionLog`, …).

pub mod blind;
pub mod error;
pub mod export;
#[cfg(test)]
mod fixtures;
pub mod log;
pub mod loudness;
pub mod model;
pub mod plan;
pub mod prepare;
pub mod results;
pub mod stats;

pub use blind::{BlindView, Reveal, RevealedTrial};
pub use error::ListenError;
pub use export::{answers_to_csv, results_to_csv, to_json, ANSWER_CSV_COLUMNS};
pub use log::{SessionLog, TornTail, LOG_FORMAT};
pub use model::{
    sha256_file, sha256_hex, Answer, Choice, ModelRef, PlayState, PlayTarget, Response,
    SessionClip, SessionSpec, Side, Trial, Which,
};
pub use plan::plan_trials;
pub use results::{
    pool, results, AbxResult, BootstrapCi, BootstrapInterval, PromptCount, RaterCount, Results,
    ResultsOptions,
};
