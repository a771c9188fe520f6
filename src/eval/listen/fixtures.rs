//! Test fixtures shared by the session modules' tests: a four-prompt,
//! two-seed spec, a rater who prefers a given model, and a finished log with
//! known tallies.
//!
//! Why: the plan, log, blinding, results and export tests all need the same
//! spec (its hashes and prompts appear in their assertions), so it is built
//! in one place rather than copied per module.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::log::SessionLog;
use super::model::{
    sha256_hex, Choice, ModelRef, Response, SessionClip, SessionSpec, Side, Trial, Which,
};

pub(super) const PROMPTS: [&str; 4] = [
    "lofi piano, rain",
    "driving techno, 130 bpm",
    "solo cello, melancholic",
    "brass fanfare, \"heroic\", major key",
];

pub(super) fn spec(
    id: &str,
    trials: usize,
    catch_every: usize,
    abx: bool,
    tie_allowed: bool,
) -> SessionSpec {
    let seeds = vec![11_u64, 22];
    let mut clips = Vec::new();
    for p in 0..PROMPTS.len() {
        for &s in &seeds {
            for m in [Which::A, Which::B] {
                let sha = sha256_hex(format!("{p}-{s}-{m:?}").as_bytes());
                clips.push(SessionClip {
                    prompt_idx: p,
                    seed: s,
                    model: m,
                    path: PathBuf::from(format!("clips/{sha}.wav")),
                    sha256: sha,
                    gain_db: if m == Which::A { -1.5 } else { 2.25 },
                });
            }
        }
    }
    SessionSpec {
        id: id.to_string(),
        model_a: ModelRef {
            label: "baseline-musicgen".into(),
            id: "facebook/musicgen-small".into(),
            weights_sha256: "a".repeat(64),
        },
        model_b: ModelRef {
            label: "finetuned-tunelab".into(),
            id: "tunelab/run-0042".into(),
            weights_sha256: "b".repeat(64),
        },
        prompts: PROMPTS.iter().map(|s| s.to_string()).collect(),
        clips_per_prompt: seeds.len(),
        seconds: 10.0,
        seeds,
        generation: serde_json::json!({"temperature": 1.0, "top_k": 250, "cfg": 3.0}),
        trials,
        abx,
        catch_every,
        tie_allowed,
        seed: 2024,
        clips,
    }
}

/// A response that makes the rater prefer `model` on trial `t`.
pub(super) fn prefer(t: &Trial, model: Which) -> Response {
    let choice = if t.model_on(Side::A) == model {
        Choice::A
    } else {
        Choice::B
    };
    Response {
        choice,
        abx_choice: None,
    }
}

/// Build a finished session: 20 scored trials with B preferred on 15
/// (prompt chosen by the plan), 4 catch trials of which one is failed.
pub(super) fn constructed_log(
    dir: &Path,
    id: &str,
    rater: &str,
) -> (SessionLog, BTreeMap<usize, (u64, u64)>) {
    let path = dir.join(format!("{id}.jsonl"));
    let mut log = SessionLog::create(&path, spec(id, 20, 5, false, true)).unwrap();
    let mut per_prompt: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
    let (mut scored, mut catches) = (0, 0);
    while let Some(t) = log.next_trial(rater).unwrap() {
        let response = if t.catch {
            catches += 1;
            let choice = if catches == 2 {
                Choice::B
            } else {
                Choice::NoPreference
            };
            Response {
                choice,
                abx_choice: None,
            }
        } else {
            scored += 1;
            let model = if scored <= 15 { Which::B } else { Which::A };
            let e = per_prompt.entry(t.prompt_idx).or_default();
            e.0 += u64::from(model == Which::B);
            e.1 += 1;
            prefer(&t, model)
        };
        log.record(rater, response).unwrap();
    }
    (log, per_prompt)
}
