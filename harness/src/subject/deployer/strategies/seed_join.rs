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
        Ok(one_change_at_a_time(obs, Genesis::Seed, false))
    }
}
