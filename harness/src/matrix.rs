//! Plans a suite run (which scenario runs with which subject, engine and
//! substrate, and which cannot, with the reason) and runs the plan's cells
//! concurrently into one report.

use crate::driver::{Progress, RunSpec, run_dir_name, run_scenario};
use crate::engine::EngineChoice;
use crate::faults::Primitive;
use crate::report::{NotCovered, RunResult, SuiteReport};
use crate::scenario::model::{Scenario, Suite};
use crate::subject::SubjectChoice;
use crate::substrate::SubstrateChoice;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// One cell of the matrix.
#[derive(Clone)]
pub struct MatrixEntry {
    pub suite: Arc<Suite>,
    pub scenario: Scenario,
    pub subject: SubjectChoice,
    pub engine: EngineChoice,
    pub substrate: SubstrateChoice,
    pub tls: bool,
}

impl MatrixEntry {
    pub fn label(&self) -> String {
        format!(
            "{} / {} @ {}{}{}",
            self.scenario.name,
            self.subject.name(),
            self.engine.version(),
            if self.tls { " +tls" } else { "" },
            match self.substrate {
                SubstrateChoice::Process => "",
                SubstrateChoice::Docker { .. } => " [docker]",
                SubstrateChoice::Kube(_) => " [kube]",
            }
        )
    }
}

/// Why `scenario` cannot run with `subject` on `substrate`, if it cannot:
/// a fault it uses needs a primitive one of them lacks. The only place
/// where coverage is decided.
pub fn not_covered_because(
    scenario: &Scenario,
    subject: &SubjectChoice,
    substrate: &SubstrateChoice,
) -> Option<String> {
    scenario.faults().into_iter().find_map(|fault| {
        fault.primitives().iter().find_map(|primitive| {
            let offered = match primitive {
                Primitive::CrashSubject => subject.offers_crash(),
                other => substrate.offers(*other),
            };
            offered.err().map(|why| {
                // `delay needs delay` says nothing: name the primitive
                // only where the fault's name does not.
                if fault.name() == primitive.name() {
                    format!("{}: {why}", fault.name())
                } else {
                    format!("{} needs {}: {why}", fault.name(), primitive.name())
                }
            })
        })
    })
}

/// What a suite run asks for.
pub struct PlanRequest {
    pub suite: Arc<Suite>,
    /// The scenarios wanted (already filtered by name or size).
    pub scenarios: Vec<Scenario>,
    pub subjects: Vec<SubjectChoice>,
    pub engines: Vec<EngineChoice>,
    pub substrate: SubstrateChoice,
    pub tls: bool,
    /// Also run every scenario with TLS for this subject on the first engine.
    pub tls_pass: Option<SubjectChoice>,
}

/// The cells to run, and the scenarios left out with the reason.
pub struct Plan {
    pub entries: Vec<MatrixEntry>,
    pub not_covered: Vec<NotCovered>,
}

