//! Builders for small hand-written traces used by the invariant tests.

use crate::invariants::Verdict;
use crate::trace::{
    EngineErrorClass, EventKind, FaultKind, MemberInfo, MembershipOp, SlotInfo, StartConfig, Trace,
};
use std::collections::BTreeMap;

pub const CID: &str = "c1";
pub const TOKEN: &str = "tok";
pub const GRACE_MS: u64 = 5_000;

pub fn name(i: usize) -> String {
    format!("m{i}")
}
pub fn peer(i: usize) -> String {
    format!("http://127.0.0.1{i}:2380")
}
pub fn client(i: usize) -> String {
    format!("http://127.0.0.1{i}:2379")
}

pub fn header() -> EventKind {
    EventKind::RunStarted {
        format: crate::trace::TRACE_FORMAT,
        run_id: "test".into(),
        scenario: "test".into(),
        strategy: "test".into(),
        engine: "etcd".into(),
        engine_version: "3.5.17".into(),
        backend: "process".into(),
        seed: 1,
        tls: false,
        slots: (0..5)
            .map(|i| SlotInfo {
                name: name(i),
                ordinal: i as u32,
                peer_url: peer(i),
                client_url: client(i),
            })
            .collect(),
        quorum_grace_ms: GRACE_MS,
        member_fronts: Vec::new(),
    }
}

pub fn step_started(index: u32, desired: u32) -> EventKind {
    EventKind::StepStarted {
        index,
        name: format!("s{index}"),
        desired_replicas: desired,
        deadline_ms: 60_000,
        expect_unsettled: false,
    }
}
pub fn step_finished(index: u32, settled: bool) -> EventKind {
    step_end(index, settled, None)
}
/// A step end that names the slots it wants (an operator naming its pods).
pub fn step_finished_wanting(index: u32, settled: bool, slots: &[usize]) -> EventKind {
    step_end(
        index,
        settled,
        Some(slots.iter().map(|&i| name(i)).collect()),
    )
}
fn step_end(index: u32, settled: bool, desired_slots: Option<Vec<String>>) -> EventKind {
    EventKind::StepFinished {
        index,
        name: format!("s{index}"),
        settled,
        elapsed_ms: 0,
        detail: None,
        desired_slots,
    }
}
/// Slot `i` appearing during the run (ordinals past the header's five).
pub fn slot_added(i: usize) -> EventKind {
    EventKind::SlotAdded {
        info: SlotInfo {
            name: name(i),
            ordinal: i as u32,
            peer_url: peer(i),
            client_url: client(i),
        },
    }
}
pub fn started(i: usize, had_data: bool) -> EventKind {
    EventKind::ProcessStarted {
        slot: name(i),
        pid: 100 + i as u32,
        command: "etcd".into(),
        args: Vec::new(),
        had_data,
    }
}
pub fn exited(i: usize) -> EventKind {
    EventKind::ProcessExited {
        slot: name(i),
        code: None,
        signal: Some(9),
    }
}
pub fn deleted(i: usize) -> EventKind {
    EventKind::SlotDeleted { slot: name(i) }
}
pub fn wiped(i: usize) -> EventKind {
    EventKind::DataWiped { slot: name(i) }
}
pub fn fault(fault: FaultKind, i: usize) -> EventKind {
    EventKind::FaultInjected {
        fault,
        slot: Some(name(i)),
    }
}

fn cluster(members: &[usize]) -> BTreeMap<String, Vec<String>> {
    members.iter().map(|&m| (name(m), vec![peer(m)])).collect()
}
fn start(i: usize, initialized: bool, members: &[usize], state: &str, token: &str) -> EventKind {
    EventKind::MemberStart {
        slot: name(i),
        config: StartConfig {
            name: name(i),
            member_initialized: initialized,
            initial_cluster: if initialized {
                BTreeMap::new()
            } else {
                cluster(members)
            },
            initial_cluster_state: state.into(),
            initial_cluster_token: token.into(),
        },
    }
}
/// `--initial-cluster-state=new` over `members`, no WAL yet.
pub fn genesis(i: usize, members: &[usize]) -> EventKind {
    start(i, false, members, "new", TOKEN)
}
/// `--initial-cluster-state=existing` over `members`, no WAL yet.
pub fn join(i: usize, members: &[usize]) -> EventKind {
    start(i, false, members, "existing", TOKEN)
}
/// A start from an existing WAL.
pub fn restart_cfg(i: usize) -> EventKind {
    start(i, true, &[], "new", TOKEN)
}
pub fn local(i: usize, id: &str, restarted: bool) -> EventKind {
    local_cid(i, id, CID, restarted)
}
pub fn local_cid(i: usize, id: &str, cid: &str, restarted: bool) -> EventKind {
    EventKind::LocalMember {
        slot: name(i),
        member_id: id.into(),
        cluster_id: cid.into(),
        restarted,
    }
}

