//! Scenario suites as YAML: declarative steps with settle deadlines.

use crate::trace::FaultKind;
use crate::util::parse_duration;
use serde::Deserialize;
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

/// A duration written as "500ms", "30s" or "2m".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Dur(pub Duration);

impl TryFrom<String> for Dur {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        parse_duration(&s)
            .map(Dur)
            .ok_or_else(|| format!("bad duration {s:?}: expected e.g. 500ms, 30s, 2m"))
    }
}

/// Which member a fault hits: an ordinal, or `leader`, `follower`, `random`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SelectorRaw")]
pub enum MemberSelector {
    Ordinal(u32),
    Leader,
    Follower,
    Random,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SelectorRaw {
    Ordinal(u32),
    Word(String),
}

impl TryFrom<SelectorRaw> for MemberSelector {
    type Error = String;
    fn try_from(raw: SelectorRaw) -> Result<Self, Self::Error> {
        match raw {
            SelectorRaw::Ordinal(n) => Ok(MemberSelector::Ordinal(n)),
            SelectorRaw::Word(w) => match w.as_str() {
                "leader" => Ok(MemberSelector::Leader),
                "follower" => Ok(MemberSelector::Follower),
                "random" => Ok(MemberSelector::Random),
                other => Err(format!(
                    "unknown member {other:?}: expected an ordinal, leader, follower or random"
                )),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeSpec {
    pub member: MemberSelector,
    #[serde(rename = "for")]
    pub duration: Dur,
}

/// Which members a partition cuts off from the rest: one member by
/// selector (`leader`, `1`), or several by ordinal (`[0, 1]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "IsolateRaw")]
pub enum IsolateSet {
    One(MemberSelector),
    /// Bit `n` set for ordinal `n`.
    Ordinals(u16),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IsolateRaw {
    Many(Vec<u32>),
    One(MemberSelector),
}

impl TryFrom<IsolateRaw> for IsolateSet {
    type Error = String;
    fn try_from(raw: IsolateRaw) -> Result<Self, Self::Error> {
        match raw {
            IsolateRaw::One(sel) => Ok(IsolateSet::One(sel)),
            IsolateRaw::Many(list) if list.is_empty() => Err("isolate needs a member".into()),
            IsolateRaw::Many(list) => list
                .into_iter()
                .try_fold(0u16, |mask, o| {
                    if o < 16 {
                        Ok(mask | 1 << o)
                    } else {
                        Err(format!("member {o} out of range"))
                    }
                })
                .map(IsolateSet::Ordinals),
        }
    }
}

impl IsolateSet {
    pub fn ordinals(mask: u16) -> impl Iterator<Item = u32> {
        (0..16).filter(move |o| mask & (1 << o) != 0)
    }

    /// One selector per member to cut off.
    pub fn selectors(self) -> Vec<MemberSelector> {
        match self {
            IsolateSet::One(selector) => vec![selector],
            IsolateSet::Ordinals(mask) => IsolateSet::ordinals(mask)
                .map(MemberSelector::Ordinal)
                .collect(),
        }
    }
}

/// A network partition held for a while, then healed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionSpec {
    pub isolate: IsolateSet,
    #[serde(rename = "for")]
    pub duration: Dur,
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
#[serde(deny_unknown_fields)]
pub struct Inject {
    pub after: Trigger,
    pub fault: FaultKind,
    #[serde(default)]
    pub member: Option<MemberSelector>,
    /// For isolate, disconnect and freeze: undo the fault after this long.
    #[serde(default, rename = "for")]
    pub duration: Option<Dur>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepAction {
    Bootstrap(u32),
    Scale(u32),
    Restart(MemberSelector),
    Kill(MemberSelector),
    Freeze(FreezeSpec),
    /// Cut members off from the others; the harness still reaches them.
    Partition(PartitionSpec),
    /// Detach a member from the run's network, then attach it again.
    Disconnect(FreezeSpec),
    DeletePod(MemberSelector),
    LoseVolume(MemberSelector),
    RollingRestart,
    FullRestart,
    CrashDeployer,
    Wait,
}

impl StepAction {
    pub fn name(&self) -> String {
        match self {
            StepAction::Bootstrap(n) => format!("bootstrap {n}"),
            StepAction::Scale(n) => format!("scale {n}"),
            StepAction::Restart(m) => format!("restart {m:?}"),
            StepAction::Kill(m) => format!("kill {m:?}"),
            StepAction::Freeze(f) => format!("freeze {:?}", f.member),
            StepAction::Partition(p) => match p.isolate {
                IsolateSet::One(m) => format!("partition {m:?}"),
                IsolateSet::Ordinals(mask) => format!(
                    "partition {:?}",
                    IsolateSet::ordinals(mask).collect::<Vec<_>>()
                ),
            },
            StepAction::Disconnect(f) => format!("disconnect {:?}", f.member),
            StepAction::DeletePod(m) => format!("delete-pod {m:?}"),
            StepAction::LoseVolume(m) => format!("lose-volume {m:?}"),
            StepAction::RollingRestart => "rolling-restart".into(),
            StepAction::FullRestart => "full-restart".into(),
            StepAction::CrashDeployer => "crash-deployer".into(),
            StepAction::Wait => "wait".into(),
        }
        .to_lowercase()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawStep")]
pub struct Step {
    pub action: StepAction,
    pub settle: Option<Duration>,
    pub inject: Option<Inject>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawStep {
    bootstrap: Option<u32>,
    scale: Option<u32>,
    restart: Option<MemberSelector>,
    kill: Option<MemberSelector>,
    freeze: Option<FreezeSpec>,
    partition: Option<PartitionSpec>,
    disconnect: Option<FreezeSpec>,
    delete_pod: Option<MemberSelector>,
    lose_volume: Option<MemberSelector>,
    rolling_restart: Option<serde::de::IgnoredAny>,
    full_restart: Option<serde::de::IgnoredAny>,
    crash_deployer: Option<serde::de::IgnoredAny>,
    wait: Option<serde::de::IgnoredAny>,
    settle: Option<Dur>,
    inject: Option<Inject>,
}

impl TryFrom<RawStep> for Step {
    type Error = String;
    fn try_from(raw: RawStep) -> Result<Self, Self::Error> {
        let mut actions = Vec::new();
        if let Some(n) = raw.bootstrap {
            actions.push(StepAction::Bootstrap(n));
        }
        if let Some(n) = raw.scale {
            actions.push(StepAction::Scale(n));
        }
        if let Some(m) = raw.restart {
            actions.push(StepAction::Restart(m));
        }
        if let Some(m) = raw.kill {
            actions.push(StepAction::Kill(m));
        }
        if let Some(f) = raw.freeze {
            actions.push(StepAction::Freeze(f));
        }
        if let Some(p) = raw.partition {
            actions.push(StepAction::Partition(p));
        }
        if let Some(f) = raw.disconnect {
            actions.push(StepAction::Disconnect(f));
        }
        if let Some(m) = raw.delete_pod {
            actions.push(StepAction::DeletePod(m));
        }
        if let Some(m) = raw.lose_volume {
            actions.push(StepAction::LoseVolume(m));
        }
        if raw.rolling_restart.is_some() {
            actions.push(StepAction::RollingRestart);
        }
        if raw.full_restart.is_some() {
            actions.push(StepAction::FullRestart);
        }
        if raw.crash_deployer.is_some() {
            actions.push(StepAction::CrashDeployer);
        }
        if raw.wait.is_some() {
            actions.push(StepAction::Wait);
        }
        match actions.as_slice() {
            [action] => Ok(Step {
                action: *action,
                settle: raw.settle.map(|d| d.0),
                inject: raw.inject,
            }),
            [] => Err("a step needs one of bootstrap, scale, restart, kill, freeze, partition, disconnect, delete-pod, lose-volume, rolling-restart, full-restart, crash-deployer, wait".into()),
            _ => Err("a step has exactly one action".into()),
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
    /// Whether the scenario cuts the network, which only some backends can.
    pub fn needs_partitions(&self) -> bool {
        self.steps.iter().any(|s| {
            matches!(
                s.action,
                StepAction::Partition(_) | StepAction::Disconnect(_)
            ) || s.inject.is_some_and(|i| {
                matches!(
                    i.fault,
                    FaultKind::Isolate
                        | FaultKind::Heal
                        | FaultKind::Disconnect
                        | FaultKind::Reconnect
                )
            })
        })
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

pub const DEFAULT_SETTLE: Duration = Duration::from_secs(60);
pub const DEFAULT_QUORUM_GRACE: Duration = Duration::from_secs(15);

/// The conformance suite built into the binary.
pub const BUILTIN_SUITE: &str = include_str!("../../../suites/conformance.yaml");
pub const BUILTIN_SUITE_PATH: &str = "suites/conformance.yaml";

/// A YAML error as `line:col: message`, on one line, for `file:line:col`.
pub(crate) fn yaml_error_text(e: &serde_saphyr::Error) -> String {
    let plain = one_line(&e.without_snippet().to_string());
    let plain = plain.strip_prefix("error: ").unwrap_or(&plain);
    // Drop saphyr's "line N column M: " prefix; we print file:line:col.
    let text = match plain.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map(|(_, m)| m).unwrap_or(rest),
        None => plain,
    };
    let text = text
        .rsplit_once(" at line ")
        .map(|(m, _)| m)
        .unwrap_or(text);
    let position = e
        .location()
        .map(|l| format!("{}:{}: ", l.line(), l.column()))
        .unwrap_or_else(|| " ".to_string());
    format!("{position}{text}")
}

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
            let mut desired = 0u32;
            for (i, step) in scenario.steps.iter().enumerate() {
                let n = i + 1;
                match step.action {
                    StepAction::Bootstrap(r) => {
                        if i != 0 {
                            return Err(invalid(n, "bootstrap must be the first step".into()));
                        }
                        if r == 0 || r > 9 {
                            return Err(invalid(n, format!("replicas {r} out of range 1..=9")));
                        }
                        desired = r;
                    }
                    StepAction::Scale(r) => {
                        if r == 0 || r > 9 {
                            return Err(invalid(n, format!("replicas {r} out of range 1..=9")));
                        }
                        desired = r;
                    }
                    _ if desired == 0 => {
                        return Err(invalid(n, "the first step must be bootstrap".into()));
                    }
                    StepAction::Restart(sel)
                    | StepAction::Kill(sel)
                    | StepAction::DeletePod(sel)
                    | StepAction::LoseVolume(sel)
                    | StepAction::Freeze(FreezeSpec { member: sel, .. })
                    | StepAction::Disconnect(FreezeSpec { member: sel, .. })
                    | StepAction::Partition(PartitionSpec {
                        isolate: IsolateSet::One(sel),
                        ..
                    }) => {
                        if let MemberSelector::Ordinal(o) = sel
                            && o >= desired
                        {
                            return Err(invalid(
                                n,
                                format!("member {o} does not exist with {desired} replicas"),
                            ));
                        }
                    }
                    StepAction::Partition(PartitionSpec {
                        isolate: IsolateSet::Ordinals(mask),
                        ..
                    }) => {
                        if let Some(o) = IsolateSet::ordinals(mask).find(|o| *o >= desired) {
                            return Err(invalid(
                                n,
                                format!("member {o} does not exist with {desired} replicas"),
                            ));
                        }
                        if IsolateSet::ordinals(mask).count() as u32 >= desired {
                            return Err(invalid(
                                n,
                                "a partition must leave some member on the other side".into(),
                            ));
                        }
                    }
                    _ => {}
                }
                if let Some(inject) = step.inject {
                    if let Some(MemberSelector::Ordinal(o)) = inject.member
                        && o >= desired.max(scenario.max_replicas())
                    {
                        return Err(invalid(n, format!("inject member {o} does not exist")));
                    }
                    let needs_member =
                        !matches!(inject.fault, FaultKind::CrashDeployer | FaultKind::Heal);
                    if inject.member.is_none() && needs_member {
                        return Err(invalid(n, "inject needs a member for this fault".into()));
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

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
