//! Members as local child processes, one loopback address per slot, each
//! behind raftcert's proxies ([`links`]) so the network between them can be
//! cut without root.

mod links;

use super::{RestartPolicy, SlotState, Substrate, SubstrateError};
use crate::engine::EngineKind;
use crate::faults::Op;
use crate::model::{ExitInfo, Phase, Spec};
use crate::sys::{HeldListener, reaper};
use crate::trace::{EventKind, Recorder, SlotInfo};
use links::{Links, Port};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::sync::watch;

/// The ports members advertise, served by raftcert's proxies.
pub const PEER_PORT: u16 = 2380;
pub const CLIENT_PORT: u16 = 2379;
/// Where members really listen, on the same address; nobody else uses them.
const LISTEN_PEER_PORT: u16 = 12380;
const LISTEN_CLIENT_PORT: u16 = 12379;

const GRACEFUL_TIMEOUT: Duration = Duration::from_secs(10);

/// Loopback addresses for one run: `127.a.b.1` for services the deployer
/// runs and `127.a.b.(10+ordinal)` for members.
#[derive(Debug, Clone)]
pub struct AddressPlan {
    pub prefix: String,
    /// Held until the run ends: no other run of this process gets the prefix.
    _lease: Arc<PrefixLease>,
}

/// Prefixes handed to runs of this process and not yet released. The port
/// probe alone let two concurrent runs pick the same prefix before either
/// bound it (seen once in CI: the discovery service's `Address already in
/// use`).
static LEASED_PREFIXES: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

#[derive(Debug)]
struct PrefixLease {
    prefix: String,
    /// The service address, listening from the probe on until the run
    /// ends or the deployer takes it: a probe that was only dropped left
    /// the address open until the discovery service bound it, and CI hit
    /// `Address already in use` there twice.
    service: HeldListener,
}

impl Drop for PrefixLease {
    fn drop(&mut self) {
        LEASED_PREFIXES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.prefix);
    }
}

impl AddressPlan {
    pub fn member_ip(&self, ordinal: u32) -> String {
        format!("{}.{}", self.prefix, 10 + ordinal)
    }
    pub fn service_ip(&self) -> String {
        format!("{}.1", self.prefix)
    }
    /// The service address's listener, held for the deployer.
    pub fn service_listener(&self) -> HeldListener {
        self._lease.service.clone()
    }

    /// Picks a random `127.a.b.0/24` that no run of this process holds and
    /// whose ports are free (the probe keeps off other processes' runs),
    /// and starts holding its service address.
    pub fn allocate(members: u32, seed: u64) -> Result<Self, SubstrateError> {
        let mut leased = LEASED_PREFIXES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut x = seed;
        for _ in 0..64 {
            x = crate::util::splitmix64(x);
            let a = 20 + (x % 230) as u8;
            let b = 1 + ((x >> 8) % 254) as u8;
            let prefix = format!("127.{a}.{b}");
            if leased.contains(&prefix) {
                continue;
            }
            let service = format!("{prefix}.1:{}", crate::model::SERVICE_PORT);
            let mut addrs = vec![service.clone()];
            for ord in 0..members {
                let ip = format!("{prefix}.{}", 10 + ord);
                for port in [PEER_PORT, CLIENT_PORT, LISTEN_PEER_PORT, LISTEN_CLIENT_PORT] {
                    addrs.push(format!("{ip}:{port}"));
                }
            }
            // The plain probe fails on any listener there, even another
            // raftcert's held service listener (SO_REUSEPORT).
            if !addrs.iter().all(|a| TcpListener::bind(a.as_str()).is_ok()) {
                continue;
            }
            let service_addr = service
                .parse()
                .map_err(|_| SubstrateError::NoAddresses(members))?;
            if let Ok(held) = HeldListener::listen(service_addr) {
                leased.insert(prefix.clone());
                // The lease is made only now: its drop takes the lock.
                return Ok(AddressPlan {
                    prefix: prefix.clone(),
                    _lease: Arc::new(PrefixLease {
                        prefix,
                        service: held,
                    }),
                });
            }
        }
        Err(SubstrateError::NoAddresses(members))
    }
}

