//! `stall: { member, when, for }`: the member is frozen (SIGSTOP) at the
//! moment named, its next start or the next member added, for a while:
//! the slow member behind join races (an add before the seed has decided
//! its cluster version, an add before the first joiner has started), hit
//! on purpose rather than by load.

use super::{Fault, FaultArgs, Op, Plan, Primitive, Targeting, Targets, the_member};

pub struct Stall;

impl Fault for Stall {
    fn name(&self) -> &'static str {
        "stall"
    }
    fn summary(&self) -> &'static str {
        "freeze a member for a while right after its next start, or right after the next member add"
    }
    fn targeting(&self) -> Targeting {
        Targeting::Member
    }
    fn held(&self) -> bool {
        true
    }
    fn waits(&self) -> bool {
        true
    }
    fn primitives(&self) -> &'static [Primitive] {
        &[Primitive::Freeze]
    }
    fn plan(&self, args: &FaultArgs, targets: &Targets) -> Plan {
        let slot = the_member(targets);
        Plan {
            apply: vec![Op::Stall {
                slot: slot.clone(),
                when: args.when.unwrap_or(super::Moment::Start),
                duration: args.duration.unwrap_or_default(),
            }],
            // Thawed at the step's end too, if the moment came late.
            undo: vec![Op::Thaw(slot)],
        }
    }
}
