//! I5: a member restarted with its data comes back as itself and rejoins.

use super::model::{Model, is_desired};
use super::{Invariant, Verdict};
use crate::trace::{EventKind, Trace};
use std::collections::{HashMap, HashSet};

pub const INVARIANT: Invariant = Invariant {
    id: "I5",
    title: "Restart keeps identity",
    description: "A process restarted on its own data runs as the same member ID and is back \
                  with a known leader before its step ends.",
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
                // A member removed on purpose, a slot no longer wanted or
                // wiped again need not come back.
                let removed = model.removal_of(id).is_some_and(|r| r <= end);
                let desired = model.slot(slot).is_none_or(|s| is_desired(s, step));
                let wiped = model
                    .span(pos, end)
                    .iter()
                    .any(|x| matches!(&x.kind, EventKind::DataWiped { slot: s } if s == slot));
                if removed || !desired || wiped {
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
}
