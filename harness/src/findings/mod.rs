//! Engine bugs that raftcert found and wrote up in `docs/findings.md`,
//! recognised in a trace.
//!
//! A run that fails the way a documented engine bug fails is still a
//! failure: the invariants stay as they are. Naming the bug tells a reader
//! (and the gallery's false-alarm count) that a correct deployer was failed
//! by its engine, not by a check that misfired. A finding explains a run
//! only when its signature is in the trace *and* every violated invariant is
//! one the finding is known to break, so anything else still stands out.

mod pd_empty_initial_cluster;
mod pd_seed_lost_after_member_add;

use crate::trace::{EngineErrorClass, EventKind, Trace};

pub struct KnownFinding {
    /// Stable name, recorded in results.json.
    pub id: &'static str,
    /// Where it is written up, e.g. `docs/findings.md` section 7.
    pub section: u32,
    pub title: &'static str,
    /// The engine (`pd`, `etcd`) and the versions it was seen on.
    pub engine: &'static str,
    pub versions: &'static [&'static str],
    /// The invariants a run failed by this bug may violate.
    pub explains: &'static [&'static str],
    /// Whether the trace holds the bug's evidence.
    pub signature: fn(&Trace) -> bool,
}

impl KnownFinding {
    /// `pd-seed-lost-after-member-add (docs/findings.md section 7)`.
    pub fn label(&self) -> String {
        format!("{} (docs/findings.md section {})", self.id, self.section)
    }
}

pub fn registry() -> &'static [KnownFinding] {
    &[
        pd_empty_initial_cluster::FINDING,
        pd_seed_lost_after_member_add::FINDING,
    ]
}

/// The documented finding that explains this failed run, if one does.
/// `violated` lists the ids of the invariants the run violated.
pub fn recognise(trace: &Trace, violated: &[&str]) -> Option<&'static KnownFinding> {
    if violated.is_empty() {
        return None;
    }
    let Some(EventKind::RunStarted {
        engine,
        engine_version,
        ..
    }) = trace.header()
    else {
        return None;
    };
    registry().iter().find(|finding| {
        finding.engine == engine
            && finding.versions.contains(&engine_version.as_str())
            && violated.iter().all(|id| finding.explains.contains(id))
            && (finding.signature)(trace)
    })
}

/// Whether `slot` logged an engine refusal of `class`.
fn slot_refused(trace: &Trace, slot: &str, class: EngineErrorClass) -> bool {
    trace.events.iter().any(|e| {
        matches!(&e.kind, EventKind::EngineError { slot: s, class: c, .. } if s == slot && *c == class)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Event, read_trace};
    use std::path::PathBuf;

    fn committed(dir: &str) -> Trace {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../docs/findings")
            .join(dir)
            .join("trace.jsonl");
        read_trace(&path).expect("a committed finding trace")
    }

    fn violated(trace: &Trace) -> Vec<String> {
        crate::invariants::check_all(trace)
            .iter()
            .filter(|v| !v.passed())
            .map(|v| v.invariant.clone())
            .collect()
    }

    fn recognised(trace: &Trace) -> Option<&'static str> {
        let ids = violated(trace);
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        recognise(trace, &ids).map(|f| f.id)
    }

    fn without(trace: &Trace, drop: impl Fn(&Event) -> bool) -> Trace {
        Trace::new(trace.events.iter().filter(|e| !drop(e)).cloned().collect())
    }

    fn with_version(trace: &Trace, version: &str) -> Trace {
        let mut trace = trace.clone();
        for event in &mut trace.events {
            if let EventKind::RunStarted { engine_version, .. } = &mut event.kind {
                *engine_version = version.to_string();
            }
        }
        trace
    }

    #[test]
    fn each_committed_trace_is_recognised_as_its_own_section() {
        assert_eq!(
            recognised(&committed("pd-v26.3.4-joiner-lost-seed")),
            Some("pd-joiner-restarts-with-empty-initial-cluster")
        );
        assert_eq!(
            recognised(&committed("pd-v8.5.7-seed-lost-after-member-add")),
            Some("pd-seed-lost-after-member-add")
        );
    }

    #[test]
    fn a_second_genesis_is_never_explained_away() {
        let trace = committed("tidb-v1-discovery-model-volume-loss-replicas-1");
        assert!(violated(&trace).contains(&"I1".to_string()));
        assert_eq!(recognised(&trace), None);
    }

    #[test]
    fn without_its_evidence_a_failure_is_not_recognised() {
        let lost_seed = committed("pd-v8.5.7-seed-lost-after-member-add");
        let stripped = without(&lost_seed, |e| {
            matches!(
                e.kind,
                EventKind::EngineError {
                    class: EngineErrorClass::JoinMemberListFailed,
                    ..
                }
            )
        });
        assert_eq!(recognised(&stripped), None);
        let joiner = committed("pd-v26.3.4-joiner-lost-seed");
        let stripped = without(&joiner, |e| matches!(e.kind, EventKind::PdConfig { .. }));
        assert_eq!(recognised(&stripped), None);
    }

    #[test]
    fn a_finding_is_bound_to_the_versions_it_was_seen_on() {
        // Section 5 is PD 26's: 8.5.7 restarts from its `join` file.
        let joiner = committed("pd-v26.3.4-joiner-lost-seed");
        assert_eq!(recognised(&with_version(&joiner, "8.5.7")), None);
        let lost_seed = committed("pd-v8.5.7-seed-lost-after-member-add");
        assert_eq!(
            recognised(&with_version(&lost_seed, "26.3.4")),
            Some("pd-seed-lost-after-member-add")
        );
        assert_eq!(recognised(&with_version(&lost_seed, "9.9.9")), None);
    }

    #[test]
    fn an_invariant_the_finding_does_not_break_keeps_the_run_unexplained() {
        let trace = committed("pd-v8.5.7-seed-lost-after-member-add");
        let mut ids = violated(&trace);
        assert!(recognise(&trace, &ids.iter().map(String::as_str).collect::<Vec<_>>()).is_some());
        ids.push("T1".to_string());
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert!(recognise(&trace, &ids).is_none());
        assert!(recognise(&trace, &[]).is_none());
    }
}
