//! Whole-run traces: correct deployers pass every invariant, and known real
//! bugs fail the invariant meant to catch them.

use super::testkit::*;
use super::{Verdict, check_all};
use crate::trace::{FaultKind, MembershipOp::*, Trace};

fn failed(verdicts: &[Verdict]) -> Vec<&str> {
    verdicts
        .iter()
        .filter(|v| !v.passed())
        .map(|v| v.invariant.as_str())
        .collect()
}

fn assert_all_pass(trace: &Trace) {
    let verdicts = check_all(trace);
    assert_eq!(verdicts.len(), super::registry().len());
    for v in &verdicts {
        assert_passed(v);
    }
}

fn assert_fails(trace: &Trace, ids: &[&str]) {
    let verdicts = check_all(trace);
    let failed = failed(&verdicts);
    for id in ids {
        assert!(failed.contains(id), "{id} should fail; failed: {failed:?}");
    }
    for v in verdicts.iter().filter(|v| !v.passed()) {
        for x in &v.violations {
            assert!(
                !x.evidence.is_empty(),
                "{}: no evidence: {}",
                v.invariant,
                x.message
            );
        }
    }
}

#[test]
fn seed_join_1_to_3_passes_all() {
    assert_all_pass(&seed_join_3().finish());
}

#[test]
fn static_3_passes_all() {
    assert_all_pass(&static_3().finish());
}

#[test]
fn learner_scale_out_passes_all() {
    let t = static_3()
        .ev(step_started(1, 4))
        .ev(call_add_learner(3, "a3"))
        .ev(applied(0, AddLearner, "a3", 3))
        .ev(list(0, {
            let mut v = three();
            v.push(crate::trace::MemberInfo {
                name: String::new(),
                client_urls: Vec::new(),
                ..learner(3, "a3")
            });
            v
        }))
        .ev(started(3, false))
        .ev(join(3, &[0, 1, 2, 3]))
        .ev(local(3, "a3", false))
        .ev(list(0, {
            let mut v = three();
            v.push(learner(3, "a3"));
            v
        }))
        .ev(call_on(Promote, "a3"))
        .ev(status(3, "a3", "a0", 2, 9, 2))
        .ev(list(0, {
            let mut v = three();
            v.push(m(3, "a3"));
            v
        }))
        .write()
        .ev(step_finished(1, true))
        .finish();
    assert_all_pass(&t);
}

#[test]
fn discovery_bootstrap_passes_all() {
    // All three start scripts run at once; m2 asked last and bootstraps
    // alone, the others are added and join.
    let t = TB::new()
        .ev(step_started(0, 3))
        .evs((0..3).map(|i| started(i, false)))
        .ev(genesis(2, &[2]))
        .ev(local(2, "a2", false))
        .ev(status(2, "a2", "a2", 2, 3, 1))
        .ev(list(2, vec![m(2, "a2")]))
        .ev(call_add(0, "a0"))
        .ev(list(2, vec![m(2, "a2"), unstarted(0, "a0")]))
        .ev(join(0, &[0, 2]))
        .ev(local(0, "a0", false))
        .ev(status(0, "a0", "a2", 2, 5, 1))
        .ev(list(2, vec![m(2, "a2"), m(0, "a0")]))
        .ev(call_add(1, "a1"))
        .ev(list(2, vec![m(2, "a2"), m(0, "a0"), unstarted(1, "a1")]))
        .ev(join(1, &[0, 1, 2]))
        .ev(local(1, "a1", false))
        .ev(status(1, "a1", "a2", 2, 7, 1))
        .ev(list(2, vec![m(2, "a2"), m(0, "a0"), m(1, "a1")]))
        .write()
        .ev(step_finished(0, true))
        .finish();
    assert_all_pass(&t);
}

