//! Kubernetes substrate: members are pods of a real deployment (an
//! operator's, or plain manifests), observed through kube-rs watchers, log
//! streams and port-forwards into the same trace as the local backends, so
//! the same invariants judge them.

mod apply;
mod nemesis;
pub mod nodes;
mod observe;
pub mod profile;
pub mod run;
mod slots;

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("kubeconfig: {0}")]
    Config(String),
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("{path}: {message}")]
    Manifest { path: String, message: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("timed out after {0:?}: {1}")]
    Timeout(std::time::Duration, String),
}

/// A client for the cluster a kubeconfig names (`KUBECONFIG` or
/// `~/.kube/config` when `path` is `None`).
pub async fn connect(path: Option<&Path>) -> Result<kube::Client, KubeError> {
    let config = match path {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| KubeError::Config(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(|e| KubeError::Config(e.to_string()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| KubeError::Config(e.to_string()))?,
    };
    kube::Client::try_from(config).map_err(|e| KubeError::Config(e.to_string()))
}

/// The server's `major.minor` and git version, for certificates.
pub async fn server_version(client: &kube::Client) -> Result<String, KubeError> {
    Ok(client.apiserver_version().await?.git_version)
}
