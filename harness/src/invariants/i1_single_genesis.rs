//! I1: the cluster is created exactly once, and stays one cluster.

use super::model::{Model, Procs, fmt_initial_cluster};
use super::{Invariant, Verdict};
use crate::trace::{EventKind, Trace};
use std::collections::{HashMap, HashSet};

pub const INVARIANT: Invariant = Invariant {
    id: "I1",
    title: "Single genesis",
    description: "Exactly one genesis configuration is ever started, no member re-bootstraps, \
                  all members report one cluster ID, one leader per term, and term, raft index \
                  and revision never go backwards.",
    check,
};

pub fn check(trace: &Trace) -> Verdict {
    let model = Model::new(trace);
    let mut v = Verdict::new(&INVARIANT);
    genesis_starts(&model, &mut v);
    cluster_ids(&model, &mut v);
    leaders_and_progress(&model, &mut v);
    if !trace.events.iter().any(|e| {
        matches!(
            e.kind,
            EventKind::MemberStart { .. } | EventKind::MemberStatus { .. }
        )
    }) {
        v.nothing_to_judge("no member started and none answered");
    }
    v
}

/// (a) a second genesis configuration, (b) a member bootstrapping again.
fn genesis_starts(model: &Model, v: &mut Verdict) {
    let (Some(gpos), Some(gcfg)) = (model.genesis, model.genesis_config()) else {
        return;
    };
    let gslot = match &model.events[gpos].kind {
        EventKind::MemberStart { slot, .. } => slot.as_str(),
        _ => "?",
    };
    // Latest LocalMember per slot: the slot already ran as that member.
    let mut ran_as: HashMap<&str, usize> = HashMap::new();
    for (pos, e) in model.events.iter().enumerate() {
        match &e.kind {
            EventKind::LocalMember { slot, .. } => {
                ran_as.insert(slot, pos);
            }
            EventKind::MemberStart { slot, config } if config.is_genesis() && pos != gpos => {
                if !model.in_genesis_group(pos) {
                    v.violate(
                        format!(
                            "{slot} bootstrapped a second cluster at t={}ms: initial-cluster {} \
                             token {:?}, but the genesis ({gslot} at t={}ms) was {} token {:?}",
                            e.t_ms,
                            fmt_initial_cluster(&config.initial_cluster),
                            config.initial_cluster_token,
                            model.events[gpos].t_ms,
                            fmt_initial_cluster(&gcfg.initial_cluster),
                            gcfg.initial_cluster_token,
                        ),
                        vec![model.events[gpos].clone(), e.clone()],
                    );
                } else if let Some(&prev) = ran_as.get(slot.as_str()) {
                    let prev_ev = &model.events[prev];
                    let prev_id = match &prev_ev.kind {
                        EventKind::LocalMember { member_id, .. } => member_id.as_str(),
                        _ => "?",
                    };
                    v.violate(
                        format!(
                            "{slot} re-bootstrapped with initial-cluster-state=new at t={}ms \
                             although it already ran as member {prev_id} (t={}ms)",
                            e.t_ms, prev_ev.t_ms
                        ),
                        vec![prev_ev.clone(), e.clone()],
                    );
                }
            }
            _ => {}
        }
    }
}

/// (c) every observation names the same cluster.
fn cluster_ids(model: &Model, v: &mut Verdict) {
    let mut first: Option<(&str, usize)> = None;
    let mut reported: HashSet<&str> = HashSet::new();
    for (pos, e) in model.events.iter().enumerate() {
        let (cid, slot) = match &e.kind {
            EventKind::MemberStatus {
                cluster_id, slot, ..
            }
            | EventKind::LocalMember {
                cluster_id, slot, ..
            } => (cluster_id.as_str(), slot.as_str()),
            EventKind::MemberList {
                cluster_id, via, ..
            } => (cluster_id.as_str(), via.as_str()),
            _ => continue,
        };
        // Unknown IDs carry no claim.
        if cid.is_empty() || cid == "0" {
            continue;
        }
        match first {
            None => first = Some((cid, pos)),
            Some((c0, p0)) if c0 != cid && reported.insert(cid) => {
                let e0 = &model.events[p0];
                v.violate(
                    format!(
                        "second cluster ID {cid} seen via {slot} ({}) at t={}ms; first cluster \
                         ID was {c0} at t={}ms",
                        e.kind.name(),
                        e.t_ms,
                        e0.t_ms
                    ),
                    vec![e0.clone(), e.clone()],
                );
            }
            Some(_) => {}
        }
    }
}

