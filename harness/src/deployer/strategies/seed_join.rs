use super::*;

/// Seed then joins, one member per reconcile.
///
/// Follows coreos/etcd-operator: `pkg/cluster/cluster.go` `startSeedMember`
/// (a single-member `new` cluster) and `pkg/cluster/reconcile.go`
/// `addOneMember` (MemberAdd, then a pod started with `existing`). A member
/// that lost its data is removed and added again (`removeDeadMember`).
pub struct SeedJoin;

impl Deployer for SeedJoin {
    fn reconcile(&mut self, obs: &Observation) -> Result<Vec<Action>, super::super::DeployerError> {
        let mut actions = Vec::new();
        if cluster_absent(obs) {
            if let Some(seed) = obs.desired_slots().min_by_key(|s| s.ordinal) {
                let initial = format!("{}={}", seed.name, seed.peer_url);
                actions.push(Action::Start {
                    slot: seed.name.clone(),
                    spec: engine_spec(obs, seed, new_cluster_flags(initial, &obs.token)),
                });
            }
            return Ok(actions);
        }
        restart_slots_with_data(obs, &mut actions);
        if obs.members.is_none() {
            return Ok(actions);
        }
        start_added_members(obs, &mut actions);
        if !actions.is_empty() || has_unstarted_member(obs) {
            return Ok(actions);
        }
        if remove_members_that_lost_data(obs, &mut actions) || scale_in(obs, &mut actions) {
            return Ok(actions);
        }
        if let Some(slot) = next_slot_to_add(obs) {
            actions.push(Action::MemberAdd {
                peer_url: slot.peer_url.clone(),
                learner: false,
            });
        }
        Ok(actions)
    }
}
