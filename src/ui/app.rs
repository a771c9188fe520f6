//! The studio shell: tabs Generate · Dataset · Train · Listen. Engine events are drained in
//! `logic` (≤ 10 ms a frame) and routed to the panels; panels queue commands in an outbox that
//! the shell sends at the end of the frame; nothing long runs on the UI thread.

use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::{EngineHandle, Event, JobId, JobOutput};
use crate::ui::dataset::{DatasetForm, DatasetPanel};
use crate::ui::evaluate::{EvalForm, EvalPanel};
use crate::ui::generate::{GenerateForm, GeneratePanel};
use crate::ui::listen::{ListenForm, ListenPanel};
use crate::ui::models::{ModelsForm, ModelsPanel};
use crate::ui::train::{Outbox, TrainForm, TrainPanel};

/// Form values persisted across restarts.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct State {
    pub tab: Tab,
    pub theme: Theme,
    pub generate: GenerateForm,
    pub train: TrainForm,
    pub dataset: DatasetForm,
    pub listen: ListenForm,
    pub models: ModelsForm,
    pub evaluate: EvalForm,
}

/// Light or dark: the system's (the default, following it live) or fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Theme {
    #[default]
    System,
    Light,
    Dark,
}

impl Theme {
    pub fn preference(self) -> egui::ThemePreference {
        match self {
            Theme::System => egui::ThemePreference::System,
            Theme::Light => egui::ThemePreference::Light,
            Theme::Dark => egui::ThemePreference::Dark,
        }
    }
}

/// The panels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Tab {
    Models,
    #[default]
    Generate,
    Dataset,
    Train,
    Evaluate,
    Listen,
}

