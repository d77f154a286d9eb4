//! Drives one scenario against a profile's deployment on a cluster: a
//! namespace per run, steps as replica patches and API-level faults, the
//! observers recording, the invariants judging the trace.

use super::nemesis::{Nemesis, Undo};
use super::nodes::NodeAccess;
use super::observe::{self, DataState, PodViews};
use super::profile::{KubeFault, Profile, fill};
use super::slots::SlotBook;
use super::{KubeError, apply};
use crate::report::{RunResult, RunStatus};
use crate::scenario::model::{
    Dur, FreezeSpec, Inject, IsolateSet, MemberSelector, PartitionSpec, Scenario, StepAction,
    Suite, Trigger,
};
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

/// Which steps the Kubernetes backend can drive for this profile, with
/// node access (`nodes`) or the reason there is none; the reason when it
/// cannot.
pub fn unsupported_step(
    profile: &Profile,
    scenario: &Scenario,
    nodes: &Result<NodeAccess, String>,
) -> Option<String> {
    let allowed = |fault: KubeFault| {
        if !profile.faults.contains(&fault) {
            return Some(format!(
                "profile {} does not allow {}",
                profile.name,
                fault.name()
            ));
        }
        match nodes {
            Err(why) if fault.needs_nodes() => {
                Some(format!("{} needs access to the nodes: {why}", fault.name()))
            }
            _ => None,
        }
    };
    scenario.steps.iter().find_map(|step| {
        if let Some(inject) = &step.inject {
            let fault = match inject.fault {
                FaultKind::DeletePod => KubeFault::DeletePod,
                FaultKind::Kill => KubeFault::KillPod,
                FaultKind::LoseVolume => KubeFault::LoseVolume,
                FaultKind::CrashDeployer => KubeFault::CrashOperator,
                FaultKind::Isolate => KubeFault::Partition,
                FaultKind::Freeze => KubeFault::Freeze,
                FaultKind::Disconnect => KubeFault::Disconnect,
                other => {
                    return Some(format!(
                        "injecting {other:?} mid-step is not driven on Kubernetes yet"
                    ));
                }
            };
            if let Some(why) = allowed(fault) {
                return Some(why);
            }
        }
        let fault = match &step.action {
            StepAction::Bootstrap(_) | StepAction::Scale(_) | StepAction::Wait => return None,
            StepAction::DeletePod(_)
            | StepAction::Restart(_)
            | StepAction::RollingRestart
            | StepAction::FullRestart => KubeFault::DeletePod,
            StepAction::Kill(_) => KubeFault::KillPod,
            StepAction::LoseVolume(_) => KubeFault::LoseVolume,
            StepAction::CrashDeployer => KubeFault::CrashOperator,
            StepAction::Partition(_) => KubeFault::Partition,
            StepAction::Freeze(_) => KubeFault::Freeze,
            StepAction::Disconnect(_) => KubeFault::Disconnect,
        };
        allowed(fault)
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
    /// Node access for faults below the API, when the cluster allows it.
    pub nodes: Option<NodeAccess>,
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
    // An operator deployed with each run (its namespace is `${NAMESPACE}`)
    // is waited for by the bootstrap step, not here.
    let shared_operator = profile
        .operator
        .as_ref()
        .filter(|o| !o.namespace.contains("${NAMESPACE}"));
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
        applied.extend(apply::apply_all(client, &text, &path.display().to_string(), &home).await?);
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
async fn crash_operator(
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
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let book = Arc::new(
        SlotBook::new(
            profile,
            pods.clone(),
            &name,
            namespace,
            spec.scenario.max_replicas(),
            recorder.clone(),
        )
        .map_err(io("port-forward listener"))?,
    );
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
        slots: book.slots(),
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
    let views: PodViews = Arc::new(Mutex::new(BTreeMap::new()));
    let has_data: DataState = Arc::new(Mutex::new(BTreeMap::new()));
    let mut observers = Observers(vec![observe::watch_pods(
        pods.clone(),
        fill_vars(&profile.members.selector, 0),
        profile.members.container.clone(),
        recorder.clone(),
        views.clone(),
        has_data.clone(),
        book.clone(),
    )]);
    observers.0.push(observe::poll_members(
        book.clone(),
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
    let mut nemesis = spec.nodes.clone().map(|nodes| {
        Nemesis::new(
            nodes,
            pods.clone(),
            profile.members.container.clone(),
            recorder.clone(),
        )
    });
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
        let step_seq = recorder.recorded();
        let mut replaced: Vec<(String, String)> = Vec::new();
        let seed = spec.seed ^ index as u64;
        // Held faults and when each is taken back.
        let mut timers: Vec<(Instant, Undo)> = Vec::new();
        let mut doomed = |victims: Vec<String>, fault: FaultKind| {
            for slot in &victims {
                doom(&views, &recorder, &mut replaced, slot, fault);
            }
            victims
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
                match pick(
                    &sel,
                    &recorder.snapshot(),
                    &members_wanted(&book, &views, desired),
                    seed,
                ) {
                    Some(victim) => {
                        let victims = doomed(vec![victim], fault);
                        delete_members(client, namespace, &victims, how, &has_data, &recorder).await
                    }
                    None => Err(no_member_to_pick()),
                }
            }
            StepAction::CrashDeployer => {
                recorder.record(EventKind::FaultInjected {
                    fault: FaultKind::CrashDeployer,
                    slot: None,
                });
                crash_operator(client, profile, namespace).await
            }
            StepAction::Partition(_) | StepAction::Freeze(_) | StepAction::Disconnect(_) => {
                hold_fault(
                    nemesis.as_mut(),
                    &action,
                    &recorder.snapshot(),
                    &members_wanted(&book, &views, desired),
                    &views,
                    &book,
                    seed,
                )
                .await
                .map(|(undo, until)| timers.push((until, undo)))
            }
            StepAction::Wait => Ok(()),
            StepAction::FullRestart => {
                let everyone = members_wanted(&book, &views, desired)
                    .into_iter()
                    .map(|s| s.name)
                    .collect();
                let victims = doomed(everyone, FaultKind::Stop);
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
            StepAction::RollingRestart => Err(KubeError::Unsupported(
                "a rolling restart is expanded before it runs".into(),
            )),
        };
        if let Err(e) = acted {
            abort = Some(format!("step {name}: {e}"));
            break;
        }
        desired = target;
        let deadline = step_started + settle;
        let mut pending = inject;
        let mut fresh_from = step_seq;
        let settled = loop {
            // One copy of the trace serves the trigger and the choice of member.
            let so_far = pending.map(|_| recorder.snapshot());
            if let (Some(fault), Some(so_far)) = (pending, &so_far)
                && injection_due(&fault, so_far, step_seq, step_started)
            {
                pending = None;
                let injected = if fault.fault == FaultKind::CrashDeployer {
                    recorder.record(EventKind::FaultInjected {
                        fault: fault.fault,
                        slot: None,
                    });
                    crash_operator(client, profile, namespace).await
                } else if let Some(action) = held_action(&fault) {
                    let wanted = members_wanted(&book, &views, desired);
                    hold_fault(
                        nemesis.as_mut(),
                        &action,
                        so_far,
                        &wanted,
                        &views,
                        &book,
                        seed,
                    )
                    .await
                    .map(|(undo, until)| {
                        // Without `for:`, the fault holds until the step ends.
                        if fault.duration.is_some() {
                            timers.push((until, undo));
                        }
                    })
                } else {
                    let removal = match fault.fault {
                        FaultKind::Kill => Removal::Immediate,
                        FaultKind::LoseVolume => Removal::WithVolume,
                        _ => Removal::Graceful,
                    };
                    let selector = fault.member.unwrap_or(MemberSelector::Random);
                    let wanted = members_wanted(&book, &views, desired);
                    match pick(&selector, so_far, &wanted, seed) {
                        Some(slot) => {
                            doom(&views, &recorder, &mut replaced, &slot, fault.fault);
                            delete_member(client, namespace, &slot, removal, &has_data, &recorder)
                                .await
                        }
                        None => Err(no_member_to_pick()),
                    }
                };
                if let Err(e) = injected {
                    abort = Some(format!("step {name}: injecting {:?}: {e}", fault.fault));
                    break false;
                }
            }
            let now = Instant::now();
            let (due, later): (Vec<_>, Vec<_>) = timers.drain(..).partition(|(at, _)| now >= *at);
            timers = later;
            if let Some(nemesis) = nemesis.as_mut()
                && !due.is_empty()
            {
                let mut failed = None;
                for (_, undo) in due {
                    if let Err(e) = nemesis.undo(undo).await {
                        failed.get_or_insert(e);
                    }
                }
                if let Some(e) = failed {
                    abort = Some(format!("step {name}: taking a fault back: {e}"));
                    break false;
                }
                // Only what members report after the fault is over counts.
                fresh_from = recorder.recorded();
            }
            let holding = pending.is_some() || !timers.is_empty();
            if !holding && is_settled(&recorder, &views, &book, desired, &replaced, fresh_from) {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            tokio::time::sleep(SETTLE_POLL).await;
        };
        if let Some(nemesis) = nemesis.as_mut()
            && let Err(e) = nemesis.undo_all().await
        {
            abort.get_or_insert(format!("step {name}: taking faults back: {e}"));
        }
        if settled && let Some(status) = &profile.status {
            // Controllers publish status after the fact: it gets a grace to
            // catch up before the step ends and I9 compares.
            let until = Instant::now() + status.grace.map_or(STATUS_GRACE, |g| g.0);
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
            desired_slots: book.is_dynamic().then(|| {
                members_wanted(&book, &views, desired)
                    .into_iter()
                    .map(|s| s.name)
                    .collect()
            }),
        });
        if abort.is_some() {
            break;
        }
    }
    // A step that failed to start may have left a fault in force.
    if let Some(nemesis) = nemesis.as_mut()
        && let Err(e) = nemesis.undo_all().await
    {
        abort.get_or_insert(format!("taking faults back: {e}"));
    }
    drop(observers);
    book.close();
    let logs = spec.dir.join("logs");
    save_logs(&pods, &book.slots(), &profile.members.container, &logs).await;
    if let Some(operator) = &profile.operator {
        let home = fill(&operator.namespace, &[("NAMESPACE", namespace)]);
        save_operator_logs(client, &home, &operator.selector, &logs).await;
    }
    save_events(client, namespace, &logs).await;
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
/// Where the operator names its pods, a restarted member comes back as a
/// new, newest pod: each restart then takes the oldest member.
fn expand_steps(spec: &KubeRunSpec) -> Vec<(String, StepAction, Duration, Option<Inject>)> {
    let mut steps = Vec::new();
    let mut desired = 0;
    let dynamic = spec.profile.dynamic_members();
    for step in &spec.scenario.steps {
        let settle = spec.profile.settle(spec.suite.settle_for(step));
        match step.action {
            StepAction::RollingRestart => {
                for ordinal in 0..desired {
                    let victim = if dynamic { 0 } else { ordinal };
                    steps.push((
                        format!("rolling-restart m{ordinal}"),
                        StepAction::Restart(MemberSelector::Ordinal(victim)),
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

/// The step a held mid-step fault amounts to (`isolate` of one member for
/// a while is a partition of that member). Without `for:` the duration is
/// zero here and the caller sets no timer: the fault holds until the step
/// ends.
fn held_action(inject: &Inject) -> Option<StepAction> {
    let member = inject.member.unwrap_or(MemberSelector::Random);
    let duration = inject.duration.unwrap_or(Dur(Duration::ZERO));
    match inject.fault {
        FaultKind::Isolate => Some(StepAction::Partition(PartitionSpec {
            isolate: IsolateSet::One(member),
            duration,
        })),
        FaultKind::Freeze => Some(StepAction::Freeze(FreezeSpec { member, duration })),
        FaultKind::Disconnect => Some(StepAction::Disconnect(FreezeSpec { member, duration })),
        _ => None,
    }
}

/// Applies a fault held below the API (a partition, a freeze or a
/// disconnect); returns how to take it back, and when its `for:` is up.
async fn hold_fault(
    nemesis: Option<&mut Nemesis>,
    action: &StepAction,
    trace: &crate::trace::Trace,
    wanted: &[SlotInfo],
    views: &PodViews,
    book: &SlotBook,
    seed: u64,
) -> Result<(Undo, Instant), KubeError> {
    let started = Instant::now();
    let Some(nemesis) = nemesis else {
        return Err(KubeError::Unsupported(format!(
            "{} needs access to the nodes",
            action.name()
        )));
    };
    let member = |selector: MemberSelector| {
        pick(&selector, trace, wanted, seed).ok_or_else(no_member_to_pick)
    };
    let (undo, duration) = match action {
        StepAction::Partition(spec) => {
            let mut isolated = Vec::new();
            for selector in spec.isolate.selectors() {
                let slot = member(selector)?;
                if !isolated.contains(&slot) {
                    isolated.push(slot);
                }
            }
            let running: Vec<String> = views
                .lock()
                .map_err(|_| KubeError::Unsupported("the pod views are poisoned".into()))?
                .iter()
                .filter(|(slot, view)| view.running && !isolated.contains(slot))
                .map(|(slot, _)| slot.clone())
                .collect();
            nemesis.cut(&isolated, &running, book).await?;
            (Undo::Heal, spec.duration)
        }
        StepAction::Freeze(spec) => (
            nemesis
                .hold_member(&member(spec.member)?, FaultKind::Freeze)
                .await?,
            spec.duration,
        ),
        StepAction::Disconnect(spec) => (
            nemesis
                .hold_member(&member(spec.member)?, FaultKind::Disconnect)
                .await?,
            spec.duration,
        ),
        other => {
            return Err(KubeError::Unsupported(format!(
                "{} is not a fault held below the API",
                other.name()
            )));
        }
    };
    Ok((undo, started + duration.0))
}

/// Records a fault on a member pod, and remembers which pod it was (by
/// UID) so the step settles only once that pod is gone or replaced.
fn doom(
    views: &PodViews,
    recorder: &Recorder,
    replaced: &mut Vec<(String, String)>,
    slot: &str,
    fault: FaultKind,
) {
    let uid = views
        .lock()
        .ok()
        .and_then(|v| v.get(slot).map(|p| p.uid.clone()))
        .unwrap_or_default();
    replaced.push((slot.to_string(), uid));
    recorder.record(EventKind::FaultInjected {
        fault,
        slot: Some(slot.to_string()),
    });
}

/// The members a step wants, oldest first: the first `desired` slots of a
/// StatefulSet, or the live member pods where the operator names them.
fn members_wanted(book: &SlotBook, views: &PodViews, desired: u32) -> Vec<SlotInfo> {
    let slots = book.slots();
    if !book.is_dynamic() {
        return slots.into_iter().filter(|s| s.ordinal < desired).collect();
    }
    let Ok(views) = views.lock() else {
        return Vec::new();
    };
    slots
        .into_iter()
        .filter(|s| views.get(&s.name).is_some_and(|v| v.live))
        .collect()
}

fn no_member_to_pick() -> KubeError {
    KubeError::Unsupported("no member pod to choose from".into())
}

/// The member a selector names among the wanted ones, from what the trace
/// shows so far: the leader is the member the latest status reports name.
fn pick(
    selector: &MemberSelector,
    trace: &crate::trace::Trace,
    wanted: &[SlotInfo],
    seed: u64,
) -> Option<String> {
    let random = |among: &[&SlotInfo]| -> Option<String> {
        if among.is_empty() {
            return None;
        }
        Some(
            among[(crate::util::splitmix64(seed) % among.len() as u64) as usize]
                .name
                .clone(),
        )
    };
    let all: Vec<&SlotInfo> = wanted.iter().collect();
    let leader = leader_slot(trace).filter(|l| wanted.iter().any(|s| s.name == *l));
    match selector {
        MemberSelector::Ordinal(n) => wanted
            .get((*n as usize).min(wanted.len().saturating_sub(1)))
            .map(|s| s.name.clone()),
        MemberSelector::Random => random(&all),
        MemberSelector::Leader => leader.or_else(|| random(&all)),
        MemberSelector::Follower => {
            let followers: Vec<&SlotInfo> = all
                .into_iter()
                .filter(|s| Some(&s.name) != leader.as_ref())
                .collect();
            random(&followers)
        }
    }
}

fn leader_slot(trace: &crate::trace::Trace) -> Option<String> {
    let leader = trace.events.iter().rev().find_map(|e| match &e.kind {
        EventKind::MemberStatus { leader, .. } if leader != "0" && !leader.is_empty() => {
            Some(leader.clone())
        }
        _ => None,
    })?;
    trace.events.iter().rev().find_map(|e| match &e.kind {
        EventKind::LocalMember {
            slot, member_id, ..
        } if *member_id == leader => Some(slot.clone()),
        _ => None,
    })
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

/// Settled: the wanted member pods (see [`members_wanted`]) are `desired`
/// in number and run ready, no other member pod runs, and the latest member
/// list shows exactly their peer URLs, all started voters, each of which
/// has reported a leader since its latest start.
fn is_settled(
    recorder: &Recorder,
    views: &PodViews,
    book: &SlotBook,
    desired: u32,
    replaced: &[(String, String)],
    fresh_from: usize,
) -> bool {
    let wanted = members_wanted(book, views, desired);
    if wanted.len() != desired as usize {
        return false;
    }
    let Ok(views) = views.lock() else {
        return false;
    };
    // A deleted pod counts once it is gone for good or, where pods are
    // named by ordinal, once its successor runs.
    let dynamic = book.is_dynamic();
    if replaced
        .iter()
        .any(|(slot, old_uid)| match views.get(slot) {
            Some(v) => &v.uid == old_uid && (!dynamic || v.live || v.running),
            None => !dynamic,
        })
    {
        return false;
    }
    let pods_ok = book.slots().iter().all(|slot| {
        let view = views.get(&slot.name);
        if wanted.iter().any(|w| w.name == slot.name) {
            view.is_some_and(|v| v.running && v.ready)
        } else {
            view.is_none_or(|v| !v.running)
        }
    });
    drop(views);
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
    let expected: std::collections::BTreeSet<&str> =
        wanted.iter().map(|s| s.peer_url.as_str()).collect();
    let listed: std::collections::BTreeSet<&str> = members
        .iter()
        .flat_map(|m| m.peer_urls.iter().map(String::as_str))
        .collect();
    if listed != expected || !members.iter().all(|m| m.is_started() && !m.is_learner) {
        return false;
    }
    // Each wanted member's latest status, since the step began (or its
    // fault ended) and since its current start, names one same leader.
    let mut leaders = std::collections::BTreeSet::new();
    let all_led = wanted.iter().all(|slot| {
        let start = trace.events.iter().rposition(
            |e| matches!(&e.kind, EventKind::ProcessStarted { slot: s, .. } if *s == slot.name),
        );
        let from = start.map_or(0, |p| p + 1).max(fresh_from);
        let latest = trace
            .events
            .get(from..)
            .unwrap_or_default()
            .iter()
            .rev()
            .find_map(|e| match &e.kind {
                EventKind::MemberStatus {
                    slot: s, leader, ..
                } if *s == slot.name => Some(leader),
                _ => None,
            });
        match latest {
            Some(leader) if leader != "0" && !leader.is_empty() => {
                leaders.insert(leader.clone());
                true
            }
            _ => false,
        }
    });
    all_led && leaders.len() == 1
}

/// Keeps the operator pods' logs: what it decided, in its own words.
async fn save_operator_logs(
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
async fn save_events(client: &Client, namespace: &str, dir: &std::path::Path) {
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
async fn save_logs(pods: &Api<Pod>, slots: &[SlotInfo], container: &str, dir: &std::path::Path) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/operators/statefulset-static");
        Profile::load(&dir).expect("the shipped static profile")
    }

    fn scenario(name: &str) -> Scenario {
        Suite::builtin()
            .expect("built-in suite")
            .scenarios
            .into_iter()
            .find(|s| s.name == name)
            .expect("scenario")
    }

    #[test]
    fn faults_below_the_api_need_node_access() {
        let no_nodes: Result<NodeAccess, String> = Err("node x is not a kind node".into());
        let nodes = Ok(NodeAccess {
            cluster: "test".into(),
        });
        for name in [
            "leader-partitioned",
            "minority-partitioned-mid-scale-out",
            "member-disconnected",
            "leader-killed-follower-frozen",
        ] {
            let why = unsupported_step(&profile(), &scenario(name), &no_nodes)
                .unwrap_or_else(|| panic!("{name} ran without node access"));
            assert!(why.contains("node x is not a kind node"), "{name}: {why}");
            assert_eq!(unsupported_step(&profile(), &scenario(name), &nodes), None);
        }
        // API-level faults do not care.
        assert_eq!(
            unsupported_step(&profile(), &scenario("pod-loss"), &no_nodes),
            None
        );
    }

    #[test]
    fn a_profile_can_refuse_a_fault_below_the_api() {
        let mut profile = profile();
        profile.faults.retain(|f| *f != KubeFault::Freeze);
        let nodes = Ok(NodeAccess {
            cluster: "test".into(),
        });
        let why = unsupported_step(&profile, &scenario("leader-killed-follower-frozen"), &nodes)
            .expect("freeze is not allowed");
        assert!(why.contains("does not allow freeze"), "{why}");
    }

    #[test]
    fn a_held_mid_step_fault_is_a_step_of_its_kind() {
        let inject = Inject {
            after: Trigger::AfterMemberAdd,
            fault: FaultKind::Isolate,
            member: Some(MemberSelector::Follower),
            duration: Some(Dur(Duration::from_secs(5))),
        };
        assert_eq!(
            held_action(&inject),
            Some(StepAction::Partition(PartitionSpec {
                isolate: IsolateSet::One(MemberSelector::Follower),
                duration: Dur(Duration::from_secs(5)),
            }))
        );
        let kill = Inject {
            fault: FaultKind::Kill,
            ..inject
        };
        assert_eq!(held_action(&kill), None);
    }
}
