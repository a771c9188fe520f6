//! The Models panel: the published MusicGen checkpoints (downloaded into the standard HF cache
//! with progress), what the cache already holds (with size), tunelab training runs (a run loads
//! as its base model with its weights; a LoRA run's adapter stays unmerged), and any local
//! folder (typed, or picked with the system dialog on a helper thread).

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use crate::engine::{Command, JobId};
use crate::models::hub::{cached_models, CachedModel};
use crate::models::nn::WeightMode;
use crate::store::run::is_run_dir;
use crate::ui::train::{field, Outbox};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ModelsForm {
    pub spec: String,
    /// Where training runs are looked for.
    pub runs_dir: String,
    pub weights: WeightMode,
}

impl Default for ModelsForm {
    fn default() -> Self {
        Self {
            spec: crate::demo::model_dir().display().to_string(),
            runs_dir: crate::demo::demo_dir().join("runs").display().to_string(),
            weights: WeightMode::F32,
        }
    }
}

/// A run found in the runs folder.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEntry {
    pub dir: PathBuf,
    /// "MusicGen" or "Music Transformer".
    pub family: String,
    pub mode: String,
    pub base: String,
    /// Its checkpoints by name (`best`, `last`, `step-000200`, …).
    pub checkpoints: Vec<String>,
}

pub struct ModelsPanel {
    pub form: ModelsForm,
    pub cached: Vec<CachedModel>,
    pub runs: Vec<RunEntry>,
    /// A load the panel asked for (the shell tracks its progress).
    pub requested: Option<JobId>,
    picked: Option<mpsc::Receiver<Option<PathBuf>>>,
}

/// Runs (folders with a run config and checkpoints) directly under `dir`.
pub fn find_runs(dir: &Path) -> Vec<RunEntry> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut runs: Vec<RunEntry> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| is_run_dir(p))
        .map(|dir| {
            let cfg: serde_json::Value = std::fs::read_to_string(dir.join("config.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            RunEntry {
                family: match cfg["family"].as_str() {
                    Some("midi") => "Music Transformer",
                    _ => "MusicGen",
                }
                .to_string(),
                mode: cfg["mode"].as_str().unwrap_or("?").to_string(),
                base: match cfg["model"].as_str() {
                    Some("") => "a fresh model".to_string(),
                    Some(m) => m.to_string(),
                    None => "?".to_string(),
                },
                checkpoints: checkpoint_names(&dir),
                dir,
            }
        })
        .collect();
    runs.sort_by(|a, b| a.dir.cmp(&b.dir));
    runs
}

/// The checkpoints of a run: `best` and `last` first, then the kept ones in step order.
pub fn checkpoint_names(run: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(run.join("checkpoints")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().to_string()))
        .collect();
    names.sort_by_key(|n| (n != "best", n != "last", n.clone()));
    names
}

impl ModelsPanel {
    pub fn new(form: ModelsForm) -> Self {
        let mut p = Self {
            form,
            cached: Vec::new(),
            runs: Vec::new(),
            requested: None,
            picked: None,
        };
        p.rescan();
        p
    }

    pub fn rescan(&mut self) {
        self.cached = cached_models(false);
        self.runs = find_runs(Path::new(&self.form.runs_dir));
    }

