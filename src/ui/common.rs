//! Widgets the panels share: the labelled form [`field`], the [`weights_combo`], the clip
//! [`waveform`] and its [`spectrogram_image`], and [`FileDialog`], the one way a panel opens a system file dialog without
//! blocking the UI thread.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, TryRecvError};

/// The weight-mode picker of the Models and Generate tabs (MusicGen; a Music Transformer is
/// always f32).
pub fn weights_combo(ui: &mut egui::Ui, id: &str, weights: &mut crate::models::nn::WeightMode) {
    use crate::models::nn::WeightMode;
    let l = ui.label("Weights").on_hover_text(WEIGHTS_TIP);
    egui::ComboBox::from_id_salt(id)
        .selected_text(weights.to_string())
        .show_ui(ui, |ui| {
            for w in WeightMode::ALL {
                ui.selectable_value(weights, w, w.to_string());
            }
        })
        .response
        .labelled_by(l.id)
        .on_hover_text(WEIGHTS_TIP);
}

/// What each weight mode trades (the figures: README's speed and quality table).
const WEIGHTS_TIP: &str = "How a MusicGen's large matrices are stored for generating. \
    f32: exact (training, parity). q8: 8-bit, two to three times as fast as f32 on a CPU, \
    sampling almost unchanged. q4: 4-bit, the fastest on a CPU (faster than real time on two \
    AVX-512 cores), but about a third of the most likely codes change. q4k: candle's 4-bit \
    k-quant. A Music Transformer always runs in f32.";

/// A labelled form field: the label (with its tooltip) names the widget for screen readers.
pub fn field(
    ui: &mut egui::Ui,
    label: &str,
    tip: &str,
    add: impl FnOnce(&mut egui::Ui) -> egui::Response,
) -> egui::Response {
    let l = ui.label(label).on_hover_text(tip);
    add(ui)
        .labelled_by(l.id)
        .accessible_name(label)
        .on_hover_text(tip)
}

/// The (min, max) of every `per` samples (at least 1), from 0 and ignoring non-finite values:
/// the picture of a clip, as the waveform and the Library's thumbnails draw it.
pub fn envelope(samples: &[f32], per: usize) -> Vec<(f32, f32)> {
    samples
        .chunks(per.max(1))
        .map(|c| {
            c.iter()
                .filter(|v| v.is_finite())
                .fold((0f32, 0f32), |(lo, hi), v| (lo.min(*v), hi.max(*v)))
        })
        .collect()
}

/// A min/max envelope of a clip (at most ~600 columns) with the playhead.
pub fn waveform(ui: &mut egui::Ui, id: &str, audio: &[f32], rate: u32, playhead: f64) {
    use egui_plot::{Line, Plot, PlotPoints, VLine};
    let per = (audio.len() / 600).max(1);
    let mut top = Vec::new();
    let mut bottom = Vec::new();
    for (i, (lo, hi)) in envelope(audio, per).into_iter().enumerate() {
        let t = (i * per) as f64 / rate.max(1) as f64;
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

/// The log-mel spectrogram as an image: time left to right, low bands at the bottom, the top
/// 80 dB of the segment mapped dark to bright.
pub fn spectrogram_image(mel: &crate::dsp::mel::LogMel) -> egui::ColorImage {
    let (w, h) = (mel.n_frames.max(1), mel.n_mels.max(1));
    let max = mel.data.iter().copied().fold(f32::MIN, f32::max);
    let floor = max - 8.0; // log10 power: 8 decades = 80 dB
    let mut pixels = vec![egui::Color32::BLACK; w * h];
    for t in 0..mel.n_frames {
        for (m, v) in mel.frame(t).iter().enumerate() {
            let x = ((v - floor) / 8.0).clamp(0.0, 1.0);
            pixels[(h - 1 - m) * w + t] = heat(x);
        }
    }
    egui::ColorImage::new([w, h], pixels)
}

/// Dark blue → magenta → orange → pale yellow.
fn heat(x: f32) -> egui::Color32 {
    const STOPS: [(f32, [f32; 3]); 4] = [
        (0.0, [10.0, 10.0, 40.0]),
        (0.4, [140.0, 30.0, 120.0]),
        (0.75, [240.0, 120.0, 40.0]),
        (1.0, [255.0, 250.0, 190.0]),
    ];
    let i = STOPS.iter().rposition(|(p, _)| *p <= x).unwrap_or(0).min(2);
    let ((p0, c0), (p1, c1)) = (STOPS[i], STOPS[i + 1]);
    let f = ((x - p0) / (p1 - p0)).clamp(0.0, 1.0);
    let c = |k: usize| (c0[k] + (c1[k] - c0[k]) * f) as u8;
    egui::Color32::from_rgb(c(0), c(1), c(2))
}

/// What a system file dialog asks for.
#[derive(Debug, Clone, Copy)]
pub enum DialogKind {
    /// A folder.
    Folder,
    /// An existing file, filtered to `extensions` (shown as `filter`).
    Open {
        filter: &'static str,
        extensions: &'static [&'static str],
    },
    /// A file to write, suggesting `file_name`.
    Save {
        filter: &'static str,
        extensions: &'static [&'static str],
        file_name: &'static str,
    },
}

