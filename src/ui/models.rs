//! The Models panel: the published MusicGen checkpoints (downloaded into the standard HF cache
//! with progress), what the cache already holds (with size), tunelab training runs (a run loads
//! as its base model with its weights; a LoRA run's adapter stays unmerged), and any local
//! folder (typed, or picked with the system dialog). A load goes to the engine with a request
//! that the shell show its progress; the runs found are announced to the shell, which hands
//! them to the Generate panel's model picker.

use std::path::Path;

use crate::engine::{Command, Event, JobId, JobOutput};
use crate::models::device::{DeviceChoice, DeviceInfo, Precision};
use crate::models::hub::{cached_models, CachedModel};
use crate::ui::common::{field, weights_combo};
use crate::ui::forms::ModelsForm;
use crate::ui::panel::Outbox;
use crate::ui::panel::{ModelBusy, Panel, Request};
use crate::ui::picker::{path_field, readable, PathKind};
use crate::ui::runs::{find_runs, RunEntry};
use crate::ui::state::State;
use crate::ui::status::Status;
use crate::ui::tab::Tab;

pub struct ModelsPanel {
    pub form: ModelsForm,
    /// Where the engine runs now, as it last said (`None` until it has).
    pub device: Option<(DeviceInfo, Precision)>,
    /// The device change asked of the engine and not yet answered.
    device_job: Option<JobId>,
    pub cached: Vec<CachedModel>,
    pub runs: Vec<RunEntry>,
    /// The runs changed since they were last announced to the shell.
    runs_changed: bool,
}

impl ModelsPanel {
    pub fn new(form: ModelsForm) -> Self {
        let mut p = Self {
            form,
            device: None,
            device_job: None,
            cached: Vec::new(),
            runs: Vec::new(),
            runs_changed: false,
        };
        p.rescan();
        p
    }

    pub fn rescan(&mut self) {
        self.cached = cached_models(false);
        self.rescan_runs();
    }

    fn rescan_runs(&mut self) {
        self.runs = find_runs(Path::new(&self.form.runs_dir));
        self.runs_changed = true;
    }

    /// Asks the engine to run on the form's device and precision (from now on; the loaded
    /// model is dropped there and has to be loaded again).
    pub fn set_device(&mut self, out: &mut Outbox) {
        let job = out.job();
        out.send(Command::SetDevice {
            job,
            device: self.form.device,
            precision: self.form.precision,
            tf32: false,
        });
        self.device_job = Some(job);
    }

    /// The device picker: the choices, and what the engine runs on now (name, free memory).
    fn device_ui(&mut self, ui: &mut egui::Ui, out: &mut Outbox, busy: bool) {
        ui.horizontal(|ui| {
            let before = (self.form.device, self.form.precision);
            field(
                ui,
                "Device",
                "Where models load, generate, train and evaluate (auto: the first GPU that \
                 opens, else the CPU).",
                |ui| {
                    egui::ComboBox::from_id_salt("device")
                        .selected_text(self.form.device.to_string())
                        .show_ui(ui, |ui| {
                            for d in [
                                DeviceChoice::Auto,
                                DeviceChoice::Cpu,
                                DeviceChoice::Cuda(0),
                                DeviceChoice::Cuda(1),
                                DeviceChoice::Metal(0),
                            ] {
                                ui.selectable_value(&mut self.form.device, d, d.to_string());
                            }
                        })
                        .response
                },
            );
            let name = |p: Option<Precision>| match p {
                Some(p) => p.to_string(),
                None => "device default".into(),
            };
            field(
                ui,
                "Precision",
                "The model's compute precision: f32 on the CPU; bf16 (or f16 below compute \
                 capability 8.0) by default on a GPU.",
                |ui| {
                    egui::ComboBox::from_id_salt("precision")
                        .selected_text(name(self.form.precision))
                        .show_ui(ui, |ui| {
                            for p in [
                                None,
                                Some(Precision::F32),
                                Some(Precision::Bf16),
                                Some(Precision::F16),
                            ] {
                                ui.selectable_value(&mut self.form.precision, p, name(p));
                            }
                        })
                        .response
                },
            );
            if (self.form.device, self.form.precision) != before && !busy {
                self.set_device(out);
            }
            match (&self.device, self.device_job) {
                (_, Some(_)) => {
                    ui.spinner();
                }
                (Some((info, p)), None) => {
                    ui.label(format!("running on {info} · {p}"));
                }
                (None, None) => {}
            }
        });
    }

    fn load(&mut self, spec: String, out: &mut Outbox) {
        let job = out.job();
        self.form.spec = spec.clone();
        out.send(Command::LoadModel {
            job,
            spec: spec.clone(),
            weights: self.form.weights,
            adapter: None,
            checkpoint: None,
        });
        out.request(Request::TrackLoad { job, what: spec });
    }

