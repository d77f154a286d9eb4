//! Drives one scenario against a profile's deployment on a cluster: a
//! namespace per run, steps as replica patches and API-level faults, the
//! observers recording, the invariants judging the trace.

use super::observe::{self, DataState, PodViews};
use super::profile::{KubeFault, Profile, fill};
use super::{KubeError, apply};
use crate::report::{RunResult, RunStatus};
use crate::scenario::model::{Inject, MemberSelector, Scenario, StepAction, Suite, Trigger};
use crate::trace::{
    EventKind, FaultKind, MemberInfo, MembershipOp, Recorder, SlotInfo, TRACE_FORMAT,
};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::{Client, ResourceExt};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the runner re-reads what the observers saw while settling.
const SETTLE_POLL: Duration = Duration::from_millis(500);
const MEMBER_POLL: Duration = Duration::from_millis(500);
const CLAIM_GONE: Duration = Duration::from_secs(120);
/// How long a settled step waits for the operator's status to catch up.
pub const STATUS_GRACE: Duration = Duration::from_secs(10);

/// Which steps the Kubernetes backend can drive for this profile; the
/// reason when it cannot.
pub fn unsupported_step(profile: &Profile, scenario: &Scenario) -> Option<String> {
    scenario.steps.iter().find_map(|step| {
        if let Some(inject) = &step.inject {
            let fault = match inject.fault {
                FaultKind::DeletePod => KubeFault::DeletePod,
                FaultKind::Kill => KubeFault::KillPod,
                FaultKind::LoseVolume => KubeFault::LoseVolume,
                FaultKind::CrashDeployer => KubeFault::CrashOperator,
                other => {
                    return Some(format!(
                        "injecting {other:?} mid-step is not driven on Kubernetes yet"
                    ));
                }
            };
            if !profile.faults.contains(&fault) {
                return Some(format!("profile {} does not allow {fault:?}", profile.name));
            }
        }
        let fault = match &step.action {
            StepAction::Bootstrap(_) | StepAction::Scale(_) => return None,
            StepAction::DeletePod(_)
            | StepAction::Restart(_)
            | StepAction::RollingRestart
            | StepAction::FullRestart => KubeFault::DeletePod,
            StepAction::Kill(_) => KubeFault::KillPod,
            StepAction::LoseVolume(_) => KubeFault::LoseVolume,
            StepAction::CrashDeployer => KubeFault::CrashOperator,
            other => return Some(format!("{} is not driven on Kubernetes yet", other.name())),
        };
        (!profile.faults.contains(&fault))
            .then(|| format!("profile {} does not allow {fault:?}", profile.name))
    })
}

pub struct KubeRunSpec {
    pub profile: Arc<Profile>,
    pub suite: Arc<Suite>,
    pub scenario: Scenario,
    pub run_id: String,
    pub seed: u64,
    pub dir: PathBuf,
    pub rel_dir: String,
}

impl KubeRunSpec {
    fn result(&self) -> RunResult {
        let engine = self.profile.engine_ref().ok();
        RunResult {
            run_id: self.run_id.clone(),
            scenario: self.scenario.name.clone(),
            strategy: self.profile.name.clone(),
            engine: engine
                .as_ref()
                .map(|e| e.kind.to_string())
                .unwrap_or_default(),
            engine_version: engine.and_then(|e| e.version).unwrap_or_default(),
            backend: "kube".into(),
            replicas: self.scenario.max_replicas(),
            tls: false,
            seed: self.seed,
            status: RunStatus::Error,
            error: None,
            verdicts: Vec::new(),
            duration_ms: 0,
            ready_ms: None,
            trace: format!("{}/trace.jsonl", self.rel_dir),
            logs: format!("{}/logs", self.rel_dir),
        }
    }
}

/// How long the operator may take to be ready after its install.
const OPERATOR_READY: Duration = Duration::from_secs(180);

