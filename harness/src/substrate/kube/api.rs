//! Calls to the Kubernetes API a run makes: install, replicas, pod and
//! volume deletion, the operator's pods, and the logs and events kept.

use super::KubeError;
pub(crate) use super::apply::apply_all;
use super::observe::DataState;
use super::profile::{Profile, fill};
use crate::trace::{EventKind, Recorder, SlotInfo};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::{Client, ResourceExt};

use std::time::{Duration, Instant};

const CLAIM_GONE: Duration = Duration::from_secs(120);
/// How often a wait re-reads the API.
const API_POLL: Duration = Duration::from_millis(500);

/// How long the operator may take to be ready after its install.
const OPERATOR_READY: Duration = Duration::from_secs(180);

/// Applies the profile's install manifests and waits for the operator's
/// pods to be ready; returns what was applied.
pub async fn install(client: &Client, profile: &Profile) -> Result<Vec<String>, KubeError> {
    // An operator deployed with each run (its namespace is `${NAMESPACE}`)
    // is waited for by the bootstrap step, not here.
    let shared_operator = profile
        .operator
        .as_ref()
        .filter(|_| profile.operator_is_shared());
    let home = shared_operator.map_or("default".to_string(), |o| o.namespace.clone());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(&home).await?.is_none() {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(home.clone());
        namespaces.create(&PostParams::default(), &ns).await?;
    }
    let mut applied = Vec::new();
    let install_count = profile.install.len();
    for path in profile.manifest_paths().into_iter().take(install_count) {
        let text = std::fs::read_to_string(&path).map_err(|source| KubeError::Io {
            what: path.display().to_string(),
            source,
        })?;
        applied.extend(apply_all(client, &text, &path.display().to_string(), &home).await?);
    }
    if let Some(operator) = shared_operator {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &operator.namespace);
        let params = kube::api::ListParams::default().labels(&operator.selector);
        let deadline = Instant::now() + OPERATOR_READY;
        loop {
            let ready = pods.list(&params).await?.items.iter().any(pod_is_ready);
            if ready {
                break;
            }
            if Instant::now() >= deadline {
                return Err(KubeError::Timeout(
                    OPERATOR_READY,
                    format!(
                        "no ready operator pod {} in namespace {}",
                        operator.selector, operator.namespace
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    Ok(applied)
}

fn pod_is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Kills the operator's pods (grace 0); their controller starts new ones.
pub(crate) async fn crash_operator(
    client: &Client,
    profile: &Profile,
    run_namespace: &str,
) -> Result<(), KubeError> {
    let Some(operator) = &profile.operator else {
        return Err(KubeError::Unsupported(format!(
            "profile {} names no operator pods",
            profile.name
        )));
    };
    let home = fill(&operator.namespace, &[("NAMESPACE", run_namespace)]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &home);
    let params = kube::api::ListParams::default().labels(&operator.selector);
    for pod in pods.list(&params).await?.items {
        ignore_gone(
            pods.delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                .await,
        )?;
    }
    Ok(())
}

/// The label on every namespace a run creates.
pub(crate) const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "raftcert");

/// Deletes every namespace a run left behind (a SIGKILLed raftcert).
pub async fn delete_leftover_namespaces(client: &Client) -> Result<Vec<String>, KubeError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let params =
        kube::api::ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    let mut deleted = Vec::new();
    for namespace in namespaces.list(&params).await?.items {
        let name = namespace.name_any();
        ignore_gone(namespaces.delete(&name, &DeleteParams::default()).await)?;
        deleted.push(name);
    }
    Ok(deleted)
}

pub(crate) fn api_resource(api_version: &str, kind: &str) -> Result<ApiResource, KubeError> {
    let gvk = kube::core::GroupVersionKind::try_from(&kube::core::TypeMeta {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
    })
    .map_err(|e| KubeError::Unsupported(e.to_string()))?;
    Ok(ApiResource::from_gvk(&gvk))
}

/// How a member pod is taken away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    /// The pod's grace period: the member stops cleanly.
    Graceful,
    /// Grace period 0: the container is killed.
    Immediate,
    /// Graceful, and its PVCs are deleted too.
    WithVolume,
}

pub(crate) async fn set_replicas(
    api: &Api<DynamicObject>,
    name: &str,
    pointer: &str,
    replicas: u32,
) -> Result<(), KubeError> {
    // A JSON merge patch built from the pointer's segments.
    let mut patch = serde_json::json!(replicas);
    for segment in pointer.trim_start_matches('/').split('/').rev() {
        patch = serde_json::json!({ segment: patch });
    }
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

pub(crate) async fn delete_member(
    client: &Client,
    namespace: &str,
    pod: &str,
    how: Removal,
    has_data: &DataState,
    recorder: &Recorder,
) -> Result<(), KubeError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let lose_volume = how == Removal::WithVolume;
    let mut doomed = Vec::new();
    if lose_volume {
        let Ok(current) = pods.get(pod).await else {
            return Err(KubeError::Unsupported(format!("pod {pod} does not exist")));
        };
        for volume in current.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            if let Some(source) = &volume.persistent_volume_claim {
                let claim = claims.get(&source.claim_name).await?;
                doomed.push((source.claim_name.clone(), claim.uid().unwrap_or_default()));
                claims
                    .delete(&source.claim_name, &DeleteParams::default())
                    .await?;
            }
        }
    }
    let params = match how {
        Removal::Immediate => DeleteParams::default().grace_period(0),
        _ => DeleteParams::default(),
    };
    ignore_gone(pods.delete(pod, &params).await)?;
    if lose_volume {
        // The claim goes once its pod is gone; the controller then creates
        // a new claim under the same name, so the old one is told by UID.
        let deadline = Instant::now() + CLAIM_GONE;
        for (claim, old_uid) in &doomed {
            while claims
                .get_opt(claim)
                .await?
                .is_some_and(|c| c.uid().as_deref() == Some(old_uid.as_str()))
            {
                if Instant::now() > deadline {
                    return Err(KubeError::Timeout(
                        CLAIM_GONE,
                        format!("PVC {claim} deletion"),
                    ));
                }
                tokio::time::sleep(API_POLL).await;
            }
        }
        if let Ok(mut data) = has_data.lock() {
            data.insert(pod.to_string(), false);
        }
        recorder.record(EventKind::DataWiped {
            slot: pod.to_string(),
        });
    }
    Ok(())
}

/// A delete that finds nothing has nothing left to do.
pub(crate) fn ignore_gone<T>(result: Result<T, kube::Error>) -> Result<(), KubeError> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether the latest reported member count equals the started members of
/// the latest member list.
pub fn status_agrees(trace: &crate::trace::Trace) -> bool {
    let reported = trace.events.iter().rev().find_map(|e| match &e.kind {
        EventKind::OperatorStatus { members, .. } => Some(*members),
        _ => None,
    });
    let started = trace.events.iter().rev().find_map(|e| match &e.kind {
        EventKind::MemberList { members, .. } => {
            Some(members.iter().filter(|m| m.is_started()).count() as u64)
        }
        _ => None,
    });
    matches!((reported, started), (Some(Some(r)), Some(s)) if r == s)
}

/// Keeps the operator pods' logs: what it decided, in its own words.
pub(crate) async fn save_operator_logs(
    client: &Client,
    namespace: &str,
    selector: &str,
    dir: &std::path::Path,
) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = kube::api::ListParams::default().labels(selector);
    let Ok(list) = pods.list(&params).await else {
        return;
    };
    for pod in list.items {
        let name = pod.name_any();
        save_pod_log(&pods, &name, None, dir, &format!("operator-{name}")).await;
    }
}

