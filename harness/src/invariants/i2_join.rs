//! I2: a member joins only after it was added, with the cluster's true
//! membership as its initial cluster.

use super::model::{Model, commas, norm_url, url_set};
use super::{Invariant, Verdict};
use crate::trace::{EngineErrorClass, Event, EventKind, StartConfig, Trace};
use std::collections::BTreeSet;

pub const INVARIANT: Invariant = Invariant {
    id: "I2",
    title: "Join correctness",
    description: "Every first start outside the genesis configuration uses \
                  initial-cluster-state=existing, happens after its peer URL was added, and \
                  lists exactly the peer URLs of the current membership; the engine never \
                  refuses a join configuration. A PD --join names members of the cluster, \
                  never the joiner itself.",
    check,
};

pub fn check(trace: &Trace) -> Verdict {
    let model = Model::new(trace);
    let mut v = Verdict::new(&INVARIANT);
    let mut joins = 0u32;
    for (pos, e) in model.events.iter().enumerate() {
        match &e.kind {
            EventKind::MemberStart { slot, config }
                if !config.member_initialized && !model.in_genesis_group(pos) =>
            {
                joins += 1;
                if config.initial_cluster_state != "existing" {
                    v.violate(
                        format!(
                            "{slot} started without data at t={}ms with \
                             initial-cluster-state={:?} outside the genesis configuration; a \
                             joiner must use existing",
                            e.t_ms, config.initial_cluster_state
                        ),
                        vec![e.clone()],
                    );
                } else {
                    check_join(&model, pos, slot, config, &mut v);
                }
            }
            EventKind::PdConfig { slot, join, .. } if !join.is_empty() => {
                check_join_targets(&model, pos, slot, join, &mut v);
            }
            EventKind::EngineError {
                slot,
                class,
                message,
            } if matches!(
                class,
                EngineErrorClass::MemberCountUnequal
                    | EngineErrorClass::PeerUrlsMismatch
                    | EngineErrorClass::LocalNameNotFound
            ) =>
            {
                let refused = last_start_of(model.events, pos, slot);
                // A peer that is itself restarting answers with the membership
                // of its last snapshot until it has replayed its WAL; a join
                // refused then and accepted later with the same configuration
                // was right all along.
                let transient = *class != EngineErrorClass::LocalNameNotFound
                    && refused.is_some_and(|start| {
                        joined_later_with_same_config(model.events, pos, slot, start)
                    });
                if transient {
                    continue;
                }
                let mut evidence = refused.map(|s| vec![s.clone()]).unwrap_or_default();
                evidence.push(e.clone());
                v.violate(
                    format!(
                        "engine on {slot} refused its join configuration at t={}ms ({}): \
                         {message}",
                        e.t_ms,
                        class_name(*class)
                    ),
                    evidence,
                );
            }
            _ => {}
        }
    }
    if joins == 0 {
        v.nothing_to_judge("no member started without data after the genesis");
    }
    v
}

/// Whether `slot` later started with the same bootstrap configuration as
/// `refused` and that start produced a member.
fn joined_later_with_same_config(
    events: &[Event],
    pos: usize,
    slot: &str,
    refused: &Event,
) -> bool {
    let EventKind::MemberStart {
        config: refused_config,
        ..
    } = &refused.kind
    else {
        return false;
    };
    let mut same_start_pending = false;
    for e in &events[pos + 1..] {
        match &e.kind {
            EventKind::MemberStart { slot: s, config } if s == slot => {
                same_start_pending = !config.member_initialized
                    && config.initial_cluster == refused_config.initial_cluster
                    && config.initial_cluster_state == refused_config.initial_cluster_state;
            }
            EventKind::LocalMember { slot: s, .. } if s == slot && same_start_pending => {
                return true;
            }
            EventKind::DataWiped { slot: s } if s == slot => return false,
            _ => {}
        }
    }
    false
}

