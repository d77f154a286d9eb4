//! The vocabulary shared by subjects and substrates: what runs in a slot
//! ([`Spec`]), a slot's [`Phase`], what a deployer sees ([`Observation`])
//! and what it asks for ([`Action`]). A leaf: it depends on the trace's
//! member type only.

use crate::trace::MemberInfo;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the observation/action format.
pub const PROTOCOL_VERSION: u32 = 1;

/// What to run in a slot, like a container: a command with args and env.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Start a process in an empty slot. The backend restarts it with the
    /// same spec whenever it exits, until the slot is stopped.
    Start {
        slot: String,
        spec: Spec,
    },
    /// Stop the process gracefully and empty the slot; its data stays.
    Stop {
        slot: String,
    },
    /// Delete the data of an empty slot.
    Wipe {
        slot: String,
    },
    MemberAdd {
        peer_url: String,
        #[serde(default)]
        learner: bool,
    },
    MemberRemove {
        id: String,
    },
    MemberPromote {
        id: String,
    },
}

impl Action {
    pub fn is_membership(&self) -> bool {
        matches!(
            self,
            Action::MemberAdd { .. } | Action::MemberRemove { .. } | Action::MemberPromote { .. }
        )
    }
}

/// The outcome of one action, handed back on the next reconcile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResult {
    pub action: Action,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The new member's ID after a successful `member-add`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// No process: never started, stopped, or the pod was deleted.
    Empty,
    Running,
    /// Exited; the backend restarts it after a backoff.
    BackingOff,
    Frozen,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotView {
    pub name: String,
    pub ordinal: u32,
    pub peer_url: String,
    pub client_url: String,
    /// Where the harness, and a deployer running beside it, reach the
    /// member's client port: the client URL on processes, a port published
    /// on 127.0.0.1 on docker (whose client URL names the container).
    #[serde(default)]
    pub observe_url: String,
    pub data_dir: String,
    /// Flags every start of this slot needs (identity, addresses, logging,
    /// TLS); the deployer appends the bootstrap flags.
    pub base_args: Vec<String>,
    pub phase: Phase,
    pub has_data: bool,
    pub restarts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<ExitInfo>,
    /// The spec the slot runs or last ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<Spec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineView {
    pub kind: String,
    pub version: String,
    /// Path of the server binary.
    pub binary: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    pub ip: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersView {
    pub cluster_id: String,
    /// Through which slot the list was read.
    pub via: String,
    pub age_ms: u64,
    pub members: Vec<MemberInfo>,
    /// The cluster version the `via` member reports; absent while etcd has
    /// not decided it yet (the first seconds after genesis), when a member
    /// that tries to join is refused as incompatible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_version: Option<String>,
}

/// Everything a deployer sees on one reconcile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub protocol: u32,
    pub engine: EngineView,
    /// Counts reconciles from 1 within one deployer's life.
    pub seq: u64,
    /// A cluster token unique to this run.
    pub token: String,
    /// A loopback address and port reserved for the deployer, where it may
    /// serve its members (a discovery service, for example).
    pub service: ServiceView,
    pub desired_replicas: u32,
    pub slots: Vec<SlotView>,
    /// The member list as last observed (`age_ms` tells how old); `None`
    /// until some member has answered once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<MembersView>,
    pub results: Vec<ActionResult>,
}

impl Observation {
    pub fn desired_slots(&self) -> impl Iterator<Item = &SlotView> {
        self.slots
            .iter()
            .filter(move |s| s.ordinal < self.desired_replicas)
    }
    pub fn surplus_slots(&self) -> impl Iterator<Item = &SlotView> {
        self.slots
            .iter()
            .filter(move |s| s.ordinal >= self.desired_replicas)
    }
    /// Whether the cluster has decided its version, so a new member can
    /// pass the join compatibility check.
    pub fn cluster_version_decided(&self) -> bool {
        self.members
            .as_ref()
            .is_some_and(|m| m.cluster_version.is_some())
    }
    pub fn members(&self) -> &[MemberInfo] {
        self.members
            .as_ref()
            .map(|m| m.members.as_slice())
            .unwrap_or(&[])
    }
    pub fn member_of(&self, slot: &SlotView) -> Option<&MemberInfo> {
        self.members()
            .iter()
            .find(|m| m.peer_urls.contains(&slot.peer_url))
    }
    pub fn slot_of(&self, member: &MemberInfo) -> Option<&SlotView> {
        self.slots
            .iter()
            .find(|s| member.peer_urls.contains(&s.peer_url))
    }
    /// `name=peer,...` of the current members; unstarted members take the
    /// name of the slot that owns their peer URL.
    pub fn initial_cluster_of_members(&self) -> String {
        self.members()
            .iter()
            .flat_map(|m| {
                let name = if m.name.is_empty() {
                    self.slot_of(m).map(|s| s.name.clone()).unwrap_or_default()
                } else {
                    m.name.clone()
                };
                m.peer_urls
                    .iter()
                    .map(move |u| format!("{name}={u}"))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The port reserved for a deployer's service (tidb-operator's discovery port).
pub const SERVICE_PORT: u16 = 10261;
