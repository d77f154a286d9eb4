//! Engines: provisioning, start arguments, startup-log parsing and the
//! admin client for each supported consensus engine.

pub mod etcd;
pub mod gobuild;
pub mod pd;
pub mod provision;
pub mod tls;
pub mod tso;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    Etcd,
    /// TiDB's placement driver, which embeds etcd.
    Pd,
}

impl EngineKind {
    pub const ALL: [EngineKind; 2] = [EngineKind::Etcd, EngineKind::Pd];

    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Etcd => "etcd",
            EngineKind::Pd => "pd",
        }
    }
}

impl EngineKind {
    /// Parses one log line of `slot` with this engine's parser and records
    /// what it shows, if anything.
    pub fn record_log_line(self, recorder: &crate::trace::Recorder, slot: &str, line: &str) {
        match self {
            EngineKind::Etcd => etcd::record_log_line(recorder, slot, line),
            EngineKind::Pd => pd::record_log_line(recorder, slot, line),
        }
    }

    /// The flags every member of this engine gets, whoever deploys it;
    /// `config` is the engine's config file where it needs one (PD).
    pub fn base_args(
        self,
        slot: &etcd::SlotEndpoints,
        tls: Option<&tls::TlsMaterial>,
        config: Option<&str>,
    ) -> Vec<String> {
        match self {
            EngineKind::Etcd => etcd::base_args(slot, tls),
            EngineKind::Pd => pd::base_args(slot, config),
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EngineRefError {
    #[error("unknown engine {0:?} (known: etcd, pd)")]
    UnknownKind(String),
    #[error("bad engine version {0:?}: expected digits and dots, e.g. 3.5.1")]
    BadVersion(String),
}

/// `etcd` or `etcd@3.5.1`, as written on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EngineRef {
    pub kind: EngineKind,
    pub version: Option<String>,
}

impl FromStr for EngineRef {
    type Err = EngineRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, version) = match s.split_once('@') {
            Some((k, v)) => (k, Some(v)),
            None => (s, None),
        };
        let kind = match kind {
            "etcd" => EngineKind::Etcd,
            "pd" => EngineKind::Pd,
            other => return Err(EngineRefError::UnknownKind(other.to_string())),
        };
        if let Some(v) = version
            && (v.is_empty() || !v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        {
            return Err(EngineRefError::BadVersion(v.to_string()));
        }
        Ok(EngineRef {
            kind,
            version: version.map(str::to_string),
        })
    }
}

impl fmt::Display for EngineRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{}@{v}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

/// The engine of a run: a binary raftcert provisioned (local substrates),
/// or the one a profile's images carry (Kubernetes).
#[derive(Debug, Clone)]
pub enum EngineChoice {
    Installed(provision::EngineInstall),
    InImage(EngineRef),
}

impl EngineChoice {
    pub fn kind(&self) -> EngineKind {
        match self {
            EngineChoice::Installed(install) => install.kind,
            EngineChoice::InImage(r) => r.kind,
        }
    }

    pub fn version(&self) -> String {
        match self {
            EngineChoice::Installed(install) => install.version.clone(),
            EngineChoice::InImage(r) => r.version.clone().unwrap_or_default(),
        }
    }

    /// The provisioned binaries, for local substrates.
    pub fn install(&self) -> Option<&provision::EngineInstall> {
        match self {
            EngineChoice::Installed(install) => Some(install),
            EngineChoice::InImage(_) => None,
        }
    }
}
