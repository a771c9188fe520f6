//! The Listen panel: a blind A/B (optionally ABX) session run entirely from the keyboard.
//! The panel sees only the session's [`BlindView`] and the paths of the current trial's clips;
//! which model is "A" is revealed after the rater's last answer. Every answer is appended to
//! the session log and fsynced before the next trial shows.
//!
//! Keys: `A` / `B` play that side (switching keeps the playhead), `X` plays the ABX reference,
//! `Space` pauses / resumes, `←` / `→` seek 2 s, `[` / `]` mark a loop region, `1` prefer A,
//! `2` prefer B, `0` no preference;
//! with ABX, `Q` / `W` answer "X is A" / "X is B" first.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::audio::AudioSink;
use crate::engine::{Command, Event, JobId, JobOutput};
use crate::eval::listen::prepare::SessionPlan;
use crate::eval::listen::session::{
    BlindView, Choice, PlayState, PlayTarget, Response, SessionLog, Side,
};
use crate::eval::listen::stats::{min_wins_for_significance, power_votes};
use crate::ui::listen_results::ResultsView;
use crate::ui::train::{field, Outbox};

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ListenForm {
    pub log: String,
    pub rater: String,
    pub setup: SetupForm,
}

/// A new session, prepared by the engine (as `tunelab listen new`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SetupForm {
    /// Model A (e.g. the baseline) and B (e.g. the fine-tune): Hub id, folder or run.
    pub model_a: String,
    pub model_b: String,
    /// One prompt per line (MusicGen: text; Music Transformer: `improv` or a MIDI file to
    /// continue).
    pub prompts: String,
    /// A dataset whose test split gives the prompts.
    pub dataset: String,
    pub clips_per_prompt: usize,
    pub seconds: f64,
    pub trials: usize,
    pub abx: bool,
    pub catch_every: usize,
    /// Where the session goes (clips and `session.jsonl`).
    pub out: String,
}

impl Default for SetupForm {
    fn default() -> Self {
        let demo = crate::demo::demo_dir();
        Self {
            model_a: crate::demo::model_dir().display().to_string(),
            model_b: demo.join("runs/folk-finetune").display().to_string(),
            prompts: "improv".into(),
            dataset: crate::demo::dataset_dir("folk").display().to_string(),
            clips_per_prompt: 2,
            seconds: 10.0,
            trials: 20,
            abx: false,
            catch_every: 0,
            out: demo
                .join("sessions/folk-vs-classical")
                .display()
                .to_string(),
        }
    }
}

impl SetupForm {
    /// The prompts, one per non-empty line.
    pub fn prompt_list(&self) -> Vec<String> {
        self.prompts
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }
}

/// Prompts from a dataset's test split: captions of audio segments, or the pieces of a MIDI
/// dataset (each continued from its opening), at most `n`, in the dataset's order.
pub fn test_prompts(dataset: &std::path::Path, n: usize) -> crate::error::Result<Vec<String>> {
    use crate::data::dataset::{Segment, Split};
    let segs: Vec<Segment> = crate::data::dataset::read_jsonl(&dataset.join("segments.jsonl"))?;
    let midi = crate::data::midi_dataset::is_midi_dataset(dataset);
    let mut out: Vec<String> = Vec::new();
    for s in segs.into_iter().filter(|s| s.split == Split::Test) {
        let p = if midi {
            s.path.display().to_string()
        } else {
            s.caption
        };
        if !out.contains(&p) {
            out.push(p);
        }
        if out.len() == n {
            break;
        }
    }
    Ok(out)
}

pub struct ListenPanel {
    pub form: ListenForm,
    pub session: Option<SessionLog>,
    pub view: Option<BlindView>,
    /// The unblinded results: after the rater's last answer, or opened by the owner.
    pub results: Option<ResultsView>,
    pub error: Option<String>,
    pub playing: Option<PlayTarget>,
    pub abx_answer: Option<Side>,
    /// A loop region `[start, end)` within the clips (kept across A/B switches and trials).
    pub loop_region: Option<(Duration, Duration)>,
    loop_start: Option<Duration>,
    clips: HashMap<PlayTarget, Arc<Vec<f32>>>,
    sink: Box<dyn AudioSink>,
    /// The engine job preparing a new session, and its last progress line.
    pub job: Option<JobId>,
    pub progress: String,
}

const RATE: u32 = 32_000;
const SEEK: Duration = Duration::from_secs(2);

