//! Faults as units: one file per fault, one line each in [`registry`].
//!
//! A fault names the key it is written under in a suite, checks its
//! arguments, says what it targets, and turns the resolved targets into a
//! [`Plan`]: operations on the substrate (or the subject) to apply now, and
//! the operations that undo them when the fault is held for a while. The
//! driver resolves members, records each operation in the trace, applies it
//! and holds the undo; whether a substrate can host a fault follows from
//! the [`Primitive`]s its plan uses, decided in one place
//! ([`crate::matrix`]). Adding a fault is one file here and one line in
//! the `registry!` list.

pub mod select;

use crate::trace::FaultKind;
use crate::util::Dur;
use select::{IsolateSet, MemberSelector};
use serde::de::{self, MapAccess, Visitor};
use std::fmt;
use std::time::Duration;

/// Declares each fault's module and lists its type, in one line per fault.
macro_rules! registry {
    ($($module:ident::$fault:ident),* $(,)?) => {
        $(mod $module;)*

        /// Every fault a suite can name, in `raftcert list` order.
        pub fn registry() -> &'static [&'static dyn Fault] {
            &[$(&$module::$fault),*]
        }
    };
}

registry! {
    kill::Kill,
    restart::Restart,
    freeze::Freeze,
    partition::Partition,
    disconnect::Disconnect,
    delete_pod::DeletePod,
    lose_volume::LoseVolume,
    full_restart::FullRestart,
    crash_deployer::CrashDeployer,
    delay::Delay,
    stall::Stall,
    stop_node::StopNode,
    drain_node::DrainNode,
}

/// The fault a suite key (or one of its aliases) names.
pub fn find(name: &str) -> Option<FaultRef> {
    registry()
        .iter()
        .find(|f| f.name() == name || f.aliases().contains(&name))
        .map(|f| FaultRef(*f))
}

/// The names a suite may use, for error messages.
pub fn names() -> Vec<&'static str> {
    registry().iter().map(|f| f.name()).collect()
}

/// What a fault acts on, resolved by the driver before it plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targeting {
    /// Nothing on the substrate (the subject itself).
    Nothing,
    /// One member, by `member:` (or the bare selector).
    Member,
    /// One member, named by `member:` but found only when the fault's
    /// moment comes (a joiner that does not exist yet when it is armed).
    MemberAtItsMoment,
    /// A set of members cut off from the rest, by `isolate:`.
    Isolate,
    /// Every member the step wants.
    Wanted,
}

/// A fault: one file in this folder.
pub trait Fault: Sync + Send {
    /// The key a suite writes it under, and the name `raftcert list` shows.
    fn name(&self) -> &'static str;
    /// Other keys accepted for it (`isolate` for `partition`, as
    /// `inject: { fault: isolate }` reads).
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }
    /// One line for `raftcert list`.
    fn summary(&self) -> &'static str;
    fn targeting(&self) -> Targeting;
    /// Whether `for:` is required (a fault held for a while, then undone).
    fn held(&self) -> bool {
        false
    }
    /// Whether it waits for a moment (`when:`) before it strikes.
    fn waits(&self) -> bool {
        false
    }
    /// Whether it slows links down (`latency:`, `jitter:`).
    fn takes_latency(&self) -> bool {
        false
    }
    /// The primitives its plan may use: what a substrate must offer.
    fn primitives(&self) -> &'static [Primitive];
    /// Checks arguments beyond their shape (which [`FaultArgs`] checks).
    fn check(&self, _args: &FaultArgs) -> Result<(), String> {
        Ok(())
    }
    /// The operations for resolved targets.
    fn plan(&self, args: &FaultArgs, targets: &Targets) -> Plan;
}

/// A registered fault, comparable and printable by name.
#[derive(Clone, Copy)]
pub struct FaultRef(pub &'static dyn Fault);

impl FaultRef {
    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

impl std::ops::Deref for FaultRef {
    type Target = dyn Fault;
    fn deref(&self) -> &Self::Target {
        self.0
    }
}

impl fmt::Debug for FaultRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

impl PartialEq for FaultRef {
    fn eq(&self, other: &Self) -> bool {
        self.0.name() == other.0.name()
    }
}
impl Eq for FaultRef {}

impl<'de> serde::Deserialize<'de> for FaultRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        find(&name).ok_or_else(|| {
            de::Error::custom(format!(
                "unknown fault {name:?}: expected one of {}",
                names().join(", ")
            ))
        })
    }
}

