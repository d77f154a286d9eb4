//! `delay: { member, latency, jitter, for }`: the member's links to every
//! other member, both ways, take `latency` longer, give or take `jitter`:
//! a slow or distant node. Bytes keep their order, as on a slow network.

use super::{Fault, FaultArgs, Op, Plan, Primitive, Targeting, Targets, the_member};
use std::time::Duration;

pub struct Delay;

impl Fault for Delay {
    fn name(&self) -> &'static str {
        "delay"
    }
    fn summary(&self) -> &'static str {
        "slow a member's links to its peers by a latency, with jitter, for a while"
    }
    fn targeting(&self) -> Targeting {
        Targeting::Member
    }
    fn held(&self) -> bool {
        true
    }
    fn takes_latency(&self) -> bool {
        true
    }
    fn primitives(&self) -> &'static [Primitive] {
        &[Primitive::Delay]
    }
    fn plan(&self, args: &FaultArgs, targets: &Targets) -> Plan {
        let slot = the_member(targets);
        Plan {
            apply: vec![Op::Delay {
                slot: slot.clone(),
                peers: targets.rest.clone(),
                latency: args.latency.unwrap_or_default(),
                jitter: args.jitter.unwrap_or(Duration::ZERO),
            }],
            undo: vec![Op::Undelay { slot }],
        }
    }
}
