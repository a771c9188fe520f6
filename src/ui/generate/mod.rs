//! The Generate panel: pick a model (a baseline, a training run, or a LoRA adapter on a base),
//! set the prompt and sampling (or, for a Music Transformer, the prime), generate one clip or a
//! batch of variations (seeds `seed`, `seed + 1`, …, queued by the engine one after the other),
//! play it and save it. Every clip is written to the clips folder and appended to its
//! `history.jsonl`, so the history survives restarts; an entry reloads its parameters into the
//! form and plays its file.
//!
//! Keys (when no text field has focus): `Space` play / pause, `Escape` stop;
//! `Ctrl+Enter` generates (also from the prompt field).
//!
//! Here: the form, the panel's state and how engine events change it. The commands it sends
//! are built in `request.rs`, the history is kept by `history.rs`, the clip heard while it is
//! generated is `stream.rs`, the drawing is `view.rs`.

mod history;
mod request;
mod stream;
mod view;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::audio::Player;
use crate::engine::{Event, JobId, JobOutput, ModelInfo};
use crate::models::Family;
use crate::ui::common::{DialogKind, FileDialog};
pub use crate::ui::forms::{GenerateForm, MidiForm};
use crate::ui::panel::Outbox;
use crate::ui::panel::{ModelBusy, Panel, Request};
use crate::ui::runs::RunEntry;
use crate::ui::state::State;
use crate::ui::status::Status;
use crate::ui::tab::Tab;

pub use history::{history_path, read_history, ClipParams, HistoryEntry, HistoryWriter};
pub use request::{LoadedAs, Pending, RANDOM_SMALL};

/// The clip on show: its samples and, once written, its file.
#[derive(Debug, Clone)]
pub struct Shown {
    pub audio: Arc<Vec<f32>>,
    pub rate: u32,
    pub file: Option<PathBuf>,
}

/// The Save WAV… dialog (the path fields have their own, in the picker).
const SAVE_WAV: DialogKind = DialogKind::Save {
    filter: "WAV",
    extensions: &["wav"],
    file_name: "clip.wav",
};

pub struct GeneratePanel {
    pub form: GenerateForm,
    pub model: Option<ModelInfo>,
    /// What the loaded model was loaded as.
    pub loaded_as: Option<LoadedAs>,
    /// A load this panel sent, with what it loads (matched with the engine's answer).
    load_job: Option<(JobId, LoadedAs)>,
    /// Generation jobs sent and not done, in the engine's order.
    pub pending: VecDeque<Pending>,
    /// Decoder steps of the running job, and how many jobs the current batch had.
    pub step: (usize, usize),
    pub batch: usize,
    pub clip: Option<Shown>,
    pub history: Vec<HistoryEntry>,
    /// The history entry last clicked.
    pub selected: Option<usize>,
    /// Training runs offered by the model picker (the Models panel finds them).
    runs: Vec<RunEntry>,
    player: Player,
    /// The clip heard while it is generated (the first of a batch), and the speed the last one
    /// was generated at (audio seconds per wall second), so the next can start sooner.
    streaming: Option<stream::Streaming>,
    last_speed: Option<f64>,
    dialog: FileDialog<()>,
    /// Show the clip's spectrogram; its texture, for the clip (samples' address and length)
    /// it was made from.
    pub show_spectrogram: bool,
    spectrogram: Option<((usize, usize), egui::TextureHandle)>,
    /// Writes clips and history lines off the UI thread.
    writer: HistoryWriter,
}

impl GeneratePanel {
    pub fn new(form: GenerateForm, player: Player) -> Self {
        let history = read_history(Path::new(&form.clips_dir));
        Self {
            form,
            model: None,
            loaded_as: None,
            load_job: None,
            pending: VecDeque::new(),
            step: (0, 0),
            batch: 0,
            clip: None,
            history,
            selected: None,
            runs: Vec::new(),
            player,
            streaming: None,
            last_speed: None,
            dialog: FileDialog::default(),
            show_spectrogram: false,
            spectrogram: None,
            writer: HistoryWriter::default(),
        }
    }

