//! The Library's flows through its widgets: clips listed with thumbnails, play from the list
//! and seek on the waveform, loop, A/B two clips loudness matched, send to the listening test,
//! to the audio prompt and to the Generate form, search, export.

use super::*;
use crate::eval::listen::loudness::measure;
use crate::generate::midi::MidiGenerateParams;
use crate::generate::GenerateParams;
use crate::ui::generate::{history_path, HistoryWriter};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use std::time::Instant;

type S = crate::ui::panel::hosted::Hosted<LibraryPanel>;

fn harness(panel: LibraryPanel) -> Harness<'static, S> {
    crate::ui::panel::hosted::harness(panel)
}

fn sine(seconds: f64, amplitude: f32) -> Vec<f32> {
    (0..(32_000.0 * seconds) as usize)
        .map(|n| amplitude * (n as f32 * 440.0 * std::f32::consts::TAU / 32_000.0).sin())
        .collect()
}

fn musicgen(file: PathBuf, model: &str, prompt: &str, seed: u64) -> HistoryEntry {
    HistoryEntry {
        file,
        model: model.into(),
        adapter: None,
        checkpoint: None,
        created: 1_765_000_000_000,
        clip: ClipParams::Musicgen {
            params: GenerateParams {
                prompt: prompt.into(),
                seed,
                ..Default::default()
            },
        },
    }
}

/// A clips folder with a loud and a quiet clip of two models, and a piece of a third,
/// written as the Generate panel writes them.
fn clips(dir: &Path) -> Vec<HistoryEntry> {
    let entries = vec![
        musicgen(
            dir.join("a.wav"),
            "facebook/musicgen-small",
            "warm piano",
            1,
        ),
        musicgen(dir.join("b.wav"), "/runs/my-lora", "dark ambient drone", 2),
        HistoryEntry {
            file: dir.join("piece.wav"),
            model: "/demo/classical-small".into(),
            adapter: None,
            checkpoint: None,
            created: 1_765_000_100_000,
            clip: ClipParams::Midi {
                params: MidiGenerateParams::default(),
                prime: String::new(),
                prime_seconds: 5.0,
            },
        },
    ];
    let mut w = HistoryWriter::default();
    for (e, amp) in entries.iter().zip([0.5, 0.05, 0.2]) {
        let wav = Some((Arc::new(sine(1.0, amp)), 32_000));
        w.write(history_path(dir), e.clone(), wav).unwrap();
    }
    drop(w);
    entries
}

/// The panel on the clips of `dir`, with a silent player.
fn panel(dir: &Path) -> LibraryPanel {
    LibraryPanel::new(
        LibraryForm::default(),
        &dir.display().to_string(),
        Player::silent(),
    )
}

fn wait_for_thumbs(h: &mut Harness<'static, S>) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        h.step();
        if !h.state().panel.thumbs.waiting() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the thumbnails were not made");
}

#[test]
fn clips_are_listed_with_thumbnails_played_seeked_looped_and_searched() {
    let dir = tempfile::tempdir().unwrap();
    let entries = clips(dir.path());
    let mut h = harness(panel(dir.path()));
    h.run();
    assert_eq!(h.state().panel.entries, entries);
    wait_for_thumbs(&mut h);
    for e in &entries {
        match h.state_mut().panel.thumbs.get(&e.file) {
            ThumbState::Ready(t) => assert!((t.seconds - 1.0).abs() < 1e-6),
            other => panic!("{other:?}"),
        }
    }
    h.run();
    // Newest first: the piece, then the drone, then the piano; each with what made it.
    assert!(h.query_by_label("improv (MIDI)").is_some());
    assert!(h.query_by_label("\"warm piano\"").is_some());
    assert!(h
        .query_by_label_contains("facebook/musicgen-small · seed 1 · 1.0 s · 2025-12-06 05:46")
        .is_some());
    // Play from the list: the newest row's button plays the piece.
    h.get_all_by_label("Play").next().unwrap().click();
    h.run();
    assert_eq!(h.state().panel.current.as_ref().map(|c| c.entry), Some(2));
    assert!(h.state().panel.is_playing());
    // A click on a waveform plays that clip from where it was clicked (its middle here).
    h.get_by_label("Waveform of \"warm piano\"").click();
    h.step();
    let p = &h.state().panel;
    assert_eq!(p.current.as_ref().map(|c| c.entry), Some(0));
    assert!(
        (0.45..0.6).contains(&p.position()),
        "seeked to the middle: {}",
        p.position()
    );
    // Loop: the clip starts again when it ends.
    h.state_mut().panel.form.loop_playback = true;
    h.state_mut().panel.play(0, 0.95);
    std::thread::sleep(Duration::from_millis(120));
    h.step();
    assert!(h.state().panel.is_playing(), "looped back to the start");
    assert!(h.state().panel.position() < 0.5);
    // Escape stops.
    h.key_press(egui::Key::Escape);
    h.run();
    assert!(!h.state().panel.is_playing());
    // Search by prompt or model.
    h.state_mut().panel.form.search = "LORA".into();
    h.run();
    assert!(h.query_by_label("\"dark ambient drone\"").is_some());
    assert!(h.query_by_label("\"warm piano\"").is_none());
    // One model's clips.
    h.state_mut().panel.form.search.clear();
    assert_eq!(
        h.state().panel.models(),
        [
            "facebook/musicgen-small",
            "/runs/my-lora",
            "/demo/classical-small"
        ]
    );
    h.state_mut().panel.form.model = "facebook/musicgen-small".into();
    h.run();
    assert_eq!(h.state().panel.visible(), [0]);
    assert!(h.query_by_label("\"dark ambient drone\"").is_none());
    h.state_mut().panel.form.model.clear();
    h.state_mut().panel.form.search = "nothing like it".into();
    h.run();
    assert!(h.query_by_label("No clip matches the search.").is_some());
}

