//! What one run measured, read from its result and its trace.

use crate::report::{RunResult, RunStatus};
use crate::trace::{EventKind, Trace};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunMeasure {
    pub subject: String,
    pub engine: String,
    pub scenario: String,
    pub repetition: u32,
    /// `pass`, `fail` or `error`.
    pub status: String,
    pub violated: Vec<String>,
    /// The largest cluster the scenario asks for.
    pub size: u32,
    pub ready_ms: Option<u64>,
    /// Per scale step: its settle time divided by the members it added or
    /// removed.
    pub change_ms_per_member: Vec<f64>,
    /// Time without a quorum of up voters (what I4 judges) inside the
    /// scale and fault steps: a bootstrap's own joins are not counted.
    pub no_quorum_ms: u64,
    /// From the last acknowledged write before a failing stretch to the
    /// next acknowledged one, summed over the stretches that began inside
    /// a scale or fault step.
    pub write_outage_ms: u64,
    /// Acknowledged writes during `hold` steps (the steady state).
    pub steady_latency_ms: Vec<u64>,
    /// Acknowledged writes during scale and fault steps.
    pub reconfig_latency_ms: Vec<u64>,
}

impl RunMeasure {
    /// The longer of the two unavailability measures.
    pub fn unavailable_ms(&self) -> u64 {
        self.no_quorum_ms.max(self.write_outage_ms)
    }
}

/// What a step's writes count towards.
#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Bootstrap,
    Steady,
    Reconfig,
}

fn phase_of(step: &str) -> Phase {
    if step.starts_with("bootstrap") {
        Phase::Bootstrap
    } else if step.starts_with("hold") {
        Phase::Steady
    } else {
        Phase::Reconfig
    }
}

/// Measures one run of repetition `repetition`.
pub fn measure(run: &RunResult, trace: &Trace, repetition: u32) -> RunMeasure {
    let mut change_ms_per_member = Vec::new();
    let mut steady = Vec::new();
    let mut reconfig = Vec::new();
    let mut desired: Option<u32> = None;
    let mut step: Option<(Phase, u32, Option<u32>)> = None;
    let mut last_ack: Option<u64> = None;
    let mut failing_since: Option<u64> = None;
    // Whether the current failing stretch began inside a change.
    let mut failing_counts = false;
    let mut outage = 0u64;
    let mut changes: Vec<(u64, u64)> = Vec::new();
    let mut change_started: Option<u64> = None;
    for event in &trace.events {
        match &event.kind {
            EventKind::StepStarted {
                name,
                desired_replicas,
                ..
            } => {
                let phase = phase_of(name);
                step = Some((phase, *desired_replicas, desired));
                desired = Some(*desired_replicas);
                if phase == Phase::Reconfig {
                    change_started = Some(event.t_ms);
                }
            }
            EventKind::StepFinished {
                name,
                settled,
                elapsed_ms,
                ..
            } => {
                if let Some(start) = change_started.take() {
                    changes.push((start, event.t_ms));
                }
                if let Some((_, now, Some(before))) = step.take()
                    && name.starts_with("scale")
                    && *settled
                    && now != before
                {
                    change_ms_per_member.push(*elapsed_ms as f64 / now.abs_diff(before) as f64);
                }
            }
            EventKind::ClientWrite { ok, latency_ms, .. } => {
                if *ok {
                    if let (Some(from), Some(_), true) = (last_ack, failing_since, failing_counts) {
                        outage += event.t_ms.saturating_sub(from);
                    }
                    failing_since = None;
                    last_ack = Some(event.t_ms);
                    let target = match step.map(|(phase, ..)| phase) {
                        Some(Phase::Steady) => Some(&mut steady),
                        Some(Phase::Reconfig) => Some(&mut reconfig),
                        _ => None,
                    };
                    if let (Some(target), Some(ms)) = (target, latency_ms) {
                        target.push(*ms);
                    }
                } else if last_ack.is_some() && failing_since.is_none() {
                    // Failures before the first acknowledgement are the
                    // bootstrap, not an outage.
                    failing_since = Some(event.t_ms);
                    failing_counts = change_started.is_some();
                }
            }
            _ => {}
        }
    }
    let end_ms = trace.events.last().map_or(0, |e| e.t_ms);
    if let (Some(from), Some(_), true) = (last_ack, failing_since, failing_counts) {
        outage += end_ms.saturating_sub(from);
    }
    if let Some(start) = change_started {
        changes.push((start, end_ms));
    }
    let no_quorum_ms = overlap_ms(
        &crate::invariants::i4_quorum::no_quorum_windows(trace),
        &changes,
    );
    RunMeasure {
        subject: run.strategy.clone(),
        engine: run.engine_label(),
        scenario: run.scenario.clone(),
        repetition,
        status: match run.status {
            RunStatus::Pass => "pass",
            RunStatus::Fail => "fail",
            RunStatus::Error => "error",
        }
        .to_string(),
        violated: run
            .violated_invariants()
            .into_iter()
            .map(String::from)
            .collect(),
        size: run.replicas,
        ready_ms: run.ready_ms,
        change_ms_per_member,
        no_quorum_ms,
        write_outage_ms: outage,
        steady_latency_ms: steady,
        reconfig_latency_ms: reconfig,
    }
}

