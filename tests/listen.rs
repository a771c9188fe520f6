//! `tunelab listen new` + answering + `tunelab listen results` on the tiny fixture: both models
//! render every prompt with the same seeds, pairs are loudness-matched, the blind log records
//! every answer, and the verdict comes out with its p-value.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use tunelab::eval::listen::loudness::measure;
use tunelab::eval::listen::{Choice, Response, SessionLog, Which};

#[test]
fn a_session_is_prepared_answered_and_scored() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let bin = env!("CARGO_BIN_EXE_tunelab");
    let run = tmp.path().join("run");
    cli_train(&ds, &run, "full", 4, "1e-2");
    let dir = tmp.path().join("session");
    let out = std::process::Command::new(bin)
        .args([
            "listen",
            "new",
            "--prompt",
            "calm tone",
            "--prompt",
            "noisy tone",
        ])
        .args([
            "--clips-per-prompt",
            "2",
            "--seconds",
            "1.5",
            "--trials",
            "8",
        ])
        .arg("--model-a")
        .arg(tiny_dir())
        .arg("--model-b")
        .arg(&run)
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("votes"));

    let mut log = SessionLog::open(dir.join("session.jsonl")).unwrap();
    let spec = log.spec().clone();
    assert_eq!(spec.clips.len(), 2 * 2 * 2, "prompts × seeds × models");
    // Pairs share prompt and seed, and are loudness-matched.
    let mut measured = 0;
    for a in spec.clips.iter().filter(|c| c.model == Which::A) {
        let b = spec
            .clips
            .iter()
            .find(|c| c.model == Which::B && c.prompt_idx == a.prompt_idx && c.seed == a.seed)
            .unwrap();
        let la = measure(
            &tunelab::data::audio::load_mono(&a.path, 32_000).unwrap(),
            32_000,
        );
        let lb = measure(
            &tunelab::data::audio::load_mono(&b.path, 32_000).unwrap(),
            32_000,
        );
        if let (Ok(la), Ok(lb)) = (la, lb) {
            assert!((la.integrated_lufs - lb.integrated_lufs).abs() < 0.5);
            assert!((la.integrated_lufs + 23.0).abs() < 0.5 || la.true_peak_dbtp > -1.5);
            measured += 1;
        }
        // Opaque file names: the content hash.
        assert!(a.path.to_string_lossy().contains(&a.sha256));
    }
    assert!(measured > 0, "no pair could be measured");
    // A rater who always prefers model B.
    while let Some(t) = log.next_trial("ann").unwrap() {
        let choice = if t.first_is == Which::B {
            Choice::A
        } else {
            Choice::B
        };
        log.record(
            "ann",
            Response {
                choice,
                abx_choice: None,
            },
        )
        .unwrap();
    }
    assert_eq!(log.answers().len(), 8);
    // The numbers for the same two models, written where the results view looks for them.
    let out = std::process::Command::new(bin)
        .args(["eval", "--clips", "1", "--seconds", "1", "--model"])
        .arg(tiny_dir())
        .arg("--model")
        .arg(&run)
        .arg("--dataset")
        .arg(&ds)
        .arg("--json")
        .arg(dir.join("metrics.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = tmp.path().join("results.json");
    let csv = tmp.path().join("results.csv");
    let out = std::process::Command::new(bin)
        .args(["listen", "results"])
        .arg(dir.join("session.jsonl"))
        .arg("--json")
        .arg(&json)
        .arg("--csv")
        .arg(&csv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // 8 of 8 for B: p = 2 / 256.
    assert!(
        text.contains("won 8 of 8 votes") && text.contains("p = 0.0078"),
        "{text}"
    );
    assert!(text.contains("B (B) is preferred"), "{text}");
    // one rater over two prompts: two clusters, so the bootstrap gives an interval
    assert!(
        text.contains("cluster bootstrap over raters and prompts (2000 replicates, seed 0): B's share 1.000, 95 % 1.000–1.000"),
        "{text}"
    );
    // Ears and numbers side by side: both models' held-out CE and FAD beside their votes,
    // matched by weights hash.
    let ce: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("A   ") || l.starts_with("B   "))
        .collect();
    assert_eq!(ce.len(), 2, "{text}");
    for row in &ce {
        assert!(!row.contains('—'), "a model without numbers: {text}");
    }
    assert!(text.contains("numbers favour"), "{text}");
    assert!(json.is_file() && csv.is_file());
    let export: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(export["verdict"]["finding"], "BPreferred");
    assert_eq!(export["metrics"]["models"].as_array().unwrap().len(), 2);
    assert!(export["verdict"]["rows"][1]["metrics"]["held_out"]["ce"].is_f64());
}
