//! Faults below the Kubernetes API: a member's network namespace and its
//! processes, reached through the node it runs on. Where every node is a
//! container of the local Docker engine (kind), members can be cut off,
//! frozen and disconnected as on the docker backend; elsewhere the
//! scenarios that need it are reported as not covered.
//!
//! NetworkPolicy would be the portable way, but enforcers commonly judge a
//! connection by its first packet (kube-network-policies queues only new
//! connections to user space), so etcd's long-lived peer streams would
//! outlive the "partition". Blackhole routes in the pod's own network
//! namespace drop established streams too, and leave the pod's loopback,
//! which port-forwards use, alone.

use super::KubeError;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{Api, Client, ResourceExt};

/// The label kind puts on its node containers.
const KIND_CLUSTER_LABEL: &str = "io.x-k8s.kind.cluster";
/// Preference of the rule that disconnects a pod: right after the local
/// table (preference 0), so loopback and the pod's own address still work
/// and everything else is dropped, whatever routes the CNI installed.
const DISCONNECT_RULE_PREF: &str = "10";

/// Shell run on the node: signals every process in the pid namespace of
/// `$1`, that is every process of the member's container.
const SIGNAL_CONTAINER: &str = r#"ns=$(readlink /proc/$1/ns/pid) || exit 1
for d in /proc/[0-9]*; do
  [ "$(readlink "$d/ns/pid" 2>/dev/null)" = "$ns" ] && kill "-$2" "${d#/proc/}" 2>/dev/null
done
exit 0"#;

/// Node-level access to the members of one cluster.
#[derive(Debug, Clone)]
pub struct NodeAccess {
    /// The kind cluster's name.
    pub cluster: String,
}

/// One member container as its node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub pod: String,
    pub ip: String,
    node: String,
    /// The container's first process, in the node's pid namespace.
    pid: u32,
}

/// A fault that is in force and how to take it back.
#[derive(Debug, Clone)]
enum Held {
    Route { target: Target, dest: String },
    Disconnected(Target),
    Frozen(Target),
}

/// Faults in force in one run, taken back by `undo_all`, and with the
/// run's namespace when the run ends early (routes and stopped processes
/// go with their pods).
#[derive(Debug, Default)]
pub struct HeldFaults {
    held: Vec<Held>,
}

impl NodeAccess {
    /// Node access when every node of the cluster is a kind node container
    /// of the local Docker engine; the reason otherwise.
    pub async fn probe(client: &Client) -> Result<NodeAccess, String> {
        let nodes: Api<Node> = Api::all(client.clone());
        let list = nodes
            .list(&Default::default())
            .await
            .map_err(|e| format!("listing nodes: {e}"))?;
        let mut cluster: Option<String> = None;
        for node in &list.items {
            let name = node.name_any();
            let label = docker(&[
                "inspect",
                "--format",
                &format!("{{{{index .Config.Labels \"{KIND_CLUSTER_LABEL}\"}}}}"),
                &name,
            ])
            .await
            .map_err(|e| {
                format!("node {name} is not a container of the local Docker engine ({e})")
            })?;
            let label = label.trim();
            if label.is_empty() || label == "<no value>" {
                return Err(format!("node {name} is a container, but not a kind node"));
            }
            match &cluster {
                Some(c) if c != label => {
                    return Err(format!("nodes of two kind clusters ({c}, {label})"));
                }
                _ => cluster = Some(label.to_string()),
            }
        }
        cluster
            .map(|cluster| NodeAccess { cluster })
            .ok_or_else(|| "the cluster lists no node".to_string())
    }

    /// Where the member container of `pod` runs, or why it cannot be reached.
    pub async fn target(
        &self,
        pods: &Api<Pod>,
        pod: &str,
        container: &str,
    ) -> Result<Target, KubeError> {
        let unreachable = |why: &str| KubeError::Unsupported(format!("pod {pod}: {why}"));
        let found = pods.get(pod).await?;
        let node = found
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .ok_or_else(|| unreachable("not scheduled"))?;
        let status = found
            .status
            .as_ref()
            .ok_or_else(|| unreachable("no status"))?;
        let ip = status
            .pod_ip
            .clone()
            .ok_or_else(|| unreachable("no IP yet"))?;
        let container_id = status
            .container_statuses
            .iter()
            .flatten()
            .find(|c| c.name == container)
            .and_then(|c| c.container_id.as_deref())
            .and_then(|id| id.split_once("://").map(|(_, id)| id.to_string()))
            .ok_or_else(|| unreachable(&format!("container {container} has not started")))?;
        let inspected = docker(&["exec", &node, "crictl", "inspect", &container_id])
            .await
            .map_err(|e| unreachable(&e))?;
        let pid = serde_json::from_str::<serde_json::Value>(&inspected)
            .ok()
            .and_then(|v| v.pointer("/info/pid").and_then(|p| p.as_u64()))
            .filter(|pid| *pid > 0)
            .ok_or_else(|| unreachable("crictl inspect shows no running process"))?;
        Ok(Target {
            pod: pod.to_string(),
            ip,
            node,
            pid: pid as u32,
        })
    }

