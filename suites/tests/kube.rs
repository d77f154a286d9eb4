//! The Kubernetes backend against a real cluster: the plain static
//! StatefulSet profile bootstraps and survives a pod loss, and its
//! scale-out, where nothing adds members, is caught by I2 and I3. On a kind
//! cluster of the local Docker engine, partitions, disconnects and freezes
//! are checked too.
//!
//! Runs when `RAFTCERT_KUBECONFIG` names a cluster whose nodes hold the
//! profile's images, e.g. after
//! `ci/kind/create-cluster raftcert kind-config/single-node.yaml`, `ci/kind/smoke-test raftcert`
//! (which builds and loads `raftcert/etcd-smoke:3.6.5`) and
//! `kind get kubeconfig --name raftcert > /tmp/kc`; otherwise it is skipped
//! with that message.

use raftcert_suites::{node_fault_checks, static_statefulset_profile_checks};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_statefulset_profile_on_a_real_cluster() {
    let Some(kubeconfig) = std::env::var_os("RAFTCERT_KUBECONFIG") else {
        eprintln!(
            "SKIPPED: set RAFTCERT_KUBECONFIG to a cluster's kubeconfig to run the Kubernetes \
             backend test (see the header of suites/tests/kube.rs); the kind test runs the same \
             checks on the cluster it creates"
        );
        return;
    };
    let kubeconfig = std::path::Path::new(&kubeconfig);
    static_statefulset_profile_checks(kubeconfig).await;
    let (client, _) = raftcert::substrate::kube::connect(Some(kubeconfig))
        .await
        .expect("kubeconfig");
    match raftcert::substrate::kube::nodes::NodeAccess::probe(&client).await {
        Ok(_) => node_fault_checks(kubeconfig).await,
        Err(why) => eprintln!("SKIPPED the partition, disconnect and freeze checks: {why}"),
    }
}
