//! Backends: where members run and the faults they can suffer.

pub mod cleanup;
pub mod docker;
pub mod process;
pub mod spawner;

use crate::deployer::{ExitInfo, Phase, Spec};
use crate::trace::{FaultKind, SlotInfo};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
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
    #[error("fault {fault:?} is not supported by the {backend} backend")]
    Unsupported {
        fault: FaultKind,
        backend: &'static str,
    },
}

/// A slot as the backend sees it.
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
    pub restarts: u32,
    pub last_exit: Option<ExitInfo>,
    pub spec: Option<Spec>,
    /// Increases at every process start; lets observers drop stale clients.
    pub incarnation: u64,
}

impl SlotState {
    /// Starts and wipes need a slot with no process.
    pub fn expect_empty(&self) -> Result<(), BackendError> {
        if self.phase == Phase::Empty {
            Ok(())
        } else {
            Err(BackendError::NotEmpty {
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

/// Operations every backend offers to the runner.
#[allow(async_fn_in_trait)]
pub trait Backend {
    fn name(&self) -> &'static str;
    fn slots(&self) -> Vec<SlotState>;
    /// Whether the slot's volume holds anything; reads the disk, so only
    /// for what the deployer is shown.
    fn has_data(&self, slot: &SlotState) -> bool;
    /// Applies the restart policy; call regularly.
    async fn tick(&mut self);
    async fn start(&mut self, slot: &str, spec: Spec) -> Result<(), BackendError>;
    /// Stops gracefully and empties the slot; data stays.
    async fn stop(&mut self, slot: &str) -> Result<(), BackendError>;
    /// Deletes the data of an empty slot.
    async fn wipe(&mut self, slot: &str) -> Result<(), BackendError>;
    async fn inject(&mut self, fault: FaultKind, slot: &str) -> Result<(), BackendError>;
    /// Cuts the network between `side` and every other running slot, until
    /// a `Heal` fault.
    async fn partition(&mut self, side: &[String]) -> Result<(), BackendError>;
    /// Undoes every partition.
    async fn heal(&mut self) -> Result<(), BackendError>;
    /// Stops everything; the backend is unusable afterwards.
    async fn shutdown(&mut self);
}

/// The backends a run can use, behind one type.
pub enum AnyBackend {
    Process(process::ProcessBackend),
    Docker(Box<docker::DockerBackend>),
}

macro_rules! each_backend {
    ($self:ident, $b:ident => $e:expr) => {
        match $self {
            AnyBackend::Process($b) => $e,
            AnyBackend::Docker($b) => $e,
        }
    };
}

impl Backend for AnyBackend {
    fn name(&self) -> &'static str {
        each_backend!(self, b => b.name())
    }
    fn slots(&self) -> Vec<SlotState> {
        each_backend!(self, b => b.slots())
    }
    fn has_data(&self, slot: &SlotState) -> bool {
        each_backend!(self, b => b.has_data(slot))
    }
    async fn tick(&mut self) {
        each_backend!(self, b => b.tick().await)
    }
    async fn start(&mut self, slot: &str, spec: Spec) -> Result<(), BackendError> {
        each_backend!(self, b => b.start(slot, spec).await)
    }
    async fn stop(&mut self, slot: &str) -> Result<(), BackendError> {
        each_backend!(self, b => b.stop(slot).await)
    }
    async fn wipe(&mut self, slot: &str) -> Result<(), BackendError> {
        each_backend!(self, b => b.wipe(slot).await)
    }
    async fn inject(&mut self, fault: FaultKind, slot: &str) -> Result<(), BackendError> {
        each_backend!(self, b => b.inject(fault, slot).await)
    }
    async fn partition(&mut self, side: &[String]) -> Result<(), BackendError> {
        each_backend!(self, b => b.partition(side).await)
    }
    async fn heal(&mut self) -> Result<(), BackendError> {
        each_backend!(self, b => b.heal().await)
    }
    async fn shutdown(&mut self) {
        each_backend!(self, b => b.shutdown().await)
    }
}
