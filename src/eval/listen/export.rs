//! Exports with provenance: every answer as CSV, the results as CSV, and
//! one JSON document holding the results, the specs and every answer.
//!
//! Why: a listening test is only worth reporting if the report names exactly
//! which weights, prompts, seeds, gains and clips were judged, in formats a
//! spreadsheet or a script can read without this program.
//!
//! What: [`answers_to_csv`] (columns [`ANSWER_CSV_COLUMNS`]),
//! [`results_to_csv`] and [`to_json`]. The results CSV's `ci_lo`/`ci_hi` are
//! the exact (Clopper–Pearson) interval of the overall row; the cluster
//! bootstrap is only in the JSON (`results.bootstrap`).

use serde::Serialize;

use super::error::{ListenError, Result};
use super::log::{now_unix_ms, SessionLog, TornTail, LOG_FORMAT};
use super::model::{Answer, SessionSpec, Side};
use super::results::Results;
use super::stats::Pref;

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_row(fields: &[String]) -> String {
    let mut row = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    row.push('\n');
    row
}

fn opt<T: std::fmt::Debug>(v: Option<T>) -> String {
    v.map(|x| format!("{x:?}")).unwrap_or_default()
}

/// Column names of [`answers_to_csv`].
pub const ANSWER_CSV_COLUMNS: [&str; 26] = [
    "session_id",
    "log_path",
    "rater",
    "trial",
    "catch",
    "prompt_idx",
    "prompt",
    "seed",
    "side_a_model",
    "side_b_model",
    "choice",
    "preferred_model",
    "catch_failed",
    "abx_x",
    "abx_choice",
    "abx_correct",
    "at_unix_ms",
    "clip_a_sha256",
    "clip_b_sha256",
    "gain_a_db",
    "gain_b_db",
    "model_a_id",
    "model_a_weights_sha256",
    "model_b_id",
    "model_b_weights_sha256",
    "generation",
];

/// Every answer of every log as CSV (RFC 4180 quoting), one row per answer,
/// with provenance: session, models and weight hashes, prompt, seed, the
/// side mapping, clip hashes and gains, timestamps, generation parameters.
pub fn answers_to_csv(logs: &[SessionLog]) -> String {
    let mut out = csv_row(&ANSWER_CSV_COLUMNS.map(String::from));
    for log in logs {
        let spec = log.spec();
        let generation = spec.generation.to_string();
        let gain = |sha: &str| {
            spec.clip_by_sha(sha)
                .map(|c| c.gain_db.to_string())
                .unwrap_or_default()
        };
        for a in log.answers() {
            let t = a.trial_view();
            let pref = match a.model_pref() {
                Pref::A => "A",
                Pref::B => "B",
                Pref::Tie => "",
            };
            out.push_str(&csv_row(&[
                spec.id.clone(),
                log.path().display().to_string(),
                a.rater.clone(),
                a.trial.to_string(),
                a.catch.to_string(),
                a.prompt_idx.to_string(),
                spec.prompts.get(a.prompt_idx).cloned().unwrap_or_default(),
                a.seed.to_string(),
                format!("{:?}", t.model_on(Side::A)),
                format!("{:?}", t.model_on(Side::B)),
                format!("{:?}", a.choice),
                pref.to_string(),
                a.catch_failed().to_string(),
                opt(a.abx_x),
                opt(a.abx_choice),
                opt(a.abx_correct),
                a.at_unix_ms.to_string(),
                a.clip_a_sha.clone(),
                a.clip_b_sha.clone(),
                gain(&a.clip_a_sha),
                gain(&a.clip_b_sha),
                spec.model_a.id.clone(),
                spec.model_a.weights_sha256.clone(),
                spec.model_b.id.clone(),
                spec.model_b.weights_sha256.clone(),
                generation.clone(),
            ]));
        }
    }
    out
}

