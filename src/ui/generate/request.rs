//! The engine commands the Generate panel sends, built from its form apart from any drawing: a
//! model load (with the form's adapter and checkpoint), and a batch of generations (one job per
//! variation, seeds `seed`, `seed + 1`, …), each with the history entry its clip will get.

use std::path::{Path, PathBuf};

use crate::engine::{Command, JobId};
use crate::generate::midi::prime_from_midi;
use crate::models::musicgen::config::Preset;
use crate::models::nn::WeightMode;
use crate::ui::generate::history::{ClipParams, HistoryEntry};
use crate::ui::generate::GenerateForm;

/// The model spec that stands for the published small layout with random weights (the Generate
/// form's Model field shows it, and Load loads it again).
pub const RANDOM_SMALL: &str = "random musicgen-small";

/// What a model was loaded as: enough to load it again.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadedAs {
    pub model: String,
    pub adapter: Option<String>,
    pub checkpoint: Option<String>,
    pub weights: WeightMode,
}

impl LoadedAs {
    /// `spec`, with the form's adapter and checkpoint when `with_form`.
    pub fn from_form(form: &GenerateForm, spec: String, with_form: bool) -> Self {
        let given = |s: &str| Some(s.trim().to_string()).filter(|s| with_form && !s.is_empty());
        Self {
            model: spec,
            adapter: given(&form.adapter),
            checkpoint: given(&form.checkpoint),
            weights: form.weights,
        }
    }

    /// The command that loads it.
    pub fn command(&self, job: JobId) -> Command {
        if self.model == RANDOM_SMALL {
            return Command::LoadRandom {
                job,
                preset: Preset::Small,
                seed: 0,
            };
        }
        Command::LoadModel {
            job,
            spec: self.model.clone(),
            weights: self.weights,
            adapter: self.adapter.as_ref().map(PathBuf::from),
            checkpoint: self.checkpoint.clone(),
        }
    }

    /// The published small layout with random weights, and the command that builds it.
    pub fn random_small(job: JobId) -> (Self, Command) {
        let loaded = Self {
            model: RANDOM_SMALL.into(),
            ..Default::default()
        };
        let cmd = loaded.command(job);
        (loaded, cmd)
    }
}

/// A generation job sent and not yet done, with what its history entry will record.
#[derive(Debug, Clone)]
pub struct Pending {
    pub job: JobId,
    pub entry: HistoryEntry,
}

/// The form's batch for the model `loaded` (a Music Transformer when `midi`): `variations`
/// commands with consecutive seeds, each with its pending entry; `created` (Unix ms) stamps the
/// entries and names the clips. Fails when a MIDI prime cannot be read.
pub fn batch(
    form: &GenerateForm,
    loaded: &LoadedAs,
    midi: bool,
    created: u64,
    mut next_job: impl FnMut() -> JobId,
) -> crate::error::Result<Vec<(Command, Pending)>> {
    let n = form.variations.max(1);
    let prime = if midi && !form.midi.prime.trim().is_empty() {
        prime_from_midi(Path::new(form.midi.prime.trim()), form.midi.prime_seconds)?
    } else {
        Vec::new()
    };
    let clips = PathBuf::from(form.clips_dir.trim());
    let entry = |file: PathBuf, clip: ClipParams| HistoryEntry {
        file,
        model: loaded.model.clone(),
        adapter: loaded.adapter.clone(),
        checkpoint: loaded.checkpoint.clone(),
        created,
        clip,
    };
    let mut out = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let job = next_job();
        let (cmd, entry) = if midi {
            let f = &form.midi;
            let mut params = f.params.clone();
            params.seed = params.seed.wrapping_add(i);
            let out_stem = free_stem(Path::new(&f.out_dir), &format!("piece-{}", params.seed));
            let soundfont =
                (!f.soundfont.trim().is_empty()).then(|| PathBuf::from(f.soundfont.trim()));
            let recorded = ClipParams::Midi {
                params: params.clone(),
                prime: f.prime.trim().to_string(),
                prime_seconds: f.prime_seconds,
            };
            params.prime = prime.clone();
            let cmd = Command::GenerateMidi {
                job,
                params,
                out: out_stem.clone(),
                soundfont,
            };
            (cmd, entry(out_stem.with_extension("wav"), recorded))
        } else {
            let mut params = form.params.clone();
            params.seed = params.seed.wrapping_add(i);
            params.prompt_audio = params
                .prompt_audio
                .filter(|p| !p.as_os_str().is_empty())
                .map(|p| PathBuf::from(p.display().to_string().trim()));
            let file = clips.join(format!("clip-{created}-s{}.wav", params.seed));
            // Only the first clip of a batch is heard while generated (the next would cut it off).
            let cmd = Command::Generate {
                job,
                params: params.clone(),
                stream: i == 0 && form.play_while_generating,
            };
            (cmd, entry(file, ClipParams::Musicgen { params }))
        };
        out.push((cmd, Pending { job, entry }));
    }
    Ok(out)
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `dir/name`, or `dir/name-2`, `-3`, … when a piece of that name exists (history entries keep
/// pointing at their own files).
fn free_stem(dir: &Path, name: &str) -> PathBuf {
    let taken = |p: &Path| p.with_extension("mid").exists() || p.with_extension("wav").exists();
    let first = dir.join(name);
    if !taken(&first) {
        return first;
    }
    (2..)
        .map(|k| dir.join(format!("{name}-{k}")))
        .find(|p| !taken(p))
        .unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_midi_batch_names_free_pieces_and_records_the_prime_by_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("piece-4.mid"), b"").unwrap();
        let mut form = GenerateForm::default();
        form.midi.out_dir = dir.path().display().to_string();
        form.midi.params.seed = 4;
        form.variations = 2;
        let loaded = LoadedAs {
            model: "mt".into(),
            ..Default::default()
        };
        let mut ids = 10..;
        let b = batch(&form, &loaded, true, 7, || ids.next().unwrap()).unwrap();
        let stems: Vec<(JobId, PathBuf)> = b
            .iter()
            .map(|(c, p)| match c {
                Command::GenerateMidi { job, out, .. } => {
                    assert_eq!(*job, p.job);
                    (*job, out.clone())
                }
                other => panic!("expected GenerateMidi, got {other:?}"),
            })
            .collect();
        assert_eq!(
            stems,
            [
                (10, dir.path().join("piece-4-2")),
                (11, dir.path().join("piece-5"))
            ],
            "an existing piece keeps its name"
        );
        assert_eq!(b[1].1.entry.file, dir.path().join("piece-5.wav"));
        assert!(matches!(&b[0].1.entry.clip, ClipParams::Midi { prime, .. } if prime.is_empty()));
        // A prime that cannot be read sends nothing.
        form.midi.prime = dir.path().join("missing.mid").display().to_string();
        assert!(batch(&form, &loaded, true, 7, || 1).is_err());
    }

    #[test]
    fn a_load_carries_the_forms_adapter_and_checkpoint_only_when_asked() {
        let form = GenerateForm {
            adapter: " /runs/lora ".into(),
            checkpoint: "best".into(),
            ..Default::default()
        };
        let with = LoadedAs::from_form(&form, "base".into(), true);
        assert_eq!(with.adapter.as_deref(), Some("/runs/lora"));
        assert_eq!(with.checkpoint.as_deref(), Some("best"));
        assert!(matches!(
            with.command(3),
            Command::LoadModel { job: 3, adapter: Some(a), .. } if a == Path::new("/runs/lora")
        ));
        let without = LoadedAs::from_form(&form, "base".into(), false);
        assert_eq!((without.adapter, without.checkpoint), (None, None));
    }
}
