//! Setting up a new blind session from the Listen panel: the models, prompts (typed, or a
//! dataset's test split), clip length and the number of trials, all fixed before anyone
//! listens; the engine prepares it (as `tunelab listen new`) and the panel opens it when ready.

use std::path::PathBuf;

use crate::engine::Command;
use crate::eval::listen::prepare::SessionPlan;
use crate::eval::listen::stats::{min_wins_for_significance, power_votes};
use crate::ui::common::field;
use crate::ui::listen::ListenPanel;
use crate::ui::panel::Outbox;
use crate::ui::picker::{path_field, PathKind};

/// Prompts from a dataset's test split: captions of audio segments, or the pieces of a MIDI
/// dataset (each continued from its opening), at most `n`, in the dataset's order.
pub fn test_prompts(dataset: &std::path::Path, n: usize) -> crate::error::Result<Vec<String>> {
    use crate::data::dataset::{Segment, Split};
    let segs: Vec<Segment> = crate::data::dataset::read_jsonl(&dataset.join("segments.jsonl"))?;
    let midi = crate::data::midi_dataset::is_midi_dataset(dataset);
    let mut out: Vec<String> = Vec::new();
    for s in segs.into_iter().filter(|s| s.split == Split::Test) {
        let p = if midi {
            s.path.display().to_string()
        } else {
            s.caption
        };
        if !out.contains(&p) {
            out.push(p);
        }
        if out.len() == n {
            break;
        }
    }
    Ok(out)
}

impl ListenPanel {
    /// The form for a new session (models, prompts, length, trials fixed in advance).
    pub(super) fn setup_ui(&mut self, ui: &mut egui::Ui, out: &mut Outbox) {
        ui.heading("New session");
        let f = &mut self.form.setup;
        egui::Grid::new("listen-setup")
            .num_columns(4)
            .show(ui, |ui| {
                path_field(
                    ui,
                    "Model A",
                    "Usually the baseline: Hub id, folder or run.",
                    &mut f.model_a,
                    PathKind::Model,
                    None,
                );
                path_field(
                    ui,
                    "Model B",
                    "Usually the fine-tune: Hub id, folder or run.",
                    &mut f.model_b,
                    PathKind::Model,
                    None,
                );
                ui.end_row();
                field(
                ui,
                "Prompts",
                "One per line. MusicGen: text. Music Transformer: `improv` or a MIDI file whose \
                 first seconds both models continue.",
                |ui| ui.text_edit_multiline(&mut f.prompts),
            );
                path_field(
                    ui,
                    "Dataset",
                    "Its test split can fill the prompts.",
                    &mut f.dataset,
                    PathKind::Dataset,
                    Some("none"),
                );
                ui.end_row();
                field(ui, "Clips per prompt", "Seeds per prompt.", |ui| {
                    ui.add(egui::DragValue::new(&mut f.clips_per_prompt).range(1..=16))
                });
                field(ui, "Seconds", "Length of every clip.", |ui| {
                    ui.add(egui::DragValue::new(&mut f.seconds).range(2.0..=30.0))
                });
                ui.end_row();
                field(
                    ui,
                    "Trials",
                    "Scored trials per rater, fixed now: stopping when it looks significant \
                 inflates errors.",
                    |ui| ui.add(egui::DragValue::new(&mut f.trials).range(1..=500)),
                );
                field(
                    ui,
                    "Catch every",
                    "A catch trial (identical clips) after every N; 0 = none.",
                    |ui| ui.add(egui::DragValue::new(&mut f.catch_every).range(0..=50)),
                );
                ui.end_row();
                path_field(
                    ui,
                    "Session folder",
                    "Clips and session.jsonl go here.",
                    &mut f.out,
                    PathKind::Folder,
                    None,
                );
                field(
                    ui,
                    "ABX",
                    "Ask which one is X before each preference.",
                    |ui| ui.checkbox(&mut f.abx, ""),
                );
                ui.end_row();
            });
        let f = &self.form.setup;
        let need = min_wins_for_significance(f.trials as u64, 0.05);
        ui.label(format!(
            "With one rater, B must win ≥ {} of {} for p < 0.05. A true 65 % preference needs \
             ≈ {} votes in total to be detected with 80 % power (pool raters).",
            need.map(|k| k.to_string()).unwrap_or_else(|| "—".into()),
            f.trials,
            power_votes(0.65, 0.05, 0.8)
                .map(|n| n.to_string())
                .unwrap_or_else(|| "?".into())
        ));
        ui.horizontal(|ui| {
            if ui.button("Use the dataset's test split").clicked() {
                match test_prompts(std::path::Path::new(self.form.setup.dataset.trim()), 4) {
                    Ok(p) if !p.is_empty() => self.form.setup.prompts = p.join("\n"),
                    Ok(_) => self.error = Some("The dataset has no test item.".into()),
                    Err(e) => self.error = Some(e.to_string()),
                }
            }
            let busy = self.job.is_some();
            if ui
                .add_enabled(!busy, egui::Button::new("Prepare session"))
                .clicked()
            {
                self.prepare(out);
            }
            if busy {
                ui.spinner();
                ui.label(&self.progress);
            }
        });
    }

    /// Sends the set-up's session to be prepared (as its Prepare session button does); it opens
    /// for rating when ready.
    pub fn prepare(&mut self, out: &mut Outbox) {
        let f = self.form.setup.clone();
        let prompts = f.prompt_list();
        if prompts.is_empty() || f.model_a.trim().is_empty() || f.model_b.trim().is_empty() {
            self.error = Some("Name both models and at least one prompt.".into());
            return;
        }
        let plan = SessionPlan {
            prompts,
            seeds: (0..f.clips_per_prompt as u64).collect(),
            seconds: f.seconds,
            trials: f.trials,
            abx: f.abx,
            catch_every: f.catch_every,
            ..Default::default()
        };
        let job = out.job();
        out.send(Command::PrepareSession {
            job,
            dir: PathBuf::from(f.out.trim()),
            model_a: f.model_a.trim().to_string(),
            model_b: f.model_b.trim().to_string(),
            plan: Box::new(plan),
            prime_seconds: 5.0,
        });
        self.job = Some(job);
        self.error = None;
    }
}
