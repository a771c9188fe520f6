//! Ears and numbers side by side: the blind A/B results of two models beside the objective
//! report (held-out loss for either family; FAD, KAD and log-mel distance for MusicGen) of the
//! same two models. A report is matched to the session's models by weights hash, falling back to
//! the model id only when the report carries no hash, so numbers measured on other weights are
//! never shown as theirs.
//!
//! The studio's Listen results and `tunelab listen results` both read the report from the
//! session folder's `metrics.json` (written by the studio's "Compute metrics" or by
//! `tunelab eval --json <session>/metrics.json`).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::eval::listen::stats::{power_votes, TiePolicy};
use crate::eval::listen::{to_json, Results, SessionLog};
use crate::eval::report::{EvalReport, ModelEval};

/// The objective report's file name inside a session folder.
pub const METRICS_FILE: &str = "metrics.json";

/// Where a session's objective report lives: beside its log.
pub fn metrics_path(log: &Path) -> PathBuf {
    log.parent()
        .unwrap_or_else(|| Path::new("."))
        .join(METRICS_FILE)
}

/// One model of the test, with its votes and (when measured) its numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SideRow {
    /// "A" or "B": the model's role in the session (not the side it played on).
    pub role: &'static str,
    pub label: String,
    pub id: String,
    /// Votes won under the session's tie policy (ties count ½ with `Split`).
    pub votes: f64,
    /// Share of the counted votes (`None` before any vote).
    pub share: Option<f64>,
    /// The objective evaluation of these weights, if the report has it.
    pub metrics: Option<ModelEval>,
}

/// What the ears say, in words a listener can defend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Finding {
    /// No scored vote yet.
    NoVotes,
    /// B preferred, exact two-sided p < 0.05.
    BPreferred,
    /// A preferred, exact two-sided p < 0.05.
    APreferred,
    /// The test cannot tell the models apart with these votes.
    NotSignificant,
}

/// Ears and numbers for one pooled result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub finding: Finding,
    /// One sentence: the preference, its p-value and interval, and the finding.
    pub headline: String,
    pub rows: [SideRow; 2],
    /// Metric → which role the numbers favour ("A", "B" or "=") — lower is better for all but
    /// the CLAP score.
    pub numbers_favour: Vec<(String, &'static str)>,
    /// The report's dataset and split, when a report was given.
    pub metrics_source: Option<String>,
    /// Why some numbers are missing (no report; a report of other weights).
    pub notes: Vec<String>,
}

/// The report's entry for `model`: by weights hash when both have one, else by id.
fn find<'a>(
    report: &'a EvalReport,
    id: &str,
    weights_sha256: &str,
) -> Result<&'a ModelEval, String> {
    if let Some(m) = report
        .models
        .iter()
        .find(|m| !m.weights_sha256.is_empty() && m.weights_sha256 == weights_sha256)
    {
        return Ok(m);
    }
    match report.models.iter().find(|m| m.model == id) {
        Some(m) if m.weights_sha256.is_empty() => Ok(m),
        Some(_) => Err(format!(
            "the report's {id} has other weights than the session's (changed since?)"
        )),
        None => Err(format!("the report has no entry for {id}")),
    }
}

/// Joins `results` with `report` (if any).
pub fn verdict(results: &Results, report: Option<&EvalReport>) -> Verdict {
    let s = &results.summary;
    let counted_a = s.n as f64 - s.wins_b;
    let mut notes = Vec::new();
    let mut row = |role: &'static str, m: &crate::eval::listen::ModelRef, votes: f64| {
        let metrics = match report {
            Some(r) => match find(r, &m.id, &m.weights_sha256) {
                Ok(e) => Some(e.clone()),
                Err(why) => {
                    notes.push(format!("{role}: {why}"));
                    None
                }
            },
            None => None,
        };
        SideRow {
            role,
            label: m.label.clone(),
            id: m.id.clone(),
            votes,
            share: (s.n > 0).then(|| votes / s.n as f64),
            metrics,
        }
    };
    let rows = [
        row("A", &results.model_a, counted_a),
        row("B", &results.model_b, s.wins_b),
    ];
    if report.is_none() {
        notes.push(format!(
            "no objective report yet ({METRICS_FILE} in the session folder): compute one to see \
             the numbers beside the votes"
        ));
    }
    let finding = if s.n == 0 {
        Finding::NoVotes
    } else if s.p_two_sided < 0.05 {
        if s.wins_b * 2.0 > s.n as f64 {
            Finding::BPreferred
        } else {
            Finding::APreferred
        }
    } else {
        Finding::NotSignificant
    };
    let ties = match results.tie_policy {
        TiePolicy::Exclude => format!("{} ties excluded", s.ties),
        TiePolicy::Split => format!("{} ties counted as half a vote each", s.ties),
    };
    let headline = match finding {
        Finding::NoVotes => "No scored votes yet.".to_string(),
        _ => {
            let what = match finding {
                Finding::BPreferred => format!("B ({}) is preferred", results.model_b.label),
                Finding::APreferred => format!("A ({}) is preferred", results.model_a.label),
                _ => format!(
                    "the test cannot tell them apart yet (≈ {} votes detect a true 65 % \
                     preference with 80 % power)",
                    power_votes(0.65, 0.05, 0.8)
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "?".into())
                ),
            };
            format!(
                "B ({}) won {} of {} votes ({:.0} %, {ties}) against A ({}): exact two-sided p = \
                 {:.4}, 95 % CI {:.2}–{:.2}; {what}.",
                results.model_b.label,
                fmt_votes(s.wins_b),
                s.n,
                s.share_b.unwrap_or(f64::NAN) * 100.0,
                results.model_a.label,
                s.p_two_sided,
                s.ci.0,
                s.ci.1,
            )
        }
    };
    let numbers_favour = match (&rows[0].metrics, &rows[1].metrics) {
        (Some(a), Some(b)) => favour(a, b),
        _ => Vec::new(),
    };
    Verdict {
        finding,
        headline,
        rows,
        numbers_favour,
        metrics_source: report.map(|r| format!("{} ({:?} split)", r.dataset, r.split)),
        notes,
    }
}

