//! The studio (feature `gui`): an eframe app with one panel per tab. Long work (loading,
//! generating, training, importing, evaluating, preparing a session) goes to the engine thread
//! as `engine::Command`s and comes back as `engine::Event`s; the panels themselves only read
//! and write small files (session logs, segment lists, the clip history) and decode clips to
//! play, off the UI thread where it could take a while.
//!
//! - `app.rs`: the shell (tab bar, event routing, the outbox applied at the end of the frame,
//!   keys, overlays); `status_bar.rs`: the foot of the window (progress, status line, the
//!   loaded model, device and memory); `help.rs`: the Help window and the first-start welcome;
//!   `state.rs`: what is persisted, `forms.rs`: each panel's persisted form; `tab.rs`: the tabs
//!   and their names;
//! - `panel.rs`: the trait every panel implements, the requests panels make of the shell and
//!   the outbox they go in; `common.rs`: widgets panels share (form field, waveform, dialogs);
//!   `status.rs`: the typed status line; `runs.rs`: training runs as the panels list them;
//!   `picker.rs`: the path field every panel uses (readable names, Browse…, recents, drops);
//! - the panels: `models.rs`, `generate/`, `library/`, `dataset.rs`, `train/`, `evaluate.rs`,
//!   `listen/`;
//! - `bench.rs`: the headless studio behind `tunelab bench ui`.

pub mod app;
pub mod bench;
pub mod common;
pub mod dataset;
pub mod evaluate;
pub mod forms;
pub mod generate;
pub mod help;
pub mod library;
pub mod listen;
pub mod models;
pub mod panel;
pub mod picker;
pub mod runs;
pub mod state;
pub mod status;
pub mod status_bar;
pub mod tab;
pub mod train;

pub use app::TunelabApp;
pub use state::{State, Theme};
pub use status::Status;
pub use tab::{Tab, UnknownTab};

/// Opens the studio window (on `tab` if given, else where it was left). The first time it
/// fills the screen's work area (maximized); after that eframe restores the size, place and
/// maximized state it was closed with. `scripts/screenshots` fixes the size and theme instead
/// ([`Shot`]). With `session` (a listening session's log, and the rater if known) it opens on
/// the Listen tab, ready to rate it.
pub fn run(
    tab: Option<Tab>,
    session: Option<(std::path::PathBuf, Option<String>)>,
) -> anyhow::Result<()> {
    let shot = Shot::from_env();
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("tunelab")
        .with_inner_size([1280.0, 800.0])
        .with_min_inner_size([960.0, 600.0]);
    viewport = match shot.size {
        Some(size) => viewport.with_inner_size(size).with_position([0.0, 0.0]),
        None => viewport.with_maximized(true),
    };
    let options = eframe::NativeOptions {
        viewport,
        persist_window: shot.size.is_none(),
        ..Default::default()
    };
    eframe::run_native(
        "tunelab",
        options,
        Box::new(move |cc| {
            let mut app = TunelabApp::new(cc, tab).with_shot(&shot);
            if let Some((log, rater)) = &session {
                app.open_session(log, rater.as_deref());
            }
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!("could not open the studio window: {e}"))
}

/// How `scripts/screenshots` opens the studio: `TUNELAB_SHOT_SIZE=WxH` (points, a window of
/// that size at the top left, not remembered), `TUNELAB_SHOT_THEME=light|dark`, and
/// `TUNELAB_SHOT_WELCOME=0|1` (hide or show the welcome whatever was persisted).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shot {
    pub size: Option<[f32; 2]>,
    pub theme: Option<Theme>,
    pub welcome: Option<bool>,
}

impl Shot {
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok();
        Self::parse(
            var("TUNELAB_SHOT_SIZE").as_deref(),
            var("TUNELAB_SHOT_THEME").as_deref(),
            var("TUNELAB_SHOT_WELCOME").as_deref(),
        )
    }

    /// The settings from the variables' values (anything unreadable is left alone).
    pub fn parse(size: Option<&str>, theme: Option<&str>, welcome: Option<&str>) -> Self {
        let size = size.and_then(|s| {
            let (w, h) = s.split_once('x')?;
            let (w, h): (f32, f32) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
            (w >= 320.0 && h >= 240.0 && w.is_finite() && h.is_finite()).then_some([w, h])
        });
        let theme = match theme {
            Some("light") => Some(Theme::Light),
            Some("dark") => Some(Theme::Dark),
            _ => None,
        };
        let welcome = match welcome {
            Some("1") => Some(true),
            Some("0") => Some(false),
            _ => None,
        };
        Self {
            size,
            theme,
            welcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screenshot_settings_are_read_and_bad_values_ignored() {
        assert_eq!(
            Shot::parse(Some("1920x1080"), Some("dark"), Some("1")),
            Shot {
                size: Some([1920.0, 1080.0]),
                theme: Some(Theme::Dark),
                welcome: Some(true),
            }
        );
        assert_eq!(
            Shot::parse(Some("10x10"), Some("purple"), Some("yes")),
            Shot::default()
        );
        assert_eq!(Shot::parse(Some("inf x 800"), None, None), Shot::default());
        assert_eq!(Shot::parse(None, None, None), Shot::default());
    }
}
