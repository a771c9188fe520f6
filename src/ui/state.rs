//! What the studio remembers across restarts: one serde struct (eframe stores it under its
//! app key), filled from the panels' forms when eframe saves. Runtime handles (the engine, the
//! audio stream, jobs) are never in it.

use crate::ui::forms::{
    DatasetForm, EvalForm, GenerateForm, LibraryForm, ListenForm, ModelsForm, TrainForm,
};
use crate::ui::tab::Tab;

/// Form values persisted across restarts.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct State {
    pub tab: Tab,
    pub theme: Theme,
    pub generate: GenerateForm,
    pub library: LibraryForm,
    pub train: TrainForm,
    pub dataset: DatasetForm,
    pub listen: ListenForm,
    pub models: ModelsForm,
    pub evaluate: EvalForm,
    /// The welcome was dismissed: it is not shown again.
    pub welcome_done: bool,
    /// The UI's zoom on top of the display's scale (Ctrl + / Ctrl − change it too); 0 (a
    /// state saved before it existed) is read as 1.
    pub zoom: f32,
}

/// Light or dark: the system's (the default, following it live) or fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Theme {
    #[default]
    System,
    Light,
    Dark,
}

impl Theme {
    pub fn preference(self) -> egui::ThemePreference {
        match self {
            Theme::System => egui::ThemePreference::System,
            Theme::Light => egui::ThemePreference::Light,
            Theme::Dark => egui::ThemePreference::Dark,
        }
    }
}
