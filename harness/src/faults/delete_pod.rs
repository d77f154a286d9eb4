//! `delete-pod: <member>`: the member's pod goes, its volume stays; the
//! subject must bring the member back.

use super::{Fault, FaultArgs, Op, Plan, Primitive, Targeting, Targets, the_member};

pub struct DeletePod;

impl Fault for DeletePod {
    fn name(&self) -> &'static str {
        "delete-pod"
    }
    fn summary(&self) -> &'static str {
        "remove a member's pod (its volume survives); the subject brings it back"
    }
    fn targeting(&self) -> Targeting {
        Targeting::Member
    }
    fn primitives(&self) -> &'static [Primitive] {
        &[Primitive::DeletePod]
    }
    fn plan(&self, _: &FaultArgs, targets: &Targets) -> Plan {
        Plan {
            apply: vec![Op::DeletePod(the_member(targets))],
            undo: Vec::new(),
        }
    }
}
