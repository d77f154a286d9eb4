//! Drives one scenario run: backend + deployer in a reconcile loop, faults,
//! observation into the trace, then the invariants over the trace.

use super::model::{Inject, MemberSelector, Scenario, Step, StepAction, Suite, Trigger};
use crate::backend::cleanup::TempDir;
use crate::backend::docker::{self, DockerBackend};
use crate::backend::process::{AddressPlan, CLIENT_PORT, PEER_PORT, ProcessBackend};
use crate::backend::{AnyBackend, Backend, SlotState};
use crate::deployer::strategies::StrategyInfo;
use crate::deployer::{
    Action, ActionResult, Deployer, DeployerContext, EngineView, MembersView, Observation,
    PROTOCOL_VERSION, Phase, SlotView,
};
use crate::engine::etcd::{ClientConfig, MemberClient, SlotEndpoints, Status, base_args};
use crate::engine::provision::EngineInstall;
use crate::engine::tls::TlsMaterial;
use crate::report::{RunResult, RunStatus};
use crate::trace::{EventKind, FaultKind, MemberInfo, MembershipOp, Recorder, SlotInfo};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const TICK: Duration = Duration::from_millis(250);
const POLL_TIMEOUT: Duration = Duration::from_millis(800);
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(5);
const RESOLVE_DEADLINE: Duration = Duration::from_secs(30);
const WRITE_INTERVAL: Duration = Duration::from_millis(100);
const FINAL_READ_DEADLINE: Duration = Duration::from_secs(15);
/// A write that has not committed after this long counts as refused.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
pub const WORKLOAD_PREFIX: &str = "/raftcert/w/";

/// Builds a fresh deployer; called again after a deployer crash.
pub type DeployerFactory = Arc<dyn Fn(&DeployerContext) -> Box<dyn Deployer> + Send + Sync>;

/// The deployer under test.
#[derive(Clone)]
pub enum StrategyChoice {
    Builtin(&'static StrategyInfo),
    /// A deployer supplied by a library user or a test.
    Custom {
        name: String,
        factory: DeployerFactory,
    },
    /// A deployer process speaking protocol v1.
    External {
        command: String,
        timeout: Duration,
    },
}

impl StrategyChoice {
    pub fn name(&self) -> String {
        match self {
            StrategyChoice::Builtin(info) => info.name.to_string(),
            StrategyChoice::Custom { name, .. } => name.clone(),
            StrategyChoice::External { command, .. } => {
                crate::deployer::external::short_name(command)
            }
        }
    }
    fn build(&self, ctx: &DeployerContext) -> Result<Box<dyn Deployer>, RunAbort> {
        match self {
            StrategyChoice::Builtin(info) => Ok(info.build(ctx)),
            StrategyChoice::Custom { factory, .. } => Ok(factory(ctx)),
            StrategyChoice::External { command, timeout } => {
                crate::deployer::external::ExternalDeployer::spawn(
                    command,
                    &ctx.log_dir.join("deployer.log"),
                    *timeout,
                )
                .map(|d| Box::new(d) as Box<dyn Deployer>)
                .map_err(|e| RunAbort::Deployer(e.to_string()))
            }
        }
    }
}

/// Where the members of a run live.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// Local processes, one loopback address each.
    #[default]
    Process,
    /// Containers on a per-run Docker network; `image` overrides the image
    /// raftcert builds from the provisioned engine.
    Docker { image: Option<String> },
}

impl BackendChoice {
    pub fn name(&self) -> &'static str {
        match self {
            BackendChoice::Process => "process",
            BackendChoice::Docker { .. } => "docker",
        }
    }
}

/// Everything one run needs.
#[derive(Clone)]
pub struct RunSpec {
    pub suite: Arc<Suite>,
    pub scenario: Scenario,
    pub strategy: StrategyChoice,
    pub engine: EngineInstall,
    pub backend: BackendChoice,
    pub tls: bool,
    pub seed: u64,
    /// Directory of this run's trace and logs.
    pub dir: PathBuf,
    /// Path of `dir` relative to the report directory.
    pub rel_dir: String,
    pub run_id: String,
}

impl RunSpec {
    /// This run's result with status `error` and nothing checked yet.
    pub fn errored(&self, error: Option<String>) -> RunResult {
        RunResult {
            run_id: self.run_id.clone(),
            scenario: self.scenario.name.clone(),
            strategy: self.strategy.name(),
            engine: self.engine.kind.to_string(),
            engine_version: self.engine.version.clone(),
            backend: self.backend.name().into(),
            replicas: self.scenario.max_replicas(),
            tls: self.tls,
            seed: self.seed,
            status: RunStatus::Error,
            error,
            verdicts: Vec::new(),
            duration_ms: 0,
            ready_ms: None,
            trace: format!("{}/trace.jsonl", self.rel_dir),
            logs: format!("{}/logs", self.rel_dir),
        }
    }
}

/// Progress callback: a short status line for live display.
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
enum RunAbort {
    #[error("{0}")]
    Harness(String),
    #[error("{0}")]
    Deployer(String),
}

struct Polled {
    slot: String,
    incarnation: u64,
    status: Option<Status>,
    members: Option<(String, Vec<MemberInfo>)>,
    /// Polled only until the member reports a decided version.
    cluster_version: Option<String>,
}

