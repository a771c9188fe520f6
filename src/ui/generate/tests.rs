//! The Generate panel's tests: batches and the history on disk, reloading an entry, saving,
//! the model picker (runs, checkpoints, adapters) and the keys.

use super::*;
use crate::engine::Command;
use crate::generate::GenerateParams;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;

type S = crate::ui::panel::hosted::Hosted<GeneratePanel>;

fn musicgen_info() -> ModelInfo {
    ModelInfo {
        family: Family::Musicgen,
        source: None,
        description: "tiny".into(),
        sample_rate: 32_000,
        codebooks: 4,
        parameters: 1,
        device: "cpu".into(),
        precision: Default::default(),
    }
}

fn form(clips: &Path) -> GenerateForm {
    GenerateForm {
        model_spec: "base-model".into(),
        clips_dir: clips.display().to_string(),
        ..Default::default()
    }
}

fn harness(panel: GeneratePanel) -> Harness<'static, S> {
    crate::ui::panel::hosted::harness(panel)
}

fn clip(seconds: f64) -> JobOutput {
    JobOutput::Clip(crate::generate::Clip {
        codes: vec![],
        audio: vec![0.1; (32_000.0 * seconds) as usize],
        sample_rate: 32_000,
    })
}

/// Waits (bounded) for the background writes of `n` history lines.
fn wait_for_history(clips: &Path, n: usize) -> Vec<HistoryEntry> {
    let start = std::time::Instant::now();
    loop {
        let h = read_history(clips);
        if h.len() >= n || start.elapsed() > Duration::from_secs(10) {
            return h;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_batch_of_variations_sends_consecutive_seeds_and_the_history_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clips = dir.path().join("clips");
    let mut f = form(&clips);
    f.params.seed = 7;
    f.params.sampling.temperature = 0.8;
    f.variations = 3;
    let mut panel = GeneratePanel::new(f.clone(), Player::silent());
    panel.model_loaded(1, musicgen_info());
    let mut h = harness(panel);
    h.get_by_label("Generate clip").click();
    h.run();
    let sent: Vec<(JobId, u64)> = h
        .state()
        .out
        .commands()
        .iter()
        .map(|c| match c {
            Command::Generate { job, params, .. } => {
                assert_eq!(params.prompt, f.params.prompt);
                assert_eq!(params.sampling.temperature, 0.8);
                (*job, params.seed)
            }
            other => panic!("expected Generate commands, got {other:?}"),
        })
        .collect();
    assert_eq!(sent.iter().map(|s| s.1).collect::<Vec<_>>(), [7, 8, 9]);
    assert!(h.state().panel.busy());
    assert!(h
        .state()
        .panel
        .progress()
        .is_some_and(|(_, t)| t.starts_with("clip 1 of 3")));
    for (k, (job, _)) in sent.iter().enumerate() {
        let s = h.state_mut();
        assert!(s.panel.on_event(
            &Event::Done {
                job: *job,
                result: Ok(clip(0.5 + k as f64 * 0.25)),
            },
            &mut s.out
        ));
    }
    h.run();
    assert!(!h.state().panel.busy());
    assert_eq!(h.state().panel.history.len(), 3);
    assert!(h.query_by_label_contains("seed 9 · \"lo-fi").is_some());
    let on_disk = wait_for_history(&clips, 3);
    assert_eq!(on_disk.len(), 3);
    for (e, seed) in on_disk.iter().zip([7, 8, 9]) {
        assert!(e.file.is_file(), "{} written", e.file.display());
        assert_eq!(e.model, "base-model");
        match &e.clip {
            ClipParams::Musicgen { params } => assert_eq!(params.seed, seed),
            other => panic!("{other:?}"),
        }
    }
    // A restart reads the same history.
    let again = GeneratePanel::new(f, Player::silent());
    assert_eq!(again.history, on_disk);
}

#[test]
fn a_history_entry_reloads_its_parameters_and_plays() {
    let dir = tempfile::tempdir().unwrap();
    let clips = dir.path().join("clips");
    let wav = clips.join("old.wav");
    crate::data::audio::write_wav(&wav, &vec![0.2; 16_000], 16_000).unwrap();
    let params = GenerateParams {
        prompt: "dark ambient drone".into(),
        duration: 12.0,
        seed: 42,
        sampling: crate::models::musicgen::sampling::SamplingParams {
            temperature: 0.7,
            top_k: 50,
            top_p: 0.9,
        },
        guidance_scale: 5.5,
        prompt_audio: None,
    };
    let entry = HistoryEntry {
        file: wav.clone(),
        model: "facebook/musicgen-small".into(),
        adapter: Some("/runs/my-lora".into()),
        checkpoint: None,
        created: 1,
        clip: ClipParams::Musicgen {
            params: params.clone(),
        },
    };
    crate::util::append_line(
        &history_path(&clips),
        &serde_json::to_string(&entry).unwrap(),
    )
    .unwrap();
    let mut h = harness(GeneratePanel::new(form(&clips), Player::silent()));
    assert_ne!(h.state().panel.form.params, params);
    h.get_by_label_contains("seed 42 · \"dark ambient drone\" · 12.0 s · T 0.70 · top-k 50")
        .click();
    h.run();
    let f = &h.state().panel.form;
    assert_eq!(f.params, params);
    assert_eq!(f.model_spec, "facebook/musicgen-small");
    assert_eq!(f.adapter, "/runs/my-lora");
    assert!(matches!(
        h.state().out.last_status(),
        Some(Status::Warning(s)) if s.contains("not the loaded one")
    ));
    h.get_by_label("Play this").click();
    h.step();
    h.step();
    assert!(h.query_by_label("Pause").is_some(), "the entry plays");
    let shown = h.state().panel.clip.as_ref().unwrap();
    assert_eq!((shown.rate, shown.audio.len()), (16_000, 16_000));
}

#[test]
fn save_wav_copies_the_clip_file() {
    let dir = tempfile::tempdir().unwrap();
    let clips = dir.path().join("clips");
    let mut panel = GeneratePanel::new(form(&clips), Player::silent());
    panel.model_loaded(1, musicgen_info());
    let mut out = Outbox::default();
    panel.generate(&mut out);
    let job = panel.pending[0].job;
    assert!(panel.on_event(
        &Event::Done {
            job,
            result: Ok(clip(0.25)),
        },
        &mut out
    ));
    let written = wait_for_history(&clips, 1);
    let dest = dir.path().join("mine.wav");
    let said = panel.save_wav(&dest);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(&written[0].file).unwrap()
    );
    assert_eq!(said, Status::Info(format!("Saved {}", dest.display())));
}

#[test]
fn the_model_picker_loads_an_adapter_and_clips_record_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut panel = GeneratePanel::new(form(&dir.path().join("clips")), Player::silent());
    panel.runs = vec![RunEntry {
        dir: dir.path().join("runs/my-lora"),
        family: "MusicGen".into(),
        mode: "lora".into(),
        base: "facebook/musicgen-small".into(),
        checkpoints: vec!["best".into(), "last".into(), "step-000010".into()],
    }];
    let song = dir.path().join("song.wav");
    let mut h = harness(panel);
    h.get_by_label("Runs…").click();
    h.run();
    h.get_by_label("adapter: my-lora on facebook/musicgen-small")
        .click();
    h.run();
    assert_eq!(h.state().panel.form.model_spec, "facebook/musicgen-small");
    h.get_by_label("Load").click();
    h.run();
    let (job, adapter) = match h.state().out.commands() {
        [Command::LoadModel {
            job, spec, adapter, ..
        }] => {
            assert_eq!(spec, "facebook/musicgen-small");
            (*job, adapter.clone())
        }
        other => panic!("expected a load, got {other:?}"),
    };
    assert_eq!(adapter, Some(dir.path().join("runs/my-lora")));
    h.state_mut().out.take();
    h.state_mut().panel.model_loaded(job, musicgen_info());
    // Continuation: the audio prompt chosen goes with the command.
    h.state_mut().panel.form.params.prompt_audio = Some(song.clone());
    h.run();
    h.get_by_label("Generate clip").click();
    h.run();
    match h.state().out.commands() {
        [Command::Generate { params, .. }] => {
            assert_eq!(params.prompt_audio.as_deref(), Some(song.as_path()))
        }
        other => panic!("expected a Generate, got {other:?}"),
    }
    let e = &h.state().panel.pending[0].entry;
    assert_eq!(e.model, "facebook/musicgen-small");
    assert_eq!(
        e.adapter.as_deref(),
        Some(
            dir.path()
                .join("runs/my-lora")
                .display()
                .to_string()
                .as_str()
        )
    );
}

