//! How the Generate panel looks: on the left a resizable column with the model picker, the
//! family's controls and the generate button; on the right the clip on show (transport,
//! waveform growing while it is generated, its spectrogram on demand, save) and the recent
//! history. Clicks call the panel's methods; nothing here builds an engine command.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::models::Family;
use crate::ui::common::{field, spectrogram_image, waveform, weights_combo};
use crate::ui::generate::GeneratePanel;
use crate::ui::panel::Outbox;
use crate::ui::picker::{path_field, PathKind};
use crate::ui::status::Status;

const SECONDS_TIP: &str = "Length of the clip or piece (an audio prompt's length included).";
const SEED_TIP: &str = "The same seed, settings and model give the same clip.";
const TEMPERATURE_TIP: &str =
    "Below 1: safer, more repetitive; above 1: more surprising. 0 (MusicGen) is greedy.";
const TOP_P_TIP: &str =
    "Sample among the most likely choices that make up this much probability; 0 = off.";

impl GeneratePanel {
    /// The panel; `loading`: a model load is under way (nothing else can start).
    pub(super) fn draw(&mut self, ui: &mut egui::Ui, loading: bool, out: &mut Outbox) {
        egui::Panel::left("generate-form")
            .resizable(true)
            .default_size(560.0)
            .size_range(380.0..=900.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("generate-form-scroll")
                    .show(ui, |ui| self.form_ui(ui, loading, out));
            });
        egui::ScrollArea::vertical()
            .id_salt("generate-clip-scroll")
            .auto_shrink([false, false])
            .show(ui, |ui| {
                if self.clip.is_none() {
                    ui.weak(
                        "The clip you generate shows here: its waveform grows while it is \
                         generated; play it, see its spectrogram, save it. Every clip is kept \
                         in the Library.",
                    );
                }
                self.clip_view(ui, out);
                self.history_ui(ui, out);
            });
    }

    /// The form: model, the family's controls, generate.
    fn form_ui(&mut self, ui: &mut egui::Ui, loading: bool, out: &mut Outbox) {
        let idle = !loading && self.pending.is_empty();
        ui.strong("Model");
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
        ui.separator();
        ui.strong(if self.is_midi() { "Piece" } else { "Clip" });
        if self.is_midi() {
            self.midi_controls(ui);
        } else {
            self.musicgen_controls(ui);
        }
        ui.separator();
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
            ui.checkbox(
                &mut self.form.play_while_generating,
                "Play while generating",
            )
            .on_hover_text(
                "Start playing the clip (the first of a batch) as soon as enough is buffered \
                     that playback will not catch up with generation.",
            );
            if !self.pending.is_empty() && ui.button("Cancel").clicked() {
                self.cancel(out);
            }
        });
    }

    /// The model picker: a baseline (typed or browsed), a training run, or a LoRA adapter on
    /// top of the model.
    fn model_ui(&mut self, ui: &mut egui::Ui, out: &mut Outbox, idle: bool) {
        ui.horizontal(|ui| {
            path_field(
                ui,
                "Model",
                "A Hub repo id, a local MusicGen or Music Transformer folder, or a training run.",
                &mut self.form.model_spec,
                PathKind::Model,
                None,
            );
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
            path_field(
                ui,
                "LoRA adapter",
                "A PEFT adapter folder or a LoRA run, attached to the model above (MusicGen).",
                &mut self.form.adapter,
                PathKind::Adapter,
                Some("none"),
            );
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
            if ui
                .add_enabled(idle, egui::Button::new("Load"))
                .on_hover_text(
                    "Load the model above (with its adapter and checkpoint) in the chosen weights.",
                )
                .clicked()
            {
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
                self.load_random(out);
            }
        });
        ui.horizontal(|ui| weights_combo(ui, "generate-weights", &mut self.form.weights));
    }

    /// Improv or primed generation with a Music Transformer (no prompt, no CFG).
    fn midi_controls(&mut self, ui: &mut egui::Ui) {
        let f = &mut self.form.midi;
        ui.horizontal(|ui| {
            path_field(
                ui,
                "Prime",
                "A MIDI file whose opening the piece continues; none = improv.",
                &mut f.prime,
                PathKind::Midi,
                Some("improv"),
            );
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
            ui.add(egui::Slider::new(&mut seconds, 2.0..=120.0).text("seconds"))
                .on_hover_text(SECONDS_TIP);
            f.params.seconds = Some(seconds);
            f.params.events = None;
            ui.add(egui::DragValue::new(&mut f.params.seed).prefix("seed "))
                .on_hover_text(SEED_TIP);
        });
        ui.horizontal(|ui| {
            ui.add(
                egui::Slider::new(&mut f.params.sampling.temperature, 0.1..=2.0)
                    .text("temperature"),
            )
            .on_hover_text(TEMPERATURE_TIP);
            ui.add(egui::Slider::new(&mut f.params.sampling.top_p, 0.0..=1.0).text("top-p"))
                .on_hover_text(TOP_P_TIP);
        });
        ui.horizontal(|ui| {
            path_field(
                ui,
                "Write to",
                "Folder of the pieces (piece-<seed>.mid and .wav).",
                &mut f.out_dir,
                PathKind::Folder,
                None,
            );
            path_field(
                ui,
                "SoundFont",
                "A General MIDI .sf2 to render with.",
                &mut f.soundfont,
                PathKind::SoundFont,
                Some("first installed"),
            );
        });
    }

    fn musicgen_controls(&mut self, ui: &mut egui::Ui) {
        let p = &mut self.form.params;
        field(
            ui,
            "Prompt",
            "What the clip should sound like; empty = unconditional.",
            |ui| ui.text_edit_multiline(&mut p.prompt),
        );
        ui.horizontal(|ui| {
            ui.add(egui::Slider::new(&mut p.duration, 1.0..=60.0).text("seconds"))
                .on_hover_text(SECONDS_TIP);
            ui.add(egui::DragValue::new(&mut p.seed).prefix("seed "))
                .on_hover_text(SEED_TIP);
        });
        ui.horizontal(|ui| {
            ui.add(egui::Slider::new(&mut p.guidance_scale, 1.0..=10.0).text("CFG"))
                .on_hover_text(
                    "Classifier-free guidance: how strongly the prompt steers (3 is \
                     audiocraft's default; 1 turns it off).",
                );
            ui.add(egui::Slider::new(&mut p.sampling.temperature, 0.0..=2.0).text("temperature"))
                .on_hover_text(TEMPERATURE_TIP);
        });
        ui.horizontal(|ui| {
            ui.add(egui::DragValue::new(&mut p.sampling.top_k).prefix("top-k "))
                .on_hover_text("Sample among the k most likely codes (250 by default; 0 = all).");
            ui.add(
                egui::DragValue::new(&mut p.sampling.top_p)
                    .range(0.0..=1.0)
                    .speed(0.01)
                    .prefix("top-p "),
            )
            .on_hover_text(TOP_P_TIP);
        });
        ui.horizontal(|ui| {
            let mut text = p
                .prompt_audio
                .as_ref()
                .map(|a| a.display().to_string())
                .unwrap_or_default();
            if path_field(
                ui,
                "Audio prompt",
                "Audio to continue (any format); the clip's length includes it.",
                &mut text,
                PathKind::Audio,
                Some("none"),
            )
            .changed()
            {
                p.prompt_audio = (!text.trim().is_empty()).then(|| PathBuf::from(text.trim()));
            }
        });
        ui.horizontal(|ui| {
            path_field(
                ui,
                "Clips folder",
                "Generated clips and their history (history.jsonl) are written here.",
                &mut self.form.clips_dir,
                PathKind::Folder,
                None,
            );
        });
    }

    /// The clip on show: transport (Space, Escape), waveform, save.
    fn clip_view(&mut self, ui: &mut egui::Ui, out: &mut Outbox) {
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
                if let Err(e) = self.player.play_or_pause(c.audio.clone(), c.rate) {
                    out.status(Status::Error(e));
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
                .add_enabled(!self.dialog.is_open(), egui::Button::new("Save WAV…"))
                .on_hover_text("Copy the clip to a file of your choice.")
                .clicked()
            {
                self.pick_save();
            }
        });
        let playhead = self.player.position().as_secs_f64();
        waveform(ui, "waveform", &c.audio, c.rate, playhead);
        let done = self.streaming.is_none() || c.file.is_some();
        ui.add_enabled(
            done,
            egui::Checkbox::new(&mut self.show_spectrogram, "Spectrogram"),
        )
        .on_hover_text("The clip's log-mel spectrogram (64 bands, 0 Hz at the bottom).")
        .on_disabled_hover_text("Shown once the clip is generated.");
        if !(self.show_spectrogram && done) {
            return;
        }
        let key = (Arc::as_ptr(&c.audio) as usize, c.audio.len());
        if self.spectrogram.as_ref().map(|(k, _)| *k) != Some(key) {
            match crate::dsp::mel::log_mel_spectrogram(&c.audio, c.rate) {
                Ok(mel) => {
                    let tex = ui.ctx().load_texture(
                        "generate-spectrogram",
                        spectrogram_image(&mel),
                        egui::TextureOptions::LINEAR,
                    );
                    self.spectrogram = Some((key, tex));
                }
                Err(e) => {
                    self.show_spectrogram = false;
                    out.status(Status::Error(format!("No spectrogram: {e}")));
                    return;
                }
            }
        }
        if let Some((_, tex)) = &self.spectrogram {
            let w = ui.available_width();
            let r = ui
                .add(egui::Image::new(tex).fit_to_exact_size(egui::vec2(w, 140.0)))
                .on_hover_text("Log-mel spectrogram (64 bands, 0 Hz at the bottom).");
            let x = r.rect.left() + r.rect.width() * (playhead / seconds.max(1e-9)) as f32;
            ui.painter().vline(
                x,
                r.rect.y_range(),
                egui::Stroke::new(1.5, ui.visuals().strong_text_color()),
            );
        }
    }

    /// Past clips, newest first: click to reload the settings, "Play this" to hear it.
    fn history_ui(&mut self, ui: &mut egui::Ui, out: &mut Outbox) {
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
        if let Some(s) = reload.and_then(|i| self.reload_entry(i)) {
            out.status(s);
        }
        if let Some(s) = play.and_then(|i| self.play_entry(i)) {
            out.status(s);
        }
    }
}
