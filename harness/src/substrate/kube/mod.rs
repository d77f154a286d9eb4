//! Kubernetes substrate: members are pods of a real deployment (an
//! operator's, or plain manifests), observed through kube-rs watchers and
//! log streams into the same trace as the local substrates, and reached
//! through port-forwards by the same poller and workload. Each run gets a
//! namespace of its own.

pub(crate) mod api;
mod apply;
mod node_faults;
pub mod nodes;
mod observe;
pub mod profile;
mod slots;

use super::{SlotState, Substrate, SubstrateError};
use crate::faults::{Op, Primitive};
use crate::model::{Phase, Spec};
use crate::trace::{Recorder, SlotInfo};
use api::Removal;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, Config};
use node_faults::{NodeFaults, PlacementClock};
use nodes::{HeldFaults, HeldKind, NodeAccess};
use observe::{DataState, EnvProblems, PodViews};
use profile::{KubeFault, Profile};
use slots::SlotBook;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

pub use api::{delete_leftover_namespaces, install};

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
/// `~/.kube/config` when `path` is `None`), and the configuration it was
/// made from (the reaper makes its own client from it).
pub async fn connect(path: Option<&Path>) -> Result<(Client, Config), KubeError> {
    let config = match path {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| KubeError::Config(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(|e| KubeError::Config(e.to_string()))?
        }
        None => Config::infer()
            .await
            .map_err(|e| KubeError::Config(e.to_string()))?,
    };
    let client = Client::try_from(config.clone()).map_err(|e| KubeError::Config(e.to_string()))?;
    Ok((client, config))
}

/// The server's git version, for certificates.
pub async fn server_version(client: &Client) -> Result<String, KubeError> {
    Ok(client.apiserver_version().await?.git_version)
}

/// A cluster and the profile whose deployment runs on it.
pub struct KubeTarget {
    pub client: Client,
    pub config: Config,
    pub profile: Arc<Profile>,
    pub server: String,
    /// How faults below the API reach members, or why they cannot.
    pub nodes: Result<NodeAccess, String>,
    /// The nodes without the control-plane role, where node faults may act.
    pub workers: Vec<String>,
}

impl KubeTarget {
    /// Connects, reads the server's version and probes node access.
    pub async fn connect(
        kubeconfig: Option<&Path>,
        profile: Arc<Profile>,
    ) -> Result<KubeTarget, KubeError> {
        let (client, config) = connect(kubeconfig).await?;
        let server = server_version(&client).await?;
        let nodes = NodeAccess::probe(&client).await;
        let workers = NodeAccess::workers(&client).await?;
        Ok(KubeTarget {
            client,
            config,
            profile,
            server,
            nodes,
            workers,
        })
    }

    /// Whether the profile allows `primitive` and the cluster can host it.
    pub fn offers(&self, primitive: Primitive) -> Result<(), String> {
        let Some(fault) = KubeFault::for_primitive(primitive) else {
            return Err(format!("no way to {} on Kubernetes", primitive.name()));
        };
        if !self.profile.faults.contains(&fault) {
            return Err(format!(
                "profile {} does not allow {}",
                self.profile.name,
                fault.name()
            ));
        }
        if fault.acts_on_a_node() && self.workers.len() < MIN_WORKERS_FOR_NODE_FAULTS {
            return Err(format!(
                "{} needs at least {MIN_WORKERS_FOR_NODE_FAULTS} worker nodes (the cluster has {}), \
                 so that the other members run on while one node is away: kind-config/ci-1cp-3workers.yaml",
                fault.name(),
                self.workers.len()
            ));
        }
        match &self.nodes {
            Err(why) if fault.needs_nodes() => {
                Err(format!("{} needs access to the nodes: {why}", fault.name()))
            }
            _ => Ok(()),
        }
    }

