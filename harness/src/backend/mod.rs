//! Backends: where members run and the faults they can suffer.

pub mod cleanup;
pub mod process;
pub mod spawner;

use crate::deployer::{ExitInfo, Phase, Spec};
use crate::trace::{FaultKind, SlotInfo};
use std::path::PathBuf;

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
    pub data_dir: PathBuf,
    pub phase: Phase,
    pub restarts: u32,
    pub last_exit: Option<ExitInfo>,
    pub spec: Option<Spec>,
    /// Increases at every process start; lets observers drop stale clients.
    pub incarnation: u64,
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
    /// Stops everything; the backend is unusable afterwards.
    async fn shutdown(&mut self);
}
