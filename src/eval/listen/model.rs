//! The data model of a blind A/B (optionally ABX) listening session: the two
//! models, the clips, the spec fixed before the first vote, planned trials
//! and logged answers, plus the SHA-256 helpers that identify clips and
//! weights.
//!
//! Why: every other part of the session (the plan, the log, blinding,
//! results, exports) speaks in these types, so they live apart from any one
//! of those jobs. A [`SessionSpec`] is written as line 1 of the log and an
//! [`Answer`] as every later line, so their serde shape *is* the on-disk
//! format (see [`super::log::LOG_FORMAT`]): change a field and bump it.
//!
//! What: [`Which`], [`Side`], [`Choice`], [`PlayTarget`], [`PlayState`],
//! [`ModelRef`], [`SessionClip`], [`SessionSpec`] and its validation, [`Trial`],
//! [`Response`], [`Answer`], [`sha256_hex`] and [`sha256_file`].

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{ListenError, Result};
use super::stats::Pref;

/// One of the two models under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Which {
    /// Model A (by convention the baseline).
    A,
    /// Model B (by convention the fine-tuned model).
    B,
}

impl Which {
    /// The other model.
    pub fn other(self) -> Which {
        match self {
            Which::A => Which::B,
            Which::B => Which::A,
        }
    }
}

/// One of the two anonymous buttons the rater sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Side {
    /// The first/left clip, labelled "A" on screen.
    A,
    /// The second/right clip, labelled "B" on screen.
    B,
}

/// A rater's preference between the anonymous sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Choice {
    /// Prefers the clip on side "A".
    A,
    /// Prefers the clip on side "B".
    B,
    /// No preference (only if the spec allows ties).
    NoPreference,
}

/// What the player may be asked to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PlayTarget {
    /// Side "A".
    A,
    /// Side "B".
    B,
    /// The ABX reference X.
    X,
}

/// Playback state shown by a UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PlayState {
    /// Nothing playing.
    #[default]
    Stopped,
    /// Playing the given anonymous target.
    Playing(PlayTarget),
}

/// A model under test, identified well enough to reproduce the test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    /// Human label (e.g. "baseline"); never shown during the session.
    pub label: String,
    /// Model id (registry name, run id...).
    pub id: String,
    /// SHA-256 of the weights file(s), lowercase hex.
    pub weights_sha256: String,
}

/// A generated, loudness-matched clip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionClip {
    /// Index into [`SessionSpec::prompts`].
    pub prompt_idx: usize,
    /// Generation seed (one of [`SessionSpec::seeds`]).
    pub seed: u64,
    /// Which model generated it.
    pub model: Which,
    /// Audio file. Use opaque names (e.g. the content hash) so the path
    /// itself does not reveal the model to a player that sees it.
    pub path: PathBuf,
    /// SHA-256 of the file content, lowercase hex.
    pub sha256: String,
    /// Gain applied by loudness matching (dB).
    pub gain_db: f64,
}

/// Everything fixed before the first vote. Written as line 1 of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSpec {
    /// Session id (unique across pooled logs).
    pub id: String,
    /// Model A.
    pub model_a: ModelRef,
    /// Model B.
    pub model_b: ModelRef,
    /// Text prompts.
    pub prompts: Vec<String>,
    /// Clips per (prompt, model); must equal `seeds.len()`.
    pub clips_per_prompt: usize,
    /// Clip length in seconds.
    pub seconds: f64,
    /// Generation seeds; each prompt was generated once per seed per model,
    /// so a trial compares A and B on the same prompt *and* seed.
    pub seeds: Vec<u64>,
    /// Generation parameters (free-form, for provenance).
    pub generation: serde_json::Value,
    /// Number of *scored* trials per rater, fixed in advance (no optional
    /// stopping). Catch trials come on top.
    pub trials: usize,
    /// Also ask "is X A or B?" on every trial.
    pub abx: bool,
    /// Insert a catch trial after every `catch_every` scored trials (0 = none).
    pub catch_every: usize,
    /// Whether "no preference" is offered (required for catch trials).
    pub tie_allowed: bool,
    /// Seed for planning (combined with the rater name).
    pub seed: u64,
    /// The clips (all prompts × seeds × both models).
    pub clips: Vec<SessionClip>,
}

/// One planned trial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    /// Position in the rater's plan (0-based).
    pub index: usize,
    /// Prompt index.
    pub prompt_idx: usize,
    /// Generation seed of both clips.
    pub seed: u64,
    /// Which model plays on side "A" (for catch trials: the model whose clip
    /// is on both sides).
    pub first_is: Which,
    /// Catch trial: both sides are the identical clip.
    pub catch: bool,
    /// SHA-256 of the clip played on side "A".
    pub clip_a_sha: String,
    /// SHA-256 of the clip played on side "B".
    pub clip_b_sha: String,
    /// For ABX sessions: which side X is a copy of.
    pub abx_x: Option<Side>,
}

