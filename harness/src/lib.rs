//! raftcert: drives Raft cluster deployments through their life against the
//! real engine and checks bootstrap and membership invariants over a trace.

pub mod backend;
pub mod deployer;
pub mod engine;
pub mod gallery;
pub mod interrupt;
pub mod invariants;
pub mod kube;
pub mod matrix;
pub mod report;
pub mod scenario;
pub mod trace;
pub mod util;