    /// How many runs the cluster holds at once: one per allocatable CPU of
    /// its schedulable nodes (on kind, at most this machine's), plus one
    /// (runs mostly wait on reconcile ticks), at most
    /// [`MAX_PARALLEL_RUNS`]; 1 when the nodes say nothing.
    pub async fn parallel_runs(&self) -> Result<usize, KubeError> {
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
        let cpus: f64 = nodes
            .list(&Default::default())
            .await?
            .items
            .iter()
            .filter(|node| {
                !node
                    .spec
                    .as_ref()
                    .and_then(|s| s.unschedulable)
                    .unwrap_or(false)
            })
            .filter_map(|node| node.status.as_ref()?.allocatable.as_ref()?.get("cpu"))
            .filter_map(|quantity| cpu_cores(&quantity.0))
            .sum();
        // kind's nodes are containers of this machine: each reports all of
        // its CPUs, which they share.
        let cpus = match (&self.nodes, std::thread::available_parallelism()) {
            (Ok(_), Ok(host)) => cpus.min(host.get() as f64),
            _ => cpus,
        };
        Ok(runs_for_cpus(cpus))
    }

    /// Makes sure every node holds the profile's images before any run. On
    /// kind, what a node lacks is loaded from the local Docker engine (the
    /// images loaded are returned); elsewhere, or when the engine lacks one
    /// too, the error names what is missing where.
    pub async fn ensure_images(&self) -> Result<Vec<String>, KubeError> {
        let mut loaded = Vec::new();
        let mut missing = Vec::new();
        match &self.nodes {
            Ok(access) => {
                for image in &self.profile.images {
                    let lacking = access.nodes_without(image).await;
                    if lacking.is_empty() {
                        continue;
                    }
                    match access.load_image(image).await {
                        Ok(()) => loaded.push(image.clone()),
                        Err(why) => {
                            missing.push(format!("{image} on {} ({why})", lacking.join(", ")))
                        }
                    }
                }
            }
            Err(_) => {
                // The nodes' own image lists (the kubelet reports them).
                let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
                for node in nodes.list(&Default::default()).await?.items {
                    let held: Vec<String> = node
                        .status
                        .as_ref()
                        .and_then(|s| s.images.as_ref())
                        .into_iter()
                        .flatten()
                        .flat_map(|i| i.names.clone().unwrap_or_default())
                        .collect();
                    for image in &self.profile.images {
                        if !held.iter().any(|h| same_image(h, image)) {
                            missing.push(format!(
                                "{image} on node {}",
                                node.metadata.name.as_deref().unwrap_or("?")
                            ));
                        }
                    }
                }
            }
        }
        if missing.is_empty() {
            Ok(loaded)
        } else {
            Err(KubeError::Unsupported(format!(
                "the profile's images are missing: {}",
                missing.join("; ")
            )))
        }
    }

    /// How faults below the API reach members, in words, for certificates.
    pub fn node_faults(&self) -> String {
        match &self.nodes {
            Ok(access) => format!(
                "through the nodes of kind cluster {}: blackhole routes in the member pod's network namespace, SIGSTOP/SIGCONT to its container's processes; worker nodes stopped and started with docker ({} workers)",
                access.cluster,
                self.workers.len()
            ),
            Err(why) => format!("not available: {why}"),
        }
    }
}

/// Worker nodes a node fault needs: one to take away, and room elsewhere.
const MIN_WORKERS_FOR_NODE_FAULTS: usize = 2;

/// The most runs the cluster-capacity default allows at once.
pub const MAX_PARALLEL_RUNS: usize = 8;

fn runs_for_cpus(cpus: f64) -> usize {
    if cpus < 1.0 {
        return 1;
    }
    (cpus.floor() as usize + 1).min(MAX_PARALLEL_RUNS)
}

/// A CPU quantity in cores: `2`, `1500m`, `0.5`.
fn cpu_cores(quantity: &str) -> Option<f64> {
    match quantity.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok().map(|m| m / 1000.0),
        None => quantity.parse().ok(),
    }
}

/// Whether a node's image name is `image`: `raftcert/x:1` is listed as
/// `docker.io/raftcert/x:1`, and `etcd:3` as `docker.io/library/etcd:3`.
fn same_image(listed: &str, image: &str) -> bool {
    let qualified = |name: &str| -> String {
        let first = name.split('/').next().unwrap_or("");
        let has_registry = name.contains('/')
            && (first.contains('.') || first.contains(':') || first == "localhost");
        match (has_registry, name.contains('/')) {
            (true, _) => name.to_string(),
            (false, true) => format!("docker.io/{name}"),
            (false, false) => format!("docker.io/library/{name}"),
        }
    };
    qualified(listed) == qualified(image)
}

/// The name every run's deployment gets (`${NAME}` in the profile).
pub const DEPLOYMENT_NAME: &str = "etcd";

