//! docs/findings.md section 7: the seed is lost after a joiner's MemberAdd
//! committed but before the joiner started; two voters, one never started,
//! no quorum, and every restart of the joiner fails to list the members.

use super::KnownFinding;
use crate::trace::{EngineErrorClass, EventKind, MembershipOp, Trace};

pub(super) const FINDING: KnownFinding = KnownFinding {
    id: "pd-seed-lost-after-member-add",
    section: 7,
    title: "a seed lost right after a joiner's MemberAdd loses the quorum for good",
    engine: "pd",
    versions: &["8.5.7", "26.3.4"],
    explains: &["I3", "I5", "D1", "C1"],
    signature,
};

/// Some slot's peer URL was added to the cluster, the slot never started
/// its local member, and its starts failed to list the members.
fn signature(trace: &Trace) -> bool {
    trace.slots().iter().any(|slot| {
        let added = trace.events.iter().any(|e| {
            matches!(
                &e.kind,
                EventKind::MembershipApplied { op: MembershipOp::Add, peer_urls, .. }
                    if peer_urls.contains(&slot.peer_url)
            )
        });
        let started = trace
            .events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::LocalMember { slot: s, .. } if *s == slot.name));
        let list_failed =
            super::slot_refused(trace, &slot.name, EngineErrorClass::JoinMemberListFailed);
        added && !started && list_failed
    })
}
