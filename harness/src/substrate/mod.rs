//! Substrates: where members run (local processes, containers, pods of a
//! Kubernetes cluster) and the fault primitives each can host. The driver
//! is the same for all of them; a substrate starts and stops members for a
//! deployer, applies fault operations, and reports its slots.

pub mod docker;
pub mod kube;
pub mod process;

use crate::faults::{Op, Primitive};
use crate::model::{ExitInfo, Phase, Spec};
use crate::trace::SlotInfo;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum SubstrateError {
    #[error("unknown slot {0}")]
    UnknownSlot(String),
    #[error("slot {slot} is {phase:?}, expected it empty")]
    NotEmpty { slot: String, phase: Phase },
    #[error("cannot start {command} in slot {slot}: {source}")]
    Spawn {
        slot: String,
        command: String,
        source: std::io::Error,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no free loopback addresses for {0} members")]
    NoAddresses(u32),
    #[error("docker: {0}")]
    Docker(String),
    #[error("no Docker engine answers ({0}); start dockerd or set DOCKER_HOST")]
    NoDocker(String),
    #[error(
        "image {image} is not available locally and could not be pulled ({reason}); build or load it first"
    )]
    MissingImage { image: String, reason: String },
    #[error("Kubernetes: {0}")]
    Kube(#[from] kube::KubeError),
    #[error("{op} is not something the {substrate} substrate does")]
    Unsupported {
        op: &'static str,
        substrate: &'static str,
    },
}

/// A slot as the substrate sees it.
#[derive(Debug, Clone)]
pub struct SlotState {
    pub info: SlotInfo,
    /// The slot's data on the host, read for `has_data`.
    pub data_dir: PathBuf,
    /// The data directory as the member sees it.
    pub member_data_dir: String,
    pub listen_peer_url: String,
    pub listen_client_url: String,
    /// Where the harness reaches the member's client port.
    pub observe_url: String,
    pub phase: Phase,
    /// Whether the member is ready to serve: running locally, the pod's
    /// readiness on Kubernetes.
    pub ready: bool,
    pub restarts: u32,
    pub last_exit: Option<ExitInfo>,
    pub spec: Option<Spec>,
    /// Increases at every process start; lets observers drop stale clients
    /// and the driver tell a replaced member from the old one.
    pub incarnation: u64,
}

/// Whether a directory on the host holds anything (a local slot's data).
pub(crate) fn dir_has_data(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

impl SlotState {
    /// A local member is ready as soon as it runs (there is no probe).
    pub(crate) fn ready_when_running(&self) -> SlotState {
        SlotState {
            ready: self.phase == Phase::Running,
            ..self.clone()
        }
    }

    /// Starts and wipes need a slot with no process.
    pub fn expect_empty(&self) -> Result<(), SubstrateError> {
        if self.phase == Phase::Empty {
            Ok(())
        } else {
            Err(SubstrateError::NotEmpty {
                slot: self.info.name.clone(),
                phase: self.phase,
            })
        }
    }
}

/// The kubelet's restart policy `Always`: an exited member comes back after
/// a backoff that doubles up to 4 s and resets after 10 s of running.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    started_at: Instant,
    restart_at: Option<Instant>,
    backoff: Duration,
}

impl RestartPolicy {
    const START: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(4);
    const RESET_AFTER: Duration = Duration::from_secs(10);

    pub fn new() -> Self {
        RestartPolicy {
            started_at: Instant::now(),
            restart_at: None,
            backoff: Self::START,
        }
    }

    /// A start asked for by the deployer: a fresh backoff.
    pub fn reset(&mut self) {
        self.backoff = Self::START;
    }

    pub fn started(&mut self) {
        self.started_at = Instant::now();
        self.restart_at = None;
    }

    /// The slot was emptied on purpose: no restart.
    pub fn cancel(&mut self) {
        self.restart_at = None;
    }

    /// The member exited: a running or frozen slot backs off.
    pub fn exited(&mut self, phase: &mut Phase, now: Instant) {
        if !matches!(phase, Phase::Running | Phase::Frozen) {
            return;
        }
        if self.started_at.elapsed() >= Self::RESET_AFTER {
            self.backoff = Self::START;
        }
        *phase = Phase::BackingOff;
        self.restart_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(Self::MAX);
    }

    pub fn due(&self, phase: Phase, now: Instant) -> bool {
        phase == Phase::BackingOff && self.restart_at.is_some_and(|t| t <= now)
    }

    /// A restart failed: try again after the current backoff.
    pub fn retry_later(&mut self, now: Instant) {
        self.restart_at = Some(now + self.backoff);
    }
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self::new()
    }
}

/// What every substrate offers the driver.
#[allow(async_fn_in_trait)]
pub trait Substrate {
    fn name(&self) -> &'static str;
    fn slots(&self) -> Vec<SlotState>;
    /// The slots a step that wants `desired` members wants, oldest first.
    fn wanted(&self, desired: u32) -> Vec<SlotInfo> {
        self.slots()
            .into_iter()
            .filter(|s| s.info.ordinal < desired)
            .map(|s| s.info)
            .collect()
    }
    /// Whether the slot's volume holds anything; reads the disk, so only
    /// for what a deployer is shown.
    fn has_data(&self, slot: &SlotState) -> bool;
    /// Applies the restart policy; called every tick.
    async fn tick(&mut self);
    /// A deployer's start of a member in an empty slot.
    async fn start(&mut self, slot: &str, spec: Spec) -> Result<(), SubstrateError>;
    /// A deployer's graceful stop; the slot is empty afterwards, data stays.
    async fn stop(&mut self, slot: &str) -> Result<(), SubstrateError>;
    /// A deployer's wipe of an empty slot's data.
    async fn wipe(&mut self, slot: &str) -> Result<(), SubstrateError>;
    /// Applies one fault operation; the driver has recorded it.
    async fn apply(&mut self, op: &Op) -> Result<(), SubstrateError>;
    /// A problem of the machine or cluster that ends the run as an error,
    /// not a verdict on the subject (an image that cannot be pulled, a pod
    /// that cannot be scheduled), once it has lasted long enough to be
    /// more than a moment's delay.
    fn environment_problem(&self) -> Option<String> {
        None
    }
    /// Stops everything; the substrate is unusable afterwards.
    async fn shutdown(&mut self);
}

