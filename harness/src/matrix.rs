//! Runs many scenario runs concurrently and gathers the suite report.

use crate::engine::provision::EngineInstall;
use crate::report::{RunResult, SuiteReport};
use crate::scenario::model::{Scenario, Suite};
use crate::scenario::runner::{
    BackendChoice, Progress, RunSpec, StrategyChoice, run_dir_name, run_scenario,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// One cell of the matrix.
#[derive(Clone)]
pub struct MatrixEntry {
    pub suite: Arc<Suite>,
    pub scenario: Scenario,
    pub strategy: StrategyChoice,
    pub engine: EngineInstall,
    pub backend: BackendChoice,
    pub tls: bool,
}

impl MatrixEntry {
    pub fn label(&self) -> String {
        format!(
            "{} / {} @ {}{}{}",
            self.scenario.name,
            self.strategy.name(),
            self.engine.version,
            if self.tls { " +tls" } else { "" },
            match self.backend {
                BackendChoice::Process => "",
                BackendChoice::Docker { .. } => " [docker]",
            }
        )
    }
}

/// What the caller hears while the matrix runs.
pub enum MatrixEvent<'a> {
    Started {
        label: &'a str,
    },
    Step {
        label: &'a str,
        step: &'a str,
    },
    Finished {
        label: &'a str,
        result: &'a RunResult,
    },
}

pub type Listener = Arc<dyn Fn(MatrixEvent<'_>) + Send + Sync>;

pub fn new_run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{now}-{:04x}", crate::util::unique_suffix() & 0xffff)
}

/// Runs every entry, at most `jobs` at a time, writing traces under `out`.
pub async fn run_matrix(
    entries: Vec<MatrixEntry>,
    out: &Path,
    run_id: &str,
    seed: u64,
    jobs: usize,
    listener: Listener,
) -> SuiteReport {
    let started = Instant::now();
    let started_at = crate::util::utc_timestamp();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut handles = Vec::new();
    let mut used_dirs = std::collections::BTreeSet::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let mut rel_dir = run_dir_name(
            &entry.scenario.name,
            &entry.strategy.name(),
            &entry.engine,
            entry.tls,
            &entry.backend,
        );
        // Repeated runs of one cell get their own directories.
        if !used_dirs.insert(rel_dir.clone()) {
            rel_dir = format!("{rel_dir}-{index:04}");
            used_dirs.insert(rel_dir.clone());
        }
        let spec = RunSpec {
            suite: entry.suite.clone(),
            scenario: entry.scenario.clone(),
            strategy: entry.strategy.clone(),
            engine: entry.engine.clone(),
            backend: entry.backend.clone(),
            tls: entry.tls,
            seed: crate::util::splitmix64(seed ^ index as u64),
            dir: out.join(&rel_dir),
            rel_dir,
            run_id: format!("{run_id}-{index:03}"),
        };
        let semaphore = semaphore.clone();
        let listener = listener.clone();
        let label = entry.label();
        let fallback = (spec.clone(), label.clone());
        // Subscribed before the task is spawned, so an interrupt right after
        // the matrix starts already has someone to hear it.
        let mut stop = crate::interrupt::subscribe();
        let handle = tokio::spawn(async move {
            let interrupted = |spec: &RunSpec, began: Option<Instant>| {
                let mut result = spec.errored(Some(crate::interrupt::INTERRUPTED.into()));
                result.duration_ms = began.map_or(0, |b| b.elapsed().as_millis() as u64);
                listener(MatrixEvent::Finished {
                    label: &label,
                    result: &result,
                });
                result
            };
            // Runs still queued when Ctrl-C came do not start.
            let _permit = tokio::select! {
                permit = semaphore.acquire_owned() => permit,
                _ = stop.wait_for(|asked| *asked) => return interrupted(&spec, None),
            };
            let began = Instant::now();
            listener(MatrixEvent::Started { label: &label });
            let step_listener = listener.clone();
            let step_label = label.clone();
            let progress: Progress = Arc::new(move |step: &str| {
                step_listener(MatrixEvent::Step {
                    label: &step_label,
                    step,
                })
            });
            // Dropped on an interrupt, the run's backend kills its members.
            let result = tokio::select! {
                result = run_scenario(spec.clone(), Some(progress)) => result,
                _ = stop.wait_for(|asked| *asked) => return interrupted(&spec, Some(began)),
            };
            listener(MatrixEvent::Finished {
                label: &label,
                result: &result,
            });
            result
        });
        handles.push((handle, fallback));
    }
    let mut runs = Vec::new();
    for (handle, (spec, label)) in handles {
        match handle.await {
            Ok(result) => runs.push(result),
            Err(e) => {
                // A panicking run is reported, never lost.
                let result = spec.errored(Some(format!("run panicked: {e}")));
                listener(MatrixEvent::Finished {
                    label: &label,
                    result: &result,
                });
                runs.push(result);
            }
        }
    }
    SuiteReport {
        format: 1,
        run_id: run_id.to_string(),
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at,
        duration_ms: started.elapsed().as_millis() as u64,
        runs,
        certificate: None,
    }
}