/// What a substrate (or, for [`Primitive::CrashSubject`], the subject)
/// must be able to do for a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Primitive {
    /// SIGKILL the member; its restart policy brings it back.
    Kill,
    /// Stop it gracefully; its restart policy brings it back.
    Stop,
    /// Remove the member's pod, keep its volume.
    DeletePod,
    /// Remove the member's pod and its volume.
    LoseVolume,
    /// SIGSTOP, later SIGCONT.
    Freeze,
    /// Cut the member off from everything, the harness included.
    Disconnect,
    /// Drop traffic between two sets of members; the harness still reaches
    /// both.
    Cut,
    /// Hold traffic on chosen links for a fixed time plus a jitter, in
    /// order.
    Delay,
    /// Restart the reconciler (deployer process or operator pods).
    CrashSubject,
    /// Stop the node a member runs on, later start it again.
    StopNode,
    /// Cordon and drain the node a member runs on, later uncordon it.
    DrainNode,
}

impl Primitive {
    pub fn name(self) -> &'static str {
        match self {
            Primitive::Kill => "kill",
            Primitive::Stop => "stop",
            Primitive::DeletePod => "delete-pod",
            Primitive::LoseVolume => "lose-volume",
            Primitive::Freeze => "freeze",
            Primitive::Disconnect => "disconnect",
            Primitive::Cut => "cut",
            Primitive::Delay => "delay",
            Primitive::CrashSubject => "crash-subject",
            Primitive::StopNode => "stop-node",
            Primitive::DrainNode => "drain-node",
        }
    }

    /// Whether it acts on a whole node (every pod there, of every run).
    pub fn acts_on_a_node(self) -> bool {
        matches!(self, Primitive::StopNode | Primitive::DrainNode)
    }
}

/// One thing to do to the cluster. The driver records each in the trace
/// (`fault-injected`, with the trace name below) just before applying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Kill(String),
    Stop(String),
    DeletePod(String),
    LoseVolume(String),
    Freeze(String),
    Thaw(String),
    Disconnect(String),
    Reconnect(String),
    /// Cut `isolated` off from `rest`; then one write per member on each
    /// side (`write-probe`, for N1).
    Cut {
        isolated: Vec<String>,
        rest: Vec<String>,
    },
    /// Undo every cut.
    Heal,
    /// Delay traffic between `slot` and each of `peers`, both ways, by
    /// `latency` plus up to `jitter` either way.
    Delay {
        slot: String,
        peers: Vec<String>,
        latency: Duration,
        jitter: Duration,
    },
    /// Undo the delays on `slot`'s links.
    Undelay {
        slot: String,
    },
    /// Arms a freeze of `member` for `duration`, at `when`: the driver
    /// waits for that moment, finds the member then, freezes it
    /// (`Op::Freeze`) and thaws it after.
    Stall {
        member: MemberSelector,
        when: Moment,
        duration: Duration,
    },
    CrashSubject,
    /// Stop the node `member` runs on; `StartNode` starts that node again.
    StopNode(String),
    StartNode(String),
    /// Cordon and drain the node `member` runs on; `UncordonNode` lets it
    /// take pods again.
    DrainNode(String),
    UncordonNode(String),
}

impl Op {
    /// What a substrate needs to apply it; `None` for undos, which come
    /// with the operation they undo.
    pub fn primitive(&self) -> Option<Primitive> {
        match self {
            Op::Kill(_) => Some(Primitive::Kill),
            Op::Stop(_) => Some(Primitive::Stop),
            Op::DeletePod(_) => Some(Primitive::DeletePod),
            Op::LoseVolume(_) => Some(Primitive::LoseVolume),
            Op::Freeze(_) => Some(Primitive::Freeze),
            Op::Disconnect(_) => Some(Primitive::Disconnect),
            Op::Cut { .. } => Some(Primitive::Cut),
            Op::Delay { .. } => Some(Primitive::Delay),
            Op::Stall { .. } => Some(Primitive::Freeze),
            Op::CrashSubject => Some(Primitive::CrashSubject),
            Op::StopNode(_) => Some(Primitive::StopNode),
            Op::DrainNode(_) => Some(Primitive::DrainNode),
            Op::Thaw(_)
            | Op::Reconnect(_)
            | Op::Heal
            | Op::Undelay { .. }
            | Op::StartNode(_)
            | Op::UncordonNode(_) => None,
        }
    }

