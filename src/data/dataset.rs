//! A dataset folder's format, shared by every reader: `data.jsonl` (audiocraft's manifest: one
//! entry per audio file), `segments.jsonl` (tunelab's segments with captions, metadata and
//! split), `info/` (each track's metadata sidecar) and `import_report.json`; the metadata of a
//! track, its caption, the deterministic train/valid/test split by track and audiocraft's
//! segment rule. Importing a folder into this format is `data::import`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub const SAMPLE_RATE: u32 = 32_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportOptions {
    pub segment_seconds: f64,
    pub min_segment_ratio: f64,
    /// Fractions for train / valid / test (the test share is what remains).
    pub train: f64,
    pub valid: f64,
    /// Estimate tempo and key where the metadata lacks them.
    pub auto_label: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            segment_seconds: 30.0,
            min_segment_ratio: 0.8,
            train: 0.8,
            valid: 0.1,
            auto_label: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Valid,
    Test,
}

/// Metadata fields of an audiocraft sidecar (all optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Info {
    pub title: Option<String>,
    pub artist: Option<String>,
    pub key: Option<String>,
    pub bpm: Option<f64>,
    pub genre: Option<String>,
    pub moods: Vec<String>,
    pub keywords: Option<serde_json::Value>,
    pub description: Option<String>,
    pub name: Option<String>,
    pub instrument: Option<String>,
    /// Time signature (`"3/4"`); MIDI datasets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meter: Option<String>,
    /// Fields tunelab estimated from the audio (`"bpm"`, `"key"`), not given by the user.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub estimated: Vec<String>,
}

impl Info {
    /// Fills `bpm` and `key` from the audio where the metadata lacks them, marking them estimated.
    pub fn fill_estimates(&mut self, samples: &[f32], rate: u32) {
        if self.bpm.is_some() && self.key.is_some() {
            return;
        }
        let labels = crate::data::labels::estimate(samples, rate);
        if self.bpm.is_none() {
            if let Some(t) = labels.tempo {
                self.bpm = Some((t.bpm * 10.0).round() / 10.0);
                self.estimated.push("bpm".into());
            }
        }
        if self.key.is_none() {
            if let Some(k) = labels.key {
                self.key = Some(k.name);
                self.estimated.push("key".into());
            }
        }
    }
}

impl Info {
    /// The training caption: the description if present, else a template from the fields.
    pub fn caption(&self, fallback: &str) -> String {
        if let Some(d) = self.description.as_deref().filter(|d| !d.trim().is_empty()) {
            return d.trim().to_string();
        }
        let mut parts = Vec::new();
        let mut style = self.moods.join(" ");
        if let Some(g) = &self.genre {
            style = format!("{style} {g}").trim().to_string();
        }
        if !style.is_empty() {
            parts.push(style);
        }
        if let Some(k) = &self.key {
            parts.push(k.clone());
        }
        if let Some(b) = self.bpm {
            parts.push(format!("{} bpm", b.round()));
        }
        if let Some(i) = &self.instrument {
            parts.push(i.clone());
        }
        if parts.is_empty() {
            self.title.clone().unwrap_or_else(|| fallback.to_string())
        } else {
            parts.join(", ")
        }
    }
}

/// One training segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub id: String,
    pub path: PathBuf,
    pub start: f64,
    pub duration: f64,
    pub split: Split,
    pub caption: String,
    pub info: Info,
}

/// One line of audiocraft's `data.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioMeta {
    pub path: PathBuf,
    pub duration: f64,
    pub sample_rate: u32,
    pub amplitude: Option<f64>,
    pub weight: Option<f64>,
    pub info_path: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    pub imported: Vec<PathBuf>,
    pub failed: Vec<(PathBuf, String)>,
    pub segments: usize,
    pub seconds: f64,
}

/// Deterministic split of a track from its path relative to the source folder.
pub fn split_for(track: &str, opts: &ImportOptions) -> Split {
    let h = Sha256::digest(track.as_bytes());
    let x = u64::from_le_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]) as f64
        / u64::MAX as f64;
    if x < opts.train {
        Split::Train
    } else if x < opts.train + opts.valid {
        Split::Valid
    } else {
        Split::Test
    }
}

