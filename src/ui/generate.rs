//! The Generate panel: load a model, set the prompt and sampling (or, for a Music Transformer,
//! the prime), generate a clip, play it (`Space` plays / pauses when no text field has focus)
//! and save it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::audio::AudioSink;
use crate::engine::{Command, Event, JobId, JobOutput, ModelInfo};
use crate::generate::midi::{prime_from_midi, MidiGenerateParams};
use crate::generate::GenerateParams;
use crate::models::musicgen::config::Preset;
use crate::models::nn::WeightMode;
use crate::train::config::Family;
use crate::ui::train::{field, Outbox};

/// The form (persisted).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GenerateForm {
    /// A Hub repo id, a local model folder, or a training run.
    pub model_spec: String,
    pub params: GenerateParams,
    pub midi: MidiForm,
    pub out_path: String,
}

impl Default for GenerateForm {
    fn default() -> Self {
        Self {
            // The shipped demo model: the studio works offline on first start.
            model_spec: crate::demo::model_dir().display().to_string(),
            params: GenerateParams {
                prompt: "lo-fi hip hop with warm piano and vinyl crackle".into(),
                duration: 5.0,
                ..Default::default()
            },
            midi: MidiForm::default(),
            out_path: "clip.wav".into(),
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

/// The clip on show.
#[derive(Debug, Clone)]
pub struct Shown {
    pub audio: Arc<Vec<f32>>,
    pub rate: u32,
}

pub struct GeneratePanel {
    pub form: GenerateForm,
    pub model: Option<ModelInfo>,
    /// A load the panel asked for (the shell shows its progress).
    pub requested: Option<JobId>,
    /// The generation job sent and not done.
    pub job: Option<JobId>,
    /// Decoder steps of the running job.
    pub step: (usize, usize),
    pub clip: Option<Shown>,
    /// A line for the status bar (the shell takes it).
    pub status: Option<String>,
    player: Box<dyn AudioSink>,
}

impl GeneratePanel {
    pub fn new(form: GenerateForm, player: Box<dyn AudioSink>) -> Self {
        Self {
            form,
            model: None,
            requested: None,
            job: None,
            step: (0, 0),
            clip: None,
            status: None,
            player,
        }
    }

    /// Is a generation running?
    pub fn busy(&self) -> bool {
        self.job.is_some()
    }

    /// Does this job belong to the panel (a generation it sent)?
    pub fn owns(&self, job: JobId) -> bool {
        self.job == Some(job)
    }

    /// The status bar's progress: fraction and text.
    pub fn progress(&self) -> Option<(f32, String)> {
        self.job?;
        let (step, total) = self.step;
        Some((
            step as f32 / total.max(1) as f32,
            format!("step {step}/{total}"),
        ))
    }

    /// Queues loading `spec` (f32).
    pub fn load(&mut self, out: &mut Outbox, spec: String) {
        let job = out.job();
        out.commands.push(Command::LoadModel {
            job,
            spec,
            weights: WeightMode::F32,
            adapter: None,
        });
        self.requested = Some(job);
    }

    /// A model finished loading (asked by this panel or another).
    pub fn model_loaded(&mut self, _job: JobId, info: ModelInfo) {
        self.model = Some(info);
    }

    /// Engine events for the panel's job: steps, and the clip or piece when it ends.
    pub fn on_event(&mut self, ev: &Event) {
        match ev {
            Event::GenerateStep { job, step, total } if self.owns(*job) => {
                self.step = (*step, *total);
            }
            Event::Done { job, result } if self.owns(*job) => {
                self.job = None;
                self.step = (0, 0);
                self.status = Some(match result {
                    Ok(JobOutput::Clip(clip)) => {
                        self.clip = Some(Shown {
                            audio: Arc::new(clip.audio.clone()),
                            rate: clip.sample_rate,
                        });
                        format!(
                            "Generated {:.1} s.",
                            clip.audio.len() as f64 / clip.sample_rate.max(1) as f64
                        )
                    }
                    Ok(JobOutput::Piece(piece)) => {
                        self.clip = Some(Shown {
                            audio: Arc::new(piece.audio.clone()),
                            rate: piece.sample_rate,
                        });
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

    /// Nothing arrives off the engine's channel yet (called each frame).
    pub fn poll(&mut self) {}

    fn is_midi(&self) -> bool {
        self.model
            .as_ref()
            .is_some_and(|m| m.family == Family::Midi)
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, out: &mut Outbox, busy: bool) {
        let idle = !busy && self.job.is_none();
        ui.horizontal(|ui| {
            field(
                ui,
                "Model",
                "A Hub repo id, a local MusicGen or Music Transformer folder, or a training run.",
                |ui| ui.text_edit_singleline(&mut self.form.model_spec),
            );
            if ui.add_enabled(idle, egui::Button::new("Load")).clicked() {
                let spec = self.form.model_spec.clone();
                self.load(out, spec);
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
                self.requested = Some(job);
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
        if self.is_midi() {
            self.midi_controls(ui, out, idle);
        } else {
            self.musicgen_controls(ui, out, idle);
        }
        self.clip_view(ui);
    }

    /// Improv or primed generation with a Music Transformer (no prompt, no CFG).
    fn midi_controls(&mut self, ui: &mut egui::Ui, out: &mut Outbox, idle: bool) {
        let f = &mut self.form.midi;
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
                self.generate_midi(out);
            }
            if self.job.is_some() && ui.button("Cancel").clicked() {
                out.cancel = true;
            }
        });
    }

    fn generate_midi(&mut self, out: &mut Outbox) {
        let f = self.form.midi.clone();
        let mut params = f.params.clone();
        if !f.prime.trim().is_empty() {
            match prime_from_midi(Path::new(f.prime.trim()), f.prime_seconds) {
                Ok(p) => params.prime = p,
                Err(e) => {
                    self.status = Some(format!("Error: {e}"));
                    return;
                }
            }
        } else {
            params.prime.clear();
        }
        let stem = Path::new(&f.out_dir).join(format!("piece-{}", params.seed));
        let soundfont = (!f.soundfont.trim().is_empty()).then(|| PathBuf::from(f.soundfont.trim()));
        let job = out.job();
        out.commands.push(Command::GenerateMidi {
            job,
            params,
            out: stem,
            soundfont,
        });
        self.job = Some(job);
        self.step = (0, 1);
    }

    fn musicgen_controls(&mut self, ui: &mut egui::Ui, out: &mut Outbox, idle: bool) {
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
            ui.add(egui::DragValue::new(&mut p.sampling.top_k).prefix("top-k "));
        });
        ui.horizontal(|ui| {
            let can_gen = idle && self.model.is_some();
            if ui
                .add_enabled(can_gen, egui::Button::new("Generate clip"))
                .clicked()
            {
                let job = out.job();
                out.commands.push(Command::Generate {
                    job,
                    params: self.form.params.clone(),
                });
                self.job = Some(job);
                self.step = (0, 1);
            }
            if self.job.is_some() && ui.button("Cancel").clicked() {
                out.cancel = true;
            }
        });
    }

    /// The clip on show: transport, waveform, save.
    fn clip_view(&mut self, ui: &mut egui::Ui) {
        let Some(c) = self.clip.clone() else {
            return;
        };
        let seconds = c.audio.len() as f64 / c.rate.max(1) as f64;
        let space =
            ui.input(|i| i.key_pressed(egui::Key::Space)) && !ui.ctx().egui_wants_keyboard_input();
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
        waveform(
            ui,
            "waveform",
            &c.audio,
            c.rate,
            self.player.position().as_secs_f64(),
        );
        ui.horizontal(|ui| {
            field(ui, "Save as", "Where Save WAV writes the clip.", |ui| {
                ui.text_edit_singleline(&mut self.form.out_path)
            });
            if ui.button("Save WAV").clicked() {
                let p = PathBuf::from(&self.form.out_path);
                self.status = Some(match crate::data::audio::write_wav(&p, &c.audio, c.rate) {
                    Ok(()) => format!("Saved {}", p.display()),
                    Err(e) => format!("Error: {e}"),
                });
            }
        });
    }
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

    #[test]
    fn generate_sends_the_form_and_the_clip_plays() {
        let mut panel = GeneratePanel::new(
            GenerateForm::default(),
            Box::new(crate::audio::NullSink::default()),
        );
        panel.model_loaded(1, musicgen_info());
        let mut h = Harness::new_ui_state(
            |ui, s: &mut S| s.panel.ui(ui, &mut s.out, false),
            S {
                panel,
                out: Outbox::default(),
            },
        );
        h.get_by_label("Generate clip").click();
        h.run();
        let job = match h.state().out.commands.as_slice() {
            [Command::Generate { job, params }] => {
                assert_eq!(params.prompt, GenerateForm::default().params.prompt);
                *job
            }
            other => panic!("expected a Generate command, got {other:?}"),
        };
        assert!(h.state().panel.busy());
        h.state_mut().panel.on_event(&Event::Done {
            job,
            result: Ok(JobOutput::Clip(crate::generate::Clip {
                codes: vec![],
                audio: vec![0.1; 32_000],
                sample_rate: 32_000,
            })),
        });
        h.run();
        assert!(!h.state().panel.busy());
        assert_eq!(h.state().panel.status.as_deref(), Some("Generated 1.0 s."));
        h.get_by_label("Play").click();
        h.step();
        h.step();
        assert!(h.query_by_label("Pause").is_some(), "playing");
    }
}
