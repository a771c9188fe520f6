//! How the Library panel looks: the search and loop, the A/B strip of the two marked clips, and
//! the list (a row per clip: mark, waveform to click and seek, play/stop, what made it, and a
//! menu to send it elsewhere). Clicks call the panel's methods.

use std::path::Path;

use crate::ui::generate::{ClipParams, HistoryEntry};
use crate::ui::library::{date_text, LibraryPanel, Side, ThumbState};
use crate::ui::panel::{Outbox, Request};
use crate::ui::picker::{readable, PathKind};
use crate::ui::status::Status;
use crate::ui::tab::Tab;

/// A row's height (the list lays out only the rows in view).
const ROW: f32 = 48.0;

impl LibraryPanel {
    pub(super) fn draw(&mut self, ui: &mut egui::Ui, out: &mut Outbox) {
        self.keys(ui, out);
        ui.horizontal(|ui| {
            let l = ui.label("Search");
            ui.add(
                egui::TextEdit::singleline(&mut self.form.search)
                    .hint_text("prompt, model or file")
                    .desired_width(280.0),
            )
            .labelled_by(l.id)
            .accessible_name("Search")
            .on_hover_text("Shows the clips whose prompt, model or file name contains this.");
            let models = self.models();
            let ctx = ui.ctx().clone();
            let name = |m: &str| {
                readable(&ctx, m, PathKind::Model)
                    .map(|r| r.name)
                    .unwrap_or_else(|| m.to_string())
            };
            let shown = if self.form.model.is_empty() {
                "every model".to_string()
            } else {
                name(&self.form.model)
            };
            let l = ui.label("Model");
            egui::ComboBox::from_id_salt("library-model")
                .selected_text(shown)
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.form.model, String::new(), "every model");
                    for m in models {
                        let n = name(&m);
                        ui.selectable_value(&mut self.form.model, m.clone(), n)
                            .on_hover_text(m);
                    }
                })
                .response
                .labelled_by(l.id)
                .on_hover_text("Show one model's clips.");
            ui.checkbox(&mut self.form.loop_playback, "Loop")
                .on_hover_text("Play the clip (or the side of the pair) again from the start (L).");
            if ui
                .add_enabled(self.current.is_some(), egui::Button::new("Stop"))
                .on_hover_text("Escape")
                .clicked()
            {
                self.stop();
            }
            ui.weak(format!("{} clips", self.entries.len()));
        });
        if self.is_playing() {
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_millis(50));
        }
        if self.thumbs.waiting() {
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_millis(100));
        }
        self.pair_ui(ui, out);
        ui.separator();
        if self.entries.is_empty() {
            ui.label(
                "No clips yet. Every clip or piece you generate appears here, with its \
                 waveform, to play, compare and send on.",
            );
            if ui.button("Go to Generate").clicked() {
                out.request(Request::Show(Tab::Generate));
            }
            return;
        }
        let rows = self.visible();
        if rows.is_empty() {
            ui.label("No clip matches the search.");
            return;
        }
        egui::ScrollArea::vertical()
            .id_salt("library-list")
            .auto_shrink([false, false])
            .show_rows(ui, ROW, rows.len(), |ui, range| {
                for k in range {
                    self.row(ui, rows[k], out);
                }
            });
    }

    /// Space, Escape, A, B and L when no text field has focus.
    fn keys(&mut self, ui: &egui::Ui, out: &mut Outbox) {
        if ui.ctx().egui_wants_keyboard_input() {
            return;
        }
        let (space, escape, a, b, l) = ui.input(|i| {
            (
                i.key_pressed(egui::Key::Space),
                i.key_pressed(egui::Key::Escape),
                i.key_pressed(egui::Key::A) && i.modifiers.is_none(),
                i.key_pressed(egui::Key::B) && i.modifiers.is_none(),
                i.key_pressed(egui::Key::L) && i.modifiers.is_none(),
            )
        });
        let mut said = None;
        if space {
            said = self.play_or_pause();
        }
        if escape {
            self.stop();
        }
        for (pressed, side) in [(a, Side::A), (b, Side::B)] {
            if pressed && self.pair.is_some() {
                said = self.hear(side);
            }
        }
        if l {
            self.form.loop_playback = !self.form.loop_playback;
        }
        if let Some(s) = said {
            out.status(s);
        }
    }

    /// The two marked clips: compare them loudness-matched, or start a listening test.
    fn pair_ui(&mut self, ui: &mut egui::Ui, out: &mut Outbox) {
        if self.marked.is_empty() {
            ui.weak("Mark two clips (A/B) to compare them by ear, loudness matched.");
            return;
        }
        let names: Vec<String> = self
            .marked
            .iter()
            .map(|i| self.entries.get(*i).map(title).unwrap_or_default())
            .collect();
        ui.group(|ui| {
            ui.horizontal(|ui| {
                ui.strong("A");
                ui.label(&names[0]);
                if let Some(b) = names.get(1) {
                    ui.strong("B");
                    ui.label(b);
                } else {
                    ui.weak("mark a second clip as B");
                }
            });
            ui.horizontal(|ui| {
                let two = self.marked.len() == 2;
                if self.pair.is_none() {
                    if ui
                        .add_enabled(two, egui::Button::new("Compare A/B"))
                        .on_hover_text(
                            "Both clips trimmed to the shorter and brought to the same loudness \
                             (EBU R128, as in the blind listening test).",
                        )
                        .clicked()
                    {
                        if let Err(e) = self.compare() {
                            out.status(Status::Error(e));
                        }
                    }
                } else {
                    let heard = self.pair.as_ref().and_then(|p| p.side);
                    for (side, label) in [(Side::A, "Hear A"), (Side::B, "Hear B")] {
                        let key = if side == Side::A { "A" } else { "B" };
                        if ui
                            .selectable_label(heard == Some(side) && self.is_playing(), label)
                            .on_hover_text(format!(
                                "{key}: switches at the same moment of the clip."
                            ))
                            .clicked()
                        {
                            if let Some(s) = self.hear(side) {
                                out.status(s);
                            }
                        }
                    }
                    if let Some(p) = &self.pair {
                        ui.weak(format!(
                            "gains {:+.1} / {:+.1} dB",
                            p.gains_db[0], p.gains_db[1]
                        ));
                    }
                }
                if ui
                    .button("Listening test…")
                    .on_hover_text(
                        "Prepare a blind A/B test of these clips' models on their prompts \
                         (Listen tab).",
                    )
                    .clicked()
                {
                    if let Some(s) = self.to_listening_test(out) {
                        out.status(s);
                    }
                }
                if ui.button("Clear marks").clicked() {
                    self.marked.clear();
                    self.pair = None;
                }
            });
        });
    }

    /// One clip: mark, waveform, play/stop, what made it, and its menu.
    fn row(&mut self, ui: &mut egui::Ui, i: usize, out: &mut Outbox) {
        let Some(e) = self.entries.get(i).cloned() else {
            return;
        };
        let playing_this = self.current.as_ref().is_some_and(|c| c.entry == i);
        ui.horizontal(|ui| {
            ui.set_height(ROW - 4.0);
            let mut marked = self.marked.contains(&i);
            let mark = match self.marked.iter().position(|m| *m == i) {
                Some(0) => "A",
                Some(_) => "B",
                None => "A/B",
            };
            if ui
                .checkbox(&mut marked, mark)
                .on_hover_text("Mark for comparing by ear (two at a time).")
                .clicked()
            {
                self.toggle_mark(i);
            }
            let thumb = self.thumbs.get(&e.file);
            let playhead = playing_this.then(|| self.position());
            if let Some(at) = waveform_thumb(ui, &thumb, playhead, &title(&e)) {
                if let Some(s) = self.play(i, at) {
                    out.status(s);
                }
            }
            let label = if playing_this && self.is_playing() {
                "Stop"
            } else {
                "Play"
            };
            let playable = !e
                .file
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("mid"));
            if ui
                .add_enabled(playable, egui::Button::new(label))
                .on_hover_text(e.file.display().to_string())
                .clicked()
            {
                if label == "Stop" {
                    self.stop();
                } else if let Some(s) = self.play(i, 0.0) {
                    out.status(s);
                }
            }
            ui.vertical(|ui| {
                ui.add(egui::Label::new(egui::RichText::new(title(&e)).strong()).truncate());
                let model = readable(ui.ctx(), &e.model, PathKind::Model)
                    .map(|r| r.name)
                    .unwrap_or_else(|| e.model.clone());
                let seconds = match &thumb {
                    ThumbState::Ready(t) => format!("{:.1} s", t.seconds),
                    ThumbState::Pending => "… s".into(),
                    ThumbState::Failed(_) => "unreadable".into(),
                };
                ui.add(
                    egui::Label::new(
                        egui::RichText::new(format!(
                            "{model}{} · seed {} · {seconds} · {}",
                            e.adapter
                                .as_deref()
                                .and_then(|a| Path::new(a).file_name())
                                .map(|n| format!(" + {}", n.to_string_lossy()))
                                .unwrap_or_default(),
                            seed(&e),
                            date_text(e.created)
                        ))
                        .small()
                        .weak(),
                    )
                    .truncate(),
                );
            });
            ui.menu_button("More…", |ui| {
                if ui
                    .button("Settings to Generate")
                    .on_hover_text("Its model, prompt, seed and sampling into the Generate form.")
                    .clicked()
                {
                    self.reuse(i, out);
                    ui.close();
                }
                if ui
                    .add_enabled(playable, egui::Button::new("Use as audio prompt"))
                    .on_hover_text("The next MusicGen clip continues this one.")
                    .clicked()
                {
                    self.as_prompt(i, out);
                    ui.close();
                }
                if ui.button("Export…").clicked() {
                    self.export(i);
                    ui.close();
                }
            });
        });
    }
}

