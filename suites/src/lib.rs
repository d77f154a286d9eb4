//! Helpers for the suite tests: run one scenario of a suite file against a
//! strategy and an engine, with the real engine binary.

use raftcert::driver::{RunSpec, run_scenario};
use raftcert::engine::provision::{self, EngineInstall};
use raftcert::engine::{EngineChoice, EngineKind};
use raftcert::report::{RunResult, RunStatus};
use raftcert::scenario::model::Suite;
use raftcert::subject::SubjectChoice;
use raftcert::subject::deployer::strategies;
use raftcert::substrate::SubstrateChoice;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use raftcert;

/// Path of a suite file in this crate.
pub fn suite_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

pub fn load_suite(name: &str) -> Suite {
    Suite::load(&suite_path(name)).unwrap_or_else(|e| panic!("{e}"))
}

/// Provisions (or finds in the cache) an etcd version.
pub async fn etcd(version: &str) -> EngineInstall {
    engine(EngineKind::Etcd, version).await
}

/// Provisions (or finds in the cache) a version of an engine; PD is built
/// from `../shared/sources` on first use.
pub async fn engine(kind: EngineKind, version: &str) -> EngineInstall {
    provision::provision(kind, version)
        .await
        .unwrap_or_else(|e| panic!("provisioning {kind} {version}: {e}"))
}

/// The engine a subject deploys: a built-in strategy's own, else etcd.
fn engine_of(subject: &SubjectChoice) -> EngineKind {
    match subject {
        SubjectChoice::Builtin(info) => info.engines.first().copied().unwrap_or(EngineKind::Etcd),
        _ => EngineKind::Etcd,
    }
}

/// Where test runs keep their traces and logs: kept after the test, so a
/// failure can be re-checked with `raftcert check`.
pub fn output_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("raftcert-test-runs")
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Makes sure a command-line tool exists, installing its Debian package
/// when running as root (as CI does); panics with a clear message if not.
pub fn ensure_tool(tool: &str, package: &str) {
    let present = |t: &str| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {t} >/dev/null 2>&1")])
            .status()
            .is_ok_and(|s| s.success())
    };
    if present(tool) {
        return;
    }
    install_package(package);
    assert!(
        present(tool),
        "{tool} is needed; install the Debian package {package}"
    );
}

/// Runs one scenario of `suite` with a built-in strategy.
pub async fn run(
    suite: &str,
    scenario: &str,
    strategy: &str,
    version: &str,
    tls: bool,
) -> RunResult {
    let info = strategies::find(strategy).unwrap_or_else(|| panic!("no strategy {strategy}"));
    let strategy = SubjectChoice::Builtin(info);
    run_with(
        suite,
        scenario,
        strategy,
        version,
        tls,
        SubstrateChoice::Process,
    )
    .await
}

/// Runs one scenario of `suite` with a built-in strategy, members as
/// containers.
pub async fn run_docker(suite: &str, scenario: &str, strategy: &str, version: &str) -> RunResult {
    ensure_docker().await;
    let info = strategies::find(strategy).unwrap_or_else(|| panic!("no strategy {strategy}"));
    let strategy = SubjectChoice::Builtin(info);
    let backend = SubstrateChoice::Docker { image: None };
    let _permit = DOCKER_RUNS
        .acquire()
        .await
        .unwrap_or_else(|e| panic!("run limiter closed: {e}"));
    run_with(suite, scenario, strategy, version, false, backend).await
}

/// Containers cost more than processes: fewer clusters at once, as many
/// as `raftcert run --backend docker` runs by default. At 8, container
/// starts under load stretched one CI run's scale-out past its deadline.
static DOCKER_RUNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(6);

/// Makes sure a Docker engine answers, with what the docker backend needs
/// next to it. On a machine without one (and as root, as in CI) it installs
/// Debian's docker.io and starts dockerd, which has no service manager here;
/// otherwise it fails the test and says what to do.
pub async fn ensure_docker() {
    static READY: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    READY
        .get_or_init(|| async {
            ensure_tool("ip", "iproute2");
            ensure_tool("nsenter", "util-linux");
            if !busybox_is_static() {
                install_package("busybox-static");
                assert!(
                    busybox_is_static(),
                    "member images need a static /bin/busybox: install Debian's busybox-static"
                );
            }
            if raftcert::substrate::docker::connect().await.is_ok() {
                return;
            }
            let script = repo_root().join("ci").join("start-dockerd");
            let status = std::process::Command::new("sh").arg(&script).status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "no Docker engine answers and {} could not start one: start dockerd or set \
                 DOCKER_HOST",
                script.display()
            );
            if let Err(e) = raftcert::substrate::docker::connect().await {
                panic!("{e}");
            }
        })
        .await;
}