/// The substrates a run can use, behind one type.
pub enum AnySubstrate {
    Process(Box<process::ProcessSubstrate>),
    Docker(Box<docker::DockerSubstrate>),
    Kube(Box<kube::KubeSubstrate>),
}

macro_rules! each_substrate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnySubstrate::Process($s) => $e,
            AnySubstrate::Docker($s) => $e,
            AnySubstrate::Kube($s) => $e,
        }
    };
}

impl Substrate for AnySubstrate {
    fn name(&self) -> &'static str {
        each_substrate!(self, s => s.name())
    }
    fn slots(&self) -> Vec<SlotState> {
        each_substrate!(self, s => s.slots())
    }
    fn wanted(&self, desired: u32) -> Vec<SlotInfo> {
        each_substrate!(self, s => s.wanted(desired))
    }
    fn has_data(&self, slot: &SlotState) -> bool {
        each_substrate!(self, s => s.has_data(slot))
    }
    async fn tick(&mut self) {
        each_substrate!(self, s => s.tick().await)
    }
    async fn start(&mut self, slot: &str, spec: Spec) -> Result<(), SubstrateError> {
        each_substrate!(self, s => s.start(slot, spec).await)
    }
    async fn stop(&mut self, slot: &str) -> Result<(), SubstrateError> {
        each_substrate!(self, s => s.stop(slot).await)
    }
    async fn wipe(&mut self, slot: &str) -> Result<(), SubstrateError> {
        each_substrate!(self, s => s.wipe(slot).await)
    }
    async fn apply(&mut self, op: &Op) -> Result<(), SubstrateError> {
        each_substrate!(self, s => s.apply(op).await)
    }
    fn environment_problem(&self) -> Option<String> {
        each_substrate!(self, s => s.environment_problem())
    }
    async fn shutdown(&mut self) {
        each_substrate!(self, s => s.shutdown().await)
    }
}

/// Why only the process substrate slows links down.
const NO_NETEM: &str = "link delay is done by raftcert's proxies, which only the process substrate \
    has; containers and pods would need the kernel's netem qdisc, which the machines this \
    project runs on lack (CONFIG_NET_SCH_NETEM is not set)";

/// Why only Kubernetes stops and drains nodes.
const NO_NODES: &str = "a node fault needs the nodes of a Kubernetes cluster: local members \
    share this machine";

/// Where the members of a run live, chosen before the run.
#[derive(Clone, Default)]
pub enum SubstrateChoice {
    /// Local processes, one loopback address each.
    #[default]
    Process,
    /// Containers on a per-run Docker network; `image` overrides the image
    /// raftcert builds from the provisioned engine.
    Docker { image: Option<String> },
    /// Pods of a profile's deployment on a Kubernetes cluster.
    Kube(Arc<kube::KubeTarget>),
}

impl SubstrateChoice {
    pub fn name(&self) -> &'static str {
        match self {
            SubstrateChoice::Process => "process",
            SubstrateChoice::Docker { .. } => "docker",
            SubstrateChoice::Kube(_) => "kube",
        }
    }

    /// Whether members here can suffer `primitive`; the reason if not.
    /// Every "not covered" a run reports comes from here.
    pub fn offers(&self, primitive: Primitive) -> Result<(), String> {
        match self {
            _ if primitive.acts_on_a_node() && !matches!(self, SubstrateChoice::Kube(_)) => {
                Err(NO_NODES.to_string())
            }
            // The proxies in front of every member host every network fault.
            SubstrateChoice::Process => Ok(()),
            SubstrateChoice::Docker { .. } if primitive == Primitive::Delay => {
                Err(NO_NETEM.to_string())
            }
            SubstrateChoice::Docker { .. } => Ok(()),
            SubstrateChoice::Kube(_) if primitive == Primitive::Delay => Err(NO_NETEM.to_string()),
            SubstrateChoice::Kube(target) => target.offers(primitive),
        }
    }

    /// Whether a run of `scenario` here disturbs the runs beside it, so
    /// that it must run alone: on Kubernetes, one that crashes an operator
    /// every run shares, or stops or drains a node.
    pub fn disturbs_other_runs(&self, scenario: &crate::scenario::Scenario) -> bool {
        match self {
            SubstrateChoice::Kube(target) => scenario.faults().iter().any(|fault| {
                fault.primitives().iter().any(|primitive| {
                    primitive.acts_on_a_node()
                        || (*primitive == Primitive::CrashSubject
                            && target.profile.operator_is_shared())
                })
            }),
            SubstrateChoice::Process | SubstrateChoice::Docker { .. } => false,
        }
    }
}

impl std::fmt::Debug for SubstrateChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
