//! The offline first run: the MIDI demo that ships in `assets/demo/` (public-domain Bach chorales
//! and fiddle tunes converted by `tools/make_midi_corpus.py`, and a small Music Transformer
//! trained by tunelab on the chorales) made ready to use: both collections imported as datasets
//! into the demo folder. Nothing here needs the network.

use std::path::{Path, PathBuf};

use crate::data::dataset::ImportOptions;
use crate::data::import::import_dir;
use crate::data::midi_dataset::is_midi_dataset;
use crate::error::{Error, Result};

/// The demo's collections (folder names under `assets/demo/midi/`).
pub const COLLECTIONS: [&str; 2] = ["classical", "folk"];

/// The demo model (under `assets/demo/models/`), trained on `classical`.
pub const MODEL: &str = "classical-small";

/// Where the shipped assets are: `TUNELAB_ASSETS`, else the crate's `assets/` (the checkout).
pub fn assets_dir() -> PathBuf {
    std::env::var_os("TUNELAB_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("assets"))
}

/// Where the demo's datasets and runs go: `TUNELAB_DEMO_DIR`, else
/// `$XDG_DATA_HOME/tunelab/demo` (`~/.local/share/tunelab/demo`).
pub fn demo_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TUNELAB_DEMO_DIR") {
        return PathBuf::from(d);
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("tunelab").join("demo")
}

/// The demo model's folder.
pub fn model_dir() -> PathBuf {
    assets_dir().join("demo").join("models").join(MODEL)
}

/// The dataset folder of a collection.
pub fn dataset_dir(collection: &str) -> PathBuf {
    demo_dir().join("datasets").join(collection)
}

/// Imports each collection that is not imported yet; returns the dataset folders.
pub fn prepare() -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for c in COLLECTIONS {
        let src = assets_dir().join("demo").join("midi").join(c);
        if !src.is_dir() {
            return Err(Error::MissingFile {
                path: src,
                what: "demo MIDI collection (tools/make_midi_corpus.py makes it)".into(),
            });
        }
        let ds = dataset_dir(c);
        if !is_midi_dataset(&ds) {
            let report = import_dir(&src, &ds, &ImportOptions::default())?;
            tracing::info!(
                "demo: imported {} {c} pieces ({} failed)",
                report.imported.len(),
                report.failed.len()
            );
        }
        out.push(ds);
    }
    Ok(out)
}
