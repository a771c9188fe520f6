//! The Dataset panel: import a folder of audio (or an audiocraft `data.jsonl`) through the
//! engine, show the import report with every file that failed and why, and a table of the
//! dataset's segments with search and a split filter. The selected segment shows its waveform
//! and log-mel spectrogram and plays (play / pause / stop / seek) — a MIDI piece shows as a
//! piano roll — and its metadata is edited in place: each field is saved when it loses focus,
//! to the dataset's sidecar and `segments.jsonl`. "Train on this dataset" asks the shell to hand
//! the dataset to the Train panel.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::Duration;

use crate::audio::Player;
use crate::data::dataset::{ImportOptions, ImportReport, Info, Segment, Split};
use crate::data::midi::Note;
use crate::dsp::mel::LogMel;
use crate::engine::{Command, Event, JobId, JobOutput};
use crate::ui::common::{field, spectrogram_image, waveform};
use crate::ui::forms::DatasetForm;
use crate::ui::panel::Outbox;
use crate::ui::panel::{ModelBusy, Panel, Request};
use crate::ui::picker::{path_field, PathKind};
use crate::ui::state::State;
use crate::ui::status::Status;
use crate::ui::tab::Tab;

pub struct DatasetPanel {
    pub form: DatasetForm,
    pub job: Option<JobId>,
    pub report: Option<ImportReport>,
    pub segments: Vec<Segment>,
    pub error: Option<String>,
    pub search: String,
    pub split: Option<Split>,
    /// The segment shown below the table, and what was read of it.
    pub selected: Option<String>,
    pub view: Option<SegmentView>,
    /// The metadata being edited (of the selected segment).
    pub edit: Info,
    edit_bpm: String,
    /// The selected segment's file is decoded off the UI thread.
    loading: Option<Receiver<Result<SegmentView, String>>>,
    player: Player,
}

/// What the browser shows of the selected segment.
pub enum SegmentView {
    Audio {
        samples: Arc<Vec<f32>>,
        rate: u32,
        mel: LogMel,
        /// The spectrogram as a texture, made on first draw.
        texture: Option<egui::TextureHandle>,
    },
    Midi {
        notes: Vec<Note>,
    },
}

impl DatasetPanel {
    pub fn new(form: DatasetForm, player: Player) -> Self {
        let mut p = Self {
            form,
            job: None,
            report: None,
            segments: Vec::new(),
            error: None,
            search: String::new(),
            split: None,
            selected: None,
            view: None,
            edit: Info::default(),
            edit_bpm: String::new(),
            loading: None,
            player,
        };
        p.reload();
        p
    }

    /// Reads the dataset's segment list (small: one line per segment).
    pub fn reload(&mut self) {
        let path = PathBuf::from(&self.form.dataset).join("segments.jsonl");
        self.segments = std::fs::read_to_string(&path)
            .map(|t| {
                t.lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect()
            })
            .unwrap_or_default();
    }

    /// Shows segment `id`: its metadata in the editor at once, its audio (or notes) once
    /// decoded on a helper thread (the engine may be busy training; this must not wait).
    pub fn select(&mut self, id: &str) {
        let Some(seg) = self.segments.iter().find(|s| s.id == id).cloned() else {
            return;
        };
        self.player.stop();
        self.selected = Some(seg.id.clone());
        self.edit = seg.info.clone();
        self.edit_bpm = seg.info.bpm.map(|b| b.to_string()).unwrap_or_default();
        self.view = None;
        let dataset = PathBuf::from(&self.form.dataset);
        let (tx, rx) = mpsc::channel();
        self.loading = Some(rx);
        // Not joined: it ends once the file is read, and a reply nobody waits for is dropped.
        let spawned = std::thread::Builder::new()
            .name("tunelab-segment-reader".into())
            .spawn(move || {
                let view = if crate::data::midi_dataset::is_midi_dataset(&dataset) {
                    crate::data::browse::piece_notes(&dataset, &seg.id)
                        .map(|notes| SegmentView::Midi { notes })
                } else {
                    crate::data::browse::segment_audio(&seg).map(|a| SegmentView::Audio {
                        samples: Arc::new(a.samples),
                        rate: a.rate,
                        mel: a.mel,
                        texture: None,
                    })
                };
                let _ = tx.send(view.map_err(|e| e.to_string()));
            });
        if let Err(e) = spawned {
            self.loading = None;
            self.error = Some(format!("Could not read the segment: {e}"));
        }
    }

