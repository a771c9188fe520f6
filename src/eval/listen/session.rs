//! A blind A/B (optionally ABX) listening session with a crash-safe,
//! append-only log, blinding, results and provenance exports.
//!
//! Why: a preference test is only credible if (1) the number of trials and
//! their order are fixed before anyone listens, (2) the rater cannot learn
//! which model is behind "A" or "B", (3) no confirmed answer can be lost or
//! silently altered when the app crashes or is killed, and (4) the report
//! names exactly which weights, prompts, seeds, gains and clips were judged.
//!
//! What:
//! - the data model ([`SessionSpec`], [`Clip`], [`Trial`], [`Answer`]);
//! - [`plan_trials`]: a deterministic plan per (spec seed, rater): prompts
//!   shuffled in rounds, side mapping re-randomised per trial from a
//!   balanced deck, catch trials (both sides the *same* clip) inserted after
//!   every `catch_every` scored trials;
//! - [`SessionLog`]: JSON Lines; line 1 is a header with the spec, written
//!   once atomically (temp file, fsync, rename, directory fsync); each answer
//!   is one line appended with `O_APPEND` + `write_all` + `fsync` before the
//!   call returns. `open` resumes, ignores (and reports) a torn *last* line,
//!   and truncates it away before the next append; any other bad line is an
//!   error naming file and line;
//! - [`BlindView`] (what a UI may show: no mapping) and [`SessionLog::reveal`]
//!   (only after every trial is answered);
//! - [`results`] / [`pool`] on top of [`super::stats`], and CSV/JSON exports.
//!
//! One process writes a log at a time; a second writer is detected (file
//! length changed underneath) and refused rather than interleaved.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{ListenError, Result};
use super::stats::{self, Pref, Summary, TiePolicy};

/// Format tag in the header line. Bump it whenever the plan algorithm or the
/// line formats change: answers are checked against the re-computed plan on
/// every `open`, so an old log must never be read with a different planner.
pub const LOG_FORMAT: &str = "tunelab-listen-log/1";

// ---------------------------------------------------------------------------
// Data model
// ---------------------------------------------------------------------------

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
pub struct Clip {
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
    pub clips: Vec<Clip>,
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

