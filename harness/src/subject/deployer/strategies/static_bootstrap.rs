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
        Ok(one_change_at_a_time(obs, Genesis::Static, false))
    }
}