/// (d) one leader per term, (e) term per member and raft index and
/// revision per process incarnation never decrease.
fn leaders_and_progress(model: &Model, v: &mut Verdict) {
    let confirmed = confirmed_statuses(model);
    let mut procs = Procs::default();
    let mut leader_of_term: HashMap<u64, (&str, usize)> = HashMap::new();
    let mut split_terms: HashSet<u64> = HashSet::new();
    let mut max_term: HashMap<&str, (u64, usize)> = HashMap::new();
    let mut term_reported: HashSet<&str> = HashSet::new();
    // (slot, incarnation, member) -> (raft index, revision, pos)
    let mut progress: HashMap<(&str, u32, &str), (u64, u64, usize)> = HashMap::new();
    let mut progress_reported: HashSet<(&str, u32, &str, &str)> = HashSet::new();
    for (pos, e) in model.events.iter().enumerate() {
        procs.apply(&e.kind);
        let EventKind::MemberStatus {
            slot,
            member_id,
            leader,
            term,
            raft_index,
            revision,
            ..
        } = &e.kind
        else {
            continue;
        };
        if leader != "0" && confirmed.contains(&pos) {
            match leader_of_term.get(term) {
                None => {
                    leader_of_term.insert(*term, (leader, pos));
                }
                Some(&(l0, p0)) if l0 != leader && split_terms.insert(*term) => {
                    let e0 = &model.events[p0];
                    v.violate(
                        format!(
                            "two leaders in term {term}: {slot} reports {leader} at t={}ms, \
                             {} reported {l0} at t={}ms",
                            e.t_ms,
                            slot_name(&e0.kind),
                            e0.t_ms
                        ),
                        vec![e0.clone(), e.clone()],
                    );
                }
                Some(_) => {}
            }
        }
        match max_term.get(member_id.as_str()) {
            Some(&(t0, p0)) if *term < t0 => {
                if term_reported.insert(member_id) {
                    let e0 = &model.events[p0];
                    v.violate(
                        format!(
                            "term of member {member_id} went back from {t0} (t={}ms) to {term} \
                             ({slot} at t={}ms)",
                            e0.t_ms, e.t_ms
                        ),
                        vec![e0.clone(), e.clone()],
                    );
                }
            }
            _ => {
                max_term.insert(member_id, (*term, pos));
            }
        }
        let key = (slot.as_str(), procs.incarnation(slot), member_id.as_str());
        if let Some(&(i0, r0, p0)) = progress.get(&key) {
            for (what, before, now) in
                [("raft index", i0, *raft_index), ("revision", r0, *revision)]
            {
                if now < before && progress_reported.insert((key.0, key.1, key.2, what)) {
                    let e0 = &model.events[p0];
                    v.violate(
                        format!(
                            "{what} of member {member_id} on {slot} went back from {before} \
                             (t={}ms) to {now} (t={}ms) within one process",
                            e0.t_ms, e.t_ms
                        ),
                        vec![e0.clone(), e.clone()],
                    );
                }
            }
        }
        let (i0, r0) = progress.get(&key).map_or((0, 0), |&(i, r, _)| (i, r));
        progress.insert(key, (i0.max(*raft_index), r0.max(*revision), pos));
    }
}

/// Statuses whose (member, leader, term) the same process reports again.
/// etcd's status term is the term of the last applied entry while the
/// leader updates on election, so right after an election a member briefly
/// pairs the new leader with the old term; such a report is superseded.
fn confirmed_statuses(model: &Model) -> HashSet<usize> {
    let mut next: HashMap<&str, (&str, &str, u64)> = HashMap::new();
    let mut confirmed = HashSet::new();
    for (pos, e) in model.events.iter().enumerate().rev() {
        match &e.kind {
            EventKind::ProcessStarted { slot, .. } => {
                next.remove(slot.as_str());
            }
            EventKind::MemberStatus {
                slot,
                member_id,
                leader,
                term,
                ..
            } => {
                let now = (member_id.as_str(), leader.as_str(), *term);
                if next.get(slot.as_str()) == Some(&now) {
                    confirmed.insert(pos);
                }
                next.insert(slot, now);
            }
            _ => {}
        }
    }
    confirmed
}

