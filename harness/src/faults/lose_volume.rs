//! `lose-volume: <member>`: the member's pod goes with its data volume;
//! the member must come back under a new identity, never its old one.

use super::{Fault, FaultArgs, Op, Plan, Primitive, Targeting, Targets, the_member};

pub struct LoseVolume;

impl Fault for LoseVolume {
    fn name(&self) -> &'static str {
        "lose-volume"
    }
    fn summary(&self) -> &'static str {
        "remove a member's pod and its data volume"
    }
    fn targeting(&self) -> Targeting {
        Targeting::Member
    }
    fn primitives(&self) -> &'static [Primitive] {
        &[Primitive::LoseVolume]
    }
    fn plan(&self, _: &FaultArgs, targets: &Targets) -> Plan {
        Plan {
            apply: vec![Op::LoseVolume(the_member(targets))],
            undo: Vec::new(),
        }
    }
}
