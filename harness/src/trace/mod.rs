//! Typed, timestamped events of one scenario run, saved as JSON lines.
//!
//! Everything an invariant needs is in here, so a saved trace can be
//! re-checked offline with `raftcert check`.

mod recorder;

pub use recorder::{Recorder, TraceError, read_trace};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Format version of `trace.jsonl`; bump on incompatible changes.
pub const TRACE_FORMAT: u32 = 1;

/// One line of `trace.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the trace, starting at 0.
    pub seq: u64,
    /// Milliseconds since the run started, from a monotonic clock.
    pub t_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// A member slot: the stand-in for a pod, with stable addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotInfo {
    pub name: String,
    pub ordinal: u32,
    pub peer_url: String,
    pub client_url: String,
}

/// A member as reported by the engine's member list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Member ID in lower-case hex, as etcd prints it.
    pub id: String,
    /// Empty until the member has started and published itself.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl MemberInfo {
    /// etcd marks a member as started once it has published its name.
    pub fn is_started(&self) -> bool {
        !self.name.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MembershipOp {
    Add,
    AddLearner,
    Remove,
    Promote,
}

/// A fault operation as the trace records it (`fault-injected`): `kill`,
/// `stop`, `freeze`, `thaw`, `delete-pod`, `lose-volume`, `crash-deployer`,
/// `disconnect`, `reconnect`, `isolate`, `heal`, and whatever a newer fault
/// records. A name rather than a closed set, so adding a fault changes
/// nothing here; the constants are the names invariants look for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FaultKind(std::borrow::Cow<'static, str>);

impl FaultKind {
    pub const KILL: FaultKind = FaultKind::new("kill");
    pub const STOP: FaultKind = FaultKind::new("stop");
    pub const FREEZE: FaultKind = FaultKind::new("freeze");
    pub const THAW: FaultKind = FaultKind::new("thaw");
    /// The pod goes, its data stays; the slot is empty for the deployer.
    pub const DELETE_POD: FaultKind = FaultKind::new("delete-pod");
    /// The pod goes with its data.
    pub const LOSE_VOLUME: FaultKind = FaultKind::new("lose-volume");
    pub const CRASH_DEPLOYER: FaultKind = FaultKind::new("crash-deployer");
    pub const DISCONNECT: FaultKind = FaultKind::new("disconnect");
    pub const RECONNECT: FaultKind = FaultKind::new("reconnect");
    /// The member is cut off from the others; the harness still reaches it.
    pub const ISOLATE: FaultKind = FaultKind::new("isolate");
    /// Every cut undone.
    pub const HEAL: FaultKind = FaultKind::new("heal");
    /// The member's links to its peers slowed down, both ways.
    pub const DELAY: FaultKind = FaultKind::new("delay");
    pub const UNDELAY: FaultKind = FaultKind::new("undelay");
    /// A freeze armed for a member's next start or the next member added.
    pub const STALL: FaultKind = FaultKind::new("stall");
    /// The node of the member's pod stopped, and started again.
    pub const STOP_NODE: FaultKind = FaultKind::new("stop-node");
    pub const START_NODE: FaultKind = FaultKind::new("start-node");
    /// The node of the member's pod cordoned and drained, and uncordoned.
    pub const DRAIN_NODE: FaultKind = FaultKind::new("drain-node");
    pub const UNCORDON_NODE: FaultKind = FaultKind::new("uncordon-node");

    pub const fn new(name: &'static str) -> Self {
        FaultKind(std::borrow::Cow::Borrowed(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Bootstrap configuration of one start, read from the engine's own log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartConfig {
    pub name: String,
    /// `false` means the member had no WAL: a genesis or a join.
    pub member_initialized: bool,
    /// name -> peer URLs, as the engine parsed `initial-cluster`.
    pub initial_cluster: BTreeMap<String, Vec<String>>,
    pub initial_cluster_state: String,
    pub initial_cluster_token: String,
}

impl StartConfig {
    /// A start that creates a cluster from nothing.
    pub fn is_genesis(&self) -> bool {
        !self.member_initialized && self.initial_cluster_state == "new"
    }
    /// A first start that joins an existing cluster.
    pub fn is_join(&self) -> bool {
        !self.member_initialized && self.initial_cluster_state == "existing"
    }
}

/// Engine refusals and fatal errors worth classifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineErrorClass {
    MemberCountUnequal,
    AlreadyBootstrapped,
    LocalNameNotFound,
    ClusterIdMismatch,
    MemberRemoved,
    RaftLogLost,
    PeerUrlsMismatch,
    /// A listener could not bind: the machine's fault, not the subject's.
    AddressInUse,
    /// PD: a member of this name is registered already (its data is gone).
    DuplicatedMember,
    /// PD: `--join` named the member itself.
    JoinSelf,
    /// PD: a member added but never started blocks every later join.
    UnstartedMemberBlocksJoin,
    /// PD: `--join` could not list the cluster's members (PD #9199's
    /// `joinedFailedToStart` recovery needs that list, hence a quorum).
    JoinMemberListFailed,
    /// The cluster refused a membership change while not all members were
    /// connected (etcd's strict reconfiguration check).
    UnhealthyCluster,
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EventKind {
    /// First event of every trace.
    RunStarted {
        format: u32,
        run_id: String,
        scenario: String,
        strategy: String,
        engine: String,
        engine_version: String,
        backend: String,
        seed: u64,
        tls: bool,
        /// Every slot that the run may use.
        slots: Vec<SlotInfo>,
        /// Deficits of started voters shorter than this are transient.
        quorum_grace_ms: u64,
        /// Client URLs that reach whichever members are up, not one member
        /// (a Kubernetes Service in front of them).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        member_fronts: Vec<String>,
    },
    StepStarted {
        index: u32,
        name: String,
        desired_replicas: u32,
        deadline_ms: u64,
        /// The suite expects this step not to settle (`settles: false`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        expect_unsettled: bool,
    },
    StepFinished {
        index: u32,
        name: String,
        settled: bool,
        elapsed_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        /// The slots the deployment wants at the step's end, where they are
        /// not simply the first `desired_replicas` ordinals: an operator
        /// that names member pods at random, and replaces a lost member by
        /// a new pod under a new name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        desired_slots: Option<Vec<String>>,
    },
    FaultInjected {
        fault: FaultKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slot: Option<String>,
    },
    /// The deployer's reconcile produced these actions (JSON form).
    DeployerActions {
        actions: Vec<serde_json::Value>,
    },
    /// The deployer misbehaved (protocol error, crash, timeout).
    DeployerError {
        message: String,
    },
    ProcessStarted {
        slot: String,
        pid: u32,
        command: String,
        args: Vec<String>,
        /// Whether the data directory held anything at start.
        had_data: bool,
    },
    ProcessExited {
        slot: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
    },
    /// A member slot that appeared during the run: a member pod the
    /// operator created under a name of its own.
    SlotAdded {
        info: SlotInfo,
    },
    /// The slot was emptied on purpose (pod deleted, scale-in).
    SlotDeleted {
        slot: String,
    },
    DataWiped {
        slot: String,
    },
    /// The engine logged its effective bootstrap configuration.
    MemberStart {
        slot: String,
        config: StartConfig,
    },
    /// The engine logged the identity it runs with.
    LocalMember {
        slot: String,
        member_id: String,
        cluster_id: String,
        /// `true` when the member restarted from an existing WAL.
        restarted: bool,
    },
    /// A membership change the engine applied, from its log.
    MembershipApplied {
        slot: String,
        op: MembershipOp,
        member_id: String,
        #[serde(default)]
        peer_urls: Vec<String>,
    },
    EngineError {
        slot: String,
        class: EngineErrorClass,
        message: String,
    },
    /// PD's configuration after its own join step (`"PD config"`): a
    /// `--join` start shows the initial cluster PD computed, and `existing`.
    PdConfig {
        slot: String,
        initial_cluster: BTreeMap<String, Vec<String>>,
        initial_cluster_state: String,
        /// The `--join` target URLs, empty for none.
        join: String,
    },
    /// PD's cluster ID as one start read it (`"init cluster id"` or
    /// `"existed cluster id"`).
    PdClusterId {
        slot: String,
        /// Decimal, as PD prints it.
        cluster_id: String,
        /// Whether the ID was already stored when this start looked; a
        /// start that found none ran the create-if-absent transaction.
        existed: bool,
    },
    /// A membership call made on behalf of the deployer.
    MembershipCall {
        op: MembershipOp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer_url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        member_id: Option<String>,
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A member list as seen through one slot.
    MemberList {
        via: String,
        cluster_id: String,
        members: Vec<MemberInfo>,
    },
    MemberStatus {
        slot: String,
        cluster_id: String,
        member_id: String,
        /// "0" when the member knows no leader.
        leader: String,
        term: u64,
        raft_index: u64,
        revision: u64,
        is_learner: bool,
    },
    /// Traffic between `isolated` and `rest` is dropped until a heal.
    NetworkCut {
        isolated: Vec<String>,
        rest: Vec<String>,
    },
    NetworkHealed,
    /// A write sent to one member while the network was cut, to see which
    /// side accepts writes.
    WriteProbe {
        slot: String,
        /// Whether the member's side holds a quorum of the voting members.
        side_has_quorum: bool,
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// One timestamp asked of PD through `slot`'s member (T1); `t_ms` is
    /// when the answer came, `sent_ms` when it was asked.
    Tso {
        slot: String,
        sent_ms: u64,
        ok: bool,
        #[serde(default)]
        physical: i64,
        #[serde(default)]
        logical: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    ClientWrite {
        key: String,
        value: String,
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// How long the write took, from send to answer (absent in traces
        /// from before it was recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        latency_ms: Option<u64>,
    },
    /// The durability read at the end of the run.
    FinalRead {
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        values: BTreeMap<String, String>,
    },
    /// What the operator (or controller) reports about the cluster it
    /// manages: the member count at the profile's status path.
    OperatorStatus {
        /// `Kind/name` of the reporting object.
        object: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        members: Option<u64>,
    },
    RunFinished {
        /// `error` when the harness or the deployer broke the run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::RunStarted { .. } => "run-started",
            EventKind::StepStarted { .. } => "step-started",
            EventKind::StepFinished { .. } => "step-finished",
            EventKind::FaultInjected { .. } => "fault-injected",
            EventKind::DeployerActions { .. } => "deployer-actions",
            EventKind::DeployerError { .. } => "deployer-error",
            EventKind::ProcessStarted { .. } => "process-started",
            EventKind::ProcessExited { .. } => "process-exited",
            EventKind::SlotAdded { .. } => "slot-added",
            EventKind::SlotDeleted { .. } => "slot-deleted",
            EventKind::DataWiped { .. } => "data-wiped",
            EventKind::MemberStart { .. } => "member-start",
            EventKind::LocalMember { .. } => "local-member",
            EventKind::MembershipApplied { .. } => "membership-applied",
            EventKind::EngineError { .. } => "engine-error",
            EventKind::PdConfig { .. } => "pd-config",
            EventKind::PdClusterId { .. } => "pd-cluster-id",
            EventKind::MembershipCall { .. } => "membership-call",
            EventKind::MemberList { .. } => "member-list",
            EventKind::MemberStatus { .. } => "member-status",
            EventKind::NetworkCut { .. } => "network-cut",
            EventKind::NetworkHealed => "network-healed",
            EventKind::WriteProbe { .. } => "write-probe",
            EventKind::Tso { .. } => "tso",
            EventKind::ClientWrite { .. } => "client-write",
            EventKind::FinalRead { .. } => "final-read",
            EventKind::OperatorStatus { .. } => "operator-status",
            EventKind::RunFinished { .. } => "run-finished",
        }
    }
}

/// A whole trace, in order.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub events: Vec<Event>,
}

impl Trace {
    pub fn new(events: Vec<Event>) -> Self {
        Trace { events }
    }

    /// Builds a trace from kinds with the given timestamps; for tests and tools.
    pub fn from_kinds(kinds: impl IntoIterator<Item = (u64, EventKind)>) -> Self {
        let events = kinds
            .into_iter()
            .enumerate()
            .map(|(seq, (t_ms, kind))| Event {
                seq: seq as u64,
                t_ms,
                kind,
            })
            .collect();
        Trace { events }
    }

    /// The `RunStarted` header, if present.
    pub fn header(&self) -> Option<&EventKind> {
        self.events
            .iter()
            .map(|e| &e.kind)
            .find(|k| matches!(k, EventKind::RunStarted { .. }))
    }

    /// The header's slots, then those added during the run.
    pub fn slots(&self) -> Vec<SlotInfo> {
        let mut slots = match self.header() {
            Some(EventKind::RunStarted { slots, .. }) => slots.clone(),
            _ => Vec::new(),
        };
        slots.extend(self.events.iter().filter_map(|e| match &e.kind {
            EventKind::SlotAdded { info } => Some(info.clone()),
            _ => None,
        }));
        slots
    }

    /// The header's member fronts (Services in front of the members).
    pub fn member_fronts(&self) -> &[String] {
        match self.header() {
            Some(EventKind::RunStarted { member_fronts, .. }) => member_fronts,
            _ => &[],
        }
    }

    pub fn quorum_grace_ms(&self) -> u64 {
        match self.header() {
            Some(EventKind::RunStarted {
                quorum_grace_ms, ..
            }) => *quorum_grace_ms,
            _ => 15_000,
        }
    }

    /// Time of the last event.
    pub fn end_ms(&self) -> u64 {
        self.events.last().map(|e| e.t_ms).unwrap_or(0)
    }
}
