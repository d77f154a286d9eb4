//! The run's faults below the Kubernetes API (cuts, freezes, disconnects)
//! as the trace sees them: each is recorded just before it is applied
//! through the nodes, and its undo once taken back, when its time is up or
//! the step ends.

use super::KubeError;
use super::nodes::{HeldFaults, HeldKind, NodeAccess, Target};
use super::slots::SlotBook;
use crate::engine::etcd::{ClientConfig, MemberClient};
use crate::scenario::runner::{PROBE_TIMEOUT, sides_with_quorum};
use crate::trace::{EventKind, FaultKind, Recorder};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use std::sync::Arc;
use tokio::task::JoinSet;

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
    /// sends one write to each member on both sides. The fault is recorded
    /// once its pods are found, just before it is applied, as the local
    /// runner does.
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
        self.recorder.record_cut(isolated, rest);
        self.held.cut(&self.nodes, &sides[0], &sides[1]).await?;
        self.probe_writes(isolated, rest, book).await;
        Ok(())
    }

    /// Freezes (`Freeze`) or disconnects (`Disconnect`) one member; returns
    /// how to take it back.
    pub async fn hold_member(&mut self, slot: &str, fault: FaultKind) -> Result<Undo, KubeError> {
        let (kind, undo) = match fault {
            FaultKind::Freeze => (HeldKind::Freeze, Undo::Thaw(slot.to_string())),
            FaultKind::Disconnect => (HeldKind::Disconnect, Undo::Reconnect(slot.to_string())),
            other => {
                return Err(KubeError::Unsupported(format!(
                    "{other:?} is not held on one member"
                )));
            }
        };
        let target = self.target(slot).await?;
        self.record(fault, Some(slot));
        self.held.hold_member(&self.nodes, kind, &target).await?;
        Ok(undo)
    }

    fn record(&self, fault: FaultKind, slot: Option<&str>) {
        self.recorder.record(EventKind::FaultInjected {
            fault,
            slot: slot.map(str::to_string),
        });
    }

    /// Takes one held fault back, and records it once taken back.
    pub async fn undo(&mut self, undo: Undo) -> Result<(), KubeError> {
        let done = match &undo {
            Undo::Heal => self.held.undo(&self.nodes, HeldKind::Cut, None).await,
            Undo::Thaw(slot) => {
                self.held
                    .undo(&self.nodes, HeldKind::Freeze, Some(slot))
                    .await
            }
            Undo::Reconnect(slot) => {
                self.held
                    .undo(&self.nodes, HeldKind::Disconnect, Some(slot))
                    .await
            }
        };
        match &undo {
            Undo::Heal => {
                self.record(FaultKind::Heal, None);
                self.recorder.record(EventKind::NetworkHealed);
            }
            Undo::Thaw(slot) => self.record(FaultKind::Thaw, Some(slot)),
            Undo::Reconnect(slot) => self.record(FaultKind::Reconnect, Some(slot)),
        }
        done
    }

    /// Takes back everything still held (a step that ran out of time, or
    /// one whose fault had no `for:`); the first failure is returned.
    pub async fn undo_all(&mut self) -> Result<(), KubeError> {
        let mut undos: Vec<Undo> = self
            .held
            .pods(HeldKind::Freeze)
            .into_iter()
            .map(Undo::Thaw)
            .collect();
        undos.extend(
            self.held
                .pods(HeldKind::Disconnect)
                .into_iter()
                .map(Undo::Reconnect),
        );
        if !self.held.pods(HeldKind::Cut).is_empty() {
            undos.push(Undo::Heal);
        }
        let mut first_error = None;
        for undo in undos {
            if let Err(e) = self.undo(undo).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// One write to every member of both sides at once, through its
    /// port-forward bridge; a side has quorum when it holds a majority of
    /// the voters of the latest member list (`sides_with_quorum`).
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
        let endpoints = book.endpoints();
        let config = ClientConfig {
            tls: None,
            timeout: PROBE_TIMEOUT,
        };
        let mut probes = JoinSet::new();
        for (side, side_has_quorum) in [isolated, rest]
            .into_iter()
            .zip(sides_with_quorum(&voters, isolated, rest))
        {
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
        self.recorder.record_write_probes(probes).await;
    }
}
