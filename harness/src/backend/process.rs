//! Members as local child processes, one loopback address per slot.

use super::cleanup;
use super::{Backend, BackendError, RestartPolicy, SlotState};
use crate::deployer::{ExitInfo, Phase, Spec};
use crate::engine::etcd::{LogFact, parse_log_line};
use crate::trace::{EventKind, FaultKind, Recorder, SlotInfo};
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

pub const PEER_PORT: u16 = 2380;
pub const CLIENT_PORT: u16 = 2379;

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
struct PrefixLease(String);

impl Drop for PrefixLease {
    fn drop(&mut self) {
        LEASED_PREFIXES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.0);
    }
}

impl AddressPlan {
    pub fn member_ip(&self, ordinal: u32) -> String {
        format!("{}.{}", self.prefix, 10 + ordinal)
    }
    pub fn service_ip(&self) -> String {
        format!("{}.1", self.prefix)
    }

    /// Picks a random `127.a.b.0/24` that no run of this process holds and
    /// whose ports are free (the probe keeps off other processes' runs).
    pub fn allocate(members: u32, seed: u64) -> Result<Self, BackendError> {
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
            let mut addrs = vec![format!("{prefix}.1:{}", crate::deployer::SERVICE_PORT)];
            for ord in 0..members {
                let ip = format!("{prefix}.{}", 10 + ord);
                addrs.push(format!("{ip}:{PEER_PORT}"));
                addrs.push(format!("{ip}:{CLIENT_PORT}"));
            }
            if addrs.iter().all(|a| TcpListener::bind(a.as_str()).is_ok()) {
                leased.insert(prefix.clone());
                // The lease is made only now: its drop takes the lock.
                return Ok(AddressPlan {
                    prefix: prefix.clone(),
                    _lease: Arc::new(PrefixLease(prefix)),
                });
            }
        }
        Err(BackendError::NoAddresses(members))
    }
}

struct Slot {
    state: SlotState,
    pgid: Option<i32>,
    exit: Option<watch::Receiver<Option<ExitInfo>>>,
    restart: RestartPolicy,
}

pub struct ProcessBackend {
    recorder: Recorder,
    logs_dir: PathBuf,
    slots: Vec<Slot>,
    /// The run's loopback addresses, leased until the backend is dropped.
    addresses: Option<AddressPlan>,
}

