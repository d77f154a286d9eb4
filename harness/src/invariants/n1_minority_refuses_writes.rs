//! N1: while the network is cut, members on the side without a quorum
//! refuse writes.

use super::{Invariant, Verdict};
use crate::trace::{EventKind, Trace};

pub const INVARIANT: Invariant = Invariant {
    id: "N1",
    title: "Minority refuses writes",
    description: "Every write probe sent during a network partition to a member on the side \
                  without a quorum of voters fails; every partition with members on such a side \
                  gets probed.",
    check,
};

pub fn check(trace: &Trace) -> Verdict {
    let mut v = Verdict::new(&INVARIANT);
    let mut cut = None;
    let mut minority_probes = 0u32;
    let mut accepted = 0u32;
    for e in &trace.events {
        match &e.kind {
            EventKind::NetworkCut { .. } => {
                finish(&mut v, cut.take(), minority_probes);
                cut = Some(e.clone());
                minority_probes = 0;
            }
            EventKind::NetworkHealed => {
                finish(&mut v, cut.take(), minority_probes);
                minority_probes = 0;
            }
            EventKind::WriteProbe {
                slot,
                side_has_quorum: false,
                ok,
                ..
            } => {
                minority_probes += 1;
                if *ok {
                    accepted += 1;
                    let mut evidence: Vec<_> = cut.iter().cloned().collect();
                    evidence.push(e.clone());
                    v.violate(
                        format!(
                            "{slot}, on the side of the partition without a quorum, accepted a \
                             write at t={}ms",
                            e.t_ms
                        ),
                        evidence,
                    );
                }
            }
            _ => {}
        }
    }
    finish(&mut v, cut, minority_probes);
    v.metrics
        .insert("minority_writes_accepted".into(), accepted as f64);
    if !trace
        .events
        .iter()
        .any(|e| matches!(e.kind, EventKind::NetworkCut { .. }))
    {
        v.nothing_to_judge("the network was never cut");
    }
    v
}

/// A partition whose minority side had members must have been probed, or
/// the check above proved nothing about it.
fn finish(v: &mut Verdict, cut: Option<crate::trace::Event>, minority_probes: u32) {
    let Some(cut) = cut else { return };
    let EventKind::NetworkCut { isolated, rest } = &cut.kind else {
        return;
    };
    if minority_probes == 0 && !isolated.is_empty() && !rest.is_empty() {
        v.violate(
            format!(
                "the partition at t={}ms ({} | {}) was never probed on its minority side",
                cut.t_ms,
                isolated.join(","),
                rest.join(",")
            ),
            vec![cut],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testkit::*;

    fn cut(isolated: &[&str], rest: &[&str]) -> EventKind {
        EventKind::NetworkCut {
            isolated: isolated.iter().map(|s| s.to_string()).collect(),
            rest: rest.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn probe(slot: &str, side_has_quorum: bool, ok: bool) -> EventKind {
        EventKind::WriteProbe {
            slot: slot.into(),
            side_has_quorum,
            ok,
            error: (!ok).then(|| "timed out".to_string()),
        }
    }

    #[test]
    fn refused_minority_writes_pass() {
        let trace = TB::new()
            .evs([
                step_started(0, 3),
                cut(&["m0"], &["m1", "m2"]),
                probe("m0", false, false),
                probe("m1", true, true),
                probe("m2", true, false),
                EventKind::NetworkHealed,
            ])
            .build();
        let v = check(&trace);
        assert!(v.passed(), "{:?}", v.violations);
        assert_eq!(v.metrics["minority_writes_accepted"], 0.0);
    }

    #[test]
    fn a_write_accepted_by_the_minority_is_a_violation() {
        let trace = TB::new()
            .evs([
                cut(&["m0"], &["m1", "m2"]),
                probe("m0", false, true),
                EventKind::NetworkHealed,
            ])
            .build();
        let v = check(&trace);
        assert_eq!(v.violations.len(), 1);
        assert!(v.violations[0].message.contains("m0"));
        assert_eq!(v.violations[0].evidence.len(), 2);
    }

    #[test]
    fn an_unprobed_partition_is_a_violation() {
        let trace = TB::new()
            .evs([cut(&["m0"], &["m1", "m2"]), EventKind::NetworkHealed])
            .build();
        let v = check(&trace);
        assert_eq!(v.violations.len(), 1);
        assert!(v.violations[0].message.contains("never probed"));
    }

    #[test]
    fn runs_without_partitions_pass() {
        assert!(check(&static_3().build()).passed());
    }
}
