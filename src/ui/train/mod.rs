//! The Train panel: a form for the run (mode and hyper-parameters with audiocraft's defaults and
//! a tooltip per field), Start / Pause / Resume / Stop, and live charts of train and valid
//! cross-entropy (overall or per codebook), learning rate and gradient norm, fed by the engine's
//! batched training events. Another run's curves can be overlaid for comparison, and the
//! preview clips the run wrote at its kept checkpoints (`previews/step-N.wav`, when the run has
//! a preview prompt) are listed with play buttons. The form is `form.rs`; reading a run folder
//! (curves, previews) is `curves.rs`.

mod curves;
mod form;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use egui_plot::{Legend, Line, Plot, PlotPoints};

use crate::audio::Player;
use crate::engine::{Command, Event, JobId, JobOutput};
use crate::train::events::TrainEvent;
use crate::ui::panel::Outbox;
use crate::ui::panel::{ModelBusy, Panel};
use crate::ui::state::State;
use crate::ui::tab::Tab;

pub use crate::ui::forms::TrainForm;
pub use curves::{read_curves, read_previews, Curves};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Idle,
    Running,
    Paused,
}

pub struct TrainPanel {
    pub form: TrainForm,
    pub state: RunStatus,
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
    player: Player,
}

impl TrainPanel {
    pub fn new(form: TrainForm, player: Player) -> Self {
        let mut p = Self {
            form,
            state: RunStatus::Idle,
            job: None,
            curves: Curves::default(),
            per_codebook: false,
            log: Vec::new(),
            compare: None,
            previews: Vec::new(),
            playing: None,
            player,
        };
        p.load_curves();
        p
    }

    /// Trains on `dataset` next (the Dataset panel's "Train on this dataset").
    pub fn set_dataset(&mut self, dataset: PathBuf) {
        self.form.set_dataset(dataset);
    }

    /// Starts a new run with the form's configuration in the form's run folder.
    pub fn start(&mut self, out: &mut Outbox) {
        let job = out.job();
        self.job = Some(job);
        self.state = RunStatus::Running;
        self.curves = Curves {
            total: self.form.config.steps,
            ..Default::default()
        };
        self.previews.clear();
        out.send(Command::Train {
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
                match self.player.play(audio, d.sample_rate, Duration::ZERO) {
                    Ok(()) => self.playing = Some(path.to_path_buf()),
                    Err(e) => self.log.push(e),
                }
            }
            Err(e) => self.log.push(format!("Error: {e}")),
        }
    }

    /// Is a preview playing now?
    pub fn preview_playing(&self) -> bool {
        self.playing.is_some() && self.player.is_playing()
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

    /// Applies an engine event; true when it is this panel's run's.
    fn take_event(&mut self, ev: &Event) -> bool {
        match ev {
            Event::Train {
                job,
                events,
                paused,
            } if Some(*job) == self.job => {
                self.state = if *paused {
                    RunStatus::Paused
                } else {
                    RunStatus::Running
                };
                for e in events {
                    self.apply(e);
                }
                true
            }
            Event::Done { job, result } if Some(*job) == self.job => {
                self.state = RunStatus::Idle;
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
                true
            }
            _ => false,
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

    fn draw(&mut self, ui: &mut egui::Ui, out: &mut Outbox) {
        let idle = self.state == RunStatus::Idle;
        ui.add_enabled_ui(idle, |ui| self.form.ui(ui));
        ui.horizontal(|ui| {
            if ui
                .add_enabled(idle, egui::Button::new("Start training"))
                .on_hover_text("A new run in the run folder with this form.")
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
                self.state = RunStatus::Running;
                self.curves = Curves::default();
                out.send(Command::Train {
                    job,
                    run_dir: PathBuf::from(&self.form.run_dir),
                    config: None,
                });
            }
            match self.state {
                RunStatus::Running => {
                    if ui.button("Pause").clicked() {
                        out.send(Command::PauseTraining);
                    }
                }
                RunStatus::Paused => {
                    if ui.button("Continue").clicked() {
                        out.send(Command::ResumeTraining);
                    }
                }
                RunStatus::Idle => {}
            }
            if !idle && ui.button("Stop").clicked() {
                out.send(Command::StopTraining);
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

    /// Picks another run (a sibling of this run's folder) whose curves are overlaid.
    fn compare_ui(&mut self, ui: &mut egui::Ui) {
        let here = PathBuf::from(&self.form.run_dir);
        ui.horizontal(|ui| {
            let mut chosen = None;
            ui.menu_button("Compare with…", |ui| {
                let runs = here
                    .parent()
                    .map(crate::ui::runs::find_runs)
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
        if self.playing.is_some() && self.player.is_playing() {
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
                        let now = self.playing.as_ref() == Some(path) && self.player.is_playing();
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
                        self.player.stop();
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
            RunStatus::Paused => " · paused",
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
        let c = &self.curves;
        if c.train_ce.is_empty() && c.valid_ce.is_empty() && self.compare.is_none() {
            // No empty axes: say what will appear here and how to get it.
            ui.add_space(24.0);
            ui.vertical_centered(|ui| {
                ui.label(egui::RichText::new(empty_charts(self.job.is_some())).weak())
            });
            return;
        }
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

/// What the charts' place says before there is a curve to draw.
fn empty_charts(running: bool) -> &'static str {
    if running {
        "Waiting for the first training step…"
    } else {
        "Start a run, or open one (Show run's curves), to see its curves here."
    }
}

impl Panel for TrainPanel {
    fn tab(&self) -> Tab {
        Tab::Train
    }

    fn ui(&mut self, ui: &mut egui::Ui, _model: ModelBusy, out: &mut Outbox) {
        self.draw(ui, out);
    }

    fn on_event(&mut self, ev: &Event, _out: &mut Outbox) -> bool {
        self.take_event(ev)
    }

    fn jobs(&self) -> Vec<JobId> {
        self.job.into_iter().collect()
    }

    fn save(&self, state: &mut State) {
        state.train = self.form.clone();
    }
}

#[cfg(test)]
mod tests;
