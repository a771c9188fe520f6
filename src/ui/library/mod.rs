//! The Library panel: every generated clip (MusicGen clips and Music Transformer pieces, from
//! the Generate tab's clips folder and its `history.jsonl`) in one list, newest first, each with
//! its waveform thumbnail, prompt, model, seed, length and date. From the list: play, stop,
//! seek (click the waveform), loop; mark two clips to A/B them by ear on the spot, loudness
//! matched as the blind listening test matches its pairs (EBU R128, −23 LUFS, a shared true-peak
//! ceiling); send a clip's settings or its audio (as the audio prompt) to the Generate tab, its
//! models and prompts to a new listening test, or export it; search by prompt or model, or
//! show one model's clips.
//!
//! Keys (when no text field has focus): `Space` play / pause, `Escape` stop, `A` / `B` the side
//! of the pair heard, `L` loop.
//!
//! Here: the panel's state and actions; `view.rs` draws it, `thumbs.rs` makes the thumbnails.

mod thumbs;
mod view;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::audio::Player;
use crate::engine::{Event, JobId};
use crate::eval::listen::loudness::{match_pair, DEFAULT_MAX_TRUE_PEAK_DBTP, DEFAULT_TARGET_LUFS};
use crate::ui::common::{DialogKind, FileDialog};
use crate::ui::forms::LibraryForm;
use crate::ui::generate::{read_history, ClipParams, HistoryEntry};
use crate::ui::panel::{ModelBusy, Outbox, Panel, Request};
use crate::ui::state::State;
use crate::ui::status::Status;
use crate::ui::tab::Tab;

pub use thumbs::{Thumb, ThumbState, Thumbs, COLUMNS};

/// The clip in the player: which entry, its samples, and whether the listener paused it.
#[derive(Debug, Clone)]
pub struct Current {
    pub entry: usize,
    pub audio: Arc<Vec<f32>>,
    pub rate: u32,
    pub paused: bool,
}

impl Current {
    pub fn seconds(&self) -> f64 {
        self.audio.len() as f64 / self.rate.max(1) as f64
    }
}

/// One side of an A/B pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// Two clips made ready to compare: trimmed to the shorter and brought to the same loudness.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The entries compared (A, B).
    pub entries: [usize; 2],
    pub audio: [Arc<Vec<f32>>; 2],
    pub rate: u32,
    /// The gain each side got (dB).
    pub gains_db: [f64; 2],
    /// The side heard now (or left paused), if any.
    pub side: Option<Side>,
}

impl Pair {
    fn audio(&self, side: Side) -> Arc<Vec<f32>> {
        match side {
            Side::A => self.audio[0].clone(),
            Side::B => self.audio[1].clone(),
        }
    }
}

pub struct LibraryPanel {
    pub form: LibraryForm,
    /// The clips folder whose history is listed (the Generate tab's).
    clips_dir: PathBuf,
    /// Its clips, oldest first (as in `history.jsonl`; entries are only ever appended, so an
    /// index names one clip for the panel's life).
    pub entries: Vec<HistoryEntry>,
    pub thumbs: Thumbs,
    player: Player,
    pub current: Option<Current>,
    /// Entries marked for A/B (at most two, in the order marked).
    pub marked: Vec<usize>,
    pub pair: Option<Pair>,
    /// Export dialogs, by entry.
    dialog: FileDialog<usize>,
}

impl LibraryPanel {
    pub fn new(form: LibraryForm, clips_dir: &str, player: Player) -> Self {
        let clips_dir = PathBuf::from(clips_dir);
        Self {
            form,
            entries: read_history(&clips_dir),
            clips_dir,
            thumbs: Thumbs::default(),
            player,
            current: None,
            marked: Vec::new(),
            pair: None,
            dialog: FileDialog::default(),
        }
    }

    /// Lists `clips_dir`'s clips when it is not the folder listed now (the Generate form's
    /// folder changed).
    pub fn follow(&mut self, clips_dir: &str) {
        if Path::new(clips_dir) == self.clips_dir {
            return;
        }
        self.player.stop();
        self.clips_dir = PathBuf::from(clips_dir);
        self.entries = read_history(&self.clips_dir);
        self.current = None;
        self.marked.clear();
        self.pair = None;
    }

    /// A clip just generated (its file may still be being written): listed, with its
    /// thumbnail from `audio`.
    pub fn add(&mut self, entry: HistoryEntry, audio: &[f32], rate: u32) {
        self.thumbs.insert(&entry.file, Thumb::of(audio, rate));
        self.entries.push(entry);
    }

    /// The entries shown, newest first: those of the model filtered for (if any) whose prompt,
    /// model or file name contains the search text (any case).
    pub fn visible(&self) -> Vec<usize> {
        let q = self.form.search.trim().to_lowercase();
        let model = self.form.model.as_str();
        (0..self.entries.len())
            .rev()
            .filter(|i| model.is_empty() || self.entries[*i].model == model)
            .filter(|i| q.is_empty() || haystack(&self.entries[*i]).contains(&q))
            .collect()
    }

