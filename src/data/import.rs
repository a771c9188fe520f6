//! Importing a folder of audio into a dataset: decode every file (any format, rate, channels)
//! to 32 kHz mono, cut segments (default 30 s; a short file is one short segment; a longer
//! file's tail is kept if ≥ `min_segment_ratio` of a segment, as audiocraft), read metadata
//! from an audiocraft sidecar `.json` or a `.txt` caption (else the file name), assign
//! train/valid/test **by track** deterministically, and write the dataset's files
//! (`data::dataset`). Bad files are reported with the reason; the rest imports. A folder of
//! MIDI files goes to `data::midi_dataset`.

use std::path::{Path, PathBuf};

use crate::data::audio;
use crate::data::dataset::{
    read_info, read_sidecar, segment_bounds, split_for, AudioMeta, ImportOptions, ImportReport,
    Segment, SAMPLE_RATE,
};
use crate::error::{Error, Result};
use crate::util::atomic_write;

const AUDIO_EXTENSIONS: [&str; 6] = ["wav", "flac", "mp3", "ogg", "oga", "wave"];

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
    use crate::data::dataset::Info;

    /// A float WAV (`samples` interleaved over `channels`), written as a user's tool would.
    fn float_wav(path: &Path, samples: &[f32], channels: u16, rate: u32) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for s in samples {
            w.write_sample(*s).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn a_float_wav_with_nan_or_inf_is_reported_and_the_folder_still_imports() {
        // Until this check, such a file reached rubato's FFT resampler, which panicked and took
        // the whole import down (issue #21).
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let tone: Vec<f32> = (0..2 * 44_100)
            .map(|i| ((i / 2) as f32 * 0.05).sin() * 0.3)
            .collect();
        float_wav(&src.path().join("good.wav"), &tone, 2, 44_100);
        for (name, bad) in [("nan.wav", f32::NAN), ("inf.wav", f32::INFINITY)] {
            let mut x = tone.clone();
            x[2 * 1000 + 1] = bad;
            float_wav(&src.path().join(name), &x, 2, 44_100);
        }
        let r = import_dir(src.path(), out.path(), &ImportOptions::default()).unwrap();
        assert_eq!(r.imported.len(), 1, "{r:?}");
        assert_eq!(r.failed.len(), 2, "{r:?}");
        for (p, e) in &r.failed {
            assert!(
                e.contains("sample 1000 of channel 1") && e.contains("damaged"),
                "{}: {e}",
                p.display()
            );
            assert!(e.contains(&p.display().to_string()), "names the file: {e}");
        }
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
