//! The Generate panel: pick a model (a baseline, a training run, or a LoRA adapter on a base),
//! set the prompt and sampling (or, for a Music Transformer, the prime), generate one clip or a
//! batch of variations (seeds `seed`, `seed + 1`, …, queued by the engine one after the other),
//! play it and save it. Every clip is written to the clips folder and appended to its
//! `history.jsonl`, so the history survives restarts; an entry reloads its parameters into the
//! form and plays its file.
//!
//! Keys (when no text field has focus): `Space` play / pause, `Escape` stop;
//! `Ctrl+Enter` generates (also from the prompt field).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use crate::audio::AudioSink;
use crate::engine::{Command, Event, JobId, JobOutput, ModelInfo};
use crate::generate::midi::{prime_from_midi, MidiGenerateParams};
use crate::generate::GenerateParams;
use crate::models::musicgen::config::Preset;
use crate::models::nn::WeightMode;
use crate::models::Family;
use crate::ui::models::RunEntry;
use crate::ui::train::{field, Outbox};

/// The form (persisted).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GenerateForm {
    /// A Hub repo id, a local model folder, or a training run.
    pub model_spec: String,
    /// A LoRA adapter (PEFT folder or LoRA run) attached unmerged on load; empty = none.
    pub adapter: String,
    /// The checkpoint of a training run to load (`best`, `step-000200`); empty = `last`.
    pub checkpoint: String,
    pub params: GenerateParams,
    pub midi: MidiForm,
    /// Clips are written here, with the history (`history.jsonl`).
    pub clips_dir: String,
    /// Clips per click, with seeds `seed`, `seed + 1`, ….
    pub variations: usize,
}

impl Default for GenerateForm {
    fn default() -> Self {
        Self {
            // The shipped demo model: the studio works offline on first start.
            model_spec: crate::demo::model_dir().display().to_string(),
            adapter: String::new(),
            checkpoint: String::new(),
            params: GenerateParams {
                prompt: "lo-fi hip hop with warm piano and vinyl crackle".into(),
                duration: 5.0,
                ..Default::default()
            },
            midi: MidiForm::default(),
            clips_dir: crate::demo::demo_dir().join("clips").display().to_string(),
            variations: 1,
        }
    }
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

/// What made a clip, in the family's own terms.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "family", rename_all = "lowercase")]
pub enum ClipParams {
    Musicgen {
        params: GenerateParams,
    },
    /// `params.prime` is left empty: the prime is `prime`'s first `prime_seconds`.
    Midi {
        params: MidiGenerateParams,
        prime: String,
        prime_seconds: f64,
    },
}

/// One generated clip: a line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HistoryEntry {
    /// The clip (WAV; a `.mid` when a piece could not be rendered).
    pub file: PathBuf,
    /// The model as it was loaded (spec) and its adapter.
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// The run's checkpoint, when the model is a run loaded at one (else its `last`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// Unix time in milliseconds.
    #[serde(default)]
    pub created: u64,
    pub clip: ClipParams,
}

impl HistoryEntry {
    /// One line for the list: the parameters that tell clips apart.
    pub fn summary(&self) -> String {
        let mut model = Path::new(&self.model)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| self.model.clone());
        if let Some(c) = &self.checkpoint {
            model = format!("{model} @ {c}");
        }
        let adapter = self
            .adapter
            .as_deref()
            .and_then(|a| Path::new(a).file_name())
            .map(|n| format!(" + {}", n.to_string_lossy()))
            .unwrap_or_default();
        match &self.clip {
            ClipParams::Musicgen { params: p } => format!(
                "seed {} · \"{}\" · {:.1} s · T {:.2} · top-k {} · top-p {:.2} · CFG {:.1}{} · {model}{adapter}",
                p.seed,
                p.prompt,
                p.duration,
                p.sampling.temperature,
                p.sampling.top_k,
                p.sampling.top_p,
                p.guidance_scale,
                p.prompt_audio
                    .as_ref()
                    .map(|a| format!(" · continues {}", a.display()))
                    .unwrap_or_default(),
            ),
            ClipParams::Midi {
                params: p,
                prime,
                prime_seconds,
            } => format!(
                "seed {} · {} · {:.0} s · T {:.2} · top-p {:.2} · {model}{adapter}",
                p.seed,
                if prime.is_empty() {
                    "improv".to_string()
                } else {
                    format!("{prime_seconds:.1} s of {prime}")
                },
                p.seconds.unwrap_or(0.0),
                p.sampling.temperature,
                p.sampling.top_p,
            ),
        }
    }
}

/// The history file of a clips folder.
pub fn history_path(clips_dir: &Path) -> PathBuf {
    clips_dir.join("history.jsonl")
}

/// The entries of a clips folder's history, oldest first (lines that do not parse are skipped:
/// a torn last line after a crash loses one entry, not the history).
pub fn read_history(clips_dir: &Path) -> Vec<HistoryEntry> {
    std::fs::read_to_string(history_path(clips_dir))
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// What a model was loaded as: enough to load it again.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadedAs {
    pub model: String,
    pub adapter: Option<String>,
    pub checkpoint: Option<String>,
}

/// A generation job sent and not yet done, with what its history entry will record.
#[derive(Debug, Clone)]
pub struct Pending {
    pub job: JobId,
    pub entry: HistoryEntry,
}

/// The clip on show: its samples and, once written, its file.
#[derive(Debug, Clone)]
pub struct Shown {
    pub audio: Arc<Vec<f32>>,
    pub rate: u32,
    pub file: Option<PathBuf>,
}