    /// The models of the listed clips, each once, in the order first generated.
    pub fn models(&self) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for e in &self.entries {
            if !seen.contains(&e.model) {
                seen.push(e.model.clone());
            }
        }
        seen
    }

    /// Plays entry `i` from `from` seconds.
    pub fn play(&mut self, i: usize, from: f64) -> Option<Status> {
        let e = self.entries.get(i)?;
        let (audio, rate) = match self.current.as_ref().filter(|c| c.entry == i) {
            Some(c) => (c.audio.clone(), c.rate),
            None => match crate::data::audio::decode_file(&e.file) {
                Ok(d) => (
                    Arc::new(crate::data::audio::to_mono(&d.samples, d.channels)),
                    d.sample_rate,
                ),
                Err(err) => return Some(Status::Error(format!("Error: {err}"))),
            },
        };
        self.current = Some(Current {
            entry: i,
            audio: audio.clone(),
            rate,
            paused: false,
        });
        if let Some(p) = &mut self.pair {
            p.side = None;
        }
        self.player
            .play(audio, rate, Duration::from_secs_f64(from.max(0.0)))
            .err()
            .map(Status::Error)
    }

    /// Space: pauses what plays, resumes what was paused, else plays the newest visible clip.
    pub fn play_or_pause(&mut self) -> Option<Status> {
        if self.player.is_playing() {
            self.player.pause();
            if let Some(c) = &mut self.current {
                c.paused = true;
            }
            return None;
        }
        if let Some(c) = self.current.as_mut().filter(|c| c.paused) {
            c.paused = false;
            return self.player.resume().err().map(Status::Error);
        }
        let i = self.current.as_ref().map(|c| c.entry);
        let i = i.or_else(|| self.visible().first().copied())?;
        self.play(i, 0.0)
    }

    pub fn stop(&mut self) {
        self.player.stop();
        self.current = None;
        if let Some(p) = &mut self.pair {
            p.side = None;
        }
    }

    pub fn is_playing(&self) -> bool {
        self.player.is_playing()
    }

    /// The playhead of the clip or pair side in the player.
    pub fn position(&self) -> f64 {
        self.player.position().as_secs_f64()
    }

    /// Marks entry `i` for A/B, or unmarks it; a third mark replaces the first.
    pub fn toggle_mark(&mut self, i: usize) {
        if let Some(k) = self.marked.iter().position(|m| *m == i) {
            self.marked.remove(k);
        } else {
            self.marked.push(i);
            if self.marked.len() > 2 {
                self.marked.remove(0);
            }
        }
        if self
            .pair
            .as_ref()
            .is_some_and(|p| p.entries.to_vec() != self.marked)
        {
            self.pair = None;
        }
    }

    /// Prepares the two marked clips for A/B: B at A's rate, both trimmed to the shorter and
    /// loudness matched.
    pub fn compare(&mut self) -> Result<(), String> {
        let [a, b] = self.marked[..] else {
            return Err("Mark two clips to compare them.".into());
        };
        let file = |i: usize| self.entries.get(i).map(|e| e.file.clone());
        let (Some(fa), Some(fb)) = (file(a), file(b)) else {
            return Err("A marked clip is no longer listed.".into());
        };
        let da = crate::data::audio::decode_file(&fa).map_err(|e| e.to_string())?;
        let rate = da.sample_rate;
        let xa = crate::data::audio::to_mono(&da.samples, da.channels);
        let xb = crate::data::audio::load_mono(&fb, rate).map_err(|e| e.to_string())?;
        let m = match_pair(
            &xa,
            &xb,
            rate,
            DEFAULT_TARGET_LUFS,
            DEFAULT_MAX_TRUE_PEAK_DBTP,
        )
        .map_err(|e| format!("Could not match the loudness of the two clips: {e}"))?;
        self.pair = Some(Pair {
            entries: [a, b],
            audio: [Arc::new(m.a), Arc::new(m.b)],
            rate,
            gains_db: [m.gain_a_db, m.gain_b_db],
            side: None,
        });
        Ok(())
    }

    /// Hears `side` of the pair, from where the other side was (switching keeps the playhead).
    pub fn hear(&mut self, side: Side) -> Option<Status> {
        let at = match &self.pair {
            Some(p) if p.side.is_some() => self.player.position(),
            _ => Duration::ZERO,
        };
        let p = self.pair.as_mut()?;
        p.side = Some(side);
        let (audio, rate) = (p.audio(side), p.rate);
        self.current = None;
        self.player.play(audio, rate, at).err().map(Status::Error)
    }

    /// The requests that send entry `i` elsewhere: its audio as the Generate tab's audio prompt.
    pub fn as_prompt(&self, i: usize, out: &mut Outbox) {
        if let Some(e) = self.entries.get(i) {
            out.request(Request::AudioPrompt(e.file.clone()));
        }
    }

    /// Its settings (model, prompt, seed, sampling) into the Generate form.
    pub fn reuse(&self, i: usize, out: &mut Outbox) {
        if let Some(e) = self.entries.get(i) {
            out.request(Request::Reuse(Box::new(e.clone())));
        }
    }

    /// A new listening test of the marked clips' models on their prompts (one marked clip:
    /// its model as A, B left as it was).
    pub fn to_listening_test(&self, out: &mut Outbox) -> Option<Status> {
        let picked: Vec<&HistoryEntry> = self
            .marked
            .iter()
            .filter_map(|i| self.entries.get(*i))
            .collect();
        let first = picked.first()?;
        let mut prompts: Vec<String> = picked.iter().map(|e| listen_prompt(e)).collect();
        prompts.dedup();
        let same = picked.len() == 2 && picked[0].model == picked[1].model;
        out.request(Request::ListenTest {
            model_a: first.model.clone(),
            model_b: picked.get(1).map(|e| e.model.clone()),
            prompts,
        });
        same.then(|| {
            Status::Warning(
                "Both clips are from the same model: pick model B in the Listen tab.".into(),
            )
        })
    }

    /// Opens the save dialog for entry `i`.
    pub fn export(&mut self, i: usize) {
        let ext = self.entries.get(i).map(|e| {
            e.file
                .extension()
                .map(|x| x.to_string_lossy().to_lowercase())
                .unwrap_or_default()
        });
        let kind = if ext.as_deref() == Some("mid") {
            DialogKind::Save {
                filter: "MIDI",
                extensions: &["mid"],
                file_name: "piece.mid",
            }
        } else {
            DialogKind::Save {
                filter: "WAV",
                extensions: &["wav"],
                file_name: "clip.wav",
            }
        };
        self.dialog.open(i, kind);
    }

    /// Copies entry `i`'s file to `dest` (atomically).
    pub fn export_to(&self, i: usize, dest: &Path) -> Status {
        let Some(e) = self.entries.get(i) else {
            return Status::Warning("That clip is no longer listed.".into());
        };
        let r = std::fs::read(&e.file)
            .map_err(|err| crate::error::Error::io(&e.file, err))
            .and_then(|b| crate::util::atomic_write(dest, &b));
        match r {
            Ok(()) => Status::Info(format!("Exported {}", dest.display())),
            Err(err) => Status::Error(format!("Error: {err}")),
        }
    }

    /// Loops the clip in the player when it has played to its end.
    fn keep_looping(&mut self) -> Option<Status> {
        if !self.form.loop_playback || !self.player.owns() || self.player.is_playing() {
            return None;
        }
        let seconds = match (&self.current, &self.pair) {
            (Some(c), _) if !c.paused => c.seconds(),
            (None, Some(p)) if p.side.is_some() => p.audio[0].len() as f64 / p.rate.max(1) as f64,
            _ => return None,
        };
        if self.position() + 0.05 < seconds {
            return None;
        }
        match (&self.current, self.pair.as_ref().and_then(|p| p.side)) {
            (Some(c), _) => {
                let (audio, rate) = (c.audio.clone(), c.rate);
                self.player.play(audio, rate, Duration::ZERO).err()
            }
            (None, Some(side)) => {
                let p = self.pair.as_ref()?;
                self.player
                    .play(p.audio(side), p.rate, Duration::ZERO)
                    .err()
            }
            _ => None,
        }
        .map(Status::Error)
    }
}