    /// Takes the selected segment's decoded view when it is ready (called each frame).
    fn poll_view(&mut self) {
        let Some(rx) = &self.loading else {
            return;
        };
        match rx.try_recv() {
            Ok(Ok(v)) => {
                self.view = Some(v);
                self.loading = None;
            }
            Ok(Err(e)) => {
                self.error = Some(e);
                self.loading = None;
            }
            Err(mpsc::TryRecvError::Disconnected) => self.loading = None,
            Err(mpsc::TryRecvError::Empty) => {}
        }
    }

    /// A file or folder dropped on the window becomes the import source (a dropped audio or
    /// MIDI file stands for its folder, a `data.jsonl` for itself); the dataset folder is named
    /// after it, beside the current one, so nothing is written until Import is pressed.
    /// Returns a line for the status bar.
    pub fn use_dropped(&mut self, path: &std::path::Path) -> Status {
        let is_manifest = path.extension().is_some_and(|e| e == "jsonl");
        let src = if path.is_dir() || is_manifest {
            path.to_path_buf()
        } else {
            path.parent().map(|p| p.to_path_buf()).unwrap_or_default()
        };
        let named = if is_manifest {
            src.parent()
        } else {
            Some(src.as_path())
        };
        let name = named
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "dropped".into());
        let datasets = std::path::Path::new(&self.form.dataset)
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|| crate::demo::demo_dir().join("datasets"));
        self.form.source = src.display().to_string();
        self.form.dataset = datasets.join(&name).display().to_string();
        Status::Info(format!(
            "Dropped {}: press Import to make the dataset {}.",
            src.display(),
            self.form.dataset
        ))
    }

    /// The playhead within the selected segment.
    pub fn position(&self) -> Duration {
        self.player.position()
    }

    /// Is the selected segment still being read?
    pub fn loading(&self) -> bool {
        self.loading.is_some()
    }

    /// Saves the edited metadata of the selected segment's track (sidecar and manifest).
    fn save_edit(&mut self) {
        let Some(id) = self.selected.clone() else {
            return;
        };
        let Some(old) = self
            .segments
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.info.clone())
        else {
            return;
        };
        let mut info = self.edit.clone();
        info.bpm = self
            .edit_bpm
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|b| *b > 0.0);
        // A field the user typed is no longer an estimate.
        info.estimated.retain(|f| match f.as_str() {
            "bpm" => info.bpm == old.bpm,
            "key" => info.key == old.key,
            _ => true,
        });
        if info == old {
            return;
        }
        match crate::data::browse::edit_info(std::path::Path::new(&self.form.dataset), &id, &info) {
            Ok(segs) => {
                self.segments = segs;
                self.edit = info;
                self.error = None;
            }
            Err(e) => self.error = Some(format!("Could not save the metadata: {e}")),
        }
    }

    fn draw(&mut self, ui: &mut egui::Ui, out: &mut Outbox) {
        let idle = self.job.is_none();
        egui::Grid::new("dataset-form")
            .num_columns(2)
            .show(ui, |ui| {
                path_field(
                    ui,
                    "Audio folder or data.jsonl",
                    "WAV, FLAC, MP3 or OGG (any rate and channel count), or a folder of MIDI \
                     files (a MIDI dataset for the Music Transformer).",
                    &mut self.form.source,
                    PathKind::Folder,
                    None,
                );
                ui.end_row();
                path_field(
                    ui,
                    "Dataset folder",
                    "Where the dataset is written.",
                    &mut self.form.dataset,
                    PathKind::Folder,
                    None,
                );
                ui.end_row();
                field(
                    ui,
                    "Segment seconds",
                    "Long files are cut; a tail of at least 80 % of a segment is kept.",
                    |ui| {
                        ui.add(
                            egui::DragValue::new(&mut self.form.segment_seconds).range(1.0..=60.0),
                        )
                    },
                );
                ui.end_row();
            });
        ui.horizontal(|ui| {
            let can = idle && !self.form.source.trim().is_empty();
            if ui.add_enabled(can, egui::Button::new("Import"))
                .on_hover_text("Import the folder into the dataset folder (a file that cannot be read is reported; the rest is imported).").clicked() {
                let job = out.job();
                self.job = Some(job);
                out.send(Command::ImportDataset {
                    job,
                    src: PathBuf::from(self.form.source.trim()),
                    out: PathBuf::from(self.form.dataset.trim()),
                    options: ImportOptions {
                        segment_seconds: self.form.segment_seconds,
                        ..Default::default()
                    },
                });
            }
            if ui.add_enabled(idle, egui::Button::new("Reload"))
                .on_hover_text("Read the dataset folder again.").clicked() {
                self.reload();
            }
            if ui
                .add_enabled(
                    !self.segments.is_empty(),
                    egui::Button::new("Train on this dataset"),
                )
                .clicked()
            {
                out.request(Request::TrainOn(PathBuf::from(&self.form.dataset)));
            }
            if !idle {
                ui.spinner();
                ui.label("importing…");
            }
        });
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        if let Some(r) = &self.report {
            ui.label(format!(
                "Imported {} files ({:.1} min, {} segments); {} failed.",
                r.imported.len(),
                r.seconds / 60.0,
                r.segments,
                r.failed.len()
            ));
            for (p, why) in &r.failed {
                ui.colored_label(
                    ui.visuals().warn_fg_color,
                    format!("{}: {why}", p.display()),
                );
            }
        }
        ui.separator();
        ui.horizontal(|ui| {
            field(ui, "Search", "Filter captions.", |ui| {
                ui.text_edit_singleline(&mut self.search)
            });
            for (label, s) in [
                ("all", None),
                ("train", Some(Split::Train)),
                ("valid", Some(Split::Valid)),
                ("test", Some(Split::Test)),
            ] {
                ui.selectable_value(&mut self.split, s, label);
            }
        });
        let needle = self.search.to_lowercase();
        let rows: Vec<&Segment> = self
            .segments
            .iter()
            .filter(|s| self.split.is_none_or(|sp| s.split == sp))
            .filter(|s| needle.is_empty() || s.caption.to_lowercase().contains(&needle))
            .collect();
        ui.label(format!("{} segments", rows.len()));
        let mut clicked = None;
        egui::ScrollArea::vertical()
            .id_salt("segments")
            .max_height(if self.selected.is_some() {
                160.0
            } else {
                f32::INFINITY
            })
            .show(ui, |ui| {
                egui::Grid::new("segments")
                    .striped(true)
                    .num_columns(6)
                    .show(ui, |ui| {
                        for h in ["segment", "seconds", "bpm", "key", "split", "caption"] {
                            ui.strong(h);
                        }
                        ui.end_row();
                        for s in rows.iter().take(500) {
                            if ui
                                .selectable_label(self.selected.as_deref() == Some(&s.id), &s.id)
                                .on_hover_text("Show, play and edit this segment.")
                                .clicked()
                            {
                                clicked = Some(s.id.clone());
                            }
                            ui.label(format!("{:.1}", s.duration));
                            let est = |f: &str| {
                                if s.info.estimated.iter().any(|e| e == f) {
                                    " (est.)"
                                } else {
                                    ""
                                }
                            };
                            ui.label(
                                s.info
                                    .bpm
                                    .map(|b| format!("{b:.0}{}", est("bpm")))
                                    .unwrap_or_default(),
                            );
                            ui.label(
                                s.info
                                    .key
                                    .clone()
                                    .map(|k| format!("{k}{}", est("key")))
                                    .unwrap_or_default(),
                            );
                            ui.label(format!("{:?}", s.split));
                            ui.label(&s.caption);
                            ui.end_row();
                        }
                    });
            });
        if let Some(id) = clicked {
            self.select(&id);
        }
        self.details_ui(ui);
    }

    /// The selected segment: transport, waveform and spectrogram (or piano roll), metadata.
    fn details_ui(&mut self, ui: &mut egui::Ui) {
        let Some(id) = self.selected.clone() else {
            return;
        };
        ui.separator();
        ui.strong(&id);
        if self.loading.is_some() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("reading…");
            });
        }
        match &mut self.view {
            Some(SegmentView::Audio {
                samples,
                rate,
                mel,
                texture,
            }) => {
                let (samples, rate) = (samples.clone(), *rate);
                let seconds = samples.len() as f64 / rate.max(1) as f64;
                let tex = texture
                    .get_or_insert_with(|| {
                        ui.ctx().load_texture(
                            format!("mel-{id}"),
                            spectrogram_image(mel),
                            egui::TextureOptions::LINEAR,
                        )
                    })
                    .clone();
                ui.horizontal(|ui| {
                    let playing = self.player.is_playing();
                    if ui.button(if playing { "Pause" } else { "Play" }).clicked() {
                        if let Err(e) = self.player.play_or_pause(samples.clone(), rate) {
                            self.error = Some(e);
                        }
                    }
                    if ui.button("Stop").clicked() {
                        self.player.stop();
                    }
                    let mut at = self.player.position().as_secs_f64();
                    if field(ui, "Seek", "Play from here.", |ui| {
                        ui.add(egui::Slider::new(&mut at, 0.0..=seconds).suffix(" s"))
                    })
                    .changed()
                    {
                        if let Err(e) =
                            self.player
                                .play(samples.clone(), rate, Duration::from_secs_f64(at))
                        {
                            self.error = Some(e);
                        }
                    }
                    if self.player.is_playing() {
                        ui.ctx().request_repaint_after(Duration::from_millis(50));
                    }
                });
                let playhead = self.player.position().as_secs_f64();
                waveform(ui, "segment-waveform", &samples, rate, playhead);
                let w = ui.available_width();
                let r = ui
                    .add(egui::Image::new(&tex).fit_to_exact_size(egui::vec2(w, 110.0)))
                    .on_hover_text("Log-mel spectrogram (64 bands, 0 Hz at the bottom).");
                let x = r.rect.left() + r.rect.width() * (playhead / seconds.max(1e-9)) as f32;
                ui.painter().vline(
                    x,
                    r.rect.y_range(),
                    egui::Stroke::new(1.5, ui.visuals().strong_text_color()),
                );
            }
            Some(SegmentView::Midi { notes }) => piano_roll(ui, notes),
            None => {}
        }
        self.edit_ui(ui);
    }

    /// The metadata of the selected segment's track; a field is saved when it loses focus.
    fn edit_ui(&mut self, ui: &mut egui::Ui) {
        let mut commit = false;
        egui::Grid::new("segment-info")
            .num_columns(4)
            .show(ui, |ui| {
                let e = &mut self.edit;
                let mut desc = e.description.clone().unwrap_or_default();
                let r = field(
                    ui,
                    "Caption",
                    "The training caption (the description); empty = made from the fields.",
                    |ui| ui.add(egui::TextEdit::singleline(&mut desc).desired_width(420.0)),
                );
                e.description = Some(desc).filter(|d| !d.trim().is_empty());
                commit |= r.lost_focus();
                ui.end_row();
                for (label, value) in [
                    ("Title", &mut e.title),
                    ("Artist", &mut e.artist),
                    ("Key", &mut e.key),
                    ("Genre", &mut e.genre),
                    ("Instrument", &mut e.instrument),
                ] {
                    let mut text = value.clone().unwrap_or_default();
                    let r = field(ui, label, "Saved when the field loses focus.", |ui| {
                        ui.text_edit_singleline(&mut text)
                    });
                    *value = Some(text).filter(|t| !t.trim().is_empty());
                    commit |= r.lost_focus();
                    if label == "Artist" || label == "Genre" {
                        ui.end_row();
                    }
                }
                let r = field(ui, "BPM", "Tempo in beats per minute.", |ui| {
                    ui.text_edit_singleline(&mut self.edit_bpm)
                });
                commit |= r.lost_focus();
                ui.end_row();
            });
        if commit {
            self.save_edit();
        }
    }
}

