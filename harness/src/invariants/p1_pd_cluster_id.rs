//! P1: PD's cluster ID is created once and never changes: the strong form
//! of I1 for PD, whose ID is random per genesis, so a second genesis
//! always shows as a second ID.

use super::{Invariant, Verdict};
use crate::trace::{Event, EventKind, Trace};

pub const INVARIANT: Invariant = Invariant {
    id: "P1",
    title: "One PD cluster ID",
    description: "Every PD start, on every member and across restarts, reads one and the same \
                  PD cluster ID (kept at /pd/cluster_id).",
    check,
};

pub fn check(trace: &Trace) -> Verdict {
    let mut v = Verdict::new(&INVARIANT);
    let mut first: Option<&Event> = None;
    let mut reads = 0u32;
    for e in &trace.events {
        let EventKind::PdClusterId {
            slot, cluster_id, ..
        } = &e.kind
        else {
            continue;
        };
        reads += 1;
        let Some(first) = first else {
            first = Some(e);
            continue;
        };
        let EventKind::PdClusterId {
            slot: first_slot,
            cluster_id: first_id,
            ..
        } = &first.kind
        else {
            continue;
        };
        if cluster_id != first_id {
            v.violate(
                format!(
                    "{slot} runs in PD cluster {cluster_id} at t={}ms, but {first_slot} ran in \
                     PD cluster {first_id} at t={}ms: a second PD genesis",
                    e.t_ms, first.t_ms
                ),
                vec![first.clone(), e.clone()],
            );
        }
    }
    v.metrics.insert("pd_cluster_id_reads".into(), reads as f64);
    if reads == 0 {
        v.nothing_to_judge("no PD start read its cluster ID (not PD, or no PD got that far)");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testkit::*;

    fn read(i: usize, id: &str, existed: bool) -> EventKind {
        EventKind::PdClusterId {
            slot: name(i),
            cluster_id: id.into(),
            existed,
        }
    }

    #[test]
    fn one_id_on_every_member_and_restart_passes() {
        let t = TB::new()
            .evs([
                read(0, "771", false),
                read(1, "771", false),
                read(2, "771", false),
                exited(1),
                read(1, "771", true),
            ])
            .build();
        let v = check(&t);
        assert_passed(&v);
        assert_eq!(v.metrics["pd_cluster_id_reads"], 4.0);
    }

    #[test]
    fn a_second_id_is_a_second_genesis() {
        let t = TB::new()
            .evs([
                read(0, "771", false),
                read(1, "771", true),
                read(2, "902", false),
            ])
            .build();
        let v = check(&t);
        assert_violation(&v, "m2 runs in PD cluster 902");
        assert_eq!(v.violations.len(), 1);
        assert_eq!(v.violations[0].evidence.len(), 2);
    }

    #[test]
    fn etcd_runs_have_nothing_to_judge() {
        let v = check(&static_3().build());
        assert!(v.violations.is_empty());
        assert_eq!(v.outcome_word(), "n/a");
    }
}
