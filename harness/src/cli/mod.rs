//! The commands of the `raftcert` binary, and what they share: bad input
//! (one line, exit 2), engines to provision, the suite to load, progress.

pub mod check;
pub mod gallery;
pub mod gc;
pub mod list;
mod progress;
pub mod run;
pub mod study;

use anyhow::anyhow;
use raftcert::engine::provision::{self, EngineInstall};
use raftcert::engine::{EngineKind, EngineRef};
use raftcert::scenario::model::Suite;
use std::sync::Arc;

/// Bad input: one line, exit code 2.
#[derive(Debug)]
pub struct BadInput(String);
impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for BadInput {}

pub fn bad(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(BadInput(msg.into()))
}

/// Prints an error that ends a command: bad input on its one line, anything
/// else with its causes.
pub fn report_error(e: &anyhow::Error) {
    if e.downcast_ref::<BadInput>().is_some() {
        eprintln!("error: {e}");
    } else {
        eprintln!("error: {e:#}");
    }
}

pub fn deployer_timeout(text: &str) -> anyhow::Result<std::time::Duration> {
    raftcert::util::parse_duration(text).ok_or_else(|| {
        bad(format!(
            "bad --deployer-timeout {text:?}: expected e.g. 500ms, 10s"
        ))
    })
}

/// `etcd`, `etcd@3.5.1`, ...: every version each names.
pub fn parse_engines(specs: &[String]) -> anyhow::Result<Vec<(EngineKind, String)>> {
    let refs: Vec<EngineRef> = if specs.is_empty() {
        vec![EngineRef {
            kind: EngineKind::Etcd,
            version: None,
        }]
    } else {
        specs
            .iter()
            .map(|s| s.parse::<EngineRef>().map_err(|e| bad(e.to_string())))
            .collect::<Result<_, _>>()?
    };
    let mut out = Vec::new();
    for r in refs {
        for v in provision::resolve_versions(&r) {
            if !out.contains(&(r.kind, v.clone())) {
                out.push((r.kind, v));
            }
        }
    }
    Ok(out)
}

/// Finds each engine in the cache, or provisions it.
pub async fn provision_all(wanted: &[(EngineKind, String)]) -> anyhow::Result<Vec<EngineInstall>> {
    let mut installs = Vec::new();
    for (kind, version) in wanted {
        if let Some(found) = provision::installed(*kind, version) {
            installs.push(found);
            continue;
        }
        eprintln!(
            "provisioning {kind}@{version} into {} ...",
            provision::cache_dir().display()
        );
        let install = provision::provision(*kind, version)
            .await
            .map_err(|e| bad(format!("missing engine binary {kind}@{version}: {e}")))?;
        eprintln!("  {kind}@{version} from {}", install.source);
        installs.push(install);
    }
    Ok(installs)
}

/// The suite a run asks for (a file, or the built-in one), and its text
/// for the certificate's digest.
pub fn load_suite(path: Option<&std::path::Path>) -> anyhow::Result<(Arc<Suite>, String)> {
    Ok(match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| bad(format!("{}: {e}", path.display())))?;
            let suite =
                Suite::parse(&text, &path.display().to_string()).map_err(|e| bad(e.to_string()))?;
            (Arc::new(suite), text)
        }
        None => (
            Arc::new(Suite::builtin().map_err(|e| bad(e.to_string()))?),
            raftcert::scenario::model::BUILTIN_SUITE.to_string(),
        ),
    })
}

/// Where to look at each run that did not pass: its section of report.html.
pub fn print_failing_pages(out: &std::path::Path, report: &raftcert::report::SuiteReport) {
    use raftcert::report::{RunStatus, html};
    for run in report.runs.iter().filter(|r| r.status != RunStatus::Pass) {
        println!(
            "{} {} / {} @ {}: {}#{}",
            run.status_word(),
            run.scenario,
            run.strategy,
            run.engine_label(),
            out.join(html::HTML_FILE).display(),
            html::run_anchor(&run.run_id)
        );
    }
}

/// Writes a report directory's files, as an error ending the command.
pub fn write_report(
    out: &std::path::Path,
    report: &raftcert::report::SuiteReport,
) -> anyhow::Result<()> {
    raftcert::report::write_all(out, report).map_err(|e| anyhow!("writing the report: {e}"))
}