impl Panel for DatasetPanel {
    fn tab(&self) -> Tab {
        Tab::Dataset
    }

    fn ui(&mut self, ui: &mut egui::Ui, _model: ModelBusy, out: &mut Outbox) {
        self.draw(ui, out);
    }

    /// The end of this panel's import: its report, and the dataset re-read.
    fn on_event(&mut self, ev: &Event, _out: &mut Outbox) -> bool {
        let Event::Done { job, result } = ev else {
            return false;
        };
        if Some(*job) != self.job {
            return false;
        }
        self.job = None;
        match result {
            Ok(JobOutput::Imported(r)) => {
                self.report = Some(r.clone());
                self.error = None;
                self.reload();
            }
            Ok(_) => {}
            Err(e) => self.error = Some(e.clone()),
        }
        true
    }

    fn poll(&mut self, _out: &mut Outbox) {
        self.poll_view();
    }

    fn jobs(&self) -> Vec<JobId> {
        self.job.into_iter().collect()
    }

    fn save(&self, state: &mut State) {
        state.dataset = self.form.clone();
    }
}

/// Notes as bars: time left to right, pitch bottom to top, brighter = louder.
fn piano_roll(ui: &mut egui::Ui, notes: &[Note]) {
    let (rect, resp) = ui.allocate_exact_size(
        egui::vec2(ui.available_width(), 180.0),
        egui::Sense::hover(),
    );
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 2.0, ui.visuals().extreme_bg_color);
    if notes.is_empty() {
        return;
    }
    let lo = notes
        .iter()
        .map(|n| n.pitch)
        .min()
        .unwrap_or(60)
        .saturating_sub(1) as f32;
    let hi = notes
        .iter()
        .map(|n| n.pitch)
        .max()
        .unwrap_or(60)
        .saturating_add(1) as f32;
    let end = notes.iter().map(|n| n.end).fold(0.0, f64::max).max(1e-3);
    let row = rect.height() / (hi - lo + 1.0);
    for n in notes {
        let x0 = rect.left() + rect.width() * (n.start / end) as f32;
        let x1 = (rect.left() + rect.width() * (n.end / end) as f32).max(x0 + 1.0);
        let y = rect.bottom() - (n.pitch as f32 - lo + 1.0) * row;
        let v = 90 + (n.velocity as u32 * 165 / 127) as u8;
        painter.rect_filled(
            egui::Rect::from_min_max(egui::pos2(x0, y), egui::pos2(x1, y + row.max(1.0))),
            1.0,
            egui::Color32::from_rgb(v / 3, v, v / 2),
        );
    }
    resp.on_hover_text(format!(
        "{} notes over {:.1} s, pitches {}–{}",
        notes.len(),
        end,
        lo as u8 + 1,
        hi as u8 - 1
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use egui_kittest::kittest::Queryable;
    use egui_kittest::Harness;

    struct S {
        panel: DatasetPanel,
        out: Outbox,
    }

    fn draw(ui: &mut egui::Ui, s: &mut S) {
        s.panel.poll(&mut s.out);
        s.panel.ui(ui, ModelBusy::default(), &mut s.out);
    }

    #[test]
    fn import_sends_the_command_and_the_report_fills_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("audio");
        std::fs::create_dir_all(&src).unwrap();
        let tone: Vec<f32> = (0..64_000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        crate::data::audio::write_wav(&src.join("a.wav"), &tone, 32_000).unwrap();
        std::fs::write(src.join("bad.wav"), b"nope").unwrap();
        let ds = dir.path().join("ds");
        let form = DatasetForm {
            source: src.display().to_string(),
            dataset: ds.display().to_string(),
            segment_seconds: 1.0,
        };
        let mut h = Harness::new_ui_state(
            |ui, s: &mut S| s.panel.ui(ui, ModelBusy::default(), &mut s.out),
            S {
                panel: DatasetPanel::new(form, Player::silent()),
                out: Outbox::default(),
            },
        );
        h.get_by_label("Import").click();
        h.step(); // a spinner keeps repainting while the engine imports
        let (job, cmd_src, opts) = match h.state().out.commands() {
            [Command::ImportDataset {
                job, src, options, ..
            }] => (*job, src.clone(), options.clone()),
            other => panic!("expected an import, got {other:?}"),
        };
        assert_eq!(opts.segment_seconds, 1.0);
        // What the engine would do and answer.
        let report = crate::data::import::import_dir(&cmd_src, &ds, &opts).unwrap();
        let S { panel, out } = h.state_mut();
        assert!(panel.on_event(
            &Event::Done {
                job,
                result: Ok(JobOutput::Imported(report)),
            },
            out
        ));
        h.run();
        assert_eq!(h.state().panel.segments.len(), 2);
        assert!(
            h.query_by_label_contains("bad.wav").is_some(),
            "the failure is shown"
        );
        h.get_by_label("Train on this dataset").click();
        h.run();
        assert_eq!(h.state().out.requests(), [Request::TrainOn(ds.clone())]);
    }

    fn harness(form: DatasetForm) -> Harness<'static, S> {
        Harness::new_ui_state(
            draw,
            S {
                panel: DatasetPanel::new(form, Player::silent()),
                out: Outbox::default(),
            },
        )
    }

    /// Steps until the selected segment has been read (bounded).
    fn wait_for_view(h: &mut Harness<'static, S>) {
        let start = std::time::Instant::now();
        while h.state().panel.loading() && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(10));
            h.step();
        }
        h.step();
    }

    #[test]
    fn a_selected_audio_segment_shows_its_spectrogram_plays_and_its_edits_are_saved() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("audio");
        std::fs::create_dir_all(&src).unwrap();
        let tone: Vec<f32> = (0..64_000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        crate::data::audio::write_wav(&src.join("a.wav"), &tone, 32_000).unwrap();
        let ds = dir.path().join("ds");
        let opts = ImportOptions {
            segment_seconds: 1.0,
            auto_label: false,
            ..Default::default()
        };
        crate::data::import::import_dir(&src, &ds, &opts).unwrap();
        let mut h = harness(DatasetForm {
            source: src.display().to_string(),
            dataset: ds.display().to_string(),
            segment_seconds: 1.0,
        });
        h.get_by_label("a.wav#1").click();
        h.step();
        assert_eq!(h.state().panel.selected.as_deref(), Some("a.wav#1"));
        wait_for_view(&mut h);
        match &h.state().panel.view {
            Some(SegmentView::Audio {
                samples,
                mel,
                texture,
                ..
            }) => {
                assert_eq!(samples.len(), 32_000);
                assert_eq!(mel.n_mels, 64);
                assert!(mel.n_frames > 60);
                assert!(texture.is_some(), "the spectrogram is drawn");
            }
            _ => panic!("expected the audio view"),
        }
        h.get_by_label("Play").click();
        h.step();
        h.step();
        assert!(h.query_by_label("Pause").is_some(), "the segment plays");
        h.get_by_label("Stop").click();
        h.step();
        assert_eq!(h.state().panel.position(), Duration::ZERO);
        h.get_by_role_and_label(egui::accesskit::Role::Slider, "Seek")
            .set_value_accesskit(0.6);
        h.step();
        h.step();
        let at = h.state().panel.position().as_secs_f64();
        assert!((0.6..0.9).contains(&at), "seeked to {at}");
        h.get_by_label("Stop").click();
        h.step();

        // Edit the title and the caption: saved when the field loses focus.
        let title = h.get_by_role_and_label(egui::accesskit::Role::TextInput, "Title");
        title.focus();
        h.step();
        h.get_by_role_and_label(egui::accesskit::Role::TextInput, "Title")
            .type_text("Tuning fork");
        h.step();
        h.key_press(egui::Key::Enter);
        h.run();
        h.get_by_role_and_label(egui::accesskit::Role::TextInput, "Caption")
            .focus();
        h.step();
        h.get_by_role_and_label(egui::accesskit::Role::TextInput, "Caption")
            .type_text("a soft sine");
        h.step();
        h.key_press(egui::Key::Enter);
        h.run();
        let segs = crate::data::dataset::read_segments(&ds).unwrap();
        assert_eq!(segs.len(), 2);
        for s in &segs {
            assert_eq!(s.info.title.as_deref(), Some("Tuning fork"), "{}", s.id);
            assert_eq!(s.caption, "a soft sine");
        }
        let metas: Vec<crate::data::dataset::AudioMeta> =
            crate::data::dataset::read_jsonl(&ds.join("data.jsonl")).unwrap();
        let sidecar: Info = serde_json::from_str(
            &std::fs::read_to_string(metas[0].info_path.as_ref().unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(sidecar.title.as_deref(), Some("Tuning fork"));
        assert_eq!(sidecar.description.as_deref(), Some("a soft sine"));
        assert!(h.state().panel.error.is_none());
    }

    #[test]
    fn a_midi_piece_shows_as_a_piano_roll() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("midi");
        let notes: Vec<Note> = (0..12)
            .map(|i| Note {
                pitch: 60 + (i % 5) as u8,
                velocity: 90,
                start: i as f64 * 0.25,
                end: i as f64 * 0.25 + 0.2,
            })
            .collect();
        crate::data::midi::write_midi(&src.join("tune.mid"), &notes, 0).unwrap();
        let ds = dir.path().join("ds");
        crate::data::import::import_dir(&src, &ds, &ImportOptions::default()).unwrap();
        let mut h = harness(DatasetForm {
            source: src.display().to_string(),
            dataset: ds.display().to_string(),
            segment_seconds: 30.0,
        });
        let id = h.state().panel.segments[0].id.clone();
        h.get_by_label(&id).click();
        h.step();
        wait_for_view(&mut h);
        match &h.state().panel.view {
            Some(SegmentView::Midi { notes: shown }) => {
                assert_eq!(shown.len(), notes.len());
                assert_eq!(shown.iter().map(|n| n.pitch).max(), Some(64));
            }
            _ => panic!("expected the piano roll"),
        }
    }
}