#[test]
fn keys_play_stop_and_generate() {
    let dir = tempfile::tempdir().unwrap();
    let mut panel = GeneratePanel::new(form(&dir.path().join("clips")), Player::silent());
    panel.model_loaded(1, musicgen_info());
    panel.clip = Some(Shown {
        audio: Arc::new(vec![0.0; 64_000]),
        rate: 32_000,
        file: None,
    });
    let mut h = harness(panel);
    h.key_press(egui::Key::Space);
    h.step();
    h.step();
    assert!(h.query_by_label("Pause").is_some(), "Space plays");
    h.key_press(egui::Key::Escape);
    h.step();
    h.step();
    assert!(h.query_by_label("Play").is_some(), "Escape stops");
    assert!(h.state().out.commands().is_empty());
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Enter);
    h.step();
    assert!(
        matches!(h.state().out.commands(), [Command::Generate { .. }]),
        "Ctrl+Enter generates"
    );
    // Typing a space in the prompt does not play.
    h.state_mut().panel.pending.clear();
    h.get_by_role_and_label(egui::accesskit::Role::MultilineTextInput, "Prompt")
        .focus();
    h.step();
    h.key_press(egui::Key::Space);
    h.step();
    h.step();
    assert!(h.query_by_label("Play").is_some(), "a space typed is text");
}

