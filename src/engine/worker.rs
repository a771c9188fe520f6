//! The engine thread. Jobs run one at a time; a job cancelled by its id stops at its next step
//! (or never starts, if it was still queued); dropping the handle stops and joins the thread.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use candle_core::Device;

use super::protocol::{Command, Event, JobId, JobOutput, ModelInfo};
use crate::error::{Error, Result};
use crate::eval::listen::prepare::SessionPlan;
use crate::eval::report::{evaluate_spec, EvalOptions, EvalReport, LATENT_CAVEAT};
use crate::generate::midi::{MidiGenerateParams, Piece};
use crate::generate::{self, GenerateParams};
use crate::models::device::{open_with_precision, set_tf32, DeviceChoice, DeviceInfo, Precision};
use crate::models::musicgen::config::MusicgenConfig;
use crate::models::musicgen::MusicGen;
use crate::models::nn::WeightMode;
use crate::models::Family;
use crate::store::run_config::TrainConfig;
use crate::store::{LoadOptions, LoadedModel, Model, ModelSpec};
use crate::train::events::{Control, Observer, RunSummary, TrainEvent};
use crate::train::trainer::Trainer;

/// Called after every event is sent (the studio passes `ctx.request_repaint`).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Which jobs were cancelled, by id; shared by the handle and the worker. Cancelling names the
/// job, so a cancel and a new command sent in the same frame cannot undo each other.
#[derive(Default)]
struct Cancels {
    jobs: Mutex<HashSet<JobId>>,
    /// Everything is cancelled: the handle was dropped.
    all: AtomicBool,
}

impl Cancels {
    fn jobs(&self) -> std::sync::MutexGuard<'_, HashSet<JobId>> {
        // A set of ids stays valid even if a holder panicked.
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cancel(&self, job: JobId) {
        self.jobs().insert(job);
    }

    fn is_cancelled(&self, job: JobId) -> bool {
        self.all.load(Ordering::SeqCst) || self.jobs().contains(&job)
    }

    /// The job is over: its id will not be used again.
    fn forget(&self, job: JobId) {
        self.jobs().remove(&job);
    }
}

/// The UI's side of the engine.
pub struct EngineHandle {
    commands: Sender<Command>,
    cancels: Arc<Cancels>,
    thread: Option<JoinHandle<()>>,
}

impl EngineHandle {
    /// Starts the worker; events go to `events`, each followed by a call to `wake`.
    pub fn spawn(events: Sender<Event>, wake: Waker) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let cancels = Arc::new(Cancels::default());
        let shared = cancels.clone();
        let thread = std::thread::Builder::new()
            .name("tunelab-engine".into())
            .spawn(move || {
                let mut w = Worker {
                    queue: VecDeque::new(),
                    model: None,
                    events,
                    wake,
                    cancels: shared,
                    device: Device::Cpu,
                    device_info: crate::models::device::describe(&Device::Cpu),
                    precision: Precision::F32,
                };
                w.run(rx)
            })?;
        Ok(Self {
            commands: tx,
            cancels,
            thread: Some(thread),
        })
    }

    /// Queues a command. Returns false if the engine has stopped.
    pub fn send(&self, cmd: Command) -> bool {
        self.commands.send(cmd).is_ok()
    }

    /// Asks job `job` to stop at its next step; a job still queued ends as cancelled without
    /// starting. Other jobs are not affected.
    pub fn cancel(&self, job: JobId) {
        self.cancels.cancel(job);
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        self.cancels.all.store(true, Ordering::SeqCst);
        let _ = self.commands.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    /// Commands received while a training ran, to run next.
    queue: VecDeque<Command>,
    model: Option<Model>,
    events: Sender<Event>,
    wake: Waker,
    cancels: Arc<Cancels>,
    /// The one device every job runs on, and the precision models run in there.
    device: Device,
    device_info: DeviceInfo,
    precision: Precision,
}