fn busybox_is_static() -> bool {
    raftcert::substrate::docker::is_static(std::path::Path::new("/bin/busybox"))
}

fn install_package(package: &str) {
    let _ = std::process::Command::new("sh")
        .args([
            "-c",
            &format!(
                "[ \"$(id -u)\" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {package} >/dev/null 2>&1"
            ),
        ])
        .status();
}

/// Runs one scenario of `suite` with an external etcd deployer command,
/// from the repository's root.
pub async fn run_external(suite: &str, scenario: &str, command: &str, version: &str) -> RunResult {
    run_external_on(EngineKind::Etcd, suite, scenario, command, version).await
}

/// Runs one scenario of `suite` with an external deployer of `kind`.
pub async fn run_external_on(
    kind: EngineKind,
    suite: &str,
    scenario: &str,
    command: &str,
    version: &str,
) -> RunResult {
    let root = repo_root();
    let command = format!("cd {} && {command}", root.display());
    let strategy = SubjectChoice::External {
        command,
        timeout: raftcert::subject::deployer::external::DEFAULT_REPLY_TIMEOUT,
    };
    run_on(
        kind,
        suite,
        scenario,
        strategy,
        version,
        false,
        SubstrateChoice::Process,
    )
    .await
}

/// Members one test binary runs at once, whatever the test threads: the
/// machine has 2 cores, and an overloaded one turns deadlines into failures.
/// A run takes one permit per member of its largest cluster, three at
/// least (its poller and workload cost too): twelve 3-member runs at once,
/// or two 15-member ones (eight of those at once, 104 members, kept a
/// 15-member cluster electing for 3 minutes in a `.ci/run`).
const MEMBER_BUDGET_TOTAL: u32 = 36;
static MEMBER_BUDGET: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MEMBER_BUDGET_TOTAL as usize);

/// Runs one scenario of `suite` with any deployer, on the engine a built-in
/// strategy deploys (etcd for the others).
pub async fn run_with(
    suite: &str,
    scenario: &str,
    strategy: SubjectChoice,
    version: &str,
    tls: bool,
    substrate: SubstrateChoice,
) -> RunResult {
    let kind = engine_of(&strategy);
    run_on(kind, suite, scenario, strategy, version, tls, substrate).await
}

async fn run_on(
    kind: EngineKind,
    suite: &str,
    scenario: &str,
    strategy: SubjectChoice,
    version: &str,
    tls: bool,
    substrate: SubstrateChoice,
) -> RunResult {
    let suite = Arc::new(load_suite(suite));
    let scenario = suite
        .scenarios
        .iter()
        .find(|s| s.name == scenario)
        .cloned()
        .unwrap_or_else(|| panic!("no scenario {scenario}"));
    let engine = EngineChoice::Installed(engine(kind, version).await);
    let rel_dir = format!(
        "{}-{}-{}{}-{}",
        scenario.name,
        strategy.name(),
        version,
        if tls { "-tls" } else { "" },
        substrate.name()
    );
    let rel_dir = unique_dir(rel_dir);
    let spec = RunSpec {
        suite: suite.clone(),
        scenario,
        subject: strategy,
        engine,
        substrate,
        tls,
        seed: raftcert::util::unique_suffix(),
        dir: output_dir().join(&rel_dir),
        rel_dir,
        run_id: format!("test-{}", raftcert::util::unique_suffix() % 1_000_000),
    };
    let members = spec.scenario.max_replicas().clamp(3, MEMBER_BUDGET_TOTAL);
    let _permit = MEMBER_BUDGET
        .acquire_many(members)
        .await
        .unwrap_or_else(|e| panic!("run limiter closed: {e}"));
    run_scenario(spec, None).await
}

/// Two tests may run the same cell at once: the second gets its own
/// directory.
fn unique_dir(wanted: String) -> String {
    static USED: std::sync::Mutex<std::collections::BTreeSet<String>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut used = USED.lock().unwrap_or_else(|p| p.into_inner());
    let mut dir = wanted.clone();
    let mut n = 1;
    while !used.insert(dir.clone()) {
        n += 1;
        dir = format!("{wanted}-{n}");
    }
    dir
}

/// Scenarios of `scenarios` whose names are missing from the `#[values]`
/// of the rstest function `test_fn` in `source`: rstest needs the names as
/// literals, and this keeps them in step with the suite file.
pub fn missing_from_matrix<'a>(
    source: &str,
    test_fn: &str,
    scenarios: impl IntoIterator<Item = &'a raftcert::scenario::model::Scenario>,
) -> Vec<String> {
    let matrix = source
        .split(&format!("async fn {test_fn}("))
        .last()
        .and_then(|rest| rest.split("strategy: &str").next())
        .unwrap_or("");
    scenarios
        .into_iter()
        .filter(|s| !matrix.contains(&format!("\"{}\"", s.name)))
        .map(|s| s.name.clone())
        .collect()
}

