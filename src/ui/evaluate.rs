//! The Evaluate panel: runs `tunelab eval` through the engine for a baseline and a fine-tuned
//! model on a dataset split and shows the report table (held-out CE/PPL for either family; for
//! MusicGen also FAD with interval, FAD∞, KAD, log-mel distance, flagged copies, with the
//! latent-FAD caveat). Its failures show in the panel, beside the form that caused them.

use std::path::PathBuf;

use crate::data::dataset::Split;
use crate::engine::{Command, Event, JobId, JobOutput};
use crate::eval::report::{EvalOptions, EvalReport};
use crate::ui::common::field;
use crate::ui::forms::EvalForm;
use crate::ui::panel::Outbox;
use crate::ui::panel::{ModelBusy, Panel};
use crate::ui::picker::{path_field, PathKind};
use crate::ui::state::State;
use crate::ui::tab::Tab;

pub struct EvalPanel {
    pub form: EvalForm,
    pub job: Option<JobId>,
    pub stage: String,
    pub report: Option<EvalReport>,
    pub error: Option<String>,
}

impl EvalPanel {
    pub fn new(form: EvalForm) -> Self {
        Self {
            form,
            job: None,
            stage: String::new(),
            report: None,
            error: None,
        }
    }

    fn draw(&mut self, ui: &mut egui::Ui, out: &mut Outbox) {
        let idle = self.job.is_none();
        let midi = crate::data::midi_dataset::is_midi_dataset(std::path::Path::new(
            self.form.dataset.trim(),
        ));
        egui::Grid::new("eval-form").num_columns(4).show(ui, |ui| {
            path_field(
                ui,
                "Baseline",
                "Hub id, folder or run.",
                &mut self.form.baseline,
                PathKind::Model,
                None,
            );
            path_field(
                ui,
                "Fine-tuned",
                "Hub id, folder or run.",
                &mut self.form.candidate,
                PathKind::Model,
                None,
            );
            ui.end_row();
            path_field(
                ui,
                "Dataset folder",
                "Audio (MusicGen) or MIDI (Music Transformer), made in the Dataset tab.",
                &mut self.form.dataset,
                PathKind::Dataset,
                None,
            );
            field(
                ui,
                "Split",
                "test: the held-out report · valid: while choosing between runs or steps",
                |ui| {
                    egui::ComboBox::from_id_salt("eval-split")
                        .selected_text(split_name(self.form.split))
                        .show_ui(ui, |ui| {
                            for s in [Split::Test, Split::Valid] {
                                ui.selectable_value(&mut self.form.split, s, split_name(s));
                            }
                        })
                        .response
                },
            );
            ui.end_row();
            if midi {
                ui.label("");
                ui.weak(
                    "A MIDI dataset: held-out cross-entropy and perplexity per model; pieces \
                     are judged by ear in the Library and the Listen tab.",
                );
                ui.end_row();
                return;
            }
            field(
                ui,
                "Clips",
                "Generated per model from the split's captions.",
                |ui| ui.add(egui::DragValue::new(&mut self.form.clips).range(1..=500)),
            );
            field(ui, "Seconds", "Length of each generated clip.", |ui| {
                ui.add(egui::DragValue::new(&mut self.form.seconds).range(1.0..=30.0))
            });
            ui.end_row();
            path_field(
                ui,
                "CLAP folder",
                "Optional: a LAION-CLAP model in HF layout (safetensors) for the prompt–clip \
                 score. None ships with tunelab.",
                &mut self.form.clap,
                PathKind::Folder,
                Some("none"),
            );
            ui.end_row();
        });
        ui.horizontal(|ui| {
            if ui
                .add_enabled(idle, egui::Button::new("Run evaluation"))
                .clicked()
            {
                let job = out.job();
                self.job = Some(job);
                self.error = None;
                out.send(Command::Evaluate {
                    job,
                    models: vec![
                        self.form.baseline.trim().to_string(),
                        self.form.candidate.trim().to_string(),
                    ],
                    dataset: PathBuf::from(self.form.dataset.trim()),
                    options: EvalOptions {
                        split: self.form.split,
                        clips: self.form.clips,
                        seconds: self.form.seconds,
                        clap: Some(PathBuf::from(self.form.clap.trim()))
                            .filter(|p| !p.as_os_str().is_empty()),
                        ..Default::default()
                    },
                    save: None,
                });
            }
            if !idle {
                ui.spinner();
                ui.label(&self.stage);
            }
        });
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        let Some(r) = &self.report else {
            return;
        };
        egui::Grid::new("eval-report")
            .striped(true)
            .num_columns(9)
            .show(ui, |ui| {
                for h in [
                    "model",
                    "CE",
                    "PPL",
                    "FAD [95 % CI]",
                    "FAD∞",
                    "KAD×1000 [CI]",
                    "mel MSE",
                    "copies",
                    "CLAP",
                ] {
                    ui.strong(h);
                }
                ui.end_row();
                for m in &r.models {
                    ui.label(&m.model);
                    ui.label(format!("{:.4}", m.held_out.ce));
                    ui.label(format!("{:.2}", m.held_out.ppl));
                    let Some(g) = &m.generated else {
                        for _ in 0..6 {
                            ui.label("—");
                        }
                        ui.end_row();
                        continue;
                    };
                    ui.label(format!(
                        "{:.3} [{:.3}, {:.3}]",
                        g.fad.estimate, g.fad.lower, g.fad.upper
                    ));
                    ui.label(format!(
                        "{:.3} (r² {:.2})",
                        g.fad_inf.intercept, g.fad_inf.r2
                    ));
                    ui.label(format!(
                        "{:.3} [{:.3}, {:.3}]",
                        g.kad.kad.scaled, g.kad.ci_scaled.lower, g.kad.ci_scaled.upper
                    ));
                    ui.label(format!("{:.4}", g.mean_log_mel_mse));
                    ui.label(g.copies.len().to_string());
                    ui.label(
                        g.clap
                            .as_ref()
                            .map(|c| format!("{:.3}", c.mean))
                            .unwrap_or_else(|| "—".into()),
                    );
                    ui.end_row();
                }
            });
        if r.models.iter().all(|m| m.generated.is_none()) {
            ui.small("Held-out loss only: MIDI pieces are judged by ear and by loss.");
            return;
        }
        ui.small(&r.caveat);
    }
}

/// A split's name in the form.
fn split_name(s: Split) -> &'static str {
    match s {
        Split::Train => "train",
        Split::Valid => "valid",
        Split::Test => "test",
    }
}

impl Panel for EvalPanel {
    fn tab(&self) -> Tab {
        Tab::Evaluate
    }

    fn ui(&mut self, ui: &mut egui::Ui, _model: ModelBusy, out: &mut Outbox) {
        self.draw(ui, out);
    }

    /// Progress and the report of this panel's evaluation.
    fn on_event(&mut self, ev: &Event, _out: &mut Outbox) -> bool {
        match ev {
            Event::Progress { job, message } if Some(*job) == self.job => {
                self.stage = message.clone();
                true
            }
            Event::Done { job, result } if Some(*job) == self.job => {
                self.job = None;
                self.stage.clear();
                match result {
                    Ok(JobOutput::Evaluated(r)) => {
                        self.report = Some((**r).clone());
                        self.error = None;
                    }
                    Ok(_) => {}
                    Err(e) => self.error = Some(e.clone()),
                }
                true
            }
            _ => false,
        }
    }

    fn jobs(&self) -> Vec<JobId> {
        self.job.into_iter().collect()
    }

    fn save(&self, state: &mut State) {
        state.evaluate = self.form.clone();
    }
}
