//! I3: each step ends with exactly the desired members, all started
//! voters, and membership never runs away.

use super::model::{Model, Step, is_desired, members_of};
use super::{Invariant, Verdict};
use crate::trace::{EventKind, Trace};
use std::collections::{BTreeSet, HashSet};

pub const INVARIANT: Invariant = Invariant {
    id: "I3",
    title: "No orphan members",
    description: "At the end of every step the membership holds exactly the desired slots' \
                  members, none unstarted and none a learner; at no time does it exceed the \
                  desired size plus one.",
    check,
};

pub fn check(trace: &Trace) -> Verdict {
    let model = Model::new(trace);
    let mut v = Verdict::new(&INVARIANT);
    for step in &model.steps {
        end_of_step(&model, step, &mut v);
    }
    upper_bound(&model, &mut v);
    if !trace
        .events
        .iter()
        .any(|e| matches!(e.kind, EventKind::MemberList { .. }))
    {
        v.nothing_to_judge("no member list was observed");
    }
    v
}

fn end_of_step(model: &Model, step: &Step, v: &mut Verdict) {
    let Some(end) = step.end else {
        return;
    };
    let end_ev = &model.events[end];
    // Lists are recorded on change only, so a quiet step may have none;
    // statuses are recorded at least every 2 s, so their absence too means
    // nothing answered.
    let observed = model.events[step.start..end].iter().any(|e| {
        matches!(
            e.kind,
            EventKind::MemberList { .. } | EventKind::MemberStatus { .. }
        )
    });
    let list = model.list_at_end(step);
    let (Some(list), true) = (list, observed) else {
        v.violate(
            format!(
                "{} ended at t={}ms with no member list or status observed during it",
                step.label(),
                end_ev.t_ms
            ),
            vec![model.events[step.start].clone(), end_ev.clone()],
        );
        return;
    };
    let members = members_of(list);
    let evidence = vec![list.clone(), end_ev.clone()];
    let at = format!("at the end of {} (t={}ms)", step.label(), end_ev.t_ms);

    let unstarted: Vec<String> = members
        .iter()
        .filter(|m| !m.is_started())
        .map(|m| model.describe_member(m))
        .collect();
    if !unstarted.is_empty() {
        v.violate(
            format!("unstarted member(s) {} left {at}", unstarted.join(", ")),
            evidence.clone(),
        );
    }
    let learners: Vec<String> = members
        .iter()
        .filter(|m| m.is_learner)
        .map(|m| model.describe_member(m))
        .collect();
    if !learners.is_empty() {
        v.violate(
            format!("learner(s) {} left {at}", learners.join(", ")),
            evidence.clone(),
        );
    }
    let desired: BTreeSet<&str> = model
        .slots
        .iter()
        .filter(|s| is_desired(s, step))
        .map(|s| s.name.as_str())
        .collect();
    // A member is its slot's by peer URL: its name need not be the slot's
    // (tidb-operator v2 names a PD after its object, the pod differently).
    let names: BTreeSet<&str> = members
        .iter()
        .filter(|m| m.is_started())
        .map(|m| {
            model
                .slot_of_member(m)
                .map_or(m.name.as_str(), |s| s.name.as_str())
        })
        .collect();
    // Names are only comparable when the header listed the slots.
    let names_differ = !model.slots.is_empty() && unstarted.is_empty() && names != desired;
    if members.len() != step.desired as usize || names_differ {
        v.violate(
            format!(
                "membership has {} member(s) [{}] {at}, desired {} [{}]",
                members.len(),
                members
                    .iter()
                    .map(|m| model.describe_member(m))
                    .collect::<Vec<_>>()
                    .join(", "),
                step.desired,
                desired.iter().copied().collect::<Vec<_>>().join(",")
            ),
            evidence,
        );
    }
}