/// What a system file dialog was opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Model,
    Adapter,
    AudioPrompt,
    MidiPrime,
    SaveWav,
}

pub struct GeneratePanel {
    pub form: GenerateForm,
    pub model: Option<ModelInfo>,
    /// What the loaded model was loaded as.
    pub loaded_as: Option<LoadedAs>,
    /// A load this panel sent, with what it loads (matched with the engine's answer).
    load_job: Option<(JobId, LoadedAs)>,
    /// A load the panel asked for (the shell shows its progress).
    pub requested: Option<JobId>,
    /// Generation jobs sent and not done, in the engine's order.
    pub jobs: VecDeque<Pending>,
    /// Decoder steps of the running job, and how many jobs the current batch had.
    pub step: (usize, usize),
    pub batch: usize,
    pub clip: Option<Shown>,
    pub history: Vec<HistoryEntry>,
    /// The history entry last clicked.
    pub selected: Option<usize>,
    /// Training runs offered by the model picker (the shell fills it from the Models tab).
    pub runs: Vec<RunEntry>,
    /// A line for the status bar (the shell takes it).
    pub status: Option<String>,
    player: Box<dyn AudioSink>,
    dialog: Option<(Pick, Receiver<Option<PathBuf>>)>,
    /// Results of clip and history writes done off the UI thread.
    written: (Sender<String>, Receiver<String>),
    /// The last write; each waits for the one before, so history lines keep the clips' order.
    last_write: Option<std::thread::JoinHandle<()>>,
}

impl Drop for GeneratePanel {
    fn drop(&mut self) {
        if let Some(t) = self.last_write.take() {
            let _ = t.join();
        }
    }
}

impl GeneratePanel {
    pub fn new(form: GenerateForm, player: Box<dyn AudioSink>) -> Self {
        let history = read_history(Path::new(&form.clips_dir));
        Self {
            form,
            model: None,
            loaded_as: None,
            load_job: None,
            requested: None,
            jobs: VecDeque::new(),
            step: (0, 0),
            batch: 0,
            clip: None,
            history,
            selected: None,
            runs: Vec::new(),
            status: None,
            player,
            dialog: None,
            written: mpsc::channel(),
            last_write: None,
        }
    }

