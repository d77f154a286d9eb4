//! The conformance suite with members as containers: the same scenarios,
//! strategies, trace and invariants as tests/conformance.rs, through the
//! same driver, but for what containers cannot host here (link delay).

use raftcert::report::RunStatus;
use raftcert::trace::{EventKind, read_trace};
use raftcert_suites::{
    assert_known_pd_join_finding, assert_pd_judged, explain, load_suite, missing_from_matrix,
    output_dir, run_docker, verdict,
};
use rstest::rstest;

const SUITE: &str = "conformance.yaml";

#[test]
fn matrix_covers_every_scenario_of_the_suite() {
    let suite = load_suite(SUITE);
    let docker = raftcert::substrate::SubstrateChoice::Docker { image: None };
    let subject = raftcert::subject::SubjectChoice::Builtin(
        raftcert::subject::deployer::strategies::find("static").expect("static"),
    );
    // What docker cannot host is planned out, with the reason.
    let hosted: Vec<_> = suite
        .scenarios
        .iter()
        .filter(|s| raftcert::matrix::not_covered_because(s, &subject, &docker).is_none())
        .collect();
    assert!(
        hosted.len() < suite.scenarios.len(),
        "link delay is not hosted"
    );
    for matrix in [
        "correct_strategy_passes_on_docker",
        "correct_pd_strategy_passes_on_docker",
    ] {
        let missing = missing_from_matrix(include_str!("docker.rs"), matrix, hosted.clone());
        assert!(
            missing.is_empty(),
            "missing from the docker matrix {matrix}: {missing:?}"
        );
    }
}

/// PD in containers, in the image raftcert builds from the PD binary (with
/// PD's timing file): the same cells as on processes.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correct_pd_strategy_passes_on_docker(
    #[values(
        "bootstrap-1",
        "bootstrap-3",
        "bootstrap-5",
        "scale-out-1-3-5",
        "scale-in-5-3",
        "restart-one",
        "rolling-restart",
        "full-restart",
        "pod-loss",
        "volume-loss",
        "first-member-lost-mid-scale-out",
        "deployer-crash-mid-scale-out",
        "deployer-crash-mid-bootstrap",
        "leader-killed-follower-frozen",
        "leader-partitioned",
        "majority-partitioned",
        "minority-partitioned-mid-scale-out",
        "member-disconnected",
        "first-joiner-stalled"
    )]
    scenario: &str,
    #[values("pd-seed-join", "tidb-v2-static")] strategy: &str,
    #[values("8.5.7", "26.3.4")] version: &str,
) {
    let result = run_docker(SUITE, scenario, strategy, version).await;
    // A fault that lands while a joiner is mid-join hits findings.md
    // section 5 or 7; whether it lands in those windows is a race.
    if result.status != RunStatus::Pass {
        assert_known_pd_join_finding(&result);
        return;
    }
    assert_eq!(result.status, RunStatus::Pass, "{}", explain(&result));
    assert_eq!(result.backend, "docker");
    assert_pd_judged(&result);
}

/// tidb-operator v1's discovery model in containers: its start scripts
/// ask the discovery service from the run's network, and the service asks
/// PD through the members' published ports.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tidb_v1_discovery_model_passes_on_docker(
    #[values("bootstrap-3", "pod-loss", "deployer-crash-mid-bootstrap")] scenario: &str,
) {
    let result = run_docker(SUITE, scenario, "tidb-v1-discovery", "8.5.7").await;
    assert_eq!(result.status, RunStatus::Pass, "{}", explain(&result));
    assert_eq!(result.backend, "docker");
    assert_pd_judged(&result);
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correct_strategy_passes_on_docker(
    #[values(
        "bootstrap-1",
        "bootstrap-3",
        "bootstrap-5",
        "scale-out-1-3-5",
        "scale-in-5-3",
        "restart-one",
        "rolling-restart",
        "full-restart",
        "pod-loss",
        "volume-loss",
        "first-member-lost-mid-scale-out",
        "deployer-crash-mid-scale-out",
        "deployer-crash-mid-bootstrap",
        "leader-killed-follower-frozen",
        "leader-partitioned",
        "majority-partitioned",
        "minority-partitioned-mid-scale-out",
        "member-disconnected",
        "first-joiner-stalled"
    )]
    scenario: &str,
    #[values("seed-join", "static", "discovery", "learner")] strategy: &str,
    #[values("3.6.5", "3.5.1", "3.4.23")] version: &str,
) {
    let result = run_docker(SUITE, scenario, strategy, version).await;
    assert_eq!(result.status, RunStatus::Pass, "{}", explain(&result));
    assert_eq!(result.backend, "docker");
    assert_eq!(
        result.verdicts.len(),
        raftcert::invariants::registry().len()
    );
}

/// The outcomes a partition must have, read from the trace itself: the
/// cut happened, the isolated minority refused a write, the side with the
/// quorum took one once it had a leader, and there was one genesis only.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_minority_refuses_writes(
    #[values("leader-partitioned", "majority-partitioned")] scenario: &str,
) {
    let result = run_docker(SUITE, scenario, "static", "3.5.1").await;
    assert_eq!(result.status, RunStatus::Pass, "{}", explain(&result));
    let trace = read_trace(&output_dir().join(&result.trace)).expect("trace");
    let mut cuts = 0;
    let mut minority_refused = 0;
    let mut genesis = 0;
    for e in &trace.events {
        match &e.kind {
            EventKind::NetworkCut { isolated, rest } => {
                cuts += 1;
                assert!(!isolated.is_empty() && !rest.is_empty(), "{:?}", e.kind);
            }
            EventKind::WriteProbe {
                side_has_quorum: false,
                ok,
                slot,
                ..
            } => {
                assert!(!ok, "{slot} accepted a write from the minority side");
                minority_refused += 1;
            }
            EventKind::MemberStart { config, .. } if config.is_genesis() => genesis += 1,
            _ => {}
        }
    }
    assert_eq!(cuts, 1);
    assert!(minority_refused >= 1, "no write reached the minority side");
    // A static bootstrap of 3 starts 3 members `new` with one initial cluster.
    assert_eq!(genesis, 3);
    let durability = verdict(&result, "D1");
    assert!(durability.passed(), "{:?}", durability.violations);
}
