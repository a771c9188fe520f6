//! The studio shell: tabs Generate · Dataset · Train · Listen. Engine events are drained in
//! `logic` (≤ 10 ms a frame) and routed to the panels; panels queue commands in an outbox that
//! the shell sends at the end of the frame; nothing long runs on the UI thread.

use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::{Command, EngineHandle, Event, JobId, JobOutput, ModelInfo};
use crate::generate::midi::{prime_from_midi, MidiGenerateParams};
use crate::generate::{Clip, GenerateParams};
use crate::models::musicgen::config::Preset;
use crate::models::nn::WeightMode;
use crate::train::config::Family;
use crate::ui::dataset::{DatasetForm, DatasetPanel};
use crate::ui::evaluate::{EvalForm, EvalPanel};
use crate::ui::listen::{ListenForm, ListenPanel};
use crate::ui::models::{ModelsForm, ModelsPanel};
use crate::ui::train::{field, Outbox, TrainForm, TrainPanel};

/// Form values persisted across restarts.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct State {
    pub tab: Tab,
    pub model_spec: String,
    pub params: GenerateParams,
    pub midi: MidiForm,
    pub out_path: String,
    pub train: TrainForm,
    pub dataset: DatasetForm,
    pub listen: ListenForm,
    pub models: ModelsForm,
    pub evaluate: EvalForm,
}

/// The Generate tab's settings for a Music Transformer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MidiForm {
    pub params: MidiGenerateParams,
    /// A MIDI file whose first `prime_seconds` the piece continues; empty = improv.
    pub prime: String,
    pub prime_seconds: f64,
    /// Pieces are written here as `piece-<seed>.mid` / `.wav`.
    pub out_dir: String,
    /// A SoundFont (.sf2) to render with; empty = the first installed.
    pub soundfont: String,
}

impl Default for MidiForm {
    fn default() -> Self {
        Self {
            params: MidiGenerateParams::default(),
            prime: String::new(),
            prime_seconds: 5.0,
            out_dir: crate::demo::demo_dir().join("pieces").display().to_string(),
            soundfont: String::new(),
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
            // The shipped demo model: the studio works offline on first start.
            model_spec: crate::demo::model_dir().display().to_string(),
            midi: MidiForm::default(),
            params: GenerateParams {
                prompt: "lo-fi hip hop with warm piano and vinyl crackle".into(),
                duration: 5.0,
                ..Default::default()
            },
            out_path: "clip.wav".into(),
            tab: Tab::Generate,
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
    Generating {
        job: JobId,
        step: usize,
        total: usize,
    },
}

pub struct TunelabApp {
    state: State,
    engine: Option<EngineHandle>,
    events: Receiver<Event>,
    busy: Busy,
    model: Option<ModelInfo>,
    clip: Option<Clip>,
    status: String,
    outbox: Outbox,
    train: TrainPanel,
    dataset: DatasetPanel,
    listen: ListenPanel,
    player: Box<dyn crate::audio::AudioSink>,
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
        let spec = self.state.model_spec.clone();
        if !std::path::Path::new(&spec).is_dir() {
            return;
        }
        self.load(spec);
        self.flush_outbox();
    }

    /// Queues loading `spec` (f32) and shows the load in the status bar.
    fn load(&mut self, spec: String) {
        let job = self.send(|job| Command::LoadModel {
            job,
            spec,
            weights: WeightMode::F32,
            adapter: None,
        });
        self.busy = Busy::Loading {
            job,
            file: String::new(),
            done: 0,
            total: 0,
        };
    }

    /// Builds the app around a fresh engine; `wake` is called after each engine event.
    pub fn with_waker(state: State, wake: crate::engine::worker::Waker) -> Self {
        let (tx, rx) = mpsc::channel();
        let (engine, status) = match EngineHandle::spawn(tx, wake) {
            Ok(e) => (Some(e), "No model loaded.".to_string()),
            Err(e) => (None, format!("The engine could not start: {e}")),
        };
        let train = TrainPanel::new(state.train.clone());
        let dataset = DatasetPanel::new(state.dataset.clone());
        let (sink, notice) = crate::audio::default_sink();
        let listen = ListenPanel::new(state.listen.clone(), sink);
        let (player, _) = crate::audio::default_sink();
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
            model: None,
            clip: None,
            status,
            outbox: Outbox::default(),
            train,
            dataset,
            listen,
            player,
            models,
            evaluate,
        }
    }

