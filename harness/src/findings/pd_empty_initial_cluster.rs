//! docs/findings.md section 5: a PD 26 joiner whose first start failed after
//! its etcd opened `member/snap/db` restarts with an empty initial cluster
//! and `existing`, and etcd refuses: `couldn't find local name`.

use super::KnownFinding;
use crate::trace::{EngineErrorClass, EventKind, Trace};

pub(super) const FINDING: KnownFinding = KnownFinding {
    id: "pd-joiner-restarts-with-empty-initial-cluster",
    section: 5,
    title: "a PD joiner that lost its only peer during its first start never starts again",
    engine: "pd",
    versions: &["26.3.4"],
    explains: &["I2", "I3", "I5", "D1", "C1"],
    signature,
};

/// One slot was told to `--join`, PD computed no initial cluster and
/// `existing` for it, and its etcd could not find its own name.
fn signature(trace: &Trace) -> bool {
    trace.slots().iter().any(|slot| {
        let computed_empty = trace.events.iter().any(|e| {
            matches!(
                &e.kind,
                EventKind::PdConfig { slot: s, initial_cluster, initial_cluster_state, join }
                    if *s == slot.name
                        && initial_cluster.is_empty()
                        && initial_cluster_state == "existing"
                        && !join.is_empty()
            )
        });
        let name_not_found =
            super::slot_refused(trace, &slot.name, EngineErrorClass::LocalNameNotFound);
        computed_empty && name_not_found
    })
}
