//! The studio (feature `gui`).

pub mod app;
pub mod bench;
pub mod dataset;
pub mod evaluate;
pub mod generate;
pub mod listen;
pub mod listen_results;
pub mod models;
pub mod train;

/// Opens the studio window (on `tab` if given).
pub fn run(tab: Option<&str>) -> anyhow::Result<()> {
    let tab = match tab {
        None => None,
        Some("models") => Some(app::Tab::Models),
        Some("generate") => Some(app::Tab::Generate),
        Some("dataset") => Some(app::Tab::Dataset),
        Some("train") => Some(app::Tab::Train),
        Some("evaluate") => Some(app::Tab::Evaluate),
        Some("listen") => Some(app::Tab::Listen),
        Some(o) => {
            anyhow::bail!("unknown tab {o} (models, generate, dataset, train, evaluate, listen)")
        }
    };
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("tunelab")
            .with_inner_size([1100.0, 720.0]),
        ..Default::default()
    };
    eframe::run_native(
        "tunelab",
        options,
        Box::new(move |cc| Ok(Box::new(app::TunelabApp::new(cc, tab)))),
    )
    .map_err(|e| anyhow::anyhow!("could not open the studio window: {e}"))
}
