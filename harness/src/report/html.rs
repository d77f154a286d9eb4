//! report.html: the matrix, then each run's verdicts and timeline, in one
//! file that opens from disk with no network (styles and script inline).

use super::timeline::{Timeline, timeline};
use super::{ReportError, RunResult, RunStatus, SuiteReport, Totals, group_by, one_line, secs};
use crate::trace::{Trace, read_trace};
use serde::Serialize;
use std::path::{Path, PathBuf};

pub const HTML_FILE: &str = "report.html";

const TEMPLATE: &str = include_str!("templates/report.html");

/// Violation messages listed per verdict; a crash loop repeats one.
const NOTES_MAX: usize = 5;

/// The fragment that names a run's section in report.html.
pub fn run_anchor(run_id: &str) -> String {
    let safe: String = run_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("run-{safe}")
}

/// Where a page's trace links lead.
#[derive(Debug, Clone)]
pub enum TraceLinks {
    /// The page is in the report directory: the runs' relative paths.
    Relative,
    /// The page is elsewhere: paths under this (absolute) directory.
    Under(PathBuf),
    /// The traces are in this archive, which a page cannot open: each
    /// trace's path is shown, not linked (the marks still show each line).
    InArchive(String),
}

impl TraceLinks {
    /// The link target, if any, and the text of a run's trace reference.
    fn of(&self, trace: &str) -> (Option<String>, String) {
        match self {
            TraceLinks::Relative => (Some(trace.to_string()), trace.to_string()),
            TraceLinks::Under(dir) => {
                let path = dir.join(trace).display().to_string();
                (Some(path.clone()), path)
            }
            TraceLinks::InArchive(archive) => (None, format!("{trace} in {archive}")),
        }
    }
}

/// report.html for a report whose traces lie under `dir` (a run's trace
/// path is relative to it).
pub fn render_report_dir(
    report: &SuiteReport,
    dir: &Path,
    links: &TraceLinks,
) -> Result<String, ReportError> {
    let runs = report
        .runs
        .iter()
        .map(|run| {
            let path = dir.join(&run.trace);
            let trace = read_trace(&path).map_err(|e| e.to_string());
            (run.clone(), trace)
        })
        .collect();
    render(&Header::of(report), runs, links)
}

/// A page for one saved trace, judged now.
pub fn render_trace(trace: &Trace, source: &str) -> Result<String, ReportError> {
    let checked = super::recheck::TraceCheck::of(trace);
    let mut run = RunResult::from_header(trace, source);
    let abort = match &checked.ending {
        super::recheck::Ending::Errored(e) => Some(e.clone()),
        _ => None,
    };
    run.judge(trace, abort, &[]);
    let header = Header {
        title: format!("raftcert trace {source}"),
        run_id: run.run_id.clone(),
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: String::new(),
        duration: secs(run.duration_ms),
        totals: Totals::of([&run]).into(),
    };
    render(
        &header,
        vec![(run, Ok(trace.clone()))],
        &TraceLinks::Relative,
    )
}

#[derive(Serialize)]
struct Header {
    title: String,
    run_id: String,
    harness_version: String,
    started_at: String,
    duration: String,
    totals: TotalsView,
}

impl Header {
    fn of(report: &SuiteReport) -> Self {
        let title = match &report.certificate {
            Some(cert) => format!(
                "raftcert certificate: {}",
                cert.subjects
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => format!("raftcert report {}", report.run_id),
        };
        Header {
            title,
            run_id: report.run_id.clone(),
            harness_version: report.harness_version.clone(),
            started_at: report.started_at.clone(),
            duration: secs(report.duration_ms),
            totals: Totals::of(&report.runs).into(),
        }
    }
}

#[derive(Serialize)]
struct TotalsView {
    runs: usize,
    pass: usize,
    fail: usize,
    error: usize,
}

impl From<Totals> for TotalsView {
    fn from(t: Totals) -> Self {
        TotalsView {
            runs: t.runs(),
            pass: t.pass,
            fail: t.fail,
            error: t.error,
        }
    }
}

#[derive(Serialize)]
struct Row {
    scenario: String,
    cells: Vec<Option<Cell>>,
}

#[derive(Serialize)]
struct Cell {
    anchor: String,
    status: &'static str,
    word: &'static str,
    violated: String,
}

#[derive(Serialize)]
struct RunView {
    anchor: String,
    scenario: String,
    column: String,
    status: &'static str,
    word: &'static str,
    headline: Option<String>,
    duration: String,
    ready: Option<String>,
    /// How the trace is named, and its link when the page can reach it.
    trace: String,
    trace_href: Option<String>,
    verdicts: Vec<VerdictView>,
    timeline: Option<Timeline>,
    trace_error: Option<String>,
}

#[derive(Serialize)]
struct VerdictView {
    id: String,
    title: String,
    outcome: &'static str,
    notes: Vec<String>,
}

fn status_class(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Pass => "pass",
        RunStatus::Fail => "fail",
        RunStatus::Error => "error",
    }
}

