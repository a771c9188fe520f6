//! The Listen panel: a blind A/B (optionally ABX) session run entirely from the keyboard.
//! The panel sees only the session's [`BlindView`] and the paths of the current trial's clips;
//! which model is "A" is revealed after the rater's last answer. Every answer is appended to
//! the session log and fsynced before the next trial shows.
//!
//! Keys: `A` / `B` play that side (switching keeps the playhead), `X` plays the ABX reference,
//! `Space` pauses / resumes, `←` / `→` seek 2 s, `[` / `]` mark a loop region, `1` prefer A,
//! `2` prefer B, `0` no preference;
//! with ABX, `Q` / `W` answer "X is A" / "X is B" first.
//!
//! A new session is set up in `setup.rs`; the unblinded results (after the last trial, or for
//! the owner) are `results.rs`.

mod results;
mod setup;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::audio::Player;
use crate::engine::{Event, JobId, JobOutput};
use crate::eval::listen::{BlindView, Choice, PlayState, PlayTarget, Response, SessionLog, Side};
use crate::ui::common::field;
pub use crate::ui::forms::{ListenForm, SetupForm};
use crate::ui::panel::Outbox;
use crate::ui::panel::{ModelBusy, Panel};
use crate::ui::picker::{path_field, PathKind};
use crate::ui::state::State;
use crate::ui::tab::Tab;

pub use results::ResultsView;
pub use setup::test_prompts;

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
    player: Player,
    /// The engine job preparing a new session, and its last progress line.
    pub job: Option<JobId>,
    pub progress: String,
}

const RATE: u32 = 32_000;
const SEEK: Duration = Duration::from_secs(2);

impl ListenPanel {
    pub fn new(form: ListenForm, player: Player) -> Self {
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
            player,
            job: None,
            progress: String::new(),
        }
    }

    /// Engine events of the session being prepared (progress, then the log to open) and of
    /// the results' numbers; true when the event was one of them.
    fn take_event(&mut self, ev: &Event) -> bool {
        if self.results.as_mut().is_some_and(|r| r.on_event(ev)) {
            return true;
        }
        match ev {
            Event::Progress { job, message } if Some(*job) == self.job => {
                self.progress = message.clone();
                true
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
                true
            }
            _ => false,
        }
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

    /// Opens the form's session for the form's rater (as Open session does).
    pub fn open(&mut self) {
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
        self.player.stop();
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
            self.player.position()
        } else {
            Duration::ZERO
        };
        if let Some(samples) = self.clip(target) {
            if let Err(e) = self.player.play(samples, RATE, from) {
                self.error = Some(e);
            }
            self.playing = Some(target);
        }
    }

    fn pause_or_resume(&mut self) {
        if self.player.is_playing() {
            self.player.pause();
        } else if let Err(e) = self.player.resume() {
            self.error = Some(e);
        }
    }

    fn seek(&mut self, forward: bool) {
        let Some(t) = self.playing else {
            return;
        };
        let p = self.player.position();
        let to = if forward {
            p + SEEK
        } else {
            p.saturating_sub(SEEK)
        };
        if let Some(samples) = self.clip(t) {
            let _ = self.player.play(samples, RATE, to);
        }
    }

    fn mark_loop_start(&mut self) {
        self.loop_start = Some(self.player.position());
        self.loop_region = None;
    }

    fn mark_loop_end(&mut self) {
        let end = self.player.position();
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
        if self.player.is_playing() && self.player.position() >= end {
            if let Some(samples) = self.clip(t) {
                let _ = self.player.play(samples, RATE, start);
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
            self.pause_or_resume();
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

    fn draw(&mut self, ui: &mut egui::Ui, out: &mut Outbox) {
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
                    path_field(
                        ui,
                        "Session log",
                        "session.jsonl made by `tunelab listen new`.",
                        &mut self.form.log,
                        PathKind::SessionLog,
                        None,
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
                self.pause_or_resume();
            }
            ui.label(format!("{:.1} s", self.player.position().as_secs_f64()));
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
        if self.player.is_playing() {
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

impl Panel for ListenPanel {
    fn tab(&self) -> Tab {
        Tab::Listen
    }

    fn ui(&mut self, ui: &mut egui::Ui, _model: ModelBusy, out: &mut Outbox) {
        self.draw(ui, out);
    }

    fn on_event(&mut self, ev: &Event, _out: &mut Outbox) -> bool {
        self.take_event(ev)
    }

    /// Preparing a session, and computing the results' numbers.
    fn jobs(&self) -> Vec<JobId> {
        self.job
            .into_iter()
            .chain(self.results.as_ref().and_then(|r| r.job))
            .collect()
    }

    fn save(&self, state: &mut State) {
        state.listen = self.form.clone();
    }
}

#[cfg(test)]
pub(crate) mod tests;
