//! The terminal table `raftcert run` prints at the end.

use super::{SuiteReport, Totals, one_line, secs};

/// Evidence column width; longer text is cut so rows stay one line.
const EVIDENCE_MAX: usize = 100;

const HEADERS: [&str; 9] = [
    "scenario",
    "strategy",
    "engine",
    "result",
    "invariants",
    "n/a",
    "ready",
    "duration",
    "evidence",
];

/// One row per run with aligned plain-ASCII columns, then a summary line.
pub fn render_table(report: &SuiteReport) -> String {
    let rows: Vec<[String; 9]> = report
        .runs
        .iter()
        .map(|run| {
            let violated = run.violated_invariants();
            [
                one_line(&run.scenario, 60),
                one_line(&run.strategy, 60),
                one_line(&run.engine_label(), 60),
                run.status_word().to_string(),
                if violated.is_empty() {
                    "-".to_string()
                } else {
                    one_line(&violated.join(","), 60)
                },
                {
                    let na = run.not_applicable_invariants();
                    if na.is_empty() {
                        "-".to_string()
                    } else {
                        na.join(",")
                    }
                },
                run.ready_ms.map_or_else(|| "-".to_string(), secs),
                secs(run.duration_ms),
                run.headline()
                    .map_or_else(String::new, |h| one_line(&h, EVIDENCE_MAX)),
            ]
        })
        .collect();

    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }

    let header = HEADERS.map(str::to_string);
    let rule = widths.map(|w| "-".repeat(w));
    let mut out = String::new();
    for row in std::iter::once(&header)
        .chain(std::iter::once(&rule))
        .chain(&rows)
    {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        // Padding the last column would only leave trailing spaces.
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&summary_line(report));
    out.push('\n');
    out
}

/// `32 runs: 30 passed, 1 failed, 1 error in 95.2s`
pub(crate) fn summary_line(report: &SuiteReport) -> String {
    let t = Totals::of(&report.runs);
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "{}: {} passed, {} failed, {} in {}",
        plural(t.runs(), "run", "runs"),
        t.pass,
        t.fail,
        plural(t.error, "error", "errors"),
        secs(report.duration_ms)
    )
}
