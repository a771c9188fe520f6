//! The engine thread. Jobs run one at a time; a shared flag cancels the running one between
//! steps; dropping the handle stops and joins the thread.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use candle_core::Device;

use super::protocol::{Command, Event, JobId, JobOutput, ModelInfo};
use crate::error::{Error, Result};
use crate::eval::listen::prepare::SessionPlan;
use crate::eval::report::{evaluate_spec, EvalOptions, EvalReport, LATENT_CAVEAT};
use crate::generate::midi::{MidiGenerateParams, Piece};
use crate::generate::{self, GenerateParams};
use crate::models::hub;
use crate::models::music_transformer::{is_model_dir, MusicTransformer};
use crate::models::musicgen::config::MusicgenConfig;
use crate::models::musicgen::MusicGen;
use crate::models::nn::WeightMode;
use crate::train::config::{Family, TrainConfig};
use crate::train::export;
use crate::train::trainer::{Control, Observer, RunSummary, TrainEvent, Trainer};

/// Called after every event is sent (the studio passes `ctx.request_repaint`).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// The UI's side of the engine.
pub struct EngineHandle {
    commands: Sender<Command>,
    cancel: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EngineHandle {
    /// Starts the worker; events go to `events`, each followed by a call to `wake`.
    pub fn spawn(events: Sender<Event>, wake: Waker) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let thread = std::thread::Builder::new()
            .name("tunelab-engine".into())
            .spawn(move || {
                let mut w = Worker {
                    queue: VecDeque::new(),
                    model: None,
                    events,
                    wake,
                    cancel: flag,
                    device: Device::Cpu,
                };
                w.run(rx)
            })?;
        Ok(Self {
            commands: tx,
            cancel,
            thread: Some(thread),
        })
    }

    /// Queues a command. Returns false if the engine has stopped.
    pub fn send(&self, cmd: Command) -> bool {
        if !matches!(cmd, Command::Shutdown) {
            self.cancel.store(false, Ordering::SeqCst);
        }
        self.commands.send(cmd).is_ok()
    }

    /// Asks the running job to stop at its next step.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
        let _ = self.commands.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The loaded model, of either family.
enum Loaded {
    Musicgen(Box<MusicGen>),
    Midi(Box<MusicTransformer>),
}

struct Worker {
    /// Commands received while a training ran, to run next.
    queue: VecDeque<Command>,
    model: Option<Loaded>,
    events: Sender<Event>,
    wake: Waker,
    cancel: Arc<AtomicBool>,
    device: Device,
}

impl Worker {
    fn run(&mut self, rx: Receiver<Command>) {
        crate::memory::tune();
        while let Some(cmd) = self.next(&rx) {
            match cmd {
                Command::Shutdown => break,
                Command::LoadModel {
                    job,
                    spec,
                    weights,
                    adapter,
                    checkpoint,
                } => {
                    let r = self.load(job, &spec, weights, adapter.as_deref(), checkpoint);
                    self.done(job, r.map(JobOutput::ModelLoaded));
                }
                Command::LoadRandom { job, preset, seed } => {
                    let r = MusicGen::random(MusicgenConfig::preset(preset), seed, &self.device)
                        .map(|(m, _)| {
                            let info = model_info(&m);
                            self.model = Some(Loaded::Musicgen(Box::new(m)));
                            info
                        });
                    self.done(job, r.map(JobOutput::ModelLoaded));
                }
                Command::Generate { job, params } => {
                    let r = self.generate(job, &params);
                    self.done(job, r.map(JobOutput::Clip));
                }
                Command::GenerateMidi {
                    job,
                    params,
                    out,
                    soundfont,
                } => {
                    let r = self.generate_midi(job, &params, &out, soundfont.as_deref());
                    self.done(job, r.map(JobOutput::Piece));
                }
                Command::Train {
                    job,
                    run_dir,
                    config,
                } => {
                    let mut pending = VecDeque::new();
                    let r = self.train(job, &run_dir, config.map(|c| *c), &rx, &mut pending);
                    self.done(job, r.map(JobOutput::Trained));
                    // Commands that arrived during the run, in order.
                    while let Some(cmd) = pending.pop_front() {
                        if matches!(cmd, Command::Shutdown) {
                            return;
                        }
                        self.queue.push_back(cmd);
                    }
                }
                Command::ImportDataset {
                    job,
                    src,
                    out,
                    options,
                } => {
                    let r = crate::data::dataset::import_dir(&src, &out, &options);
                    self.done(job, r.map(JobOutput::Imported));
                }
                Command::Evaluate {
                    job,
                    models,
                    dataset,
                    options,
                    save,
                } => {
                    let r = self.evaluate(job, &models, &dataset, &options);
                    let r = match (r, save) {
                        (Ok(report), Some(path)) => report.save(&path).map(|()| report),
                        (r, _) => r,
                    };
                    self.done(job, r.map(|r| JobOutput::Evaluated(Box::new(r))));
                }
                Command::PrepareSession {
                    job,
                    dir,
                    model_a,
                    model_b,
                    plan,
                    prime_seconds,
                } => {
                    let r =
                        self.prepare_session(job, &dir, &model_a, &model_b, &plan, prime_seconds);
                    self.done(job, r.map(JobOutput::SessionReady));
                }
                // Only meaningful while a training runs (handled by its observer).
                Command::PauseTraining | Command::ResumeTraining | Command::StopTraining => {}
            }
        }
    }

