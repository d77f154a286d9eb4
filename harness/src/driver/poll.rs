//! The poller: every tick, each running member is asked for its status and
//! member list at once, through a client pinned to it (never auto-synced).
//! The trace gets `member-status` on a change of identity, leader or term
//! (progress every 2 s) and `member-list` when a member's list changes;
//! this is the same on every substrate.

use crate::engine::etcd::{ClientConfig, MemberClient, Status};
use crate::model::Phase;
use crate::substrate::SlotState;
use crate::trace::{EventKind, MemberInfo, Recorder};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Progress of index and revision is recorded at most this often.
const STATUS_PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// The last member list observed: when, through which member.
#[derive(Debug, Clone)]
pub struct ObservedMembers {
    pub at: Instant,
    pub via: String,
    pub cluster_id: String,
    pub members: Vec<MemberInfo>,
}

/// One member's latest answer.
#[derive(Debug, Clone)]
pub struct ObservedStatus {
    pub at: Instant,
    /// The slot's incarnation when it answered.
    pub incarnation: u64,
    pub status: Status,
}

struct Polled {
    slot: String,
    incarnation: u64,
    status: Option<Status>,
    members: Option<(String, Vec<MemberInfo>)>,
    /// Asked only until the member reports a decided version.
    cluster_version: Option<String>,
}

pub struct Poller {
    recorder: Recorder,
    config: ClientConfig,
    clients: BTreeMap<String, (u64, MemberClient)>,
    /// Members that answered the last round.
    pub statuses: BTreeMap<String, ObservedStatus>,
    recorded_status: BTreeMap<String, ObservedStatus>,
    recorded_lists: BTreeMap<String, (String, Vec<MemberInfo>)>,
    /// The last list seen: a cluster without quorum refuses even member
    /// listing, so "nobody answers" keeps what was known, with its age.
    pub members: Option<ObservedMembers>,
    /// Decided cluster version per slot and incarnation.
    pub cluster_versions: BTreeMap<String, (u64, String)>,
    /// Clients of members that can take writes, for the workload.
    pub writable: Arc<Mutex<Vec<MemberClient>>>,
    /// (slot, client URL) of every running member that answered the last
    /// round, for PD's timestamp workload.
    pub answering: Arc<Mutex<Vec<(String, String)>>>,
}

impl Poller {
    pub fn new(recorder: Recorder, config: ClientConfig) -> Self {
        Poller {
            recorder,
            config,
            clients: BTreeMap::new(),
            statuses: BTreeMap::new(),
            recorded_status: BTreeMap::new(),
            recorded_lists: BTreeMap::new(),
            members: None,
            cluster_versions: BTreeMap::new(),
            writable: Arc::default(),
            answering: Arc::default(),
        }
    }

    /// The client of a member that answered the last round.
    pub fn client(&self, slot: &str) -> Option<MemberClient> {
        self.statuses.get(slot)?;
        self.clients.get(slot).map(|(_, c)| c.clone())
    }

    /// Every member's client for a write probe after a cut, answering or
    /// not: the cached one of its incarnation (a frozen member's too: its
    /// probe times out, which is a refusal), else a running member to dial
    /// (a status poll that timed out under load drops the cached client,
    /// and the cut must still probe that member). Dialing is left to the
    /// probe itself so the driver is not held up by it.
    pub fn probe_targets(&self, slots: &[SlotState]) -> ProbeTargets {
        let mut targets = ProbeTargets {
            config: self.config.clone(),
            cached: BTreeMap::new(),
            to_dial: Vec::new(),
        };
        for slot in slots {
            match self.clients.get(&slot.info.name) {
                Some((inc, c)) if *inc == slot.incarnation => {
                    targets.cached.insert(slot.info.name.clone(), c.clone());
                }
                _ if slot.phase == Phase::Running => targets
                    .to_dial
                    .push((slot.info.name.clone(), slot.observe_url.clone())),
                _ => {}
            }
        }
        targets
    }

    /// The member the latest statuses name as leader, reporting itself.
    pub fn leader_slot(&self) -> Option<String> {
        self.statuses.iter().find_map(|(slot, o)| {
            (o.status.leader != "0" && o.status.leader == o.status.member_id).then(|| slot.clone())
        })
    }

    /// A client for membership calls: the leader if known, else any member.
    pub fn admin_client(&self, timeout: Duration) -> Option<(String, MemberClient)> {
        let pick = self
            .leader_slot()
            .or_else(|| self.statuses.keys().next().cloned())?;
        self.clients
            .get(&pick)
            .map(|(_, c)| (pick.clone(), c.with_call_timeout(timeout)))
    }

