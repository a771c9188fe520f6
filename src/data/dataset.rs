//! Importing a folder of audio into a dataset: decode every file (any format, rate, channels)
//! to 32 kHz mono, cut segments (default 30 s; a short file is one short segment; a longer
//! file's tail is kept if ≥ `min_segment_ratio` of a segment, as audiocraft), read metadata
//! from an audiocraft sidecar `.json` or a `.txt` caption (else the file name), assign
//! train/valid/test **by track** deterministically, and write an audiocraft-compatible
//! `data.jsonl` plus tunelab's `segments.jsonl` and an import report. Bad files are reported
//! with the reason; the rest imports.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::audio;
use crate::error::{Error, Result};
use crate::util::atomic_write;

pub const SAMPLE_RATE: u32 = 32_000;
const AUDIO_EXTENSIONS: [&str; 6] = ["wav", "flac", "mp3", "ogg", "oga", "wave"];

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

fn read_sidecar(json: &Path) -> Result<(Info, Option<PathBuf>)> {
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

/// Imports every audio file under `src` into the dataset folder `out`.
///
/// `src` may also be an audiocraft manifest (`data.jsonl`, optionally gzipped is not supported):
/// its entries' audio files are imported (paths relative to the manifest's folder), with
/// metadata from each entry's `info_path` or the audio's `.json` sidecar. Entries whose audio is
/// missing or unreadable are reported like any bad file.
pub fn import_dir(src: &Path, out: &Path, opts: &ImportOptions) -> Result<ImportReport> {
    let mut report = ImportReport::default();
    let (root, mut files, info_paths) = if src.is_file() {
        let (files, infos, bad) = read_manifest(src)?;
        report.failed.extend(bad);
        let root = src.parent().map(Path::to_path_buf).unwrap_or_default();
        (root, files, infos)
    } else if src.is_dir() {
        let files: Vec<PathBuf> = walkdir::WalkDir::new(src)
            .follow_links(true)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .map(|e| e.into_path())
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            })
            .collect();
        if files.is_empty() && crate::data::midi_dataset::has_midi(src) {
            return crate::data::midi_dataset::import_midi_dir(src, out, opts);
        }
        (src.to_path_buf(), files, Default::default())
    } else {
        return Err(Error::MissingFile {
            path: src.into(),
            what: "folder of audio (or data.jsonl manifest) to import".into(),
        });
    };
    let src = root.as_path();
    files.sort();
    let mut metas = Vec::new();
    let mut segments = Vec::new();
    for path in files {
        match import_file(
            src,
            out,
            &path,
            info_paths.get(&path).map(PathBuf::as_path),
            opts,
        ) {
            Ok((meta, segs)) => {
                report.seconds += meta.duration;
                report.segments += segs.len();
                report.imported.push(path);
                metas.push(meta);
                segments.extend(segs);
            }
            Err(e) => report.failed.push((path, e.to_string())),
        }
    }
    let jsonl = |items: Vec<String>| items.join("\n") + if items.is_empty() { "" } else { "\n" };
    let data = metas
        .iter()
        .map(serde_json::to_string)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::InvalidRequest(e.to_string()))?;
    atomic_write(&out.join("data.jsonl"), jsonl(data).as_bytes())?;
    let segs = segments
        .iter()
        .map(serde_json::to_string)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::InvalidRequest(e.to_string()))?;
    atomic_write(&out.join("segments.jsonl"), jsonl(segs).as_bytes())?;
    let rep =
        serde_json::to_vec_pretty(&report).map_err(|e| Error::InvalidRequest(e.to_string()))?;
    atomic_write(&out.join("import_report.json"), &rep)?;
    Ok(report)
}

/// Audio files and info paths of an audiocraft `data.jsonl`, and the lines that failed.
#[allow(clippy::type_complexity)]
fn read_manifest(
    manifest: &Path,
) -> Result<(
    Vec<PathBuf>,
    std::collections::HashMap<PathBuf, PathBuf>,
    Vec<(PathBuf, String)>,
)> {
    let text = std::fs::read_to_string(manifest).map_err(|e| Error::io(manifest, e))?;
    let base = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut files = Vec::new();
    let mut infos = std::collections::HashMap::new();
    let mut bad = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match serde_json::from_str::<AudioMeta>(line) {
            Ok(m) => {
                let p = if m.path.is_absolute() {
                    m.path
                } else {
                    base.join(m.path)
                };
                if let Some(ip) = m.info_path {
                    let ip = if ip.is_absolute() { ip } else { base.join(ip) };
                    infos.insert(p.clone(), ip);
                }
                files.push(p);
            }
            Err(e) => bad.push((
                manifest.to_path_buf(),
                format!("line {}: not an audiocraft entry: {e}", i + 1),
            )),
        }
    }
    Ok((files, infos, bad))
}

