//! The status bar at the foot of the studio: the jobs' progress bars, the status line, and the
//! one place that says what the engine holds: its state, the loaded model (by its readable
//! name) with its family, weight mode and precision, the device it runs on, and the studio's
//! resident memory.

use crate::engine::ModelInfo;
use crate::models::nn::WeightMode;
use crate::models::Family;
use crate::ui::picker::{readable, PathKind};
use crate::ui::status::Status;

/// What the status bar shows of the engine.
#[derive(Debug, Clone, Default)]
pub struct EngineView<'a> {
    /// What it is doing ("idle", "loading", "generating", "training", …).
    pub state: String,
    pub model: Option<&'a ModelInfo>,
    /// What the model was loaded as (spec), and its weight mode (MusicGen).
    pub spec: Option<&'a str>,
    pub weights: Option<WeightMode>,
    /// Where the engine runs when no model says so (the Models tab's device).
    pub device: Option<String>,
    /// The studio's resident memory (bytes).
    pub memory: Option<u64>,
}

impl EngineView<'_> {
    /// The model's part of the bar: `name · family · weights · precision`.
    pub fn model_text(&self, ctx: &egui::Context) -> String {
        let Some(m) = self.model else {
            return "no model loaded".into();
        };
        let name = self
            .spec
            .and_then(|s| readable(ctx, s, PathKind::Model))
            .map(|r| r.name)
            .unwrap_or_else(|| m.description.clone());
        let family = match m.family {
            Family::Musicgen => "MusicGen",
            Family::Midi => "Music Transformer",
        };
        let weights = match (m.family, self.weights) {
            (Family::Musicgen, Some(w)) => format!(" · {w}"),
            _ => String::new(),
        };
        format!("{name} · {family}{weights} · {}", m.precision)
    }
}

/// Draws the bar: progress bars (one per job), then the status line on the left and the
/// engine's state, model, device and memory on the right.
pub fn status_bar(
    ui: &mut egui::Ui,
    status: &Status,
    progress: &[(f32, String)],
    engine: &EngineView<'_>,
) {
    for (f, text) in progress {
        ui.add(egui::ProgressBar::new(*f).text(text.as_str()));
    }
    ui.horizontal(|ui| {
        status.ui(ui);
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if let Some(b) = engine.memory {
                ui.weak(format!("{:.2} GB", b as f64 / 1e9))
                    .on_hover_text("The studio's resident memory (RSS), model included.");
                ui.separator();
            }
            let device = engine
                .model
                .map(|m| m.device.clone())
                .or_else(|| engine.device.clone())
                .unwrap_or_else(|| "cpu".into());
            ui.label(device)
                .on_hover_text("Where the engine runs (the Models tab changes it).");
            ui.separator();
            let spec = engine.spec.unwrap_or("");
            ui.label(engine.model_text(ui.ctx()))
                .on_hover_text(if spec.is_empty() {
                    "Load a model in the Models or Generate tab.".to_string()
                } else {
                    format!("The loaded model: {spec}")
                });
            ui.separator();
            ui.label(format!("engine: {}", engine.state));
        });
    });
}
