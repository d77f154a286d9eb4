//! C1: every step reaches the state it asks for before its deadline.
//!
//! A deployment that never recovers from a fault can leave every other
//! invariant quiet (two of three members are still a quorum, the lost one
//! is still listed), so the step's own outcome is judged: the driver
//! records whether it settled and, if not, what was still missing at the
//! deadline and for how long.

use super::{Invariant, Verdict};
use crate::trace::{EventKind, Trace};

pub const INVARIANT: Invariant = Invariant {
    id: "C1",
    title: "Convergence",
    description: "Every step settles before its deadline: the wanted members all run, follow \
                  one leader and are exactly the membership (unless the suite says the step \
                  is expected not to settle).",
    check,
};

pub fn check(trace: &Trace) -> Verdict {
    let mut v = Verdict::new(&INVARIANT);
    let mut finished = 0u32;
    let mut expected_unsettled = 0u32;
    let mut started: Option<&crate::trace::Event> = None;
    for e in &trace.events {
        match &e.kind {
            EventKind::StepStarted { .. } => started = Some(e),
            EventKind::StepFinished {
                index,
                name,
                settled,
                elapsed_ms,
                detail,
                ..
            } => {
                finished += 1;
                let expected = started.is_some_and(|s| {
                    matches!(
                        s.kind,
                        EventKind::StepStarted {
                            expect_unsettled: true,
                            ..
                        }
                    )
                });
                if expected {
                    expected_unsettled += 1;
                } else if !settled {
                    let mut evidence: Vec<_> = started.into_iter().cloned().collect();
                    evidence.push(e.clone());
                    v.violate(
                        format!(
                            "step {index} ({name}) did not settle in {elapsed_ms}ms: {}",
                            detail.as_deref().unwrap_or("no reason recorded")
                        ),
                        evidence,
                    );
                }
            }
            _ => {}
        }
    }
    v.metrics
        .insert("expected_unsettled_steps".into(), expected_unsettled as f64);
    if finished == 0 {
        v.nothing_to_judge("no step finished");
    } else if finished == expected_unsettled {
        v.nothing_to_judge("every step was expected not to settle");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testkit::*;

    fn unsettled_with(detail: &str) -> EventKind {
        EventKind::StepFinished {
            index: 1,
            name: "delete-pod 2".into(),
            settled: false,
            elapsed_ms: 60_000,
            detail: Some(detail.into()),
            desired_slots: None,
        }
    }

    #[test]
    fn settled_steps_pass() {
        let t = static_3()
            .ev(step_started(1, 3))
            .ev(step_finished(1, true))
            .finish();
        let v = check(&t);
        assert_passed(&v);
        assert_eq!(v.not_applicable, None);
    }

    #[test]
    fn a_step_that_never_settles_is_a_violation_saying_what_was_missing() {
        let t = static_3()
            .ev(step_started(1, 3))
            .ev(unsettled_with(
                "not settled at the deadline: m2 is Empty, for the last 58.1s",
            ))
            .finish();
        assert_violation(&check(&t), "m2 is Empty, for the last 58.1s");
    }

    #[test]
    fn a_step_expected_not_to_settle_is_reported_not_judged() {
        let t = static_3()
            .ev(EventKind::StepStarted {
                index: 1,
                name: "s1".into(),
                desired_replicas: 3,
                deadline_ms: 60_000,
                expect_unsettled: true,
            })
            .ev(unsettled_with("not settled at the deadline: m2 is Empty"))
            .finish();
        let v = check(&t);
        assert_passed(&v);
        assert_eq!(v.metrics.get("expected_unsettled_steps"), Some(&1.0));
    }

    #[test]
    fn no_finished_step_is_nothing_to_judge() {
        let v = check(&TB::new().finish());
        assert!(v.not_applicable.is_some());
    }
}