/// Segment boundaries `(start, duration)` in seconds for a file of `total` seconds.
pub fn segment_bounds(total: f64, opts: &ImportOptions) -> Vec<(f64, f64)> {
    let seg = opts.segment_seconds;
    if total <= seg {
        return vec![(0.0, total)];
    }
    let mut out = Vec::new();
    let mut start = 0.0;
    while start < total {
        let len = (total - start).min(seg);
        if len >= seg || len >= opts.min_segment_ratio * seg {
            out.push((start, len));
        }
        start += seg;
    }
    out
}

pub(crate) fn read_sidecar(json: &Path) -> Result<(Info, Option<PathBuf>)> {
    let text = std::fs::read_to_string(json).map_err(|e| Error::io(json, e))?;
    let info: Info = serde_json::from_str(&text)
        .map_err(|e| Error::bad_file(json, format!("sidecar is not valid metadata JSON: {e}")))?;
    Ok((info, Some(json.to_path_buf())))
}

pub(crate) fn read_info(audio_path: &Path) -> Result<(Info, Option<PathBuf>)> {
    let json = audio_path.with_extension("json");
    if json.is_file() {
        return read_sidecar(&json);
    }
    let txt = audio_path.with_extension("txt");
    if txt.is_file() {
        let text = std::fs::read_to_string(&txt).map_err(|e| Error::io(&txt, e))?;
        let info = Info {
            description: Some(text.trim().to_string()),
            ..Default::default()
        };
        return Ok((info, None));
    }
    Ok((Info::default(), None))
}

/// One JSON value per non-empty line; a bad line is reported with the file and line number.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(p: &Path) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::bad_file(p, format!("line {}: {e}", i + 1)))
        })
        .collect()
}

/// The dataset's segments (`segments.jsonl`).
pub fn read_segments(dataset: &Path) -> Result<Vec<Segment>> {
    read_jsonl(&dataset.join("segments.jsonl"))
}

/// The samples of `seg` within its whole file's samples.
pub fn segment_slice<'a>(samples: &'a [f32], seg: &Segment) -> &'a [f32] {
    let a = ((seg.start * SAMPLE_RATE as f64) as usize).min(samples.len());
    let b = (a + (seg.duration * SAMPLE_RATE as f64) as usize).min(samples.len());
    &samples[a..b]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_follow_audiocrafts_tail_rule() {
        let o = ImportOptions {
            segment_seconds: 10.0,
            ..Default::default()
        };
        assert_eq!(segment_bounds(4.0, &o), vec![(0.0, 4.0)]);
        assert_eq!(segment_bounds(25.0, &o), vec![(0.0, 10.0), (10.0, 10.0)]); // 5 s tail < 8 s
        assert_eq!(
            segment_bounds(28.5, &o),
            vec![(0.0, 10.0), (10.0, 10.0), (20.0, 8.5)]
        );
    }

    #[test]
    fn captions_prefer_description_then_fields() {
        let i = Info {
            genre: Some("synth-pop".into()),
            moods: vec!["energetic".into()],
            key: Some("F# minor".into()),
            bpm: Some(188.0),
            instrument: Some("synthesizer and drums".into()),
            ..Default::default()
        };
        assert_eq!(
            i.caption("x"),
            "energetic synth-pop, F# minor, 188 bpm, synthesizer and drums"
        );
        let d = Info {
            description: Some(" calm piano ".into()),
            ..i
        };
        assert_eq!(d.caption("x"), "calm piano");
        assert_eq!(Info::default().caption("my song"), "my song");
    }

    #[test]
    fn splits_are_deterministic_and_roughly_proportional() {
        let o = ImportOptions::default();
        let names: Vec<String> = (0..1000).map(|i| format!("album/track{i}.wav")).collect();
        let a: Vec<Split> = names.iter().map(|n| split_for(n, &o)).collect();
        let b: Vec<Split> = names.iter().map(|n| split_for(n, &o)).collect();
        assert_eq!(a, b);
        let train = a.iter().filter(|s| **s == Split::Train).count();
        assert!((720..880).contains(&train), "{train}");
    }
}