/// A profile template with a run's `${NAME}`, `${NAMESPACE}` and
/// `${REPLICAS}`.
pub fn fill_run(template: &str, namespace: &str, replicas: u32) -> String {
    profile::fill(
        template,
        &[
            ("NAME", DEPLOYMENT_NAME),
            ("NAMESPACE", namespace),
            ("REPLICAS", &replicas.to_string()),
        ],
    )
}

/// Namespaces of runs in progress, with the configuration to reach their
/// cluster, for an interrupted process to delete.
static LIVE_NAMESPACES: Mutex<Vec<(Config, String)>> = Mutex::new(Vec::new());

/// The reaper's hook: deletes the namespace of every run in progress, on a
/// thread and client of its own (the runs' runtime may be gone).
fn delete_live_namespaces_blocking() {
    let live: Vec<(Config, String)> = LIVE_NAMESPACES
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    if live.is_empty() {
        return;
    }
    block_on_a_thread_of_its_own(async {
        for (config, namespace) in live {
            let Ok(client) = Client::try_from(config) else {
                continue;
            };
            let namespaces: Api<Namespace> = Api::all(client);
            let deleted = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                namespaces.delete(&namespace, &DeleteParams::default()),
            )
            .await;
            if matches!(deleted, Ok(Ok(_))) {
                eprintln!("deleted namespace {namespace}");
            }
        }
    });
}

/// Runs `work` to its end on a new thread with a runtime of its own: the
/// reaper's hooks run when the runs' runtime may be gone.
fn block_on_a_thread_of_its_own(work: impl std::future::Future<Output = ()> + Send + 'static) {
    let working = std::thread::spawn(move || {
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            runtime.block_on(work);
        }
    });
    let _ = working.join();
}

/// One run's members on the cluster.
pub struct KubeSubstrate {
    target: Arc<KubeTarget>,
    namespace: String,
    recorder: Recorder,
    book: Arc<SlotBook>,
    views: PodViews,
    has_data: DataState,
    problems: EnvProblems,
    tasks: Vec<JoinHandle<()>>,
    held: HeldFaults,
    node_faults: NodeFaults,
    logs_dir: PathBuf,
    shut_down: bool,
}