struct Controller {
    recorder: Recorder,
    backend: AnyBackend,
    deployer: Box<dyn Deployer>,
    strategy: StrategyChoice,
    ctx: DeployerContext,
    engine: EngineView,
    token: String,
    tls: Option<TlsMaterial>,
    client_cfg: ClientConfig,
    slot_infos: Vec<SlotInfo>,
    desired: u32,
    clients: BTreeMap<String, (u64, MemberClient)>,
    statuses: BTreeMap<String, (Instant, u64, Status)>,
    recorded_status: BTreeMap<String, (Instant, u64, Status)>,
    recorded_lists: BTreeMap<String, (String, Vec<MemberInfo>)>,
    members: Option<(Instant, String, String, Vec<MemberInfo>)>,
    /// Decided cluster version per slot and incarnation.
    cluster_versions: BTreeMap<String, (u64, String)>,
    results: Vec<ActionResult>,
    last_actions: usize,
    /// Reconciles of the current deployer instance.
    reconciles: u64,
    rng: u64,
    /// Clients of members that can take writes, for the workload.
    writable: Arc<Mutex<Vec<MemberClient>>>,
    progress: Option<Progress>,
}

impl Controller {
    fn slot_view(&self, s: &SlotState) -> SlotView {
        let endpoints = SlotEndpoints {
            name: s.info.name.clone(),
            peer_url: s.info.peer_url.clone(),
            client_url: s.info.client_url.clone(),
            listen_peer_url: s.listen_peer_url.clone(),
            listen_client_url: s.listen_client_url.clone(),
            data_dir: s.member_data_dir.clone(),
        };
        SlotView {
            name: s.info.name.clone(),
            ordinal: s.info.ordinal,
            peer_url: s.info.peer_url.clone(),
            client_url: s.info.client_url.clone(),
            data_dir: endpoints.data_dir.clone(),
            base_args: base_args(&endpoints, self.tls.as_ref()),
            phase: s.phase,
            has_data: self.backend.has_data(s),
            restarts: s.restarts,
            last_exit: s.last_exit.clone(),
            spec: s.spec.clone(),
        }
    }

    fn observation(&self) -> Observation {
        Observation {
            protocol: PROTOCOL_VERSION,
            seq: self.reconciles,
            engine: self.engine.clone(),
            token: self.token.clone(),
            service: crate::deployer::ServiceView {
                ip: self.ctx.service_ip.clone(),
                port: self.ctx.service_port,
            },
            desired_replicas: self.desired,
            slots: self
                .backend
                .slots()
                .iter()
                .map(|s| self.slot_view(s))
                .collect(),
            members: self
                .members
                .as_ref()
                .map(|(at, via, cluster_id, members)| MembersView {
                    cluster_id: cluster_id.clone(),
                    via: via.clone(),
                    age_ms: at.elapsed().as_millis() as u64,
                    members: members.clone(),
                    cluster_version: self.cluster_versions.get(via).map(|(_, v)| v.clone()),
                }),
            results: self.results.clone(),
        }
    }

    /// Polls status and member list of every running member at once.
    async fn observe(&mut self) {
        let slots = self.backend.slots();
        let mut set = JoinSet::new();
        for slot in slots.iter().filter(|s| s.phase == Phase::Running) {
            let name = slot.info.name.clone();
            let incarnation = slot.incarnation;
            let cached = self
                .clients
                .get(&name)
                .filter(|(inc, _)| *inc == incarnation)
                .map(|(_, c)| c.clone());
            let endpoint = slot.observe_url.clone();
            let cfg = self.client_cfg.clone();
            let version_known = self
                .cluster_versions
                .get(&name)
                .is_some_and(|(inc, _)| *inc == incarnation);
            set.spawn(async move {
                let client = match cached {
                    Some(c) => Some(c),
                    None => MemberClient::connect(&endpoint, &cfg).await.ok(),
                };
                let Some(client) = client else {
                    return (
                        None,
                        Polled {
                            slot: name,
                            incarnation,
                            status: None,
                            members: None,
                            cluster_version: None,
                        },
                    );
                };
                let version = async {
                    if version_known {
                        return None;
                    }
                    client.cluster_version().await.ok().flatten()
                };
                let (status, members, cluster_version) =
                    tokio::join!(client.status(), client.member_list(), version);
                (
                    Some(client),
                    Polled {
                        slot: name,
                        incarnation,
                        status: status.ok(),
                        members: members.ok(),
                        cluster_version,
                    },
                )
            });
        }
        let mut polled = Vec::new();
        while let Some(joined) = set.join_next().await {
            if let Ok((client, p)) = joined {
                if let Some(c) = client {
                    self.clients.insert(p.slot.clone(), (p.incarnation, c));
                }
                polled.push(p);
            }
        }
        polled.sort_by(|a, b| a.slot.cmp(&b.slot));
        // Only members that answered this round count as reachable.
        self.statuses
            .retain(|slot, _| polled.iter().any(|p| p.slot == *slot && p.status.is_some()));
        let now = Instant::now();
        let mut freshest: Option<(bool, String, String, Vec<MemberInfo>)> = None;
        for p in polled {
            if let Some(version) = p.cluster_version {
                self.cluster_versions
                    .insert(p.slot.clone(), (p.incarnation, version));
            }
            if let Some(status) = p.status {
                self.record_status(&p.slot, p.incarnation, &status, now);
                self.statuses
                    .insert(p.slot.clone(), (now, p.incarnation, status.clone()));
                if let Some((cluster_id, members)) = p.members {
                    self.record_list(&p.slot, &cluster_id, &members);
                    let has_leader = status.leader != "0";
                    // Prefer a list from a member that knows a leader.
                    if freshest.as_ref().is_none_or(|(l, ..)| !l && has_leader) {
                        freshest = Some((has_leader, p.slot.clone(), cluster_id, members));
                    }
                }
            } else {
                self.statuses.remove(&p.slot);
            }
        }
        // When nobody answers, the deployer keeps the last list it saw, with
        // its age: a cluster without quorum refuses even member listing.
        if let Some((_, via, cluster_id, members)) = freshest {
            self.members = Some((now, via, cluster_id, members));
        }
        self.update_writable(&slots);
    }

