//! The client workload, the same on every substrate: unique keys written
//! at a steady pace through members that know a leader, read back at the
//! end (D1), and one write per member after a cut (N1's probes).

use super::poll::Poller;
use crate::engine::etcd::MemberClient;
use crate::trace::{EventKind, Recorder};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const WRITE_INTERVAL: Duration = Duration::from_millis(100);
const FINAL_READ_DEADLINE: Duration = Duration::from_secs(15);
/// A write that has not committed after this long counts as refused.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
pub const WORKLOAD_PREFIX: &str = "/raftcert/w/";

/// The writer task; stops when told.
pub struct Workload {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Workload {
    /// Writes unique keys through the poller's writable members.
    pub fn start(
        recorder: Recorder,
        writable: Arc<Mutex<Vec<MemberClient>>>,
        run_id: String,
    ) -> Workload {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut n: u64 = 0;
            let mut ticker = tokio::time::interval(WRITE_INTERVAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.changed() => break,
                }
                let client = {
                    let clients = writable.lock().unwrap_or_else(|p| p.into_inner());
                    if clients.is_empty() {
                        continue;
                    }
                    clients[(n as usize) % clients.len()].clone()
                };
                let key = format!("{WORKLOAD_PREFIX}{n:08}");
                let value = format!("{run_id}-{n}");
                let sent = Instant::now();
                let outcome = client.put(&key, &value).await;
                recorder.record(EventKind::ClientWrite {
                    key,
                    value,
                    ok: outcome.is_ok(),
                    error: outcome.err().map(|e| e.to_string()),
                    latency_ms: Some(sent.elapsed().as_millis() as u64),
                });
                n += 1;
            }
        });
        Workload { stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Reads back every workload key through a member that knows a leader,
/// polling meanwhile; records `final-read` either way.
pub async fn final_read(
    recorder: &Recorder,
    poller: &mut Poller,
    slots: impl Fn() -> Vec<crate::substrate::SlotState>,
    tick: Duration,
) {
    let deadline = Instant::now() + FINAL_READ_DEADLINE;
    let mut last_error = String::from("no member answered");
    loop {
        let clients = poller
            .writable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for client in clients {
            match client.get_prefix(WORKLOAD_PREFIX).await {
                Ok(values) => {
                    recorder.record(EventKind::FinalRead {
                        ok: true,
                        error: None,
                        values,
                    });
                    return;
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(tick).await;
        poller.observe(&slots()).await;
    }
    recorder.record(EventKind::FinalRead {
        ok: false,
        error: Some(last_error),
        values: BTreeMap::new(),
    });
}

/// Whether each side of a cut (`isolated`, `rest`) holds a quorum of
/// `voters`. A voter on neither side (not running at the cut) is cut off
/// from nobody once it starts, so it counts for both.
pub fn sides_with_quorum(voters: &[String], isolated: &[String], rest: &[String]) -> [bool; 2] {
    let quorum = voters.len() / 2 + 1;
    let on = |side: &[String]| voters.iter().filter(|v| side.contains(v)).count();
    let unplaced = voters.len() - on(isolated) - on(rest);
    [
        on(isolated) + unplaced >= quorum,
        on(rest) + unplaced >= quorum,
    ]
}

/// One write to every member on both sides of a cut, at once, recorded as
/// `write-probe` events for N1.
pub async fn probe_writes(
    recorder: &Recorder,
    clients: &BTreeMap<String, MemberClient>,
    voters: &[String],
    isolated: &[String],
    rest: &[String],
) {
    let mut probes = JoinSet::new();
    for (side, side_has_quorum) in [isolated, rest]
        .into_iter()
        .zip(sides_with_quorum(voters, isolated, rest))
    {
        for slot in side {
            let Some(client) = clients.get(slot) else {
                continue;
            };
            let client = client.with_call_timeout(PROBE_TIMEOUT);
            let slot = slot.clone();
            let key = format!("/raftcert/probe/{slot}-{}", crate::util::unique_suffix());
            probes.spawn(async move {
                let outcome = client.put(&key, "probe").await;
                (slot, side_has_quorum, outcome)
            });
        }
    }
    recorder.record_write_probes(probes).await;
}

#[cfg(test)]
mod tests {
    use super::sides_with_quorum;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_side_with_a_majority_of_voters_has_quorum() {
        let voters = names(&["m0", "m1", "m2"]);
        assert_eq!(
            sides_with_quorum(&voters, &names(&["m0"]), &names(&["m1", "m2"])),
            [false, true]
        );
        assert_eq!(
            sides_with_quorum(&voters, &names(&["m0", "m1"]), &names(&["m2"])),
            [true, false]
        );
    }

    #[test]
    fn a_voter_on_neither_side_counts_for_both() {
        // m3 was added but its member was not running at the cut.
        let voters = names(&["m0", "m1", "m2", "m3"]);
        assert_eq!(
            sides_with_quorum(&voters, &names(&["m0"]), &names(&["m1", "m2"])),
            [false, true]
        );
        // Placed on a side, it counts for that side only: 2 of 4 each.
        assert_eq!(
            sides_with_quorum(&voters, &names(&["m0", "m3"]), &names(&["m1", "m2"])),
            [false, false]
        );
    }
}