    fn trial_view(&self) -> Trial {
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

    fn matches(&self, t: &Trial) -> bool {
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

    fn clip(&self, prompt_idx: usize, seed: u64, model: Which) -> Result<&Clip> {
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
    pub fn clip_by_sha(&self, sha: &str) -> Option<&Clip> {
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

// ---------------------------------------------------------------------------
// Planning
// ---------------------------------------------------------------------------

fn plan_rng(spec: &SessionSpec, rater: &str) -> ChaCha8Rng {
    let mut h = Sha256::new();
    h.update(b"tunelab-listen plan v1\0");
    h.update(spec.seed.to_le_bytes());
    h.update((spec.id.len() as u64).to_le_bytes());
    h.update(spec.id.as_bytes());
    h.update((rater.len() as u64).to_le_bytes());
    h.update(rater.as_bytes());
    ChaCha8Rng::from_seed(h.finalize().into())
}

/// `n` values, half `x` and half `y` (the odd one drawn at random), shuffled.
fn balanced<T: Copy>(rng: &mut ChaCha8Rng, n: usize, x: T, y: T) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    v.extend(std::iter::repeat_n(x, n / 2));
    v.extend(std::iter::repeat_n(y, n / 2));
    if n % 2 == 1 {
        v.push(if stats::below(rng, 2) == 0 { x } else { y });
    }
    stats::shuffle(rng, &mut v);
    v
}

/// Plan a rater's trials, deterministically from `(spec.seed, spec.id, rater)`.
///
/// - Scored trials: prompts in rounds, each round a fresh shuffle of all
///   prompts (so every prompt is used equally often, ±1); per prompt the
///   seeds are drawn from a shuffled deck (equal use, ±1).
/// - Side mapping: a balanced deck of `trials` A-first/B-first values,
///   shuffled, so the mapping is re-randomised every trial and A-first and
///   B-first differ by at most 1 among scored trials. ABX's X side is drawn
///   the same way.
/// - After every `catch_every` scored trials a catch trial is inserted: a
///   random prompt/seed, one model's clip on *both* sides (the model from its
///   own balanced deck).
///
/// Randomness comes from ChaCha8 seeded with SHA-256 of the inputs and this
/// module's own shuffle, so plans do not change with `rand` versions.
pub fn plan_trials(spec: &SessionSpec, rater: &str) -> Result<Vec<Trial>> {
    spec.validate()?;
    let mut rng = plan_rng(spec, rater);
    let n = spec.trials;
    let n_prompts = spec.prompts.len();
    let n_catch = n.checked_div(spec.catch_every).unwrap_or(0);

    let mut prompt_order = Vec::with_capacity(n + n_prompts);
    while prompt_order.len() < n {
        let mut round: Vec<usize> = (0..n_prompts).collect();
        stats::shuffle(&mut rng, &mut round);
        prompt_order.extend(round);
    }
    prompt_order.truncate(n);
    let sides = balanced(&mut rng, n, Which::A, Which::B);
    let xs = balanced(&mut rng, n, Side::A, Side::B);
    let catch_models = balanced(&mut rng, n_catch, Which::A, Which::B);
    let catch_xs = balanced(&mut rng, n_catch, Side::A, Side::B);
    let mut seed_decks: Vec<Vec<u64>> = vec![Vec::new(); n_prompts];

    let mut trials = Vec::with_capacity(n + n_catch);
    let mut catches_done = 0;
    for (i, &p) in prompt_order.iter().enumerate() {
        let deck = &mut seed_decks[p];
        if deck.is_empty() {
            *deck = spec.seeds.clone();
            stats::shuffle(&mut rng, deck);
        }
        let seed = deck.pop().unwrap_or(spec.seeds[0]);
        let first = sides[i];
        trials.push(Trial {
            index: trials.len(),
            prompt_idx: p,
            seed,
            first_is: first,
            catch: false,
            clip_a_sha: spec.clip(p, seed, first)?.sha256.clone(),
            clip_b_sha: spec.clip(p, seed, first.other())?.sha256.clone(),
            abx_x: spec.abx.then_some(xs[i]),
        });
        if spec.catch_every > 0 && (i + 1) % spec.catch_every == 0 && catches_done < n_catch {
            let cp = stats::below(&mut rng, n_prompts as u64) as usize;
            let cs = spec.seeds[stats::below(&mut rng, spec.seeds.len() as u64) as usize];
            let model = catch_models[catches_done];
            let sha = spec.clip(cp, cs, model)?.sha256.clone();
            trials.push(Trial {
                index: trials.len(),
                prompt_idx: cp,
                seed: cs,
                first_is: model,
                catch: true,
                clip_a_sha: sha.clone(),
                clip_b_sha: sha,
                abx_x: spec.abx.then_some(catch_xs[catches_done]),
            });
            catches_done += 1;
        }
    }
    Ok(trials)
}

// ---------------------------------------------------------------------------
// The log
// ---------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
struct LogHeader {
    format: String,
    spec: SessionSpec,
}

/// A torn final line found by [`SessionLog::open`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TornTail {
    /// 1-based line number of the torn line.
    pub line: usize,
    /// Byte offset where it starts (the file is truncated to this).
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
    /// Why it was judged torn.
    pub problem: String,
    /// Whether it has been truncated away (done on the next append).
    pub repaired: bool,
}

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

/// An append-only JSON Lines session log (see the module docs).
#[derive(Debug, Clone)]
pub struct SessionLog {
    path: PathBuf,
    spec: SessionSpec,
    answers: Vec<Answer>,
    answered: BTreeSet<(String, usize)>,
    /// Bytes of complete, valid lines.
    valid_len: u64,
    /// Bytes we believe the file has (valid_len + torn bytes).
    file_len: u64,
    torn: Option<TornTail>,
}

fn now_unix_ms() -> Result<u64> {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| ListenError::Invalid(format!("system clock before 1970: {e}")))?;
    Ok(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn to_line<T: Serialize>(v: &T) -> Result<String> {
    let mut s = serde_json::to_string(v)
        .map_err(|e| ListenError::Invalid(format!("cannot serialise: {e}")))?;
    s.push('\n');
    Ok(s)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ListenError::io(dir, e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<()> {
    Ok(())
}

impl SessionLog {
    /// Create a new log holding only the header (spec). The header is
    /// written to a temporary file in the same directory, fsynced, renamed
    /// into place and the directory fsynced, so the log either does not
    /// exist or has a complete header. Refuses to overwrite an existing file.
    pub fn create(path: impl AsRef<Path>, spec: SessionSpec) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        spec.validate()?;
        if path.exists() {
            return Err(ListenError::Exists { path });
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| ListenError::Invalid(format!("{}: not a file path", path.display())))?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let line = to_line(&LogHeader {
            format: LOG_FORMAT.to_string(),
            spec: spec.clone(),
        })?;
        let write_tmp = || -> std::io::Result<()> {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(line.as_bytes())?;
            f.sync_all()
        };
        if let Err(e) = write_tmp() {
            let _ = fs::remove_file(&tmp);
            return Err(ListenError::io(&tmp, e));
        }
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(ListenError::io(&path, e));
        }
        sync_dir(&dir)?;
        let len = line.len() as u64;
        Ok(SessionLog {
            path,
            spec,
            answers: Vec::new(),
            answered: BTreeSet::new(),
            valid_len: len,
            file_len: len,
            torn: None,
        })
    }

    /// Open an existing log and resume.
    ///
    /// Every complete answer line is parsed and checked against the rater's
    /// re-computed plan (same mapping and clip hashes) and for duplicates.
    /// If the *last* line lacks its newline or is not valid JSON, it is the
    /// remains of an interrupted append (never confirmed to the caller): it
    /// is ignored, reported by [`SessionLog::torn_tail`], and truncated away
    /// by the next append. A bad line anywhere else, a bad header, or an
    /// answer that contradicts the plan is [`ListenError::BadLog`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let data = fs::read(&path).map_err(|e| ListenError::io(&path, e))?;
        let bad = |line: usize, problem: String| ListenError::BadLog {
            path: path.clone(),
            line,
            problem,
        };

        // (start, end excluding '\n', terminated)
        let mut lines = Vec::new();
        let mut start = 0;
        for (i, &b) in data.iter().enumerate() {
            if b == b'\n' {
                lines.push((start, i, true));
                start = i + 1;
            }
        }
        if start < data.len() {
            lines.push((start, data.len(), false));
        }
        let Some(&(h_start, h_end, h_term)) = lines.first() else {
            return Err(bad(1, "empty file: no session header".into()));
        };
        if !h_term {
            return Err(bad(1, "header line is incomplete (no newline)".into()));
        }
        let header: LogHeader = serde_json::from_slice(&data[h_start..h_end])
            .map_err(|e| bad(1, format!("header is not valid JSON: {e}")))?;
        if header.format != LOG_FORMAT {
            return Err(bad(
                1,
                format!("format {:?}, this code reads {LOG_FORMAT:?}", header.format),
            ));
        }
        header.spec.validate().map_err(|e| bad(1, e.to_string()))?;
        let mut log = SessionLog {
            path: path.clone(),
            spec: header.spec,
            answers: Vec::new(),
            answered: BTreeSet::new(),
            valid_len: (h_end + 1) as u64,
            file_len: data.len() as u64,
            torn: None,
        };

        let mut plans: BTreeMap<String, Vec<Trial>> = BTreeMap::new();
        let last = lines.len() - 1;
        for (idx, &(s, e, terminated)) in lines.iter().enumerate().skip(1) {
            let line_no = idx + 1;
            let parsed = if terminated {
                serde_json::from_slice::<Answer>(&data[s..e]).map_err(|err| err.to_string())
            } else {
                Err("no trailing newline (interrupted write)".to_string())
            };
            let answer = match parsed {
                Ok(a) => a,
                Err(problem) if idx == last => {
                    log.torn = Some(TornTail {
                        line: line_no,
                        offset: s as u64,
                        len: (data.len() - s) as u64,
                        problem,
                        repaired: false,
                    });
                    break;
                }
                Err(problem) => return Err(bad(line_no, format!("not a valid answer: {problem}"))),
            };
            if !plans.contains_key(&answer.rater) {
                let plan = plan_trials(&log.spec, &answer.rater)
                    .map_err(|err| bad(line_no, err.to_string()))?;
                plans.insert(answer.rater.clone(), plan);
            }
            let plan = plans.get(&answer.rater).map(Vec::as_slice).unwrap_or(&[]);
            log.check_answer(&answer, plan)
                .map_err(|problem| bad(line_no, problem))?;
            log.answered.insert((answer.rater.clone(), answer.trial));
            log.answers.push(answer);
            log.valid_len = (e + 1) as u64;
        }
        Ok(log)
    }

    /// Semantic checks shared by `open` and `append`.
    fn check_answer(&self, a: &Answer, plan: &[Trial]) -> std::result::Result<(), String> {
        if a.rater.is_empty() {
            return Err("empty rater name".into());
        }
        let Some(t) = plan.get(a.trial) else {
            return Err(format!(
                "trial {} is outside rater {:?}'s plan of {}",
                a.trial,
                a.rater,
                plan.len()
            ));
        };
        if !a.matches(t) {
            return Err(format!(
                "answer to trial {} of rater {:?} does not match the planned trial (mapping, prompt, seed or clip hashes differ)",
                a.trial, a.rater
            ));
        }
        if self.answered.contains(&(a.rater.clone(), a.trial)) {
            return Err(format!(
                "duplicate answer to trial {} by rater {:?}",
                a.trial, a.rater
            ));
        }
        if a.choice == Choice::NoPreference && !self.spec.tie_allowed {
            return Err("\"no preference\" is not allowed in this session".into());
        }
        if self.spec.abx != a.abx_choice.is_some() {
            return Err(if self.spec.abx {
                "this is an ABX session: abx_choice is required".into()
            } else {
                "abx_choice given in a non-ABX session".into()
            });
        }
        let expect_correct = match (a.abx_choice, t.abx_x) {
            (Some(c), Some(x)) => Some(c == x),
            _ => None,
        };
        if a.abx_correct != expect_correct {
            return Err("abx_correct does not follow from abx_choice and X".into());
        }
        Ok(())
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The session spec.
    pub fn spec(&self) -> &SessionSpec {
        &self.spec
    }

    /// All answers, in file order.
    pub fn answers(&self) -> &[Answer] {
        &self.answers
    }

    /// The torn final line found at `open`, if any (with `repaired` set once
    /// it has been truncated away).
    pub fn torn_tail(&self) -> Option<&TornTail> {
        self.torn.as_ref()
    }

    /// The rater's plan (see [`plan_trials`]).
    pub fn plan(&self, rater: &str) -> Result<Vec<Trial>> {
        plan_trials(&self.spec, rater)
    }

    /// The first planned trial the rater has not answered, or `None` when done.
    pub fn next_trial(&self, rater: &str) -> Result<Option<Trial>> {
        Ok(self
            .plan(rater)?
            .into_iter()
            .find(|t| !self.answered.contains(&(rater.to_string(), t.index))))
    }

    fn answered_count(&self, rater: &str) -> usize {
        self.answered.iter().filter(|(r, _)| r == rater).count()
    }

    /// Append an answer durably: validated against the plan, written as one
    /// line with `O_APPEND` + `write_all`, then `fsync`ed before returning.
    /// A torn tail found at `open` is first truncated away (and fsynced).
    /// If the file's length is not what this log last saw (another writer),
    /// nothing is written and [`ListenError::Conflict`] is returned.
    pub fn append(&mut self, answer: Answer) -> Result<()> {
        let plan = self.plan(&answer.rater)?;
        self.check_answer(&answer, &plan)
            .map_err(|p| ListenError::Invalid(format!("{}: {p}", self.path.display())))?;
        let line = to_line(&answer)?;
        let io = |e| ListenError::io(&self.path, e);

        let mut f = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        if len != self.file_len {
            return Err(ListenError::Conflict {
                path: self.path.clone(),
                problem: format!(
                    "log is {len} bytes but this session expected {}; another process may be writing it",
                    self.file_len
                ),
            });
        }
        if let Some(t) = self.torn.as_mut().filter(|t| !t.repaired) {
            f.set_len(self.valid_len).map_err(io)?;
            f.sync_all().map_err(io)?;
            t.repaired = true;
            self.file_len = self.valid_len;
        }
        if let Err(e) = f.write_all(line.as_bytes()).and_then(|()| f.sync_all()) {
            // Part of the line may be on disk: treat it as a torn tail so the
            // next append truncates it. The answer was not confirmed.
            if let Ok(m) = f.metadata() {
                self.file_len = m.len();
                if m.len() > self.valid_len {
                    self.torn = Some(TornTail {
                        line: 2 + self.answers.len(),
                        offset: self.valid_len,
                        len: m.len() - self.valid_len,
                        problem: format!("failed append: {e}"),
                        repaired: false,
                    });
                }
            }
            return Err(io(e));
        }
        self.valid_len += line.len() as u64;
        self.file_len = self.valid_len;
        self.answered.insert((answer.rater.clone(), answer.trial));
        self.answers.push(answer);
        Ok(())
    }

    /// Record the rater's response to their next trial (timestamped now) and
    /// return the durable answer. Errors if the rater has finished, if "no
    /// preference" is not allowed, or if the ABX answer is missing/unexpected.
    pub fn record(&mut self, rater: &str, response: Response) -> Result<Answer> {
        if rater.is_empty() {
            return Err(ListenError::Invalid("empty rater name".into()));
        }
        let trial = self.next_trial(rater)?.ok_or_else(|| {
            ListenError::Invalid(format!("rater {rater:?} has answered every trial"))
        })?;
        let abx_correct = match (response.abx_choice, trial.abx_x) {
            (Some(c), Some(x)) => Some(c == x),
            _ => None,
        };
        let answer = Answer {
            trial: trial.index,
            rater: rater.to_string(),
            choice: response.choice,
            abx_choice: response.abx_choice,
            abx_correct,
            at_unix_ms: now_unix_ms()?,
            first_is: trial.first_is,
            catch: trial.catch,
            prompt_idx: trial.prompt_idx,
            seed: trial.seed,
            clip_a_sha: trial.clip_a_sha,
            clip_b_sha: trial.clip_b_sha,
            abx_x: trial.abx_x,
        };
        self.append(answer.clone())?;
        Ok(answer)
    }

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
            abx: self.spec.abx,
            tie_allowed: self.spec.tie_allowed,
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
        self.spec
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
            Which::A => self.spec.model_a.label.clone(),
            Which::B => self.spec.model_b.label.clone(),
        };
        let mut trials: Vec<RevealedTrial> = self
            .answers
            .iter()
            .filter(|a| a.rater == rater)
            .map(|a| {
                let t = a.trial_view();
                RevealedTrial {
                    index: a.trial,
                    prompt: self
                        .spec
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
            model_a: self.spec.model_a.clone(),
            model_b: self.spec.model_b.clone(),
            trials,
        })
    }
}

// ---------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------

/// Options for [`results`] / [`pool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultsOptions {
    /// How ties enter the test (default: exclude).
    pub tie_policy: TiePolicy,
    /// Bootstrap replicates (default 2000).
    pub bootstrap_iters: usize,
    /// Bootstrap seed (default 0).
    pub bootstrap_seed: u64,
}

impl Default for ResultsOptions {
    fn default() -> Self {
        ResultsOptions {
            tie_policy: TiePolicy::Exclude,
            bootstrap_iters: 2000,
            bootstrap_seed: 0,
        }
    }
}

/// ABX outcome on scored trials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbxResult {
    /// Correct identifications.
    pub correct: u64,
    /// ABX answers.
    pub n: u64,
    /// P(≥ correct | guessing).
    pub p_one_sided: f64,
}

/// Per-prompt tally (scored trials).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptCount {
    /// Prompt text.
    pub prompt: String,
    /// Wins for B under the tie policy.
    pub wins_b: f64,
    /// Votes counted under the tie policy.
    pub n: u64,
    /// Ties seen.
    pub ties: u64,
}