    fn load(&mut self, spec: String, out: &mut Outbox) {
        let job = out.job();
        self.form.spec = spec.clone();
        self.requested = Some(job);
        out.commands.push(Command::LoadModel {
            job,
            spec,
            weights: self.form.weights,
            adapter: None,
            checkpoint: None,
        });
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, out: &mut Outbox, busy: bool) {
        if let Some(rx) = &self.picked {
            if let Ok(choice) = rx.try_recv() {
                if let Some(p) = choice {
                    self.form.spec = p.display().to_string();
                }
                self.picked = None;
            }
        }
        ui.horizontal(|ui| {
            field(
                ui,
                "Model",
                "A Hub repo id, a local MusicGen folder, or a training run.",
                |ui| ui.add(egui::TextEdit::singleline(&mut self.form.spec).desired_width(360.0)),
            );
            if ui
                .add_enabled(self.picked.is_none(), egui::Button::new("Browse…"))
                .clicked()
            {
                let (tx, rx) = mpsc::channel();
                self.picked = Some(rx);
                // The system dialog blocks; keep it off the UI thread.
                std::thread::spawn(move || {
                    let _ = tx.send(rfd::FileDialog::new().pick_folder());
                });
            }
            egui::ComboBox::from_id_salt("weights")
                .selected_text(format!("{:?}", self.form.weights))
                .show_ui(ui, |ui| {
                    for w in [WeightMode::F32, WeightMode::Q8, WeightMode::Q4k] {
                        ui.selectable_value(&mut self.form.weights, w, format!("{w:?}"));
                    }
                })
                .response
                .on_hover_text("Inference precision: f32 exact; q8 / q4k faster, approximate.");
            if ui
                .add_enabled(!busy, egui::Button::new("Load model"))
                .clicked()
            {
                let spec = self.form.spec.trim().to_string();
                self.load(spec, out);
            }
        });
        ui.horizontal(|ui| {
            ui.label("Offline demo:");
            if ui
                .add_enabled(
                    !busy,
                    egui::Button::new("Music Transformer (Bach chorales)"),
                )
                .on_hover_text(
                    "Shipped with tunelab: a small model trained by tunelab on the chorales.",
                )
                .clicked()
            {
                self.load(crate::demo::model_dir().display().to_string(), out);
            }
        });
        ui.horizontal(|ui| {
            ui.label("Published:");
            for id in [
                "facebook/musicgen-small",
                "facebook/musicgen-medium",
                "facebook/musicgen-large",
            ] {
                if ui.add_enabled(!busy, egui::Button::new(id)).clicked() {
                    self.load(id.to_string(), out);
                }
            }
        });
        ui.separator();
        ui.horizontal(|ui| {
            ui.strong("In the Hugging Face cache");
            if ui.button("Rescan").clicked() {
                self.rescan();
            }
        });
        if self.cached.is_empty() {
            ui.label("Nothing yet (models download into the standard HF cache on first load).");
        }
        for m in self.cached.clone() {
            ui.horizontal(|ui| {
                ui.label(format!(
                    "{} · {:.2} GB · {}",
                    m.repo_id,
                    m.size_bytes as f64 / 1e9,
                    m.model_type
                ));
                if ui.add_enabled(!busy, egui::Button::new("Load")).clicked() {
                    self.load(m.dir.display().to_string(), out);
                }
            });
        }
        ui.separator();
        ui.horizontal(|ui| {
            field(
                ui,
                "Runs folder",
                "Training runs found here appear as models.",
                |ui| ui.text_edit_singleline(&mut self.form.runs_dir),
            );
            if ui.button("Rescan runs").clicked() {
                self.runs = find_runs(Path::new(&self.form.runs_dir));
            }
        });
        if self.runs.is_empty() {
            ui.label("No runs there yet.");
        }
        for r in self.runs.clone() {
            ui.horizontal(|ui| {
                ui.label(format!(
                    "{} · {} · {} on {}",
                    r.dir.display(),
                    r.family,
                    r.mode,
                    r.base
                ));
                if ui
                    .add_enabled(!busy, egui::Button::new("Load run"))
                    .clicked()
                {
                    self.load(r.dir.display().to_string(), out);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egui_kittest::kittest::Queryable;
    use egui_kittest::Harness;

    struct S {
        panel: ModelsPanel,
        out: Outbox,
    }

    #[test]
    fn published_models_and_runs_load_through_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("my-lora");
        std::fs::create_dir_all(run.join("checkpoints")).unwrap();
        std::fs::create_dir_all(run.join("model")).unwrap();
        std::fs::write(run.join("model/config.json"), "{}").unwrap();
        std::fs::write(
            run.join("config.json"),
            r#"{"mode": "lora", "model": "facebook/musicgen-small"}"#,
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("not-a-run")).unwrap();
        let form = ModelsForm {
            runs_dir: dir.path().display().to_string(),
            ..Default::default()
        };
        let mut h = Harness::new_ui_state(
            |ui, s: &mut S| s.panel.ui(ui, &mut s.out, false),
            S {
                panel: ModelsPanel::new(form),
                out: Outbox::default(),
            },
        );
        assert_eq!(h.state().panel.runs.len(), 1);
        assert!(h.state().panel.runs[0].checkpoints.is_empty());
        assert!(h
            .query_by_label_contains("lora on facebook/musicgen-small")
            .is_some());
        h.get_by_label("facebook/musicgen-medium").click();
        h.run();
        assert!(matches!(
            h.state().out.commands.as_slice(),
            [Command::LoadModel { spec, .. }] if spec == "facebook/musicgen-medium"
        ));
        h.state_mut().out.commands.clear();
        h.get_by_label("Load run").click();
        h.run();
        assert!(matches!(
            h.state().out.commands.as_slice(),
            [Command::LoadModel { spec, .. }] if spec.ends_with("my-lora")
        ));
    }
}
