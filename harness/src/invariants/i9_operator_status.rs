//! I9: what the operator reports agrees with the real membership.

use super::model::{Model, members_of};
use super::{Invariant, Verdict};
use crate::trace::{EventKind, Trace};

pub const INVARIANT: Invariant = Invariant {
    id: "I9",
    title: "Operator status",
    description: "At the end of every step the member count the operator last reported \
                  (the profile's status path) equals the number of started members in the \
                  member list; a settled step waits up to 10 s for the status to catch up \
                  before it ends. Traces without operator status pass.",
    check,
};

pub fn check(trace: &Trace) -> Verdict {
    let model = Model::new(trace);
    let mut v = Verdict::new(&INVARIANT);
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
        let (Some((status, object, Some(claimed))), Some(list)) =
            (reported, model.list_at_end(step))
        else {
            continue;
        };
        let started = members_of(list).iter().filter(|m| m.is_started()).count() as u64;
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
}