fn slot_name(kind: &EventKind) -> &str {
    super::model::slot_of_event(kind).unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testkit::*;
    use crate::trace::FaultKind;

    #[test]
    fn correct_deployers_pass() {
        assert_passed(&check(&seed_join_3().finish()));
        assert_passed(&check(&static_3().finish()));
    }

    #[test]
    fn genesis_retry_before_wal_is_not_a_violation() {
        // m0's first attempt died before creating a member; the retry with
        // the same (or even a fixed) config is fine.
        let t = TB::new()
            .ev(step_started(0, 1))
            .ev(started(0, false))
            .ev(genesis(0, &[0, 1]))
            .ev(exited(0))
            .ev(started(0, false))
            .ev(genesis(0, &[0]))
            .ev(local(0, "a0", false))
            .ev(status(0, "a0", "a0", 2, 3, 1))
            .ev(list(0, vec![m(0, "a0")]))
            .ev(step_finished(0, true))
            .finish();
        assert_passed(&check(&t));
    }

    #[test]
    fn member_bootstrapping_alone_is_a_second_genesis() {
        let t = seed_join_3()
            .ev(step_started(2, 4))
            .ev(started(3, false))
            .ev(genesis(3, &[3]))
            .ev(local_cid(3, "d3", "c2", false))
            .ev(status_cid(3, "c2", "d3", "d3", 2, 3, 1))
            .ev(status_cid(3, "c2", "d3", "d3", 2, 4, 1))
            .ev(step_finished(2, false))
            .finish();
        let v = check(&t);
        assert_violation(&v, "m3 bootstrapped a second cluster");
        assert_violation(&v, "second cluster ID c2");
        // m3 leads term 2 of its own cluster while a0 leads term 2 of c1.
        assert_violation(&v, "two leaders in term 2");
    }

    #[test]
    fn restart_new_after_wipe_is_a_rebootstrap() {
        let t = static_3()
            .ev(step_started(1, 3))
            .ev(fault(FaultKind::LOSE_VOLUME, 2))
            .ev(exited(2))
            .ev(wiped(2))
            .ev(deleted(2))
            .ev(started(2, false))
            .ev(genesis(2, &[0, 1, 2]))
            // Same config, same deterministic member ID.
            .ev(local(2, "a2", false))
            .ev(step_finished(1, false))
            .finish();
        assert_violation(&check(&t), "m2 re-bootstrapped");
    }

    #[test]
    fn new_leader_with_old_applied_term_is_not_a_split() {
        // After a1 wins term 3, members report a1 with term 2 until the
        // first term-3 entry is applied.
        let t = static_3()
            .ev(status(0, "a0", "a0", 2, 5, 1))
            .ev(status(1, "a1", "a1", 2, 5, 1))
            .ev(status(1, "a1", "a1", 3, 6, 1))
            .ev(status(2, "a2", "a1", 2, 5, 1))
            .ev(status(2, "a2", "a1", 3, 6, 1))
            .finish();
        assert_passed(&check(&t));
    }

    #[test]
    fn term_going_back_is_caught() {
        let t = static_3().ev(status(1, "a1", "a0", 1, 5, 1)).finish();
        assert_violation(&check(&t), "term of member a1 went back from 2");
    }

    #[test]
    fn index_and_revision_going_back_within_a_process_are_caught() {
        let t = static_3().ev(status(1, "a1", "a0", 2, 2, 0)).finish();
        let v = check(&t);
        assert_violation(&v, "raft index of member a1 on m1 went back from 3");
        assert_violation(&v, "revision of member a1 on m1 went back from 1");
    }

    #[test]
    fn revision_may_lag_across_a_kill() {
        let t = static_3()
            .ev(status(1, "a1", "a0", 2, 9, 5))
            .ev(step_started(1, 3))
            .ev(fault(FaultKind::KILL, 1))
            .ev(exited(1))
            .ev(started(1, true))
            .ev(restart_cfg(1))
            .ev(local(1, "a1", true))
            .ev(status(1, "a1", "a0", 2, 9, 4))
            .ev(step_finished(1, true))
            .finish();
        assert_passed(&check(&t));
    }
}
