//! Deliberately broken strategies: each reproduces a bug class that the
//! invariants must catch.

use super::*;
use crate::subject::deployer::DeployerError;

/// Every member bootstraps its own single-member cluster: the classic
/// split brain of a "am I first?" decision that always answers yes.
pub struct AllNewAlone;

impl Deployer for AllNewAlone {
    fn reconcile(&mut self, obs: &Observation) -> Result<Vec<Action>, DeployerError> {
        Ok(obs
            .desired_slots()
            .filter(|s| s.phase == Phase::Empty)
            .map(|slot| Action::Start {
                slot: slot.name.clone(),
                spec: engine_spec(
                    obs,
                    slot,
                    new_cluster_flags(format!("{}={}", slot.name, slot.peer_url), &obs.token),
                ),
            })
            .collect())
    }
}

/// Static bootstrap that restarts a member whose volume was lost with its
/// original `new` configuration under the same name (etcd #11410, cozystack
/// etcd-operator #98).
#[derive(Default)]
pub struct LostVolumeRestartsNew {
    genesis: Option<String>,
}

impl Deployer for LostVolumeRestartsNew {
    fn reconcile(&mut self, obs: &Observation) -> Result<Vec<Action>, DeployerError> {
        let mut actions = Vec::new();
        if cluster_absent(obs) {
            let initial = obs
                .desired_slots()
                .map(|s| format!("{}={}", s.name, s.peer_url))
                .collect::<Vec<_>>()
                .join(",");
            self.genesis = Some(initial);
            return Ok(genesis_actions(obs, Genesis::Static));
        }
        let genesis = self
            .genesis
            .clone()
            .unwrap_or_else(|| obs.initial_cluster_of_members());
        for slot in obs.desired_slots() {
            if slot.phase == Phase::Empty {
                let extra = if slot.has_data {
                    Vec::new()
                } else {
                    new_cluster_flags(genesis.clone(), &obs.token)
                };
                actions.push(Action::Start {
                    slot: slot.name.clone(),
                    spec: engine_spec(obs, slot, extra),
                });
            }
        }
        Ok(actions)
    }
}

/// Seed-join that forgets the MemberAdd: joiners start `existing` with an
/// initial cluster that lists themselves, which the member list does not.
pub struct JoinWithoutAdd;

impl Deployer for JoinWithoutAdd {
    fn reconcile(&mut self, obs: &Observation) -> Result<Vec<Action>, DeployerError> {
        let mut actions = Vec::new();
        let seed = obs.desired_slots().min_by_key(|s| s.ordinal);
        for slot in obs.desired_slots() {
            if slot.phase != Phase::Empty {
                continue;
            }
            let extra = if slot.has_data {
                Vec::new()
            } else if Some(slot.ordinal) == seed.map(|s| s.ordinal) && cluster_absent(obs) {
                new_cluster_flags(format!("{}={}", slot.name, slot.peer_url), &obs.token)
            } else if obs.members.is_some() {
                let mut initial = obs.initial_cluster_of_members();
                initial.push_str(&format!(",{}={}", slot.name, slot.peer_url));
                vec![
                    format!("--initial-cluster={initial}"),
                    "--initial-cluster-state=existing".to_string(),
                    format!("--initial-cluster-token={}", obs.token),
                ]
            } else {
                continue;
            };
            actions.push(Action::Start {
                slot: slot.name.clone(),
                spec: engine_spec(obs, slot, extra),
            });
        }
        Ok(actions)
    }
}
