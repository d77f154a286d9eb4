//! PD's timestamp workload (for T1): through each answering member in
//! turn, one timestamp at a steady pace, forwarded to the PD leader the
//! member names (as PD's own client does), recorded as `tso` events. One
//! gRPC channel per member is kept and the cluster ID asked once: with a
//! new connection and a `/members` call per ask, every 150 ms, 10 of the
//! 76 runs of the PD test matrix on 2 cores did not settle (the members'
//! HTTP calls timed out); like this, all 76 did.

use crate::engine::tso;
use crate::trace::{EventKind, Recorder};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ASK_INTERVAL: Duration = Duration::from_millis(250);
/// One member's whole answer: where the leader is, then the timestamp.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);
/// Asks a follower to answer from its own state, not through the leader.
const FOLLOWER_HANDLE: &str = "PD-Allow-follower-handle";

/// `/pd/api/v1/cluster`: the PD cluster ID (requests must carry it).
#[derive(Deserialize)]
struct Cluster {
    id: u64,
}

/// `/pd/api/v1/leader`: the PD leader as this member knows it.
#[derive(Deserialize)]
struct Leader {
    #[serde(default)]
    client_urls: Vec<String>,
}

/// What the asking task keeps between asks: one gRPC channel per member,
/// the cluster ID once known, and the leader that served last.
struct Asker {
    http: reqwest::Client,
    channels: BTreeMap<String, tonic::transport::Channel>,
    cluster_id: Option<u64>,
    /// The leader (its client URL as PD names it) that served the last
    /// timestamp.
    served_by: Option<String>,
}

/// When each slot last handed out a timestamp.
pub type Served = Arc<Mutex<BTreeMap<String, Instant>>>;

/// The asking task; stops when told.
pub struct TsoWorkload {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    pub served: Served,
}

impl TsoWorkload {
    pub fn start(recorder: Recorder, answering: Arc<Mutex<Vec<(String, String)>>>) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let served = Served::default();
        let last_served = served.clone();
        let task = tokio::spawn(async move {
            let http = match reqwest::Client::builder().timeout(ASK_TIMEOUT).build() {
                Ok(http) => http,
                Err(e) => {
                    tracing::warn!("no HTTP client for PD's timestamps: {e}");
                    return;
                }
            };
            let mut asker = Asker {
                http,
                channels: BTreeMap::new(),
                cluster_id: None,
                served_by: None,
            };
            let mut n: usize = 0;
            let mut ticker = tokio::time::interval(ASK_INTERVAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.changed() => break,
                }
                let target = {
                    let members = answering.lock().unwrap_or_else(|p| p.into_inner());
                    if members.is_empty() {
                        continue;
                    }
                    members[n % members.len()].clone()
                };
                n += 1;
                let (slot, endpoint) = target;
                let sent_ms = recorder.elapsed_ms();
                let outcome = tokio::time::timeout(2 * ASK_TIMEOUT, asker.ask(&endpoint))
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!(
                            "PD {endpoint}: timed out after {:?}",
                            2 * ASK_TIMEOUT
                        ))
                    });
                let (ok, physical, logical, error) = match outcome {
                    Ok(ts) => (true, ts.physical, ts.logical, None),
                    Err(e) => (false, 0, 0, Some(e)),
                };
                if ok {
                    last_served
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(slot.clone(), Instant::now());
                }
                recorder.record(EventKind::Tso {
                    slot,
                    sent_ms,
                    ok,
                    physical,
                    logical,
                    error,
                });
            }
        });
        TsoWorkload { stop, task, served }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

impl Asker {
    async fn json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        self.http
            .get(url)
            .header(FOLLOWER_HANDLE, "true")
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("{url}: {}", error_chain(&e)))?
            .json()
            .await
            .map_err(|e| format!("{url}: {}", error_chain(&e)))
    }

    /// The leader as `endpoint`'s member sees it, then one timestamp
    /// through it (forwarded when the member is not the leader).
    async fn ask(&mut self, endpoint: &str) -> Result<tso::Timestamp, String> {
        let base = endpoint.trim_end_matches('/');
        let cluster_id = match self.cluster_id {
            Some(id) => id,
            None => {
                let cluster: Cluster = self.json(&format!("{base}/pd/api/v1/cluster")).await?;
                self.cluster_id = Some(cluster.id);
                cluster.id
            }
        };
        let leader: Leader = self.json(&format!("{base}/pd/api/v1/leader")).await?;
        let leader = leader
            .client_urls
            .into_iter()
            .next()
            .ok_or_else(|| format!("{base}: no PD leader"))?;
        let forward_to = (leader.trim_end_matches('/') != base).then_some(leader.as_str());
        let channel = match self.channels.get(base) {
            Some(c) => c.clone(),
            None => {
                let c = tso::channel(base).map_err(|e| e.to_string())?;
                self.channels.insert(base.to_string(), c.clone());
                c
            }
        };
        let mut outcome =
            tso::get_ts(channel.clone(), base, cluster_id, forward_to, ASK_TIMEOUT).await;
        // A follower's own view of the leader can lag a leader change for
        // up to PD's leader-watch timeout (seen in CI: a follower named the
        // old leader for 50 s after a delayed link moved the leadership).
        // PD forwards to whatever host the request names, so the leader
        // that served the last timestamp is tried too, as PD's client
        // follows the leader it last reached.
        if let Err(tso::TsoError::Refused { .. }) = &outcome
            && let Some(known) = self.served_by.clone().filter(|k| *k != leader)
        {
            let forward_to = (known.trim_end_matches('/') != base).then_some(known.as_str());
            outcome = tso::get_ts(channel, base, cluster_id, forward_to, ASK_TIMEOUT).await;
            if outcome.is_ok() {
                return outcome.map_err(|e| e.to_string());
            }
        }
        match &outcome {
            Ok(_) => self.served_by = Some(leader),
            Err(tso::TsoError::Transport { .. } | tso::TsoError::Timeout { .. }) => {
                // Dial again next time: the member may have been replaced.
                self.channels.remove(base);
            }
            Err(tso::TsoError::Refused { .. }) => {}
        }
        outcome.map_err(|e| e.to_string())
    }
}

/// An error with its causes ("error sending request" alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