    /// `ip <args>` in the target's network namespace.
    async fn ip(&self, target: &Target, args: &[&str]) -> Result<(), KubeError> {
        let pid = target.pid.to_string();
        let mut command = vec!["exec", &target.node, "nsenter", "-t", &pid, "-n", "ip"];
        command.extend_from_slice(args);
        docker(&command).await.map(|_| ()).map_err(|e| {
            KubeError::Unsupported(format!("ip {} in pod {}: {e}", args.join(" "), target.pod))
        })
    }

    async fn route(&self, target: &Target, op: &str, dest: &str) -> Result<(), KubeError> {
        self.ip(target, &["route", op, "blackhole", dest]).await
    }

    async fn disconnect_rule(&self, target: &Target, op: &str) -> Result<(), KubeError> {
        self.ip(
            target,
            &["rule", op, "pref", DISCONNECT_RULE_PREF, "blackhole"],
        )
        .await
    }

    async fn signal(&self, target: &Target, signal: &str) -> Result<(), KubeError> {
        let pid = target.pid.to_string();
        docker(&[
            "exec",
            &target.node,
            "sh",
            "-c",
            SIGNAL_CONTAINER,
            "signal",
            &pid,
            signal,
        ])
        .await
        .map(|_| ())
        .map_err(|e| KubeError::Unsupported(format!("SIG{signal} to pod {}: {e}", target.pod)))
    }
}

impl HeldFaults {
    /// Drops traffic between every member of `a` and every member of `b`,
    /// both ways.
    pub async fn cut(
        &mut self,
        nodes: &NodeAccess,
        a: &[Target],
        b: &[Target],
    ) -> Result<(), KubeError> {
        for (from, to) in [(a, b), (b, a)] {
            for source in from {
                for dest in to {
                    let dest = format!("{}/32", dest.ip);
                    nodes.route(source, "replace", &dest).await?;
                    self.held.push(Held::Route {
                        target: source.clone(),
                        dest,
                    });
                }
            }
        }
        Ok(())
    }

    /// Drops everything the member sends off the pod: peers, operator,
    /// kubelet probes' answers.
    pub async fn disconnect(&mut self, nodes: &NodeAccess, t: &Target) -> Result<(), KubeError> {
        nodes.disconnect_rule(t, "add").await?;
        self.held.push(Held::Disconnected(t.clone()));
        Ok(())
    }

    /// Stops every process of the member's container.
    pub async fn freeze(&mut self, nodes: &NodeAccess, t: &Target) -> Result<(), KubeError> {
        nodes.signal(t, "STOP").await?;
        self.held.push(Held::Frozen(t.clone()));
        Ok(())
    }

    /// Takes back what is held for `pod` (all when `None`). A pod that is
    /// gone took its namespace and processes with it, so failures on it are
    /// not errors; the first other failure is returned.
    pub async fn undo(&mut self, nodes: &NodeAccess, pod: Option<&str>) -> Result<(), KubeError> {
        let (undo, keep): (Vec<Held>, Vec<Held>) =
            std::mem::take(&mut self.held).into_iter().partition(|h| {
                let target = match h {
                    Held::Route { target, .. }
                    | Held::Disconnected(target)
                    | Held::Frozen(target) => target,
                };
                pod.is_none_or(|p| p == target.pod)
            });
        self.held = keep;
        let mut first_error = None;
        for held in undo {
            let (target, done) = match &held {
                Held::Route { target, dest } => (target, nodes.route(target, "del", dest).await),
                Held::Disconnected(target) => (target, nodes.disconnect_rule(target, "del").await),
                Held::Frozen(target) => (target, nodes.signal(target, "CONT").await),
            };
            if let Err(e) = done
                && process_alive(target).await
            {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// Whether the target's first process still exists on its node.
async fn process_alive(target: &Target) -> bool {
    docker(&[
        "exec",
        &target.node,
        "test",
        "-d",
        &format!("/proc/{}", target.pid),
    ])
    .await
    .is_ok()
}

/// Runs the docker CLI; its stdout, or its stderr as the error.
async fn docker(args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new("docker")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("running docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}
