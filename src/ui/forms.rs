//! Each panel's persisted form: plain data with serde and defaults (the offline demo's on first
//! start). The panels draw and edit them; [`crate::ui::state::State`] gathers them when eframe
//! saves. Kept apart from the panels so that the saved state and the panels do not import each
//! other.

use std::path::PathBuf;

use crate::generate::midi::MidiGenerateParams;
use crate::generate::GenerateParams;
use crate::models::device::{DeviceChoice, Precision};
use crate::models::nn::WeightMode;
use crate::models::Family;
use crate::store::run_config::{Mode, TrainConfig};

/// The Models tab.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ModelsForm {
    pub spec: String,
    /// Where training runs are looked for.
    pub runs_dir: String,
    pub weights: WeightMode,
    /// The device the engine runs on (`auto`: the first GPU that opens, else the CPU).
    pub device: DeviceChoice,
    /// Its compute precision (`None`: the device's default).
    pub precision: Option<Precision>,
}

impl Default for ModelsForm {
    fn default() -> Self {
        Self {
            spec: crate::demo::model_dir().display().to_string(),
            runs_dir: crate::demo::demo_dir().join("runs").display().to_string(),
            weights: WeightMode::STUDIO_DEFAULT,
            device: DeviceChoice::Auto,
            precision: None,
        }
    }
}

/// The Generate tab.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GenerateForm {
    /// A Hub repo id, a local model folder, or a training run.
    pub model_spec: String,
    /// A LoRA adapter (PEFT folder or LoRA run) attached unmerged on load; empty = none.
    pub adapter: String,
    /// The checkpoint of a training run to load (`best`, `step-000200`); empty = `last`.
    pub checkpoint: String,
    pub params: GenerateParams,
    pub midi: MidiForm,
    /// Clips are written here, with the history (`history.jsonl`).
    pub clips_dir: String,
    /// Clips per click, with seeds `seed`, `seed + 1`, ….
    pub variations: usize,
    /// Play the (first) clip while it is generated.
    pub play_while_generating: bool,
    /// How a MusicGen's weights are stored when this tab loads it.
    pub weights: WeightMode,
}

impl Default for GenerateForm {
    fn default() -> Self {
        Self {
            // The shipped demo model: the studio works offline on first start.
            model_spec: crate::demo::model_dir().display().to_string(),
            adapter: String::new(),
            checkpoint: String::new(),
            params: GenerateParams {
                prompt: "lo-fi hip hop with warm piano and vinyl crackle".into(),
                duration: 5.0,
                ..Default::default()
            },
            midi: MidiForm::default(),
            clips_dir: crate::demo::demo_dir().join("clips").display().to_string(),
            variations: 1,
            play_while_generating: true,
            weights: WeightMode::STUDIO_DEFAULT,
        }
    }
}

/// The Generate tab's settings for a Music Transformer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MidiForm {
    pub params: MidiGenerateParams,
    /// A MIDI file whose first `prime_seconds` the piece continues; empty = improv.
    pub prime: String,
    pub prime_seconds: f64,
    /// Pieces are written here as `piece-<seed>.mid` / `.wav`.
    pub out_dir: String,
    /// A SoundFont (.sf2) to render with; empty = the first installed.
    pub soundfont: String,
}

impl Default for MidiForm {
    fn default() -> Self {
        Self {
            params: MidiGenerateParams::default(),
            prime: String::new(),
            prime_seconds: 5.0,
            out_dir: crate::demo::demo_dir().join("pieces").display().to_string(),
            soundfont: String::new(),
        }
    }
}

/// The Library tab.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LibraryForm {
    /// Shows the clips whose prompt, model or file contains it.
    pub search: String,
    /// Shows only this model's clips (its spec as recorded); empty = every model.
    pub model: String,
    /// Play the clip again from the start when it ends.
    pub loop_playback: bool,
}

/// The Dataset tab.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct DatasetForm {
    pub source: String,
    pub dataset: String,
    pub segment_seconds: f64,
}