/// A started voter on slot `i`.
pub fn m(i: usize, id: &str) -> MemberInfo {
    MemberInfo {
        id: id.into(),
        name: name(i),
        peer_urls: vec![peer(i)],
        client_urls: vec![client(i)],
        is_learner: false,
    }
}
pub fn unstarted(i: usize, id: &str) -> MemberInfo {
    MemberInfo {
        name: String::new(),
        client_urls: Vec::new(),
        ..m(i, id)
    }
}
pub fn learner(i: usize, id: &str) -> MemberInfo {
    MemberInfo {
        is_learner: true,
        ..m(i, id)
    }
}
pub fn list(via: usize, members: Vec<MemberInfo>) -> EventKind {
    list_cid(via, CID, members)
}
pub fn list_cid(via: usize, cid: &str, members: Vec<MemberInfo>) -> EventKind {
    EventKind::MemberList {
        via: name(via),
        cluster_id: cid.into(),
        members,
    }
}
pub fn status(i: usize, id: &str, leader: &str, term: u64, index: u64, rev: u64) -> EventKind {
    status_cid(i, CID, id, leader, term, index, rev)
}
pub fn status_cid(
    i: usize,
    cid: &str,
    id: &str,
    leader: &str,
    term: u64,
    index: u64,
    rev: u64,
) -> EventKind {
    EventKind::MemberStatus {
        slot: name(i),
        cluster_id: cid.into(),
        member_id: id.into(),
        leader: leader.into(),
        term,
        raft_index: index,
        revision: rev,
        is_learner: false,
    }
}
pub fn call_add(i: usize, id: &str) -> EventKind {
    EventKind::MembershipCall {
        op: MembershipOp::Add,
        peer_url: Some(peer(i)),
        member_id: Some(id.into()),
        ok: true,
        error: None,
    }
}
pub fn call_add_learner(i: usize, id: &str) -> EventKind {
    EventKind::MembershipCall {
        op: MembershipOp::AddLearner,
        peer_url: Some(peer(i)),
        member_id: Some(id.into()),
        ok: true,
        error: None,
    }
}
pub fn call_on(op: MembershipOp, id: &str) -> EventKind {
    EventKind::MembershipCall {
        op,
        peer_url: None,
        member_id: Some(id.into()),
        ok: true,
        error: None,
    }
}
pub fn applied(via: usize, op: MembershipOp, id: &str, of: usize) -> EventKind {
    EventKind::MembershipApplied {
        slot: name(via),
        op,
        member_id: id.into(),
        peer_urls: if op == MembershipOp::Remove {
            Vec::new()
        } else {
            vec![peer(of)]
        },
    }
}
pub fn engine_error(i: usize, class: EngineErrorClass) -> EventKind {
    EventKind::EngineError {
        slot: name(i),
        class,
        message: "refused".into(),
    }
}

/// Appends events with a clock that advances 50 ms per event.
pub struct TB {
    pub t: u64,
    pub events: Vec<(u64, EventKind)>,
    acked: BTreeMap<String, String>,
    writes: u32,
}

impl TB {
    pub fn new() -> Self {
        TB {
            t: 0,
            events: vec![(0, header())],
            acked: BTreeMap::new(),
            writes: 0,
        }
        .wait(10)
    }
    pub fn ev(mut self, kind: EventKind) -> Self {
        self.events.push((self.t, kind));
        self.t += 50;
        self
    }
    pub fn evs(self, kinds: impl IntoIterator<Item = EventKind>) -> Self {
        kinds.into_iter().fold(self, TB::ev)
    }
    pub fn wait(mut self, ms: u64) -> Self {
        self.t += ms;
        self
    }
    /// An acknowledged client write with a fresh key.
    pub fn write(mut self) -> Self {
        self.writes += 1;
        let (k, v) = (format!("k{}", self.writes), format!("v{}", self.writes));
        self.acked.insert(k.clone(), v.clone());
        self.ev(EventKind::ClientWrite {
            key: k,
            value: v,
            ok: true,
            error: None,
            latency_ms: None,
        })
    }
    /// Final read returning every acknowledged write, then the run end.
    pub fn finish(self) -> Trace {
        let values = self.acked.clone();
        self.ev(EventKind::FinalRead {
            ok: true,
            error: None,
            values,
        })
        .ev(EventKind::RunFinished { error: None })
        .build()
    }
    pub fn build(self) -> Trace {
        Trace::from_kinds(self.events)
    }
}

