//! Nothing outlives a run: not after a panic in the middle of a run, not
//! after Ctrl-C of the CLI. No process, no bound port, no temporary data.

mod common;

use raftcert::driver::run_scenario;
use raftcert::model::{Action, Observation};
use raftcert::subject::SubjectChoice;
use raftcert::subject::deployer::strategies;
use raftcert::subject::deployer::{Deployer, DeployerError};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn output_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("raftcert-test-runs")
}

/// Every process whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let cmdline = entry.path().join("cmdline");
        if let Ok(bytes) = std::fs::read(&cmdline) {
            let text = String::from_utf8_lossy(&bytes).replace('\0', " ");
            if text.contains(needle) && !text.contains("cargo") {
                found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

fn temp_dirs_with_prefix(prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts no process holds a socket on the address. Connections the
/// kernel keeps in TIME-WAIT after their process is gone are normal TCP and
/// belong to no process.
fn assert_free(addr: &str) {
    let out = Command::new("ss")
        .args(["-Htan", "src", addr])
        .output()
        .expect("ss (iproute2) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let held: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("TIME-WAIT"))
        .collect();
    assert!(held.is_empty(), "{addr} still in use: {held:#?}");
}

/// Peer and client addresses of every slot in a trace's header.
fn addresses_in_trace(trace: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(trace) else {
        return Vec::new();
    };
    let Some(first) = text.lines().next() else {
        return Vec::new();
    };
    let header: serde_json::Value = serde_json::from_str(first).unwrap_or_default();
    header["slots"]
        .as_array()
        .map(|slots| {
            slots
                .iter()
                .flat_map(|s| [s["peer_url"].as_str(), s["client_url"].as_str()])
                .flatten()
                .map(|u| u.trim_start_matches("http://").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Starts a real cluster, then panics in the middle of a reconfiguration.
struct PanicsAfterBootstrap {
    inner: Box<dyn Deployer>,
    calls: u32,
}

impl Deployer for PanicsAfterBootstrap {
    fn reconcile(&mut self, obs: &Observation) -> Result<Vec<Action>, DeployerError> {
        self.calls += 1;
        if obs.members().len() >= 3 && obs.members().iter().all(|m| m.is_started()) {
            panic!("deployer bug on purpose after {} reconciles", self.calls);
        }
        self.inner.reconcile(obs)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_mid_run_leaves_nothing_behind() {
    let rel_dir = "cleanup-panic";
    let dir = output_dir().join(rel_dir);
    let subject = SubjectChoice::Custom {
        name: "panics".into(),
        factory: Arc::new(|ctx| {
            let inner = strategies::find("static")
                .expect("static strategy")
                .build(ctx);
            Box::new(PanicsAfterBootstrap { inner, calls: 0 })
        }),
    };
    let spec = common::builtin_run("bootstrap-3", subject, dir.clone(), rel_dir, 7).await;
    let prefix = format!("raftcert-run-{}-", std::process::id());
    let before = temp_dirs_with_prefix(&prefix);
    let joined = tokio::spawn(run_scenario(spec, None)).await;
    assert!(joined.is_err(), "the run should have panicked");
    // The trace shows the members really ran before the panic.
    let trace = std::fs::read_to_string(dir.join("trace.jsonl")).expect("trace written");
    assert!(trace.matches("\"process-started\"").count() >= 3, "{trace}");
    let data_dir = temp_dirs_with_prefix(&prefix)
        .into_iter()
        .filter(|d| !before.contains(d))
        .collect::<Vec<_>>();
    assert!(
        data_dir.is_empty(),
        "temporary directories left: {data_dir:?}"
    );
    for addr in addresses_in_trace(&dir.join("trace.jsonl")) {
        assert_free(&addr);
    }
    let left = processes_mentioning(&format!("raftcert-run-{}-", std::process::id()));
    assert!(left.is_empty(), "processes left: {left:?}");
}

/// Ctrl-C at a terminal, SIGTERM from a cancelled CI job or `timeout`.
#[rstest::rstest]
#[case::ctrl_c(nix::sys::signal::Signal::SIGINT, 130)]
#[case::sigterm(nix::sys::signal::Signal::SIGTERM, 143)]
fn an_interrupted_cli_leaves_nothing_behind(
    #[case] signal: nix::sys::signal::Signal,
    #[case] code: i32,
) {
    let out = output_dir().join(format!("cleanup-{signal}"));
    let _ = std::fs::remove_dir_all(&out);
    let mut child = Command::new(env!("CARGO_BIN_EXE_raftcert"))
        .args([
            "run",
            "--strategy",
            "seed-join",
            "--scenario",
            "scale-out-1-3-5",
        ])
        .args(["--engine", "etcd@3.5.1", "--no-tls-pass", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start raftcert");
    let pid = child.id();
    let trace = out.join("runs/scale-out-1-3-5-seed-join-3.5.1/trace.jsonl");
    // Wait, event-driven with a deadline, until at least two members run.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let started = std::fs::read_to_string(&trace)
            .map(|t| t.matches("\"process-started\"").count())
            .unwrap_or(0);
        if started >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "members never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).expect("send signal");
    let status = child.wait().expect("raftcert exits");
    assert_eq!(status.code(), Some(code));
    let mut stderr = String::new();
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            stderr.push_str(&line);
            stderr.push('\n');
        }
    }
    assert!(stderr.contains("interrupted"), "{stderr}");
    let left = processes_mentioning(&format!("raftcert-run-{pid}-"));
    assert!(left.is_empty(), "processes left: {left:?}");
    let dirs = temp_dirs_with_prefix(&format!("raftcert-run-{pid}-"));
    assert!(dirs.is_empty(), "temporary directories left: {dirs:?}");
    for addr in addresses_in_trace(&trace) {
        assert_free(&addr);
    }
    // The run's tasks go on for a moment after the signal; the restart
    // policy must not bring back a member the cleanup killed. A restart is
    // started only after its exit is recorded, so none may follow a SIGKILL
    // (a crash before the signal would be an exit code, not a signal).
    let text = std::fs::read_to_string(&trace).expect("trace");
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let started = events
        .iter()
        .filter(|e| e["event"] == "process-started")
        .count();
    assert!(started >= 2, "members started: {started}");
    let mut killed = std::collections::BTreeSet::new();
    for event in &events {
        let slot = event["slot"].to_string();
        if event["event"] == "process-exited" && event["signal"] == 9 {
            killed.insert(slot);
        } else if event["event"] == "process-started" {
            assert!(!killed.contains(&slot), "{slot} started again: {event}");
        }
    }
    // The report is still written: the cut-short run is an error that says
    // it was interrupted.
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("results.json")).expect("results.json written"),
    )
    .expect("results.json parses");
    let run = &results["runs"][0];
    assert_eq!(run["status"], "error", "{results}");
    assert!(
        run["error"]
            .as_str()
            .is_some_and(|e| e.contains("interrupted")),
        "{results}"
    );
    assert!(out.join("junit.xml").exists(), "junit.xml written");
    // Every event up to the interrupt is on disk, and a re-check says the
    // run was cut short instead of passing it.
    let check = Command::new(env!("CARGO_BIN_EXE_raftcert"))
        .arg("check")
        .arg(&trace)
        .output()
        .expect("raftcert check");
    let said = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{said}");
    assert!(said.contains("INCOMPLETE"), "{said}");
}