/// What the search looks in: prompt, model, adapter and file name, lower-cased.
fn haystack(e: &HistoryEntry) -> String {
    format!(
        "{} {} {} {}",
        listen_prompt(e),
        e.model,
        e.adapter.as_deref().unwrap_or(""),
        e.file.display()
    )
    .to_lowercase()
}

/// A clip's prompt as a listening test takes it (MusicGen: its text; a piece: `improv` or its
/// prime file).
fn listen_prompt(e: &HistoryEntry) -> String {
    match &e.clip {
        ClipParams::Musicgen { params } => params.prompt.clone(),
        ClipParams::Midi { prime, .. } if prime.trim().is_empty() => "improv".into(),
        ClipParams::Midi { prime, .. } => prime.clone(),
    }
}

/// `ms` (Unix time) as `YYYY-MM-DD HH:MM` UTC.
pub fn date_text(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let (h, m) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Days to a civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}")
}

impl Panel for LibraryPanel {
    fn tab(&self) -> Tab {
        Tab::Library
    }

    fn ui(&mut self, ui: &mut egui::Ui, _model: ModelBusy, out: &mut Outbox) {
        self.draw(ui, out);
    }

    fn on_event(&mut self, _ev: &Event, _out: &mut Outbox) -> bool {
        false
    }

    /// Thumbnails made, export dialogs answered, and the loop.
    fn poll(&mut self, out: &mut Outbox) {
        self.thumbs.poll();
        if let Some((i, dest)) = self.dialog.poll() {
            out.status(self.export_to(i, &dest));
        }
        if let Some(s) = self.keep_looping() {
            out.status(s);
        }
    }

    /// Its list scrolls on its own (the search and A/B strip stay in view).
    fn scrolls(&self) -> bool {
        false
    }

    fn jobs(&self) -> Vec<JobId> {
        Vec::new()
    }

    fn save(&self, state: &mut State) {
        state.library = self.form.clone();
    }
}

#[cfg(test)]
mod tests;