/// A readable account of every violation, for assertion messages. Tests
/// call it only when a run did not go as expected, so it also appends the
/// account to [`failures_log`]: CI prints that file last, where a long test
/// output cannot cut it off.
pub fn explain(result: &RunResult) -> String {
    let mut out = format!(
        "{} / {} @ {}: {:?} {}\n",
        result.scenario,
        result.strategy,
        result.engine_version,
        result.status,
        result.error.as_deref().unwrap_or("")
    );
    for verdict in result.verdicts.iter().filter(|v| !v.passed()) {
        for violation in &verdict.violations {
            out.push_str(&format!("  {}: {}\n", verdict.invariant, violation.message));
            for event in violation.evidence.iter().take(6) {
                out.push_str(&format!("    {}\n", raftcert::report::event_summary(event)));
            }
        }
    }
    let trace_path = output_dir().join(&result.trace);
    // CI keeps only the output, not the trace: say how the run went.
    if result.status != RunStatus::Pass
        && let Ok(trace) = raftcert::trace::read_trace(&trace_path)
    {
        out.push_str("  how the run went (last events, polling and workload left out):\n");
        for line in raftcert::report::story(&trace, STORY_LINES) {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out.push_str(&format!("  trace: {}\n", trace_path.display()));
    append_failure(&out);
    out
}

/// Where every unexpected run outcome of a test session is written.
pub fn failures_log() -> PathBuf {
    output_dir().join("failures.log")
}

fn append_failure(text: &str) {
    use std::io::Write;
    let _ = std::fs::create_dir_all(output_dir());
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(failures_log())
    {
        let _ = file.write_all(format!("{text}\n").as_bytes());
    }
}

/// Lifecycle lines shown for a failed run.
const STORY_LINES: usize = 30;

/// Runs scenarios of the built-in suite, one at a time, against a profile
/// of `fixtures/operators/` on a cluster, after applying the profile's
/// install manifests: the same driver as every other run.
pub async fn run_profile(kubeconfig: &Path, profile: &str, scenarios: &[&str]) -> Vec<RunResult> {
    run_profile_at(
        kubeconfig,
        &repo_root().join("fixtures/operators").join(profile),
        Suite::builtin().expect("suite"),
        scenarios,
    )
    .await
}

/// [`run_profile`] for a profile directory anywhere, with scenarios of
/// `suite`.
pub async fn run_profile_at(
    kubeconfig: &Path,
    profile_dir: &Path,
    suite: Suite,
    scenarios: &[&str],
) -> Vec<RunResult> {
    use raftcert::substrate::kube::KubeTarget;
    use raftcert::substrate::kube::profile::Profile;
    let profile = Arc::new(Profile::load(profile_dir).expect("profile"));
    let target = KubeTarget::connect(Some(kubeconfig), profile.clone())
        .await
        .expect("kubeconfig");
    // Images first: a shared operator that the install starts runs one.
    target
        .ensure_images()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", profile.name));
    if !profile.install.is_empty() {
        raftcert::substrate::kube::install(&target.client, &profile)
            .await
            .unwrap_or_else(|e| panic!("installing {}: {e}", profile.name));
    }
    let engine = EngineChoice::InImage(profile.engine_ref().expect("engine"));
    let subject = SubjectChoice::Operator(profile.clone());
    let substrate = SubstrateChoice::Kube(Arc::new(target));
    let suite = Arc::new(suite);
    let mut outcomes = Vec::new();
    for (index, name) in scenarios.iter().enumerate() {
        let scenario = suite
            .scenarios
            .iter()
            .find(|s| s.name == *name)
            .expect("scenario")
            .clone();
        assert_eq!(
            raftcert::matrix::not_covered_because(&scenario, &subject, &substrate),
            None
        );
        let rel_dir = format!("kube-runs/{}/{name}", profile.name);
        let result = run_scenario(
            RunSpec {
                suite: suite.clone(),
                scenario,
                subject: subject.clone(),
                engine: engine.clone(),
                substrate: substrate.clone(),
                tls: false,
                seed: 1,
                dir: output_dir().join(&rel_dir),
                rel_dir,
                run_id: format!("test-{}-{index}", raftcert::util::unique_suffix() & 0xffff),
            },
            None,
        )
        .await;
        outcomes.push(result);
    }
    outcomes
}

/// The Kubernetes backend on a real cluster whose nodes hold
/// `raftcert/etcd-smoke:3.6.5`: the static StatefulSet profile bootstraps
/// and survives a pod loss, and its scale-out, where nothing adds members,
/// is caught by I2 and I3.
pub async fn static_statefulset_profile_checks(kubeconfig: &Path) {
    let outcomes = run_profile(
        kubeconfig,
        "statefulset-static",
        &["bootstrap-3", "pod-loss", "scale-out-1-3-5"],
    )
    .await;
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

/// coreos/etcd-operator v0.9.4 on a cluster whose nodes hold its images
/// (`ci/kind/build-coreos-etcd-operator`): it bootstraps seed-then-join, and
/// replaces a lost pod by a new member in a new pod under a new name, which
/// the backend follows as a new slot.
///
/// Then its leader is partitioned off through the kind node, and the cut
/// must take hold.
///
/// I4 is left out of the assertions on purpose: the operator adds a member
/// before its pod exists, so a one-member cluster has no quorum until that
/// pod has been scheduled and passed its DNS check, and whether that gap
/// exceeds the 15 s grace depends on the machine (measured 11-17 s here,
/// see docs/findings.md).
pub async fn coreos_operator_profile_checks(kubeconfig: &Path) {
    let outcomes = run_profile(
        kubeconfig,
        "coreos-etcd-operator",
        &["pod-loss", "leader-partitioned"],
    )
    .await;
    let trace = trace_of_a_run_clean_but_i4(&outcomes[0]);
    use raftcert::trace::EventKind;
    let fault = trace
        .events
        .iter()
        .position(|e| matches!(e.kind, EventKind::FaultInjected { .. }))
        .expect("a pod was deleted");
    let EventKind::FaultInjected {
        slot: Some(lost), ..
    } = &trace.events[fault].kind
    else {
        panic!("the fault names no pod");
    };
    // The replacement is a new slot, and the step ends wanting it, not the
    // lost pod.
    let added: Vec<&str> = trace.events[fault..]
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::SlotAdded { info } => Some(info.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(added.len(), 1, "one replacement pod: {added:?}");
    let wanted = trace
        .events
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            EventKind::StepFinished { desired_slots, .. } => desired_slots.clone(),
            _ => None,
        })
        .expect("the step names the slots it wants");
    assert_eq!(wanted.len(), 3, "{wanted:?}");
    assert!(wanted.iter().any(|w| w == added[0]), "{wanted:?}");
    assert!(!wanted.contains(lost), "{lost} still wanted: {wanted:?}");

    // The leader cut off from its operator-named peers, through the node.
    let trace = trace_of_a_run_clean_but_i4(&outcomes[1]);
    leader_partition_took_hold(&outcomes[1], &trace);
}

/// etcd-io/etcd-operator v0.2.0 on kind: a lost pod comes back on its PVC
/// as the same member; a lost volume is docs/findings.md section 2 (the
/// member returns under its old ID with an empty log, raft panics, and the
/// operator never replaces it).
pub async fn etcd_io_operator_profile_checks(kubeconfig: &Path) {
    let outcomes = run_profile(
        kubeconfig,
        "etcd-io-etcd-operator",
        &["pod-loss", "volume-loss"],
    )
    .await;
    let pod_loss = &outcomes[0];
    assert!(
        pod_loss.error.is_none() && pod_loss.violated_invariants().is_empty(),
        "{}",
        explain(pod_loss)
    );
    use raftcert::trace::EngineErrorClass;
    assert_wiped_member_refused(&outcomes[1], &[EngineErrorClass::RaftLogLost]);
}

/// A volume-loss run that violated I6, and whose wiped member the engine
/// then refused with one of `classes`: the evidence, not only the verdict.
fn assert_wiped_member_refused(
    volume_loss: &RunResult,
    classes: &[raftcert::trace::EngineErrorClass],
) {
    use raftcert::trace::EventKind;
    assert!(volume_loss.error.is_none(), "{}", explain(volume_loss));
    assert!(
        volume_loss.violated_invariants().contains(&"I6"),
        "{}",
        explain(volume_loss)
    );
    let trace = raftcert::trace::read_trace(&output_dir().join(&volume_loss.trace)).expect("trace");
    let wiped = trace
        .events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::DataWiped { slot } => Some(slot.clone()),
            _ => None,
        })
        .expect("a volume was lost");
    let refused = trace.events.iter().any(|e| {
        matches!(&e.kind, EventKind::EngineError { slot, class, .. }
            if *slot == wiped && classes.contains(class))
    });
    assert!(
        refused,
        "{wiped}: no engine error of {classes:?}\n{}",
        explain(volume_loss)
    );
}