/// What a clip is: its prompt (MusicGen) or improv / what it continues (a piece).
pub fn title(e: &HistoryEntry) -> String {
    match &e.clip {
        ClipParams::Musicgen { params } if params.prompt.trim().is_empty() => {
            "(unconditional)".into()
        }
        ClipParams::Musicgen { params } => format!("\"{}\"", params.prompt.trim()),
        ClipParams::Midi { prime, .. } if prime.trim().is_empty() => "improv (MIDI)".into(),
        ClipParams::Midi {
            prime,
            prime_seconds,
            ..
        } => format!(
            "continues {:.0} s of {} (MIDI)",
            prime_seconds,
            Path::new(prime)
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| prime.clone())
        ),
    }
}

fn seed(e: &HistoryEntry) -> u64 {
    match &e.clip {
        ClipParams::Musicgen { params } => params.seed,
        ClipParams::Midi { params, .. } => params.seed,
    }
}

/// A clip's waveform (200 × 40 points) with its playhead; a click returns the second clicked.
fn waveform_thumb(
    ui: &mut egui::Ui,
    thumb: &ThumbState,
    playhead: Option<f64>,
    what: &str,
) -> Option<f64> {
    let (rect, response) = ui.allocate_exact_size(egui::vec2(200.0, 40.0), egui::Sense::click());
    let name = format!("Waveform of {what}");
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &name));
    let visuals = ui.visuals();
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 3.0, visuals.extreme_bg_color);
    let mid = rect.center().y;
    let half = rect.height() / 2.0 - 2.0;
    let ThumbState::Ready(t) = thumb else {
        let text = match thumb {
            ThumbState::Failed(_) => "cannot read",
            _ => "…",
        };
        painter.text(
            rect.center(),
            egui::Align2::CENTER_CENTER,
            text,
            egui::FontId::proportional(11.0),
            visuals.weak_text_color(),
        );
        if let ThumbState::Failed(e) = thumb {
            response.on_hover_text(e.clone());
        }
        return None;
    };
    let n = t.peaks.len().max(1) as f32;
    let colour = visuals.selection.bg_fill;
    for (k, (lo, hi)) in t.peaks.iter().enumerate() {
        let x = rect.left() + (k as f32 + 0.5) * rect.width() / n;
        painter.line_segment(
            [
                egui::pos2(x, mid - hi * half),
                egui::pos2(x, mid - lo.min(hi - 0.01) * half),
            ],
            egui::Stroke::new((rect.width() / n).max(1.0), colour),
        );
    }
    if let Some(at) = playhead.filter(|_| t.seconds > 0.0) {
        let x = rect.left() + (at / t.seconds).clamp(0.0, 1.0) as f32 * rect.width();
        painter.line_segment(
            [egui::pos2(x, rect.top()), egui::pos2(x, rect.bottom())],
            egui::Stroke::new(1.5, visuals.strong_text_color()),
        );
    }
    let clicked = response.clicked();
    let at = response.interact_pointer_pos();
    response.on_hover_text("Click to play from there.");
    let x = at.filter(|_| clicked)?.x;
    Some(((x - rect.left()) / rect.width()).clamp(0.0, 1.0) as f64 * t.seconds)
}
