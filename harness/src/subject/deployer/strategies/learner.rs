use super::*;

/// Learner-first scale-out.
///
/// Follows etcd-io/etcd-operator `internal/controller/etcdcluster_controller.go`
/// `reconcileClusterState`: one learner at a time (`AddMember(.., true)`),
/// started with `existing`, promoted once `IsLearnerReady`.
pub struct Learner;

impl Deployer for Learner {
    fn reconcile(&mut self, obs: &Observation) -> Result<Vec<Action>, super::super::DeployerError> {
        Ok(one_change_at_a_time(obs, Genesis::Seed, true))
    }
}