/// tidb-operator v2.0.1 on kind (PD only): a lost pod comes back on its
/// PVC as the same PD, with timestamps and the cluster ID judged; a lost
/// volume is docs/findings.md section 3 (the PD returns under its old name
/// and is refused for good: its old member is never removed, and v2 has no
/// failover).
pub async fn tidb_operator_v2_profile_checks(kubeconfig: &Path) {
    let outcomes = run_profile(kubeconfig, "tidb-operator-v2", &["pod-loss", "volume-loss"]).await;
    // I9 may fail on its own: the PDGroup's ready count lags by up to the
    // operator's 30 s member poll (docs/findings.md section 3, failure 3),
    // and a bootstrap can land badly against it.
    let pod_loss = &outcomes[0];
    assert!(
        pod_loss.error.is_none() && pod_loss.violated_invariants().iter().all(|id| *id == "I9"),
        "{}",
        explain(pod_loss)
    );
    assert_pd_judged(pod_loss);
    // The wiped PD is refused under its old name: as `new` before the
    // group is bootstrapped, with `--join` after.
    use raftcert::trace::EngineErrorClass;
    assert_wiped_member_refused(
        &outcomes[1],
        &[
            EngineErrorClass::AlreadyBootstrapped,
            EngineErrorClass::DuplicatedMember,
        ],
    );
}

