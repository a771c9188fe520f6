//! Models by Hugging Face repo id, through `hf-hub` and the standard HF cache, so a model that
//! Python already downloaded is reused. `HF_HUB_CACHE`, `HF_HOME` and `HF_ENDPOINT` are honoured.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{Error, Result};
use crate::models::checkpoint::{INDEX, SINGLE};

/// The HF hub cache directory (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`).
pub fn cache_dir() -> PathBuf {
    if let Ok(p) = std::env::var("HF_HUB_CACHE") {
        return PathBuf::from(p);
    }
    if let Ok(p) = std::env::var("HF_HOME") {
        return PathBuf::from(p).join("hub");
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    PathBuf::from(home).join(".cache/huggingface/hub")
}

/// `owner/name` with the characters the Hub allows.
pub fn is_repo_id(s: &str) -> bool {
    let mut parts = s.split('/');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && !p.starts_with('.')
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// Progress of a download, reported per chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadProgress {
    pub file: String,
    pub done: u64,
    pub total: u64,
}

struct Reporter<'a> {
    file: String,
    done: u64,
    total: u64,
    cb: &'a mut dyn FnMut(&DownloadProgress),
}

impl hf_hub::api::Progress for Reporter<'_> {
    fn init(&mut self, size: usize, filename: &str) {
        self.file = filename.to_string();
        self.total = size as u64;
        self.done = 0;
        self.report();
    }
    fn update(&mut self, size: usize) {
        self.done += size as u64;
        self.report();
    }
    fn finish(&mut self) {
        self.done = self.total;
        self.report();
    }
}

impl Reporter<'_> {
    fn report(&mut self) {
        (self.cb)(&DownloadProgress {
            file: self.file.clone(),
            done: self.done,
            total: self.total,
        });
    }
}

/// Fetches `config.json`, `generation_config.json`, `tokenizer.json` and the safetensors weights
/// of `repo_id` into the HF cache (files already there are not downloaded again) and returns the
/// snapshot directory.
pub fn download_model(
    repo_id: &str,
    progress: &mut dyn FnMut(&DownloadProgress),
) -> Result<PathBuf> {
    let cache = Cache::new(cache_dir());
    let api = ApiBuilder::from_env()
        .with_cache_dir(cache_dir())
        .with_progress(false)
        .build()
        .map_err(|e| download_err(repo_id, "-", e))?;
    let repo = Repo::new(repo_id.to_string(), RepoType::Model);
    let api_repo = api.repo(repo.clone());
    let cached = cache.repo(repo);

    let mut fetch = |file: &str| -> Result<PathBuf> {
        if let Some(p) = cached.get(file) {
            return Ok(p);
        }
        let reporter = Reporter {
            file: file.into(),
            done: 0,
            total: 0,
            cb: &mut *progress,
        };
        api_repo
            .download_with_progress(file, reporter)
            .map_err(|e| download_err(repo_id, file, e))
    };
    let config = fetch("config.json")?;
    // Optional files: a missing one is not an error.
    let _ = fetch("generation_config.json");
    let _ = fetch("tokenizer.json");
    match fetch(SINGLE) {
        Ok(_) => {}
        Err(single_err) => match fetch(INDEX) {
            Ok(index) => {
                let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
                let v: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| Error::bad_file(&index, format!("not valid JSON: {e}")))?;
                let mut shards: Vec<String> = v
                    .get("weight_map")
                    .and_then(|m| m.as_object())
                    .map(|m| {
                        m.values()
                            .filter_map(|f| f.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                shards.sort();
                shards.dedup();
                for s in shards {
                    fetch(&s)?;
                }
            }
            Err(_) => return Err(single_err),
        },
    }
    config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| Error::bad_file(&config, "has no parent directory"))
}

fn download_err(repo: &str, file: &str, e: impl std::fmt::Display) -> Error {
    Error::Download {
        repo: repo.into(),
        file: file.into(),
        problem: e.to_string(),
    }
}

/// A model found in the HF cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedModel {
    pub repo_id: String,
    pub dir: PathBuf,
    pub size_bytes: u64,
    pub model_type: String,
}

/// Snapshots in the HF cache whose `config.json` is a MusicGen (or any model, if `all`).
pub fn cached_models(all: bool) -> Vec<CachedModel> {
    let root = cache_dir();
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix("models--") else {
            continue;
        };
        let repo_id = rest.replacen("--", "/", 1);
        let Ok(snaps) = std::fs::read_dir(e.path().join("snapshots")) else {
            continue;
        };
        for s in snaps.flatten() {
            let dir = s.path();
            let Ok(text) = std::fs::read_to_string(dir.join("config.json")) else {
                continue;
            };
            let model_type = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| {
                    v.get("model_type")
                        .and_then(|m| m.as_str())
                        .map(String::from)
                })
                .unwrap_or_default();
            if !all && !model_type.starts_with("musicgen") {
                continue;
            }
            let size_bytes = dir_size(&dir);
            out.push(CachedModel {
                repo_id: repo_id.clone(),
                dir,
                size_bytes,
                model_type,
            });
        }
    }
    out.sort_by(|a, b| a.repo_id.cmp(&b.repo_id));
    out
}

/// Bytes of the files in `dir`, following the cache's symlinks to blobs.
fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| std::fs::metadata(e.path()).ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        assert!(is_repo_id("facebook/musicgen-small"));
        assert!(is_repo_id("a_b/c.d-e"));
        assert!(!is_repo_id("facebook"));
        assert!(!is_repo_id("/abs/path"));
        assert!(!is_repo_id("a/b/c"));
        assert!(!is_repo_id("./x"));
    }
}
