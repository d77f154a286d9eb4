//! Cluster state over time, reconstructed from a trace; shared by the checks.
//!
//! Positions (`pos`) are indexes into `Trace::events`; the trace is in
//! recording order, so positions order events even when `t_ms` ties.

use crate::trace::{
    Event, EventKind, FaultKind, MemberInfo, MembershipOp, SlotInfo, StartConfig, Trace,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Conf changes this much older than a member list are replayed over it
/// too: a list polled from a follower can lag a change by a moment, and
/// replaying an already-applied change is harmless.
const LIST_LAG_MS: u64 = 2_000;

/// URLs compare without a trailing slash.
pub fn norm_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

pub fn url_set<'u>(urls: impl IntoIterator<Item = &'u String>) -> BTreeSet<String> {
    urls.into_iter().map(|u| norm_url(u)).collect()
}

/// `a,b,c` for messages.
pub fn commas<'s>(items: impl IntoIterator<Item = &'s String>) -> String {
    items
        .into_iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

/// `m0=http://..,m1=http://..`, the shape of etcd's flag.
pub fn fmt_initial_cluster(cluster: &BTreeMap<String, Vec<String>>) -> String {
    cluster
        .iter()
        .flat_map(|(name, urls)| urls.iter().map(move |u| format!("{name}={u}")))
        .collect::<Vec<_>>()
        .join(",")
}

/// The members of a `MemberList` event.
pub fn members_of(e: &Event) -> &[MemberInfo] {
    match &e.kind {
        EventKind::MemberList { members, .. } => members,
        _ => &[],
    }
}

/// The slot an event is about, for the per-slot events.
pub fn slot_of_event(kind: &EventKind) -> Option<&str> {
    match kind {
        EventKind::ProcessStarted { slot, .. }
        | EventKind::ProcessExited { slot, .. }
        | EventKind::SlotDeleted { slot }
        | EventKind::DataWiped { slot }
        | EventKind::MemberStart { slot, .. }
        | EventKind::LocalMember { slot, .. }
        | EventKind::MemberStatus { slot, .. }
        | EventKind::EngineError { slot, .. } => Some(slot),
        EventKind::MemberList { via, .. } => Some(via),
        _ => None,
    }
}

/// The identity of a genesis configuration: initial cluster and token.
pub type GenesisKey = (BTreeMap<String, BTreeSet<String>>, String);

pub fn genesis_key(cfg: &StartConfig) -> GenesisKey {
    let cluster = cfg
        .initial_cluster
        .iter()
        .map(|(name, urls)| (name.clone(), url_set(urls)))
        .collect();
    (cluster, cfg.initial_cluster_token.clone())
}

/// One scenario step, by positions in the trace.
#[derive(Debug, Clone)]
pub struct Step {
    pub index: u32,
    pub name: String,
    pub desired: u32,
    /// Desired replicas of the step before, if any.
    pub prev_desired: Option<u32>,
    pub start: usize,
    pub end: Option<usize>,
    pub settled: bool,
    /// The slots wanted at the step's end, when the trace names them.
    pub desired_slots: Option<BTreeSet<String>>,
}

impl Step {
    pub fn label(&self) -> String {
        format!("step {} ({})", self.index, self.name)
    }
    pub fn contains(&self, pos: usize) -> bool {
        pos >= self.start && self.end.is_none_or(|e| pos <= e)
    }
}

/// Whether a slot is wanted at the end of a step: the one the trace names,
/// or else the first `desired` ordinals.
pub fn is_desired(slot: &SlotInfo, step: &Step) -> bool {
    match &step.desired_slots {
        Some(names) => names.contains(&slot.name),
        None => slot.ordinal < step.desired,
    }
}

/// A membership change, from a successful call or from an engine log.
#[derive(Debug, Clone)]
pub struct ConfChange {
    pub pos: usize,
    pub add: bool,
    pub id: Option<String>,
    pub urls: BTreeSet<String>,
}

/// A time span during which a harness fault may legitimately hurt.
#[derive(Debug, Clone)]
pub struct FaultWindow {
    pub pos: usize,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// Member IDs to peer URLs; unknown IDs are keyed by their URLs.
#[derive(Debug, Clone, Default)]
pub struct Membership {
    entries: BTreeMap<String, BTreeSet<String>>,
}

impl Membership {
    fn from_list(members: &[MemberInfo]) -> Self {
        let mut m = Membership::default();
        for member in members {
            m.entries
                .insert(member.id.clone(), url_set(&member.peer_urls));
        }
        m
    }

    fn pseudo_key(urls: &BTreeSet<String>) -> String {
        format!("?{}", commas(urls))
    }

    fn add(&mut self, id: Option<&str>, urls: BTreeSet<String>) {
        // etcd refuses to add a URL in use, so a successful add supersedes
        // whatever held those URLs before.
        self.entries.retain(|_, held| held.is_disjoint(&urls));
        let key = id.map_or_else(|| Self::pseudo_key(&urls), str::to_string);
        self.entries.insert(key, urls);
    }

    fn remove(&mut self, id: &str, known_urls: Option<&BTreeSet<String>>) {
        if self.entries.remove(id).is_some() {
            return;
        }
        // Genesis members may be known only by URL.
        if let Some(urls) = known_urls {
            self.entries
                .retain(|key, held| !key.starts_with('?') || held.is_disjoint(urls));
        }
    }

    pub fn peer_urls(&self) -> BTreeSet<String> {
        self.entries.values().flatten().cloned().collect()
    }
}

/// One reconstruction of the membership at some point.
#[derive(Debug, Clone)]
pub struct MembershipView {
    pub members: Membership,
    /// The member list it starts from, if any.
    pub base: Option<usize>,
    /// Conf changes replayed over the base.
    pub replayed: Vec<usize>,
}

pub struct Model<'a> {
    pub events: &'a [Event],
    pub slots: Vec<SlotInfo>,
    /// Client URLs in front of the members (Services), normalised.
    pub member_fronts: Vec<String>,
    pub steps: Vec<Step>,
    /// Positions of member lists, with whether their via knew a leader.
    lists: Vec<(usize, bool)>,
    id_urls: HashMap<String, BTreeSet<String>>,
    conf_changes: Vec<ConfChange>,
    /// The genesis start that defines the cluster.
    pub genesis: Option<usize>,
}

impl<'a> Model<'a> {
    pub fn new(trace: &'a Trace) -> Self {
        let events = &trace.events[..];
        let slots = trace.slots();
        let mut model = Model {
            events,
            slots,
            member_fronts: trace.member_fronts().iter().map(|f| norm_url(f)).collect(),
            steps: Vec::new(),
            lists: Vec::new(),
            id_urls: HashMap::new(),
            conf_changes: Vec::new(),
            genesis: None,
        };
        model.scan();
        model.genesis = model.find_genesis();
        model
    }

    fn scan(&mut self) {
        let mut leader_known: HashMap<&str, bool> = HashMap::new();
        let mut seen_changes: HashSet<(bool, String)> = HashSet::new();
        for (pos, e) in self.events.iter().enumerate() {
            match &e.kind {
                EventKind::StepStarted {
                    index,
                    name,
                    desired_replicas,
                    ..
                } => {
                    let prev_desired = self.steps.last().map(|s| s.desired);
                    self.steps.push(Step {
                        index: *index,
                        name: name.clone(),
                        desired: *desired_replicas,
                        prev_desired,
                        start: pos,
                        end: None,
                        settled: false,
                        desired_slots: None,
                    });
                }
                EventKind::StepFinished {
                    settled,
                    desired_slots,
                    ..
                } => {
                    if let Some(step) = self.steps.iter_mut().rev().find(|s| s.end.is_none()) {
                        step.end = Some(pos);
                        step.settled = *settled;
                        step.desired_slots = desired_slots
                            .as_ref()
                            .map(|names| names.iter().cloned().collect());
                    }
                }
                EventKind::ProcessStarted { slot, .. } => {
                    leader_known.insert(slot, false);
                }
                EventKind::MemberStatus { slot, leader, .. } => {
                    leader_known.insert(slot, leader != "0");
                }
                EventKind::MemberList { via, members, .. } => {
                    let knows = leader_known.get(via.as_str()).copied().unwrap_or(false);
                    self.lists.push((pos, knows));
                    for m in members {
                        self.learn(&m.id, &m.peer_urls);
                    }
                }
                EventKind::LocalMember {
                    slot, member_id, ..
                } => {
                    if let Some(url) = self.slot(slot).map(|s| s.peer_url.clone()) {
                        self.learn(member_id, std::slice::from_ref(&url));
                    }
                }
                EventKind::MembershipCall {
                    op,
                    peer_url,
                    member_id,
                    ok: true,
                    ..
                } => {
                    let urls: Vec<String> = peer_url.iter().cloned().collect();
                    if let Some(id) = member_id
                        && matches!(op, MembershipOp::Add | MembershipOp::AddLearner)
                    {
                        self.learn(id, &urls);
                    }
                    self.conf_change(pos, *op, member_id.as_deref(), &urls, &mut seen_changes);
                }
                EventKind::MembershipApplied {
                    op,
                    member_id,
                    peer_urls,
                    ..
                } => {
                    if matches!(op, MembershipOp::Add | MembershipOp::AddLearner) {
                        self.learn(member_id, peer_urls);
                    }
                    self.conf_change(pos, *op, Some(member_id), peer_urls, &mut seen_changes);
                }
                _ => {}
            }
        }
    }

    fn learn(&mut self, id: &str, urls: &[String]) {
        if id.is_empty() || urls.is_empty() {
            return;
        }
        self.id_urls
            .entry(id.to_string())
            .or_default()
            .extend(urls.iter().map(|u| norm_url(u)));
    }

    fn conf_change(
        &mut self,
        pos: usize,
        op: MembershipOp,
        id: Option<&str>,
        urls: &[String],
        seen: &mut HashSet<(bool, String)>,
    ) {
        let add = match op {
            MembershipOp::Add | MembershipOp::AddLearner => true,
            MembershipOp::Remove => false,
            MembershipOp::Promote => return,
        };
        if let Some(id) = id {
            // Every member logs each change, and joiners replay history:
            // only the first sighting is the change itself.
            if !seen.insert((add, id.to_string())) {
                return;
            }
        } else if !add {
            return;
        }
        self.conf_changes.push(ConfChange {
            pos,
            add,
            id: id.map(str::to_string),
            urls: url_set(urls),
        });
    }

    /// The first genesis start that created a member (earlier attempts that
    /// died before writing a WAL created nothing), else the first at all.
    fn find_genesis(&self) -> Option<usize> {
        let starts: Vec<usize> = self
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(&e.kind, EventKind::MemberStart { config, .. } if config.is_genesis()))
            .map(|(pos, _)| pos)
            .collect();
        starts
            .iter()
            .copied()
            .find(|&p| self.produced_member(p).is_some())
            .or_else(|| starts.first().copied())
    }

    pub fn genesis_config(&self) -> Option<&'a StartConfig> {
        match self.genesis.map(|p| &self.events[p].kind) {
            Some(EventKind::MemberStart { config, .. }) => Some(config),
            _ => None,
        }
    }

    /// Whether the `MemberStart` at `pos` is one of the genesis group: a
    /// `new` start with the genesis configuration, or an earlier attempt
    /// that died before writing a WAL and so created nothing.
    pub fn in_genesis_group(&self, pos: usize) -> bool {
        let (Some(gpos), Some(gcfg)) = (self.genesis, self.genesis_config()) else {
            return false;
        };
        match self.events.get(pos).map(|e| &e.kind) {
            Some(EventKind::MemberStart { config, .. }) if config.is_genesis() => {
                genesis_key(config) == genesis_key(gcfg)
                    || (pos < gpos && self.produced_member(pos).is_none())
            }
            _ => false,
        }
    }

    /// Events in `from..to`, empty when the range is backwards.
    pub fn span(&self, from: usize, to: usize) -> &'a [Event] {
        self.events.get(from..to).unwrap_or(&[])
    }

    /// Removals, each at its first sighting.
    pub fn removals(&self) -> impl Iterator<Item = &ConfChange> {
        self.conf_changes.iter().filter(|c| !c.add)
    }

    /// Position of the first removal of member `id` (call or engine log).
    pub fn removal_of(&self, id: &str) -> Option<usize> {
        self.removals()
            .find(|c| c.id.as_deref() == Some(id))
            .map(|c| c.pos)
    }

    /// The `LocalMember` logged by the process of the `MemberStart` at `pos`.
    pub fn produced_member(&self, pos: usize) -> Option<usize> {
        let slot = slot_of_event(&self.events.get(pos)?.kind)?;
        for (p, e) in self.events.iter().enumerate().skip(pos + 1) {
            match &e.kind {
                EventKind::LocalMember { slot: s, .. } if s == slot => return Some(p),
                EventKind::MemberStart { slot: s, .. }
                | EventKind::ProcessStarted { slot: s, .. }
                    if s == slot =>
                {
                    return None;
                }
                _ => {}
            }
        }
        None
    }

    pub fn slot(&self, name: &str) -> Option<&SlotInfo> {
        self.slots.iter().find(|s| s.name == name)
    }

    pub fn slot_of_url(&self, url: &str) -> Option<&SlotInfo> {
        let url = norm_url(url);
        self.slots.iter().find(|s| norm_url(&s.peer_url) == url)
    }

    pub fn slot_of_member(&self, m: &MemberInfo) -> Option<&SlotInfo> {
        m.peer_urls.iter().find_map(|u| self.slot_of_url(u))
    }

    pub fn slot_of_id(&self, id: &str) -> Option<&SlotInfo> {
        self.id_urls
            .get(id)?
            .iter()
            .find_map(|u| self.slot_of_url(u))
    }

    /// `a1 (m1)`, or the URL when no slot owns it.
    pub fn describe_member(&self, m: &MemberInfo) -> String {
        let who = match self.slot_of_member(m) {
            Some(s) => s.name.clone(),
            None => commas(&m.peer_urls),
        };
        let state = if m.is_started() { "" } else { ", unstarted" };
        format!("{} ({who}{state})", m.id)
    }

    /// The step an event belongs to for "by the end of its step": its own
    /// step, or the next one when it falls between steps. `None` when that
    /// step never finished or there is none (shutdown).
    pub fn finishing_step(&self, pos: usize) -> Option<&Step> {
        self.steps.iter().find(|s| s.end.is_some_and(|e| e >= pos))
    }

    /// The last step started at or before `pos` (finished or not).
    pub fn step_context(&self, pos: usize) -> Option<&Step> {
        self.steps.iter().rev().find(|s| s.start <= pos)
    }

    pub fn last_step_end(&self) -> Option<usize> {
        self.steps.iter().filter_map(|s| s.end).max()
    }

    /// The member list in force just before `before`: the latest from a
    /// member that knew a leader (a stray member's view is not the
    /// cluster's), else the latest at all.
    pub fn latest_list(&self, before: usize) -> Option<&'a Event> {
        self.latest_list_pos(before).map(|p| &self.events[p])
    }

    pub fn latest_list_pos(&self, before: usize) -> Option<usize> {
        let n = self.lists.partition_point(|(p, _)| *p < before);
        let candidates = &self.lists[..n];
        candidates
            .iter()
            .rev()
            .find(|(_, knows)| *knows)
            .or_else(|| candidates.last())
            .map(|(p, _)| *p)
    }

    /// The member list in force at a step's end.
    pub fn list_at_end(&self, step: &Step) -> Option<&'a Event> {
        self.latest_list(step.end? + 1)
    }

    /// Reconstructions of the membership just before `pos`: from the latest
    /// member list plus later changes, and from the genesis configuration
    /// plus every change. Each is exact when its sources are complete.
    pub fn membership_views(&self, pos: usize) -> Vec<MembershipView> {
        let changes: Vec<&ConfChange> = self.conf_changes.iter().filter(|c| c.pos < pos).collect();
        let mut views = Vec::new();
        if let Some(base) = self.latest_list_pos(pos) {
            let list = &self.events[base];
            let since = list.t_ms.saturating_sub(LIST_LAG_MS);
            let mut view = MembershipView {
                members: Membership::from_list(members_of(list)),
                base: Some(base),
                replayed: Vec::new(),
            };
            for c in changes.iter().filter(|c| self.events[c.pos].t_ms >= since) {
                self.replay(&mut view, c);
            }
            views.push(view);
        }
        let mut view = MembershipView {
            members: Membership::default(),
            base: None,
            replayed: Vec::new(),
        };
        if let Some(g) = self.genesis.filter(|g| *g < pos)
            && let Some(cfg) = self.genesis_config()
        {
            view.base = Some(g);
            for urls in cfg.initial_cluster.values() {
                view.members.add(None, url_set(urls));
            }
        }
        for c in &changes {
            self.replay(&mut view, c);
        }
        views.push(view);
        views
    }

    fn replay(&self, view: &mut MembershipView, c: &ConfChange) {
        match (&c.id, c.add) {
            (id, true) => {
                let urls = match id {
                    Some(id) if c.urls.is_empty() => {
                        self.id_urls.get(id).cloned().unwrap_or_default()
                    }
                    _ => c.urls.clone(),
                };
                view.members.add(id.as_deref(), urls);
            }
            (Some(id), false) => view.members.remove(id, self.id_urls.get(id)),
            (None, false) => return,
        }
        view.replayed.push(c.pos);
    }

    /// Faults that may hurt members, each until the end of its step.
    pub fn fault_windows(&self) -> Vec<FaultWindow> {
        let end_of_trace = self.events.last().map_or(0, |e| e.t_ms);
        self.events
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                matches!(&e.kind, EventKind::FaultInjected { fault, .. } if *fault != FaultKind::CRASH_DEPLOYER)
            })
            .map(|(pos, e)| FaultWindow {
                pos,
                start_ms: e.t_ms,
                end_ms: self
                    .finishing_step(pos)
                    .and_then(|s| s.end)
                    .map_or(end_of_trace, |end| self.events[end].t_ms),
            })
            .collect()
    }
}

