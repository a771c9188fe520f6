//! What a model family brings to a training run. The run itself — schedule, gradient
//! accumulation, clipping, AdamW, EMA, metrics, checkpoints, resume, pause/stop — is shared
//! (`trainer.rs`); a family only knows its model, its data and what "a batch", "validation" and
//! "a preview" mean for it.

use std::path::{Path, PathBuf};

use candle_core::Var;

use crate::error::Result;
use crate::store::run_config::TrainConfig;
use crate::train::optim::Grads;

/// The numbers of one micro-batch.
#[derive(Debug, Clone, PartialEq)]
pub struct MicroBatch {
    /// The (scalar) loss value.
    pub loss: f64,
    /// Cross-entropy per stream (codebook for MusicGen; one stream for MIDI), nats.
    pub ce: Vec<f64>,
    /// Counted tokens per stream.
    pub tokens: Vec<usize>,
    /// Input tokens in the batch (throughput).
    pub total_tokens: usize,
}

/// A family's part of a run, built with its trainable tensors (see [`Built`]).
pub trait Learner {
    /// Streams the loss is reported on (entries of `ce_q`).
    fn streams(&self) -> usize;

    /// Sets (training, one seed per micro-batch) or clears (evaluation) every dropout seed.
    fn set_dropout_seed(&mut self, seed: Option<u64>);

    /// Forward and backward of the micro-batch made of the samples drawn at `position ..
    /// position + batch_size` of the run's order: accumulates the gradients of `loss * scale`
    /// for `vars` into `grads` (only when the loss is finite).
    fn micro_batch(
        &mut self,
        cfg: &TrainConfig,
        position: u64,
        vars: &[(String, Var)],
        scale: f64,
        grads: &mut Grads,
    ) -> Result<MicroBatch>;

    /// Is there a validation split?
    fn has_valid(&self) -> bool;

    /// Per-stream cross-entropy and counted tokens over at most `batches` validation batches
    /// (the current weights, no augmentation, no dropout).
    fn valid_cross_entropy(
        &mut self,
        cfg: &TrainConfig,
        batches: usize,
    ) -> Result<(Vec<f64>, usize)>;

    /// Writes a preview of the current weights next to `stem` (`previews/step-N`): returns the
    /// file to listen to.
    fn preview(&mut self, cfg: &TrainConfig, stem: &Path) -> Result<PathBuf>;
}

/// A family's learner and the tensors the optimizer trains (sorted by name; PEFT file names for
/// LoRA).
pub struct Built {
    pub learner: Box<dyn Learner>,
    pub vars: Vec<(String, Var)>,
}
