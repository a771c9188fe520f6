//! `tunelab bench ui`: the UI thread's frame time while the engine works. The studio runs
//! headless (an egui context, no window, no GPU): each frame drains events, lays out the
//! visible tab and tessellates, as eframe would before painting, at most 60 times a second.
//! Phases: idle, while a tiny Music Transformer trains (Train tab, live charts), and while it
//! generates a piece (Generate tab). Prints p50 / p95 / max in ms; numbers, never assertions.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::models::device::DeviceChoice;
use crate::ui::{State, Tab, TunelabApp};

/// Frame times of one phase.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FrameStats {
    pub phase: String,
    pub frames: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
}

impl FrameStats {
    /// Nearest-rank percentiles of `times` (ms).
    pub fn from_times(phase: &str, times: &[f64]) -> Self {
        let mut t = times.to_vec();
        t.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            if t.is_empty() {
                return 0.0;
            }
            let i = ((p / 100.0) * t.len() as f64).ceil() as usize;
            t[i.clamp(1, t.len()) - 1]
        };
        Self {
            phase: phase.into(),
            frames: t.len(),
            p50_ms: rank(50.0),
            p95_ms: rank(95.0),
            max_ms: t.last().copied().unwrap_or(0.0),
        }
    }
}

/// A headless studio: one egui context driving the app frame by frame.
struct Headless {
    ctx: egui::Context,
    app: TunelabApp,
    start: Instant,
}