fn import_file(
    src: &Path,
    out: &Path,
    path: &Path,
    info_path: Option<&Path>,
    opts: &ImportOptions,
) -> Result<(AudioMeta, Vec<Segment>)> {
    let (mut info, _) = match info_path {
        Some(p) if p.is_file() => read_sidecar(p)?,
        _ => read_info(path)?,
    };
    let samples = audio::load_mono(path, SAMPLE_RATE)?;
    let duration = samples.len() as f64 / SAMPLE_RATE as f64;
    if duration < 0.1 {
        return Err(Error::Audio {
            path: path.into(),
            problem: format!("too short ({duration:.3} s)"),
        });
    }
    let rel = path
        .strip_prefix(src)
        .unwrap_or(path)
        .to_string_lossy()
        .to_string();
    if opts.auto_label {
        info.fill_estimates(&samples, SAMPLE_RATE);
    }
    // audiocraft reads metadata from a sidecar beside `info_path`; the dataset keeps its own
    // (the user's files are never modified).
    let info_path = out.join("info").join(format!("{rel}.json"));
    let info_json =
        serde_json::to_vec_pretty(&info).map_err(|e| Error::InvalidRequest(e.to_string()))?;
    atomic_write(&info_path, &info_json)?;
    let info_path = Some(info_path);
    let split = split_for(&rel, opts);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().replace(['_', '-'], " "))
        .unwrap_or_default();
    let caption = info.caption(&stem);
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let segments = segment_bounds(duration, opts)
        .into_iter()
        .enumerate()
        .map(|(i, (start, dur))| Segment {
            id: format!("{rel}#{i}"),
            path: abs.clone(),
            start,
            duration: dur,
            split,
            caption: caption.clone(),
            info: info.clone(),
        })
        .collect();
    let amplitude = samples.iter().fold(0f32, |m, s| m.max(s.abs())) as f64;
    let meta = AudioMeta {
        path: abs,
        duration,
        sample_rate: SAMPLE_RATE,
        amplitude: Some(amplitude),
        weight: None,
        info_path,
    };
    Ok((meta, segments))
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

    #[test]
    fn import_reports_bad_files_and_keeps_the_rest() {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let tone: Vec<f32> = (0..44_100).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        audio::write_wav(&src.path().join("good.wav"), &tone, 44_100).unwrap();
        std::fs::write(
            src.path().join("good.json"),
            r#"{"title": "Good", "genre": "ambient", "bpm": 90}"#,
        )
        .unwrap();
        audio::write_wav(&src.path().join("other.wav"), &tone, 22_050).unwrap();
        std::fs::write(src.path().join("other.txt"), "a soft drone").unwrap();
        std::fs::write(src.path().join("broken.mp3"), b"not audio").unwrap();
        std::fs::write(src.path().join("empty.wav"), b"").unwrap();
        audio::write_wav(&src.path().join("badmeta.wav"), &tone, 44_100).unwrap();
        std::fs::write(src.path().join("badmeta.json"), "{ nope").unwrap();
        let r = import_dir(src.path(), out.path(), &ImportOptions::default()).unwrap();
        assert_eq!(r.imported.len(), 2, "{r:?}");
        assert_eq!(r.failed.len(), 3, "{r:?}");
        assert!(r
            .failed
            .iter()
            .any(|(p, e)| p.ends_with("badmeta.wav") && e.contains("badmeta.json")));
        assert!(r.failed.iter().any(|(p, _)| p.ends_with("broken.mp3")));
        let data = std::fs::read_to_string(out.path().join("data.jsonl")).unwrap();
        let metas: Vec<AudioMeta> = data
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(metas.len(), 2);
        assert!(metas.iter().all(|m| m.sample_rate == 32_000));
        // 44 100 samples at 44.1 kHz and at 22.05 kHz.
        let mut durations: Vec<f64> = metas.iter().map(|m| m.duration).collect();
        durations.sort_by(f64::total_cmp);
        assert!(
            (durations[0] - 1.0).abs() < 0.01 && (durations[1] - 2.0).abs() < 0.01,
            "{durations:?}"
        );
        let segs: Vec<Segment> = std::fs::read_to_string(out.path().join("segments.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let captions: Vec<&str> = segs.iter().map(|s| s.caption.as_str()).collect();
        // The sidecar gave the bpm; the key was estimated from the audio and marked so.
        let good = segs
            .iter()
            .find(|s| s.caption.starts_with("ambient"))
            .unwrap();
        assert!(good.caption.ends_with("90 bpm"), "{captions:?}");
        assert_eq!(good.info.estimated, vec!["key".to_string()]);
        assert!(good.info.key.is_some());
        assert!(captions.contains(&"a soft drone"), "{captions:?}");
        // audiocraft-compatible sidecars live in the dataset, with the estimates.
        let meta = metas.iter().find(|m| m.duration < 1.5).unwrap();
        let sidecar: Info = serde_json::from_str(
            &std::fs::read_to_string(meta.info_path.as_ref().unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(sidecar.bpm, Some(90.0));
        assert_eq!(sidecar.key, good.info.key);
        assert!(out.path().join("import_report.json").is_file());
        // The manifest imports again (audiocraft's data.jsonl as the source), with the same
        // segments and metadata; a missing entry is reported.
        let mut manifest = std::fs::read_to_string(out.path().join("data.jsonl")).unwrap();
        manifest.push_str("{\"path\": \"gone.wav\", \"duration\": 1.0, \"sample_rate\": 32000}\n");
        manifest.push_str("not json\n");
        let m = src.path().join("data.jsonl");
        std::fs::write(&m, manifest).unwrap();
        let again = tempfile::tempdir().unwrap();
        let r2 = import_dir(&m, again.path(), &ImportOptions::default()).unwrap();
        assert_eq!(r2.imported.len(), 2, "{r2:?}");
        assert_eq!(r2.segments, r.segments);
        assert!(r2.failed.iter().any(|(p, _)| p.ends_with("gone.wav")));
        assert!(r2.failed.iter().any(|(_, e)| e.contains("line 4")));
        let segs2 = std::fs::read_to_string(again.path().join("segments.jsonl")).unwrap();
        assert!(segs2.contains("90 bpm") && segs2.contains("a soft drone"));
        let e = import_dir(
            &src.path().join("nope"),
            out.path(),
            &ImportOptions::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("nope"));
    }
}
