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
use std::time::Duration;

/// The label of a control-plane node.
const CONTROL_PLANE_ROLE: &str = "node-role.kubernetes.io/control-plane";
/// The label kind puts on its node containers.
const KIND_CLUSTER_LABEL: &str = "io.x-k8s.kind.cluster";
/// Preference of the rule that disconnects a pod: right after the local
/// table (preference 0), so loopback and the pod's own address still work
/// and everything else is dropped, whatever routes the CNI installed.
const DISCONNECT_RULE_PREF: &str = "10";
/// Loading one image into a kind cluster's nodes.
const IMAGE_LOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// A `docker exec` on a node that takes longer is stuck.
const NODE_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Shell run on the node: signals every process in the pid namespace of
/// `$1`, that is every process of the member's container, and refuses when
/// that namespace is the node's own (the pid was reused by a node process).
const SIGNAL_CONTAINER: &str = r#"ns=$(readlink "/proc/$1/ns/pid") || exit 1
[ "$ns" != "$(readlink /proc/self/ns/pid)" ] || { echo "pid $1 is not in a container" >&2; exit 2; }
for d in /proc/[0-9]*; do
  [ "$(readlink "$d/ns/pid" 2>/dev/null)" = "$ns" ] && kill "-$2" "${d#/proc/}" 2>/dev/null
done
exit 0"#;

/// Node-level access to the members of one cluster.
#[derive(Debug, Clone)]
pub struct NodeAccess {
    /// The kind cluster's name.
    pub cluster: String,
    /// Its node containers.
    pub nodes: Vec<String>,
}

/// One member pod as its node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub pod: String,
    /// The pod's IPs (one per family).
    pub ips: Vec<String>,
    node: String,
    /// The pod sandbox's process: its network namespace is the pod's, and
    /// outlives restarts of the member container.
    sandbox_pid: u32,
    /// The member container's first process.
    container_pid: Option<u32>,
}

impl Target {
    fn families(&self) -> impl Iterator<Item = &'static str> + '_ {
        let v4 = self.ips.iter().any(|ip| !ip.contains(':'));
        let v6 = self.ips.iter().any(|ip| ip.contains(':'));
        [("-4", v4), ("-6", v6)]
            .into_iter()
            .filter_map(|(family, present)| present.then_some(family))
    }
}

/// Which kind of fault an entry of `HeldFaults` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldKind {
    Cut,
    Disconnect,
    Freeze,
}

/// A fault in force on one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    kind: HeldKind,
    target: Target,
    /// For a cut: the address no longer reached.
    dest: Option<String>,
}

