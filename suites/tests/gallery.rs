//! Every deployer of the bug gallery is caught by the invariant that names
//! its bug class, in the scenario its header declares, with evidence.

use raftcert::engine::EngineKind;
use raftcert::gallery;
use raftcert::report::RunStatus;
use raftcert_suites::{explain, repo_root, run_external_on};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_gallery_bug_is_caught_by_its_invariant() {
    let root = repo_root();
    let entries = gallery::discover(&root.join("fixtures/deployers/bugs")).expect("gallery");
    assert!(
        entries.len() >= 13,
        "the gallery has {} bugs",
        entries.len()
    );
    assert!(
        entries
            .iter()
            .filter(|e| e.engine == EngineKind::Pd)
            .count()
            >= 2,
        "the gallery has PD bugs"
    );
    let mut runs = tokio::task::JoinSet::new();
    for entry in entries {
        runs.spawn(async move {
            let command = entry
                .command
                .replace(&format!("{}/", repo_root().display()), "");
            // The gallery's default engines: etcd 3.5.1, PD 8.5.7.
            let version = match entry.engine {
                EngineKind::Etcd => "3.5.1",
                EngineKind::Pd => "8.5.7",
            };
            let result = run_external_on(
                entry.engine,
                &entry.suite_file,
                &entry.scenario,
                &command,
                version,
            )
            .await;
            (entry, result)
        });
    }
    let mut missed = Vec::new();
    while let Some(joined) = runs.join_next().await {
        let (entry, result) = joined.expect("run task");
        let detection = gallery::Detection {
            entry: entry.clone(),
            result: result.clone(),
        };
        let evidence_ok = result
            .verdicts
            .iter()
            .filter(|v| v.invariant == entry.expect)
            .flat_map(|v| &v.violations)
            .all(|v| !v.evidence.is_empty());
        if !detection.caught() || !evidence_ok || result.status != RunStatus::Fail {
            missed.push(format!(
                "{} expected {}:\n{}",
                entry.bug,
                entry.expect,
                explain(&result)
            ));
        }
    }
    assert!(missed.is_empty(), "not caught:\n{}", missed.join("\n"));
}
