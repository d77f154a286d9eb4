//! The run's faults below the Kubernetes API (cuts, freezes, disconnects)
//! as the trace sees them: each is applied through the nodes, recorded once
//! in force, and taken back when its time is up or the step ends.

use super::KubeError;
use super::nodes::{HeldFaults, NodeAccess, Target};
use super::slots::SlotBook;
use crate::engine::etcd::{ClientConfig, MemberClient};
use crate::trace::{EventKind, FaultKind, Recorder};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// How long a write probe during a cut may take; a minority's write hangs
/// until this runs out.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A held fault's way back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    Heal,
    Thaw(String),
    Reconnect(String),
}

pub struct Nemesis {
    nodes: NodeAccess,
    pods: Api<Pod>,
    container: String,
    recorder: Arc<Recorder>,
    held: HeldFaults,
}

impl Nemesis {
    pub fn new(
        nodes: NodeAccess,
        pods: Api<Pod>,
        container: String,
        recorder: Arc<Recorder>,
    ) -> Nemesis {
        Nemesis {
            nodes,
            pods,
            container,
            recorder,
            held: HeldFaults::default(),
        }
    }

    async fn target(&self, pod: &str) -> Result<Target, KubeError> {
        self.nodes.target(&self.pods, pod, &self.container).await
    }

    /// Cuts `isolated` off from `rest` (the other running members), then
    /// sends one write to each member on both sides.
    pub async fn cut(
        &mut self,
        isolated: &[String],
        rest: &[String],
        book: &SlotBook,
    ) -> Result<(), KubeError> {
        let mut sides = [Vec::new(), Vec::new()];
        for (side, pods) in sides.iter_mut().zip([isolated, rest]) {
            for pod in pods {
                side.push(self.target(pod).await?);
            }
        }
        self.held.cut(&self.nodes, &sides[0], &sides[1]).await?;
        // Recorded once in force, so the trace times the fault itself.
        for slot in isolated {
            self.recorder.record(EventKind::FaultInjected {
                fault: FaultKind::Isolate,
                slot: Some(slot.clone()),
            });
        }
        self.recorder.record(EventKind::NetworkCut {
            isolated: isolated.to_vec(),
            rest: rest.to_vec(),
        });
        self.probe_writes(isolated, rest, book).await;
        Ok(())
    }

    pub async fn freeze(&mut self, slot: &str) -> Result<Undo, KubeError> {
        let target = self.target(slot).await?;
        self.held.freeze(&self.nodes, &target).await?;
        self.recorder.record(EventKind::FaultInjected {
            fault: FaultKind::Freeze,
            slot: Some(slot.to_string()),
        });
        Ok(Undo::Thaw(slot.to_string()))
    }

    pub async fn disconnect(&mut self, slot: &str) -> Result<Undo, KubeError> {
        let target = self.target(slot).await?;
        self.held.disconnect(&self.nodes, &target).await?;
        self.recorder.record(EventKind::FaultInjected {
            fault: FaultKind::Disconnect,
            slot: Some(slot.to_string()),
        });
        Ok(Undo::Reconnect(slot.to_string()))
    }

    pub async fn undo(&mut self, undo: Undo) -> Result<(), KubeError> {
        let (fault, slot) = match &undo {
            Undo::Heal => (FaultKind::Heal, None),
            Undo::Thaw(s) => (FaultKind::Thaw, Some(s.clone())),
            Undo::Reconnect(s) => (FaultKind::Reconnect, Some(s.clone())),
        };
        let done = self.held.undo(&self.nodes, slot.as_deref()).await;
        self.recorder
            .record(EventKind::FaultInjected { fault, slot });
        if undo == Undo::Heal {
            self.recorder.record(EventKind::NetworkHealed);
        }
        done
    }

    /// Takes back everything still held (a step that ran out of time).
    pub async fn undo_all(&mut self) -> Result<(), KubeError> {
        if self.held.is_empty() {
            return Ok(());
        }
        self.recorder.record(EventKind::FaultInjected {
            fault: FaultKind::Heal,
            slot: None,
        });
        let done = self.held.undo(&self.nodes, None).await;
        self.recorder.record(EventKind::NetworkHealed);
        done
    }

    /// One write to every member of both sides at once, through its
    /// port-forward bridge; a side has quorum when it holds a majority of
    /// the voters of the latest member list.
    async fn probe_writes(&self, isolated: &[String], rest: &[String], book: &SlotBook) {
        let slots = book.slots();
        let voters: Vec<String> = self
            .recorder
            .snapshot()
            .events
            .iter()
            .rev()
            .find_map(|e| match &e.kind {
                EventKind::MemberList { members, .. } => Some(members.clone()),
                _ => None,
            })
            .unwrap_or_default()
            .iter()
            .filter(|m| !m.is_learner)
            .filter_map(|m| {
                slots
                    .iter()
                    .find(|s| m.peer_urls.contains(&s.peer_url))
                    .map(|s| s.name.clone())
            })
            .collect();
        let quorum = voters.len() / 2 + 1;
        let endpoints = book.endpoints();
        let config = ClientConfig {
            tls: None,
            timeout: PROBE_TIMEOUT,
        };
        let mut probes = JoinSet::new();
        for side in [isolated, rest] {
            let side_has_quorum = voters.iter().filter(|v| side.contains(v)).count() >= quorum;
            for slot in side {
                let Some(port) = endpoints.get(slot) else {
                    continue;
                };
                let url = format!("http://127.0.0.1:{port}");
                let (slot, config) = (slot.clone(), config.clone());
                probes.spawn(async move {
                    let key = format!("/raftcert/probe/{slot}-{}", crate::util::unique_suffix());
                    let outcome = match MemberClient::connect(&url, &config).await {
                        Ok(client) => client.put(&key, "probe").await,
                        Err(e) => Err(e),
                    };
                    (slot, side_has_quorum, outcome)
                });
            }
        }
        while let Some(joined) = probes.join_next().await {
            if let Ok((slot, side_has_quorum, outcome)) = joined {
                self.recorder.record(EventKind::WriteProbe {
                    slot,
                    side_has_quorum,
                    ok: outcome.is_ok(),
                    error: outcome.err().map(|e| e.to_string()),
                });
            }
        }
    }
}
