//! The shell's tests: dropped files, the theme, events routed to the panel that started the
//! job, cross-panel requests, persisted state, and the one audio stream.

use std::cell::Cell;
use std::rc::Rc;

use super::*;
use crate::audio::NullSink;
use crate::engine::ModelInfo;
use crate::models::Family;
use crate::train::events::TrainEvent;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;

use crate::ui::common::Dropped;

/// The app on a silent sink, with how many times its audio output was opened.
fn silent_app(state: State) -> (TunelabApp, Rc<Cell<usize>>) {
    let opened = Rc::new(Cell::new(0));
    let count = opened.clone();
    let app = TunelabApp::with_audio(state, Arc::new(|| {}), move || {
        count.set(count.get() + 1);
        (Box::new(NullSink::default()), None)
    });
    (app, opened)
}

/// The studio at 1280 × 800 (its smallest window is 960 × 600).
fn app(state: State) -> Harness<'static, TunelabApp> {
    Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_ui_state(
            |ui, app: &mut TunelabApp| app.frame(ui),
            silent_app(state).0,
        )
}

#[test]
fn a_folder_dropped_on_the_window_becomes_the_dataset_source() {
    let dir = tempfile::tempdir().unwrap();
    let songs = dir.path().join("my songs");
    std::fs::create_dir_all(&songs).unwrap();
    let mut state = State::default();
    state.dataset.dataset = dir.path().join("datasets/old").display().to_string();
    let mut h = app(state);
    assert_eq!(h.state().tab(), Tab::Generate);
    h.input_mut()
        .dropped_files
        .push(Arc::new(Dropped(songs.clone())));
    h.step();
    h.step();
    let a = h.state();
    assert_eq!(a.tab(), Tab::Dataset);
    assert_eq!(a.panels.dataset.form.source, songs.display().to_string());
    assert_eq!(
        a.panels.dataset.form.dataset,
        dir.path().join("datasets/my songs").display().to_string()
    );
    assert!(h.query_by_label_contains("press Import").is_some());
    // A dropped file stands for its folder.
    let file = songs.join("a.wav");
    h.input_mut().dropped_files.push(Arc::new(Dropped(file)));
    h.step();
    assert_eq!(
        h.state().panels.dataset.form.source,
        songs.display().to_string()
    );
    // What eframe would save now has the new source and tab.
    let saved = h.state().persisted();
    assert_eq!(saved.tab, Tab::Dataset);
    assert_eq!(saved.dataset.source, songs.display().to_string());
}

#[test]
fn the_theme_follows_the_system_unless_fixed() {
    let mut h = app(State::default());
    h.step();
    assert_eq!(
        h.ctx.options(|o| o.theme_preference),
        egui::ThemePreference::System
    );
    h.get_by_label("Dark").click();
    h.step();
    h.step();
    assert_eq!(h.state().persisted().theme, Theme::Dark);
    assert_eq!(
        h.ctx.options(|o| o.theme_preference),
        egui::ThemePreference::Dark
    );
    h.get_by_label("System theme").click();
    h.step();
    h.step();
    assert_eq!(
        h.ctx.options(|o| o.theme_preference),
        egui::ThemePreference::System
    );
}

#[test]
fn every_tab_has_its_panel_and_the_tab_bar_shows_each() {
    let mut h = app(State::default());
    h.step();
    for t in Tab::ALL {
        assert_eq!(h.state().panels.get(t).tab(), t, "the panel behind {t}");
    }
    for t in Tab::ALL {
        h.get_by_label(t.title()).click();
        h.step();
        h.step();
        assert_eq!(h.state().tab(), t);
    }
}

