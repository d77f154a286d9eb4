//! `kill: <member>`: SIGKILL; the member's restart policy brings it back.

use super::{Fault, FaultArgs, Op, Plan, Primitive, Targeting, Targets, the_member};

pub struct Kill;

impl Fault for Kill {
    fn name(&self) -> &'static str {
        "kill"
    }
    fn summary(&self) -> &'static str {
        "SIGKILL a member; it restarts with its data (a crashed container)"
    }
    fn targeting(&self) -> Targeting {
        Targeting::Member
    }
    fn primitives(&self) -> &'static [Primitive] {
        &[Primitive::Kill]
    }
    fn plan(&self, _: &FaultArgs, targets: &Targets) -> Plan {
        Plan {
            apply: vec![Op::Kill(the_member(targets))],
            undo: Vec::new(),
        }
    }
}
