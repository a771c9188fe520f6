//! What a training run tells its observer, in order (the engine streams it to the studio, the
//! CLI prints it), and how the observer answers between steps (go on, pause by blocking, stop).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One optimizer step's numbers (a `metrics.jsonl` line of kind `train`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    pub step: usize,
    pub ce: f64,
    pub ppl: f64,
    pub ce_q: Vec<f64>,
    pub ppl_q: Vec<f64>,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    pub seconds: f64,
}

/// A validation pass (kind `valid`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidMetrics {
    pub step: usize,
    pub ce: f64,
    pub ppl: f64,
    pub ce_q: Vec<f64>,
    pub ppl_q: Vec<f64>,
    pub tokens: usize,
}

/// What happens during a run, in order (also what the engine streams to the UI).
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    Started {
        step: usize,
        total: usize,
        trainable_parameters: usize,
    },
    Step(StepMetrics),
    Skipped {
        step: usize,
        reason: String,
    },
    Valid(ValidMetrics),
    Checkpoint {
        step: usize,
        path: PathBuf,
    },
    Preview {
        step: usize,
        path: PathBuf,
    },
}

/// What the observer wants after each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Save `last` and return (the run can be resumed).
    Stop,
}

/// Watches a run: receives events and decides, between steps, whether to go on. Pausing is the
/// observer blocking in `control` until it is told to resume.
pub trait Observer {
    fn event(&mut self, event: &TrainEvent);
    fn control(&mut self) -> Control {
        Control::Continue
    }
}

impl<F: FnMut(&TrainEvent)> Observer for F {
    fn event(&mut self, event: &TrainEvent) {
        self(event)
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub step: usize,
    pub finished: bool,
    pub best_valid_ce: Option<f64>,
}