    fn next(&mut self, rx: &Receiver<Command>) -> Option<Command> {
        match self.queue.pop_front() {
            Some(c) => Some(c),
            None => rx.recv().ok(),
        }
    }

    fn evaluate(
        &mut self,
        job: JobId,
        models: &[String],
        dataset: &Path,
        options: &EvalOptions,
    ) -> Result<EvalReport> {
        let mut out = Vec::new();
        for spec in models {
            let events = self.events.clone();
            let wake = self.wake.clone();
            let r = evaluate_spec(spec, None, dataset, options, &self.device, &mut |s| {
                let message = format!("{spec}: {s}");
                if events.send(Event::Progress { job, message }).is_ok() {
                    wake();
                }
            })?;
            out.push(r);
            if self.cancel.load(Ordering::SeqCst) {
                return Err(Error::Cancelled);
            }
        }
        Ok(EvalReport {
            dataset: dataset.display().to_string(),
            split: options.split,
            options: options.clone(),
            models: out,
            caveat: LATENT_CAVEAT.into(),
        })
    }

    fn train(
        &mut self,
        job: JobId,
        run_dir: &Path,
        config: Option<TrainConfig>,
        rx: &Receiver<Command>,
        pending: &mut VecDeque<Command>,
    ) -> Result<RunSummary> {
        let mut say = |_: &str| {};
        let mut trainer = match config {
            Some(cfg) => Trainer::create(cfg, run_dir, &self.device, &mut say)?,
            None => Trainer::resume(run_dir, &self.device, &mut say)?,
        };
        let mut obs = EngineObserver {
            job,
            events: &self.events,
            wake: &self.wake,
            cancel: &self.cancel,
            rx,
            pending,
            batch: Vec::new(),
            last_flush: Instant::now(),
            paused: false,
        };
        let r = trainer.run(&mut obs);
        obs.flush();
        r
    }

    fn emit(&self, e: Event) {
        if self.events.send(e).is_ok() {
            (self.wake)();
        }
    }

    fn done(&self, job: JobId, r: Result<JobOutput>) {
        // A finished job's transient tensors go back to the system, not just to the heap.
        crate::memory::release();
        self.emit(Event::Done {
            job,
            result: r.map_err(|e| e.to_string()),
        });
    }

