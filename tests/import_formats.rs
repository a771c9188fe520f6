//! Dataset import on real encoded audio of mixed formats: `tests/fixtures/mixed-audio`, made by
//! `tools/make_mixed_audio.sh` from Bach/folk MIDI excerpts rendered by tunelab's own SoundFont
//! renderer and converted with sox.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use tunelab::data::audio::{decode_file, load_mono, write_wav};
use tunelab::data::dataset::{AudioMeta, ImportReport, Segment};
use tunelab::data::midi::read_midi;
use tunelab::generate::midi::first_seconds;
use tunelab::generate::soundfont::{find_soundfont, render, SoundFont};

/// Renders MIDI excerpts to 16-bit mono WAV with tunelab's renderer: the first step of
/// `tools/make_mixed_audio.sh`, which passes one job per line in `TUNELAB_RENDER`:
/// `out.wav|piece.mid|GM program|seconds of notes|sample rate`. Without it, renders one
/// excerpt to a temporary folder and checks it is music, not silence.
#[test]
#[ignore = "fixture maker, run by tools/make_mixed_audio.sh"]
fn render_excerpts() {
    let tmp = tempfile::tempdir().unwrap();
    let jobs = std::env::var("TUNELAB_RENDER").unwrap_or_else(|_| {
        format!(
            "{}|assets/demo/midi/classical/bwv10-7-meine-seel-erhebt-den-herren.mid|0|2.5|44100",
            tmp.path().join("x.wav").display()
        )
    });
    let sf = SoundFont::load(&find_soundfont().unwrap()).unwrap();
    println!("SoundFont: {}", sf.path().display());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for job in jobs.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = job.trim().split('|').collect();
        assert_eq!(f.len(), 5, "bad job {job:?}");
        let (notes, _) = read_midi(&root.join(f[1])).unwrap();
        let notes = first_seconds(&notes, f[3].parse().unwrap());
        let rate: u32 = f[4].parse().unwrap();
        let audio = render(&sf, &notes, f[2].parse().unwrap(), rate).unwrap();
        let peak = audio.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!(peak > 0.05 && peak < 1.0, "{job}: peak {peak}");
        let out = PathBuf::from(f[0]);
        write_wav(&out, &audio, rate).unwrap();
        println!(
            "{}: {} notes, {:.3} s, peak {peak:.3}",
            out.display(),
            notes.len(),
            audio.len() as f64 / f64::from(rate)
        );
    }
}

fn mixed() -> PathBuf {
    fixtures().join("mixed-audio")
}

/// The good files: name, channels, sample rate, seconds. Each is an exact cut of its source
/// (see the maker script), so its duration is known without decoding it.
const GOOD: [(&str, usize, u32, f64); 7] = [
    ("chorale-16bit-44k-stereo.wav", 2, 44_100, 0.5),
    ("chorale-22k-mono.ogg", 1, 22_050, 3.0),
    ("chorale-24bit-44k-stereo.flac", 2, 44_100, 3.0),
    ("chorale-48k-stereo.mp3", 2, 48_000, 3.0),
    ("chorale-8bit-11k.wav", 1, 11_025, 3.0),
    ("chorale-f32-48k.wav", 1, 48_000, 0.5),
    ("reel-24k-mono.mp3", 1, 24_000, 3.0),
];

/// The bad files, the file their reason must name (the sidecar, for a bad sidecar) and a phrase
/// it must contain.
const BAD: [(&str, &str, &str); 4] = [
    ("empty.wav", "empty.wav", "audio: the file is empty"),
    (
        "notes.ogg",
        "notes.ogg",
        "audio: not a supported audio file",
    ),
    (
        "reel-badmeta.ogg",
        "reel-badmeta.json",
        "sidecar is not valid metadata JSON",
    ),
    (
        "truncated.mp3",
        "truncated.mp3",
        "audio: contains no audio samples",
    ),
];

/// Lossless reference of the chorale: both channels of the FLAC are the rendered master.
const REFERENCE: &str = "chorale-24bit-44k-stereo.flac";

const RATE: u32 = 32_000;

