//! Nothing a docker-backend run creates outlives it: Ctrl-C of the CLI
//! removes its containers, network and volumes, and after a SIGKILL,
//! which no code survives, `raftcert gc` does.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftcert::substrate::docker::{self, LABEL_RUN};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testcontainers::bollard::Docker;
use testcontainers::bollard::query_parameters::{
    ListContainersOptions, ListNetworksOptions, ListVolumesOptions,
};

fn output_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("raftcert-test-runs")
}

/// A Docker engine, started by the project's script when none answers.
async fn engine() -> Docker {
    if let Ok(d) = docker::connect().await {
        return d;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/start-dockerd");
    let status = Command::new("sh").arg(&script).status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "no Docker engine answers and {} could not start one",
        script.display()
    );
    docker::connect().await.unwrap_or_else(|e| panic!("{e}"))
}

/// What still carries the run's label: containers, networks, volumes.
async fn leftovers(docker: &Docker, label: &str) -> (usize, usize, usize) {
    let filter = || {
        Some(HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_RUN}={label}")],
        )]))
    };
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: filter(),
            ..Default::default()
        }))
        .await
        .expect("list containers")
        .len();
    let networks = docker
        .list_networks(Some(ListNetworksOptions { filters: filter() }))
        .await
        .expect("list networks")
        .len();
    let volumes = docker
        .list_volumes(Some(ListVolumesOptions { filters: filter() }))
        .await
        .expect("list volumes")
        .volumes
        .unwrap_or_default()
        .len();
    (containers, networks, volumes)
}

/// Starts a 3-member docker run of the CLI into `out`.
fn start_run(out: &Path) -> Child {
    let _ = std::fs::remove_dir_all(out);
    Command::new(env!("CARGO_BIN_EXE_raftcert"))
        .args(["run", "--backend", "docker", "--strategy", "static"])
        .args(["--scenario", "rolling-restart", "--engine", "etcd@3.5.1"])
        .args(["--no-tls-pass", "--out"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start raftcert")
}

/// The run's label, read from the first member's log header once its
/// container exists, and waits until `members` containers carry it.
async fn wait_for_members(docker: &Docker, out: &Path, members: usize) -> String {
    let log = out.join("runs/rolling-restart-static-3.5.1-docker/logs/m0.log");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let label = std::fs::read_to_string(&log).ok().and_then(|text| {
            let name = text
                .lines()
                .next()?
                .split("container ")
                .nth(1)?
                .trim()
                .to_string();
            Some(name.strip_prefix("rc-")?.strip_suffix("-m0")?.to_string())
        });
        if let Some(label) = label
            && leftovers(docker, &label).await.0 >= members
        {
            return label;
        }
        assert!(Instant::now() < deadline, "members never started");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_then_gc_leaves_nothing() {
    let docker = engine().await;
    let out = output_dir().join("docker-cleanup-sigkill");
    let mut child = start_run(&out);
    let label = wait_for_members(&docker, &out, 3).await;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).expect("SIGKILL");
    child.wait().expect("reap raftcert");
    let (containers, networks, volumes) = leftovers(&docker, &label).await;
    assert!(
        containers >= 3 && networks == 1 && volumes >= 3,
        "a SIGKILLed run leaves its resources ({containers}, {networks}, {volumes}), so gc has work"
    );
    let gc = Command::new(env!("CARGO_BIN_EXE_raftcert"))
        .args(["gc", "--run", &label])
        .output()
        .expect("raftcert gc");
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    let said = String::from_utf8_lossy(&gc.stdout);
    assert!(said.contains("removed container"), "{said}");
    assert!(said.contains("removed network"), "{said}");
    assert!(said.contains("removed volume"), "{said}");
    assert_eq!(leftovers(&docker, &label).await, (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_removes_containers_network_and_volumes() {
    let docker = engine().await;
    let out = output_dir().join("docker-cleanup-ctrl-c");
    let mut child = start_run(&out);
    let label = wait_for_members(&docker, &out, 3).await;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).expect("SIGINT");
    let status = child.wait().expect("raftcert exits");
    assert_eq!(status.code(), Some(130));
    assert_eq!(leftovers(&docker, &label).await, (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_one_line_and_exit_2() {
    engine().await;
    let out = Command::new(env!("CARGO_BIN_EXE_raftcert"))
        .args([
            "run",
            "--backend",
            "docker",
            "--image",
            "raftcert-no-such-image:0",
        ])
        .args(["--strategy", "static", "--scenario", "bootstrap-1"])
        .args(["--engine", "etcd@3.5.1", "--no-tls-pass"])
        .output()
        .expect("run raftcert");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("raftcert-no-such-image:0"), "{stderr}");
}
