//! Scoring: the tallies, exact test, ABX outcome, catch-trial failures and
//! cluster bootstrap of one session log or several pooled ones.
//!
//! Why: the verdict must come from the logged answers alone (each answer
//! carries its own side mapping), must never pool different models, and must
//! not claim a precision the votes cannot carry; the statistics themselves
//! are in [`super::stats`], this module decides what goes into them.
//!
//! What: [`ResultsOptions`], [`Results`] (with [`AbxResult`],
//! [`PromptCount`], [`RaterCount`], [`BootstrapCi`]), [`results`] and
//! [`pool`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::{ListenError, Result};
use super::log::SessionLog;
use super::model::ModelRef;
use super::stats::{self, Pref, Summary, TiePolicy};

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

/// Cluster-bootstrap estimate of B's share.
///
/// In JSON the interval's fields sit beside `mean`: `"interval":
/// "estimated"` with `lo` and `hi`, or `"interval": "cannot_be_estimated"`
/// with `clusters` and no bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapCi {
    /// Observed share.
    pub mean: f64,
    /// The 95 % interval, or why there is none.
    #[serde(flatten)]
    pub interval: BootstrapInterval,
    /// Replicates.
    pub iters: usize,
    /// Seed.
    pub seed: u64,
}

/// The 95 % percentile interval of the cluster bootstrap, when the votes can
/// carry one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "interval", rename_all = "snake_case")]
pub enum BootstrapInterval {
    /// The 2.5 % and 97.5 % percentiles of the replicates.
    Estimated {
        /// 2.5 % percentile.
        lo: f64,
        /// 97.5 % percentile.
        hi: f64,
    },
    /// Fewer than [`stats::MIN_BOOTSTRAP_CLUSTERS`] (rater, prompt) clusters:
    /// every replicate redraws the same votes, so the percentiles would be a
    /// zero-width interval that looks certain and means nothing.
    CannotBeEstimated {
        /// The (rater, prompt) clusters there were.
        clusters: usize,
    },
}