/// Per-rater tally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaterCount {
    /// Rater.
    pub rater: String,
    /// Wins for B under the tie policy (scored trials).
    pub wins_b: f64,
    /// Votes counted under the tie policy.
    pub n: u64,
    /// Ties seen.
    pub ties: u64,
    /// Catch trials answered.
    pub catch_trials: u64,
    /// Catch trials with a preference between identical clips.
    pub catch_failures: u64,
}

/// Cluster-bootstrap interval of B's share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapCi {
    /// Observed share.
    pub mean: f64,
    /// 2.5 % percentile.
    pub lo: f64,
    /// 97.5 % percentile.
    pub hi: f64,
    /// Replicates.
    pub iters: usize,
    /// Seed.
    pub seed: u64,
}

/// Results of one or more pooled sessions. "Wins for B" means the rater
/// preferred the side that held model B (by the logged mapping).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// Session ids pooled.
    pub sessions: Vec<String>,
    /// Model A.
    pub model_a: ModelRef,
    /// Model B.
    pub model_b: ModelRef,
    /// Tie policy used.
    pub tie_policy: TiePolicy,
    /// Exact test on scored (non-catch) trials.
    pub summary: Summary,
    /// ABX on scored trials (ABX sessions only).
    pub abx: Option<AbxResult>,
    /// Per prompt, in order of first appearance.
    pub per_prompt: Vec<PromptCount>,
    /// Per rater, sorted by name.
    pub per_rater: Vec<RaterCount>,
    /// Catch trials answered.
    pub catch_trials: u64,
    /// Catch trials failed.
    pub catch_failures: u64,
    /// Two-stage cluster bootstrap (raters, then prompts within rater);
    /// `None` without scored votes.
    pub bootstrap: Option<BootstrapCi>,
    /// Raters who have not finished their plan (their answers are included).
    pub unfinished_raters: Vec<String>,
}

