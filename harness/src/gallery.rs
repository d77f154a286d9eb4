//! The bug gallery: deployers that reproduce published bugs, each declaring
//! the scenario that triggers it and the invariant that must catch it.

use crate::engine::EngineKind;
use crate::report::{RunResult, RunStatus, secs};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The marker of a gallery header line.
pub const MARKER: &str = "raftcert-gallery:";

#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Header {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{0}: no gallery deployer found (files with a `# {MARKER}` header line)")]
    Empty(PathBuf),
}

/// One bad deployer of the gallery.
#[derive(Debug, Clone)]
pub struct GalleryEntry {
    pub path: PathBuf,
    /// The published bug, e.g. "tidb-operator#3349".
    pub bug: String,
    /// Suite file name under the suites directory.
    pub suite_file: String,
    pub scenario: String,
    /// The invariant that names the bug's class.
    pub expect: String,
    /// How to run it: by its extension.
    pub command: String,
    /// The engine it deploys (`engine=pd` in the header; etcd by default).
    pub engine: EngineKind,
}

fn interpreter(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("sh") => "sh",
        _ => "python3",
    }
}

/// Reads every gallery deployer in `dir`, sorted by file name.
pub fn discover(dir: &Path) -> Result<Vec<GalleryEntry>, GalleryError> {
    let read = |path: &Path, source| GalleryError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| read(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let mut entries = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|e| read(&path, e))?;
        for (index, line) in text.lines().enumerate() {
            let Some(rest) = line.split_once(MARKER).map(|(_, r)| r) else {
                continue;
            };
            let header_error = |message: String| GalleryError::Header {
                path: path.clone(),
                line: index + 1,
                message,
            };
            let mut bug = None;
            let mut scenario = None;
            let mut expect = None;
            let mut engine = EngineKind::Etcd;
            for field in rest.split_whitespace() {
                match field.split_once('=') {
                    Some(("bug", v)) => bug = Some(v.to_string()),
                    Some(("scenario", v)) => scenario = Some(v.to_string()),
                    Some(("expect", v)) => expect = Some(v.to_string()),
                    Some(("engine", v)) => {
                        engine = EngineKind::ALL
                            .into_iter()
                            .find(|k| k.as_str() == v)
                            .ok_or_else(|| header_error(format!("unknown engine {v:?}")))?;
                    }
                    _ => return Err(header_error(format!("unknown field {field:?}"))),
                }
            }
            let (Some(bug), Some(scenario), Some(expect)) = (bug, scenario, expect) else {
                return Err(header_error(
                    "needs bug=, scenario=FILE:NAME and expect=".into(),
                ));
            };
            let Some((suite_file, scenario)) = scenario.split_once(':') else {
                return Err(header_error(format!(
                    "scenario {scenario:?} must be FILE:NAME"
                )));
            };
            entries.push(GalleryEntry {
                command: format!("{} {}", interpreter(&path), path.display()),
                path: path.clone(),
                bug,
                suite_file: suite_file.to_string(),
                scenario: scenario.to_string(),
                expect,
                engine,
            });
        }
    }
    if entries.is_empty() {
        return Err(GalleryError::Empty(dir.to_path_buf()));
    }
    Ok(entries)
}

/// How one gallery entry fared.
#[derive(Debug, Clone)]
pub struct Detection {
    pub entry: GalleryEntry,
    pub result: RunResult,
}

impl Detection {
    pub fn caught(&self) -> bool {
        self.result.status == RunStatus::Fail
            && self
                .result
                .verdicts
                .iter()
                .any(|v| v.invariant == self.entry.expect && !v.passed())
    }

    /// When the evidence of the expected invariant's first violation was
    /// complete, in ms since the run started.
    pub fn detection_ms(&self) -> Option<u64> {
        let verdict = self
            .result
            .verdicts
            .iter()
            .find(|v| v.invariant == self.entry.expect)?;
        let first = verdict.violations.first()?;
        first.evidence.iter().map(|e| e.t_ms).max()
    }

    pub fn violated(&self) -> Vec<String> {
        self.result
            .verdicts
            .iter()
            .filter(|v| !v.passed())
            .map(|v| v.invariant.clone())
            .collect()
    }

    pub fn first_message(&self) -> String {
        self.result
            .verdicts
            .iter()
            .find(|v| v.invariant == self.entry.expect)
            .and_then(|v| v.violations.first())
            .map(|v| v.message.clone())
            .or_else(|| self.result.error.clone())
            .unwrap_or_default()
    }
}

