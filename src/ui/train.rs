//! The Train panel: a form for the run (mode and hyper-parameters with audiocraft's defaults and
//! a tooltip per field), Start / Pause / Resume / Stop, and live charts of train and valid
//! cross-entropy (overall or per codebook), learning rate and gradient norm, fed by the engine's
//! batched training events.

use std::path::PathBuf;

use egui_plot::{Legend, Line, Plot, PlotPoints};

use crate::engine::{Command, Event, JobId, JobOutput};
use crate::train::config::{Family, Mode, TrainConfig};
use crate::train::trainer::{StepMetrics, TrainEvent, ValidMetrics};

/// A labelled form field: the label (with its tooltip) names the widget for screen readers.
pub fn field(
    ui: &mut egui::Ui,
    label: &str,
    tip: &str,
    add: impl FnOnce(&mut egui::Ui) -> egui::Response,
) -> egui::Response {
    let l = ui.label(label).on_hover_text(tip);
    add(ui)
        .labelled_by(l.id)
        .accessible_name(label)
        .on_hover_text(tip)
}

/// Commands a panel wants sent, with fresh job ids (applied by the shell at the end of a frame).
#[derive(Debug, Default)]
pub struct Outbox {
    pub commands: Vec<Command>,
    pub next_job: JobId,
    /// Cancel the engine's running job (applied before `commands` are sent).
    pub cancel: bool,
}

impl Outbox {
    pub fn job(&mut self) -> JobId {
        self.next_job += 1;
        self.next_job
    }
}

/// The form (persisted).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TrainForm {
    pub config: TrainConfig,
    pub run_dir: String,
}

impl Default for TrainForm {
    fn default() -> Self {
        // The offline demo: fine-tune the shipped classical model on the folk tunes.
        let mut config = TrainConfig {
            dataset: crate::demo::dataset_dir("folk"),
            model: crate::demo::model_dir().display().to_string(),
            family: Family::Midi,
            mode: Mode::Full,
            steps: 200,
            batch_size: 4,
            lr: Some(3e-4),
            warmup_steps: 10,
            eval_every: 20,
            save_every: 20,
            ..Default::default()
        };
        config.midi.max_events = Some(256);
        Self {
            config,
            run_dir: crate::demo::demo_dir()
                .join("runs")
                .join("folk-finetune")
                .display()
                .to_string(),
        }
    }
}

impl TrainForm {
    /// Sets the dataset and follows its kind: a MIDI dataset trains a Music Transformer, an
    /// audio one MusicGen.
    pub fn set_dataset(&mut self, dataset: PathBuf) {
        if crate::data::midi_dataset::is_midi_dataset(&dataset) {
            self.config.family = Family::Midi;
        } else if dataset.join("segments.jsonl").is_file() {
            self.config.family = Family::Musicgen;
        }
        self.config.dataset = dataset;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Idle,
    Running,
    Paused,
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::Musicgen => "MusicGen",
        Family::Midi => "Music Transformer (MIDI)",
    }
}

/// What the charts show.
#[derive(Debug, Default)]
pub struct Curves {
    pub train_ce: Vec<[f64; 2]>,
    pub train_ce_q: Vec<Vec<[f64; 2]>>,
    pub valid_ce: Vec<[f64; 2]>,
    pub lr: Vec<[f64; 2]>,
    pub grad_norm: Vec<[f64; 2]>,
    pub tokens_per_s: f64,
    pub seconds_per_step: f64,
    pub step: usize,
    pub total: usize,
    pub skipped: usize,
}

pub struct TrainPanel {
    pub form: TrainForm,
    pub state: RunState,
    pub job: Option<JobId>,
    pub curves: Curves,
    pub per_codebook: bool,
    pub log: Vec<String>,
}

impl TrainPanel {
    pub fn new(form: TrainForm) -> Self {
        let mut p = Self {
            form,
            state: RunState::Idle,
            job: None,
            curves: Curves::default(),
            per_codebook: false,
            log: Vec::new(),
        };
        p.load_curves();
        p
    }