#[test]
fn events_go_to_the_panel_whose_job_it_is_and_the_rest_to_the_status_bar() {
    let (mut app, _) = silent_app(State::default());
    app.panels.dataset.job = Some(41);
    app.panels.train.job = Some(42);
    // The import's failure is the Dataset panel's, shown there, not in the status bar.
    app.route(&Event::Done {
        job: 41,
        result: Err("disk full".into()),
    });
    assert_eq!(app.panels.dataset.error.as_deref(), Some("disk full"));
    assert_eq!(app.panels.dataset.job, None);
    assert!(!app.status().is_error());
    // The run's steps are the Train panel's.
    app.route(&Event::Train {
        job: 42,
        events: vec![TrainEvent::Started {
            step: 0,
            total: 9,
            trainable_parameters: 1,
        }],
        paused: false,
    });
    assert_eq!(app.panels.train.curves.total, 9);
    assert!(app.is_working(), "the run is under way");
    // A job nobody follows fails in the status bar, typed as an error.
    app.route(&Event::Done {
        job: 99,
        result: Err("boom".into()),
    });
    assert_eq!(app.status(), &Status::Error("Error: boom".into()));
    // A model load: its progress in the status bar, then the Generate panel's model.
    app.outbox.request(Request::TrackLoad {
        job: 7,
        what: "tiny".into(),
    });
    app.apply();
    assert_eq!(app.status(), &Status::Working("Loading tiny…".into()));
    app.route(&Event::Download {
        job: 7,
        file: "model.safetensors".into(),
        done: 1,
        total: 2,
    });
    assert_eq!(app.loading.as_ref().map(|l| l.done), Some(1));
    let info = ModelInfo {
        family: Family::Midi,
        source: None,
        description: "a tiny piano".into(),
        sample_rate: 32_000,
        codebooks: 1,
        parameters: 1,
        device: "cpu".into(),
        precision: Default::default(),
    };
    app.route(&Event::Done {
        job: 7,
        result: Ok(JobOutput::ModelLoaded(info.clone())),
    });
    assert_eq!(app.status(), &Status::Info("Loaded: a tiny piano".into()));
    assert_eq!(app.loading, None);
    assert_eq!(app.panels.generate.model, Some(info));
}

#[test]
fn train_on_a_dataset_hands_it_to_the_train_panel_at_the_end_of_the_frame() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("tunes");
    std::fs::create_dir_all(&ds).unwrap();
    std::fs::write(ds.join("events.jsonl"), "").unwrap();
    std::fs::write(ds.join("segments.jsonl"), "").unwrap();
    let (mut app, _) = silent_app(State::default());
    app.panels.train.form.config.family = Family::Musicgen;
    app.outbox.request(Request::TrainOn(ds.clone()));
    assert_eq!(app.tab(), Tab::Generate, "nothing happens mid-frame");
    app.apply();
    assert_eq!(app.tab(), Tab::Train);
    assert_eq!(app.panels.train.form.config.dataset, ds);
    assert_eq!(
        app.panels.train.form.config.family,
        Family::Midi,
        "a MIDI dataset"
    );
    assert_eq!(app.persisted().train.config.dataset, ds);
}

#[test]
fn the_runs_found_reach_the_generate_panels_model_picker() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("first");
    std::fs::create_dir_all(run.join("checkpoints")).unwrap();
    std::fs::create_dir_all(run.join("model")).unwrap();
    std::fs::write(run.join("model/config.json"), "{}").unwrap();
    std::fs::write(run.join("config.json"), r#"{"mode": "full"}"#).unwrap();
    let mut state = State::default();
    state.models.runs_dir = dir.path().display().to_string();
    let mut h = app(state);
    h.step();
    assert_eq!(h.state().panels.generate.runs().len(), 1);
    assert_eq!(h.state().panels.generate.runs()[0].dir, run);
}

