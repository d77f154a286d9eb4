//! D1: every acknowledged write survives to the final read.

use super::{Invariant, Verdict};
use crate::trace::{Event, EventKind, Trace};
use std::collections::BTreeMap;

pub const INVARIANT: Invariant = Invariant {
    id: "D1",
    title: "Durability",
    description: "Every acknowledged client write is visible in the final read with its value \
                  (or a later write's value).",
    check,
};

/// Lost writes reported one by one before the rest are summarised.
const MAX_REPORTED: usize = 5;

pub fn check(trace: &Trace) -> Verdict {
    let mut v = Verdict::new(&INVARIANT);
    // Writes per key, in order.
    let mut writes: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in &trace.events {
        if let EventKind::ClientWrite { key, .. } = &e.kind {
            writes.entry(key).or_default().push(e);
        }
    }
    let acked = writes
        .values()
        .flatten()
        .filter(|e| matches!(e.kind, EventKind::ClientWrite { ok: true, .. }))
        .count();
    v.metrics.insert("acked_writes".into(), acked as f64);
    if acked == 0 {
        v.nothing_to_judge("no write was acknowledged");
        return v;
    }
    let final_read = trace
        .events
        .iter()
        .rev()
        .find(|e| matches!(e.kind, EventKind::FinalRead { .. }));
    let Some(read) = final_read else {
        let last = writes.values().flatten().max_by_key(|e| e.seq);
        v.violate(
            format!("no final read; {acked} acknowledged write(s) unverified"),
            last.map(|e| (*e).clone()).into_iter().collect(),
        );
        return v;
    };
    let values = match &read.kind {
        EventKind::FinalRead {
            ok: true, values, ..
        } => values,
        EventKind::FinalRead { error, .. } => {
            v.violate(
                format!(
                    "final read failed at t={}ms ({}); {acked} acknowledged write(s) unverified",
                    read.t_ms,
                    error.as_deref().unwrap_or("no error given")
                ),
                vec![trimmed(read, &[])],
            );
            return v;
        }
        _ => return v,
    };
    let mut lost = Vec::new();
    for (key, ws) in &writes {
        let Some(last_ok) = ws
            .iter()
            .rposition(|e| matches!(e.kind, EventKind::ClientWrite { ok: true, .. }))
        else {
            continue;
        };
        // An unacknowledged later write may or may not have landed.
        let allowed: Vec<&str> = ws[last_ok..]
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match &e.kind {
                EventKind::ClientWrite { value, ok, .. } if i == 0 || !ok => Some(value.as_str()),
                _ => None,
            })
            .collect();
        let got = values.get(*key);
        if !got.is_some_and(|g| allowed.contains(&g.as_str())) {
            lost.push((ws[last_ok], *key, got));
        }
    }
    for (w, key, got) in lost.iter().take(MAX_REPORTED) {
        let expected = match &w.kind {
            EventKind::ClientWrite { value, .. } => value.as_str(),
            _ => "?",
        };
        let seen = got.map_or("missing".to_string(), |g| format!("{g:?}"));
        v.violate(
            format!(
                "write {key}={expected:?} acknowledged at t={}ms but the final read at t={}ms \
                 has {seen}",
                w.t_ms, read.t_ms
            ),
            vec![(*w).clone(), trimmed(read, &[key])],
        );
    }
    if lost.len() > MAX_REPORTED {
        let keys: Vec<&str> = lost[MAX_REPORTED..].iter().map(|(_, k, _)| *k).collect();
        v.violate(
            format!(
                "{} more acknowledged write(s) lost (of {acked}), keys {}",
                keys.len(),
                keys.join(",")
            ),
            vec![trimmed(read, &keys)],
        );
    }
    v
}

/// The final read with only `keys` kept, so evidence stays small.
fn trimmed(read: &Event, keys: &[&str]) -> Event {
    let mut e = read.clone();
    if let EventKind::FinalRead { values, .. } = &mut e.kind {
        values.retain(|k, _| keys.contains(&k.as_str()));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testkit::*;

    fn write(key: &str, value: &str, ok: bool) -> EventKind {
        EventKind::ClientWrite {
            key: key.into(),
            value: value.into(),
            ok,
            error: None,
            latency_ms: None,
        }
    }
    fn final_read(pairs: &[(&str, &str)]) -> EventKind {
        EventKind::FinalRead {
            ok: true,
            error: None,
            values: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn correct_deployers_pass() {
        let v = check(&seed_join_3().finish());
        assert_passed(&v);
        assert_eq!(v.metrics["acked_writes"], 2.0);
        assert_passed(&check(&static_3().finish()));
    }

    #[test]
    fn overwrites_and_unacked_writes_are_judged_by_the_last_ack() {
        let t = TB::new()
            .ev(write("a", "1", true))
            .ev(write("a", "2", true))
            .ev(write("a", "3", false))
            .ev(write("b", "1", false))
            .ev(final_read(&[("a", "3")]))
            .build();
        assert_passed(&check(&t));
    }

    #[test]
    fn lost_or_changed_write_fails() {
        let t = TB::new()
            .ev(write("a", "1", true))
            .ev(write("b", "1", true))
            .ev(final_read(&[("b", "0")]))
            .build();
        let v = check(&t);
        assert_violation(
            &v,
            "write a=\"1\" acknowledged at t=10ms but the final read at t=110ms has missing",
        );
        assert_violation(&v, "has \"0\"");
    }

    #[test]
    fn missing_or_failed_final_read_fails() {
        let t = TB::new().ev(write("a", "1", true)).build();
        assert_violation(&check(&t), "no final read; 1 acknowledged");
        let t = TB::new()
            .ev(write("a", "1", true))
            .ev(EventKind::FinalRead {
                ok: false,
                error: Some("no leader".into()),
                values: BTreeMap::new(),
            })
            .build();
        assert_violation(&check(&t), "final read failed at t=60ms (no leader)");
    }

    #[test]
    fn many_losses_are_summarised() {
        let t = TB::new()
            .evs((0..8).map(|i| write(&format!("k{i}"), "v", true)))
            .ev(final_read(&[]))
            .build();
        let v = check(&t);
        assert_eq!(v.violations.len(), MAX_REPORTED + 1);
        assert_violation(&v, "3 more acknowledged write(s) lost (of 8)");
    }
}
