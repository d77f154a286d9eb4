//! junit.xml: one suite per strategy@engine, one case per scenario.

use super::{ReportError, RunResult, RunStatus, SuiteReport, group_by, one_line};
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use std::time::Duration;

/// Longest failure or error message attribute; the description has the rest.
const MESSAGE_MAX: usize = 500;

/// Renders the JUnit XML document for a suite.
pub fn render_junit(report: &SuiteReport) -> Result<String, ReportError> {
    let mut junit = Report::new("raftcert");
    junit.set_time(Duration::from_millis(report.duration_ms));
    // The root element carries no properties in JUnit, so every suite
    // repeats them; CI tools show suite properties.
    let mut properties = vec![
        Property::new("run-id", &report.run_id),
        Property::new("harness-version", &report.harness_version),
        Property::new("started-at", &report.started_at),
    ];
    if let Some(cert) = &report.certificate {
        properties.extend(certificate_properties(cert));
    }
    for (label, runs) in group_by(&report.runs, |r| r.column_label()) {
        let mut suite = TestSuite::new(label);
        suite.add_properties(properties.clone());
        let total_ms: u64 = runs.iter().map(|r| r.duration_ms).sum();
        suite.set_time(Duration::from_millis(total_ms));
        suite.add_test_cases(runs.into_iter().map(test_case));
        junit.add_test_suite(suite);
    }
    Ok(junit.to_string()?)
}

fn certificate_properties(cert: &super::bundle::Certificate) -> Vec<Property> {
    let mut properties = Vec::new();
    if let Some(commit) = &cert.harness_commit {
        properties.push(Property::new("harness-commit", commit));
    }
    for subject in &cert.subjects {
        let version = subject.version.as_deref().unwrap_or("-");
        properties.push(Property::new(
            "subject",
            format!("{} {} {version}", serde_label(&subject.kind), subject.name),
        ));
    }
    properties.push(Property::new("backend", &cert.environment.backend));
    if let Some(kubernetes) = &cert.environment.kubernetes {
        properties.push(Property::new("kubernetes", kubernetes));
    }
    properties.push(Property::new("suite-digest", &cert.suite_digest));
    properties.push(Property::new("seed", cert.seed.to_string()));
    properties
}

fn serde_label<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn test_case(run: &RunResult) -> TestCase {
    let status = match run.status {
        RunStatus::Pass => TestCaseStatus::success(),
        RunStatus::Fail => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            let ids = run.violated_invariants();
            let ids = if ids.is_empty() {
                "?".to_string()
            } else {
                ids.join(", ")
            };
            // XML parsers fold newlines in attributes, so the message is one
            // line; the description keeps the full text.
            let first = one_line(&run.headline().unwrap_or_default(), MESSAGE_MAX);
            status
                .set_type("invariant-violation")
                .set_message(format!("violated {ids}: {first}"))
                .set_description(violation_details(run));
            status
        }
        RunStatus::Error => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            let full = run.headline().unwrap_or_default();
            // An errored run may still have found violations; keep them.
            let details = violation_details(run);
            let description = if details.is_empty() {
                full.clone()
            } else {
                format!("{full}\n\n{details}")
            };
            status
                .set_type("run-error")
                .set_message(one_line(&full, MESSAGE_MAX))
                .set_description(description);
            status
        }
    };
    let mut case = TestCase::new(&run.scenario, status);
    // The suite already separates TLS runs, but tools that key on
    // classname + name alone would merge them without the suffix.
    let tls = if run.tls { "+tls" } else { "" };
    case.set_classname(format!(
        "{}.{}-{}{tls}",
        run.strategy, run.engine, run.engine_version
    ))
    .set_time(Duration::from_millis(run.duration_ms))
    .add_properties([
        Property::new("run-id", &run.run_id),
        Property::new("seed", run.seed.to_string()),
        Property::new("backend", &run.backend),
        Property::new("replicas", run.replicas.to_string()),
        Property::new("trace", &run.trace),
        Property::new("logs", &run.logs),
    ]);
    if let Some(ready) = run.ready_ms {
        case.add_property(Property::new("ready-ms", ready.to_string()));
    }
    // Each verdict: `pass`, `FAIL`, or `n/a: <why nothing was judged>`.
    for verdict in &run.verdicts {
        let value = match &verdict.not_applicable {
            Some(why) if verdict.passed() => format!("n/a: {why}"),
            _ => verdict.outcome_word().to_string(),
        };
        case.add_property(Property::new(
            format!("invariant-{}", verdict.invariant),
            value,
        ));
    }
    case
}

/// Every violation message followed by its evidence as JSON lines, so the
/// events can be pasted into tools that read traces.
fn violation_details(run: &RunResult) -> String {
    let mut blocks = Vec::new();
    for verdict in &run.verdicts {
        for violation in &verdict.violations {
            let mut block = format!(
                "[{}] {}: {}",
                verdict.invariant, verdict.title, violation.message
            );
            for event in &violation.evidence {
                block.push('\n');
                // Plain-data events should always encode; if one does not,
                // a summary still beats dropping the evidence.
                match serde_json::to_string(event) {
                    Ok(json) => block.push_str(&json),
                    Err(_) => block.push_str(&super::event_summary(event)),
                }
            }
            blocks.push(block);
        }
    }
    blocks.join("\n\n")
}
