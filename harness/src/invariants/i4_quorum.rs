//! I4: reconfiguration never leaves the voters without a live quorum for
//! longer than the grace period.

use super::model::{FaultWindow, Model, Procs, members_of};
use super::{Invariant, Verdict};
use crate::trace::{EventKind, Trace};

pub const INVARIANT: Invariant = Invariant {
    id: "I4",
    title: "Quorum safety",
    description: "Once a leader exists, fewer than a majority of voters are up (running, not \
                  frozen, started) only briefly, unless a harness fault explains it.",
    check,
};

/// A span with fewer up voters than a quorum.
struct Deficit {
    start: usize,
    end: Option<usize>,
    list: Option<usize>,
    up: usize,
    voters: usize,
    down: Vec<String>,
}

pub fn check(trace: &Trace) -> Verdict {
    let model = Model::new(trace);
    let mut v = Verdict::new(&INVARIANT);
    let grace = trace.quorum_grace_ms();
    let end_ms = trace.end_ms();
    let faults = model.fault_windows();

    let (mut reconfig_ms, mut fault_ms, mut max_ms) = (0u64, 0u64, 0u64);
    for d in deficits(&model) {
        let start_ms = model.events[d.start].t_ms;
        let stop_ms = d.end.map_or(end_ms, |p| model.events[p].t_ms);
        let len = stop_ms.saturating_sub(start_ms);
        max_ms = max_ms.max(len);
        if overlaps_fault(&faults, start_ms, stop_ms) {
            fault_ms += len;
            continue;
        }
        reconfig_ms += len;
        if len > grace {
            // The list in force, the event that began the deficit, the one
            // that ended it.
            let mut positions: Vec<usize> = d.list.into_iter().collect();
            positions.push(d.start);
            positions.extend(d.end);
            positions.dedup();
            let evidence = positions.iter().map(|&p| model.events[p].clone()).collect();
            let until = match d.end {
                Some(_) => format!("{stop_ms}ms"),
                None => format!("{stop_ms}ms (trace end)"),
            };
            v.violate(
                format!(
                    "quorum lost for {len}ms (t={start_ms}ms..{until}, grace {grace}ms) \
                     outside any fault: {} of {} voters up, down: {}",
                    d.up,
                    d.voters,
                    d.down.join("; ")
                ),
                evidence,
            );
        }
    }
    v.metrics
        .insert("unavailable_ms_reconfig".into(), reconfig_ms as f64);
    v.metrics
        .insert("unavailable_ms_fault".into(), fault_ms as f64);
    v.metrics.insert("max_window_ms".into(), max_ms as f64);
    if !trace
        .events
        .iter()
        .any(|e| matches!(e.kind, EventKind::MemberList { .. }))
    {
        v.nothing_to_judge("no member list was observed");
    }
    v
}

/// The spans, in trace milliseconds, during which fewer than a quorum of
/// voters were up (what I4 judges), whatever caused them.
pub fn no_quorum_windows(trace: &Trace) -> Vec<(u64, u64)> {
    let model = Model::new(trace);
    let end_ms = trace.end_ms();
    deficits(&model)
        .into_iter()
        .map(|d| {
            let start = model.events[d.start].t_ms;
            (start, d.end.map_or(end_ms, |p| model.events[p].t_ms))
        })
        .collect()
}

fn overlaps_fault(faults: &[FaultWindow], start_ms: u64, end_ms: u64) -> bool {
    faults
        .iter()
        .any(|f| start_ms <= f.end_ms && end_ms >= f.start_ms)
}