impl Default for State {
    fn default() -> Self {
        Self {
            tab: Tab::Generate,
            theme: Theme::System,
            generate: GenerateForm::default(),
            train: TrainForm::default(),
            dataset: DatasetForm::default(),
            listen: ListenForm::default(),
            models: ModelsForm::default(),
            evaluate: EvalForm::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Busy {
    Idle,
    Loading {
        job: JobId,
        file: String,
        done: u64,
        total: u64,
    },
}

pub struct TunelabApp {
    state: State,
    engine: Option<EngineHandle>,
    events: Receiver<Event>,
    busy: Busy,
    status: String,
    outbox: Outbox,
    train: TrainPanel,
    dataset: DatasetPanel,
    listen: ListenPanel,
    generate: GeneratePanel,
    models: ModelsPanel,
    evaluate: EvalPanel,
}

impl TunelabApp {
    pub fn new(cc: &eframe::CreationContext<'_>, tab: Option<Tab>) -> Self {
        let mut state: State = cc
            .storage
            .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
            .unwrap_or_default();
        if let Some(t) = tab {
            state.tab = t;
        }
        let ctx = cc.egui_ctx.clone();
        let mut app = Self::with_waker(state, Arc::new(move || ctx.request_repaint()));
        app.load_local_model();
        app
    }

    /// Loads the model named in the form when it is a local folder (the demo on first start):
    /// nothing to download, so the studio opens ready to generate.
    pub fn load_local_model(&mut self) {
        let spec = self.generate.form.model_spec.clone();
        if !std::path::Path::new(&spec).is_dir() {
            return;
        }
        self.generate.load(&mut self.outbox, spec, true);
        self.track_load();
        self.flush_outbox();
    }

    /// Starts the Train tab's run, as its Start button does (benchmarks).
    pub fn start_training(&mut self) {
        self.train.start(&mut self.outbox);
        self.flush_outbox();
    }

    /// Generates with the Generate tab's form, as its button does (benchmarks).
    pub fn generate_now(&mut self) {
        self.generate.generate(&mut self.outbox);
        self.flush_outbox();
    }

    pub fn set_tab(&mut self, tab: Tab) {
        self.state.tab = tab;
    }

    /// Is a load, a generation or a training under way?
    pub fn is_working(&self) -> bool {
        self.busy != Busy::Idle || self.generate.busy() || self.train.job.is_some()
    }

    /// Shows the progress of a load the Generate panel asked for.
    fn track_load(&mut self) {
        if let Some(job) = self.generate.requested.take() {
            self.busy = Busy::Loading {
                job,
                file: String::new(),
                done: 0,
                total: 0,
            };
        }
    }

    /// Builds the app around a fresh engine; `wake` is called after each engine event.
    pub fn with_waker(state: State, wake: crate::engine::worker::Waker) -> Self {
        let (tx, rx) = mpsc::channel();
        let (engine, status) = match EngineHandle::spawn(tx, wake) {
            Ok(e) => (Some(e), "No model loaded.".to_string()),
            Err(e) => (None, format!("The engine could not start: {e}")),
        };
        let train = TrainPanel::new(state.train.clone()).with_sink(crate::audio::default_sink().0);
        let dataset = DatasetPanel::new(state.dataset.clone(), crate::audio::default_sink().0);
        let (sink, notice) = crate::audio::default_sink();
        let listen = ListenPanel::new(state.listen.clone(), sink);
        let (player, _) = crate::audio::default_sink();
        let generate = GeneratePanel::new(state.generate.clone(), player);
        let models = ModelsPanel::new(state.models.clone());
        let evaluate = EvalPanel::new(state.evaluate.clone());
        let status = match notice {
            Some(n) => format!("{status} {n}"),
            None => status,
        };
        Self {
            state,
            engine,
            events: rx,
            busy: Busy::Idle,
            status,
            outbox: Outbox::default(),
            train,
            dataset,
            listen,
            generate,
            models,
            evaluate,
        }
    }

    /// Sends what the panels queued this frame.
    fn flush_outbox(&mut self) {
        for job in std::mem::take(&mut self.outbox.cancel) {
            if let Some(e) = &self.engine {
                e.cancel(job);
            }
        }
        for cmd in self.outbox.commands.drain(..) {
            if let Some(e) = &self.engine {
                e.send(cmd);
            }
        }
    }

    /// One frame without eframe (tests): drain events, then draw.
    pub fn frame(&mut self, ui: &mut egui::Ui) {
        self.drain_events();
        self.shell(ui);
    }

    fn shell(&mut self, ui: &mut egui::Ui) {
        // Files dropped on the window: the first becomes the Dataset tab's import source.
        let dropped: Vec<std::path::PathBuf> = ui.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        if let Some(p) = dropped.first() {
            self.status = self.dataset.use_dropped(p);
            self.state.tab = Tab::Dataset;
        }
        ui.horizontal(|ui| {
            ui.heading("tunelab");
            ui.separator();
            for (tab, label) in [
                (Tab::Models, "Models"),
                (Tab::Generate, "Generate"),
                (Tab::Dataset, "Dataset"),
                (Tab::Train, "Train"),
                (Tab::Evaluate, "Evaluate"),
                (Tab::Listen, "Listen"),
            ] {
                ui.selectable_value(&mut self.state.tab, tab, label);
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                for (theme, label) in [
                    (Theme::Dark, "Dark"),
                    (Theme::Light, "Light"),
                    (Theme::System, "System theme"),
                ] {
                    ui.selectable_value(&mut self.state.theme, theme, label);
                }
            });
        });
        let theme = self.state.theme.preference();
        if ui.ctx().options(|o| o.theme_preference) != theme {
            ui.ctx().set_theme(theme);
        }
        ui.separator();
        if ui.input(|i| !i.raw.hovered_files.is_empty()) {
            ui.strong("Drop a folder of audio or MIDI files (or a data.jsonl) to import it.");
        }
        match self.state.tab {
            Tab::Models => {
                let busy = self.busy != Busy::Idle || self.generate.busy();
                self.models.ui(ui, &mut self.outbox, busy);
                if let Some(job) = self.models.requested.take() {
                    self.busy = Busy::Loading {
                        job,
                        file: String::new(),
                        done: 0,
                        total: 0,
                    };
                }
            }
            Tab::Generate => {
                if self.generate.runs != self.models.runs {
                    self.generate.runs = self.models.runs.clone();
                }
                let busy = self.busy != Busy::Idle;
                self.generate.ui(ui, &mut self.outbox, busy);
                self.track_load();
            }
            Tab::Dataset => {
                self.dataset.ui(ui, &mut self.outbox);
                if let Some(ds) = self.dataset.train_on.take() {
                    self.train.form.set_dataset(ds);
                    self.state.tab = Tab::Train;
                }
            }
            Tab::Train => self.train.ui(ui, &mut self.outbox),
            Tab::Evaluate => self.evaluate.ui(ui, &mut self.outbox),
            Tab::Listen => self.listen.ui(ui, &mut self.outbox),
        }
        if let Some(s) = self.generate.status.take() {
            self.status = s;
        }
        self.state.generate = self.generate.form.clone();
        self.state.train = self.train.form.clone();
        self.state.dataset = self.dataset.form.clone();
        self.state.listen = self.listen.form.clone();
        self.state.models = self.models.form.clone();
        self.state.evaluate = self.evaluate.form.clone();
        self.status_bar(ui);
        self.flush_outbox();
    }

    /// Applies engine events, at most ~10 ms per frame.
    fn drain_events(&mut self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(10) {
            let Ok(ev) = self.events.try_recv() else {
                break;
            };
            // Ownership is decided before the panels clear their job ids.
            let owned = matches!(&ev, Event::Train { .. })
                || matches!(&ev, Event::Progress { .. })
                || matches!(&ev, Event::Done { job, .. }
                    if Some(*job) == self.train.job
                        || Some(*job) == self.dataset.job
                        || Some(*job) == self.evaluate.job
                        || self.listen.owns(*job));
            self.train.on_event(&ev);
            self.dataset.on_event(&ev);
            self.evaluate.on_event(&ev);
            self.listen.on_event(&ev);
            if owned {
                continue;
            }
            match ev {
                Event::Download {
                    job,
                    file,
                    done,
                    total,
                } => {
                    self.busy = Busy::Loading {
                        job,
                        file,
                        done,
                        total,
                    };
                }
                Event::GenerateStep { .. } => self.generate.on_event(&ev),
                Event::Train { .. } | Event::Progress { .. } => {}
                Event::Done { job, .. } if self.generate.owns(job) => {
                    self.generate.on_event(&ev);
                    if let Some(s) = self.generate.status.take() {
                        self.status = s;
                    }
                }
                Event::Done { job, result } => {
                    self.busy = Busy::Idle;
                    match result {
                        Ok(JobOutput::ModelLoaded(info)) => {
                            self.status = format!("Loaded: {}", info.description);
                            self.generate.model_loaded(job, info);
                        }
                        Ok(_) => {}
                        Err(e) => self.status = format!("Error: {e}"),
                    }
                }
            }
        }
        self.generate.poll();
        self.dataset.poll();
    }

    fn status_bar(&mut self, ui: &mut egui::Ui) {
        ui.separator();
        match &self.busy {
            Busy::Idle => {}
            Busy::Loading {
                file, done, total, ..
            } => {
                let f = if *total > 0 {
                    *done as f32 / *total as f32
                } else {
                    0.0
                };
                ui.add(egui::ProgressBar::new(f).text(format!("loading {file}")));
            }
        }
        if let Some((f, text)) = self.generate.progress() {
            ui.add(egui::ProgressBar::new(f).text(text));
        }
        ui.label(&self.status);
    }
}

impl eframe::App for TunelabApp {
    fn logic(&mut self, _ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.drain_events();
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::CentralPanel::default().show(ui, |ui| self.shell(ui));
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egui_kittest::kittest::Queryable;
    use egui_kittest::Harness;

    /// A file dropped by the test (the windowing integration makes these in the studio).
    #[derive(Debug)]
    struct Dropped(std::path::PathBuf);

    impl egui::DroppedFile for Dropped {
        fn path(&self) -> &std::path::Path {
            &self.0
        }
        fn bytes(&self) -> Result<Vec<u8>, String> {
            std::fs::read(&self.0).map_err(|e| e.to_string())
        }
    }

    fn app(state: State) -> Harness<'static, TunelabApp> {
        Harness::new_ui_state(
            |ui, app: &mut TunelabApp| app.frame(ui),
            TunelabApp::with_waker(state, Arc::new(|| {})),
        )
    }

    #[test]
    fn a_folder_dropped_on_the_window_becomes_the_dataset_source() {
        let dir = tempfile::tempdir().unwrap();
        let songs = dir.path().join("my songs");
        std::fs::create_dir_all(&songs).unwrap();
        let mut state = State::default();
        state.dataset.dataset = dir.path().join("datasets/old").display().to_string();
        let mut h = app(state);
        assert_eq!(h.state().state.tab, Tab::Generate);
        h.input_mut()
            .dropped_files
            .push(Arc::new(Dropped(songs.clone())));
        h.step();
        h.step();
        let a = h.state();
        assert_eq!(a.state.tab, Tab::Dataset);
        assert_eq!(a.dataset.form.source, songs.display().to_string());
        assert_eq!(
            a.dataset.form.dataset,
            dir.path().join("datasets/my songs").display().to_string()
        );
        assert!(h.query_by_label_contains("press Import").is_some());
        // A dropped file stands for its folder.
        let file = songs.join("a.wav");
        h.input_mut().dropped_files.push(Arc::new(Dropped(file)));
        h.step();
        assert_eq!(h.state().dataset.form.source, songs.display().to_string());
    }

    #[test]
    fn the_theme_follows_the_system_unless_fixed() {
        let mut h = app(State::default());
        h.step();
        assert_eq!(
            h.ctx.options(|o| o.theme_preference),
            egui::ThemePreference::System
        );
        h.get_by_label("Dark").click();
        h.step();
        h.step();
        assert_eq!(h.state().state.theme, Theme::Dark);
        assert_eq!(
            h.ctx.options(|o| o.theme_preference),
            egui::ThemePreference::Dark
        );
        h.get_by_label("System theme").click();
        h.step();
        h.step();
        assert_eq!(
            h.ctx.options(|o| o.theme_preference),
            egui::ThemePreference::System
        );
    }
}
