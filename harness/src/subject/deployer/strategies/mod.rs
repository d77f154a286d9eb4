//! Built-in strategies, each modelled on a real operator, plus deliberately
//! broken ones that the suite must catch.

mod broken;
mod discovery;
mod discovery_service;
mod learner;
mod pd;
mod pd_discovery;
mod seed_join;
mod static_bootstrap;

use super::{Deployer, DeployerContext};
use crate::engine::EngineKind;
use crate::model::{Action, Observation, Phase, SlotView, Spec};

pub use discovery::Discovery;
pub use learner::Learner;
pub use pd::PdJoin;
pub use pd_discovery::PdDiscovery;
pub use seed_join::SeedJoin;
pub use static_bootstrap::StaticBootstrap;

/// A registered built-in strategy.
pub struct StrategyInfo {
    pub name: &'static str,
    /// Run by default and expected to pass: `false` for the deliberately
    /// broken ones and for faithful models of an operator, which are judged
    /// like any subject, only when asked for.
    pub correct: bool,
    /// The invariant a broken strategy must trip.
    pub expected_violation: Option<&'static str>,
    pub summary: &'static str,
    /// The engines it deploys.
    pub engines: &'static [EngineKind],
    build: fn(&DeployerContext) -> Box<dyn Deployer>,
}

impl StrategyInfo {
    pub fn build(&self, ctx: &DeployerContext) -> Box<dyn Deployer> {
        (self.build)(ctx)
    }

    pub fn deploys(&self, engine: EngineKind) -> bool {
        self.engines.contains(&engine)
    }
}

const ETCD: &[EngineKind] = &[EngineKind::Etcd];
const PD: &[EngineKind] = &[EngineKind::Pd];

pub fn registry() -> &'static [StrategyInfo] {
    &[
        StrategyInfo {
            name: "seed-join",
            correct: true,
            expected_violation: None,
            summary: "seed starts new alone, then MemberAdd + existing, one at a time (coreos etcd-operator)",
            engines: ETCD,
            build: |_| Box::new(SeedJoin),
        },
        StrategyInfo {
            name: "static",
            correct: true,
            expected_violation: None,
            summary: "all N start new with one initial-cluster; later members join (bitnami, etcd-druid, tidb-operator v2)",
            engines: ETCD,
            build: |_| Box::new(StaticBootstrap),
        },
        StrategyInfo {
            name: "discovery",
            correct: true,
            expected_violation: None,
            summary: "start scripts ask a discovery service; the last asker at N bootstraps alone, others join (tidb-operator v1)",
            engines: ETCD,
            build: |ctx| Box::new(Discovery::start(ctx)),
        },
        StrategyInfo {
            name: "learner",
            correct: true,
            expected_violation: None,
            summary: "add as learner, start existing, promote once caught up (etcd-io/etcd-operator)",
            engines: ETCD,
            build: |_| Box::new(Learner),
        },
        StrategyInfo {
            name: "pd-seed-join",
            correct: true,
            expected_violation: None,
            summary: "one PD starts alone, the others start with --join (PD adds itself), one at a time",
            engines: PD,
            build: |_| Box::new(PdJoin::seed()),
        },
        StrategyInfo {
            name: "tidb-v2-static",
            correct: true,
            expected_violation: None,
            summary: "all N PDs start with one initial-cluster; later ones --join the running PDs (tidb-operator v2)",
            engines: PD,
            build: |_| Box::new(PdJoin::static_bootstrap()),
        },
        StrategyInfo {
            name: "tidb-v1-discovery",
            correct: false,
            expected_violation: None,
            summary: "MODEL of tidb-operator v1.6.6 on PD, hazards included: start scripts ask a discovery service; the asker completing the replicas bootstraps alone, others --join",
            engines: PD,
            build: |ctx| Box::new(PdDiscovery::start(ctx)),
        },
        StrategyInfo {
            name: "broken-all-new-alone",
            correct: false,
            expected_violation: Some("I1"),
            summary: "BROKEN: every member starts new with only itself in initial-cluster",
            engines: ETCD,
            build: |_| Box::new(broken::AllNewAlone),
        },
        StrategyInfo {
            name: "broken-lost-volume-restarts-new",
            correct: false,
            expected_violation: Some("I6"),
            summary: "BROKEN: a member that lost its data is restarted new with the original initial-cluster",
            engines: ETCD,
            build: |_| Box::new(broken::LostVolumeRestartsNew::default()),
        },
        StrategyInfo {
            name: "broken-join-without-add",
            correct: false,
            expected_violation: Some("I2"),
            summary: "BROKEN: later members start existing without a MemberAdd",
            engines: ETCD,
            build: |_| Box::new(broken::JoinWithoutAdd),
        },
    ]
}

pub fn find(name: &str) -> Option<&'static StrategyInfo> {
    registry().iter().find(|s| s.name == name)
}

