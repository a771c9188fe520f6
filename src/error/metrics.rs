//! Error type shared by the numeric analysis: the log-mel front end (`dsp::mel`) and the
//! evaluation metrics (FAD, FAD∞, KAD, log-mel MSE, memorisation checks). It lives here, at the
//! bottom of the crate, because both `dsp` and `eval` raise it.
//!
//! Why one enum: every metric validates the same few things (enough samples,
//! matching dimensions, finite numbers), and the studio shows these errors to a
//! person next to a metric that could not be computed, so they must say what
//! was wrong in plain words instead of panicking deep inside a numeric loop.
//!
//! Caveat that applies to every metric in this module family: FAD/KAD here are
//! computed on EnCodec encoder latents (128-d frames), so their values are only
//! comparable with each other inside tunelab, never with VGGish/CLAP FAD numbers
//! published elsewhere.

use thiserror::Error;

/// Everything that can go wrong while computing an evaluation metric.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MetricsError {
    /// Not enough samples (frames, resamples, audio samples, sizes...) to
    /// compute `what`.
    #[error("too few samples for {what}: got {n}, need at least {need}")]
    TooFewSamples {
        what: &'static str,
        n: usize,
        need: usize,
    },

    /// Two things that must have the same dimension do not.
    #[error("dimension mismatch in {what}: expected {expected}, got {got}")]
    DimMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },

    /// A NaN or infinity was found; the string says where.
    #[error("non-finite value: {0}")]
    NotFinite(String),

    /// A matrix that must be symmetric positive semi-definite has a clearly
    /// negative eigenvalue (beyond rounding noise).
    #[error("matrix is not positive semi-definite: eigenvalue {eigenvalue:e} (largest magnitude {scale:e})")]
    NotPositiveSemiDefinite { eigenvalue: f64, scale: f64 },

    /// A matrix that must be symmetric is not (beyond rounding noise).
    #[error("matrix is not symmetric: max |a_ij - a_ji| = {max_asymmetry:e}")]
    NotSymmetric { max_asymmetry: f64 },

    /// The Jacobi eigen-solver hit its sweep limit.
    #[error("Jacobi eigen-solver did not converge after {sweeps} sweeps (relative off-diagonal norm {off:e})")]
    NoConvergence { sweeps: usize, off: f64 },

    /// An argument is out of its valid range; the string says which and why.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The FFT backend refused its buffers (should not happen: sizes are ours).
    #[error("FFT failed: {0}")]
    Fft(String),
}

/// Result alias for the metrics modules.
pub type Result<T> = std::result::Result<T, MetricsError>;
