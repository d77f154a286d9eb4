//! `restart: <member>`: a graceful stop; the restart policy brings the
//! member back with its data (a container restart, a pod deleted gently).

use super::{Fault, FaultArgs, Op, Plan, Primitive, Targeting, Targets, the_member};

pub struct Restart;

impl Fault for Restart {
    fn name(&self) -> &'static str {
        "restart"
    }
    fn summary(&self) -> &'static str {
        "stop a member gracefully; it comes back with its data"
    }
    fn targeting(&self) -> Targeting {
        Targeting::Member
    }
    fn primitives(&self) -> &'static [Primitive] {
        &[Primitive::Stop]
    }
    fn plan(&self, _: &FaultArgs, targets: &Targets) -> Plan {
        Plan {
            apply: vec![Op::Stop(the_member(targets))],
            undo: Vec::new(),
        }
    }
}
