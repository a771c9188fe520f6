//! The studio's tabs, named in one place: the tab bar draws [`Tab::title`], `tunelab --tab`
//! takes [`Tab::name`] (the binary lists [`Tab::ALL`] as the flag's possible values), and
//! [`crate::ui::run`] opens on the parsed tab.

use std::fmt;
use std::str::FromStr;

/// One tab of the studio, one panel each. The persisted form (serde) uses the variant names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Tab {
    Models,
    #[default]
    Generate,
    Library,
    Dataset,
    Train,
    Evaluate,
    Listen,
}

impl Tab {
    /// Every tab, in the tab bar's order.
    pub const ALL: [Tab; 7] = [
        Tab::Models,
        Tab::Generate,
        Tab::Library,
        Tab::Dataset,
        Tab::Train,
        Tab::Evaluate,
        Tab::Listen,
    ];

    /// The name `--tab` takes.
    pub fn name(self) -> &'static str {
        match self {
            Tab::Models => "models",
            Tab::Generate => "generate",
            Tab::Library => "library",
            Tab::Dataset => "dataset",
            Tab::Train => "train",
            Tab::Evaluate => "evaluate",
            Tab::Listen => "listen",
        }
    }

    /// The label in the tab bar.
    pub fn title(self) -> &'static str {
        match self {
            Tab::Models => "Models",
            Tab::Generate => "Generate",
            Tab::Library => "Library",
            Tab::Dataset => "Dataset",
            Tab::Train => "Train",
            Tab::Evaluate => "Evaluate",
            Tab::Listen => "Listen",
        }
    }

    /// The key that opens it with Ctrl (Cmd on macOS): 1 for the first tab, and so on.
    pub fn key(self) -> egui::Key {
        const KEYS: [egui::Key; 7] = [
            egui::Key::Num1,
            egui::Key::Num2,
            egui::Key::Num3,
            egui::Key::Num4,
            egui::Key::Num5,
            egui::Key::Num6,
            egui::Key::Num7,
        ];
        let i = Tab::ALL.iter().position(|t| *t == self).unwrap_or(0);
        KEYS[i]
    }

    /// Every name, in order (for messages and help).
    pub fn names() -> [&'static str; 7] {
        Tab::ALL.map(Tab::name)
    }
}

impl fmt::Display for Tab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--tab` value that names no tab.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tab {given:?} (one of: {})", Tab::names().join(", "))]
pub struct UnknownTab {
    pub given: String,
}

impl FromStr for Tab {
    type Err = UnknownTab;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tab::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| UnknownTab { given: s.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tab_round_trips_through_its_name() {
        for t in Tab::ALL {
            assert_eq!(t.name().parse::<Tab>(), Ok(t));
            assert_eq!(t.to_string(), t.name());
            assert_eq!(t.title().to_lowercase(), t.name(), "title and name agree");
        }
        assert!("Listen".parse::<Tab>().is_err(), "the title is not a name");
        let e = "mixer".parse::<Tab>().unwrap_err();
        assert_eq!(e.given, "mixer");
        assert_eq!(
            e.to_string(),
            "unknown tab \"mixer\" (one of: models, generate, library, dataset, train, evaluate, listen)"
        );
    }

    #[test]
    fn all_lists_every_variant_once() {
        // A new variant must be added here, in `ALL` and in the names (this match breaks first).
        let index = |t: Tab| match t {
            Tab::Models => 0,
            Tab::Generate => 1,
            Tab::Library => 2,
            Tab::Dataset => 3,
            Tab::Train => 4,
            Tab::Evaluate => 5,
            Tab::Listen => 6,
        };
        for (i, t) in Tab::ALL.into_iter().enumerate() {
            assert_eq!(index(t), i);
        }
        let mut names = Tab::names().to_vec();
        names.dedup();
        assert_eq!(names.len(), Tab::ALL.len());
    }

    #[test]
    fn the_persisted_form_keeps_the_variant_names() {
        // Studios saved before the tab names moved here stored `"Dataset"`.
        assert_eq!(serde_json::to_string(&Tab::Dataset).unwrap(), "\"Dataset\"");
        assert_eq!(
            serde_json::from_str::<Tab>("\"Evaluate\"").unwrap(),
            Tab::Evaluate
        );
    }
}