    fn update_writable(&mut self, slots: &[SlotState]) {
        let clients: Vec<MemberClient> = slots
            .iter()
            .filter(|s| s.phase == Phase::Running)
            .filter_map(|s| {
                let (_, _, status) = self.statuses.get(&s.info.name)?;
                if status.leader == "0" || status.is_learner {
                    return None;
                }
                self.clients.get(&s.info.name).map(|(_, c)| c.clone())
            })
            .collect();
        *self.writable.lock().unwrap_or_else(|p| p.into_inner()) = clients;
    }

    fn record_status(&mut self, slot: &str, incarnation: u64, status: &Status, now: Instant) {
        // Record changes of identity, leader or term at once; progress of
        // index and revision every 2 s, to keep traces small.
        let record = match self.recorded_status.get(slot) {
            None => true,
            Some((at, inc, prev)) => {
                *inc != incarnation
                    || prev.leader != status.leader
                    || prev.term != status.term
                    || prev.member_id != status.member_id
                    || prev.cluster_id != status.cluster_id
                    || prev.is_learner != status.is_learner
                    || now.duration_since(*at) >= Duration::from_secs(2)
            }
        };
        if record {
            self.recorder.record(EventKind::MemberStatus {
                slot: slot.to_string(),
                cluster_id: status.cluster_id.clone(),
                member_id: status.member_id.clone(),
                leader: status.leader.clone(),
                term: status.term,
                raft_index: status.raft_index,
                revision: status.revision,
                is_learner: status.is_learner,
            });
            self.recorded_status
                .insert(slot.to_string(), (now, incarnation, status.clone()));
        }
    }

    fn record_list(&mut self, via: &str, cluster_id: &str, members: &[MemberInfo]) {
        let changed = self
            .recorded_lists
            .get(via)
            .is_none_or(|(c, m)| c != cluster_id || m != members);
        if changed {
            self.recorder.record(EventKind::MemberList {
                via: via.to_string(),
                cluster_id: cluster_id.to_string(),
                members: members.to_vec(),
            });
            self.recorded_lists
                .insert(via.to_string(), (cluster_id.to_string(), members.to_vec()));
        }
    }

    /// A client for membership calls: the leader if known, else any member.
    fn admin_client(&self) -> Option<(String, MemberClient)> {
        let leader_slot = self.statuses.iter().find_map(|(slot, (_, _, st))| {
            (st.leader != "0" && st.leader == st.member_id).then(|| slot.clone())
        });
        let pick = leader_slot.or_else(|| self.statuses.keys().next().cloned())?;
        self.clients
            .get(&pick)
            .map(|(_, c)| (pick.clone(), c.with_call_timeout(MEMBERSHIP_TIMEOUT)))
    }

