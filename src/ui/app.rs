//! The studio shell: the tab bar on top (one tab per [`Tab`]: Models · Generate · Library ·
//! Dataset · Train · Evaluate · Listen, the UI scale, the theme, Help), the status bar at the
//! foot (progress, the status line, and the engine's state, loaded model, device and memory),
//! the panel of the tab shown between them, and the Help and welcome overlays. Engine events
//! are drained in `logic` (≤ 10 ms a frame) and offered to every panel; panels queue commands
//! and requests in one outbox that the shell applies at the end of the frame (the one place
//! that talks to the engine, cancellations included). The audio device is opened once and
//! shared by the panels. The panels' forms are collected into [`State`] only when eframe saves.
//!
//! Keys here: Ctrl+1 … Ctrl+7 open the tabs, `?` or F1 the Help (the full list is
//! [`crate::ui::help::KEYS`]).

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::audio::{AudioSink, SharedPlayer};
use crate::engine::{EngineHandle, Event, JobId, JobOutput, ModelInfo};
use crate::ui::dataset::DatasetPanel;
use crate::ui::evaluate::EvalPanel;
use crate::ui::generate::GeneratePanel;
use crate::ui::help::{help_window, welcome_window, HelpChoice, WelcomeChoice};
use crate::ui::library::LibraryPanel;
use crate::ui::listen::ListenPanel;
use crate::ui::models::ModelsPanel;
use crate::ui::panel::Outbox;
use crate::ui::panel::{ModelBusy, Panel, Request};
use crate::ui::state::{State, Theme};
use crate::ui::status::Status;
use crate::ui::status_bar::{status_bar, EngineView};
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

/// The seven panels, one per tab.
struct Panels {
    models: ModelsPanel,
    generate: GeneratePanel,
    library: LibraryPanel,
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
            Tab::Library => &self.library,
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
            Tab::Library => &mut self.library,
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
    /// The welcome is shown; it was dismissed for good.
    welcome: bool,
    welcome_done: bool,
    help: bool,
    /// The zoom on top of the display's scale, as the studio last applied it, and whether the
    /// persisted one has been applied (on the first frame).
    zoom: f32,
    zoom_applied: bool,
    /// The resident memory and when it was read (seconds of egui time).
    memory: (f64, Option<u64>),
}

