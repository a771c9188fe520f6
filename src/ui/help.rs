//! The studio's two overlays: the Help window (`?` or F1) with every key and where things are,
//! and the welcome shown on the first start (until dismissed; the shell persists that) with the
//! three things to try on the offline demo, a button each.

use crate::ui::tab::Tab;

/// Every key of the studio: (keys, what they do). The Help window lists them; each is handled
/// where it says.
pub const KEYS: &[(&str, &str)] = &[
    ("Ctrl+1 … Ctrl+7", "Open the tabs, in the tab bar's order"),
    ("? or F1", "Show or hide this help"),
    (
        "Ctrl + / Ctrl - / Ctrl+0",
        "Larger / smaller / default UI scale",
    ),
    (
        "Tab / Shift+Tab",
        "Move between controls; Space or Enter presses a button",
    ),
    (
        "Ctrl+Enter",
        "Generate: generate with the form (also from the prompt)",
    ),
    (
        "Space",
        "Generate and Library: play / pause the clip (outside text fields)",
    ),
    ("Escape", "Generate and Library: stop; closes this help"),
    ("A / B", "Library: hear side A / B of the compared pair"),
    ("L", "Library: loop on / off"),
    (
        "A / B / X, Space",
        "Listen: play a side of the trial (the playhead is kept), pause",
    ),
    (
        "Left / Right, [ / ]",
        "Listen: seek 2 s, mark a loop region",
    ),
    ("1 / 2 / 0", "Listen: prefer A / prefer B / no preference"),
    ("Q / W", "Listen, ABX: X is A / X is B"),
];

/// What the Help window asks of the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelpChoice {
    /// Show the welcome again.
    Welcome,
}

/// The Help window while `open`; Escape closes it.
pub fn help_window(ctx: &egui::Context, open: &mut bool) -> Option<HelpChoice> {
    if *open && ctx.input(|i| i.key_pressed(egui::Key::Escape)) {
        *open = false;
    }
    let mut choice = None;
    egui::Window::new("Keys and help")
        .open(open)
        .collapsible(false)
        .resizable(false)
        .default_width(520.0)
        .anchor(egui::Align2::CENTER_CENTER, egui::vec2(0.0, 0.0))
        .show(ctx, |ui| {
            egui::Grid::new("help-keys")
                .num_columns(2)
                .striped(true)
                .show(ui, |ui| {
                    for (keys, what) in KEYS {
                        ui.strong(*keys);
                        ui.label(*what);
                        ui.end_row();
                    }
                });
            ui.separator();
            ui.label(
                "Every control explains itself when you hover it. Paths are chosen by name: \
                 click one for its full path, Browse…, or a recent choice; drop a file or \
                 folder on it. The status bar shows the loaded model, where it runs, the \
                 memory in use and each job's progress.",
            );
            if ui.button("Show the welcome again").clicked() {
                choice = Some(HelpChoice::Welcome);
            }
        });
    choice
}

/// What the welcome's buttons do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WelcomeChoice {
    /// Generate a piece with the loaded demo model (the Generate tab).
    Generate,
    /// Fine-tune the demo model on the folk tunes and watch the curves (the Train tab).
    FineTune,
    /// A blind A/B test of the fine-tune against the demo model, prepared at once when the
    /// fine-tune exists (the Listen tab).
    Compare,
    /// Close it for good.
    Dismiss,
}

impl WelcomeChoice {
    /// The tab it opens.
    pub fn tab(self) -> Option<Tab> {
        match self {
            WelcomeChoice::Generate => Some(Tab::Generate),
            WelcomeChoice::FineTune => Some(Tab::Train),
            WelcomeChoice::Compare => Some(Tab::Listen),
            WelcomeChoice::Dismiss => None,
        }
    }
}

/// The welcome window; the button pressed, if any.
pub fn welcome_window(ctx: &egui::Context) -> Option<WelcomeChoice> {
    let mut choice = None;
    let mut open = true;
    egui::Window::new("Welcome to tunelab")
        .open(&mut open)
        .collapsible(false)
        .resizable(false)
        .default_width(560.0)
        .anchor(egui::Align2::CENTER_CENTER, egui::vec2(0.0, 0.0))
        .show(ctx, |ui| {
            ui.label(
                "tunelab fine-tunes music models on your own music, and lets you prove the \
                 result by ear. It opens on an offline demo: a small Music Transformer trained \
                 on Bach chorales, and a folder of folk tunes to teach it. Three things to try:",
            );
            ui.add_space(6.0);
            let steps = [
                (
                    WelcomeChoice::Generate,
                    "1. Generate a piece",
                    "The demo model improvises a piece; hear it, and find it in the Library.",
                ),
                (
                    WelcomeChoice::FineTune,
                    "2. Fine-tune on the folk tunes",
                    "200 steps on the folk tunes; watch the loss curves as it trains.",
                ),
                (
                    WelcomeChoice::Compare,
                    "3. A/B the two",
                    "A blind listening test of the fine-tune against the demo model.",
                ),
            ];
            egui::Grid::new("welcome-steps")
                .num_columns(2)
                .spacing([12.0, 8.0])
                .show(ui, |ui| {
                    for (c, button, what) in steps {
                        if ui.button(button).clicked() {
                            choice = Some(c);
                        }
                        ui.label(what);
                        ui.end_row();
                    }
                });
            ui.add_space(6.0);
            ui.horizontal(|ui| {
                if ui.button("Close").clicked() {
                    choice = Some(WelcomeChoice::Dismiss);
                }
                ui.weak("It will not show again; ? brings the help, which can bring it back.");
            });
        });
    if !open {
        choice = Some(WelcomeChoice::Dismiss);
    }
    choice
}
