//! `raftcert study`: a designed experiment over strategies, engines,
//! cluster sizes and faults, repeated. This module holds the design, the
//! measures taken from each run's trace, their aggregates, and the
//! written results (study.json, study.md, SVG plots).

mod measure;
mod plot;

pub use measure::{RunMeasure, measure};
pub use plot::{OUTCOMES_SVG, READY_SVG, UNAVAILABILITY_SVG, write_plots};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the study varies.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Design {
    /// Per engine kind: the strategies and the engines they run on.
    pub arms: Vec<Arm>,
    /// Scenarios of the study suite (suites/study.yaml).
    pub scenarios: Vec<String>,
    pub repetitions: u32,
}

/// What one `raftcert run` per repetition covers: built-in strategies on
/// local engines, or an operator profile's deployment on Kubernetes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Arm {
    #[serde(default)]
    pub strategies: Vec<String>,
    #[serde(default)]
    pub engines: Vec<String>,
    /// An operator profile directory (fixtures/operators/<name>), run with
    /// `--backend kube`: its subject and engine come from the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Repetitions of this arm when not the design's: an arm added to a
    /// study later (`--extend`) may have its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetitions: Option<u32>,
}

impl Arm {
    pub fn strategies(strategies: &[&str], engines: &[&str]) -> Arm {
        Arm {
            strategies: strategies.iter().map(|s| s.to_string()).collect(),
            engines: engines.iter().map(|s| s.to_string()).collect(),
            ..Arm::default()
        }
    }

    pub fn profile(dir: &str) -> Arm {
        Arm {
            profile: Some(dir.to_string()),
            ..Arm::default()
        }
    }

    /// The arguments of `raftcert run` that select this arm's subjects,
    /// engines and substrate.
    pub fn run_arguments(&self, kubeconfig: Option<&str>) -> Vec<String> {
        let mut argv = Vec::new();
        if let Some(profile) = &self.profile {
            argv.extend(["--backend".to_string(), "kube".into()]);
            argv.extend(["--profile".to_string(), profile.clone()]);
            if let Some(kubeconfig) = kubeconfig {
                argv.extend(["--kubeconfig".to_string(), kubeconfig.to_string()]);
            }
        }
        for s in &self.strategies {
            argv.extend(["--strategy".to_string(), s.clone()]);
        }
        for e in &self.engines {
            argv.extend(["--engine".to_string(), e.clone()]);
        }
        argv
    }

    /// How the study page names the arm.
    pub fn describe(&self) -> String {
        match &self.profile {
            Some(profile) => format!("operator profile {profile}, on Kubernetes"),
            None => format!(
                "{} on {}",
                self.strategies.join(", "),
                self.engines.join(", ")
            ),
        }
    }
}

/// The scenarios whose unavailability is compared across strategies.
pub const UNAVAILABILITY_SCENARIOS: [&str; 3] = ["scale-out-1-3-5", "pod-loss", "restart-one"];

impl Design {
    /// Every correct etcd strategy on two etcd versions, the PD strategies
    /// on PD 8.5.7 when `with_pd`, every scenario, five times.
    pub fn full(with_pd: bool) -> Design {
        let mut arms = vec![Arm::strategies(
            &["seed-join", "static", "discovery", "learner"],
            &["etcd@3.6.5", "etcd@3.5.1"],
        )];
        if with_pd {
            arms.push(Arm::strategies(
                &["pd-seed-join", "tidb-v2-static"],
                &["pd@8.5.7"],
            ));
        }
        Design {
            arms,
            scenarios: [
                "bootstrap-1",
                "bootstrap-3",
                "bootstrap-5",
                "bootstrap-7",
                "scale-out-1-3-5",
                "pod-loss",
                "restart-one",
                "volume-loss",
                "leader-partitioned",
            ]
            .map(String::from)
            .to_vec(),
            repetitions: 5,
        }
    }

    /// How many times `arm` runs.
    pub fn repetitions_of(&self, arm: &Arm) -> u32 {
        arm.repetitions.unwrap_or(self.repetitions)
    }

    /// Two strategies, one etcd version, four scenarios, twice: minutes.
    pub fn quick() -> Design {
        Design {
            arms: vec![Arm::strategies(&["seed-join", "static"], &["etcd@3.6.5"])],
            scenarios: ["bootstrap-1", "bootstrap-3", "scale-out-1-3-5", "pod-loss"]
                .map(String::from)
                .to_vec(),
            repetitions: 2,
        }
    }
}

/// Mean, least and greatest of a measure over the repetitions.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Spread {
    pub n: usize,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let sum: f64 = values.iter().sum();
        Some(Spread {
            n: values.len(),
            mean: sum / values.len() as f64,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// The p50 and p99 of a set of latencies (nearest rank).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub n: usize,
    pub p50_ms: u64,
    pub p99_ms: u64,
}

impl Percentiles {
    pub fn of(values: &[u64]) -> Option<Percentiles> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        let rank = |p: f64| {
            let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[i - 1]
        };
        Some(Percentiles {
            n: sorted.len(),
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
        })
    }
}

