//! Observers of a deployment on Kubernetes: a pod watcher (container starts
//! and exits), one log stream per container start (parsed by the engine's
//! own startup-line parser), the port-forward bridges the driver's poller
//! reaches members through, and a watcher of the operator's status.

use super::slots::SlotBook;
use crate::engine::EngineKind;
use crate::trace::{EventKind, Recorder};
use futures_util::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use kube::runtime::watcher;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// What the observers know of one member pod, shared with the runner.
#[derive(Debug, Clone, Default)]
pub struct PodView {
    pub running: bool,
    pub ready: bool,
    /// Neither being deleted nor finished for good (a pod whose restart
    /// policy is `Never` stays `Succeeded` or `Failed` until deleted).
    pub live: bool,
    /// Container starts seen under this pod's name, across pods.
    pub incarnation: u64,
    /// The container's current start time: a change is a new start.
    started_at: Option<String>,
    finished_at: Option<String>,
    pub uid: String,
}

pub type PodViews = Arc<Mutex<BTreeMap<String, PodView>>>;

/// Whether the next start of a slot's container finds data in its volume.
pub type DataState = Arc<Mutex<BTreeMap<String, bool>>>;

/// Problems of the cluster, not the operator, per pod and source
/// (`<pod>/status`, `<pod>/mount`): what was seen, since when, and how long
/// it may last before it ends the run.
pub type EnvProblems = Arc<Mutex<BTreeMap<String, EnvProblem>>>;

#[derive(Debug, Clone)]
pub struct EnvProblem {
    pub what: String,
    pub since: std::time::Instant,
    pub grace: std::time::Duration,
}

impl EnvProblem {
    /// Whether it is about where the pod runs (scheduling, mounting), not
    /// what it runs.
    pub fn is_placement(&self) -> bool {
        self.grace == PLACEMENT_GRACE
    }
}

/// Container waiting reasons no operator can fix: the image or the pod's
/// own configuration is missing. Without a registry they never clear.
const IMAGE_OR_CONFIG: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
];
/// How long such a reason may show before the run ends.
const IMAGE_GRACE: std::time::Duration = std::time::Duration::from_secs(3);
/// Scheduling and mounting can fail for a moment while a volume is
/// provisioned; lasting this long, they are the cluster's problem.
const PLACEMENT_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// Notes (or clears) a pod's environment problem, keeping when it began.
fn note_problem(problems: &EnvProblems, pod: &str, problem: Option<(String, std::time::Duration)>) {
    let Ok(mut problems) = problems.lock() else {
        return;
    };
    match problem {
        None => {
            problems.remove(pod);
        }
        Some((what, grace)) => {
            let since = problems
                .get(pod)
                .map_or_else(std::time::Instant::now, |p| p.since);
            problems.insert(pod.to_string(), EnvProblem { what, since, grace });
        }
    }
}

/// The environment problem a pod's status shows, if any.
fn problem_of(pod: &Pod, container: &str) -> Option<(String, std::time::Duration)> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let status = pod.status.as_ref()?;
    let waiting = status
        .container_statuses
        .iter()
        .flatten()
        .filter(|c| c.name == container)
        .find_map(|c| c.state.as_ref()?.waiting.as_ref());
    if let Some(waiting) = waiting
        && let Some(reason) = waiting.reason.as_deref()
        && IMAGE_OR_CONFIG.contains(&reason)
    {
        return Some((
            format!(
                "pod {name}: {reason}: {}",
                waiting.message.as_deref().unwrap_or("")
            ),
            IMAGE_GRACE,
        ));
    }
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
        .map(|c| {
            (
                format!(
                    "pod {name}: Unschedulable: {}",
                    c.message.as_deref().unwrap_or("")
                ),
                PLACEMENT_GRACE,
            )
        })
}

/// Watches the run namespace's events for a pod's volume that cannot be
/// mounted; a pod whose container runs clears its problem.
pub fn watch_mount_failures(
    events: Api<k8s_openapi::api::core::v1::Event>,
    problems: EnvProblems,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut stream = watcher(events, watcher::Config::default()).boxed();
        while let Ok(Some(event)) = stream.try_next().await {
            let (watcher::Event::Apply(e) | watcher::Event::InitApply(e)) = event else {
                continue;
            };
            if e.reason.as_deref() != Some("FailedMount")
                || e.involved_object.kind.as_deref() != Some("Pod")
            {
                continue;
            }
            let Some(pod) = e.involved_object.name.as_deref() else {
                continue;
            };
            let what = format!(
                "pod {pod}: FailedMount: {}",
                e.message.as_deref().unwrap_or("").trim()
            );
            note_problem(
                &problems,
                &format!("{pod}/mount"),
                Some((what, PLACEMENT_GRACE)),
            );
        }
    })
}