struct Slot {
    state: SlotState,
    pgid: Option<i32>,
    exit: Option<watch::Receiver<Option<ExitInfo>>>,
    restart: RestartPolicy,
}

pub struct ProcessSubstrate {
    recorder: Recorder,
    /// Whose log format the members write.
    engine: EngineKind,
    logs_dir: PathBuf,
    slots: Vec<Slot>,
    /// The proxies in front of every member, and the faults they apply.
    links: Links,
    /// The run's loopback addresses, leased until the substrate is dropped.
    _addresses: AddressPlan,
}

impl ProcessSubstrate {
    /// `data_root` holds one data directory per slot; `logs_dir` one log
    /// file per slot. The proxies start listening at once.
    pub fn new(
        recorder: Recorder,
        engine: EngineKind,
        slots: Vec<SlotInfo>,
        plan: AddressPlan,
        data_root: &Path,
        logs_dir: &Path,
    ) -> Result<Self, SubstrateError> {
        std::fs::create_dir_all(logs_dir).map_err(|source| SubstrateError::Io {
            what: "creating",
            path: logs_dir.to_path_buf(),
            source,
        })?;
        let links = Links::new();
        let mut states = Vec::new();
        for info in slots {
            let ip = plan.member_ip(info.ordinal);
            let scheme = info.peer_url.split_once("://").map_or("http", |(s, _)| s);
            for (port, advertised, real) in [
                (Port::Peer, PEER_PORT, LISTEN_PEER_PORT),
                (Port::Client, CLIENT_PORT, LISTEN_CLIENT_PORT),
            ] {
                let at = |p: u16| -> Result<std::net::SocketAddr, SubstrateError> {
                    format!("{ip}:{p}")
                        .parse()
                        .map_err(|_| SubstrateError::NoAddresses(info.ordinal + 1))
                };
                links
                    .serve(&info.name, port, at(advertised)?, at(real)?, plan.clone())
                    .map_err(|source| SubstrateError::Io {
                        what: "listening on",
                        path: PathBuf::from(format!("{ip}:{advertised}")),
                        source,
                    })?;
            }
            let data_dir = data_root.join(&info.name);
            states.push(Slot {
                state: SlotState {
                    member_data_dir: data_dir.display().to_string(),
                    listen_peer_url: format!("{scheme}://{ip}:{LISTEN_PEER_PORT}"),
                    listen_client_url: format!("{scheme}://{ip}:{LISTEN_CLIENT_PORT}"),
                    observe_url: info.client_url.clone(),
                    info,
                    data_dir,
                    phase: Phase::Empty,
                    ready: false,
                    restarts: 0,
                    last_exit: None,
                    spec: None,
                    incarnation: 0,
                },
                pgid: None,
                exit: None,
                restart: RestartPolicy::new(),
            });
        }
        Ok(ProcessSubstrate {
            recorder,
            engine,
            logs_dir: logs_dir.to_path_buf(),
            slots: states,
            links,
            _addresses: plan,
        })
    }

    fn index(&self, name: &str) -> Result<usize, SubstrateError> {
        self.slots
            .iter()
            .position(|s| s.state.info.name == name)
            .ok_or_else(|| SubstrateError::UnknownSlot(name.to_string()))
    }

