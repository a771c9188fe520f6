//! A training run, top to bottom: the family builds its model and data (MusicGen: resolve the
//! base model → encode the dataset (cached) → build the trainable LM for the mode; MIDI: load or
//! initialise a Music Transformer → read the event dataset) → loop { batch → forward → loss → backward → clip → AdamW →
//! EMA → log → evaluate → checkpoint } → final checkpoint.
//!
//! A run lives in a folder whose layout and checkpoint format `store::run` owns: `config.json`
//! (the resolved [`TrainConfig`]), `model/`, `metrics.jsonl` (append-only), `checkpoints/`
//! (atomic; `last` carries the optimizer moments and the run state for an exact resume) and
//! `previews/`. What the loop tells its observer is in `train::events`.
//!
//! Determinism: every random draw (order, crops, captions, LoRA dropout) is seeded by the run
//! seed and the position in the run, so resuming from `last` repeats exactly the steps an
//! uninterrupted run would take.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::device::Precision;
use crate::models::Family;
use crate::store::run::{self, weights_of, EMA, OPTIMIZER, WEIGHTS};
use crate::store::run_config::TrainConfig;
use crate::train::events::{Control, Observer, RunSummary, StepMetrics, TrainEvent, ValidMetrics};
use crate::train::learner::{Built, Learner};
use crate::train::midi::MidiLearner;
use crate::train::musicgen::MusicgenLearner;
use crate::train::optim::{all_finite, AdamW, Ema, Grads};
use crate::train::schedule::lr_at;
use crate::util::append_line;

/// Progress of a run, saved in `last` so a resume continues exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunState {
    step: usize,
    position: u64,
    optimizer_steps: u64,
    best_valid_ce: Option<f64>,
    bad_in_row: usize,
    /// f16's dynamic loss scale (1 in f32 and bf16) and the good steps since it last changed.
    #[serde(default = "one")]
    loss_scale: f64,
    #[serde(default)]
    good_in_row: u64,
}

fn one() -> f64 {
    1.0
}

pub struct Trainer {
    pub cfg: TrainConfig,
    pub run_dir: PathBuf,
    /// The family's model, data and batches.
    learner: Box<dyn Learner>,
    vars: Vec<(String, Var)>,
    opt: AdamW,
    ema: Option<Ema>,
    state: RunState,
    /// The device it runs on (`cpu`, `cuda:0`), for the log.
    device: String,
}