    fn draw(&mut self, ui: &mut egui::Ui, out: &mut Outbox, busy: bool) {
        ui.strong("Where the engine runs");
        self.device_ui(ui, out, busy);
        ui.separator();
        ui.strong("Load a model");
        ui.horizontal(|ui| {
            path_field(
                ui,
                "Model",
                "A Hub repo id, a local MusicGen folder, or a training run.",
                &mut self.form.spec,
                PathKind::Model,
                None,
            );
            weights_combo(ui, "weights", &mut self.form.weights);
            if ui
                .add_enabled(!busy, egui::Button::new("Load model"))
                .on_hover_text("Load the model above into the engine (a Hub id downloads once).")
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
                if ui
                    .add_enabled(!busy, egui::Button::new("Load"))
                    .on_hover_text("Load this cached model.")
                    .clicked()
                {
                    self.load(m.dir.display().to_string(), out);
                }
            });
        }
        ui.separator();
        ui.strong("Training runs");
        ui.horizontal(|ui| {
            path_field(
                ui,
                "Runs folder",
                "Training runs found here appear as models.",
                &mut self.form.runs_dir,
                PathKind::Folder,
                None,
            );
            if ui.button("Rescan runs").clicked() {
                self.rescan_runs();
            }
        });
        if self.runs.is_empty() {
            ui.label("No runs there yet.");
        }
        for r in self.runs.clone() {
            ui.horizontal(|ui| {
                let name = |spec: &str| {
                    readable(ui.ctx(), spec, PathKind::Model)
                        .map(|d| d.name)
                        .unwrap_or_else(|| spec.to_string())
                };
                let run = name(&r.dir.display().to_string());
                let base = name(&r.base);
                ui.label(format!("{run} · {} on {base}", r.family))
                    .on_hover_text(format!("{}\nbase: {}", r.dir.display(), r.base));
                if ui
                    .add_enabled(!busy, egui::Button::new("Load run"))
                    .on_hover_text("Load the run's last checkpoint on its base model.")
                    .clicked()
                {
                    self.load(r.dir.display().to_string(), out);
                }
            });
        }
    }
}

impl Panel for ModelsPanel {
    fn tab(&self) -> Tab {
        Tab::Models
    }

    fn ui(&mut self, ui: &mut egui::Ui, model: ModelBusy, out: &mut Outbox) {
        self.draw(ui, out, model.any());
    }

    /// Its device changes; loads are the shell's to follow (and the Generate panel's to take).
    fn on_event(&mut self, ev: &Event, out: &mut Outbox) -> bool {
        match ev {
            Event::Done { job, result } if Some(*job) == self.device_job => {
                self.device_job = None;
                match result {
                    Ok(JobOutput::DeviceReady { device, precision }) => {
                        out.status(Status::Info(format!(
                            "Running on {device} · {precision}. Load a model to use it there."
                        )));
                        self.device = Some((device.clone(), *precision));
                    }
                    Ok(_) => {}
                    Err(e) => out.status(Status::Error(format!("Device: {e}"))),
                }
                true
            }
            _ => false,
        }
    }

    fn poll(&mut self, out: &mut Outbox) {
        if std::mem::take(&mut self.runs_changed) {
            out.request(Request::Runs(self.runs.clone()));
        }
    }

    fn jobs(&self) -> Vec<JobId> {
        self.device_job.into_iter().collect()
    }

    fn save(&self, state: &mut State) {
        state.models = self.form.clone();
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
            |ui, s: &mut S| {
                s.panel.poll(&mut s.out);
                s.panel.ui(ui, ModelBusy::default(), &mut s.out)
            },
            S {
                panel: ModelsPanel::new(form),
                out: Outbox::default(),
            },
        );
        assert_eq!(h.state().panel.runs.len(), 1);
        assert!(h.state().panel.runs[0].checkpoints.is_empty());
        // By name (the run's folder, mode and step; its base), the full path in the tooltip.
        assert!(h
            .query_by_label_contains(
                "my-lora · lora · no step yet · MusicGen on facebook/musicgen-small"
            )
            .is_some());
        assert!(h
            .query_by_label_contains(&dir.path().display().to_string())
            .is_none());
        // The runs found are announced once, for the Generate panel's picker.
        let announced: Vec<&Vec<RunEntry>> = h
            .state()
            .out
            .requests()
            .iter()
            .filter_map(|r| match r {
                Request::Runs(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(announced, [&h.state().panel.runs]);
        h.state_mut().out.take();
        h.get_by_label("facebook/musicgen-medium").click();
        h.run();
        assert!(matches!(
            h.state().out.commands(),
            [Command::LoadModel { spec, .. }] if spec == "facebook/musicgen-medium"
        ));
        // The shell is asked to follow the load.
        assert!(matches!(
            h.state().out.requests(),
            [Request::TrackLoad { what, .. }] if what == "facebook/musicgen-medium"
        ));
        h.state_mut().out.take();
        h.get_by_label("Load run").click();
        h.run();
        assert!(matches!(
            h.state().out.commands(),
            [Command::LoadModel { spec, .. }] if spec.ends_with("my-lora")
        ));
    }

    #[test]
    fn the_device_picker_moves_the_engine_and_shows_where_it_runs() {
        let mut panel = ModelsPanel::new(ModelsForm {
            device: DeviceChoice::Cpu,
            precision: Some(Precision::F32),
            ..Default::default()
        });
        let mut out = Outbox::default();
        panel.set_device(&mut out);
        let job = match out.commands() {
            [Command::SetDevice {
                job,
                device: DeviceChoice::Cpu,
                precision: Some(Precision::F32),
                tf32: false,
            }] => *job,
            other => panic!("{other:?}"),
        };
        assert_eq!(panel.jobs(), [job]);
        out.take();
        let info = crate::models::device::describe(&candle_core::Device::Cpu);
        let done = Event::Done {
            job,
            result: Ok(JobOutput::DeviceReady {
                device: info.clone(),
                precision: Precision::F32,
            }),
        };
        assert!(panel.on_event(&done, &mut out), "its own job");
        assert_eq!(panel.device, Some((info, Precision::F32)));
        assert!(panel.jobs().is_empty());
        assert!(matches!(out.last_status(), Some(Status::Info(s)) if s.contains("Running on cpu")));
        // A refusal says why, and the panel keeps what it had.
        panel.set_device(&mut out);
        let job = panel.jobs()[0];
        out.take();
        let refused = Event::Done {
            job,
            result: Err("this build has no CUDA support".into()),
        };
        assert!(panel.on_event(&refused, &mut out));
        assert!(matches!(out.last_status(), Some(Status::Error(s)) if s.contains("no CUDA")));
        assert!(panel.device.is_some());
    }
}
