//! The shape every tab's panel has (as the egui demo app's panels): the [`Panel`] trait the
//! shell iterates by [`Tab`], and the [`Request`]s a panel hands the shell for anything beyond
//! itself, and the [`Outbox`] they go in. A panel never reaches into another panel or the
//! engine: clicks and engine events queue commands and requests in the outbox, which the shell
//! applies once, at the end of the frame (as rerun's command sender).

use std::path::PathBuf;

use std::sync::Arc;

use crate::engine::{Command, Event, JobId};
use crate::ui::generate::HistoryEntry;
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

    /// Does the shell scroll the panel? (A panel that splits its space into columns with
    /// their own scrolling says no.)
    fn scrolls(&self) -> bool {
        true
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
    /// A clip (or rendered piece) was generated: the Library lists it, its thumbnail from
    /// `audio` (the file may still be being written).
    ClipAdded {
        entry: Box<HistoryEntry>,
        audio: Arc<Vec<f32>>,
        rate: u32,
    },
    /// This audio file is the Generate form's audio prompt now (the Generate tab opens).
    AudioPrompt(PathBuf),
    /// A clip's settings go into the Generate form (the Generate tab opens).
    Reuse(Box<HistoryEntry>),
    /// A new listening test of these models on these prompts is set up in the Listen tab
    /// (`model_b: None` leaves B as it was); the Listen tab opens.
    ListenTest {
        model_a: String,
        model_b: Option<String>,
        prompts: Vec<String>,
    },
    /// Show this tab.
    Show(Tab),
}

/// What the panels queued this frame: engine commands with fresh job ids, cancellations (each
/// naming the job it cancels), and requests to the shell. The shell sends and applies them
/// once, at the end of the frame; a panel never acts on the engine or another panel itself.
#[derive(Debug, Default)]
pub struct Outbox {
    commands: Vec<Command>,
    cancels: Vec<JobId>,
    requests: Vec<Request>,
    next_job: JobId,
}

/// An outbox's contents, taken by the shell to apply.
#[derive(Debug, Default)]
pub struct Queued {
    pub commands: Vec<Command>,
    pub cancels: Vec<JobId>,
    pub requests: Vec<Request>,
}

impl Outbox {
    /// A fresh job id (unique for this studio).
    pub fn job(&mut self) -> JobId {
        self.next_job += 1;
        self.next_job
    }

    /// Queues a command for the engine.
    pub fn send(&mut self, cmd: Command) {
        self.commands.push(cmd);
    }

    /// Asks the engine to cancel `job` (applied before the frame's commands are sent).
    pub fn cancel(&mut self, job: JobId) {
        if !self.cancels.contains(&job) {
            self.cancels.push(job);
        }
    }

    /// Asks the shell for something beyond the panel (another panel, the tab, the status bar).
    pub fn request(&mut self, r: Request) {
        self.requests.push(r);
    }

    /// Replaces the status line.
    pub fn status(&mut self, s: Status) {
        self.request(Request::Status(s));
    }

    pub fn commands(&self) -> &[Command] {
        &self.commands
    }

    pub fn cancels(&self) -> &[JobId] {
        &self.cancels
    }

    pub fn requests(&self) -> &[Request] {
        &self.requests
    }

    /// The last status line queued, if any.
    pub fn last_status(&self) -> Option<&Status> {
        self.requests.iter().rev().find_map(|r| match r {
            Request::Status(s) => Some(s),
            _ => None,
        })
    }

    /// Empties the outbox (the job counter goes on).
    pub fn take(&mut self) -> Queued {
        Queued {
            commands: std::mem::take(&mut self.commands),
            cancels: std::mem::take(&mut self.cancels),
            requests: std::mem::take(&mut self.requests),
        }
    }
}

/// A panel alone in a 1280 × 800 window (the studio's is at least 960 × 600), as the panels'
/// tests drive it: each frame it polls, then draws, into its own outbox.
#[cfg(test)]
pub mod hosted {
    use super::{ModelBusy, Outbox, Panel};

    pub struct Hosted<P> {
        pub panel: P,
        pub out: Outbox,
    }

    pub fn harness<P: Panel + 'static>(panel: P) -> egui_kittest::Harness<'static, Hosted<P>> {
        egui_kittest::Harness::builder()
            .with_size(egui::vec2(1280.0, 800.0))
            .build_ui_state(
                |ui, s: &mut Hosted<P>| {
                    s.panel.poll(&mut s.out);
                    s.panel.ui(ui, ModelBusy::default(), &mut s.out)
                },
                Hosted {
                    panel,
                    out: Outbox::default(),
                },
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbox_names_each_cancelled_job_once_and_hands_everything_over() {
        let mut out = Outbox::default();
        let (a, b) = (out.job(), out.job());
        assert_ne!(a, b);
        out.send(Command::PauseTraining);
        out.cancel(a);
        out.cancel(a);
        out.cancel(b);
        out.status(Status::Info("one".into()));
        out.status(Status::Error("two".into()));
        assert_eq!(out.last_status(), Some(&Status::Error("two".into())));
        let q = out.take();
        assert_eq!(q.cancels, [a, b]);
        assert!(matches!(q.commands.as_slice(), [Command::PauseTraining]));
        assert_eq!(q.requests.len(), 2);
        assert!(out.commands().is_empty() && out.cancels().is_empty());
        assert!(out.job() > b, "job ids keep counting");
    }
}
