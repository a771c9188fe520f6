//! What the studio's dataset browser reads and writes, without any UI: a segment's samples with
//! their log-mel spectrogram (the metrics' front end, so what is shown is what is measured), a
//! MIDI piece's notes for a piano roll, and metadata edits saved at once to the dataset's own
//! sidecar and its manifest.

use std::path::Path;

use crate::data::dataset::{AudioMeta, Info, Segment, SAMPLE_RATE};
use crate::data::midi::Note;
use crate::dsp::mel::{log_mel_spectrogram, LogMel};
use crate::error::{Error, Result};
use crate::util::atomic_write;

/// A segment as the browser shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentAudio {
    /// Mono samples of the segment at [`SAMPLE_RATE`].
    pub samples: Vec<f32>,
    pub rate: u32,
    pub mel: LogMel,
}

/// Decodes `seg`'s file and cuts the segment out, with its log-mel spectrogram.
pub fn segment_audio(seg: &Segment) -> Result<SegmentAudio> {
    let all = crate::data::audio::load_mono(&seg.path, SAMPLE_RATE)?;
    let samples = crate::data::dataset::segment_slice(&all, seg).to_vec();
    let mel = log_mel_spectrogram(&samples, SAMPLE_RATE)?;
    Ok(SegmentAudio {
        samples,
        rate: SAMPLE_RATE,
        mel,
    })
}

/// The notes of piece `id` of a MIDI dataset (decoded from its `events.jsonl`).
pub fn piece_notes(dataset: &Path, id: &str) -> Result<Vec<Note>> {
    let pieces = crate::data::midi_dataset::read_pieces(dataset)?;
    let piece = pieces
        .iter()
        .find(|p| p.id == id)
        .ok_or_else(|| Error::InvalidRequest(format!("no piece {id} in {}", dataset.display())))?;
    Ok(crate::data::midi::decode(&piece.events))
}

/// Sets the metadata of the track segment `id` belongs to: every segment of that file gets
/// `info` and the caption it implies, in `segments.jsonl`; an audio dataset's own sidecar
/// (`info/<file>.json`, named by `data.jsonl`'s `info_path`) is rewritten too. The user's
/// source files are never modified. Writes are atomic. Returns the updated segments.
pub fn edit_info(dataset: &Path, id: &str, info: &Info) -> Result<Vec<Segment>> {
    let seg_path = dataset.join("segments.jsonl");
    let mut segments: Vec<Segment> = crate::data::dataset::read_jsonl(&seg_path)?;
    let track = segments
        .iter()
        .find(|s| s.id == id)
        .map(|s| s.path.clone())
        .ok_or_else(|| {
            Error::InvalidRequest(format!("no segment {id} in {}", dataset.display()))
        })?;
    let stem = track
        .file_stem()
        .map(|s| s.to_string_lossy().replace(['_', '-'], " "))
        .unwrap_or_default();
    let caption = info.caption(&stem);
    for s in segments.iter_mut().filter(|s| s.path == track) {
        s.info = info.clone();
        s.caption = caption.clone();
    }
    let manifest = dataset.join("data.jsonl");
    if manifest.is_file() {
        let metas: Vec<AudioMeta> = crate::data::dataset::read_jsonl(&manifest)?;
        if let Some(p) = metas
            .iter()
            .find(|m| m.path == track)
            .and_then(|m| m.info_path.as_ref())
        {
            let json = serde_json::to_vec_pretty(info)
                .map_err(|e| Error::InvalidRequest(e.to_string()))?;
            atomic_write(p, &json)?;
        }
    }
    let mut text = String::new();
    for s in &segments {
        text.push_str(&serde_json::to_string(s).map_err(|e| Error::InvalidRequest(e.to_string()))?);
        text.push('\n');
    }
    atomic_write(&seg_path, text.as_bytes())?;
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::ImportOptions;
    use crate::data::import::import_dir;

    #[test]
    fn a_segment_decodes_with_its_spectrogram_and_edits_reach_sidecar_and_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        // 2.5 s of 440 Hz: segments of 1 s, the tail kept.
        let tone: Vec<f32> = (0..80_000)
            .map(|i| 0.4 * (i as f32 * 440.0 * std::f32::consts::TAU / 32_000.0).sin())
            .collect();
        crate::data::audio::write_wav(&src.join("tone.wav"), &tone, 32_000).unwrap();
        let ds = dir.path().join("ds");
        let opts = ImportOptions {
            segment_seconds: 1.0,
            auto_label: false,
            ..Default::default()
        };
        import_dir(&src, &ds, &opts).unwrap();
        let segs = crate::data::dataset::read_segments(&ds).unwrap();
        assert_eq!(segs.len(), 2);
        let a = segment_audio(&segs[1]).unwrap();
        assert_eq!(a.samples.len(), (segs[1].duration * 32_000.0) as usize);
        assert_eq!(a.mel.n_mels, 64);
        assert!(a.mel.n_frames > 50);
        // The loudest band of a frame sits where 440 Hz falls, not at the edges.
        let f = a.mel.frame(a.mel.n_frames / 2);
        let peak = (0..f.len()).max_by(|&x, &y| f[x].total_cmp(&f[y])).unwrap();
        assert!((5..30).contains(&peak), "peak band {peak}");

        let info = Info {
            title: Some("Tuning fork".into()),
            bpm: Some(90.0),
            description: Some("a pure sine at concert pitch".into()),
            ..Default::default()
        };
        let updated = edit_info(&ds, &segs[0].id, &info).unwrap();
        assert!(updated
            .iter()
            .all(|s| s.caption == "a pure sine at concert pitch"));
        let on_disk = crate::data::dataset::read_segments(&ds).unwrap();
        assert_eq!(on_disk, updated);
        let metas: Vec<AudioMeta> =
            crate::data::dataset::read_jsonl(&ds.join("data.jsonl")).unwrap();
        let sidecar: Info = serde_json::from_str(
            &std::fs::read_to_string(metas[0].info_path.as_ref().unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(sidecar, info);
        assert!(edit_info(&ds, "nope#0", &info).is_err());
    }
}
