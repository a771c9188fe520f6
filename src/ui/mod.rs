//! The studio (feature `gui`).

pub mod app;
pub mod dataset;
pub mod listen;
pub mod train;

/// Opens the studio window.
pub fn run() -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("tunelab")
            .with_inner_size([1100.0, 720.0]),
        ..Default::default()
    };
    eframe::run_native(
        "tunelab",
        options,
        Box::new(|cc| Ok(Box::new(app::TunelabApp::new(cc)))),
    )
    .map_err(|e| anyhow::anyhow!("could not open the studio window: {e}"))
}
