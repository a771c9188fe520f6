//! The engine: a worker thread that owns the models and runs jobs. The studio and the CLI talk
//! to it only through [`protocol::Command`] and [`protocol::Event`].

pub mod protocol;
pub mod worker;

pub use protocol::{Command, Event, JobId, JobOutput, ModelInfo};
pub use worker::EngineHandle;
