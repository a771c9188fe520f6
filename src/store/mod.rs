//! Where models live on disk and how they become loaded models: a name or path classified once
//! ([`spec::ModelSpec`]), the run folder's layout and checkpoint format ([`run`]), the run's
//! manifest ([`run_config::TrainConfig`]), and one `load` for every caller ([`load`]).
//!
//! The store sits above `models` and `data` and below everything that uses a model (generation,
//! training, evaluation, the engine), so none of them needs another's internals to open a run.

pub mod load;
pub mod run;
pub mod run_config;
pub mod spec;

pub use load::{LoadOptions, LoadedModel, Model};
pub use spec::ModelSpec;