/// tidb-operator v1.6.6 on kind (PD only, the real discovery service and
/// start script): in a scale-out 1 -> 3 -> 5, discovery gives exactly one
/// PD `--initial-cluster` and every other one a `--join`; a lost pod comes
/// back on its PVC as the same member. I4 and I9 may fail on their own: a
/// join's quorum gap waits out the joiner's etcd request timeout, and the
/// TidbCluster's ready count lags (docs/findings.md section 9).
pub async fn tidb_operator_v1_profile_checks(kubeconfig: &Path) {
    use raftcert::trace::EventKind;
    let outcomes = run_profile(
        kubeconfig,
        "tidb-operator-v1",
        &["scale-out-1-3-5", "pod-loss"],
    )
    .await;
    for run in &outcomes {
        let unexpected: Vec<&str> = run
            .violated_invariants()
            .into_iter()
            .filter(|id| !["I4", "I9"].contains(id))
            .collect();
        assert!(
            run.error.is_none() && unexpected.is_empty(),
            "{}",
            explain(run)
        );
        assert_eq!(
            verdict(run, "I1").outcome_word(),
            "pass",
            "{}",
            explain(run)
        );
        assert_pd_judged(run);
    }
    let trace = raftcert::trace::read_trace(&output_dir().join(&outcomes[0].trace)).expect("trace");
    let (mut genesis, mut joins) = (Vec::new(), Vec::new());
    for event in &trace.events {
        if let EventKind::PdConfig {
            slot,
            initial_cluster_state,
            join,
            ..
        } = &event.kind
        {
            if join.is_empty() && initial_cluster_state == "new" {
                genesis.push(slot.clone());
            } else if !join.is_empty() {
                joins.push(slot.clone());
            }
        }
    }
    assert_eq!(
        genesis.len(),
        1,
        "genesis: {genesis:?}; {}",
        explain(&outcomes[0])
    );
    assert!(
        joins.len() >= 4,
        "joins: {joins:?}; {}",
        explain(&outcomes[0])
    );
    assert_eq!(
        verdict(&outcomes[0], "I2").outcome_word(),
        "pass",
        "{}",
        explain(&outcomes[0])
    );
}

/// The trace of a run that ended without error and violated nothing but
/// I4 (see `coreos_operator_profile_checks` for why I4 is left out).
fn trace_of_a_run_clean_but_i4(run: &RunResult) -> raftcert::trace::Trace {
    let unexpected: Vec<&str> = run
        .violated_invariants()
        .into_iter()
        .filter(|id| *id != "I4")
        .collect();
    assert!(
        run.error.is_none() && unexpected.is_empty(),
        "{}",
        explain(run)
    );
    raftcert::trace::read_trace(&output_dir().join(&run.trace)).expect("trace")
}

/// The traces of runs that each must have passed.
fn traces_of_passing_runs(outcomes: &[RunResult]) -> Vec<raftcert::trace::Trace> {
    outcomes
        .iter()
        .map(|run| {
            assert!(
                run.error.is_none() && run.status == RunStatus::Pass,
                "{}",
                explain(run)
            );
            raftcert::trace::read_trace(&output_dir().join(&run.trace)).expect("trace")
        })
        .collect()
}

