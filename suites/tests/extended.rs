//! The extended suite: clusters of ten members and more, for every correct
//! strategy, on processes.

use raftcert::report::RunStatus;
use raftcert_suites::{explain, load_suite, run};
use rstest::rstest;

const SUITE: &str = "extended.yaml";

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correct_strategy_handles_ten_members_and_more(
    #[values("scale-in-11-9", "bootstrap-15")] scenario: &str,
    #[values("seed-join", "static", "discovery", "learner")] strategy: &str,
) {
    let result = run(SUITE, scenario, strategy, "3.5.1", false).await;
    assert_eq!(result.status, RunStatus::Pass, "{}", explain(&result));
    assert!(
        load_suite(SUITE)
            .scenarios
            .iter()
            .all(|s| s.max_replicas() >= 10)
    );
}