    /// The member a one-member operation acts on.
    pub fn slot(&self) -> Option<&str> {
        match self {
            Op::Kill(s)
            | Op::Stop(s)
            | Op::DeletePod(s)
            | Op::LoseVolume(s)
            | Op::Freeze(s)
            | Op::Thaw(s)
            | Op::Disconnect(s)
            | Op::Reconnect(s)
            | Op::StopNode(s)
            | Op::StartNode(s)
            | Op::DrainNode(s)
            | Op::UncordonNode(s)
            | Op::Delay { slot: s, .. }
            | Op::Undelay { slot: s } => Some(s),
            Op::Cut { .. } | Op::Heal | Op::CrashSubject | Op::Stall { .. } => None,
        }
    }

    /// The name the trace records it under (`fault-injected`).
    pub fn trace_name(&self) -> FaultKind {
        match self {
            Op::Kill(_) => FaultKind::KILL,
            Op::Stop(_) => FaultKind::STOP,
            Op::DeletePod(_) => FaultKind::DELETE_POD,
            Op::LoseVolume(_) => FaultKind::LOSE_VOLUME,
            Op::Freeze(_) => FaultKind::FREEZE,
            Op::Thaw(_) => FaultKind::THAW,
            Op::Disconnect(_) => FaultKind::DISCONNECT,
            Op::Reconnect(_) => FaultKind::RECONNECT,
            Op::Cut { .. } => FaultKind::ISOLATE,
            Op::Heal => FaultKind::HEAL,
            Op::Delay { .. } => FaultKind::DELAY,
            Op::Undelay { .. } => FaultKind::UNDELAY,
            Op::Stall { .. } => FaultKind::STALL,
            Op::CrashSubject => FaultKind::CRASH_DEPLOYER,
            Op::StopNode(_) => FaultKind::STOP_NODE,
            Op::StartNode(_) => FaultKind::START_NODE,
            Op::DrainNode(_) => FaultKind::DRAIN_NODE,
            Op::UncordonNode(_) => FaultKind::UNCORDON_NODE,
        }
    }

    /// Whether the member's process goes away and a new one must run
    /// before the step can settle.
    pub fn replaces_member(&self) -> bool {
        matches!(
            self,
            Op::Kill(_)
                | Op::Stop(_)
                | Op::DeletePod(_)
                | Op::LoseVolume(_)
                | Op::StopNode(_)
                | Op::DrainNode(_)
        )
    }
}

/// What a fault does now, and what undoes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub apply: Vec<Op>,
    /// Applied when the fault's `for:` is up, or when its step ends.
    pub undo: Vec<Op>,
}

/// Targets resolved from a fault's selectors by the driver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// `Member`: the one member. `Isolate`: the members cut off.
    /// `Wanted`: every member the step wants.
    pub members: Vec<String>,
    /// Running members not among `members` (the other side of a cut).
    pub rest: Vec<String>,
}

/// A fault's arguments as a suite writes them: a bare member selector
/// (`kill: leader`) or a map (`freeze: { member: follower, for: 3s }`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultArgs {
    pub member: Option<MemberSelector>,
    pub isolate: Option<IsolateSet>,
    /// `for:`: how long a held fault holds.
    pub duration: Option<Duration>,
    /// `latency:`, for faults that slow links down.
    pub latency: Option<Duration>,
    /// `jitter:`: up to this much more or less than `latency`.
    pub jitter: Option<Duration>,
    /// `when:`, for a fault that waits for a moment: the member's next
    /// start, or the next member added.
    pub when: Option<Moment>,
}

/// A moment a waiting fault strikes at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// The member's next process start.
    Start,
    /// The next member added to the cluster.
    MemberAdd,
}

