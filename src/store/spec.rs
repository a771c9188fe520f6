//! What a model name or path denotes, decided once. Every caller (the engine, evaluation,
//! listening-test preparation, training's base model, exports, the CLI) turns the user's string
//! into a [`ModelSpec`] with [`ModelSpec::resolve`] and loads it with [`ModelSpec::load`]
//! (`store::load`), so the rules below exist once and their order never matters:
//!
//! | the string names…                                          | spec            |
//! |------------------------------------------------------------|-----------------|
//! | a folder with `adapter_config.json`                        | `PeftAdapter`   |
//! | a tunelab run folder (`checkpoints/`, `model/config.json`) | `MusicgenRun` or `MidiRun`, by the family in its `config.json` |
//! | a folder whose `config.json` is a Music Transformer's      | `MidiDir`       |
//! | any other folder                                           | `MusicgenDir` (checked when loaded) |
//! | `owner/name` that is not a path here                       | `Hub`           |

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::models::hub::{self, DownloadProgress};
use crate::models::Family;
use crate::store::run;

/// A model the user named, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    /// A Hugging Face repo id (downloaded into, or found in, the HF cache when loaded).
    Hub(String),
    /// A MusicGen folder in HF layout.
    MusicgenDir(PathBuf),
    /// A tunelab run of a MusicGen: its weights on its base model.
    MusicgenRun(PathBuf),
    /// A Music Transformer model folder (`config.json` + `model.safetensors`).
    MidiDir(PathBuf),
    /// A tunelab run of a Music Transformer.
    MidiRun(PathBuf),
    /// A PEFT LoRA adapter folder (`adapter_config.json` + `adapter_model.safetensors`).
    PeftAdapter(PathBuf),
}

impl ModelSpec {
    /// Classifies `spec` (see the table above). A run whose `config.json` cannot be read is an
    /// error naming that file, never a guess.
    pub fn resolve(spec: &str) -> Result<Self> {
        let trimmed = spec.trim();
        let path = Path::new(trimmed);
        if path.is_dir() {
            let dir = path.to_path_buf();
            if crate::models::peft::is_adapter_dir(&dir) {
                return Ok(Self::PeftAdapter(dir));
            }
            if run::is_run_dir(&dir) {
                return Ok(match run::family(&dir)? {
                    Family::Musicgen => Self::MusicgenRun(dir),
                    Family::Midi => Self::MidiRun(dir),
                });
            }
            if crate::models::music_transformer::is_model_dir(&dir) {
                return Ok(Self::MidiDir(dir));
            }
            return Ok(Self::MusicgenDir(dir));
        }
        if hub::is_repo_id(trimmed) && !path.exists() {
            return Ok(Self::Hub(trimmed.to_string()));
        }
        Err(Error::MissingFile {
            path: path.into(),
            what: "model: neither a folder (a model, a training run or a PEFT adapter) nor a \
                   Hugging Face repo id like facebook/musicgen-small"
                .into(),
        })
    }

    /// The family of the model (an adapter is a MusicGen's).
    pub fn family(&self) -> Family {
        match self {
            Self::MidiDir(_) | Self::MidiRun(_) => Family::Midi,
            _ => Family::Musicgen,
        }
    }

    /// The local folder, if it is one (a Hub id has none until it is downloaded).
    pub fn local_dir(&self) -> Option<&Path> {
        match self {
            Self::Hub(_) => None,
            Self::MusicgenDir(p)
            | Self::MusicgenRun(p)
            | Self::MidiDir(p)
            | Self::MidiRun(p)
            | Self::PeftAdapter(p) => Some(p),
        }
    }

    pub fn is_run(&self) -> bool {
        matches!(self, Self::MusicgenRun(_) | Self::MidiRun(_))
    }

    /// The folder of a MusicGen in HF layout: a local folder as it is, a Hub id downloaded (or
    /// found in the cache) with `progress`. Runs and adapters are not model folders.
    pub fn musicgen_dir(&self, progress: &mut dyn FnMut(&DownloadProgress)) -> Result<PathBuf> {
        match self {
            Self::MusicgenDir(p) => Ok(p.clone()),
            Self::Hub(id) => hub::download_model(id, progress),
            other => Err(Error::InvalidRequest(format!(
                "{other} is not a MusicGen model folder or Hub id"
            ))),
        }
    }
}