fn deficits(model: &Model) -> Vec<Deficit> {
    let first_leader = model
        .events
        .iter()
        .position(|e| matches!(&e.kind, EventKind::MemberStatus { leader, .. } if leader != "0"));
    // Without the slot table no voter can be placed on a process.
    let Some(first_leader) = first_leader.filter(|_| !model.slots.is_empty()) else {
        return Vec::new();
    };
    // Deficits that begin during shutdown are the harness tearing down.
    let last_end = model.last_step_end().unwrap_or(usize::MAX);
    let mut procs = Procs::default();
    let mut out: Vec<Deficit> = Vec::new();
    for (pos, e) in model.events.iter().enumerate() {
        procs.apply(&e.kind);
        if pos < first_leader {
            continue;
        }
        let list_pos = model.latest_list_pos(pos + 1);
        let list = list_pos.map(|p| &model.events[p]);
        let voters: Vec<_> = list
            .map(members_of)
            .unwrap_or_default()
            .iter()
            .filter(|m| !m.is_learner)
            .collect();
        let mut down = Vec::new();
        for m in &voters {
            let slot = model.slot_of_member(m);
            let why = match slot {
                None => Some("no slot"),
                Some(s) if procs.is_frozen(&s.name) => Some("frozen"),
                Some(s) if !procs.is_up(&s.name) => Some("not running"),
                Some(_) if !m.is_started() => Some("not started"),
                Some(_) => None,
            };
            if let Some(why) = why {
                down.push(format!("{}: {why}", model.describe_member(m)));
            }
        }
        let up = voters.len() - down.len();
        let short = !voters.is_empty() && up < voters.len() / 2 + 1;
        let open = out.last().is_some_and(|d| d.end.is_none());
        match (short, open) {
            (true, false) if pos <= last_end => out.push(Deficit {
                start: pos,
                end: None,
                list: list_pos,
                up,
                voters: voters.len(),
                down,
            }),
            (false, true) => {
                if let Some(d) = out.last_mut() {
                    d.end = Some(pos);
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testkit::*;
    use crate::trace::{FaultKind, MemberInfo, MembershipOp};

    #[test]
    fn correct_deployers_pass_with_short_reconfig_gaps() {
        let v = check(&seed_join_3().finish());
        assert_passed(&v);
        // Each add leaves 1 of 2 voters up until the joiner publishes itself.
        assert!(v.metrics["unavailable_ms_reconfig"] > 0.0);
        assert!(v.metrics["max_window_ms"] < GRACE_MS as f64);
        assert_passed(&check(&static_3().finish()));
    }

    #[test]
    fn add_whose_member_never_starts_loses_quorum() {
        let t = TB::new()
            .ev(step_started(0, 1))
            .ev(started(0, false))
            .ev(genesis(0, &[0]))
            .ev(local(0, "a0", false))
            .ev(status(0, "a0", "a0", 2, 3, 1))
            .ev(list(0, vec![m(0, "a0")]))
            .ev(step_finished(0, true))
            .ev(step_started(1, 2))
            .ev(call_add(1, "a1"))
            .ev(list(0, vec![m(0, "a0"), unstarted(1, "a1")]))
            .ev(status(0, "a0", "0", 2, 4, 1))
            .wait(20_000)
            .ev(step_finished(1, false))
            .finish();
        let v = check(&t);
        assert_violation(&v, "quorum lost for");
        assert_violation(
            &v,
            "1 of 2 voters up, down: a1 (m1, unstarted): not running",
        );
        assert!(v.metrics["unavailable_ms_reconfig"] > 20_000.0);
    }

    #[test]
    fn fault_windows_excuse_but_measure() {
        let v = check(&static_3_two_frozen_20s());
        assert_passed(&v);
        assert!(v.metrics["unavailable_ms_fault"] >= 20_000.0);
        assert_eq!(v.metrics["unavailable_ms_reconfig"], 0.0);
    }

    #[test]
    fn deficit_after_fault_step_ends_is_not_excused_if_separate() {
        // A later step removes nothing but stops two members for good.
        let t = static_3()
            .ev(step_started(1, 3))
            .ev(fault(FaultKind::KILL, 1))
            .ev(exited(1))
            .ev(started(1, true))
            .ev(step_finished(1, true))
            .ev(step_started(2, 3))
            .ev(exited(1))
            .ev(deleted(1))
            .ev(exited(2))
            .ev(deleted(2))
            .wait(10_000)
            .ev(step_finished(2, false))
            .finish();
        assert_violation(&check(&t), "quorum lost for");
    }

    #[test]
    fn learners_do_not_count_as_voters() {
        let t = TB::new()
            .ev(step_started(0, 2))
            .ev(started(0, false))
            .ev(genesis(0, &[0]))
            .ev(local(0, "a0", false))
            .ev(status(0, "a0", "a0", 2, 3, 1))
            .ev(call_add_learner(1, "a1"))
            .ev(list(
                0,
                vec![
                    m(0, "a0"),
                    MemberInfo {
                        name: String::new(),
                        ..learner(1, "a1")
                    },
                ],
            ))
            .wait(20_000)
            .ev(call_on(MembershipOp::Remove, "a1"))
            .ev(list(0, vec![m(0, "a0")]))
            .ev(step_finished(0, false))
            .build();
        assert_passed(&check(&t));
    }
}
