//! The Dataset panel: import a folder of audio (or an audiocraft `data.jsonl`) through the
//! engine, show the import report with every file that failed and why, and a table of the
//! dataset's segments with search and a split filter.

use std::path::PathBuf;

use crate::data::dataset::{ImportOptions, ImportReport, Segment, Split};
use crate::engine::{Command, Event, JobId, JobOutput};
use crate::ui::train::{field, Outbox};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct DatasetForm {
    pub source: String,
    pub dataset: String,
    pub segment_seconds: f64,
}

impl Default for DatasetForm {
    fn default() -> Self {
        Self {
            source: crate::demo::assets_dir()
                .join("demo/midi/folk")
                .display()
                .to_string(),
            dataset: crate::demo::dataset_dir("folk").display().to_string(),
            segment_seconds: 30.0,
        }
    }
}

pub struct DatasetPanel {
    pub form: DatasetForm,
    pub job: Option<JobId>,
    pub report: Option<ImportReport>,
    pub segments: Vec<Segment>,
    pub error: Option<String>,
    pub search: String,
    pub split: Option<Split>,
    /// Set when the user asks to train on this dataset (the shell passes it to the Train panel).
    pub train_on: Option<PathBuf>,
}

impl DatasetPanel {
    pub fn new(form: DatasetForm) -> Self {
        let mut p = Self {
            form,
            job: None,
            report: None,
            segments: Vec::new(),
            error: None,
            search: String::new(),
            split: None,
            train_on: None,
        };
        p.reload();
        p
    }

    /// Reads the dataset's segment list (small: one line per segment).
    pub fn reload(&mut self) {
        let path = PathBuf::from(&self.form.dataset).join("segments.jsonl");
        self.segments = std::fs::read_to_string(&path)
            .map(|t| {
                t.lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect()
            })
            .unwrap_or_default();
    }

