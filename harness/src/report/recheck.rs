//! Re-checking saved runs offline: the invariants over a trace again, and
//! for a report directory a comparison with the verdicts it recorded. A
//! verdict that does not reproduce from its saved trace is a harness defect.

use super::{ReportError, RunResult, RunStatus, load_results};
use crate::invariants::Verdict;
use crate::trace::{EventKind, Trace, read_trace};
use std::collections::BTreeMap;
use std::path::Path;

/// How a trace ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Finished,
    /// The run ended with an error (harness or deployer).
    Errored(String),
    /// No `run-finished`: the run was interrupted or killed, and verdicts
    /// cover only what was recorded.
    Incomplete,
}

impl Ending {
    pub fn of(trace: &Trace) -> Ending {
        let ending = trace.events.iter().rev().find_map(|e| match &e.kind {
            EventKind::RunFinished { error } => Some(error.clone()),
            _ => None,
        });
        match ending {
            None => Ending::Incomplete,
            Some(Some(error)) => Ending::Errored(error),
            Some(None) => Ending::Finished,
        }
    }
}

/// One trace judged again.
pub struct TraceCheck {
    pub verdicts: Vec<Verdict>,
    pub ending: Ending,
}

impl TraceCheck {
    pub fn of(trace: &Trace) -> TraceCheck {
        TraceCheck {
            verdicts: crate::invariants::check_all(trace),
            ending: Ending::of(trace),
        }
    }

    /// Anything a user must look at: a violation, an error, a cut-short run.
    pub fn failed(&self) -> bool {
        self.ending != Ending::Finished || !self.verdicts.iter().all(Verdict::passed)
    }
}

/// One run of a report directory, judged again.
pub struct RunRecheck {
    pub scenario: String,
    pub strategy: String,
    pub engine_version: String,
    /// The run as judged now; `None` when its trace could not be read.
    pub now: Option<RunResult>,
    pub problem: Option<String>,
    /// Invariants judged now that the recording did not have.
    pub unrecorded: Vec<String>,
    pub differs: bool,
}

impl RunRecheck {
    /// `pass`, or the violated invariants, or `ERROR`.
    pub fn outcome(&self) -> String {
        let Some(now) = &self.now else {
            return "unreadable".into();
        };
        let violated = now.violated_invariants();
        match now.status {
            RunStatus::Pass => "pass".into(),
            RunStatus::Fail => violated.join(","),
            RunStatus::Error => "ERROR".into(),
        }
    }
}

/// Every run of a report directory judged again.
pub struct ReportRecheck {
    pub runs: Vec<RunRecheck>,
}

impl ReportRecheck {
    pub fn not_passing(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| r.now.as_ref().is_none_or(|n| n.status != RunStatus::Pass))
            .count()
    }
    pub fn differing(&self) -> usize {
        self.runs.iter().filter(|r| r.differs).count()
    }
}

/// How a verdict compares across versions: results written before `n/a`
/// existed (format 1) recorded only pass or fail.
fn verdict_word(verdict: &Verdict, knows_na: bool) -> &'static str {
    if knows_na {
        verdict.outcome_word()
    } else if verdict.passed() {
        "pass"
    } else {
        "FAIL"
    }
}

/// Judges every run of the report directory `dir` again from its trace.
pub fn recheck_report(dir: &Path) -> Result<ReportRecheck, ReportError> {
    let results = load_results(&dir.join(super::RESULTS_FILE))?;
    let knows_na = results.format >= 2;
    let mut runs = Vec::new();
    for run in &results.runs {
        let mut recheck = RunRecheck {
            scenario: run.scenario.clone(),
            strategy: run.strategy.clone(),
            engine_version: run.engine_version.clone(),
            now: None,
            problem: None,
            unrecorded: Vec::new(),
            differs: false,
        };
        let trace = match read_trace(&dir.join(&run.trace)) {
            Ok(t) => t,
            Err(e) => {
                recheck.problem = Some(format!("cannot read trace: {e}"));
                recheck.differs = true;
                runs.push(recheck);
                continue;
            }
        };
        let abort = match Ending::of(&trace) {
            Ending::Finished => None,
            Ending::Errored(error) => Some(error),
            Ending::Incomplete => run.error.clone(),
        };
        let mut now = run.clone();
        now.judge(&trace, abort, &run.must_judge);
        let recorded: BTreeMap<&str, &'static str> = run
            .verdicts
            .iter()
            .map(|v| (v.invariant.as_str(), verdict_word(v, knows_na)))
            .collect();
        // Invariants added after the recording are judged, not compared.
        recheck.unrecorded = now
            .verdicts
            .iter()
            .filter(|v| !recorded.contains_key(v.invariant.as_str()))
            .map(|v| v.invariant.clone())
            .collect();
        let same_verdicts = now.verdicts.iter().all(|v| {
            recorded
                .get(v.invariant.as_str())
                .is_none_or(|was| *was == verdict_word(v, knows_na))
        }) && run
            .verdicts
            .iter()
            .all(|v| now.verdicts.iter().any(|n| n.invariant == v.invariant));
        recheck.differs = !(same_verdicts && now.status == run.status);
        recheck.now = Some(now);
        runs.push(recheck);
    }
    Ok(ReportRecheck { runs })
}