#[test]
fn two_marked_clips_are_compared_loudness_matched_and_sent_on() {
    let dir = tempfile::tempdir().unwrap();
    let entries = clips(dir.path());
    let mut h = harness(panel(dir.path()));
    h.run();
    assert!(h.query_by_label("Compare A/B").is_none(), "nothing marked");
    // Mark the piano (A), then the drone (B): rows are newest first.
    let marks: Vec<_> = h.get_all_by_label("A/B").collect();
    assert_eq!(marks.len(), 3);
    marks[2].click();
    h.run();
    assert!(h.query_by_label("mark a second clip as B").is_some());
    h.get_all_by_label("A/B").nth(1).unwrap().click();
    h.run();
    assert_eq!(h.state().panel.marked, vec![0, 1]);
    // A third mark replaces the first; unmarking takes one away.
    let p = &mut h.state_mut().panel;
    p.toggle_mark(2);
    assert_eq!(p.marked, vec![1, 2]);
    p.toggle_mark(2);
    p.toggle_mark(0);
    p.toggle_mark(1);
    p.toggle_mark(1);
    assert_eq!(p.marked, vec![0, 1]);
    h.run();
    h.get_by_label("Compare A/B").click();
    h.run();
    let pair = h.state().panel.pair.clone().expect("compared");
    assert_eq!(pair.entries, [0, 1]);
    let (la, lb) = (
        measure(&pair.audio[0], pair.rate).unwrap(),
        measure(&pair.audio[1], pair.rate).unwrap(),
    );
    assert!(
        (la.integrated_lufs - lb.integrated_lufs).abs() < 0.5,
        "matched: {la:?} {lb:?}"
    );
    assert!(
        pair.gains_db[1] - pair.gains_db[0] > 15.0,
        "the quiet clip is raised by the 20 dB it lacks: {:?}",
        pair.gains_db
    );
    // A and B switch sides at the same moment.
    h.key_press(egui::Key::A);
    h.step();
    assert_eq!(h.state().panel.pair.as_ref().unwrap().side, Some(Side::A));
    std::thread::sleep(Duration::from_millis(100));
    h.key_press(egui::Key::B);
    h.step();
    let p = &h.state().panel;
    assert_eq!(p.pair.as_ref().unwrap().side, Some(Side::B));
    assert!(p.is_playing());
    assert!(p.position() >= 0.09, "B took over at A's playhead");
    // A listening test of the two models on their prompts.
    h.get_by_label("Listening test…").click();
    h.run();
    let asked = h.state_mut().out.take().requests;
    assert_eq!(
        asked,
        vec![Request::ListenTest {
            model_a: entries[0].model.clone(),
            model_b: Some(entries[1].model.clone()),
            prompts: vec!["warm piano".into(), "dark ambient drone".into()],
        }]
    );
    // A clip's menu sends its audio as the audio prompt, or its settings to Generate.
    h.get_all_by_label("More…").nth(2).unwrap().click();
    h.run();
    h.get_by_label("Use as audio prompt").click();
    h.run();
    h.get_all_by_label("More…").nth(2).unwrap().click();
    h.run();
    h.get_by_label("Settings to Generate").click();
    h.run();
    assert_eq!(
        h.state_mut().out.take().requests,
        vec![
            Request::AudioPrompt(entries[0].file.clone()),
            Request::Reuse(Box::new(entries[0].clone())),
        ]
    );
}

#[test]
fn an_export_copies_the_clip_and_a_new_clip_is_listed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let entries = clips(dir.path());
    let mut panel = panel(dir.path());
    let dest = dir.path().join("out/export.wav");
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    assert!(matches!(panel.export_to(0, &dest), Status::Info(_)));
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(&entries[0].file).unwrap()
    );
    std::fs::remove_file(&entries[1].file).unwrap();
    match panel.export_to(1, &dir.path().join("out/gone.wav")) {
        Status::Error(e) => assert!(e.contains("b.wav"), "{e}"),
        other => panic!("{other:?}"),
    }
    // A clip just generated is listed with its thumbnail before its file exists.
    let fresh = musicgen(dir.path().join("fresh.wav"), "m", "fresh", 9);
    panel.add(fresh.clone(), &sine(2.0, 0.3), 32_000);
    assert_eq!(panel.visible()[0], 3);
    assert!(
        matches!(panel.thumbs.get(&fresh.file), ThumbState::Ready(t) if (t.seconds - 2.0).abs() < 1e-9)
    );
    // Following another clips folder lists its clips.
    let other = tempfile::tempdir().unwrap();
    panel.follow(&other.path().display().to_string());
    assert!(panel.entries.is_empty());
    assert_eq!(date_text(0), "1970-01-01 00:00");
    assert_eq!(date_text(951_782_400_000), "2000-02-29 00:00");
}
