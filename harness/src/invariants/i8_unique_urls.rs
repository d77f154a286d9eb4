//! I8: no two members share a URL, and steps end with members only on
//! desired slots.

use super::model::{Model, commas, is_desired, members_of, norm_url};
use super::{Invariant, Verdict};
use crate::trace::{EventKind, MemberInfo, Trace};
use std::collections::{BTreeMap, BTreeSet, HashSet};

pub const INVARIANT: Invariant = Invariant {
    id: "I8",
    title: "Unique URLs",
    description: "In every member list peer URLs and client URLs are unique across members; \
                  at the end of every step each member's peer URL belongs to a desired slot.",
    check,
};

pub fn check(trace: &Trace) -> Verdict {
    let model = Model::new(trace);
    let mut v = Verdict::new(&INVARIANT);
    // Each duplicated URL is reported once, at its first list.
    let mut reported: HashSet<String> = HashSet::new();
    for e in model.events {
        let EventKind::MemberList { via, members, .. } = &e.kind else {
            continue;
        };
        for (kind, urls_of) in [
            (
                "peer",
                (|m: &MemberInfo| &m.peer_urls) as fn(&MemberInfo) -> &Vec<String>,
            ),
            ("client", |m: &MemberInfo| &m.client_urls),
        ] {
            for (url, ids) in shared_urls(members, urls_of) {
                if reported.insert(format!("{kind} {url}")) {
                    v.violate(
                        format!(
                            "{kind} URL {url} is shared by members {} in the list via {via} at \
                             t={}ms",
                            commas(&ids),
                            e.t_ms
                        ),
                        vec![e.clone()],
                    );
                }
            }
        }
    }
    // Without the slot table no URL can be placed.
    let steps = if model.slots.is_empty() {
        &[][..]
    } else {
        &model.steps[..]
    };
    for step in steps {
        let (Some(end), Some(list)) = (step.end, model.list_at_end(step)) else {
            continue;
        };
        let strays: Vec<String> = members_of(list)
            .iter()
            .filter(|m| {
                m.peer_urls
                    .iter()
                    .any(|u| model.slot_of_url(u).is_none_or(|s| !is_desired(s, step)))
            })
            .map(|m| format!("{} {}", m.id, commas(&m.peer_urls)))
            .collect();
        if !strays.is_empty() {
            let end_ev = &model.events[end];
            v.violate(
                format!(
                    "at the end of {} (t={}ms) member(s) {} have peer URLs outside the {} \
                     desired slot(s)",
                    step.label(),
                    end_ev.t_ms,
                    strays.join(", "),
                    step.desired
                ),
                vec![list.clone(), end_ev.clone()],
            );
        }
    }
    if !trace
        .events
        .iter()
        .any(|e| matches!(e.kind, EventKind::MemberList { .. }))
    {
        v.nothing_to_judge("no member list was observed");
    }
    v
}

/// URLs held by more than one member, with the members holding them.
fn shared_urls(
    members: &[MemberInfo],
    urls_of: fn(&MemberInfo) -> &Vec<String>,
) -> BTreeMap<String, Vec<String>> {
    let mut holders: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in members {
        let own: BTreeSet<String> = urls_of(m).iter().map(|u| norm_url(u)).collect();
        for url in own {
            holders.entry(url).or_default().push(m.id.clone());
        }
    }
    holders.retain(|_, ids| ids.len() > 1);
    holders
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testkit::*;

    #[test]
    fn correct_deployers_pass() {
        assert_passed(&check(&seed_join_3().finish()));
        assert_passed(&check(&static_3().finish()));
    }

    #[test]
    fn duplicate_peer_or_client_url_fails() {
        let dup_peer = MemberInfo {
            peer_urls: vec![peer(1)],
            ..m(3, "a3")
        };
        let dup_client = MemberInfo {
            client_urls: vec![client(0)],
            ..m(4, "a4")
        };
        let mut members = three();
        members.push(dup_peer);
        members.push(dup_client);
        let t = static_3().ev(list(0, members)).finish();
        let v = check(&t);
        assert_violation(
            &v,
            "peer URL http://127.0.0.11:2380 is shared by members a1,a3",
        );
        assert_violation(
            &v,
            "client URL http://127.0.0.10:2379 is shared by members a0,a4",
        );
    }

    #[test]
    fn member_outside_desired_slots_at_step_end_fails() {
        let t = static_3()
            .ev(step_started(1, 2))
            .ev(step_finished(1, true))
            .finish();
        assert_violation(
            &check(&t),
            "member(s) a2 http://127.0.0.12:2380 have peer URLs outside",
        );
    }
}
