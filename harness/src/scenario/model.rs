//! Scenario suites as YAML: declarative steps with settle deadlines.

use crate::faults::select::{IsolateSet, MemberSelector};
use crate::faults::{self, FaultArgs, FaultRef};
use crate::util::parse_duration;
use crate::util::{Dur, yaml_error_text};
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// serde-saphyr's message carries line and column.
    #[error("{path}:{message}")]
    Parse { path: String, message: String },
    #[error("{path}: scenario {scenario:?} step {step}: {message}")]
    Invalid {
        path: String,
        scenario: String,
        step: usize,
        message: String,
    },
}

/// When a mid-step fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Trigger {
    /// Right after the first successful MemberAdd of the step.
    AfterMemberAdd,
    /// This long after the step started.
    After(Duration),
}

impl TryFrom<String> for Trigger {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s == "member-add" {
            return Ok(Trigger::AfterMemberAdd);
        }
        parse_duration(&s)
            .map(Trigger::After)
            .ok_or_else(|| format!("bad trigger {s:?}: expected member-add or a duration"))
    }
}

/// A fault injected while a step is in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawInject")]
pub struct Inject {
    pub after: Trigger,
    pub fault: FaultRef,
    /// Without `for:`, a held fault holds until its step ends.
    pub args: FaultArgs,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInject {
    after: Trigger,
    fault: FaultRef,
    #[serde(default)]
    member: Option<MemberSelector>,
    #[serde(default)]
    isolate: Option<IsolateSet>,
    #[serde(default, rename = "for")]
    duration: Option<Dur>,
    #[serde(default)]
    latency: Option<Dur>,
    #[serde(default)]
    jitter: Option<Dur>,
    #[serde(default)]
    when: Option<crate::faults::Moment>,
}

impl TryFrom<RawInject> for Inject {
    type Error = String;
    fn try_from(raw: RawInject) -> Result<Self, Self::Error> {
        let args = FaultArgs {
            member: raw.member,
            isolate: raw.isolate,
            duration: raw.duration.map(|d| d.0),
            latency: raw.latency.map(|d| d.0),
            jitter: raw.jitter.map(|d| d.0),
            when: raw.when,
        }
        .for_fault(raw.fault.0, true)?;
        Ok(Inject {
            after: raw.after,
            fault: raw.fault,
            args,
        })
    }
}

/// What a step does before it settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepAction {
    Bootstrap(u32),
    Scale(u32),
    /// One restart per member, each settling before the next.
    RollingRestart,
    Wait,
    /// The cluster is left alone, with the workload running, this long
    /// before the step may settle: a steady-state window to measure.
    Hold(Duration),
    /// A registered fault (see [`crate::faults`]).
    Fault(FaultRef, FaultArgs),
}

impl StepAction {
    pub fn name(&self) -> String {
        match self {
            StepAction::Bootstrap(n) => format!("bootstrap {n}"),
            StepAction::Scale(n) => format!("scale {n}"),
            StepAction::RollingRestart => "rolling-restart".into(),
            StepAction::Wait => "wait".into(),
            StepAction::Hold(d) => format!("hold {}s", d.as_secs_f64()),
            StepAction::Fault(fault, args) => {
                let args = args.describe();
                if args.is_empty() {
                    fault.name().to_string()
                } else {
                    format!("{} {args}", fault.name())
                }
            }
        }
    }

    /// The replica count a bootstrap or scale step asks for.
    pub fn replicas(&self) -> Option<u32> {
        match self {
            StepAction::Bootstrap(n) | StepAction::Scale(n) => Some(*n),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub action: StepAction,
    pub settle: Option<Duration>,
    pub inject: Option<Inject>,
    /// `settles: false`: the step is expected not to settle by its
    /// deadline (a deployment meant to stay broken); reported, not judged
    /// by C1.
    pub settles: bool,
}

impl Step {
    /// The faults the step uses, in the step and mid-step.
    pub fn faults(&self) -> impl Iterator<Item = FaultRef> + '_ {
        let in_step = match self.action {
            StepAction::Fault(fault, _) => Some(fault),
            // A rolling restart is one restart per member.
            StepAction::RollingRestart => faults::find("restart"),
            _ => None,
        };
        in_step.into_iter().chain(self.inject.map(|i| i.fault))
    }
}

/// Step keys besides the registered faults.
const STEP_KEYS: &[&str] = &[
    "bootstrap",
    "scale",
    "rolling-restart",
    "wait",
    "hold",
    "settle",
    "settles",
    "inject",
];

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(StepVisitor)
    }
}

