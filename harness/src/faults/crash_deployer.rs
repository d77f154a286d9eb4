//! `crash-deployer: {}`: the reconciler restarts with no memory: a new
//! deployer process, or the operator's pods deleted.

use super::{Fault, FaultArgs, Op, Plan, Primitive, Targeting, Targets};

pub struct CrashDeployer;

impl Fault for CrashDeployer {
    fn name(&self) -> &'static str {
        "crash-deployer"
    }
    fn summary(&self) -> &'static str {
        "restart the deployer (or the operator's pods) with nothing but what it observes"
    }
    fn targeting(&self) -> Targeting {
        Targeting::Nothing
    }
    fn primitives(&self) -> &'static [Primitive] {
        &[Primitive::CrashSubject]
    }
    fn plan(&self, _: &FaultArgs, _: &Targets) -> Plan {
        Plan {
            apply: vec![Op::CrashSubject],
            undo: Vec::new(),
        }
    }
}
