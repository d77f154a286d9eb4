//! raftcert: drives Raft cluster deployments through their life against the
//! real engine and checks bootstrap and membership invariants over a trace.
//!
//! Data flows one way: a [`scenario`] is run by the [`driver`] against a
//! [`subject`] (who reconciles) on a [`substrate`] (where members run), with
//! [`faults`] from one registry; everything observed goes into a [`trace`],
//! the [`invariants`] judge it, and the [`report`] writes it down.

pub mod driver;
pub mod engine;
pub mod faults;
pub mod findings;
pub mod gallery;
pub mod interrupt;
pub mod invariants;
pub mod matrix;
pub mod model;
pub mod report;
pub mod scenario;
pub mod study;
pub mod subject;
pub mod substrate;
pub mod sys;
pub mod trace;
pub mod util;