#[test]
fn a_runs_checkpoint_is_picked_loaded_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("runs/folk");
    let mut panel = GeneratePanel::new(form(&dir.path().join("clips")), Player::silent());
    panel.runs = vec![RunEntry {
        dir: run.clone(),
        family: "Music Transformer".into(),
        mode: "full".into(),
        base: "classical".into(),
        checkpoints: vec!["best".into(), "last".into(), "step-000020".into()],
    }];
    let mut h = harness(panel);
    h.get_by_label("Runs…").click();
    h.run();
    assert!(
        h.query_by_label_contains("folk @ last").is_none(),
        "last is the run itself"
    );
    h.get_by_label_contains("folk @ step-000020").click();
    h.run();
    assert_eq!(h.state().panel.form.model_spec, run.display().to_string());
    assert_eq!(h.state().panel.form.checkpoint, "step-000020");
    h.get_by_label("Load").click();
    h.run();
    let job = match h.state().out.commands() {
        [Command::LoadModel {
            job,
            checkpoint,
            adapter: None,
            ..
        }] => {
            assert_eq!(checkpoint.as_deref(), Some("step-000020"));
            *job
        }
        other => panic!("expected a load, got {other:?}"),
    };
    h.state_mut().panel.model_loaded(job, musicgen_info());
    let loaded = h.state().panel.loaded_as.clone().unwrap();
    assert_eq!(loaded.checkpoint.as_deref(), Some("step-000020"));
    let mut out = Outbox::default();
    h.state_mut().panel.generate(&mut out);
    let e = &h.state().panel.pending[0].entry;
    assert_eq!(e.checkpoint.as_deref(), Some("step-000020"));
    assert!(e.summary().contains("folk @ step-000020"));
}

#[test]
fn cancel_names_every_generation_of_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = form(&dir.path().join("clips"));
    f.variations = 2;
    let mut panel = GeneratePanel::new(f, Player::silent());
    panel.model_loaded(1, musicgen_info());
    let mut h = harness(panel);
    h.get_by_label("Generate clip").click();
    h.run();
    let sent: Vec<JobId> = h.state().panel.pending.iter().map(|p| p.job).collect();
    assert_eq!(sent.len(), 2);
    assert!(h.state().out.cancels().is_empty());
    h.get_by_label("Cancel").click();
    h.run();
    assert_eq!(h.state().out.cancels(), sent.as_slice());
    // The jobs stay the panel's until the engine says they ended.
    assert_eq!(h.state().panel.jobs(), sent);
}

/// The null sink, logging what it is asked to play and append.
struct Logged {
    sink: crate::audio::NullSink,
    log: Log,
}

