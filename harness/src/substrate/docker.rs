//! Members as containers, started with testcontainers, on a user-defined
//! network created per run: members reach each other by container DNS
//! name, as pods do through a headless service, and the harness reaches
//! each client port published on 127.0.0.1 only.
//!
//! Everything a run creates carries the label `raftcert.run=<run-id>`, so
//! [`gc`] can find what a killed run left behind.

use super::{RestartPolicy, SlotState, Substrate, SubstrateError};
use crate::engine::EngineKind;
use crate::engine::provision::EngineInstall;
use crate::faults::Op;
use crate::model::{ExitInfo, Phase, Spec};
use crate::trace::{EventKind, Recorder, SlotInfo};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use testcontainers::bollard::Docker;
use testcontainers::bollard::container::LogOutput;
use testcontainers::bollard::models::{
    EndpointSettings, NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest,
    VolumeCreateRequest,
};
use testcontainers::bollard::query_parameters::{
    AttachContainerOptions, InspectContainerOptions, KillContainerOptions, ListContainersOptions,
    ListNetworksOptions, ListVolumesOptions, LogsOptions, RemoveContainerOptions,
    RemoveImageOptions, RemoveVolumeOptions, WaitContainerOptions,
};
use testcontainers::core::{ContainerPort, Mount};
use testcontainers::runners::{AsyncBuilder, AsyncRunner};
use testcontainers::{ContainerAsync, GenericBuildableImage, GenericImage, ImageExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

pub const LABEL_RUN: &str = "raftcert.run";

/// A container's output from one start on.
type Output = std::pin::Pin<
    Box<
        dyn futures_util::Stream<Item = Result<LogOutput, testcontainers::bollard::errors::Error>>
            + Send,
    >,
>;
/// Marks engine images raftcert built; they are cached across runs.
pub const LABEL_CACHE: &str = "raftcert.cache";
/// Where the engine binary sits in images raftcert builds (etcd's where
/// the official etcd images have it).
pub fn engine_path(kind: EngineKind) -> &'static str {
    match kind {
        EngineKind::Etcd => "/usr/local/bin/etcd",
        EngineKind::Pd => "/usr/local/bin/pd-server",
    }
}
/// Where PD's config file with the raft timings sits in PD images.
pub const PD_CONFIG_PATH: &str = "/etc/raftcert/pd-timing.toml";
/// The slot's volume is mounted here; the engine keeps its data below.
const VOLUME_MOUNT: &str = "/var/lib/raftcert";
pub const MEMBER_DATA_DIR: &str = "/var/lib/raftcert/data";
const PEER_PORT: u16 = 2380;
const CLIENT_PORT: u16 = 2379;
const DOCKER_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE_SECS: i32 = 10;
/// Where a static busybox is looked for, for start scripts in members.
const BUSYBOX: &str = "/bin/busybox";

fn docker_err(
    what: impl std::fmt::Display,
) -> impl FnOnce(testcontainers::bollard::errors::Error) -> SubstrateError {
    move |e| SubstrateError::Docker(format!("{what}: {e}"))
}

/// A removal that found nothing to remove (404), or one already under way
/// (409): another cleanup of the same run got there first.
fn gone_already(
    e: testcontainers::bollard::errors::Error,
) -> Result<(), testcontainers::bollard::errors::Error> {
    use testcontainers::bollard::errors::Error;
    match e {
        Error::DockerResponseServerError {
            status_code: 404 | 409,
            ..
        } => Ok(()),
        other => Err(other),
    }
}

/// A run's tasks go on for a moment after Ctrl-C: nothing new may start
/// once the cleanup has begun, or it would outlive it.
fn refuse_after_interrupt() -> Result<(), SubstrateError> {
    if crate::sys::reaper::is_closed() {
        return Err(SubstrateError::Docker(
            "interrupted: nothing new may start".into(),
        ));
    }
    Ok(())
}

/// Connects to the engine that `DOCKER_HOST` or the default socket names.
pub async fn connect() -> Result<Docker, SubstrateError> {
    let docker =
        Docker::connect_with_defaults().map_err(|e| SubstrateError::NoDocker(format!("{e}")))?;
    match tokio::time::timeout(Duration::from_secs(5), docker.ping()).await {
        Ok(Ok(_)) => Ok(docker),
        Ok(Err(e)) => Err(SubstrateError::NoDocker(e.to_string())),
        Err(_) => Err(SubstrateError::NoDocker(
            "no answer to ping within 5 s".into(),
        )),
    }
}

