//! EnCodec codes of every dataset segment, cached on disk under `cache/<key>.json` where the key
//! hashes the segment's decoded samples and the codec's identity (its config and codebooks). An
//! unchanged segment is never encoded twice; a changed file or another codec encodes again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::audio;
use crate::data::dataset::{read_jsonl, read_segments, segment_slice, Info, Split, SAMPLE_RATE};
use crate::error::{Error, Result};
use crate::models::musicgen::MusicGen;
use crate::util::atomic_write;

/// Identity of the codec: its configuration and codebook values.
pub fn codec_fingerprint(model: &MusicGen) -> Result<String> {
    let mut h = Sha256::new();
    let cfg = serde_json::to_vec(&model.config.audio_encoder)
        .map_err(|e| Error::InvalidRequest(e.to_string()))?;
    h.update(&cfg);
    // A short probe through the codec depends on every encoder weight and the codebooks.
    let probe: Vec<f32> = (0..2 * model.config.audio_encoder.hop_length())
        .map(|i| ((i as f32) * 0.0137).sin() * 0.5)
        .collect();
    let codes = model.encode_audio(&probe)?;
    for c in codes.iter().flatten() {
        h.update(c.to_le_bytes());
    }
    Ok(format!("{:x}", h.finalize()))
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheReport {
    pub encoded: usize,
    pub cached: usize,
    pub failed: Vec<(String, String)>,
}

/// One encoded segment, as the trainer reads it (`cache/index-<codec>.jsonl`, rewritten after
/// every encoding pass so it always matches the dataset's current segments).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub segment: String,
    pub split: Split,
    pub caption: String,
    pub info: Info,
    /// Cache file name under `cache/`.
    pub file: String,
    pub frames: usize,
}

/// Where the index of a codec's cache lives.
pub fn index_path(dataset: &Path, fingerprint: &str) -> PathBuf {
    let short: String = fingerprint.chars().take(16).collect();
    dataset.join("cache").join(format!("index-{short}.jsonl"))
}

/// Reads the index written by [`encode_dataset`] for this codec.
pub fn read_index(dataset: &Path, fingerprint: &str) -> Result<Vec<IndexEntry>> {
    read_jsonl(&index_path(dataset, fingerprint))
}

/// Codes `[K][T]` of an index entry.
pub fn read_codes(dataset: &Path, entry: &IndexEntry) -> Result<Vec<Vec<u32>>> {
    let p = dataset.join("cache").join(&entry.file);
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
    let e: Entry = serde_json::from_str(&text)
        .map_err(|e| Error::bad_file(&p, format!("corrupt cache entry: {e}")))?;
    Ok(e.codes)
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    segment: String,
    codes: Vec<Vec<u32>>,
}

/// The cache file of a segment's samples under a codec.
pub fn cache_path(dataset: &Path, samples: &[f32], fingerprint: &str) -> PathBuf {
    let mut h = Sha256::new();
    h.update(fingerprint.as_bytes());
    for s in samples {
        h.update(s.to_le_bytes());
    }
    dataset
        .join("cache")
        .join(format!("{:x}.json", h.finalize()))
}

/// Encodes every segment of the dataset that has no cache entry yet.
pub fn encode_dataset(dataset: &Path, model: &MusicGen) -> Result<CacheReport> {
    let fingerprint = codec_fingerprint(model)?;
    let mut report = CacheReport::default();
    let mut index = Vec::new();
    let mut current: Option<(PathBuf, Vec<f32>)> = None;
    for seg in read_segments(dataset)? {
        if current
            .as_ref()
            .map(|(p, _)| p != &seg.path)
            .unwrap_or(true)
        {
            match audio::load_mono(&seg.path, SAMPLE_RATE) {
                Ok(s) => current = Some((seg.path.clone(), s)),
                Err(e) => {
                    report.failed.push((seg.id.clone(), e.to_string()));
                    current = None;
                    continue;
                }
            }
        }
        let Some((_, samples)) = &current else {
            continue;
        };
        let piece = segment_slice(samples, &seg);
        let path = cache_path(dataset, piece, &fingerprint);
        let frames = if path.is_file() {
            report.cached += 1;
            cached_frames(&path)?
        } else {
            let codes = model.encode_audio(piece)?;
            let frames = codes.first().map(|c| c.len()).unwrap_or(0);
            let entry = Entry {
                segment: seg.id.clone(),
                codes,
            };
            let bytes =
                serde_json::to_vec(&entry).map_err(|e| Error::InvalidRequest(e.to_string()))?;
            atomic_write(&path, &bytes)?;
            report.encoded += 1;
            frames
        };
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        index.push(IndexEntry {
            segment: seg.id.clone(),
            split: seg.split,
            caption: seg.caption.clone(),
            info: seg.info.clone(),
            file,
            frames,
        });
    }
    let lines = index
        .iter()
        .map(serde_json::to_string)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::InvalidRequest(e.to_string()))?;
    let mut text = lines.join("\n");
    text.push('\n');
    atomic_write(&index_path(dataset, &fingerprint), text.as_bytes())?;
    Ok(report)
}

fn cached_frames(p: &Path) -> Result<usize> {
    let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
    let e: Entry = serde_json::from_str(&text)
        .map_err(|e| Error::bad_file(p, format!("corrupt cache entry: {e}")))?;
    Ok(e.codes.first().map(|c| c.len()).unwrap_or(0))
}