impl Default for DatasetForm {
    fn default() -> Self {
        Self {
            source: crate::demo::assets_dir()
                .join("demo/midi/folk")
                .display()
                .to_string(),
            dataset: crate::demo::dataset_dir("folk").display().to_string(),
            segment_seconds: 30.0,
        }
    }
}

/// The Train tab.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TrainForm {
    pub config: TrainConfig,
    pub run_dir: String,
}

impl Default for TrainForm {
    fn default() -> Self {
        // The offline demo: fine-tune the shipped classical model on the folk tunes.
        let mut config = TrainConfig {
            dataset: crate::demo::dataset_dir("folk"),
            model: crate::demo::model_dir().display().to_string(),
            family: Family::Midi,
            mode: Mode::Full,
            steps: 200,
            batch_size: 4,
            lr: Some(3e-4),
            warmup_steps: 10,
            eval_every: 20,
            save_every: 20,
            ..Default::default()
        };
        config.midi.max_events = Some(256);
        Self {
            config,
            run_dir: crate::demo::demo_dir()
                .join("runs")
                .join("folk-finetune")
                .display()
                .to_string(),
        }
    }
}

impl TrainForm {
    /// Sets the dataset and follows its kind: a MIDI dataset trains a Music Transformer, an
    /// audio one MusicGen.
    pub fn set_dataset(&mut self, dataset: PathBuf) {
        if crate::data::midi_dataset::is_midi_dataset(&dataset) {
            self.config.family = Family::Midi;
        } else if dataset.join("segments.jsonl").is_file() {
            self.config.family = Family::Musicgen;
        }
        self.config.dataset = dataset;
    }
}

/// The Evaluate tab.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EvalForm {
    pub baseline: String,
    pub candidate: String,
    pub dataset: String,
    /// The split evaluated (test, or valid while choosing between runs).
    pub split: crate::data::dataset::Split,
    pub clips: usize,
    pub seconds: f64,
    /// Optional LAION-CLAP folder for the prompt–clip score (empty: none).
    pub clap: String,
}

impl Default for EvalForm {
    fn default() -> Self {
        // The offline demo: the shipped model against its fine-tune on the folk tunes.
        Self {
            baseline: crate::demo::model_dir().display().to_string(),
            candidate: crate::demo::demo_dir()
                .join("runs")
                .join("folk-finetune")
                .display()
                .to_string(),
            dataset: crate::demo::dataset_dir("folk").display().to_string(),
            split: crate::data::dataset::Split::Test,
            clips: 8,
            seconds: 10.0,
            clap: String::new(),
        }
    }
}

/// The Listen tab: the open session, the rater, and the set-up of a new one.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ListenForm {
    pub log: String,
    pub rater: String,
    pub setup: SetupForm,
}

/// A new session, prepared by the engine (as `tunelab listen new`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SetupForm {
    /// Model A (e.g. the baseline) and B (e.g. the fine-tune): Hub id, folder or run.
    pub model_a: String,
    pub model_b: String,
    /// One prompt per line (MusicGen: text; Music Transformer: `improv` or a MIDI file to
    /// continue).
    pub prompts: String,
    /// A dataset whose test split gives the prompts.
    pub dataset: String,
    pub clips_per_prompt: usize,
    pub seconds: f64,
    pub trials: usize,
    pub abx: bool,
    pub catch_every: usize,
    /// Where the session goes (clips and `session.jsonl`).
    pub out: String,
}

impl Default for SetupForm {
    fn default() -> Self {
        let demo = crate::demo::demo_dir();
        Self {
            model_a: crate::demo::model_dir().display().to_string(),
            model_b: demo.join("runs/folk-finetune").display().to_string(),
            prompts: "improv".into(),
            dataset: crate::demo::dataset_dir("folk").display().to_string(),
            clips_per_prompt: 2,
            seconds: 10.0,
            trials: 20,
            abx: false,
            catch_every: 0,
            out: demo
                .join("sessions/folk-vs-classical")
                .display()
                .to_string(),
        }
    }
}

impl SetupForm {
    /// The prompts, one per non-empty line.
    pub fn prompt_list(&self) -> Vec<String> {
        self.prompts
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }
}