/// Results as CSV: one `overall` row, then `prompt` and `rater` rows.
/// Columns: kind, name, wins_b, n, ties, share_b, p_two_sided, ci_lo, ci_hi,
/// catch_trials, catch_failures (blank where not applicable).
pub fn results_to_csv(r: &Results) -> String {
    let share = |w: f64, n: u64| {
        if n > 0 {
            (w / n as f64).to_string()
        } else {
            String::new()
        }
    };
    let mut out = csv_row(
        &[
            "kind",
            "name",
            "wins_b",
            "n",
            "ties",
            "share_b",
            "p_two_sided",
            "ci_lo",
            "ci_hi",
            "catch_trials",
            "catch_failures",
        ]
        .map(String::from),
    );
    let s = &r.summary;
    out.push_str(&csv_row(&[
        "overall".into(),
        format!("{:?}", r.tie_policy),
        s.wins_b.to_string(),
        s.n.to_string(),
        s.ties.to_string(),
        share(s.wins_b, s.n),
        s.p_two_sided.to_string(),
        s.ci.0.to_string(),
        s.ci.1.to_string(),
        r.catch_trials.to_string(),
        r.catch_failures.to_string(),
    ]));
    for p in &r.per_prompt {
        out.push_str(&csv_row(&[
            "prompt".into(),
            p.prompt.clone(),
            p.wins_b.to_string(),
            p.n.to_string(),
            p.ties.to_string(),
            share(p.wins_b, p.n),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]));
    }
    for q in &r.per_rater {
        out.push_str(&csv_row(&[
            "rater".into(),
            q.rater.clone(),
            q.wins_b.to_string(),
            q.n.to_string(),
            q.ties.to_string(),
            share(q.wins_b, q.n),
            String::new(),
            String::new(),
            String::new(),
            q.catch_trials.to_string(),
            q.catch_failures.to_string(),
        ]));
    }
    out
}

#[derive(Serialize)]
struct JsonSession<'a> {
    log_path: String,
    spec: &'a SessionSpec,
    torn_tail: Option<&'a TornTail>,
    answers: &'a [Answer],
}

#[derive(Serialize)]
struct JsonExport<'a> {
    format: &'static str,
    exported_at_unix_ms: u64,
    results: &'a Results,
    sessions: Vec<JsonSession<'a>>,
}

/// Full JSON export: the results plus, per session, the complete spec
/// (models with ids and weight hashes, prompts, seeds, generation params,
/// clips with hashes and gains) and every answer with its mapping and
/// timestamp.
pub fn to_json(logs: &[SessionLog], results: &Results) -> Result<String> {
    let export = JsonExport {
        format: LOG_FORMAT,
        exported_at_unix_ms: now_unix_ms()?,
        results,
        sessions: logs
            .iter()
            .map(|l| JsonSession {
                log_path: l.path().display().to_string(),
                spec: l.spec(),
                torn_tail: l.torn_tail(),
                answers: l.answers(),
            })
            .collect(),
    };
    serde_json::to_string_pretty(&export)
        .map_err(|e| ListenError::Invalid(format!("cannot serialise export: {e}")))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{constructed_log, PROMPTS};
    use super::super::results::{results, ResultsOptions};
    use super::*;

    #[test]
    fn exports_carry_provenance() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = constructed_log(dir.path(), "s1", "lee");
        let r = results(&log, &ResultsOptions::default()).unwrap();
        let csv = answers_to_csv(std::slice::from_ref(&log));
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows[0], ANSWER_CSV_COLUMNS.join(","));
        assert_eq!(rows.len(), 1 + 24);
        for needle in [
            "facebook/musicgen-small",
            "tunelab/run-0042",
            &"a".repeat(64),
            &"b".repeat(64),
            "\"brass fanfare, \"\"heroic\"\", major key\"",
            "temperature",
            "2.25",
            "-1.5",
        ] {
            assert!(csv.contains(needle), "{needle} missing from CSV");
        }
        let first = log.answers()[0].clone();
        assert!(csv.contains(&first.at_unix_ms.to_string()));
        assert!(csv.contains(&first.clip_a_sha));

        let rcsv = results_to_csv(&r);
        assert_eq!(rcsv.lines().count(), 1 + 1 + PROMPTS.len() + 1);
        assert!(rcsv
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("overall,Exclude,15,20,0,0.75,"));

        let json = to_json(std::slice::from_ref(&log), &r).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let spec = &v["sessions"][0]["spec"];
        assert_eq!(spec["model_b"]["weights_sha256"], "b".repeat(64));
        assert_eq!(spec["seeds"], serde_json::json!([11, 22]));
        assert_eq!(spec["generation"]["top_k"], 250);
        assert_eq!(spec["clips"][0]["gain_db"], -1.5);
        assert_eq!(v["sessions"][0]["answers"].as_array().unwrap().len(), 24);
        assert!(
            v["sessions"][0]["answers"][0]["at_unix_ms"]
                .as_u64()
                .unwrap()
                > 0
        );
        assert_eq!(v["results"]["summary"]["n"], 20);
    }
}