#[derive(Default, Clone, Copy)]
struct Tally {
    a: u64,
    b: u64,
    ties: u64,
}

impl Tally {
    fn add(&mut self, p: Pref) {
        match p {
            Pref::A => self.a += 1,
            Pref::B => self.b += 1,
            Pref::Tie => self.ties += 1,
        }
    }
    fn counted(&self, policy: TiePolicy) -> (f64, u64) {
        match policy {
            TiePolicy::Exclude => (self.b as f64, self.a + self.b),
            TiePolicy::Split => (
                self.b as f64 + 0.5 * self.ties as f64,
                self.a + self.b + self.ties,
            ),
        }
    }
}

/// Results of one session log.
pub fn results(log: &SessionLog, opts: &ResultsOptions) -> Result<Results> {
    pool(std::slice::from_ref(log), opts)
}

/// Pool several session logs of the *same* two models (same ids and weight
/// hashes) into one result. Raters with the same name in different logs are
/// treated as the same person (one bootstrap cluster). A session id may
/// appear only once.
pub fn pool(logs: &[SessionLog], opts: &ResultsOptions) -> Result<Results> {
    let Some(first) = logs.first() else {
        return Err(ListenError::Invalid("no session logs to pool".into()));
    };
    let (model_a, model_b) = (first.spec.model_a.clone(), first.spec.model_b.clone());
    let same = |x: &ModelRef, y: &ModelRef| x.id == y.id && x.weights_sha256 == y.weights_sha256;
    let mut ids = BTreeSet::new();
    for log in logs {
        if !same(&log.spec.model_a, &model_a) || !same(&log.spec.model_b, &model_b) {
            return Err(ListenError::Invalid(format!(
                "{}: compares different models than {}; refusing to pool",
                log.path.display(),
                first.path.display()
            )));
        }
        if !ids.insert(log.spec.id.clone()) {
            return Err(ListenError::Invalid(format!(
                "{}: session {:?} is already in the pool",
                log.path.display(),
                log.spec.id
            )));
        }
    }

    let policy = opts.tie_policy;
    let mut prefs = Vec::new();
    let mut prompts: Vec<(String, Tally)> = Vec::new();
    let mut raters: BTreeMap<String, (Tally, u64, u64)> = BTreeMap::new();
    let (mut abx_correct, mut abx_n) = (0_u64, 0_u64);
    let (mut catch_trials, mut catch_failures) = (0_u64, 0_u64);
    let mut votes = Vec::new();
    let mut unfinished = BTreeSet::new();

    for log in logs {
        for rater in log
            .answers
            .iter()
            .map(|a| a.rater.as_str())
            .collect::<BTreeSet<_>>()
        {
            if log.next_trial(rater)?.is_some() {
                unfinished.insert(rater.to_string());
            }
        }
        for a in &log.answers {
            let entry = raters.entry(a.rater.clone()).or_default();
            if a.catch {
                catch_trials += 1;
                entry.1 += 1;
                if a.catch_failed() {
                    catch_failures += 1;
                    entry.2 += 1;
                }
                continue;
            }
            let p = a.model_pref();
            prefs.push(p);
            entry.0.add(p);
            let prompt = log
                .spec
                .prompts
                .get(a.prompt_idx)
                .cloned()
                .unwrap_or_default();
            match prompts.iter_mut().find(|(text, _)| *text == prompt) {
                Some((_, t)) => t.add(p),
                None => {
                    let mut t = Tally::default();
                    t.add(p);
                    prompts.push((prompt.clone(), t));
                }
            }
            let pref_b = match (p, policy) {
                (Pref::B, _) => Some(1.0),
                (Pref::A, _) => Some(0.0),
                (Pref::Tie, TiePolicy::Split) => Some(0.5),
                (Pref::Tie, TiePolicy::Exclude) => None,
            };
            if let Some(v) = pref_b {
                votes.push((a.rater.clone(), prompt, v));
            }
            if let Some(ok) = a.abx_correct {
                abx_n += 1;
                abx_correct += u64::from(ok);
            }
        }
    }

    let any_abx = logs.iter().any(|l| l.spec.abx);
    Ok(Results {
        sessions: logs.iter().map(|l| l.spec.id.clone()).collect(),
        model_a,
        model_b,
        tie_policy: policy,
        summary: stats::summarise(&prefs, policy),
        abx: any_abx.then(|| AbxResult {
            correct: abx_correct,
            n: abx_n,
            p_one_sided: stats::binom_one_sided_p(abx_correct, abx_n),
        }),
        per_prompt: prompts
            .into_iter()
            .map(|(prompt, t)| {
                let (wins_b, n) = t.counted(policy);
                PromptCount {
                    prompt,
                    wins_b,
                    n,
                    ties: t.ties,
                }
            })
            .collect(),
        per_rater: raters
            .into_iter()
            .map(|(rater, (t, ct, cf))| {
                let (wins_b, n) = t.counted(policy);
                RaterCount {
                    rater,
                    wins_b,
                    n,
                    ties: t.ties,
                    catch_trials: ct,
                    catch_failures: cf,
                }
            })
            .collect(),
        catch_trials,
        catch_failures,
        bootstrap: stats::bootstrap_preference(&votes, opts.bootstrap_iters, opts.bootstrap_seed)
            .map(|(mean, lo, hi)| BootstrapCi {
                mean,
                lo,
                hi,
                iters: opts.bootstrap_iters,
                seed: opts.bootstrap_seed,
            }),
        unfinished_raters: unfinished.into_iter().collect(),
    })
}