impl Trainer {
    /// Prepares a new run in `run_dir` (which must not hold a run yet).
    pub fn create(
        mut cfg: TrainConfig,
        run_dir: &Path,
        device: &Device,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Self> {
        cfg.validate()?;
        cfg.device = crate::models::device::describe(device).to_string();
        if run::config_path(run_dir).exists() {
            return Err(Error::InvalidRequest(format!(
                "{} already holds a run: resume it or choose another folder",
                run_dir.display()
            )));
        }
        let trainer = Self::build(cfg, run_dir, device, progress, None)?;
        run::write_config(run_dir, &trainer.cfg)?;
        Ok(trainer)
    }

    /// Opens the run in `run_dir` at its `last` checkpoint.
    pub fn resume(run_dir: &Path, device: &Device, progress: &mut dyn FnMut(&str)) -> Result<Self> {
        let cfg = run::read_config(run_dir)?;
        let last = run::checkpoint_path(run_dir, "last");
        if !last.is_file() {
            return Err(Error::MissingFile {
                path: last,
                what: "checkpoint to resume from (the run stopped before its first save)".into(),
            });
        }
        Self::build(cfg, run_dir, device, progress, Some(&last))
    }

    fn build(
        cfg: TrainConfig,
        run_dir: &Path,
        device: &Device,
        progress: &mut dyn FnMut(&str),
        resume_from: Option<&Path>,
    ) -> Result<Self> {
        if device.is_metal() {
            return Err(Error::InvalidRequest(
                "training on Metal is not supported: candle's Metal backend has open defects in \
                 convolution weight gradients (candle PR #3839); train on the CPU or a CUDA GPU"
                    .into(),
            ));
        }
        let saved = resume_from.map(run::load_checkpoint).transpose()?;
        let saved_w = saved
            .as_ref()
            .map(|(t, _)| weights_of(t, WEIGHTS))
            .unwrap_or_default();
        let Built { learner, vars } = match cfg.family {
            Family::Musicgen => MusicgenLearner::build(&cfg, run_dir, device, progress, &saved_w)?,
            Family::Midi => MidiLearner::build(&cfg, run_dir, device, progress, &saved_w)?,
        };
        if vars.is_empty() {
            return Err(Error::InvalidRequest(
                "this mode and configuration train no weight".into(),
            ));
        }

        let params = candle_nn::ParamsAdamW {
            lr: cfg.peak_lr(),
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
        };
        let mut opt = AdamW::new(vars.clone(), params)?;
        let mut ema = match &cfg.ema {
            Some(e) => Some(Ema::new(e.decay, &vars)?),
            None => None,
        };
        let mut state = RunState {
            step: 0,
            position: 0,
            optimizer_steps: 0,
            best_valid_ce: None,
            bad_in_row: 0,
            loss_scale: match cfg.precision {
                Precision::F16 => cfg.loss_scale.init,
                _ => 1.0,
            },
            good_in_row: 0,
        };
        if let (Some(path), Some((saved, meta))) = (resume_from, saved.as_ref()) {
            progress("restoring the checkpoint");
            let st = meta.get("run_state").ok_or_else(|| {
                Error::bad_file(path, "no run state: not a `last` checkpoint of a run")
            })?;
            state = serde_json::from_str(st)
                .map_err(|e| Error::bad_file(path, format!("bad run state: {e}")))?;
            for (name, var) in &vars {
                let w = saved_w.get(name).ok_or_else(|| {
                    Error::bad_file(path, format!("checkpoint lacks weight {name}"))
                })?;
                var.set(w)?;
            }
            opt.load_state(&weights_of(saved, OPTIMIZER), state.optimizer_steps)?;
            if let Some(e) = ema.as_mut() {
                e.weights = weights_of(saved, EMA);
                if e.weights.len() != vars.len() {
                    return Err(Error::bad_file(path, "checkpoint lacks the EMA weights"));
                }
            }
        }
        Ok(Self {
            cfg,
            run_dir: run_dir.to_path_buf(),
            learner,
            vars,
            opt,
            ema,
            state,
            device: crate::models::device::describe(device).id,
        })
    }

    pub fn step(&self) -> usize {
        self.state.step
    }

    /// The trained tensors by name (HF names; PEFT file names for LoRA).
    pub fn trainable(&self) -> impl Iterator<Item = (&String, &Var)> {
        self.vars.iter().map(|(n, v)| (n, v))
    }

    pub fn trainable_parameters(&self) -> usize {
        self.vars
            .iter()
            .map(|(_, v)| v.as_tensor().elem_count())
            .sum()
    }

    pub fn metrics_path(&self) -> PathBuf {
        run::metrics_path(&self.run_dir)
    }

    fn log(&self, kind: &str, value: impl Serialize) -> Result<()> {
        let mut v =
            serde_json::to_value(value).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        if let Some(o) = v.as_object_mut() {
            o.insert("kind".into(), kind.into());
        }
        append_line(&self.metrics_path(), &v.to_string())
    }

    /// The whole run (or what remains of it), top to bottom.
    pub fn run(&mut self, observer: &mut dyn Observer) -> Result<RunSummary> {
        crate::memory::tune();
        let total = self.cfg.steps;
        self.log(
            "start",
            serde_json::json!({"step": self.state.step, "total": total,
                "trainable_parameters": self.trainable_parameters(),
                "device": self.device, "precision": self.cfg.precision}),
        )?;
        observer.event(&TrainEvent::Started {
            step: self.state.step,
            total,
            trainable_parameters: self.trainable_parameters(),
        });
        while self.state.step < total {
            let trained = match self.train_step()? {
                Ok(m) => {
                    if self.state.step.is_multiple_of(self.cfg.log_every.max(1))
                        || self.state.step == total
                    {
                        self.log("train", &m)?;
                    }
                    observer.event(&TrainEvent::Step(m));
                    true
                }
                Err(reason) => {
                    self.log(
                        "skip",
                        serde_json::json!({"step": self.state.step, "reason": reason}),
                    )?;
                    observer.event(&TrainEvent::Skipped {
                        step: self.state.step,
                        reason: reason.clone(),
                    });
                    if self.state.bad_in_row >= self.cfg.max_bad_steps {
                        return Err(Error::InvalidRequest(format!(
                            "training diverged: {} non-finite steps in a row (last at step {}: {reason}); \
                             lower the learning rate and resume from the last checkpoint",
                            self.state.bad_in_row, self.state.step
                        )));
                    }
                    false
                }
            };
            // A skipped step changed no weight: the periodic work waits for a trained one, but the
            // last step of the run always finishes it (final validation and `last`).
            if trained || self.state.step == total {
                self.after_step(observer)?;
            }
            // Pause and Stop are honoured after every step, skipped ones too.
            if observer.control() == Control::Stop {
                let step = self.state.step;
                let p = self.save("last", true)?;
                observer.event(&TrainEvent::Checkpoint { step, path: p });
                self.log("stop", serde_json::json!({"step": step}))?;
                return Ok(self.summary(false));
            }
        }
        self.log("end", serde_json::json!({"step": self.state.step}))?;
        Ok(self.summary(true))
    }

    /// What follows a step on schedule: validation (and `best`), kept checkpoints with their
    /// previews, and `last`.
    fn after_step(&mut self, observer: &mut dyn Observer) -> Result<()> {
        let (step, total) = (self.state.step, self.cfg.steps);
        let eval_now = self.cfg.eval_every > 0
            && (step.is_multiple_of(self.cfg.eval_every) || step == total)
            && self.learner.has_valid();
        if eval_now {
            let v = self.evaluate()?;
            self.log("valid", &v)?;
            observer.event(&TrainEvent::Valid(v.clone()));
            if self.state.best_valid_ce.is_none_or(|b| v.ce < b) {
                self.state.best_valid_ce = Some(v.ce);
                let p = self.save("best", false)?;
                observer.event(&TrainEvent::Checkpoint { step, path: p });
            }
        }
        if self.cfg.checkpoint_every > 0 && step.is_multiple_of(self.cfg.checkpoint_every) {
            let p = self.save(&format!("step-{step:06}"), false)?;
            observer.event(&TrainEvent::Checkpoint { step, path: p });
            if self.cfg.preview_prompt.is_some() {
                let p = self.preview()?;
                observer.event(&TrainEvent::Preview { step, path: p });
            }
        }
        if step.is_multiple_of(self.cfg.save_every.max(1)) || step == total {
            let p = self.save("last", true)?;
            observer.event(&TrainEvent::Checkpoint { step, path: p });
        }
        Ok(())
    }

    fn summary(&self, finished: bool) -> RunSummary {
        RunSummary {
            run_dir: self.run_dir.clone(),
            step: self.state.step,
            finished,
            best_valid_ce: self.state.best_valid_ce,
        }
    }

    /// One optimizer update over `grad_accum` micro-batches. `Ok(Err(reason))` = skipped.
    pub fn train_step(&mut self) -> Result<std::result::Result<StepMetrics, String>> {
        let started = Instant::now();
        let cfg = self.cfg.clone();
        let step = self.state.step;
        let lr = lr_at(
            step,
            cfg.steps,
            cfg.warmup_steps,
            cfg.peak_lr(),
            cfg.min_lr_ratio,
        );
        self.opt.set_lr(lr);
        let k = self.learner.streams();
        let mut ce_sum = vec![0f64; k];
        let mut tok_sum = vec![0usize; k];
        let mut loss_sum = 0f64;
        let mut total_tokens = 0;
        let mut grads = Grads::default();
        let mut finite = true;
        let loss_scale = self.state.loss_scale;
        for micro in 0..cfg.grad_accum {
            // Dropout masks (LoRA, model) drawn from the run seed and the micro-batch index.
            let mut r =
                crate::train::data::rng_for(cfg.seed, 4, (step * cfg.grad_accum + micro) as u64);
            self.learner
                .set_dropout_seed(Some(rand::Rng::random::<u64>(&mut r)));
            // The loss scale (f16) multiplies the backward pass only; the loss reported is not.
            let scale = loss_scale / cfg.grad_accum as f64;
            let out = self.learner.micro_batch(
                &cfg,
                self.state.position,
                &self.vars,
                scale,
                &mut grads,
            )?;
            self.state.position += cfg.batch_size as u64;
            finite &= out.loss.is_finite();
            loss_sum += out.loss;
            for q in 0..k.min(out.ce.len()) {
                ce_sum[q] += out.ce[q] * out.tokens[q] as f64;
                tok_sum[q] += out.tokens[q];
            }
            total_tokens += out.total_tokens;
        }
        self.learner.set_dropout_seed(None);
        let loss = loss_sum / cfg.grad_accum as f64;
        self.state.step += 1;
        if !finite || !loss.is_finite() || grads.is_empty() {
            self.state.bad_in_row += 1;
            return Ok(Err(format!("non-finite loss ({loss})")));
        }
        let grad_norm =
            self.opt
                .clipped_step_unscaled(&grads, cfg.clip_grad_norm, 1.0 / loss_scale)?;
        if !grad_norm.is_finite() {
            self.state.good_in_row = 0;
            if cfg.precision == Precision::F16 && loss_scale > 1.0 {
                // An overflow of f16 gradients: back the scale off (not a divergence).
                self.state.loss_scale = (loss_scale / 2.0).max(1.0);
                return Ok(Err(format!(
                    "f16 gradients overflowed at loss scale {loss_scale}: scale backed off to {}",
                    self.state.loss_scale
                )));
            }
            self.state.bad_in_row += 1;
            return Ok(Err(format!("non-finite gradient norm ({grad_norm})")));
        }
        self.state.good_in_row += 1;
        if cfg.precision == Precision::F16
            && self
                .state
                .good_in_row
                .is_multiple_of(cfg.loss_scale.growth_interval)
        {
            self.state.loss_scale = loss_scale * 2.0;
        }
        self.state.optimizer_steps = self.opt.t;
        self.state.bad_in_row = 0;
        if let (Some(ema), Some(e)) = (self.ema.as_mut(), cfg.ema.as_ref()) {
            if self.state.step.is_multiple_of(e.every) {
                ema.update(&self.vars)?;
            }
        }
        let ce_q: Vec<f64> = (0..k)
            .map(|q| ce_sum[q] / tok_sum[q].max(1) as f64)
            .collect();
        let seconds = started.elapsed().as_secs_f64();
        Ok(Ok(StepMetrics {
            step: self.state.step,
            ce: loss,
            ppl: loss.exp(),
            ppl_q: ce_q.iter().map(|c| c.exp()).collect(),
            ce_q,
            lr,
            grad_norm,
            tokens_per_s: total_tokens as f64 / seconds.max(1e-9),
            seconds,
        }))
    }

    /// Cross-entropy on the valid split (EMA weights when EMA is on), token-weighted.
    pub fn evaluate(&mut self) -> Result<ValidMetrics> {
        let limit = if self.cfg.eval_batches == 0 {
            usize::MAX
        } else {
            self.cfg.eval_batches
        };
        let swapped = self.swap_in_ema()?;
        let result = self.learner.valid_cross_entropy(&self.cfg, limit);
        self.restore_weights(swapped)?;
        let (ce_q, tokens) = result?;
        let ce = ce_q.iter().sum::<f64>() / ce_q.len().max(1) as f64;
        Ok(ValidMetrics {
            step: self.state.step,
            ce,
            ppl: ce.exp(),
            ppl_q: ce_q.iter().map(|c| c.exp()).collect(),
            ce_q,
            tokens,
        })
    }

    /// Puts back the live weights saved by [`Self::swap_in_ema`].
    fn restore_weights(&self, saved: Option<HashMap<String, Tensor>>) -> Result<()> {
        for (name, var) in &self.vars {
            if let Some(w) = saved.as_ref().and_then(|s| s.get(name)) {
                var.set(w)?;
            }
        }
        Ok(())
    }

    /// Puts the EMA weights in the model; returns the live weights to put back.
    fn swap_in_ema(&mut self) -> Result<Option<HashMap<String, Tensor>>> {
        let Some(ema) = &self.ema else {
            return Ok(None);
        };
        let mut saved = HashMap::new();
        for (name, var) in &self.vars {
            if let Some(e) = ema.weights.get(name) {
                saved.insert(name.clone(), var.as_tensor().detach().copy()?);
                var.set(e)?;
            }
        }
        Ok(Some(saved))
    }

    /// Writes `checkpoints/<name>.safetensors`: weights, EMA and, with `full`, the optimizer
    /// moments and run state (`store::run`'s format). Refuses non-finite weights.
    fn save(&mut self, name: &str, full: bool) -> Result<PathBuf> {
        let path = run::checkpoint_path(&self.run_dir, name);
        let mut tensors = HashMap::new();
        for (n, v) in &self.vars {
            tensors.insert(format!("{WEIGHTS}{n}"), v.as_tensor().detach());
        }
        if !all_finite(tensors.values())? {
            return Err(Error::InvalidRequest(format!(
                "not writing {}: the weights hold non-finite values",
                path.display()
            )));
        }
        if let Some(e) = &self.ema {
            for (n, t) in &e.weights {
                tensors.insert(format!("{EMA}{n}"), t.clone());
            }
        }
        let mut run_state = None;
        if full {
            for (n, t) in self.opt.state() {
                tensors.insert(format!("{OPTIMIZER}{n}"), t);
            }
            run_state = Some(
                serde_json::to_string(&self.state)
                    .map_err(|e| Error::InvalidRequest(e.to_string()))?,
            );
        }
        run::save_checkpoint(&path, &tensors, self.cfg.mode, self.state.step, run_state)?;
        self.log(
            "checkpoint",
            serde_json::json!({"step": self.state.step, "name": name}),
        )?;
        Ok(path)
    }

    /// A preview of the current (EMA) weights in `previews/step-N.*`.
    fn preview(&mut self) -> Result<PathBuf> {
        let stem = run::preview_stem(&self.run_dir, self.state.step);
        let swapped = self.swap_in_ema()?;
        let made = self.learner.preview(&self.cfg, &stem);
        self.restore_weights(swapped)?;
        made
    }
}
