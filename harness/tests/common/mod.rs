//! What the integration tests that drive one run share.

use raftcert::driver::RunSpec;
use raftcert::engine::provision;
use raftcert::engine::{EngineChoice, EngineKind};
use raftcert::scenario::model::Suite;
use raftcert::subject::SubjectChoice;
use std::path::PathBuf;
use std::sync::Arc;

/// One run of the built-in suite's `scenario` for `subject` on processes
/// with etcd 3.5.1, writing into `dir` (`rel_dir` in reports).
pub async fn builtin_run(
    scenario: &str,
    subject: SubjectChoice,
    dir: PathBuf,
    rel_dir: &str,
    seed: u64,
) -> RunSpec {
    let suite = Arc::new(Suite::builtin().expect("built-in suite"));
    let scenario = suite
        .scenarios
        .iter()
        .find(|s| s.name == scenario)
        .cloned()
        .unwrap_or_else(|| panic!("{scenario} in the built-in suite"));
    let engine = provision::provision(EngineKind::Etcd, "3.5.1")
        .await
        .expect("etcd 3.5.1");
    RunSpec {
        suite,
        scenario,
        subject,
        engine: EngineChoice::Installed(engine),
        substrate: Default::default(),
        tls: false,
        seed,
        dir,
        rel_dir: rel_dir.to_string(),
        run_id: rel_dir.to_string(),
    }
}