impl crate::audio::AudioSink for Logged {
    fn play(&mut self, s: Arc<Vec<f32>>, rate: u32, from: Duration) -> Result<(), String> {
        self.log.borrow_mut().push(("play", s.len()));
        self.sink.play(s, rate, from)
    }
    fn append(&mut self, s: &[f32]) -> Result<(), String> {
        self.log.borrow_mut().push(("append", s.len()));
        self.sink.append(s)
    }
    fn pause(&mut self) {
        self.sink.pause()
    }
    fn resume(&mut self) {
        self.sink.resume()
    }
    fn stop(&mut self) {
        self.log.borrow_mut().push(("stop", 0));
        self.sink.stop()
    }
    fn position(&self) -> Duration {
        self.sink.position()
    }
    fn is_playing(&self) -> bool {
        self.sink.is_playing()
    }
}

type Log = std::rc::Rc<std::cell::RefCell<Vec<(&'static str, usize)>>>;

/// The studio's one output, on a logged null sink.
fn logged_output() -> (crate::audio::SharedPlayer, Log) {
    let log = Log::default();
    let shared = crate::audio::SharedPlayer::new(Box::new(Logged {
        sink: crate::audio::NullSink::default(),
        log: log.clone(),
    }));
    (shared, log)
}

fn audio(job: JobId, start: usize, n: usize) -> Event {
    Event::Audio {
        job,
        start,
        samples: vec![0.1; n],
        sample_rate: 32_000,
    }
}

#[test]
fn the_first_clip_of_a_batch_plays_while_it_is_generated() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, log) = logged_output();
    let mut f = form(&dir.path().join("clips"));
    f.variations = 2;
    f.params.duration = 1.0;
    assert!(f.play_while_generating, "on by default");
    let mut panel = GeneratePanel::new(f, shared.handle());
    panel.model_loaded(1, musicgen_info());
    let mut out = Outbox::default();
    panel.generate(&mut out);
    let (first, second) = (panel.pending[0].job, panel.pending[1].job);
    for k in 0..10 {
        assert!(panel.on_event(&audio(first, k * 3_200, 3_200), &mut out));
        if k == 0 {
            let shown = panel.clip.as_ref().expect("the waveform shows at once");
            assert_eq!(shown.audio.len(), 3_200);
        }
    }
    // However fast the chunks came, all of the clip is there: it plays, every sample once.
    let heard: usize = log
        .borrow()
        .iter()
        .filter(|(what, _)| *what != "stop")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(log.borrow().first().map(|l| l.0), Some("play"));
    assert_eq!(heard, 32_000, "{:?}", log.borrow());
    assert!(panel.player.is_playing());
    assert!(panel.on_event(
        &Event::Done {
            job: first,
            result: Ok(clip(1.0)),
        },
        &mut out
    ));
    assert_eq!(panel.history.len(), 1);
    assert_eq!(panel.clip.as_ref().map(|c| c.audio.len()), Some(32_000));
    assert!(panel.last_speed.is_some(), "the speed is kept for the next");
    // The second clip of the batch does not cut the first one off.
    let before = log.borrow().len();
    assert!(panel.on_event(&audio(second, 0, 3_200), &mut out));
    assert_eq!(log.borrow().len(), before, "{:?}", log.borrow());
}

#[test]
fn a_cancelled_or_broken_stream_stops_and_a_clip_without_streaming_stays_silent() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, log) = logged_output();
    let mut f = form(&dir.path().join("clips"));
    f.params.duration = 0.5;
    let mut panel = GeneratePanel::new(f, shared.handle());
    panel.model_loaded(1, musicgen_info());
    let mut out = Outbox::default();

    // Cancelled once playing: playback stops.
    panel.generate(&mut out);
    let job = panel.pending[0].job;
    assert!(panel.on_event(&audio(job, 0, 16_000), &mut out));
    assert_eq!(log.borrow().first(), Some(&("play", 16_000)));
    panel.cancel(&mut out);
    assert_eq!(log.borrow().last(), Some(&("stop", 0)));
    assert!(!panel.player.is_playing());
    panel.pending.clear();

    // A gap between chunks ends the stream with a warning; the clip still arrives whole.
    log.borrow_mut().clear();
    panel.generate(&mut out);
    let job = panel.pending[0].job;
    assert!(panel.on_event(&audio(job, 0, 100), &mut out));
    assert!(panel.on_event(&audio(job, 5_000, 100), &mut out));
    assert!(matches!(
        out.last_status(),
        Some(Status::Warning(s)) if s.contains("a gap or an overlap")
    ));
    assert!(panel.on_event(
        &Event::Done {
            job,
            result: Ok(clip(0.5)),
        },
        &mut out
    ));
    assert_eq!(panel.history.len(), 1);

    // Switched off: nothing is played.
    log.borrow_mut().clear();
    panel.form.play_while_generating = false;
    panel.generate(&mut out);
    let job = panel.pending[0].job;
    assert!(panel.on_event(&audio(job, 0, 16_000), &mut out));
    assert!(panel.on_event(
        &Event::Done {
            job,
            result: Ok(clip(0.5)),
        },
        &mut out
    ));
    assert!(log.borrow().is_empty(), "{:?}", log.borrow());
}