/// Normalised cross-correlation of `a[i]` with `b[i + lag]` over their overlap.
fn ncc(a: &[f32], b: &[f32], lag: isize) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (i, &x) in a.iter().enumerate() {
        let j = i as isize + lag;
        if j < 0 || j as usize >= b.len() {
            continue;
        }
        let (x, y) = (f64::from(x), f64::from(b[j as usize]));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt().max(1e-30)
}

/// The lag within ±`max_lag` samples with the highest normalised cross-correlation, and it.
fn best_lag(a: &[f32], b: &[f32], max_lag: isize) -> (isize, f64) {
    (-max_lag..=max_lag)
        .map(|lag| (lag, ncc(a, b, lag)))
        .fold((0, f64::MIN), |best, c| if c.1 > best.1 { c } else { best })
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Names and sizes of the files in a folder.
fn listing(dir: &Path) -> BTreeMap<String, u64> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (file_name(&e.path()), e.metadata().unwrap().len())
        })
        .collect()
}

/// `tunelab dataset import` on the mixed folder: every good file imported at 32 kHz with its
/// source's duration, every bad one reported with a reason naming it, the sidecar and the
/// caption in the dataset, the source folder untouched; then the dataset trains.
#[test]
fn cli_imports_the_mixed_folder_reports_the_bad_files_and_trains() {
    let before = listing(&mixed());
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    let out = Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .args(["dataset", "import"])
        .arg(mixed())
        .arg("--out")
        .arg(&ds)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("imported 7 files"), "{stdout}");
    // Import reads the sources and writes only into the dataset.
    assert_eq!(listing(&mixed()), before);

    let report: ImportReport =
        serde_json::from_slice(&std::fs::read(ds.join("import_report.json")).unwrap()).unwrap();
    let mut imported: Vec<String> = report.imported.iter().map(|p| file_name(p)).collect();
    imported.sort();
    let good: Vec<&str> = GOOD.iter().map(|g| g.0).collect();
    assert_eq!(imported, good, "{report:?}");
    let failed: BTreeMap<String, String> = report
        .failed
        .iter()
        .map(|(p, e)| (file_name(p), e.clone()))
        .collect();
    let bad: Vec<&str> = BAD.iter().map(|b| b.0).collect();
    assert_eq!(failed.keys().collect::<Vec<_>>(), bad, "{failed:?}");
    for (name, names, phrase) in BAD {
        let reason = &failed[name];
        println!("{name}: {reason}");
        assert!(
            reason.contains(&format!("{names}: ")) && reason.contains(phrase),
            "{name}: {reason}"
        );
        // The CLI prints the same line.
        assert!(stdout.contains(&format!("{name}: {reason}")), "{stdout}");
    }

    // data.jsonl: one 32 kHz entry per good file with its source's duration (exact cuts, so
    // within one 32 kHz sample; an MP3 decoded without its encoder delay and padding removed
    // would be 24 ms long, a Vorbis file's padding 9 ms).
    let metas: Vec<AudioMeta> = std::fs::read_to_string(ds.join("data.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(metas.len(), GOOD.len());
    for (name, _, _, secs) in GOOD {
        let m = metas
            .iter()
            .find(|m| m.path.ends_with(name))
            .unwrap_or_else(|| panic!("{name} not in data.jsonl"));
        assert_eq!(m.sample_rate, RATE, "{name}");
        assert!(
            (m.duration - secs).abs() <= 1.0 / f64::from(RATE),
            "{name}: {} s, source {secs} s",
            m.duration
        );
        assert!(m.amplitude.unwrap() > 0.05, "{name}: silent");
    }

    // Metadata: the FLAC's audiocraft sidecar, the reel's .txt caption; one segment per file.
    let segs: Vec<Segment> = std::fs::read_to_string(ds.join("segments.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(segs.len(), GOOD.len());
    let flac = segs.iter().find(|s| s.path.ends_with(REFERENCE)).unwrap();
    assert_eq!(
        flac.caption,
        "Bach chorale in G minor on piano, 4/4, 90 bpm"
    );
    assert_eq!(
        flac.info.title.as_deref(),
        Some("Meine Seel' erhebt den Herren")
    );
    assert_eq!(flac.info.artist.as_deref(), Some("Johann Sebastian Bach"));
    assert_eq!(flac.info.genre.as_deref(), Some("classical"));
    assert_eq!(flac.info.key.as_deref(), Some("G minor"));
    assert_eq!(flac.info.bpm, Some(90.0));
    assert!(flac.info.estimated.is_empty(), "{:?}", flac.info);
    let flac_meta = metas.iter().find(|m| m.path.ends_with(REFERENCE)).unwrap();
    let sidecar = std::fs::read_to_string(flac_meta.info_path.as_ref().unwrap()).unwrap();
    assert!(sidecar.contains("Johann Sebastian Bach"), "{sidecar}");
    let reel = segs
        .iter()
        .find(|s| s.path.ends_with("reel-24k-mono.mp3"))
        .unwrap();
    assert_eq!(reel.caption, "a lively fiddle reel played on a flute");
    assert!((reel.duration - 3.0).abs() <= 1.0 / f64::from(RATE));

    // Two training steps on the imported dataset with the tiny model.
    let run = tmp.path().join("run");
    cli_train(&ds, &run, "full", 2, "1e-3");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let ce: Vec<f64> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["ce"].as_f64().unwrap())
        .collect();
    assert_eq!(ce.len(), 2, "{metrics}");
    assert!(ce.iter().all(|c| c.is_finite() && *c > 0.0), "{ce:?}");
}

/// Every encoding of the chorale decodes (through `tunelab::data::audio`, as import and
/// training do) to the same music at 32 kHz mono as the lossless reference (the FLAC): in time
/// with it (the best lag within ±50 ms is 0), normalised cross-correlation ≥ 0.98 for the lossy
/// ones (MP3, Vorbis, 8-bit), max error ≤ 1e-4 for the lossless ones (16-bit WAV, float WAV).
/// Channels, rate and frame count are the source's (gapless: no encoder delay or padding).
#[test]
fn every_format_decodes_to_the_same_music() {
    // The reference: a 24-bit FLAC whose two channels are the 16-bit master, shifted 8 bits.
    let flac = decode_file(&mixed().join(REFERENCE)).unwrap();
    assert!(flac
        .samples
        .chunks_exact(2)
        .all(|lr| lr[0] == lr[1] && (lr[0] * 32_768.0).fract() == 0.0));
    let reference = load_mono(&mixed().join(REFERENCE), RATE).unwrap();
    for (name, channels, rate, secs) in GOOD {
        let path = mixed().join(name);
        let d = decode_file(&path).unwrap();
        assert_eq!((d.channels, d.sample_rate), (channels, rate), "{name}");
        assert_eq!(
            d.samples.len(),
            channels * (secs * f64::from(rate)).round() as usize,
            "{name}"
        );
        let mono = load_mono(&path, RATE).unwrap();
        assert_eq!(
            mono.len(),
            (secs * f64::from(RATE)).round() as usize,
            "{name}"
        );
        if !name.starts_with("chorale") || name == REFERENCE {
            continue;
        }
        let (lag, corr) = best_lag(&reference, &mono, 1_600);
        // The 0.5 s cuts end abruptly: leave out the resampler's last 20 ms there.
        let n = if mono.len() < reference.len() {
            mono.len() - 640
        } else {
            mono.len()
        };
        let diff: Vec<f32> = mono[..n]
            .iter()
            .zip(&reference[..n])
            .map(|(a, b)| a - b)
            .collect();
        let max_err = diff.iter().fold(0f32, |m, e| m.max(e.abs()));
        let rms = |x: &[f32]| {
            (x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
        };
        let rel_rms = rms(&diff) / rms(&reference[..n]);
        println!(
            "{name}: best lag {lag} samples, NCC {corr:.5}, max error {max_err:.2e}, \
             relative RMS error {rel_rms:.2e}"
        );
        assert_eq!(lag, 0, "{name}");
        assert!(corr >= 0.98, "{name}: NCC {corr}");
        let lossless = name.starts_with("chorale-16bit") || name.starts_with("chorale-f32");
        if lossless {
            // 16-bit: the pan's rounding (1 LSB = 3.1e-5); float: sox's and our resampling.
            assert!(max_err <= 1e-4, "{name}: max error {max_err}");
        }
    }
}