impl Worker {
    fn run(&mut self, rx: Receiver<Command>) {
        crate::memory::tune();
        while let Some(cmd) = self.next(&rx) {
            if let Some(job) = cmd.job().filter(|&j| self.cancels.is_cancelled(j)) {
                self.done(job, Err(Error::Cancelled));
                continue;
            }
            match cmd {
                Command::Shutdown => break,
                Command::SetDevice {
                    job,
                    device,
                    precision,
                    tf32,
                } => {
                    let r = self.set_device(device, precision, tf32);
                    self.done(job, r);
                }
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
                    let r = self.load_random(preset, seed);
                    self.done(job, r.map(JobOutput::ModelLoaded));
                }
                Command::Generate {
                    job,
                    params,
                    stream,
                } => {
                    let r = self.generate(job, &params, stream);
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
                    let r = crate::data::import::import_dir(&src, &out, &options);
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
            let (d, p) = (&self.device, self.precision);
            let r = evaluate_spec(spec, None, dataset, options, d, p, &mut |s| {
                let message = format!("{spec}: {s}");
                if events.send(Event::Progress { job, message }).is_ok() {
                    wake();
                }
            })?;
            out.push(r);
            if self.cancels.is_cancelled(job) {
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
            cancels: &self.cancels,
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
        self.cancels.forget(job);
        self.emit(Event::Done {
            job,
            result: r.map_err(|e| e.to_string()),
        });
    }

    /// A model of a published layout with random weights, on the engine's device and precision.
    fn load_random(
        &mut self,
        preset: crate::models::musicgen::config::Preset,
        seed: u64,
    ) -> Result<ModelInfo> {
        let (mut m, _) = MusicGen::random(MusicgenConfig::preset(preset), seed, &self.device)?;
        let parameters = m.lm.tensors().values().map(|t| t.elem_count()).sum();
        m.set_weight_mode(WeightMode::F32)?;
        m.set_precision(self.precision)?;
        let loaded = LoadedModel {
            precision: m.precision(),
            model: Model::Musicgen(Box::new(m)),
            parameters,
        };
        let info = self.model_info(&loaded, None);
        self.model = Some(loaded.model);
        Ok(info)
    }

    fn set_device(
        &mut self,
        choice: DeviceChoice,
        precision: Option<Precision>,
        tf32: bool,
    ) -> Result<JobOutput> {
        let (device, info, precision) = open_with_precision(choice, precision)?;
        set_tf32(tf32);
        self.model = None; // a model lives on the device it was loaded on
        self.device = device;
        self.device_info = info.clone();
        self.precision = precision;
        Ok(JobOutput::DeviceReady {
            device: info,
            precision,
        })
    }

    fn load(
        &mut self,
        job: JobId,
        spec: &str,
        weights: WeightMode,
        adapter: Option<&Path>,
        checkpoint: Option<String>,
    ) -> Result<ModelInfo> {
        let model = ModelSpec::resolve(spec)?;
        let adapter = adapter
            .map(|a| ModelSpec::resolve(&a.display().to_string()))
            .transpose()?;
        let events = self.events.clone();
        let wake = self.wake.clone();
        let mut progress = |p: &crate::models::hub::DownloadProgress| {
            let e = Event::Download {
                job,
                file: p.file.clone(),
                done: p.done,
                total: p.total,
            };
            if events.send(e).is_ok() {
                wake();
            }
        };
        // A Hub id is downloaded first, so a cancel during the download keeps the old model.
        let model = match model {
            ModelSpec::Hub(_) => ModelSpec::MusicgenDir(model.musicgen_dir(&mut progress)?),
            other => other,
        };
        if self.cancels.is_cancelled(job) {
            return Err(Error::Cancelled);
        }
        // Free the old model before loading the new.
        self.model = None;
        // 8- and 4-bit weights are a CPU format computing in f32 (the studio asks for q8 by
        // default): on a device set to bf16 or f16 the model loads f32 weights in that
        // precision instead, and its description says so.
        let weights = if self.precision == Precision::F32 {
            weights
        } else {
            WeightMode::F32
        };
        let opts = LoadOptions {
            weights,
            precision: self.precision,
            adapter: adapter.as_ref(),
            checkpoint: checkpoint.as_deref(),
        };
        let loaded = model.load(&self.device, opts, &mut progress)?;
        let info = self.model_info(&loaded, model.local_dir());
        self.model = Some(loaded.model);
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
        let (d, p) = (&self.device, self.precision);
        let a = contender("A", model_a, prime_seconds, None, d, p)?;
        let b = contender("B", model_b, prime_seconds, None, d, p)?;
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
        let Some(Model::Midi(model)) = self.model.as_ref() else {
            return Err(Error::InvalidRequest(
                "the loaded model is not a Music Transformer".into(),
            ));
        };
        let mut report = self.step_reporter(job);
        let tokens = crate::generate::midi::generate_events(model, params, &mut report)?;
        crate::generate::midi::write_piece(&tokens, out, params.program, soundfont)
    }

    fn generate(
        &mut self,
        job: JobId,
        params: &GenerateParams,
        stream: bool,
    ) -> Result<generate::Clip> {
        let mut report = self.step_reporter(job);
        let model = match self.model.as_mut() {
            Some(Model::Musicgen(m)) => m,
            Some(Model::Midi(_)) => {
                return Err(Error::InvalidRequest(
                    "the loaded model is a Music Transformer: generate a MIDI piece".into(),
                ))
            }
            None => return Err(Error::InvalidRequest("no model is loaded".into())),
        };
        if !stream {
            return generate::generate(model, params, &mut report);
        }
        let sample_rate = model.sample_rate();
        let events = self.events.clone();
        let wake = self.wake.clone();
        let mut audio = move |chunk: generate::AudioChunk| {
            let ev = Event::Audio {
                job,
                start: chunk.start,
                samples: chunk.samples.to_vec(),
                sample_rate,
            };
            if events.send(ev).is_ok() {
                wake();
            }
        };
        generate::generate_streaming(model, params, &mut report, &mut audio)
    }

    /// Sends a `GenerateStep` per decoder step; `false` (stop) once the job is cancelled.
    fn step_reporter(&self, job: JobId) -> impl FnMut(generate::StepProgress) -> bool {
        let events = self.events.clone();
        let wake = self.wake.clone();
        let cancels = self.cancels.clone();
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
            !cancels.is_cancelled(job)
        }
    }
}

/// Streams a run's events to the UI (batched, ≤ 10 messages a second) and applies
/// pause / resume / stop commands between steps. Other commands wait for the run to end.
struct EngineObserver<'a> {
    job: JobId,
    events: &'a Sender<Event>,
    wake: &'a Waker,
    cancels: &'a Cancels,
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
            if self.cancels.is_cancelled(self.job) {
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

impl Worker {
    /// What the UI shows of a loaded model; `source` is where it was loaded from.
    fn model_info(&self, loaded: &LoadedModel, source: Option<&Path>) -> ModelInfo {
        match &loaded.model {
            Model::Musicgen(m) => ModelInfo {
                family: Family::Musicgen,
                source: source.map(Path::to_path_buf).or_else(|| m.source.clone()),
                description: m.describe(),
                sample_rate: m.sample_rate(),
                codebooks: m.config.decoder.num_codebooks,
                parameters: loaded.parameters,
                device: self.device_info.id.clone(),
                precision: loaded.precision,
            },
            Model::Midi(m) => {
                let cfg = m.config();
                ModelInfo {
                    family: Family::Midi,
                    source: source.map(Path::to_path_buf),
                    description: format!(
                        "Music Transformer · {} layers × {} · window {} events",
                        cfg.num_hidden_layers, cfg.hidden_size, cfg.max_position_embeddings
                    ),
                    sample_rate: crate::generate::midi::RENDER_RATE,
                    codebooks: 1,
                    parameters: loaded.parameters,
                    device: self.device_info.id.clone(),
                    precision: loaded.precision,
                }
            }
        }
    }
}
