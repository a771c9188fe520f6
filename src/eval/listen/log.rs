//! The crash-safe, append-only session log: one JSON Lines file per
//! session, holding the spec and every confirmed answer.
//!
//! Why: no confirmed answer may be lost or silently altered when the app
//! crashes or is killed, and a log must never be misread by a different
//! planner, so durability and validation live here and nowhere else.
//!
//! What: [`SessionLog`]. Line 1 is a header with [`LOG_FORMAT`] and the
//! spec, written once atomically (the crate's [`atomic_write_io`]: temp
//! file, fsync, rename, directory fsync); each answer is one line appended
//! with `O_APPEND` + `write_all` + `fsync` before the call returns. `open`
//! re-checks every answer against the re-computed plan, resumes, ignores
//! (and reports, as a [`TornTail`]) a torn *last* line, and truncates it
//! away before the next append; any other bad line is an error naming file
//! and line. One process writes a log at a time; a second writer is detected
//! (file length changed underneath) and refused rather than interleaved.
//! What a UI may show of a log, and the unblinding, are in [`super::blind`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::error::{ListenError, Result};
use super::model::{Answer, Choice, Response, SessionSpec, Trial};
use super::plan::plan_trials;
use crate::util::atomic_write_io;

/// Format tag in the header line. Bump it whenever the plan algorithm or the
/// line formats change: answers are checked against the re-computed plan on
/// every `open`, so an old log must never be read with a different planner.
pub const LOG_FORMAT: &str = "tunelab-listen-log/1";

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

/// Wall-clock time for answer and export timestamps.
pub(super) fn now_unix_ms() -> Result<u64> {
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

impl SessionLog {
    /// Create a new log holding only the header (spec). The header is
    /// written with the crate's one atomic write ([`atomic_write_io`]: temp
    /// file in the same directory, fsync, rename, directory fsync), so the
    /// log either does not exist or has a complete header. Refuses to
    /// overwrite an existing file.
    pub fn create(path: impl AsRef<Path>, spec: SessionSpec) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        spec.validate()?;
        if path.exists() {
            return Err(ListenError::Exists { path });
        }
        if path.file_name().is_none() {
            return Err(ListenError::Invalid(format!(
                "{}: not a file path",
                path.display()
            )));
        }
        let line = to_line(&LogHeader {
            format: LOG_FORMAT.to_string(),
            spec: spec.clone(),
        })?;
        atomic_write_io(&path, |w| w.write_all(line.as_bytes()))
            .map_err(|e| ListenError::io(e.path, e.source))?;
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

    /// Answers this rater has given so far.
    pub(super) fn answered_count(&self, rater: &str) -> usize {
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
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::super::fixtures::{prefer, spec};
    use super::super::model::{Side, Which};
    use super::*;

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

    // ---- real kill test ---------------------------------------------------

    /// Set (to the log path) only in the copy of the test binary that
    /// `kill_mid_session_keeps_every_committed_answer` spawns: that copy
    /// plays the writer that gets killed.
    const CHILD_ENV: &str = "TUNELAB_LISTEN_KILL_CHILD_LOG";
    const CHILD_RATER: &str = "killed-rater";

    /// The child's role: record answers in a loop, printing
    /// `COMMITTED <trial>` after each durable append, until killed. Never
    /// returns: a child that outlives the whole plan fails, so this role can
    /// never pass as a test.
    fn child_writer(path: &Path) -> ! {
        let mut log = SessionLog::open(path).unwrap();
        let stdout = std::io::stdout();
        while let Some(t) = log.next_trial(CHILD_RATER).unwrap() {
            let model = if t.index % 3 == 0 { Which::A } else { Which::B };
            let a = log.record(CHILD_RATER, prefer(&t, model)).unwrap();
            let mut out = stdout.lock();
            writeln!(out, "COMMITTED {}", a.trial).unwrap();
            out.flush().unwrap();
        }
        std::thread::sleep(Duration::from_secs(30));
        panic!("the child writer finished its plan and was never killed");
    }

    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Re-runs this very test in a child process (same binary, `--exact` own
    /// name, [`CHILD_ENV`] set), which becomes [`child_writer`]; SIGKILLs it
    /// mid-session and checks that every answer it confirmed is on disk.
    #[test]
    fn kill_mid_session_keeps_every_committed_answer() {
        if let Some(path) = std::env::var_os(CHILD_ENV) {
            child_writer(Path::new(&path));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("killed.jsonl");
        SessionLog::create(&path, spec("kill", 5000, 0, false, false)).unwrap();

        // test name relative to the crate, robust to moving the module
        let module = module_path!();
        let module = module.split_once("::").map_or(module, |(_, rest)| rest);
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                &format!("{module}::kill_mid_session_keeps_every_committed_answer"),
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
        let (ran_tx, ran_rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may print "test <name> ... " on the same line first
                let Some((_, n)) = line.split_once("COMMITTED ") else {
                    if line.starts_with("running ") {
                        let _ = ran_tx.send(line);
                    }
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
        // the child ran exactly this test (in its child role), nothing else
        assert_eq!(
            ran_rx.try_iter().collect::<Vec<_>>(),
            ["running 1 test".to_string()]
        );

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