    fn load(
        &mut self,
        job: JobId,
        spec: &str,
        weights: crate::models::nn::WeightMode,
        adapter: Option<&Path>,
        checkpoint: Option<String>,
    ) -> Result<ModelInfo> {
        let local = Path::new(spec);
        if checkpoint.is_some() && !export::is_run_dir(local) {
            return Err(Error::InvalidRequest(format!(
                "{spec} is not a training run: only a run has checkpoints to choose from"
            )));
        }
        if is_model_dir(local) || crate::train::midi::is_midi_run(local) {
            if adapter.is_some() {
                return Err(Error::InvalidRequest(
                    "a Music Transformer takes no separate adapter: load its LoRA run instead"
                        .into(),
                ));
            }
            self.model = None;
            let m = match &checkpoint {
                Some(c) => crate::train::midi::load_run_checkpoint(local, c, &self.device)?,
                None => crate::train::midi::load_model(spec, &self.device)?,
            };
            let cfg = m.config().clone();
            let parameters = m.tensors().values().map(|t| t.elem_count()).sum();
            let info = ModelInfo {
                family: Family::Midi,
                source: Some(local.to_path_buf()),
                description: format!(
                    "Music Transformer · {} layers × {} · window {} events",
                    cfg.num_hidden_layers, cfg.hidden_size, cfg.max_position_embeddings
                ),
                sample_rate: crate::generate::midi::RENDER_RATE,
                codebooks: 1,
                parameters,
            };
            self.model = Some(Loaded::Midi(Box::new(m)));
            return Ok(info);
        }
        let events = self.events.clone();
        let wake = self.wake.clone();
        let dir = hub::resolve_model(spec, &mut |p| {
            if events
                .send(Event::Download {
                    job,
                    file: p.file.clone(),
                    done: p.done,
                    total: p.total,
                })
                .is_ok()
            {
                wake();
            }
        })?;
        if self.cancel.load(Ordering::SeqCst) {
            return Err(Error::Cancelled);
        }
        self.model = None; // free the old one before loading the new
        let mut m = if export::is_run_dir(&dir) {
            export::load_run_model(&dir, checkpoint.as_deref(), &self.device, WeightMode::F32)?
        } else {
            MusicGen::load(&dir, &self.device, WeightMode::F32)?
        };
        if let Some(a) = adapter {
            export::apply_adapter(&mut m, a)?;
        }
        m.set_weight_mode(weights)?;
        let info = model_info(&m);
        self.model = Some(Loaded::Musicgen(Box::new(m)));
        Ok(info)
    }

    fn prepare_session(
        &mut self,
        job: JobId,
        dir: &Path,
        model_a: &str,
        model_b: &str,
        plan: &SessionPlan,
        prime_seconds: f64,
    ) -> Result<std::path::PathBuf> {
        use crate::eval::listen::prepare::{contender, prepare_session};
        let id = format!(
            "{}-{}",
            dir.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        );
        let a = contender("A", model_a, prime_seconds, None)?;
        let b = contender("B", model_b, prime_seconds, None)?;
        let events = self.events.clone();
        let wake = self.wake.clone();
        prepare_session(dir, &id, plan, a, b, &mut |s| {
            if events
                .send(Event::Progress {
                    job,
                    message: s.to_string(),
                })
                .is_ok()
            {
                wake();
            }
        })
    }

    fn generate_midi(
        &mut self,
        job: JobId,
        params: &MidiGenerateParams,
        out: &Path,
        soundfont: Option<&Path>,
    ) -> Result<Piece> {
        let Some(Loaded::Midi(model)) = self.model.as_ref() else {
            return Err(Error::InvalidRequest(
                "the loaded model is not a Music Transformer".into(),
            ));
        };
        let mut report = self.step_reporter(job);
        let tokens = crate::generate::midi::generate_events(model, params, &mut report)?;
        crate::generate::midi::write_piece(&tokens, out, params.program, soundfont)
    }

