//! The Train panel: a form for the run (mode and hyper-parameters with audiocraft's defaults and
//! a tooltip per field), Start / Pause / Resume / Stop, and live charts of train and valid
//! cross-entropy (overall or per codebook), learning rate and gradient norm, fed by the engine's
//! batched training events. Another run's curves can be overlaid for comparison, and the
//! preview clips the run wrote at its kept checkpoints (`previews/step-N.wav`, when the run has
//! a preview prompt) are listed with play buttons.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use egui_plot::{Legend, Line, Plot, PlotPoints};

use crate::audio::AudioSink;
use crate::engine::{Command, Event, JobId, JobOutput};
use crate::models::Family;
use crate::store::run_config::{Mode, TrainConfig};
use crate::train::events::{StepMetrics, TrainEvent, ValidMetrics};

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
    /// Jobs to cancel (by id: a cancel never touches another job).
    pub cancel: Vec<JobId>,
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

impl Curves {
    /// Adds a training event's points.
    pub fn apply(&mut self, e: &TrainEvent) {
        match e {
            TrainEvent::Started { step, total, .. } => {
                self.step = *step;
                self.total = *total;
            }
            TrainEvent::Step(m) => {
                let x = m.step as f64;
                self.train_ce.push([x, m.ce]);
                if self.train_ce_q.len() < m.ce_q.len() {
                    self.train_ce_q.resize(m.ce_q.len(), Vec::new());
                }
                for (q, v) in m.ce_q.iter().enumerate() {
                    self.train_ce_q[q].push([x, *v]);
                }
                self.lr.push([x, m.lr]);
                self.grad_norm.push([x, m.grad_norm]);
                self.tokens_per_s = m.tokens_per_s;
                self.seconds_per_step = m.seconds;
                self.step = m.step;
            }
            TrainEvent::Valid(v) => self.valid_ce.push([v.step as f64, v.ce]),
            TrainEvent::Skipped { .. } => self.skipped += 1,
            TrainEvent::Checkpoint { .. } | TrainEvent::Preview { .. } => {}
        }
    }
}

pub struct TrainPanel {
    pub form: TrainForm,
    pub state: RunState,
    pub job: Option<JobId>,
    pub curves: Curves,
    pub per_codebook: bool,
    pub log: Vec<String>,
    /// Another run drawn on the same charts: its folder name and curves.
    pub compare: Option<(String, Curves)>,
    /// The run's preview clips, by step.
    pub previews: Vec<(usize, PathBuf)>,
    /// The preview playing.
    pub playing: Option<PathBuf>,
    sink: Box<dyn AudioSink>,
}

/// A run's configuration (as resolved when it started) and its curves from `metrics.jsonl`
/// (the last line for a step wins, as after a resume).
pub fn read_curves(run_dir: &Path) -> (Option<TrainConfig>, Curves) {
    let cfg = std::fs::read_to_string(run_dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<TrainConfig>(&t).ok());
    let mut curves = Curves::default();
    let Ok(text) = std::fs::read_to_string(run_dir.join("metrics.jsonl")) else {
        return (cfg, curves);
    };
    let mut train = std::collections::BTreeMap::new();
    let mut valid = std::collections::BTreeMap::new();
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
            Some("start") => curves.total = v["total"].as_u64().unwrap_or(0) as usize,
            _ => {}
        }
    }
    for m in train.into_values() {
        curves.apply(&TrainEvent::Step(m));
    }
    for m in valid.into_values() {
        curves.apply(&TrainEvent::Valid(m));
    }
    (cfg, curves)
}

