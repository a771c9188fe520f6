//! Waveform thumbnails of the library's clips: each clip file is decoded once, on one named
//! helper thread, into a min/max envelope of [`COLUMNS`] columns and its length; the panel asks
//! only for the rows it shows and polls the answers each frame. A clip just generated gets its
//! thumbnail from its samples at once (its file may not be written yet).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

/// Columns of an envelope.
pub const COLUMNS: usize = 96;

/// A clip's picture and length.
#[derive(Debug, Clone, PartialEq)]
pub struct Thumb {
    /// (min, max) per column, in [-1, 1].
    pub peaks: Vec<(f32, f32)>,
    pub seconds: f64,
}

impl Thumb {
    /// The envelope of `samples` (mono, `rate` Hz).
    pub fn of(samples: &[f32], rate: u32) -> Self {
        let peaks = crate::ui::common::envelope(samples, samples.len().div_ceil(COLUMNS))
            .into_iter()
            .map(|(lo, hi)| (lo.clamp(-1.0, 1.0), hi.clamp(-1.0, 1.0)))
            .collect();
        Self {
            peaks,
            seconds: samples.len() as f64 / rate.max(1) as f64,
        }
    }

    /// Decodes `file` (any format the importer reads) into its thumbnail.
    pub fn read(file: &Path) -> Result<Self, String> {
        let d = crate::data::audio::decode_file(file).map_err(|e| e.to_string())?;
        let mono = crate::data::audio::to_mono(&d.samples, d.channels);
        Ok(Self::of(&mono, d.sample_rate))
    }
}

/// What is known of a clip's thumbnail.
#[derive(Debug, Clone, PartialEq)]
pub enum ThumbState {
    Pending,
    Ready(Thumb),
    /// The file could not be read (the message names it).
    Failed(String),
}

/// Thumbnails by file, made on a helper thread that starts with the first request and ends
/// when this is dropped (after the file it is decoding).
#[derive(Default)]
pub struct Thumbs {
    known: HashMap<PathBuf, ThumbState>,
    queue: Option<Sender<PathBuf>>,
    answers: Option<Receiver<(PathBuf, Result<Thumb, String>)>>,
    thread: Option<JoinHandle<()>>,
}

impl Thumbs {
    /// `file`'s thumbnail as known now; asks for it the first time.
    pub fn get(&mut self, file: &Path) -> ThumbState {
        if let Some(s) = self.known.get(file) {
            return s.clone();
        }
        let state = match self.ask(file) {
            Ok(()) => ThumbState::Pending,
            Err(e) => ThumbState::Failed(e),
        };
        self.known.insert(file.to_path_buf(), state.clone());
        state
    }

    /// `file`'s thumbnail from samples already in memory.
    pub fn insert(&mut self, file: &Path, thumb: Thumb) {
        self.known
            .insert(file.to_path_buf(), ThumbState::Ready(thumb));
    }

    /// Takes the answers of the helper thread; true when any came.
    pub fn poll(&mut self) -> bool {
        let Some(rx) = &self.answers else {
            return false;
        };
        let mut any = false;
        for (file, r) in rx.try_iter() {
            let state = match r {
                Ok(t) => ThumbState::Ready(t),
                Err(e) => ThumbState::Failed(e),
            };
            // A thumbnail made from samples meanwhile is kept.
            if !matches!(self.known.get(&file), Some(ThumbState::Ready(_))) {
                self.known.insert(file, state);
            }
            any = true;
        }
        any
    }

    /// Is any thumbnail still being made?
    pub fn waiting(&self) -> bool {
        self.known.values().any(|s| *s == ThumbState::Pending)
    }

    fn ask(&mut self, file: &Path) -> Result<(), String> {
        if self.queue.is_none() {
            let (tx, rx) = mpsc::channel::<PathBuf>();
            let (atx, arx) = mpsc::channel();
            let thread = std::thread::Builder::new()
                .name("tunelab-thumbnails".into())
                .spawn(move || {
                    for f in rx {
                        let r = Thumb::read(&f);
                        if atx.send((f, r)).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| format!("could not start the thumbnail thread: {e}"))?;
            self.queue = Some(tx);
            self.answers = Some(arx);
            self.thread = Some(thread);
        }
        self.queue
            .as_ref()
            .ok_or_else(|| "the thumbnail thread has stopped".to_string())?
            .send(file.to_path_buf())
            .map_err(|_| "the thumbnail thread has stopped".to_string())
    }
}

impl Drop for Thumbs {
    /// Closes the queue and waits for the file being decoded (the thread then ends).
    fn drop(&mut self) {
        self.queue = None;
        self.answers = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn an_envelope_has_its_columns_and_length_and_ignores_non_finite_samples() {
        let mut x: Vec<f32> = (0..32_000).map(|n| 0.5 * (n as f32 * 0.1).sin()).collect();
        x[10] = f32::NAN;
        x[20] = 7.0;
        let t = Thumb::of(&x, 16_000);
        assert_eq!(t.peaks.len(), COLUMNS);
        assert!((t.seconds - 2.0).abs() < 1e-9);
        assert_eq!(t.peaks[0].1, 1.0, "clamped to full scale");
        assert!(t
            .peaks
            .iter()
            .all(|(lo, hi)| lo.is_finite() && hi.is_finite()));
        assert!(t.peaks[50].0 < -0.4 && t.peaks[50].1 > 0.4);
        assert!(Thumb::of(&[], 16_000).peaks.is_empty());
    }

    #[test]
    fn files_are_read_on_the_helper_thread_and_a_bad_one_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.wav");
        crate::data::audio::write_wav(&good, &vec![0.25; 8_000], 8_000).unwrap();
        let bad = dir.path().join("bad.wav");
        std::fs::write(&bad, b"not audio").unwrap();
        let mut t = Thumbs::default();
        assert_eq!(t.get(&good), ThumbState::Pending);
        assert_eq!(t.get(&bad), ThumbState::Pending);
        let start = Instant::now();
        while t.waiting() && start.elapsed() < Duration::from_secs(20) {
            t.poll();
            std::thread::sleep(Duration::from_millis(5));
        }
        match t.get(&good) {
            ThumbState::Ready(th) => assert!((th.seconds - 1.0).abs() < 1e-6),
            other => panic!("{other:?}"),
        }
        match t.get(&bad) {
            ThumbState::Failed(e) => assert!(e.contains("bad.wav"), "{e}"),
            other => panic!("{other:?}"),
        }
        // Samples in memory stand for a file not yet written.
        let fresh = dir.path().join("fresh.wav");
        t.insert(&fresh, Thumb::of(&[0.5; 100], 100));
        assert!(matches!(t.get(&fresh), ThumbState::Ready(_)));
    }
}