struct StepVisitor;

impl<'de> Visitor<'de> for StepVisitor {
    type Value = Step;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a step: one action (bootstrap, scale, a fault, ...) and its options")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Step, A::Error> {
        let mut actions = Vec::new();
        let mut settle = None;
        let mut inject = None;
        let mut settles = true;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "bootstrap" => actions.push(StepAction::Bootstrap(map.next_value()?)),
                "scale" => actions.push(StepAction::Scale(map.next_value()?)),
                "rolling-restart" => {
                    map.next_value::<IgnoredAny>()?;
                    actions.push(StepAction::RollingRestart);
                }
                "wait" => {
                    map.next_value::<IgnoredAny>()?;
                    actions.push(StepAction::Wait);
                }
                "hold" => actions.push(StepAction::Hold(map.next_value::<Dur>()?.0)),
                "settle" => settle = Some(map.next_value::<Dur>()?.0),
                "settles" => settles = map.next_value()?,
                "inject" => inject = Some(map.next_value::<Inject>()?),
                other => {
                    let Some(fault) = faults::find(other) else {
                        let mut known: Vec<&str> = STEP_KEYS.to_vec();
                        known.extend(faults::names());
                        return Err(de::Error::custom(format!(
                            "unknown step key {other:?}: expected one of {}",
                            known.join(", ")
                        )));
                    };
                    let args = map
                        .next_value::<FaultArgs>()?
                        .for_fault(fault.0, false)
                        .map_err(de::Error::custom)?;
                    actions.push(StepAction::Fault(fault, args));
                }
            }
        }
        match actions.as_slice() {
            [action] => Ok(Step {
                action: *action,
                settle,
                inject,
                settles,
            }),
            [] => Err(de::Error::custom(format!(
                "a step needs one action: bootstrap, scale, rolling-restart, wait, hold or a fault ({})",
                faults::names().join(", ")
            ))),
            _ => Err(de::Error::custom("a step has exactly one action")),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Fixes the seed of random choices; otherwise the run's seed is used.
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub quorum_grace: Option<Dur>,
    /// Invariants this scenario exists to test: a run in which one of
    /// them had nothing to judge is not a pass (added to the suite's).
    #[serde(default)]
    pub must_judge: Vec<String>,
    pub steps: Vec<Step>,
}