/// One subject on one engine in one scenario, over the repetitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    pub subject: String,
    pub engine: String,
    pub scenario: String,
    pub size: u32,
    pub runs: usize,
    pub passed: usize,
    /// Violated invariant -> runs that violated it.
    pub violated: BTreeMap<String, usize>,
    /// Runs that ended in `error`.
    pub errors: usize,
    pub ready_s: Option<Spread>,
    /// Seconds per member added, over the scale steps.
    pub change_s_per_member: Option<Spread>,
    /// Per run: the longer of the time without quorum and the time writes
    /// kept failing, in seconds.
    pub unavailable_s: Option<Spread>,
    /// Per run: the time without a quorum of up voters (I4's view: a
    /// joined member counts once it has published itself).
    #[serde(default)]
    pub no_quorum_s: Option<Spread>,
    /// Per run: the time writes kept failing (what a client saw).
    #[serde(default)]
    pub write_outage_s: Option<Spread>,
    pub latency_steady: Option<Percentiles>,
    pub latency_reconfig: Option<Percentiles>,
}

impl Cell {
    /// `subject@engine`, as plots and tables name it.
    pub fn arm(&self) -> String {
        format!("{}@{}", self.subject, self.engine)
    }
}

/// Groups run measures into cells, in the design's order: strategy,
/// engine, then scenario.
pub fn aggregate(measures: &[RunMeasure], design: &Design) -> Vec<Cell> {
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for m in measures {
        let key = (m.subject.clone(), m.engine.clone(), m.scenario.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let strategies: Vec<&String> = design.arms.iter().flat_map(|a| &a.strategies).collect();
    let position =
        |list: &[&String], x: &str| list.iter().position(|s| *s == x).unwrap_or(usize::MAX);
    let scenarios: Vec<&String> = design.scenarios.iter().collect();
    keys.sort_by_key(|(subject, engine, scenario)| {
        (
            position(&strategies, subject),
            engine.clone(),
            position(&scenarios, scenario),
        )
    });
    keys.into_iter()
        .map(|(subject, engine, scenario)| {
            let runs: Vec<&RunMeasure> = measures
                .iter()
                .filter(|m| m.subject == subject && m.engine == engine && m.scenario == scenario)
                .collect();
            let mut violated = BTreeMap::new();
            for run in &runs {
                for inv in &run.violated {
                    *violated.entry(inv.clone()).or_insert(0) += 1;
                }
            }
            let floats = |f: &dyn Fn(&RunMeasure) -> Option<f64>| {
                runs.iter().filter_map(|r| f(r)).collect::<Vec<f64>>()
            };
            let latencies = |f: &dyn Fn(&RunMeasure) -> &Vec<u64>| {
                runs.iter()
                    .flat_map(|r| f(r).iter().copied())
                    .collect::<Vec<u64>>()
            };
            let changes: Vec<f64> = runs
                .iter()
                .flat_map(|r| r.change_ms_per_member.iter().map(|ms| ms / 1000.0))
                .collect();
            Cell {
                size: runs.iter().map(|r| r.size).max().unwrap_or(0),
                runs: runs.len(),
                passed: runs.iter().filter(|r| r.status == "pass").count(),
                errors: runs.iter().filter(|r| r.status == "error").count(),
                violated,
                ready_s: Spread::of(&floats(&|r| r.ready_ms.map(|ms| ms as f64 / 1000.0))),
                change_s_per_member: Spread::of(&changes),
                unavailable_s: Spread::of(&floats(&|r| Some(r.unavailable_ms() as f64 / 1000.0))),
                no_quorum_s: Spread::of(&floats(&|r| Some(r.no_quorum_ms as f64 / 1000.0))),
                write_outage_s: Spread::of(&floats(&|r| Some(r.write_outage_ms as f64 / 1000.0))),
                latency_steady: Percentiles::of(&latencies(&|r| &r.steady_latency_ms)),
                latency_reconfig: Percentiles::of(&latencies(&|r| &r.reconfig_latency_ms)),
                subject,
                engine,
                scenario,
            }
        })
        .collect()
}

/// Everything a study produced: written as study.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudyResult {
    /// The command line that ran it.
    pub command: String,
    pub design: Design,
    pub machine: String,
    pub started_at: String,
    pub duration_s: f64,
    pub harness_version: String,
    /// The report directory of each repetition, relative to the study's.
    pub repetitions: Vec<String>,
    pub runs: Vec<RunMeasure>,
    pub cells: Vec<Cell>,
}

const STUDY_TEMPLATE: &str = include_str!("study.md");

/// study.md: the design, the machine, the tables and the plots (`plots`
/// is the plots' directory as the page links it).
pub fn render_markdown(result: &StudyResult, plots: &str) -> Result<String, String> {
    let mut env = minijinja::Environment::new();
    env.add_template("study.md", STUDY_TEMPLATE)
        .map_err(|e| e.to_string())?;
    env.add_filter("secs", |v: f64| format!("{v:.1}"));
    let template = env.get_template("study.md").map_err(|e| e.to_string())?;
    let unavailable: Vec<&Cell> = result
        .cells
        .iter()
        .filter(|c| UNAVAILABILITY_SCENARIOS.contains(&c.scenario.as_str()))
        .collect();
    let faults: Vec<&Cell> = result
        .cells
        .iter()
        .filter(|c| !c.scenario.starts_with("bootstrap-"))
        .collect();
    let bootstraps: Vec<&Cell> = result
        .cells
        .iter()
        .filter(|c| c.scenario.starts_with("bootstrap-"))
        .collect();
    template
        .render(minijinja::value::Serde(serde_json::json!({
            "r": result,
            "arms": result.design.arms.iter().map(|arm| serde_json::json!({
                "text": arm.describe(),
                "repetitions": result.design.repetitions_of(arm),
            })).collect::<Vec<_>>(),
            "plots": plots,
            "bootstraps": bootstraps,
            "unavailable": unavailable,
            "faults": faults,
            "runs": result.runs.len(),
            "ready_svg": READY_SVG,
            "unavailability_svg": UNAVAILABILITY_SVG,
            "outcomes_svg": OUTCOMES_SVG,
        })))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        let p = Percentiles::of(&values).expect("some");
        assert_eq!((p.p50_ms, p.p99_ms), (50, 99));
        let one = Percentiles::of(&[7]).expect("one");
        assert_eq!((one.p50_ms, one.p99_ms), (7, 7));
        assert!(Percentiles::of(&[]).is_none());
    }

    fn measure(subject: &str, scenario: &str, ready_ms: u64, status: &str) -> RunMeasure {
        RunMeasure {
            subject: subject.into(),
            engine: "etcd-3.6.5".into(),
            scenario: scenario.into(),
            repetition: 1,
            status: status.into(),
            violated: if status == "fail" {
                vec!["I4".into()]
            } else {
                Vec::new()
            },
            size: 3,
            ready_ms: Some(ready_ms),
            change_ms_per_member: Vec::new(),
            no_quorum_ms: 0,
            write_outage_ms: 0,
            steady_latency_ms: vec![5],
            reconfig_latency_ms: Vec::new(),
        }
    }

    /// Repetitions of one strategy and scenario make one cell, and cells
    /// follow the design, not the order runs finished in.
    #[test]
    fn cells_pool_the_repetitions_in_the_designs_order() {
        let design = Design::quick();
        let cells = aggregate(
            &[
                measure("static", "bootstrap-3", 2_000, "pass"),
                measure("seed-join", "pod-loss", 1_000, "fail"),
                measure("seed-join", "bootstrap-3", 4_000, "pass"),
                measure("static", "bootstrap-3", 3_000, "pass"),
            ],
            &design,
        );
        let keys: Vec<(&str, &str)> = cells
            .iter()
            .map(|c| (c.subject.as_str(), c.scenario.as_str()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("seed-join", "bootstrap-3"),
                ("seed-join", "pod-loss"),
                ("static", "bootstrap-3")
            ]
        );
        let static3 = &cells[2];
        assert_eq!((static3.runs, static3.passed), (2, 2));
        assert_eq!(static3.ready_s.map(|s| s.mean), Some(2.5));
        assert_eq!(cells[1].violated.get("I4"), Some(&1));
    }

    /// A strategy arm selects strategies and engines; a profile arm the
    /// Kubernetes backend, its profile and the cluster.
    #[test]
    fn arms_become_the_arguments_of_raftcert_run() {
        let local = Arm::strategies(&["static"], &["etcd@3.6.5"]);
        assert_eq!(
            local.run_arguments(Some("/kc")),
            ["--strategy", "static", "--engine", "etcd@3.6.5"]
        );
        let operator = Arm::profile("fixtures/operators/tidb-operator-v2");
        assert_eq!(
            operator.run_arguments(Some("/kc")),
            [
                "--backend",
                "kube",
                "--profile",
                "fixtures/operators/tidb-operator-v2",
                "--kubeconfig",
                "/kc"
            ]
        );
        assert_eq!(operator.run_arguments(None).len(), 4);
        let mut design = Design::quick();
        assert_eq!(design.repetitions_of(&operator), 2);
        design.arms.push(Arm {
            repetitions: Some(1),
            ..operator
        });
        assert_eq!(design.repetitions_of(&design.arms[1]), 1);
        // Arms saved before profiles existed still load.
        let old: Arm =
            serde_json::from_str(r#"{"strategies":["static"],"engines":["etcd@3.6.5"]}"#)
                .expect("an arm without profile");
        assert!(old.profile.is_none() && old.repetitions.is_none());
    }

    #[test]
    fn a_spread_has_its_mean_and_extremes() {
        let s = Spread::of(&[1.0, 2.0, 6.0]).expect("some");
        assert_eq!((s.n, s.mean, s.min, s.max), (3, 3.0, 1.0, 6.0));
        assert!(Spread::of(&[]).is_none());
    }
}