impl Headless {
    /// One frame (events, layout, tessellation); its duration in ms.
    fn frame(&mut self) -> f64 {
        let raw = egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(
                egui::Pos2::ZERO,
                egui::vec2(1100.0, 720.0),
            )),
            time: Some(self.start.elapsed().as_secs_f64()),
            ..Default::default()
        };
        let t0 = Instant::now();
        let app = &mut self.app;
        let mut out = self.ctx.run_ui(raw, |ui| app.frame(ui));
        let _ = self.ctx.tessellate(out.shapes, out.pixels_per_point);
        // No painter here: the font atlas updates are not uploaded anywhere.
        out.textures_delta.clear();
        t0.elapsed().as_secs_f64() * 1e3
    }

    /// Frames at ≤ 60 per second until `done` (or `limit`), timed.
    fn frames_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&TunelabApp) -> bool,
    ) -> Vec<f64> {
        let start = Instant::now();
        let mut times = Vec::new();
        while start.elapsed() < limit {
            let t0 = Instant::now();
            times.push(self.frame());
            if done(&self.app) {
                break;
            }
            if let Some(rest) = Duration::from_millis(16).checked_sub(t0.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        times
    }
}

/// Makes a small MIDI dataset and a tiny Music Transformer in `dir`: (model, dataset).
fn fixtures(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    use crate::data::midi::{write_midi, Note};
    use crate::models::music_transformer::{save, MusicTransformerConfig};
    let model = dir.join("model");
    let cfg = MusicTransformerConfig::preset("tiny")?;
    save(
        &model,
        &cfg,
        &cfg.init_tensors(0, &candle_core::Device::Cpu)?,
    )?;
    let src = dir.join("songs");
    for k in 0..8u8 {
        let notes: Vec<Note> = (0..48)
            .map(|i| Note {
                pitch: 52 + k + [0, 4, 7, 12][i % 4],
                velocity: 70,
                start: i as f64 * 0.2,
                end: i as f64 * 0.2 + 0.15,
            })
            .collect();
        write_midi(&src.join(format!("song-{k}.mid")), &notes, 0)?;
    }
    let ds = dir.join("dataset");
    crate::data::import::import_dir(&src, &ds, &Default::default())?;
    Ok((model, ds))
}

/// Runs the phases in a scratch folder under `work` and returns their frame times.
pub fn measure(
    work: &Path,
    steps: usize,
    seconds: f64,
    device: DeviceChoice,
) -> anyhow::Result<Vec<FrameStats>> {
    let (model, ds) = fixtures(work).context("making the benchmark's model and dataset")?;
    let mut state = State {
        tab: Tab::Train,
        ..Default::default()
    };
    state.generate.model_spec = model.display().to_string();
    state.generate.clips_dir = work.join("clips").display().to_string();
    state.generate.midi.out_dir = work.join("pieces").display().to_string();
    state.generate.midi.params.seconds = Some(seconds);
    state.generate.midi.prime.clear();
    state.train.set_dataset(ds);
    state.train.config.model = model.display().to_string();
    state.train.config.steps = steps;
    state.train.config.batch_size = 2;
    state.train.config.eval_every = 5;
    state.train.config.save_every = steps;
    state.train.config.midi.max_events = Some(64);
    state.train.run_dir = work.join("run").display().to_string();
    state.models.runs_dir = work.display().to_string();
    state.models.device = device;
    let mut h = Headless {
        ctx: egui::Context::default(),
        app: TunelabApp::with_waker(state, Arc::new(|| {})),
        start: Instant::now(),
    };
    h.app.open_device();
    let limit = Duration::from_secs(600);
    let mut out = Vec::new();

    let idle: Vec<f64> = (0..60).map(|_| h.frame()).collect();
    out.push(FrameStats::from_times("idle (Train tab)", &idle));

    h.app.start_training();
    let training = h.frames_until(limit, |a| !a.is_working());
    out.push(FrameStats::from_times(
        &format!("training {steps} steps (Train tab, live charts)"),
        &training,
    ));

    h.app.set_tab(Tab::Generate);
    h.app.load_local_model();
    let _ = h.frames_until(limit, |a| !a.is_working());
    h.app.generate_now();
    let generating = h.frames_until(limit, |a| !a.is_working());
    out.push(FrameStats::from_times(
        &format!("generating a {seconds} s piece (Generate tab)"),
        &generating,
    ));
    Ok(out)
}

/// Measures and prints (a table, or one JSON array).
pub fn run(steps: usize, seconds: f64, json: bool, device: DeviceChoice) -> anyhow::Result<()> {
    let work = std::env::temp_dir().join(format!("tunelab-bench-ui-{}", std::process::id()));
    let stats = measure(&work, steps, seconds, device);
    let _ = std::fs::remove_dir_all(&work);
    let stats = stats?;
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(());
    }
    println!(
        "UI frame time (headless: events + layout + tessellation; {} threads for the engine)",
        rayon::current_num_threads()
    );
    println!(
        "{:<48} {:>7} {:>9} {:>9} {:>9}",
        "phase", "frames", "p50 ms", "p95 ms", "max ms"
    );
    for s in &stats {
        println!(
            "{:<48} {:>7} {:>9.2} {:>9.2} {:>9.2}",
            s.phase, s.frames, s.p50_ms, s.p95_ms, s.max_ms
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let times: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = FrameStats::from_times("x", &times);
        assert_eq!(
            (s.frames, s.p50_ms, s.p95_ms, s.max_ms),
            (100, 50.0, 95.0, 100.0)
        );
        let one = FrameStats::from_times("y", &[3.0]);
        assert_eq!((one.p50_ms, one.p95_ms), (3.0, 3.0));
        assert_eq!(FrameStats::from_times("z", &[]).frames, 0);
    }

    #[test]
    fn the_benchmark_trains_and_generates_while_frames_are_timed() {
        let dir = tempfile::tempdir().unwrap();
        let stats = measure(dir.path(), 2, 1.0, DeviceChoice::Cpu).unwrap();
        assert_eq!(stats.len(), 3);
        assert!(stats.iter().all(|s| s.frames > 0), "{stats:?}");
        // The phases really ran: the run finished and a piece was written.
        let metrics = std::fs::read_to_string(dir.path().join("run/metrics.jsonl")).unwrap();
        assert!(metrics.contains("\"kind\":\"end\""));
        assert!(dir.path().join("pieces/piece-0.mid").is_file());
    }
}
