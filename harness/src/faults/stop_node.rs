//! `stop-node: { member, for }`: the node the member's pod runs on is
//! stopped (on kind, `docker stop` of its node container), then started
//! again. Every pod on it goes with it; the kubelet is gone too, so the
//! API keeps showing them until the node controller gives up on the node.
//! What operators with node-local volumes must survive: the member comes
//! back on the same node with its data, never rescheduled away from it.

use super::{Fault, FaultArgs, Op, Plan, Primitive, Targeting, Targets, the_member};

pub struct StopNode;

impl Fault for StopNode {
    fn name(&self) -> &'static str {
        "stop-node"
    }
    fn summary(&self) -> &'static str {
        "stop the node a member runs on for a while, then start it again (Kubernetes)"
    }
    fn targeting(&self) -> Targeting {
        Targeting::Member
    }
    fn held(&self) -> bool {
        true
    }
    fn primitives(&self) -> &'static [Primitive] {
        &[Primitive::StopNode]
    }
    fn plan(&self, _: &FaultArgs, targets: &Targets) -> Plan {
        let member = the_member(targets);
        Plan {
            apply: vec![Op::StopNode(member.clone())],
            undo: vec![Op::StartNode(member)],
        }
    }
}
