//! The Kubernetes backend against a real cluster: the plain static
//! StatefulSet profile bootstraps and survives a pod loss, and its
//! scale-out, where nothing adds members, is caught by I2 and I3.
//!
//! Runs when `RAFTCERT_KUBECONFIG` names a cluster whose nodes hold the
//! profile's images, e.g. after
//! `ci/kind/create-cluster raftcert kind-config/single-node.yaml`, `ci/kind/smoke-test raftcert`
//! (which builds and loads `raftcert/etcd-smoke:3.6.5`) and
//! `kind get kubeconfig --name raftcert > /tmp/kc`; otherwise it is skipped
//! with that message.

use raftcert::kube::profile::Profile;
use raftcert::kube::{connect, run};
use raftcert::report::RunStatus;
use raftcert::scenario::model::Suite;
use raftcert_suites::repo_root;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_statefulset_profile_on_a_real_cluster() {
    let Some(kubeconfig) = std::env::var_os("RAFTCERT_KUBECONFIG") else {
        eprintln!(
            "SKIPPED: set RAFTCERT_KUBECONFIG to a cluster's kubeconfig to run the Kubernetes \
             backend test (see the header of suites/tests/kube.rs)"
        );
        return;
    };
    let client = connect(Some(std::path::Path::new(&kubeconfig)))
        .await
        .expect("kubeconfig");
    let profile = Arc::new(
        Profile::load(&repo_root().join("fixtures/operators/statefulset-static")).expect("profile"),
    );
    let suite = Arc::new(Suite::builtin().expect("suite"));
    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kube-runs");
    let mut outcomes = Vec::new();
    for (index, name) in ["bootstrap-3", "pod-loss", "scale-out-1-3-5"]
        .into_iter()
        .enumerate()
    {
        let scenario = suite
            .scenarios
            .iter()
            .find(|s| s.name == name)
            .expect("scenario")
            .clone();
        assert_eq!(run::unsupported_step(&profile, &scenario), None);
        let result = run::run_scenario(
            &client,
            run::KubeRunSpec {
                profile: profile.clone(),
                suite: suite.clone(),
                scenario,
                run_id: format!("test-{}-{index}", raftcert::util::unique_suffix() & 0xffff),
                seed: 1,
                dir: out.join(name),
                rel_dir: name.to_string(),
            },
        )
        .await;
        outcomes.push(result);
    }
    let describe = |r: &raftcert::report::RunResult| {
        format!(
            "{} {:?} {:?} {:?}",
            r.scenario,
            r.status,
            r.violated_invariants(),
            r.headline()
        )
    };
    assert_eq!(
        outcomes[0].status,
        RunStatus::Pass,
        "{}",
        describe(&outcomes[0])
    );
    assert_eq!(
        outcomes[1].status,
        RunStatus::Pass,
        "{}",
        describe(&outcomes[1])
    );
    assert_eq!(
        outcomes[2].status,
        RunStatus::Fail,
        "{}",
        describe(&outcomes[2])
    );
    // Each new pod starts `new` with a list that lacks itself (I2), and the
    // membership never grows (I3).
    for id in ["I2", "I3"] {
        assert!(
            outcomes[2].violated_invariants().contains(&id),
            "{id}: {}",
            describe(&outcomes[2])
        );
    }
}