#[test]
fn the_studio_opens_its_audio_output_once_and_panels_take_it_over_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let preview = dir.path().join("step-2.wav");
    crate::data::audio::write_wav(&preview, &vec![0.1; 16_000], 16_000).unwrap();
    let (app, opened) = silent_app(State::default());
    assert_eq!(opened.get(), 1, "one device stream for six panels");
    let mut h = Harness::new_ui_state(|ui, app: &mut TunelabApp| app.frame(ui), app);
    h.state_mut().panels.generate.clip = Some(crate::ui::generate::Shown {
        audio: Arc::new(vec![0.0; 64_000]),
        rate: 32_000,
        file: None,
    });
    h.step();
    h.key_press(egui::Key::Space);
    h.step();
    h.step();
    assert!(h.query_by_label("Pause").is_some(), "the clip plays");
    // The Train panel plays a preview through the same stream: the clip stops.
    h.state_mut().panels.train.play_preview(&preview);
    assert!(h.state().panels.train.preview_playing());
    h.step();
    h.step();
    assert!(
        h.query_by_label("Play").is_some(),
        "the Generate panel shows its clip stopped"
    );
    assert_eq!(opened.get(), 1);
}

fn midi_info() -> ModelInfo {
    ModelInfo {
        family: Family::Midi,
        source: Some(crate::demo::model_dir()),
        description: "Music Transformer".into(),
        sample_rate: 44_100,
        codebooks: 1,
        parameters: 1,
        device: "cpu".into(),
        precision: Default::default(),
    }
}

#[test]
fn the_status_bar_names_the_loaded_model_and_the_generate_form_follows_every_load() {
    // (The Generate panel's own tests load "Random musicgen-small" without an engine.)
    let mut h = app(State::default());
    h.step();
    assert!(h.query_by_label("no model loaded").is_some());
    assert!(h.query_by_label("engine: idle").is_some());
    h.state_mut().outbox.request(Request::TrackLoad {
        job: 998,
        what: "the demo".into(),
    });
    h.state_mut().apply();
    h.step();
    assert!(h.query_by_label("engine: loading").is_some());
    // A load from the Models tab (the demo model) is what the Generate form names then.
    h.state_mut().route(&Event::Done {
        job: 999,
        result: Ok(JobOutput::ModelLoaded(midi_info())),
    });
    h.run();
    assert!(h.query_by_label("engine: idle").is_some());
    assert_eq!(
        h.state().panels.generate.form.model_spec,
        crate::demo::model_dir().display().to_string()
    );
    assert!(h
        .query_by_label_contains("demo: Bach chorales (Music Transformer) · Music Transformer")
        .is_some());
    assert!(h.state().model().is_some());
}

#[test]
fn keys_open_the_tabs_and_the_help_and_the_welcome_shows_until_dismissed() {
    let mut h = app(State::default());
    h.step();
    assert!(
        !h.state().welcome_shown(),
        "tests and benchmarks start without it"
    );
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Num3);
    h.step();
    assert_eq!(h.state().tab(), Tab::Library);
    assert!(h.query_by_label_contains("No clips yet.").is_some());
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Num7);
    h.step();
    assert_eq!(h.state().tab(), Tab::Listen);
    h.key_press(egui::Key::F1);
    h.step();
    assert!(h.state().help_shown());
    h.run();
    assert!(h.query_by_label("Ctrl+1 … Ctrl+7").is_some());
    h.key_press(egui::Key::Escape);
    h.step();
    assert!(!h.state().help_shown());
    // The welcome: a button per thing to try; once used or closed it is never shown again.
    h.state_mut().show_welcome();
    h.run();
    assert!(h.query_by_label("2. Fine-tune on the folk tunes").is_some());
    h.get_by_label("1. Generate a piece").click();
    h.run();
    assert_eq!(h.state().tab(), Tab::Generate);
    assert!(!h.state().welcome_shown());
    assert!(h.state().persisted().welcome_done);
    // The help brings it back; Close dismisses it.
    h.get_by_label("Help").click();
    h.run();
    h.get_by_label("Show the welcome again").click();
    h.run();
    assert!(h.state().welcome_shown());
    h.get_by_label("Close").click();
    h.run();
    assert!(!h.state().welcome_shown());
    // The UI scale is kept.
    h.ctx.set_zoom_factor(1.25);
    h.step();
    assert_eq!(h.state().persisted().zoom, 1.25);
}

