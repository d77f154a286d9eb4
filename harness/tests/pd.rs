//! PD built from `../shared/sources` is a working PD: three members
//! bootstrapped statically on loopback are healthy, agree on one leader and
//! one PD cluster ID, and report the version the build stamped.

use raftcert::engine::EngineKind;
use raftcert::engine::provision;
use raftcert::substrate::process::{AddressPlan, CLIENT_PORT, PEER_PORT};
use raftcert::sys::TempDir;
use rstest::rstest;
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

const MEMBERS: u32 = 3;
const HEALTHY_DEADLINE: Duration = Duration::from_secs(90);

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pd_built_from_source_bootstraps_three_members(#[values("8.5.7", "26.3.4")] version: &str) {
    let install = provision::provision(EngineKind::Pd, version)
        .await
        .unwrap_or_else(|e| panic!("provisioning pd {version}: {e}"));
    assert!(
        install
            .source
            .contains(&format!("pd-v{version}.tar.gz sha256:")),
        "the install names its source tarball and digest: {}",
        install.source
    );

    let plan = AddressPlan::allocate(MEMBERS, u64::from(std::process::id())).expect("addresses");
    let dir = TempDir::new("raftcert-pd-test").expect("temp dir");
    let peer = |ord: u32| format!("http://{}:{PEER_PORT}", plan.member_ip(ord));
    let client = |ord: u32| format!("http://{}:{CLIENT_PORT}", plan.member_ip(ord));
    let initial_cluster: Vec<String> = (0..MEMBERS)
        .map(|ord| format!("pd{ord}={}", peer(ord)))
        .collect();
    // Dropped on every exit, panics included: kill_on_drop ends each member.
    let _members: Vec<Child> = (0..MEMBERS)
        .map(|ord| {
            let log = std::fs::File::create(dir.path().join(format!("pd{ord}.log"))).expect("log");
            Command::new(&install.server)
                .arg(format!("--name=pd{ord}"))
                .arg(format!(
                    "--data-dir={}",
                    dir.path().join(format!("pd{ord}")).display()
                ))
                .arg(format!("--client-urls={}", client(ord)))
                .arg(format!("--peer-urls={}", peer(ord)))
                .arg(format!("--initial-cluster={}", initial_cluster.join(",")))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .expect("start pd-server")
        })
        .collect();

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("http client");
    let get = |url: String| {
        let http = http.clone();
        async move {
            let response = http.get(&url).send().await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            response.json::<Value>().await.ok()
        }
    };

    // Ready when every member reports every member healthy, names a PD
    // leader (elected after etcd is healthy) and answers with its cluster.
    #[derive(Debug)]
    struct View {
        cluster_id: u64,
        leader: String,
        members: Value,
    }
    let view_of = |ord: u32| async move {
        let health = get(format!("{}/pd/api/v1/health", client(ord))).await?;
        let healthy = health.as_array().is_some_and(|members| {
            members.len() == MEMBERS as usize
                && members.iter().all(|m| m["health"] == Value::Bool(true))
        });
        if !healthy {
            return None;
        }
        let leader = get(format!("{}/pd/api/v1/leader", client(ord))).await?;
        let cluster = get(format!("{}/pd/api/v1/cluster", client(ord))).await?;
        let members = get(format!("{}/pd/api/v1/members", client(ord))).await?;
        Some(View {
            cluster_id: cluster["id"].as_u64()?,
            leader: leader["name"].as_str()?.to_string(),
            members,
        })
    };
    let deadline = tokio::time::Instant::now() + HEALTHY_DEADLINE;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let views = loop {
        tick.tick().await;
        let mut views = Vec::new();
        for ord in 0..MEMBERS {
            views.extend(view_of(ord).await);
        }
        if views.len() == MEMBERS as usize {
            break views;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pd {version}: not ready within {HEALTHY_DEADLINE:?}\n{}",
            log_tails(dir.path())
        );
    };

    for view in &views {
        let listed = view.members["members"].as_array().expect("members array");
        assert_eq!(listed.len(), MEMBERS as usize, "{}", view.members);
        for m in listed {
            assert_eq!(m["binary_version"], format!("v{version}"), "{m}");
        }
    }
    let leaders: Vec<&str> = views.iter().map(|v| v.leader.as_str()).collect();
    let cluster_ids: Vec<u64> = views.iter().map(|v| v.cluster_id).collect();
    assert!(
        leaders[0].starts_with("pd") && leaders.iter().all(|l| *l == leaders[0]),
        "one leader, named by every member: {leaders:?}"
    );
    assert_ne!(cluster_ids[0], 0);
    assert!(
        cluster_ids.iter().all(|id| *id == cluster_ids[0]),
        "one PD cluster ID: {cluster_ids:?}"
    );
}

/// The last lines of every member's log: the temporary directory is gone
/// once a failed test has unwound.
fn log_tails(dir: &std::path::Path) -> String {
    (0..MEMBERS)
        .map(|ord| {
            let text =
                std::fs::read_to_string(dir.join(format!("pd{ord}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            format!("--- pd{ord}.log (last 15 lines)\n{tail}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