/// Correct deployers run repeatedly: how often they raised an alarm.
#[derive(Debug, Clone, Default)]
pub struct FalseAlarms {
    pub rows: Vec<FalseAlarmRow>,
    pub repetitions: u32,
}

/// One correct deployer on one engine version.
#[derive(Debug, Clone, Default)]
pub struct FalseAlarmRow {
    pub deployer: String,
    pub engine: String,
    pub runs: u32,
    /// Runs not passing that no documented engine bug explains.
    pub false_alarms: u32,
    /// Runs failed by a documented engine bug (`crate::findings`), per bug.
    pub engine_bugs: std::collections::BTreeMap<String, u32>,
    /// Up to three of the unexplained ones: `scenario (trace): headline`.
    pub examples: Vec<String>,
}

impl FalseAlarmRow {
    pub fn tally(deployer: &str, engine: &str, runs: &[&RunResult]) -> FalseAlarmRow {
        let mut row = FalseAlarmRow {
            deployer: deployer.to_string(),
            engine: engine.to_string(),
            runs: runs.len() as u32,
            ..FalseAlarmRow::default()
        };
        for run in runs.iter().filter(|r| r.status != RunStatus::Pass) {
            match &run.known_finding {
                Some(finding) => *row.engine_bugs.entry(finding.clone()).or_default() += 1,
                None => {
                    row.false_alarms += 1;
                    if row.examples.len() < 3 {
                        row.examples.push(format!(
                            "{} ({}): {}",
                            run.scenario,
                            run.trace,
                            run.headline().unwrap_or_default()
                        ));
                    }
                }
            }
        }
        row
    }