/// SHA-256 over the `.safetensors` files under `dir` (sorted by path): the weights' identity in
/// reports and listening logs (for a Hub id, pass the snapshot folder it was loaded from).
pub fn weights_sha256(dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    for f in files {
        if let Ok(bytes) = std::fs::read(&f) {
            h.update(&bytes);
        }
    }
    format!("{:x}", h.finalize())
}

impl std::fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hub(id) => write!(f, "{id}"),
            Self::MusicgenDir(p) => write!(f, "{} (MusicGen folder)", p.display()),
            Self::MusicgenRun(p) => write!(f, "{} (MusicGen run)", p.display()),
            Self::MidiDir(p) => write!(f, "{} (Music Transformer folder)", p.display()),
            Self::MidiRun(p) => write!(f, "{} (Music Transformer run)", p.display()),
            Self::PeftAdapter(p) => write!(f, "{} (PEFT adapter)", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::run_config::TrainConfig;

    fn run_dir(root: &Path, name: &str, family: Family) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("checkpoints")).unwrap();
        std::fs::create_dir_all(dir.join("model")).unwrap();
        std::fs::write(dir.join("model/config.json"), "{}").unwrap();
        let cfg = TrainConfig {
            family,
            ..Default::default()
        };
        run::write_config(&dir, &cfg).unwrap();
        dir
    }

    #[test]
    fn every_kind_of_name_is_classified_once_whatever_it_also_looks_like() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let s = |p: &Path| ModelSpec::resolve(&p.display().to_string());

        // Runs are told apart by their manifest, not by the order of checks.
        let mg = run_dir(root, "mg-run", Family::Musicgen);
        let midi = run_dir(root, "midi-run", Family::Midi);
        assert_eq!(s(&mg).unwrap(), ModelSpec::MusicgenRun(mg.clone()));
        assert_eq!(s(&midi).unwrap(), ModelSpec::MidiRun(midi.clone()));
        assert_eq!(s(&midi).unwrap().family(), Family::Midi);

        // A run whose manifest is unreadable is an error naming it.
        let broken = run_dir(root, "broken-run", Family::Musicgen);
        std::fs::write(broken.join("config.json"), "{not json").unwrap();
        let e = s(&broken).unwrap_err().to_string();
        assert!(
            e.contains("config.json") && e.contains("not a training config"),
            "{e}"
        );

        // A PEFT adapter, even inside something that also looks like a model folder.
        let adapter = root.join("adapter");
        std::fs::create_dir_all(&adapter).unwrap();
        std::fs::write(adapter.join("adapter_config.json"), "{}").unwrap();
        std::fs::write(adapter.join("config.json"), "{}").unwrap();
        assert_eq!(
            s(&adapter).unwrap(),
            ModelSpec::PeftAdapter(adapter.clone())
        );

        // A Music Transformer folder, and a folder that is none of these (a MusicGen, checked
        // when loaded).
        let mt = root.join("mt");
        let cfg = crate::models::music_transformer::MusicTransformerConfig::preset("tiny").unwrap();
        let t = cfg.init_tensors(0, &candle_core::Device::Cpu).unwrap();
        crate::models::music_transformer::save(&mt, &cfg, &t).unwrap();
        assert_eq!(s(&mt).unwrap(), ModelSpec::MidiDir(mt.clone()));
        let plain = root.join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        assert_eq!(s(&plain).unwrap(), ModelSpec::MusicgenDir(plain.clone()));

        // A repo id that is not a path here; anything else is a clear error.
        assert_eq!(
            ModelSpec::resolve("facebook/musicgen-small").unwrap(),
            ModelSpec::Hub("facebook/musicgen-small".into())
        );
        let e = ModelSpec::resolve(&root.join("no/such/model").display().to_string())
            .unwrap_err()
            .to_string();
        assert!(e.contains("neither a folder"), "{e}");
    }
}