/// The preview clips a run wrote (`previews/step-N.wav`; a `.mid` where no SoundFont rendered
/// it), by step.
pub fn read_previews(run_dir: &Path) -> Vec<(usize, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(run_dir.join("previews")) else {
        return Vec::new();
    };
    let mut found: std::collections::BTreeMap<usize, PathBuf> = Default::default();
    for p in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
        let Some(step) = p
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.strip_prefix("step-"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        match ext {
            "wav" => {
                found.insert(step, p);
            }
            "mid" => {
                found.entry(step).or_insert(p);
            }
            _ => {}
        }
    }
    found.into_iter().collect()
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
            compare: None,
            previews: Vec::new(),
            playing: None,
            sink: Box::new(crate::audio::NullSink::default()),
        };
        p.load_curves();
        p
    }

    /// Plays previews through `sink` (the device in the studio).
    pub fn with_sink(mut self, sink: Box<dyn AudioSink>) -> Self {
        self.sink = sink;
        self
    }

    /// Starts a new run with the form's configuration in the form's run folder.
    pub fn start(&mut self, out: &mut Outbox) {
        let job = out.job();
        self.job = Some(job);
        self.state = RunState::Running;
        self.curves = Curves {
            total: self.form.config.steps,
            ..Default::default()
        };
        self.previews.clear();
        out.commands.push(Command::Train {
            job,
            run_dir: PathBuf::from(&self.form.run_dir),
            config: Some(Box::new(self.form.config.clone())),
        });
    }

    /// Overlays run `dir`'s curves on the charts.
    pub fn compare_with(&mut self, dir: &Path) {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| dir.display().to_string());
        let (_, curves) = read_curves(dir);
        self.compare = Some((name, curves));
    }

    /// Plays a preview clip (a WAV) from the start.
    pub fn play_preview(&mut self, path: &Path) {
        match crate::data::audio::decode_file(path) {
            Ok(d) => {
                let audio = Arc::new(crate::data::audio::to_mono(&d.samples, d.channels));
                match self.sink.play(audio, d.sample_rate, Duration::ZERO) {
                    Ok(()) => self.playing = Some(path.to_path_buf()),
                    Err(e) => self.log.push(e),
                }
            }
            Err(e) => self.log.push(format!("Error: {e}")),
        }
    }

    /// Is a preview playing now?
    pub fn preview_playing(&self) -> bool {
        self.playing.is_some() && self.sink.is_playing()
    }

    /// Reloads the curves and previews of the run in the form's folder; the form shows that
    /// run's own configuration, as it was resolved.
    pub fn load_curves(&mut self) {
        let dir = PathBuf::from(&self.form.run_dir);
        let (cfg, curves) = read_curves(&dir);
        if let Some(cfg) = cfg {
            self.form.config = cfg;
        }
        self.curves = curves;
        self.previews = read_previews(&dir);
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
        self.curves.apply(e);
        match e {
            TrainEvent::Skipped { step, reason } => {
                self.log.push(format!("step {step} skipped: {reason}"));
            }
            TrainEvent::Checkpoint { step, path } => {
                self.log
                    .push(format!("step {step}: checkpoint {}", path.display()));
            }
            TrainEvent::Preview { step, path } => {
                self.log
                    .push(format!("step {step}: preview {}", path.display()));
                self.previews.retain(|(s, _)| s != step);
                self.previews.push((*step, path.clone()));
            }
            _ => {}
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
                self.start(out);
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
        self.compare_ui(ui);
        self.charts_ui(ui);
        self.previews_ui(ui);
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
            field(
                ui,
                "Keep every",
                "Kept checkpoints (and previews) every N steps; 0 = only last and best.",
                |ui| ui.add(egui::DragValue::new(&mut c.checkpoint_every).range(0..=100_000)),
            );
            let mut prompt = c.preview_prompt.clone().unwrap_or_default();
            if field(
                ui,
                "Preview prompt",
                "A clip for this prompt is generated at each kept checkpoint (MIDI: any text \
                 turns on an unprimed preview piece); empty = no previews.",
                |ui| ui.add(egui::TextEdit::singleline(&mut prompt).hint_text("none")),
            )
            .changed()
            {
                c.preview_prompt = Some(prompt).filter(|p| !p.trim().is_empty());
            }
            ui.end_row();
        });
    }

    /// Picks another run (a sibling of this run's folder) whose curves are overlaid.
    fn compare_ui(&mut self, ui: &mut egui::Ui) {
        let here = PathBuf::from(&self.form.run_dir);
        ui.horizontal(|ui| {
            let mut chosen = None;
            ui.menu_button("Compare with…", |ui| {
                let runs = here
                    .parent()
                    .map(crate::ui::models::find_runs)
                    .unwrap_or_default();
                let others: Vec<_> = runs.into_iter().filter(|r| r.dir != here).collect();
                if others.is_empty() {
                    ui.label("No other run beside this one.");
                }
                for r in others {
                    let name = r
                        .dir
                        .file_name()
                        .map(|n| n.to_string_lossy().to_string())
                        .unwrap_or_default();
                    if ui
                        .button(format!("{name} ({}, {})", r.family, r.mode))
                        .clicked()
                    {
                        chosen = Some(r.dir);
                        ui.close();
                    }
                }
            })
            .response
            .on_hover_text("Draw another run's curves on the same charts.");
            if let Some(d) = chosen {
                self.compare_with(&d);
            }
            if let Some((name, c)) = &self.compare {
                ui.label(format!(
                    "comparing with {name} ({} steps)",
                    c.train_ce.last().map(|p| p[0] as usize).unwrap_or(0)
                ));
                if ui.button("Clear comparison").clicked() {
                    self.compare = None;
                }
            }
        });
    }

    /// The run's preview clips with play buttons.
    fn previews_ui(&mut self, ui: &mut egui::Ui) {
        if self.previews.is_empty() {
            return;
        }
        if self.playing.is_some() && self.sink.is_playing() {
            ui.ctx().request_repaint_after(Duration::from_millis(100));
        }
        let mut play = None;
        egui::CollapsingHeader::new(format!("Previews ({})", self.previews.len()))
            .default_open(true)
            .show(ui, |ui| {
                ui.horizontal_wrapped(|ui| {
                    for (step, path) in &self.previews {
                        let wav = path
                            .extension()
                            .is_some_and(|e| e.eq_ignore_ascii_case("wav"));
                        let now = self.playing.as_ref() == Some(path) && self.sink.is_playing();
                        if ui
                            .add_enabled(
                                wav && !now,
                                egui::Button::new(format!("Play step {step}")),
                            )
                            .on_hover_text(path.display().to_string())
                            .clicked()
                        {
                            play = Some(path.clone());
                        }
                    }
                    if self.preview_playing() && ui.button("Stop preview").clicked() {
                        self.sink.stop();
                        self.playing = None;
                    }
                });
            });
        if let Some(p) = play {
            self.play_preview(&p);
        }
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
                    if let Some((name, o)) = &self.compare {
                        p.line(Line::new(
                            format!("train ({name})"),
                            PlotPoints::from(o.train_ce.clone()),
                        ));
                        p.line(Line::new(
                            format!("valid ({name})"),
                            PlotPoints::from(o.valid_ce.clone()),
                        ));
                    }
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
                    if let Some((name, o)) = &self.compare {
                        p.line(Line::new(
                            format!("grad norm ({name})"),
                            PlotPoints::from(o.grad_norm.clone()),
                        ));
                    }
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

    /// A run folder as the trainer leaves it: config, checkpoints, metrics of `steps` steps.
    fn fake_run(dir: &Path, steps: usize, mode: &str) {
        std::fs::create_dir_all(dir.join("checkpoints")).unwrap();
        std::fs::create_dir_all(dir.join("model")).unwrap();
        std::fs::write(dir.join("model/config.json"), "{}").unwrap();
        let mut cfg = serde_json::to_value(TrainConfig::default()).unwrap();
        cfg["mode"] = mode.into();
        std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
        let mut lines = vec![serde_json::json!({"kind": "start", "total": steps}).to_string()];
        for n in 1..=steps {
            let TrainEvent::Step(m) = step(n) else {
                unreachable!()
            };
            let mut v = serde_json::to_value(m).unwrap();
            v["kind"] = "train".into();
            lines.push(v.to_string());
        }
        std::fs::write(dir.join("metrics.jsonl"), lines.join("\n")).unwrap();
    }

    #[test]
    fn another_runs_curves_overlay_and_the_runs_previews_play() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fake_run(&a, 5, "lora");
        fake_run(&b, 3, "full");
        crate::data::audio::write_wav(
            &b.join("previews/step-000002.wav"),
            &vec![0.1; 16_000],
            16_000,
        )
        .unwrap();
        std::fs::write(b.join("previews/step-000003.mid"), b"MThd").unwrap();
        let form = TrainForm {
            run_dir: b.display().to_string(),
            ..Default::default()
        };
        let mut h = Harness::new_ui_state(
            |ui, s: &mut S| s.panel.ui(ui, &mut s.out),
            S {
                panel: TrainPanel::new(form),
                out: Outbox::default(),
            },
        );
        assert_eq!(h.state().panel.curves.train_ce.len(), 3);
        assert_eq!(
            h.state()
                .panel
                .previews
                .iter()
                .map(|p| p.0)
                .collect::<Vec<_>>(),
            [2, 3]
        );
        h.get_by_label("Compare with…").click();
        h.run();
        h.get_by_label_contains("a (MusicGen, lora)").click();
        h.run();
        let (name, other) = h.state().panel.compare.as_ref().unwrap();
        assert_eq!(name, "a");
        assert_eq!(other.train_ce.len(), 5);
        assert_eq!(h.state().panel.curves.train_ce.len(), 3, "own curves kept");
        assert!(h.query_by_label_contains("comparing with a").is_some());
        // A MIDI preview without its rendering cannot play; the WAV one does.
        {
            use egui_kittest::kittest::NodeT;
            assert!(h.get_by_label("Play step 3").accesskit_node().is_disabled());
        }
        h.get_by_label("Play step 2").click();
        h.step();
        h.step();
        assert!(h.state().panel.preview_playing());
        assert!(h.query_by_label("Stop preview").is_some());
        // A preview arriving from the running job joins the list.
        h.state_mut().panel.job = Some(9);
        h.state_mut().panel.on_event(&Event::Train {
            job: 9,
            events: vec![TrainEvent::Preview {
                step: 4,
                path: b.join("previews/step-000004.wav"),
            }],
            paused: false,
        });
        assert_eq!(h.state().panel.previews.len(), 3);
    }
}
