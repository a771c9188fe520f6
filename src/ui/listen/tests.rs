//! The Listen panel's tests: a blind session from the keyboard, loops, setup, the owner's
//! results, and the studio killed mid-session.

use super::*;
use crate::engine::Command;
use crate::eval::listen::{ModelRef, SessionClip, SessionSpec, Which};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;

/// A session of four trials over two prompts, its clips written in `dir`; its log.
pub(crate) fn session(dir: &std::path::Path) -> PathBuf {
    let mut clips = Vec::new();
    for (pi, f) in [220.0f32, 330.0].iter().enumerate() {
        for (which, gain) in [(Which::A, 0.2f32), (Which::B, 0.3)] {
            let x: Vec<f32> = (0..16_000)
                .map(|i| gain * (i as f32 * f * std::f32::consts::TAU / 32_000.0).sin())
                .collect();
            let bytes = crate::data::audio::wav_bytes(&x, 32_000).unwrap();
            let sha = crate::eval::listen::sha256_hex(&bytes);
            let path = dir.join(format!("{sha}.wav"));
            std::fs::write(&path, &bytes).unwrap();
            clips.push(SessionClip {
                prompt_idx: pi,
                seed: 0,
                model: which,
                path,
                sha256: sha,
                gain_db: 0.0,
            });
        }
    }
    let spec = SessionSpec {
        id: "t".into(),
        model_a: ModelRef {
            label: "baseline-model".into(),
            id: "a".into(),
            weights_sha256: "0".into(),
        },
        model_b: ModelRef {
            label: "finetuned-model".into(),
            id: "b".into(),
            weights_sha256: "1".into(),
        },
        prompts: vec!["low".into(), "high".into()],
        clips_per_prompt: 1,
        seconds: 0.5,
        seeds: vec![0],
        generation: serde_json::Value::Null,
        trials: 4,
        abx: false,
        catch_every: 0,
        tie_allowed: true,
        seed: 1,
        clips,
    };
    let log = dir.join("session.jsonl");
    SessionLog::create(&log, spec).unwrap();
    log
}

#[test]
fn a_loop_region_replays_while_switching_sides() {
    let dir = tempfile::tempdir().unwrap();
    let log = session(dir.path());
    let form = ListenForm {
        log: log.display().to_string(),
        rater: "bob".into(),
        ..Default::default()
    };
    let mut h = Harness::new_ui_state(
        |ui, p: &mut ListenPanel| p.ui(ui, ModelBusy::default(), &mut Outbox::default()),
        ListenPanel::new(form, Player::silent()),
    );
    h.get_by_label("Open session").click();
    h.run();
    h.key_press(egui::Key::A);
    h.step();
    h.key_press(egui::Key::OpenBracket);
    h.step();
    std::thread::sleep(Duration::from_millis(120));
    h.key_press(egui::Key::CloseBracket);
    h.step();
    let (start, end) = h.state().loop_region.expect("a loop was marked");
    assert!(end > start);
    // Switching sides keeps the loop; past its end the playhead returns to its start.
    h.key_press(egui::Key::B);
    h.step();
    std::thread::sleep(end - start + Duration::from_millis(60));
    h.step();
    assert!(h.state().player.position() < end, "looped back");
    assert_eq!(h.state().playing, Some(PlayTarget::B));
}

