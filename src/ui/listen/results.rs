//! The Listen panel's results view: the unblinded verdict of one or more pooled sessions (exact
//! p-value, Clopper–Pearson interval, bootstrap over raters and prompts, ABX, catch trials), the
//! per-prompt and per-rater tables, and the objective numbers of the same two models beside the
//! votes (from the session folder's `metrics.json`, computed here through the engine's
//! `Evaluate` command). Shown after a rater's last trial, or on demand for the owner.

use std::path::PathBuf;

use crate::engine::{Command, Event, JobId, JobOutput};
use crate::eval::listen::stats::TiePolicy;
use crate::eval::listen::{
    answers_to_csv, pool, results_to_csv, Results, ResultsOptions, SessionLog,
};
use crate::eval::report::{EvalOptions, EvalReport};
use crate::eval::verdict::{export_json, metrics_path, verdict, Verdict};
use crate::ui::common::field;
use crate::ui::panel::Outbox;
use crate::ui::picker::{path_field, PathKind};

pub struct ResultsView {
    /// The session logs pooled (the first one's folder holds `metrics.json` and the exports).
    pub logs: Vec<PathBuf>,
    /// Another session of the same two models to pool, typed or pasted.
    pub add_log: String,
    pub split_ties: bool,
    /// Dataset whose test split the objective numbers are measured on.
    pub dataset: String,
    /// Clips generated per model for the audio metrics (MusicGen).
    pub clips: usize,
    pub results: Option<Results>,
    pub report: Option<EvalReport>,
    pub verdict: Option<Verdict>,
    /// The engine job computing the numbers, and its last progress line.
    pub job: Option<JobId>,
    pub progress: String,
    pub message: Option<String>,
    pub error: Option<String>,
}

impl ResultsView {
    /// The results of `log`, scored at once.
    pub fn new(log: PathBuf, dataset: String) -> Self {
        let mut v = Self {
            logs: vec![log],
            add_log: String::new(),
            split_ties: false,
            dataset,
            clips: 8,
            results: None,
            report: None,
            verdict: None,
            job: None,
            progress: String::new(),
            message: None,
            error: None,
        };
        v.reload();
        v
    }

    fn options(&self) -> ResultsOptions {
        ResultsOptions {
            tie_policy: if self.split_ties {
                TiePolicy::Split
            } else {
                TiePolicy::Exclude
            },
            ..Default::default()
        }
    }

    fn open_logs(&self) -> crate::error::Result<Vec<SessionLog>> {
        self.logs.iter().map(|p| Ok(SessionLog::open(p)?)).collect()
    }

    /// Re-reads the logs (other raters may have answered) and the objective report.
    pub fn reload(&mut self) {
        self.error = None;
        let logs = match self.open_logs() {
            Ok(l) => l,
            Err(e) => {
                self.error = Some(e.to_string());
                return;
            }
        };
        match pool(&logs, &self.options()) {
            Ok(r) => self.results = Some(r),
            Err(e) => {
                self.error = Some(e.to_string());
                return;
            }
        }
        let path = metrics_path(&self.logs[0]);
        self.report = None;
        if path.exists() {
            match EvalReport::load(&path) {
                Ok(r) => self.report = Some(r),
                Err(e) => self.error = Some(e.to_string()),
            }
        }
        self.verdict = self
            .results
            .as_ref()
            .map(|r| verdict(r, self.report.as_ref()));
    }

    /// The numbers arrive: `metrics.json` was written by the engine, so read it with the logs.
    /// True when the event was this view's job's.
    pub fn on_event(&mut self, ev: &Event) -> bool {
        match ev {
            Event::Progress { job, message } if Some(*job) == self.job => {
                self.progress = message.clone();
                true
            }
            Event::Done { job, result } if Some(*job) == self.job => {
                self.job = None;
                self.progress.clear();
                match result {
                    Ok(JobOutput::Evaluated(_)) => self.reload(),
                    Ok(_) => {}
                    Err(e) => self.error = Some(format!("Computing the metrics failed: {e}")),
                }
                true
            }
            _ => false,
        }
    }

