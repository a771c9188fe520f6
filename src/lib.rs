//! tunelab: fine-tune music generation models and prove the result by ear.
//!
//! The engine (models, data, training, generation, evaluation) is UI-agnostic; the studio (`gui` feature) and the
//! audio device (`audio` feature) sit on top and talk to it through `engine::{Command, Event}`.

pub mod audio;
pub mod cli;
pub mod data;
pub mod demo;
pub mod dsp;
pub mod engine;
pub mod error;
pub mod eval;
pub mod generate;
pub mod memory;
pub mod models;
pub mod store;
#[cfg(test)]
mod testing;
pub mod train;
pub mod util;

#[cfg(feature = "gui")]
pub mod ui;

pub use error::{Error, Result};
