//! `full-restart: {}`: every member stopped gracefully at once; each comes
//! back with its data (a whole-cluster restart, a power cut with clean
//! shutdowns).

use super::{Fault, FaultArgs, Op, Plan, Primitive, Targeting, Targets};

pub struct FullRestart;

impl Fault for FullRestart {
    fn name(&self) -> &'static str {
        "full-restart"
    }
    fn summary(&self) -> &'static str {
        "stop every member gracefully; all come back with their data"
    }
    fn targeting(&self) -> Targeting {
        Targeting::Wanted
    }
    fn primitives(&self) -> &'static [Primitive] {
        &[Primitive::Stop]
    }
    fn plan(&self, _: &FaultArgs, targets: &Targets) -> Plan {
        Plan {
            apply: targets.members.iter().cloned().map(Op::Stop).collect(),
            undo: Vec::new(),
        }
    }
}