    pub fn on_event(&mut self, ev: &Event) {
        if let Event::Done { job, result } = ev {
            if Some(*job) != self.job {
                return;
            }
            self.job = None;
            match result {
                Ok(JobOutput::Imported(r)) => {
                    self.report = Some(r.clone());
                    self.error = None;
                    self.reload();
                }
                Ok(_) => {}
                Err(e) => self.error = Some(e.clone()),
            }
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, out: &mut Outbox) {
        let idle = self.job.is_none();
        egui::Grid::new("dataset-form")
            .num_columns(2)
            .show(ui, |ui| {
                field(
                    ui,
                    "Audio folder or data.jsonl",
                    "WAV, FLAC, MP3 or OGG (any rate and channel count), or a folder of MIDI \
                     files (a MIDI dataset for the Music Transformer).",
                    |ui| ui.text_edit_singleline(&mut self.form.source),
                );
                ui.end_row();
                field(
                    ui,
                    "Dataset folder",
                    "Where the dataset is written.",
                    |ui| ui.text_edit_singleline(&mut self.form.dataset),
                );
                ui.end_row();
                field(
                    ui,
                    "Segment seconds",
                    "Long files are cut; a tail of at least 80 % of a segment is kept.",
                    |ui| {
                        ui.add(
                            egui::DragValue::new(&mut self.form.segment_seconds).range(1.0..=60.0),
                        )
                    },
                );
                ui.end_row();
            });
        ui.horizontal(|ui| {
            let can = idle && !self.form.source.trim().is_empty();
            if ui.add_enabled(can, egui::Button::new("Import")).clicked() {
                let job = out.job();
                self.job = Some(job);
                out.commands.push(Command::ImportDataset {
                    job,
                    src: PathBuf::from(self.form.source.trim()),
                    out: PathBuf::from(self.form.dataset.trim()),
                    options: ImportOptions {
                        segment_seconds: self.form.segment_seconds,
                        ..Default::default()
                    },
                });
            }
            if ui.add_enabled(idle, egui::Button::new("Reload")).clicked() {
                self.reload();
            }
            if ui
                .add_enabled(
                    !self.segments.is_empty(),
                    egui::Button::new("Train on this dataset"),
                )
                .clicked()
            {
                self.train_on = Some(PathBuf::from(&self.form.dataset));
            }
            if !idle {
                ui.spinner();
                ui.label("importing…");
            }
        });
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        if let Some(r) = &self.report {
            ui.label(format!(
                "Imported {} files ({:.1} min, {} segments); {} failed.",
                r.imported.len(),
                r.seconds / 60.0,
                r.segments,
                r.failed.len()
            ));
            for (p, why) in &r.failed {
                ui.colored_label(
                    ui.visuals().warn_fg_color,
                    format!("{}: {why}", p.display()),
                );
            }
        }
        ui.separator();
        ui.horizontal(|ui| {
            field(ui, "Search", "Filter captions.", |ui| {
                ui.text_edit_singleline(&mut self.search)
            });
            for (label, s) in [
                ("all", None),
                ("train", Some(Split::Train)),
                ("valid", Some(Split::Valid)),
                ("test", Some(Split::Test)),
            ] {
                ui.selectable_value(&mut self.split, s, label);
            }
        });
        let needle = self.search.to_lowercase();
        let rows: Vec<&Segment> = self
            .segments
            .iter()
            .filter(|s| self.split.is_none_or(|sp| s.split == sp))
            .filter(|s| needle.is_empty() || s.caption.to_lowercase().contains(&needle))
            .collect();
        ui.label(format!("{} segments", rows.len()));
        egui::ScrollArea::vertical().show(ui, |ui| {
            egui::Grid::new("segments")
                .striped(true)
                .num_columns(6)
                .show(ui, |ui| {
                    for h in ["segment", "seconds", "bpm", "key", "split", "caption"] {
                        ui.strong(h);
                    }
                    ui.end_row();
                    for s in rows.iter().take(500) {
                        ui.label(&s.id);
                        ui.label(format!("{:.1}", s.duration));
                        let est = |f: &str| {
                            if s.info.estimated.iter().any(|e| e == f) {
                                " (est.)"
                            } else {
                                ""
                            }
                        };
                        ui.label(
                            s.info
                                .bpm
                                .map(|b| format!("{b:.0}{}", est("bpm")))
                                .unwrap_or_default(),
                        );
                        ui.label(
                            s.info
                                .key
                                .clone()
                                .map(|k| format!("{k}{}", est("key")))
                                .unwrap_or_default(),
                        );
                        ui.label(format!("{:?}", s.split));
                        ui.label(&s.caption);
                        ui.end_row();
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
        panel: DatasetPanel,
        out: Outbox,
    }

    #[test]
    fn import_sends_the_command_and_the_report_fills_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("audio");
        std::fs::create_dir_all(&src).unwrap();
        let tone: Vec<f32> = (0..64_000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        crate::data::audio::write_wav(&src.join("a.wav"), &tone, 32_000).unwrap();
        std::fs::write(src.join("bad.wav"), b"nope").unwrap();
        let ds = dir.path().join("ds");
        let form = DatasetForm {
            source: src.display().to_string(),
            dataset: ds.display().to_string(),
            segment_seconds: 1.0,
        };
        let mut h = Harness::new_ui_state(
            |ui, s: &mut S| s.panel.ui(ui, &mut s.out),
            S {
                panel: DatasetPanel::new(form),
                out: Outbox::default(),
            },
        );
        h.get_by_label("Import").click();
        h.step(); // a spinner keeps repainting while the engine imports
        let (job, cmd_src, opts) = match h.state().out.commands.as_slice() {
            [Command::ImportDataset {
                job, src, options, ..
            }] => (*job, src.clone(), options.clone()),
            other => panic!("expected an import, got {other:?}"),
        };
        assert_eq!(opts.segment_seconds, 1.0);
        // What the engine would do and answer.
        let report = crate::data::dataset::import_dir(&cmd_src, &ds, &opts).unwrap();
        h.state_mut().panel.on_event(&Event::Done {
            job,
            result: Ok(JobOutput::Imported(report)),
        });
        h.run();
        assert_eq!(h.state().panel.segments.len(), 2);
        assert!(
            h.query_by_label_contains("bad.wav").is_some(),
            "the failure is shown"
        );
        h.get_by_label("Train on this dataset").click();
        h.run();
        assert_eq!(h.state().panel.train_on.as_deref(), Some(ds.as_path()));
    }
}
