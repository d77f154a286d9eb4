//! `partition: { isolate, for }`: members cut off from every other member
//! (both directions) while the harness still reaches all of them; one
//! write per member follows the cut, for N1.

use super::{Fault, FaultArgs, Op, Plan, Primitive, Targeting, Targets};

pub struct Partition;

impl Fault for Partition {
    fn name(&self) -> &'static str {
        "partition"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["isolate"]
    }
    fn summary(&self) -> &'static str {
        "cut members off from the others (the harness still reaches them), then heal"
    }
    fn targeting(&self) -> Targeting {
        Targeting::Isolate
    }
    fn held(&self) -> bool {
        true
    }
    fn primitives(&self) -> &'static [Primitive] {
        &[Primitive::Cut]
    }
    fn plan(&self, _: &FaultArgs, targets: &Targets) -> Plan {
        Plan {
            apply: vec![Op::Cut {
                isolated: targets.members.clone(),
                rest: targets.rest.clone(),
            }],
            undo: vec![Op::Heal],
        }
    }
}