impl Trial {
    /// The model heard on an anonymous side.
    pub fn model_on(&self, side: Side) -> Which {
        match (side, self.catch) {
            (_, true) | (Side::A, false) => self.first_is,
            (Side::B, false) => self.first_is.other(),
        }
    }
}

/// A rater's response to the current trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Preference between the sides.
    pub choice: Choice,
    /// ABX answer ("X is side ..."); required iff the spec has `abx`.
    pub abx_choice: Option<Side>,
}

/// One logged answer, self-describing (mapping and clip hashes included) so
/// that results never depend on re-planning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// Trial index in the rater's plan.
    pub trial: usize,
    /// Rater name.
    pub rater: String,
    /// Preference between the anonymous sides.
    pub choice: Choice,
    /// ABX answer.
    pub abx_choice: Option<Side>,
    /// Whether the ABX answer was right.
    pub abx_correct: Option<bool>,
    /// Wall-clock time the answer was recorded (ms since the Unix epoch).
    pub at_unix_ms: u64,
    /// Mapping: model on side "A".
    pub first_is: Which,
    /// Catch trial?
    pub catch: bool,
    /// Prompt index.
    pub prompt_idx: usize,
    /// Generation seed.
    pub seed: u64,
    /// SHA-256 of side "A"'s clip.
    pub clip_a_sha: String,
    /// SHA-256 of side "B"'s clip.
    pub clip_b_sha: String,
    /// Which side X was (ABX).
    pub abx_x: Option<Side>,
}

impl Answer {
    /// The preference in terms of models (catch trials included).
    pub fn model_pref(&self) -> Pref {
        let model = match self.choice {
            Choice::NoPreference => return Pref::Tie,
            Choice::A => self.trial_view().model_on(Side::A),
            Choice::B => self.trial_view().model_on(Side::B),
        };
        match model {
            Which::A => Pref::A,
            Which::B => Pref::B,
        }
    }

    /// Whether this is a failed catch trial (a preference between identical clips).
    pub fn catch_failed(&self) -> bool {
        self.catch && self.choice != Choice::NoPreference
    }

    /// The planned trial this answer was given to (rebuilt from the answer,
    /// which carries the mapping and hashes, without re-planning).
    pub(super) fn trial_view(&self) -> Trial {
        Trial {
            index: self.trial,
            prompt_idx: self.prompt_idx,
            seed: self.seed,
            first_is: self.first_is,
            catch: self.catch,
            clip_a_sha: self.clip_a_sha.clone(),
            clip_b_sha: self.clip_b_sha.clone(),
            abx_x: self.abx_x,
        }
    }

    /// Whether the answer carries exactly the planned trial's mapping and clips.
    pub(super) fn matches(&self, t: &Trial) -> bool {
        self.trial == t.index
            && self.prompt_idx == t.prompt_idx
            && self.seed == t.seed
            && self.first_is == t.first_is
            && self.catch == t.catch
            && self.clip_a_sha == t.clip_a_sha
            && self.clip_b_sha == t.clip_b_sha
            && self.abx_x == t.abx_x
    }
}

// ---------------------------------------------------------------------------
// Hashing helpers and spec validation
// ---------------------------------------------------------------------------

