//! One run's trace laid out on a single time axis, for `report.html`: a
//! lane per member (up, down, frozen, cut off), the leader and its term,
//! the steps, the faults and the client traffic. Pure: a trace and its
//! verdicts in, a model out; the template only places it.

use super::secs;
use crate::invariants::Verdict;
use crate::trace::{Event, EventKind, MembershipOp, Trace};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Client traffic is drawn as this many columns: a run acknowledges
/// thousands of writes, and a mark each would bury the rest.
const TRAFFIC_BUCKETS: u64 = 120;

#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub end_ms: u64,
    /// Tick labels along the axis.
    pub ticks: Vec<Tick>,
    pub steps: Vec<Span>,
    /// One per member slot, in slot order.
    pub members: Vec<Lane>,
    /// Who led, in which term, as the members reported it.
    pub leadership: Vec<Span>,
    /// Faults, membership calls and deployer errors: cluster-wide marks.
    pub cluster: Vec<Mark>,
    /// Acknowledged, failed and unknown writes and timestamps per column.
    pub traffic: Vec<TrafficColumn>,
    /// Failed client operations and write probes, each on its own.
    pub client: Vec<Mark>,
    /// How many evidence events of a violated invariant are on the axis.
    pub evidence_marks: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tick {
    pub left: f64,
    pub label: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Lane {
    pub name: String,
    pub spans: Vec<Span>,
    pub marks: Vec<Mark>,
}

/// A stretch of time: `left` and `width` are percentages of the axis.
#[derive(Debug, Clone, Serialize)]
pub struct Span {
    pub class: &'static str,
    pub label: String,
    pub left: f64,
    pub width: f64,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// One event on the axis, with its trace line.
#[derive(Debug, Clone, Serialize)]
pub struct Mark {
    pub class: &'static str,
    pub label: String,
    pub left: f64,
    pub t_ms: u64,
    pub seq: u64,
    /// The event as the trace holds it (one JSONL line).
    pub line: String,
    /// Evidence of a violated invariant.
    pub evidence: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrafficColumn {
    pub left: f64,
    pub width: f64,
    pub acknowledged: u64,
    pub failed: u64,
    pub unknown: u64,
    /// The share of failed and unknown operations, 0..=100.
    pub bad_percent: u64,
}

/// Lays `trace` out; `verdicts` name the events to highlight.
pub fn timeline(trace: &Trace, verdicts: &[Verdict]) -> Timeline {
    let evidence: BTreeSet<u64> = verdicts
        .iter()
        .flat_map(|v| &v.violations)
        .flat_map(|v| &v.evidence)
        .map(|e| e.seq)
        .collect();
    let end_ms = trace.events.last().map_or(0, |e| e.t_ms).max(1);
    let axis = Axis { end_ms };
    let slots: Vec<String> = trace.slots().into_iter().map(|s| s.name).collect();
    let mut members: Vec<Lane> = slots
        .iter()
        .map(|name| Lane {
            name: name.clone(),
            spans: Vec::new(),
            marks: Vec::new(),
        })
        .collect();
    let lane_of = |slot: &str| slots.iter().position(|s| s == slot);
    let mut open = OpenSpans::default();
    let mut steps = Vec::new();
    let mut step_open: Option<(u64, String)> = None;
    let mut cluster = Vec::new();
    let mut client = Vec::new();
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    let mut leadership = Vec::new();
    let mut leader_open: Option<(u64, String, u64)> = None;
    let mut traffic = vec![(0u64, 0u64, 0u64); TRAFFIC_BUCKETS as usize];
    let mut marked = BTreeSet::new();
    let mut applied_marked: BTreeSet<(&str, String)> = BTreeSet::new();

    for event in &trace.events {
        let mark = |class: &'static str, label: String| axis.mark(event, class, label, &evidence);
        let t = event.t_ms;
        match &event.kind {
            EventKind::StepStarted { name, .. } => step_open = Some((t, name.clone())),
            EventKind::StepFinished {
                name,
                settled,
                elapsed_ms,
                ..
            } => {
                let start = step_open.take().map_or(t, |(s, _)| s);
                let (class, how) = if *settled {
                    (
                        "step settled",
                        format!("settled in {:.1} s", *elapsed_ms as f64 / 1000.0),
                    )
                } else {
                    ("step unsettled", "did not settle".to_string())
                };
                steps.push(axis.span(class, format!("{name}: {how}"), start, t));
            }
            EventKind::ProcessStarted { slot, had_data, .. } => {
                open.start(slot, "up", t);
                if let Some(i) = lane_of(slot) {
                    let data = if *had_data { "with data" } else { "empty" };
                    members[i]
                        .marks
                        .push(mark("start", format!("started ({data})")));
                    marked.insert(event.seq);
                }
            }
            EventKind::ProcessExited { slot, code, signal } => {
                for class in ["up", "frozen"] {
                    if let Some(span) = open.end(slot, class, t, &axis) {
                        push_span(&mut members, lane_of(slot), span);
                    }
                }
                if let Some(i) = lane_of(slot) {
                    let how = match (code, signal) {
                        (Some(c), _) => format!("exited with {c}"),
                        (_, Some(s)) => format!("killed by signal {s}"),
                        _ => "exited".to_string(),
                    };
                    members[i].marks.push(mark("exit", how));
                    marked.insert(event.seq);
                }
            }
            EventKind::FaultInjected { fault, slot } => {
                let name = fault.as_str();
                if let Some(slot) = slot {
                    match name {
                        "freeze" => open.start(slot, "frozen", t),
                        "thaw" => {
                            if let Some(span) = open.end(slot, "frozen", t, &axis) {
                                push_span(&mut members, lane_of(slot), span);
                            }
                        }
                        "disconnect" => open.start(slot, "cut", t),
                        "reconnect" => {
                            if let Some(span) = open.end(slot, "cut", t, &axis) {
                                push_span(&mut members, lane_of(slot), span);
                            }
                        }
                        _ => {}
                    }
                }
                let target = slot.as_deref().map(|s| format!(" {s}")).unwrap_or_default();
                cluster.push(mark("fault", format!("{name}{target}")));
                marked.insert(event.seq);
            }
            EventKind::NetworkCut { isolated, rest } => {
                for slot in isolated {
                    open.start(slot, "cut", t);
                }
                cluster.push(mark(
                    "fault",
                    format!("cut {} from {}", isolated.join(","), rest.join(",")),
                ));
                marked.insert(event.seq);
            }
            EventKind::NetworkHealed => {
                for slot in &slots {
                    if let Some(span) = open.end(slot, "cut", t, &axis) {
                        push_span(&mut members, lane_of(slot), span);
                    }
                }
                cluster.push(mark("fault", "network healed".into()));
                marked.insert(event.seq);
            }
            EventKind::MemberStart { slot, config } => {
                let how = if config.is_genesis() {
                    "genesis (new)"
                } else if config.is_join() {
                    "join (existing)"
                } else {
                    "restart from its WAL"
                };
                if let Some(i) = lane_of(slot) {
                    members[i].marks.push(mark("member-start", how.into()));
                    marked.insert(event.seq);
                }
            }
            EventKind::PdConfig { slot, join, .. } if !join.is_empty() => {
                if let Some(i) = lane_of(slot) {
                    members[i]
                        .marks
                        .push(mark("member-start", format!("--join {join}")));
                    marked.insert(event.seq);
                }
            }
            EventKind::LocalMember {
                slot, member_id, ..
            } => {
                ids.insert(member_id.clone(), slot.clone());
            }
            // Every member applies the change: mark it once.
            EventKind::MembershipApplied { op, member_id, .. }
                if applied_marked.insert((op_word(*op), member_id.clone())) =>
            {
                cluster.push(mark("membership", membership_label(*op, member_id, &ids)));
                marked.insert(event.seq);
            }
            EventKind::MembershipCall { op, ok, error, .. } => {
                let label = match (ok, error) {
                    (true, _) => format!("{} call", op_word(*op)),
                    (false, e) => format!(
                        "{} call refused: {}",
                        op_word(*op),
                        e.as_deref().unwrap_or("no error given")
                    ),
                };
                let class = if *ok { "call" } else { "call failed" };
                cluster.push(mark(class, label));
                marked.insert(event.seq);
            }
            EventKind::EngineError {
                slot,
                class,
                message,
            } => {
                let label = format!("{class:?}: {}", super::one_line(message, 120));
                match lane_of(slot) {
                    Some(i) => members[i].marks.push(mark("error", label)),
                    None => cluster.push(mark("error", label)),
                }
                marked.insert(event.seq);
            }
            EventKind::DataWiped { slot } | EventKind::SlotDeleted { slot } => {
                let what = if matches!(event.kind, EventKind::DataWiped { .. }) {
                    "data wiped"
                } else {
                    "slot deleted"
                };
                if let Some(i) = lane_of(slot) {
                    members[i].marks.push(mark("fault", what.into()));
                    marked.insert(event.seq);
                }
            }
            EventKind::DeployerError { message } => {
                cluster.push(mark("error", super::one_line(message, 120)));
                marked.insert(event.seq);
            }
            EventKind::MemberStatus { leader, term, .. } => {
                let leader = if leader == "0" {
                    None
                } else {
                    Some(ids.get(leader).cloned().unwrap_or_else(|| leader.clone()))
                };
                let changed = match (&leader_open, &leader) {
                    (Some((_, l, tm)), Some(now)) => l != now || tm != term,
                    (None, Some(_)) => true,
                    _ => false,
                };
                if changed {
                    if let Some((start, l, tm)) = leader_open.take() {
                        leadership.push(axis.span("leader", format!("{l} (term {tm})"), start, t));
                    }
                    if let Some(now) = leader {
                        leader_open = Some((t, now, *term));
                    }
                }
            }
            EventKind::ClientWrite { ok, error, .. } | EventKind::Tso { ok, error, .. } => {
                let bucket = &mut traffic[axis.bucket(t)];
                match (ok, error.as_deref().map(is_unknown_outcome)) {
                    (true, _) => bucket.0 += 1,
                    (false, Some(true)) => bucket.2 += 1,
                    (false, _) => bucket.1 += 1,
                }
                if !ok {
                    let what = if matches!(event.kind, EventKind::Tso { .. }) {
                        "timestamp"
                    } else {
                        "write"
                    };
                    let error = error.as_deref().unwrap_or("no error given");
                    let class = if is_unknown_outcome(error) {
                        "unknown"
                    } else {
                        "failed"
                    };
                    client.push(mark(
                        class,
                        format!("{what} {class}: {}", super::one_line(error, 100)),
                    ));
                    marked.insert(event.seq);
                }
            }
            EventKind::WriteProbe {
                slot,
                side_has_quorum,
                ok,
                ..
            } => {
                let side = if *side_has_quorum {
                    "majority"
                } else {
                    "minority"
                };
                let outcome = if *ok { "accepted" } else { "refused" };
                client.push(mark(
                    "probe",
                    format!("probe via {slot} ({side} side): {outcome}"),
                ));
                marked.insert(event.seq);
            }
            EventKind::FinalRead { ok, .. } => {
                let class = if *ok { "call" } else { "call failed" };
                cluster.push(mark(
                    class,
                    format!("final read {}", if *ok { "done" } else { "failed" }),
                ));
                marked.insert(event.seq);
            }
            _ => {}
        }
    }
    for (lane, (slot, class), start) in open.drain() {
        let span = axis.span(class, class_label(class).into(), start, end_ms);
        push_span(&mut members, lane_of(&slot).or(lane), span);
    }
    if let Some((start, l, tm)) = leader_open {
        leadership.push(axis.span("leader", format!("{l} (term {tm})"), start, end_ms));
    }
    if let Some((start, name)) = step_open {
        steps.push(axis.span(
            "step unsettled",
            format!("{name}: unfinished"),
            start,
            end_ms,
        ));
    }
    // Evidence events not drawn yet (a status poll, a member list) get a
    // mark of their own, on their member's lane where they have one.
    for event in trace.events.iter().filter(|e| evidence.contains(&e.seq)) {
        if marked.contains(&event.seq) {
            continue;
        }
        let label = super::event_summary(event);
        let mark = axis.mark(event, "evidence-only", label, &evidence);
        match event_slot(&event.kind).and_then(&lane_of) {
            Some(i) => members[i].marks.push(mark),
            None => cluster.push(mark),
        }
    }
    let evidence_marks = members
        .iter()
        .flat_map(|l| &l.marks)
        .chain(&cluster)
        .chain(&client)
        .filter(|m| m.evidence)
        .count();
    let traffic = traffic
        .into_iter()
        .enumerate()
        .filter(|(_, (a, f, u))| a + f + u > 0)
        .map(|(i, (acknowledged, failed, unknown))| {
            let total = acknowledged + failed + unknown;
            TrafficColumn {
                left: 100.0 * i as f64 / TRAFFIC_BUCKETS as f64,
                width: 100.0 / TRAFFIC_BUCKETS as f64,
                acknowledged,
                failed,
                unknown,
                bad_percent: (100 * (failed + unknown)).div_ceil(total),
            }
        })
        .collect();
    Timeline {
        end_ms,
        ticks: axis.ticks(),
        steps,
        members,
        leadership,
        cluster,
        traffic,
        client,
        evidence_marks,
    }
}

/// An error after which the write may or may not have been applied.
fn is_unknown_outcome(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    [
        "timeout",
        "timed out",
        "deadline",
        "unknown",
        "connection reset",
        "broken pipe",
    ]
    .iter()
    .any(|w| e.contains(w))
}

fn op_word(op: MembershipOp) -> &'static str {
    match op {
        MembershipOp::Add => "member add",
        MembershipOp::AddLearner => "learner add",
        MembershipOp::Remove => "member remove",
        MembershipOp::Promote => "promote",
    }
}

fn membership_label(op: MembershipOp, member_id: &str, ids: &BTreeMap<String, String>) -> String {
    let who = ids.get(member_id).map_or(member_id, String::as_str);
    format!("{} applied: {who}", op_word(op))
}

fn class_label(class: &str) -> &'static str {
    match class {
        "up" => "running",
        "frozen" => "frozen (SIGSTOP)",
        _ => "cut off the network",
    }
}

fn event_slot(kind: &EventKind) -> Option<&str> {
    match kind {
        EventKind::MemberStatus { slot, .. }
        | EventKind::MemberStart { slot, .. }
        | EventKind::LocalMember { slot, .. }
        | EventKind::MembershipApplied { slot, .. }
        | EventKind::PdConfig { slot, .. }
        | EventKind::PdClusterId { slot, .. }
        | EventKind::Tso { slot, .. }
        | EventKind::WriteProbe { slot, .. } => Some(slot),
        EventKind::MemberList { via, .. } => Some(via),
        _ => None,
    }
}

fn push_span(members: &mut [Lane], lane: Option<usize>, span: Span) {
    if let Some(lane) = lane.and_then(|i| members.get_mut(i)) {
        lane.spans.push(span);
    }
}

struct Axis {
    end_ms: u64,
}

impl Axis {
    fn percent(&self, t: u64) -> f64 {
        (100.0 * t.min(self.end_ms) as f64 / self.end_ms as f64 * 100.0).round() / 100.0
    }
    fn bucket(&self, t: u64) -> usize {
        ((t.min(self.end_ms) * TRAFFIC_BUCKETS / (self.end_ms + 1)) as usize)
            .min(TRAFFIC_BUCKETS as usize - 1)
    }
    fn span(&self, class: &'static str, label: String, start_ms: u64, end_ms: u64) -> Span {
        let left = self.percent(start_ms);
        Span {
            class,
            label: format!("{label} [{} – {}]", secs(start_ms), secs(end_ms)),
            left,
            width: (self.percent(end_ms) - left).max(0.2),
            start_ms,
            end_ms,
        }
    }
    fn mark(
        &self,
        event: &Event,
        class: &'static str,
        label: String,
        evidence: &BTreeSet<u64>,
    ) -> Mark {
        Mark {
            class,
            label: format!("{} {label}", secs(event.t_ms)),
            left: self.percent(event.t_ms),
            t_ms: event.t_ms,
            seq: event.seq,
            line: serde_json::to_string(event).unwrap_or_default(),
            evidence: evidence.contains(&event.seq),
        }
    }
    /// About eight ticks on round seconds.
    fn ticks(&self) -> Vec<Tick> {
        let step_s = [1u64, 2, 5, 10, 15, 30, 60, 120, 300, 600]
            .into_iter()
            .find(|s| self.end_ms / (s * 1000) <= 8)
            .unwrap_or(1200);
        (0..=self.end_ms / (step_s * 1000))
            .map(|i| Tick {
                left: self.percent(i * step_s * 1000),
                label: format!("{} s", i * step_s),
            })
            .collect()
    }
}

#[derive(Default)]
struct OpenSpans {
    /// (slot, class) -> start.
    open: BTreeMap<(String, &'static str), u64>,
}

impl OpenSpans {
    fn start(&mut self, slot: &str, class: &'static str, t: u64) {
        self.open.entry((slot.to_string(), class)).or_insert(t);
    }
    fn end(&mut self, slot: &str, class: &'static str, t: u64, axis: &Axis) -> Option<Span> {
        let start = self.open.remove(&(slot.to_string(), class))?;
        Some(axis.span(class, class_label(class).into(), start, t))
    }
    fn drain(self) -> impl Iterator<Item = (Option<usize>, (String, &'static str), u64)> {
        self.open.into_iter().map(|(key, start)| (None, key, start))
    }
}

#[cfg(test)]
mod tests {
    use super::timeline;
    use crate::invariants::check_all;
    use crate::invariants::testkit::*;
    use crate::trace::{EventKind, FaultKind, Trace};

    /// Three members bootstrap together, m1 is frozen and thawed, m2 is
    /// cut off and healed; every invariant holds.
    fn healthy() -> Trace {
        Trace::from_kinds([
            (0, header()),
            (0, step_started(0, 3)),
            (10, started(0, false)),
            (10, started(1, false)),
            (10, started(2, false)),
            (20, genesis(0, &[0, 1, 2])),
            (20, genesis(1, &[0, 1, 2])),
            (20, genesis(2, &[0, 1, 2])),
            (30, local(0, "a", false)),
            (30, local(1, "b", false)),
            (30, local(2, "c", false)),
            (100, status(0, "a", "a", 2, 5, 1)),
            (100, status(1, "b", "a", 2, 5, 1)),
            (900, list(0, vec![m(0, "a"), m(1, "b"), m(2, "c")])),
            (1_000, step_finished(0, true)),
            (2_000, fault(FaultKind::FREEZE, 1)),
            (3_000, fault(FaultKind::THAW, 1)),
            (
                4_000,
                EventKind::NetworkCut {
                    isolated: vec![name(2)],
                    rest: vec![name(0), name(1)],
                },
            ),
            (4_500, status(1, "b", "b", 3, 9, 2)),
            (
                4_600,
                EventKind::WriteProbe {
                    slot: name(2),
                    side_has_quorum: false,
                    ok: false,
                    error: Some("context deadline exceeded".into()),
                },
            ),
            (
                4_700,
                EventKind::WriteProbe {
                    slot: name(1),
                    side_has_quorum: true,
                    ok: true,
                    error: None,
                },
            ),
            (5_000, EventKind::NetworkHealed),
            (6_000, EventKind::RunFinished { error: None }),
        ])
    }

    #[test]
    fn a_lane_per_member_with_its_states_and_the_leader_by_term() {
        let trace = healthy();
        let verdicts = check_all(&trace);
        let failed: Vec<_> = verdicts.iter().filter(|v| !v.passed()).collect();
        assert!(failed.is_empty(), "{failed:#?}");
        let tl = timeline(&trace, &verdicts);
        assert_eq!(tl.members.len(), trace.slots().len());
        let lane = |n: usize| &tl.members[n];
        let classes = |n: usize| lane(n).spans.iter().map(|s| s.class).collect::<Vec<_>>();
        assert_eq!(classes(0), vec!["up"]);
        assert_eq!(classes(1), vec!["frozen", "up"]);
        assert_eq!(classes(2), vec!["cut", "up"]);
        let frozen = &lane(1).spans[0];
        assert_eq!((frozen.start_ms, frozen.end_ms), (2_000, 3_000));
        // The member lanes of slots that never ran stay empty.
        assert!(lane(3).spans.is_empty() && lane(3).marks.is_empty());
        let leaders: Vec<(&str, u64, u64)> = tl
            .leadership
            .iter()
            .map(|s| {
                (
                    s.label.split(' ').next().unwrap_or(""),
                    s.start_ms,
                    s.end_ms,
                )
            })
            .collect();
        assert_eq!(leaders, vec![("m0", 100, 4_500), ("m1", 4_500, 6_000)]);
        assert_eq!(tl.steps.len(), 1);
        assert_eq!(tl.steps[0].class, "step settled");
        assert_eq!(tl.evidence_marks, 0);
        assert!(
            tl.members
                .iter()
                .flat_map(|l| &l.marks)
                .all(|m| !m.evidence)
        );
    }

    /// Two members each start a new cluster (I1): both genesis starts are
    /// on the axis and marked as evidence, with their trace lines.
    #[test]
    fn the_evidence_of_a_violation_is_marked_on_its_members_lanes() {
        let trace = Trace::from_kinds([
            (0, header()),
            (0, step_started(0, 3)),
            (10, started(0, false)),
            (15, started(1, false)),
            (20, genesis(0, &[0])),
            (25, genesis(1, &[1])),
            (30, local_cid(0, "a", "c1", false)),
            (30, local_cid(1, "b", "c2", false)),
            (900, step_finished(0, false)),
            (1_000, EventKind::RunFinished { error: None }),
        ]);
        let verdicts = check_all(&trace);
        let i1 = verdicts.iter().find(|v| v.invariant == "I1").expect("I1");
        assert!(!i1.passed(), "the hand-written trace must violate I1");
        let tl = timeline(&trace, &verdicts);
        assert!(
            tl.evidence_marks >= 2,
            "{} evidence marks",
            tl.evidence_marks
        );
        for n in [0, 1] {
            let genesis = tl.members[n]
                .marks
                .iter()
                .find(|m| m.class == "member-start")
                .expect("genesis mark");
            assert!(genesis.evidence, "m{n}'s genesis is not highlighted");
            assert!(
                genesis.line.contains("\"member-start\""),
                "{}",
                genesis.line
            );
        }
        assert_eq!(tl.steps[0].class, "step unsettled");
    }

    /// Acknowledged writes are counted per column; a failed one is drawn
    /// on its own.
    #[test]
    fn client_traffic_is_bucketed_and_failures_are_marked() {
        let mut events = vec![(0, header())];
        for i in 0..50u64 {
            events.push((
                i * 10,
                EventKind::ClientWrite {
                    key: format!("k{i}"),
                    value: "v".into(),
                    ok: true,
                    error: None,
                    latency_ms: Some(3),
                },
            ));
        }
        events.push((
            600,
            EventKind::ClientWrite {
                key: "k".into(),
                value: "v".into(),
                ok: false,
                error: Some("context deadline exceeded".into()),
                latency_ms: None,
            },
        ));
        events.push((1_000, EventKind::RunFinished { error: None }));
        let tl = timeline(&Trace::from_kinds(events), &[]);
        let acknowledged: u64 = tl.traffic.iter().map(|c| c.acknowledged).sum();
        let unknown: u64 = tl.traffic.iter().map(|c| c.unknown).sum();
        assert_eq!((acknowledged, unknown), (50, 1));
        assert_eq!(tl.client.len(), 1);
        assert_eq!(tl.client[0].class, "unknown");
    }
}