fn check_join(model: &Model, pos: usize, slot: &str, config: &StartConfig, v: &mut Verdict) {
    let e = &model.events[pos];
    let own = model.slot(slot).map(|s| norm_url(&s.peer_url));
    let listed = url_set(config.initial_cluster.values().flatten());
    // The deployer chose the configuration when it started the process; on
    // docker the startup line can be parsed after a later reconfiguration,
    // so the membership at process start is what the join is judged by.
    let decided_at = process_start_before(model.events, pos, slot).unwrap_or(pos);
    let mut views = model.membership_views(decided_at);
    if decided_at != pos {
        views.extend(model.membership_views(pos));
    }
    // A PD joiner adds itself just before its etcd starts; another
    // member's log of that add can be read after the joiner's start line
    // (docker's log streams lag), so the membership right after the add
    // is the one its initial cluster was computed from.
    if let (Some(start), Some(own)) = (process_start_before(model.events, pos, slot), own.as_ref())
        && pd_join_since(model.events, start, pos, slot)
        && let Some(added) = own_add_after(model.events, pos, slot, own)
    {
        views.extend(model.membership_views(added + 1));
    }
    let fits =
        |urls: &BTreeSet<String>| own.as_ref().is_none_or(|o| urls.contains(o)) && *urls == listed;
    // Only a join that no reconstruction explains is reported.
    if views.iter().any(|view| fits(&view.members.peer_urls())) {
        return;
    }
    let Some(view) = views.first() else {
        return;
    };
    let members = view.members.peer_urls();
    let mut problems = Vec::new();
    if let Some(own) = own.as_ref().filter(|o| !members.contains(*o)) {
        problems.push(format!("its peer URL {own} was not a member yet"));
    }
    let missing: Vec<&String> = members.difference(&listed).collect();
    if !missing.is_empty() {
        problems.push(format!("its initial-cluster lacks [{}]", commas(missing)));
    }
    let extra: Vec<&String> = listed.difference(&members).collect();
    if !extra.is_empty() {
        problems.push(format!("its initial-cluster has extra [{}]", commas(extra)));
    }
    let mut evidence: Vec<Event> = view
        .base
        .map(|b| model.events[b].clone())
        .into_iter()
        .collect();
    // The latest changes replayed over the base show how it got there.
    let skip = view.replayed.len().saturating_sub(2);
    evidence.extend(
        view.replayed[skip..]
            .iter()
            .map(|&p| model.events[p].clone()),
    );
    evidence.push(e.clone());
    v.violate(
        format!(
            "{slot} joined at t={}ms but {} (membership: [{}])",
            e.t_ms,
            problems.join(" and "),
            commas(&members)
        ),
        evidence,
    );
}

/// A PD `--join`: never the joiner's own client URL (PD refuses only an
/// exact match), and on a first start (no data) only client URLs of
/// members of the cluster at that moment, or a front of the members (a
/// Service) while the cluster has members.
fn check_join_targets(model: &Model, pos: usize, slot: &str, join: &str, v: &mut Verdict) {
    let e = &model.events[pos];
    let targets: Vec<String> = join
        .split(',')
        .map(norm_url)
        .filter(|u| !u.is_empty())
        .collect();
    let own_client = model.slot(slot).map(|s| norm_url(&s.client_url));
    if let Some(own) = own_client.as_ref().filter(|o| targets.contains(*o)) {
        v.violate(
            format!(
                "{slot} was started at t={}ms with --join naming itself ({own})",
                e.t_ms
            ),
            vec![e.clone()],
        );
        return;
    }
    let first_start = process_start_before(model.events, pos, slot).is_some_and(|p| {
        matches!(
            &model.events[p].kind,
            EventKind::ProcessStarted {
                had_data: false,
                ..
            }
        )
    });
    if !first_start {
        return;
    }
    let views = model.membership_views(pos);
    let fronts = &model.member_fronts;
    for target in targets.iter().filter(|t| fronts.contains(*t)) {
        if views.iter().all(|view| view.members.peer_urls().is_empty()) {
            v.violate(
                format!(
                    "{slot} was started at t={}ms with --join {target}, a front of the members, \
                     while the cluster had none",
                    e.t_ms
                ),
                vec![e.clone()],
            );
        }
    }
    for target in targets.iter().filter(|t| !fronts.contains(*t)) {
        let owner = model
            .slots
            .iter()
            .find(|s| norm_url(&s.client_url) == *target);
        let is_member = owner.is_some_and(|o| {
            let peer = norm_url(&o.peer_url);
            views
                .iter()
                .any(|view| view.members.peer_urls().contains(&peer))
        });
        if !is_member {
            let whose = owner.map_or("no slot's client URL".to_string(), |o| {
                format!("{}'s client URL, not a member then", o.name)
            });
            v.violate(
                format!(
                    "{slot} was started at t={}ms with --join {target}: {whose}",
                    e.t_ms
                ),
                vec![e.clone()],
            );
        }
    }
}

