//! `stall: { member, when, for }`: the member is frozen (SIGSTOP) at the
//! moment named, its next start or the next member added, for a while:
//! the slow member behind join races (an add before the seed has decided
//! its cluster version, an add before the first joiner has started), hit
//! on purpose rather than by load.

use super::{Fault, FaultArgs, Op, Plan, Primitive, Targeting, Targets};

pub struct Stall;

impl Fault for Stall {
    fn name(&self) -> &'static str {
        "stall"
    }
    fn summary(&self) -> &'static str {
        "freeze a member for a while right after its next start, or right after the next member add"
    }
    fn targeting(&self) -> Targeting {
        // A member that starts later may not exist when the stall is armed.
        Targeting::MemberAtItsMoment
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
    /// The freeze, and its thaw `for:` later, are the driver's to apply
    /// once the moment comes (`Op::Stall`), so nothing here is held.
    fn plan(&self, args: &FaultArgs, _: &Targets) -> Plan {
        Plan {
            apply: vec![Op::Stall {
                member: args.member.unwrap_or(super::select::MemberSelector::Random),
                when: args.when.unwrap_or(super::Moment::Start),
                duration: args.duration.unwrap_or_default(),
            }],
            undo: Vec::new(),
        }
    }
}