/// Watches member pods; returns the task, which runs until aborted.
#[allow(clippy::too_many_arguments)]
pub fn watch_pods(
    pods: Api<Pod>,
    selector: String,
    container: String,
    recorder: Arc<Recorder>,
    views: PodViews,
    has_data: DataState,
    problems: EnvProblems,
    book: Arc<SlotBook>,
    engine: EngineKind,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let config = watcher::Config::default().labels(&selector);
        let mut stream = watcher(pods.clone(), config).boxed();
        let mut log_tasks: Vec<JoinHandle<()>> = Vec::new();
        while let Ok(Some(event)) = stream.try_next().await {
            let pod = match event {
                watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => pod,
                watcher::Event::Delete(pod) => {
                    // Kept, not removed: a pod recreated under the same name
                    // goes on counting starts from here.
                    if let Some(name) = pod.metadata.name.as_ref()
                        && let Ok(mut views) = views.lock()
                        && let Some(view) = views.get_mut(name)
                    {
                        view.running = false;
                        view.ready = false;
                        view.live = false;
                    }
                    continue;
                }
                watcher::Event::Init | watcher::Event::InitDone => continue,
            };
            let Some(name) = pod.metadata.name.clone() else {
                continue;
            };
            book.admit(&name);
            // What the pod's status shows follows every update; a mount
            // failure (an event) clears once the container runs.
            note_problem(
                &problems,
                &format!("{name}/status"),
                problem_of(&pod, &container),
            );
            let running = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|c| {
                    c.iter().any(|c| {
                        c.name == container && c.state.as_ref().is_some_and(|s| s.running.is_some())
                    })
                });
            if running {
                note_problem(&problems, &format!("{name}/mount"), None);
            }
            for step in observe_pod(&pod, &container, &views, &has_data) {
                match step {
                    Seen::Event(kind) => recorder.record(*kind),
                    Seen::FinishedInstance { previous } => {
                        parse_finished_logs(&pods, &name, &container, previous, &recorder, engine)
                            .await;
                    }
                    Seen::RunningInstance => log_tasks.push(follow_logs(
                        pods.clone(),
                        name.clone(),
                        container.clone(),
                        recorder.clone(),
                        engine,
                    )),
                }
            }
        }
        for task in log_tasks {
            task.abort();
        }
    })
}

/// What one pod update showed, in the order it happened.
enum Seen {
    Event(Box<EventKind>),
    /// An instance that ran and exited between two updates: its log is read
    /// whole, before its exit is recorded.
    FinishedInstance {
        previous: bool,
    },
    /// A running instance whose log is followed.
    RunningInstance,
}

/// Compares a pod update with what was seen before: container instances
/// that started, exited, or did both unseen (a crash within milliseconds).
fn observe_pod(pod: &Pod, container: &str, views: &PodViews, has_data: &DataState) -> Vec<Seen> {
    let mut seen = Vec::new();
    let (Some(name), Some(status)) = (pod.metadata.name.clone(), pod.status.as_ref()) else {
        return seen;
    };
    let Some(container_status) = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == container)
    else {
        return seen;
    };
    let state = container_status.state.as_ref();
    let running_since = state
        .and_then(|s| s.running.as_ref())
        .and_then(|r| r.started_at.as_ref())
        .map(|t| t.0.to_string());
    let current_terminated = state.and_then(|s| s.terminated.as_ref());
    let terminated = current_terminated.or_else(|| {
        container_status
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
    });
    let Ok(mut views) = views.lock() else {
        return seen;
    };
    let view = views.entry(name.clone()).or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if view.uid != uid {
        // A new pod under the same name: its instances are all new.
        *view = PodView {
            uid,
            incarnation: view.incarnation,
            ..PodView::default()
        };
    }
    let spec_container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == container));
    let start_event = |slot: &str| {
        let mut args: Vec<String> = spec_container
            .and_then(|c| c.command.clone())
            .unwrap_or_default();
        args.extend(
            spec_container
                .and_then(|c| c.args.clone())
                .unwrap_or_default(),
        );
        let had_data = has_data
            .lock()
            .ok()
            .and_then(|d| d.get(slot).copied())
            .unwrap_or(false);
        // Any later start of this slot finds the data this one writes.
        if let Ok(mut data) = has_data.lock() {
            data.insert(slot.to_string(), true);
        }
        EventKind::ProcessStarted {
            slot: slot.to_string(),
            pid: 0,
            command: spec_container
                .and_then(|c| c.image.clone())
                .unwrap_or_default(),
            args,
            had_data,
        }
    };
    if let Some(t) = terminated {
        let finished = t.finished_at.as_ref().map(|f| f.0.to_string());
        if finished.is_some() && finished != view.finished_at {
            let started = t.started_at.as_ref().map(|s| s.0.to_string());
            if started.is_some() && started != view.started_at {
                view.incarnation += 1;
                seen.push(Seen::Event(Box::new(start_event(&name))));
                seen.push(Seen::FinishedInstance {
                    previous: current_terminated.is_none(),
                });
            }
            seen.push(Seen::Event(Box::new(EventKind::ProcessExited {
                slot: name.clone(),
                code: Some(t.exit_code),
                signal: None,
            })));
            view.finished_at = finished;
            view.started_at = started;
        }
    }
    if running_since.is_some() && running_since != view.started_at {
        view.incarnation += 1;
        seen.push(Seen::Event(Box::new(start_event(&name))));
        seen.push(Seen::RunningInstance);
        view.started_at = running_since.clone();
    }
    view.running = running_since.is_some();
    view.ready = container_status.ready;
    let finished = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
    view.live = pod.metadata.deletion_timestamp.is_none() && !finished;
    seen
}

