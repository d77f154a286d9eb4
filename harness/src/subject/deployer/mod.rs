//! Deployers: the bootstrap logic under test, driven as a reconcile loop.
//!
//! Each tick the harness hands the deployer an [`Observation`] (slots, the
//! member list, the results of its previous actions) and executes the
//! [`Action`]s it returns. Built-in strategies implement [`Deployer`] in
//! process; external deployers speak the same types as JSON.

pub mod external;
pub mod strategies;

use crate::model::{Action, Observation};

#[derive(Debug, thiserror::Error)]
pub enum DeployerError {
    #[error("deployer protocol error: {0}")]
    Protocol(String),
    #[error("deployer failed: {0}")]
    Failed(String),
}

/// The bootstrap logic under test.
pub trait Deployer: Send {
    fn reconcile(&mut self, observation: &Observation) -> Result<Vec<Action>, DeployerError>;
}

/// Where a deployer may serve its members (a discovery service).
#[derive(Debug, Clone)]
pub struct DeployerContext {
    /// A loopback address reserved for this run, e.g. "127.40.7.1".
    pub service_ip: String,
    pub service_port: u16,
    /// The service address, already listening where the substrate could
    /// hold it (processes); empty otherwise.
    pub service_listener: crate::sys::HeldListener,
    /// Where a deployer process writes its standard error.
    pub log_dir: std::path::PathBuf,
}