/// The tab loads a MusicGen in the weight mode its form names: the studio's default unless the
/// Weights picker says otherwise.
#[test]
fn models_load_in_the_forms_weight_mode() {
    use crate::models::nn::WeightMode;
    let dir = tempfile::tempdir().unwrap();
    let f = form(&dir.path().join("clips"));
    assert_eq!(GenerateForm::default().weights, WeightMode::STUDIO_DEFAULT);
    let mut h = harness(GeneratePanel::new(f, Player::silent()));
    for want in [WeightMode::STUDIO_DEFAULT, WeightMode::F32, WeightMode::Q4] {
        h.state_mut().panel.form.weights = want;
        h.state_mut().out.take();
        h.run();
        h.get_by_label("Load").click();
        h.run();
        match h.state().out.commands() {
            [Command::LoadModel { weights, .. }] => assert_eq!(*weights, want),
            other => panic!("expected a load, got {other:?}"),
        }
    }
}

#[test]
fn random_musicgen_small_is_what_the_model_field_names_and_load_loads_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(GeneratePanel::new(
        form(&dir.path().join("clips")),
        Player::silent(),
    ));
    h.run();
    assert!(h.query_by_label("Model: base-model (not found)").is_some());
    h.get_by_label("Random musicgen-small").click();
    h.run();
    let job = match h.state_mut().out.take().commands.as_slice() {
        [Command::LoadRandom { job, .. }] => *job,
        other => panic!("{other:?}"),
    };
    let mut out = Outbox::default();
    h.state_mut().panel.on_event(
        &Event::Done {
            job,
            result: Ok(JobOutput::ModelLoaded(musicgen_info())),
        },
        &mut out,
    );
    h.run();
    assert_eq!(h.state().panel.form.model_spec, RANDOM_SMALL);
    assert!(h
        .query_by_label("Model: musicgen-small layout · random weights")
        .is_some());
    // Load loads what the field names: the random layout again.
    h.get_by_label("Load").click();
    h.run();
    assert!(matches!(
        h.state().out.commands(),
        [Command::LoadRandom { .. }]
    ));
}

#[test]
fn a_generated_clip_goes_to_the_library_and_shows_its_spectrogram_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let mut panel = GeneratePanel::new(form(&dir.path().join("clips")), Player::silent());
    panel.model_loaded(1, musicgen_info());
    let mut h = harness(panel);
    h.run();
    assert!(h
        .query_by_label_contains("The clip you generate shows here")
        .is_some());
    h.get_by_label("Generate clip").click();
    h.run();
    let job = match h.state_mut().out.take().commands.as_slice() {
        [Command::Generate { job, .. }] => *job,
        other => panic!("{other:?}"),
    };
    let tone: Vec<f32> = (0..32_000).map(|n| 0.3 * (n as f32 * 0.05).sin()).collect();
    let s = h.state_mut();
    s.panel.on_event(
        &Event::Done {
            job,
            result: Ok(JobOutput::Clip(crate::generate::Clip {
                codes: vec![],
                audio: tone.clone(),
                sample_rate: 32_000,
            })),
        },
        &mut s.out,
    );
    match s.out.take().requests.as_slice() {
        [Request::ClipAdded { entry, audio, rate }, ..] => {
            assert_eq!(**audio, tone);
            assert_eq!(*rate, 32_000);
            assert_eq!(entry.file, h.state().panel.history[0].file);
        }
        other => panic!("the Library is told: {other:?}"),
    }
    h.run();
    assert!(
        h.state().panel.spectrogram.is_none(),
        "made only when asked"
    );
    h.get_by_label("Spectrogram").click();
    h.run();
    let (key, tex) = h.state().panel.spectrogram.clone().expect("drawn");
    assert_eq!(key.1, 32_000);
    assert!(
        tex.size()[0] > 10 && tex.size()[1] == 64,
        "{:?}",
        tex.size()
    );
}
