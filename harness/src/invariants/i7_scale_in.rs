//! I7: scale-in removes exactly the members of the slots that go away.

use super::model::{Model, Step, is_desired, members_of};
use super::{Invariant, Verdict};
use crate::trace::{EventKind, Trace};

pub const INVARIANT: Invariant = Invariant {
    id: "I7",
    title: "Scale-in",
    description: "A step that lowers the desired replicas ends with no member of a dropped \
                  slot, and removes no member of a kept slot unless that slot's data was \
                  wiped in the step.",
    check,
};

pub fn check(trace: &Trace) -> Verdict {
    let model = Model::new(trace);
    let mut v = Verdict::new(&INVARIANT);
    let mut scale_ins = 0u32;
    for step in &model.steps {
        if step.prev_desired.is_some_and(|n| step.desired < n) {
            scale_in(&model, step, &mut v);
            scale_ins += 1;
        }
    }
    if scale_ins == 0 {
        v.nothing_to_judge("no step scaled in");
    }
    v
}

fn scale_in(model: &Model, step: &Step, v: &mut Verdict) {
    let Some(end) = step.end else {
        return;
    };
    let end_ev = &model.events[end];
    let from = step.prev_desired.unwrap_or(step.desired);
    if let Some(list) = model.list_at_end(step) {
        let stale: Vec<String> = members_of(list)
            .iter()
            .filter(|m| {
                model
                    .slot_of_member(m)
                    .is_some_and(|s| !is_desired(s, step))
            })
            .map(|m| model.describe_member(m))
            .collect();
        if !stale.is_empty() {
            v.violate(
                format!(
                    "scale-in {from}->{} in {} left {} in the membership at t={}ms",
                    step.desired,
                    step.label(),
                    stale.join(", "),
                    end_ev.t_ms
                ),
                vec![
                    model.events[step.start].clone(),
                    list.clone(),
                    end_ev.clone(),
                ],
            );
        }
    }
    for removal in model
        .removals()
        .filter(|c| c.pos > step.start && c.pos < end)
    {
        let Some(id) = removal.id.as_deref() else {
            continue;
        };
        let Some(slot) = model.slot_of_id(id).filter(|s| is_desired(s, step)) else {
            continue;
        };
        // Replacing a kept member whose data is gone is legitimate.
        let replaced = model
            .span(step.start, end)
            .iter()
            .any(|x| matches!(&x.kind, EventKind::DataWiped { slot: s } if *s == slot.name));
        if !replaced {
            let r = &model.events[removal.pos];
            v.violate(
                format!(
                    "scale-in {from}->{} in {} removed member {id} of kept slot {} at t={}ms",
                    step.desired,
                    step.label(),
                    slot.name,
                    r.t_ms
                ),
                vec![model.events[step.start].clone(), r.clone()],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testkit::*;
    use crate::trace::{FaultKind, MembershipOp::Remove};

    #[test]
    fn correct_scale_in_passes() {
        assert_passed(&check(&seed_join_3().finish()));
        assert_passed(&check(&static_3().finish()));
        let t = static_3()
            .ev(step_started(1, 2))
            .ev(call_on(Remove, "a2"))
            .ev(applied(0, Remove, "a2", 2))
            .ev(exited(2))
            .ev(deleted(2))
            .ev(list(0, vec![m(0, "a0"), m(1, "a1")]))
            .ev(step_finished(1, true))
            .finish();
        assert_passed(&check(&t));
    }

    #[test]
    fn removed_slot_member_staying_fails() {
        let t = static_3()
            .ev(step_started(1, 2))
            .ev(exited(2))
            .ev(deleted(2))
            .ev(step_finished(1, true))
            .finish();
        assert_violation(
            &check(&t),
            "scale-in 3->2 in step 1 (s1) left a2 (m2) in the membership",
        );
    }

    #[test]
    fn removing_a_kept_member_fails_unless_replaced() {
        let t = static_3()
            .ev(step_started(1, 2))
            .ev(call_on(Remove, "a1"))
            .ev(call_on(Remove, "a2"))
            .ev(list(0, vec![m(0, "a0")]))
            .ev(step_finished(1, false))
            .finish();
        assert_violation(&check(&t), "removed member a1 of kept slot m1");

        let t = static_3()
            .ev(step_started(1, 2))
            .ev(fault(FaultKind::LOSE_VOLUME, 1))
            .ev(exited(1))
            .ev(wiped(1))
            .ev(call_on(Remove, "a1"))
            .ev(call_on(Remove, "a2"))
            .ev(call_add(1, "b1"))
            .ev(list(0, vec![m(0, "a0"), m(1, "b1")]))
            .ev(step_finished(1, true))
            .finish();
        assert_passed(&check(&t));
    }

    /// An operator that picks which member a scale-in removes: the slot it
    /// removed is the one not wanted any more, whatever its ordinal.
    #[test]
    fn scale_in_of_any_named_slot_passes_when_the_trace_names_the_kept_ones() {
        let scale_in = |kept: &[usize]| {
            static_3()
                .ev(step_started(1, 2))
                .ev(call_on(Remove, "a1"))
                .ev(applied(0, Remove, "a1", 1))
                .ev(exited(1))
                .ev(list(0, vec![m(0, "a0"), m(2, "a2")]))
                .ev(step_finished_wanting(1, true, kept))
                .finish()
        };
        assert_passed(&check(&scale_in(&[0, 2])));
        assert_violation(
            &check(&scale_in(&[0, 1])),
            "removed member a1 of kept slot m1",
        );
    }
}