impl ListenPanel {
    pub fn new(form: ListenForm, sink: Box<dyn AudioSink>) -> Self {
        Self {
            form,
            session: None,
            view: None,
            results: None,
            error: None,
            playing: None,
            abx_answer: None,
            loop_region: None,
            loop_start: None,
            clips: HashMap::new(),
            sink,
            job: None,
            progress: String::new(),
        }
    }

    /// Whether `job` is this panel's (preparing a session, or computing the results' numbers).
    pub fn owns(&self, job: JobId) -> bool {
        Some(job) == self.job || self.results.as_ref().is_some_and(|r| r.job == Some(job))
    }

    /// Engine events of the session being prepared: progress, then the log to open.
    pub fn on_event(&mut self, ev: &Event) {
        if let Some(r) = self.results.as_mut() {
            r.on_event(ev);
        }
        match ev {
            Event::Progress { job, message } if Some(*job) == self.job => {
                self.progress = message.clone();
            }
            Event::Done { job, result } if Some(*job) == self.job => {
                self.job = None;
                self.progress.clear();
                match result {
                    Ok(JobOutput::SessionReady(log)) => {
                        self.form.log = log.display().to_string();
                        self.open();
                    }
                    Ok(_) => {}
                    Err(e) => self.error = Some(format!("Preparing the session failed: {e}")),
                }
            }
            _ => {}
        }
    }

    /// The form for a new session (models, prompts, length, trials fixed in advance).
    fn setup_ui(&mut self, ui: &mut egui::Ui, out: &mut Outbox) {
        ui.heading("New session");
        let f = &mut self.form.setup;
        egui::Grid::new("listen-setup")
            .num_columns(4)
            .show(ui, |ui| {
                field(
                    ui,
                    "Model A",
                    "Usually the baseline: Hub id, folder or run.",
                    |ui| ui.text_edit_singleline(&mut f.model_a),
                );
                field(
                    ui,
                    "Model B",
                    "Usually the fine-tune: Hub id, folder or run.",
                    |ui| ui.text_edit_singleline(&mut f.model_b),
                );
                ui.end_row();
                field(
                ui,
                "Prompts",
                "One per line. MusicGen: text. Music Transformer: `improv` or a MIDI file whose \
                 first seconds both models continue.",
                |ui| ui.text_edit_multiline(&mut f.prompts),
            );
                field(
                    ui,
                    "Dataset",
                    "Its test split can fill the prompts.",
                    |ui| ui.text_edit_singleline(&mut f.dataset),
                );
                ui.end_row();
                field(ui, "Clips per prompt", "Seeds per prompt.", |ui| {
                    ui.add(egui::DragValue::new(&mut f.clips_per_prompt).range(1..=16))
                });
                field(ui, "Seconds", "Length of every clip.", |ui| {
                    ui.add(egui::DragValue::new(&mut f.seconds).range(2.0..=30.0))
                });
                ui.end_row();
                field(
                    ui,
                    "Trials",
                    "Scored trials per rater, fixed now: stopping when it looks significant \
                 inflates errors.",
                    |ui| ui.add(egui::DragValue::new(&mut f.trials).range(1..=500)),
                );
                field(
                    ui,
                    "Catch every",
                    "A catch trial (identical clips) after every N; 0 = none.",
                    |ui| ui.add(egui::DragValue::new(&mut f.catch_every).range(0..=50)),
                );
                ui.end_row();
                field(
                    ui,
                    "Session folder",
                    "Clips and session.jsonl go here.",
                    |ui| ui.text_edit_singleline(&mut f.out),
                );
                field(
                    ui,
                    "ABX",
                    "Ask which one is X before each preference.",
                    |ui| ui.checkbox(&mut f.abx, ""),
                );
                ui.end_row();
            });
        let f = &self.form.setup;
        let need = min_wins_for_significance(f.trials as u64, 0.05);
        ui.label(format!(
            "With one rater, B must win ≥ {} of {} for p < 0.05. A true 65 % preference needs \
             ≈ {} votes in total to be detected with 80 % power (pool raters).",
            need.map(|k| k.to_string()).unwrap_or_else(|| "—".into()),
            f.trials,
            power_votes(0.65, 0.05, 0.8)
                .map(|n| n.to_string())
                .unwrap_or_else(|| "?".into())
        ));
        ui.horizontal(|ui| {
            if ui.button("Use the dataset's test split").clicked() {
                match test_prompts(std::path::Path::new(self.form.setup.dataset.trim()), 4) {
                    Ok(p) if !p.is_empty() => self.form.setup.prompts = p.join("\n"),
                    Ok(_) => self.error = Some("The dataset has no test item.".into()),
                    Err(e) => self.error = Some(e.to_string()),
                }
            }
            let busy = self.job.is_some();
            if ui
                .add_enabled(!busy, egui::Button::new("Prepare session"))
                .clicked()
            {
                self.prepare(out);
            }
            if busy {
                ui.spinner();
                ui.label(&self.progress);
            }
        });
    }