    /// Is a generation queued or running?
    pub fn busy(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// Does this job belong to the panel (a generation it sent)?
    pub fn owns(&self, job: JobId) -> bool {
        self.jobs.iter().any(|p| p.job == job)
    }

    /// The status bar's progress: fraction and text.
    pub fn progress(&self) -> Option<(f32, String)> {
        if self.jobs.is_empty() {
            return None;
        }
        let (step, total) = self.step;
        let f = step as f32 / total.max(1) as f32;
        let of = if self.batch > 1 {
            format!(
                "clip {} of {} · ",
                self.batch - self.jobs.len() + 1,
                self.batch
            )
        } else {
            String::new()
        };
        Some((f, format!("{of}step {step}/{total}")))
    }

    /// Queues loading `spec` (with the form's adapter and checkpoint when `with_form`).
    pub fn load(&mut self, out: &mut Outbox, spec: String, with_form: bool) {
        let adapter =
            Some(self.form.adapter.trim().to_string()).filter(|a| with_form && !a.is_empty());
        let checkpoint =
            Some(self.form.checkpoint.trim().to_string()).filter(|c| with_form && !c.is_empty());
        let job = out.job();
        out.commands.push(Command::LoadModel {
            job,
            spec: spec.clone(),
            weights: WeightMode::F32,
            adapter: adapter.as_ref().map(PathBuf::from),
            checkpoint: checkpoint.clone(),
        });
        self.load_job = Some((
            job,
            LoadedAs {
                model: spec,
                adapter,
                checkpoint,
            },
        ));
        self.requested = Some(job);
    }

    /// A model finished loading (asked by this panel or another).
    pub fn model_loaded(&mut self, job: JobId, info: ModelInfo) {
        self.loaded_as = match self.load_job.take() {
            Some((j, l)) if j == job => Some(l),
            other => {
                self.load_job = other;
                info.source.as_ref().map(|s| LoadedAs {
                    model: s.display().to_string(),
                    ..Default::default()
                })
            }
        };
        self.model = Some(info);
    }

    /// Engine events for the panel's jobs: steps, and each clip or piece as it ends.
    pub fn on_event(&mut self, ev: &Event) {
        match ev {
            Event::GenerateStep { job, step, total } if self.owns(*job) => {
                self.step = (*step, *total);
            }
            Event::Done { job, result } if self.owns(*job) => {
                let Some(i) = self.jobs.iter().position(|p| p.job == *job) else {
                    return;
                };
                let Some(p) = self.jobs.remove(i) else {
                    return;
                };
                self.step = (0, 0);
                self.status = Some(match result {
                    Ok(JobOutput::Clip(clip)) => {
                        let audio = Arc::new(clip.audio.clone());
                        self.finished(p.entry, audio, clip.sample_rate, true);
                        format!(
                            "Generated {:.1} s.",
                            clip.audio.len() as f64 / clip.sample_rate.max(1) as f64
                        )
                    }
                    Ok(JobOutput::Piece(piece)) => {
                        let mut entry = p.entry;
                        entry.file = piece.playable().to_path_buf();
                        let audio = Arc::new(piece.audio.clone());
                        self.finished(entry, audio, piece.sample_rate, false);
                        match &piece.render_error {
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
                        }
                    }
                    Ok(_) => return,
                    Err(e) => format!("Error: {e}"),
                });
            }
            _ => {}
        }
    }

    /// Shows a finished clip, adds it to the history, and writes it (`write_wav`: a MusicGen
    /// clip; a piece's files are written by the engine) with its history line off the UI thread.
    fn finished(&mut self, entry: HistoryEntry, audio: Arc<Vec<f32>>, rate: u32, write_wav: bool) {
        self.clip = Some(Shown {
            audio: audio.clone(),
            rate,
            file: Some(entry.file.clone()),
        });
        self.history.push(entry.clone());
        self.selected = Some(self.history.len() - 1);
        let history = history_path(Path::new(&self.form.clips_dir));
        let tx = self.written.0.clone();
        let previous = self.last_write.take();
        let spawned = std::thread::Builder::new()
            .name("tunelab-clip-writer".into())
            .spawn(move || {
                if let Some(p) = previous {
                    let _ = p.join();
                }
                let mut r = Ok(());
                if write_wav {
                    r = crate::data::audio::write_wav(&entry.file, &audio, rate);
                }
                let r = r.and_then(|()| {
                    let line = serde_json::to_string(&entry)
                        .map_err(|e| crate::error::Error::InvalidRequest(e.to_string()))?;
                    crate::util::append_line(&history, &line)
                });
                let _ = tx.send(match r {
                    Ok(()) => format!("Saved {}", entry.file.display()),
                    Err(e) => format!("Error: {e}"),
                });
            });
        match spawned {
            Ok(t) => self.last_write = Some(t),
            Err(e) => self.status = Some(format!("Error: could not write the clip: {e}")),
        }
    }

    /// Applies what background writes and file dialogs returned (called each frame).
    pub fn poll(&mut self) {
        while let Ok(msg) = self.written.1.try_recv() {
            if msg.starts_with("Error") {
                self.status = Some(msg);
            }
        }
        if let Some((what, rx)) = &self.dialog {
            match rx.try_recv() {
                Ok(choice) => {
                    let what = *what;
                    self.dialog = None;
                    if let Some(p) = choice {
                        self.apply_pick(what, &p);
                    }
                }
                Err(mpsc::TryRecvError::Disconnected) => self.dialog = None,
                Err(mpsc::TryRecvError::Empty) => {}
            }
        }
    }

    /// Opens the system dialog for `what` on a helper thread (it blocks).
    fn pick(&mut self, what: Pick) {
        if self.dialog.is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        self.dialog = Some((what, rx));
        std::thread::spawn(move || {
            let d = rfd::FileDialog::new();
            let choice = match what {
                Pick::Model | Pick::Adapter => d.pick_folder(),
                Pick::AudioPrompt => d
                    .add_filter("Audio", &["wav", "flac", "mp3", "ogg"])
                    .pick_file(),
                Pick::MidiPrime => d.add_filter("MIDI", &["mid", "midi"]).pick_file(),
                Pick::SaveWav => d
                    .add_filter("WAV", &["wav"])
                    .set_file_name("clip.wav")
                    .save_file(),
            };
            let _ = tx.send(choice);
        });
    }

    /// What the user picked in a dialog.
    pub fn apply_pick(&mut self, what: Pick, path: &Path) {
        let s = path.display().to_string();
        match what {
            Pick::Model => self.form.model_spec = s,
            Pick::Adapter => self.form.adapter = s,
            Pick::AudioPrompt => self.form.params.prompt_audio = Some(path.to_path_buf()),
            Pick::MidiPrime => self.form.midi.prime = s,
            Pick::SaveWav => self.status = Some(self.save_wav(path)),
        }
    }

    /// Copies the clip's file to `dest` (written from its samples while the file is not yet
    /// on disk), atomically.
    pub fn save_wav(&self, dest: &Path) -> String {
        let Some(c) = &self.clip else {
            return "No clip to save.".into();
        };
        let r =
            match c.file.as_ref().filter(|f| {
                f.is_file() && f.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav"))
            }) {
                Some(f) => std::fs::read(f)
                    .map_err(|e| crate::error::Error::io(f, e))
                    .and_then(|b| crate::util::atomic_write(dest, &b)),
                None => crate::data::audio::write_wav(dest, &c.audio, c.rate),
            };
        match r {
            Ok(()) => format!("Saved {}", dest.display()),
            Err(e) => format!("Error: {e}"),
        }
    }

    /// Puts entry `i`'s parameters (and model) in the form.
    pub fn reload_entry(&mut self, i: usize) {
        let Some(e) = self.history.get(i).cloned() else {
            return;
        };
        self.selected = Some(i);
        self.form.model_spec = e.model.clone();
        self.form.adapter = e.adapter.clone().unwrap_or_default();
        self.form.checkpoint = e.checkpoint.clone().unwrap_or_default();
        match e.clip {
            ClipParams::Musicgen { params } => self.form.params = params,
            ClipParams::Midi {
                params,
                prime,
                prime_seconds,
            } => {
                self.form.midi.params = params;
                self.form.midi.prime = prime;
                self.form.midi.prime_seconds = prime_seconds;
            }
        }
        let wanted = LoadedAs {
            model: e.model.clone(),
            adapter: e.adapter.clone(),
            checkpoint: e.checkpoint.clone(),
        };
        if self.loaded_as.as_ref() != Some(&wanted) {
            self.status = Some(format!(
                "Settings of {} reloaded; its model is not the loaded one: Load it to regenerate.",
                e.file.display()
            ));
        }
    }

    /// Plays entry `i`'s file (a WAV) from the start.
    pub fn play_entry(&mut self, i: usize) {
        let Some(e) = self.history.get(i) else {
            return;
        };
        let file = e.file.clone();
        match crate::data::audio::decode_file(&file) {
            Ok(d) => {
                let audio = Arc::new(crate::data::audio::to_mono(&d.samples, d.channels));
                self.clip = Some(Shown {
                    audio: audio.clone(),
                    rate: d.sample_rate,
                    file: Some(file),
                });
                self.selected = Some(i);
                if let Err(e) = self.player.play(audio, d.sample_rate, Duration::ZERO) {
                    self.status = Some(e);
                }
            }
            Err(e) => self.status = Some(format!("Error: {e}")),
        }
    }

    fn is_midi(&self) -> bool {
        self.model
            .as_ref()
            .is_some_and(|m| m.family == Family::Midi)
    }

    /// Sends the form's batch: `variations` jobs with consecutive seeds.
    pub fn generate(&mut self, out: &mut Outbox) {
        let n = self.form.variations.max(1);
        let loaded = self.loaded_as.clone().unwrap_or_else(|| LoadedAs {
            model: self.form.model_spec.clone(),
            ..Default::default()
        });
        let created = now_ms();
        let midi = self.is_midi();
        let prime = if midi && !self.form.midi.prime.trim().is_empty() {
            let f = &self.form.midi;
            match prime_from_midi(Path::new(f.prime.trim()), f.prime_seconds) {
                Ok(p) => p,
                Err(e) => {
                    self.status = Some(format!("Error: {e}"));
                    return;
                }
            }
        } else {
            Vec::new()
        };
        let clips = PathBuf::from(self.form.clips_dir.trim());
        self.batch = n;
        self.step = (0, 1);
        for i in 0..n as u64 {
            let job = out.job();
            let entry = |file: PathBuf, clip: ClipParams| HistoryEntry {
                file,
                model: loaded.model.clone(),
                adapter: loaded.adapter.clone(),
                checkpoint: loaded.checkpoint.clone(),
                created,
                clip,
            };
            let entry = if midi {
                let f = &self.form.midi;
                let mut params = f.params.clone();
                params.seed = params.seed.wrapping_add(i);
                let out_stem = free_stem(Path::new(&f.out_dir), &format!("piece-{}", params.seed));
                let soundfont =
                    (!f.soundfont.trim().is_empty()).then(|| PathBuf::from(f.soundfont.trim()));
                let recorded = ClipParams::Midi {
                    params: params.clone(),
                    prime: f.prime.trim().to_string(),
                    prime_seconds: f.prime_seconds,
                };
                params.prime = prime.clone();
                out.commands.push(Command::GenerateMidi {
                    job,
                    params,
                    out: out_stem.clone(),
                    soundfont,
                });
                entry(out_stem.with_extension("wav"), recorded)
            } else {
                let mut params = self.form.params.clone();
                params.seed = params.seed.wrapping_add(i);
                params.prompt_audio = params
                    .prompt_audio
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(|p| PathBuf::from(p.display().to_string().trim()));
                let file = clips.join(format!("clip-{created}-s{}.wav", params.seed));
                out.commands.push(Command::Generate {
                    job,
                    params: params.clone(),
                });
                entry(file, ClipParams::Musicgen { params })
            };
            self.jobs.push_back(Pending { job, entry });
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, out: &mut Outbox, busy: bool) {
        let idle = !busy && self.jobs.is_empty();
        self.model_ui(ui, out, idle);
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
        if self.is_midi() {
            self.midi_controls(ui);
        } else {
            self.musicgen_controls(ui);
        }
        let can_gen = idle && self.model.is_some();
        let label = if !self.is_midi() {
            "Generate clip"
        } else if self.form.midi.prime.trim().is_empty() {
            "Generate improv"
        } else {
            "Continue the prime"
        };
        let shortcut = ui.input_mut(|i| i.consume_key(egui::Modifiers::COMMAND, egui::Key::Enter));
        ui.horizontal(|ui| {
            let clicked = ui
                .add_enabled(can_gen, egui::Button::new(label))
                .on_hover_text("Ctrl+Enter")
                .clicked();
            if clicked || (shortcut && can_gen) {
                self.generate(out);
            }
            field(
                ui,
                "Variations",
                "Clips per click, with seeds seed, seed + 1, … (generated one after another).",
                |ui| ui.add(egui::DragValue::new(&mut self.form.variations).range(1..=32)),
            );
            if !self.jobs.is_empty() && ui.button("Cancel").clicked() {
                out.cancel.extend(self.jobs.iter().map(|j| j.job));
            }
        });
        self.clip_view(ui);
        self.history_ui(ui);
    }

    /// The model picker: a baseline (typed or browsed), a training run, or a LoRA adapter on
    /// top of the model.
    fn model_ui(&mut self, ui: &mut egui::Ui, out: &mut Outbox, idle: bool) {
        let free = self.dialog.is_none();
        ui.horizontal(|ui| {
            field(
                ui,
                "Model",
                "A Hub repo id, a local MusicGen or Music Transformer folder, or a training run.",
                |ui| ui.text_edit_singleline(&mut self.form.model_spec),
            );
            if ui
                .add_enabled(free, egui::Button::new("Browse…"))
                .on_hover_text("Pick a model folder or a run folder.")
                .clicked()
            {
                self.pick(Pick::Model);
            }
            let runs = self.runs.clone();
            ui.menu_button("Runs…", |ui| {
                if ui.button("baseline: the demo Music Transformer").clicked() {
                    self.form.model_spec = crate::demo::model_dir().display().to_string();
                    self.form.adapter.clear();
                    self.form.checkpoint.clear();
                    ui.close();
                }
                if runs.is_empty() {
                    ui.label("No runs in the Models tab's runs folder.");
                }
                for r in &runs {
                    let name = r
                        .dir
                        .file_name()
                        .map(|n| n.to_string_lossy().to_string())
                        .unwrap_or_default();
                    if ui
                        .button(format!("run: {name} ({}, {})", r.family, r.mode))
                        .on_hover_text("The run's last checkpoint on its base model.")
                        .clicked()
                    {
                        self.form.model_spec = r.dir.display().to_string();
                        self.form.adapter.clear();
                        self.form.checkpoint.clear();
                        ui.close();
                    }
                    for c in r.checkpoints.iter().filter(|c| *c != "last") {
                        if ui
                            .button(format!("    {name} @ {c}"))
                            .on_hover_text("The run at this checkpoint.")
                            .clicked()
                        {
                            self.form.model_spec = r.dir.display().to_string();
                            self.form.adapter.clear();
                            self.form.checkpoint = c.clone();
                            ui.close();
                        }
                    }
                    if r.mode == "lora"
                        && r.family == "MusicGen"
                        && ui
                            .button(format!("adapter: {name} on {}", r.base))
                            .on_hover_text("Its base model with the run's LoRA adapter attached.")
                            .clicked()
                    {
                        self.form.model_spec = r.base.clone();
                        self.form.adapter = r.dir.display().to_string();
                        self.form.checkpoint.clear();
                        ui.close();
                    }
                }
            });
        });
        ui.horizontal(|ui| {
            field(
                ui,
                "LoRA adapter",
                "A PEFT adapter folder or a LoRA run, attached to the model above (MusicGen); \
                 empty = none.",
                |ui| ui.add(egui::TextEdit::singleline(&mut self.form.adapter).hint_text("none")),
            );
            if ui
                .add_enabled(free, egui::Button::new("Browse…"))
                .on_hover_text("Pick an adapter folder or a LoRA run.")
                .clicked()
            {
                self.pick(Pick::Adapter);
            }
            field(
                ui,
                "Checkpoint",
                "Of a training run: best, last or step-N (see Runs…); empty = last.",
                |ui| {
                    ui.add(
                        egui::TextEdit::singleline(&mut self.form.checkpoint)
                            .hint_text("last")
                            .desired_width(110.0),
                    )
                },
            );
            if ui.add_enabled(idle, egui::Button::new("Load")).clicked() {
                let spec = self.form.model_spec.trim().to_string();
                self.load(out, spec, true);
            }
            if ui
                .add_enabled(idle, egui::Button::new("Random musicgen-small"))
                .on_hover_text(
                    "The published layout with random weights: noise, but the full pipeline.",
                )
                .clicked()
            {
                let job = out.job();
                out.commands.push(Command::LoadRandom {
                    job,
                    preset: Preset::Small,
                    seed: 0,
                });
                self.load_job = Some((
                    job,
                    LoadedAs {
                        model: "random musicgen-small".into(),
                        ..Default::default()
                    },
                ));
                self.requested = Some(job);
            }
        });
    }

    /// Improv or primed generation with a Music Transformer (no prompt, no CFG).
    fn midi_controls(&mut self, ui: &mut egui::Ui) {
        let free = self.dialog.is_none();
        let mut browse = false;
        let f = &mut self.form.midi;
        ui.horizontal(|ui| {
            field(
                ui,
                "Prime",
                "A MIDI file whose opening the piece continues; empty = improv.",
                |ui| ui.text_edit_singleline(&mut f.prime),
            );
            browse = ui.add_enabled(free, egui::Button::new("Browse…")).clicked();
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
        if browse {
            self.pick(Pick::MidiPrime);
        }
    }

    fn musicgen_controls(&mut self, ui: &mut egui::Ui) {
        let free = self.dialog.is_none();
        let p = &mut self.form.params;
        field(
            ui,
            "Prompt",
            "What the clip should sound like; empty = unconditional.",
            |ui| ui.text_edit_multiline(&mut p.prompt),
        );
        ui.horizontal(|ui| {
            ui.add(egui::Slider::new(&mut p.duration, 1.0..=60.0).text("seconds"));
            ui.add(egui::DragValue::new(&mut p.seed).prefix("seed "));
            ui.add(egui::Slider::new(&mut p.guidance_scale, 1.0..=10.0).text("CFG"));
        });
        ui.horizontal(|ui| {
            ui.add(egui::Slider::new(&mut p.sampling.temperature, 0.0..=2.0).text("temperature"));
            ui.add(egui::DragValue::new(&mut p.sampling.top_k).prefix("top-k "));
            ui.add(
                egui::DragValue::new(&mut p.sampling.top_p)
                    .range(0.0..=1.0)
                    .speed(0.01)
                    .prefix("top-p "),
            );
        });
        let mut browse = false;
        ui.horizontal(|ui| {
            let mut text = p
                .prompt_audio
                .as_ref()
                .map(|a| a.display().to_string())
                .unwrap_or_default();
            if field(
                ui,
                "Audio prompt",
                "Audio to continue (any format); the clip's length includes it. Empty = none.",
                |ui| ui.add(egui::TextEdit::singleline(&mut text).hint_text("none")),
            )
            .changed()
            {
                p.prompt_audio = (!text.is_empty()).then(|| PathBuf::from(text));
            }
            browse = ui.add_enabled(free, egui::Button::new("Browse…")).clicked();
        });
        if browse {
            self.pick(Pick::AudioPrompt);
        }
        ui.horizontal(|ui| {
            field(
                ui,
                "Clips folder",
                "Generated clips and their history (history.jsonl) are written here.",
                |ui| ui.text_edit_singleline(&mut self.form.clips_dir),
            );
        });
    }

    /// The clip on show: transport (Space, Escape), waveform, save.
    fn clip_view(&mut self, ui: &mut egui::Ui) {
        let Some(c) = self.clip.clone() else {
            return;
        };
        let seconds = c.audio.len() as f64 / c.rate.max(1) as f64;
        let (space, escape) = if ui.ctx().egui_wants_keyboard_input() {
            (false, false)
        } else {
            ui.input(|i| {
                (
                    i.key_pressed(egui::Key::Space),
                    i.key_pressed(egui::Key::Escape),
                )
            })
        };
        ui.horizontal(|ui| {
            let playing = self.player.is_playing();
            if ui.button(if playing { "Pause" } else { "Play" }).clicked() || space {
                if playing {
                    self.player.pause();
                } else if self.player.position() > Duration::ZERO
                    && self.player.position().as_secs_f64() < seconds - 0.01
                {
                    self.player.resume();
                } else if let Err(e) = self.player.play(c.audio.clone(), c.rate, Duration::ZERO) {
                    self.status = Some(e);
                }
            }
            if ui.button("Stop").on_hover_text("Escape").clicked() || escape {
                self.player.stop();
            }
            ui.label(format!(
                "{:.1} / {:.1} s",
                self.player.position().as_secs_f64(),
                seconds
            ));
            if self.player.is_playing() {
                ui.ctx().request_repaint_after(Duration::from_millis(50));
            }
            if ui
                .add_enabled(self.dialog.is_none(), egui::Button::new("Save WAV…"))
                .on_hover_text("Copy the clip to a file of your choice.")
                .clicked()
            {
                self.pick(Pick::SaveWav);
            }
        });
        waveform(
            ui,
            "waveform",
            &c.audio,
            c.rate,
            self.player.position().as_secs_f64(),
        );
    }

    /// Past clips, newest first: click to reload the settings, "Play this" to hear it.
    fn history_ui(&mut self, ui: &mut egui::Ui) {
        if self.history.is_empty() {
            return;
        }
        ui.separator();
        ui.strong(format!("History ({})", self.history.len()));
        let mut reload = None;
        let mut play = None;
        let n = self.history.len();
        let row = ui.spacing().interact_size.y;
        egui::ScrollArea::vertical()
            .id_salt("generate-history")
            .max_height(160.0)
            // Only the visible rows are laid out: the history grows without bound.
            .show_rows(ui, row, n, |ui, rows| {
                for k in rows {
                    let i = n - 1 - k;
                    let e = &self.history[i];
                    ui.horizontal(|ui| {
                        let playable = e
                            .file
                            .extension()
                            .is_some_and(|x| x.eq_ignore_ascii_case("wav"));
                        if ui
                            .add_enabled(playable, egui::Button::new("Play this"))
                            .on_hover_text(format!("Play {}", e.file.display()))
                            .clicked()
                        {
                            play = Some(i);
                        }
                        if ui
                            .selectable_label(self.selected == Some(i), e.summary())
                            .on_hover_text("Reload these settings into the form.")
                            .clicked()
                        {
                            reload = Some(i);
                        }
                    });
                }
            });
        if let Some(i) = reload {
            self.reload_entry(i);
        }
        if let Some(i) = play {
            self.play_entry(i);
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `dir/name`, or `dir/name-2`, `-3`, … when a piece of that name exists (history entries keep
/// pointing at their own files).
fn free_stem(dir: &Path, name: &str) -> PathBuf {
    let taken = |p: &Path| p.with_extension("mid").exists() || p.with_extension("wav").exists();
    let first = dir.join(name);
    if !taken(&first) {
        return first;
    }
    (2..)
        .map(|k| dir.join(format!("{name}-{k}")))
        .find(|p| !taken(p))
        .unwrap_or(first)
}

/// A min/max envelope of a clip (at most ~600 columns) with the playhead.
pub fn waveform(ui: &mut egui::Ui, id: &str, audio: &[f32], rate: u32, playhead: f64) {
    use egui_plot::{Line, Plot, PlotPoints, VLine};
    let cols = 600usize;
    let per = (audio.len() / cols).max(1);
    let mut top = Vec::with_capacity(cols);
    let mut bottom = Vec::with_capacity(cols);
    for (i, chunk) in audio.chunks(per).enumerate() {
        let t = (i * per) as f64 / rate.max(1) as f64;
        let (lo, hi) = chunk
            .iter()
            .fold((0f32, 0f32), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        top.push([t, hi as f64]);
        bottom.push([t, lo as f64]);
    }
    Plot::new(id)
        .height(90.0)
        .show_axes([true, false])
        .allow_scroll(false)
        .show(ui, |p| {
            p.line(Line::new("max", PlotPoints::from(top)));
            p.line(Line::new("min", PlotPoints::from(bottom)));
            p.vline(VLine::new("playhead", playhead));
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use egui_kittest::kittest::Queryable;
    use egui_kittest::Harness;

    struct S {
        panel: GeneratePanel,
        out: Outbox,
    }

    fn musicgen_info() -> ModelInfo {
        ModelInfo {
            family: Family::Musicgen,
            source: None,
            description: "tiny".into(),
            sample_rate: 32_000,
            codebooks: 4,
            parameters: 1,
        }
    }

    fn form(clips: &Path) -> GenerateForm {
        GenerateForm {
            model_spec: "base-model".into(),
            clips_dir: clips.display().to_string(),
            ..Default::default()
        }
    }

    fn harness(panel: GeneratePanel) -> Harness<'static, S> {
        Harness::new_ui_state(
            |ui, s: &mut S| {
                s.panel.poll();
                s.panel.ui(ui, &mut s.out, false)
            },
            S {
                panel,
                out: Outbox::default(),
            },
        )
    }

    fn clip(seconds: f64) -> JobOutput {
        JobOutput::Clip(crate::generate::Clip {
            codes: vec![],
            audio: vec![0.1; (32_000.0 * seconds) as usize],
            sample_rate: 32_000,
        })
    }

    /// Waits (bounded) for the background writes of `n` history lines.
    fn wait_for_history(clips: &Path, n: usize) -> Vec<HistoryEntry> {
        let start = std::time::Instant::now();
        loop {
            let h = read_history(clips);
            if h.len() >= n || start.elapsed() > Duration::from_secs(10) {
                return h;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_batch_of_variations_sends_consecutive_seeds_and_the_history_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let clips = dir.path().join("clips");
        let mut f = form(&clips);
        f.params.seed = 7;
        f.params.sampling.temperature = 0.8;
        f.variations = 3;
        let mut panel = GeneratePanel::new(f.clone(), Box::new(crate::audio::NullSink::default()));
        panel.model_loaded(1, musicgen_info());
        let mut h = harness(panel);
        h.get_by_label("Generate clip").click();
        h.run();
        let sent: Vec<(JobId, u64)> = h
            .state()
            .out
            .commands
            .iter()
            .map(|c| match c {
                Command::Generate { job, params } => {
                    assert_eq!(params.prompt, f.params.prompt);
                    assert_eq!(params.sampling.temperature, 0.8);
                    (*job, params.seed)
                }
                other => panic!("expected Generate commands, got {other:?}"),
            })
            .collect();
        assert_eq!(sent.iter().map(|s| s.1).collect::<Vec<_>>(), [7, 8, 9]);
        assert!(h.state().panel.busy());
        assert!(h
            .state()
            .panel
            .progress()
            .is_some_and(|(_, t)| t.starts_with("clip 1 of 3")));
        for (k, (job, _)) in sent.iter().enumerate() {
            h.state_mut().panel.on_event(&Event::Done {
                job: *job,
                result: Ok(clip(0.5 + k as f64 * 0.25)),
            });
        }
        h.run();
        assert!(!h.state().panel.busy());
        assert_eq!(h.state().panel.history.len(), 3);
        assert!(h.query_by_label_contains("seed 9 · \"lo-fi").is_some());
        let on_disk = wait_for_history(&clips, 3);
        assert_eq!(on_disk.len(), 3);
        for (e, seed) in on_disk.iter().zip([7, 8, 9]) {
            assert!(e.file.is_file(), "{} written", e.file.display());
            assert_eq!(e.model, "base-model");
            match &e.clip {
                ClipParams::Musicgen { params } => assert_eq!(params.seed, seed),
                other => panic!("{other:?}"),
            }
        }
        // A restart reads the same history.
        let again = GeneratePanel::new(f, Box::new(crate::audio::NullSink::default()));
        assert_eq!(again.history, on_disk);
    }

    #[test]
    fn a_history_entry_reloads_its_parameters_and_plays() {
        let dir = tempfile::tempdir().unwrap();
        let clips = dir.path().join("clips");
        let wav = clips.join("old.wav");
        crate::data::audio::write_wav(&wav, &vec![0.2; 16_000], 16_000).unwrap();
        let params = GenerateParams {
            prompt: "dark ambient drone".into(),
            duration: 12.0,
            seed: 42,
            sampling: crate::models::musicgen::sampling::SamplingParams {
                temperature: 0.7,
                top_k: 50,
                top_p: 0.9,
            },
            guidance_scale: 5.5,
            prompt_audio: None,
        };
        let entry = HistoryEntry {
            file: wav.clone(),
            model: "facebook/musicgen-small".into(),
            adapter: Some("/runs/my-lora".into()),
            checkpoint: None,
            created: 1,
            clip: ClipParams::Musicgen {
                params: params.clone(),
            },
        };
        crate::util::append_line(
            &history_path(&clips),
            &serde_json::to_string(&entry).unwrap(),
        )
        .unwrap();
        let mut h = harness(GeneratePanel::new(
            form(&clips),
            Box::new(crate::audio::NullSink::default()),
        ));
        assert_ne!(h.state().panel.form.params, params);
        h.get_by_label_contains("seed 42 · \"dark ambient drone\" · 12.0 s · T 0.70 · top-k 50")
            .click();
        h.run();
        let f = &h.state().panel.form;
        assert_eq!(f.params, params);
        assert_eq!(f.model_spec, "facebook/musicgen-small");
        assert_eq!(f.adapter, "/runs/my-lora");
        assert!(h
            .state()
            .panel
            .status
            .as_deref()
            .is_some_and(|s| s.contains("not the loaded one")));
        h.get_by_label("Play this").click();
        h.step();
        h.step();
        assert!(h.query_by_label("Pause").is_some(), "the entry plays");
        let shown = h.state().panel.clip.as_ref().unwrap();
        assert_eq!((shown.rate, shown.audio.len()), (16_000, 16_000));
    }

    #[test]
    fn save_wav_copies_the_clip_file() {
        let dir = tempfile::tempdir().unwrap();
        let clips = dir.path().join("clips");
        let mut panel =
            GeneratePanel::new(form(&clips), Box::new(crate::audio::NullSink::default()));
        panel.model_loaded(1, musicgen_info());
        let mut out = Outbox::default();
        panel.generate(&mut out);
        let job = panel.jobs[0].job;
        panel.on_event(&Event::Done {
            job,
            result: Ok(clip(0.25)),
        });
        let written = wait_for_history(&clips, 1);
        let dest = dir.path().join("mine.wav");
        panel.apply_pick(Pick::SaveWav, &dest);
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(&written[0].file).unwrap()
        );
        assert!(panel.status.as_deref().unwrap().starts_with("Saved"));
    }

    #[test]
    fn the_model_picker_loads_an_adapter_and_clips_record_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut panel = GeneratePanel::new(
            form(&dir.path().join("clips")),
            Box::new(crate::audio::NullSink::default()),
        );
        panel.runs = vec![RunEntry {
            dir: dir.path().join("runs/my-lora"),
            family: "MusicGen".into(),
            mode: "lora".into(),
            base: "facebook/musicgen-small".into(),
            checkpoints: vec!["best".into(), "last".into(), "step-000010".into()],
        }];
        let song = dir.path().join("song.wav");
        let mut h = harness(panel);
        h.get_by_label("Runs…").click();
        h.run();
        h.get_by_label("adapter: my-lora on facebook/musicgen-small")
            .click();
        h.run();
        assert_eq!(h.state().panel.form.model_spec, "facebook/musicgen-small");
        h.get_by_label("Load").click();
        h.run();
        let (job, adapter) = match h.state().out.commands.as_slice() {
            [Command::LoadModel {
                job, spec, adapter, ..
            }] => {
                assert_eq!(spec, "facebook/musicgen-small");
                (*job, adapter.clone())
            }
            other => panic!("expected a load, got {other:?}"),
        };
        assert_eq!(adapter, Some(dir.path().join("runs/my-lora")));
        h.state_mut().out.commands.clear();
        h.state_mut().panel.model_loaded(job, musicgen_info());
        // Continuation: the audio prompt picked in the dialog goes with the command.
        h.state_mut().panel.apply_pick(Pick::AudioPrompt, &song);
        h.run();
        h.get_by_label("Generate clip").click();
        h.run();
        match h.state().out.commands.as_slice() {
            [Command::Generate { params, .. }] => {
                assert_eq!(params.prompt_audio.as_deref(), Some(song.as_path()))
            }
            other => panic!("expected a Generate, got {other:?}"),
        }
        let e = &h.state().panel.jobs[0].entry;
        assert_eq!(e.model, "facebook/musicgen-small");
        assert_eq!(
            e.adapter.as_deref(),
            Some(
                dir.path()
                    .join("runs/my-lora")
                    .display()
                    .to_string()
                    .as_str()
            )
        );
    }

    #[test]
    fn keys_play_stop_and_generate() {
        let dir = tempfile::tempdir().unwrap();
        let mut panel = GeneratePanel::new(
            form(&dir.path().join("clips")),
            Box::new(crate::audio::NullSink::default()),
        );
        panel.model_loaded(1, musicgen_info());
        panel.clip = Some(Shown {
            audio: Arc::new(vec![0.0; 64_000]),
            rate: 32_000,
            file: None,
        });
        let mut h = harness(panel);
        h.key_press(egui::Key::Space);
        h.step();
        h.step();
        assert!(h.query_by_label("Pause").is_some(), "Space plays");
        h.key_press(egui::Key::Escape);
        h.step();
        h.step();
        assert!(h.query_by_label("Play").is_some(), "Escape stops");
        assert!(h.state().out.commands.is_empty());
        h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Enter);
        h.step();
        assert!(
            matches!(
                h.state().out.commands.as_slice(),
                [Command::Generate { .. }]
            ),
            "Ctrl+Enter generates"
        );
        // Typing a space in the prompt does not play.
        h.state_mut().panel.jobs.clear();
        h.get_by_role_and_label(egui::accesskit::Role::MultilineTextInput, "Prompt")
            .focus();
        h.step();
        h.key_press(egui::Key::Space);
        h.step();
        h.step();
        assert!(h.query_by_label("Play").is_some(), "a space typed is text");
    }

    #[test]
    fn a_runs_checkpoint_is_picked_loaded_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("runs/folk");
        let mut panel = GeneratePanel::new(
            form(&dir.path().join("clips")),
            Box::new(crate::audio::NullSink::default()),
        );
        panel.runs = vec![RunEntry {
            dir: run.clone(),
            family: "Music Transformer".into(),
            mode: "full".into(),
            base: "classical".into(),
            checkpoints: vec!["best".into(), "last".into(), "step-000020".into()],
        }];
        let mut h = harness(panel);
        h.get_by_label("Runs…").click();
        h.run();
        assert!(
            h.query_by_label_contains("folk @ last").is_none(),
            "last is the run itself"
        );
        h.get_by_label_contains("folk @ step-000020").click();
        h.run();
        assert_eq!(h.state().panel.form.model_spec, run.display().to_string());
        assert_eq!(h.state().panel.form.checkpoint, "step-000020");
        h.get_by_label("Load").click();
        h.run();
        let job = match h.state().out.commands.as_slice() {
            [Command::LoadModel {
                job,
                checkpoint,
                adapter: None,
                ..
            }] => {
                assert_eq!(checkpoint.as_deref(), Some("step-000020"));
                *job
            }
            other => panic!("expected a load, got {other:?}"),
        };
        h.state_mut().panel.model_loaded(job, musicgen_info());
        let loaded = h.state().panel.loaded_as.clone().unwrap();
        assert_eq!(loaded.checkpoint.as_deref(), Some("step-000020"));
        let mut out = Outbox::default();
        h.state_mut().panel.generate(&mut out);
        let e = &h.state().panel.jobs[0].entry;
        assert_eq!(e.checkpoint.as_deref(), Some("step-000020"));
        assert!(e.summary().contains("folk @ step-000020"));
    }
}
