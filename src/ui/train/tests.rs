//! The Train panel's tests: start / pause / resume / stop, live curves, comparison and previews.

use super::*;
use crate::store::run_config::{Mode, TrainConfig};
use crate::train::events::{StepMetrics, ValidMetrics};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;

struct S {
    panel: TrainPanel,
    out: Outbox,
}

fn harness() -> Harness<'static, S> {
    harness_with(TrainForm::default())
}

fn harness_with(form: TrainForm) -> Harness<'static, S> {
    Harness::new_ui_state(
        draw,
        S {
            panel: TrainPanel::new(form, Player::silent()),
            out: Outbox::default(),
        },
    )
}

fn draw(ui: &mut egui::Ui, s: &mut S) {
    s.panel.ui(ui, ModelBusy::default(), &mut s.out);
}

/// Hands the panel an engine event; whether it was the panel's.
fn event(h: &mut Harness<'static, S>, ev: Event) -> bool {
    let s = h.state_mut();
    s.panel.on_event(&ev, &mut s.out)
}

fn step(n: usize) -> TrainEvent {
    TrainEvent::Step(StepMetrics {
        step: n,
        ce: 8.0 - n as f64 * 0.1,
        ppl: 1.0,
        ce_q: vec![7.0, 8.0, 8.5, 9.0],
        ppl_q: vec![1.0; 4],
        lr: 1e-4,
        grad_norm: 0.5,
        tokens_per_s: 100.0,
        seconds: 2.0,
    })
}

#[test]
fn start_pause_resume_stop_send_the_commands_and_events_draw_curves() {
    let mut h = harness();
    h.get_by_label("Start training").click();
    h.run();
    let job = match h.state().out.commands() {
        [Command::Train {
            job,
            config: Some(c),
            run_dir,
        }] => {
            assert_eq!(c.mode, Mode::Full);
            assert_eq!(run_dir, &PathBuf::from(TrainForm::default().run_dir));
            *job
        }
        other => panic!("expected a Train command, got {other:?}"),
    };
    h.state_mut().out.take();
    // Engine events: started, three steps, a validation.
    let events = vec![
        TrainEvent::Started {
            step: 0,
            total: 1000,
            trainable_parameters: 1,
        },
        step(1),
        step(2),
        step(3),
        TrainEvent::Valid(ValidMetrics {
            step: 3,
            ce: 7.5,
            ppl: 1.0,
            ce_q: vec![],
            ppl_q: vec![],
            tokens: 10,
        }),
    ];
    assert!(event(
        &mut h,
        Event::Train {
            job,
            events,
            paused: false,
        }
    ));
    h.run();
    assert_eq!(h.state().panel.curves.train_ce.len(), 3);
    assert_eq!(h.state().panel.curves.train_ce_q.len(), 4);
    assert_eq!(h.state().panel.curves.valid_ce, vec![[3.0, 7.5]]);
    h.get_by_label("Pause").click();
    h.run();
    assert!(matches!(h.state().out.commands(), [Command::PauseTraining]));
    h.state_mut().out.take();
    event(
        &mut h,
        Event::Train {
            job,
            events: vec![],
            paused: true,
        },
    );
    h.run();
    h.get_by_label("Continue").click();
    h.run();
    assert!(matches!(
        h.state().out.commands(),
        [Command::ResumeTraining]
    ));
    h.state_mut().out.take();
    h.get_by_label("Stop").click();
    h.run();
    assert!(matches!(h.state().out.commands(), [Command::StopTraining]));
    // Another job's events are ignored; the run's end returns the panel to idle.
    assert!(!event(
        &mut h,
        Event::Train {
            job: job + 7,
            events: vec![step(9)],
            paused: false,
        }
    ));
    assert_eq!(h.state().panel.curves.train_ce.len(), 3);
    assert!(event(
        &mut h,
        Event::Done {
            job,
            result: Err("boom".into()),
        }
    ));
    h.run();
    assert_eq!(h.state().panel.state, RunStatus::Idle);
    assert!(h.state().panel.log.iter().any(|l| l.contains("boom")));
}

