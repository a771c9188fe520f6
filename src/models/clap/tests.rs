//! Parity with Hugging Face transformers on the tiny random-weight CLAP written by
//! `tools/make_clap_fixture.py` (tests/fixtures/tiny-clap), and the loader's errors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::*;
use crate::testing::max_abs_diff;

pub(crate) fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-clap")
}

pub(crate) fn tiny() -> Clap {
    Clap::load(&fixture_dir(), &Device::Cpu).unwrap()
}

pub(crate) fn reference() -> HashMap<String, Tensor> {
    reference_in(&fixture_dir())
}

fn reference_in(dir: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap()
}

/// The captions of the reference file, in order.
pub(crate) fn captions() -> Vec<String> {
    captions_in(&fixture_dir())
}

fn captions_in(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("reference.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    serde_json::from_value(v["captions"].clone()).unwrap()
}

/// The reference waveforms (F16 in the file) as f32.
pub(crate) fn waves(r: &HashMap<String, Tensor>) -> Vec<Vec<f32>> {
    (0..2)
        .map(|i| {
            r[&format!("wave_{i}")]
                .to_dtype(DType::F32)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        })
        .collect()
}

// Tolerances, with the max-abs errors measured on x86-64 (candle 0.11.1 CPU vs torch 2.15 CPU):
// log-mel features 0 dB (bit-identical; values span -100..15 dB, where one f32 ulp is up to
// 7.6e-6, so 1e-4 leaves room for another FFT or libm); pooler outputs 7.5e-7 (text) and
// 4.8e-7 (audio); L2-normalised embeddings 3.2e-7 (text) and 6e-8 (audio); similarities 2.3e-7.
const FEATURE_TOL_DB: f32 = 1e-4;
const POOLED_TOL: f32 = 2e-6;
const EMBED_TOL: f32 = 1e-6;
/// 32 kHz → 48 kHz through rubato against the same tones synthesised at 48 kHz: measured 1.2e-4.
const RESAMPLE_TOL: f32 = 5e-4;

#[test]
fn tokenizer_matches_reference_ids() {
    let model = tiny();
    let text = std::fs::read_to_string(fixture_dir().join("reference.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<Vec<u32>> = serde_json::from_value(v["ids"].clone()).unwrap();
    for (c, want) in captions().iter().zip(&ids) {
        assert_eq!(&model.tokenize(c).unwrap(), want, "{c}");
    }
}

#[test]
fn feature_extractor_matches_hf() {
    let model = tiny();
    let r = reference();
    let want = &r["input_features"]; // [2, 1, 101, 16]
    let mut worst = 0f32;
    for (i, w) in waves(&r).iter().enumerate() {
        let got = model.input_features(w).unwrap();
        let err = max_abs_diff(&got, &want.narrow(0, i, 1).unwrap());
        eprintln!("clip {i}: log-mel max abs error {err:e} dB");
        worst = worst.max(err);
    }
    assert!(worst <= FEATURE_TOL_DB, "log-mel max abs error {worst} dB");
}

#[test]
fn text_embeddings_match_hf() {
    let model = tiny();
    let r = reference();
    let caps = captions();
    let got = model.get_text_features(&caps).unwrap();
    let err = max_abs_diff(&got, &r["text_embeds"]);
    let pooled = Tensor::cat(
        &caps
            .iter()
            .map(|c| model.text_pooled(&model.tokenize(c).unwrap()).unwrap())
            .collect::<Vec<_>>(),
        0,
    )
    .unwrap();
    let perr = max_abs_diff(&pooled, &r["text_pooled"]);
    eprintln!("text: pooled max abs error {perr:e}, embeddings {err:e}");
    assert!(perr <= POOLED_TOL, "text pooler max abs error {perr}");
    assert!(err <= EMBED_TOL, "text embedding max abs error {err}");
}

#[test]
fn audio_embeddings_match_hf_on_reference_features() {
    let model = tiny();
    let r = reference();
    let feats = &r["input_features"];
    let pooled = model.audio_pooled(feats).unwrap();
    let perr = max_abs_diff(&pooled, &r["audio_pooled"]);
    let got = model.get_audio_features(feats).unwrap();
    let err = max_abs_diff(&got, &r["audio_embeds"]);
    eprintln!("audio (reference features): pooled max abs error {perr:e}, embeddings {err:e}");
    assert!(perr <= POOLED_TOL, "audio pooler max abs error {perr}");
    assert!(err <= EMBED_TOL, "audio embedding max abs error {err}");
}

#[test]
fn waveforms_to_similarity_matrix_match_hf() {
    let model = tiny();
    let r = reference();
    let audio = model.audio_embeddings(&waves(&r), 48_000).unwrap();
    let aerr = max_abs_diff(&audio, &r["audio_embeds"]);
    let text = model.get_text_features(&captions()).unwrap();
    let sim = text.matmul(&audio.t().unwrap()).unwrap();
    let serr = max_abs_diff(&sim, &r["similarity"]);
    eprintln!("waveform → audio embeddings max abs error {aerr:e}, similarity {serr:e}");
    assert!(
        aerr <= EMBED_TOL,
        "audio embedding (from waveforms) max abs error {aerr}"
    );
    assert!(serr <= EMBED_TOL, "similarity max abs error {serr}");
}

/// 32 kHz input goes through rubato to 48 kHz; compare with the same tones synthesised at 48 kHz.
#[test]
fn resampled_32k_clip_embeds_like_the_48k_original() {
    let model = tiny();
    let tone = |rate: u32| -> Vec<f32> {
        (0..rate as usize * 3 / 4)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                let w = 0.3 * (2.0 * std::f64::consts::PI * 220.0 * t).sin()
                    + 0.2 * (2.0 * std::f64::consts::PI * 1500.0 * t + 0.4).sin()
                    + 0.1 * (2.0 * std::f64::consts::PI * 5200.0 * t + 1.3).sin();
                w as f32
            })
            .collect()
    };
    let a32 = model.audio_embeddings(&[tone(32_000)], 32_000).unwrap();
    let a48 = model.audio_embeddings(&[tone(48_000)], 48_000).unwrap();
    let err = max_abs_diff(&a32, &a48);
    let cos = (&a32 * &a48)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    eprintln!("32 kHz (rubato) vs 48 kHz synthesis: embedding max abs diff {err:e}, cosine {cos}");
    assert!(err <= RESAMPLE_TOL, "embedding max abs diff {err}");
    assert!(cos > 0.9999, "cosine {cos}");
}

/// A copy of the fixture folder to break.
fn broken_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "preprocessor_config.json",
    ] {
        std::fs::copy(fixture_dir().join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn rewrite_weights(dir: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) {
    let p = dir.join("model.safetensors");
    let mut t = candle_core::safetensors::load(&p, &Device::Cpu).unwrap();
    edit(&mut t);
    candle_core::safetensors::save(&t, &p).unwrap();
}

fn load_err(dir: &Path) -> String {
    Clap::load(dir, &Device::Cpu).unwrap_err().to_string()
}

#[test]
fn bad_checkpoints_are_refused_with_the_file_and_problem() {
    // A missing tensor: the file and the tensor are named.
    let d = broken_copy();
    let name =
        "audio_model.audio_encoder.layers.1.blocks.1.attention.self.relative_position_bias_table";
    rewrite_weights(d.path(), |t| {
        t.remove(name);
    });
    let e = load_err(d.path());
    assert!(
        e.contains("model.safetensors") && e.contains(name) && e.contains("missing"),
        "{e}"
    );

    // A misshaped tensor.
    let d = broken_copy();
    let name = "text_projection.linear1.weight";
    rewrite_weights(d.path(), |t| {
        t.insert(
            name.into(),
            Tensor::zeros((16, 31), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let e = load_err(d.path());
    assert!(
        e.contains("model.safetensors") && e.contains(name) && e.contains("[16, 31]"),
        "{e}"
    );

    // Only pickle weights.
    let d = broken_copy();
    std::fs::remove_file(d.path().join("model.safetensors")).unwrap();
    std::fs::write(d.path().join("pytorch_model.bin"), b"pickle").unwrap();
    let e = load_err(d.path());
    assert!(
        e.contains("pytorch_model.bin") && e.contains("pickle"),
        "{e}"
    );

    // No weights at all, no tokenizer, no feature extractor settings, a truncated file.
    let d = broken_copy();
    std::fs::remove_file(d.path().join("model.safetensors")).unwrap();
    assert!(load_err(d.path()).contains("model.safetensors"));
    let d = broken_copy();
    std::fs::remove_file(d.path().join("tokenizer.json")).unwrap();
    assert!(load_err(d.path()).contains("tokenizer.json"));
    let d = broken_copy();
    std::fs::remove_file(d.path().join(PREPROCESSOR_CONFIG)).unwrap();
    assert!(load_err(d.path()).contains(PREPROCESSOR_CONFIG));
    let d = broken_copy();
    let p = d.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(d.path());
    assert!(
        e.contains("model.safetensors") && e.contains("truncated"),
        "{e}"
    );

    // The fused model is not run.
    let d = broken_copy();
    let p = d.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    cfg["audio_config"]["enable_fusion"] = true.into();
    std::fs::write(&p, cfg.to_string()).unwrap();
    let e = load_err(d.path());
    assert!(e.contains("config.json") && e.contains("fused"), "{e}");
}

/// The real layout (laion/clap-htsat-unfused: RoBERTa-base, HTSAT-base, 10 s at 48 kHz) with
/// random weights, written by `python3 tools/make_clap_fixture.py --full-size DIR` (~600 MB, not
/// committed). Run with `TUNELAB_CLAP_FULL_SIZE=DIR cargo test --lib full_size -- --ignored`.
#[test]
#[ignore = "needs TUNELAB_CLAP_FULL_SIZE=<dir from make_clap_fixture.py --full-size>"]
fn full_size_parity() {
    let Some(dir) = std::env::var_os("TUNELAB_CLAP_FULL_SIZE").map(PathBuf::from) else {
        eprintln!("TUNELAB_CLAP_FULL_SIZE is not set; nothing to check");
        return;
    };
    let t0 = std::time::Instant::now();
    let model = Clap::load(&dir, &Device::Cpu).unwrap();
    eprintln!("loaded in {:.1} s", t0.elapsed().as_secs_f32());
    let r = reference_in(&dir);
    let caps = captions_in(&dir);
    let waves = waves(&r);
    let t0 = std::time::Instant::now();
    let feats = Tensor::cat(
        &waves
            .iter()
            .map(|w| model.input_features(w).unwrap())
            .collect::<Vec<_>>(),
        0,
    )
    .unwrap();
    let fe = max_abs_diff(&feats, &r["input_features"]);
    let text = model.get_text_features(&caps).unwrap();
    let te = max_abs_diff(&text, &r["text_embeds"]);
    let pooled = model.audio_pooled(&r["input_features"]).unwrap();
    let ape = max_abs_diff(&pooled, &r["audio_pooled"]);
    let audio = model.get_audio_features(&r["input_features"]).unwrap();
    let ae = max_abs_diff(&audio, &r["audio_embeds"]);
    let audio_w = model.audio_embeddings(&waves, 48_000).unwrap();
    let awe = max_abs_diff(&audio_w, &r["audio_embeds"]);
    let sim = text.matmul(&audio_w.t().unwrap()).unwrap();
    let se = max_abs_diff(&sim, &r["similarity"]);
    eprintln!(
        "full size ({:.1} s): features {fe:e} dB, text embeddings {te:e}, audio pooled {ape:e}, \
         audio embeddings {ae:e} (reference features) / {awe:e} (waveforms), similarity {se:e}",
        t0.elapsed().as_secs_f32()
    );
    // Measured: features 0 dB, text embeddings 1.7e-7, audio pooled 1.2e-6, audio embeddings
    // 9.7e-8 / 4.1e-8, similarity 4.1e-8 (~10 s for all of it on 2 cores).
    assert!(fe <= FEATURE_TOL_DB, "features {fe}");
    assert!(ape <= 5e-6, "audio pooled {ape}");
    for (what, e) in [
        ("text", te),
        ("audio", ae),
        ("waveform audio", awe),
        ("similarity", se),
    ] {
        assert!(e <= EMBED_TOL, "{what}: {e}");
    }
}

#[test]
fn the_model_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Clap>();
}

/// A `tokenizer.json` that stores a truncation length does not cut prompts (HF's
/// `tokenizer(text)` does not apply it either).
#[test]
fn stored_tokenizer_truncation_is_not_applied() {
    let d = broken_copy();
    let p = d.path().join("tokenizer.json");
    let mut tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    tok["truncation"] = serde_json::json!({
        "direction": "Right", "max_length": 4, "strategy": "LongestFirst", "stride": 0
    });
    std::fs::write(&p, tok.to_string()).unwrap();
    let model = Clap::load(d.path(), &Device::Cpu).unwrap();
    let caps = captions();
    assert_eq!(
        model.tokenize(&caps[0]).unwrap(),
        tiny().tokenize(&caps[0]).unwrap()
    );
    assert!(model.tokenize(&caps[0]).unwrap().len() > 4);
}