/// "95 % lo–hi" (the formatter's precision applies to the bounds), or a
/// sentence saying why there is no interval.
impl fmt::Display for BootstrapInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BootstrapInterval::Estimated { lo, hi } => match f.precision() {
                Some(p) => write!(f, "95 % {lo:.p$}–{hi:.p$}"),
                None => write!(f, "95 % {lo}–{hi}"),
            },
            BootstrapInterval::CannotBeEstimated { clusters } => write!(
                f,
                "95 % interval cannot be estimated from {clusters} rater–prompt cluster{} (needs {} or more)",
                if clusters == 1 { "" } else { "s" },
                stats::MIN_BOOTSTRAP_CLUSTERS
            ),
        }
    }
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
    /// `None` without scored votes, no interval with fewer than two
    /// (rater, prompt) clusters.
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
    let (model_a, model_b) = (first.spec().model_a.clone(), first.spec().model_b.clone());
    let same = |x: &ModelRef, y: &ModelRef| x.id == y.id && x.weights_sha256 == y.weights_sha256;
    let mut ids = BTreeSet::new();
    for log in logs {
        if !same(&log.spec().model_a, &model_a) || !same(&log.spec().model_b, &model_b) {
            return Err(ListenError::Invalid(format!(
                "{}: compares different models than {}; refusing to pool",
                log.path().display(),
                first.path().display()
            )));
        }
        if !ids.insert(log.spec().id.clone()) {
            return Err(ListenError::Invalid(format!(
                "{}: session {:?} is already in the pool",
                log.path().display(),
                log.spec().id
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
            .answers()
            .iter()
            .map(|a| a.rater.as_str())
            .collect::<BTreeSet<_>>()
        {
            if log.next_trial(rater)?.is_some() {
                unfinished.insert(rater.to_string());
            }
        }
        for a in log.answers() {
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
                .spec()
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

    let any_abx = logs.iter().any(|l| l.spec().abx);
    let clusters = stats::bootstrap_clusters(&votes);
    Ok(Results {
        sessions: logs.iter().map(|l| l.spec().id.clone()).collect(),
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
                interval: if clusters < stats::MIN_BOOTSTRAP_CLUSTERS {
                    BootstrapInterval::CannotBeEstimated { clusters }
                } else {
                    BootstrapInterval::Estimated { lo, hi }
                },
                iters: opts.bootstrap_iters,
                seed: opts.bootstrap_seed,
            }),
        unfinished_raters: unfinished.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{constructed_log, prefer, spec, PROMPTS};
    use super::super::model::{Choice, Response, SessionSpec, Side, Which};
    use super::*;

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
        let BootstrapInterval::Estimated { lo, hi } = b.interval else {
            panic!("one rater over four prompts has an interval: {b:?}");
        };
        assert!((b.mean - 0.75).abs() < 1e-12 && lo <= 0.75 && hi >= 0.75);
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

    /// A spec with the first of [`PROMPTS`] only.
    fn one_prompt_spec(id: &str, trials: usize) -> SessionSpec {
        let mut s = spec(id, trials, 0, false, false);
        s.prompts.truncate(1);
        s.clips.retain(|c| c.prompt_idx == 0);
        s
    }

    /// Answer every trial of `rater`, preferring B on the first `b_wins`.
    fn answer_all(log: &mut SessionLog, rater: &str, b_wins: usize) {
        let mut i = 0;
        while let Some(t) = log.next_trial(rater).unwrap() {
            let model = if i < b_wins { Which::B } else { Which::A };
            log.record(rater, prefer(&t, model)).unwrap();
            i += 1;
        }
    }

    #[test]
    fn bootstrap_over_one_rater_and_one_prompt_cannot_be_estimated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one.jsonl");
        let mut log = SessionLog::create(&path, one_prompt_spec("one", 20)).unwrap();
        answer_all(&mut log, "solo", 13);
        let r = results(&log, &ResultsOptions::default()).unwrap();
        let b = r.bootstrap.clone().unwrap();
        assert!((b.mean - 0.65).abs() < 1e-12);
        assert_eq!(
            b.interval,
            BootstrapInterval::CannotBeEstimated { clusters: 1 }
        );
        // what the CLI and the results view print: no "0.65–0.65"
        let text = format!("{:.2}", b.interval);
        assert!(text.contains("cannot be estimated"), "{text}");
        assert!(!text.contains("0.65"), "{text}");
        // the JSON export says so too, with no bounds to misread
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(json["interval"], "cannot_be_estimated");
        assert_eq!(json["clusters"], 1);
        assert!(
            json.get("lo").is_none() && json.get("hi").is_none(),
            "{json}"
        );
        assert_eq!(serde_json::from_value::<BootstrapCi>(json).unwrap(), b);
    }

    #[test]
    fn bootstrap_over_two_or_more_clusters_gives_an_interval_as_before() {
        let dir = tempfile::tempdir().unwrap();
        // one prompt, two raters: two clusters
        let path = dir.path().join("two.jsonl");
        let mut log = SessionLog::create(&path, one_prompt_spec("two", 20)).unwrap();
        answer_all(&mut log, "ann", 18);
        answer_all(&mut log, "bob", 8);
        let opts = ResultsOptions::default();
        let b = results(&log, &opts).unwrap().bootstrap.unwrap();
        // the numbers are stats::bootstrap_preference's, as before
        let votes: Vec<(String, String, f64)> = log
            .answers()
            .iter()
            .map(|a| {
                let v = if a.model_pref() == Pref::B { 1.0 } else { 0.0 };
                (a.rater.clone(), PROMPTS[0].to_string(), v)
            })
            .collect();
        let (mean, lo, hi) =
            stats::bootstrap_preference(&votes, opts.bootstrap_iters, opts.bootstrap_seed).unwrap();
        assert_eq!(
            (b.mean, b.interval),
            (mean, BootstrapInterval::Estimated { lo, hi })
        );
        assert!(lo < mean && mean < hi, "{lo} {mean} {hi}");
        assert_eq!(
            format!("{:.2}", b.interval),
            format!("95 % {lo:.2}–{hi:.2}")
        );
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(json["interval"], "estimated");
        assert_eq!(
            (json["lo"].as_f64(), json["hi"].as_f64()),
            (Some(lo), Some(hi))
        );
        assert_eq!(serde_json::from_value::<BootstrapCi>(json).unwrap(), b);
        // one rater over four prompts is four clusters: an interval too
        let (four, _) = constructed_log(dir.path(), "four", "lee");
        let b = results(&four, &opts).unwrap().bootstrap.unwrap();
        assert!(
            matches!(b.interval, BootstrapInterval::Estimated { .. }),
            "{b:?}"
        );
    }
}
