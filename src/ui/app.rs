//! The studio shell: the tab bar (one tab per [`Tab`]: Models · Generate · Dataset · Train ·
//! Evaluate · Listen), the panel of the tab shown, and the status bar. Engine events are drained
//! in `logic` (≤ 10 ms a frame) and offered to every panel; panels queue commands and requests
//! in one outbox that the shell applies at the end of the frame (the one place that talks to
//! the engine, cancellations included). The audio device is opened once and shared by the
//! panels. The panels' forms are collected into [`State`] only when eframe saves.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::audio::{AudioSink, SharedPlayer};
use crate::engine::{EngineHandle, Event, JobId, JobOutput};
use crate::ui::dataset::DatasetPanel;
use crate::ui::evaluate::EvalPanel;
use crate::ui::generate::GeneratePanel;
use crate::ui::listen::ListenPanel;
use crate::ui::models::ModelsPanel;
use crate::ui::panel::Outbox;
use crate::ui::panel::{ModelBusy, Panel, Request};
use crate::ui::state::{State, Theme};
use crate::ui::status::Status;
use crate::ui::tab::Tab;
use crate::ui::train::TrainPanel;

/// A model load the status bar follows.
#[derive(Debug, Clone, PartialEq)]
struct Loading {
    job: JobId,
    file: String,
    done: u64,
    total: u64,
}

impl Loading {
    fn new(job: JobId) -> Self {
        Self {
            job,
            file: String::new(),
            done: 0,
            total: 0,
        }
    }
}

/// The six panels, one per tab.
struct Panels {
    models: ModelsPanel,
    generate: GeneratePanel,
    dataset: DatasetPanel,
    train: TrainPanel,
    evaluate: EvalPanel,
    listen: ListenPanel,
}

impl Panels {
    fn get(&self, tab: Tab) -> &dyn Panel {
        match tab {
            Tab::Models => &self.models,
            Tab::Generate => &self.generate,
            Tab::Dataset => &self.dataset,
            Tab::Train => &self.train,
            Tab::Evaluate => &self.evaluate,
            Tab::Listen => &self.listen,
        }
    }

    fn get_mut(&mut self, tab: Tab) -> &mut dyn Panel {
        match tab {
            Tab::Models => &mut self.models,
            Tab::Generate => &mut self.generate,
            Tab::Dataset => &mut self.dataset,
            Tab::Train => &mut self.train,
            Tab::Evaluate => &mut self.evaluate,
            Tab::Listen => &mut self.listen,
        }
    }
}