/// The engine binary with the slot's base flags plus `extra`.
pub(crate) fn engine_spec(obs: &Observation, slot: &SlotView, extra: Vec<String>) -> Spec {
    let mut args = slot.base_args.clone();
    args.extend(extra);
    Spec {
        command: obs.engine.binary.clone(),
        args,
        env: Default::default(),
    }
}

pub(crate) fn new_cluster_flags(initial_cluster: String, token: &str) -> Vec<String> {
    vec![
        format!("--initial-cluster={initial_cluster}"),
        "--initial-cluster-state=new".to_string(),
        format!("--initial-cluster-token={token}"),
    ]
}

pub(crate) fn join_flags(obs: &Observation) -> Vec<String> {
    vec![
        format!("--initial-cluster={}", obs.initial_cluster_of_members()),
        "--initial-cluster-state=existing".to_string(),
        format!("--initial-cluster-token={}", obs.token),
    ]
}

/// Nothing has ever run and no member answers: the cluster does not exist.
pub(crate) fn cluster_absent(obs: &Observation) -> bool {
    obs.members.is_none()
        && obs
            .slots
            .iter()
            .all(|s| s.phase == Phase::Empty && !s.has_data)
}

/// Restarts empty desired slots that still hold data (pod loss): the
/// engine ignores bootstrap flags when a WAL exists.
pub(crate) fn restart_slots_with_data(obs: &Observation, actions: &mut Vec<Action>) {
    for slot in obs.desired_slots() {
        if slot.phase == Phase::Empty && slot.has_data {
            actions.push(Action::Start {
                slot: slot.name.clone(),
                spec: engine_spec(obs, slot, Vec::new()),
            });
        }
    }
}

/// A desired slot that lost its data while its member, once started, is
/// still registered: remove that member so it can be re-added with a new ID.
pub(crate) fn remove_members_that_lost_data(obs: &Observation, actions: &mut Vec<Action>) -> bool {
    for slot in obs.desired_slots() {
        if slot.phase == Phase::Empty
            && !slot.has_data
            && let Some(member) = obs.member_of(slot)
            && member.is_started()
        {
            actions.push(Action::MemberRemove {
                id: member.id.clone(),
            });
            return true;
        }
    }
    false
}

/// Scale-in: remove the member of the highest surplus slot, then stop the
/// slot and delete its data so a later scale-out starts clean.
pub(crate) fn scale_in(obs: &Observation, actions: &mut Vec<Action>) -> bool {
    let mut surplus: Vec<&SlotView> = obs.surplus_slots().collect();
    surplus.sort_by_key(|s| std::cmp::Reverse(s.ordinal));
    for slot in surplus {
        if let Some(member) = obs.member_of(slot) {
            actions.push(Action::MemberRemove {
                id: member.id.clone(),
            });
            return true;
        }
        if obs.members.is_some() && slot.phase != Phase::Empty {
            actions.push(Action::Stop {
                slot: slot.name.clone(),
            });
            return true;
        }
        if slot.phase == Phase::Empty && slot.has_data {
            actions.push(Action::Wipe {
                slot: slot.name.clone(),
            });
            return true;
        }
    }
    false
}

/// Starts, as a joiner, every empty desired slot whose member was added but
/// has not started yet.
pub(crate) fn start_added_members(obs: &Observation, actions: &mut Vec<Action>) {
    for slot in obs.desired_slots() {
        if slot.phase == Phase::Empty
            && !slot.has_data
            && let Some(member) = obs.member_of(slot)
            && !member.is_started()
        {
            actions.push(Action::Start {
                slot: slot.name.clone(),
                spec: engine_spec(obs, slot, join_flags(obs)),
            });
        }
    }
}

/// How a cluster is created from nothing.
pub(crate) enum Genesis {
    /// The lowest desired slot starts alone; the others join one by one.
    Seed,
    /// Every desired slot starts at once with one full initial cluster.
    Static,
}

/// The slots that start a cluster that does not exist yet.
fn genesis_members<'o>(obs: &'o Observation, genesis: &Genesis) -> Vec<&'o SlotView> {
    match genesis {
        Genesis::Seed => obs
            .desired_slots()
            .min_by_key(|s| s.ordinal)
            .into_iter()
            .collect(),
        Genesis::Static => obs.desired_slots().collect(),
    }
}

/// Starts for the genesis of a cluster that does not exist yet, each with
/// the bootstrap flags `flags` makes of the `name=peer,...` list.
pub(crate) fn genesis_starts(
    obs: &Observation,
    genesis: &Genesis,
    flags: impl Fn(&str) -> Vec<String>,
) -> Vec<Action> {
    let members = genesis_members(obs, genesis);
    let initial = members
        .iter()
        .map(|s| format!("{}={}", s.name, s.peer_url))
        .collect::<Vec<_>>()
        .join(",");
    members
        .into_iter()
        .map(|slot| Action::Start {
            slot: slot.name.clone(),
            spec: engine_spec(obs, slot, flags(&initial)),
        })
        .collect()
}

