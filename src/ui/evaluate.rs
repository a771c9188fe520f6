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
    /// The evaluations sent and not done (one per split), in order.
    pub jobs: Vec<JobId>,
    pub stage: String,
    /// The reports of the last run, one per split.
    pub reports: Vec<EvalReport>,
    pub error: Option<String>,
}

impl EvalPanel {
    pub fn new(form: EvalForm) -> Self {
        Self {
            form,
            jobs: Vec::new(),
            stage: String::new(),
            reports: Vec::new(),
            error: None,
        }
    }

    fn draw(&mut self, ui: &mut egui::Ui, out: &mut Outbox) {
        let idle = self.jobs.is_empty();
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
            if !midi {
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
            }
            ui.end_row();
            if midi {
                ui.label("");
                ui.weak(
                    "A MIDI dataset: held-out cross-entropy and perplexity per model on the \
                     valid and test splits; pieces are judged by ear in the Library and the \
                     Listen tab.",
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
                .on_hover_text(if midi {
                    "Held-out loss of both models on the valid and the test split."
                } else {
                    "Held-out loss and the generated clips' metrics on the split."
                })
                .clicked()
            {
                self.run(midi, out);
            }
            if !idle {
                ui.spinner();
                ui.label(&self.stage);
            }
        });
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        if self.reports.is_empty() {
            return;
        }
        egui::Grid::new("eval-report")
            .striped(true)
            .num_columns(10)
            .show(ui, |ui| {
                for h in [
                    "split",
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
                for (r, m) in self
                    .reports
                    .iter()
                    .flat_map(|r| r.models.iter().map(move |m| (r, m)))
                {
                    ui.label(split_name(r.split));
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
        let all = || self.reports.iter().flat_map(|r| &r.models);
        if all().all(|m| m.generated.is_none()) {
            ui.small("Held-out loss only: MIDI pieces are judged by ear and by loss.");
            return;
        }
        if let Some(r) = self.reports.first() {
            ui.small(&r.caveat);
        }
    }
}

impl EvalPanel {
    /// Sends the evaluation: for a MIDI dataset one job per split (valid and test: only the
    /// held-out loss, which is cheap), else one for the form's split.
    fn run(&mut self, midi: bool, out: &mut Outbox) {
        let splits = if midi {
            vec![Split::Valid, Split::Test]
        } else {
            vec![self.form.split]
        };
        self.error = None;
        self.reports.clear();
        for split in splits {
            let job = out.job();
            self.jobs.push(job);
            out.send(Command::Evaluate {
                job,
                models: vec![
                    self.form.baseline.trim().to_string(),
                    self.form.candidate.trim().to_string(),
                ],
                dataset: PathBuf::from(self.form.dataset.trim()),
                options: EvalOptions {
                    split,
                    clips: self.form.clips,
                    seconds: self.form.seconds,
                    clap: Some(PathBuf::from(self.form.clap.trim()))
                        .filter(|p| !p.as_os_str().is_empty()),
                    ..Default::default()
                },
                save: None,
            });
        }
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
            Event::Progress { job, message } if self.jobs.contains(job) => {
                self.stage = message.clone();
                true
            }
            Event::Done { job, result } if self.jobs.contains(job) => {
                self.jobs.retain(|j| j != job);
                self.stage.clear();
                match result {
                    Ok(JobOutput::Evaluated(r)) => {
                        self.reports.push((**r).clone());
                        self.reports.sort_by_key(|r| r.split != Split::Valid);
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
        self.jobs.clone()
    }

    fn save(&self, state: &mut State) {
        state.evaluate = self.form.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::report::{HeldOut, ModelEval};
    use egui_kittest::kittest::Queryable;

    fn report(split: Split, ce: f64) -> EvalReport {
        let model = |name: &str, ce: f64| ModelEval {
            model: name.into(),
            weights_sha256: String::new(),
            held_out: HeldOut {
                ce,
                ppl: ce.exp(),
                ce_q: vec![ce],
                ppl_q: vec![ce.exp()],
                tokens: 100,
            },
            generated: None,
            eval_seconds: 0.1,
        };
        EvalReport {
            dataset: "folk".into(),
            split,
            options: EvalOptions::default(),
            models: vec![model("demo", ce), model("folk-finetune", ce - 0.5)],
            caveat: String::new(),
        }
    }

    #[test]
    fn a_midi_dataset_is_evaluated_on_its_valid_and_test_splits_side_by_side() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("events.jsonl"), "").unwrap();
        let form = EvalForm {
            dataset: dir.path().display().to_string(),
            ..Default::default()
        };
        let mut h = crate::ui::panel::hosted::harness(EvalPanel::new(form));
        h.run();
        assert!(
            h.query_by_label("Split").is_none(),
            "both splits, no choice"
        );
        assert!(
            h.query_by_label("Clips").is_none(),
            "no generation for MIDI"
        );
        h.get_by_label("Run evaluation").click();
        h.step();
        let sent: Vec<(JobId, Split)> = h
            .state()
            .out
            .commands()
            .iter()
            .map(|c| match c {
                Command::Evaluate { job, options, .. } => (*job, options.split),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            sent.iter().map(|s| s.1).collect::<Vec<_>>(),
            [Split::Valid, Split::Test]
        );
        // The test split's report comes first; the table still lists valid first.
        for (job, split) in sent.iter().rev() {
            let ce = if *split == Split::Test { 3.0 } else { 2.0 };
            let s = h.state_mut();
            assert!(s.panel.on_event(
                &Event::Done {
                    job: *job,
                    result: Ok(JobOutput::Evaluated(Box::new(report(*split, ce)))),
                },
                &mut s.out,
            ));
        }
        h.run();
        assert!(h.state().panel.jobs.is_empty());
        let splits: Vec<Split> = h.state().panel.reports.iter().map(|r| r.split).collect();
        assert_eq!(splits, [Split::Valid, Split::Test]);
        assert!(h.query_by_label("2.5000").is_some(), "valid, fine-tune");
        assert!(h.query_by_label("3.0000").is_some(), "test, baseline");
        assert!(h.query_by_label_contains("Held-out loss only").is_some());
    }
}