/// The image a run uses: the user's choice, or one raftcert builds from the
/// engine binary it provisioned (`FROM scratch`, the binary and the shared
/// libraries it links, plus a static busybox for start scripts).
pub async fn ensure_engine_image(
    docker: &Docker,
    install: &EngineInstall,
    chosen: Option<&str>,
) -> Result<String, SubstrateError> {
    if let Some(image) = chosen {
        if docker.inspect_image(image).await.is_ok() {
            return Ok(image.to_string());
        }
        return pull(docker, image).await.map(|()| image.to_string());
    }
    let busybox = Path::new(BUSYBOX);
    if !is_static(busybox) {
        return Err(SubstrateError::Docker(format!(
            "member images need a static busybox at {BUSYBOX}, for start scripts: install Debian's busybox-static"
        )));
    }
    let mut files: Vec<(PathBuf, String)> = vec![
        (
            install.server.clone(),
            engine_path(install.kind).to_string(),
        ),
        (busybox.to_path_buf(), "/bin/busybox".to_string()),
    ];
    // Lives until the image is built.
    let scratch =
        crate::sys::TempDir::new("raftcert-image").map_err(|source| SubstrateError::Io {
            what: "creating",
            path: std::env::temp_dir(),
            source,
        })?;
    if install.kind == EngineKind::Pd {
        let config = scratch.path().join("pd-timing.toml");
        std::fs::write(&config, crate::engine::pd::timing_config()).map_err(|source| {
            SubstrateError::Io {
                what: "writing",
                path: config.clone(),
                source,
            }
        })?;
        files.push((config, PD_CONFIG_PATH.to_string()));
    }
    for lib in shared_libraries(&install.server)? {
        let target = lib.display().to_string();
        files.push((lib, target));
    }
    let mut hasher = Sha256::new();
    hasher.update(DOCKERFILE.as_bytes());
    for (path, target) in &files {
        let bytes = std::fs::read(path).map_err(|source| SubstrateError::Io {
            what: "reading",
            path: path.clone(),
            source,
        })?;
        hasher.update(target.as_bytes());
        hasher.update(&bytes);
    }
    let digest = format!("{:x}", hasher.finalize());
    let tag = format!("{}-{}", install.version, &digest[..12]);
    let name = format!("raftcert-{}", install.kind);
    let image = format!("{name}:{tag}");
    if docker.inspect_image(&image).await.is_ok() {
        return Ok(image);
    }
    let mut build =
        GenericBuildableImage::new(name.as_str(), tag.as_str()).with_dockerfile_string(DOCKERFILE);
    for (path, target) in files {
        build = build.with_file(path, format!("rootfs{target}"));
    }
    let _built = tokio::time::timeout(DOCKER_TIMEOUT, build.build_image())
        .await
        .map_err(|_| SubstrateError::Docker(format!("building {image}: timed out")))?
        .map_err(|e| SubstrateError::Docker(format!("building {image}: {e}")))?;
    Ok(image)
}

/// Pulls a missing image, within a deadline: where no registry is
/// reachable this fails at once, and it never hangs a run.
async fn pull(docker: &Docker, image: &str) -> Result<(), SubstrateError> {
    let missing = |reason: String| SubstrateError::MissingImage {
        image: image.to_string(),
        reason,
    };
    let (repo, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    let options = testcontainers::bollard::query_parameters::CreateImageOptions {
        from_image: Some(repo.to_string()),
        tag: Some(tag.to_string()),
        ..Default::default()
    };
    let pulling = async {
        let mut progress = docker.create_image(Some(options), None, None);
        while let Some(step) = progress.next().await {
            step.map_err(|e| missing(format!("pull failed: {e}")))?;
        }
        Ok(())
    };
    tokio::time::timeout(DOCKER_TIMEOUT * 5, pulling)
        .await
        .map_err(|_| missing("pull timed out".into()))?
}

/// Members run the engine or a start script; `busybox --install` gives the
/// script a shell and wget.
const DOCKERFILE: &str = "FROM scratch
COPY rootfs/ /
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]
LABEL raftcert.cache=engine-image
ENTRYPOINT [\"/usr/local/bin/etcd\"]
";

/// Whether `path` exists and is a static executable (`ldd` says "not a
/// dynamic executable", on stderr).
pub fn is_static(path: &Path) -> bool {
    path.exists()
        && std::process::Command::new("ldd")
            .arg(path)
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stderr).contains("not a dynamic"))
}

/// Absolute paths of the shared libraries `binary` loads (`ldd`), empty for
/// a static binary.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, SubstrateError> {
    if is_static(binary) {
        return Ok(Vec::new());
    }
    let out = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|source| SubstrateError::Io {
            what: "running ldd on",
            path: binary.to_path_buf(),
            source,
        })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// Host ports handed out in this process, so concurrent runs do not race.
static PORTS_IN_USE: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A free port on 127.0.0.1 below the ephemeral range.
fn allocate_host_port(seed: u64) -> Result<u16, SubstrateError> {
    let mut x = seed;
    let mut used = PORTS_IN_USE.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..256 {
        x = crate::util::splitmix64(x);
        let port = 20000 + (x % 12000) as u16;
        if !used.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            used.insert(port);
            return Ok(port);
        }
    }
    Err(SubstrateError::Docker(
        "no free host port below 32000".into(),
    ))
}

