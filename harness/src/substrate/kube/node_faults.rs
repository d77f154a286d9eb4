//! Faults on whole nodes: a worker stopped and started again (its kind
//! node container), and a worker cordoned, drained and uncordoned. Each
//! acts on every pod of the node, so the runs that use them run alone
//! (`SubstrateChoice::disturbs_other_runs`), and each is taken back when
//! its run ends, even when the process is interrupted (the reaper's hook).

use super::nodes::{NodeAccess, docker, install_pod_routes, node_address};
use super::{KubeError, KubeTarget};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams};
use kube::runtime::wait::await_condition;
use kube::{Client, Config, ResourceExt};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a drain keeps asking for an eviction that a
/// PodDisruptionBudget refuses (`kubectl drain` asks forever).
const EVICTION_DEADLINE: Duration = Duration::from_secs(120);
/// Between two asks of a refused eviction.
const EVICTION_RETRY: Duration = Duration::from_secs(2);
/// How long a node started again may take to report Ready.
const NODE_READY_DEADLINE: Duration = Duration::from_secs(180);
/// `docker stop`'s grace before it kills the node's init (its default).
const NODE_STOP_GRACE_SECS: &str = "10";

/// What a node fault did to a node, for the reaper to take back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeChange {
    Stopped,
    Cordoned,
}

/// Node faults still in force in this process, with the configuration to
/// reach their cluster.
static LIVE_NODE_CHANGES: Mutex<Vec<(Config, NodeChange, String)>> = Mutex::new(Vec::new());

fn note_live(config: &Config, change: NodeChange, node: &str, live: bool) {
    let Ok(mut changes) = LIVE_NODE_CHANGES.lock() else {
        return;
    };
    changes.retain(|(_, c, n)| !(*c == change && n == node));
    if live {
        changes.push((config.clone(), change, node.to_string()));
    }
}

/// The reaper's hook: starts the nodes stopped and uncordons the nodes
/// cordoned by runs still in progress.
pub fn release_live_node_changes_blocking() {
    let live: Vec<(Config, NodeChange, String)> = LIVE_NODE_CHANGES
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    if live.is_empty() {
        return;
    }
    super::block_on_a_thread_of_its_own(async {
        for (config, change, node) in live {
            let Ok(client) = Client::try_from(config) else {
                continue;
            };
            let undo = async {
                match change {
                    NodeChange::Stopped => {
                        docker(&["start", &node])
                            .await
                            .map_err(KubeError::Unsupported)?;
                        install_pod_routes(&client).await
                    }
                    NodeChange::Cordoned => set_unschedulable(&client, &node, false).await,
                }
            };
            let done = match change {
                NodeChange::Stopped => "started again",
                NodeChange::Cordoned => "uncordoned",
            };
            match tokio::time::timeout(Duration::from_secs(60), undo).await {
                Ok(Ok(())) => eprintln!("{done} node {node}"),
                Ok(Err(e)) => eprintln!("node {node}: {e}"),
                Err(_) => eprintln!("node {node}: not taken back within 60 s"),
            }
        }
    });
}

/// The node faults in force in one run, by the member (slot) they were
/// aimed at: the undo acts on the node the fault found then, wherever the
/// member's pod is now.
#[derive(Debug, Default)]
pub struct NodeFaults {
    stopped: BTreeMap<String, StoppedNode>,
    cordoned: BTreeMap<String, String>,
    /// When the last node fault was taken back: a pod that could not be
    /// scheduled while its node was away gets its grace again from here.
    released_at: Option<Instant>,
}

/// See [`NodeFaults::placement_clock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacementClock {
    Paused,
    Running { restarted_at: Option<Instant> },
}

#[derive(Debug)]
struct StoppedNode {
    node: String,
    /// Its address on kind's network before the stop.
    address: String,
}

impl NodeFaults {
    /// Whether a node is stopped or cordoned now.
    pub fn any_held(&self) -> bool {
        !self.stopped.is_empty() || !self.cordoned.is_empty()
    }

    /// How a pod's placement problem is timed: not at all while a node
    /// fault holds (a member bound to that node's volume waits, Pending, by
    /// design), and after that from the moment the last one was taken back.
    pub fn placement_clock(&self) -> PlacementClock {
        if self.any_held() {
            PlacementClock::Paused
        } else {
            PlacementClock::Running {
                restarted_at: self.released_at,
            }
        }
    }

