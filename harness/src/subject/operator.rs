//! An operator (or the controllers of plain manifests) as the subject: it
//! reconciles on its own. A bootstrap applies the profile's deployment, a
//! scale patches the replica count the profile points at, and a crash
//! deletes the operator's pods.

use crate::substrate::kube::api::{self, api_resource, crash_operator, set_replicas};
use crate::substrate::kube::profile::Profile;
use crate::substrate::kube::{KubeError, KubeSubstrate, KubeTarget, fill_run};
use kube::api::{Api, DynamicObject};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long a settled step waits for the operator's status by default.
pub const STATUS_GRACE: Duration = Duration::from_secs(10);

pub struct OperatorSubject {
    target: Arc<KubeTarget>,
    namespace: String,
    deployment_path: PathBuf,
    /// The deployment template, `${REPLICAS}` still to fill.
    deployment: String,
    scale_api: Api<DynamicObject>,
    scale_name: String,
}

impl OperatorSubject {
    pub fn new(substrate: &KubeSubstrate) -> Result<Self, KubeError> {
        let target = substrate.target().clone();
        let profile: &Profile = &target.profile;
        let namespace = substrate.namespace().to_string();
        let deployment_path = profile.dir.join(&profile.deployment);
        let deployment =
            std::fs::read_to_string(&deployment_path).map_err(|source| KubeError::Io {
                what: deployment_path.display().to_string(),
                source,
            })?;
        let resource = api_resource(&profile.scale.api_version, &profile.scale.kind)?;
        let scale_api = Api::namespaced_with(target.client.clone(), &namespace, &resource);
        let scale_name = fill_run(&profile.scale.name, &namespace, 0);
        Ok(OperatorSubject {
            target,
            namespace,
            deployment_path,
            deployment,
            scale_api,
            scale_name,
        })
    }

    pub async fn set_replicas(&mut self, replicas: u32, first: bool) -> Result<(), KubeError> {
        if first {
            let manifest = fill_run(&self.deployment, &self.namespace, replicas);
            crate::substrate::kube::api::apply_all(
                &self.target.client,
                &manifest,
                &self.deployment_path.display().to_string(),
                &self.namespace,
            )
            .await?;
            return Ok(());
        }
        let profile = &self.target.profile;
        set_replicas(
            &self.scale_api,
            &self.scale_name,
            &profile.scale.path,
            replicas,
        )
        .await
    }

    pub async fn crash(&self) -> Result<(), KubeError> {
        crash_operator(&self.target.client, &self.target.profile, &self.namespace).await
    }

    /// The suite's deadline, at least the profile's floor (operators that
    /// add one member per reconcile tick need longer).
    pub fn settle_deadline(&self, suite: Duration) -> Duration {
        self.target.profile.settle(suite)
    }

    pub fn status_grace(&self) -> Option<Duration> {
        let status = self.target.profile.status.as_ref()?;
        Some(status.grace.map_or(STATUS_GRACE, |g| g.0))
    }
}

/// Whether the operator's latest status agrees with the latest member list.
pub use api::status_agrees;