#[test]
fn a_clip_generated_reaches_the_library_and_a_library_clip_reaches_generate_and_listen() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = State::default();
    state.generate.clips_dir = dir.path().display().to_string();
    let (mut app, _) = silent_app(state);
    let entry = crate::ui::generate::HistoryEntry {
        file: dir.path().join("clip.wav"),
        model: "facebook/musicgen-small".into(),
        adapter: None,
        checkpoint: None,
        created: 1,
        clip: crate::ui::generate::ClipParams::Musicgen {
            params: crate::generate::GenerateParams {
                prompt: "sea shanty".into(),
                ..Default::default()
            },
        },
    };
    app.outbox.request(Request::ClipAdded {
        entry: Box::new(entry.clone()),
        audio: Arc::new(vec![0.1; 3200]),
        rate: 32_000,
    });
    app.apply();
    assert_eq!(app.panels.library.entries, vec![entry.clone()]);
    app.outbox.request(Request::AudioPrompt(entry.file.clone()));
    app.apply();
    assert_eq!(app.tab(), Tab::Generate);
    assert_eq!(
        app.panels.generate.form.params.prompt_audio,
        Some(entry.file.clone())
    );
    app.outbox.request(Request::ListenTest {
        model_a: "base".into(),
        model_b: Some("tuned".into()),
        prompts: vec!["sea shanty".into(), "reel".into()],
    });
    app.apply();
    assert_eq!(app.tab(), Tab::Listen);
    let setup = &app.panels.listen.form.setup;
    assert_eq!(
        (setup.model_a.as_str(), setup.model_b.as_str()),
        ("base", "tuned")
    );
    assert_eq!(setup.prompts, "sea shanty\nreel");
}

#[test]
fn the_welcomes_ab_step_prepares_the_blind_test_once_the_fine_tune_exists() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("folk-finetune");
    let mut state = State::default();
    state.listen.setup.model_b = run.display().to_string();
    state.listen.setup.out = dir.path().join("session").display().to_string();
    let mut h = app(state);
    h.state_mut().show_welcome();
    h.run();
    h.get_by_label("3. A/B the two").click();
    h.run();
    assert_eq!(h.state().tab(), Tab::Listen);
    assert!(
        h.state().panels.listen.jobs().is_empty(),
        "no fine-tune yet"
    );
    assert!(h.state().status().text().starts_with("Fine-tune first"));
    // With the run there, the same step sends the session to be prepared.
    std::fs::create_dir_all(run.join("checkpoints")).unwrap();
    std::fs::create_dir_all(run.join("model")).unwrap();
    std::fs::write(run.join("model/config.json"), "{}").unwrap();
    let (mut app, _) = silent_app(h.state().persisted());
    app.show_welcome();
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_ui_state(|ui, app: &mut TunelabApp| app.frame(ui), app);
    h.run();
    h.get_by_label("3. A/B the two").click();
    h.step();
    assert_eq!(h.state().panels.listen.jobs().len(), 1);
}

#[test]
fn a_session_given_on_the_command_line_opens_ready_to_rate() {
    let dir = tempfile::tempdir().unwrap();
    let log = crate::ui::listen::tests::session(dir.path());
    let (mut app, _) = silent_app(State::default());
    app.show_welcome();
    app.open_session(&log, Some("ana"));
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_ui_state(|ui, app: &mut TunelabApp| app.frame(ui), app);
    h.run();
    assert_eq!(h.state().tab(), Tab::Listen);
    assert!(
        !h.state().welcome_shown(),
        "a rater goes straight to the trials"
    );
    assert!(h.query_by_label_contains("Trial 1 of 4").is_some());
    // Without a rater the panel asks for one.
    let (mut app, _) = silent_app(State::default());
    app.open_session(&log, None);
    assert_eq!(
        app.panels.listen.error.as_deref(),
        Some("Enter your name (answers are kept per rater).")
    );
}