    /// Is a generation queued or running?
    pub fn busy(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The training runs the model picker offers.
    pub fn set_runs(&mut self, runs: Vec<RunEntry>) {
        self.runs = runs;
    }

    pub fn runs(&self) -> &[RunEntry] {
        &self.runs
    }

    /// Queues loading `spec` (with the form's adapter and checkpoint when `with_form`).
    pub fn load(&mut self, out: &mut Outbox, spec: String, with_form: bool) {
        let loaded = LoadedAs::from_form(&self.form, spec, with_form);
        let job = out.job();
        out.send(loaded.command(job));
        self.track(out, job, loaded);
    }

    /// Loads the form's model when it is a local folder (nothing to download); false if not.
    pub fn load_local(&mut self, out: &mut Outbox) -> bool {
        let spec = self.form.model_spec.clone();
        if !Path::new(&spec).is_dir() {
            return false;
        }
        self.load(out, spec, true);
        true
    }

    /// Queues the published small layout with random weights.
    fn load_random(&mut self, out: &mut Outbox) {
        let job = out.job();
        let (loaded, cmd) = LoadedAs::random_small(job);
        out.send(cmd);
        self.track(out, job, loaded);
    }

    /// Remembers what `job` loads, and asks the shell to show its progress.
    fn track(&mut self, out: &mut Outbox, job: JobId, loaded: LoadedAs) {
        out.request(Request::TrackLoad {
            job,
            what: loaded.model.clone(),
        });
        self.load_job = Some((job, loaded));
    }

    /// A model finished loading (asked by this panel or another): the form's model, adapter
    /// and checkpoint now name it, so the form and the loaded model never disagree.
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
        if let Some(l) = &self.loaded_as {
            self.form.model_spec = l.model.clone();
            self.form.adapter = l.adapter.clone().unwrap_or_default();
            self.form.checkpoint = l.checkpoint.clone().unwrap_or_default();
        }
        self.model = Some(info);
    }

    /// Sends the form's batch: `variations` jobs with consecutive seeds.
    pub fn generate(&mut self, out: &mut Outbox) {
        let loaded = self.loaded_as.clone().unwrap_or_else(|| LoadedAs {
            model: self.form.model_spec.clone(),
            ..Default::default()
        });
        let batch = request::batch(
            &self.form,
            &loaded,
            self.is_midi(),
            request::now_ms(),
            || out.job(),
        );
        match batch {
            Ok(batch) => {
                self.batch = batch.len();
                self.step = (0, 1);
                let first = batch.first().map(|(_, p)| p.job);
                for (cmd, pending) in batch {
                    out.send(cmd);
                    self.pending.push_back(pending);
                }
                if let Some(job) = first.filter(|_| self.form.play_while_generating) {
                    if !self.is_midi() {
                        self.streaming = Some(stream::Streaming::new(
                            job,
                            self.form.params.duration,
                            self.last_speed,
                        ));
                    }
                }
            }
            Err(e) => out.status(Status::Error(format!("Error: {e}"))),
        }
    }

    /// Asks the shell to cancel every generation of this panel still queued or running, and
    /// stops the clip heard while it was generated.
    fn cancel(&mut self, out: &mut Outbox) {
        for p in &self.pending {
            out.cancel(p.job);
        }
        if let Some(s) = self.streaming.take() {
            s.cancel(&self.player);
        }
    }

    /// A chunk of a generation's final audio: heard and shown if it is the clip streaming.
    fn audio(&mut self, job: JobId, start: usize, samples: &[f32], rate: u32, out: &mut Outbox) {
        let Some(s) = self.streaming.as_mut().filter(|s| s.job == job) else {
            return;
        };
        match s.chunk(&self.player, start, samples, rate) {
            Ok(Some(wave)) => {
                self.clip = Some(Shown {
                    audio: wave,
                    rate,
                    file: None,
                })
            }
            Ok(None) => {}
            Err(e) => {
                self.streaming = None;
                out.status(Status::Warning(format!(
                    "Playback while generating stopped: {e}"
                )));
            }
        }
    }