    /// `pd-seed-lost-after-member-add (...): 2`, comma-separated, or `-`.
    pub fn engine_bug_summary(&self) -> String {
        if self.engine_bugs.is_empty() {
            return "-".to_string();
        }
        self.engine_bugs
            .iter()
            .map(|(finding, n)| format!("{finding}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The terminal table: bug -> scenario -> invariant caught -> time.
pub fn render_table(detections: &[Detection]) -> String {
    let mut rows = vec![[
        "bug".to_string(),
        "scenario".to_string(),
        "expected".to_string(),
        "caught".to_string(),
        "violated".to_string(),
        "detected at".to_string(),
    ]];
    for d in detections {
        rows.push([
            d.entry.bug.clone(),
            d.entry.scenario.clone(),
            d.entry.expect.clone(),
            if d.caught() {
                "yes".into()
            } else {
                "NO".into()
            },
            d.violated().join(","),
            d.detection_ms().map(secs).unwrap_or_else(|| "-".into()),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "{}", rule.join("  "));
        }
    }
    let caught = detections.iter().filter(|d| d.caught()).count();
    let _ = writeln!(
        out,
        "{caught} of {} bugs caught by the expected invariant",
        detections.len()
    );
    out
}

/// `detection.md`: the measured detection matrix and the false-alarm rate.
pub fn render_markdown(
    detections: &[Detection],
    false_alarms: &FalseAlarms,
    run_id: &str,
    engine: &str,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Detection matrix\n");
    let _ = writeln!(
        md,
        "Measured by `raftcert gallery` (run `{run_id}`): every deployer in `fixtures/deployers/bugs/` runs the scenario that triggers its bug on real {engine}; the expected invariant must be violated. \"Detected at\" is when the evidence of the first violation was complete, in seconds since the run started.\n"
    );
    let _ = writeln!(
        md,
        "| bug | deployer | scenario | expected | caught | all violated | detected at | first violation |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for d in detections {
        let file = d
            .entry
            .path
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        let message = d.first_message().replace('|', "\\|");
        let message: String = message.chars().take(160).collect();
        let _ = writeln!(
            md,
            "| {} | `{}` | {}:{} | {} | {} | {} | {} | {} |",
            d.entry.bug,
            file,
            d.entry.suite_file,
            d.entry.scenario,
            d.entry.expect,
            if d.caught() { "yes" } else { "**no**" },
            d.violated().join(", "),
            d.detection_ms().map(secs).unwrap_or_else(|| "-".into()),
            message
        );
    }
    let caught = detections.iter().filter(|d| d.caught()).count();
    let _ = writeln!(md, "\n{caught} of {} bugs caught.\n", detections.len());
    if false_alarms.repetitions > 0 {
        let _ = writeln!(md, "## False alarms\n");
        let _ = writeln!(
            md,
            "Every correct deployer ran the whole conformance suite {} times in a row.\n",
            false_alarms.repetitions
        );
        let _ = writeln!(
            md,
            "A run failed by an engine bug documented in `docs/findings.md`, recognised in its trace with every violated invariant one that bug breaks, is counted apart: a correct verdict on a faulty engine, not a false alarm.\n"
        );
        let _ = writeln!(
            md,
            "| deployer | engine | runs | false alarms | rate | failed by a documented engine bug | false alarms seen |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
        for row in &false_alarms.rows {
            let rate = if row.runs > 0 {
                f64::from(row.false_alarms) / f64::from(row.runs) * 100.0
            } else {
                0.0
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {rate:.2}% | {} | {} |",
                row.deployer,
                row.engine,
                row.runs,
                row.false_alarms,
                row.engine_bug_summary(),
                if row.examples.is_empty() {
                    "-".to_string()
                } else {
                    row.examples.join("; ").replace('|', "\\|")
                }
            );
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gallery_of(
        files: &[(&str, &str)],
    ) -> (crate::sys::TempDir, Result<Vec<GalleryEntry>, GalleryError>) {
        let dir = crate::sys::TempDir::new("raftcert-gallery-test").expect("temp dir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        let found = discover(dir.path());
        (dir, found)
    }

    #[test]
    fn a_header_names_its_engine_and_etcd_is_the_default() {
        let (_dir, found) = gallery_of(&[
            (
                "a.py",
                "# raftcert-gallery: bug=x#1 scenario=gallery.yaml:s expect=I1\n",
            ),
            (
                "b.py",
                "# raftcert-gallery: bug=y#2 scenario=gallery.yaml:t expect=P1 engine=pd\n",
            ),
        ]);
        let engines: Vec<(String, EngineKind)> = found
            .expect("gallery")
            .into_iter()
            .map(|e| (e.bug, e.engine))
            .collect();
        assert_eq!(
            engines,
            [
                ("x#1".to_string(), EngineKind::Etcd),
                ("y#2".to_string(), EngineKind::Pd)
            ]
        );
    }

    #[test]
    fn an_unknown_engine_is_an_error_at_its_line() {
        let (_dir, found) = gallery_of(&[(
            "a.py",
            "import os\n# raftcert-gallery: bug=x#1 scenario=gallery.yaml:s expect=I1 engine=tikv\n",
        )]);
        let message = found.expect_err("unknown engine").to_string();
        assert!(
            message.ends_with("a.py:2: unknown engine \"tikv\""),
            "{message}"
        );
    }

    /// A run of `trace`, judged the way the driver judges one.
    fn judged(dir: &str) -> RunResult {
        let trace = crate::trace::read_trace(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../docs/findings")
                .join(dir)
                .join("trace.jsonl"),
        )
        .expect("a committed finding trace");
        let engine = crate::engine::EngineChoice::InImage("pd@8.5.7".parse().expect("engine"));
        let mut run = RunResult::unjudged(
            "r",
            dir,
            "tidb-v2-static",
            &engine,
            "process",
            3,
            false,
            1,
            dir,
            None,
        );
        run.judge(&trace, None, &[]);
        run
    }

    #[test]
    fn a_failure_by_a_documented_engine_bug_is_no_false_alarm_and_others_are() {
        let engine_bug = judged("pd-v8.5.7-seed-lost-after-member-add");
        let second_genesis = judged("tidb-v1-discovery-model-volume-loss-replicas-1");
        let mut pass = engine_bug.clone();
        pass.status = RunStatus::Pass;
        pass.known_finding = None;
        let row = FalseAlarmRow::tally(
            "tidb-v2-static",
            "8.5.7",
            &[&engine_bug, &second_genesis, &pass, &engine_bug],
        );
        assert_eq!(row.runs, 4);
        assert_eq!(row.false_alarms, 1);
        assert_eq!(row.examples.len(), 1);
        assert!(
            row.examples[0].starts_with("tidb-v1-discovery-model"),
            "{row:?}"
        );
        assert_eq!(
            row.engine_bug_summary(),
            "pd-seed-lost-after-member-add (docs/findings.md section 7): 2"
        );
        assert!(
            engine_bug
                .headline()
                .is_some_and(|h| h.starts_with("known engine bug pd-seed-lost-after-member-add")),
            "{:?}",
            engine_bug.headline()
        );
    }
}
