//! MIDI datasets, in the same shape as audio ones so the browser, splits and metadata work
//! alike: `segments.jsonl` (one entry per piece, `start` 0, its duration, split by file,
//! caption and metadata), `events.jsonl` (each piece as Music Transformer events) and
//! `import_report.json` (bad files with the reason). Metadata comes from a sidecar `.json`
//! beside the `.mid` (audiocraft fields, plus `composer`, `meter`, `tempo_bpm`), completed
//! from the MIDI file itself (track name, tempo, time and key signature, programs).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::dataset::{read_info, split_for, ImportOptions, ImportReport, Segment, Split};
use crate::data::midi::{encode, read_midi, MidiInfo};
use crate::error::{Error, Result};
use crate::util::atomic_write;

const MIDI_EXTENSIONS: [&str; 3] = ["mid", "midi", "smf"];

/// One piece as the trainer reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetPiece {
    pub id: String,
    pub split: Split,
    pub events: Vec<u32>,
}

fn is_midi(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| MIDI_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn midi_files(src: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(src)
        .follow_links(true)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .filter(|p| is_midi(p))
        .collect();
    files.sort();
    files
}

/// Does the folder hold MIDI files?
pub fn has_midi(src: &Path) -> bool {
    !midi_files(src).is_empty()
}

/// Is `dataset` a MIDI dataset (made by [`import_midi_dir`])?
pub fn is_midi_dataset(dataset: &Path) -> bool {
    dataset.join("events.jsonl").is_file()
}

/// Imports every MIDI file under `src` into the dataset folder `out` (pieces are not cut: the
/// trainer crops windows of events). Split by file path, as audio tracks.
pub fn import_midi_dir(src: &Path, out: &Path, opts: &ImportOptions) -> Result<ImportReport> {
    let mut report = ImportReport::default();
    let mut segments = Vec::new();
    let mut pieces = Vec::new();
    for path in midi_files(src) {
        match import_file(src, &path, opts) {
            Ok((seg, piece)) => {
                report.seconds += seg.duration;
                report.segments += 1;
                report.imported.push(path);
                segments.push(seg);
                pieces.push(piece);
            }
            Err(e) => report.failed.push((path, e.to_string())),
        }
    }
    write_jsonl(&out.join("segments.jsonl"), &segments)?;
    write_jsonl(&out.join("events.jsonl"), &pieces)?;
    let rep =
        serde_json::to_vec_pretty(&report).map_err(|e| Error::InvalidRequest(e.to_string()))?;
    atomic_write(&out.join("import_report.json"), &rep)?;
    Ok(report)
}

fn write_jsonl<T: Serialize>(path: &Path, items: &[T]) -> Result<()> {
    let mut text = String::new();
    for item in items {
        text.push_str(
            &serde_json::to_string(item).map_err(|e| Error::InvalidRequest(e.to_string()))?,
        );
        text.push('\n');
    }
    atomic_write(path, text.as_bytes())
}

fn import_file(src: &Path, path: &Path, opts: &ImportOptions) -> Result<(Segment, DatasetPiece)> {
    let (notes, midi) = read_midi(path)?;
    let (mut info, sidecar) = read_info(path)?;
    if let Some(json) = sidecar {
        // Fields of our demo sidecars that audiocraft's schema has no slot for.
        let text = std::fs::read_to_string(&json).map_err(|e| Error::io(&json, e))?;
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            if info.artist.is_none() {
                info.artist = v.get("composer").and_then(|c| c.as_str()).map(String::from);
            }
            if info.bpm.is_none() {
                info.bpm = v.get("tempo_bpm").and_then(|c| c.as_f64());
            }
        }
    }
    complete_info(&mut info, &midi);
    let rel = path
        .strip_prefix(src)
        .unwrap_or(path)
        .to_string_lossy()
        .to_string();
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().replace(['_', '-'], " "))
        .unwrap_or_default();
    let split = split_for(&rel, opts);
    let events = encode(&notes);
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let seg = Segment {
        id: rel.clone(),
        path: abs,
        start: 0.0,
        duration: midi.duration,
        split,
        caption: info.caption(&stem),
        info,
    };
    Ok((
        seg,
        DatasetPiece {
            id: rel,
            split,
            events,
        },
    ))
}

/// Fills what the sidecar left empty from the MIDI file.
fn complete_info(info: &mut crate::data::dataset::Info, midi: &MidiInfo) {
    if info.title.is_none() {
        info.title = midi.title.clone();
    }
    if info.artist.is_none() {
        info.artist = midi.composer.clone();
    }
    if info.key.is_none() {
        info.key = midi.key.clone();
    }
    if info.bpm.is_none() {
        info.bpm = midi.tempo_bpm.map(|b| (b * 10.0).round() / 10.0);
    }
    if info.meter.is_none() {
        info.meter = midi.time_signature.clone();
    }
    if info.instrument.is_none() {
        info.instrument = Some(if midi.programs.iter().all(|&p| p < 8) {
            "piano".to_string()
        } else {
            let p: Vec<String> = midi.programs.iter().map(|p| format!("GM {p}")).collect();
            p.join(", ")
        });
    }
}

/// The pieces of a MIDI dataset.
pub fn read_pieces(dataset: &Path) -> Result<Vec<DatasetPiece>> {
    let path = dataset.join("events.jsonl");
    if !path.is_file() {
        return Err(Error::MissingFile {
            path,
            what: "MIDI events of the dataset (import a folder of .mid files)".into(),
        });
    }
    crate::data::dataset::read_jsonl(&path)
}