    fn compute_metrics(&mut self, out: &mut Outbox) {
        let Some(r) = &self.results else {
            return;
        };
        if self.dataset.trim().is_empty() {
            self.error = Some("Name the dataset whose test split the numbers use.".into());
            return;
        }
        let seconds = self
            .open_logs()
            .ok()
            .and_then(|l| l.first().map(|l| l.spec().seconds))
            .unwrap_or(10.0);
        let job = out.job();
        out.send(Command::Evaluate {
            job,
            models: vec![r.model_a.id.clone(), r.model_b.id.clone()],
            dataset: PathBuf::from(self.dataset.trim()),
            options: EvalOptions {
                clips: self.clips,
                seconds,
                ..Default::default()
            },
            save: Some(metrics_path(&self.logs[0])),
        });
        self.job = Some(job);
        self.error = None;
    }

    /// Writes `results.csv` (results, then every answer) and `results.json` (with the verdict
    /// and the numbers) into the first session's folder.
    fn export(&mut self) {
        let (Some(r), Ok(logs)) = (&self.results, self.open_logs()) else {
            return;
        };
        let dir = self.logs[0].parent().map(PathBuf::from).unwrap_or_default();
        let csv = dir.join("results.csv");
        let json = dir.join("results.json");
        let written = export_json(&logs, r, self.report.as_ref()).and_then(|j| {
            crate::util::atomic_write(&json, j.as_bytes())?;
            let text = results_to_csv(r) + "\n" + &answers_to_csv(&logs);
            crate::util::atomic_write(&csv, text.as_bytes())
        });
        match written {
            Ok(()) => {
                self.message = Some(format!("Exported {} and {}", csv.display(), json.display()))
            }
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, out: &mut Outbox) {
        ui.horizontal(|ui| {
            if ui.button("Refresh").clicked() {
                self.reload();
            }
            if ui
                .checkbox(&mut self.split_ties, "Count “no preference” as half a vote")
                .changed()
            {
                self.reload();
            }
            if ui.button("Export CSV + JSON").clicked() {
                self.export();
            }
        });
        if let Some(m) = &self.message {
            ui.label(m);
        }
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        let (Some(r), Some(v)) = (self.results.clone(), self.verdict.clone()) else {
            return;
        };
        ui.heading("Verdict");
        ui.label(&v.headline);
        if let Some(b) = &r.bootstrap {
            ui.label(format!(
                "Bootstrap over raters and prompts ({} replicates): B's share {:.2}, {:.2}.",
                b.iters, b.mean, b.interval
            ));
        }
        if let Some(a) = &r.abx {
            ui.label(format!(
                "ABX: {} of {} correct (one-sided p = {:.4}).",
                a.correct, a.n, a.p_one_sided
            ));
        }
        ui.label(format!(
            "Catch trials failed: {} of {}.",
            r.catch_failures, r.catch_trials
        ));
        if !r.unfinished_raters.is_empty() {
            ui.label(format!(
                "Still answering (their votes so far are counted): {}",
                r.unfinished_raters.join(", ")
            ));
        }

        ui.separator();
        ui.heading("Ears and numbers");
        egui::Grid::new("listen-verdict")
            .striped(true)
            .num_columns(9)
            .show(ui, |ui| {
                for h in [
                    "",
                    "model",
                    "votes",
                    "share",
                    "CE",
                    "PPL",
                    "FAD",
                    "KAD×1000",
                    "mel MSE",
                ] {
                    ui.strong(h);
                }
                ui.end_row();
                for row in &v.rows {
                    ui.label(row.role);
                    ui.label(format!("{} ({})", row.label, row.id));
                    ui.label(format!("{}", row.votes));
                    ui.label(
                        row.share
                            .map(|s| format!("{:.0} %", s * 100.0))
                            .unwrap_or_else(|| "—".into()),
                    );
                    let m = row.metrics.as_ref();
                    let g = m.and_then(|m| m.generated.as_ref());
                    let cell = |x: Option<String>| x.unwrap_or_else(|| "—".into());
                    ui.label(cell(m.map(|m| format!("{:.4}", m.held_out.ce))));
                    ui.label(cell(m.map(|m| format!("{:.2}", m.held_out.ppl))));
                    ui.label(cell(g.map(|g| {
                        format!(
                            "{:.3} [{:.3}, {:.3}]",
                            g.fad.estimate, g.fad.lower, g.fad.upper
                        )
                    })));
                    ui.label(cell(g.map(|g| format!("{:.3}", g.kad.kad.scaled))));
                    ui.label(cell(g.map(|g| format!("{:.4}", g.mean_log_mel_mse))));
                    ui.label(cell(
                        g.and_then(|g| g.clap.as_ref())
                            .map(|c| format!("{:.3}", c.mean)),
                    ));
                    ui.end_row();
                }
            });
        if !v.numbers_favour.is_empty() {
            let f: Vec<String> = v
                .numbers_favour
                .iter()
                .map(|(m, w)| format!("{m}: {w}"))
                .collect();
            ui.label(format!(
                "Numbers favour (lower is better; CLAP higher): {}",
                f.join(", ")
            ));
        }
        if let Some(src) = &v.metrics_source {
            ui.small(format!("Numbers measured on {src}."));
        }
        for n in &v.notes {
            ui.small(n);
        }
        ui.horizontal(|ui| {
            path_field(
                ui,
                "Dataset",
                "The numbers use its test split (held-out loss; for MusicGen also clips \
                 generated from its captions).",
                &mut self.dataset,
                PathKind::Dataset,
                None,
            );
            field(ui, "Clips", "Generated per model (MusicGen only).", |ui| {
                ui.add(egui::DragValue::new(&mut self.clips).range(1..=200))
            });
            if ui
                .add_enabled(self.job.is_none(), egui::Button::new("Compute metrics"))
                .clicked()
            {
                self.compute_metrics(out);
            }
            if self.job.is_some() {
                ui.spinner();
                ui.label(&self.progress);
            }
        });

        ui.separator();
        ui.heading("Per prompt");
        egui::Grid::new("listen-per-prompt")
            .striped(true)
            .num_columns(4)
            .show(ui, |ui| {
                for h in ["prompt", "B wins / votes", "B share", "ties"] {
                    ui.strong(h);
                }
                ui.end_row();
                for p in &r.per_prompt {
                    ui.label(&p.prompt);
                    ui.label(format!("{} / {}", p.wins_b, p.n));
                    ui.label(if p.n > 0 {
                        format!("{:.0} %", 100.0 * p.wins_b / p.n as f64)
                    } else {
                        "—".into()
                    });
                    ui.label(p.ties.to_string());
                    ui.end_row();
                }
            });
        ui.heading("Per rater");
        egui::Grid::new("listen-per-rater")
            .striped(true)
            .num_columns(4)
            .show(ui, |ui| {
                for h in ["rater", "B wins / votes", "ties", "catch failed"] {
                    ui.strong(h);
                }
                ui.end_row();
                for q in &r.per_rater {
                    ui.label(&q.rater);
                    ui.label(format!("{} / {}", q.wins_b, q.n));
                    ui.label(q.ties.to_string());
                    ui.label(format!("{} of {}", q.catch_failures, q.catch_trials));
                    ui.end_row();
                }
            });
        ui.horizontal(|ui| {
            path_field(
                ui,
                "Pool another session",
                "A session.jsonl of the same two models (same weights); raters are pooled.",
                &mut self.add_log,
                PathKind::SessionLog,
                Some("none"),
            );
            if ui.button("Add").clicked() && !self.add_log.trim().is_empty() {
                self.logs.push(PathBuf::from(self.add_log.trim()));
                self.reload();
                if let Some(e) = self.error.take() {
                    self.logs.pop();
                    self.reload();
                    self.error = Some(format!("Not pooled: {e}"));
                } else {
                    self.add_log.clear();
                }
            }
        });
        if self.logs.len() > 1 {
            ui.small(format!("Pooling {} sessions.", self.logs.len()));
        }
    }
}