/// Lowercase hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase hex SHA-256 of a file's content.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = fs::read(path).map_err(|e| ListenError::io(path, e))?;
    Ok(sha256_hex(&bytes))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl SessionSpec {
    /// Check the spec is internally consistent: non-empty prompts and seeds,
    /// `clips_per_prompt == seeds.len()`, exactly one clip per
    /// (prompt, seed, model) with a well-formed hash and finite gain,
    /// distinct model ids, and `tie_allowed` when catch trials are used
    /// (a catch trial is passed only by answering "no preference").
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| {
            Err(ListenError::Invalid(format!(
                "session spec {:?}: {m}",
                self.id
            )))
        };
        if self.id.is_empty() {
            return bad("empty id".into());
        }
        if self.prompts.is_empty() {
            return bad("no prompts".into());
        }
        if self.seeds.is_empty() || self.clips_per_prompt != self.seeds.len() {
            return bad(format!(
                "clips_per_prompt ({}) must equal the number of seeds ({}) and be > 0",
                self.clips_per_prompt,
                self.seeds.len()
            ));
        }
        if self.seeds.iter().collect::<BTreeSet<_>>().len() != self.seeds.len() {
            return bad("duplicate seeds".into());
        }
        if self.trials == 0 {
            return bad("trials must be > 0".into());
        }
        if self.catch_every > 0 && !self.tie_allowed {
            return bad("catch trials need tie_allowed (identical clips can only be passed with \"no preference\")".into());
        }
        if self.model_a.id == self.model_b.id
            && self.model_a.weights_sha256 == self.model_b.weights_sha256
        {
            return bad("model_a and model_b are the same model".into());
        }
        let mut seen = BTreeSet::new();
        for c in &self.clips {
            if c.prompt_idx >= self.prompts.len() {
                return bad(format!(
                    "clip {} has prompt_idx {} out of range",
                    c.path.display(),
                    c.prompt_idx
                ));
            }
            if !self.seeds.contains(&c.seed) {
                return bad(format!(
                    "clip {} has seed {} not in seeds",
                    c.path.display(),
                    c.seed
                ));
            }
            if !is_sha256_hex(&c.sha256) {
                return bad(format!(
                    "clip {} has a malformed sha256 {:?}",
                    c.path.display(),
                    c.sha256
                ));
            }
            if !c.gain_db.is_finite() {
                return bad(format!("clip {} has a non-finite gain", c.path.display()));
            }
            if !seen.insert((c.prompt_idx, c.seed, c.model)) {
                return bad(format!(
                    "two clips for prompt {} seed {} model {:?}",
                    c.prompt_idx, c.seed, c.model
                ));
            }
        }
        for p in 0..self.prompts.len() {
            for &s in &self.seeds {
                for m in [Which::A, Which::B] {
                    if !seen.contains(&(p, s, m)) {
                        return bad(format!("missing clip for prompt {p} seed {s} model {m:?}"));
                    }
                }
            }
        }
        Ok(())
    }

    /// The clip of one (prompt, seed, model).
    pub(super) fn clip(&self, prompt_idx: usize, seed: u64, model: Which) -> Result<&SessionClip> {
        self.clips
            .iter()
            .find(|c| c.prompt_idx == prompt_idx && c.seed == seed && c.model == model)
            .ok_or_else(|| {
                ListenError::Invalid(format!(
                    "no clip for prompt {prompt_idx} seed {seed} model {model:?}"
                ))
            })
    }

    /// The clip with this content hash, if any.
    pub fn clip_by_sha(&self, sha: &str) -> Option<&SessionClip> {
        self.clips.iter().find(|c| c.sha256 == sha)
    }

    /// Re-hash every clip file and compare with the recorded hash
    /// (relative paths are resolved against `base`).
    pub fn verify_clip_files(&self, base: &Path) -> Result<()> {
        for c in &self.clips {
            let path = base.join(&c.path);
            let actual = sha256_file(&path)?;
            if actual != c.sha256 {
                return Err(ListenError::Integrity {
                    path,
                    problem: format!("sha256 is {actual}, spec says {}", c.sha256),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::spec;
    use super::*;

    #[test]
    fn spec_validation() {
        assert!(spec("s", 10, 0, false, false).validate().is_ok());
        let e = spec("s", 10, 3, false, false).validate().unwrap_err();
        assert!(e.to_string().contains("tie_allowed"), "{e}");
        let mut s = spec("s", 10, 0, false, false);
        s.clips.pop();
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("missing clip"));
        let mut s = spec("s", 10, 0, false, false);
        s.clips[0].sha256 = "xyz".into();
        assert!(s.validate().is_err());
        let mut s = spec("s", 10, 0, false, false);
        s.clips_per_prompt = 3;
        assert!(s.validate().is_err());
        let mut s = spec("s", 0, 0, false, false);
        assert!(s.validate().is_err());
        s.trials = 1;
        s.model_b = s.model_a.clone();
        assert!(s.validate().is_err());
    }

    #[test]
    fn verify_clip_files_detects_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec("s", 4, 0, false, false);
        fs::create_dir(dir.path().join("clips")).unwrap();
        for (i, c) in s.clips.iter_mut().enumerate() {
            let bytes = format!("audio {i}");
            c.sha256 = sha256_hex(bytes.as_bytes());
            c.path = PathBuf::from(format!("clips/{}.wav", c.sha256));
            fs::write(dir.path().join(&c.path), bytes).unwrap();
        }
        s.verify_clip_files(dir.path()).unwrap();
        fs::write(dir.path().join(&s.clips[3].path), "tampered").unwrap();
        let err = s.verify_clip_files(dir.path()).unwrap_err();
        assert!(matches!(err, ListenError::Integrity { .. }), "{err}");
        assert!(err.to_string().contains(&s.clips[3].sha256));
    }
}
