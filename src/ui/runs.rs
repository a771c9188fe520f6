//! Training runs as the studio lists them: the run folders directly under a runs folder, with
//! their family, mode, base model and checkpoints. The Models panel lists them, the Generate
//! panel's model picker offers them, and the Train panel compares against a sibling run.

use std::path::{Path, PathBuf};

use crate::store::run::is_run_dir;

/// A run found in the runs folder.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEntry {
    pub dir: PathBuf,
    /// "MusicGen" or "Music Transformer".
    pub family: String,
    pub mode: String,
    pub base: String,
    /// Its checkpoints by name (`best`, `last`, `step-000200`, …).
    pub checkpoints: Vec<String>,
}

/// Runs (folders with a run config and checkpoints) directly under `dir`.
pub fn find_runs(dir: &Path) -> Vec<RunEntry> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut runs: Vec<RunEntry> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| is_run_dir(p))
        .map(|dir| {
            let cfg: serde_json::Value = std::fs::read_to_string(dir.join("config.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            RunEntry {
                family: match cfg["family"].as_str() {
                    Some("midi") => "Music Transformer",
                    _ => "MusicGen",
                }
                .to_string(),
                mode: cfg["mode"].as_str().unwrap_or("?").to_string(),
                base: match cfg["model"].as_str() {
                    Some("") => "a fresh model".to_string(),
                    Some(m) => m.to_string(),
                    None => "?".to_string(),
                },
                checkpoints: checkpoint_names(&dir),
                dir,
            }
        })
        .collect();
    runs.sort_by(|a, b| a.dir.cmp(&b.dir));
    runs
}

/// The checkpoints of a run: `best` and `last` first, then the kept ones in step order.
pub fn checkpoint_names(run: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(run.join("checkpoints")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().to_string()))
        .collect();
    names.sort_by_key(|n| (n != "best", n != "last", n.clone()));
    names
}