fn release_host_port(port: u16) {
    PORTS_IN_USE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&port);
}

/// Runs created in this process and not yet cleaned, for Ctrl-C.
static LIVE_RUNS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Removes what the live runs of this process created; blocking, for the
/// Ctrl-C handler and for panics.
pub fn cleanup_live_runs_blocking() {
    let runs: Vec<String> = LIVE_RUNS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect();
    gc_blocking(runs);
}

/// Runs [`gc`] for `runs` from outside any async context (a signal
/// handler, `Drop`): on a thread of its own with its own runtime.
fn gc_blocking(runs: Vec<String>) {
    if runs.is_empty() {
        return;
    }
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            if let Ok(docker) = connect().await {
                for run in runs {
                    let _ = gc(&docker, Some(&run), false).await;
                }
            }
        });
    })
    .join();
}

/// What [`gc`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    pub images: Vec<String>,
}

impl GcReport {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
            && self.networks.is_empty()
            && self.volumes.is_empty()
            && self.images.is_empty()
    }
}

fn label_filter(run: Option<&str>) -> HashMap<String, Vec<String>> {
    let label = match run {
        Some(run) => format!("{LABEL_RUN}={run}"),
        None => LABEL_RUN.to_string(),
    };
    HashMap::from([("label".to_string(), vec![label])])
}

/// Removes the containers, networks and volumes of one run (or of every
/// run), and with `images` the engine images raftcert built.
pub async fn gc(
    docker: &Docker,
    run: Option<&str>,
    images: bool,
) -> Result<GcReport, SubstrateError> {
    let mut report = GcReport::default();
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(label_filter(run)),
            ..Default::default()
        }))
        .await
        .map_err(docker_err("listing containers"))?;
    for c in containers {
        let Some(id) = c.id else { continue };
        let name = c
            .names
            .and_then(|n| n.first().cloned())
            .unwrap_or_else(|| id.clone());
        docker
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
            .or_else(gone_already)
            .map_err(docker_err(format!("removing container {name}")))?;
        report
            .containers
            .push(name.trim_start_matches('/').to_string());
    }
    let networks = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(label_filter(run)),
        }))
        .await
        .map_err(docker_err("listing networks"))?;
    for n in networks {
        let Some(name) = n.name else { continue };
        docker
            .remove_network(&name)
            .await
            .or_else(gone_already)
            .map_err(docker_err(format!("removing network {name}")))?;
        report.networks.push(name);
    }
    let volumes = docker
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(label_filter(run)),
        }))
        .await
        .map_err(docker_err("listing volumes"))?;
    for v in volumes.volumes.unwrap_or_default() {
        docker
            .remove_volume(&v.name, Some(RemoveVolumeOptions { force: true }))
            .await
            .or_else(gone_already)
            .map_err(docker_err(format!("removing volume {}", v.name)))?;
        report.volumes.push(v.name);
    }
    if images {
        let filters = HashMap::from([("label".to_string(), vec![LABEL_CACHE.to_string()])]);
        let list = docker
            .list_images(Some(
                testcontainers::bollard::query_parameters::ListImagesOptions {
                    filters: Some(filters),
                    ..Default::default()
                },
            ))
            .await
            .map_err(docker_err("listing images"))?;
        for image in list {
            for tag in image.repo_tags {
                docker
                    .remove_image(&tag, Some(RemoveImageOptions::default()), None)
                    .await
                    .map_err(docker_err(format!("removing image {tag}")))?;
                report.images.push(tag);
            }
        }
    }
    Ok(report)
}

struct Slot {
    state: SlotState,
    container_name: String,
    volume: String,
    host_port: u16,
    container: Option<ContainerAsync<GenericImage>>,
    exit: Option<watch::Receiver<Option<ExitInfo>>>,
    restart: RestartPolicy,
    disconnected: bool,
    /// Frozen with SIGSTOP because the engine could not pause (a cgroup v1
    /// freezer that refuses, as on this project's machines).
    stopped_by_signal: bool,
}

/// Routes added to cut traffic, per container: (pid, blackholed address).
type Cut = (u32, String);

pub struct DockerSubstrate {
    docker: Docker,
    recorder: Recorder,
    /// Whose log format the members write.
    engine: EngineKind,
    run_label: String,
    network: String,
    gateway: String,
    image: String,
    logs_dir: PathBuf,
    tls_dir: Option<PathBuf>,
    slots: Vec<Slot>,
    cuts: Vec<Cut>,
    shut_down: bool,
}

/// What one run asks of the backend.
pub struct DockerRunConfig {
    /// Unique among the engine's live runs; names derive from it.
    pub run_label: String,
    pub engine: EngineKind,
    pub replicas: u32,
    pub tls: bool,
    pub image: String,
    pub logs_dir: PathBuf,
    pub seed: u64,
}

