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
    /// Time without a quorum of started voters (I4's measure: during
    /// reconfiguration plus during faults).
    pub no_quorum_ms: u64,
    /// From the last acknowledged write before a failing stretch to the
    /// next acknowledged one, summed over the stretches.
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
    let mut outage = 0u64;
    for event in &trace.events {
        match &event.kind {
            EventKind::StepStarted {
                name,
                desired_replicas,
                ..
            } => {
                step = Some((phase_of(name), *desired_replicas, desired));
                desired = Some(*desired_replicas);
            }
            EventKind::StepFinished {
                name,
                settled,
                elapsed_ms,
                ..
            } => {
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
                    if let (Some(from), Some(_)) = (last_ack.or(failing_since), failing_since) {
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
                }
            }
            _ => {}
        }
    }
    if let (Some(from), Some(_)) = (last_ack, failing_since) {
        let end = trace.events.last().map_or(from, |e| e.t_ms);
        outage += end.saturating_sub(from);
    }
    let no_quorum_ms = run
        .verdicts
        .iter()
        .find(|v| v.invariant == "I4")
        .map_or(0.0, |v| {
            v.metrics
                .get("unavailable_ms_reconfig")
                .copied()
                .unwrap_or(0.0)
                + v.metrics
                    .get("unavailable_ms_fault")
                    .copied()
                    .unwrap_or(0.0)
        }) as u64;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::EventKind;

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
    /// scale steps; one failing stretch is timed from the last
    /// acknowledgement before it to the first after it.
    #[test]
    fn a_scale_out_is_measured_per_member_and_per_phase() {
        let trace = Trace::from_kinds([
            (0, step(0, "bootstrap 1", 1)),
            (100, write(false, 5)),
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
        assert_eq!(m.no_quorum_ms, 300);
        assert_eq!(m.unavailable_ms(), 3_400);
        assert_eq!(
            (m.ready_ms, m.size, m.status.as_str()),
            (Some(700), 5, "pass")
        );
    }
}
