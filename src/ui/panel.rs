//! The shape every tab's panel has (as the egui demo app's panels): the [`Panel`] trait the
//! shell iterates by [`Tab`], and the [`Request`]s a panel hands the shell for anything beyond
//! itself. A panel never reaches into another panel or the engine: clicks and engine events
//! queue commands and requests in the [`Outbox`], which the shell applies once, at the end of
//! the frame (as rerun's command sender).

use std::path::PathBuf;

use crate::engine::{Event, JobId};
use crate::ui::common::Outbox;
use crate::ui::runs::RunEntry;
use crate::ui::state::State;
use crate::ui::status::Status;
use crate::ui::tab::Tab;

/// One tab of the studio.
pub trait Panel {
    /// The tab it fills (its title is the tab's).
    fn tab(&self) -> Tab;

    /// Draws the panel (only while its tab is shown); what the user asks for goes to `out`.
    fn ui(&mut self, ui: &mut egui::Ui, model: ModelBusy, out: &mut Outbox);

    /// Applies an engine event; true when it belongs to a job this panel started (the shell
    /// then leaves it alone). Every panel sees every event: one may follow another's (a model
    /// loaded from the Models tab is the Generate tab's model).
    fn on_event(&mut self, ev: &Event, out: &mut Outbox) -> bool;

    /// Each frame, shown or not: takes what helper threads (file dialogs, decoders, writers)
    /// have finished.
    fn poll(&mut self, _out: &mut Outbox) {}

    /// The engine jobs it started and has not seen end.
    fn jobs(&self) -> Vec<JobId>;

    /// Does `job` belong to this panel?
    fn owns(&self, job: JobId) -> bool {
        self.jobs().contains(&job)
    }

    /// Progress for the status bar (fraction, text), while it has some to show.
    fn progress(&self) -> Option<(f32, String)> {
        None
    }

    /// Writes its persisted form into `state` (when eframe saves).
    fn save(&self, state: &mut State);
}

/// What the shell tells a panel about the engine's one model while it draws.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelBusy {
    /// A model is being loaded.
    pub loading: bool,
    /// A generation is queued or running.
    pub generating: bool,
}

impl ModelBusy {
    pub fn any(self) -> bool {
        self.loading || self.generating
    }
}

/// What a panel asks of the shell, applied at the end of the frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Replace the status line.
    Status(Status),
    /// Show the progress of this model load (`what`: the model) until its `Done`.
    TrackLoad { job: JobId, what: String },
    /// Train on this dataset: the Train panel's form takes it and the Train tab opens.
    TrainOn(PathBuf),
    /// The training runs found in the runs folder (the Generate panel's model picker offers
    /// them).
    Runs(Vec<RunEntry>),
}