/// Keeps the namespace's events (scheduling, probes, the operator's own
/// member events), oldest first, one line each.
pub(crate) async fn save_events(client: &Client, namespace: &str, dir: &std::path::Path) {
    use k8s_openapi::api::core::v1::Event;
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = events.list(&Default::default()).await else {
        return;
    };
    let mut lines: Vec<(String, String)> = list
        .items
        .iter()
        .map(|e| {
            let at = e
                .last_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string()))
                .unwrap_or_default();
            let object = format!(
                "{}/{}",
                e.involved_object.kind.as_deref().unwrap_or(""),
                e.involved_object.name.as_deref().unwrap_or("")
            );
            let line = format!(
                "{at} {} {} {object} x{}: {}",
                e.type_.as_deref().unwrap_or(""),
                e.reason.as_deref().unwrap_or(""),
                e.count.unwrap_or(1),
                e.message.as_deref().unwrap_or("").trim()
            );
            (at, line)
        })
        .collect();
    lines.sort();
    let text: String = lines.into_iter().map(|(_, l)| l + "\n").collect();
    let _ = std::fs::write(dir.join("events.txt"), text);
}

/// Keeps each member container's log (current and previous instance).
pub(crate) async fn save_logs(
    pods: &Api<Pod>,
    slots: &[SlotInfo],
    container: &str,
    dir: &std::path::Path,
) {
    for slot in slots {
        save_pod_log(pods, &slot.name, Some(container), dir, &slot.name).await;
    }
}

/// Writes a pod's log as `<file>.log`, and its previous instance's as
/// `<file>.previous.log`; a pod or instance that is gone writes nothing.
async fn save_pod_log(
    pods: &Api<Pod>,
    pod: &str,
    container: Option<&str>,
    dir: &std::path::Path,
    file: &str,
) {
    for (previous, suffix) in [(true, ".previous.log"), (false, ".log")] {
        let params = kube::api::LogParams {
            container: container.map(str::to_string),
            previous,
            ..Default::default()
        };
        if let Ok(text) = pods.logs(pod, &params).await {
            let _ = std::fs::write(dir.join(format!("{file}{suffix}")), text);
        }
    }
}