/// etcd's genesis: `new`, one initial cluster, the run's token.
pub(crate) fn genesis_actions(obs: &Observation, genesis: Genesis) -> Vec<Action> {
    genesis_starts(obs, &genesis, |initial| {
        new_cluster_flags(initial.to_string(), &obs.token)
    })
}

/// The reconcile loop every built-in member-by-member strategy shares: one
/// genesis, pods restarted with their data, added members started, then at
/// most one membership change per reconcile and none while a member is
/// unstarted (or, with learners, not promoted yet).
pub(crate) fn one_change_at_a_time(
    obs: &Observation,
    genesis: Genesis,
    learners: bool,
) -> Vec<Action> {
    if cluster_absent(obs) {
        return genesis_actions(obs, genesis);
    }
    let mut actions = Vec::new();
    restart_slots_with_data(obs, &mut actions);
    if obs.members.is_none() {
        return actions;
    }
    start_added_members(obs, &mut actions);
    if !actions.is_empty() || has_unstarted_member(obs) {
        return actions;
    }
    if learners && let Some(learner) = obs.members().iter().find(|m| m.is_learner) {
        // etcd refuses until the learner has caught up; the refusal comes
        // back as a result, so retrying is enough.
        if obs
            .slot_of(learner)
            .is_some_and(|s| s.phase == Phase::Running)
        {
            actions.push(Action::MemberPromote {
                id: learner.id.clone(),
            });
        }
        return actions;
    }
    if remove_members_that_lost_data(obs, &mut actions) || scale_in(obs, &mut actions) {
        return actions;
    }
    // etcd accepts a MemberAdd on a fresh seed before it has decided its
    // cluster version, but the new member then fails its compatibility
    // check at every start, and with two voters and one up the seed can
    // never decide: the cluster is stuck.
    if !obs.cluster_version_decided() {
        return actions;
    }
    if let Some(slot) = next_slot_to_add(obs) {
        actions.push(Action::MemberAdd {
            peer_url: slot.peer_url.clone(),
            learner: learners,
        });
    }
    actions
}

/// The lowest desired slot that has no member yet.
pub(crate) fn next_slot_to_add(obs: &Observation) -> Option<&SlotView> {
    obs.desired_slots()
        .filter(|s| obs.member_of(s).is_none())
        .min_by_key(|s| s.ordinal)
}

pub(crate) fn has_unstarted_member(obs: &Observation) -> bool {
    obs.members().iter().any(|m| !m.is_started())
}

/// Observations for the strategies' tests.
#[cfg(test)]
pub(super) mod test_support {
    use super::*;
    use crate::model::{EngineView, MembersView, ServiceView};
    use crate::trace::MemberInfo;

    pub fn slot(ordinal: u32, phase: Phase) -> SlotView {
        let ip = format!("127.0.0.{}", 10 + ordinal);
        SlotView {
            name: format!("m{ordinal}"),
            ordinal,
            peer_url: format!("http://{ip}:2380"),
            client_url: format!("http://{ip}:2379"),
            observe_url: format!("http://{ip}:2379"),
            data_dir: format!("/data/m{ordinal}"),
            base_args: vec![format!("--name=m{ordinal}")],
            phase,
            has_data: phase == Phase::Running,
            restarts: 0,
            last_exit: None,
            spec: None,
        }
    }

    /// A seed that runs alone and answers, with three replicas desired.
    pub fn seed_only(cluster_version: Option<&str>) -> Observation {
        let seed = slot(0, Phase::Running);
        Observation {
            protocol: crate::model::PROTOCOL_VERSION,
            engine: EngineView {
                kind: "etcd".into(),
                version: "3.5.1".into(),
                binary: "etcd".into(),
            },
            seq: 3,
            token: "t".into(),
            service: ServiceView {
                ip: "127.0.0.1".into(),
                port: 10261,
            },
            desired_replicas: 3,
            members: Some(MembersView {
                cluster_id: "c".into(),
                via: "m0".into(),
                age_ms: 5,
                members: vec![MemberInfo {
                    id: "a".into(),
                    name: "m0".into(),
                    peer_urls: vec![seed.peer_url.clone()],
                    client_urls: vec![seed.client_url.clone()],
                    is_learner: false,
                }],
                cluster_version: cluster_version.map(str::to_string),
            }),
            slots: vec![seed, slot(1, Phase::Empty), slot(2, Phase::Empty)],
            results: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::seed_only;
    use super::*;

    #[test]
    fn no_member_add_before_the_cluster_version_is_decided() {
        for learners in [false, true] {
            let actions = one_change_at_a_time(&seed_only(None), Genesis::Seed, learners);
            assert!(actions.is_empty(), "learners={learners}: {actions:?}");
            let actions = one_change_at_a_time(&seed_only(Some("3.5.0")), Genesis::Seed, learners);
            assert_eq!(
                actions,
                vec![Action::MemberAdd {
                    peer_url: "http://127.0.0.11:2380".into(),
                    learner: learners,
                }]
            );
        }
    }
}
