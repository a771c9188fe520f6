//! The whole studio on the tiny model, through the real widgets and the real engine thread:
//! load a model → generate a clip → import a dataset → train a few steps (the charts get points).

#![cfg(feature = "gui")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use tunelab::ui::{State, Tab, TunelabApp};

fn wait_for(h: &mut Harness<'_, TunelabApp>, what: &str, label: &str) {
    let start = Instant::now();
    loop {
        h.step();
        if h.query_by_label_contains(label).is_some() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

#[test]
fn load_generate_import_and_train_in_the_studio() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("audio");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..4 {
        let x: Vec<f32> = (0..48_000)
            .map(|n| {
                0.3 * (n as f32 * (200.0 + 50.0 * i as f32) * std::f32::consts::TAU / 32_000.0)
                    .sin()
            })
            .collect();
        tunelab::data::audio::write_wav(&src.join(format!("t{i}.wav")), &x, 32_000).unwrap();
    }
    let mut state = State {
        tab: Tab::Models,
        ..Default::default()
    };
    state.models.spec = tiny_dir().display().to_string();
    state.models.runs_dir = tmp.path().join("runs").display().to_string();
    state.generate.params.duration = 1.0;
    state.generate.clips_dir = tmp.path().join("clips").display().to_string();
    // Played by hand below (playing while generating is the Generate panel's own tests').
    state.generate.play_while_generating = false;
    state.dataset.source = src.display().to_string();
    state.dataset.dataset = tmp.path().join("ds").display().to_string();
    state.dataset.segment_seconds = 1.0;
    state.train.config.model = tiny_dir().display().to_string();
    state.train.config.steps = 3;
    state.train.config.eval_every = 0;
    state.train.run_dir = tmp.path().join("runs/first").display().to_string();
    let eval_ds = dataset(&tmp.path().join("evalset"));
    state.evaluate.baseline = tiny_dir().display().to_string();
    state.evaluate.candidate = tmp.path().join("runs/first").display().to_string();
    state.evaluate.dataset = eval_ds.display().to_string();
    state.evaluate.clips = 1;
    state.evaluate.seconds = 1.0;
    let app = TunelabApp::with_waker(state, Arc::new(|| {}));
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_ui_state(|ui, app: &mut TunelabApp| app.frame(ui), app);

    h.get_by_label("Load model").click();
    wait_for(&mut h, "the model", "Loaded:");

    h.get_by_label("Generate").click();
    h.step();
    h.get_by_label("Generate clip").click();
    wait_for(&mut h, "the clip", "Generated 1.0 s");
    // The clip joins the history with its parameters, on disk too.
    wait_for(&mut h, "the history", "History (1)");
    let start = Instant::now();
    while tunelab::ui::generate::read_history(&tmp.path().join("clips")).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "history written");
        std::thread::sleep(Duration::from_millis(20));
    }
    h.get_by_label("Play").click();
    h.step();
    h.step();
    assert!(h.query_by_label("Pause").is_some(), "playing");
    h.get_by_label("Stop").click();
    h.step();

    h.get_by_label("Dataset").click();
    h.step();
    h.get_by_label("Import").click();
    wait_for(&mut h, "the import", "Imported 4 files");
    h.get_by_label("Train on this dataset").click();
    h.step();
    h.step();
    assert!(
        h.query_by_label_contains("Start training").is_some(),
        "on the Train tab"
    );
    h.get_by_label("Start training").click();
    wait_for(&mut h, "three steps", "step 3/3");
    wait_for(&mut h, "the end of the run", "Finished at step 3");
    // Reloading the run shows its curves and its own resolved configuration.
    h.get_by_label("Show run's curves").click();
    h.step();
    h.step();
    assert!(h.query_by_label_contains("step 3/3").is_some());

    // The run is now a model on the Models tab.
    h.get_by_label("Models").click();
    h.step();
    h.get_by_label("Rescan runs").click();
    h.step();
    assert!(h
        .query_by_label_contains("first · full · step 3 · MusicGen on")
        .is_some());

    // Baseline against the new run, on another dataset's test split.
    h.get_by_label("Evaluate").click();
    h.step();
    h.get_by_label("Run evaluation").click();
    wait_for(&mut h, "the evaluation", "not comparable with VGGish");
    assert!(
        h.query_by_label_contains("runs/first").is_some(),
        "a row per model"
    );
}