    /// Stops the node `slot`'s pod runs on.
    pub async fn stop(
        &mut self,
        target: &KubeTarget,
        pods: &Api<Pod>,
        slot: &str,
    ) -> Result<(), KubeError> {
        access(target)?;
        let node = worker_of(target, pods, slot).await?;
        let address = node_address(&node).await?;
        note_live(&target.config, NodeChange::Stopped, &node, true);
        docker(&["stop", "--timeout", NODE_STOP_GRACE_SECS, &node])
            .await
            .map_err(|e| KubeError::Unsupported(format!("docker stop {node}: {e}")))?;
        tracing::info!("stopped node {node} (of {slot})");
        self.stopped
            .insert(slot.to_string(), StoppedNode { node, address });
        Ok(())
    }

    /// Starts again the node stopped for `slot`, and gives it back its
    /// routes to the other nodes' pods (its network namespace is new).
    pub async fn start(&mut self, target: &KubeTarget, slot: &str) -> Result<(), KubeError> {
        let Some(stopped) = self.stopped.remove(slot) else {
            return Ok(());
        };
        access(target)?;
        self.released_at = Some(Instant::now());
        let node = &stopped.node;
        docker(&["start", node])
            .await
            .map_err(|e| KubeError::Unsupported(format!("docker start {node}: {e}")))?;
        note_live(&target.config, NodeChange::Stopped, node, false);
        tracing::info!("started node {node} again");
        let address = node_address(node).await?;
        if address != stopped.address {
            // Its kubelet and every peer route still name the old address.
            return Err(KubeError::Unsupported(format!(
                "node {node} came back at {address}, not {}: kind nodes keep the address they were created with",
                stopped.address
            )));
        }
        install_pod_routes(&target.client).await?;
        // Started again means its kubelet reports in: the next run must not
        // begin on a node that is still coming back.
        let nodes: Api<Node> = Api::all(target.client.clone());
        tokio::time::timeout(
            NODE_READY_DEADLINE,
            await_condition(nodes, node, node_is_ready),
        )
        .await
        .map_err(|_| {
            KubeError::Timeout(
                NODE_READY_DEADLINE,
                format!("node {node} to be Ready again"),
            )
        })?
        .map_err(|e| KubeError::Unsupported(format!("watching node {node}: {e}")))?;
        tracing::info!("node {node} is Ready again");
        Ok(())
    }

    /// Cordons the node `slot`'s pod runs on and evicts its pods, as
    /// `kubectl drain --ignore-daemonsets --delete-emptydir-data` does.
    pub async fn drain(
        &mut self,
        target: &KubeTarget,
        pods: &Api<Pod>,
        slot: &str,
    ) -> Result<(), KubeError> {
        let node = worker_of(target, pods, slot).await?;
        let client = &target.client;
        note_live(&target.config, NodeChange::Cordoned, &node, true);
        self.cordoned.insert(slot.to_string(), node.clone());
        set_unschedulable(client, &node, true).await?;
        let everywhere: Api<Pod> = Api::all(client.clone());
        let on_node = everywhere
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await?;
        let mut evicted = 0;
        for pod in on_node.items.iter().filter(|p| drained_by_kubectl(p)) {
            if pod.metadata.deletion_timestamp.is_some() {
                // Already going (a namespace of an earlier run, being
                // deleted, refuses evictions); kubectl drain waits for it.
                continue;
            }
            let namespace = pod.namespace().unwrap_or_default();
            evict(
                &Api::namespaced(client.clone(), &namespace),
                &pod.name_any(),
            )
            .await?;
            evicted += 1;
        }
        tracing::info!("drained node {node} (of {slot}): {evicted} pods evicted");
        Ok(())
    }

    /// Lets the node cordoned for `slot` take pods again.
    pub async fn uncordon(&mut self, target: &KubeTarget, slot: &str) -> Result<(), KubeError> {
        let Some(node) = self.cordoned.remove(slot) else {
            return Ok(());
        };
        self.released_at = Some(Instant::now());
        set_unschedulable(&target.client, &node, false).await?;
        note_live(&target.config, NodeChange::Cordoned, &node, false);
        tracing::info!("uncordoned node {node}");
        Ok(())
    }

