//! The engine's error type. Every variant names what the user can act on: the file and the problem.
//!
//! This is the bottom of the crate: nothing here imports another module. A layer above that owns
//! its own error enum (the listening test's `ListenError`) converts it into [`Error::Layer`]
//! where it is defined; the numeric analysis' [`metrics::MetricsError`] lives here because both
//! `dsp` and `eval` raise it.

pub mod metrics;

use std::path::PathBuf;

/// Errors raised by the engine (models, data, generation, training). The CLI and the studio wrap
/// them with `anyhow` context; nothing in the engine panics on bad input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file the model needs is not there.
    #[error("{path}: missing ({what})")]
    MissingFile { path: PathBuf, what: String },

    /// A file exists but its content is not what we expect.
    #[error("{path}: {problem}")]
    BadFile { path: PathBuf, problem: String },

    /// A tensor in a checkpoint has the wrong shape or dtype, or is missing.
    #[error("{path}: tensor `{name}`: {problem}")]
    BadTensor {
        path: PathBuf,
        name: String,
        problem: String,
    },

    /// A checkpoint of a kind we recognise but do not run yet.
    #[error("{path}: {what} is not supported yet")]
    Unsupported { path: PathBuf, what: String },

    /// A request whose parameters make no sense (negative duration, top-p above 1, ...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// Downloading from the Hugging Face Hub failed.
    #[error("download of {repo}/{file} failed: {problem}")]
    Download {
        repo: String,
        file: String,
        problem: String,
    },

    /// Audio that could not be decoded or written.
    #[error("{path}: audio: {problem}")]
    Audio { path: PathBuf, problem: String },

    /// The job was cancelled by the user.
    #[error("cancelled")]
    Cancelled,

    /// An error from candle (tensor maths).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// An error of a layer that owns its own enum (the listening test's session log, loudness
    /// and statistics), kept whole: shown as it is, reachable through `source()`.
    #[error(transparent)]
    Layer(Box<dyn std::error::Error + Send + Sync + 'static>),

    /// Numeric analysis (a spectrogram, an objective metric).
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),

    /// An I/O error with the path it happened on.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn bad_file(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Self::BadFile {
            path: path.into(),
            problem: problem.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
