//! Invariants: pure functions from a trace to a verdict with evidence.
//!
//! Adding one is one file in this folder plus one line in [`registry`].

pub mod c1_convergence;
pub mod d1_durability;
pub mod i1_single_genesis;
pub mod i2_join;
pub mod i3_no_orphans;
pub mod i4_quorum;
pub mod i5_restart_identity;
pub mod i6_data_loss;
pub mod i7_scale_in;
pub mod i8_unique_urls;
pub mod i9_operator_status;
pub mod model;
pub mod n1_minority_refuses_writes;
pub mod p1_pd_cluster_id;
#[cfg(test)]
mod scenarios;
pub mod t1_tso_monotonic;
#[cfg(test)]
pub(crate) mod testkit;

use crate::trace::{Event, Trace};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One way the trace breaks an invariant, with the events that prove it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    pub message: String,
    pub evidence: Vec<Event>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub invariant: String,
    pub title: String,
    pub violations: Vec<Violation>,
    /// Measurements made while checking (for example unavailability windows).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Why the invariant had nothing to judge in this trace (no write was
    /// acknowledged, no partition happened, ...): the verdict is `n/a`,
    /// which is neither a pass nor a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_applicable: Option<String>,
}

/// How a verdict reads: `pass`, `FAIL` or `n/a`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    NotApplicable,
}

impl Verdict {
    pub fn new(invariant: &Invariant) -> Self {
        Verdict {
            invariant: invariant.id.to_string(),
            title: invariant.title.to_string(),
            violations: Vec::new(),
            metrics: BTreeMap::new(),
            not_applicable: None,
        }
    }
    /// No violation (also true of an `n/a` verdict, which has none).
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
    pub fn outcome(&self) -> Outcome {
        if !self.violations.is_empty() {
            Outcome::Fail
        } else if self.not_applicable.is_some() {
            Outcome::NotApplicable
        } else {
            Outcome::Pass
        }
    }
    /// `pass`, `FAIL` or `n/a`.
    pub fn outcome_word(&self) -> &'static str {
        match self.outcome() {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::NotApplicable => "n/a",
        }
    }
    /// Marks the verdict `n/a` unless it found a violation: there was
    /// nothing to judge, for the reason given.
    pub fn nothing_to_judge(&mut self, reason: impl Into<String>) {
        if self.violations.is_empty() {
            self.not_applicable = Some(reason.into());
        }
    }
    pub fn violate(&mut self, message: impl Into<String>, evidence: Vec<Event>) {
        self.violations.push(Violation {
            message: message.into(),
            evidence,
        });
    }
}

/// A registered invariant.
pub struct Invariant {
    /// Short stable identifier, e.g. "I1".
    pub id: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub check: fn(&Trace) -> Verdict,
}

/// Every invariant, in report order.
pub fn registry() -> &'static [Invariant] {
    &[
        i1_single_genesis::INVARIANT,
        i2_join::INVARIANT,
        i3_no_orphans::INVARIANT,
        i4_quorum::INVARIANT,
        i5_restart_identity::INVARIANT,
        i6_data_loss::INVARIANT,
        i7_scale_in::INVARIANT,
        i8_unique_urls::INVARIANT,
        i9_operator_status::INVARIANT,
        n1_minority_refuses_writes::INVARIANT,
        p1_pd_cluster_id::INVARIANT,
        t1_tso_monotonic::INVARIANT,
        d1_durability::INVARIANT,
        c1_convergence::INVARIANT,
    ]
}

/// Runs every registered invariant over a trace.
pub fn check_all(trace: &Trace) -> Vec<Verdict> {
    registry().iter().map(|inv| (inv.check)(trace)).collect()
}
