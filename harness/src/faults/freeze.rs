//! `freeze: { member, for }`: SIGSTOP, then SIGCONT: a member that stops
//! answering without exiting (a long GC pause, a starved node).

use super::{Fault, FaultArgs, Op, Plan, Primitive, Targeting, Targets, the_member};

pub struct Freeze;

impl Fault for Freeze {
    fn name(&self) -> &'static str {
        "freeze"
    }
    fn summary(&self) -> &'static str {
        "stop a member's processes for a while (SIGSTOP), then let them go on"
    }
    fn targeting(&self) -> Targeting {
        Targeting::Member
    }
    fn held(&self) -> bool {
        true
    }
    fn primitives(&self) -> &'static [Primitive] {
        &[Primitive::Freeze]
    }
    fn plan(&self, _: &FaultArgs, targets: &Targets) -> Plan {
        let member = the_member(targets);
        Plan {
            apply: vec![Op::Freeze(member.clone())],
            undo: vec![Op::Thaw(member)],
        }
    }
}