impl<'de> serde::Deserialize<'de> for Moment {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "start" => Ok(Moment::Start),
            "member-add" => Ok(Moment::MemberAdd),
            other => Err(de::Error::custom(format!(
                "unknown moment {other:?}: expected start or member-add"
            ))),
        }
    }
}

impl FaultArgs {
    /// Checks the arguments against what `fault` targets and needs.
    pub fn check_for(&self, fault: &dyn Fault, mid_step: bool) -> Result<(), String> {
        let name = fault.name();
        match fault.targeting() {
            Targeting::Member | Targeting::MemberAtItsMoment
                if self.member.is_none() && self.isolate.is_none() =>
            {
                return Err(format!("{name} needs a member"));
            }
            Targeting::Member | Targeting::MemberAtItsMoment if self.isolate.is_some() => {
                return Err(format!("{name} takes member:, not isolate:"));
            }
            Targeting::Isolate if self.member.is_none() && self.isolate.is_none() => {
                return Err(format!("{name} needs isolate: (a member or a list)"));
            }
            Targeting::Nothing | Targeting::Wanted
                if self.member.is_some() || self.isolate.is_some() =>
            {
                return Err(format!("{name} takes no member"));
            }
            _ => {}
        }
        // Mid-step, a held fault without `for:` holds until its step ends.
        if fault.held() && self.duration.is_none() && !mid_step {
            return Err(format!("{name} needs for: (how long it holds)"));
        }
        if !fault.held() && self.duration.is_some() {
            return Err(format!("{name} is not held: for: does not apply"));
        }
        if fault.takes_latency() != self.latency.is_some() {
            return Err(if fault.takes_latency() {
                format!("{name} needs latency: (how much longer each link takes)")
            } else {
                format!("{name} takes no latency:")
            });
        }
        if self.jitter.is_some() && self.latency.is_none() {
            return Err(format!("{name}: jitter: needs latency:"));
        }
        if fault.waits() != self.when.is_some() {
            return Err(if fault.waits() {
                format!("{name} needs when: (start or member-add)")
            } else {
                format!("{name} takes no when:")
            });
        }
        fault.check(self)
    }

    /// The arguments as `fault` takes them, checked: a partition written
    /// with `member:` (as `inject: { fault: isolate, member: follower }`
    /// reads) cuts that member off.
    pub fn for_fault(mut self, fault: &dyn Fault, mid_step: bool) -> Result<FaultArgs, String> {
        if fault.targeting() == Targeting::Isolate && self.isolate.is_none() {
            self.isolate = self.member.take().map(IsolateSet::One);
        }
        self.check_for(fault, mid_step)?;
        Ok(self)
    }

    /// The selectors a driver resolves, in order.
    pub fn selectors(&self) -> Vec<MemberSelector> {
        match (self.isolate, self.member) {
            (Some(set), _) => set.selectors(),
            (None, Some(member)) => vec![member],
            (None, None) => Vec::new(),
        }
    }

    /// A short form for step names, e.g. `leader for 3s`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(set) = self.isolate {
            parts.push(set.describe());
        } else if let Some(member) = self.member {
            parts.push(member.describe());
        }
        if let Some(latency) = self.latency {
            let jitter = self
                .jitter
                .map(|j| format!("±{}", crate::util::format_duration(j)))
                .unwrap_or_default();
            parts.push(format!(
                "+{}{jitter}",
                crate::util::format_duration(latency)
            ));
        }
        if let Some(d) = self.duration {
            parts.push(format!("for {}", crate::util::format_duration(d)));
        }
        parts.join(" ")
    }
}

impl<'de> serde::Deserialize<'de> for FaultArgs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FaultArgsVisitor)
    }
}

struct FaultArgsVisitor;

