//! The driver: one step loop for every run, whoever reconciles (a
//! deployer or an operator) and wherever members run (processes, docker,
//! Kubernetes). Each tick it applies the substrate's restart policy, polls
//! every member, lets a deployer reconcile and carries out its actions,
//! fires mid-step faults, takes back held faults when their time is up,
//! and checks whether the step has settled. Everything goes into one trace,
//! which the invariants then judge.

pub mod poll;
mod settle;
mod setup;
pub mod tso;
pub mod workload;

use crate::engine::EngineChoice;
use crate::engine::EngineKind;
use crate::engine::etcd::{SlotEndpoints, parse_hex_id};
use crate::engine::tls::TlsMaterial;
use crate::faults::select::MemberSelector;
use crate::faults::{FaultArgs, FaultRef, Moment, Op, Targeting, Targets};
use crate::model::{
    Action, ActionResult, EngineView, MembersView, Observation, PROTOCOL_VERSION, Phase,
    ServiceView, SlotView,
};
use crate::report::RunResult;
use crate::scenario::model::{Inject, Scenario, Step, StepAction, Suite, Trigger};
use crate::subject::{Subject, SubjectChoice, SubjectError, record_deployer_error};
use crate::substrate::{AnySubstrate, SlotState, Substrate, SubstrateChoice, SubstrateError};
use crate::trace::{EngineErrorClass, EventKind, MembershipOp, Recorder, Trace};
use poll::Poller;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(250);
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a finished scenario waits for the settled cluster to
/// acknowledge a write (the workload's), so that D1 has one to judge.
const LAST_WRITE_DEADLINE: Duration = Duration::from_secs(15);
/// How long a selector may wait for a member to match (a leader to be
/// known, for `leader` and `follower`).
const RESOLVE_DEADLINE: Duration = Duration::from_secs(30);

/// Everything one run needs.
#[derive(Clone)]
pub struct RunSpec {
    pub suite: Arc<Suite>,
    pub scenario: Scenario,
    pub subject: SubjectChoice,
    pub engine: EngineChoice,
    pub substrate: SubstrateChoice,
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
        RunResult::unjudged(
            &self.run_id,
            &self.scenario.name,
            &self.subject.name(),
            &self.engine,
            self.substrate.name(),
            self.scenario.max_replicas(),
            self.tls,
            self.seed,
            &self.rel_dir,
            error,
        )
    }
}