    /// The end of generation `job`: show its clip or piece, keep it in the history.
    fn generation_done(
        &mut self,
        job: JobId,
        result: &Result<JobOutput, String>,
        out: &mut Outbox,
    ) {
        let Some(i) = self.pending.iter().position(|p| p.job == job) else {
            return;
        };
        let Some(p) = self.pending.remove(i) else {
            return;
        };
        self.step = (0, 0);
        let streamed = self.streaming.take_if(|s| s.job == job);
        let status = match result {
            Ok(JobOutput::Clip(clip)) => {
                let audio = Arc::new(clip.audio.clone());
                self.finished(p.entry, audio.clone(), clip.sample_rate, true, out);
                if let Some(s) = streamed {
                    self.last_speed = s
                        .finish(&self.player, &audio, clip.sample_rate)
                        .or(self.last_speed);
                }
                Status::Info(format!(
                    "Generated {:.1} s.",
                    clip.audio.len() as f64 / clip.sample_rate.max(1) as f64
                ))
            }
            Ok(JobOutput::Piece(piece)) => {
                let mut entry = p.entry;
                entry.file = piece.playable().to_path_buf();
                let audio = Arc::new(piece.audio.clone());
                self.finished(entry, audio, piece.sample_rate, false, out);
                match &piece.render_error {
                    None => Status::Info(format!(
                        "Generated {} events ({} notes): {}",
                        piece.events.len(),
                        piece.notes,
                        piece.playable().display()
                    )),
                    Some(e) => Status::Warning(format!(
                        "Wrote {} but could not render it: {e}",
                        piece.midi.display()
                    )),
                }
            }
            Ok(_) => return,
            Err(e) => {
                if let Some(s) = streamed {
                    s.cancel(&self.player);
                }
                Status::Error(format!("Error: {e}"))
            }
        };
        out.status(status);
    }

    /// Shows a finished clip, adds it to the history, and has it written (`write_wav`: a
    /// MusicGen clip; a piece's files are written by the engine) with its history line.
    fn finished(
        &mut self,
        entry: HistoryEntry,
        audio: Arc<Vec<f32>>,
        rate: u32,
        write_wav: bool,
        out: &mut Outbox,
    ) {
        self.clip = Some(Shown {
            audio: audio.clone(),
            rate,
            file: Some(entry.file.clone()),
        });
        self.history.push(entry.clone());
        self.selected = Some(self.history.len() - 1);
        out.request(Request::ClipAdded {
            entry: Box::new(entry.clone()),
            audio: audio.clone(),
            rate,
        });
        let history = history_path(Path::new(&self.form.clips_dir));
        let wav = write_wav.then_some((audio, rate));
        if let Err(e) = self.writer.write(history, entry, wav) {
            out.status(Status::Error(format!(
                "Error: could not write the clip: {e}"
            )));
        }
    }

    /// Opens the Save WAV… dialog (one at a time).
    fn pick_save(&mut self) {
        self.dialog.open((), SAVE_WAV);
    }

    /// Copies the clip's file to `dest` (written from its samples while the file is not yet
    /// on disk), atomically.
    pub fn save_wav(&self, dest: &Path) -> Status {
        let Some(c) = &self.clip else {
            return Status::Warning("No clip to save.".into());
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
            Ok(()) => Status::Info(format!("Saved {}", dest.display())),
            Err(e) => Status::Error(format!("Error: {e}")),
        }
    }

    /// Puts entry `i`'s parameters (and model) in the form.
    /// Returns a line for the status bar when the entry's model is not the one loaded.
    pub fn reload_entry(&mut self, i: usize) -> Option<Status> {
        let e = self.history.get(i).cloned()?;
        self.selected = Some(i);
        self.reuse(&e)
    }