/// The UI scales offered in the tab bar (Ctrl + / − step between them too).
const ZOOMS: [f32; 8] = [0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 1.75, 2.0];

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
        let first_start = !state.welcome_done;
        let mut app = Self::with_waker(state, Arc::new(move || ctx.request_repaint()));
        app.welcome = first_start;
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
        let clips_dir = state.generate.clips_dir.clone();
        let panels = Panels {
            models: ModelsPanel::new(state.models),
            library: LibraryPanel::new(state.library, &clips_dir, audio.handle()),
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
            welcome: false,
            welcome_done: state.welcome_done,
            help: false,
            zoom: if state.zoom > 0.0 { state.zoom } else { 1.0 },
            zoom_applied: false,
            memory: (f64::NEG_INFINITY, None),
        }
    }

    /// Applies `scripts/screenshots`' theme and welcome (see [`crate::ui::Shot`]).
    pub fn with_shot(mut self, shot: &crate::ui::Shot) -> Self {
        if let Some(t) = shot.theme {
            self.theme = t;
        }
        if let Some(w) = shot.welcome {
            self.welcome = w;
        }
        self
    }

    /// Opens the listening session `log` on the Listen tab, ready to rate (`--session`;
    /// `rater`: `--rater`, else the name last entered).
    pub fn open_session(&mut self, log: &std::path::Path, rater: Option<&str>) {
        self.panels.listen.form.log = log.display().to_string();
        if let Some(r) = rater {
            self.panels.listen.form.rater = r.to_string();
        }
        self.panels.listen.open();
        self.tab = Tab::Listen;
        self.welcome = false;
    }

    /// Shows the welcome (as on a first start).
    pub fn show_welcome(&mut self) {
        self.welcome = true;
    }

    /// Is the welcome shown?
    pub fn welcome_shown(&self) -> bool {
        self.welcome
    }

    /// Is the Help window open?
    pub fn help_shown(&self) -> bool {
        self.help
    }

    /// The model the engine holds, as it last said (the Generate panel follows every load,
    /// whichever panel asked, and the device changes that drop it).
    pub fn model(&self) -> Option<&ModelInfo> {
        self.panels.generate.model.as_ref()
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
            welcome_done: self.welcome_done,
            zoom: self.zoom,
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
                Request::ClipAdded { entry, audio, rate } => {
                    self.panels.library.add(*entry, &audio, rate)
                }
                Request::AudioPrompt(file) => {
                    self.panels.generate.form.params.prompt_audio = Some(file);
                    self.tab = Tab::Generate;
                }
                Request::Reuse(entry) => {
                    if let Some(s) = self.panels.generate.reuse(&entry) {
                        self.status = s;
                    }
                    self.tab = Tab::Generate;
                }
                Request::ListenTest {
                    model_a,
                    model_b,
                    prompts,
                } => {
                    let setup = &mut self.panels.listen.form.setup;
                    setup.model_a = model_a;
                    if let Some(b) = model_b {
                        setup.model_b = b;
                    }
                    setup.prompts = prompts.join("\n");
                    self.tab = Tab::Listen;
                }
                Request::Show(tab) => self.tab = tab,
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

    /// The window's contents: the tab bar, the status bar, the panel between them, then the
    /// overlays; drops no field took go to the Dataset tab.
    fn draw(&mut self, ui: &mut egui::Ui) {
        self.keys(ui);
        self.follow_zoom(ui.ctx());
        let theme = self.theme.preference();
        if ui.ctx().options(|o| o.theme_preference) != theme {
            ui.ctx().set_theme(theme);
        }
        egui::Panel::top("tunelab-tabs").show(ui, |ui| self.tab_bar(ui));
        egui::Panel::bottom("tunelab-status").show(ui, |ui| self.status_bar(ui));
        let model = ModelBusy {
            loading: self.loading.is_some(),
            generating: self.panels.generate.busy(),
        };
        if ui.input(|i| !i.raw.hovered_files.is_empty()) {
            ui.strong(
                "Drop on a field to choose it, or anywhere else: a folder of audio or MIDI \
                 files (or a data.jsonl) to import.",
            );
        }
        self.panels
            .library
            .follow(&self.panels.generate.form.clips_dir);
        let tab = self.tab;
        let panel = self.panels.get_mut(tab);
        if panel.scrolls() {
            egui::ScrollArea::vertical()
                .id_salt(("tunelab-panel", tab.name()))
                .auto_shrink([false, false])
                .show(ui, |ui| panel.ui(ui, model, &mut self.outbox));
        } else {
            panel.ui(ui, model, &mut self.outbox);
        }
        self.take_dropped_files(ui);
        self.overlays(ui.ctx());
        self.apply();
    }

    /// Ctrl+1 … Ctrl+7 (taken before the panels see the digits), `?` and F1.
    fn keys(&mut self, ui: &egui::Ui) {
        for t in Tab::ALL {
            if ui.input_mut(|i| i.consume_key(egui::Modifiers::COMMAND, t.key())) {
                self.tab = t;
            }
        }
        let typing = ui.ctx().egui_wants_keyboard_input();
        let help = ui.input(|i| {
            i.key_pressed(egui::Key::F1)
                || (!typing
                    && i.events
                        .iter()
                        .any(|e| matches!(e, egui::Event::Text(t) if t == "?")))
        });
        if help {
            self.help = !self.help;
        }
    }

    /// Keeps the zoom the user set (the scale menu, or egui's Ctrl + / −) to persist it, and
    /// applies a persisted one on the first frame.
    fn follow_zoom(&mut self, ctx: &egui::Context) {
        if !std::mem::replace(&mut self.zoom_applied, true) {
            ctx.set_zoom_factor(self.zoom);
        }
        self.zoom = ctx.zoom_factor();
    }

    /// The Help window and the welcome.
    fn overlays(&mut self, ctx: &egui::Context) {
        if help_window(ctx, &mut self.help) == Some(HelpChoice::Welcome) {
            self.help = false;
            self.welcome = true;
        }
        if !self.welcome {
            return;
        }
        let Some(choice) = welcome_window(ctx) else {
            return;
        };
        self.welcome = false;
        self.welcome_done = true;
        if let Some(t) = choice.tab() {
            self.tab = t;
        }
        match choice {
            WelcomeChoice::Generate => {
                if self.model().is_some() && !self.panels.generate.busy() {
                    self.panels.generate.generate(&mut self.outbox);
                } else {
                    self.status = Status::Info(
                        "The demo model is loading: press Generate when the status bar names it."
                            .into(),
                    );
                }
            }
            WelcomeChoice::FineTune => self.panels.train.start(&mut self.outbox),
            WelcomeChoice::Compare => {
                let tuned = self.panels.listen.form.setup.model_b.clone();
                if crate::store::run::is_run_dir(std::path::Path::new(tuned.trim())) {
                    self.panels.listen.prepare(&mut self.outbox);
                    self.status = Status::Working(
                        "Preparing a blind A/B test of the fine-tune against the demo model…"
                            .into(),
                    );
                } else {
                    self.status = Status::Info(
                        "Fine-tune first (the welcome's second step): the blind A/B test \
                         compares the fine-tune with the demo model. Two clips can be compared \
                         in the Library at any time."
                            .into(),
                    );
                }
            }
            WelcomeChoice::Dismiss => {}
        }
    }

    /// Files dropped on the window that no field took: the first becomes the Dataset tab's
    /// import source.
    fn take_dropped_files(&mut self, ui: &egui::Ui) {
        if crate::ui::picker::drop_claimed(ui.ctx()) {
            return;
        }
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
            for (k, t) in Tab::ALL.into_iter().enumerate() {
                ui.selectable_value(&mut self.tab, t, t.title())
                    .on_hover_text(format!("Ctrl+{}", k + 1));
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if ui
                    .selectable_label(self.help, "Help")
                    .on_hover_text("Keys and help (? or F1)")
                    .clicked()
                {
                    self.help = !self.help;
                }
                ui.separator();
                for (theme, label) in [
                    (Theme::Dark, "Dark"),
                    (Theme::Light, "Light"),
                    (Theme::System, "System theme"),
                ] {
                    ui.selectable_value(&mut self.theme, theme, label);
                }
                ui.separator();
                // Right to left: the combo first, so that its label reads before it.
                let mut zoom = self.zoom;
                egui::ComboBox::from_id_salt("tunelab-zoom")
                    .selected_text(format!("{:.0} %", zoom * 100.0))
                    .show_ui(ui, |ui| {
                        for z in ZOOMS {
                            ui.selectable_value(&mut zoom, z, format!("{:.0} %", z * 100.0));
                        }
                    })
                    .response
                    .accessible_name("Scale")
                    .on_hover_text(
                        "The UI's size on top of the display's own scale (Ctrl + / Ctrl -).",
                    );
                ui.label("Scale");
                if zoom != self.zoom {
                    self.zoom = zoom;
                    ui.ctx().set_zoom_factor(zoom);
                }
            });
        });
    }

    /// What the engine is doing, from the load followed and the panels' jobs.
    fn engine_state(&self) -> String {
        if self.engine.is_none() {
            return "stopped".into();
        }
        let mut doing: Vec<&str> = Vec::new();
        if self.loading.is_some() {
            doing.push("loading");
        }
        for (t, what) in [
            (Tab::Generate, "generating"),
            (Tab::Dataset, "importing"),
            (Tab::Train, "training"),
            (Tab::Evaluate, "evaluating"),
            (Tab::Listen, "preparing a session"),
        ] {
            if !self.panels.get(t).jobs().is_empty() {
                doing.push(what);
            }
        }
        if doing.is_empty() {
            "idle".into()
        } else {
            doing.join(", ")
        }
    }

    fn status_bar(&mut self, ui: &mut egui::Ui) {
        let now = ui.input(|i| i.time);
        if now - self.memory.0 >= 1.0 {
            self.memory = (now, crate::memory::rss_bytes());
        }
        let mut progress = Vec::new();
        if let Some(l) = &self.loading {
            let f = if l.total > 0 {
                l.done as f32 / l.total as f32
            } else {
                0.0
            };
            progress.push((f, format!("loading {}", l.file)));
        }
        for t in Tab::ALL {
            if let Some(p) = self.panels.get(t).progress() {
                progress.push(p);
            }
        }
        let loaded = self.panels.generate.loaded_as.as_ref();
        let engine = EngineView {
            state: self.engine_state(),
            model: self.panels.generate.model.as_ref(),
            spec: loaded.map(|l| l.model.as_str()),
            weights: loaded.map(|l| l.weights),
            device: self
                .panels
                .models
                .device
                .as_ref()
                .map(|(d, p)| format!("{d} · {p}")),
            memory: self.memory.1,
        };
        status_bar(ui, &self.status, &progress, &engine);
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