/// Plans every scenario for every subject and engine; the largest
/// clusters first, so the slowest runs start early.
pub fn plan(request: PlanRequest) -> Plan {
    let mut scenarios = request.scenarios;
    scenarios.sort_by_key(|s| std::cmp::Reverse(s.max_replicas()));
    let mut entries = Vec::new();
    let mut not_covered = Vec::new();
    let mut cell = |scenario: &Scenario, subject: &SubjectChoice, engine: &EngineChoice, tls| {
        // A strategy of another engine is no cell at all, not a gap.
        if !subject.deploys(engine.kind()) {
            return;
        }
        match not_covered_because(scenario, subject, &request.substrate) {
            Some(reason) => {
                let gap = NotCovered {
                    scenario: scenario.name.clone(),
                    subject: subject.name(),
                    reason,
                };
                if !not_covered.contains(&gap) {
                    not_covered.push(gap);
                }
            }
            None => entries.push(MatrixEntry {
                suite: request.suite.clone(),
                scenario: scenario.clone(),
                subject: subject.clone(),
                engine: engine.clone(),
                substrate: request.substrate.clone(),
                tls,
            }),
        }
    };
    for engine in &request.engines {
        for subject in &request.subjects {
            for scenario in &scenarios {
                cell(scenario, subject, engine, request.tls);
            }
        }
    }
    if let (Some(subject), Some(engine)) = (&request.tls_pass, request.engines.first()) {
        for scenario in &scenarios {
            cell(scenario, subject, engine, true);
        }
    }
    Plan {
        entries,
        not_covered,
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
    plan: Plan,
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
    let Plan {
        entries,
        not_covered,
    } = plan;
    for (index, entry) in entries.into_iter().enumerate() {
        let mut rel_dir = run_dir_name(
            &entry.scenario.name,
            &entry.subject.name(),
            &entry.engine,
            entry.tls,
            &entry.substrate,
        );
        // Repeated runs of one cell get their own directories.
        if !used_dirs.insert(rel_dir.clone()) {
            rel_dir = format!("{rel_dir}-{index:04}");
            used_dirs.insert(rel_dir.clone());
        }
        let spec = RunSpec {
            suite: entry.suite.clone(),
            scenario: entry.scenario.clone(),
            subject: entry.subject.clone(),
            engine: entry.engine.clone(),
            substrate: entry.substrate.clone(),
            tls: entry.tls,
            seed: crate::util::splitmix64(seed ^ index as u64),
            dir: out.join(&rel_dir),
            rel_dir,
            run_id: format!("{run_id}-{index:03}"),
        };
        // A run that disturbs the others (it crashes a shared operator)
        // takes every slot, so it runs alone.
        let permits = if entry.substrate.disturbs_other_runs(&entry.scenario) {
            jobs.max(1) as u32
        } else {
            1
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
                permit = semaphore.acquire_many_owned(permits) => permit,
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
            // Dropped on an interrupt, the run's substrate kills its members.
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
        format: crate::report::REPORT_FORMAT,
        run_id: run_id.to_string(),
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at,
        duration_ms: started.elapsed().as_millis() as u64,
        runs,
        not_covered,
        certificate: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subject::deployer::strategies;

    fn scenario(name: &str) -> Scenario {
        Suite::builtin()
            .expect("built-in suite")
            .scenarios
            .into_iter()
            .find(|s| s.name == name)
            .expect("scenario")
    }

    #[test]
    fn processes_host_every_scenario_of_the_built_in_suite() {
        let subject = SubjectChoice::Builtin(strategies::find("static").expect("static"));
        for scenario in Suite::builtin().expect("suite").scenarios {
            assert_eq!(
                not_covered_because(&scenario, &subject, &SubstrateChoice::Process),
                None,
                "{}",
                scenario.name
            );
        }
    }

    #[test]
    fn docker_does_not_host_link_delay_and_says_why() {
        let subject = SubjectChoice::Builtin(strategies::find("static").expect("static"));
        let docker = SubstrateChoice::Docker { image: None };
        let why = not_covered_because(&scenario("leader-links-delayed"), &subject, &docker)
            .expect("not covered");
        assert!(why.starts_with("delay: "), "{why}");
        assert!(why.contains("netem"), "{why}");
        assert_eq!(
            not_covered_because(&scenario("leader-partitioned"), &subject, &docker),
            None
        );
    }

    #[test]
    fn a_plan_lists_what_it_leaves_out_once() {
        let suite = Arc::new(Suite::builtin().expect("suite"));
        let subject = SubjectChoice::Builtin(strategies::find("static").expect("static"));
        let engine = EngineChoice::InImage(crate::engine::EngineRef {
            kind: crate::engine::EngineKind::Etcd,
            version: Some("3.5.1".into()),
        });
        let plan = plan(PlanRequest {
            suite: suite.clone(),
            scenarios: suite.scenarios.clone(),
            subjects: vec![subject.clone()],
            engines: vec![engine],
            substrate: SubstrateChoice::Docker { image: None },
            tls: false,
            tls_pass: Some(subject),
        });
        assert_eq!(plan.not_covered.len(), 1, "{:?}", plan.not_covered);
        assert_eq!(plan.not_covered[0].scenario, "leader-links-delayed");
        let n = suite.scenarios.len() - 1;
        assert_eq!(
            plan.entries.len(),
            2 * n,
            "the scenarios, then their TLS pass"
        );
        // The largest clusters first.
        let sizes: Vec<u32> = plan.entries[..n]
            .iter()
            .map(|e| e.scenario.max_replicas())
            .collect();
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
    }
}
