//! What a run folder holds, read for the Train panel's charts: the curves of `metrics.jsonl`,
//! the configuration the run resolved, and the preview clips it wrote at kept checkpoints. The
//! same [`Curves`] take the engine's live training events.

use std::path::{Path, PathBuf};

use crate::store::run_config::TrainConfig;
use crate::train::events::{StepMetrics, TrainEvent, ValidMetrics};

/// What the charts show.
#[derive(Debug, Default)]
pub struct Curves {
    pub train_ce: Vec<[f64; 2]>,
    pub train_ce_q: Vec<Vec<[f64; 2]>>,
    pub valid_ce: Vec<[f64; 2]>,
    pub lr: Vec<[f64; 2]>,
    pub grad_norm: Vec<[f64; 2]>,
    pub tokens_per_s: f64,
    pub seconds_per_step: f64,
    pub step: usize,
    pub total: usize,
    pub skipped: usize,
}

impl Curves {
    /// Adds a training event's points.
    pub fn apply(&mut self, e: &TrainEvent) {
        match e {
            TrainEvent::Started { step, total, .. } => {
                self.step = *step;
                self.total = *total;
            }
            TrainEvent::Step(m) => {
                let x = m.step as f64;
                self.train_ce.push([x, m.ce]);
                if self.train_ce_q.len() < m.ce_q.len() {
                    self.train_ce_q.resize(m.ce_q.len(), Vec::new());
                }
                for (q, v) in m.ce_q.iter().enumerate() {
                    self.train_ce_q[q].push([x, *v]);
                }
                self.lr.push([x, m.lr]);
                self.grad_norm.push([x, m.grad_norm]);
                self.tokens_per_s = m.tokens_per_s;
                self.seconds_per_step = m.seconds;
                self.step = m.step;
            }
            TrainEvent::Valid(v) => self.valid_ce.push([v.step as f64, v.ce]),
            TrainEvent::Skipped { .. } => self.skipped += 1,
            TrainEvent::Checkpoint { .. } | TrainEvent::Preview { .. } => {}
        }
    }
}

/// A run's configuration (as resolved when it started) and its curves from `metrics.jsonl`
/// (the last line for a step wins, as after a resume).
pub fn read_curves(run_dir: &Path) -> (Option<TrainConfig>, Curves) {
    let cfg = std::fs::read_to_string(run_dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<TrainConfig>(&t).ok());
    let mut curves = Curves::default();
    let Ok(text) = std::fs::read_to_string(run_dir.join("metrics.jsonl")) else {
        return (cfg, curves);
    };
    let mut train = std::collections::BTreeMap::new();
    let mut valid = std::collections::BTreeMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match v["kind"].as_str() {
            Some("train") => {
                if let Ok(m) = serde_json::from_value::<StepMetrics>(v) {
                    train.insert(m.step, m);
                }
            }
            Some("valid") => {
                if let Ok(m) = serde_json::from_value::<ValidMetrics>(v) {
                    valid.insert(m.step, m);
                }
            }
            Some("start") => curves.total = v["total"].as_u64().unwrap_or(0) as usize,
            _ => {}
        }
    }
    for m in train.into_values() {
        curves.apply(&TrainEvent::Step(m));
    }
    for m in valid.into_values() {
        curves.apply(&TrainEvent::Valid(m));
    }
    (cfg, curves)
}

/// The preview clips a run wrote (`previews/step-N.wav`; a `.mid` where no SoundFont rendered
/// it), by step.
pub fn read_previews(run_dir: &Path) -> Vec<(usize, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(run_dir.join("previews")) else {
        return Vec::new();
    };
    let mut found: std::collections::BTreeMap<usize, PathBuf> = Default::default();
    for p in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
        let Some(step) = p
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.strip_prefix("step-"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        match ext {
            "wav" => {
                found.insert(step, p);
            }
            "mid" => {
                found.entry(step).or_insert(p);
            }
            _ => {}
        }
    }
    found.into_iter().collect()
}
