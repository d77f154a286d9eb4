//! I5: a member restarted with its data comes back as itself and rejoins.

use super::model::{Model, is_desired, members_of};
use super::{Invariant, Verdict};
use crate::trace::{EngineErrorClass, EventKind, Trace};
use std::collections::{HashMap, HashSet};

pub const INVARIANT: Invariant = Invariant {
    id: "I5",
    title: "Restart keeps identity",
    description: "A process restarted on its own data runs as the same member ID and is back \
                  with a known leader before its step ends; its member is removed only by a \
                  scale-in or after its data is lost, never while its slot stays wanted.",
    check,
};

pub fn check(trace: &Trace) -> Verdict {
    let model = Model::new(trace);
    let mut v = Verdict::new(&INVARIANT);
    // Slot -> position of the LocalMember it last ran as, since its last wipe.
    let mut ran_as: HashMap<&str, usize> = HashMap::new();
    // (slot, step start, clause): crash loops report once per step.
    let mut reported: HashSet<(&str, usize, &str)> = HashSet::new();
    let mut restarts = 0u32;
    for (pos, e) in model.events.iter().enumerate() {
        match &e.kind {
            EventKind::LocalMember { slot, .. } => {
                ran_as.insert(slot, pos);
            }
            EventKind::DataWiped { slot } => {
                ran_as.remove(slot.as_str());
            }
            EventKind::ProcessStarted {
                slot,
                had_data: true,
                ..
            } => {
                let Some(&prev) = ran_as.get(slot.as_str()) else {
                    continue;
                };
                let EventKind::LocalMember { member_id: id, .. } = &model.events[prev].kind else {
                    continue;
                };
                // Restarts after the last step are the harness shutting down.
                let Some(step) = model.finishing_step(pos) else {
                    continue;
                };
                let Some(end) = step.end else {
                    continue;
                };
                restarts += 1;
                let end_ev = &model.events[end];
                let next_local = model.span(pos + 1, model.events.len()).iter().find(
                    |x| matches!(&x.kind, EventKind::LocalMember { slot: s, .. } if s == slot),
                );
                if let Some(next) = next_local
                    && let EventKind::LocalMember { member_id, .. } = &next.kind
                    && member_id != id
                    && reported.insert((slot, step.start, "identity"))
                {
                    v.violate(
                        format!(
                            "{slot} restarted on its data at t={}ms as member {member_id} \
                             (t={}ms) instead of {id}",
                            e.t_ms, next.t_ms
                        ),
                        vec![model.events[prev].clone(), e.clone(), next.clone()],
                    );
                }
                // A slot no longer wanted (scale-in, judged by I7) or whose
                // data was wiped again (the replacement path after a data
                // loss, judged by I6) need not come back as this member.
                let desired = model.slot(slot).is_none_or(|s| is_desired(s, step));
                let wiped = model
                    .span(pos, end)
                    .iter()
                    .any(|x| matches!(&x.kind, EventKind::DataWiped { slot: s } if s == slot));
                if !desired || wiped {
                    continue;
                }
                // Removed while its slot stays wanted and its data stays:
                // a restart on that data can only fail, so a member must be
                // back for the slot by the step's end.
                if let Some(removal) = model.removal_of(id).filter(|r| *r <= end) {
                    let peer = model.slot(slot).map(|s| s.peer_url.clone());
                    let back = model.list_at_end(step).is_some_and(|list| {
                        members_of(list).iter().any(|m| {
                            m.is_started() && peer.as_ref().is_some_and(|p| m.peer_urls.contains(p))
                        })
                    });
                    if !back && reported.insert((slot, step.start, "removed")) {
                        let refusals: Vec<_> = model
                            .span(pos, end)
                            .iter()
                            .filter(|x| {
                                matches!(&x.kind, EventKind::EngineError { slot: s, class, .. }
                                    if s == slot && *class == EngineErrorClass::MemberRemoved)
                            })
                            .cloned()
                            .collect();
                        let exits = model
                            .span(pos, end)
                            .iter()
                            .filter(|x| {
                                matches!(&x.kind, EventKind::ProcessExited { slot: s, .. } if s == slot)
                            })
                            .count();
                        let mut evidence = vec![model.events[removal].clone(), e.clone()];
                        evidence.extend(refusals.iter().take(3).cloned());
                        evidence.push(end_ev.clone());
                        v.violate(
                            format!(
                                "member {id} of {slot} was removed at t={}ms while {slot} stays \
                                 wanted with its data; {slot} restarted on that data and exited \
                                 {exits} time(s) ({} \"permanently removed\" refusal(s)), and no \
                                 member runs for it at the end of {} (t={}ms)",
                                model.events[removal].t_ms,
                                refusals.len(),
                                step.label(),
                                end_ev.t_ms
                            ),
                            evidence,
                        );
                    }
                    continue;
                }
                let rejoined = model.span(pos + 1, end).iter().any(|x| {
                    matches!(&x.kind, EventKind::MemberStatus { slot: s, member_id, leader, .. }
                        if s == slot && member_id == id && leader != "0")
                });
                if !rejoined && reported.insert((slot, step.start, "rejoin")) {
                    v.violate(
                        format!(
                            "{slot} restarted on its data at t={}ms but member {id} did not \
                             report a leader before the end of {} (t={}ms)",
                            e.t_ms,
                            step.label(),
                            end_ev.t_ms
                        ),
                        vec![model.events[prev].clone(), e.clone(), end_ev.clone()],
                    );
                }
            }
            _ => {}
        }
    }
    if restarts == 0 {
        v.nothing_to_judge("no member restarted on its data during a step");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testkit::*;
    use crate::trace::{FaultKind, MembershipOp};

    fn killed_and_restarted() -> TB {
        static_3()
            .ev(step_started(1, 3))
            .ev(fault(FaultKind::KILL, 1))
            .ev(exited(1))
            .ev(started(1, true))
            .ev(restart_cfg(1))
    }

    #[test]
    fn correct_deployers_and_restart_pass() {
        assert_passed(&check(&seed_join_3().finish()));
        assert_passed(&check(&static_3().finish()));
        let t = killed_and_restarted()
            .ev(local(1, "a1", true))
            .ev(status(1, "a1", "0", 2, 3, 1))
            .ev(status(1, "a1", "a0", 3, 5, 1))
            .ev(step_finished(1, true))
            .finish();
        assert_passed(&check(&t));
    }

    #[test]
    fn restart_as_another_member_fails() {
        let t = killed_and_restarted()
            .ev(local(1, "b1", false))
            .ev(status(1, "b1", "a0", 3, 5, 1))
            .ev(step_finished(1, true))
            .finish();
        let v = check(&t);
        assert_violation(&v, "m1 restarted on its data at");
        assert_violation(&v, "as member b1");
        assert_violation(&v, "member a1 did not report a leader");
    }

    #[test]
    fn restart_without_rejoin_fails() {
        let t = killed_and_restarted()
            .ev(local(1, "a1", true))
            .ev(status(1, "a1", "0", 2, 3, 1))
            .wait(30_000)
            .ev(step_finished(1, false))
            .finish();
        assert_violation(
            &check(&t),
            "member a1 did not report a leader before the end of step 1",
        );
    }

    #[test]
    fn removed_member_and_shutdown_restarts_are_ignored() {
        // Scale-in: m2 removed, exits by itself, restart policy brings it
        // back before the deployer deletes the slot.
        let t = static_3()
            .ev(step_started(1, 2))
            .ev(call_on(MembershipOp::Remove, "a2"))
            .ev(exited(2))
            .ev(started(2, true))
            .ev(local(2, "a2", true))
            .ev(exited(2))
            .ev(deleted(2))
            .ev(list(0, vec![m(0, "a0"), m(1, "a1")]))
            .ev(step_finished(1, true))
            // Shutdown restart after the last step.
            .ev(exited(0))
            .ev(started(0, true))
            .finish();
        assert_passed(&check(&t));
    }

    /// A pod deleted while its slot stays wanted: the deployer removes its
    /// member (a preStop hook), the pod comes back on its data, and etcd
    /// exits on "permanently removed" again and again.
    fn removed_while_wanted() -> TB {
        static_3()
            .ev(step_started(1, 3))
            .ev(fault(FaultKind::DELETE_POD, 2))
            .ev(exited(2))
            .ev(deleted(2))
            .ev(call_on(MembershipOp::Remove, "a2"))
            .ev(started(2, true))
            .ev(local(2, "a2", true))
            .ev(engine_error(2, EngineErrorClass::MemberRemoved))
            .ev(exited(2))
            .ev(started(2, true))
            .ev(engine_error(2, EngineErrorClass::MemberRemoved))
            .ev(exited(2))
    }

    #[test]
    fn a_member_removed_while_its_slot_stays_wanted_is_a_violation() {
        let t = removed_while_wanted()
            .ev(list(0, vec![m(0, "a0"), m(1, "a1")]))
            .wait(30_000)
            .ev(step_finished(1, false))
            .finish();
        let v = check(&t);
        assert_violation(&v, "member a2 of m2 was removed at");
        assert_violation(&v, "while m2 stays wanted with its data");
        assert_violation(&v, "permanently removed");
        let violation = v
            .violations
            .iter()
            .find(|x| x.message.contains("was removed"))
            .expect("the removal violation");
        // The removal call and the refusals are the evidence.
        assert!(violation.evidence.iter().any(|e| matches!(
            e.kind,
            EventKind::MembershipCall {
                op: MembershipOp::Remove,
                ..
            }
        )));
        assert!(violation.evidence.iter().any(|e| matches!(
            e.kind,
            EventKind::EngineError {
                class: EngineErrorClass::MemberRemoved,
                ..
            }
        )));
    }

    #[test]
    fn a_removal_followed_by_a_new_member_for_the_slot_passes() {
        // The replacement path: the data is wiped and a new member added.
        let t = removed_while_wanted()
            .ev(deleted(2))
            .ev(wiped(2))
            .ev(call_add(2, "b2"))
            .ev(started(2, false))
            .ev(local(2, "b2", false))
            .ev(list(0, vec![m(0, "a0"), m(1, "a1"), m(2, "b2")]))
            .ev(step_finished(1, true))
            .finish();
        assert!(
            !check(&t)
                .violations
                .iter()
                .any(|x| x.message.contains("was removed")),
            "{:?}",
            check(&t).violations
        );
    }
}