    fn prepare(&mut self, out: &mut Outbox) {
        let f = self.form.setup.clone();
        let prompts = f.prompt_list();
        if prompts.is_empty() || f.model_a.trim().is_empty() || f.model_b.trim().is_empty() {
            self.error = Some("Name both models and at least one prompt.".into());
            return;
        }
        let plan = SessionPlan {
            prompts,
            seeds: (0..f.clips_per_prompt as u64).collect(),
            seconds: f.seconds,
            trials: f.trials,
            abx: f.abx,
            catch_every: f.catch_every,
            ..Default::default()
        };
        let job = out.job();
        out.commands.push(Command::PrepareSession {
            job,
            dir: PathBuf::from(f.out.trim()),
            model_a: f.model_a.trim().to_string(),
            model_b: f.model_b.trim().to_string(),
            plan: Box::new(plan),
            prime_seconds: 5.0,
        });
        self.job = Some(job);
        self.error = None;
    }

    /// The owner's view of the log's results, without a rater name.
    fn show_results(&mut self) {
        let log = PathBuf::from(self.form.log.trim());
        let view = ResultsView::new(log, self.form.setup.dataset.clone());
        if view.results.is_some() {
            self.error = None;
            self.results = Some(view);
        } else {
            self.error = view.error;
        }
    }