fn fmt_votes(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Which model each metric favours (lower is better, except the CLAP score).
fn favour(a: &ModelEval, b: &ModelEval) -> Vec<(String, &'static str)> {
    let pick = |x: f64, y: f64| {
        if x < y {
            "A"
        } else if y < x {
            "B"
        } else {
            "="
        }
    };
    let mut out = vec![(
        "held-out CE".to_string(),
        pick(a.held_out.ce, b.held_out.ce),
    )];
    if let (Some(ga), Some(gb)) = (&a.generated, &b.generated) {
        out.push(("FAD".into(), pick(ga.fad.estimate, gb.fad.estimate)));
        out.push((
            "FAD∞".into(),
            pick(ga.fad_inf.intercept, gb.fad_inf.intercept),
        ));
        out.push(("KAD".into(), pick(ga.kad.kad.raw, gb.kad.kad.raw)));
        out.push((
            "log-mel MSE".into(),
            pick(ga.mean_log_mel_mse, gb.mean_log_mel_mse),
        ));
        if let (Some(ca), Some(cb)) = (&ga.clap, &gb.clap) {
            // higher is better: the pick is reversed
            out.push(("CLAP (higher)".into(), pick(-ca.mean, -cb.mean)));
        }
    }
    out
}

/// The verdict as text: headline, one row per model (votes, then numbers), notes.
pub fn table(v: &Verdict) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "{}", v.headline);
    let _ = writeln!(
        t,
        "{:<3} {:<28} {:>7} {:>6} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8}",
        "", "model", "votes", "share", "CE", "PPL", "FAD", "FAD∞", "KAD×1000", "mel MSE"
    );
    for r in &v.rows {
        let share = r
            .share
            .map(|s| format!("{:.0} %", s * 100.0))
            .unwrap_or_else(|| "—".into());
        let dash = || "—".to_string();
        let (ce, ppl) = r
            .metrics
            .as_ref()
            .map(|m| {
                (
                    format!("{:.4}", m.held_out.ce),
                    format!("{:.2}", m.held_out.ppl),
                )
            })
            .unwrap_or_else(|| (dash(), dash()));
        let g = r.metrics.as_ref().and_then(|m| m.generated.as_ref());
        let (fad, fad_inf, kad, mel) = g
            .map(|g| {
                (
                    format!("{:.3}", g.fad.estimate),
                    format!("{:.3}", g.fad_inf.intercept),
                    format!("{:.3}", g.kad.kad.scaled),
                    format!("{:.4}", g.mean_log_mel_mse),
                )
            })
            .unwrap_or_else(|| (dash(), dash(), dash(), dash()));
        let name: String = format!("{} ({})", r.label, r.id).chars().take(28).collect();
        let _ = writeln!(
            t,
            "{:<3} {:<28} {:>7} {:>6} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8}",
            r.role,
            name,
            fmt_votes(r.votes),
            share,
            ce,
            ppl,
            fad,
            fad_inf,
            kad,
            mel
        );
    }
    if !v.numbers_favour.is_empty() {
        let f: Vec<String> = v
            .numbers_favour
            .iter()
            .map(|(m, w)| format!("{m} → {w}"))
            .collect();
        let _ = writeln!(t, "numbers favour: {}", f.join(", "));
    }
    if let Some(src) = &v.metrics_source {
        let _ = writeln!(t, "numbers measured on {src}");
    }
    for n in &v.notes {
        let _ = writeln!(t, "note: {n}");
    }
    t
}

