//! `drain-node: { member, for }`: the node the member's pod runs on is
//! cordoned and drained as `kubectl drain` does (every pod but DaemonSets'
//! and static ones evicted, PodDisruptionBudgets respected), then
//! uncordoned. A member whose volume is bound to that node cannot run
//! anywhere else: it waits, Pending, until the node takes pods again.

use super::{Fault, FaultArgs, Op, Plan, Primitive, Targeting, Targets, the_member};

pub struct DrainNode;

impl Fault for DrainNode {
    fn name(&self) -> &'static str {
        "drain-node"
    }
    fn summary(&self) -> &'static str {
        "cordon and drain the node a member runs on for a while, then uncordon it (Kubernetes)"
    }
    fn targeting(&self) -> Targeting {
        Targeting::Member
    }
    fn held(&self) -> bool {
        true
    }
    fn primitives(&self) -> &'static [Primitive] {
        &[Primitive::DrainNode]
    }
    fn plan(&self, _: &FaultArgs, targets: &Targets) -> Plan {
        let member = the_member(targets);
        Plan {
            apply: vec![Op::DrainNode(member.clone())],
            undo: vec![Op::UncordonNode(member)],
        }
    }
}