    /// Reloads the curves of the run in the form's folder from its `metrics.jsonl` (the last
    /// line for a step wins, as after a resume).
    pub fn load_curves(&mut self) {
        // The form shows that run's own configuration, as it was resolved.
        let cfg_path = PathBuf::from(&self.form.run_dir).join("config.json");
        if let Some(cfg) = std::fs::read_to_string(&cfg_path)
            .ok()
            .and_then(|t| serde_json::from_str::<TrainConfig>(&t).ok())
        {
            self.form.config = cfg;
        }
        let path = PathBuf::from(&self.form.run_dir).join("metrics.jsonl");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return;
        };
        let mut train = std::collections::BTreeMap::new();
        let mut valid = std::collections::BTreeMap::new();
        let mut total = 0;
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            match v["kind"].as_str() {
                Some("train") => {
                    if let Ok(m) = serde_json::from_value::<StepMetrics>(v) {
                        train.insert(m.step, m);
                    }
                }
                Some("valid") => {
                    if let Ok(m) = serde_json::from_value::<ValidMetrics>(v) {
                        valid.insert(m.step, m);
                    }
                }
                Some("start") => total = v["total"].as_u64().unwrap_or(0) as usize,
                _ => {}
            }
        }
        self.curves = Curves {
            total,
            ..Default::default()
        };
        for m in train.into_values() {
            self.apply(&TrainEvent::Step(m));
        }
        for m in valid.into_values() {
            self.apply(&TrainEvent::Valid(m));
        }
    }

    /// Applies an engine event that belongs to this panel.
    pub fn on_event(&mut self, ev: &Event) {
        match ev {
            Event::Train {
                job,
                events,
                paused,
            } if Some(*job) == self.job => {
                self.state = if *paused {
                    RunState::Paused
                } else {
                    RunState::Running
                };
                for e in events {
                    self.apply(e);
                }
            }
            Event::Done { job, result } if Some(*job) == self.job => {
                self.state = RunState::Idle;
                self.job = None;
                self.log.push(match result {
                    Ok(JobOutput::Trained(s)) => format!(
                        "{} at step {}{}",
                        if s.finished { "Finished" } else { "Stopped" },
                        s.step,
                        s.best_valid_ce
                            .map(|c| format!(", best valid CE {c:.4}"))
                            .unwrap_or_default()
                    ),
                    Ok(_) => "Training ended.".into(),
                    Err(e) => format!("Error: {e}"),
                });
            }
            _ => {}
        }
    }

    fn apply(&mut self, e: &TrainEvent) {
        let c = &mut self.curves;
        match e {
            TrainEvent::Started { step, total, .. } => {
                c.step = *step;
                c.total = *total;
            }
            TrainEvent::Step(m) => {
                let x = m.step as f64;
                c.train_ce.push([x, m.ce]);
                if c.train_ce_q.len() < m.ce_q.len() {
                    c.train_ce_q.resize(m.ce_q.len(), Vec::new());
                }
                for (q, v) in m.ce_q.iter().enumerate() {
                    c.train_ce_q[q].push([x, *v]);
                }
                c.lr.push([x, m.lr]);
                c.grad_norm.push([x, m.grad_norm]);
                c.tokens_per_s = m.tokens_per_s;
                c.seconds_per_step = m.seconds;
                c.step = m.step;
            }
            TrainEvent::Valid(v) => c.valid_ce.push([v.step as f64, v.ce]),
            TrainEvent::Skipped { step, reason } => {
                c.skipped += 1;
                self.log.push(format!("step {step} skipped: {reason}"));
            }
            TrainEvent::Checkpoint { step, path } => {
                self.log
                    .push(format!("step {step}: checkpoint {}", path.display()));
            }
            TrainEvent::Preview { step, path } => {
                self.log
                    .push(format!("step {step}: preview {}", path.display()));
            }
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, out: &mut Outbox) {
        let idle = self.state == RunState::Idle;
        ui.add_enabled_ui(idle, |ui| self.form_ui(ui));
        ui.horizontal(|ui| {
            if ui
                .add_enabled(idle, egui::Button::new("Start training"))
                .clicked()
            {
                let job = out.job();
                self.job = Some(job);
                self.state = RunState::Running;
                self.curves = Curves {
                    total: self.form.config.steps,
                    ..Default::default()
                };
                out.commands.push(Command::Train {
                    job,
                    run_dir: PathBuf::from(&self.form.run_dir),
                    config: Some(Box::new(self.form.config.clone())),
                });
            }
            if ui
                .add_enabled(idle, egui::Button::new("Resume run"))
                .on_hover_text("Continue the run in the folder above from its last checkpoint.")
                .clicked()
            {
                let job = out.job();
                self.job = Some(job);
                self.state = RunState::Running;
                self.curves = Curves::default();
                out.commands.push(Command::Train {
                    job,
                    run_dir: PathBuf::from(&self.form.run_dir),
                    config: None,
                });
            }
            match self.state {
                RunState::Running => {
                    if ui.button("Pause").clicked() {
                        out.commands.push(Command::PauseTraining);
                    }
                }
                RunState::Paused => {
                    if ui.button("Continue").clicked() {
                        out.commands.push(Command::ResumeTraining);
                    }
                }
                RunState::Idle => {}
            }
            if !idle && ui.button("Stop").clicked() {
                out.commands.push(Command::StopTraining);
            }
            if idle
                && ui
                    .button("Show run's curves")
                    .on_hover_text("Reload the curves of the run folder from its metrics.jsonl.")
                    .clicked()
            {
                self.load_curves();
            }
        });
        self.progress_ui(ui);
        self.charts_ui(ui);
        egui::ScrollArea::vertical()
            .max_height(80.0)
            .stick_to_bottom(true)
            .show(ui, |ui| {
                for l in &self.log {
                    ui.label(l);
                }
            });
    }

    fn form_ui(&mut self, ui: &mut egui::Ui) {
        egui::Grid::new("train-form").num_columns(4).show(ui, |ui| {
            let mut ds = self.form.config.dataset.display().to_string();
            if field(
                ui,
                "Dataset folder",
                "A folder made in the Dataset tab (Import).",
                |ui| ui.text_edit_singleline(&mut ds),
            )
            .changed()
            {
                self.form.set_dataset(PathBuf::from(ds));
            }
            let c = &mut self.form.config;
            field(
                ui,
                "Base model",
                "MusicGen: a Hub id or a local folder · MIDI: a Music Transformer folder or run \
                 to continue from (unused by scratch)",
                |ui| ui.text_edit_singleline(&mut c.model),
            );
            ui.end_row();
            field(
                ui,
                "Family",
                "MusicGen (text → audio) or Music Transformer (MIDI events)",
                |ui| {
                    egui::ComboBox::from_id_salt("family")
                        .selected_text(family_name(c.family))
                        .show_ui(ui, |ui| {
                            for f in [Family::Musicgen, Family::Midi] {
                                ui.selectable_value(&mut c.family, f, family_name(f));
                            }
                        })
                        .response
                },
            );
            if c.family == Family::Midi {
                field(ui, "Preset", "Size of a scratch Music Transformer.", |ui| {
                    egui::ComboBox::from_id_salt("preset")
                        .selected_text(c.midi.preset.clone())
                        .show_ui(ui, |ui| {
                            for p in crate::models::music_transformer::PRESETS {
                                ui.selectable_value(&mut c.midi.preset, p.to_string(), p);
                            }
                        })
                        .response
                });
            }
            ui.end_row();
            field(
                ui,
                "Run folder",
                "Where config, metrics and checkpoints go.",
                |ui| ui.text_edit_singleline(&mut self.form.run_dir),
            );
            field(
                ui,
                "Mode",
                "full: every LM weight · lora: low-rank adapters · head: output heads and text \
                 projection · scratch: a fresh LM",
                |ui| {
                    egui::ComboBox::from_id_salt("mode")
                        .selected_text(format!("{:?}", c.mode))
                        .show_ui(ui, |ui| {
                            for m in [Mode::Full, Mode::Lora, Mode::Head, Mode::Scratch] {
                                ui.selectable_value(&mut c.mode, m, format!("{m:?}"));
                            }
                        })
                        .response
                },
            );
            ui.end_row();
            field(ui, "Steps", "Optimizer updates.", |ui| {
                ui.add(egui::DragValue::new(&mut c.steps).range(1..=1_000_000))
            });
            field(ui, "Batch", "Segments per micro-batch.", |ui| {
                ui.add(egui::DragValue::new(&mut c.batch_size).range(1..=64))
            });
            ui.end_row();
            let mut lr = c.peak_lr();
            if field(
                ui,
                "Learning rate",
                "Peak; default 1e-4 (LoRA 2e-4).",
                |ui| ui.add(egui::DragValue::new(&mut lr).speed(1e-5).range(1e-7..=1e-1)),
            )
            .changed()
            {
                c.lr = Some(lr);
            }
            field(
                ui,
                "Warmup",
                "Linear warmup steps, then cosine decay.",
                |ui| ui.add(egui::DragValue::new(&mut c.warmup_steps).range(0..=100_000)),
            );
            ui.end_row();
            if c.family == Family::Midi {
                let mut events = c.midi.max_events.unwrap_or(512);
                if field(
                    ui,
                    "Max events",
                    "Training window in events (at most the model's); longer pieces are cropped.",
                    |ui| ui.add(egui::DragValue::new(&mut events).range(16..=4096)),
                )
                .changed()
                {
                    c.midi.max_events = Some(events);
                }
            } else {
                field(
                    ui,
                    "Max seconds",
                    "Longer segments are randomly cropped.",
                    |ui| ui.add(egui::DragValue::new(&mut c.max_seconds).range(1.0..=30.0)),
                );
            }
            field(
                ui,
                "LoRA rank",
                "Rank r of the adapters (LoRA mode).",
                |ui| ui.add(egui::DragValue::new(&mut c.lora.r).range(1..=256)),
            );
            ui.end_row();
            if c.family == Family::Midi {
                field(
                    ui,
                    "Transpose ±",
                    "Each excerpt is shifted by a random number of semitones up to this.",
                    |ui| ui.add(egui::DragValue::new(&mut c.midi.transpose).range(0..=12)),
                );
            } else {
                field(
                    ui,
                    "Condition dropout",
                    "Share of captions replaced by the empty condition (keeps CFG working).",
                    |ui| ui.add(egui::Slider::new(&mut c.condition_dropout, 0.0..=1.0)),
                );
            }
            field(
                ui,
                "Validate every",
                "Steps between validation passes.",
                |ui| ui.add(egui::DragValue::new(&mut c.eval_every).range(0..=100_000)),
            );
            ui.end_row();
        });
    }

    fn progress_ui(&self, ui: &mut egui::Ui) {
        let c = &self.curves;
        if c.total == 0 {
            return;
        }
        let frac = c.step as f32 / c.total as f32;
        let eta = (c.total.saturating_sub(c.step)) as f64 * c.seconds_per_step;
        let state = match self.state {
            RunState::Paused => " · paused",
            _ => "",
        };
        ui.add(egui::ProgressBar::new(frac).text(format!(
            "step {}/{} · {:.0} tokens/s · ETA {:.0} s{state}{}",
            c.step,
            c.total,
            c.tokens_per_s,
            eta,
            if c.skipped > 0 {
                format!(" · {} skipped", c.skipped)
            } else {
                String::new()
            }
        )));
    }

    fn charts_ui(&mut self, ui: &mut egui::Ui) {
        ui.checkbox(&mut self.per_codebook, "Per codebook");
        let c = &self.curves;
        let h = 180.0;
        ui.columns(2, |cols| {
            Plot::new("ce")
                .height(h)
                .legend(Legend::default())
                .x_axis_label("step")
                .y_axis_label("cross-entropy (nats)")
                .show(&mut cols[0], |p| {
                    if self.per_codebook {
                        for (q, pts) in c.train_ce_q.iter().enumerate() {
                            p.line(Line::new(
                                format!("train q{}", q + 1),
                                PlotPoints::from(pts.clone()),
                            ));
                        }
                    } else {
                        p.line(Line::new("train", PlotPoints::from(c.train_ce.clone())));
                    }
                    p.line(Line::new("valid", PlotPoints::from(c.valid_ce.clone())));
                });
            Plot::new("lr")
                .height(h)
                .legend(Legend::default())
                .x_axis_label("step")
                .show(&mut cols[1], |p| {
                    p.line(Line::new(
                        "learning rate ×1e4",
                        PlotPoints::from(
                            c.lr.iter().map(|[x, y]| [*x, y * 1e4]).collect::<Vec<_>>(),
                        ),
                    ));
                    p.line(Line::new(
                        "grad norm",
                        PlotPoints::from(c.grad_norm.clone()),
                    ));
                });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egui_kittest::kittest::Queryable;
    use egui_kittest::Harness;

    struct S {
        panel: TrainPanel,
        out: Outbox,
    }

    fn harness() -> Harness<'static, S> {
        Harness::new_ui_state(
            |ui, s: &mut S| s.panel.ui(ui, &mut s.out),
            S {
                panel: TrainPanel::new(TrainForm::default()),
                out: Outbox::default(),
            },
        )
    }

    fn step(n: usize) -> TrainEvent {
        TrainEvent::Step(StepMetrics {
            step: n,
            ce: 8.0 - n as f64 * 0.1,
            ppl: 1.0,
            ce_q: vec![7.0, 8.0, 8.5, 9.0],
            ppl_q: vec![1.0; 4],
            lr: 1e-4,
            grad_norm: 0.5,
            tokens_per_s: 100.0,
            seconds: 2.0,
        })
    }

    #[test]
    fn start_pause_resume_stop_send_the_commands_and_events_draw_curves() {
        let mut h = harness();
        h.get_by_label("Start training").click();
        h.run();
        let job = match h.state().out.commands.as_slice() {
            [Command::Train {
                job,
                config: Some(c),
                run_dir,
            }] => {
                assert_eq!(c.mode, Mode::Full);
                assert_eq!(run_dir, &PathBuf::from(TrainForm::default().run_dir));
                *job
            }
            other => panic!("expected a Train command, got {other:?}"),
        };
        h.state_mut().out.commands.clear();
        // Engine events: started, three steps, a validation.
        let events = vec![
            TrainEvent::Started {
                step: 0,
                total: 1000,
                trainable_parameters: 1,
            },
            step(1),
            step(2),
            step(3),
            TrainEvent::Valid(ValidMetrics {
                step: 3,
                ce: 7.5,
                ppl: 1.0,
                ce_q: vec![],
                ppl_q: vec![],
                tokens: 10,
            }),
        ];
        h.state_mut().panel.on_event(&Event::Train {
            job,
            events,
            paused: false,
        });
        h.run();
        assert_eq!(h.state().panel.curves.train_ce.len(), 3);
        assert_eq!(h.state().panel.curves.train_ce_q.len(), 4);
        assert_eq!(h.state().panel.curves.valid_ce, vec![[3.0, 7.5]]);
        h.get_by_label("Pause").click();
        h.run();
        assert!(matches!(
            h.state().out.commands.as_slice(),
            [Command::PauseTraining]
        ));
        h.state_mut().out.commands.clear();
        h.state_mut().panel.on_event(&Event::Train {
            job,
            events: vec![],
            paused: true,
        });
        h.run();
        h.get_by_label("Continue").click();
        h.run();
        assert!(matches!(
            h.state().out.commands.as_slice(),
            [Command::ResumeTraining]
        ));
        h.state_mut().out.commands.clear();
        h.get_by_label("Stop").click();
        h.run();
        assert!(matches!(
            h.state().out.commands.as_slice(),
            [Command::StopTraining]
        ));
        // Another job's events are ignored; the run's end returns the panel to idle.
        h.state_mut().panel.on_event(&Event::Train {
            job: job + 7,
            events: vec![step(9)],
            paused: false,
        });
        assert_eq!(h.state().panel.curves.train_ce.len(), 3);
        h.state_mut().panel.on_event(&Event::Done {
            job,
            result: Err("boom".into()),
        });
        h.run();
        assert_eq!(h.state().panel.state, RunState::Idle);
        assert!(h.state().panel.log.iter().any(|l| l.contains("boom")));
    }
}