    fn spawn(&mut self, idx: usize) -> Result<(), SubstrateError> {
        let recorder = self.recorder.clone();
        let engine = self.engine;
        let log_path = self
            .logs_dir
            .join(format!("{}.log", self.slots[idx].state.info.name));
        let slot = &mut self.slots[idx];
        let Some(spec) = slot.state.spec.clone() else {
            return Ok(());
        };
        let name = slot.state.info.name.clone();
        if let Some(parent) = slot.state.data_dir.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let had_data = super::dir_has_data(&slot.state.data_dir);
        let mut cmd = tokio::process::Command::new(&spec.command);
        cmd.args(&spec.args)
            // Members get a clean environment, as in a container; etcd would
            // otherwise read any ETCD_* variable of ours.
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            )
            .envs(&spec.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // Die with the harness even if it is killed with SIGKILL.
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let handle = tokio::runtime::Handle::current();
        let spawned = crate::sys::spawner::on_spawner_thread(move || {
            reaper::start_group(
                || {
                    // tokio registers the child with this runtime's reaper.
                    let _guard = handle.enter();
                    cmd.spawn()
                },
                tokio::process::Child::id,
            )
        });
        let mut child = spawned.map_err(|source| SubstrateError::Spawn {
            slot: name.clone(),
            command: spec.command.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        let pgid = pid as i32;
        slot.pgid = Some(pgid);
        slot.state.incarnation += 1;
        slot.state.phase = Phase::Running;
        self.links.set_owner(&name, Some(pgid));
        slot.restart.started();
        recorder.record(EventKind::ProcessStarted {
            slot: name.clone(),
            pid,
            command: spec.command.clone(),
            args: spec.args.clone(),
            had_data,
        });
        let (tx, rx) = watch::channel(None);
        slot.exit = Some(rx);
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let incarnation = slot.state.incarnation;
        tokio::spawn(async move {
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .await
                .ok();
            let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            let readers: Vec<_> = [
                stdout.map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>),
                stderr.map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>),
            ]
            .into_iter()
            .flatten()
            .map(|stream| {
                let line_tx = line_tx.clone();
                tokio::spawn(async move {
                    let mut lines = BufReader::new(stream).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if line_tx.send(line).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
            drop(line_tx);
            let mut file = file;
            if let Some(f) = file.as_mut() {
                let header = format!("=== raftcert: {name} incarnation {incarnation} pid {pid}\n");
                let _ = f.write_all(header.as_bytes()).await;
            }
            // Lines are parsed and logged until every writer closed its end.
            while let Some(line) = line_rx.recv().await {
                if let Some(f) = file.as_mut() {
                    let _ = f.write_all(line.as_bytes()).await;
                    let _ = f.write_all(b"\n").await;
                }
                engine.record_log_line(&recorder, &name, &line);
            }
            for reader in readers {
                let _ = reader.await;
            }
            let status = child.wait().await.ok();
            let info = ExitInfo {
                code: status.and_then(|s| s.code()),
                signal: status.and_then(|s| s.signal()),
            };
            reaper::unregister_group(pgid);
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

    fn signal(&self, idx: usize, signal: Signal) {
        if let Some(pgid) = self.slots[idx].pgid {
            let _ = killpg(Pid::from_raw(pgid), signal);
        }
    }

    /// Waits until the current process of the slot has exited.
    async fn wait_exit(&mut self, idx: usize, timeout: Duration) -> bool {
        let Some(mut rx) = self.slots[idx].exit.clone() else {
            return true;
        };
        let waited = tokio::time::timeout(timeout, rx.wait_for(|v| v.is_some())).await;
        matches!(waited, Ok(Ok(_)))
    }

    /// Kills the process (SIGKILL, or SIGTERM first when graceful) and
    /// waits for it to be gone.
    async fn terminate(&mut self, idx: usize, graceful: bool) {
        if self.slots[idx].pgid.is_none() {
            return;
        }
        // A frozen process cannot handle SIGTERM.
        self.signal(idx, Signal::SIGCONT);
        if graceful {
            self.signal(idx, Signal::SIGTERM);
            if self.wait_exit(idx, GRACEFUL_TIMEOUT).await {
                self.collect_exit(idx);
                return;
            }
        }
        self.signal(idx, Signal::SIGKILL);
        self.wait_exit(idx, GRACEFUL_TIMEOUT).await;
        self.collect_exit(idx);
    }

    /// Moves a finished process's exit into the slot state.
    fn collect_exit(&mut self, idx: usize) -> bool {
        let slot = &mut self.slots[idx];
        let exited = slot.exit.as_ref().and_then(|rx| rx.borrow().clone());
        match exited {
            Some(info) => {
                slot.state.last_exit = Some(info);
                slot.exit = None;
                slot.pgid = None;
                self.links.set_owner(&slot.state.info.name, None);
                true
            }
            None => false,
        }
    }

    fn empty_slot(&mut self, idx: usize) {
        let slot = &mut self.slots[idx];
        slot.state.phase = Phase::Empty;
        slot.restart.cancel();
        let name = slot.state.info.name.clone();
        self.recorder.record(EventKind::SlotDeleted { slot: name });
    }

    fn wipe_dir(&mut self, idx: usize) -> Result<(), SubstrateError> {
        let dir = self.slots[idx].state.data_dir.clone();
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(SubstrateError::Io {
                    what: "wiping",
                    path: dir,
                    source,
                });
            }
        }
        let name = self.slots[idx].state.info.name.clone();
        self.recorder.record(EventKind::DataWiped { slot: name });
        Ok(())
    }
}

impl Substrate for ProcessSubstrate {
    fn name(&self) -> &'static str {
        "process"
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
            if self.slots[idx].pgid.is_some() && self.collect_exit(idx) {
                let slot = &mut self.slots[idx];
                slot.restart.exited(&mut slot.state.phase, now);
            }
            if self.slots[idx]
                .restart
                .due(self.slots[idx].state.phase, now)
            {
                self.slots[idx].state.restarts += 1;
                if let Err(e) = self.spawn(idx) {
                    tracing::warn!("restart failed: {e}");
                    self.slots[idx].restart.retry_later(now);
                }
            }
        }
    }

    async fn start(&mut self, slot: &str, spec: Spec) -> Result<(), SubstrateError> {
        let idx = self.index(slot)?;
        self.slots[idx].state.expect_empty()?;
        self.slots[idx].state.spec = Some(spec);
        self.slots[idx].restart.reset();
        self.spawn(idx)
    }

    async fn stop(&mut self, slot: &str) -> Result<(), SubstrateError> {
        let idx = self.index(slot)?;
        self.terminate(idx, true).await;
        self.empty_slot(idx);
        Ok(())
    }

    async fn wipe(&mut self, slot: &str) -> Result<(), SubstrateError> {
        let idx = self.index(slot)?;
        self.slots[idx].state.expect_empty()?;
        self.wipe_dir(idx)
    }

    async fn apply(&mut self, op: &Op) -> Result<(), SubstrateError> {
        let idx = match op.slot() {
            Some(slot) => self.index(slot)?,
            None => 0,
        };
        match op {
            Op::Kill(_) => self.signal(idx, Signal::SIGKILL),
            Op::Stop(_) => {
                // The restart policy brings it back, as for a container.
                self.signal(idx, Signal::SIGCONT);
                self.signal(idx, Signal::SIGTERM);
                if !self.wait_exit(idx, GRACEFUL_TIMEOUT).await {
                    self.signal(idx, Signal::SIGKILL);
                }
            }
            Op::Freeze(_) => {
                if self.slots[idx].state.phase == Phase::Running {
                    self.signal(idx, Signal::SIGSTOP);
                    self.slots[idx].state.phase = Phase::Frozen;
                }
            }
            Op::Thaw(_) => {
                if self.slots[idx].state.phase == Phase::Frozen {
                    self.signal(idx, Signal::SIGCONT);
                    self.slots[idx].state.phase = Phase::Running;
                }
            }
            Op::DeletePod(_) => {
                self.terminate(idx, false).await;
                self.empty_slot(idx);
            }
            Op::LoseVolume(_) => {
                self.terminate(idx, false).await;
                self.empty_slot(idx);
                self.wipe_dir(idx)?;
            }
            Op::Disconnect(slot) => self.links.disconnect(slot),
            Op::Reconnect(slot) => self.links.reconnect(slot),
            Op::Cut { isolated, rest } => self.links.cut(isolated, rest),
            Op::Heal => self.links.heal(),
            Op::Delay {
                slot,
                peers,
                latency,
                jitter,
            } => self.links.delay(slot, peers, *latency, *jitter),
            Op::Undelay { slot } => self.links.undelay(slot),
            Op::Stall { .. } => {
                return Err(SubstrateError::Unsupported {
                    op: "stall (the driver arms it)",
                    substrate: "process",
                });
            }
            Op::CrashSubject => {
                return Err(SubstrateError::Unsupported {
                    op: "crash-subject",
                    substrate: "process",
                });
            }
            Op::StopNode(_) | Op::StartNode(_) | Op::DrainNode(_) | Op::UncordonNode(_) => {
                return Err(SubstrateError::Unsupported {
                    op: "a node fault",
                    substrate: "process",
                });
            }
        }
        Ok(())
    }

    async fn shutdown(&mut self) {
        for idx in 0..self.slots.len() {
            self.slots[idx].state.phase = Phase::Empty;
            self.terminate(idx, false).await;
        }
        // Closed before the address lease goes with the substrate: the
        // next run given this prefix binds the same addresses.
        self.links.close().await;
    }
}

impl Drop for ProcessSubstrate {
    fn drop(&mut self) {
        // On a panic or an aborted run, nothing may outlive the substrate.
        let groups: Vec<i32> = self.slots.iter().filter_map(|s| s.pgid).collect();
        if !groups.is_empty() {
            reaper::kill_groups_and_wait(&groups);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AddressPlan;

    #[test]
    fn concurrent_runs_never_share_a_prefix_and_a_finished_run_frees_it() {
        // The same seed walks the same candidates: the second run must skip
        // the prefix the first one holds.
        let seed = 0x5eed_0001;
        let first = AddressPlan::allocate(3, seed).expect("first");
        let second = AddressPlan::allocate(3, seed).expect("second");
        assert_ne!(first.prefix, second.prefix);
        let freed = first.prefix.clone();
        drop(first);
        let third = AddressPlan::allocate(3, seed).expect("third");
        assert_eq!(third.prefix, freed);
    }

    /// From allocation on, the service address is taken for anyone but the
    /// run's own service (SO_REUSEPORT, as it rebinds after a crash), and
    /// the run's service gets the listener itself.
    #[test]
    fn the_service_address_is_held_from_allocation_and_handed_over_once() {
        let plan = AddressPlan::allocate(1, 0x5eed_0003).expect("plan");
        let service = format!("{}:{}", plan.service_ip(), crate::model::SERVICE_PORT);
        let probe = std::net::TcpListener::bind(service.as_str());
        assert!(
            probe.is_err(),
            "a plain bind on {service} succeeded: {probe:?}"
        );
        let addr: std::net::SocketAddr = service.parse().expect("address");
        let rebind = crate::sys::HeldListener::listen(addr);
        assert!(rebind.is_ok(), "a SO_REUSEPORT rebind failed: {rebind:?}");
        drop(rebind);
        let held = plan.service_listener().take().expect("the held listener");
        assert_eq!(held.local_addr().expect("local address"), addr);
        assert!(
            plan.service_listener().take().is_none(),
            "handed over twice"
        );
        drop(held);
        drop(plan);
        std::net::TcpListener::bind(service.as_str()).expect("free once the run ends");
    }

    /// A run's prefix goes back to the pool only with its proxies closed:
    /// the next run given it binds the same addresses at once.
    #[tokio::test]
    async fn after_shutdown_the_prefix_is_free_and_its_ports_bind_again() {
        use super::{ProcessSubstrate, Substrate};
        let seed = 0x5eed_0002;
        let plan = AddressPlan::allocate(1, seed).expect("plan");
        let prefix = plan.prefix.clone();
        let slots = vec![crate::trace::SlotInfo {
            name: "m0".into(),
            ordinal: 0,
            peer_url: format!("http://{}:{}", plan.member_ip(0), super::PEER_PORT),
            client_url: format!("http://{}:{}", plan.member_ip(0), super::CLIENT_PORT),
        }];
        let dir = crate::sys::TempDir::new("raftcert-prefix-test").expect("temp dir");
        let mut substrate = ProcessSubstrate::new(
            crate::trace::Recorder::in_memory(),
            crate::engine::EngineKind::Etcd,
            slots.clone(),
            plan,
            &dir.path().join("data"),
            &dir.path().join("logs"),
        )
        .expect("substrate");
        substrate.shutdown().await;
        drop(substrate);
        let again = AddressPlan::allocate(1, seed).expect("again");
        assert_eq!(again.prefix, prefix);
        ProcessSubstrate::new(
            crate::trace::Recorder::in_memory(),
            crate::engine::EngineKind::Etcd,
            slots,
            again,
            &dir.path().join("data2"),
            &dir.path().join("logs2"),
        )
        .expect("the proxies bind the same addresses");
    }
}