    /// Puts `e`'s parameters (and model) in the form (a clip of the history or the Library).
    /// Returns a line for the status bar when its model is not the one loaded.
    pub fn reuse(&mut self, e: &HistoryEntry) -> Option<Status> {
        self.form.model_spec = e.model.clone();
        self.form.adapter = e.adapter.clone().unwrap_or_default();
        self.form.checkpoint = e.checkpoint.clone().unwrap_or_default();
        match e.clip.clone() {
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
        // The history does not record the weight mode: the loaded one counts as wanted.
        let wanted = LoadedAs {
            model: e.model.clone(),
            adapter: e.adapter.clone(),
            checkpoint: e.checkpoint.clone(),
            weights: self
                .loaded_as
                .as_ref()
                .map_or(self.form.weights, |l| l.weights),
        };
        (self.loaded_as.as_ref() != Some(&wanted)).then(|| {
            Status::Warning(format!(
                "Settings of {} reloaded; its model is not the loaded one: Load it to regenerate.",
                e.file.display()
            ))
        })
    }

    /// Plays entry `i`'s file (a WAV) from the start; what went wrong, if anything.
    pub fn play_entry(&mut self, i: usize) -> Option<Status> {
        let e = self.history.get(i)?;
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
                self.player
                    .play(audio, d.sample_rate, Duration::ZERO)
                    .err()
                    .map(Status::Error)
            }
            Err(e) => Some(Status::Error(format!("Error: {e}"))),
        }
    }

    fn is_midi(&self) -> bool {
        self.model
            .as_ref()
            .is_some_and(|m| m.family == Family::Midi)
    }
}

impl Panel for GeneratePanel {
    fn tab(&self) -> Tab {
        Tab::Generate
    }

    fn ui(&mut self, ui: &mut egui::Ui, model: ModelBusy, out: &mut Outbox) {
        self.draw(ui, model.loading, out);
    }

    /// Steps and ends of this panel's generations; and every model load that ends, since the
    /// engine's one model is the one this panel generates with (loads are the shell's to
    /// report, so they are not claimed).
    fn on_event(&mut self, ev: &Event, out: &mut Outbox) -> bool {
        match ev {
            Event::GenerateStep { job, step, total } if self.owns(*job) => {
                self.step = (*step, *total);
                true
            }
            Event::Audio {
                job,
                start,
                samples,
                sample_rate,
            } if self.owns(*job) => {
                self.audio(*job, *start, samples, *sample_rate, out);
                true
            }
            Event::Done {
                job,
                result: Ok(JobOutput::ModelLoaded(info)),
            } => {
                self.model_loaded(*job, info.clone());
                false
            }
            // The engine moved to another device and dropped its model.
            Event::Done {
                result: Ok(JobOutput::DeviceReady { .. }),
                ..
            } => {
                self.model = None;
                self.loaded_as = None;
                false
            }
            Event::Done { job, result } if self.owns(*job) => {
                self.generation_done(*job, result, out);
                true
            }
            _ => false,
        }
    }

    /// Writes done off the UI thread (their failures go to the status bar) and dialogs answered.
    fn poll(&mut self, out: &mut Outbox) {
        for r in self.writer.poll() {
            if let Err(e) = r {
                out.status(Status::Error(format!("Error: {e}")));
            }
        }
        if let Some(((), dest)) = self.dialog.poll() {
            out.status(self.save_wav(&dest));
        }
    }

    /// Its columns scroll on their own.
    fn scrolls(&self) -> bool {
        false
    }

    fn jobs(&self) -> Vec<JobId> {
        self.pending.iter().map(|p| p.job).collect()
    }

    fn owns(&self, job: JobId) -> bool {
        self.pending.iter().any(|p| p.job == job)
    }

    /// The generation's progress: fraction and text.
    fn progress(&self) -> Option<(f32, String)> {
        if self.pending.is_empty() {
            return None;
        }
        let (step, total) = self.step;
        let f = step as f32 / total.max(1) as f32;
        let of = if self.batch > 1 {
            format!(
                "clip {} of {} · ",
                self.batch - self.pending.len() + 1,
                self.batch
            )
        } else {
            String::new()
        };
        Some((f, format!("{of}step {step}/{total}")))
    }

    fn save(&self, state: &mut State) {
        state.generate = self.form.clone();
    }
}

#[cfg(test)]
mod tests;