/// Addresses of one run's slots, before any member starts.
pub struct DockerLayout {
    pub slots: Vec<SlotInfo>,
    /// Container name per slot: its DNS name on the run's network.
    pub hosts: Vec<String>,
    /// An address on the run's network that members reach and the host
    /// can bind: the network's gateway.
    pub service_ip: String,
}

impl DockerSubstrate {
    /// Creates the run's network and volumes.
    pub async fn create(
        docker: Docker,
        recorder: Recorder,
        config: DockerRunConfig,
    ) -> Result<(Self, DockerLayout), SubstrateError> {
        let DockerRunConfig {
            run_label,
            engine,
            replicas,
            tls,
            image,
            logs_dir,
            seed,
        } = config;
        let run_label = run_label.as_str();
        let logs_dir = logs_dir.as_path();
        refuse_after_interrupt()?;
        std::fs::create_dir_all(logs_dir).map_err(|source| SubstrateError::Io {
            what: "creating",
            path: logs_dir.to_path_buf(),
            source,
        })?;
        crate::sys::reaper::register_hook("docker", cleanup_live_runs_blocking);
        LIVE_RUNS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(run_label.to_string());
        let labels = HashMap::from([(LABEL_RUN.to_string(), run_label.to_string())]);
        let network = format!("rc-{run_label}");
        docker
            .create_network(NetworkCreateRequest {
                name: network.clone(),
                driver: Some("bridge".into()),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await
            .map_err(docker_err(format!("creating network {network}")))?;
        let mut backend = DockerSubstrate {
            docker: docker.clone(),
            recorder,
            engine,
            run_label: run_label.to_string(),
            network: network.clone(),
            gateway: String::new(),
            image,
            logs_dir: logs_dir.to_path_buf(),
            tls_dir: None,
            slots: Vec::new(),
            cuts: Vec::new(),
            shut_down: false,
        };
        let inspected = docker
            .inspect_network(&network, None)
            .await
            .map_err(docker_err(format!("inspecting network {network}")))?;
        backend.gateway = inspected
            .ipam
            .and_then(|i| i.config)
            .and_then(|c| c.into_iter().find_map(|c| c.gateway))
            .ok_or_else(|| SubstrateError::Docker(format!("network {network} has no gateway")))?;
        let scheme = if tls { "https" } else { "http" };
        let mut layout = DockerLayout {
            slots: Vec::new(),
            hosts: Vec::new(),
            service_ip: backend.gateway.clone(),
        };
        let mut x = seed;
        for ordinal in 0..replicas {
            let name = format!("m{ordinal}");
            let host = format!("rc-{run_label}-{name}");
            x = crate::util::splitmix64(x);
            let host_port = allocate_host_port(x)?;
            let volume = host.clone();
            let info = SlotInfo {
                name: name.clone(),
                ordinal,
                peer_url: format!("{scheme}://{host}:{PEER_PORT}"),
                client_url: format!("{scheme}://{host}:{CLIENT_PORT}"),
            };
            let observe_url = format!("{scheme}://127.0.0.1:{host_port}");
            layout.slots.push(info.clone());
            layout.hosts.push(host.clone());
            backend.slots.push(Slot {
                state: SlotState {
                    info,
                    data_dir: PathBuf::new(),
                    member_data_dir: MEMBER_DATA_DIR.to_string(),
                    listen_peer_url: format!("{scheme}://0.0.0.0:{PEER_PORT}"),
                    listen_client_url: format!("{scheme}://0.0.0.0:{CLIENT_PORT}"),
                    observe_url,
                    phase: Phase::Empty,
                    ready: false,
                    restarts: 0,
                    last_exit: None,
                    spec: None,
                    incarnation: 0,
                },
                container_name: host,
                volume,
                host_port,
                container: None,
                exit: None,
                restart: RestartPolicy::new(),
                disconnected: false,
                stopped_by_signal: false,
            });
        }
        for idx in 0..backend.slots.len() {
            backend.create_volume(idx).await?;
        }
        Ok((backend, layout))
    }

    /// TLS files live on the host; members see them at the same path.
    pub fn set_tls_dir(&mut self, dir: &Path) {
        self.tls_dir = Some(dir.to_path_buf());
    }

    async fn create_volume(&mut self, idx: usize) -> Result<(), SubstrateError> {
        let name = self.slots[idx].volume.clone();
        let volume = self
            .docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.clone()),
                labels: Some(HashMap::from([(
                    LABEL_RUN.to_string(),
                    self.run_label.clone(),
                )])),
                ..Default::default()
            })
            .await
            .map_err(docker_err(format!("creating volume {name}")))?;
        // has_data reads the volume on the host, as the process backend
        // reads its data directory: the engine must be local.
        self.slots[idx].state.data_dir = PathBuf::from(volume.mountpoint).join("data");
        Ok(())
    }

    fn index(&self, name: &str) -> Result<usize, SubstrateError> {
        self.slots
            .iter()
            .position(|s| s.state.info.name == name)
            .ok_or_else(|| SubstrateError::UnknownSlot(name.to_string()))
    }

    /// Creates and starts a fresh container for the slot's spec.
    async fn create_container(&mut self, idx: usize) -> Result<(), SubstrateError> {
        refuse_after_interrupt()?;
        let Some(spec) = self.slots[idx].state.spec.clone() else {
            return Ok(());
        };
        let (repo, tag) = self
            .image
            .rsplit_once(':')
            .map(|(r, t)| (r.to_string(), t.to_string()))
            .unwrap_or_else(|| (self.image.clone(), "latest".to_string()));
        let slot = &self.slots[idx];
        let host_port = slot.host_port;
        let mut request = GenericImage::new(repo, tag)
            .with_entrypoint(&spec.command)
            .with_exposed_port(ContainerPort::Tcp(CLIENT_PORT))
            .with_cmd(spec.args.clone())
            .with_container_name(slot.container_name.clone())
            .with_network(self.network.clone())
            .with_label(LABEL_RUN, self.run_label.clone())
            .with_label("raftcert.slot", slot.state.info.name.clone())
            .with_mount(Mount::volume_mount(slot.volume.clone(), VOLUME_MOUNT))
            .with_mapped_port(host_port, ContainerPort::Tcp(CLIENT_PORT))
            .with_startup_timeout(DOCKER_TIMEOUT)
            .with_host_config_modifier(move |hc| {
                // Published on loopback only.
                if let Some(bindings) = hc.port_bindings.as_mut() {
                    for binding in bindings.values_mut().flatten().flatten() {
                        binding.host_ip = Some("127.0.0.1".into());
                    }
                }
            });
        for (k, v) in &spec.env {
            request = request.with_env_var(k.clone(), v.clone());
        }
        if let Some(dir) = &self.tls_dir {
            let path = dir.display().to_string();
            request = request.with_mount(
                Mount::bind_mount(path.clone(), path)
                    .with_access_mode(testcontainers::core::AccessMode::ReadOnly),
            );
        }
        let container = request.start().await.map_err(|e| {
            SubstrateError::Docker(format!("starting {}: {e}", self.slots[idx].container_name))
        })?;
        self.slots[idx].container = Some(container);
        // A new container: its whole log is this start's output.
        let output: Output = Box::pin(self.docker.logs(
            &self.slots[idx].container_name,
            Some(LogsOptions {
                follow: true,
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        ));
        self.after_start(idx, output).await
    }

    /// Records the start and follows the container's output until it exits.
    async fn after_start(&mut self, idx: usize, mut output: Output) -> Result<(), SubstrateError> {
        let name = self.slots[idx].state.info.name.clone();
        let container = self.slots[idx].container_name.clone();
        let inspected = self
            .docker
            .inspect_container(&container, None::<InspectContainerOptions>)
            .await
            .map_err(docker_err(format!("inspecting {container}")))?;
        let state = inspected.state.unwrap_or_default();
        let pid = state.pid.unwrap_or(0).max(0) as u32;
        let had_data = self.has_data(&self.slots[idx].state);
        let slot = &mut self.slots[idx];
        let spec = slot.state.spec.clone().unwrap_or(Spec {
            command: String::new(),
            args: Vec::new(),
            env: Default::default(),
        });
        slot.state.incarnation += 1;
        slot.state.phase = Phase::Running;
        slot.restart.started();
        self.recorder.record(EventKind::ProcessStarted {
            slot: name.clone(),
            pid,
            command: spec.command.clone(),
            args: spec.args.clone(),
            had_data,
        });
        let (tx, rx) = watch::channel(None);
        slot.exit = Some(rx);
        let incarnation = slot.state.incarnation;
        let docker = self.docker.clone();
        let recorder = self.recorder.clone();
        let engine = self.engine;
        let log_path = self.logs_dir.join(format!("{name}.log"));
        tokio::spawn(async move {
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .await
                .ok();
            if let Some(f) = file.as_mut() {
                let header = format!(
                    "=== raftcert: {name} incarnation {incarnation} container {container}\n"
                );
                let _ = f.write_all(header.as_bytes()).await;
            }
            let mut pending = String::new();
            while let Some(Ok(chunk)) = output.next().await {
                pending.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                while let Some(end) = pending.find('\n') {
                    let raw: String = pending.drain(..=end).collect();
                    let line = raw.trim_end_matches(['\n', '\r']);
                    if let Some(f) = file.as_mut() {
                        let _ = f.write_all(line.as_bytes()).await;
                        let _ = f.write_all(b"\n").await;
                    }
                    engine.record_log_line(&recorder, &name, line);
                }
            }
            let mut wait = docker.wait_container(
                &container,
                Some(WaitContainerOptions {
                    condition: "not-running".into(),
                }),
            );
            let code = match wait.next().await {
                Some(Ok(r)) => Some(r.status_code),
                // A non-zero exit comes back as an error carrying the code.
                Some(Err(testcontainers::bollard::errors::Error::DockerContainerWaitError {
                    code,
                    ..
                })) => Some(code),
                _ => None,
            };
            let info = exit_info(code);
            if let Some(f) = file.as_mut() {
                let _ = f.flush().await;
            }
            recorder.record(EventKind::ProcessExited {
                slot: name.clone(),
                code: info.code,
                signal: info.signal,
            });
            let _ = tx.send(Some(info));
        });
        Ok(())
    }

    /// Starts the slot's existing container again (the kubelet restarting
    /// a container of the same pod).
    async fn restart_container(&mut self, idx: usize) -> Result<(), SubstrateError> {
        refuse_after_interrupt()?;
        let Some(container) = self.slots[idx].container.as_ref() else {
            return self.create_container(idx).await;
        };
        // Attached before the start, as `docker start -a` does, the stream
        // holds this start's output and nothing of the previous one.
        let name = self.slots[idx].container_name.clone();
        let attached = self
            .docker
            .attach_container(
                &name,
                Some(AttachContainerOptions {
                    stream: true,
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(docker_err(format!("attaching to {name}")))?;
        container
            .start()
            .await
            .map_err(|e| SubstrateError::Docker(format!("restarting {name}: {e}")))?;
        self.after_start(idx, attached.output).await
    }

    async fn wait_exit(&mut self, idx: usize, timeout: Duration) -> bool {
        let Some(mut rx) = self.slots[idx].exit.clone() else {
            return true;
        };
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|v| v.is_some())).await,
            Ok(Ok(_))
        )
    }

    fn collect_exit(&mut self, idx: usize) -> bool {
        let slot = &mut self.slots[idx];
        let exited = slot.exit.as_ref().and_then(|rx| rx.borrow().clone());
        match exited {
            Some(info) => {
                slot.state.last_exit = Some(info);
                slot.exit = None;
                true
            }
            None => false,
        }
    }

    async fn signal(&self, container: &str, signal: &str) -> Result<(), SubstrateError> {
        self.docker
            .kill_container(
                container,
                Some(KillContainerOptions {
                    signal: signal.into(),
                }),
            )
            .await
            .map_err(docker_err(format!("sending {signal} to {container}")))
    }

    /// Undoes a freeze, whichever way it was made.
    async fn unfreeze(&mut self, idx: usize) {
        if self.slots[idx].state.phase != Phase::Frozen {
            return;
        }
        let name = self.slots[idx].container_name.clone();
        if std::mem::take(&mut self.slots[idx].stopped_by_signal) {
            let _ = self.signal(&name, "SIGCONT").await;
        } else {
            let _ = self.docker.unpause_container(&name).await;
        }
    }

    async fn kill(&mut self, idx: usize) {
        self.unfreeze(idx).await;
        let name = self.slots[idx].container_name.clone();
        let _ = self
            .docker
            .kill_container(
                &name,
                Some(KillContainerOptions {
                    signal: "SIGKILL".into(),
                }),
            )
            .await;
    }

    /// Removes the slot's container (the pod), forcefully.
    async fn remove_container(&mut self, idx: usize) {
        if let Some(container) = self.slots[idx].container.take() {
            let name = self.slots[idx].container_name.clone();
            let _ = self
                .docker
                .remove_container(
                    &name,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await;
            // Already gone; keep testcontainers from removing it again.
            let _ = container.rm().await;
        }
        self.wait_exit(idx, DOCKER_TIMEOUT).await;
        self.collect_exit(idx);
        self.slots[idx].disconnected = false;
    }

    fn empty_slot(&mut self, idx: usize) {
        let slot = &mut self.slots[idx];
        slot.state.phase = Phase::Empty;
        slot.restart.cancel();
        let name = slot.state.info.name.clone();
        self.recorder.record(EventKind::SlotDeleted { slot: name });
    }

    async fn remove_volume(&mut self, idx: usize) -> Result<(), SubstrateError> {
        let volume = self.slots[idx].volume.clone();
        self.docker
            .remove_volume(&volume, Some(RemoveVolumeOptions { force: true }))
            .await
            .map_err(docker_err(format!("removing volume {volume}")))?;
        let name = self.slots[idx].state.info.name.clone();
        self.recorder.record(EventKind::DataWiped { slot: name });
        self.create_volume(idx).await
    }

    /// The container's main process and its address on the run's network;
    /// `None` when it is not running (it exited since it was listed).
    async fn pid_and_ip(&self, idx: usize) -> Result<Option<(u32, String)>, SubstrateError> {
        let name = &self.slots[idx].container_name;
        let inspected = self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(docker_err(format!("inspecting {name}")))?;
        let Some(pid) = inspected.state.and_then(|s| s.pid).filter(|p| *p > 0) else {
            return Ok(None);
        };
        let ip = inspected
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|n| n.get(&self.network).cloned())
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| {
                SubstrateError::Docker(format!("{name} has no address on {}", self.network))
            })?;
        Ok(Some((pid as u32, ip)))
    }

    /// Drops traffic between the two sides with blackhole routes in each
    /// member's network namespace (entered from the host with nsenter), so
    /// the harness still reaches every member through its published port.
    async fn cut(&mut self, sides: [Vec<usize>; 2]) -> Result<(), SubstrateError> {
        // A member whose process exits meanwhile (a PD refusing its join
        // exits at once) has no namespace left to cut: it is skipped, as
        // one that was not running.
        let mut ends = Vec::new();
        for side in &sides {
            let mut found = Vec::new();
            for &idx in side {
                if let Some(end) = self.pid_and_ip(idx).await? {
                    found.push(end);
                }
            }
            ends.push(found);
        }
        for (a, b) in [(0, 1), (1, 0)] {
            for (pid, _) in &ends[a] {
                for (_, ip) in &ends[b] {
                    match route(*pid, "add", ip) {
                        Ok(()) => self.cuts.push((*pid, ip.clone())),
                        // A process that has just exited may still be a
                        // zombie: its /proc entry stays, its namespaces go.
                        Err(e) if !Path::new(&format!("/proc/{pid}/ns/net")).exists() => {
                            tracing::info!("not cut, its process exited: {e}");
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }

    fn heal_routes(&mut self) {
        for (pid, ip) in std::mem::take(&mut self.cuts) {
            // The namespace may be gone with its container: nothing to undo.
            let _ = route(pid, "del", &ip);
        }
    }
}

/// `ip route <op> blackhole <ip>/32` inside the namespace of `pid`.
fn route(pid: u32, op: &str, ip: &str) -> Result<(), SubstrateError> {
    let out = std::process::Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "ip", "route", op, "blackhole"])
        .arg(format!("{ip}/32"))
        .output()
        .map_err(|e| {
            SubstrateError::Docker(format!(
                "running nsenter (util-linux) and ip (iproute2): {e}"
            ))
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(SubstrateError::Docker(format!(
            "ip route {op} blackhole {ip} in the namespace of pid {pid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Docker reports a signal death as 128 + signal.
fn exit_info(code: Option<i64>) -> ExitInfo {
    match code {
        Some(c) if (129..160).contains(&c) => ExitInfo {
            code: None,
            signal: Some((c - 128) as i32),
        },
        Some(c) => ExitInfo {
            code: Some(c as i32),
            signal: None,
        },
        None => ExitInfo {
            code: None,
            signal: Some(9),
        },
    }
}

impl Substrate for DockerSubstrate {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn slots(&self) -> Vec<SlotState> {
        self.slots
            .iter()
            .map(|s| s.state.ready_when_running())
            .collect()
    }

    fn has_data(&self, slot: &SlotState) -> bool {
        super::dir_has_data(&slot.data_dir)
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        for idx in 0..self.slots.len() {
            if self.collect_exit(idx) {
                let slot = &mut self.slots[idx];
                slot.restart.exited(&mut slot.state.phase, now);
            }
            if self.slots[idx]
                .restart
                .due(self.slots[idx].state.phase, now)
            {
                self.slots[idx].state.restarts += 1;
                if let Err(e) = self.restart_container(idx).await {
                    tracing::warn!("restart failed: {e}");
                    self.slots[idx].restart.retry_later(now);
                }
            }
        }
    }

    async fn start(&mut self, slot: &str, spec: Spec) -> Result<(), SubstrateError> {
        let idx = self.index(slot)?;
        self.slots[idx].state.expect_empty()?;
        // A new spec is a new pod: the old container, if any, goes.
        self.remove_container(idx).await;
        self.slots[idx].state.spec = Some(spec);
        self.slots[idx].restart.reset();
        self.create_container(idx).await
    }

    async fn stop(&mut self, slot: &str) -> Result<(), SubstrateError> {
        let idx = self.index(slot)?;
        self.unfreeze(idx).await;
        if let Some(c) = self.slots[idx].container.as_ref() {
            let _ = c.stop_with_timeout(Some(STOP_GRACE_SECS)).await;
        }
        self.slots[idx].state.phase = Phase::Empty;
        self.remove_container(idx).await;
        self.empty_slot(idx);
        Ok(())
    }

    async fn wipe(&mut self, slot: &str) -> Result<(), SubstrateError> {
        let idx = self.index(slot)?;
        self.slots[idx].state.expect_empty()?;
        self.remove_volume(idx).await
    }

    async fn apply(&mut self, op: &Op) -> Result<(), SubstrateError> {
        if let Op::Cut { isolated, rest } = op {
            let mut sides = [Vec::new(), Vec::new()];
            for (side, names) in sides.iter_mut().zip([isolated, rest]) {
                for name in names {
                    side.push(self.index(name)?);
                }
            }
            return self.cut(sides).await;
        }
        let idx = match op.slot() {
            Some(slot) => self.index(slot)?,
            None => 0,
        };
        let name = self.slots[idx].container_name.clone();
        match op {
            Op::Kill(_) => self.kill(idx).await,
            Op::Stop(_) => {
                self.unfreeze(idx).await;
                if let Some(c) = self.slots[idx].container.as_ref() {
                    let _ = c.stop_with_timeout(Some(STOP_GRACE_SECS)).await;
                }
            }
            Op::Freeze(_) => {
                if self.slots[idx].state.phase == Phase::Running {
                    if let Err(e) = self.docker.pause_container(&name).await {
                        // SIGSTOP from outside the container's namespace
                        // reaches its init too; same effect on the member.
                        tracing::warn!("pausing {name} failed ({e}); freezing with SIGSTOP");
                        self.signal(&name, "SIGSTOP").await?;
                        self.slots[idx].stopped_by_signal = true;
                    }
                    self.slots[idx].state.phase = Phase::Frozen;
                }
            }
            Op::Thaw(_) => {
                if self.slots[idx].state.phase == Phase::Frozen {
                    if std::mem::take(&mut self.slots[idx].stopped_by_signal) {
                        self.signal(&name, "SIGCONT").await?;
                    } else {
                        self.docker
                            .unpause_container(&name)
                            .await
                            .map_err(docker_err(format!("unpausing {name}")))?;
                    }
                    self.slots[idx].state.phase = Phase::Running;
                }
            }
            Op::DeletePod(_) => {
                self.slots[idx].state.phase = Phase::Empty;
                self.remove_container(idx).await;
                self.empty_slot(idx);
            }
            Op::LoseVolume(_) => {
                self.slots[idx].state.phase = Phase::Empty;
                self.remove_container(idx).await;
                self.empty_slot(idx);
                self.remove_volume(idx).await?;
            }
            Op::Disconnect(_) => {
                if !self.slots[idx].disconnected {
                    self.docker
                        .disconnect_network(
                            &self.network,
                            NetworkDisconnectRequest {
                                container: name.clone(),
                                force: Some(true),
                            },
                        )
                        .await
                        .map_err(docker_err(format!("disconnecting {name}")))?;
                    self.slots[idx].disconnected = true;
                }
            }
            Op::Reconnect(_) => {
                if self.slots[idx].disconnected {
                    self.docker
                        .connect_network(
                            &self.network,
                            NetworkConnectRequest {
                                container: name.clone(),
                                endpoint_config: Some(EndpointSettings::default()),
                            },
                        )
                        .await
                        .map_err(docker_err(format!("reconnecting {name}")))?;
                    self.slots[idx].disconnected = false;
                }
            }
            Op::Heal => self.heal_routes(),
            Op::Cut { .. } => {}
            Op::Delay { .. } | Op::Undelay { .. } | Op::Stall { .. } => {
                return Err(SubstrateError::Unsupported {
                    op: "delay",
                    substrate: "docker",
                });
            }
            Op::CrashSubject => {
                return Err(SubstrateError::Unsupported {
                    op: "crash-subject",
                    substrate: "docker",
                });
            }
            Op::StopNode(_) | Op::StartNode(_) | Op::DrainNode(_) | Op::UncordonNode(_) => {
                return Err(SubstrateError::Unsupported {
                    op: "a node fault",
                    substrate: "docker",
                });
            }
        }
        Ok(())
    }

    async fn shutdown(&mut self) {
        if self.shut_down {
            return;
        }
        self.shut_down = true;
        self.heal_routes();
        for idx in 0..self.slots.len() {
            self.slots[idx].state.phase = Phase::Empty;
            if let Some(c) = self.slots[idx].container.take() {
                let _ = c.rm().await;
            }
        }
        let _ = gc(&self.docker, Some(&self.run_label), false).await;
        for slot in &self.slots {
            release_host_port(slot.host_port);
        }
        LIVE_RUNS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.run_label);
    }
}

impl Drop for DockerSubstrate {
    fn drop(&mut self) {
        if self.shut_down {
            return;
        }
        // A panic or an aborted run: remove everything of this run now.
        for slot in &mut self.slots {
            // Containers go with the run's gc below, not testcontainers'
            // async drop, which may never run.
            if let Some(c) = slot.container.take() {
                std::mem::forget(c);
            }
            release_host_port(slot.host_port);
        }
        gc_blocking(vec![self.run_label.clone()]);
        LIVE_RUNS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.run_label);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removal_another_cleanup_made_counts_as_done() {
        use testcontainers::bollard::errors::Error;
        let answer = |status_code| Error::DockerResponseServerError {
            status_code,
            message: "from the engine".into(),
        };
        assert!(gone_already(answer(404)).is_ok());
        assert!(gone_already(answer(409)).is_ok());
        assert!(gone_already(answer(500)).is_err());
    }

    #[test]
    fn signal_exits_are_decoded() {
        assert_eq!(exit_info(Some(137)).signal, Some(9));
        assert_eq!(exit_info(Some(1)).code, Some(1));
        assert_eq!(exit_info(Some(0)).code, Some(0));
    }
}
