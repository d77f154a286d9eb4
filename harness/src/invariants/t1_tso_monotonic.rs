//! T1: PD's timestamps never go backwards. A timestamp asked after another
//! was handed out (in real time, through any member) must be greater.

use super::{Invariant, Verdict};
use crate::trace::{Event, EventKind, Trace};

pub const INVARIANT: Invariant = Invariant {
    id: "T1",
    title: "Timestamps never go backwards",
    description: "Every PD timestamp asked after another one was answered, through any member, \
                  across leader changes, restarts, scaling and partitions, is greater than it.",
    check,
};

/// A handed-out timestamp, comparable as (physical, logical).
struct Stamp<'e> {
    sent_ms: u64,
    answered_ms: u64,
    ts: (i64, i64),
    event: &'e Event,
}

pub fn check(trace: &Trace) -> Verdict {
    let mut v = Verdict::new(&INVARIANT);
    let stamps: Vec<Stamp> = trace
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Tso {
                sent_ms,
                ok: true,
                physical,
                logical,
                ..
            } => Some(Stamp {
                sent_ms: *sent_ms,
                answered_ms: e.t_ms,
                ts: (*physical, *logical),
                event: e,
            }),
            _ => None,
        })
        .collect();
    let refused = trace
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Tso { ok: false, .. }))
        .count();
    v.metrics.insert("timestamps".into(), stamps.len() as f64);
    v.metrics
        .insert("timestamps_refused".into(), refused as f64);
    if stamps.is_empty() {
        v.nothing_to_judge("no PD timestamp was handed out (not PD, or no PD answered)");
        return v;
    }
    // By answer time: the highest answered strictly before each ask (a
    // millisecond apart at least, so the order is certain) bounds it.
    let mut by_answer: Vec<&Stamp> = stamps.iter().collect();
    by_answer.sort_by_key(|s| s.answered_ms);
    let mut by_ask: Vec<&Stamp> = stamps.iter().collect();
    by_ask.sort_by_key(|s| s.sent_ms);
    let mut highest: Option<&Stamp> = None;
    let mut next = 0;
    for later in by_ask {
        while next < by_answer.len() && by_answer[next].answered_ms < later.sent_ms {
            let candidate = by_answer[next];
            if highest.is_none_or(|h| candidate.ts > h.ts) {
                highest = Some(candidate);
            }
            next += 1;
        }
        if let Some(earlier) = highest
            && later.ts <= earlier.ts
        {
            v.violate(
                format!(
                    "{} was asked at t={}ms and got {}.{}, not above {}.{} handed out through \
                     {} at t={}ms",
                    slot_of(later.event),
                    later.sent_ms,
                    later.ts.0,
                    later.ts.1,
                    earlier.ts.0,
                    earlier.ts.1,
                    slot_of(earlier.event),
                    earlier.answered_ms
                ),
                vec![earlier.event.clone(), later.event.clone()],
            );
        }
    }
    v
}

fn slot_of(e: &Event) -> &str {
    match &e.kind {
        EventKind::Tso { slot, .. } => slot,
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testkit::*;

    fn ts(slot: usize, sent_ms: u64, physical: i64, logical: i64) -> EventKind {
        EventKind::Tso {
            slot: name(slot),
            sent_ms,
            ok: true,
            physical,
            logical,
            error: None,
        }
    }

    fn refused(slot: usize, sent_ms: u64) -> EventKind {
        EventKind::Tso {
            slot: name(slot),
            sent_ms,
            ok: false,
            physical: 0,
            logical: 0,
            error: Some("not leader".into()),
        }
    }

    #[test]
    fn rising_timestamps_through_every_member_pass() {
        let t = TB::new()
            // The builder's clock: t=10, then 50 ms per event.
            .ev(ts(0, 0, 1000, 1))
            .wait(5)
            .ev(ts(1, 62, 1000, 2))
            .wait(5)
            .ev(refused(2, 118))
            .wait(5)
            .ev(ts(2, 172, 1010, 0))
            .build();
        let v = check(&t);
        assert_passed(&v);
        assert_eq!(v.metrics["timestamps"], 3.0);
        assert_eq!(v.metrics["timestamps_refused"], 1.0);
    }

    #[test]
    fn a_timestamp_below_one_handed_out_before_fails() {
        // A new leader whose clock went back, and that did not wait out
        // the old leader's window.
        let t = TB::new()
            .ev(ts(0, 0, 2000, 5))
            .wait(10)
            .ev(ts(1, 65, 1990, 0))
            .build();
        let v = check(&t);
        assert_violation(
            &v,
            "m1 was asked at t=65ms and got 1990.0, not above 2000.5 handed out through m0 at \
             t=10ms",
        );
        assert_eq!(v.violations[0].evidence.len(), 2);
    }

    #[test]
    fn an_equal_timestamp_fails() {
        let t = TB::new()
            .ev(ts(0, 0, 2000, 5))
            .wait(10)
            .ev(ts(0, 65, 2000, 5))
            .build();
        assert_violation(&check(&t), "not above 2000.5");
    }

    #[test]
    fn overlapping_asks_are_not_ordered() {
        // The second was asked before the first was answered: either may
        // have been served first, so neither bounds the other.
        let t = TB::new()
            .wait(10)
            .ev(ts(0, 0, 2000, 5))
            .ev(ts(1, 5, 2000, 4))
            .build();
        assert_passed(&check(&t));
    }

    #[test]
    fn no_timestamp_is_nothing_to_judge() {
        let v = check(&TB::new().ev(refused(0, 0)).build());
        assert_eq!(v.outcome_word(), "n/a");
        let v = check(&static_3().build());
        assert_eq!(v.outcome_word(), "n/a");
    }
}