/// The MIDI family in the studio, as the offline demo is used: a Music Transformer folder loads
/// like any model (its family shown, MusicGen-only controls hidden); a primed piece is written
/// as `.mid` and rendered, and plays; a folder of MIDI imports; the model is fine-tuned on it
/// with live steps; the fine-tune continues the same prime; both pieces are compared in the
/// Library and sent from there to a blind session, which is prepared and opens.
#[test]
fn a_music_transformer_generates_trains_and_is_compared_in_the_studio() {
    use tunelab::models::music_transformer::{save, MusicTransformerConfig};
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("mt");
    let cfg = MusicTransformerConfig::preset("tiny").unwrap();
    save(
        &model,
        &cfg,
        &cfg.init_tensors(0, &candle_core::Device::Cpu).unwrap(),
    )
    .unwrap();
    let mut state = State {
        tab: Tab::Generate,
        ..Default::default()
    };
    state.generate.model_spec = model.display().to_string();
    // Primed: the piece continues the first second of a melody (so it has notes whatever a
    // random model adds).
    let prime = tmp.path().join("prime.mid");
    let melody: Vec<tunelab::data::midi::Note> = (0..8)
        .map(|i| tunelab::data::midi::Note {
            pitch: 60 + i,
            velocity: 80,
            start: i as f64 * 0.25,
            end: i as f64 * 0.25 + 0.2,
        })
        .collect();
    tunelab::data::midi::write_midi(&prime, &melody, 0).unwrap();
    state.generate.midi.prime = prime.display().to_string();
    state.generate.midi.prime_seconds = 1.0;
    state.generate.midi.params.seconds = Some(2.0);
    state.generate.midi.params.seed = 3;
    let songs = tmp.path().join("songs");
    for k in 0..6u8 {
        let notes: Vec<tunelab::data::midi::Note> = (0..24)
            .map(|i| tunelab::data::midi::Note {
                pitch: 55 + k + [0, 4, 7, 12][i % 4],
                velocity: 70,
                start: i as f64 * 0.2,
                end: i as f64 * 0.2 + 0.15,
            })
            .collect();
        tunelab::data::midi::write_midi(&songs.join(format!("song-{k}.mid")), &notes, 0).unwrap();
    }
    state.dataset.source = songs.display().to_string();
    state.dataset.dataset = tmp.path().join("ds").display().to_string();
    state.train.config.model = model.display().to_string();
    state.train.config.steps = 3;
    state.train.config.batch_size = 2;
    state.train.config.eval_every = 0;
    state.train.config.midi.max_events = Some(32);
    let run = tmp.path().join("runs/ft");
    state.train.run_dir = run.display().to_string();
    state.models.runs_dir = tmp.path().join("runs").display().to_string();
    state.listen.rater = "me".into();
    state.listen.setup.model_a = model.display().to_string();
    state.listen.setup.model_b = run.display().to_string();
    state.listen.setup.prompts = "improv".into();
    state.listen.setup.clips_per_prompt = 1;
    state.listen.setup.seconds = 2.0;
    state.listen.setup.trials = 2;
    state.listen.setup.out = tmp.path().join("session").display().to_string();
    state.generate.midi.out_dir = tmp.path().join("pieces").display().to_string();
    state.generate.clips_dir = tmp.path().join("clips").display().to_string();
    let mut app = TunelabApp::with_waker(state, Arc::new(|| {}));
    app.load_local_model(); // what the studio does on start with a local model
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_ui_state(|ui, app: &mut TunelabApp| app.frame(ui), app);
    wait_for(&mut h, "the model", "Loaded: Music Transformer");
    assert!(h
        .query_by_label_contains("MIDI · Music Transformer")
        .is_some());
    assert!(
        h.query_by_label_contains("CFG").is_none(),
        "CFG is MusicGen's"
    );
    h.get_by_label("Continue the prime").click();
    wait_for(&mut h, "the piece", "Generated");
    let mid = tmp.path().join("pieces/piece-3.mid");
    assert!(mid.is_file(), "the piece is written as MIDI");
    assert!(
        tmp.path().join("pieces/piece-3.wav").is_file(),
        "and rendered"
    );
    let (notes, _) = tunelab::data::midi::read_midi(&mid).unwrap();
    assert!(notes.len() >= 4, "the prime's first second is in the piece");
    h.get_by_label("Play").click();
    h.step();
    h.step();
    assert!(h.query_by_label("Pause").is_some(), "playing");
    h.get_by_label("Stop").click();
    h.step();

    h.get_by_label("Dataset").click();
    h.step();
    h.get_by_label("Import").click();
    wait_for(&mut h, "the import", "Imported 6 files");
    h.get_by_label("Train on this dataset").click();
    h.step();
    h.step();
    // The form's family follows the dataset (MIDI): a MusicGen run could not train on it.
    h.get_by_label("Start training").click();
    wait_for(&mut h, "three steps", "step 3/3");
    wait_for(&mut h, "the end of the run", "Finished at step 3");

    // The model picker lists the run with its family.
    h.get_by_label("Models").click();
    h.step();
    h.get_by_label("Rescan runs").click();
    h.step();
    assert!(h
        .query_by_label_contains("· full · step 3 · Music Transformer on")
        .is_some());

    // The fine-tune continues the same prime (picked from the Generate tab's runs); the two
    // pieces are in the Library, compared there by ear, and sent on to a blind test.
    h.get_by_label("Generate").click();
    h.step();
    h.get_by_label("Runs…").click();
    h.step();
    h.step();
    h.get_by_label("run: ft (Music Transformer, full)").click();
    h.step();
    h.get_by_label("Load").click();
    wait_for(
        &mut h,
        "the fine-tune",
        "ft · full · step 3 · Music Transformer",
    );
    h.get_by_label("Continue the prime").click();
    wait_for(&mut h, "the fine-tune's piece", "Generated");
    h.get_by_label("Library").click();
    h.step();
    let marks: Vec<_> = h.get_all_by_label("A/B").collect();
    assert_eq!(marks.len(), 2, "both pieces are listed");
    marks[1].click(); // the older: the base model's (A)
    h.step();
    h.step();
    h.get_by_label("A/B").click(); // the fine-tune's (B)
    h.step();
    h.step();
    h.get_by_label("Compare A/B").click();
    h.step();
    h.step();
    assert!(h.query_by_label("Hear B").is_some(), "loudness matched");
    h.get_by_label("Hear B").click();
    h.step();
    h.get_by_label("Listening test…").click();
    h.step();
    h.step();
    assert!(
        h.query_by_label("Prepare session").is_some(),
        "on the Listen tab"
    );
    assert!(h
        .query_by_label_contains("Model B: ft · full · step 3")
        .is_some());
    h.get_by_label("Prepare session").click();
    wait_for(&mut h, "the session", "Trial 1 of 2");
}
