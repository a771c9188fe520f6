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
use crate::eval::listen::session::{
    pool, BlindView, Choice, PlayState, PlayTarget, Response, ResultsOptions, SessionLog, Side,
};
use crate::ui::train::field;

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ListenForm {
    pub log: String,
    pub rater: String,
}

pub struct ListenPanel {
    pub form: ListenForm,
    pub session: Option<SessionLog>,
    pub view: Option<BlindView>,
    /// What the rater sees after the last answer (unblinded summary).
    pub verdict: Option<String>,
    pub error: Option<String>,
    pub playing: Option<PlayTarget>,
    pub abx_answer: Option<Side>,
    /// A loop region `[start, end)` within the clips (kept across A/B switches and trials).
    pub loop_region: Option<(Duration, Duration)>,
    loop_start: Option<Duration>,
    clips: HashMap<PlayTarget, Arc<Vec<f32>>>,
    sink: Box<dyn AudioSink>,
}

const RATE: u32 = 32_000;
const SEEK: Duration = Duration::from_secs(2);

impl ListenPanel {
    pub fn new(form: ListenForm, sink: Box<dyn AudioSink>) -> Self {
        Self {
            form,
            session: None,
            view: None,
            verdict: None,
            error: None,
            playing: None,
            abx_answer: None,
            loop_region: None,
            loop_start: None,
            clips: HashMap::new(),
            sink,
        }
    }

    fn open(&mut self) {
        self.error = None;
        self.verdict = None;
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
                if v.finished {
                    self.verdict = Some(verdict(log, &rater));
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

    pub fn ui(&mut self, ui: &mut egui::Ui) {
        if self.session.is_none() {
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
            if ui.button("Open session").clicked() {
                self.open();
            }
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
            if let Some(v) = &self.verdict {
                ui.label(v);
            }
            if ui.button("Close session").clicked() {
                self.session = None;
                self.view = None;
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

/// The unblinded summary for a finished rater.
fn verdict(log: &SessionLog, rater: &str) -> String {
    let r = match pool(std::slice::from_ref(log), &ResultsOptions::default()) {
        Ok(r) => r,
        Err(e) => return e.to_string(),
    };
    let s = &r.summary;
    let mine = log.answers().iter().filter(|a| a.rater == rater).count();
    format!(
        "You answered {mine} trials. Over all raters so far, B ({}) was preferred in {:.0} % of {} \
         votes against A ({}): exact two-sided p = {:.3}, 95 % CI {:.2}–{:.2}.",
        r.model_b.label,
        s.share_b.unwrap_or(f64::NAN) * 100.0,
        s.n,
        r.model_a.label,
        s.p_two_sided,
        s.ci.0,
        s.ci.1
    )
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
        };
        let mut h = Harness::new_ui_state(
            |ui, p: &mut ListenPanel| p.ui(ui),
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

    #[test]
    fn a_blind_session_runs_from_the_keyboard_and_reveals_only_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let log = session(dir.path());
        let form = ListenForm {
            log: log.display().to_string(),
            rater: "ann".into(),
        };
        let mut h = Harness::new_ui_state(
            |ui, p: &mut ListenPanel| p.ui(ui),
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
            h.query_by_label_contains("finetuned-model").is_some(),
            "revealed at the end"
        );
    }
}