    fn open(&mut self) {
        self.error = None;
        self.results = None;
        let rater = self.form.rater.trim().to_string();
        if rater.is_empty() {
            self.error = Some("Enter your name (answers are kept per rater).".into());
            return;
        }
        match SessionLog::open(self.form.log.trim()) {
            Ok(log) => {
                self.session = Some(log);
                self.refresh();
            }
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    /// Rebuilds the blind view after an answer; loads the next trial's clips.
    fn refresh(&mut self) {
        self.sink.stop();
        self.playing = None;
        self.abx_answer = None;
        self.clips.clear();
        let rater = self.form.rater.trim().to_string();
        let Some(log) = &self.session else {
            return;
        };
        match log.blind_view(&rater, PlayState::Stopped) {
            Ok(v) => {
                if v.finished && self.results.is_none() {
                    self.results = Some(ResultsView::new(
                        log.path().to_path_buf(),
                        self.form.setup.dataset.clone(),
                    ));
                }
                self.view = Some(v);
            }
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    fn clip(&mut self, target: PlayTarget) -> Option<Arc<Vec<f32>>> {
        if let Some(c) = self.clips.get(&target) {
            return Some(c.clone());
        }
        let log = self.session.as_ref()?;
        let path: PathBuf = match log.playback_path(self.form.rater.trim(), target) {
            Ok(p) => p,
            Err(e) => {
                self.error = Some(e.to_string());
                return None;
            }
        };
        match crate::data::audio::load_mono(&path, RATE) {
            Ok(s) => {
                let s = Arc::new(s);
                self.clips.insert(target, s.clone());
                Some(s)
            }
            Err(e) => {
                self.error = Some(e.to_string());
                None
            }
        }
    }

    /// Plays `target` from the current playhead (so A/B switching compares the same passage).
    fn play(&mut self, target: PlayTarget) {
        let from = if self.playing.is_some() {
            self.sink.position()
        } else {
            Duration::ZERO
        };
        if let Some(samples) = self.clip(target) {
            if let Err(e) = self.sink.play(samples, RATE, from) {
                self.error = Some(e);
            }
            self.playing = Some(target);
        }
    }

    fn seek(&mut self, forward: bool) {
        let Some(t) = self.playing else {
            return;
        };
        let p = self.sink.position();
        let to = if forward {
            p + SEEK
        } else {
            p.saturating_sub(SEEK)
        };
        if let Some(samples) = self.clip(t) {
            let _ = self.sink.play(samples, RATE, to);
        }
    }

    fn mark_loop_start(&mut self) {
        self.loop_start = Some(self.sink.position());
        self.loop_region = None;
    }

    fn mark_loop_end(&mut self) {
        let end = self.sink.position();
        if let Some(start) = self.loop_start.take() {
            if end > start {
                self.loop_region = Some((start, end));
            }
        }
    }

    /// Jumps back to the loop start when the playhead passes the loop end.
    fn keep_looping(&mut self) {
        let (Some((start, end)), Some(t)) = (self.loop_region, self.playing) else {
            return;
        };
        if self.sink.is_playing() && self.sink.position() >= end {
            if let Some(samples) = self.clip(t) {
                let _ = self.sink.play(samples, RATE, start);
            }
        }
    }

    fn answer(&mut self, choice: Choice) {
        let Some(view) = &self.view else {
            return;
        };
        if view.finished || (choice == Choice::NoPreference && !view.tie_allowed) {
            return;
        }
        if view.abx && self.abx_answer.is_none() {
            self.error = Some("Answer the ABX question first (which one is X?).".into());
            return;
        }
        let rater = self.form.rater.trim().to_string();
        let response = Response {
            choice,
            abx_choice: self.abx_answer,
        };
        if let Some(log) = self.session.as_mut() {
            match log.record(&rater, response) {
                Ok(_) => self.error = None,
                Err(e) => {
                    self.error = Some(e.to_string());
                    return;
                }
            }
        }
        self.refresh();
    }

    fn keys(&mut self, ui: &egui::Ui) {
        use egui::Key;
        let pressed = |k: Key| ui.input(|i| i.key_pressed(k));
        if pressed(Key::A) {
            self.play(PlayTarget::A);
        }
        if pressed(Key::B) {
            self.play(PlayTarget::B);
        }
        if pressed(Key::X) && self.view.as_ref().is_some_and(|v| v.abx) {
            self.play(PlayTarget::X);
        }
        if pressed(Key::Space) {
            if self.sink.is_playing() {
                self.sink.pause();
            } else {
                self.sink.resume();
            }
        }
        if pressed(Key::ArrowRight) {
            self.seek(true);
        }
        if pressed(Key::ArrowLeft) {
            self.seek(false);
        }
        if pressed(Key::OpenBracket) {
            self.mark_loop_start();
        }
        if pressed(Key::CloseBracket) {
            self.mark_loop_end();
        }
        if pressed(Key::Q) {
            self.abx_answer = Some(Side::A);
        }
        if pressed(Key::W) {
            self.abx_answer = Some(Side::B);
        }
        if pressed(Key::Num1) {
            self.answer(Choice::A);
        }
        if pressed(Key::Num2) {
            self.answer(Choice::B);
        }
        if pressed(Key::Num0) {
            self.answer(Choice::NoPreference);
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, out: &mut Outbox) {
        if self.session.is_none() {
            if let Some(r) = self.results.as_mut() {
                if ui.button("Back").clicked() {
                    self.results = None;
                    return;
                }
                r.ui(ui, out);
                return;
            }
            self.setup_ui(ui, out);
            ui.separator();
            ui.heading("Open a session");
            egui::Grid::new("listen-form")
                .num_columns(2)
                .show(ui, |ui| {
                    field(
                        ui,
                        "Session log",
                        "session.jsonl made by `tunelab listen new`.",
                        |ui| ui.text_edit_singleline(&mut self.form.log),
                    );
                    ui.end_row();
                    field(ui, "Your name", "Answers are kept per rater.", |ui| {
                        ui.text_edit_singleline(&mut self.form.rater)
                    });
                    ui.end_row();
                });
            ui.horizontal(|ui| {
                if ui.button("Open session").clicked() {
                    self.open();
                }
                if ui
                    .button("Results (owner)")
                    .on_hover_text(
                        "The unblinded tallies of this log so far, with the numbers beside \
                         them. A rater who sees them is no longer blind.",
                    )
                    .clicked()
                {
                    self.show_results();
                }
            });
            if let Some(e) = &self.error {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            return;
        }
        self.keys(ui);
        self.keep_looping();
        let Some(view) = self.view.clone() else {
            return;
        };
        if view.finished {
            ui.heading("Session complete");
            let mine = self.session.as_ref().map_or(0, |log| {
                let rater = self.form.rater.trim();
                log.answers().iter().filter(|a| a.rater == rater).count()
            });
            ui.label(format!("You answered {mine} trials. Thank you."));
            if ui.button("Close session").clicked() {
                self.session = None;
                self.view = None;
                self.results = None;
                return;
            }
            ui.separator();
            if let Some(r) = self.results.as_mut() {
                egui::ScrollArea::vertical().show(ui, |ui| r.ui(ui, out));
            }
            return;
        }
        ui.heading(format!("Trial {} of {}", view.trial_number, view.total));
        ui.label("Listen to both, switch freely (the playhead is kept), then choose.");
        ui.horizontal(|ui| {
            for (t, label) in [(PlayTarget::A, "Play A"), (PlayTarget::B, "Play B")] {
                if ui
                    .selectable_label(self.playing == Some(t), label)
                    .clicked()
                {
                    self.play(t);
                }
            }
            if view.abx
                && ui
                    .selectable_label(self.playing == Some(PlayTarget::X), "Play X")
                    .clicked()
            {
                self.play(PlayTarget::X);
            }
            if ui.button("Pause / resume").clicked() {
                if self.sink.is_playing() {
                    self.sink.pause();
                } else {
                    self.sink.resume();
                }
            }
            ui.label(format!("{:.1} s", self.sink.position().as_secs_f64()));
            if ui.button("Loop start").clicked() {
                self.mark_loop_start();
            }
            if ui.button("Loop end").clicked() {
                self.mark_loop_end();
            }
            if let Some((a, b)) = self.loop_region {
                ui.label(format!(
                    "looping {:.1}–{:.1} s",
                    a.as_secs_f64(),
                    b.as_secs_f64()
                ));
                if ui.button("Clear loop").clicked() {
                    self.loop_region = None;
                }
            }
        });
        if self.sink.is_playing() {
            ui.ctx().request_repaint_after(Duration::from_millis(100));
        }
        if view.abx {
            ui.horizontal(|ui| {
                ui.label("Which one is X?");
                ui.selectable_value(&mut self.abx_answer, Some(Side::A), "X is A");
                ui.selectable_value(&mut self.abx_answer, Some(Side::B), "X is B");
            });
        }
        ui.horizontal(|ui| {
            if ui.button("Prefer A").clicked() {
                self.answer(Choice::A);
            }
            if ui.button("Prefer B").clicked() {
                self.answer(Choice::B);
            }
            if view.tie_allowed && ui.button("No preference").clicked() {
                self.answer(Choice::NoPreference);
            }
        });
        ui.small(
            "Keys: A / B play · Space pause · Left / Right seek 2 s · [ ] loop start / end · \
             1 / 2 prefer · 0 no preference",
        );
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::NullSink;
    use crate::eval::listen::session::{Clip, ModelRef, SessionSpec, Which};
    use egui_kittest::kittest::Queryable;
    use egui_kittest::Harness;

    fn session(dir: &std::path::Path) -> PathBuf {
        let mut clips = Vec::new();
        for (pi, f) in [220.0f32, 330.0].iter().enumerate() {
            for (which, gain) in [(Which::A, 0.2f32), (Which::B, 0.3)] {
                let x: Vec<f32> = (0..16_000)
                    .map(|i| gain * (i as f32 * f * std::f32::consts::TAU / 32_000.0).sin())
                    .collect();
                let bytes = crate::data::audio::wav_bytes(&x, 32_000).unwrap();
                let sha = crate::eval::listen::session::sha256_hex(&bytes);
                let path = dir.join(format!("{sha}.wav"));
                std::fs::write(&path, &bytes).unwrap();
                clips.push(Clip {
                    prompt_idx: pi,
                    seed: 0,
                    model: which,
                    path,
                    sha256: sha,
                    gain_db: 0.0,
                });
            }
        }
        let spec = SessionSpec {
            id: "t".into(),
            model_a: ModelRef {
                label: "baseline-model".into(),
                id: "a".into(),
                weights_sha256: "0".into(),
            },
            model_b: ModelRef {
                label: "finetuned-model".into(),
                id: "b".into(),
                weights_sha256: "1".into(),
            },
            prompts: vec!["low".into(), "high".into()],
            clips_per_prompt: 1,
            seconds: 0.5,
            seeds: vec![0],
            generation: serde_json::Value::Null,
            trials: 4,
            abx: false,
            catch_every: 0,
            tie_allowed: true,
            seed: 1,
            clips,
        };
        let log = dir.join("session.jsonl");
        SessionLog::create(&log, spec).unwrap();
        log
    }

    #[test]
    fn a_loop_region_replays_while_switching_sides() {
        let dir = tempfile::tempdir().unwrap();
        let log = session(dir.path());
        let form = ListenForm {
            log: log.display().to_string(),
            rater: "bob".into(),
            ..Default::default()
        };
        let mut h = Harness::new_ui_state(
            |ui, p: &mut ListenPanel| p.ui(ui, &mut Outbox::default()),
            ListenPanel::new(form, Box::new(NullSink::default())),
        );
        h.get_by_label("Open session").click();
        h.run();
        h.key_press(egui::Key::A);
        h.step();
        h.key_press(egui::Key::OpenBracket);
        h.step();
        std::thread::sleep(Duration::from_millis(120));
        h.key_press(egui::Key::CloseBracket);
        h.step();
        let (start, end) = h.state().loop_region.expect("a loop was marked");
        assert!(end > start);
        // Switching sides keeps the loop; past its end the playhead returns to its start.
        h.key_press(egui::Key::B);
        h.step();
        std::thread::sleep(end - start + Duration::from_millis(60));
        h.step();
        assert!(h.state().sink.position() < end, "looped back");
        assert_eq!(h.state().playing, Some(PlayTarget::B));
    }

    /// Setting a session up in the studio sends the plan (fixed in advance) to the engine; when
    /// the engine answers with the log, the session opens for the rater.
    #[test]
    fn a_session_is_set_up_from_the_panel_and_opens_when_ready() {
        struct S {
            panel: ListenPanel,
            out: Outbox,
        }
        let dir = tempfile::tempdir().unwrap();
        let log = session(dir.path());
        let form = ListenForm {
            rater: "cat".into(),
            setup: SetupForm {
                model_a: "base".into(),
                model_b: "tuned".into(),
                prompts: "improv\n\n  melody.mid \n".into(),
                trials: 30,
                out: dir.path().join("new").display().to_string(),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut h = Harness::new_ui_state(
            |ui, s: &mut S| s.panel.ui(ui, &mut s.out),
            S {
                panel: ListenPanel::new(form, Box::new(NullSink::default())),
                out: Outbox::default(),
            },
        );
        h.run();
        assert!(
            h.query_by_label_contains("B must win ≥ 21 of 30").is_some(),
            "the power hint follows the trials"
        );
        h.get_by_label("Prepare session").click();
        h.step();
        let job = match h.state().out.commands.as_slice() {
            [Command::PrepareSession {
                job,
                model_a,
                model_b,
                plan,
                dir: d,
                ..
            }] => {
                assert_eq!((model_a.as_str(), model_b.as_str()), ("base", "tuned"));
                assert_eq!(plan.prompts, vec!["improv", "melody.mid"]);
                assert_eq!(plan.trials, 30);
                assert_eq!(plan.seeds, vec![0, 1]);
                assert_eq!(d, &dir.path().join("new"));
                *job
            }
            other => panic!("expected PrepareSession, got {other:?}"),
        };
        h.get_by_label("Prepare session").click();
        h.step();
        assert_eq!(h.state().out.commands.len(), 1, "one at a time");
        h.state_mut().panel.on_event(&Event::Done {
            job,
            result: Ok(JobOutput::SessionReady(log)),
        });
        h.step();
        assert!(h.query_by_label_contains("Trial 1 of 4").is_some());
    }

    #[test]
    fn test_prompts_come_from_the_test_split() {
        use crate::data::dataset::{Info, Segment, Split};
        let dir = tempfile::tempdir().unwrap();
        let seg = |id: &str, split, caption: &str| Segment {
            id: id.into(),
            path: dir.path().join(format!("{id}.wav")),
            start: 0.0,
            duration: 1.0,
            split,
            caption: caption.into(),
            info: Info::default(),
        };
        let segs = [
            seg("a", Split::Train, "train only"),
            seg("b", Split::Test, "calm piano"),
            seg("c", Split::Test, "calm piano"),
            seg("d", Split::Test, "fast drums"),
        ];
        let text: String = segs
            .iter()
            .map(|s| serde_json::to_string(s).unwrap() + "\n")
            .collect();
        std::fs::write(dir.path().join("segments.jsonl"), text).unwrap();
        assert_eq!(
            test_prompts(dir.path(), 8).unwrap(),
            vec!["calm piano", "fast drums"]
        );
        // A MIDI dataset: the test pieces themselves are the primes.
        std::fs::write(dir.path().join("events.jsonl"), "").unwrap();
        let p = test_prompts(dir.path(), 1).unwrap();
        assert_eq!(p, vec![dir.path().join("b.wav").display().to_string()]);
    }

    #[test]
    fn a_blind_session_runs_from_the_keyboard_and_reveals_only_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let log = session(dir.path());
        let form = ListenForm {
            log: log.display().to_string(),
            rater: "ann".into(),
            ..Default::default()
        };
        let mut h = Harness::new_ui_state(
            |ui, p: &mut ListenPanel| p.ui(ui, &mut Outbox::default()),
            ListenPanel::new(form, Box::new(NullSink::default())),
        );
        h.get_by_label("Open session").click();
        h.run();
        assert!(h.query_by_label_contains("Trial 1 of 4").is_some());
        for n in 1..=4 {
            assert!(h
                .query_by_label_contains(&format!("Trial {n} of 4"))
                .is_some());
            // Nothing on screen names a model while the session runs.
            assert!(h.query_by_label_contains("baseline").is_none());
            assert!(h.query_by_label_contains("finetuned").is_none());
            h.key_press(egui::Key::A);
            h.step();
            assert_eq!(h.state().playing, Some(PlayTarget::A));
            h.key_press(egui::Key::B);
            h.step();
            assert_eq!(h.state().playing, Some(PlayTarget::B));
            h.key_press(egui::Key::Num2);
            h.step();
        }
        h.run_steps(2);
        // Every answer is on disk.
        let reopened = SessionLog::open(&log).unwrap();
        assert_eq!(reopened.answers().len(), 4);
        assert!(reopened.answers().iter().all(|a| a.choice == Choice::B));
        assert!(h.query_by_label_contains("Session complete").is_some());
        assert!(
            h.query_all_by_label_contains("finetuned-model")
                .next()
                .is_some(),
            "revealed at the end"
        );
    }

    fn prefer_b_all(log: &std::path::Path, rater: &str) {
        let mut l = SessionLog::open(log).unwrap();
        while let Some(t) = l.next_trial(rater).unwrap() {
            let choice = if t.first_is == Which::B {
                Choice::A
            } else {
                Choice::B
            };
            l.record(
                rater,
                Response {
                    choice,
                    abx_choice: None,
                },
            )
            .unwrap();
        }
    }

    /// The owner opens the results on demand: the verdict, the per-prompt and per-rater tables,
    /// then the numbers of the same two models, computed by the engine into the session folder,
    /// beside the votes; the export carries both.
    #[test]
    fn owner_results_put_votes_and_numbers_side_by_side() {
        use crate::eval::report::{EvalReport, HeldOut, ModelEval};
        struct S {
            panel: ListenPanel,
            out: Outbox,
        }
        let dir = tempfile::tempdir().unwrap();
        let log = session(dir.path());
        prefer_b_all(&log, "ann");
        let form = ListenForm {
            log: log.display().to_string(),
            setup: SetupForm {
                dataset: "/data/folk".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut h = Harness::new_ui_state(
            |ui, s: &mut S| s.panel.ui(ui, &mut s.out),
            S {
                panel: ListenPanel::new(form, Box::new(NullSink::default())),
                out: Outbox::default(),
            },
        );
        h.run();
        h.get_by_label("Results (owner)").click();
        h.run();
        assert!(h.query_by_label_contains("won 4 of 4 votes").is_some());
        assert!(
            h.query_by_label_contains("p = 0.1250").is_some(),
            "4/4: p = 1/8"
        );
        assert!(h.query_by_label("low").is_some() && h.query_by_label("high").is_some());
        assert!(h.query_by_label("ann").is_some(), "per-rater row");
        assert!(h
            .query_by_label_contains("no objective report yet")
            .is_some());

        h.get_by_label("Compute metrics").click();
        h.step();
        let job = match h.state().out.commands.as_slice() {
            [Command::Evaluate {
                job,
                models,
                dataset,
                save,
                ..
            }] => {
                assert_eq!(models, &["a", "b"]);
                assert_eq!(dataset, &PathBuf::from("/data/folk"));
                assert_eq!(
                    save.as_deref(),
                    Some(dir.path().join("metrics.json").as_path())
                );
                *job
            }
            other => panic!("expected Evaluate, got {other:?}"),
        };
        assert!(h.state().panel.owns(job));
        // The engine writes the report (matched to the session by weights hash), then says so.
        let eval = |model: &str, sha: &str, ce: f64| ModelEval {
            model: model.into(),
            weights_sha256: sha.into(),
            held_out: HeldOut {
                ce,
                ppl: ce.exp(),
                ce_q: vec![ce],
                ppl_q: vec![ce.exp()],
                tokens: 10,
            },
            generated: None,
            eval_seconds: 0.1,
        };
        let report = EvalReport {
            dataset: "/data/folk".into(),
            split: crate::data::dataset::Split::Test,
            options: Default::default(),
            models: vec![eval("a", "0", 5.125), eval("b", "1", 2.25)],
            caveat: String::new(),
        };
        report.save(&dir.path().join("metrics.json")).unwrap();
        h.state_mut().panel.on_event(&Event::Done {
            job,
            result: Ok(JobOutput::Evaluated(Box::new(report))),
        });
        h.run();
        assert!(h.query_by_label("5.1250").is_some() && h.query_by_label("2.2500").is_some());
        assert!(h.query_by_label_contains("held-out CE: B").is_some());

        h.get_by_label("Export CSV + JSON").click();
        h.run();
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("results.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            json["verdict"]["rows"][1]["metrics"]["held_out"]["ce"],
            2.25
        );
        let csv = std::fs::read_to_string(dir.path().join("results.csv")).unwrap();
        assert!(
            csv.starts_with("kind,name,wins_b") && csv.contains("ann"),
            "{csv}"
        );
    }

    // ---- the studio killed mid-session ----------------------------------------------------

    const KILL_ENV: &str = "TUNELAB_STUDIO_KILL_LOG";

    /// Child side of `studio_killed_mid_session_loses_no_answer`: a rater answers from the
    /// keyboard in the Listen panel, printing `ANSWERED n` once the panel shows trial n + 1
    /// (the answer is on disk by then), until the parent kills the process.
    #[test]
    fn studio_kill_child() {
        let Some(log) = std::env::var_os(KILL_ENV) else {
            return;
        };
        let form = ListenForm {
            log: PathBuf::from(log).display().to_string(),
            rater: "kim".into(),
            ..Default::default()
        };
        let mut h = Harness::new_ui_state(
            |ui, p: &mut ListenPanel| p.ui(ui, &mut Outbox::default()),
            ListenPanel::new(form, Box::new(NullSink::default())),
        );
        h.get_by_label("Open session").click();
        h.run();
        let mut answered = 0;
        loop {
            h.key_press(egui::Key::Num2);
            h.step();
            let now = h.state().view.as_ref().map_or(0, |v| v.answered);
            if now > answered {
                answered = now;
                println!("ANSWERED {answered}");
            }
            if h.state().view.as_ref().is_some_and(|v| v.finished) {
                // Should the parent never kill us, end rather than linger.
                std::thread::sleep(Duration::from_secs(30));
                return;
            }
        }
    }

    /// Kills the child process however the test ends.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// The studio process is SIGKILLed while a rater answers: every answer the panel had shown
    /// as done is in the log, and a new studio resumes the rater at the next trial.
    #[test]
    fn studio_killed_mid_session_loses_no_answer() {
        use std::io::BufRead;
        if std::env::var_os(KILL_ENV).is_some() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let log = session(dir.path());
        // A long session so the kill lands mid-way.
        let mut spec = SessionLog::open(&log).unwrap().spec().clone();
        spec.trials = 400;
        std::fs::remove_file(&log).unwrap();
        SessionLog::create(&log, spec).unwrap();

        let module = module_path!();
        let module = module.split_once("::").map_or(module, |(_, rest)| rest);
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                &format!("{module}::studio_kill_child"),
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(KILL_ENV, &log)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let stdout = child.0.stdout.take().unwrap();
        let mut shown = 0;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("ANSWERED ") {
                shown = n.trim().parse().unwrap();
                if shown >= 12 {
                    break;
                }
            }
        }
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();
        assert!(shown >= 12, "the child answered {shown}");

        let on_disk = SessionLog::open(&log).unwrap().answers().len();
        assert!(
            on_disk >= shown,
            "{shown} shown as answered, {on_disk} on disk"
        );
        assert!(on_disk < 400, "killed mid-session");
        // A new studio resumes the rater where the log ends.
        let form = ListenForm {
            log: log.display().to_string(),
            rater: "kim".into(),
            ..Default::default()
        };
        let mut h = Harness::new_ui_state(
            |ui, p: &mut ListenPanel| p.ui(ui, &mut Outbox::default()),
            ListenPanel::new(form, Box::new(NullSink::default())),
        );
        h.get_by_label("Open session").click();
        h.run();
        let next = format!("Trial {} of 400", on_disk + 1);
        assert!(h.query_by_label_contains(&next).is_some(), "{next}");
    }
}