fn dir_has_data(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

impl ProcessBackend {
    /// `data_root` holds one data directory per slot; `logs_dir` one log
    /// file per slot.
    pub fn new(
        recorder: Recorder,
        slots: Vec<SlotInfo>,
        data_root: &Path,
        logs_dir: &Path,
    ) -> Result<Self, BackendError> {
        // Each member listens where it advertises, on its own address.
        std::fs::create_dir_all(logs_dir).map_err(|source| BackendError::Io {
            what: "creating",
            path: logs_dir.to_path_buf(),
            source,
        })?;
        let slots = slots
            .into_iter()
            .map(|info| {
                let data_dir = data_root.join(&info.name);
                Slot {
                    state: SlotState {
                        member_data_dir: data_dir.display().to_string(),
                        listen_peer_url: info.peer_url.clone(),
                        listen_client_url: info.client_url.clone(),
                        observe_url: info.client_url.clone(),
                        info,
                        data_dir,
                        phase: Phase::Empty,
                        restarts: 0,
                        last_exit: None,
                        spec: None,
                        incarnation: 0,
                    },
                    pgid: None,
                    exit: None,
                    restart: RestartPolicy::new(),
                }
            })
            .collect();
        Ok(ProcessBackend {
            recorder,
            logs_dir: logs_dir.to_path_buf(),
            slots,
            addresses: None,
        })
    }

    /// Keeps the run's address lease for as long as the backend lives.
    pub fn hold_addresses(&mut self, plan: AddressPlan) {
        self.addresses = Some(plan);
    }

    fn index(&self, name: &str) -> Result<usize, BackendError> {
        self.slots
            .iter()
            .position(|s| s.state.info.name == name)
            .ok_or_else(|| BackendError::UnknownSlot(name.to_string()))
    }

    fn spawn(&mut self, idx: usize) -> Result<(), BackendError> {
        let recorder = self.recorder.clone();
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
        let had_data = dir_has_data(&slot.state.data_dir);
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
        let spawned = super::spawner::on_spawner_thread(move || {
            cleanup::start_group(
                || {
                    // tokio registers the child with this runtime's reaper.
                    let _guard = handle.enter();
                    cmd.spawn()
                },
                tokio::process::Child::id,
            )
        });
        let mut child = spawned.map_err(|source| BackendError::Spawn {
            slot: name.clone(),
            command: spec.command.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        let pgid = pid as i32;
        slot.pgid = Some(pgid);
        slot.state.incarnation += 1;
        slot.state.phase = Phase::Running;
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
                if let Some(fact) = parse_log_line(&line) {
                    record_fact(&recorder, &name, fact);
                }
            }
            for reader in readers {
                let _ = reader.await;
            }
            let status = child.wait().await.ok();
            let info = ExitInfo {
                code: status.and_then(|s| s.code()),
                signal: status.and_then(|s| s.signal()),
            };
            cleanup::unregister_group(pgid);
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

    fn wipe_dir(&mut self, idx: usize) -> Result<(), BackendError> {
        let dir = self.slots[idx].state.data_dir.clone();
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(BackendError::Io {
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

pub(crate) fn record_fact(recorder: &Recorder, slot: &str, fact: LogFact) {
    let slot = slot.to_string();
    let kind = match fact {
        LogFact::Start(config) => EventKind::MemberStart { slot, config },
        LogFact::LocalMember {
            member_id,
            cluster_id,
            restarted,
        } => EventKind::LocalMember {
            slot,
            member_id,
            cluster_id,
            restarted,
        },
        LogFact::Membership {
            op,
            member_id,
            peer_urls,
        } => EventKind::MembershipApplied {
            slot,
            op,
            member_id,
            peer_urls,
        },
        LogFact::Error { class, message } => EventKind::EngineError {
            slot,
            class,
            message,
        },
        LogFact::Ready => return,
    };
    recorder.record(kind);
}

impl Backend for ProcessBackend {
    fn name(&self) -> &'static str {
        "process"
    }

    fn slots(&self) -> Vec<SlotState> {
        self.slots.iter().map(|s| s.state.clone()).collect()
    }

    fn has_data(&self, slot: &SlotState) -> bool {
        dir_has_data(&slot.data_dir)
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

    async fn start(&mut self, slot: &str, spec: Spec) -> Result<(), BackendError> {
        let idx = self.index(slot)?;
        self.slots[idx].state.expect_empty()?;
        self.slots[idx].state.spec = Some(spec);
        self.slots[idx].restart.reset();
        self.spawn(idx)
    }

    async fn stop(&mut self, slot: &str) -> Result<(), BackendError> {
        let idx = self.index(slot)?;
        self.terminate(idx, true).await;
        self.empty_slot(idx);
        Ok(())
    }

    async fn wipe(&mut self, slot: &str) -> Result<(), BackendError> {
        let idx = self.index(slot)?;
        self.slots[idx].state.expect_empty()?;
        self.wipe_dir(idx)
    }

    async fn inject(&mut self, fault: FaultKind, slot: &str) -> Result<(), BackendError> {
        let idx = self.index(slot)?;
        self.recorder.record(EventKind::FaultInjected {
            fault,
            slot: Some(slot.to_string()),
        });
        match fault {
            FaultKind::Kill => self.signal(idx, Signal::SIGKILL),
            FaultKind::Stop => {
                // The restart policy brings it back, as for a container.
                self.signal(idx, Signal::SIGCONT);
                self.signal(idx, Signal::SIGTERM);
                if !self.wait_exit(idx, GRACEFUL_TIMEOUT).await {
                    self.signal(idx, Signal::SIGKILL);
                }
            }
            FaultKind::Freeze => {
                if self.slots[idx].state.phase == Phase::Running {
                    self.signal(idx, Signal::SIGSTOP);
                    self.slots[idx].state.phase = Phase::Frozen;
                }
            }
            FaultKind::Thaw => {
                if self.slots[idx].state.phase == Phase::Frozen {
                    self.signal(idx, Signal::SIGCONT);
                    self.slots[idx].state.phase = Phase::Running;
                }
            }
            FaultKind::DeletePod => {
                self.terminate(idx, false).await;
                self.empty_slot(idx);
            }
            FaultKind::LoseVolume => {
                self.terminate(idx, false).await;
                self.empty_slot(idx);
                self.wipe_dir(idx)?;
            }
            FaultKind::CrashDeployer
            | FaultKind::Disconnect
            | FaultKind::Reconnect
            | FaultKind::Isolate
            | FaultKind::Heal => {
                return Err(BackendError::Unsupported {
                    fault,
                    backend: "process",
                });
            }
        }
        Ok(())
    }

    async fn heal(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn partition(&mut self, _side: &[String]) -> Result<(), BackendError> {
        // Members share the host's loopback: nothing can cut it per member.
        Err(BackendError::Unsupported {
            fault: FaultKind::Isolate,
            backend: "process",
        })
    }

    async fn shutdown(&mut self) {
        for idx in 0..self.slots.len() {
            self.slots[idx].state.phase = Phase::Empty;
            self.terminate(idx, false).await;
        }
    }
}

impl Drop for ProcessBackend {
    fn drop(&mut self) {
        // On a panic or an aborted run, nothing may outlive the backend.
        let groups: Vec<i32> = self.slots.iter().filter_map(|s| s.pgid).collect();
        if !groups.is_empty() {
            cleanup::kill_groups_and_wait(&groups);
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
}