/// Whether `slot`'s PD logged a `--join` between its process start and `pos`.
fn pd_join_since(events: &[Event], start: usize, pos: usize, slot: &str) -> bool {
    events[start..pos]
        .iter()
        .any(|e| matches!(&e.kind, EventKind::PdConfig { slot: s, join, .. } if s == slot && !join.is_empty()))
}

/// The first applied add of `own` after `pos`, before `slot`'s process
/// exits.
fn own_add_after(events: &[Event], pos: usize, slot: &str, own: &str) -> Option<usize> {
    for (p, e) in events.iter().enumerate().skip(pos + 1) {
        match &e.kind {
            EventKind::MembershipApplied {
                op: crate::trace::MembershipOp::Add,
                peer_urls,
                ..
            } if peer_urls.iter().any(|u| norm_url(u) == own) => return Some(p),
            EventKind::ProcessExited { slot: s, .. } if s == slot => return None,
            _ => {}
        }
    }
    None
}

/// The slot's last process start before `before`, if no exit came between.
fn process_start_before(events: &[Event], before: usize, slot: &str) -> Option<usize> {
    for (p, e) in events[..before].iter().enumerate().rev() {
        match &e.kind {
            EventKind::ProcessStarted { slot: s, .. } if s == slot => return Some(p),
            EventKind::ProcessExited { slot: s, .. } if s == slot => return None,
            _ => {}
        }
    }
    None
}

fn last_start_of<'e>(events: &'e [Event], before: usize, slot: &str) -> Option<&'e Event> {
    events[..before]
        .iter()
        .rev()
        .find(|e| matches!(&e.kind, EventKind::MemberStart { slot: s, .. } if s == slot))
}