// ---------------------------------------------------------------------------
// Exports
// ---------------------------------------------------------------------------

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
        let spec = &log.spec;
        let generation = spec.generation.to_string();
        let gain = |sha: &str| {
            spec.clip_by_sha(sha)
                .map(|c| c.gain_db.to_string())
                .unwrap_or_default()
        };
        for a in &log.answers {
            let t = a.trial_view();
            let pref = match a.model_pref() {
                Pref::A => "A",
                Pref::B => "B",
                Pref::Tie => "",
            };
            out.push_str(&csv_row(&[
                spec.id.clone(),
                log.path.display().to_string(),
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
                log_path: l.path.display().to_string(),
                spec: &l.spec,
                torn_tail: l.torn.as_ref(),
                answers: &l.answers,
            })
            .collect(),
    };
    serde_json::to_string_pretty(&export)
        .map_err(|e| ListenError::Invalid(format!("cannot serialise export: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    const PROMPTS: [&str; 4] = [
        "lofi piano, rain",
        "driving techno, 130 bpm",
        "solo cello, melancholic",
        "brass fanfare, \"heroic\", major key",
    ];

    fn spec(
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
                    clips.push(Clip {
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
    fn prefer(t: &Trial, model: Which) -> Response {
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

    fn count_a_first(trials: &[Trial]) -> (usize, usize) {
        let a = trials.iter().filter(|t| t.first_is == Which::A).count();
        (a, trials.len() - a)
    }

    #[test]
    fn plan_is_deterministic_per_rater() {
        let s = spec("s1", 40, 5, false, true);
        let p1 = plan_trials(&s, "alice").unwrap();
        assert_eq!(p1, plan_trials(&s, "alice").unwrap());
        assert_ne!(p1, plan_trials(&s, "bob").unwrap());
        let mut s2 = s.clone();
        s2.seed += 1;
        assert_ne!(p1, plan_trials(&s2, "alice").unwrap());
        assert_eq!(p1.len(), 40 + 8);
        for (i, t) in p1.iter().enumerate() {
            assert_eq!(t.index, i);
        }
    }

    #[test]
    fn plan_side_balance() {
        // 1000-trial plan with catch trials: A-first within 45–55 % overall,
        // and exactly balanced (±1) among the scored trials.
        let p = plan_trials(&spec("big", 1000, 10, false, true), "carol").unwrap();
        assert_eq!(p.len(), 1100);
        let (a, _) = count_a_first(&p);
        let frac = a as f64 / p.len() as f64;
        assert!((0.45..=0.55).contains(&frac), "{frac}");
        let scored: Vec<Trial> = p.iter().filter(|t| !t.catch).cloned().collect();
        let (a, b) = count_a_first(&scored);
        assert!(a.abs_diff(b) <= 1, "{a} vs {b}");
        // the mapping is re-randomised, not alternating or blocked
        let switches = scored
            .windows(2)
            .filter(|w| w[0].first_is != w[1].first_is)
            .count();
        assert!((400..=600).contains(&switches), "{switches} switches");
        // per session: every rater's (odd-length) plan is balanced within ±1
        for r in 0..50 {
            let p = plan_trials(&spec("s", 21, 4, false, true), &format!("r{r}")).unwrap();
            let scored: Vec<Trial> = p.into_iter().filter(|t| !t.catch).collect();
            let (a, b) = count_a_first(&scored);
            assert!(a.abs_diff(b) <= 1, "rater {r}: {a} vs {b}");
        }
    }

    #[test]
    fn plan_prompts_and_seeds_are_balanced_and_shuffled() {
        let s = spec("s", 16, 0, false, false);
        let p = plan_trials(&s, "dave").unwrap();
        for round in p.chunks(PROMPTS.len()) {
            let set: BTreeSet<usize> = round.iter().map(|t| t.prompt_idx).collect();
            assert_eq!(
                set.len(),
                PROMPTS.len(),
                "each round covers every prompt once"
            );
        }
        for prompt in 0..PROMPTS.len() {
            let seeds: Vec<u64> = p
                .iter()
                .filter(|t| t.prompt_idx == prompt)
                .map(|t| t.seed)
                .collect();
            assert_eq!(seeds.iter().filter(|&&x| x == 11).count(), 2, "{seeds:?}");
        }
        // different raters hear the prompts in different orders
        let orders: BTreeSet<Vec<usize>> = (0..20)
            .map(|r| {
                plan_trials(&s, &format!("r{r}"))
                    .unwrap()
                    .iter()
                    .map(|t| t.prompt_idx)
                    .collect()
            })
            .collect();
        assert!(orders.len() > 10);
        // clips on the two sides are the two models' clips for the same prompt+seed
        for t in &p {
            let a = s.clip_by_sha(&t.clip_a_sha).unwrap();
            let b = s.clip_by_sha(&t.clip_b_sha).unwrap();
            assert_eq!((a.model, b.model), (t.first_is, t.first_is.other()));
            assert_eq!((a.prompt_idx, a.seed), (t.prompt_idx, t.seed));
            assert_eq!((b.prompt_idx, b.seed), (t.prompt_idx, t.seed));
        }
    }

    #[test]
    fn catch_trials_are_identical_and_placed() {
        let p = plan_trials(&spec("s", 20, 5, true, true), "erin").unwrap();
        assert_eq!(p.len(), 24);
        let catch_positions: Vec<usize> = p.iter().filter(|t| t.catch).map(|t| t.index).collect();
        assert_eq!(catch_positions, vec![5, 11, 17, 23]);
        for t in p.iter().filter(|t| t.catch) {
            assert_eq!(t.clip_a_sha, t.clip_b_sha);
            assert!(
                t.abx_x.is_some(),
                "catch trials look like any other ABX trial"
            );
        }
        for t in p.iter().filter(|t| !t.catch) {
            assert_ne!(t.clip_a_sha, t.clip_b_sha);
        }
    }

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

    fn line_count(path: &Path) -> usize {
        fs::read(path)
            .map(|d| d.iter().filter(|&&b| b == b'\n').count())
            .unwrap_or(0)
    }

    #[test]
    fn create_writes_header_once_and_refuses_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let log = SessionLog::create(&path, spec("s", 10, 0, false, false)).unwrap();
        assert_eq!(line_count(&path), 1);
        assert!(log.answers().is_empty());
        let err = SessionLog::create(&path, spec("s", 10, 0, false, false)).unwrap_err();
        assert!(matches!(err, ListenError::Exists { .. }));
        assert!(err.to_string().contains("s.jsonl"));
        // no temp files left behind
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let reopened = SessionLog::open(&path).unwrap();
        assert_eq!(reopened.spec(), log.spec());
    }

    #[test]
    fn torn_tail_is_ignored_then_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let mut log = SessionLog::create(&path, spec("s", 12, 0, false, true)).unwrap();
        for i in 0..5 {
            let t = log.next_trial("frank").unwrap().unwrap();
            assert_eq!(t.index, i);
            log.record("frank", prefer(&t, Which::B)).unwrap();
        }
        let good_len = fs::metadata(&path).unwrap().len();
        // simulate a kill in the middle of the 6th write
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"trial":5,"rater":"frank","choice":"#)
            .unwrap();
        drop(f);

        let mut log = SessionLog::open(&path).unwrap();
        assert_eq!(log.answers().len(), 5);
        let torn = log.torn_tail().unwrap().clone();
        assert_eq!(
            (torn.line, torn.offset, torn.repaired),
            (7, good_len, false)
        );
        assert!(torn.problem.contains("newline"), "{}", torn.problem);
        let next = log.next_trial("frank").unwrap().unwrap();
        assert_eq!(next.index, 5, "the 6th trial is next");
        log.record("frank", prefer(&next, Which::A)).unwrap();
        assert!(log.torn_tail().unwrap().repaired);

        // file is valid afterwards: header + 6 answers, each line valid JSON
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n'));
        assert_eq!(text.lines().count(), 7);
        for line in text.lines() {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        let again = SessionLog::open(&path).unwrap();
        assert_eq!(again.answers().len(), 6);
        assert!(again.torn_tail().is_none());
        assert_eq!(again.next_trial("frank").unwrap().unwrap().index, 6);
    }

    #[test]
    fn invalid_last_line_with_newline_is_torn_but_elsewhere_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let mut log = SessionLog::create(&path, spec("s", 8, 0, false, false)).unwrap();
        for _ in 0..3 {
            let t = log.next_trial("gina").unwrap().unwrap();
            log.record("gina", prefer(&t, Which::A)).unwrap();
        }
        let original = fs::read(&path).unwrap();

        // garbage (e.g. zeros after a power loss) on the last line only
        let mut data = original.clone();
        data.extend_from_slice(b"\0\0\0\0\n");
        fs::write(&path, &data).unwrap();
        let log = SessionLog::open(&path).unwrap();
        assert_eq!(log.answers().len(), 3);
        assert_eq!(log.torn_tail().unwrap().line, 5);

        // the same garbage in the middle is an error naming file and line
        let text = String::from_utf8(original.clone()).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(2, "{not json");
        fs::write(&path, lines.join("\n") + "\n").unwrap();
        let err = SessionLog::open(&path).unwrap_err();
        match &err {
            ListenError::BadLog { path: p, line, .. } => {
                assert_eq!((p.as_path(), *line), (path.as_path(), 3));
            }
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().contains("s.jsonl:3"), "{err}");

        // a complete answer line that contradicts the plan is an error too
        let text = String::from_utf8(original).unwrap();
        let (from, to) = if text.contains("\"first_is\":\"A\"") {
            ("\"first_is\":\"A\"", "\"first_is\":\"B\"")
        } else {
            ("\"first_is\":\"B\"", "\"first_is\":\"A\"")
        };
        let tampered = text.replacen(from, to, 1);
        assert_ne!(tampered, text);
        fs::write(&path, tampered).unwrap();
        let err = SessionLog::open(&path).unwrap_err();
        assert!(
            err.to_string().contains("does not match the planned trial"),
            "{err}"
        );
    }

    #[test]
    fn second_writer_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let mut one = SessionLog::create(&path, spec("s", 8, 0, false, false)).unwrap();
        let mut two = SessionLog::open(&path).unwrap();
        let t = one.next_trial("hal").unwrap().unwrap();
        one.record("hal", prefer(&t, Which::B)).unwrap();
        let err = two
            .record(
                "ivy",
                Response {
                    choice: Choice::A,
                    abx_choice: None,
                },
            )
            .unwrap_err();
        assert!(matches!(err, ListenError::Conflict { .. }), "{err}");
        assert_eq!(SessionLog::open(&path).unwrap().answers().len(), 1);
    }

    #[test]
    fn record_validates_responses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let mut log = SessionLog::create(&path, spec("s", 2, 0, true, false)).unwrap();
        let tie = Response {
            choice: Choice::NoPreference,
            abx_choice: Some(Side::A),
        };
        assert!(log
            .record("jo", tie)
            .unwrap_err()
            .to_string()
            .contains("no preference"));
        let no_abx = Response {
            choice: Choice::A,
            abx_choice: None,
        };
        assert!(log
            .record("jo", no_abx)
            .unwrap_err()
            .to_string()
            .contains("ABX"));
        let t = log.next_trial("jo").unwrap().unwrap();
        let a = log
            .record(
                "jo",
                Response {
                    choice: Choice::A,
                    abx_choice: t.abx_x,
                },
            )
            .unwrap();
        assert_eq!(a.abx_correct, Some(true));
        // duplicates and forged mappings are refused by append
        assert!(log
            .append(a.clone())
            .unwrap_err()
            .to_string()
            .contains("duplicate"));
        let t1 = log.next_trial("jo").unwrap().unwrap();
        let mut forged = a;
        forged.trial = t1.index;
        forged.first_is = t1.first_is.other();
        assert!(log.append(forged).is_err());
        let ok = Response {
            choice: Choice::B,
            abx_choice: Some(Side::B),
        };
        log.record("jo", ok).unwrap();
        assert!(log
            .record("jo", ok)
            .unwrap_err()
            .to_string()
            .contains("every trial"));
        assert_eq!(SessionLog::open(&path).unwrap().answers().len(), 2);
    }

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

    /// Build a finished session: 20 scored trials with B preferred on 15
    /// (prompt chosen by the plan), 4 catch trials of which one is failed.
    fn constructed_log(
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

    #[test]
    fn results_on_constructed_log() {
        let dir = tempfile::tempdir().unwrap();
        let (log, expected) = constructed_log(dir.path(), "s1", "lee");
        let r = results(&log, &ResultsOptions::default()).unwrap();
        assert_eq!(
            (r.summary.n, r.summary.wins_b, r.summary.ties),
            (20, 15.0, 0)
        );
        assert!((r.summary.p_two_sided - 0.041_389_465).abs() < 1e-6);
        assert_eq!(r.summary.share_b, Some(0.75));
        assert_eq!((r.catch_trials, r.catch_failures), (4, 1));
        assert_eq!(r.per_rater.len(), 1);
        assert_eq!(
            (
                r.per_rater[0].wins_b,
                r.per_rater[0].n,
                r.per_rater[0].catch_failures
            ),
            (15.0, 20, 1)
        );
        assert_eq!(r.per_prompt.len(), PROMPTS.len());
        for pc in &r.per_prompt {
            let idx = PROMPTS.iter().position(|p| *p == pc.prompt).unwrap();
            let (w, n) = expected[&idx];
            assert_eq!((pc.wins_b, pc.n), (w as f64, n), "{}", pc.prompt);
        }
        assert_eq!(r.per_prompt.iter().map(|p| p.n).sum::<u64>(), 20);
        assert!(r.abx.is_none());
        assert!(r.unfinished_raters.is_empty());
        let b = r.bootstrap.clone().unwrap();
        assert!((b.mean - 0.75).abs() < 1e-12 && b.lo <= 0.75 && b.hi >= 0.75);
        // deterministic
        assert_eq!(results(&log, &ResultsOptions::default()).unwrap(), r);
    }

    #[test]
    fn results_ties_and_abx() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abx.jsonl");
        let mut log = SessionLog::create(&path, spec("abx", 16, 0, true, true)).unwrap();
        let mut i = 0;
        while let Some(t) = log.next_trial("max").unwrap() {
            let x = t.abx_x.unwrap();
            let wrong = if x == Side::A { Side::B } else { Side::A };
            // 12 of 16 ABX correct; 8 B, 4 A, 4 ties
            let abx_choice = Some(if i < 12 { x } else { wrong });
            let mut r = match i % 4 {
                0 | 1 => prefer(&t, Which::B),
                2 => prefer(&t, Which::A),
                _ => Response {
                    choice: Choice::NoPreference,
                    abx_choice: None,
                },
            };
            r.abx_choice = abx_choice;
            log.record("max", r).unwrap();
            i += 1;
        }
        let ex = results(&log, &ResultsOptions::default()).unwrap();
        assert_eq!(
            (ex.summary.n, ex.summary.wins_b, ex.summary.ties),
            (12, 8.0, 4)
        );
        let abx = ex.abx.clone().unwrap();
        assert_eq!((abx.correct, abx.n), (12, 16));
        assert!((abx.p_one_sided - 0.0384).abs() < 1e-4);
        let split = results(
            &log,
            &ResultsOptions {
                tie_policy: TiePolicy::Split,
                ..ResultsOptions::default()
            },
        )
        .unwrap();
        assert_eq!((split.summary.n, split.summary.wins_b), (16, 10.0));
        assert_eq!(split.tie_policy, TiePolicy::Split);
    }

    #[test]
    fn pooling() {
        let dir = tempfile::tempdir().unwrap();
        let (l1, _) = constructed_log(dir.path(), "s1", "lee");
        let (l2, _) = constructed_log(dir.path(), "s2", "mo");
        let r = pool(&[l1.clone(), l2.clone()], &ResultsOptions::default()).unwrap();
        assert_eq!((r.summary.n, r.summary.wins_b), (40, 30.0));
        assert_eq!(r.per_rater.len(), 2);
        assert_eq!(r.catch_failures, 2);
        assert_eq!(r.sessions, vec!["s1".to_string(), "s2".to_string()]);
        assert!(pool(&[l1.clone(), l1.clone()], &ResultsOptions::default()).is_err());
        assert!(pool(&[], &ResultsOptions::default()).is_err());
        // different models are never pooled
        let mut other = spec("s3", 20, 5, false, true);
        other.model_b.weights_sha256 = "c".repeat(64);
        let l3 = SessionLog::create(dir.path().join("s3.jsonl"), other).unwrap();
        let err = pool(&[l1, l3], &ResultsOptions::default()).unwrap_err();
        assert!(err.to_string().contains("different models"), "{err}");
    }

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

    // ---- real kill test ---------------------------------------------------

    const CHILD_ENV: &str = "TUNELAB_LISTEN_KILL_CHILD_LOG";
    const CHILD_RATER: &str = "killed-rater";

    /// Child side of `kill_mid_session_keeps_every_committed_answer`. Does
    /// nothing in a normal test run; when re-invoked with `CHILD_ENV` set it
    /// records answers in a loop, printing `COMMITTED <trial>` after each
    /// durable append, until it is killed.
    #[test]
    fn kill_child_writer() {
        let Some(path) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let mut log = SessionLog::open(PathBuf::from(path)).unwrap();
        let stdout = std::io::stdout();
        while let Some(t) = log.next_trial(CHILD_RATER).unwrap() {
            let model = if t.index % 3 == 0 { Which::A } else { Which::B };
            let a = log.record(CHILD_RATER, prefer(&t, model)).unwrap();
            let mut out = stdout.lock();
            writeln!(out, "COMMITTED {}", a.trial).unwrap();
            out.flush().unwrap();
        }
        std::thread::sleep(Duration::from_secs(30));
    }

    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn kill_mid_session_keeps_every_committed_answer() {
        if std::env::var_os(CHILD_ENV).is_some() {
            return; // we are the child process: only `kill_child_writer` acts
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("killed.jsonl");
        SessionLog::create(&path, spec("kill", 5000, 0, false, false)).unwrap();

        // test name relative to the crate, robust to moving the module
        let module = module_path!();
        let module = module.split_once("::").map_or(module, |(_, rest)| rest);
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                &format!("{module}::kill_child_writer"),
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let stdout = child.0.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<usize>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Some(n) = line.strip_prefix("COMMITTED ") else {
                    continue;
                };
                if tx.send(n.trim().parse().unwrap()).is_err() {
                    break;
                }
            }
        });

        let mut committed = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            committed.extend(rx.try_iter());
            // at least 5 answers confirmed on stdout and visible on disk
            if committed.len() >= 5 && line_count(&path) >= 6 {
                break;
            }
            assert!(Instant::now() < deadline, "child made no progress");
            std::thread::sleep(Duration::from_millis(2));
        }
        child.0.kill().unwrap(); // SIGKILL on Unix
        child.0.wait().unwrap();
        reader.join().unwrap();
        committed.extend(rx.try_iter()); // everything printed before the kill
        assert!(committed.len() >= 5);

        let mut log = SessionLog::open(&path).unwrap();
        let on_disk: BTreeSet<usize> = log.answers().iter().map(|a| a.trial).collect();
        for c in &committed {
            assert!(on_disk.contains(c), "committed answer {c} lost");
        }
        // answers are contiguous from 0 (committed ones may exceed what was printed)
        assert_eq!(on_disk.len(), log.answers().len());
        assert_eq!(on_disk.iter().copied().max().unwrap() + 1, on_disk.len());
        assert!(log.answers().len() >= committed.len());
        eprintln!(
            "kill test: {} printed as committed, {} on disk, torn tail: {:?}",
            committed.len(),
            log.answers().len(),
            log.torn_tail()
        );

        // resuming works and leaves a valid file
        let next = log.next_trial(CHILD_RATER).unwrap().unwrap();
        assert_eq!(next.index, log.answers().len());
        log.record(CHILD_RATER, prefer(&next, Which::B)).unwrap();
        let again = SessionLog::open(&path).unwrap();
        assert!(again.torn_tail().is_none());
        assert_eq!(again.answers().len(), log.answers().len());
    }
}
