//! The two enums the UI and the engine exchange. Every job ends with exactly one
//! [`Event::Done`]; progress events stream before it.

use std::path::PathBuf;

use crate::data::dataset::{ImportOptions, ImportReport};
use crate::eval::listen::prepare::SessionPlan;
use crate::eval::report::{EvalOptions, EvalReport};
use crate::generate::midi::{MidiGenerateParams, Piece};
use crate::generate::{Clip, GenerateParams};
use crate::models::device::{DeviceChoice, DeviceInfo, Precision};
use crate::models::nn::WeightMode;
use crate::models::Family;
use crate::store::run_config::TrainConfig;
use crate::train::events::{RunSummary, TrainEvent};

/// Identifies a job so its events can be matched to the request.
pub type JobId = u64;

/// Requests to the engine.
#[derive(Debug, Clone)]
pub enum Command {
    /// Move the engine to another device (and precision): every later job runs there. The
    /// loaded model is dropped (load it again on the new device). Ends with
    /// `Done(DeviceReady)`; on failure the engine stays where it was.
    SetDevice {
        job: JobId,
        device: DeviceChoice,
        /// `None`: the device's default (bf16 on CUDA ≥ 8.0, f16 below, f32 on the CPU).
        precision: Option<Precision>,
        /// Let CUDA's f32 matrix products use TF32.
        tf32: bool,
    },
    /// Load a MusicGen from a local directory or a Hugging Face repo id (downloading into the
    /// HF cache with progress events), or a Music Transformer (a model folder or a MIDI run).
    /// Replaces the current model.
    /// `spec` may also be a tunelab training run (its weights on its base model); `adapter`
    /// attaches a LoRA adapter (a PEFT folder or a LoRA run) unmerged.
    LoadModel {
        job: JobId,
        spec: String,
        weights: WeightMode,
        adapter: Option<PathBuf>,
        /// Which checkpoint of a training run `spec` (`best`, `last`, `step-000200`); `None` =
        /// `last`. Refused for anything but a run.
        checkpoint: Option<String>,
    },
    /// Build a model of the given published layout with random weights (benchmarks, demos).
    LoadRandom {
        job: JobId,
        preset: crate::models::musicgen::config::Preset,
        seed: u64,
    },
    /// Generate a clip with the loaded model (MusicGen). With `stream`, its audio is sent as it
    /// becomes final (`Event::Audio`, for playing while generating); without, the clip is
    /// decoded whole at the end, which is faster in all (decoding frame by frame costs more
    /// per frame than one decode of the clip).
    Generate {
        job: JobId,
        params: GenerateParams,
        stream: bool,
    },
    /// Generate a piece with the loaded Music Transformer: writes `out`.mid and, through
    /// `soundfont` (default: the first installed), `out`.wav. Ends with `Done(Piece)`.
    GenerateMidi {
        job: JobId,
        params: MidiGenerateParams,
        out: PathBuf,
        soundfont: Option<PathBuf>,
    },
    /// Start a training run in `run_dir` (a new run with `config`, or, with `config: None`,
    /// resume the run there). Streams [`Event::Train`]; ends with `Done(Trained)`.
    Train {
        job: JobId,
        run_dir: PathBuf,
        config: Option<Box<TrainConfig>>,
    },
    /// Import a folder of audio (or an audiocraft data.jsonl) into the dataset folder `out`.
    ImportDataset {
        job: JobId,
        src: PathBuf,
        out: PathBuf,
        options: ImportOptions,
    },
    /// Objective evaluation of each model (Hub id, folder or run, either family) on a dataset
    /// split; with `save`, the report is also written there as JSON (atomically), e.g. as a
    /// listening session's `metrics.json`.
    Evaluate {
        job: JobId,
        models: Vec<String>,
        dataset: PathBuf,
        options: EvalOptions,
        save: Option<PathBuf>,
    },
    /// Prepare a blind A/B session in `dir` (as `tunelab listen new`): both models render every
    /// prompt with the same seeds, each pair loudness-matched; progress as [`Event::Progress`];
    /// ends with `Done(SessionReady(log))`.
    PrepareSession {
        job: JobId,
        dir: PathBuf,
        model_a: String,
        model_b: String,
        plan: Box<SessionPlan>,
        /// Music Transformers: seconds of each prime file to continue.
        prime_seconds: f64,
    },
    /// Pause the running training between steps (it holds its state in memory).
    PauseTraining,
    /// Continue a paused training.
    ResumeTraining,
    /// Stop the running training after the current step, saving `last` (resumable).
    StopTraining,
    /// Stop the worker thread (also sent when the handle is dropped).
    Shutdown,
}

impl Command {
    /// The job this command starts (`None` for the controls of a running training and
    /// `Shutdown`).
    pub fn job(&self) -> Option<JobId> {
        match self {
            Self::SetDevice { job, .. }
            | Self::LoadModel { job, .. }
            | Self::LoadRandom { job, .. }
            | Self::Generate { job, .. }
            | Self::GenerateMidi { job, .. }
            | Self::Train { job, .. }
            | Self::ImportDataset { job, .. }
            | Self::Evaluate { job, .. }
            | Self::PrepareSession { job, .. } => Some(*job),
            Self::PauseTraining | Self::ResumeTraining | Self::StopTraining | Self::Shutdown => {
                None
            }
        }
    }
}

/// What a finished job produced.
#[derive(Debug, Clone)]
pub enum JobOutput {
    /// The engine's device and precision from now on.
    DeviceReady {
        device: DeviceInfo,
        precision: Precision,
    },
    ModelLoaded(ModelInfo),
    Clip(Clip),
    Piece(Piece),
    Trained(RunSummary),
    Imported(ImportReport),
    Evaluated(Box<EvalReport>),
    /// The session log of a prepared listening session.
    SessionReady(PathBuf),
}

/// A loaded model, as the UI shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub family: Family,
    pub source: Option<PathBuf>,
    pub description: String,
    pub sample_rate: u32,
    pub codebooks: usize,
    /// The language model's parameters, summed over its real tensors (see
    /// `store::LoadedModel::parameters`).
    pub parameters: usize,
    /// Where it runs (`cpu`, `cuda:0`, …) and in which precision.
    pub device: String,
    pub precision: Precision,
}

/// Messages from the engine.
#[derive(Debug, Clone)]
pub enum Event {
    /// Bytes downloaded of one file of a model.
    Download {
        job: JobId,
        file: String,
        done: u64,
        total: u64,
    },
    /// A generation step finished (`step` of `total` decoder steps).
    GenerateStep {
        job: JobId,
        step: usize,
        total: usize,
    },
    /// Audio of a running generation that is final, as soon as it is (EnCodec decodes each
    /// frame once all its codebooks exist; see `generate::generate_streaming`): `samples` are
    /// the clip's samples from `start` on, mono at `sample_rate`. The chunks of a job come in
    /// order, without gaps or overlap, from the end of an audio prompt to the end of the clip;
    /// concatenated they are the audio of its `Done(Clip)` (whose prompt part is not sent).
    Audio {
        job: JobId,
        start: usize,
        samples: Vec<f32>,
        sample_rate: u32,
    },
    /// Training progress, batched so the UI gets at most ~10 messages a second and loses no
    /// step (the first event of a run is `Started`; `paused` tells the current pause state).
    Train {
        job: JobId,
        events: Vec<TrainEvent>,
        paused: bool,
    },
    /// A long job's current stage, for a status line.
    Progress { job: JobId, message: String },
    /// A job ended: its result, or the error text to show.
    Done {
        job: JobId,
        result: Result<JobOutput, String>,
    },
}