    fn generate(&mut self, job: JobId, params: &GenerateParams) -> Result<generate::Clip> {
        let mut report = self.step_reporter(job);
        let model = match self.model.as_mut() {
            Some(Loaded::Musicgen(m)) => m,
            Some(Loaded::Midi(_)) => {
                return Err(Error::InvalidRequest(
                    "the loaded model is a Music Transformer: generate a MIDI piece".into(),
                ))
            }
            None => return Err(Error::InvalidRequest("no model is loaded".into())),
        };
        generate::generate(model, params, &mut report)
    }

    /// Sends a `GenerateStep` per decoder step; `false` (stop) once the job is cancelled.
    fn step_reporter(&self, job: JobId) -> impl FnMut(generate::StepProgress) -> bool {
        let events = self.events.clone();
        let wake = self.wake.clone();
        let cancel = self.cancel.clone();
        move |p| {
            if events
                .send(Event::GenerateStep {
                    job,
                    step: p.step,
                    total: p.total,
                })
                .is_ok()
            {
                wake();
            }
            !cancel.load(Ordering::SeqCst)
        }
    }
}

/// Streams a run's events to the UI (batched, ≤ 10 messages a second) and applies
/// pause / resume / stop commands between steps. Other commands wait for the run to end.
struct EngineObserver<'a> {
    job: JobId,
    events: &'a Sender<Event>,
    wake: &'a Waker,
    cancel: &'a AtomicBool,
    rx: &'a Receiver<Command>,
    pending: &'a mut VecDeque<Command>,
    batch: Vec<TrainEvent>,
    last_flush: Instant,
    paused: bool,
}

const FLUSH_EVERY: Duration = Duration::from_millis(100);

impl EngineObserver<'_> {
    fn flush(&mut self) {
        let events = std::mem::take(&mut self.batch);
        let msg = Event::Train {
            job: self.job,
            events,
            paused: self.paused,
        };
        if self.events.send(msg).is_ok() {
            (self.wake)();
        }
        self.last_flush = Instant::now();
    }

    /// Applies one command; `Some(Stop)` ends the run.
    fn apply(&mut self, cmd: Command) -> Option<Control> {
        match cmd {
            Command::PauseTraining => {
                self.paused = true;
                self.flush();
            }
            Command::ResumeTraining => {
                self.paused = false;
                self.flush();
            }
            Command::StopTraining => return Some(Control::Stop),
            Command::Shutdown => {
                self.pending.push_back(Command::Shutdown);
                return Some(Control::Stop);
            }
            other => self.pending.push_back(other),
        }
        None
    }
}

impl Observer for EngineObserver<'_> {
    fn event(&mut self, e: &TrainEvent) {
        let is_step = matches!(e, TrainEvent::Step(_));
        self.batch.push(e.clone());
        if !is_step || self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush();
        }
    }

    fn control(&mut self) -> Control {
        loop {
            if self.cancel.load(Ordering::SeqCst) {
                return Control::Stop;
            }
            let cmd = if self.paused {
                match self.rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(c) => Some(c),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return Control::Stop,
                }
            } else {
                self.rx.try_recv().ok()
            };
            match cmd {
                Some(c) => {
                    if let Some(stop) = self.apply(c) {
                        return stop;
                    }
                }
                None if self.paused => continue,
                None => return Control::Continue,
            }
        }
    }
}

pub fn model_info(m: &MusicGen) -> ModelInfo {
    let d = &m.config.decoder;
    let h = d.hidden_size;
    let per_layer = 8 * h * h + 2 * h * d.ffn_dim + 6 * h;
    let parameters = d.num_hidden_layers * per_layer
        + d.num_codebooks * ((d.vocab_size + 1) * h + d.vocab_size * h)
        + m.text.hidden_size() * h
        + h;
    ModelInfo {
        family: Family::Musicgen,
        source: m.source.clone(),
        description: m.describe(),
        sample_rate: m.sample_rate(),
        codebooks: d.num_codebooks,
        parameters,
    }
}
