//! The token cache: encode once, never again while nothing changed; a changed file or another
//! codec encodes again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use candle_core::Device;
use common::*;
use tunelab::data::audio::write_wav;
use tunelab::data::dataset::ImportOptions;
use tunelab::data::import::import_dir;
use tunelab::data::token_cache::{codec_fingerprint, encode_dataset, read_codes, read_index};
use tunelab::models::musicgen::config::MusicgenConfig;
use tunelab::models::musicgen::MusicGen;

#[test]
fn segments_are_encoded_once_and_again_only_when_something_changed() {
    let src = tempfile::tempdir().unwrap();
    let ds = tempfile::tempdir().unwrap();
    let tone = |f: f32, secs: f32| -> Vec<f32> {
        (0..(32_000.0 * secs) as usize)
            .map(|i| 0.3 * (i as f32 * f / 32_000.0 * std::f32::consts::TAU).sin())
            .collect()
    };
    write_wav(&src.path().join("a.wav"), &tone(220.0, 2.5), 32_000).unwrap();
    write_wav(&src.path().join("b.wav"), &tone(330.0, 1.0), 32_000).unwrap();
    let opts = ImportOptions {
        segment_seconds: 1.0,
        ..Default::default()
    };
    import_dir(src.path(), ds.path(), &opts).unwrap(); // a: 2 segments (0.5 s tail < 0.8), b: 1
    let model = tiny();

    let r = encode_dataset(ds.path(), &model).unwrap();
    assert_eq!((r.encoded, r.cached), (3, 0), "{r:?}");
    let r = encode_dataset(ds.path(), &model).unwrap();
    assert_eq!((r.encoded, r.cached), (0, 3), "{r:?}");

    // The cached codes are the codec's codes of that segment.
    let b = tunelab::data::audio::load_mono(&src.path().join("b.wav"), 32_000).unwrap();
    let fp = codec_fingerprint(&model).unwrap();
    let index = read_index(ds.path(), &fp).unwrap();
    let entry = index.iter().find(|e| e.segment == "b.wav#0").unwrap();
    assert_eq!(
        read_codes(ds.path(), entry).unwrap(),
        model.encode_audio(&b).unwrap()
    );

    // A changed file re-encodes only its own segment.
    write_wav(&src.path().join("b.wav"), &tone(440.0, 1.0), 32_000).unwrap();
    let r = encode_dataset(ds.path(), &model).unwrap();
    assert_eq!((r.encoded, r.cached), (1, 2), "{r:?}");

    // Another codec (different weights) re-encodes everything.
    let cfg: MusicgenConfig =
        serde_json::from_str(&std::fs::read_to_string(tiny_dir().join("config.json")).unwrap())
            .unwrap();
    let (other, _) = MusicGen::random(cfg, 9, &Device::Cpu).unwrap();
    assert_ne!(codec_fingerprint(&other).unwrap(), fp);
    let r = encode_dataset(ds.path(), &other).unwrap();
    assert_eq!((r.encoded, r.cached), (3, 0), "{r:?}");
}