/// Which slots have a live, unfrozen process, followed event by event.
#[derive(Debug, Default)]
pub struct Procs {
    running: HashSet<String>,
    frozen: HashSet<String>,
    incarnation: HashMap<String, u32>,
}

impl Procs {
    pub fn apply(&mut self, kind: &EventKind) {
        match kind {
            EventKind::ProcessStarted { slot, .. } => {
                self.running.insert(slot.clone());
                self.frozen.remove(slot);
                *self.incarnation.entry(slot.clone()).or_default() += 1;
            }
            EventKind::ProcessExited { slot, .. } | EventKind::SlotDeleted { slot } => {
                self.running.remove(slot);
                self.frozen.remove(slot);
            }
            // SIGSTOP on a slot with no process changes nothing.
            EventKind::FaultInjected {
                fault,
                slot: Some(slot),
            } if *fault == FaultKind::FREEZE && self.running.contains(slot) => {
                self.frozen.insert(slot.clone());
            }
            EventKind::FaultInjected {
                fault,
                slot: Some(slot),
            } if *fault == FaultKind::THAW => {
                self.frozen.remove(slot);
            }
            _ => {}
        }
    }

    pub fn is_up(&self, slot: &str) -> bool {
        self.running.contains(slot) && !self.frozen.contains(slot)
    }

    /// Whether any process runs (frozen or not).
    pub fn any_running(&self) -> bool {
        !self.running.is_empty()
    }

    pub fn is_frozen(&self, slot: &str) -> bool {
        self.frozen.contains(slot)
    }

    /// How many processes the slot has started so far.
    pub fn incarnation(&self, slot: &str) -> u32 {
        self.incarnation.get(slot).copied().unwrap_or(0)
    }
}