    fn send(&mut self, make: impl FnOnce(JobId) -> Command) -> JobId {
        let job = self.outbox.job();
        self.outbox.commands.push(make(job));
        job
    }

    /// Sends what the panels queued this frame.
    fn flush_outbox(&mut self) {
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
        });
        ui.separator();
        match self.state.tab {
            Tab::Models => {
                let busy = self.busy != Busy::Idle;
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
            Tab::Generate => self.draw(ui),
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
                Event::GenerateStep { job, step, total } => {
                    self.busy = Busy::Generating { job, step, total };
                }
                Event::Train { .. } | Event::Progress { .. } => {}
                Event::Done { result, .. } => {
                    self.busy = Busy::Idle;
                    match result {
                        Ok(JobOutput::ModelLoaded(info)) => {
                            self.status = format!("Loaded: {}", info.description);
                            self.model = Some(info);
                        }
                        Ok(JobOutput::Clip(clip)) => {
                            self.status = format!(
                                "Generated {:.1} s.",
                                clip.audio.len() as f64 / clip.sample_rate as f64
                            );
                            self.clip = Some(clip);
                        }
                        Ok(JobOutput::Piece(piece)) => {
                            self.status = match &piece.render_error {
                                None => format!(
                                    "Generated {} events ({} notes): {}",
                                    piece.events.len(),
                                    piece.notes,
                                    piece.playable().display()
                                ),
                                Some(e) => format!(
                                    "Wrote {} but could not render it: {e}",
                                    piece.midi.display()
                                ),
                            };
                            self.clip = Some(Clip {
                                codes: Vec::new(),
                                audio: piece.audio,
                                sample_rate: piece.sample_rate,
                            });
                        }
                        Ok(JobOutput::Trained(_))
                        | Ok(JobOutput::SessionReady(_))
                        | Ok(JobOutput::Imported(_))
                        | Ok(JobOutput::Evaluated(_)) => {}
                        Err(e) => self.status = format!("Error: {e}"),
                    }
                }
            }
        }
    }

    fn draw(&mut self, ui: &mut egui::Ui) {
        let idle = self.busy == Busy::Idle;
        ui.horizontal(|ui| {
            field(
                ui,
                "Model",
                "A Hub repo id, a local MusicGen or Music Transformer folder, or a training run.",
                |ui| ui.text_edit_singleline(&mut self.state.model_spec),
            );
            if ui.add_enabled(idle, egui::Button::new("Load")).clicked() {
                self.load(self.state.model_spec.clone());
            }
            if ui
                .add_enabled(idle, egui::Button::new("Random musicgen-small"))
                .on_hover_text(
                    "The published layout with random weights: noise, but the full pipeline.",
                )
                .clicked()
            {
                let job = self.send(|job| Command::LoadRandom {
                    job,
                    preset: Preset::Small,
                    seed: 0,
                });
                self.busy = Busy::Loading {
                    job,
                    file: "random weights".into(),
                    done: 0,
                    total: 0,
                };
            }
        });
        if let Some(m) = &self.model {
            ui.label(format!(
                "{} · {}",
                match m.family {
                    Family::Musicgen => "MusicGen",
                    Family::Midi => "MIDI",
                },
                m.description
            ));
        }
        if self
            .model
            .as_ref()
            .is_some_and(|m| m.family == Family::Midi)
        {
            self.midi_controls(ui, idle);
        } else {
            self.musicgen_controls(ui, idle);
        }
        self.clip_view(ui);
    }

    /// Improv or primed generation with a Music Transformer (no prompt, no CFG).
    fn midi_controls(&mut self, ui: &mut egui::Ui, idle: bool) {
        let f = &mut self.state.midi;
        ui.horizontal(|ui| {
            field(
                ui,
                "Prime",
                "A MIDI file whose opening the piece continues; empty = improv.",
                |ui| ui.text_edit_singleline(&mut f.prime),
            );
            if ui.button("Browse…").clicked() {
                if let Some(p) = rfd::FileDialog::new()
                    .add_filter("MIDI", &["mid", "midi"])
                    .pick_file()
                {
                    f.prime = p.display().to_string();
                }
            }
            if !f.prime.trim().is_empty() {
                ui.add(
                    egui::DragValue::new(&mut f.prime_seconds)
                        .range(0.5..=60.0)
                        .suffix(" s of it"),
                );
            }
        });
        ui.horizontal(|ui| {
            let mut seconds = f.params.seconds.unwrap_or(20.0);
            ui.add(egui::Slider::new(&mut seconds, 2.0..=120.0).text("seconds"));
            f.params.seconds = Some(seconds);
            f.params.events = None;
            ui.add(egui::DragValue::new(&mut f.params.seed).prefix("seed "));
            ui.add(
                egui::Slider::new(&mut f.params.sampling.temperature, 0.1..=2.0)
                    .text("temperature"),
            );
            ui.add(egui::Slider::new(&mut f.params.sampling.top_p, 0.0..=1.0).text("top-p"));
        });
        ui.horizontal(|ui| {
            field(
                ui,
                "Write to",
                "Folder of the pieces (piece-<seed>.mid and .wav).",
                |ui| ui.text_edit_singleline(&mut f.out_dir),
            );
            field(
                ui,
                "SoundFont",
                "A General MIDI .sf2 to render with; empty = the first installed.",
                |ui| {
                    ui.add(
                        egui::TextEdit::singleline(&mut f.soundfont).hint_text("first installed"),
                    )
                },
            );
        });
        let label = if f.prime.trim().is_empty() {
            "Generate improv"
        } else {
            "Continue the prime"
        };
        ui.horizontal(|ui| {
            if ui.add_enabled(idle, egui::Button::new(label)).clicked() {
                self.generate_midi();
            }
            if !idle && ui.button("Cancel").clicked() {
                if let Some(e) = &self.engine {
                    e.cancel();
                }
            }
        });
    }

    fn generate_midi(&mut self) {
        let f = self.state.midi.clone();
        let mut params = f.params.clone();
        if !f.prime.trim().is_empty() {
            match prime_from_midi(std::path::Path::new(f.prime.trim()), f.prime_seconds) {
                Ok(p) => params.prime = p,
                Err(e) => {
                    self.status = format!("Error: {e}");
                    return;
                }
            }
        } else {
            params.prime.clear();
        }
        let out = std::path::Path::new(&f.out_dir).join(format!("piece-{}", params.seed));
        let soundfont =
            (!f.soundfont.trim().is_empty()).then(|| std::path::PathBuf::from(f.soundfont.trim()));
        let job = self.send(|job| Command::GenerateMidi {
            job,
            params,
            out,
            soundfont,
        });
        self.busy = Busy::Generating {
            job,
            step: 0,
            total: 1,
        };
    }

    fn musicgen_controls(&mut self, ui: &mut egui::Ui, idle: bool) {
        ui.label("Prompt:");
        ui.text_edit_multiline(&mut self.state.params.prompt);
        ui.horizontal(|ui| {
            ui.add(egui::Slider::new(&mut self.state.params.duration, 1.0..=60.0).text("seconds"));
            ui.add(egui::DragValue::new(&mut self.state.params.seed).prefix("seed "));
            ui.add(
                egui::Slider::new(&mut self.state.params.guidance_scale, 1.0..=10.0).text("CFG"),
            );
            ui.add(egui::DragValue::new(&mut self.state.params.sampling.top_k).prefix("top-k "));
        });
        ui.horizontal(|ui| {
            let can_gen = idle && self.model.is_some();
            if ui
                .add_enabled(can_gen, egui::Button::new("Generate clip"))
                .clicked()
            {
                let params = self.state.params.clone();
                let job = self.send(|job| Command::Generate { job, params });
                self.busy = Busy::Generating {
                    job,
                    step: 0,
                    total: 1,
                };
            }
            if !idle && ui.button("Cancel").clicked() {
                if let Some(e) = &self.engine {
                    e.cancel();
                }
            }
        });
    }

    /// The last clip or rendered piece: transport, waveform, save.
    fn clip_view(&mut self, ui: &mut egui::Ui) {
        if let Some(c) = &self.clip {
            let audio = Arc::new(c.audio.clone());
            let rate = c.sample_rate;
            let seconds = c.audio.len() as f64 / rate as f64;
            let space = ui.input(|i| i.key_pressed(egui::Key::Space))
                && !ui.ctx().egui_wants_keyboard_input();
            ui.horizontal(|ui| {
                let playing = self.player.is_playing();
                if ui.button(if playing { "Pause" } else { "Play" }).clicked() || space {
                    if playing {
                        self.player.pause();
                    } else if self.player.position() > Duration::ZERO
                        && self.player.position().as_secs_f64() < seconds - 0.01
                    {
                        self.player.resume();
                    } else if let Err(e) = self.player.play(audio.clone(), rate, Duration::ZERO) {
                        self.status = e;
                    }
                }
                if ui.button("Stop").clicked() {
                    self.player.stop();
                }
                ui.label(format!(
                    "{:.1} / {:.1} s",
                    self.player.position().as_secs_f64(),
                    seconds
                ));
                if playing {
                    ui.ctx().request_repaint_after(Duration::from_millis(50));
                }
            });
            waveform(ui, &c.audio, rate, self.player.position().as_secs_f64());
            ui.horizontal(|ui| {
                ui.label("Save as:");
                ui.text_edit_singleline(&mut self.state.out_path);
                if ui.button("Save WAV").clicked() {
                    if let Some(c) = &self.clip {
                        let p = std::path::PathBuf::from(&self.state.out_path);
                        self.status =
                            match crate::data::audio::write_wav(&p, &c.audio, c.sample_rate) {
                                Ok(()) => format!("Saved {}", p.display()),
                                Err(e) => format!("Error: {e}"),
                            };
                    }
                }
            });
        }
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
            Busy::Generating { step, total, .. } => {
                let f = *step as f32 / (*total).max(1) as f32;
                ui.add(egui::ProgressBar::new(f).text(format!("step {step}/{total}")));
            }
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

/// A min/max envelope of the clip (at most ~600 columns) with the playhead.
fn waveform(ui: &mut egui::Ui, audio: &[f32], rate: u32, playhead: f64) {
    use egui_plot::{Line, Plot, PlotPoints, VLine};
    let cols = 600usize;
    let per = (audio.len() / cols).max(1);
    let mut top = Vec::with_capacity(cols);
    let mut bottom = Vec::with_capacity(cols);
    for (i, chunk) in audio.chunks(per).enumerate() {
        let t = (i * per) as f64 / rate as f64;
        let (lo, hi) = chunk
            .iter()
            .fold((0f32, 0f32), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        top.push([t, hi as f64]);
        bottom.push([t, lo as f64]);
    }
    Plot::new("waveform")
        .height(90.0)
        .show_axes([true, false])
        .allow_scroll(false)
        .show(ui, |p| {
            p.line(Line::new("max", PlotPoints::from(top)));
            p.line(Line::new("min", PlotPoints::from(bottom)));
            p.vline(VLine::new("playhead", playhead));
        });
}
