//! Blinding: what a UI may show while a rater listens, which file the audio
//! layer plays for an anonymous side, and the unblinding afterwards.
//!
//! Why: the rater must not learn which model is behind "A" or "B" before the
//! session is over. Keeping everything a UI may see in one type, built
//! without the mapping, model names or clip hashes, makes a leak a type
//! error rather than a review finding; unblinding is refused until every
//! planned trial is answered.
//!
//! What: [`BlindView`] ([`SessionLog::blind_view`]),
//! [`SessionLog::playback_path`], and [`Reveal`] ([`SessionLog::reveal`]).

use std::path::PathBuf;

use serde::Serialize;

use super::error::{ListenError, Result};
use super::log::SessionLog;
use super::model::{Choice, ModelRef, PlayState, PlayTarget, Side, Which};
use super::stats::Pref;

/// What a UI may display during a session. Built without the side mapping,
/// model names or clip hashes, so it cannot leak them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlindView {
    /// 1-based number of the current trial (= `total` when finished).
    pub trial_number: usize,
    /// Trials in the plan (catch trials included; they are not announced).
    pub total: usize,
    /// Trials answered.
    pub answered: usize,
    /// The anonymous labels, always `["A", "B"]`.
    pub labels: [String; 2],
    /// Player state.
    pub play: PlayState,
    /// Whether to ask the ABX question.
    pub abx: bool,
    /// Whether to offer "no preference".
    pub tie_allowed: bool,
    /// All trials answered.
    pub finished: bool,
}

/// One trial after unblinding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RevealedTrial {
    /// Trial index.
    pub index: usize,
    /// Prompt text.
    pub prompt: String,
    /// Catch trial?
    pub catch: bool,
    /// Model label on side "A".
    pub side_a: String,
    /// Model label on side "B".
    pub side_b: String,
    /// The rater's choice.
    pub choice: Choice,
    /// The preferred model, if any.
    pub preferred: Option<String>,
    /// ABX correctness.
    pub abx_correct: Option<bool>,
}

/// Unblinded view of one rater's finished session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reveal {
    /// Rater.
    pub rater: String,
    /// Model A.
    pub model_a: ModelRef,
    /// Model B.
    pub model_b: ModelRef,
    /// Every trial in plan order.
    pub trials: Vec<RevealedTrial>,
}

impl SessionLog {
    /// What the UI may show for this rater (no mapping, models or hashes).
    pub fn blind_view(&self, rater: &str, play: PlayState) -> Result<BlindView> {
        let total = self.plan(rater)?.len();
        let answered = self.answered_count(rater);
        let next = self.next_trial(rater)?;
        Ok(BlindView {
            trial_number: next.as_ref().map_or(total, |t| t.index + 1),
            total,
            answered,
            labels: ["A".to_string(), "B".to_string()],
            play,
            abx: self.spec().abx,
            tie_allowed: self.spec().tie_allowed,
            finished: next.is_none(),
        })
    }

    /// For the *audio* layer: the file to play for an anonymous target of the
    /// rater's current trial. (Clip files should have opaque names.)
    pub fn playback_path(&self, rater: &str, target: PlayTarget) -> Result<PathBuf> {
        let t = self.next_trial(rater)?.ok_or_else(|| {
            ListenError::Invalid(format!("rater {rater:?} has no trial left to play"))
        })?;
        let side = match target {
            PlayTarget::A => Side::A,
            PlayTarget::B => Side::B,
            PlayTarget::X => t
                .abx_x
                .ok_or_else(|| ListenError::Invalid("X requested in a non-ABX session".into()))?,
        };
        let sha = match side {
            Side::A => &t.clip_a_sha,
            Side::B => &t.clip_b_sha,
        };
        self.spec()
            .clip_by_sha(sha)
            .map(|c| c.path.clone())
            .ok_or_else(|| ListenError::Invalid(format!("no clip with sha256 {sha}")))
    }

