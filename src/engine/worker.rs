//! The engine thread. Jobs run one at a time; a shared flag cancels the running one between
//! steps; dropping the handle stops and joins the thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use candle_core::Device;

use super::protocol::{Command, Event, JobId, JobOutput, ModelInfo};
use crate::error::{Error, Result};
use crate::generate::{self, GenerateParams};
use crate::models::hub;
use crate::models::musicgen::config::MusicgenConfig;
use crate::models::musicgen::MusicGen;

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

struct Worker {
    model: Option<MusicGen>,
    events: Sender<Event>,
    wake: Waker,
    cancel: Arc<AtomicBool>,
    device: Device,
}

impl Worker {
    fn run(&mut self, rx: Receiver<Command>) {
        while let Ok(cmd) = rx.recv() {
            match cmd {
                Command::Shutdown => break,
                Command::LoadModel { job, spec, weights } => {
                    let r = self.load(job, &spec, weights);
                    self.done(job, r.map(JobOutput::ModelLoaded));
                }
                Command::LoadRandom { job, preset, seed } => {
                    let r = MusicGen::random(MusicgenConfig::preset(preset), seed, &self.device)
                        .map(|(m, _)| {
                            let info = model_info(&m);
                            self.model = Some(m);
                            info
                        });
                    self.done(job, r.map(JobOutput::ModelLoaded));
                }
                Command::Generate { job, params } => {
                    let r = self.generate(job, &params);
                    self.done(job, r.map(JobOutput::Clip));
                }
            }
        }
    }

    fn emit(&self, e: Event) {
        if self.events.send(e).is_ok() {
            (self.wake)();
        }
    }

    fn done(&self, job: JobId, r: Result<JobOutput>) {
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
    ) -> Result<ModelInfo> {
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
        let m = MusicGen::load(&dir, &self.device, weights)?;
        let info = model_info(&m);
        self.model = Some(m);
        Ok(info)
    }

    fn generate(&mut self, job: JobId, params: &GenerateParams) -> Result<generate::Clip> {
        let Some(model) = self.model.as_mut() else {
            return Err(Error::InvalidRequest("no model is loaded".into()));
        };
        let events = self.events.clone();
        let wake = self.wake.clone();
        let cancel = self.cancel.clone();
        generate::generate(model, params, &mut |p| {
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
        })
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
        source: m.source.clone(),
        description: m.describe(),
        sample_rate: m.sample_rate(),
        codebooks: d.num_codebooks,
        parameters,
    }
}