/// Faults below the API on a kind cluster (`raftcert::kube::nodes`), with
/// the static StatefulSet profile: each scenario passes, and its trace
/// shows the fault took hold, not merely that it was asked for.
pub async fn node_fault_checks(kubeconfig: &Path) {
    use raftcert::trace::FaultKind;
    let scenarios = [
        "leader-partitioned",
        "member-disconnected",
        "leader-killed-follower-frozen",
    ];
    let outcomes = run_profile(kubeconfig, "statefulset-static", &scenarios).await;
    let traces = traces_of_passing_runs(&outcomes);
    leader_partition_took_hold(&outcomes[0], &traces[0]);

    // The disconnected member loses its leader while it is cut off.
    let trace = &traces[1];
    let (from, until, member) = fault_window(trace, FaultKind::DISCONNECT, FaultKind::RECONNECT);
    let seen = statuses_between(trace, &member, from, until);
    assert!(
        seen.iter()
            .any(|(_, leader, _)| leader == "0" || leader.is_empty()),
        "{member} kept a leader while disconnected: {seen:?}"
    );

    // A frozen member answers nothing while it is stopped, and answers
    // before and after. Answers right after SIGCONT may be recorded just
    // before the thaw event, and the freeze is recorded just before it is
    // applied: half a second is left out at each end.
    let trace = &traces[2];
    let (from, until, member) = fault_window(trace, FaultKind::FREEZE, FaultKind::THAW);
    assert!(until - from >= 2_500, "frozen for {} ms only", until - from);
    assert!(
        !statuses_between(trace, &member, 0, from).is_empty(),
        "{member} never answered before the freeze"
    );
    assert!(
        !statuses_between(trace, &member, until, u64::MAX).is_empty(),
        "{member} never answered after the thaw"
    );
    let seen = statuses_between(trace, &member, from + 500, until - 500);
    assert!(
        seen.is_empty(),
        "{member} answered while frozen ({from}..{until} ms): {seen:?}"
    );
}

/// On one control-plane node alone, the node faults of suites/nodes.yaml
/// are not covered, and say what they need.
pub async fn node_faults_need_workers(kubeconfig: &Path) {
    use raftcert::substrate::kube::KubeTarget;
    use raftcert::substrate::kube::profile::Profile;
    let profile = Arc::new(
        Profile::load(&repo_root().join("fixtures/operators/statefulset-static")).expect("profile"),
    );
    let target = KubeTarget::connect(Some(kubeconfig), profile.clone())
        .await
        .expect("kubeconfig");
    let subject = SubjectChoice::Operator(profile);
    let substrate = SubstrateChoice::Kube(Arc::new(target));
    for scenario in &load_suite("nodes.yaml").scenarios {
        let why = raftcert::matrix::not_covered_because(scenario, &subject, &substrate)
            .unwrap_or_else(|| panic!("{} is covered on one node", scenario.name));
        assert!(why.contains("at least 2 worker nodes"), "{why}");
    }
}

/// suites/nodes.yaml on a cluster with workers (kind-config/
/// ci-1cp-3workers.yaml), with the static StatefulSet: each node fault
/// took hold and the member came back on its node, with its data.
pub async fn node_stop_and_drain_checks(kubeconfig: &Path) {
    use raftcert::trace::{EventKind, FaultKind};
    let scenarios = ["leader-node-stopped", "leader-node-drained"];
    let outcomes = run_profile_at(
        kubeconfig,
        &repo_root().join("fixtures/operators/statefulset-static"),
        load_suite("nodes.yaml"),
        &scenarios,
    )
    .await;
    let traces = traces_of_passing_runs(&outcomes);
    for run in &outcomes {
        // The member came back under its own ID, on its data.
        assert!(verdict(run, "I5").passed(), "{}", explain(run));
    }
    // A stopped node answers nothing: no status of its member between a
    // second after the stop (one poll may be in flight) and the start.
    let (stopped, started, member) =
        fault_window(&traces[0], FaultKind::STOP_NODE, FaultKind::START_NODE);
    assert!(
        started - stopped >= 55_000,
        "stopped for {} ms only",
        started - stopped
    );
    let seen = statuses_between(&traces[0], &member, stopped + 1_000, started);
    assert!(
        seen.is_empty(),
        "{member} answered on a stopped node: {seen:?}"
    );
    // A drained member leaves, and is not started anywhere else while its
    // node is cordoned: its volume is bound to that node.
    let trace = &traces[1];
    let (drained, uncordoned, member) =
        fault_window(trace, FaultKind::DRAIN_NODE, FaultKind::UNCORDON_NODE);
    let member_event = |wanted: fn(&EventKind) -> Option<&str>| {
        trace
            .events
            .iter()
            .filter(|e| e.t_ms > drained && wanted(&e.kind) == Some(member.as_str()))
            .map(|e| e.t_ms)
            .next()
    };
    let exited = member_event(|kind| match kind {
        EventKind::ProcessExited { slot, .. } => Some(slot),
        _ => None,
    })
    .unwrap_or_else(|| panic!("{member} never left its drained node"));
    let back = member_event(|kind| match kind {
        EventKind::ProcessStarted { slot, .. } => Some(slot),
        _ => None,
    })
    .unwrap_or_else(|| panic!("{member} never came back"));
    assert!(
        exited < uncordoned,
        "{member} left at {exited} ms, after the uncordon"
    );
    assert!(
        back > uncordoned,
        "{member} started at {back} ms, while its node was cordoned (until {uncordoned} ms)"
    );
}

