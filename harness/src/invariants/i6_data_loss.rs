//! I6: a member whose data was lost is replaced, never resurrected.

use super::model::{Model, is_desired, members_of, norm_url};
use super::{Invariant, Verdict};
use crate::trace::{Event, EventKind, Trace};
use std::collections::HashMap;

pub const INVARIANT: Invariant = Invariant {
    id: "I6",
    title: "Data loss handled",
    description: "After a slot's data is wiped, its old member never runs again and the slot \
                  never bootstraps; by the end of the step the old member is removed and a \
                  still-desired slot is back as a new member.",
    check,
};

pub fn check(trace: &Trace) -> Verdict {
    let model = Model::new(trace);
    let mut v = Verdict::new(&INVARIANT);
    // Slot -> the LocalMember it last ran as, since its last wipe.
    let mut ran_as: HashMap<&str, usize> = HashMap::new();
    let mut losses = 0u32;
    for (pos, e) in model.events.iter().enumerate() {
        match &e.kind {
            EventKind::LocalMember { slot, .. } => {
                ran_as.insert(slot, pos);
            }
            EventKind::DataWiped { slot } => {
                if let Some(prev) = ran_as.remove(slot.as_str())
                    && let EventKind::LocalMember { member_id, .. } = &model.events[prev].kind
                {
                    after_wipe(&model, pos, slot, member_id, &mut v);
                    losses += 1;
                }
            }
            _ => {}
        }
    }
    if losses == 0 {
        v.nothing_to_judge("no member lost its data");
    }
    v
}

fn after_wipe(model: &Model, wipe: usize, slot: &str, lost: &str, v: &mut Verdict) {
    let w = &model.events[wipe];
    // Up to the slot's next wipe; later ones are judged on their own.
    let rest = model.span(wipe + 1, model.events.len());
    let cycle = rest
        .iter()
        .position(|x| matches!(&x.kind, EventKind::DataWiped { slot: s } if s == slot))
        .map_or(rest, |n| &rest[..n]);
    let back_as_lost = cycle.iter().find(|x| {
        matches!(&x.kind, EventKind::LocalMember { slot: s, member_id, .. }
            if s == slot && member_id == lost)
    });
    if let Some(x) = back_as_lost {
        v.violate(
            format!(
                "{slot} runs as member {lost} again at t={}ms although its data was wiped at \
                 t={}ms",
                x.t_ms, w.t_ms
            ),
            vec![w.clone(), x.clone()],
        );
    }
    let bootstrap = cycle.iter().find(|x| {
        matches!(&x.kind, EventKind::MemberStart { slot: s, config }
            if s == slot && config.is_genesis())
    });
    if let Some(x) = bootstrap {
        v.violate(
            format!(
                "{slot} started with initial-cluster-state=new at t={}ms after its data was \
                 wiped at t={}ms (re-bootstrap instead of remove and re-add)",
                x.t_ms, w.t_ms
            ),
            vec![w.clone(), x.clone()],
        );
    }
    end_of_step(model, wipe, w, slot, lost, v);
}

/// (c) the lost member is gone and a desired slot is back as someone new.
fn end_of_step(model: &Model, wipe: usize, w: &Event, slot: &str, lost: &str, v: &mut Verdict) {
    let Some(step) = model.finishing_step(wipe) else {
        return;
    };
    let (Some(info), Some(list), Some(end)) = (model.slot(slot), model.list_at_end(step), step.end)
    else {
        return;
    };
    if !is_desired(info, step) {
        return;
    }
    let end_ev = &model.events[end];
    let members = members_of(list);
    let at = format!("at the end of {} (t={}ms)", step.label(), end_ev.t_ms);
    if members.iter().any(|m| m.id == lost) {
        v.violate(
            format!(
                "member {lost} of {slot}, whose data was wiped at t={}ms, is still in the \
                 membership {at}",
                w.t_ms
            ),
            vec![w.clone(), list.clone(), end_ev.clone()],
        );
        return;
    }
    let url = norm_url(&info.peer_url);
    let replaced = members
        .iter()
        .any(|m| m.peer_urls.iter().any(|u| norm_url(u) == url));
    if !replaced {
        v.violate(
            format!(
                "{slot} lost its data at t={}ms and is not back as a new member {at}",
                w.t_ms
            ),
            vec![w.clone(), list.clone(), end_ev.clone()],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testkit::*;
    use crate::trace::{FaultKind, MembershipOp};

    fn volume_lost() -> TB {
        static_3()
            .ev(step_started(1, 3))
            .ev(fault(FaultKind::LOSE_VOLUME, 2))
            .ev(exited(2))
            .ev(wiped(2))
            .ev(deleted(2))
    }

    #[test]
    fn correct_replacement_passes() {
        use MembershipOp::*;
        assert_passed(&check(&seed_join_3().finish()));
        assert_passed(&check(&static_3().finish()));
        let t = volume_lost()
            .ev(call_on(Remove, "a2"))
            .ev(list(0, vec![m(0, "a0"), m(1, "a1")]))
            .ev(call_add(2, "b2"))
            .ev(started(2, false))
            .ev(join(2, &[0, 1, 2]))
            .ev(local(2, "b2", false))
            .ev(status(2, "b2", "a0", 2, 9, 2))
            .ev(list(0, vec![m(0, "a0"), m(1, "a1"), m(2, "b2")]))
            .ev(step_finished(1, true))
            .finish();
        assert_passed(&check(&t));
    }

    #[test]
    fn restart_new_with_same_config_after_wipe_fails() {
        let t = volume_lost()
            .ev(started(2, false))
            .ev(genesis(2, &[0, 1, 2]))
            .ev(local(2, "a2", false))
            .ev(status(2, "a2", "0", 1, 1, 1))
            .ev(step_finished(1, false))
            .finish();
        let v = check(&t);
        assert_violation(&v, "m2 runs as member a2 again");
        assert_violation(&v, "m2 started with initial-cluster-state=new");
        assert_violation(&v, "member a2 of m2, whose data was wiped");
    }

    #[test]
    fn wiped_member_not_replaced_fails() {
        let t = volume_lost()
            .ev(call_on(MembershipOp::Remove, "a2"))
            .ev(list(0, vec![m(0, "a0"), m(1, "a1")]))
            .ev(step_finished(1, false))
            .finish();
        assert_violation(&check(&t), "m2 lost its data at");
    }

    #[test]
    fn scale_in_wipe_of_undesired_slot_passes() {
        let t = static_3()
            .ev(step_started(1, 2))
            .ev(call_on(MembershipOp::Remove, "a2"))
            .ev(exited(2))
            .ev(deleted(2))
            .ev(wiped(2))
            .ev(list(0, vec![m(0, "a0"), m(1, "a1")]))
            .ev(step_finished(1, true))
            .finish();
        assert_passed(&check(&t));
    }
}
