use super::*;

/// Static N-member bootstrap, later members join after a MemberAdd.
///
/// Follows the bitnami etcd chart (`templates/statefulset.yaml`:
/// `ETCD_INITIAL_CLUSTER` lists all replicas, state `new` at install) and
/// etcd-druid (`internal/component/configmap/etcdconfig.go`
/// `prepareInitialCluster`), and tidb-operator v2's PD group
/// (`pkg/configs/pd/config.go` `Overlay`). Genesis members that start late
/// join with `existing` against the member list, as etcd-backup-restore's
/// `serveConfig` rewrites `initial-cluster` to the current members.
pub struct StaticBootstrap;

impl Deployer for StaticBootstrap {
    fn reconcile(&mut self, obs: &Observation) -> Result<Vec<Action>, super::super::DeployerError> {
        let mut actions = Vec::new();
        if cluster_absent(obs) {
            let initial = obs
                .desired_slots()
                .map(|s| format!("{}={}", s.name, s.peer_url))
                .collect::<Vec<_>>()
                .join(",");
            for slot in obs.desired_slots() {
                actions.push(Action::Start {
                    slot: slot.name.clone(),
                    spec: engine_spec(obs, slot, new_cluster_flags(initial.clone(), &obs.token)),
                });
            }
            return Ok(actions);
        }
        restart_slots_with_data(obs, &mut actions);
        if obs.members.is_none() {
            return Ok(actions);
        }
        // Genesis members that have not started yet, and added joiners.
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