/// How long the `spans` overlap the `windows` (each list disjoint).
fn overlap_ms(spans: &[(u64, u64)], windows: &[(u64, u64)]) -> u64 {
    spans
        .iter()
        .flat_map(|&(a, b)| {
            windows
                .iter()
                .map(move |&(c, d)| b.min(d).saturating_sub(a.max(c)))
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::EventKind;

    /// Two of three members frozen for 20 s inside a step: the study
    /// counts the time without quorum I4 sees there.
    #[test]
    fn time_without_quorum_inside_a_fault_step_counts() {
        let trace = crate::invariants::testkit::static_3_two_frozen_20s();
        let m = measure(&run(), &trace, 1);
        assert!(
            (20_000..21_000).contains(&m.no_quorum_ms),
            "{} ms",
            m.no_quorum_ms
        );
    }

    #[test]
    fn only_the_part_of_a_span_inside_a_window_counts() {
        let windows = [(1_000, 2_000), (5_000, 6_000)];
        assert_eq!(overlap_ms(&[(0, 900)], &windows), 0);
        assert_eq!(overlap_ms(&[(1_500, 5_500)], &windows), 1_000);
        assert_eq!(overlap_ms(&[(0, 10_000)], &windows), 2_000);
    }

    fn run() -> RunResult {
        serde_json::from_value(serde_json::json!({
            "run_id": "r", "scenario": "scale-out-1-3-5", "strategy": "seed-join",
            "engine": "etcd", "engine_version": "3.6.5", "backend": "process",
            "replicas": 5, "tls": false, "seed": 1, "status": "pass",
            "verdicts": [{"invariant": "I4", "title": "q", "violations": [],
                          "metrics": {"unavailable_ms_reconfig": 300.0, "unavailable_ms_fault": 0.0}}],
            "duration_ms": 9000, "ready_ms": 700,
            "trace": "t", "logs": "l"
        }))
        .expect("a run result")
    }

    fn step(index: u32, name: &str, desired: u32) -> EventKind {
        EventKind::StepStarted {
            index,
            name: name.into(),
            desired_replicas: desired,
            deadline_ms: 60_000,
            expect_unsettled: false,
        }
    }
    fn done(index: u32, name: &str, elapsed_ms: u64) -> EventKind {
        EventKind::StepFinished {
            index,
            name: name.into(),
            settled: true,
            elapsed_ms,
            detail: None,
            desired_slots: None,
        }
    }
    fn write(ok: bool, latency: u64) -> EventKind {
        EventKind::ClientWrite {
            key: "k".into(),
            value: "v".into(),
            ok,
            error: (!ok).then(|| "etcdserver: request timed out".into()),
            latency_ms: Some(latency),
        }
    }

    /// Steady writes come from the hold, reconfiguration writes from the
    /// scale steps; a failing stretch inside a scale step is timed from the
    /// last acknowledgement before it to the first after it, one inside the
    /// bootstrap is not counted.
    #[test]
    fn a_scale_out_is_measured_per_member_and_per_phase() {
        let trace = Trace::from_kinds([
            (0, step(0, "bootstrap 1", 1)),
            (100, write(false, 5)),
            (200, write(true, 5)),
            (300, write(false, 5)),
            (400, write(true, 5)),
            (700, done(0, "bootstrap 1", 700)),
            (800, step(1, "hold 5s", 1)),
            (900, write(true, 2)),
            (1_000, write(true, 4)),
            (5_800, done(1, "hold 5s", 5_000)),
            (5_900, step(2, "scale 3", 3)),
            (6_000, write(true, 30)),
            (6_100, write(false, 3_000)),
            (9_100, write(false, 3_000)),
            (9_400, write(true, 50)),
            (15_900, done(2, "scale 3", 10_000)),
            (16_000, step(3, "scale 5", 5)),
            (20_000, done(3, "scale 5", 4_000)),
        ]);
        let m = measure(&run(), &trace, 1);
        assert_eq!(m.change_ms_per_member, vec![5_000.0, 2_000.0]);
        assert_eq!(m.steady_latency_ms, vec![2, 4]);
        assert_eq!(m.reconfig_latency_ms, vec![30, 50]);
        assert_eq!(m.write_outage_ms, 3_400, "6.0 s to 9.4 s");
        // No member list in this trace: nothing for I4 to place.
        assert_eq!(m.no_quorum_ms, 0);
        assert_eq!(m.unavailable_ms(), 3_400);
        assert_eq!(
            (m.ready_ms, m.size, m.status.as_str()),
            (Some(700), 5, "pass")
        );
    }
}