/// Parses the whole log of an instance that already exited.
async fn parse_finished_logs(
    pods: &Api<Pod>,
    pod: &str,
    container: &str,
    previous: bool,
    recorder: &Recorder,
    engine: EngineKind,
) {
    let params = LogParams {
        container: Some(container.to_string()),
        previous,
        ..LogParams::default()
    };
    if let Ok(text) = pods.logs(pod, &params).await {
        for line in text.lines() {
            engine.record_log_line(recorder, pod, line);
        }
    }
}

/// Streams one container instance's log through the engine's parser.
fn follow_logs(
    pods: Api<Pod>,
    pod: String,
    container: String,
    recorder: Arc<Recorder>,
    engine: EngineKind,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let params = LogParams {
            follow: true,
            container: Some(container),
            ..LogParams::default()
        };
        let Ok(stream) = pods.log_stream(&pod, &params).await else {
            return;
        };
        let mut lines = stream.lines();
        while let Some(Ok(line)) = lines.next().await {
            engine.record_log_line(&recorder, &pod, &line);
        }
    })
}

/// A local TCP port that forwards each connection to a pod's port through
/// the API server, so nothing of the cluster is exposed.
pub fn bridge(pods: Api<Pod>, pod: String, port: u16) -> std::io::Result<(u16, JoinHandle<()>)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let local_port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let pods = pods.clone();
            let pod = pod.clone();
            connections.spawn(async move {
                let Ok(mut forwarder) = pods.portforward(&pod, &[port]).await else {
                    return;
                };
                if let Some(mut upstream) = forwarder.take_stream(port) {
                    let _ = tokio::io::copy_bidirectional(&mut socket, &mut upstream).await;
                }
                forwarder.abort();
            });
        }
    });
    Ok((local_port, task))
}

/// A reported count: a number, or the length of a list of members, or of
/// a map keyed by member (tidb-operator v1's `.status.pd.members`).
fn count_of(value: &serde_json::Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_array().map(|list| list.len() as u64))
        .or_else(|| value.as_object().map(|map| map.len() as u64))
}

/// Watches the object where the operator reports the member count and
/// records every change of it.
pub fn watch_status(
    api: Api<kube::api::DynamicObject>,
    object: String,
    name: String,
    pointer: String,
    recorder: Arc<Recorder>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut stream = watcher(api, config).boxed();
        let mut last: Option<Option<u64>> = None;
        while let Ok(Some(event)) = stream.try_next().await {
            let (watcher::Event::Apply(found) | watcher::Event::InitApply(found)) = event else {
                continue;
            };
            let members = serde_json::to_value(&found)
                .ok()
                .and_then(|v| v.pointer(&pointer).and_then(count_of));
            if last != Some(members) {
                last = Some(members);
                recorder.record(EventKind::OperatorStatus {
                    object: object.clone(),
                    members,
                });
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::count_of;
    use serde_json::json;

    #[test]
    fn a_status_count_is_a_number_or_the_length_of_a_list_or_map() {
        assert_eq!(count_of(&json!(3)), Some(3));
        assert_eq!(count_of(&json!(["etcd-abc", "etcd-def"])), Some(2));
        assert_eq!(count_of(&json!([])), Some(0));
        assert_eq!(
            count_of(&json!({"etcd-pd-0": {"health": true}, "etcd-pd-1": {"health": false}})),
            Some(2)
        );
        assert_eq!(count_of(&json!("3")), None);
    }
}
