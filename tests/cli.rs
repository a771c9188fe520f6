//! The `tunelab` binary end to end on the tiny fixture model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;

fn tunelab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tunelab"))
}

#[test]
fn generate_writes_wav_and_greedy_codes_equal_to_hf() {
    let case = &greedy_cases()[0];
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("clip.wav");
    let codes = dir.path().join("codes.json");
    // 17 frames = max_new_tokens 20 - 3, i.e. 0.34 s.
    let out = tunelab()
        .args(["generate", "--model"])
        .arg(tiny_dir())
        .args([
            "--prompt",
            case.prompt.as_deref().unwrap(),
            "--duration",
            "0.34",
            "--seed",
            "1",
            "--top-k",
            "1",
        ])
        .args(["--guidance-scale", "3.0", "--out"])
        .arg(&wav)
        .arg("--save-codes")
        .arg(&codes)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<Vec<u32>> =
        serde_json::from_str(&std::fs::read_to_string(&codes).unwrap()).unwrap();
    assert_eq!(got, case.codes);
    let r = hound::WavReader::open(&wav).unwrap();
    assert_eq!(
        (r.spec().sample_rate, r.spec().channels, r.len()),
        (32_000, 1, 17 * 640)
    );
}

#[test]
fn generate_reports_a_bad_model_path_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let out = tunelab()
        .args([
            "generate",
            "--model",
            "/nonexistent/model-dir",
            "--prompt",
            "x",
            "--out",
        ])
        .arg(dir.path().join("x.wav"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/model-dir"), "{err}");
    assert!(!dir.path().join("x.wav").exists());
}

#[test]
fn models_lists_the_hf_cache() {
    let home = tempfile::tempdir().unwrap();
    let snap = home
        .path()
        .join("hub/models--facebook--musicgen-tiny/snapshots/abc");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::copy(tiny_dir().join("config.json"), snap.join("config.json")).unwrap();
    let out = tunelab()
        .arg("models")
        .env("HF_HOME", home.path())
        .env_remove("HF_HUB_CACHE")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("facebook/musicgen-tiny") && text.contains("musicgen"),
        "{text}"
    );
}

/// `--tab` takes the studio's tab names, which `main.rs` lends the CLI from `ui::Tab`: the help
/// lists all seven, and any other name is refused before a window would open.
#[cfg(feature = "gui")]
#[test]
fn tab_lists_and_takes_only_the_studios_tabs() {
    let out = tunelab().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains(
            "possible values: models, generate, library, dataset, train, evaluate, listen"
        ),
        "{help}"
    );
    let out = tunelab().args(["--tab", "mixer"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'mixer'") && err.contains("evaluate"), "{err}");
}

/// `--play` hears the clip while it is generated (here, where CI has no audio device, a
/// silent playhead, said on stderr) and writes the same file as without it.
#[test]
fn generate_play_writes_the_same_clip() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, play: bool| {
        let wav = dir.path().join(name);
        let mut c = tunelab();
        c.args(["generate", "--model"])
            .arg(tiny_dir())
            .args([
                "--prompt",
                "80s synth pop",
                "--duration",
                "0.6",
                "--seed",
                "3",
            ])
            .arg("--out")
            .arg(&wav);
        if play {
            c.arg("--play");
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let samples: Vec<i16> = hound::WavReader::open(&wav)
            .unwrap()
            .samples::<i16>()
            .map(|s| s.unwrap())
            .collect();
        (samples, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (plain, _) = run("plain.wav", false);
    let (played, stderr) = run("played.wav", true);
    // The streamed decode sums in another order (tests/streaming.rs: within 1e-4 of full
    // scale), so a 16-bit sample may round the other way: at most one step apart.
    assert_eq!(plain.len(), played.len());
    let worst = plain
        .iter()
        .zip(&played)
        .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
        .max()
        .unwrap();
    assert!(worst <= 1, "with and without --play: {worst} steps apart");
    assert!(
        stderr.contains("playing") || stderr.contains("silent"),
        "it says what it plays: {stderr}"
    );
}