impl Scenario {
    /// The most members any step asks for.
    pub fn max_replicas(&self) -> u32 {
        self.steps
            .iter()
            .filter_map(|s| match s.action {
                StepAction::Bootstrap(n) | StepAction::Scale(n) => Some(n),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }
    /// Every fault the scenario uses, once each, in order.
    pub fn faults(&self) -> Vec<FaultRef> {
        let mut used: Vec<FaultRef> = Vec::new();
        for fault in self.steps.iter().flat_map(Step::faults) {
            if !used.contains(&fault) {
                used.push(fault);
            }
        }
        used
    }
    pub fn bootstrap_replicas(&self) -> u32 {
        match self.steps.first().map(|s| s.action) {
            Some(StepAction::Bootstrap(n)) => n,
            _ => 0,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Defaults {
    #[serde(default)]
    pub settle: Option<Dur>,
    #[serde(default)]
    pub quorum_grace: Option<Dur>,
    /// Invariants every scenario of the suite must give something to judge.
    #[serde(default)]
    pub must_judge: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Suite {
    pub suite: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub defaults: Defaults,
    pub scenarios: Vec<Scenario>,
}

/// The largest cluster a suite may ask for.
pub const MAX_REPLICAS: u32 = 15;

pub const DEFAULT_SETTLE: Duration = Duration::from_secs(60);
pub const DEFAULT_QUORUM_GRACE: Duration = Duration::from_secs(15);

/// The conformance suite built into the binary.
pub const BUILTIN_SUITE: &str = include_str!("../../../suites/conformance.yaml");
pub const BUILTIN_SUITE_PATH: &str = "suites/conformance.yaml";
/// The scenarios `raftcert study` draws from.
pub const STUDY_SUITE: &str = include_str!("../../../suites/study.yaml");

impl Suite {
    pub fn load(path: &Path) -> Result<Suite, SuiteError> {
        let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Suite::parse(&text, &path.display().to_string())
    }

    pub fn builtin() -> Result<Suite, SuiteError> {
        Suite::parse(BUILTIN_SUITE, BUILTIN_SUITE_PATH)
    }

    pub fn parse(text: &str, path: &str) -> Result<Suite, SuiteError> {
        let suite: Suite = serde_saphyr::from_str(text).map_err(|e| SuiteError::Parse {
            path: path.to_string(),
            message: yaml_error_text(&e),
        })?;
        suite.validate(path)?;
        Ok(suite)
    }

    pub fn settle_for(&self, step: &Step) -> Duration {
        step.settle
            .or(self.defaults.settle.map(|d| d.0))
            .unwrap_or(DEFAULT_SETTLE)
    }

    /// The invariants a run of `scenario` must have judged something with.
    pub fn must_judge_for(&self, scenario: &Scenario) -> Vec<String> {
        let mut ids = self.defaults.must_judge.clone();
        for id in &scenario.must_judge {
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        ids
    }

    pub fn quorum_grace_for(&self, scenario: &Scenario) -> Duration {
        scenario
            .quorum_grace
            .or(self.defaults.quorum_grace)
            .map(|d| d.0)
            .unwrap_or(DEFAULT_QUORUM_GRACE)
    }

    fn validate(&self, path: &str) -> Result<(), SuiteError> {
        let mut names = std::collections::BTreeSet::new();
        for scenario in &self.scenarios {
            let invalid = |step: usize, message: String| SuiteError::Invalid {
                path: path.to_string(),
                scenario: scenario.name.clone(),
                step,
                message,
            };
            if !names.insert(scenario.name.clone()) {
                return Err(invalid(0, "duplicate scenario name".into()));
            }
            for id in self.defaults.must_judge.iter().chain(&scenario.must_judge) {
                if !crate::invariants::registry().iter().any(|i| i.id == id) {
                    return Err(invalid(0, format!("must-judge names no invariant {id:?}")));
                }
            }
            let mut desired = 0u32;
            let replicas_ok = |r: u32| {
                if r == 0 || r > MAX_REPLICAS {
                    Err(format!("replicas {r} out of range 1..={MAX_REPLICAS}"))
                } else {
                    Ok(())
                }
            };
            let exists = |o: u32, desired: u32| {
                if o >= desired {
                    Err(format!("member {o} does not exist with {desired} replicas"))
                } else {
                    Ok(())
                }
            };
            for (i, step) in scenario.steps.iter().enumerate() {
                let n = i + 1;
                match step.action {
                    StepAction::Bootstrap(r) => {
                        if i != 0 {
                            return Err(invalid(n, "bootstrap must be the first step".into()));
                        }
                        replicas_ok(r).map_err(|m| invalid(n, m))?;
                        desired = r;
                    }
                    StepAction::Scale(r) => {
                        replicas_ok(r).map_err(|m| invalid(n, m))?;
                        desired = r;
                    }
                    _ if desired == 0 => {
                        return Err(invalid(n, "the first step must be bootstrap".into()));
                    }
                    StepAction::Fault(_, args) => {
                        for selector in args.selectors() {
                            if let MemberSelector::Ordinal(o) = selector {
                                exists(o, desired).map_err(|m| invalid(n, m))?;
                            }
                        }
                        if let Some(IsolateSet::Ordinals(mask)) = args.isolate
                            && IsolateSet::ordinals(mask).count() as u32 >= desired
                        {
                            return Err(invalid(
                                n,
                                "a partition must leave some member on the other side".into(),
                            ));
                        }
                    }
                    _ => {}
                }
                if let Some(inject) = step.inject {
                    for selector in inject.args.selectors() {
                        if let MemberSelector::Ordinal(o) = selector {
                            exists(o, desired.max(scenario.max_replicas()))
                                .map_err(|m| invalid(n, format!("inject: {m}")))?;
                        }
                    }
                }
            }
            if scenario.steps.is_empty() {
                return Err(invalid(0, "no steps".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{StepAction, Suite};
    use std::time::Duration;

    #[test]
    fn a_hold_step_keeps_its_duration() {
        let suite = Suite::parse(
            "suite: s\nscenarios:\n  - name: a\n    steps:\n      - bootstrap: 3\n      - hold: 5s\n",
            "s.yaml",
        )
        .expect("parse");
        let step = &suite.scenarios[0].steps[1];
        assert_eq!(step.action, StepAction::Hold(Duration::from_secs(5)));
        assert_eq!(step.action.name(), "hold 5s");
    }
}