/// Progress callback: a short status line for live display.
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// Why a run could not be judged.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{0}")]
    Substrate(#[from] SubstrateError),
    #[error("{0}")]
    Subject(#[from] SubjectError),
    #[error("{0}")]
    Trace(#[from] crate::trace::TraceError),
    #[error("certificates: {0}")]
    Tls(#[from] crate::engine::tls::TlsError),
    #[error("no member matches {0} within {RESOLVE_DEADLINE:?}")]
    NoMember(String),
    #[error("the deployer: {0}")]
    Deployer(String),
    /// The machine or cluster, not the subject, broke the run (an image
    /// that cannot be pulled, a port in use, a missing command): the run
    /// is an error and nothing is judged.
    #[error("environment: {0}")]
    Environment(String),
    #[error("{0}")]
    Invalid(String),
}

/// Runs one scenario and checks the invariants over its trace.
pub async fn run_scenario(spec: RunSpec, progress: Option<Progress>) -> RunResult {
    let started = Instant::now();
    let mut result = spec.errored(None);
    match drive(&spec, progress).await {
        Ok((_, _, Some(DriveError::Environment(problem)))) => {
            result.error = Some(DriveError::Environment(problem).to_string());
        }
        Ok((trace, ready, abort)) => {
            let must_judge = spec.suite.must_judge_for(&spec.scenario);
            result.judge(&trace, abort.map(|e| e.to_string()), &must_judge);
            result.ready_ms = ready.map(|d| d.as_millis() as u64);
        }
        Err(e) => result.error = Some(e.to_string()),
    }
    result.duration_ms = started.elapsed().as_millis() as u64;
    result
}

type Driven = (Trace, Option<Duration>, Option<DriveError>);

async fn drive(spec: &RunSpec, progress: Option<Progress>) -> Result<Driven, DriveError> {
    let io = |what: &'static str| move |source| DriveError::Io { what, source };
    std::fs::create_dir_all(&spec.dir).map_err(io("creating the run directory"))?;
    let recorder = Recorder::to_file(&spec.dir.join("trace.jsonl"))?;
    let setup::Ready {
        substrate,
        subject,
        slots,
        member_fronts,
        tls,
        client_config,
        engine_view,
        engine_config,
        service,
        _scratch,
    } = setup::prepare(spec, &recorder).await?;
    let quorum_grace = spec.suite.quorum_grace_for(&spec.scenario);
    recorder.record(EventKind::RunStarted {
        format: crate::trace::TRACE_FORMAT,
        run_id: spec.run_id.clone(),
        scenario: spec.scenario.name.clone(),
        strategy: spec.subject.name(),
        engine: spec.engine.kind().to_string(),
        engine_version: spec.engine.version(),
        backend: spec.substrate.name().into(),
        seed: spec.seed,
        tls: spec.tls,
        slots,
        quorum_grace_ms: quorum_grace.as_millis() as u64,
        member_fronts,
    });
    let poller = Poller::new(recorder.clone(), client_config);
    let workload = workload::Workload::start(
        recorder.clone(),
        poller.writable.clone(),
        spec.run_id.clone(),
    );
    // PD hands out timestamps: asked all run long, for T1.
    let timestamps = (spec.engine.kind() == EngineKind::Pd)
        .then(|| tso::TsoWorkload::start(recorder.clone(), poller.answering.clone()));
    let mut driver = Driver {
        recorder: recorder.clone(),
        substrate,
        subject,
        poller,
        engine: spec.engine.kind(),
        engine_config,
        timestamps_served: timestamps.as_ref().map(|t| t.served.clone()),
        engine_view,
        service,
        tls,
        token: format!("raftcert-{}", crate::util::unique_suffix() % 1_000_000_000),
        desired: 0,
        rng: spec.scenario.seed.unwrap_or(spec.seed),
        results: Vec::new(),
        replaced: BTreeMap::new(),
        held: Vec::new(),
        engine_errors_seen: 0,
        probes: Vec::new(),
        armed: Vec::new(),
        progress,
    };
    let mut outcome = driver.run_steps(spec).await;
    if outcome.is_ok()
        && let Err(e) = driver.await_acknowledged_write().await
    {
        outcome = Err(e);
    }
    workload.stop().await;
    if let Some(timestamps) = timestamps {
        timestamps.stop().await;
    }
    let (ready, abort) = match outcome {
        Ok(ready) => {
            let Driver {
                poller, substrate, ..
            } = &mut driver;
            workload::final_read(&recorder, poller, || substrate.slots(), TICK).await;
            (ready, None)
        }
        Err(e) => (None, Some(e)),
    };
    let abort = match driver.release_held().await {
        Err(e) if abort.is_none() => Some(DriveError::Invalid(format!("taking faults back: {e}"))),
        _ => abort,
    };
    // Every probe answers within its timeout: its outcome goes in before
    // the run's end.
    driver.await_probes().await;
    driver.substrate.shutdown().await;
    recorder.record(EventKind::RunFinished {
        error: abort.as_ref().map(|e| e.to_string()),
    });
    recorder.flush();
    drop(driver);
    Ok((recorder.snapshot(), ready, abort))
}

/// What a step does, as run (a rolling restart is expanded into restarts
/// of the members it found, one step each).
#[derive(Debug, Clone)]
enum Act {
    Replicas { replicas: u32, first: bool },
    Fault(FaultRef, FaultArgs),
    RestartSlot(String),
    Wait,
    Hold(Duration),
}

/// A freeze waiting for its moment (`stall`).
struct Armed {
    member: MemberSelector,
    when: Moment,
    duration: Duration,
    /// Trace position when armed: a member added after it strikes.
    from_seq: usize,
    /// Every slot's incarnation when armed: a newer one is a new start.
    incarnations: BTreeMap<String, u64>,
}

/// A fault in force, and what takes it back.
struct Held {
    /// `None`: until the step ends.
    until: Option<Instant>,
    undo: Vec<Op>,
}

struct Driver {
    recorder: Recorder,
    substrate: AnySubstrate,
    subject: Subject,
    poller: Poller,
    /// Whose start flags members get.
    engine: EngineKind,
    engine_config: Option<String>,
    /// PD: when each slot last handed out a timestamp (a step settles once
    /// every wanted member has, since it began).
    timestamps_served: Option<tso::Served>,
    engine_view: EngineView,
    service: ServiceView,
    tls: Option<TlsMaterial>,
    token: String,
    desired: u32,
    rng: u64,
    /// The deployer's last actions' results, handed back next reconcile.
    results: Vec<ActionResult>,
    /// Members a fault took away this step, with their incarnation then:
    /// the step settles only once a newer one runs (or the slot is no
    /// longer wanted).
    replaced: BTreeMap<String, u64>,
    held: Vec<Held>,
    /// Trace position up to which engine errors were looked at.
    engine_errors_seen: usize,
    /// Write probes of cuts, still waiting for their answers.
    probes: Vec<tokio::task::JoinHandle<()>>,
    /// Stalls waiting for their moment.
    armed: Vec<Armed>,
    progress: Option<Progress>,
}

impl Driver {
    /// Runs every step; returns the bootstrap's time to ready.
    async fn run_steps(&mut self, spec: &RunSpec) -> Result<Option<Duration>, DriveError> {
        let mut ready = None;
        let mut index = 0u32;
        for (i, step) in spec.scenario.steps.iter().enumerate() {
            let deadline = self.subject.settle_deadline(spec.suite.settle_for(step));
            let acts: Vec<(String, Act)> = match step.action {
                StepAction::RollingRestart => {
                    // The members wanted now, each restarted in turn; where
                    // an operator replaces a restarted pod under a new name,
                    // the names taken now still name the members to restart.
                    self.substrate
                        .wanted(self.desired)
                        .into_iter()
                        .map(|s| {
                            (
                                format!("rolling-restart {}", s.name),
                                Act::RestartSlot(s.name),
                            )
                        })
                        .collect()
                }
                StepAction::Bootstrap(n) | StepAction::Scale(n) => vec![(
                    step.action.name(),
                    Act::Replicas {
                        replicas: n,
                        first: i == 0,
                    },
                )],
                StepAction::Fault(fault, args) => {
                    vec![(step.action.name(), Act::Fault(fault, args))]
                }
                StepAction::Wait => vec![(step.action.name(), Act::Wait)],
                StepAction::Hold(d) => vec![(step.action.name(), Act::Hold(d))],
            };
            for (name, act) in acts {
                let (settled, elapsed) = self
                    .run_step(index, &name, act.clone(), step, deadline)
                    .await?;
                if matches!(act, Act::Replicas { first: true, .. }) && settled {
                    ready = Some(elapsed);
                }
                index += 1;
            }
        }
        Ok(ready)
    }

    /// Ticks until the workload has a write acknowledged after the last
    /// step (a short scenario can end before its first one), or the
    /// deadline passes; D1 says `n/a` if none ever was.
    async fn await_acknowledged_write(&mut self) -> Result<(), DriveError> {
        let from = self.recorder.recorded();
        let deadline = Instant::now() + LAST_WRITE_DEADLINE;
        let acknowledged = |e: &EventKind| matches!(e, EventKind::ClientWrite { ok: true, .. });
        while !self.recorder.any_since(from, acknowledged) && Instant::now() < deadline {
            tokio::time::sleep(TICK).await;
            self.tick().await?;
        }
        Ok(())
    }

    fn say(&self, text: &str) {
        if let Some(p) = &self.progress {
            p(text);
        }
    }

    /// Applies a step, then ticks until it settles or its deadline passes.
    async fn run_step(
        &mut self,
        index: u32,
        name: &str,
        act: Act,
        step: &Step,
        deadline: Duration,
    ) -> Result<(bool, Duration), DriveError> {
        let inject = step.inject;
        let started = Instant::now();
        let hold_until = match act {
            Act::Hold(d) => started + d,
            _ => started,
        };
        let step_seq = self.recorder.recorded();
        self.replaced.clear();
        if let Act::Replicas { replicas, .. } = act {
            self.desired = replicas;
        }
        self.recorder.record(EventKind::StepStarted {
            index,
            name: name.to_string(),
            desired_replicas: self.desired,
            deadline_ms: deadline.as_millis() as u64,
            expect_unsettled: !step.settles,
        });
        self.say(name);
        match act {
            Act::Replicas { replicas, first } => self.subject.set_replicas(replicas, first).await?,
            Act::Fault(fault, args) => self.inject(fault, &args).await?,
            Act::RestartSlot(slot) => self.apply(Op::Stop(slot)).await?,
            Act::Wait | Act::Hold(_) => {}
        }
        // Only what members report after the step began, or after its last
        // fault was taken back, counts towards settling.
        let mut fresh_since = started;
        let mut missing = Some("a fault was still held".to_string());
        // Since when the same thing has been missing.
        let mut missing_since = started;
        let mut pending = inject;
        let mut next_tick = Instant::now();
        let settled = loop {
            let results = self.tick().await?;
            if let Some(inj) = pending
                && self.due(&inj, &results, step_seq, started)
            {
                pending = None;
                self.inject(inj.fault, &inj.args).await?;
            }
            let now = Instant::now();
            let (due, later): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held)
                .into_iter()
                .partition(|h| h.until.is_some_and(|t| now >= t));
            self.held = later;
            if !due.is_empty() {
                for held in due {
                    self.undo(held).await?;
                }
                fresh_since = Instant::now();
            }
            let holding = pending.is_some() || !self.held.is_empty() || Instant::now() < hold_until;
            if !holding {
                let now_missing = self.unsettled(fresh_since);
                if now_missing.is_none() {
                    break true;
                }
                if now_missing != missing {
                    missing_since = Instant::now();
                }
                missing = now_missing;
            }
            if started.elapsed() >= deadline {
                break false;
            }
            next_tick += TICK;
            let now = Instant::now();
            if next_tick > now {
                tokio::time::sleep_until(next_tick.into()).await;
            } else {
                next_tick = now;
            }
        };
        let elapsed = started.elapsed();
        // A fault held until the step's end (no `for:`) ends here, and a
        // stall whose moment did not come is dropped.
        self.release_held().await?;
        self.armed.clear();
        if settled && let Some(grace) = self.subject.status_grace() {
            // Operators publish status after the fact: it gets a grace to
            // catch up before the step ends and I9 compares.
            let until = Instant::now() + grace;
            while !crate::subject::operator::status_agrees(&self.recorder.snapshot())
                && Instant::now() < until
            {
                tokio::time::sleep(TICK).await;
                self.tick().await?;
            }
        }
        self.recorder.record(EventKind::StepFinished {
            index,
            name: name.to_string(),
            settled,
            elapsed_ms: elapsed.as_millis() as u64,
            detail: (!settled).then(|| {
                format!(
                    "not settled at the deadline: {}, for the last {:.1}s",
                    missing.as_deref().unwrap_or("unknown"),
                    missing_since.elapsed().as_secs_f64()
                )
            }),
            desired_slots: Some(
                self.substrate
                    .wanted(self.desired)
                    .into_iter()
                    .map(|s| s.name)
                    .collect(),
            ),
        });
        Ok((settled, elapsed))
    }

    /// Whether a mid-step fault's trigger has happened: a member added
    /// since the step started (a deployer's call, or any member's log), or
    /// its delay passed.
    fn due(
        &self,
        inject: &Inject,
        results: &[ActionResult],
        step_seq: usize,
        started: Instant,
    ) -> bool {
        match inject.after {
            Trigger::After(delay) => started.elapsed() >= delay,
            Trigger::AfterMemberAdd => {
                results
                    .iter()
                    .any(|r| r.ok && matches!(r.action, Action::MemberAdd { .. }))
                    || self.recorder.any_since(step_seq, |e| {
                        matches!(
                            e,
                            EventKind::MembershipApplied {
                                op: MembershipOp::Add | MembershipOp::AddLearner,
                                ..
                            }
                        )
                    })
            }
        }
    }

    /// One round: restart policy, poll, and a deployer's reconcile with its
    /// actions carried out. Returns the actions' results.
    async fn tick(&mut self) -> Result<Vec<ActionResult>, DriveError> {
        self.substrate.tick().await;
        if let Some(problem) = self.substrate.environment_problem() {
            return Err(DriveError::Environment(problem));
        }
        let bind_failure = |e: &EventKind| {
            matches!(
                e,
                EventKind::EngineError {
                    class: EngineErrorClass::AddressInUse,
                    ..
                }
            )
        };
        if self
            .recorder
            .any_since(self.engine_errors_seen, bind_failure)
        {
            let problem = self.recorder.snapshot().events[self.engine_errors_seen..]
                .iter()
                .find_map(|e| match &e.kind {
                    EventKind::EngineError {
                        slot,
                        class: EngineErrorClass::AddressInUse,
                        message,
                    } => Some(format!("{slot}: {message}")),
                    _ => None,
                })
                .unwrap_or_default();
            return Err(DriveError::Environment(problem));
        }
        self.engine_errors_seen = self.recorder.recorded();
        // A restart by the restart policy is a start a stall waits for.
        self.strike_armed(&[]).await?;
        self.poller.observe(&self.substrate.slots()).await;
        if !matches!(self.subject, Subject::Deployer(_)) {
            return Ok(Vec::new());
        }
        let observation = self.observation();
        let Subject::Deployer(deployer) = &mut self.subject else {
            return Ok(Vec::new());
        };
        deployer.reconciles += 1;
        let actions = deployer.reconcile(&observation).map_err(|e| {
            let message = e.to_string();
            record_deployer_error(&self.recorder, &message);
            DriveError::Deployer(message)
        })?;
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
        let mut results = Vec::new();
        for action in actions {
            let result = self.execute(action).await?;
            let struck = std::slice::from_ref(&result);
            // Right after the start (or the add) it waits for, not a tick
            // later: that moment is what a stall is for.
            if result.ok {
                self.strike_armed(struck).await?;
            }
            results.push(result);
        }
        if touched_membership {
            // Show the change on the next reconcile, not a poll later.
            self.poller.observe(&self.substrate.slots()).await;
        }
        self.results = results.clone();
        Ok(results)
    }

    async fn execute(&mut self, action: Action) -> Result<ActionResult, DriveError> {
        let outcome = match &action {
            Action::Start { slot, spec } => match self.substrate.start(slot, spec.clone()).await {
                // A command the machine does not have is its fault.
                Err(SubstrateError::Spawn {
                    slot,
                    command,
                    source,
                }) if source.kind() == std::io::ErrorKind::NotFound => {
                    return Err(DriveError::Environment(format!(
                        "cannot start {command} in slot {slot}: {source}"
                    )));
                }
                outcome => outcome,
            },
            Action::Stop { slot } => self.substrate.stop(slot).await,
            Action::Wipe { slot } => self.substrate.wipe(slot).await,
            _ => return Ok(self.membership(action).await),
        };
        Ok(ActionResult {
            action,
            ok: outcome.is_ok(),
            error: outcome.err().map(|e| e.to_string()),
            member_id: None,
        })
    }

    /// A deployer's membership call, through the leader if known.
    async fn membership(&mut self, action: Action) -> ActionResult {
        let Some((via, client)) = self.poller.admin_client(MEMBERSHIP_TIMEOUT) else {
            return ActionResult {
                action,
                ok: false,
                error: Some("no member answers".into()),
                member_id: None,
            };
        };
        let parse_id = |id: &str| parse_hex_id(id).ok_or_else(|| format!("bad member id {id:?}"));
        let (op, peer_url, target, outcome) = match &action {
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
                (
                    MembershipOp::Remove,
                    None,
                    Some(id.clone()),
                    r.map(|m| (None, m)),
                )
            }
            Action::MemberPromote { id } => {
                let r = match parse_id(id) {
                    Ok(n) => client.member_promote(n).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                (
                    MembershipOp::Promote,
                    None,
                    Some(id.clone()),
                    r.map(|m| (None, m)),
                )
            }
            Action::Start { .. } | Action::Stop { .. } | Action::Wipe { .. } => {
                return ActionResult {
                    action,
                    ok: false,
                    error: Some("not a membership action".into()),
                    member_id: None,
                };
            }
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
            self.poller.take_answer(via, cluster_id, members);
        }
        ActionResult {
            action,
            ok,
            error,
            member_id: new_id,
        }
    }

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
            observe_url: s.observe_url.clone(),
            data_dir: endpoints.data_dir.clone(),
            base_args: self.engine.base_args(
                &endpoints,
                self.tls.as_ref(),
                self.engine_config.as_deref(),
            ),
            phase: s.phase,
            has_data: self.substrate.has_data(s),
            restarts: s.restarts,
            last_exit: s.last_exit.clone(),
            spec: s.spec.clone(),
        }
    }

    fn observation(&self) -> Observation {
        let seq = match &self.subject {
            Subject::Deployer(d) => d.reconciles + 1,
            Subject::Operator(_) => 0,
        };
        Observation {
            protocol: PROTOCOL_VERSION,
            seq,
            engine: self.engine_view.clone(),
            token: self.token.clone(),
            service: self.service.clone(),
            desired_replicas: self.desired,
            slots: self
                .substrate
                .slots()
                .iter()
                .map(|s| self.slot_view(s))
                .collect(),
            members: self.poller.members.as_ref().map(|m| MembersView {
                cluster_id: m.cluster_id.clone(),
                via: m.via.clone(),
                age_ms: m.at.elapsed().as_millis() as u64,
                members: m.members.clone(),
                cluster_version: self
                    .poller
                    .cluster_versions
                    .get(&m.via)
                    .map(|(_, v)| v.clone()),
            }),
            results: self.results.clone(),
        }
    }

    /// What is still missing for the step to settle, if anything (see
    /// [`settle::unsettled`]).
    fn unsettled(&self, since: Instant) -> Option<String> {
        let slots = self.substrate.slots();
        let wanted = self.substrate.wanted(self.desired);
        let timestamps = self
            .timestamps_served
            .as_ref()
            .map(|served| served.lock().unwrap_or_else(|p| p.into_inner()).clone());
        settle::unsettled(
            &settle::Seen {
                idle: self.subject.idle(),
                desired: self.desired,
                slots: &slots,
                wanted: &wanted,
                replaced: &self.replaced,
                statuses: &self.poller.statuses,
                members: self.poller.members.as_ref(),
                timestamps: timestamps.as_ref(),
            },
            since,
        )
    }

    /// The slot a selector names among the wanted members, if one does now.
    fn select(&mut self, selector: MemberSelector) -> Result<Option<String>, DriveError> {
        let wanted: Vec<String> = self
            .substrate
            .wanted(self.desired)
            .into_iter()
            .map(|s| s.name)
            .collect();
        let leader = self.poller.leader_slot().filter(|l| wanted.contains(l));
        Ok(match selector {
            MemberSelector::Ordinal(o) => match wanted.get(o as usize) {
                Some(slot) => Some(slot.clone()),
                None => {
                    return Err(DriveError::Invalid(format!(
                        "member {o} does not exist: the step wants {} members",
                        wanted.len()
                    )));
                }
            },
            MemberSelector::Leader => leader,
            // The first member that is not the leader, once one is known.
            MemberSelector::Follower => leader.and_then(|l| wanted.into_iter().find(|s| *s != l)),
            MemberSelector::Random => {
                self.rng = crate::util::splitmix64(self.rng);
                let n = wanted.len() as u64;
                (n > 0).then(|| wanted[(self.rng % n) as usize].clone())
            }
        })
    }

    /// The slot a selector names, ticking meanwhile: `leader` and
    /// `follower` need a fresh status that names a leader.
    async fn resolve(&mut self, selector: MemberSelector) -> Result<String, DriveError> {
        let deadline = Instant::now() + RESOLVE_DEADLINE;
        loop {
            if let Some(slot) = self.select(selector)? {
                return Ok(slot);
            }
            if Instant::now() >= deadline {
                return Err(DriveError::NoMember(selector.describe()));
            }
            tokio::time::sleep(TICK).await;
            self.tick().await?;
        }
    }

    /// Resolves a fault's targets, applies its plan and holds its undo.
    async fn inject(&mut self, fault: FaultRef, args: &FaultArgs) -> Result<(), DriveError> {
        let mut members = Vec::new();
        let at_its_moment = fault.targeting() == Targeting::MemberAtItsMoment;
        for selector in args.selectors().into_iter().filter(|_| !at_its_moment) {
            let slot = self.resolve(selector).await?;
            if !members.contains(&slot) {
                members.push(slot);
            }
        }
        if fault.targeting() == Targeting::Wanted {
            members = self
                .substrate
                .wanted(self.desired)
                .into_iter()
                .map(|s| s.name)
                .collect();
        }
        let rest = self
            .substrate
            .slots()
            .into_iter()
            .filter(|s| s.phase == Phase::Running && !members.contains(&s.info.name))
            .map(|s| s.info.name)
            .collect();
        let plan = fault.plan(args, &Targets { members, rest });
        for op in plan.apply.iter().cloned() {
            self.apply(op).await?;
        }
        // A fault holds for `for:` once it is in force, however long it
        // took to apply (a cut through a kind node takes seconds).
        let applied_at = Instant::now();
        // A stall holds only from its moment on (`strike_armed`), and an
        // armed one does not keep its step from settling.
        let armed = plan.apply.iter().any(|op| matches!(op, Op::Stall { .. }));
        if !plan.undo.is_empty() && !armed {
            self.held.push(Held {
                until: args.duration.map(|d| applied_at + d),
                undo: plan.undo,
            });
        }
        Ok(())
    }

    /// Freezes every armed member whose moment has come: a start newer
    /// than the arming, or a member added since (by one of `results`, or
    /// in any member's log); it thaws `for:` later.
    async fn strike_armed(&mut self, results: &[ActionResult]) -> Result<(), DriveError> {
        if self.armed.is_empty() {
            return Ok(());
        }
        let slots = self.substrate.slots();
        let added_by_call = results
            .iter()
            .any(|r| r.ok && matches!(r.action, Action::MemberAdd { .. }));
        let mut waiting = Vec::new();
        for armed in std::mem::take(&mut self.armed) {
            // The member is whoever the selector names now; a member that
            // does not exist yet (a joiner to be) is waited for.
            let Ok(Some(slot)) = self.select(armed.member) else {
                waiting.push(armed);
                continue;
            };
            let struck = match armed.when {
                Moment::Start => slots.iter().any(|s| {
                    s.info.name == slot
                        && s.phase == Phase::Running
                        && s.incarnation > armed.incarnations.get(&slot).copied().unwrap_or(0)
                }),
                Moment::MemberAdd => {
                    added_by_call
                        || self.recorder.any_since(armed.from_seq, |e| {
                            matches!(
                                e,
                                EventKind::MembershipApplied {
                                    op: MembershipOp::Add | MembershipOp::AddLearner,
                                    ..
                                }
                            )
                        })
                }
            };
            if !struck {
                waiting.push(armed);
                continue;
            }
            self.apply(Op::Freeze(slot.clone())).await?;
            self.held.push(Held {
                until: Some(Instant::now() + armed.duration),
                undo: vec![Op::Thaw(slot)],
            });
        }
        self.armed.extend(waiting);
        Ok(())
    }

    /// Records one operation, then applies it.
    async fn apply(&mut self, op: Op) -> Result<(), DriveError> {
        if matches!(op, Op::Heal) {
            // A cut's probes are judged while it holds: its heal waits for
            // their answers (each bounded by its dial and call timeouts).
            self.await_probes().await;
        }
        match &op {
            Op::Cut { isolated, rest } => self.recorder.record_cut(isolated, rest),
            _ => self.recorder.record(EventKind::FaultInjected {
                fault: op.trace_name(),
                slot: op.slot().map(str::to_string),
            }),
        }
        if op.replaces_member()
            && let Some(slot) = op.slot()
        {
            let incarnation = self
                .substrate
                .slots()
                .iter()
                .find(|s| s.info.name == slot)
                .map_or(0, |s| s.incarnation);
            self.replaced.insert(slot.to_string(), incarnation);
        }
        match &op {
            Op::CrashSubject => {
                self.results.clear();
                self.subject.crash().await?;
            }
            Op::Stall {
                member,
                when,
                duration,
            } => self.armed.push(Armed {
                member: *member,
                when: *when,
                duration: *duration,
                from_seq: self.recorder.recorded(),
                incarnations: self
                    .substrate
                    .slots()
                    .into_iter()
                    .map(|s| (s.info.name, s.incarnation))
                    .collect(),
            }),
            _ => self.substrate.apply(&op).await?,
        }
        match &op {
            Op::Heal => self.recorder.record(EventKind::NetworkHealed),
            Op::Cut { isolated, rest } => {
                // In the background: the driver goes on polling while the
                // probes wait out their timeout on the side without quorum.
                let slots = self.substrate.slots();
                let voters = self.poller.voters(&slots);
                let targets = self.poller.probe_targets(&slots);
                let recorder = self.recorder.clone();
                let (isolated, rest) = (isolated.clone(), rest.clone());
                self.probes.push(tokio::spawn(async move {
                    let clients = targets.connect().await;
                    workload::probe_writes(&recorder, &clients, &voters, &isolated, &rest).await;
                }));
            }
            _ => {}
        }
        Ok(())
    }

    /// Waits for every write probe sent so far to record its answer.
    async fn await_probes(&mut self) {
        for probe in std::mem::take(&mut self.probes) {
            let _ = probe.await;
        }
    }

    async fn undo(&mut self, held: Held) -> Result<(), DriveError> {
        for op in held.undo {
            self.apply(op).await?;
        }
        Ok(())
    }

    /// Takes back every fault still held; the first failure is returned
    /// after all were tried.
    async fn release_held(&mut self) -> Result<(), DriveError> {
        let mut first_error = None;
        for held in std::mem::take(&mut self.held) {
            if let Err(e) = self.undo(held).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Path of a run's directory inside the report directory.
pub fn run_dir_name(
    scenario: &str,
    subject: &str,
    engine: &EngineChoice,
    tls: bool,
    substrate: &SubstrateChoice,
) -> String {
    format!(
        "runs/{}-{}-{}{}{}",
        scenario,
        subject,
        engine.version(),
        if tls { "-tls" } else { "" },
        match substrate {
            SubstrateChoice::Process => "",
            SubstrateChoice::Docker { .. } => "-docker",
            SubstrateChoice::Kube(_) => "-kube",
        }
    )
}
