//! The one error type of the listening-test modules.
//!
//! Why: a listening test touches files (clip audio, the append-only session
//! log), numeric input (audio buffers) and a rater's actions, and each
//! failure has to say *which* file or input and *what* was wrong so that a
//! person can act on it without a debugger. Every variant that concerns a
//! file carries its path; log problems also carry the 1-based line number.
//!
//! What: [`ListenError`] and the [`Result`] alias. The enum is
//! self-contained (no dependency on the rest of the crate); the one `From`
//! impl at the end maps it into the crate's error (`Error::Layer`).

use std::path::PathBuf;

/// Everything that can go wrong in the listening-test modules (statistics, loudness, the
/// session model, plan, log, blinding, results and exports).
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// An operating-system I/O call on `path` failed.
    #[error("{}: I/O error: {source}", path.display())]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A session log is malformed at `line` (1-based) in a way that cannot be
    /// a torn final write, so it is not silently skipped.
    #[error("{}:{line}: bad session log: {problem}", path.display())]
    BadLog {
        /// The log file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with that line.
        problem: String,
    },

    /// Refused to create a session log over an existing file.
    #[error("{}: refusing to create a session log: the file already exists", path.display())]
    Exists {
        /// The path that already exists.
        path: PathBuf,
    },

    /// The file changed in a way this process did not expect (for example
    /// a second writer appended to the same log).
    #[error("{}: {problem}", path.display())]
    Conflict {
        /// The file.
        path: PathBuf,
        /// What was found.
        problem: String,
    },

    /// A clip file's content does not match the hash recorded for it.
    #[error("{}: integrity check failed: {problem}", path.display())]
    Integrity {
        /// The clip file.
        path: PathBuf,
        /// Expected vs actual hash, or similar.
        problem: String,
    },

    /// Audio with no measurable loudness (digital silence, or shorter than
    /// one 400 ms gating block): gain matching it would need an infinite
    /// gain, so it is refused instead of producing NaN/inf gains.
    #[error("{what}: audio is silent or too short to measure (integrated loudness is -inf LUFS)")]
    Silent {
        /// Which input (e.g. "clip a").
        what: String,
    },

    /// The loudness meter itself reported an error.
    #[error("loudness meter: {0}")]
    Loudness(String),

    /// `reveal` (or another end-of-session action) was asked for before the
    /// rater answered every planned trial.
    #[error(
        "rater {rater:?} has answered {answered} of {total} trials; the session is not finished"
    )]
    NotFinished {
        /// The rater.
        rater: String,
        /// Trials answered so far.
        answered: usize,
        /// Trials planned.
        total: usize,
    },

    /// Invalid argument, spec or answer.
    #[error("invalid: {0}")]
    Invalid(String),
}

/// Result alias used throughout the listening-test modules.
pub type Result<T> = std::result::Result<T, ListenError>;

impl ListenError {
    /// Helper to wrap an [`std::io::Error`] with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ListenError::Io {
            path: path.into(),
            source,
        }
    }
}

/// The listening test's errors reach the engine's callers whole (text and source kept).
impl From<ListenError> for crate::error::Error {
    fn from(e: ListenError) -> Self {
        crate::error::Error::Layer(Box::new(e))
    }
}
