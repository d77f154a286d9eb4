//! The bug gallery: deployers that reproduce published bugs, each declaring
//! the scenario that triggers it and the invariant that must catch it.

use crate::engine::EngineKind;
use crate::report::{RunResult, RunStatus};
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
    /// (strategy, engine version) -> (runs, not passing, examples of failures)
    pub rows: Vec<(String, String, u32, u32, Vec<String>)>,
    pub repetitions: u32,
}

fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
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
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Detection matrix\n");
    let _ = writeln!(
        md,
        "Measured by `raftcert gallery` (run `{run_id}`): every deployer in `fixtures/deployers/bugs/` runs the scenario that triggers its bug on real etcd; the expected invariant must be violated. \"Detected at\" is when the evidence of the first violation was complete, in seconds since the run started.\n"
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
            "| deployer | engine | runs | not passing | flake rate | failures |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        for (strategy, engine, runs, bad, examples) in &false_alarms.rows {
            let rate = if *runs > 0 {
                f64::from(*bad) / f64::from(*runs) * 100.0
            } else {
                0.0
            };
            let _ = writeln!(
                md,
                "| {strategy} | {engine} | {runs} | {bad} | {rate:.2}% | {} |",
                if examples.is_empty() {
                    "-".to_string()
                } else {
                    examples.join("; ").replace('|', "\\|")
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
}
