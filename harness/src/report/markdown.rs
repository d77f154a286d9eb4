//! report.md: the human-readable summary of a suite.

use super::{RunResult, RunStatus, SuiteReport, Totals, event_summary, group_by, one_line, secs};
use crate::invariants::{Verdict, Violation};
use std::fmt::{self, Write};

/// Evidence events listed per violation; the trace has the rest.
const EVIDENCE_MAX: usize = 20;
/// Longest free text kept in a table cell.
const CELL_MAX: usize = 120;
/// Longest violation message or error kept in a section.
const MESSAGE_MAX: usize = 2000;

/// Renders report.md for a suite.
pub fn render_markdown(report: &SuiteReport) -> String {
    let mut out = String::new();
    // fmt::Write on a String cannot fail.
    let _ = write_markdown(&mut out, report);
    // Sections end with blank lines; the file should end with exactly one.
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

fn write_markdown(out: &mut String, report: &SuiteReport) -> fmt::Result {
    let totals = Totals::of(&report.runs);
    writeln!(out, "# raftcert report")?;
    writeln!(out)?;
    writeln!(out, "- Run id: {}", code(&report.run_id))?;
    writeln!(out, "- Harness version: {}", code(&report.harness_version))?;
    writeln!(out, "- Started at: {}", escape(&report.started_at))?;
    writeln!(out, "- Duration: {}", secs(report.duration_ms))?;
    writeln!(
        out,
        "- Totals: {} runs, **{} pass**, **{} fail**, **{} error**",
        totals.runs(),
        totals.pass,
        totals.fail,
        totals.error
    )?;
    writeln!(out)?;
    if let Some(cert) = &report.certificate {
        write_certificate(out, cert)?;
    }
    write_matrix(out, report)?;
    write_not_covered(out, report)?;
    write_invariants(out, report)?;
    write_ready(out, report)?;
    write_problems(out, report)?;
    write_metrics(out, report)
}

/// Scenarios the run left out, with the reason.
fn write_not_covered(out: &mut String, report: &SuiteReport) -> fmt::Result {
    if report.not_covered.is_empty() {
        return Ok(());
    }
    writeln!(out, "## Not covered")?;
    writeln!(out)?;
    for gap in &report.not_covered {
        writeln!(
            out,
            "- {} / {}: {}",
            code(&gap.scenario),
            escape(&gap.subject),
            escape(&gap.reason)
        )?;
    }
    writeln!(out)
}

/// Per invariant, in how many runs it passed, failed, or had nothing to
/// judge (`n/a`, which is not a pass), with the reasons given.
fn write_invariants(out: &mut String, report: &SuiteReport) -> fmt::Result {
    if report.runs.is_empty() {
        return Ok(());
    }
    writeln!(out, "## Invariants")?;
    writeln!(out)?;
    table_row(out, &["invariant", "pass", "FAIL", "n/a", "why n/a"])?;
    table_row(out, &["---"; 5])?;
    for invariant in crate::invariants::registry() {
        let verdicts: Vec<&Verdict> = report
            .runs
            .iter()
            .flat_map(|r| r.verdicts.iter())
            .filter(|v| v.invariant == invariant.id)
            .collect();
        let count =
            |o: crate::invariants::Outcome| verdicts.iter().filter(|v| v.outcome() == o).count();
        let mut reasons: Vec<&str> = verdicts
            .iter()
            .filter(|v| v.passed())
            .filter_map(|v| v.not_applicable.as_deref())
            .collect();
        reasons.sort_unstable();
        reasons.dedup();
        table_row(
            out,
            &[
                format!("{}: {}", invariant.id, cell(invariant.title)),
                count(crate::invariants::Outcome::Pass).to_string(),
                count(crate::invariants::Outcome::Fail).to_string(),
                count(crate::invariants::Outcome::NotApplicable).to_string(),
                cell(&reasons.join("; ")),
            ],
        )?;
    }
    writeln!(out)
}

fn write_certificate(out: &mut String, cert: &super::bundle::Certificate) -> fmt::Result {
    writeln!(out, "## Certification")?;
    writeln!(out)?;
    for subject in &cert.subjects {
        let kind = serde_json::to_value(&subject.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let version = subject
            .version
            .as_deref()
            .map(|v| format!(" {}", code(v)))
            .unwrap_or_default();
        writeln!(out, "- Subject ({kind}): {}{version}", code(&subject.name))?;
        if let Some(command) = &subject.command {
            writeln!(out, "  - command: {}", code(command))?;
        }
        for artifact in &subject.artifacts {
            writeln!(
                out,
                "  - {}: {}",
                code(&artifact.name),
                code(&artifact.digest)
            )?;
        }
    }
    writeln!(
        out,
        "- Harness: {} at commit {}",
        code(&cert.harness_version),
        code(cert.harness_commit.as_deref().unwrap_or("unknown"))
    )?;
    writeln!(out, "- Backend: {}", code(&cert.environment.backend))?;
    if let Some(kubernetes) = &cert.environment.kubernetes {
        writeln!(out, "- Kubernetes: {}", code(kubernetes))?;
    }
    if let Some(node_faults) = &cert.environment.node_faults {
        writeln!(out, "- Faults below the API: {node_faults}")?;
    }
    for engine in &cert.environment.engines {
        writeln!(
            out,
            "- Engine: {} {} from {} ({})",
            code(&engine.engine),
            code(&engine.version),
            code(&engine.source),
            code(&engine.server.digest)
        )?;
    }
    writeln!(out, "- Host: {}", code(&cert.environment.host))?;
    writeln!(
        out,
        "- Suite: {} ({})",
        code(&cert.suite),
        code(&cert.suite_digest)
    )?;
    writeln!(out, "- Seed: {}", cert.seed)?;
    for gap in &cert.not_covered {
        writeln!(out, "- **Not covered:** {}", escape(gap))?;
    }
    writeln!(
        out,
        "- Re-check offline: `raftcert check <this directory or its .tar.gz>`"
    )?;
    writeln!(out)
}

fn write_matrix(out: &mut String, report: &SuiteReport) -> fmt::Result {
    writeln!(out, "## Results")?;
    writeln!(out)?;
    if report.runs.is_empty() {
        return writeln!(out, "No runs.\n");
    }
    let columns: Vec<String> = group_by(&report.runs, RunResult::column_label)
        .into_iter()
        .map(|(label, _)| label)
        .collect();
    let mut header = vec!["scenario".to_string()];
    header.extend(columns.iter().map(|c| cell(c)));
    table_row(out, &header)?;
    table_row(out, &vec!["---".to_string(); header.len()])?;
    for (scenario, runs) in group_by(&report.runs, |r| r.scenario.clone()) {
        let mut row = vec![cell(&scenario)];
        for column in &columns {
            let cells: Vec<String> = runs
                .iter()
                .filter(|r| &r.column_label() == column)
                .map(|r| matrix_cell(r))
                .collect();
            // Several seeds of one combination share a cell.
            row.push(if cells.is_empty() {
                "-".to_string()
            } else {
                cells.join("<br>")
            });
        }
        table_row(out, &row)?;
    }
    writeln!(out)
}

/// `pass (ready 1.2s)`, `FAIL I1, I3` or `ERROR`.
fn matrix_cell(run: &RunResult) -> String {
    match run.status {
        RunStatus::Pass => match run.ready_ms {
            Some(ms) => format!("pass (ready {})", secs(ms)),
            None => "pass".to_string(),
        },
        RunStatus::Fail => {
            let ids = run.violated_invariants();
            if ids.is_empty() {
                "FAIL".to_string()
            } else {
                format!("FAIL {}", cell(&ids.join(", ")))
            }
        }
        RunStatus::Error => "ERROR".to_string(),
    }
}

fn write_ready(out: &mut String, report: &SuiteReport) -> fmt::Result {
    writeln!(out, "## Time to ready")?;
    writeln!(out)?;
    if report.runs.is_empty() {
        return writeln!(out, "No runs.\n");
    }
    table_row(out, &["strategy@engine", "runs", "ready", "median", "max"])?;
    table_row(out, &["---"; 5])?;
    for (label, runs) in group_by(&report.runs, RunResult::column_label) {
        let mut ready: Vec<u64> = runs.iter().filter_map(|r| r.ready_ms).collect();
        ready.sort_unstable();
        let median = median_ms(&ready).map_or_else(|| "-".to_string(), secs);
        let max = ready.last().map_or_else(|| "-".to_string(), |ms| secs(*ms));
        table_row(
            out,
            &[
                cell(&label),
                runs.len().to_string(),
                ready.len().to_string(),
                median,
                max,
            ],
        )?;
    }
    writeln!(out)
}

/// Median of sorted values; the mean of the middle pair for even counts.
pub(crate) fn median_ms(sorted: &[u64]) -> Option<u64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    if n % 2 == 1 {
        return Some(sorted[n / 2]);
    }
    // Sorted, so `hi >= lo` and this cannot overflow.
    let (lo, hi) = (sorted[n / 2 - 1], sorted[n / 2]);
    Some(lo + (hi - lo) / 2)
}

fn write_problems(out: &mut String, report: &SuiteReport) -> fmt::Result {
    let problems: Vec<&RunResult> = report
        .runs
        .iter()
        .filter(|r| r.status != RunStatus::Pass)
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    writeln!(out, "## Failures and errors")?;
    writeln!(out)?;
    for run in problems {
        writeln!(
            out,
            "### {} {} on {}",
            run.status_word(),
            escape(&one_line(&run.scenario, CELL_MAX)),
            escape(&run.column_label())
        )?;
        writeln!(out)?;
        writeln!(
            out,
            "- Run: {}, seed {}, backend {}, {} replicas, {}",
            code(&run.run_id),
            run.seed,
            code(&run.backend),
            run.replicas,
            secs(run.duration_ms)
        )?;
        writeln!(out, "- Trace: {}", link(&run.trace))?;
        writeln!(out, "- Logs: {}", link(&run.logs))?;
        if run.status == RunStatus::Error {
            let error = run.headline().unwrap_or_default();
            writeln!(out, "- Error: {}", escape(&one_line(&error, MESSAGE_MAX)))?;
        }
        writeln!(out)?;
        for verdict in run.verdicts.iter().filter(|v| !v.passed()) {
            write_verdict(out, run, verdict)?;
        }
    }
    Ok(())
}

fn write_verdict(out: &mut String, run: &RunResult, verdict: &Verdict) -> fmt::Result {
    writeln!(
        out,
        "#### {}: {}",
        escape(&verdict.invariant),
        escape(&one_line(&verdict.title, CELL_MAX))
    )?;
    writeln!(out)?;
    let count = verdict.violations.len();
    for (i, violation) in verdict.violations.iter().enumerate() {
        write_violation(out, run, violation, i + 1, count)?;
    }
    Ok(())
}

fn write_violation(
    out: &mut String,
    run: &RunResult,
    violation: &Violation,
    n: usize,
    count: usize,
) -> fmt::Result {
    // A label in front keeps messages from being read as Markdown blocks.
    let label = if count > 1 {
        format!("Violation {n} of {count}")
    } else {
        "Violation".to_string()
    };
    writeln!(
        out,
        "**{label}:** {}",
        escape(&one_line(&violation.message, MESSAGE_MAX))
    )?;
    writeln!(out)?;
    if violation.evidence.is_empty() {
        return writeln!(out, "No evidence events (see {}).\n", link(&run.trace));
    }
    writeln!(out, "Evidence from {}:", link(&run.trace))?;
    writeln!(out)?;
    for event in violation.evidence.iter().take(EVIDENCE_MAX) {
        writeln!(out, "- {}", code(&event_summary(event)))?;
    }
    if violation.evidence.len() > EVIDENCE_MAX {
        writeln!(
            out,
            "- ... and {} more events",
            violation.evidence.len() - EVIDENCE_MAX
        )?;
    }
    writeln!(out)
}

fn write_metrics(out: &mut String, report: &SuiteReport) -> fmt::Result {
    let mut rows = Vec::new();
    for run in &report.runs {
        for verdict in &run.verdicts {
            for (name, value) in verdict.metrics.iter().filter(|(_, v)| **v != 0.0) {
                rows.push([
                    cell(&run.scenario),
                    cell(&run.column_label()),
                    cell(&verdict.invariant),
                    cell(name),
                    format_metric(*value),
                ]);
            }
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(out, "## Measured unavailability")?;
    writeln!(out)?;
    table_row(
        out,
        &[
            "scenario",
            "strategy@engine",
            "invariant",
            "metric",
            "value",
        ],
    )?;
    table_row(out, &["---"; 5])?;
    for row in &rows {
        table_row(out, row)?;
    }
    writeln!(out)
}

/// Whole numbers without decimals (most metrics are milliseconds).
fn format_metric(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

fn table_row(out: &mut String, cells: &[impl AsRef<str>]) -> fmt::Result {
    out.push('|');
    for c in cells {
        write!(out, " {} |", c.as_ref())?;
    }
    writeln!(out)
}

/// Free text made safe for a table cell.
fn cell(text: &str) -> String {
    escape(&one_line(text, CELL_MAX))
}

/// Backslash-escapes what Markdown would otherwise read as markup; `<` in
/// particular, since messages mention `<unstarted>` members.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|') {
            out.push('\\');
        }
        if c == '\n' || c == '\r' {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// An inline code span whose fence is longer than any backtick run inside.
fn code(text: &str) -> String {
    let text = one_line(text, MESSAGE_MAX);
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    // CommonMark strips one space each side, so padding protects edge backticks.
    if text.starts_with('`') || text.ends_with('`') {
        format!("{fence} {text} {fence}")
    } else {
        format!("{fence}{text}{fence}")
    }
}

/// A link to a path relative to the report directory.
fn link(path: &str) -> String {
    if path.is_empty() {
        return "(none)".to_string();
    }
    // Angle-bracket destinations allow spaces but not `<`, `>` or newlines.
    let target: String = path
        .chars()
        .map(|c| match c {
            '<' => "%3C".to_string(),
            '>' => "%3E".to_string(),
            c if c.is_control() => String::new(),
            c => c.to_string(),
        })
        .collect();
    format!("[{}](<{target}>)", escape(path))
}
