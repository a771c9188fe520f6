//! Loading real-layout checkpoints from disk: both weight-norm spellings, sharded weights, and a
//! clear error naming the file and the problem for every kind of bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use common::*;
use tunelab::models::checkpoint::{load_tensors, save_tensors};
use tunelab::models::musicgen::MusicGen;
use tunelab::models::nn::WeightMode;

fn copy_tiny(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(tiny_dir()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn raw_tensors(dir: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap()
}

fn load_err(dir: &Path) -> String {
    match MusicGen::load(dir, &Device::Cpu, WeightMode::F32) {
        Ok(_) => panic!("{} should not load", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn codes_of(model: &MusicGen) -> Vec<u32> {
    let r = load("encodec_ref.safetensors");
    ids(&model.codec().unwrap().encode(&r["wave"]).unwrap())
}

#[test]
fn hub_style_weight_g_weight_v_names_load_identically() {
    let dir = tempfile::tempdir().unwrap();
    copy_tiny(dir.path());
    let renamed: HashMap<String, Tensor> = raw_tensors(dir.path())
        .into_iter()
        .map(|(k, v)| {
            let k = k
                .replace("parametrizations.weight.original0", "weight_g")
                .replace("parametrizations.weight.original1", "weight_v");
            (k, v)
        })
        .collect();
    assert!(renamed.keys().any(|k| k.ends_with("weight_g")));
    save_tensors(&renamed, &dir.path().join("model.safetensors")).unwrap();
    let model = MusicGen::load(dir.path(), &Device::Cpu, WeightMode::F32).unwrap();
    assert_eq!(codes_of(&model), codes_of(&tiny()));
}

#[test]
fn sharded_checkpoint_with_index_loads_identically() {
    let dir = tempfile::tempdir().unwrap();
    copy_tiny(dir.path());
    let all = raw_tensors(dir.path());
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let (mut a, mut b) = (HashMap::new(), HashMap::new());
    let mut map = serde_json::Map::new();
    for (i, (k, v)) in all.into_iter().enumerate() {
        let file = if i % 2 == 0 {
            "model-00001-of-00002.safetensors"
        } else {
            "model-00002-of-00002.safetensors"
        };
        map.insert(k.clone(), file.into());
        if i % 2 == 0 {
            a.insert(k, v);
        } else {
            b.insert(k, v);
        }
    }
    save_tensors(&a, &dir.path().join("model-00001-of-00002.safetensors")).unwrap();
    save_tensors(&b, &dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let model = MusicGen::load(dir.path(), &Device::Cpu, WeightMode::F32).unwrap();
    assert_eq!(codes_of(&model), codes_of(&tiny()));

    // A shard listed in the index but absent is named.
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("model-00002-of-00002.safetensors") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn half_precision_checkpoints_load() {
    let dir = tempfile::tempdir().unwrap();
    copy_tiny(dir.path());
    let half: HashMap<String, Tensor> = raw_tensors(dir.path())
        .into_iter()
        .map(|(k, v)| {
            let v = if v.dtype() == DType::F32 {
                v.to_dtype(DType::F16).unwrap()
            } else {
                v
            };
            (k, v)
        })
        .collect();
    save_tensors(&half, &dir.path().join("model.safetensors")).unwrap();
    MusicGen::load(dir.path(), &Device::Cpu, WeightMode::F32).unwrap();
}

#[test]
fn every_bad_input_is_named() {
    let root = tempfile::tempdir().unwrap();
    let fresh = |name: &str| {
        let d = root.path().join(name);
        copy_tiny(&d);
        d
    };

    let d = fresh("no-config");
    std::fs::remove_file(d.join("config.json")).unwrap();
    let e = load_err(&d);
    assert!(e.contains("config.json") && e.contains("missing"), "{e}");

    let d = fresh("no-weights");
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("model.safetensors") && e.contains("missing"),
        "{e}"
    );

    let d = fresh("pickle");
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    std::fs::write(d.join("pytorch_model.bin"), b"PK\x03\x04").unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("pytorch_model.bin") && e.contains("pickle"),
        "{e}"
    );

    let d = fresh("shape");
    let mut t = raw_tensors(&d);
    t.insert(
        "decoder.lm_heads.2.weight".into(),
        Tensor::zeros((2048, 16), DType::F32, &Device::Cpu).unwrap(),
    );
    save_tensors(&t, &d.join("model.safetensors")).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("model.safetensors")
            && e.contains("decoder.lm_heads.2.weight")
            && e.contains("shape"),
        "{e}"
    );

    let d = fresh("missing-tensor");
    let mut t = raw_tensors(&d);
    t.remove("decoder.model.decoder.layers.1.fc1.weight")
        .unwrap();
    save_tensors(&t, &d.join("model.safetensors")).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("model.safetensors") && e.contains("decoder.model.decoder.layers.1.fc1.weight"),
        "{e}"
    );

    let d = fresh("dtype");
    let mut t = raw_tensors(&d);
    t.insert(
        "enc_to_dec_proj.bias".into(),
        Tensor::zeros(32, DType::U32, &Device::Cpu).unwrap(),
    );
    save_tensors(&t, &d.join("model.safetensors")).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("enc_to_dec_proj.bias") && e.contains("dtype"),
        "{e}"
    );

    let d = fresh("json");
    std::fs::write(d.join("config.json"), "{ not json").unwrap();
    let e = load_err(&d);
    assert!(e.contains("config.json") && e.contains("JSON"), "{e}");

    let d = fresh("type");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
    cfg["model_type"] = "bark".into();
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("config.json") && e.contains("unknown model type `bark`"),
        "{e}"
    );

    let d = fresh("stereo");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
    cfg["decoder"]["audio_channels"] = 2.into();
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("stereo") && e.contains("not supported yet"),
        "{e}"
    );

    let d = fresh("truncated");
    let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
    std::fs::write(d.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&d);
    // The streamed reader names the file, the first tensor past the end, and the cause.
    assert!(
        e.contains("model.safetensors") && e.contains("truncated") && e.contains("tensor `"),
        "{e}"
    );
}

#[test]
fn a_model_without_tokenizer_runs_unconditionally_and_explains_text_prompts() {
    let dir = tempfile::tempdir().unwrap();
    copy_tiny(dir.path());
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let mut m = MusicGen::load(dir.path(), &Device::Cpu, WeightMode::F32).unwrap();
    m.condition(&[String::new()]).unwrap();
    let e = m
        .condition(&["piano".to_string()])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("tokenizer.json"), "{e}");
}

#[test]
fn random_published_layout_roundtrips_through_a_checkpoint_dir() {
    // The random-weight builder invents exactly the keys the loader asks for: saving them and
    // loading them back must work and give the same outputs (used by the bench and demos).
    let mut cfg: tunelab::models::musicgen::config::MusicgenConfig =
        serde_json::from_str(&std::fs::read_to_string(tiny_dir().join("config.json")).unwrap())
            .unwrap();
    cfg.decoder.num_hidden_layers = 1;
    let (model, tensors) = MusicGen::random(cfg.clone(), 3, &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_tensors(&tensors, &dir.path().join("model.safetensors")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_string(&cfg).unwrap(),
    )
    .unwrap();
    let back = MusicGen::load(dir.path(), &Device::Cpu, WeightMode::F32).unwrap();
    assert_eq!(codes_of(&back), codes_of(&model));
    let t = load_tensors(
        &[dir.path().join("model.safetensors")],
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(t.len(), tensors.len());
}
