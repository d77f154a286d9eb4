//! I9: what the operator reports agrees with the real membership.

use super::model::{Model, Procs, members_of};
use super::{Invariant, Verdict};
use crate::trace::{EventKind, Trace};

pub const INVARIANT: Invariant = Invariant {
    id: "I9",
    title: "Operator status",
    description: "At the end of every step the member count the operator last reported \
                  (the profile's status path) equals the number of started members in the \
                  member list (none, when no member process runs any more); a settled step \
                  gives the status a grace (10 s, or the profile's) to catch up before it ends. \
                  Traces without operator status have nothing to judge (n/a).",
    check,
};

pub fn check(trace: &Trace) -> Verdict {
    let model = Model::new(trace);
    let mut v = Verdict::new(&INVARIANT);
    let mut procs = Procs::default();
    let mut started_any = false;
    let mut seen = 0;
    let mut compared = 0u32;
    for step in &model.steps {
        let Some(end) = step.end else {
            continue;
        };
        let reported = model.events[..end]
            .iter()
            .rev()
            .find_map(|e| match &e.kind {
                EventKind::OperatorStatus { object, members } => Some((e, object, *members)),
                _ => None,
            });
        let Some((status, object, Some(claimed))) = reported else {
            continue;
        };
        // Every member process gone by the step's end: whatever list came
        // before is stale, and a status that still claims members is wrong.
        for e in &model.events[seen..end] {
            procs.apply(&e.kind);
            started_any |= matches!(e.kind, EventKind::ProcessStarted { .. });
        }
        seen = end;
        if started_any && !procs.any_running() {
            compared += 1;
            if claimed > 0 {
                v.violate(
                    format!(
                        "at the end of {} (t={}ms) {object} reported {claimed} member(s) but no \
                         member process runs",
                        step.label(),
                        model.events[end].t_ms
                    ),
                    vec![status.clone(), model.events[end].clone()],
                );
            }
            continue;
        }
        let Some(list) = model.list_at_end(step) else {
            continue;
        };
        let started = members_of(list).iter().filter(|m| m.is_started()).count() as u64;
        compared += 1;
        if claimed != started {
            v.violate(
                format!(
                    "at the end of {} (t={}ms) {object} reported {claimed} member(s) but the \
                     member list has {started} started",
                    step.label(),
                    model.events[end].t_ms
                ),
                vec![status.clone(), list.clone(), model.events[end].clone()],
            );
        }
    }
    if compared == 0 {
        v.nothing_to_judge(
            if trace
                .events
                .iter()
                .any(|e| matches!(e.kind, EventKind::OperatorStatus { .. }))
            {
                "no step ended with both an operator status and a member list"
            } else {
                "no operator status to compare (no status source)"
            },
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testkit::*;

    fn status(n: u64) -> EventKind {
        EventKind::OperatorStatus {
            object: "StatefulSet/etcd".into(),
            members: Some(n),
        }
    }

    #[test]
    fn traces_without_operator_status_pass() {
        assert_passed(&check(&seed_join_3().finish()));
    }

    #[test]
    fn status_matching_the_member_list_passes() {
        let t = TB::new()
            .ev(step_started(0, 3))
            .ev(list(0, three()))
            .ev(status(3))
            .ev(step_finished(0, true))
            .finish();
        assert_passed(&check(&t));
    }

    #[test]
    fn status_claiming_fewer_members_than_the_cluster_has_fails() {
        // A scale-in that left two members behind while the status says 3.
        let five = vec![m(0, "a0"), m(1, "a1"), m(2, "a2"), m(3, "a3"), m(4, "a4")];
        let t = TB::new()
            .ev(step_started(0, 3))
            .ev(status(3))
            .ev(list(0, five))
            .ev(step_finished(0, false))
            .finish();
        assert_violation(
            &check(&t),
            "StatefulSet/etcd reported 3 member(s) but the member list has 5 started",
        );
    }

    #[test]
    fn unstarted_members_are_not_counted() {
        let t = TB::new()
            .ev(step_started(0, 2))
            .ev(list(0, vec![m(0, "a0"), unstarted(1, "a1")]))
            .ev(status(2))
            .ev(step_finished(0, false))
            .finish();
        assert_violation(&check(&t), "reported 2 member(s) but the member list has 1");
    }

    /// Every member pod gone and none back (an operator that cannot recover
    /// from losing all members), while the status still lists the old ones.
    #[test]
    fn status_claiming_members_when_none_answers_fails() {
        // Three members, then every pod gone after a last member list;
        // `last` ends the second step.
        let all_gone = |last: Vec<EventKind>| {
            let mut t = TB::new()
                .ev(step_started(0, 3))
                .ev(started(0, false))
                .ev(started(1, false))
                .ev(started(2, false))
                .ev(list(0, three()))
                .ev(status(3))
                .ev(step_finished(0, true))
                .ev(step_started(1, 3))
                .ev(list(0, three()))
                .ev(exited(0))
                .ev(exited(1))
                .ev(exited(2));
            for e in last {
                t = t.ev(e);
            }
            t.ev(step_finished(1, false)).finish()
        };
        assert_violation(
            &check(&all_gone(vec![])),
            "StatefulSet/etcd reported 3 member(s) but no member process runs",
        );
        assert_passed(&check(&all_gone(vec![status(0)])));
    }
}