/// When a fault and its undo were recorded, and on which member.
fn fault_window(
    trace: &raftcert::trace::Trace,
    on: raftcert::trace::FaultKind,
    off: raftcert::trace::FaultKind,
) -> (u64, u64, String) {
    use raftcert::trace::EventKind;
    let at = |wanted: &raftcert::trace::FaultKind| {
        trace.events.iter().find_map(|e| match &e.kind {
            EventKind::FaultInjected { fault, slot } if fault == wanted => {
                Some((e.t_ms, slot.clone()))
            }
            _ => None,
        })
    };
    let (from, slot) = at(&on).unwrap_or_else(|| panic!("no {on:?} in the trace"));
    let (until, _) = at(&off).unwrap_or_else(|| panic!("no {off:?} in the trace"));
    (
        from,
        until,
        slot.unwrap_or_else(|| panic!("{on:?} names no member")),
    )
}

/// A member's statuses (time, leader, term) recorded strictly between two
/// times.
fn statuses_between(
    trace: &raftcert::trace::Trace,
    member: &str,
    from: u64,
    until: u64,
) -> Vec<(u64, String, u64)> {
    use raftcert::trace::EventKind;
    trace
        .events
        .iter()
        .filter(|e| e.t_ms > from && e.t_ms < until)
        .filter_map(|e| match &e.kind {
            EventKind::MemberStatus {
                slot, leader, term, ..
            } if slot == member => Some((e.t_ms, leader.clone(), *term)),
            _ => None,
        })
        .collect()
}

/// `leader-partitioned` cut the leader off for real: it was the leader at
/// the cut, its write timed out, and the others elected a new leader (a
/// higher term) before the network healed.
fn leader_partition_took_hold(run: &RunResult, trace: &raftcert::trace::Trace) {
    use raftcert::trace::{EventKind, FaultKind};
    let (cut, healed, isolated) = fault_window(trace, FaultKind::ISOLATE, FaultKind::HEAL);
    let last_before_cut = trace
        .events
        .iter()
        .filter(|e| e.t_ms <= cut)
        .filter_map(|e| match &e.kind {
            EventKind::MemberStatus {
                slot,
                member_id,
                leader,
                term,
                ..
            } if *slot == isolated => Some((member_id.clone(), leader.clone(), *term)),
            _ => None,
        })
        .next_back();
    let Some((isolated_id, leader_before, term_before)) = last_before_cut else {
        panic!("no status of {isolated} before the cut: {}", explain(run));
    };
    assert_eq!(
        isolated_id, leader_before,
        "{isolated} was not the leader at the cut"
    );
    let probe_of_isolated = trace.events.iter().find_map(|e| match &e.kind {
        EventKind::WriteProbe {
            slot, ok, error, ..
        } if *slot == isolated => Some((*ok, error.clone().unwrap_or_default())),
        _ => None,
    });
    assert!(
        matches!(&probe_of_isolated, Some((false, error)) if error.contains("timed out")),
        "the isolated leader's write: {probe_of_isolated:?}"
    );
    let new_leader_elected = trace.events.iter().any(|e| {
        e.t_ms > cut
            && e.t_ms < healed
            && matches!(&e.kind, EventKind::MemberStatus { slot, term, leader, .. }
                if *slot != isolated && *term > term_before && *leader != isolated_id && leader != "0")
    });
    assert!(new_leader_elected, "{}", explain(run));
}

/// The `raftcert` binary of this workspace, built when missing (a test run
/// of this crate alone does not build it).
pub fn raftcert_binary() -> PathBuf {
    let binary = repo_root().join("target/debug/raftcert");
    if !binary.is_file() {
        let built = std::process::Command::new("cargo")
            .args(["build", "-q", "-p", "raftcert", "--bin", "raftcert"])
            .current_dir(repo_root())
            .status()
            .is_ok_and(|s| s.success());
        assert!(built, "cargo build -p raftcert failed");
    }
    binary
}

