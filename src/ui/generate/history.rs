//! The Generate panel's history: every clip is one line of `history.jsonl` in the clips folder
//! (what made it and with which model), read back when the studio starts. [`HistoryWriter`]
//! puts each finished clip's WAV and history line on disk on one named thread, in the order
//! the clips finished, so the UI thread never waits on the disk; dropping it finishes the
//! queued writes and joins the thread.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::generate::midi::MidiGenerateParams;
use crate::generate::GenerateParams;

/// What made a clip, in the family's own terms.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "family", rename_all = "lowercase")]
pub enum ClipParams {
    Musicgen {
        params: GenerateParams,
    },
    /// `params.prime` is left empty: the prime is `prime`'s first `prime_seconds`.
    Midi {
        params: MidiGenerateParams,
        prime: String,
        prime_seconds: f64,
    },
}

/// One generated clip: a line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HistoryEntry {
    /// The clip (WAV; a `.mid` when a piece could not be rendered).
    pub file: PathBuf,
    /// The model as it was loaded (spec) and its adapter.
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// The run's checkpoint, when the model is a run loaded at one (else its `last`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// Unix time in milliseconds.
    #[serde(default)]
    pub created: u64,
    pub clip: ClipParams,
}

impl HistoryEntry {
    /// One line for the list: the parameters that tell clips apart.
    pub fn summary(&self) -> String {
        let mut model = Path::new(&self.model)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| self.model.clone());
        if let Some(c) = &self.checkpoint {
            model = format!("{model} @ {c}");
        }
        let adapter = self
            .adapter
            .as_deref()
            .and_then(|a| Path::new(a).file_name())
            .map(|n| format!(" + {}", n.to_string_lossy()))
            .unwrap_or_default();
        match &self.clip {
            ClipParams::Musicgen { params: p } => format!(
                "seed {} · \"{}\" · {:.1} s · T {:.2} · top-k {} · top-p {:.2} · CFG {:.1}{} · {model}{adapter}",
                p.seed,
                p.prompt,
                p.duration,
                p.sampling.temperature,
                p.sampling.top_k,
                p.sampling.top_p,
                p.guidance_scale,
                p.prompt_audio
                    .as_ref()
                    .map(|a| format!(" · continues {}", a.display()))
                    .unwrap_or_default(),
            ),
            ClipParams::Midi {
                params: p,
                prime,
                prime_seconds,
            } => format!(
                "seed {} · {} · {:.0} s · T {:.2} · top-p {:.2} · {model}{adapter}",
                p.seed,
                if prime.is_empty() {
                    "improv".to_string()
                } else {
                    format!("{prime_seconds:.1} s of {prime}")
                },
                p.seconds.unwrap_or(0.0),
                p.sampling.temperature,
                p.sampling.top_p,
            ),
        }
    }
}

/// The history file of a clips folder.
pub fn history_path(clips_dir: &Path) -> PathBuf {
    clips_dir.join("history.jsonl")
}

