use super::*;

/// Learner-first scale-out.
///
/// Follows etcd-io/etcd-operator `internal/controller/etcdcluster_controller.go`
/// `reconcileClusterState`: one learner at a time (`AddMember(.., true)`),
/// started with `existing`, promoted once `IsLearnerReady`.
pub struct Learner;

impl Deployer for Learner {
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
        // Promote a started learner; etcd refuses until it has caught up,
        // and the refusal comes back as a result, so retrying is enough.
        if let Some(learner) = obs.members().iter().find(|m| m.is_learner) {
            if obs
                .slot_of(learner)
                .is_some_and(|s| s.phase == Phase::Running)
            {
                actions.push(Action::MemberPromote {
                    id: learner.id.clone(),
                });
            }
            return Ok(actions);
        }
        if remove_members_that_lost_data(obs, &mut actions) || scale_in(obs, &mut actions) {
            return Ok(actions);
        }
        if let Some(slot) = next_slot_to_add(obs) {
            actions.push(Action::MemberAdd {
                peer_url: slot.peer_url.clone(),
                learner: true,
            });
        }
        Ok(actions)
    }
}
