//! Objective evaluation metrics on EnCodec latents and spectrograms.
//!
//! What: distribution metrics between sets of EnCodec latent frames (FAD,
//! FAD∞, KAD), a log-mel spectrogram distance between two renders (the log-mel
//! front end itself is `crate::dsp::mel`, shared with the dataset browser), and
//! memorisation checks (nearest training item, longest shared token n-gram).
//!
//! Why: tunelab has to *prove* a MusicGen fine-tune changed the output in the
//! intended direction without copying its training data, on a laptop, without
//! Python. Every metric is deterministic given its seed.
//!
//! Caveat: FAD/KAD on EnCodec latents is **not** comparable with VGGish (or
//! CLAP/PANNs) FAD numbers published elsewhere; compare runs within tunelab only.

pub mod clap;
pub mod fad;
pub mod kad;
pub mod linalg;
pub mod memorise;