/// Seed-join 1 -> 3, correct: m0 bootstraps alone, m1 and m2 are added
/// then started `existing`. Ends right after the last step.
pub fn seed_join_3() -> TB {
    use MembershipOp::Add;
    TB::new()
        .ev(step_started(0, 1))
        .ev(started(0, false))
        .ev(genesis(0, &[0]))
        .ev(local(0, "a0", false))
        .ev(applied(0, Add, "a0", 0))
        .ev(status(0, "a0", "a0", 2, 4, 1))
        .ev(list(0, vec![m(0, "a0")]))
        .write()
        .ev(step_finished(0, true))
        .ev(step_started(1, 3))
        .ev(call_add(1, "a1"))
        .ev(applied(0, Add, "a1", 1))
        .ev(list(0, vec![m(0, "a0"), unstarted(1, "a1")]))
        .ev(started(1, false))
        .ev(join(1, &[0, 1]))
        .ev(local(1, "a1", false))
        .ev(applied(1, Add, "a0", 0))
        .ev(applied(1, Add, "a1", 1))
        .ev(status(1, "a1", "a0", 2, 6, 2))
        .ev(list(0, vec![m(0, "a0"), m(1, "a1")]))
        .ev(list(1, vec![m(0, "a0"), m(1, "a1")]))
        .ev(call_add(2, "a2"))
        .ev(applied(0, Add, "a2", 2))
        .ev(applied(1, Add, "a2", 2))
        .ev(list(0, vec![m(0, "a0"), m(1, "a1"), unstarted(2, "a2")]))
        .ev(list(1, vec![m(0, "a0"), m(1, "a1"), unstarted(2, "a2")]))
        .ev(started(2, false))
        .ev(join(2, &[0, 1, 2]))
        .ev(local(2, "a2", false))
        .ev(status(2, "a2", "a0", 2, 8, 2))
        .ev(list(0, vec![m(0, "a0"), m(1, "a1"), m(2, "a2")]))
        .ev(list(1, vec![m(0, "a0"), m(1, "a1"), m(2, "a2")]))
        .ev(list(2, vec![m(0, "a0"), m(1, "a1"), m(2, "a2")]))
        .write()
        .ev(status(0, "a0", "a0", 2, 9, 3))
        .ev(step_finished(1, true))
}

/// The three members of a healthy 3-member cluster.
pub fn three() -> Vec<MemberInfo> {
    vec![m(0, "a0"), m(1, "a1"), m(2, "a2")]
}

/// Static bootstrap of 3, correct: all start `new` with the same
/// initial cluster. Ends right after the step.
pub fn static_3() -> TB {
    use MembershipOp::Add;
    let all = [0, 1, 2];
    TB::new()
        .ev(step_started(0, 3))
        .evs((0..3).map(|i| started(i, false)))
        .evs((0..3).map(|i| genesis(i, &all)))
        .evs((0..3).map(|i| local(i, &format!("a{i}"), false)))
        .evs((0..3).map(|i| applied(0, Add, &format!("a{i}"), i)))
        .ev(status(0, "a0", "a0", 2, 3, 1))
        .ev(status(1, "a1", "a0", 2, 3, 1))
        .ev(list(0, vec![m(0, "a0"), m(1, "a1"), unstarted(2, "a2")]))
        .ev(status(2, "a2", "a0", 2, 4, 1))
        .ev(list(0, three()))
        .ev(list(1, three()))
        .ev(list(2, three()))
        .write()
        .ev(step_finished(0, true))
}

/// `static_3`, then a step in which the harness freezes two of the three
/// members for 20 s and thaws them.
pub fn static_3_two_frozen_20s() -> Trace {
    static_3()
        .ev(step_started(1, 3))
        .ev(fault(FaultKind::FREEZE, 1))
        .ev(fault(FaultKind::FREEZE, 2))
        .wait(20_000)
        .ev(fault(FaultKind::THAW, 1))
        .ev(fault(FaultKind::THAW, 2))
        .ev(status(1, "a1", "a0", 2, 9, 2))
        .ev(step_finished(1, true))
        .finish()
}

/// Asserts a failing verdict with a violation mentioning `needle`.
pub fn assert_violation(v: &Verdict, needle: &str) {
    let hit = v.violations.iter().find(|x| x.message.contains(needle));
    match hit {
        Some(x) => assert!(!x.evidence.is_empty(), "no evidence: {}", x.message),
        None => panic!(
            "{}: no violation containing {needle:?}; got {:#?}",
            v.invariant,
            v.violations.iter().map(|x| &x.message).collect::<Vec<_>>()
        ),
    }
}

pub fn assert_passed(v: &Verdict) {
    assert!(
        v.passed(),
        "{} should pass: {:#?}",
        v.invariant,
        v.violations.iter().map(|x| &x.message).collect::<Vec<_>>()
    );
}