    async fn membership(&mut self, action: &Action) -> ActionResult {
        let Some((via, client)) = self.admin_client() else {
            return ActionResult {
                action: action.clone(),
                ok: false,
                error: Some("no member answers".into()),
                member_id: None,
            };
        };
        let parse_id = |id: &str| {
            crate::engine::etcd::parse_hex_id(id).ok_or_else(|| format!("bad member id {id:?}"))
        };
        let (op, peer_url, target, outcome) = match action {
            Action::MemberAdd { peer_url, learner } => {
                let op = if *learner {
                    MembershipOp::AddLearner
                } else {
                    MembershipOp::Add
                };
                let r = client
                    .member_add(peer_url, *learner)
                    .await
                    .map(|(id, members)| (Some(id), members))
                    .map_err(|e| e.to_string());
                (op, Some(peer_url.clone()), None, r)
            }
            Action::MemberRemove { id } => {
                let r = match parse_id(id) {
                    Ok(n) => client.member_remove(n).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                let r = r.map(|members| (None, members));
                (MembershipOp::Remove, None, Some(id.clone()), r)
            }
            Action::MemberPromote { id } => {
                let r = match parse_id(id) {
                    Ok(n) => client.member_promote(n).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                let r = r.map(|members| (None, members));
                (MembershipOp::Promote, None, Some(id.clone()), r)
            }
            _ => unreachable!("membership() only takes membership actions"),
        };
        let (ok, error, new_id, membership) = match outcome {
            Ok((new_id, membership)) => (true, None, new_id, Some(membership)),
            Err(e) => (false, Some(e), None, None),
        };
        self.recorder.record(EventKind::MembershipCall {
            op,
            peer_url,
            member_id: new_id.clone().or(target),
            ok,
            error: error.clone(),
        });
        // The engine answers a membership change with the membership after
        // it: the deployer sees it even if no member answers afterwards.
        if let Some((cluster_id, members)) = membership
            && !members.is_empty()
        {
            self.record_list(&via, &cluster_id, &members);
            self.members = Some((Instant::now(), via, cluster_id, members));
        }
        ActionResult {
            action: action.clone(),
            ok,
            error,
            member_id: new_id,
        }
    }

    async fn execute(&mut self, actions: Vec<Action>) -> Vec<ActionResult> {
        let mut results = Vec::new();
        for action in actions {
            let result = match &action {
                Action::Start { slot, spec } => self
                    .backend
                    .start(slot, spec.clone())
                    .await
                    .map_err(|e| e.to_string()),
                Action::Stop { slot } => self.backend.stop(slot).await.map_err(|e| e.to_string()),
                Action::Wipe { slot } => self.backend.wipe(slot).await.map_err(|e| e.to_string()),
                _ => {
                    results.push(self.membership(&action).await);
                    continue;
                }
            };
            results.push(ActionResult {
                action,
                ok: result.is_ok(),
                error: result.err(),
                member_id: None,
            });
        }
        results
    }

    /// One reconcile round. Returns the actions' results.
    async fn tick(&mut self) -> Result<Vec<ActionResult>, RunAbort> {
        self.backend.tick().await;
        self.observe().await;
        self.reconciles += 1;
        let obs = self.observation();
        let deployer = &mut self.deployer;
        // An external deployer blocks on its pipe; keep the runtime moving.
        let reconciled = match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| deployer.reconcile(&obs))
            }
            _ => deployer.reconcile(&obs),
        };
        let actions = reconciled.map_err(|e| {
            let message = e.to_string();
            self.recorder.record(EventKind::DeployerError {
                message: message.clone(),
            });
            RunAbort::Deployer(message)
        })?;
        self.last_actions = actions.len();
        if actions.is_empty() {
            self.results.clear();
            return Ok(Vec::new());
        }
        self.recorder.record(EventKind::DeployerActions {
            actions: actions
                .iter()
                .filter_map(|a| serde_json::to_value(a).ok())
                .collect(),
        });
        let touched_membership = actions.iter().any(Action::is_membership);
        let results = self.execute(actions).await;
        if touched_membership {
            // Show the change on the next reconcile, not a poll later.
            self.observe().await;
        }
        self.results = results.clone();
        Ok(results)
    }

    /// The cluster matches the desired state, seen after `since`.
    fn settled(&self, since: Instant) -> bool {
        if self.last_actions != 0 {
            return false;
        }
        let slots = self.backend.slots();
        let desired: Vec<&SlotState> = slots
            .iter()
            .filter(|s| s.info.ordinal < self.desired)
            .collect();
        if slots
            .iter()
            .any(|s| s.info.ordinal >= self.desired && s.phase != Phase::Empty)
        {
            return false;
        }
        let mut leader = None;
        for slot in &desired {
            if slot.phase != Phase::Running {
                return false;
            }
            let Some((at, inc, status)) = self.statuses.get(&slot.info.name) else {
                return false;
            };
            if *at < since || *inc != slot.incarnation || status.leader == "0" || status.is_learner
            {
                return false;
            }
            match &leader {
                None => leader = Some(status.leader.clone()),
                Some(l) if *l != status.leader => return false,
                _ => {}
            }
        }
        let Some((at, _, _, members)) = &self.members else {
            return false;
        };
        if *at < since || members.len() != desired.len() {
            return false;
        }
        desired.iter().all(|slot| {
            members.iter().any(|m| {
                m.is_started()
                    && !m.is_learner
                    && m.name == slot.info.name
                    && m.peer_urls.contains(&slot.info.peer_url)
            })
        })
    }

    fn select(&mut self, selector: MemberSelector) -> Option<String> {
        let desired: Vec<String> = self
            .slot_infos
            .iter()
            .filter(|s| s.ordinal < self.desired)
            .map(|s| s.name.clone())
            .collect();
        let leader_slot = self.statuses.iter().find_map(|(slot, (_, _, st))| {
            (st.leader != "0" && st.leader == st.member_id).then(|| slot.clone())
        });
        match selector {
            MemberSelector::Ordinal(o) => desired.get(o as usize).cloned(),
            MemberSelector::Leader => leader_slot,
            MemberSelector::Follower => desired
                .into_iter()
                .find(|s| Some(s) != leader_slot.as_ref()),
            MemberSelector::Random => {
                self.rng = crate::util::splitmix64(self.rng);
                let n = desired.len() as u64;
                (n > 0).then(|| desired[(self.rng % n) as usize].clone())
            }
        }
    }

    async fn crash_deployer(&mut self) -> Result<(), RunAbort> {
        self.recorder.record(EventKind::FaultInjected {
            fault: FaultKind::CrashDeployer,
            slot: None,
        });
        // Drop first: a discovery service must free its address.
        self.deployer = Box::new(NoDeployer);
        self.results.clear();
        self.reconciles = 0;
        self.deployer = self.strategy.build(&self.ctx)?;
        Ok(())
    }

    /// The slot a selector names, reconciling meanwhile: on a loaded
    /// machine a status poll can miss, and `leader` needs a fresh one.
    async fn resolve(&mut self, selector: MemberSelector) -> Result<String, RunAbort> {
        let deadline = Instant::now() + RESOLVE_DEADLINE;
        loop {
            if let Some(slot) = self.select(selector) {
                return Ok(slot);
            }
            if Instant::now() >= deadline {
                return Err(RunAbort::Harness(format!(
                    "no member matches {selector:?} within {RESOLVE_DEADLINE:?}"
                )));
            }
            tokio::time::sleep(TICK).await;
            self.tick().await?;
        }
    }

    async fn inject(
        &mut self,
        fault: FaultKind,
        selector: Option<MemberSelector>,
    ) -> Result<(), RunAbort> {
        if fault == FaultKind::CrashDeployer {
            return self.crash_deployer().await;
        }
        if fault == FaultKind::Heal {
            return self.heal().await;
        }
        let selector =
            selector.ok_or_else(|| RunAbort::Harness(format!("{fault:?} needs a member")))?;
        let slot = self.resolve(selector).await?;
        if fault == FaultKind::Isolate {
            return self.cut(vec![slot]).await;
        }
        self.backend
            .inject(fault, &slot)
            .await
            .map_err(|e| RunAbort::Harness(e.to_string()))
    }

    /// The fault that undoes `fault` on `slot`, when it can be held.
    fn undo_for(fault: FaultKind, slot: Option<&str>) -> Option<Undo> {
        match (fault, slot) {
            (FaultKind::Freeze, Some(s)) => Some(Undo::Thaw(s.to_string())),
            (FaultKind::Disconnect, Some(s)) => Some(Undo::Reconnect(s.to_string())),
            (FaultKind::Isolate, _) => Some(Undo::Heal),
            _ => None,
        }
    }

    async fn undo(&mut self, undo: Undo) -> Result<(), RunAbort> {
        let harness = |e: crate::backend::BackendError| RunAbort::Harness(e.to_string());
        match undo {
            Undo::Thaw(slot) => self
                .backend
                .inject(FaultKind::Thaw, &slot)
                .await
                .map_err(harness),
            Undo::Reconnect(slot) => self
                .backend
                .inject(FaultKind::Reconnect, &slot)
                .await
                .map_err(harness),
            Undo::Heal => self.heal().await,
        }
    }

    /// Cuts `isolated` off from every other running member, then probes
    /// which side still takes writes.
    async fn cut(&mut self, isolated: Vec<String>) -> Result<(), RunAbort> {
        let rest: Vec<String> = self
            .backend
            .slots()
            .iter()
            .filter(|s| s.phase == Phase::Running && !isolated.contains(&s.info.name))
            .map(|s| s.info.name.clone())
            .collect();
        self.recorder.record_cut(&isolated, &rest);
        self.backend
            .partition(&isolated)
            .await
            .map_err(|e| RunAbort::Harness(e.to_string()))?;
        self.probe_writes(&isolated, &rest).await;
        Ok(())
    }

    async fn heal(&mut self) -> Result<(), RunAbort> {
        self.recorder.record(EventKind::FaultInjected {
            fault: FaultKind::Heal,
            slot: None,
        });
        self.backend
            .heal()
            .await
            .map_err(|e| RunAbort::Harness(e.to_string()))?;
        self.recorder.record(EventKind::NetworkHealed);
        Ok(())
    }

    /// Sends one write to every member on both sides of a cut, at once.
    async fn probe_writes(&mut self, isolated: &[String], rest: &[String]) {
        // Every voting member counts toward the quorum, started or not; each
        // sits on the side of its slot.
        let voters: Vec<String> = self
            .members
            .as_ref()
            .map(|(_, _, _, ms)| {
                ms.iter()
                    .filter(|m| !m.is_learner)
                    .filter_map(|m| {
                        self.slot_infos
                            .iter()
                            .find(|s| m.peer_urls.contains(&s.peer_url))
                            .map(|s| s.name.clone())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut probes = JoinSet::new();
        for (side, side_has_quorum) in [isolated, rest]
            .into_iter()
            .zip(sides_with_quorum(&voters, isolated, rest))
        {
            for slot in side {
                let Some((_, client)) = self.clients.get(slot) else {
                    continue;
                };
                let client = client.with_call_timeout(PROBE_TIMEOUT);
                let slot = slot.clone();
                let key = format!("/raftcert/probe/{slot}-{}", crate::util::unique_suffix());
                probes.spawn(async move {
                    let outcome = client.put(&key, "probe").await;
                    (slot, side_has_quorum, outcome)
                });
            }
        }
        self.recorder.record_write_probes(probes).await;
    }

    fn say(&self, text: &str) {
        if let Some(p) = &self.progress {
            p(text);
        }
    }

    /// Applies a step, then reconciles until settled or past the deadline.
    async fn run_step(
        &mut self,
        index: u32,
        name: &str,
        action: StepAction,
        inject: Option<Inject>,
        deadline: Duration,
    ) -> Result<(bool, Duration), RunAbort> {
        let started = Instant::now();
        let mut undo_at: Option<(Instant, Undo)> = None;
        match action {
            StepAction::Bootstrap(n) | StepAction::Scale(n) => self.desired = n,
            _ => {}
        }
        self.recorder.record(EventKind::StepStarted {
            index,
            name: name.to_string(),
            desired_replicas: self.desired,
            deadline_ms: deadline.as_millis() as u64,
        });
        self.say(name);
        match action {
            StepAction::Restart(sel) => self.inject(FaultKind::Stop, Some(sel)).await?,
            StepAction::Kill(sel) => self.inject(FaultKind::Kill, Some(sel)).await?,
            StepAction::DeletePod(sel) => self.inject(FaultKind::DeletePod, Some(sel)).await?,
            StepAction::LoseVolume(sel) => self.inject(FaultKind::LoseVolume, Some(sel)).await?,
            StepAction::Freeze(spec) => {
                let slot = self.resolve(spec.member).await?;
                self.backend
                    .inject(FaultKind::Freeze, &slot)
                    .await
                    .map_err(|e| RunAbort::Harness(e.to_string()))?;
                undo_at = Some((started + spec.duration.0, Undo::Thaw(slot)));
            }
            StepAction::Disconnect(spec) => {
                let slot = self.resolve(spec.member).await?;
                self.backend
                    .inject(FaultKind::Disconnect, &slot)
                    .await
                    .map_err(|e| RunAbort::Harness(e.to_string()))?;
                undo_at = Some((started + spec.duration.0, Undo::Reconnect(slot)));
            }
            StepAction::Partition(spec) => {
                let mut isolated = Vec::new();
                for sel in spec.isolate.selectors() {
                    let slot = self.resolve(sel).await?;
                    if !isolated.contains(&slot) {
                        isolated.push(slot);
                    }
                }
                self.cut(isolated).await?;
                undo_at = Some((started + spec.duration.0, Undo::Heal));
            }
            StepAction::FullRestart => {
                for ordinal in 0..self.desired {
                    self.inject(FaultKind::Stop, Some(MemberSelector::Ordinal(ordinal)))
                        .await?;
                }
            }
            StepAction::CrashDeployer => self.crash_deployer().await?,
            StepAction::RollingRestart => unreachable!("expanded by the caller"),
            StepAction::Bootstrap(_) | StepAction::Scale(_) | StepAction::Wait => {}
        }
        let mut pending_inject = inject;
        let mut next_tick = Instant::now();
        loop {
            let results = self.tick().await?;
            if let Some(inj) = pending_inject {
                let fire = match inj.after {
                    Trigger::AfterMemberAdd => results
                        .iter()
                        .any(|r| r.ok && matches!(r.action, Action::MemberAdd { .. })),
                    Trigger::After(d) => started.elapsed() >= d,
                };
                if fire {
                    pending_inject = None;
                    let slot = match inj.member {
                        Some(sel) if inj.duration.is_some() => Some(self.resolve(sel).await?),
                        _ => None,
                    };
                    match (&slot, inj.fault) {
                        // The member resolved above is the one to undo.
                        (Some(s), FaultKind::Isolate) => self.cut(vec![s.clone()]).await?,
                        (Some(s), fault) => self
                            .backend
                            .inject(fault, s)
                            .await
                            .map_err(|e| RunAbort::Harness(e.to_string()))?,
                        (None, fault) => self.inject(fault, inj.member).await?,
                    }
                    if let Some(d) = inj.duration
                        && let Some(undo) = Self::undo_for(inj.fault, slot.as_deref())
                    {
                        undo_at = Some((Instant::now() + d.0, undo));
                    }
                }
            }
            if undo_at
                .as_ref()
                .is_some_and(|(at, _)| Instant::now() >= *at)
                && let Some((_, undo)) = undo_at.take()
            {
                self.undo(undo).await?;
            }
            let waiting_on_faults = pending_inject.is_some() || undo_at.is_some();
            if !waiting_on_faults && self.settled(started) {
                return Ok((true, started.elapsed()));
            }
            if started.elapsed() >= deadline {
                if let Some((_, undo)) = undo_at.take() {
                    let _ = self.undo(undo).await;
                }
                return Ok((false, started.elapsed()));
            }
            next_tick += TICK;
            let now = Instant::now();
            if next_tick > now {
                tokio::time::sleep_until(next_tick.into()).await;
            } else {
                next_tick = now;
            }
        }
    }
}

/// Whether each side of a cut (`isolated`, `rest`) holds a quorum of
/// `voters`. A voter on neither side (not running at the cut) is cut off
/// from nobody once it starts, so it counts for both.
pub fn sides_with_quorum(voters: &[String], isolated: &[String], rest: &[String]) -> [bool; 2] {
    let quorum = voters.len() / 2 + 1;
    let on = |side: &[String]| voters.iter().filter(|v| side.contains(v)).count();
    let unplaced = voters.len() - on(isolated) - on(rest);
    [
        on(isolated) + unplaced >= quorum,
        on(rest) + unplaced >= quorum,
    ]
}

/// A fault held for a while, and how to undo it.
enum Undo {
    Thaw(String),
    Reconnect(String),
    Heal,
}

/// Stands in while a crashed deployer is replaced.
struct NoDeployer;
impl Deployer for NoDeployer {
    fn reconcile(
        &mut self,
        _: &Observation,
    ) -> Result<Vec<Action>, crate::deployer::DeployerError> {
        Ok(Vec::new())
    }
}

/// Writes unique keys at a steady pace until told to stop.
fn spawn_workload(
    recorder: Recorder,
    writable: Arc<Mutex<Vec<MemberClient>>>,
    run_id: String,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let handle = tokio::spawn(async move {
        let mut n: u64 = 0;
        let mut ticker = tokio::time::interval(WRITE_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop_rx.changed() => break,
            }
            let client = {
                let clients = writable.lock().unwrap_or_else(|p| p.into_inner());
                if clients.is_empty() {
                    continue;
                }
                clients[(n as usize) % clients.len()].clone()
            };
            let key = format!("{WORKLOAD_PREFIX}{n:08}");
            let value = format!("{run_id}-{n}");
            let outcome = client.put(&key, &value).await;
            recorder.record(EventKind::ClientWrite {
                key,
                value,
                ok: outcome.is_ok(),
                error: outcome.err().map(|e| e.to_string()),
            });
            n += 1;
        }
    });
    (stop_tx, handle)
}

fn slot_infos(plan: &AddressPlan, replicas: u32, tls: bool) -> Vec<SlotInfo> {
    let scheme = if tls { "https" } else { "http" };
    (0..replicas)
        .map(|ordinal| {
            let ip = plan.member_ip(ordinal);
            SlotInfo {
                name: format!("m{ordinal}"),
                ordinal,
                peer_url: format!("{scheme}://{ip}:{PEER_PORT}"),
                client_url: format!("{scheme}://{ip}:{CLIENT_PORT}"),
            }
        })
        .collect()
}

/// Runs one scenario and checks the invariants over its trace.
pub async fn run_scenario(spec: RunSpec, progress: Option<Progress>) -> RunResult {
    let started = Instant::now();
    let mut result = spec.errored(None);
    match drive(&spec, progress).await {
        Ok((trace, ready, abort)) => {
            result.judge(&trace, abort);
            result.ready_ms = ready.map(|d| d.as_millis() as u64);
        }
        Err(e) => {
            result.error = Some(e.to_string());
        }
    }
    result.duration_ms = started.elapsed().as_millis() as u64;
    result
}

type Driven = (crate::trace::Trace, Option<Duration>, Option<String>);

async fn drive(spec: &RunSpec, progress: Option<Progress>) -> Result<Driven, RunAbort> {
    let harness = |what: &str, e: &dyn std::fmt::Display| RunAbort::Harness(format!("{what}: {e}"));
    std::fs::create_dir_all(&spec.dir).map_err(|e| harness("creating run directory", &e))?;
    let replicas = spec.scenario.max_replicas();
    let scratch = TempDir::new("raftcert-run").map_err(|e| harness("temporary directory", &e))?;
    let recorder =
        Recorder::to_file(&spec.dir.join("trace.jsonl")).map_err(|e| harness("trace", &e))?;
    let logs_dir = spec.dir.join("logs");
    let tls_dir = scratch.path().join("tls");
    let generate_tls = |members: Vec<(String, Vec<String>)>| {
        spec.tls
            .then(|| TlsMaterial::generate(&tls_dir, &members))
            .transpose()
            .map_err(|e| harness("certificates", &e))
    };
    let (backend, slot_infos, service_ip, binary, tls) = match &spec.backend {
        BackendChoice::Process => {
            let plan = AddressPlan::allocate(replicas, spec.seed ^ crate::util::unique_suffix())
                .map_err(|e| harness("addresses", &e))?;
            let slot_infos = slot_infos(&plan, replicas, spec.tls);
            let tls = generate_tls(
                slot_infos
                    .iter()
                    .map(|s| {
                        let sans = vec![
                            plan.member_ip(s.ordinal),
                            "localhost".to_string(),
                            s.name.clone(),
                        ];
                        (s.name.clone(), sans)
                    })
                    .collect(),
            )?;
            let mut backend = ProcessBackend::new(
                recorder.clone(),
                slot_infos.clone(),
                &scratch.path().join("data"),
                &logs_dir,
            )
            .map_err(|e| harness("backend", &e))?;
            let binary = spec.engine.server.display().to_string();
            let service_ip = plan.service_ip();
            backend.hold_addresses(plan);
            (
                AnyBackend::Process(backend),
                slot_infos,
                service_ip,
                binary,
                tls,
            )
        }
        BackendChoice::Docker { image } => {
            let client = docker::connect().await.map_err(|e| harness("docker", &e))?;
            let image = docker::ensure_engine_image(&client, &spec.engine, image.as_deref())
                .await
                .map_err(|e| harness("image", &e))?;
            let label = format!(
                "{}-{:x}",
                spec.run_id
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect::<String>(),
                crate::util::unique_suffix() % 0xff_ffff
            );
            let config = docker::DockerRunConfig {
                run_label: label,
                replicas,
                tls: spec.tls,
                image,
                logs_dir: logs_dir.clone(),
                seed: spec.seed ^ crate::util::unique_suffix(),
            };
            let (mut backend, layout) = DockerBackend::create(client, recorder.clone(), config)
                .await
                .map_err(|e| harness("docker backend", &e))?;
            let tls = generate_tls(
                layout
                    .slots
                    .iter()
                    .zip(&layout.hosts)
                    .map(|(s, host)| {
                        let sans = vec![
                            "127.0.0.1".to_string(),
                            "localhost".to_string(),
                            s.name.clone(),
                            host.clone(),
                        ];
                        (s.name.clone(), sans)
                    })
                    .collect(),
            )?;
            if tls.is_some() {
                backend.set_tls_dir(&tls_dir);
            }
            let binary = docker::ENGINE_PATH.to_string();
            (
                AnyBackend::Docker(Box::new(backend)),
                layout.slots,
                layout.service_ip,
                binary,
                tls,
            )
        }
    };
    let quorum_grace = spec.suite.quorum_grace_for(&spec.scenario);
    recorder.record(EventKind::RunStarted {
        format: crate::trace::TRACE_FORMAT,
        run_id: spec.run_id.clone(),
        scenario: spec.scenario.name.clone(),
        strategy: spec.strategy.name(),
        engine: spec.engine.kind.to_string(),
        engine_version: spec.engine.version.clone(),
        backend: spec.backend.name().into(),
        seed: spec.seed,
        tls: spec.tls,
        slots: slot_infos.clone(),
        quorum_grace_ms: quorum_grace.as_millis() as u64,
    });
    let ctx = DeployerContext {
        service_ip,
        service_port: crate::deployer::SERVICE_PORT,
        log_dir: logs_dir.clone(),
    };
    let deployer = spec.strategy.build(&ctx)?;
    let client_cfg = ClientConfig {
        tls: tls.clone(),
        timeout: POLL_TIMEOUT,
    };
    let writable = Arc::new(Mutex::new(Vec::new()));
    let mut ctl = Controller {
        recorder: recorder.clone(),
        backend,
        deployer,
        strategy: spec.strategy.clone(),
        ctx,
        engine: EngineView {
            kind: spec.engine.kind.to_string(),
            version: spec.engine.version.clone(),
            binary,
        },
        token: format!("raftcert-{}", crate::util::unique_suffix() % 1_000_000_000),
        tls,
        client_cfg,
        slot_infos,
        desired: 0,
        clients: BTreeMap::new(),
        statuses: BTreeMap::new(),
        recorded_status: BTreeMap::new(),
        recorded_lists: BTreeMap::new(),
        members: None,
        cluster_versions: BTreeMap::new(),
        results: Vec::new(),
        last_actions: 0,
        reconciles: 0,
        rng: spec.scenario.seed.unwrap_or(spec.seed),
        writable: writable.clone(),
        progress,
    };
    let (stop_workload, workload) =
        spawn_workload(recorder.clone(), writable.clone(), spec.run_id.clone());
    let outcome = run_steps(&mut ctl, spec).await;
    let _ = stop_workload.send(true);
    let _ = workload.await;
    let (ready, abort) = match outcome {
        Ok(ready) => {
            final_read(&mut ctl).await;
            (ready, None)
        }
        Err(e) => (None, Some(e.to_string())),
    };
    ctl.backend.shutdown().await;
    recorder.record(EventKind::RunFinished {
        error: abort.clone(),
    });
    recorder.flush();
    drop(ctl);
    drop(scratch);
    Ok((recorder.snapshot(), ready, abort))
}

/// Runs every step; returns the bootstrap's time to ready.
async fn run_steps(ctl: &mut Controller, spec: &RunSpec) -> Result<Option<Duration>, RunAbort> {
    let mut ready = None;
    let mut index = 0u32;
    for step in &spec.scenario.steps {
        let deadline = spec.suite.settle_for(step);
        let Step { action, inject, .. } = *step;
        if action == StepAction::RollingRestart {
            for ordinal in 0..ctl.desired {
                let name = format!("rolling-restart m{ordinal}");
                let sel = MemberSelector::Ordinal(ordinal);
                ctl.run_step(index, &name, StepAction::Restart(sel), None, deadline)
                    .await
                    .map(|(settled, elapsed)| finish_step(ctl, index, &name, settled, elapsed))?;
                index += 1;
            }
            continue;
        }
        let name = action.name();
        let (settled, elapsed) = ctl.run_step(index, &name, action, inject, deadline).await?;
        finish_step(ctl, index, &name, settled, elapsed);
        if matches!(action, StepAction::Bootstrap(_)) && settled {
            ready = Some(elapsed);
        }
        index += 1;
    }
    Ok(ready)
}

fn finish_step(ctl: &Controller, index: u32, name: &str, settled: bool, elapsed: Duration) {
    ctl.recorder.record(EventKind::StepFinished {
        index,
        name: name.to_string(),
        settled,
        elapsed_ms: elapsed.as_millis() as u64,
        detail: (!settled).then(|| "the cluster did not settle before the deadline".to_string()),
        desired_slots: None,
    });
}

/// Reads back every workload key through a member that knows a leader.
async fn final_read(ctl: &mut Controller) {
    let deadline = Instant::now() + FINAL_READ_DEADLINE;
    let mut last_error = String::from("no member answered");
    loop {
        let clients = ctl
            .writable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for client in clients {
            match client.get_prefix(WORKLOAD_PREFIX).await {
                Ok(values) => {
                    ctl.recorder.record(EventKind::FinalRead {
                        ok: true,
                        error: None,
                        values,
                    });
                    return;
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(TICK).await;
        ctl.observe().await;
    }
    ctl.recorder.record(EventKind::FinalRead {
        ok: false,
        error: Some(last_error),
        values: BTreeMap::new(),
    });
}

/// Path of a run's directory inside the report directory.
pub fn run_dir_name(
    scenario: &str,
    strategy: &str,
    engine: &EngineInstall,
    tls: bool,
    backend: &BackendChoice,
) -> String {
    format!(
        "runs/{}-{}-{}{}{}",
        scenario,
        strategy,
        engine.version,
        if tls { "-tls" } else { "" },
        match backend {
            BackendChoice::Process => "",
            BackendChoice::Docker { .. } => "-docker",
        }
    )
}

#[cfg(test)]
mod tests {
    use super::sides_with_quorum;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_side_with_a_majority_of_voters_has_quorum() {
        let voters = names(&["m0", "m1", "m2"]);
        assert_eq!(
            sides_with_quorum(&voters, &names(&["m0"]), &names(&["m1", "m2"])),
            [false, true]
        );
        assert_eq!(
            sides_with_quorum(&voters, &names(&["m0", "m1"]), &names(&["m2"])),
            [true, false]
        );
    }

    #[test]
    fn a_voter_on_neither_side_counts_for_both() {
        // m3 was added but its member was not running at the cut.
        let voters = names(&["m0", "m1", "m2", "m3"]);
        assert_eq!(
            sides_with_quorum(&voters, &names(&["m0"]), &names(&["m1", "m2"])),
            [false, true]
        );
        // Placed on a side, it counts for that side only: 2 of 4 each.
        assert_eq!(
            sides_with_quorum(&voters, &names(&["m0", "m3"]), &names(&["m1", "m2"])),
            [false, false]
        );
    }
}
