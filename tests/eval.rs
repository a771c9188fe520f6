//! `tunelab eval` on the tiny fixture: a baseline and a fine-tuned run get a full report; the
//! held-out loss is computed on the same tokens for both.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[test]
fn eval_reports_every_metric_for_baseline_and_fine_tune() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let bin = env!("CARGO_BIN_EXE_tunelab");
    let run = tmp.path().join("run");
    cli_train(&ds, &run, "lora", 6, "1e-2");
    let json = tmp.path().join("report.json");
    let out = std::process::Command::new(bin)
        .args(["eval", "--clips", "2", "--seconds", "1"])
        .arg("--model")
        .arg(tiny_dir())
        .arg("--model")
        .arg(&run)
        .arg("--dataset")
        .arg(&ds)
        .arg("--json")
        .arg(&json)
        .arg("--clap")
        .arg(fixtures().join("tiny-clap"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("not comparable with VGGish"), "{stdout}");
    assert!(stdout.contains("CLAP score"), "{stdout}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let models = r["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    let tokens: Vec<u64> = models
        .iter()
        .map(|m| m["held_out"]["tokens"].as_u64().unwrap())
        .collect();
    assert!(
        tokens[0] > 0 && tokens[0] == tokens[1],
        "same tokens: {tokens:?}"
    );
    let ce: Vec<f64> = models
        .iter()
        .map(|m| m["held_out"]["ce"].as_f64().unwrap())
        .collect();
    assert_ne!(ce[0], ce[1], "the fine-tune changed the held-out loss");
    for m in models {
        assert_eq!(m["weights_sha256"].as_str().unwrap().len(), 64);
        let g = &m["generated"];
        for path in [
            &["fad", "estimate"][..],
            &["fad_inf", "intercept"],
            &["kad", "kad", "raw"],
            &["mean_log_mel_mse"],
        ] {
            let mut v = g;
            for p in path {
                v = &v[*p];
            }
            assert!(v.as_f64().unwrap().is_finite(), "{path:?}");
        }
        assert_eq!(g["clips"].as_array().unwrap().len(), 2);
        // The optional CLAP score (random-weight fixture): one cosine per clip, in [−1, 1].
        let clap = g["clap"]["clips"].as_array().unwrap();
        assert_eq!(clap.len(), 2);
        for c in clap {
            assert!(c["similarity"].as_f64().unwrap().abs() <= 1.0 + 1e-6);
        }
        assert!(g["clap"]["mean"].as_f64().unwrap().is_finite());
        assert!(g["fad"]["estimate"].as_f64().unwrap() >= 0.0);
        assert!(m["eval_seconds"].as_f64().unwrap() > 0.0);
    }
}

/// A model with fewer positions than a dataset's segments (a scratch model sized for short
/// crops) is scored on the longest crop it takes instead of failing ("sequence of N positions
/// exceeds the model's M", issue #21).
#[test]
fn held_out_loss_crops_to_a_model_shorter_than_the_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let short = tmp.path().join("short-context");
    std::fs::create_dir_all(&short).unwrap();
    for e in std::fs::read_dir(tiny_dir()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), short.join(e.file_name())).unwrap();
    }
    let cfg_path = short.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    // Sinusoidal positions: fewer of them is the same model on shorter sequences.
    cfg["decoder"]["max_position_embeddings"] = serde_json::json!(24);
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let bin = env!("CARGO_BIN_EXE_tunelab");
    let run = |model: &std::path::Path, json: &std::path::Path| {
        let out = std::process::Command::new(bin)
            .args(["eval", "--clips", "1", "--seconds", "0.2"])
            .arg("--model")
            .arg(model)
            .arg("--dataset")
            .arg(&ds)
            .arg("--json")
            .arg(json)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
        r["models"][0]["held_out"]["tokens"].as_u64().unwrap()
    };
    let full = run(&tiny_dir(), &tmp.path().join("full.json"));
    let cropped = run(&short, &tmp.path().join("short.json"));
    assert!(cropped > 0 && cropped < full, "{cropped} of {full} tokens");
}