/// Setting a session up in the studio sends the plan (fixed in advance) to the engine; when
/// the engine answers with the log, the session opens for the rater.
#[test]
fn a_session_is_set_up_from_the_panel_and_opens_when_ready() {
    struct S {
        panel: ListenPanel,
        out: Outbox,
    }
    let dir = tempfile::tempdir().unwrap();
    let log = session(dir.path());
    let form = ListenForm {
        rater: "cat".into(),
        setup: SetupForm {
            model_a: "base".into(),
            model_b: "tuned".into(),
            prompts: "improv\n\n  melody.mid \n".into(),
            trials: 30,
            out: dir.path().join("new").display().to_string(),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut h = Harness::new_ui_state(
        |ui, s: &mut S| s.panel.ui(ui, ModelBusy::default(), &mut s.out),
        S {
            panel: ListenPanel::new(form, Player::silent()),
            out: Outbox::default(),
        },
    );
    h.run();
    assert!(
        h.query_by_label_contains("B must win ≥ 21 of 30").is_some(),
        "the power hint follows the trials"
    );
    h.get_by_label("Prepare session").click();
    h.step();
    let job = match h.state().out.commands() {
        [Command::PrepareSession {
            job,
            model_a,
            model_b,
            plan,
            dir: d,
            ..
        }] => {
            assert_eq!((model_a.as_str(), model_b.as_str()), ("base", "tuned"));
            assert_eq!(plan.prompts, vec!["improv", "melody.mid"]);
            assert_eq!(plan.trials, 30);
            assert_eq!(plan.seeds, vec![0, 1]);
            assert_eq!(d, &dir.path().join("new"));
            *job
        }
        other => panic!("expected PrepareSession, got {other:?}"),
    };
    h.get_by_label("Prepare session").click();
    h.step();
    assert_eq!(h.state().out.commands().len(), 1, "one at a time");
    let s = h.state_mut();
    assert!(s.panel.on_event(
        &Event::Done {
            job,
            result: Ok(JobOutput::SessionReady(log)),
        },
        &mut s.out
    ));
    h.step();
    assert!(h.query_by_label_contains("Trial 1 of 4").is_some());
}

#[test]
fn test_prompts_come_from_the_test_split() {
    use crate::data::dataset::{Info, Segment, Split};
    let dir = tempfile::tempdir().unwrap();
    let seg = |id: &str, split, caption: &str| Segment {
        id: id.into(),
        path: dir.path().join(format!("{id}.wav")),
        start: 0.0,
        duration: 1.0,
        split,
        caption: caption.into(),
        info: Info::default(),
    };
    let segs = [
        seg("a", Split::Train, "train only"),
        seg("b", Split::Test, "calm piano"),
        seg("c", Split::Test, "calm piano"),
        seg("d", Split::Test, "fast drums"),
    ];
    let text: String = segs
        .iter()
        .map(|s| serde_json::to_string(s).unwrap() + "\n")
        .collect();
    std::fs::write(dir.path().join("segments.jsonl"), text).unwrap();
    assert_eq!(
        test_prompts(dir.path(), 8).unwrap(),
        vec!["calm piano", "fast drums"]
    );
    // A MIDI dataset: the test pieces themselves are the primes.
    std::fs::write(dir.path().join("events.jsonl"), "").unwrap();
    let p = test_prompts(dir.path(), 1).unwrap();
    assert_eq!(p, vec![dir.path().join("b.wav").display().to_string()]);
}

#[test]
fn a_blind_session_runs_from_the_keyboard_and_reveals_only_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = session(dir.path());
    let form = ListenForm {
        log: log.display().to_string(),
        rater: "ann".into(),
        ..Default::default()
    };
    let mut h = Harness::new_ui_state(
        |ui, p: &mut ListenPanel| p.ui(ui, ModelBusy::default(), &mut Outbox::default()),
        ListenPanel::new(form, Player::silent()),
    );
    h.get_by_label("Open session").click();
    h.run();
    assert!(h.query_by_label_contains("Trial 1 of 4").is_some());
    for n in 1..=4 {
        assert!(h
            .query_by_label_contains(&format!("Trial {n} of 4"))
            .is_some());
        // Nothing on screen names a model while the session runs.
        assert!(h.query_by_label_contains("baseline").is_none());
        assert!(h.query_by_label_contains("finetuned").is_none());
        h.key_press(egui::Key::A);
        h.step();
        assert_eq!(h.state().playing, Some(PlayTarget::A));
        h.key_press(egui::Key::B);
        h.step();
        assert_eq!(h.state().playing, Some(PlayTarget::B));
        h.key_press(egui::Key::Num2);
        h.step();
    }
    h.run_steps(2);
    // Every answer is on disk.
    let reopened = SessionLog::open(&log).unwrap();
    assert_eq!(reopened.answers().len(), 4);
    assert!(reopened.answers().iter().all(|a| a.choice == Choice::B));
    assert!(h.query_by_label_contains("Session complete").is_some());
    assert!(
        h.query_all_by_label_contains("finetuned-model")
            .next()
            .is_some(),
        "revealed at the end"
    );
}

fn prefer_b_all(log: &std::path::Path, rater: &str) {
    let mut l = SessionLog::open(log).unwrap();
    while let Some(t) = l.next_trial(rater).unwrap() {
        let choice = if t.first_is == Which::B {
            Choice::A
        } else {
            Choice::B
        };
        l.record(
            rater,
            Response {
                choice,
                abx_choice: None,
            },
        )
        .unwrap();
    }
}

/// The owner opens the results on demand: the verdict, the per-prompt and per-rater tables,
/// then the numbers of the same two models, computed by the engine into the session folder,
/// beside the votes; the export carries both.
#[test]
fn owner_results_put_votes_and_numbers_side_by_side() {
    use crate::eval::report::{EvalReport, HeldOut, ModelEval};
    struct S {
        panel: ListenPanel,
        out: Outbox,
    }
    let dir = tempfile::tempdir().unwrap();
    let log = session(dir.path());
    prefer_b_all(&log, "ann");
    let form = ListenForm {
        log: log.display().to_string(),
        setup: SetupForm {
            dataset: "/data/folk".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut h = Harness::new_ui_state(
        |ui, s: &mut S| s.panel.ui(ui, ModelBusy::default(), &mut s.out),
        S {
            panel: ListenPanel::new(form, Player::silent()),
            out: Outbox::default(),
        },
    );
    h.run();
    h.get_by_label("Results (owner)").click();
    h.run();
    assert!(h.query_by_label_contains("won 4 of 4 votes").is_some());
    assert!(
        h.query_by_label_contains("p = 0.1250").is_some(),
        "4/4: p = 1/8"
    );
    assert!(h.query_by_label("low").is_some() && h.query_by_label("high").is_some());
    assert!(h.query_by_label("ann").is_some(), "per-rater row");
    assert!(h
        .query_by_label_contains("no objective report yet")
        .is_some());

    h.get_by_label("Compute metrics").click();
    h.step();
    let job = match h.state().out.commands() {
        [Command::Evaluate {
            job,
            models,
            dataset,
            save,
            ..
        }] => {
            assert_eq!(models, &["a", "b"]);
            assert_eq!(dataset, &PathBuf::from("/data/folk"));
            assert_eq!(
                save.as_deref(),
                Some(dir.path().join("metrics.json").as_path())
            );
            *job
        }
        other => panic!("expected Evaluate, got {other:?}"),
    };
    assert!(h.state().panel.owns(job));
    // The engine writes the report (matched to the session by weights hash), then says so.
    let eval = |model: &str, sha: &str, ce: f64| ModelEval {
        model: model.into(),
        weights_sha256: sha.into(),
        held_out: HeldOut {
            ce,
            ppl: ce.exp(),
            ce_q: vec![ce],
            ppl_q: vec![ce.exp()],
            tokens: 10,
        },
        generated: None,
        eval_seconds: 0.1,
    };
    let report = EvalReport {
        dataset: "/data/folk".into(),
        split: crate::data::dataset::Split::Test,
        options: Default::default(),
        models: vec![eval("a", "0", 5.125), eval("b", "1", 2.25)],
        caveat: String::new(),
    };
    report.save(&dir.path().join("metrics.json")).unwrap();
    let s = h.state_mut();
    assert!(s.panel.on_event(
        &Event::Done {
            job,
            result: Ok(JobOutput::Evaluated(Box::new(report))),
        },
        &mut s.out
    ));
    h.run();
    assert!(h.query_by_label("5.1250").is_some() && h.query_by_label("2.2500").is_some());
    assert!(h.query_by_label_contains("held-out CE: B").is_some());

    h.get_by_label("Export CSV + JSON").click();
    h.run();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();
    assert_eq!(
        json["verdict"]["rows"][1]["metrics"]["held_out"]["ce"],
        2.25
    );
    let csv = std::fs::read_to_string(dir.path().join("results.csv")).unwrap();
    assert!(
        csv.starts_with("kind,name,wins_b") && csv.contains("ann"),
        "{csv}"
    );
}

// ---- the studio killed mid-session ----------------------------------------------------

const KILL_ENV: &str = "TUNELAB_STUDIO_KILL_LOG";

/// The child's role in `studio_killed_mid_session_loses_no_answer` (run in a copy of this test
/// binary that the test starts): a rater answers from the keyboard in the Listen panel,
/// printing `ANSWERED n` once the panel shows trial n + 1 (the answer is on disk by then), until
/// the parent kills the process.
fn answer_until_killed(log: PathBuf) {
    let form = ListenForm {
        log: log.display().to_string(),
        rater: "kim".into(),
        ..Default::default()
    };
    let mut h = Harness::new_ui_state(
        |ui, p: &mut ListenPanel| p.ui(ui, ModelBusy::default(), &mut Outbox::default()),
        ListenPanel::new(form, Player::silent()),
    );
    h.get_by_label("Open session").click();
    h.run();
    let mut answered = 0;
    loop {
        h.key_press(egui::Key::Num2);
        h.step();
        let now = h.state().view.as_ref().map_or(0, |v| v.answered);
        if now > answered {
            answered = now;
            println!("ANSWERED {answered}");
        }
        if h.state().view.as_ref().is_some_and(|v| v.finished) {
            // The parent kills us long before the last trial; end rather than linger.
            std::thread::sleep(Duration::from_secs(30));
            panic!("the session ended and nobody killed this studio");
        }
    }
}

/// Kills the child process however the test ends.
struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The studio process is SIGKILLed while a rater answers: every answer the panel had shown
/// as done is in the log, and a new studio resumes the rater at the next trial.
#[test]
fn studio_killed_mid_session_loses_no_answer() {
    use std::io::BufRead;
    // In the copy of this binary the test starts, this test is the rater's studio.
    if let Some(log) = std::env::var_os(KILL_ENV) {
        answer_until_killed(PathBuf::from(log));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = session(dir.path());
    // A long session so the kill lands mid-way.
    let mut spec = SessionLog::open(&log).unwrap().spec().clone();
    spec.trials = 400;
    std::fs::remove_file(&log).unwrap();
    SessionLog::create(&log, spec).unwrap();

    let module = module_path!();
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            &format!("{module}::studio_killed_mid_session_loses_no_answer"),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(KILL_ENV, &log)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let mut shown = 0;
    for line in std::io::BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(n) = line.strip_prefix("ANSWERED ") {
            shown = n.trim().parse().unwrap();
            if shown >= 12 {
                break;
            }
        }
    }
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    assert!(shown >= 12, "the child answered {shown}");

    let on_disk = SessionLog::open(&log).unwrap().answers().len();
    assert!(
        on_disk >= shown,
        "{shown} shown as answered, {on_disk} on disk"
    );
    assert!(on_disk < 400, "killed mid-session");
    // A new studio resumes the rater where the log ends.
    let form = ListenForm {
        log: log.display().to_string(),
        rater: "kim".into(),
        ..Default::default()
    };
    let mut h = Harness::new_ui_state(
        |ui, p: &mut ListenPanel| p.ui(ui, ModelBusy::default(), &mut Outbox::default()),
        ListenPanel::new(form, Player::silent()),
    );
    h.get_by_label("Open session").click();
    h.run();
    let next = format!("Trial {} of 400", on_disk + 1);
    assert!(h.query_by_label_contains(&next).is_some(), "{next}");
}