/// Applies the profile's install manifests and waits for the operator's
/// pods to be ready; returns what was applied.
pub async fn install(client: &Client, profile: &Profile) -> Result<Vec<String>, KubeError> {
    let home = profile
        .operator
        .as_ref()
        .map_or("default".to_string(), |o| o.namespace.clone());
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
        applied.extend(apply::apply_all(client, &text, &path.display().to_string(), &home).await?);
    }
    if let Some(operator) = &profile.operator {
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
async fn crash_operator(client: &Client, profile: &Profile) -> Result<(), KubeError> {
    let Some(operator) = &profile.operator else {
        return Err(KubeError::Unsupported(format!(
            "profile {} names no operator pods",
            profile.name
        )));
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &operator.namespace);
    let params = kube::api::ListParams::default().labels(&operator.selector);
    for pod in pods.list(&params).await?.items {
        ignore_gone(
            pods.delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                .await,
        )?;
    }
    Ok(())
}

/// Namespaces of runs in progress, for an interrupted process to delete.
static LIVE_NAMESPACES: Mutex<Vec<(Client, String)>> = Mutex::new(Vec::new());

/// The label on every namespace a run creates.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "raftcert");

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

/// Deletes the namespace of every run in progress (Ctrl-C).
pub async fn delete_live_namespaces() -> Vec<String> {
    let live: Vec<(Client, String)> = LIVE_NAMESPACES
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    let mut deleted = Vec::new();
    for (client, namespace) in live {
        let namespaces: Api<Namespace> = Api::all(client);
        if namespaces
            .delete(&namespace, &DeleteParams::default())
            .await
            .is_ok()
        {
            deleted.push(namespace);
        }
    }
    deleted
}

/// Runs one scenario and judges its trace; the namespace is deleted even
/// when the run fails.
pub async fn run_scenario(client: &Client, spec: KubeRunSpec) -> RunResult {
    let started = Instant::now();
    let mut result = spec.result();
    let namespace = format!(
        "raftcert-{}",
        spec.run_id.to_ascii_lowercase().replace('_', "-")
    );
    if let Ok(mut live) = LIVE_NAMESPACES.lock() {
        live.push((client.clone(), namespace.clone()));
    }
    let outcome = drive(client, &spec, &namespace).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces
        .delete(&namespace, &DeleteParams::default())
        .await;
    if let Ok(mut live) = LIVE_NAMESPACES.lock() {
        live.retain(|(_, ns)| *ns != namespace);
    }
    match outcome {
        Ok((trace, abort)) => result.judge(&trace, abort),
        Err(e) => result.error = Some(e.to_string()),
    }
    result.duration_ms = started.elapsed().as_millis() as u64;
    result
}

/// Everything the run started, stopped on drop (also on panic).
struct Observers(Vec<tokio::task::JoinHandle<()>>);
impl Drop for Observers {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

async fn drive(
    client: &Client,
    spec: &KubeRunSpec,
    namespace: &str,
) -> Result<(crate::trace::Trace, Option<String>), KubeError> {
    let profile = &spec.profile;
    let io = |what: &str| {
        let what = what.to_string();
        move |source| KubeError::Io { what, source }
    };
    std::fs::create_dir_all(spec.dir.join("logs")).map_err(io("run directory"))?;
    let recorder = Arc::new(
        Recorder::to_file(&spec.dir.join("trace.jsonl")).map_err(|e| KubeError::Io {
            what: "trace".into(),
            source: std::io::Error::other(e.to_string()),
        })?,
    );
    let name = "etcd".to_string();
    let vars = |replicas: u32| {
        vec![
            ("NAME".to_string(), name.clone()),
            ("NAMESPACE".to_string(), namespace.to_string()),
            ("REPLICAS".to_string(), replicas.to_string()),
        ]
    };
    let fill_vars = |text: &str, replicas: u32| {
        let owned = vars(replicas);
        let pairs: Vec<(&str, &str)> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        fill(text, &pairs)
    };
    let max = spec.scenario.max_replicas();
    let slots: Vec<SlotInfo> = (0..max)
        .map(|ordinal| {
            let pod = profile.pod_name(&name, ordinal);
            let urls = |template: &str| {
                fill(
                    template,
                    &[("POD", &pod), ("NAME", &name), ("NAMESPACE", namespace)],
                )
            };
            SlotInfo {
                name: pod.clone(),
                ordinal,
                peer_url: urls(&profile.members.peer_url),
                client_url: urls(&profile.members.client_url),
            }
        })
        .collect();
    let engine = profile
        .engine_ref()
        .map_err(|e| KubeError::Unsupported(e.to_string()))?;
    recorder.record(EventKind::RunStarted {
        format: TRACE_FORMAT,
        run_id: spec.run_id.clone(),
        scenario: spec.scenario.name.clone(),
        strategy: profile.name.clone(),
        engine: engine.kind.to_string(),
        engine_version: engine.version.clone().unwrap_or_default(),
        backend: "kube".into(),
        seed: spec.seed,
        tls: false,
        slots: slots.clone(),
        quorum_grace_ms: spec.suite.quorum_grace_for(&spec.scenario).as_millis() as u64,
    });

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(namespace.to_string());
    ns.metadata.labels = Some(
        [(
            "app.kubernetes.io/managed-by".to_string(),
            "raftcert".to_string(),
        )]
        .into(),
    );
    namespaces.create(&PostParams::default(), &ns).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let views: PodViews = Arc::new(Mutex::new(BTreeMap::new()));
    let has_data: DataState = Arc::new(Mutex::new(BTreeMap::new()));
    let mut observers = Observers(vec![observe::watch_pods(
        pods.clone(),
        fill_vars(&profile.members.selector, 0),
        profile.members.container.clone(),
        recorder.clone(),
        views.clone(),
        has_data.clone(),
    )]);
    let mut endpoints = BTreeMap::new();
    for slot in &slots {
        let (port, task) =
            observe::bridge(pods.clone(), slot.name.clone(), profile.members.client_port)
                .await
                .map_err(io("port-forward listener"))?;
        endpoints.insert(slot.name.clone(), port);
        observers.0.push(task);
    }
    observers.0.push(observe::poll_members(
        endpoints,
        views.clone(),
        recorder.clone(),
        MEMBER_POLL,
    ));

    if let Some(status) = &profile.status {
        let resource = api_resource(&status.api_version, &status.kind)?;
        let name = fill_vars(&status.name, 0);
        observers.0.push(observe::watch_status(
            Api::namespaced_with(client.clone(), namespace, &resource),
            format!("{}/{name}", status.kind),
            name,
            status.members.clone(),
            recorder.clone(),
        ));
    }
    let scale_resource = api_resource(&profile.scale.api_version, &profile.scale.kind)?;
    let scale_api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &scale_resource);
    let scale_name = fill_vars(&profile.scale.name, 0);
    let deployment_path = profile.dir.join(&profile.deployment);
    let deployment = std::fs::read_to_string(&deployment_path).map_err(io("deployment"))?;

    let mut desired = 0;
    let mut abort = None;
    for (index, (name, action, settle, inject)) in expand_steps(spec).into_iter().enumerate() {
        let target = match action {
            StepAction::Bootstrap(n) | StepAction::Scale(n) => n,
            _ => desired,
        };
        recorder.record(EventKind::StepStarted {
            index: index as u32,
            name: name.clone(),
            desired_replicas: target,
            deadline_ms: settle.as_millis() as u64,
        });
        let step_started = Instant::now();
        let step_seq = recorder.snapshot().events.len();
        let mut replaced: Vec<(String, String)> = Vec::new();
        let seed = spec.seed ^ index as u64;
        let mut doomed = |ordinals: Vec<u32>, fault: FaultKind| {
            let uids = views.lock().ok();
            ordinals
                .into_iter()
                .map(|ordinal| {
                    let slot = slots[ordinal as usize].name.clone();
                    let uid = uids
                        .as_ref()
                        .and_then(|v| v.get(&slot).map(|p| p.uid.clone()))
                        .unwrap_or_default();
                    replaced.push((slot.clone(), uid));
                    recorder.record(EventKind::FaultInjected {
                        fault,
                        slot: Some(slot.clone()),
                    });
                    slot
                })
                .collect::<Vec<String>>()
        };
        let acted = match action {
            StepAction::Bootstrap(n) => apply::apply_all(
                client,
                &fill_vars(&deployment, n),
                &deployment_path.display().to_string(),
                namespace,
            )
            .await
            .map(|_| ()),
            StepAction::Scale(n) => {
                set_replicas(&scale_api, &scale_name, &profile.scale.path, n).await
            }
            StepAction::DeletePod(sel)
            | StepAction::Restart(sel)
            | StepAction::Kill(sel)
            | StepAction::LoseVolume(sel) => {
                let (fault, how) = match action {
                    StepAction::Restart(_) => (FaultKind::Stop, Removal::Graceful),
                    StepAction::Kill(_) => (FaultKind::Kill, Removal::Immediate),
                    StepAction::LoseVolume(_) => (FaultKind::LoseVolume, Removal::WithVolume),
                    _ => (FaultKind::DeletePod, Removal::Graceful),
                };
                let ordinal = pick(&sel, &recorder.snapshot(), &slots, desired, seed);
                let victims = doomed(vec![ordinal], fault);
                delete_members(client, namespace, &victims, how, &has_data, &recorder).await
            }
            StepAction::CrashDeployer => {
                recorder.record(EventKind::FaultInjected {
                    fault: FaultKind::CrashDeployer,
                    slot: None,
                });
                crash_operator(client, profile).await
            }
            StepAction::FullRestart => {
                let victims = doomed((0..desired).collect(), FaultKind::Stop);
                delete_members(
                    client,
                    namespace,
                    &victims,
                    Removal::Graceful,
                    &has_data,
                    &recorder,
                )
                .await
            }
            other => Err(KubeError::Unsupported(format!(
                "{} is not driven on Kubernetes yet",
                other.name()
            ))),
        };
        if let Err(e) = acted {
            abort = Some(format!("step {name}: {e}"));
            break;
        }
        desired = target;
        let deadline = step_started + settle;
        let mut pending = inject;
        let settled = loop {
            if let Some(fault) = pending
                && injection_due(&fault, &recorder.snapshot(), step_seq, step_started)
            {
                pending = None;
                let injected = if fault.fault == FaultKind::CrashDeployer {
                    recorder.record(EventKind::FaultInjected {
                        fault: fault.fault,
                        slot: None,
                    });
                    crash_operator(client, profile).await
                } else {
                    let removal = match fault.fault {
                        FaultKind::Kill => Removal::Immediate,
                        FaultKind::LoseVolume => Removal::WithVolume,
                        _ => Removal::Graceful,
                    };
                    let selector = fault.member.unwrap_or(MemberSelector::Random);
                    let ordinal = pick(&selector, &recorder.snapshot(), &slots, desired, seed);
                    let slot = slots[ordinal as usize].name.clone();
                    let uid = views
                        .lock()
                        .ok()
                        .and_then(|v| v.get(&slot).map(|p| p.uid.clone()))
                        .unwrap_or_default();
                    replaced.push((slot.clone(), uid));
                    recorder.record(EventKind::FaultInjected {
                        fault: fault.fault,
                        slot: Some(slot.clone()),
                    });
                    delete_member(client, namespace, &slot, removal, &has_data, &recorder).await
                };
                if let Err(e) = injected {
                    abort = Some(format!("step {name}: injecting {:?}: {e}", fault.fault));
                    break false;
                }
            }
            if pending.is_none() && is_settled(&recorder, &views, &slots, desired, &replaced) {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            tokio::time::sleep(SETTLE_POLL).await;
        };
        if settled && profile.status.is_some() {
            // Controllers publish status after the fact: it gets a grace to
            // catch up before the step ends and I9 compares.
            let until = Instant::now() + STATUS_GRACE;
            while !status_agrees(&recorder.snapshot()) && Instant::now() < until {
                tokio::time::sleep(SETTLE_POLL).await;
            }
        }
        recorder.record(EventKind::StepFinished {
            index: index as u32,
            name,
            settled,
            elapsed_ms: step_started.elapsed().as_millis() as u64,
            detail: (!settled).then(|| format!("not {desired} started voters and ready pods")),
        });
    }
    drop(observers);
    save_logs(
        &pods,
        &slots,
        &profile.members.container,
        &spec.dir.join("logs"),
    )
    .await;
    recorder.record(EventKind::RunFinished {
        error: abort.clone(),
    });
    recorder.flush();
    Ok((recorder.snapshot(), abort))
}

fn api_resource(api_version: &str, kind: &str) -> Result<ApiResource, KubeError> {
    let gvk = kube::core::GroupVersionKind::try_from(&kube::core::TypeMeta {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
    })
    .map_err(|e| KubeError::Unsupported(e.to_string()))?;
    Ok(ApiResource::from_gvk(&gvk))
}

/// Steps as run: a rolling restart becomes one restart per member, each
/// settling before the next, as in the local runner.
fn expand_steps(spec: &KubeRunSpec) -> Vec<(String, StepAction, Duration, Option<Inject>)> {
    let mut steps = Vec::new();
    let mut desired = 0;
    for step in &spec.scenario.steps {
        let settle = spec.suite.settle_for(step);
        match step.action {
            StepAction::RollingRestart => {
                for ordinal in 0..desired {
                    steps.push((
                        format!("rolling-restart m{ordinal}"),
                        StepAction::Restart(MemberSelector::Ordinal(ordinal)),
                        settle,
                        None,
                    ));
                }
            }
            action => {
                if let StepAction::Bootstrap(n) | StepAction::Scale(n) = action {
                    desired = n;
                }
                steps.push((action.name(), action, settle, step.inject));
            }
        }
    }
    steps
}

/// The ordinal a selector names, from what the trace shows so far: the
/// leader is the member the latest status reports name.
fn pick(
    selector: &MemberSelector,
    trace: &crate::trace::Trace,
    slots: &[SlotInfo],
    members: u32,
    seed: u64,
) -> u32 {
    let last = members.saturating_sub(1);
    let random = |among: &[u32]| -> u32 {
        if among.is_empty() {
            return 0;
        }
        among[(crate::util::splitmix64(seed) % among.len() as u64) as usize]
    };
    let all: Vec<u32> = (0..members).collect();
    let leader = leader_ordinal(trace, slots);
    match selector {
        MemberSelector::Ordinal(n) => (*n).min(last),
        MemberSelector::Random => random(&all),
        MemberSelector::Leader => leader.unwrap_or_else(|| random(&all)),
        MemberSelector::Follower => {
            let followers: Vec<u32> = all.into_iter().filter(|o| Some(*o) != leader).collect();
            random(&followers)
        }
    }
}

fn leader_ordinal(trace: &crate::trace::Trace, slots: &[SlotInfo]) -> Option<u32> {
    let leader = trace.events.iter().rev().find_map(|e| match &e.kind {
        EventKind::MemberStatus { leader, .. } if leader != "0" && !leader.is_empty() => {
            Some(leader.clone())
        }
        _ => None,
    })?;
    let slot = trace.events.iter().rev().find_map(|e| match &e.kind {
        EventKind::LocalMember {
            slot, member_id, ..
        } if *member_id == leader => Some(slot.clone()),
        _ => None,
    })?;
    slots.iter().find(|s| s.name == slot).map(|s| s.ordinal)
}

/// How a member pod is taken away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    /// The pod's grace period: the member stops cleanly.
    Graceful,
    /// Grace period 0: the container is killed.
    Immediate,
    /// Graceful, and its PVCs are deleted too.
    WithVolume,
}

async fn set_replicas(
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

async fn delete_members(
    client: &Client,
    namespace: &str,
    victims: &[String],
    how: Removal,
    has_data: &DataState,
    recorder: &Recorder,
) -> Result<(), KubeError> {
    for pod in victims {
        delete_member(client, namespace, pod, how, has_data, recorder).await?;
    }
    Ok(())
}

async fn delete_member(
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
                tokio::time::sleep(SETTLE_POLL).await;
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
fn ignore_gone<T>(result: Result<T, kube::Error>) -> Result<(), KubeError> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether the latest reported member count equals the started members of
/// the latest member list.
fn status_agrees(trace: &crate::trace::Trace) -> bool {
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

/// Whether a mid-step fault's trigger has happened: a member added since
/// the step started (seen in any member's log), or its delay passed.
fn injection_due(
    inject: &Inject,
    trace: &crate::trace::Trace,
    step_seq: usize,
    step_started: Instant,
) -> bool {
    match inject.after {
        Trigger::After(delay) => step_started.elapsed() >= delay,
        Trigger::AfterMemberAdd => trace.events.iter().skip(step_seq).any(|e| {
            matches!(
                &e.kind,
                EventKind::MembershipApplied {
                    op: MembershipOp::Add | MembershipOp::AddLearner,
                    ..
                }
            )
        }),
    }
}

/// Settled: the first `desired` pods run ready, no other member pod runs,
/// and the latest member list shows exactly their peer URLs, all started
/// voters.
fn is_settled(
    recorder: &Recorder,
    views: &PodViews,
    slots: &[SlotInfo],
    desired: u32,
    replaced: &[(String, String)],
) -> bool {
    let Ok(views) = views.lock() else {
        return false;
    };
    // A deleted pod counts only once its successor runs.
    if replaced
        .iter()
        .any(|(slot, old_uid)| views.get(slot).is_none_or(|v| &v.uid == old_uid))
    {
        return false;
    }
    let pods_ok = slots.iter().all(|slot| {
        let view = views.get(&slot.name);
        if slot.ordinal < desired {
            view.is_some_and(|v| v.running && v.ready)
        } else {
            view.is_none_or(|v| !v.running)
        }
    });
    if !pods_ok {
        return false;
    }
    let trace = recorder.snapshot();
    let latest: Option<&Vec<MemberInfo>> = trace.events.iter().rev().find_map(|e| match &e.kind {
        EventKind::MemberList { members, .. } => Some(members),
        _ => None,
    });
    let Some(members) = latest else {
        return false;
    };
    let wanted: std::collections::BTreeSet<&str> = slots
        .iter()
        .filter(|s| s.ordinal < desired)
        .map(|s| s.peer_url.as_str())
        .collect();
    let listed: std::collections::BTreeSet<&str> = members
        .iter()
        .flat_map(|m| m.peer_urls.iter().map(String::as_str))
        .collect();
    if listed != wanted || !members.iter().all(|m| m.is_started() && !m.is_learner) {
        return false;
    }
    // Every member has reported a leader since its latest start.
    slots.iter().filter(|s| s.ordinal < desired).all(|slot| {
        let start = trace.events.iter().rposition(
            |e| matches!(&e.kind, EventKind::ProcessStarted { slot: s, .. } if *s == slot.name),
        );
        trace.events[start.map_or(0, |p| p + 1)..].iter().any(|e| {
            matches!(&e.kind, EventKind::MemberStatus { slot: s, leader, .. }
                if *s == slot.name && leader != "0" && !leader.is_empty())
        })
    })
}

/// Keeps each member container's log (current and previous instance).
async fn save_logs(pods: &Api<Pod>, slots: &[SlotInfo], container: &str, dir: &std::path::Path) {
    for slot in slots {
        for (previous, suffix) in [(true, ".previous.log"), (false, ".log")] {
            let params = kube::api::LogParams {
                container: Some(container.to_string()),
                previous,
                ..Default::default()
            };
            if let Ok(text) = pods.logs(&slot.name, &params).await {
                let _ = std::fs::write(dir.join(format!("{}{suffix}", slot.name)), text);
            }
        }
    }
}