/// `raftcert certify` on Kubernetes, interrupted with SIGINT once its first
/// run has finished: it exits 130 with the finished run judged in
/// results.json and the others reported as interrupted, and the runs'
/// namespaces are on their way out.
pub async fn interrupted_certification_keeps_its_report(kubeconfig: &Path) {
    use std::io::BufRead;
    let out = output_dir().join("kube-interrupted");
    let _ = std::fs::remove_dir_all(&out);
    let mut child = std::process::Command::new(raftcert_binary())
        .args(["certify", "--backend", "kube", "--profile"])
        .arg(repo_root().join("fixtures/operators/statefulset-static"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--out")
        .arg(&out)
        .args(["--scenario", "bootstrap-1", "--scenario", "bootstrap-3"])
        .args(["--scenario", "restart-one"])
        .current_dir(repo_root())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("raftcert certify");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    // The progress line of the first finished run.
    for line in lines.by_ref() {
        let line = line.expect("stderr line");
        seen.push(line.clone());
        if line.contains(": pass (") || line.contains(": FAIL") || line.contains(": ERROR") {
            break;
        }
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    // The rest of its output, until it exits.
    seen.extend(lines.map_while(Result::ok));
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "{}", seen.join("\n"));
    let report = raftcert::report::load_results(&out.join("results.json"))
        .unwrap_or_else(|e| panic!("{e}\n{}", seen.join("\n")));
    assert_eq!(report.runs.len(), 3);
    let judged = report
        .runs
        .iter()
        .filter(|r| r.status != RunStatus::Error)
        .count();
    assert!(judged >= 1, "the finished run was judged: {report:?}");
    assert!(
        report
            .runs
            .iter()
            .filter(|r| r.status == RunStatus::Error)
            .all(|r| r.error.as_deref() == Some(raftcert::interrupt::INTERRUPTED)),
        "the others were interrupted"
    );
    // Every namespace of the run is gone or being deleted.
    let (client, _) = raftcert::substrate::kube::connect(Some(kubeconfig))
        .await
        .expect("kubeconfig");
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
    let params = kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=raftcert");
    let left = namespaces.list(&params).await.expect("namespaces");
    assert!(
        left.items
            .iter()
            .all(|ns| ns.metadata.deletion_timestamp.is_some()),
        "namespaces left: {:?}",
        left.items
            .iter()
            .map(|ns| ns.metadata.name.clone())
            .collect::<Vec<_>>()
    );
}

/// A deployment whose image no node holds and no registry serves: the run
/// ends as an error quoting the pull failure within 30 s, judging nothing.
pub async fn an_image_that_cannot_be_pulled_is_an_environment_error(kubeconfig: &Path) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("kube-fixtures/image-never-pulled");
    let outcomes = run_profile_at(
        kubeconfig,
        &dir,
        Suite::builtin().expect("suite"),
        &["bootstrap-3"],
    )
    .await;
    let run = &outcomes[0];
    let error = run.error.clone().unwrap_or_default();
    assert_eq!(run.status, RunStatus::Error, "{}", explain(run));
    assert!(
        error.contains("ErrImagePull") || error.contains("ImagePullBackOff"),
        "{error}"
    );
    assert!(error.starts_with("environment: "), "{error}");
    assert!(
        run.verdicts.is_empty(),
        "nothing is judged: {:?}",
        run.verdicts
    );
    assert!(
        run.duration_ms < 30_000,
        "ended after {} ms",
        run.duration_ms
    );
}

/// The run's verdict of one invariant; every run judges every invariant.
pub fn verdict<'a>(result: &'a RunResult, invariant: &str) -> &'a raftcert::invariants::Verdict {
    result
        .verdicts
        .iter()
        .find(|v| v.invariant == invariant)
        .unwrap_or_else(|| panic!("no verdict for {invariant}: {}", explain(result)))
}

/// A PD run that did not pass must have failed by one of the engine bugs
/// documented in docs/findings.md (sections 5 and 7: a `--join` whose only
/// peer is lost mid-join), recognised on its trace by `raftcert::findings`
/// with every violated invariant one that bug breaks. Whether a fault lands
/// in either window is a race, so these cells may also pass.
pub fn assert_known_pd_join_finding(result: &RunResult) {
    assert!(
        result.known_finding.is_some(),
        "no documented PD finding explains this failure: {}",
        explain(result)
    );
}

/// A passing PD run had something to judge for its own invariants: P1 read
/// the PD cluster ID, and T1 judged timestamps (every step settles only
/// once each wanted member handed one out since it began).
pub fn assert_pd_judged(result: &RunResult) {
    for (id, metric) in [("P1", "pd_cluster_id_reads"), ("T1", "timestamps")] {
        let verdict = verdict(result, id);
        assert_eq!(verdict.outcome_word(), "pass", "{id}: {}", explain(result));
        assert!(
            verdict.metrics.get(metric).is_some_and(|n| *n >= 1.0),
            "{id} judged nothing: {}",
            explain(result)
        );
    }
}