fn render(
    header: &Header,
    runs: Vec<(RunResult, Result<Trace, String>)>,
    links: &TraceLinks,
) -> Result<String, ReportError> {
    let results: Vec<RunResult> = runs.iter().map(|(r, _)| r.clone()).collect();
    let columns: Vec<String> = group_by(&results, RunResult::column_label)
        .into_iter()
        .map(|(label, _)| label)
        .collect();
    let rows = group_by(&results, |r| r.scenario.clone())
        .into_iter()
        .map(|(scenario, in_row)| Row {
            scenario,
            cells: columns
                .iter()
                .map(|column| {
                    in_row
                        .iter()
                        .find(|r| &r.column_label() == column)
                        .map(|r| Cell {
                            anchor: run_anchor(&r.run_id),
                            status: status_class(r.status),
                            word: r.status_word(),
                            violated: r.violated_invariants().join(","),
                        })
                })
                .collect(),
        })
        .collect::<Vec<_>>();
    let runs: Vec<RunView> = runs
        .into_iter()
        .map(|(run, trace)| {
            let verdicts = run
                .verdicts
                .iter()
                .map(|v| VerdictView {
                    id: v.invariant.clone(),
                    title: v.title.clone(),
                    outcome: v.outcome_word(),
                    notes: v
                        .violations
                        .iter()
                        .take(NOTES_MAX)
                        .map(|viol| one_line(&viol.message, 400))
                        .chain((v.violations.len() > NOTES_MAX).then(|| {
                            format!(
                                "… and {} more (report.md and the trace have them all)",
                                v.violations.len() - NOTES_MAX
                            )
                        }))
                        .chain(
                            v.not_applicable
                                .iter()
                                .map(|why| format!("nothing to judge: {why}")),
                        )
                        .collect(),
                })
                .collect();
            let (timeline, trace_error) = match &trace {
                Ok(trace) => (Some(timeline(trace, &run.verdicts)), None),
                Err(e) => (None, Some(e.clone())),
            };
            let (trace_href, trace_text) = links.of(&run.trace);
            RunView {
                anchor: run_anchor(&run.run_id),
                scenario: run.scenario.clone(),
                column: run.column_label(),
                status: status_class(run.status),
                word: run.status_word(),
                headline: run.headline(),
                duration: secs(run.duration_ms),
                ready: run.ready_ms.map(secs),
                trace: trace_text,
                trace_href,
                verdicts,
                timeline,
                trace_error,
            }
        })
        .collect();
    let mut env = minijinja::Environment::new();
    // The name's extension turns on HTML escaping.
    env.add_template("report.html", TEMPLATE)
        .map_err(|e| ReportError::Html(e.to_string()))?;
    let template = env
        .get_template("report.html")
        .map_err(|e| ReportError::Html(e.to_string()))?;
    template
        .render(minijinja::value::Serde(serde_json::json!({
            "header": header,
            "columns": columns,
            "rows": rows,
            "runs": runs,
        })))
        .map_err(|e| ReportError::Html(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::TraceLinks;
    use std::path::PathBuf;

    /// A page beside its traces links them relatively, one elsewhere by
    /// full path, and one from an archive names them without a link.
    #[test]
    fn trace_links_follow_where_the_page_and_the_traces_are() {
        let trace = "runs/r1/trace.jsonl";
        assert_eq!(
            TraceLinks::Relative.of(trace),
            (Some(trace.to_string()), trace.to_string())
        );
        let under = TraceLinks::Under(PathBuf::from("/srv/report")).of(trace);
        assert_eq!(under.0.as_deref(), Some("/srv/report/runs/r1/trace.jsonl"));
        let archived = TraceLinks::InArchive("cert.tar.gz".into()).of(trace);
        assert_eq!(
            archived,
            (None, "runs/r1/trace.jsonl in cert.tar.gz".into())
        );
    }
}