    /// Unblind a rater's session. Only after every planned trial is answered
    /// ([`ListenError::NotFinished`] otherwise).
    pub fn reveal(&self, rater: &str) -> Result<Reveal> {
        let plan = self.plan(rater)?;
        let answered = self.answered_count(rater);
        if answered < plan.len() {
            return Err(ListenError::NotFinished {
                rater: rater.to_string(),
                answered,
                total: plan.len(),
            });
        }
        let label = |w: Which| match w {
            Which::A => self.spec().model_a.label.clone(),
            Which::B => self.spec().model_b.label.clone(),
        };
        let mut trials: Vec<RevealedTrial> = self
            .answers()
            .iter()
            .filter(|a| a.rater == rater)
            .map(|a| {
                let t = a.trial_view();
                RevealedTrial {
                    index: a.trial,
                    prompt: self
                        .spec()
                        .prompts
                        .get(a.prompt_idx)
                        .cloned()
                        .unwrap_or_default(),
                    catch: a.catch,
                    side_a: label(t.model_on(Side::A)),
                    side_b: label(t.model_on(Side::B)),
                    choice: a.choice,
                    preferred: match a.model_pref() {
                        Pref::A => Some(label(Which::A)),
                        Pref::B => Some(label(Which::B)),
                        Pref::Tie => None,
                    },
                    abx_correct: a.abx_correct,
                }
            })
            .collect();
        trials.sort_by_key(|t| t.index);
        Ok(Reveal {
            rater: rater.to_string(),
            model_a: self.spec().model_a.clone(),
            model_b: self.spec().model_b.clone(),
            trials,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::spec;
    use super::super::model::Response;
    use super::*;

    #[test]
    fn blind_view_does_not_leak_and_reveal_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let s = spec("s", 6, 3, true, true);
        let mut log = SessionLog::create(&path, s.clone()).unwrap();
        let secrets = [
            s.model_a.label.as_str(),
            s.model_a.id.as_str(),
            s.model_a.weights_sha256.as_str(),
            s.model_b.label.as_str(),
            s.model_b.id.as_str(),
            s.model_b.weights_sha256.as_str(),
            "first_is",
            "baseline",
            "finetuned",
        ];
        let total = log.plan("kim").unwrap().len();
        for step in 0..total {
            let view = log
                .blind_view("kim", PlayState::Playing(PlayTarget::X))
                .unwrap();
            assert_eq!(
                (view.trial_number, view.total, view.answered),
                (step + 1, total, step)
            );
            assert_eq!(view.labels, ["A".to_string(), "B".to_string()]);
            let json = serde_json::to_string(&view).unwrap();
            for secret in secrets {
                assert!(!json.contains(secret), "{secret} leaked in {json}");
            }
            let t = log.next_trial("kim").unwrap().unwrap();
            for sha in [&t.clip_a_sha, &t.clip_b_sha] {
                assert!(!json.contains(sha.as_str()));
            }
            // the audio layer can still resolve what to play
            let pa = log.playback_path("kim", PlayTarget::A).unwrap();
            assert_eq!(pa, s.clip_by_sha(&t.clip_a_sha).unwrap().path);
            log.playback_path("kim", PlayTarget::X).unwrap();

            let err = log.reveal("kim").unwrap_err();
            assert!(matches!(err, ListenError::NotFinished { answered, .. } if answered == step));
            log.record(
                "kim",
                Response {
                    choice: Choice::NoPreference,
                    abx_choice: Some(Side::A),
                },
            )
            .unwrap();
        }
        let view = log.blind_view("kim", PlayState::Stopped).unwrap();
        assert!(view.finished);
        let reveal = log.reveal("kim").unwrap();
        assert_eq!(reveal.trials.len(), total);
        assert_eq!(reveal.model_b.label, "finetuned-tunelab");
        let json = serde_json::to_string(&reveal).unwrap();
        assert!(json.contains("baseline-musicgen"));
    }
}
