//! The status line at the bottom of the studio: one typed message that panels and the shell
//! replace, drawn by the shell. Its kind decides how it looks (an error in the theme's error
//! colour, work under way with a spinner); nothing parses its text.

/// What the status line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Something done or true now ("Loaded: …", "Saved …").
    Info(String),
    /// Work under way (shown with a spinner until replaced).
    Working(String),
    /// Done, but with something to know (no audio device, an unrendered piece).
    Warning(String),
    /// Something failed.
    Error(String),
}

impl Status {
    /// The message.
    pub fn text(&self) -> &str {
        match self {
            Status::Info(t) | Status::Working(t) | Status::Warning(t) | Status::Error(t) => t,
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Status::Error(_))
    }

    /// Draws the line.
    pub fn ui(&self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| match self {
            Status::Info(t) => {
                ui.label(t);
            }
            Status::Working(t) => {
                ui.spinner();
                ui.label(t);
            }
            Status::Warning(t) => {
                ui.colored_label(ui.visuals().warn_fg_color, t);
            }
            Status::Error(t) => {
                ui.colored_label(ui.visuals().error_fg_color, t);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egui_kittest::kittest::Queryable;
    use egui_kittest::Harness;

    #[test]
    fn each_kind_draws_its_text() {
        for s in [
            Status::Info("Loaded: tiny".into()),
            Status::Working("Loading tiny…".into()),
            Status::Warning("no audio output device".into()),
            Status::Error("the engine stopped".into()),
        ] {
            let text = s.text().to_string();
            let error = s.is_error();
            let h = Harness::new_ui_state(|ui, s: &mut Status| s.ui(ui), s);
            assert!(h.query_by_label(&text).is_some(), "{text}");
            assert_eq!(error, text == "the engine stopped");
        }
    }
}
