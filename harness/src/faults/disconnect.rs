//! `disconnect: { member, for }`: the member loses its network, towards
//! its peers and the harness alike, then gets it back.

use super::{Fault, FaultArgs, Op, Plan, Primitive, Targeting, Targets, the_member};

pub struct Disconnect;

impl Fault for Disconnect {
    fn name(&self) -> &'static str {
        "disconnect"
    }
    fn summary(&self) -> &'static str {
        "take a member off the network (peers and clients), then put it back"
    }
    fn targeting(&self) -> Targeting {
        Targeting::Member
    }
    fn held(&self) -> bool {
        true
    }
    fn primitives(&self) -> &'static [Primitive] {
        &[Primitive::Disconnect]
    }
    fn plan(&self, _: &FaultArgs, targets: &Targets) -> Plan {
        let member = the_member(targets);
        Plan {
            apply: vec![Op::Disconnect(member.clone())],
            undo: vec![Op::Reconnect(member)],
        }
    }
}
