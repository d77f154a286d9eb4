//! When a step has settled: the one rule for every substrate and subject.

use super::poll::{ObservedMembers, ObservedStatus};
use crate::model::Phase;
use crate::substrate::SlotState;
use crate::trace::SlotInfo;
use std::collections::BTreeMap;
use std::time::Instant;

/// What the driver sees of the cluster at a tick.
#[derive(Clone, Copy)]
pub(super) struct Seen<'a> {
    /// The subject asks for nothing more.
    pub idle: bool,
    pub desired: u32,
    pub slots: &'a [SlotState],
    /// The members the step wants, oldest first.
    pub wanted: &'a [SlotInfo],
    /// Members a fault took away this step, with their incarnation then.
    pub replaced: &'a BTreeMap<String, u64>,
    pub statuses: &'a BTreeMap<String, ObservedStatus>,
    pub members: Option<&'a ObservedMembers>,
    /// PD only: when each slot last handed out a timestamp.
    pub timestamps: Option<&'a BTreeMap<String, Instant>>,
}

/// The cluster is as the step wants it, seen after `since`: the subject
/// is idle; exactly the wanted members run, ready, each newer than any
/// fault that took it away; each reports one same leader in a status
/// since `since` and its current start; and the latest member list,
/// also fresh, holds exactly their peer URLs as started voters; on PD,
/// each has handed out a timestamp since `since` (PD serves its clients
/// only once its own leader is elected, after etcd's). If not, the first
/// thing missing.
pub(super) fn unsettled(seen: &Seen<'_>, since: Instant) -> Option<String> {
    let Seen {
        idle,
        desired,
        slots,
        wanted,
        replaced,
        statuses,
        members,
        timestamps,
    } = *seen;
    if !idle {
        return Some("the deployer still acts".into());
    }
    if wanted.len() != desired as usize {
        return Some(format!(
            "{} of {} wanted members exist",
            wanted.len(),
            desired
        ));
    }
    let is_wanted = |name: &str| wanted.iter().any(|w| w.name == name);
    if let Some(surplus) = slots
        .iter()
        .find(|s| !is_wanted(&s.info.name) && s.phase != Phase::Empty)
    {
        return Some(format!(
            "{} is not wanted but {:?}",
            surplus.info.name, surplus.phase
        ));
    }
    let mut leader = None;
    for slot in slots.iter().filter(|s| is_wanted(&s.info.name)) {
        let name = &slot.info.name;
        if slot.phase != Phase::Running || !slot.ready {
            return Some(format!(
                "{name} is {:?}{}",
                slot.phase,
                if slot.ready { "" } else { ", not ready" }
            ));
        }
        if replaced
            .get(name)
            .is_some_and(|old| slot.incarnation <= *old)
        {
            return Some(format!("{name} has not been replaced since the fault"));
        }
        let Some(observed) = statuses.get(name) else {
            return Some(format!("{name} does not answer"));
        };
        let status = &observed.status;
        if observed.at < since || observed.incarnation != slot.incarnation {
            return Some(format!("{name} has not answered since it started"));
        }
        if status.leader == "0" || status.is_learner {
            return Some(format!(
                "{name} {}",
                if status.is_learner {
                    "is a learner"
                } else {
                    "knows no leader"
                }
            ));
        }
        match &leader {
            None => leader = Some(status.leader.clone()),
            Some(l) if *l != status.leader => {
                return Some(format!("{name} follows another leader"));
            }
            _ => {}
        }
    }
    let Some(members) = members else {
        return Some("no member list yet".into());
    };
    if members.at < since {
        return Some("no member list since the step began".into());
    }
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|slot| {
            !members
                .members
                .iter()
                .any(|m| m.is_started() && !m.is_learner && m.peer_urls.contains(&slot.peer_url))
        })
        .map(|s| s.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "not started voters in the member list: {}",
            missing.join(", ")
        ));
    }
    if members.members.len() != wanted.len() {
        return Some(format!(
            "the member list has {} members, {} wanted",
            members.members.len(),
            wanted.len()
        ));
    }
    if let Some(timestamps) = timestamps
        && let Some(slot) = wanted
            .iter()
            .find(|slot| timestamps.get(&slot.name).is_none_or(|at| *at < since))
    {
        return Some(format!(
            "no PD timestamp through {} since the step began",
            slot.name
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::etcd::Status;
    use crate::trace::MemberInfo;
    use std::time::Duration;

    fn info(o: u32) -> SlotInfo {
        SlotInfo {
            name: format!("m{o}"),
            ordinal: o,
            peer_url: format!("http://m{o}:2380"),
            client_url: format!("http://m{o}:2379"),
        }
    }

    fn slot(o: u32, phase: Phase, incarnation: u64) -> SlotState {
        SlotState {
            info: info(o),
            data_dir: Default::default(),
            member_data_dir: String::new(),
            listen_peer_url: String::new(),
            listen_client_url: String::new(),
            observe_url: String::new(),
            phase,
            ready: phase == Phase::Running,
            restarts: 0,
            last_exit: None,
            spec: None,
            incarnation,
        }
    }

    fn status(o: u32, leader: &str, at: Instant, incarnation: u64) -> ObservedStatus {
        ObservedStatus {
            at,
            incarnation,
            status: Status {
                cluster_id: "c".into(),
                member_id: format!("id{o}"),
                leader: leader.into(),
                term: 2,
                raft_index: 9,
                revision: 3,
                is_learner: false,
            },
        }
    }

    fn member(o: u32, started: bool) -> MemberInfo {
        MemberInfo {
            id: format!("id{o}"),
            name: if started {
                format!("m{o}")
            } else {
                String::new()
            },
            peer_urls: vec![info(o).peer_url],
            client_urls: vec![],
            is_learner: false,
        }
    }

    /// Three members running, answering since `since`, one leader, listed.
    struct Cluster {
        since: Instant,
        slots: Vec<SlotState>,
        wanted: Vec<SlotInfo>,
        replaced: BTreeMap<String, u64>,
        statuses: BTreeMap<String, ObservedStatus>,
        members: ObservedMembers,
        /// Set for PD.
        timestamps: Option<BTreeMap<String, Instant>>,
    }

    impl Cluster {
        fn settled_3() -> Cluster {
            let since = Instant::now();
            let later = since + Duration::from_millis(10);
            Cluster {
                since,
                slots: (0..3).map(|o| slot(o, Phase::Running, 1)).collect(),
                wanted: (0..3).map(info).collect(),
                replaced: BTreeMap::new(),
                statuses: (0..3)
                    .map(|o| (format!("m{o}"), status(o, "id0", later, 1)))
                    .collect(),
                members: ObservedMembers {
                    at: later,
                    via: "m0".into(),
                    cluster_id: "c".into(),
                    members: (0..3).map(|o| member(o, true)).collect(),
                },
                timestamps: None,
            }
        }

        fn check(&self) -> Option<String> {
            unsettled(
                &Seen {
                    idle: true,
                    desired: 3,
                    slots: &self.slots,
                    wanted: &self.wanted,
                    replaced: &self.replaced,
                    statuses: &self.statuses,
                    members: Some(&self.members),
                    timestamps: self.timestamps.as_ref(),
                },
                self.since,
            )
        }
    }

    #[test]
    fn pd_settles_once_every_member_handed_out_a_timestamp_since_the_step_began() {
        let mut c = Cluster::settled_3();
        let before = c.since - Duration::from_millis(5);
        let after = c.since + Duration::from_millis(20);
        c.timestamps = Some(BTreeMap::from([
            ("m0".to_string(), after),
            ("m1".to_string(), before),
        ]));
        assert_eq!(
            c.check().as_deref(),
            Some("no PD timestamp through m1 since the step began")
        );
        c.timestamps = Some((0..3).map(|o| (format!("m{o}"), after)).collect());
        assert_eq!(c.check(), None);
    }

    #[test]
    fn a_cluster_as_wanted_is_settled() {
        assert_eq!(Cluster::settled_3().check(), None);
    }

    #[test]
    fn a_member_not_running_is_named() {
        let mut c = Cluster::settled_3();
        c.slots[2] = slot(2, Phase::BackingOff, 1);
        assert_eq!(c.check().as_deref(), Some("m2 is BackingOff, not ready"));
    }

    #[test]
    fn a_member_not_yet_replaced_after_its_fault_is_not_settled() {
        let mut c = Cluster::settled_3();
        // The pod deleted while incarnation 1 ran is still incarnation 1.
        c.replaced.insert("m1".into(), 1);
        assert_eq!(
            c.check().as_deref(),
            Some("m1 has not been replaced since the fault")
        );
        c.slots[1] = slot(1, Phase::Running, 2);
        c.statuses
            .insert("m1".into(), status(1, "id0", c.members.at, 2));
        assert_eq!(c.check(), None);
    }

    #[test]
    fn a_status_older_than_the_step_or_the_start_does_not_count() {
        let mut c = Cluster::settled_3();
        c.statuses.insert(
            "m0".into(),
            status(0, "id0", c.since - Duration::from_millis(1), 1),
        );
        assert_eq!(
            c.check().as_deref(),
            Some("m0 has not answered since it started")
        );
    }

    #[test]
    fn two_leaders_or_none_are_not_settled() {
        let mut c = Cluster::settled_3();
        c.statuses
            .insert("m2".into(), status(2, "id1", c.members.at, 1));
        assert_eq!(c.check().as_deref(), Some("m2 follows another leader"));
        c.statuses
            .insert("m2".into(), status(2, "0", c.members.at, 1));
        assert_eq!(c.check().as_deref(), Some("m2 knows no leader"));
    }

    #[test]
    fn the_member_list_must_be_exactly_the_wanted_started_voters() {
        let mut c = Cluster::settled_3();
        c.members.members[2] = member(2, false);
        assert_eq!(
            c.check().as_deref(),
            Some("not started voters in the member list: m2")
        );
        let mut c = Cluster::settled_3();
        c.members.members.push(member(3, true));
        assert_eq!(
            c.check().as_deref(),
            Some("the member list has 4 members, 3 wanted")
        );
    }

    #[test]
    fn a_surplus_member_still_running_is_not_settled() {
        let mut c = Cluster::settled_3();
        c.slots.push(slot(3, Phase::Running, 1));
        assert_eq!(c.check().as_deref(), Some("m3 is not wanted but Running"));
    }
}
