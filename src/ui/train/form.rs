//! The Train panel's form drawn: the run's configuration (mode and hyper-parameters with
//! audiocraft's defaults, a tooltip per field) and its folder. The form's data, persisted across
//! restarts, is `ui::forms::TrainForm`.

use std::path::PathBuf;

use crate::models::Family;
use crate::store::run_config::Mode;
use crate::ui::common::field;
use crate::ui::forms::TrainForm;
use crate::ui::picker::{path_field, PathKind};

impl TrainForm {
    /// The form's fields (a grid of four columns).
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        egui::Grid::new("train-form").num_columns(4).show(ui, |ui| {
            let mut ds = self.config.dataset.display().to_string();
            if path_field(
                ui,
                "Dataset folder",
                "A folder made in the Dataset tab (Import).",
                &mut ds,
                PathKind::Dataset,
                None,
            )
            .changed()
            {
                self.set_dataset(PathBuf::from(ds));
            }
            let c = &mut self.config;
            path_field(
                ui,
                "Base model",
                "MusicGen: a Hub id or a local folder · MIDI: a Music Transformer folder or run \
                 to continue from (unused by scratch)",
                &mut c.model,
                PathKind::Model,
                None,
            );
            ui.end_row();
            field(
                ui,
                "Family",
                "MusicGen (text → audio) or Music Transformer (MIDI events)",
                |ui| {
                    egui::ComboBox::from_id_salt("family")
                        .selected_text(family_name(c.family))
                        .show_ui(ui, |ui| {
                            for f in [Family::Musicgen, Family::Midi] {
                                ui.selectable_value(&mut c.family, f, family_name(f));
                            }
                        })
                        .response
                },
            );
            if c.family == Family::Midi {
                field(ui, "Preset", "Size of a scratch Music Transformer.", |ui| {
                    egui::ComboBox::from_id_salt("preset")
                        .selected_text(c.midi.preset.clone())
                        .show_ui(ui, |ui| {
                            for p in crate::models::music_transformer::PRESETS {
                                ui.selectable_value(&mut c.midi.preset, p.to_string(), p);
                            }
                        })
                        .response
                });
            }
            ui.end_row();
            path_field(
                ui,
                "Run folder",
                "Where config, metrics and checkpoints go.",
                &mut self.run_dir,
                PathKind::Run,
                None,
            );
            field(
                ui,
                "Mode",
                "full: every LM weight · lora: low-rank adapters · head: output heads and text \
                 projection · scratch: a fresh LM",
                |ui| {
                    egui::ComboBox::from_id_salt("mode")
                        .selected_text(format!("{:?}", c.mode))
                        .show_ui(ui, |ui| {
                            for m in [Mode::Full, Mode::Lora, Mode::Head, Mode::Scratch] {
                                ui.selectable_value(&mut c.mode, m, format!("{m:?}"));
                            }
                        })
                        .response
                },
            );
            ui.end_row();
            field(ui, "Steps", "Optimizer updates.", |ui| {
                ui.add(egui::DragValue::new(&mut c.steps).range(1..=1_000_000))
            });
            field(ui, "Batch", "Segments per micro-batch.", |ui| {
                ui.add(egui::DragValue::new(&mut c.batch_size).range(1..=64))
            });
            ui.end_row();
            let mut lr = c.peak_lr();
            if field(
                ui,
                "Learning rate",
                "Peak; default 1e-4 (LoRA 2e-4).",
                |ui| ui.add(egui::DragValue::new(&mut lr).speed(1e-5).range(1e-7..=1e-1)),
            )
            .changed()
            {
                c.lr = Some(lr);
            }
            field(
                ui,
                "Warmup",
                "Linear warmup steps, then cosine decay.",
                |ui| ui.add(egui::DragValue::new(&mut c.warmup_steps).range(0..=100_000)),
            );
            ui.end_row();
            if c.family == Family::Midi {
                let mut events = c.midi.max_events.unwrap_or(512);
                if field(
                    ui,
                    "Max events",
                    "Training window in events (at most the model's); longer pieces are cropped.",
                    |ui| ui.add(egui::DragValue::new(&mut events).range(16..=4096)),
                )
                .changed()
                {
                    c.midi.max_events = Some(events);
                }
            } else {
                field(
                    ui,
                    "Max seconds",
                    "Longer segments are randomly cropped.",
                    |ui| ui.add(egui::DragValue::new(&mut c.max_seconds).range(1.0..=30.0)),
                );
            }
            field(
                ui,
                "LoRA rank",
                "Rank r of the adapters (LoRA mode).",
                |ui| ui.add(egui::DragValue::new(&mut c.lora.r).range(1..=256)),
            );
            ui.end_row();
            if c.family == Family::Midi {
                field(
                    ui,
                    "Transpose ±",
                    "Each excerpt is shifted by a random number of semitones up to this.",
                    |ui| ui.add(egui::DragValue::new(&mut c.midi.transpose).range(0..=12)),
                );
            } else {
                field(
                    ui,
                    "Condition dropout",
                    "Share of captions replaced by the empty condition (keeps CFG working).",
                    |ui| ui.add(egui::Slider::new(&mut c.condition_dropout, 0.0..=1.0)),
                );
            }
            field(
                ui,
                "Validate every",
                "Steps between validation passes.",
                |ui| ui.add(egui::DragValue::new(&mut c.eval_every).range(0..=100_000)),
            );
            ui.end_row();
            field(
                ui,
                "Keep every",
                "Kept checkpoints (and previews) every N steps; 0 = only last and best.",
                |ui| ui.add(egui::DragValue::new(&mut c.checkpoint_every).range(0..=100_000)),
            );
            let mut prompt = c.preview_prompt.clone().unwrap_or_default();
            if field(
                ui,
                "Preview prompt",
                "A clip for this prompt is generated at each kept checkpoint (MIDI: any text \
                 turns on an unprimed preview piece); empty = no previews.",
                |ui| ui.add(egui::TextEdit::singleline(&mut prompt).hint_text("none")),
            )
            .changed()
            {
                c.preview_prompt = Some(prompt).filter(|p| !p.trim().is_empty());
            }
            ui.end_row();
        });
    }
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::Musicgen => "MusicGen",
        Family::Midi => "Music Transformer (MIDI)",
    }
}
