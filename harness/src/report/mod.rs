//! Reports: results.json, junit.xml, report.md, report.html and the
//! terminal table.

pub mod bundle;
pub mod html;
mod junit;
mod markdown;
pub mod recheck;
mod summary;
mod table;
#[cfg(test)]
mod tests;
pub mod timeline;

pub use junit::render_junit;
pub use markdown::render_markdown;
pub use summary::{event_summary, kind_summary, story};
pub use table::render_table;

use crate::invariants::{Verdict, Violation};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `pass`: every invariant held. `fail`: an invariant was violated.
/// `error`: the run could not be judged (harness or deployer broke it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Pass,
    Fail,
    Error,
}

/// The outcome of one scenario × strategy × engine run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub run_id: String,
    pub scenario: String,
    pub strategy: String,
    pub engine: String,
    pub engine_version: String,
    pub backend: String,
    /// The largest replica count the scenario asks for.
    pub replicas: u32,
    pub tls: bool,
    pub seed: u64,
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub verdicts: Vec<Verdict>,
    /// The invariants the scenario exists to test: each must have judged
    /// something for the run to pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_judge: Vec<String>,
    /// The documented engine bug this failure matches (`crate::findings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_finding: Option<String>,
    pub duration_ms: u64,
    /// Time from the start of the bootstrap step until the cluster was ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_ms: Option<u64>,
    /// Paths relative to the report directory.
    pub trace: String,
    pub logs: String,
}

/// Everything one `raftcert run` produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteReport {
    pub format: u32,
    pub run_id: String,
    pub harness_version: String,
    pub started_at: String,
    pub duration_ms: u64,
    pub runs: Vec<RunResult>,
    /// Scenarios the suite has that this run could not drive, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_covered: Vec<NotCovered>,
    /// Present when the run was a certification (`raftcert certify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<bundle::Certificate>,
}

/// A scenario a run left out: a fault it uses needs what the subject or
/// substrate lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotCovered {
    pub scenario: String,
    pub subject: String,
    pub reason: String,
}

/// Newest `results.json` format this build understands. Format 2 added
/// `n/a` verdicts and the invariants a scenario must judge.
pub const REPORT_FORMAT: u32 = 2;

pub const RESULTS_FILE: &str = "results.json";
pub const JUNIT_FILE: &str = "junit.xml";
pub const MARKDOWN_FILE: &str = "report.md";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a results file: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: results format {found} is newer than supported {REPORT_FORMAT}")]
    UnsupportedFormat { path: PathBuf, found: u32 },
    #[error("cannot encode results: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("cannot encode JUnit report: {0}")]
    Junit(#[from] quick_junit::SerializeError),
    #[error("{0}: not a directory")]
    NotADirectory(PathBuf),
    #[error("cannot render report.html: {0}")]
    Html(String),
}

/// Writes `results.json`, `junit.xml`, `report.md` and `report.html` into
/// `dir`, which must already exist (and hold the runs' traces).
pub fn write_all(dir: &Path, report: &SuiteReport) -> Result<(), ReportError> {
    if !dir.is_dir() {
        return Err(ReportError::NotADirectory(dir.to_path_buf()));
    }
    // Render everything first so an encoding error leaves no partial set.
    let mut json = serde_json::to_string_pretty(report).map_err(ReportError::Encode)?;
    json.push('\n');
    let junit = render_junit(report)?;
    let markdown = render_markdown(report);
    let html = html::render_report_dir(report, dir, &html::TraceLinks::Relative)?;
    for (name, body) in [
        (RESULTS_FILE, json),
        (JUNIT_FILE, junit),
        (MARKDOWN_FILE, markdown),
        (html::HTML_FILE, html),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, body).map_err(|source| ReportError::Io { path, source })?;
    }
    Ok(())
}