/// Faults in force in one run. Routes, rules and stopped processes also go
/// with their pods, so a run whose namespace is deleted leaves none behind.
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
        let mut names = Vec::new();
        for node in &list.items {
            let name = node.name_any();
            names.push(name.clone());
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
            .map(|cluster| NodeAccess {
                cluster,
                nodes: names,
            })
            .ok_or_else(|| "the cluster lists no node".to_string())
    }

    /// The nodes without the control-plane role: those a node fault may
    /// stop or drain.
    pub async fn workers(client: &Client) -> Result<Vec<String>, KubeError> {
        let nodes: Api<Node> = Api::all(client.clone());
        Ok(nodes
            .list(&Default::default())
            .await?
            .items
            .iter()
            .filter(|node| !node.labels().contains_key(CONTROL_PLANE_ROLE))
            .map(|node| node.name_any())
            .collect())
    }

    /// The nodes whose container runtime lacks `image`.
    pub async fn nodes_without(&self, image: &str) -> Vec<String> {
        // A rebuilt image keeps its tag: a node that holds an older build
        // under it lacks the image as well.
        let local = docker(&["image", "inspect", "--format", "{{.Id}}", image])
            .await
            .ok()
            .map(|id| id.trim().to_string());
        let mut missing = Vec::new();
        for node in &self.nodes {
            let held = docker(&["exec", node, "crictl", "inspecti", "-o", "json", image]).await;
            let current = match (held, &local) {
                (Err(_), _) => false,
                (Ok(_), None) => true,
                (Ok(json), Some(id)) => crictl_image_id(&json).as_deref() == Some(id.as_str()),
            };
            if !current {
                missing.push(node.clone());
            }
        }
        missing
    }

    /// Loads `image` from the local Docker engine into every node, as
    /// `kind load docker-image` does.
    pub async fn load_image(&self, image: &str) -> Result<(), String> {
        docker(&["image", "inspect", image])
            .await
            .map_err(|_| format!("image {image} is not in the local Docker engine either"))?;
        let kind = super::profile::kind_cache().join("bin/kind");
        let kind = if kind.is_file() {
            kind.display().to_string()
        } else {
            "kind".to_string()
        };
        let run = tokio::process::Command::new(&kind)
            .args(["load", "docker-image", image, "--name", &self.cluster])
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(IMAGE_LOAD_TIMEOUT, run)
            .await
            .map_err(|_| {
                format!("{kind} load docker-image {image}: no end within {IMAGE_LOAD_TIMEOUT:?}")
            })?
            .map_err(|e| format!("running {kind}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{kind} load docker-image {image}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
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
        let mut ips: Vec<String> = status
            .pod_ips
            .iter()
            .flatten()
            .map(|ip| ip.ip.clone())
            .collect();
        if ips.is_empty() {
            ips.extend(status.pod_ip.clone());
        }
        if ips.is_empty() {
            return Err(unreachable("no IP yet"));
        }
        let container_id = status
            .container_statuses
            .iter()
            .flatten()
            .find(|c| c.name == container)
            .and_then(|c| c.container_id.as_deref())
            .and_then(|id| id.split_once("://").map(|(_, id)| id.to_string()))
            .ok_or_else(|| unreachable(&format!("container {container} has not started")))?;
        let inspect = |what: &'static str, id: String| {
            let node = node.clone();
            async move {
                let text = docker(&["exec", &node, "crictl", what, &id]).await?;
                serde_json::from_str::<serde_json::Value>(&text)
                    .map_err(|e| format!("crictl {what}: {e}"))
            }
        };
        let container_info = inspect("inspect", container_id)
            .await
            .map_err(|e| unreachable(&e))?;
        let pid = |info: &serde_json::Value| {
            info.pointer("/info/pid")
                .and_then(|p| p.as_u64())
                .filter(|pid| *pid > 0)
                .map(|pid| pid as u32)
        };
        // None while the container restarts: its network namespace, the
        // sandbox's, can still be cut off; only a freeze needs a process.
        let container_pid = pid(&container_info);
        let sandbox_id = container_info
            .pointer("/info/sandboxID")
            .and_then(|s| s.as_str())
            .ok_or_else(|| unreachable("crictl inspect names no sandbox"))?
            .to_string();
        let sandbox_info = inspect("inspectp", sandbox_id)
            .await
            .map_err(|e| unreachable(&e))?;
        let sandbox_pid =
            pid(&sandbox_info).ok_or_else(|| unreachable("its sandbox runs no process"))?;
        Ok(Target {
            pod: pod.to_string(),
            ips,
            node,
            sandbox_pid,
            container_pid,
        })
    }

    /// `ip <args>` in the target's network namespace.
    async fn ip(&self, target: &Target, args: &[&str]) -> Result<(), KubeError> {
        let pid = target.sandbox_pid.to_string();
        let mut command = vec!["exec", &target.node, "nsenter", "-t", &pid, "-n", "ip"];
        command.extend_from_slice(args);
        docker(&command).await.map(|_| ()).map_err(|e| {
            KubeError::Unsupported(format!("ip {} in pod {}: {e}", args.join(" "), target.pod))
        })
    }

    async fn signal(&self, target: &Target, signal: &str) -> Result<(), KubeError> {
        let pid = target
            .container_pid
            .ok_or_else(|| {
                KubeError::Unsupported(format!("pod {}: its container runs no process", target.pod))
            })?
            .to_string();
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

    /// Applies (`on`) or takes back a held fault.
    async fn change(&self, held: &Held, on: bool) -> Result<(), KubeError> {
        let t = &held.target;
        match held.kind {
            HeldKind::Cut => {
                // A bare address is a host route, in either family.
                let dest = held.dest.as_deref().unwrap_or_default();
                let op = if on { "replace" } else { "del" };
                self.ip(t, &["route", op, "blackhole", dest]).await
            }
            HeldKind::Disconnect => {
                let op = if on { "add" } else { "del" };
                for family in t.families() {
                    self.ip(
                        t,
                        &[
                            family,
                            "rule",
                            op,
                            "pref",
                            DISCONNECT_RULE_PREF,
                            "blackhole",
                        ],
                    )
                    .await?;
                }
                Ok(())
            }
            HeldKind::Freeze => self.signal(t, if on { "STOP" } else { "CONT" }).await,
        }
    }

    /// Whether the target's pod sandbox still runs on its node; when it does
    /// not, its namespace and processes are gone with it.
    async fn pod_alive(&self, target: &Target) -> bool {
        docker(&[
            "exec",
            &target.node,
            "test",
            "-d",
            &format!("/proc/{}", target.sandbox_pid),
        ])
        .await
        .is_ok()
    }
}

impl HeldFaults {
    async fn hold(&mut self, nodes: &NodeAccess, held: Held) -> Result<(), KubeError> {
        if self.held.contains(&held) {
            return Ok(());
        }
        // Held before it is applied: a half-applied fault is taken back too.
        self.held.push(held.clone());
        nodes.change(&held, true).await
    }

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
                for dest in to.iter().flat_map(|t| t.ips.iter()) {
                    let held = Held {
                        kind: HeldKind::Cut,
                        target: source.clone(),
                        dest: Some(dest.clone()),
                    };
                    self.hold(nodes, held).await?;
                }
            }
        }
        Ok(())
    }

    /// A fault on the whole member: `Disconnect` drops everything it sends
    /// off its pod (peers, operator, kubelet probes' answers); `Freeze` stops
    /// every process of its container.
    pub async fn hold_member(
        &mut self,
        nodes: &NodeAccess,
        kind: HeldKind,
        t: &Target,
    ) -> Result<(), KubeError> {
        let held = Held {
            kind,
            target: t.clone(),
            dest: None,
        };
        self.hold(nodes, held).await
    }

    /// Takes back the faults of `kind` (on `pod` only, when given). A pod
    /// that is gone took its namespace and processes with it, so failures on
    /// it are not errors; any other failure keeps its fault held (for a later
    /// retry) and the first is returned.
    pub async fn undo(
        &mut self,
        nodes: &NodeAccess,
        kind: HeldKind,
        pod: Option<&str>,
    ) -> Result<(), KubeError> {
        let (undo, keep): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| h.kind == kind && pod.is_none_or(|p| p == h.target.pod));
        self.held = keep;
        let mut first_error = None;
        for held in undo {
            if let Err(e) = nodes.change(&held, false).await
                && nodes.pod_alive(&held.target).await
            {
                self.held.push(held);
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The pods holding a fault of `kind`, each once.
    pub fn pods(&self, kind: HeldKind) -> Vec<String> {
        let mut pods: Vec<String> = Vec::new();
        for held in self.held.iter().filter(|h| h.kind == kind) {
            if !pods.contains(&held.target.pod) {
                pods.push(held.target.pod.clone());
            }
        }
        pods
    }
}

/// A node container's address on kind's network.
pub async fn node_address(node: &str) -> Result<String, KubeError> {
    let address = docker(&[
        "inspect",
        "--format",
        "{{with index .NetworkSettings.Networks \"kind\"}}{{.IPAddress}}{{end}}",
        node,
    ])
    .await
    .map_err(|e| KubeError::Unsupported(format!("node {node}: {e}")))?;
    let address = address.trim();
    if address.is_empty() {
        return Err(KubeError::Unsupported(format!(
            "node {node} has no address on kind's network"
        )));
    }
    Ok(address.to_string())
}

/// Routes every node's pod range through that node, on every other
/// node, as `ci/kind/create-cluster` installs them (kind's own CNI
/// cannot be built here): a node started again has a new network
/// namespace without them.
pub async fn install_pod_routes(client: &Client) -> Result<(), KubeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut ranges = Vec::new();
    for node in nodes.list(&Default::default()).await?.items {
        let name = node.name_any();
        let Some(cidr) = node.spec.and_then(|s| s.pod_cidr) else {
            continue;
        };
        let address = node_address(&name).await?;
        ranges.push((name, cidr, address));
    }
    for (node, _, _) in &ranges {
        for (other, cidr, via) in &ranges {
            if other != node {
                docker(&["exec", node, "ip", "route", "replace", cidr, "via", via])
                    .await
                    .map_err(|e| {
                        KubeError::Unsupported(format!("route to {cidr} on node {node}: {e}"))
                    })?;
            }
        }
    }
    Ok(())
}

/// The image ID in `crictl inspecti -o json` output (`status.id`), as
/// `docker image inspect` gives it for an image kind loaded.
fn crictl_image_id(json: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    value
        .pointer("/status/id")
        .and_then(|id| id.as_str())
        .map(str::to_string)
}

/// Runs the docker CLI; its stdout, or its stderr as the error.
pub(super) async fn docker(args: &[&str]) -> Result<String, String> {
    let run = tokio::process::Command::new("docker")
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(NODE_COMMAND_TIMEOUT, run)
        .await
        .map_err(|_| {
            format!(
                "docker {} did not finish within {NODE_COMMAND_TIMEOUT:?}",
                args.first().unwrap_or(&"")
            )
        })?
        .map_err(|e| format!("running docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::crictl_image_id;

    #[test]
    fn the_image_id_is_read_from_crictl_json() {
        let json = r#"{"status":{"id":"sha256:d767","repoTags":["docker.io/raftcert/pd-shell:v8.5.7"]},"info":{}}"#;
        assert_eq!(crictl_image_id(json).as_deref(), Some("sha256:d767"));
        assert_eq!(crictl_image_id("{}"), None);
        assert_eq!(crictl_image_id("not json"), None);
    }
}