/// The listening export (`to_json`) with the verdict and the objective report added under
/// `verdict` and `metrics`.
pub fn export_json(
    logs: &[SessionLog],
    results: &Results,
    report: Option<&EvalReport>,
) -> crate::error::Result<String> {
    let base = to_json(logs, results)?;
    let bad = |e: serde_json::Error| crate::error::Error::InvalidRequest(e.to_string());
    let mut v: serde_json::Value = serde_json::from_str(&base).map_err(bad)?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "verdict".into(),
            serde_json::to_value(verdict(results, report)).map_err(bad)?,
        );
        obj.insert("metrics".into(), serde_json::to_value(report).map_err(bad)?);
    }
    serde_json::to_string_pretty(&v).map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::listen::stats::{summarise, Pref};
    use crate::eval::listen::ModelRef;
    use crate::eval::report::HeldOut;

    fn model(label: &str, id: &str, sha: &str) -> ModelRef {
        ModelRef {
            label: label.into(),
            id: id.into(),
            weights_sha256: sha.into(),
        }
    }

    fn results(wins_b: usize, n: usize) -> Results {
        let prefs: Vec<Pref> = (0..n)
            .map(|i| if i < wins_b { Pref::B } else { Pref::A })
            .collect();
        Results {
            sessions: vec!["s".into()],
            model_a: model("baseline", "base", "aaaa"),
            model_b: model("fine-tune", "runs/ft", "bbbb"),
            tie_policy: TiePolicy::Exclude,
            summary: summarise(&prefs, TiePolicy::Exclude),
            abx: None,
            per_prompt: Vec::new(),
            per_rater: Vec::new(),
            catch_trials: 0,
            catch_failures: 0,
            bootstrap: None,
            unfinished_raters: Vec::new(),
        }
    }

    fn eval(name: &str, sha: &str, ce: f64) -> ModelEval {
        ModelEval {
            model: name.into(),
            weights_sha256: sha.into(),
            held_out: HeldOut {
                ce,
                ppl: ce.exp(),
                ce_q: vec![ce],
                ppl_q: vec![ce.exp()],
                tokens: 100,
            },
            generated: None,
            eval_seconds: 1.0,
        }
    }

    fn report(models: Vec<ModelEval>) -> EvalReport {
        EvalReport {
            dataset: "folk".into(),
            split: crate::data::dataset::Split::Test,
            options: Default::default(),
            models,
            caveat: String::new(),
        }
    }

    #[test]
    fn significant_preference_with_numbers_matched_by_weights() {
        // 15 of 20 → p ≈ 0.041: B preferred. The report lists B first and under another name:
        // the hash decides.
        let r = results(15, 20);
        let rep = report(vec![
            eval("/elsewhere/ft", "bbbb", 2.1),
            eval("base", "aaaa", 5.1),
        ]);
        let v = verdict(&r, Some(&rep));
        assert_eq!(v.finding, Finding::BPreferred);
        assert!(v.headline.contains("p = 0.041"), "{}", v.headline);
        assert_eq!(v.rows[0].votes, 5.0);
        assert_eq!(v.rows[1].votes, 15.0);
        assert_eq!(v.rows[0].metrics.as_ref().unwrap().held_out.ce, 5.1);
        assert_eq!(v.rows[1].metrics.as_ref().unwrap().held_out.ce, 2.1);
        assert_eq!(v.numbers_favour, vec![("held-out CE".to_string(), "B")]);
        assert!(v.notes.is_empty(), "{:?}", v.notes);
        let t = table(&v);
        assert!(
            t.contains("5.1000") && t.contains("2.1000") && t.contains("75 %"),
            "{t}"
        );
    }

    #[test]
    fn a_report_of_other_weights_is_not_shown_as_theirs() {
        let r = results(10, 20);
        let rep = report(vec![eval("base", "changed", 5.1), eval("runs/ft", "", 2.0)]);
        let v = verdict(&r, Some(&rep));
        assert_eq!(v.finding, Finding::NotSignificant);
        assert!(
            v.headline.contains("cannot tell them apart"),
            "{}",
            v.headline
        );
        assert!(v.rows[0].metrics.is_none());
        assert!(v.notes[0].contains("other weights"), "{:?}", v.notes);
        // an entry without a hash (an old report) is matched by id
        assert_eq!(v.rows[1].metrics.as_ref().unwrap().held_out.ce, 2.0);
        assert!(v.numbers_favour.is_empty());
    }

    #[test]
    fn without_a_report_the_verdict_says_how_to_get_one() {
        let v = verdict(&results(3, 20), None);
        assert_eq!(v.finding, Finding::APreferred);
        assert!(v.rows.iter().all(|r| r.metrics.is_none()));
        assert!(v.notes[0].contains(METRICS_FILE));
        assert_eq!(verdict(&results(0, 0), None).finding, Finding::NoVotes);
        assert_eq!(
            metrics_path(Path::new("/s/x/session.jsonl")),
            Path::new("/s/x/metrics.json")
        );
    }
}