impl DialogKind {
    /// Shows the system dialog and waits for the answer (`None`: cancelled).
    fn ask(self) -> Option<PathBuf> {
        let d = rfd::FileDialog::new();
        match self {
            DialogKind::Folder => d.pick_folder(),
            DialogKind::Open { filter, extensions } => d.add_filter(filter, extensions).pick_file(),
            DialogKind::Save {
                filter,
                extensions,
                file_name,
            } => d
                .add_filter(filter, extensions)
                .set_file_name(file_name)
                .save_file(),
        }
    }
}

/// One system file dialog at a time per panel, answered on a helper thread (the dialogs block
/// until the user answers) and polled each frame. `P` says what the answer is for.
///
/// The helper thread is not joined on drop: a system dialog cannot be closed from here, and
/// joining would hold the studio's exit until the user answered it.
pub struct FileDialog<P> {
    pending: Option<(P, Receiver<Option<PathBuf>>)>,
}

impl<P> Default for FileDialog<P> {
    fn default() -> Self {
        Self { pending: None }
    }
}

impl<P: Copy + Send + 'static> FileDialog<P> {
    /// Is a dialog waiting for the user?
    pub fn is_open(&self) -> bool {
        self.pending.is_some()
    }

    /// Opens the system dialog `kind` for `purpose`; false when one is already open.
    pub fn open(&mut self, purpose: P, kind: DialogKind) -> bool {
        self.open_with(purpose, move || kind.ask())
    }

    /// Runs `ask` (something that blocks until a path or nothing is chosen) on a helper thread
    /// for `purpose`; false when a dialog is already open or no thread could start.
    pub fn open_with(
        &mut self,
        purpose: P,
        ask: impl FnOnce() -> Option<PathBuf> + Send + 'static,
    ) -> bool {
        if self.pending.is_some() {
            return false;
        }
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("tunelab-file-dialog".into())
            .spawn(move || {
                let _ = tx.send(ask());
            });
        if spawned.is_err() {
            return false;
        }
        self.pending = Some((purpose, rx));
        true
    }

    /// The path chosen, once the user has answered (`None` while open, or when cancelled).
    pub fn poll(&mut self) -> Option<(P, PathBuf)> {
        let (purpose, rx) = self.pending.as_ref()?;
        let purpose = *purpose;
        match rx.try_recv() {
            Ok(choice) => {
                self.pending = None;
                choice.map(|p| (purpose, p))
            }
            Err(TryRecvError::Disconnected) => {
                self.pending = None;
                None
            }
            Err(TryRecvError::Empty) => None,
        }
    }
}

/// A file dropped by a test (the windowing integration makes these in the studio).
#[cfg(test)]
#[derive(Debug)]
pub struct Dropped(pub PathBuf);

#[cfg(test)]
impl egui::DroppedFile for Dropped {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Polls until the dialog closes (bounded); what it answered.
    fn answer<P: Copy + Send + 'static>(d: &mut FileDialog<P>) -> Option<(P, PathBuf)> {
        let start = Instant::now();
        while d.is_open() && start.elapsed() < Duration::from_secs(10) {
            if let Some(a) = d.poll() {
                return Some(a);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    #[test]
    fn a_dialog_answers_once_for_its_purpose_and_one_opens_at_a_time() {
        let mut d = FileDialog::default();
        let (go, wait) = mpsc::channel::<()>();
        assert!(d.open_with("prime", move || {
            let _ = wait.recv();
            Some(PathBuf::from("/music/prime.mid"))
        }));
        assert!(d.is_open());
        assert!(
            !d.open_with("model", || Some(PathBuf::from("/elsewhere"))),
            "a second dialog waits for the first"
        );
        assert_eq!(d.poll(), None, "nothing chosen yet");
        go.send(()).unwrap();
        assert_eq!(
            answer(&mut d),
            Some(("prime", PathBuf::from("/music/prime.mid")))
        );
        assert!(!d.is_open());
        assert_eq!(d.poll(), None, "answered once");
        // Cancelled: the dialog closes with no path.
        assert!(d.open_with("model", || None));
        assert_eq!(answer(&mut d), None);
        assert!(!d.is_open());
    }
}