/// Endless member creation: more than one member beyond what the current
/// or previous step wants, reported once per step.
fn upper_bound(model: &Model, v: &mut Verdict) {
    let mut reported: HashSet<usize> = HashSet::new();
    for (pos, e) in model.events.iter().enumerate() {
        let EventKind::MemberList { via, members, .. } = &e.kind else {
            continue;
        };
        let Some(step) = model.step_context(pos) else {
            continue;
        };
        let bound = step.desired.max(step.prev_desired.unwrap_or(0)) as usize + 1;
        if members.len() > bound && reported.insert(step.start) {
            v.violate(
                format!(
                    "member list via {via} at t={}ms has {} members during {}, more than the \
                     bound {bound} (desired {} + 1)",
                    e.t_ms,
                    members.len(),
                    step.label(),
                    bound - 1
                ),
                vec![model.events[step.start].clone(), e.clone()],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testkit::*;
    use crate::trace::MembershipOp;

    #[test]
    fn correct_deployers_pass() {
        assert_passed(&check(&seed_join_3().finish()));
        assert_passed(&check(&static_3().finish()));
    }

    #[test]
    fn quiet_step_without_new_list_passes() {
        let t = static_3()
            .ev(step_started(1, 3))
            .ev(status(0, "a0", "a0", 2, 9, 2))
            .ev(step_finished(1, true))
            .finish();
        assert_passed(&check(&t));
    }

    #[test]
    fn nothing_observed_fails() {
        let t = static_3()
            .ev(step_started(1, 3))
            .ev(step_finished(1, false))
            .finish();
        assert_violation(&check(&t), "no member list or status observed");
    }

    #[test]
    fn nameless_member_left_after_step_fails() {
        let t = static_3()
            .ev(step_started(1, 4))
            .ev(call_add(3, "a3"))
            .ev(list(
                0,
                vec![m(0, "a0"), m(1, "a1"), m(2, "a2"), unstarted(3, "a3")],
            ))
            .ev(started(3, false))
            .ev(exited(3))
            .ev(step_finished(1, false))
            .finish();
        assert_violation(&check(&t), "unstarted member(s) a3 (m3, unstarted) left");
    }

    #[test]
    fn learner_left_after_step_fails() {
        let t = static_3()
            .ev(step_started(1, 4))
            .ev(call_add_learner(3, "a3"))
            .ev(started(3, false))
            .ev(join(3, &[0, 1, 2, 3]))
            .ev(list(
                0,
                vec![m(0, "a0"), m(1, "a1"), m(2, "a2"), learner(3, "a3")],
            ))
            .ev(step_finished(1, true))
            .finish();
        assert_violation(&check(&t), "learner(s) a3 (m3) left");
    }

    #[test]
    fn wrong_names_or_count_fail() {
        // Scale to 2 removed m1 instead of m2.
        let t = static_3()
            .ev(step_started(1, 2))
            .ev(call_on(MembershipOp::Remove, "a1"))
            .ev(list(0, vec![m(0, "a0"), m(2, "a2")]))
            .ev(step_finished(1, true))
            .finish();
        assert_violation(&check(&t), "desired 2 [m0,m1]");
        let t = static_3()
            .ev(step_started(1, 4))
            .ev(status(0, "a0", "a0", 2, 9, 2))
            .ev(step_finished(1, false))
            .finish();
        assert_violation(&check(&t), "membership has 3 member(s)");
    }

    #[test]
    fn runaway_membership_fails_but_scale_in_slack_passes() {
        let five: Vec<_> = (0..5).map(|i| m(i, &format!("a{i}"))).collect();
        // 5 -> 3: the list still holds 5 for a while.
        let t = TB::new()
            .ev(step_started(0, 5))
            .ev(list(0, five.clone()))
            .ev(step_finished(0, true))
            .ev(step_started(1, 3))
            .ev(list(0, five.clone()))
            .ev(list(0, three()))
            .ev(step_finished(1, true))
            .build();
        assert_passed(&check(&t));
        let t = static_3()
            .ev(step_started(1, 3))
            .ev(list(0, five))
            .ev(list(0, three()))
            .ev(step_finished(1, true))
            .finish();
        assert_violation(
            &check(&t),
            "has 5 members during step 1 (s1), more than the bound 4",
        );
    }

    /// tidb-operator v2 names a PD after its object (`etcd-x1`) and its pod
    /// differently (`etcd-pd-x1`): members are their slots' by peer URL.
    #[test]
    fn members_named_unlike_their_slots_are_matched_by_peer_url() {
        let renamed = |url_of_third: String| {
            let mut members: Vec<_> = (0..3).map(|i| m(i, &format!("a{i}"))).collect();
            for member in &mut members {
                member.name = format!("pd-object-{}", member.id);
            }
            members[2].peer_urls = vec![url_of_third];
            static_3()
                .ev(step_started(1, 3))
                .ev(list(0, members))
                .ev(step_finished(1, true))
                .finish()
        };
        assert_passed(&check(&renamed(peer(2))));
        // A member at no slot's URL is not the desired third one.
        assert_violation(
            &check(&renamed("http://10.9.9.9:2380".into())),
            "desired 3 [m0,m1,m2]",
        );
    }

    /// Where the operator names its pods, a lost member comes back on a new
    /// slot: the step's end is judged against the slots the trace names.
    #[test]
    fn a_member_replaced_on_a_new_slot_passes_and_a_dead_one_left_fails() {
        let replaced = |members: Vec<crate::trace::MemberInfo>| {
            static_3()
                .ev(step_started(1, 3))
                .ev(exited(1))
                .ev(call_on(MembershipOp::Remove, "a1"))
                .ev(slot_added(6))
                .ev(call_add(6, "a6"))
                .ev(started(6, false))
                .ev(list(0, members))
                .ev(step_finished_wanting(1, true, &[0, 2, 6]))
                .finish()
        };
        assert_passed(&check(&replaced(vec![m(0, "a0"), m(2, "a2"), m(6, "a6")])));
        assert_violation(
            &check(&replaced(vec![
                m(0, "a0"),
                m(1, "a1"),
                m(2, "a2"),
                m(6, "a6"),
            ])),
            "membership has 4 member(s)",
        );
        // Three members, but the dead pod's instead of the new one's.
        assert_violation(
            &check(&replaced(vec![m(0, "a0"), m(1, "a1"), m(2, "a2")])),
            "desired 3 [m0,m2,m6]",
        );
    }
}