/// Reads a `results.json` written by [`write_all`].
pub fn load_results(path: &Path) -> Result<SuiteReport, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let report: SuiteReport = serde_json::from_str(&text).map_err(|source| ReportError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    if report.format > REPORT_FORMAT {
        return Err(ReportError::UnsupportedFormat {
            path: path.to_path_buf(),
            found: report.format,
        });
    }
    Ok(report)
}

/// Pass/fail/error counts over a set of runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub pass: usize,
    pub fail: usize,
    pub error: usize,
}

impl Totals {
    pub fn of<'a>(runs: impl IntoIterator<Item = &'a RunResult>) -> Self {
        let mut totals = Totals::default();
        for run in runs {
            match run.status {
                RunStatus::Pass => totals.pass += 1,
                RunStatus::Fail => totals.fail += 1,
                RunStatus::Error => totals.error += 1,
            }
        }
        totals
    }

    pub fn runs(&self) -> usize {
        self.pass + self.fail + self.error
    }
}

impl RunResult {
    /// A run not judged (yet): status `error`, no verdicts.
    #[allow(clippy::too_many_arguments)]
    pub fn unjudged(
        run_id: &str,
        scenario: &str,
        subject: &str,
        engine: &crate::engine::EngineChoice,
        substrate: &str,
        replicas: u32,
        tls: bool,
        seed: u64,
        rel_dir: &str,
        error: Option<String>,
    ) -> RunResult {
        RunResult {
            run_id: run_id.to_string(),
            scenario: scenario.to_string(),
            strategy: subject.to_string(),
            engine: engine.kind().to_string(),
            engine_version: engine.version(),
            backend: substrate.to_string(),
            replicas,
            tls,
            seed,
            status: RunStatus::Error,
            error,
            verdicts: Vec::new(),
            must_judge: Vec::new(),
            known_finding: None,
            duration_ms: 0,
            ready_ms: None,
            trace: format!("{rel_dir}/trace.jsonl"),
            logs: format!("{rel_dir}/logs"),
        }
    }

    /// A run not judged (yet), as a saved trace's header describes it;
    /// `trace` is where the trace was read from.
    pub fn from_header(trace: &crate::trace::Trace, trace_path: &str) -> RunResult {
        let mut run = RunResult {
            run_id: String::new(),
            scenario: String::new(),
            strategy: String::new(),
            engine: String::new(),
            engine_version: String::new(),
            backend: String::new(),
            replicas: 0,
            tls: false,
            seed: 0,
            status: RunStatus::Error,
            error: None,
            verdicts: Vec::new(),
            must_judge: Vec::new(),
            known_finding: None,
            duration_ms: trace.events.last().map_or(0, |e| e.t_ms),
            ready_ms: None,
            trace: trace_path.to_string(),
            logs: String::new(),
        };
        if let Some(crate::trace::EventKind::RunStarted {
            run_id,
            scenario,
            strategy,
            engine,
            engine_version,
            backend,
            seed,
            tls,
            slots,
            ..
        }) = trace.header()
        {
            run.run_id = run_id.clone();
            run.scenario = scenario.clone();
            run.strategy = strategy.clone();
            run.engine = engine.clone();
            run.engine_version = engine_version.clone();
            run.backend = backend.clone();
            run.seed = *seed;
            run.tls = *tls;
            run.replicas = slots.len() as u32;
        }
        run
    }

    /// Judges a finished run: the invariants over its trace. `error` when
    /// the run was aborted, whatever they say, or when an invariant the
    /// scenario exists to test (`must_judge`) had nothing to judge: such a
    /// run proves nothing, so it is no pass.
    pub fn judge(
        &mut self,
        trace: &crate::trace::Trace,
        abort: Option<String>,
        must_judge: &[String],
    ) {
        self.verdicts = crate::invariants::check_all(trace);
        self.must_judge = must_judge.to_vec();
        let unjudged: Vec<String> = self
            .verdicts
            .iter()
            .filter(|v| must_judge.contains(&v.invariant))
            .filter_map(|v| {
                v.not_applicable
                    .as_ref()
                    .map(|why| format!("{} ({why})", v.invariant))
            })
            .collect();
        self.status = if abort.is_some() {
            RunStatus::Error
        } else if !self.verdicts.iter().all(Verdict::passed) {
            RunStatus::Fail
        } else if !unjudged.is_empty() {
            RunStatus::Error
        } else {
            RunStatus::Pass
        };
        self.known_finding = if self.status == RunStatus::Fail {
            crate::findings::recognise(trace, &self.violated_invariants()).map(|f| f.label())
        } else {
            None
        };
        self.error = abort.or_else(|| {
            (!unjudged.is_empty()).then(|| {
                format!(
                    "nothing to judge for what this scenario tests: {}",
                    unjudged.join("; ")
                )
            })
        });
    }