pub struct TunelabApp {
    tab: Tab,
    theme: Theme,
    engine: Option<EngineHandle>,
    events: Receiver<Event>,
    loading: Option<Loading>,
    status: Status,
    outbox: Outbox,
    panels: Panels,
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
        app.open_device();
        app.load_local_model();
        app
    }

    /// Moves the engine to the device the Models form names (before anything loads).
    pub fn open_device(&mut self) {
        self.panels.models.set_device(&mut self.outbox);
        self.apply();
    }

    /// Builds the app around a fresh engine and the default audio device; `wake` is called
    /// after each engine event.
    pub fn with_waker(state: State, wake: crate::engine::worker::Waker) -> Self {
        Self::with_audio(state, wake, crate::audio::default_sink)
    }

    /// As [`Self::with_waker`], with the audio output opened by `open_sink` (once; every panel
    /// plays through it), which also says what to tell the user about it.
    pub fn with_audio(
        state: State,
        wake: crate::engine::worker::Waker,
        open_sink: impl FnOnce() -> (Box<dyn AudioSink>, Option<String>),
    ) -> Self {
        let (tx, rx) = mpsc::channel();
        let (engine, status) = match EngineHandle::spawn(tx, wake) {
            Ok(e) => (Some(e), Status::Info("No model loaded.".into())),
            Err(e) => (
                None,
                Status::Error(format!("The engine could not start: {e}")),
            ),
        };
        let (sink, notice) = open_sink();
        let status = match notice {
            Some(n) if !status.is_error() => Status::Warning(format!("{} {n}", status.text())),
            _ => status,
        };
        let audio = SharedPlayer::new(sink);
        let panels = Panels {
            models: ModelsPanel::new(state.models),
            generate: GeneratePanel::new(state.generate, audio.handle()),
            dataset: DatasetPanel::new(state.dataset, audio.handle()),
            train: TrainPanel::new(state.train, audio.handle()),
            evaluate: EvalPanel::new(state.evaluate),
            listen: ListenPanel::new(state.listen, audio.handle()),
        };
        Self {
            tab: state.tab,
            theme: state.theme,
            engine,
            events: rx,
            loading: None,
            status,
            outbox: Outbox::default(),
            panels,
        }
    }

    /// Loads the model named in the Generate form when it is a local folder (the demo on first
    /// start): nothing to download, so the studio opens ready to generate.
    pub fn load_local_model(&mut self) {
        if self.panels.generate.load_local(&mut self.outbox) {
            self.apply();
        }
    }

    /// Starts the Train tab's run, as its Start button does (benchmarks).
    pub fn start_training(&mut self) {
        self.panels.train.start(&mut self.outbox);
        self.apply();
    }

    /// Generates with the Generate tab's form, as its button does (benchmarks).
    pub fn generate_now(&mut self) {
        self.panels.generate.generate(&mut self.outbox);
        self.apply();
    }

    pub fn tab(&self) -> Tab {
        self.tab
    }

    pub fn set_tab(&mut self, tab: Tab) {
        self.tab = tab;
    }

    /// The status line.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Is a load, or a job of any panel, under way?
    pub fn is_working(&self) -> bool {
        self.loading.is_some()
            || Tab::ALL
                .iter()
                .any(|t| !self.panels.get(*t).jobs().is_empty())
    }

    /// What eframe persists: the tab, the theme and every panel's form as they are now.
    pub fn persisted(&self) -> State {
        let mut state = State {
            tab: self.tab,
            theme: self.theme,
            ..Default::default()
        };
        for t in Tab::ALL {
            self.panels.get(t).save(&mut state);
        }
        state
    }

    /// One frame without eframe (tests, benchmarks): `logic`, then `ui`.
    pub fn frame(&mut self, ui: &mut egui::Ui) {
        self.logic();
        self.draw(ui);
    }

    /// Every frame, shown or not: engine events, the panels' helper threads.
    fn logic(&mut self) {
        self.drain_events();
        for t in Tab::ALL {
            self.panels.get_mut(t).poll(&mut self.outbox);
        }
        self.apply();
    }

    /// Applies engine events, at most ~10 ms per frame.
    fn drain_events(&mut self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(10) {
            let Ok(ev) = self.events.try_recv() else {
                break;
            };
            self.route(&ev);
        }
    }

    /// Offers `ev` to every panel; what none of them claims (model loads, failures of jobs
    /// no panel follows) is the shell's.
    fn route(&mut self, ev: &Event) {
        let mut owned = false;
        for t in Tab::ALL {
            owned |= self.panels.get_mut(t).on_event(ev, &mut self.outbox);
        }
        if owned {
            return;
        }
        match ev {
            Event::Download {
                job,
                file,
                done,
                total,
            } => {
                self.loading = Some(Loading {
                    job: *job,
                    file: file.clone(),
                    done: *done,
                    total: *total,
                });
            }
            Event::Done { result, .. } => {
                self.loading = None;
                match result {
                    Ok(JobOutput::ModelLoaded(info)) => {
                        self.status = Status::Info(format!("Loaded: {}", info.description));
                    }
                    Ok(_) => {}
                    Err(e) => self.status = Status::Error(format!("Error: {e}")),
                }
            }
            Event::GenerateStep { .. }
            | Event::Audio { .. }
            | Event::Train { .. }
            | Event::Progress { .. } => {}
        }
    }

    /// Sends what the panels queued and applies what they asked of the shell: the end of the
    /// frame.
    fn apply(&mut self) {
        let queued = self.outbox.take();
        for job in queued.cancels {
            self.cancel(job);
        }
        if let Some(e) = &self.engine {
            for cmd in queued.commands {
                e.send(cmd);
            }
        }
        for r in queued.requests {
            match r {
                Request::Status(s) => self.status = s,
                Request::TrackLoad { job, what } => {
                    self.loading = Some(Loading::new(job));
                    self.status = Status::Working(format!("Loading {what}…"));
                }
                Request::TrainOn(dataset) => {
                    self.panels.train.set_dataset(dataset);
                    self.tab = Tab::Train;
                }
                Request::Runs(runs) => self.panels.generate.set_runs(runs),
            }
        }
    }

    /// Cancels `job`, the one way the studio cancels anything: the engine stops that job (or
    /// drops it unstarted), never another.
    fn cancel(&self, job: JobId) {
        if let Some(e) = &self.engine {
            e.cancel(job);
        }
    }

    /// The window's contents.
    fn draw(&mut self, ui: &mut egui::Ui) {
        self.take_dropped_files(ui);
        self.tab_bar(ui);
        let theme = self.theme.preference();
        if ui.ctx().options(|o| o.theme_preference) != theme {
            ui.ctx().set_theme(theme);
        }
        ui.separator();
        if ui.input(|i| !i.raw.hovered_files.is_empty()) {
            ui.strong("Drop a folder of audio or MIDI files (or a data.jsonl) to import it.");
        }
        let model = ModelBusy {
            loading: self.loading.is_some(),
            generating: self.panels.generate.busy(),
        };
        self.panels
            .get_mut(self.tab)
            .ui(ui, model, &mut self.outbox);
        self.status_bar(ui);
        self.apply();
    }

    /// Files dropped on the window: the first becomes the Dataset tab's import source.
    fn take_dropped_files(&mut self, ui: &egui::Ui) {
        let dropped: Option<PathBuf> =
            ui.input(|i| i.raw.dropped_files.first().map(|f| f.path().to_path_buf()));
        if let Some(p) = dropped {
            self.status = self.panels.dataset.use_dropped(&p);
            self.tab = Tab::Dataset;
        }
    }

    fn tab_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("tunelab");
            ui.separator();
            for t in Tab::ALL {
                ui.selectable_value(&mut self.tab, t, t.title());
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                for (theme, label) in [
                    (Theme::Dark, "Dark"),
                    (Theme::Light, "Light"),
                    (Theme::System, "System theme"),
                ] {
                    ui.selectable_value(&mut self.theme, theme, label);
                }
            });
        });
    }

    fn status_bar(&mut self, ui: &mut egui::Ui) {
        ui.separator();
        if let Some(l) = &self.loading {
            let f = if l.total > 0 {
                l.done as f32 / l.total as f32
            } else {
                0.0
            };
            ui.add(egui::ProgressBar::new(f).text(format!("loading {}", l.file)));
        }
        for t in Tab::ALL {
            if let Some((f, text)) = self.panels.get(t).progress() {
                ui.add(egui::ProgressBar::new(f).text(text));
            }
        }
        self.status.ui(ui);
    }
}

impl eframe::App for TunelabApp {
    fn logic(&mut self, _ctx: &egui::Context, _frame: &mut eframe::Frame) {
        TunelabApp::logic(self);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::CentralPanel::default().show(ui, |ui| self.draw(ui));
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.persisted());
    }
}

#[cfg(test)]
mod tests;