/// The entries of a clips folder's history, oldest first (lines that do not parse are skipped:
/// a torn last line after a crash loses one entry, not the history).
pub fn read_history(clips_dir: &Path) -> Vec<HistoryEntry> {
    std::fs::read_to_string(history_path(clips_dir))
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A clip to put on disk: its samples (a MusicGen clip; `None` when the engine wrote the
/// file, as for a piece), then its history line.
struct Write {
    history: PathBuf,
    entry: HistoryEntry,
    wav: Option<(Arc<Vec<f32>>, u32)>,
}

impl Write {
    fn run(self) -> Written {
        if let Some((audio, rate)) = &self.wav {
            crate::data::audio::write_wav(&self.entry.file, audio, *rate)
                .map_err(|e| e.to_string())?;
        }
        let line = serde_json::to_string(&self.entry).map_err(|e| e.to_string())?;
        crate::util::append_line(&self.history, &line).map_err(|e| e.to_string())?;
        Ok(self.entry.file)
    }
}

/// A clip's file once written, or why it was not.
pub type Written = Result<PathBuf, String>;

/// Writes clips and their history lines off the UI thread, one after the other (so history
/// lines keep the clips' order). The thread starts with the first write.
pub struct HistoryWriter {
    queue: Option<Sender<Write>>,
    thread: Option<JoinHandle<()>>,
    results: (Sender<Written>, Receiver<Written>),
}

impl Default for HistoryWriter {
    fn default() -> Self {
        Self {
            queue: None,
            thread: None,
            results: mpsc::channel(),
        }
    }
}

impl HistoryWriter {
    /// Queues `entry`: its WAV from `wav` (if given), then its line in `history`.
    pub fn write(
        &mut self,
        history: PathBuf,
        entry: HistoryEntry,
        wav: Option<(Arc<Vec<f32>>, u32)>,
    ) -> Result<(), String> {
        if self.queue.is_none() {
            self.start()?;
        }
        let stopped = || "the clip writer has stopped".to_string();
        self.queue
            .as_ref()
            .ok_or_else(stopped)?
            .send(Write {
                history,
                entry,
                wav,
            })
            .map_err(|_| stopped())
    }

    fn start(&mut self) -> Result<(), String> {
        let (tx, rx) = mpsc::channel::<Write>();
        let results = self.results.0.clone();
        let thread = std::thread::Builder::new()
            .name("tunelab-clip-writer".into())
            .spawn(move || {
                for w in rx {
                    // The panel may be gone (the studio closing): the write still happened.
                    let _ = results.send(w.run());
                }
            })
            .map_err(|e| format!("could not start the clip writer: {e}"))?;
        self.thread = Some(thread);
        self.queue = Some(tx);
        Ok(())
    }

    /// What the writes finished since the last call gave: each clip's file, or why it was not
    /// written.
    pub fn poll(&mut self) -> Vec<Written> {
        self.results.1.try_iter().collect()
    }
}

impl Drop for HistoryWriter {
    /// Closes the queue, so the thread finishes the writes already queued and ends; waits
    /// for it (no clip of the session is lost when the studio closes).
    fn drop(&mut self) {
        self.queue = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(file: PathBuf, seed: u64) -> HistoryEntry {
        HistoryEntry {
            file,
            model: "m".into(),
            adapter: None,
            checkpoint: None,
            created: 1,
            clip: ClipParams::Musicgen {
                params: GenerateParams {
                    seed,
                    ..Default::default()
                },
            },
        }
    }

    #[test]
    fn dropping_the_writer_finishes_every_queued_write_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let history = history_path(dir.path());
        let mut w = HistoryWriter::default();
        for seed in 0..5 {
            let file = dir.path().join(format!("clip-{seed}.wav"));
            let wav = Some((Arc::new(vec![0.1; 800]), 8_000));
            w.write(history.clone(), entry(file, seed), wav).unwrap();
        }
        drop(w);
        let lines = read_history(dir.path());
        assert_eq!(lines.len(), 5, "every write done before the drop returned");
        for (seed, e) in lines.iter().enumerate() {
            assert_eq!(
                e,
                &entry(dir.path().join(format!("clip-{seed}.wav")), seed as u64)
            );
            assert!(e.file.is_file());
        }
    }

    #[test]
    fn a_failed_write_is_reported_and_the_next_one_still_happens() {
        let dir = tempfile::tempdir().unwrap();
        let history = history_path(dir.path());
        let mut w = HistoryWriter::default();
        // A WAV into a folder that is a file cannot be written.
        std::fs::write(dir.path().join("taken"), b"").unwrap();
        let bad = dir.path().join("taken/clip.wav");
        let good = dir.path().join("clip.wav");
        let wav = || Some((Arc::new(vec![0.0; 80]), 8_000));
        w.write(history.clone(), entry(bad.clone(), 1), wav())
            .unwrap();
        w.write(history.clone(), entry(good.clone(), 2), wav())
            .unwrap();
        let start = std::time::Instant::now();
        let mut results = Vec::new();
        while results.len() < 2 && start.elapsed() < std::time::Duration::from_secs(10) {
            results.extend(w.poll());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(results.len(), 2);
        assert!(results[0].is_err(), "{results:?}");
        assert_eq!(results[1], Ok(good));
        assert_eq!(
            read_history(dir.path()).len(),
            1,
            "only the written clip is listed"
        );
    }
}