    /// `etcd-3.5.17` or `etcd-3.5.17+tls`.
    pub fn engine_label(&self) -> String {
        let tls = if self.tls { "+tls" } else { "" };
        format!("{}-{}{tls}", self.engine, self.engine_version)
    }

    /// `strategy@etcd-3.5.17[+tls]`: one matrix column / JUnit suite.
    pub fn column_label(&self) -> String {
        format!("{}@{}", self.strategy, self.engine_label())
    }

    /// Ids of the invariants this run violated, in verdict order.
    pub fn violated_invariants(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = Vec::new();
        for verdict in self.verdicts.iter().filter(|v| !v.passed()) {
            if !ids.contains(&verdict.invariant.as_str()) {
                ids.push(&verdict.invariant);
            }
        }
        ids
    }

    /// Ids of the invariants that had nothing to judge in this run.
    pub fn not_applicable_invariants(&self) -> Vec<&str> {
        self.verdicts
            .iter()
            .filter(|v| v.not_applicable.is_some())
            .map(|v| v.invariant.as_str())
            .collect()
    }

    /// The first violation of the first violated invariant.
    pub fn first_violation(&self) -> Option<(&Verdict, &Violation)> {
        self.verdicts
            .iter()
            .find_map(|v| v.violations.first().map(|viol| (v, viol)))
    }

    /// `pass`/`FAIL`/`ERROR`: upper case draws the eye to problems.
    pub fn status_word(&self) -> &'static str {
        match self.status {
            RunStatus::Pass => "pass",
            RunStatus::Fail => "FAIL",
            RunStatus::Error => "ERROR",
        }
    }

    /// One line explaining a non-passing run.
    pub fn headline(&self) -> Option<String> {
        match self.status {
            RunStatus::Pass => None,
            RunStatus::Fail => {
                let first = self
                    .first_violation()
                    .map(|(_, viol)| viol.message.clone())
                    .unwrap_or_else(|| "invariant violated".to_string());
                Some(match &self.known_finding {
                    Some(finding) => format!("known engine bug {finding}: {first}"),
                    None => first,
                })
            }
            RunStatus::Error => Some(
                self.error
                    .clone()
                    .unwrap_or_else(|| "run error (no message recorded)".to_string()),
            ),
        }
    }
}

/// Groups runs by a key, keeping first-appearance order so reports follow
/// the order the suite ran in.
pub(crate) fn group_by<K: PartialEq>(
    runs: &[RunResult],
    key: impl Fn(&RunResult) -> K,
) -> Vec<(K, Vec<&RunResult>)> {
    let mut groups: Vec<(K, Vec<&RunResult>)> = Vec::new();
    for run in runs {
        let k = key(run);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, members)) => members.push(run),
            None => groups.push((k, vec![run])),
        }
    }
    groups
}

/// Milliseconds as seconds with one decimal, e.g. `1.2s`.
pub(crate) fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// Collapses whitespace and control characters to single spaces and cuts
/// to at most `max` characters, so free text fits on one line.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    }
    truncate(&out, max)
}

/// Cuts at a character boundary, marking the cut with `...`.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let keep = max.saturating_sub(3);
    let mut out: String = text.chars().take(keep).collect();
    out.push_str("...");
    out
}