fn class_name(class: EngineErrorClass) -> String {
    serde_json::to_value(class)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{class:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testkit::*;
    use crate::trace::{FaultKind, MembershipOp};

    /// PD's way in: m3 starts with `--join`, adds itself, then its etcd
    /// starts `existing`.
    fn pd_join_of_m3(targets: &str) -> Trace {
        static_3()
            .ev(step_started(1, 4))
            .ev(started(3, false))
            .ev(EventKind::PdConfig {
                slot: name(3),
                initial_cluster: Default::default(),
                initial_cluster_state: "existing".into(),
                join: targets.into(),
            })
            .ev(applied(0, MembershipOp::Add, "a3", 3))
            .ev(join(3, &[0, 1, 2, 3]))
            .ev(local(3, "a3", false))
            .ev(step_finished(1, true))
            .finish()
    }

    #[test]
    fn a_pd_join_whose_add_is_logged_after_its_start_passes() {
        // On docker the seed's "added member" line can be read after the
        // joiner's own start line.
        let t = static_3()
            .ev(step_started(1, 4))
            .ev(started(3, false))
            .ev(EventKind::PdConfig {
                slot: name(3),
                initial_cluster: Default::default(),
                initial_cluster_state: "existing".into(),
                join: client(0),
            })
            .ev(join(3, &[0, 1, 2, 3]))
            .ev(applied(0, MembershipOp::Add, "a3", 3))
            .ev(local(3, "a3", false))
            .ev(step_finished(1, true))
            .finish();
        assert_passed(&check(&t));
        // Without PD's own join, the same order is a join before the add.
        let t = static_3()
            .ev(step_started(1, 4))
            .ev(started(3, false))
            .ev(join(3, &[0, 1, 2, 3]))
            .ev(applied(0, MembershipOp::Add, "a3", 3))
            .ev(local(3, "a3", false))
            .ev(step_finished(1, true))
            .finish();
        assert_violation(&check(&t), "was not a member yet");
    }

    #[test]
    fn a_pd_join_through_members_passes() {
        assert_passed(&check(&pd_join_of_m3(&format!(
            "{},{}",
            client(0),
            client(1)
        ))));
    }

    /// tidb-operator v2 joins through its PD Service, which fronts the
    /// members: fine while the cluster has members, never before it has.
    #[test]
    fn a_pd_join_through_a_front_of_the_members() {
        const FRONT: &str = "http://pd.ns:2379";
        let with_front = |mut t: Trace| {
            if let EventKind::RunStarted { member_fronts, .. } = &mut t.events[0].kind {
                member_fronts.push(FRONT.into());
            }
            t
        };
        assert_passed(&check(&with_front(pd_join_of_m3(FRONT))));
        // Without the header naming it, the Service is no member's URL.
        assert_violation(&check(&pd_join_of_m3(FRONT)), "no slot's client URL");
        // A PD told to join through the front before any member exists.
        let t = with_front(
            TB::new()
                .ev(step_started(0, 1))
                .ev(started(0, false))
                .ev(EventKind::PdConfig {
                    slot: name(0),
                    initial_cluster: Default::default(),
                    initial_cluster_state: "existing".into(),
                    join: FRONT.into(),
                })
                .ev(step_finished(0, false))
                .build(),
        );
        assert_violation(
            &check(&t),
            "a front of the members, while the cluster had none",
        );
    }

    #[test]
    fn a_pd_join_naming_itself_fails() {
        let v = check(&pd_join_of_m3(&format!("{},{}", client(0), client(3))));
        assert_violation(&v, "m3 was started at");
        assert_violation(&v, "with --join naming itself");
    }

    #[test]
    fn a_pd_join_through_a_non_member_fails() {
        let v = check(&pd_join_of_m3(&client(4)));
        assert_violation(&v, "m4's client URL, not a member then");
        let v = check(&pd_join_of_m3("http://127.9.9.9:2379"));
        assert_violation(&v, "no slot's client URL");
    }

    #[test]
    fn correct_deployers_pass() {
        assert_passed(&check(&seed_join_3().finish()));
        assert_passed(&check(&static_3().finish()));
    }

    #[test]
    fn join_with_initial_cluster_lacking_a_member_fails() {
        let t = seed_join_3()
            .ev(step_started(2, 4))
            .ev(call_add(3, "a3"))
            .ev(started(3, false))
            .ev(join(3, &[0, 1, 3]))
            .ev(step_finished(2, false))
            .finish();
        let v = check(&t);
        assert_violation(&v, "m3 joined at");
        assert_violation(&v, "lacks [http://127.0.0.12:2380]");
    }

    #[test]
    fn refusal_by_a_restarting_peer_then_the_same_join_succeeding_passes() {
        // m0 was restarting and answered with its snapshot's membership; the
        // same configuration joined a moment later.
        let t = seed_join_3()
            .ev(step_started(2, 4))
            .ev(call_add(3, "a3"))
            .ev(started(3, false))
            .ev(join(3, &[0, 1, 2, 3]))
            .ev(engine_error(3, EngineErrorClass::MemberCountUnequal))
            .ev(exited(3))
            .ev(started(3, false))
            .ev(join(3, &[0, 1, 2, 3]))
            .ev(local(3, "a3", false))
            .finish();
        assert_passed(&check(&t));
    }

    #[test]
    fn refusal_repeated_until_the_end_fails() {
        let t = seed_join_3()
            .ev(step_started(2, 4))
            .ev(call_add(3, "a3"))
            .ev(started(3, false))
            .ev(join(3, &[0, 1, 2, 3]))
            .ev(engine_error(3, EngineErrorClass::MemberCountUnequal))
            .ev(exited(3))
            .ev(started(3, false))
            .ev(join(3, &[0, 1, 2, 3]))
            .ev(engine_error(3, EngineErrorClass::MemberCountUnequal))
            .finish();
        assert_violation(&check(&t), "refused its join configuration");
    }

    #[test]
    fn join_before_add_fails() {
        let t = seed_join_3()
            .ev(step_started(2, 4))
            .ev(started(3, false))
            .ev(join(3, &[0, 1, 2, 3]))
            .ev(step_finished(2, false))
            .finish();
        assert_violation(
            &check(&t),
            "peer URL http://127.0.0.13:2380 was not a member yet",
        );
    }

    #[test]
    fn startup_line_parsed_after_the_member_was_removed_passes() {
        // Docker delivers the startup line late: m3 was started with the
        // right list, then removed by the scale-in before its line arrived.
        let t = seed_join_3()
            .ev(step_started(2, 4))
            .ev(call_add(3, "a3"))
            .ev(applied(0, MembershipOp::Add, "a3", 3))
            .ev(started(3, false))
            .ev(step_finished(2, true))
            .ev(step_started(3, 3))
            .ev(call_on(MembershipOp::Remove, "a3"))
            .ev(applied(0, MembershipOp::Remove, "a3", 3))
            .ev(list(0, three()))
            .ev(join(3, &[0, 1, 2, 3]))
            .finish();
        assert_passed(&check(&t));
    }

    #[test]
    fn wrong_list_is_still_caught_when_the_startup_line_comes_late() {
        let t = seed_join_3()
            .ev(step_started(2, 4))
            .ev(call_add(3, "a3"))
            .ev(applied(0, MembershipOp::Add, "a3", 3))
            .ev(started(3, false))
            .ev(list(0, three()))
            .ev(join(3, &[0, 3]))
            .finish();
        assert_violation(&check(&t), "lacks [");
    }

    #[test]
    fn join_right_after_add_passes_even_with_a_lagging_list() {
        // m1 lists the old membership just after the add returned.
        let t = seed_join_3()
            .ev(step_started(2, 4))
            .ev(call_add(3, "a3"))
            .ev(list(1, three()))
            .ev(started(3, false))
            .ev(join(3, &[0, 1, 2, 3]))
            .finish();
        assert_passed(&check(&t));
    }

    #[test]
    fn join_before_any_member_list_uses_the_genesis_config() {
        let t = TB::new()
            .ev(step_started(0, 2))
            .ev(started(0, false))
            .ev(genesis(0, &[0]))
            .ev(local(0, "a0", false))
            .ev(call_add(1, "a1"))
            .ev(started(1, false))
            .ev(join(1, &[0, 1]))
            .finish();
        assert_passed(&check(&t));
    }

    #[test]
    fn learner_join_and_volume_replacement_pass() {
        use MembershipOp::*;
        let t = static_3()
            .ev(step_started(1, 3))
            .ev(fault(FaultKind::LOSE_VOLUME, 2))
            .ev(exited(2))
            .ev(wiped(2))
            .ev(deleted(2))
            .ev(call_on(Remove, "a2"))
            .ev(applied(0, Remove, "a2", 2))
            .ev(list(0, vec![m(0, "a0"), m(1, "a1")]))
            .ev(call_add_learner(2, "b2"))
            .ev(list(0, vec![m(0, "a0"), m(1, "a1"), learner(2, "b2")]))
            .ev(started(2, false))
            .ev(join(2, &[0, 1, 2]))
            .ev(local(2, "b2", false))
            // The joiner replays history, including the removed member.
            .ev(applied(2, Add, "a2", 2))
            .ev(applied(2, Remove, "a2", 2))
            .ev(call_on(Promote, "b2"))
            .ev(list(0, vec![m(0, "a0"), m(1, "a1"), m(2, "b2")]))
            .ev(step_finished(1, true))
            .ev(step_started(2, 4))
            .ev(call_add(3, "a3"))
            .ev(started(3, false))
            .ev(join(3, &[0, 1, 2, 3]))
            .finish();
        assert_passed(&check(&t));
    }

    #[test]
    fn new_start_outside_genesis_fails() {
        let t = seed_join_3()
            .ev(step_started(2, 4))
            .ev(call_add(3, "a3"))
            .ev(started(3, false))
            .ev(genesis(3, &[0, 1, 2, 3]))
            .finish();
        assert_violation(
            &check(&t),
            "initial-cluster-state=\"new\" outside the genesis",
        );
    }

    #[test]
    fn engine_refusal_fails() {
        let t = seed_join_3()
            .ev(step_started(2, 4))
            .ev(call_add(3, "a3"))
            .ev(started(3, false))
            .ev(join(3, &[0, 1, 2, 3]))
            .ev(engine_error(3, EngineErrorClass::MemberCountUnequal))
            .finish();
        assert_violation(&check(&t), "refused its join configuration at");
        assert_violation(&check(&t), "member-count-unequal");
    }
}