    /// Polls every running member at once.
    pub async fn observe(&mut self, slots: &[SlotState]) {
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
            let config = self.config.clone();
            let version_known = self
                .cluster_versions
                .get(&name)
                .is_some_and(|(inc, _)| *inc == incarnation);
            set.spawn(async move {
                let client = match cached {
                    Some(c) => Some(c),
                    None => MemberClient::connect(&endpoint, &config).await.ok(),
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
            let Some(status) = p.status else {
                self.statuses.remove(&p.slot);
                // A client that gets no answer may hold a dead connection
                // (a port-forward to a pod that is gone): dial again.
                self.clients.remove(&p.slot);
                continue;
            };
            let observed = ObservedStatus {
                at: now,
                incarnation: p.incarnation,
                status,
            };
            self.record_status(&p.slot, &observed);
            let has_leader = observed.status.leader != "0";
            self.statuses.insert(p.slot.clone(), observed);
            if let Some((cluster_id, members)) = p.members {
                self.record_list(&p.slot, &cluster_id, &members);
                // Prefer a list from a member that knows a leader.
                if freshest.as_ref().is_none_or(|(l, ..)| !l && has_leader) {
                    freshest = Some((has_leader, p.slot.clone(), cluster_id, members));
                }
            }
        }
        if let Some((_, via, cluster_id, members)) = freshest {
            self.members = Some(ObservedMembers {
                at: now,
                via,
                cluster_id,
                members,
            });
        }
        self.update_writable(slots);
    }

    fn update_writable(&mut self, slots: &[SlotState]) {
        let clients: Vec<MemberClient> = slots
            .iter()
            .filter(|s| s.phase == Phase::Running)
            .filter_map(|s| {
                let observed = self.statuses.get(&s.info.name)?;
                if observed.status.leader == "0" || observed.status.is_learner {
                    return None;
                }
                self.clients.get(&s.info.name).map(|(_, c)| c.clone())
            })
            .collect();
        *self.writable.lock().unwrap_or_else(|p| p.into_inner()) = clients;
        let answering: Vec<(String, String)> = slots
            .iter()
            .filter(|s| s.phase == Phase::Running && self.statuses.contains_key(&s.info.name))
            .filter_map(|s| {
                let (_, client) = self.clients.get(&s.info.name)?;
                Some((s.info.name.clone(), client.endpoint().to_string()))
            })
            .collect();
        *self.answering.lock().unwrap_or_else(|p| p.into_inner()) = answering;
    }

    fn record_status(&mut self, slot: &str, observed: &ObservedStatus) {
        let status = &observed.status;
        let record = match self.recorded_status.get(slot) {
            None => true,
            Some(prev) => {
                prev.incarnation != observed.incarnation
                    || prev.status.leader != status.leader
                    || prev.status.term != status.term
                    || prev.status.member_id != status.member_id
                    || prev.status.cluster_id != status.cluster_id
                    || prev.status.is_learner != status.is_learner
                    || observed.at.duration_since(prev.at) >= STATUS_PROGRESS_EVERY
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
                .insert(slot.to_string(), observed.clone());
        }
    }

    /// Records a member list seen through `via` when it changed, and keeps
    /// it as the latest (also for lists from a membership call's answer).
    pub fn record_list(&mut self, via: &str, cluster_id: &str, members: &[MemberInfo]) {
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

    /// Takes a membership call's answer as the latest list.
    pub fn take_answer(&mut self, via: String, cluster_id: String, members: Vec<MemberInfo>) {
        self.record_list(&via, &cluster_id, &members);
        self.members = Some(ObservedMembers {
            at: Instant::now(),
            via,
            cluster_id,
            members,
        });
    }

    /// The voting members of the latest list, as slot names.
    pub fn voters(&self, slots: &[SlotState]) -> Vec<String> {
        self.members
            .as_ref()
            .map(|m| {
                m.members
                    .iter()
                    .filter(|m| !m.is_learner)
                    .filter_map(|m| {
                        slots
                            .iter()
                            .find(|s| m.peer_urls.contains(&s.info.peer_url))
                            .map(|s| s.info.name.clone())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The members a cut's write probes go to: clients at hand and endpoints
/// still to dial.
pub struct ProbeTargets {
    config: ClientConfig,
    cached: BTreeMap<String, MemberClient>,
    to_dial: Vec<(String, String)>,
}

impl ProbeTargets {
    /// Every client, the ones to dial dialed at once; a member that cannot
    /// be dialed is left out, with a warning.
    pub async fn connect(self) -> BTreeMap<String, MemberClient> {
        let mut clients = self.cached;
        let mut dials = JoinSet::new();
        for (name, endpoint) in self.to_dial {
            let config = self.config.clone();
            dials.spawn(async move { (name, MemberClient::connect(&endpoint, &config).await) });
        }
        while let Some(joined) = dials.join_next().await {
            match joined {
                Ok((name, Ok(client))) => {
                    clients.insert(name, client);
                }
                Ok((name, Err(e))) => {
                    tracing::warn!("no client for a write probe of {name}: {e}");
                }
                Err(e) => tracing::warn!("a probe dial task failed: {e}"),
            }
        }
        clients
    }
}
