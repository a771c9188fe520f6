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
/// maximized state it was closed with.
pub fn run(tab: Option<Tab>) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("tunelab")
            .with_inner_size([1280.0, 800.0])
            .with_min_inner_size([960.0, 600.0])
            .with_maximized(true),
        ..Default::default()
    };
    eframe::run_native(
        "tunelab",
        options,
        Box::new(move |cc| Ok(Box::new(TunelabApp::new(cc, tab)))),
    )
    .map_err(|e| anyhow::anyhow!("could not open the studio window: {e}"))
}