    /// Takes back every node fault still in force.
    pub async fn release_all(&mut self, target: &KubeTarget) -> Result<(), KubeError> {
        let mut first_error = None;
        let slots: Vec<String> = self.stopped.keys().cloned().collect();
        for slot in slots {
            if let Err(e) = self.start(target, &slot).await {
                first_error.get_or_insert(e);
            }
        }
        let slots: Vec<String> = self.cordoned.keys().cloned().collect();
        for slot in slots {
            if let Err(e) = self.uncordon(target, &slot).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The cluster's nodes, or why they cannot be reached.
fn access(target: &KubeTarget) -> Result<&NodeAccess, KubeError> {
    target
        .nodes
        .as_ref()
        .map_err(|why| KubeError::Unsupported(format!("no access to the nodes: {why}")))
}

/// The worker node `slot`'s pod runs on; a control-plane node is refused
/// (stopping it stops the API the harness and the operator talk to).
async fn worker_of(target: &KubeTarget, pods: &Api<Pod>, slot: &str) -> Result<String, KubeError> {
    let pod = pods.get(slot).await?;
    let node = pod
        .spec
        .and_then(|s| s.node_name)
        .ok_or_else(|| KubeError::Unsupported(format!("pod {slot}: not scheduled on a node")))?;
    if !target.workers.contains(&node) {
        return Err(KubeError::Unsupported(format!(
            "pod {slot} runs on {node}, a control-plane node: a node fault there would stop the API"
        )));
    }
    Ok(node)
}

/// Whether `kubectl drain --ignore-daemonsets` evicts the pod: not a
/// DaemonSet's, not a static (mirror) pod, not finished.
fn drained_by_kubectl(pod: &Pod) -> bool {
    let daemon = pod
        .owner_references()
        .iter()
        .any(|owner| owner.kind == "DaemonSet");
    let mirror = pod
        .annotations()
        .contains_key("kubernetes.io/config.mirror");
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|phase| phase == "Succeeded" || phase == "Failed");
    !daemon && !mirror && !finished
}

/// Evicts one pod, asking again while a PodDisruptionBudget refuses it
/// (429), up to [`EVICTION_DEADLINE`].
async fn evict(pods: &Api<Pod>, name: &str) -> Result<(), KubeError> {
    let deadline = Instant::now() + EVICTION_DEADLINE;
    let mut retry = tokio::time::interval(EVICTION_RETRY);
    loop {
        retry.tick().await;
        match pods.evict(name, &EvictParams::default()).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            // Its namespace is being deleted, so the pod goes anyway.
            Err(kube::Error::Api(status))
                if status.code == 403
                    && status.reason == "Forbidden"
                    && status.message.contains("being terminated") =>
            {
                return Ok(());
            }
            Err(kube::Error::Api(status)) if status.code == 429 && Instant::now() < deadline => {
                tracing::info!(
                    "eviction of {name} refused ({}); asking again",
                    status.message
                );
            }
            Err(kube::Error::Api(status)) if status.code == 429 => {
                return Err(KubeError::Timeout(
                    EVICTION_DEADLINE,
                    format!("evicting pod {name}: {}", status.message),
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether the node's Ready condition is True.
fn node_is_ready(node: Option<&Node>) -> bool {
    node.and_then(|n| n.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

async fn set_unschedulable(
    client: &Client,
    node: &str,
    unschedulable: bool,
) -> Result<(), KubeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": { "unschedulable": unschedulable } })),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn pod(owner: Option<&str>, mirror: bool, phase: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.owner_references = owner.map(|kind| {
            vec![OwnerReference {
                kind: kind.into(),
                ..OwnerReference::default()
            }]
        });
        if mirror {
            pod.metadata.annotations =
                Some([("kubernetes.io/config.mirror".to_string(), "x".to_string())].into());
        }
        pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
        pod
    }

    #[test]
    fn a_drain_evicts_what_kubectl_drain_evicts() {
        assert!(drained_by_kubectl(&pod(
            Some("StatefulSet"),
            false,
            "Running"
        )));
        assert!(drained_by_kubectl(&pod(None, false, "Pending")));
        assert!(!drained_by_kubectl(&pod(
            Some("DaemonSet"),
            false,
            "Running"
        )));
        assert!(!drained_by_kubectl(&pod(Some("Node"), true, "Running")));
        assert!(!drained_by_kubectl(&pod(Some("Job"), false, "Succeeded")));
    }

    #[test]
    fn placement_problems_wait_while_a_node_fault_holds() {
        let mut faults = NodeFaults::default();
        assert_eq!(
            faults.placement_clock(),
            PlacementClock::Running { restarted_at: None }
        );
        faults.cordoned.insert("m1".into(), "w1".into());
        assert_eq!(faults.placement_clock(), PlacementClock::Paused);
        faults.cordoned.clear();
        let released = Instant::now();
        faults.released_at = Some(released);
        assert_eq!(
            faults.placement_clock(),
            PlacementClock::Running {
                restarted_at: Some(released)
            }
        );
    }
}