#[test]
fn faults_handled_correctly_pass_all() {
    let t = static_3()
        // Kill and delete-pod: same member back.
        .ev(step_started(1, 3))
        .ev(fault(FaultKind::KILL, 1))
        .ev(exited(1))
        .ev(started(1, true))
        .ev(restart_cfg(1))
        .ev(local(1, "a1", true))
        .ev(status(1, "a1", "a0", 2, 9, 2))
        .ev(fault(FaultKind::DELETE_POD, 2))
        .ev(exited(2))
        .ev(deleted(2))
        .ev(started(2, true))
        .ev(restart_cfg(2))
        .ev(local(2, "a2", true))
        .ev(status(2, "a2", "a0", 2, 9, 2))
        .write()
        .ev(step_finished(1, true))
        // Volume loss: remove, add anew, join.
        .ev(step_started(2, 3))
        .ev(fault(FaultKind::LOSE_VOLUME, 2))
        .ev(exited(2))
        .ev(wiped(2))
        .ev(deleted(2))
        .ev(call_on(Remove, "a2"))
        .ev(list(0, vec![m(0, "a0"), m(1, "a1")]))
        .ev(call_add(2, "b2"))
        .ev(list(0, vec![m(0, "a0"), m(1, "a1"), unstarted(2, "b2")]))
        .ev(started(2, false))
        .ev(join(2, &[0, 1, 2]))
        .ev(local(2, "b2", false))
        .ev(status(2, "b2", "a0", 2, 12, 3))
        .ev(list(0, vec![m(0, "a0"), m(1, "a1"), m(2, "b2")]))
        .write()
        .ev(step_finished(2, true))
        // Scale-in to 2: remove, stop, wipe.
        .ev(step_started(3, 2))
        .ev(call_on(Remove, "b2"))
        .ev(applied(0, Remove, "b2", 2))
        .ev(list(0, vec![m(0, "a0"), m(1, "a1")]))
        .ev(exited(2))
        .ev(started(2, true))
        .ev(local(2, "b2", true))
        .ev(exited(2))
        .ev(deleted(2))
        .ev(wiped(2))
        .write()
        .ev(step_finished(3, true))
        .finish();
    assert_all_pass(&t);
}

#[test]
fn restart_new_after_wipe_fails_i1_and_i6() {
    // broken-lost-volume-restarts-new: etcd #11410.
    let t = static_3()
        .ev(step_started(1, 3))
        .ev(fault(FaultKind::LOSE_VOLUME, 2))
        .ev(exited(2))
        .ev(wiped(2))
        .ev(deleted(2))
        .ev(started(2, false))
        .ev(genesis(2, &[0, 1, 2]))
        .ev(local(2, "a2", false))
        .ev(status(2, "a2", "0", 2, 1, 1))
        .wait(10_000)
        .ev(step_finished(1, false))
        .finish();
    assert_fails(&t, &["I1", "I6"]);
}

#[test]
fn bootstrapping_alone_while_a_cluster_exists_fails_i1() {
    // broken-all-new-alone, as scale-out from a running cluster.
    let t = seed_join_3()
        .ev(step_started(2, 4))
        .ev(started(3, false))
        .ev(genesis(3, &[3]))
        .ev(local_cid(3, "d3", "c9", false))
        .ev(status_cid(3, "c9", "d3", "d3", 2, 3, 1))
        .ev(list_cid(3, "c9", vec![m(3, "d3")]))
        .ev(step_finished(2, false))
        .finish();
    assert_fails(&t, &["I1", "I3"]);
}

#[test]
fn join_lacking_a_member_fails_i2() {
    let t = seed_join_3()
        .ev(step_started(2, 4))
        .ev(call_add(3, "a3"))
        .ev(list(
            0,
            vec![m(0, "a0"), m(1, "a1"), m(2, "a2"), unstarted(3, "a3")],
        ))
        .ev(started(3, false))
        .ev(join(3, &[0, 1, 3]))
        .ev(engine_error(
            3,
            crate::trace::EngineErrorClass::MemberCountUnequal,
        ))
        .ev(exited(3))
        .ev(step_finished(2, false))
        .finish();
    assert_fails(&t, &["I2", "I3"]);
}

#[test]
fn nameless_member_after_step_fails_i3() {
    let t = seed_join_3()
        .ev(step_started(2, 4))
        .ev(call_add(3, "a3"))
        .ev(list(
            0,
            vec![m(0, "a0"), m(1, "a1"), m(2, "a2"), unstarted(3, "a3")],
        ))
        .wait(1_000)
        .ev(step_finished(2, false))
        .finish();
    assert_fails(&t, &["I3"]);
}

#[test]
fn add_whose_member_never_starts_fails_i4() {
    // coreos etcd-operator #1260.
    let t = TB::new()
        .ev(step_started(0, 1))
        .ev(started(0, false))
        .ev(genesis(0, &[0]))
        .ev(local(0, "a0", false))
        .ev(status(0, "a0", "a0", 2, 3, 1))
        .ev(list(0, vec![m(0, "a0")]))
        .write()
        .ev(step_finished(0, true))
        .ev(step_started(1, 2))
        .ev(call_add(1, "a1"))
        .ev(list(0, vec![m(0, "a0"), unstarted(1, "a1")]))
        .ev(status(0, "a0", "0", 3, 4, 2))
        .wait(30_000)
        .ev(step_finished(1, false))
        .finish();
    assert_fails(&t, &["I4", "I3"]);
}

#[test]
fn scale_in_leaving_the_member_fails_i7() {
    // tidb-operator #2767: the slot is gone, its member stays.
    let t = static_3()
        .ev(step_started(1, 2))
        .ev(exited(2))
        .ev(deleted(2))
        .ev(wiped(2))
        .ev(status(0, "a0", "a0", 2, 9, 2))
        .ev(step_finished(1, true))
        .finish();
    assert_fails(&t, &["I7", "I3", "I8"]);
}