/// A run folder as the trainer leaves it: config, checkpoints, metrics of `steps` steps.
fn fake_run(dir: &Path, steps: usize, mode: &str) {
    std::fs::create_dir_all(dir.join("checkpoints")).unwrap();
    std::fs::create_dir_all(dir.join("model")).unwrap();
    std::fs::write(dir.join("model/config.json"), "{}").unwrap();
    let mut cfg = serde_json::to_value(TrainConfig::default()).unwrap();
    cfg["mode"] = mode.into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let mut lines = vec![serde_json::json!({"kind": "start", "total": steps}).to_string()];
    for n in 1..=steps {
        let TrainEvent::Step(m) = step(n) else {
            unreachable!()
        };
        let mut v = serde_json::to_value(m).unwrap();
        v["kind"] = "train".into();
        lines.push(v.to_string());
    }
    std::fs::write(dir.join("metrics.jsonl"), lines.join("\n")).unwrap();
}

#[test]
fn another_runs_curves_overlay_and_the_runs_previews_play() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    fake_run(&a, 5, "lora");
    fake_run(&b, 3, "full");
    crate::data::audio::write_wav(
        &b.join("previews/step-000002.wav"),
        &vec![0.1; 16_000],
        16_000,
    )
    .unwrap();
    std::fs::write(b.join("previews/step-000003.mid"), b"MThd").unwrap();
    let form = TrainForm {
        run_dir: b.display().to_string(),
        ..Default::default()
    };
    let mut h = harness_with(form);
    assert_eq!(h.state().panel.curves.train_ce.len(), 3);
    assert_eq!(
        h.state()
            .panel
            .previews
            .iter()
            .map(|p| p.0)
            .collect::<Vec<_>>(),
        [2, 3]
    );
    h.get_by_label("Compare with…").click();
    h.run();
    h.get_by_label_contains("a (MusicGen, lora)").click();
    h.run();
    let (name, other) = h.state().panel.compare.as_ref().unwrap();
    assert_eq!(name, "a");
    assert_eq!(other.train_ce.len(), 5);
    assert_eq!(h.state().panel.curves.train_ce.len(), 3, "own curves kept");
    assert!(h.query_by_label_contains("comparing with a").is_some());
    // A MIDI preview without its rendering cannot play; the WAV one does.
    {
        use egui_kittest::kittest::NodeT;
        assert!(h.get_by_label("Play step 3").accesskit_node().is_disabled());
    }
    h.get_by_label("Play step 2").click();
    h.step();
    h.step();
    assert!(h.state().panel.preview_playing());
    assert!(h.query_by_label("Stop preview").is_some());
    // A preview arriving from the running job joins the list.
    h.state_mut().panel.job = Some(9);
    event(
        &mut h,
        Event::Train {
            job: 9,
            events: vec![TrainEvent::Preview {
                step: 4,
                path: b.join("previews/step-000004.wav"),
            }],
            paused: false,
        },
    );
    assert_eq!(h.state().panel.previews.len(), 3);
}

/// Before any curve the charts' place says what will appear and how, instead of empty axes;
/// once a run has started it says it waits for the first step; the first step draws the charts.
#[test]
fn before_any_curve_the_charts_say_how_to_get_one() {
    // A run folder with nothing in it (the default one may hold the demo's run).
    let dir = tempfile::tempdir().unwrap();
    let form = TrainForm {
        run_dir: dir.path().join("run").display().to_string(),
        ..TrainForm::default()
    };
    let mut h = harness_with(form);
    h.run();
    assert!(h.state().panel.curves.train_ce.is_empty());
    assert!(h.query_by_label(empty_charts(false)).is_some());
    assert!(h.query_by_label("Per codebook").is_none());
    h.get_by_label("Start training").click();
    h.run();
    let job = h.state().panel.job.expect("a training job");
    assert!(h.query_by_label(empty_charts(true)).is_some());
    assert!(h.query_by_label(empty_charts(false)).is_none());
    assert!(event(
        &mut h,
        Event::Train {
            job,
            events: vec![step(1)],
            paused: false,
        }
    ));
    h.run();
    assert!(h.query_by_label(empty_charts(true)).is_none());
    assert!(h.query_by_label("Per codebook").is_some());
}
