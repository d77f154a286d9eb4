//! A broken machine is not a broken deployer: a command that does not
//! exist, or a port another process holds, ends the run as an `error` that
//! says so at once, with no verdict on the subject.

mod common;

use raftcert::driver::run_scenario;
use raftcert::model::{Action, Observation};
use raftcert::report::{RunResult, RunStatus};
use raftcert::subject::SubjectChoice;
use raftcert::subject::deployer::strategies;
use raftcert::subject::deployer::{Deployer, DeployerError};
use std::path::Path;
use std::sync::Arc;

/// The static strategy, with every start of slot m0 changed by `edit`.
struct EditsM0 {
    inner: Box<dyn Deployer>,
    edit: Arc<dyn Fn(&mut raftcert::model::Spec) + Send + Sync>,
}

impl Deployer for EditsM0 {
    fn reconcile(&mut self, observation: &Observation) -> Result<Vec<Action>, DeployerError> {
        let mut actions = self.inner.reconcile(observation)?;
        for action in &mut actions {
            if let Action::Start { slot, spec } = action
                && slot == "m0"
            {
                (self.edit)(spec);
            }
        }
        Ok(actions)
    }
}

async fn bootstrap_3_with(
    name: &str,
    edit: Arc<dyn Fn(&mut raftcert::model::Spec) + Send + Sync>,
) -> RunResult {
    let rel_dir = format!("environment-{name}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/raftcert-test-runs")
        .join(&rel_dir);
    let subject = SubjectChoice::Custom {
        name: name.into(),
        factory: Arc::new(move |ctx| {
            let inner = strategies::find("static").expect("static").build(ctx);
            Box::new(EditsM0 {
                inner,
                edit: edit.clone(),
            })
        }),
    };
    run_scenario(
        common::builtin_run("bootstrap-3", subject, dir, &rel_dir, 5).await,
        None,
    )
    .await
}

fn assert_environment_error(result: &RunResult, needle: &str) {
    let error = result.error.clone().unwrap_or_default();
    assert_eq!(result.status, RunStatus::Error, "{result:?}");
    assert!(error.starts_with("environment: "), "{error}");
    assert!(error.contains(needle), "{error}");
    assert!(
        result.verdicts.is_empty(),
        "nothing judged: {:?}",
        result.verdicts
    );
    // Not the step's 60 s deadline: the run ends as soon as it is seen.
    assert!(result.duration_ms < 30_000, "{} ms", result.duration_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_the_machine_lacks_is_an_environment_error() {
    let result = bootstrap_3_with(
        "missing-command",
        Arc::new(|spec| spec.command = "/nonexistent/raftcert-etcd".into()),
    )
    .await;
    assert_environment_error(
        &result,
        "cannot start /nonexistent/raftcert-etcd in slot m0",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_another_process_holds_is_an_environment_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("addr").port();
    let result = bootstrap_3_with(
        "port-in-use",
        Arc::new(move |spec| {
            spec.args
                .push(format!("--listen-metrics-urls=http://127.0.0.1:{port}"));
        }),
    )
    .await;
    assert_environment_error(&result, "address already in use");
    drop(taken);
}