impl KubeSubstrate {
    /// Creates the run's namespace and starts watching it.
    pub async fn create(
        target: Arc<KubeTarget>,
        run_id: &str,
        max_replicas: u32,
        recorder: Recorder,
        logs_dir: &Path,
    ) -> Result<KubeSubstrate, KubeError> {
        std::fs::create_dir_all(logs_dir).map_err(|source| KubeError::Io {
            what: logs_dir.display().to_string(),
            source,
        })?;
        let namespace = format!(
            "raftcert-{}",
            run_id
                .to_ascii_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect::<String>()
        );
        let profile = target.profile.clone();
        // Member logs go through the profile's engine's parser (PD's lines
        // are not etcd's).
        let engine = profile
            .engine_ref()
            .map_err(|e| KubeError::Unsupported(format!("profile {}: {e}", profile.name)))?
            .kind;
        let client = target.client.clone();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let recorder_arc = Arc::new(recorder.clone());
        let book = Arc::new(
            SlotBook::new(
                &profile,
                pods.clone(),
                DEPLOYMENT_NAME,
                &namespace,
                max_replicas,
                recorder_arc.clone(),
            )
            .map_err(|source| KubeError::Io {
                what: "port-forward listener".into(),
                source,
            })?,
        );
        crate::sys::reaper::register_hook("kube", delete_live_namespaces_blocking);
        crate::sys::reaper::register_hook(
            "kube-nodes",
            node_faults::release_live_node_changes_blocking,
        );
        if let Ok(mut live) = LIVE_NAMESPACES.lock() {
            live.push((target.config.clone(), namespace.clone()));
        }
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let mut ns = Namespace::default();
        ns.metadata.name = Some(namespace.clone());
        ns.metadata.labels = Some([(api::MANAGED_BY.0.into(), api::MANAGED_BY.1.into())].into());
        let views: PodViews = Arc::new(Mutex::new(BTreeMap::new()));
        let has_data: DataState = Arc::new(Mutex::new(BTreeMap::new()));
        let problems: EnvProblems = Arc::new(Mutex::new(BTreeMap::new()));
        let mut substrate = KubeSubstrate {
            target: target.clone(),
            namespace: namespace.clone(),
            recorder,
            book: book.clone(),
            views: views.clone(),
            has_data: has_data.clone(),
            problems: problems.clone(),
            tasks: Vec::new(),
            held: HeldFaults::default(),
            node_faults: NodeFaults::default(),
            logs_dir: logs_dir.to_path_buf(),
            shut_down: false,
        };
        // From here on, dropping the substrate deletes the namespace.
        namespaces.create(&PostParams::default(), &ns).await?;
        let selector = substrate.fill(&profile.members.selector, 0);
        substrate.tasks.push(observe::watch_pods(
            pods,
            selector,
            profile.members.container.clone(),
            recorder_arc.clone(),
            views,
            has_data,
            problems.clone(),
            book,
            engine,
        ));
        substrate.tasks.push(observe::watch_mount_failures(
            Api::namespaced(client.clone(), &namespace),
            problems,
        ));
        if let Some(status) = &profile.status {
            let resource = api::api_resource(&status.api_version, &status.kind)?;
            let name = substrate.fill(&status.name, 0);
            substrate.tasks.push(observe::watch_status(
                Api::namespaced_with(client, &namespace, &resource),
                format!("{}/{name}", status.kind),
                name,
                status.members.clone(),
                recorder_arc,
            ));
        }
        Ok(substrate)
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn target(&self) -> &Arc<KubeTarget> {
        &self.target
    }

    /// The slots known before the run: a StatefulSet's ordinals.
    pub fn initial_slots(&self) -> Vec<SlotInfo> {
        self.book.slots()
    }

    /// The profile's member fronts (Services), filled in for this run.
    pub fn member_fronts(&self) -> Vec<String> {
        let replicas = self.book.slots().len() as u32;
        self.target
            .profile
            .members
            .fronts
            .iter()
            .map(|front| self.fill(front, replicas))
            .collect()
    }

    fn fill(&self, template: &str, replicas: u32) -> String {
        fill_run(template, &self.namespace, replicas)
    }

    fn nodes(&self) -> Result<&NodeAccess, KubeError> {
        self.target
            .nodes
            .as_ref()
            .map_err(|why| KubeError::Unsupported(format!("no access to the nodes: {why}")))
    }

    async fn node_target(&self, pod: &str) -> Result<nodes::Target, KubeError> {
        let pods: Api<Pod> = Api::namespaced(self.target.client.clone(), &self.namespace);
        self.nodes()?
            .target(&pods, pod, &self.target.profile.members.container)
            .await
    }

    async fn remove(&self, pod: &str, how: Removal) -> Result<(), KubeError> {
        api::delete_member(
            &self.target.client,
            &self.namespace,
            pod,
            how,
            &self.has_data,
            &self.recorder,
        )
        .await
    }

    async fn apply_op(&mut self, op: &Op) -> Result<(), KubeError> {
        match op {
            Op::Kill(pod) => self.remove(pod, Removal::Immediate).await,
            Op::Stop(pod) | Op::DeletePod(pod) => self.remove(pod, Removal::Graceful).await,
            Op::LoseVolume(pod) => self.remove(pod, Removal::WithVolume).await,
            Op::Freeze(pod) | Op::Disconnect(pod) => {
                let kind = if matches!(op, Op::Freeze(_)) {
                    HeldKind::Freeze
                } else {
                    HeldKind::Disconnect
                };
                let target = self.node_target(pod).await?;
                let nodes = self.nodes()?.clone();
                self.held.hold_member(&nodes, kind, &target).await
            }
            Op::Thaw(pod) | Op::Reconnect(pod) => {
                let kind = if matches!(op, Op::Thaw(_)) {
                    HeldKind::Freeze
                } else {
                    HeldKind::Disconnect
                };
                let nodes = self.nodes()?.clone();
                self.held.undo(&nodes, kind, Some(pod)).await
            }
            Op::Cut { isolated, rest } => {
                let mut sides = [Vec::new(), Vec::new()];
                for (side, pods) in sides.iter_mut().zip([isolated, rest]) {
                    for pod in pods {
                        side.push(self.node_target(pod).await?);
                    }
                }
                let nodes = self.nodes()?.clone();
                self.held.cut(&nodes, &sides[0], &sides[1]).await
            }
            Op::Heal => {
                let nodes = self.nodes()?.clone();
                self.held.undo(&nodes, HeldKind::Cut, None).await
            }
            Op::CrashSubject => Err(KubeError::Unsupported(
                "the operator subject crashes itself".into(),
            )),
            Op::Delay { .. } | Op::Undelay { .. } => Err(KubeError::Unsupported(
                "link delay needs netem on the nodes".into(),
            )),
            Op::Stall { .. } => Err(KubeError::Unsupported(
                "a stall is armed by the driver".into(),
            )),
            Op::StopNode(pod) => {
                let pods: Api<Pod> = Api::namespaced(self.target.client.clone(), &self.namespace);
                self.node_faults.stop(&self.target, &pods, pod).await
            }
            Op::StartNode(pod) => self.node_faults.start(&self.target, pod).await,
            Op::DrainNode(pod) => {
                let pods: Api<Pod> = Api::namespaced(self.target.client.clone(), &self.namespace);
                self.node_faults.drain(&self.target, &pods, pod).await
            }
            Op::UncordonNode(pod) => self.node_faults.uncordon(&self.target, pod).await,
        }
    }

    /// Takes back every fault still held below the API.
    async fn release_all(&mut self) -> Result<(), KubeError> {
        let mut first_error = self.node_faults.release_all(&self.target).await.err();
        let Ok(nodes) = self.nodes().cloned() else {
            return first_error.map_or(Ok(()), Err);
        };
        for kind in [HeldKind::Freeze, HeldKind::Disconnect, HeldKind::Cut] {
            if let Err(e) = self.held.undo(&nodes, kind, None).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Substrate for KubeSubstrate {
    fn name(&self) -> &'static str {
        "kube"
    }

    fn slots(&self) -> Vec<SlotState> {
        let views = self.views.lock().map(|v| v.clone()).unwrap_or_default();
        let endpoints = self.book.endpoints();
        self.book
            .slots()
            .into_iter()
            .map(|info| {
                let view = views.get(&info.name);
                let phase = match view {
                    Some(v) if v.running => Phase::Running,
                    Some(v) if v.live => Phase::BackingOff,
                    _ => Phase::Empty,
                };
                let port = endpoints.get(&info.name).copied().unwrap_or(0);
                SlotState {
                    data_dir: PathBuf::new(),
                    member_data_dir: String::new(),
                    listen_peer_url: info.peer_url.clone(),
                    listen_client_url: info.client_url.clone(),
                    observe_url: format!("http://127.0.0.1:{port}"),
                    phase,
                    ready: view.is_some_and(|v| v.running && v.ready),
                    restarts: view.map_or(0, |v| v.incarnation.saturating_sub(1) as u32),
                    last_exit: None,
                    spec: None,
                    incarnation: view.map_or(0, |v| v.incarnation),
                    info,
                }
            })
            .collect()
    }

    /// The first `desired` slots of a StatefulSet, or, where the operator
    /// names its pods, the live member pods, oldest first.
    fn wanted(&self, desired: u32) -> Vec<SlotInfo> {
        let slots = self.book.slots();
        if !self.book.is_dynamic() {
            return slots.into_iter().filter(|s| s.ordinal < desired).collect();
        }
        let Ok(views) = self.views.lock() else {
            return Vec::new();
        };
        slots
            .into_iter()
            .filter(|s| views.get(&s.name).is_some_and(|v| v.live))
            .collect()
    }

    fn has_data(&self, slot: &SlotState) -> bool {
        self.has_data
            .lock()
            .ok()
            .and_then(|d| d.get(&slot.info.name).copied())
            .unwrap_or(false)
    }

    async fn tick(&mut self) {}

    async fn start(&mut self, _: &str, _: Spec) -> Result<(), SubstrateError> {
        Err(SubstrateError::Unsupported {
            op: "a deployer's start",
            substrate: "kube",
        })
    }

    async fn stop(&mut self, _: &str) -> Result<(), SubstrateError> {
        Err(SubstrateError::Unsupported {
            op: "a deployer's stop",
            substrate: "kube",
        })
    }

    async fn wipe(&mut self, _: &str) -> Result<(), SubstrateError> {
        Err(SubstrateError::Unsupported {
            op: "a deployer's wipe",
            substrate: "kube",
        })
    }

    async fn apply(&mut self, op: &Op) -> Result<(), SubstrateError> {
        Ok(self.apply_op(op).await?)
    }

    /// Only member pods count (an operator pod's trouble shows in what the
    /// operator fails to do), and a mount failure ends once its pod runs.
    fn environment_problem(&self) -> Option<String> {
        let running: Vec<String> = self
            .views
            .lock()
            .ok()?
            .iter()
            .filter(|(_, v)| v.running)
            .map(|(pod, _)| pod.clone())
            .collect();
        let problems = self.problems.lock().ok()?;
        // A node taken away leaves pods bound to it unschedulable.
        let placement_clock = self.node_faults.placement_clock();
        let lasted = |p: &observe::EnvProblem| match placement_clock {
            _ if !p.is_placement() => Some(p.since.elapsed()),
            PlacementClock::Paused => None,
            PlacementClock::Running { restarted_at } => {
                Some(restarted_at.map_or(p.since, |r| p.since.max(r)).elapsed())
            }
        };
        problems
            .iter()
            .filter(|(key, _)| {
                let (pod, source) = key.rsplit_once('/').unwrap_or((key.as_str(), ""));
                self.book.contains(pod) && !(source == "mount" && running.iter().any(|r| r == pod))
            })
            .map(|(_, p)| p)
            .find_map(|p| {
                lasted(p)
                    .filter(|lasted| *lasted >= p.grace)
                    .map(|l| (p, l))
            })
            .map(|(p, lasted)| {
                format!(
                    "{} (for {:.0}s; the cluster's, not the operator's)",
                    p.what,
                    lasted.as_secs_f64()
                )
            })
    }

    /// Takes back held faults, keeps the logs and events, and deletes the
    /// run's namespace.
    async fn shutdown(&mut self) {
        if std::mem::replace(&mut self.shut_down, true) {
            return;
        }
        if let Err(e) = self.release_all().await {
            tracing::warn!("taking faults back: {e}");
        }
        for task in self.tasks.drain(..) {
            task.abort();
        }
        self.book.close();
        let client = &self.target.client;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &self.namespace);
        let profile = &self.target.profile;
        api::save_logs(
            &pods,
            &self.book.slots(),
            &profile.members.container,
            &self.logs_dir,
        )
        .await;
        if let Some(operator) = &profile.operator {
            let home = profile::fill(&operator.namespace, &[("NAMESPACE", &self.namespace)]);
            api::save_operator_logs(client, &home, &operator.selector, &self.logs_dir).await;
        }
        api::save_events(client, &self.namespace, &self.logs_dir).await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let _ = namespaces
            .delete(&self.namespace, &DeleteParams::default())
            .await;
        if let Ok(mut live) = LIVE_NAMESPACES.lock() {
            live.retain(|(_, ns)| *ns != self.namespace);
        }
    }
}

impl Drop for KubeSubstrate {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // A run dropped mid-way (Ctrl-C, a panic) leaves its namespace to
        // the reaper's hook, which finds it in the live list; a node it
        // stopped or cordoned cannot wait that long (other runs need it).
        if !self.shut_down && self.node_faults.any_held() {
            node_faults::release_live_node_changes_blocking();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_PARALLEL_RUNS, cpu_cores, runs_for_cpus, same_image};

    #[test]
    fn the_cluster_holds_a_run_per_cpu_plus_one_within_bounds() {
        assert_eq!(cpu_cores("2"), Some(2.0));
        assert_eq!(cpu_cores("1500m"), Some(1.5));
        assert_eq!(cpu_cores("many"), None);
        assert_eq!(runs_for_cpus(0.0), 1);
        assert_eq!(runs_for_cpus(0.5), 1);
        assert_eq!(runs_for_cpus(2.0), 3);
        assert_eq!(runs_for_cpus(2.9), 3);
        assert_eq!(runs_for_cpus(64.0), MAX_PARALLEL_RUNS);
    }

    #[test]
    fn image_names_are_compared_fully_qualified() {
        assert!(same_image(
            "docker.io/raftcert/etcd-smoke:3.6.5",
            "raftcert/etcd-smoke:3.6.5"
        ));
        assert!(same_image("docker.io/library/etcd:3.5", "etcd:3.5"));
        assert!(same_image(
            "quay.io/coreos/etcd:v3",
            "quay.io/coreos/etcd:v3"
        ));
        assert!(!same_image(
            "docker.io/raftcert/etcd-smoke:3.6.4",
            "raftcert/etcd-smoke:3.6.5"
        ));
    }
}