impl<'de> Visitor<'de> for FaultArgsVisitor {
    type Value = FaultArgs;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member (an ordinal, leader, follower or random) or a map of fault arguments")
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<FaultArgs, E> {
        let ordinal =
            u32::try_from(n).map_err(|_| E::custom(format!("member {n} out of range")))?;
        Ok(FaultArgs {
            member: Some(MemberSelector::Ordinal(ordinal)),
            ..FaultArgs::default()
        })
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<FaultArgs, E> {
        let n = u64::try_from(n).map_err(|_| E::custom(format!("member {n} out of range")))?;
        self.visit_u64(n)
    }

    fn visit_str<E: de::Error>(self, word: &str) -> Result<FaultArgs, E> {
        Ok(FaultArgs {
            member: Some(MemberSelector::from_word(word).map_err(E::custom)?),
            ..FaultArgs::default()
        })
    }

    fn visit_unit<E: de::Error>(self) -> Result<FaultArgs, E> {
        Ok(FaultArgs::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FaultArgs, A::Error> {
        let mut args = FaultArgs::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "member" => args.member = Some(map.next_value()?),
                "isolate" => args.isolate = Some(map.next_value()?),
                "for" => args.duration = Some(map.next_value::<Dur>()?.0),
                "latency" => args.latency = Some(map.next_value::<Dur>()?.0),
                "jitter" => args.jitter = Some(map.next_value::<Dur>()?.0),
                "when" => args.when = Some(map.next_value()?),
                other => {
                    return Err(de::Error::unknown_field(other, FAULT_ARG_FIELDS));
                }
            }
        }
        Ok(args)
    }
}

/// Every argument a fault may take.
pub const FAULT_ARG_FIELDS: &[&str] = &["member", "isolate", "for", "latency", "jitter", "when"];

/// The one member of a `Member` fault.
fn the_member(targets: &Targets) -> String {
    targets.members.first().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_has_a_unique_name_and_is_found_by_it() {
        let mut seen = std::collections::BTreeSet::new();
        for fault in registry() {
            assert!(seen.insert(fault.name()), "{} twice", fault.name());
            for alias in fault.aliases() {
                assert!(seen.insert(alias), "{alias} twice");
            }
            assert_eq!(find(fault.name()).map(|f| f.name()), Some(fault.name()));
            assert!(!fault.primitives().is_empty(), "{}", fault.name());
        }
    }

    #[test]
    fn a_plan_uses_only_the_primitives_its_fault_declares() {
        let targets = Targets {
            members: vec!["m0".into(), "m1".into()],
            rest: vec!["m2".into()],
        };
        for fault in registry() {
            let args = FaultArgs {
                member: matches!(
                    fault.targeting(),
                    Targeting::Member | Targeting::MemberAtItsMoment
                )
                .then_some(MemberSelector::Leader),
                isolate: matches!(fault.targeting(), Targeting::Isolate)
                    .then_some(IsolateSet::One(MemberSelector::Leader)),
                duration: fault.held().then_some(Duration::from_secs(1)),
                latency: fault.takes_latency().then_some(Duration::from_millis(50)),
                jitter: None,
                when: fault.waits().then_some(Moment::Start),
            };
            assert_eq!(args.check_for(*fault, false), Ok(()), "{}", fault.name());
            let plan = fault.plan(&args, &targets);
            assert!(!plan.apply.is_empty(), "{} does nothing", fault.name());
            for op in &plan.apply {
                let needed = op.primitive().expect("an applied op needs a primitive");
                assert!(
                    fault.primitives().contains(&needed),
                    "{} uses {needed:?} undeclared",
                    fault.name()
                );
            }
            // A held fault has an undo, unless it waits for its moment (the
            // driver holds what it strikes then).
            assert_eq!(
                fault.held() && !fault.waits(),
                !plan.undo.is_empty(),
                "{}",
                fault.name()
            );
        }
    }

    #[test]
    fn arguments_are_checked_against_the_fault() {
        let kill = find("kill").expect("kill");
        assert_eq!(
            FaultArgs::default().check_for(kill.0, false),
            Err("kill needs a member".into())
        );
        let freeze = find("freeze").expect("freeze");
        let leader = FaultArgs {
            member: Some(MemberSelector::Leader),
            ..FaultArgs::default()
        };
        assert_eq!(
            leader.check_for(freeze.0, false),
            Err("freeze needs for: (how long it holds)".into())
        );
        // Mid-step it may hold until the step ends.
        assert_eq!(leader.check_for(freeze.0, true), Ok(()));
        let crash = find("crash-deployer").expect("crash");
        assert_eq!(
            leader.check_for(crash.0, false),
            Err("crash-deployer takes no member".into())
        );
        assert_eq!(find("isolate").map(|f| f.name()), Some("partition"));
    }
}
