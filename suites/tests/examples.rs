//! The example deployers of the protocol document pass the whole
//! conformance suite, like the built-in strategies.

use raftcert::engine::EngineKind;
use raftcert::report::RunStatus;
use raftcert_suites::{
    assert_known_pd_join_finding, assert_pd_judged, ensure_tool, explain, load_suite, run_external,
    run_external_on,
};
use rstest::rstest;

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn example_deployer_passes_every_scenario(
    #[values(
        "python3 fixtures/deployers/example.py",
        "sh fixtures/deployers/example.sh"
    )]
    deployer: &str,
    #[values("3.6.5", "3.5.1", "3.4.23")] version: &str,
) {
    if deployer.starts_with("sh ") {
        ensure_tool("jq", "jq");
    }
    let suite = load_suite("conformance.yaml");
    let scenarios = suite.scenarios;
    let expected = scenarios.len();
    let mut runs = tokio::task::JoinSet::new();
    for scenario in scenarios {
        let deployer = deployer.to_string();
        let version = version.to_string();
        runs.spawn(async move {
            run_external("conformance.yaml", &scenario.name, &deployer, &version).await
        });
    }
    let mut failures = Vec::new();
    let mut count = 0;
    while let Some(joined) = runs.join_next().await {
        let result = joined.expect("run task");
        count += 1;
        if result.status != RunStatus::Pass {
            failures.push(explain(&result));
        }
    }
    assert_eq!(count, expected);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The PD example passes every scenario on both PD versions; a run that
/// does not pass may only be one of the PD join findings that a fault
/// mid-join can land in (docs/findings.md sections 5 and 7).
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pd_example_deployer_passes_every_scenario(#[values("8.5.7", "26.3.4")] version: &str) {
    let suite = load_suite("conformance.yaml");
    let expected = suite.scenarios.len();
    let mut runs = tokio::task::JoinSet::new();
    for scenario in suite.scenarios {
        let version = version.to_string();
        runs.spawn(async move {
            run_external_on(
                EngineKind::Pd,
                "conformance.yaml",
                &scenario.name,
                "python3 fixtures/deployers/example_pd.py",
                &version,
            )
            .await
        });
    }
    let mut count = 0;
    while let Some(joined) = runs.join_next().await {
        let result = joined.expect("run task");
        count += 1;
        if result.status == RunStatus::Pass {
            assert_pd_judged(&result);
        } else {
            assert_known_pd_join_finding(&result);
        }
    }
    assert_eq!(count, expected);
}
