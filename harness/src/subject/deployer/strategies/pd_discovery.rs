use super::discovery_service::DiscoveryService;
use super::*;
use crate::subject::deployer::DeployerError;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// tidb-operator v1.6.6's PD start script (`startscript/v1/template.go`,
/// `pdStartScriptTplText`): with PD's `join` file, `--join` the peer URLs
/// it lists; else without `member/wal`, ask the discovery service until it
/// answers (a random 0-4 s pause between asks) and append its flags; then,
/// in every case, a random 0-9 s pause before PD starts. Left out: the DNS
/// wait (members have no DNS names here) and the base64 encoding of the
/// asker's peer URL. The pauses are the operator's own, kept because they
/// spread parallel joins apart; `$RANDOM` is busybox's, /dev/urandom
/// stands in where the shell has none (dash).
const PD_START_SCRIPT: &str = r#"random() { echo "${RANDOM:-$(od -An -N2 -tu2 /dev/urandom)}"; }
if [ -f "$DATA_DIR/join" ]; then
  join=$(tr "," "\n" < "$DATA_DIR/join" | awk -F'=' '{print $2}' | tr "\n" ",")
  set -- "$@" "--join=${join%,}"
elif [ ! -d "$DATA_DIR/member/wal" ]; then
  until result=$(fetch "$DISCOVERY_URL/new/$MEMBER_NAME"); do
    echo "waiting for discovery service to return start args ..." >&2
    sleep $(( $(random) % 5 ))
  done
  echo "discovery returned: $result" >&2
  set -- "$@" $result
fi
sleep $(( $(random) % 10 ))
echo "starting pd-server: $*" >&2
exec "$ENGINE_BIN" "$@"
"#;

#[derive(Default)]
struct State {
    observation: Option<Observation>,
    /// The desired replicas the askers were counted for: tidb-operator
    /// forgets its askers whenever the TidbCluster's resourceVersion
    /// changes; here, when the desired replicas change.
    counted_for: Option<u32>,
    /// Distinct askers not answered yet (`clusterInfo.peers`).
    peers: BTreeSet<String>,
    /// Asks that went to PD, to spread them over the members.
    asks: usize,
    /// Askers whose name a started member still has: they lost their
    /// data, and PD refuses them until that member is deleted.
    lost_data: BTreeSet<String>,
}

/// tidb-operator v1: every PD pod starts at once and asks the discovery
/// service, which answers as `pkg/discovery/discovery.go` `Discover` does
/// at v1.6.6: the asker that makes the distinct askers equal the desired
/// replicas gets `--initial-cluster=<itself>`, whether or not a cluster
/// exists; any other asker gets `--join=` the client URLs of every member
/// PD lists but itself, or an error while no PD answers. PD runs the
/// MemberAdd itself. The reconcile loop stands for the operator's PD
/// member manager: pods restart as they are, scale-out starts one new pod
/// per sync while PD answers, scale-in deletes the member first, and a pod
/// that lost its data has its old member deleted (what the operator's
/// failover ends with, minutes later).
pub struct PdDiscovery {
    state: Arc<Mutex<State>>,
    service: DiscoveryService,
}

impl PdDiscovery {
    pub fn start(ctx: &DeployerContext) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let http = reqwest::Client::builder()
            .timeout(GET_MEMBERS_TIMEOUT)
            .build()
            .ok();
        let service = DiscoveryService::start(
            ctx,
            Arc::new(move |name: String| {
                let shared = shared.clone();
                let http = http.clone();
                Box::pin(async move {
                    let counted = {
                        let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
                        count_asker(&mut guard, &name)
                    };
                    let (obs, urls) = match counted {
                        Counted::Answer(code, body) => return (code, body),
                        Counted::AskPd { obs, urls } => (obs, urls),
                    };
                    let Some(http) = http else {
                        return (500, "no HTTP client".to_string());
                    };
                    match get_members(&http, &urls).await {
                        Ok(members) => {
                            let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
                            join_answer(&mut guard, &obs, &name, &members)
                        }
                        Err(e) => (500, e),
                    }
                })
            }),
        );
        PdDiscovery { state, service }
    }
}

/// How long one `GET /pd/api/v1/members` may take.
const GET_MEMBERS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

enum Counted {
    Answer(u16, String),
    /// Not the asker that completes the replicas: ask PD for its members
    /// through these client URLs, in turn.
    AskPd {
        obs: Box<Observation>,
        urls: Vec<String>,
    },
}

/// The first half of `Discover`: count the asker, and bootstrap it alone
/// if it makes the askers equal the desired replicas.
fn count_asker(state: &mut State, name: &str) -> Counted {
    let Some(obs) = state.observation.clone() else {
        return Counted::Answer(503, "no observation yet".into());
    };
    let Some(slot) = obs.slots.iter().find(|s| s.name == name) else {
        return Counted::Answer(404, format!("unknown member {name}"));
    };
    if state.counted_for != Some(obs.desired_replicas) {
        state.counted_for = Some(obs.desired_replicas);
        state.peers.clear();
    }
    state.peers.insert(name.to_string());
    if state.peers.len() == obs.desired_replicas as usize {
        state.peers.remove(name);
        return Counted::Answer(200, format!("--initial-cluster={name}={}", slot.peer_url));
    }
    // The PD Service: any desired pod, starting at a different one per ask,
    // where this process reaches it (on docker, a published port).
    let mut urls: Vec<String> = obs.desired_slots().map(|s| s.observe_url.clone()).collect();
    if !urls.is_empty() {
        state.asks += 1;
        let start = state.asks % urls.len();
        urls.rotate_left(start);
    }
    Counted::AskPd {
        obs: Box::new(obs),
        urls,
    }
}

/// A member as `GET /pd/api/v1/members` lists it; one added but never
/// started has no name.
#[derive(Debug, Clone, serde::Deserialize)]
struct PdMember {
    #[serde(default)]
    name: String,
    #[serde(default)]
    peer_urls: Vec<String>,
}

#[derive(serde::Deserialize)]
struct PdMembers {
    #[serde(default)]
    members: Vec<PdMember>,
}

/// tidb-operator's `GetMembers`: PD's own HTTP API, which answers only
/// once PD has started, not as soon as its embedded etcd has.
async fn get_members(http: &reqwest::Client, urls: &[String]) -> Result<Vec<PdMember>, String> {
    let mut last = "no PD member to ask".to_string();
    for url in urls {
        let got = async {
            http.get(format!("{url}/pd/api/v1/members"))
                .send()
                .await?
                .error_for_status()?
                .json::<PdMembers>()
                .await
        };
        match got.await {
            Ok(list) => return Ok(list.members),
            Err(e) => last = format!("GetMembers {url}: {e}"),
        }
    }
    Err(last)
}

/// The second half of `Discover`: `--join` every member PD lists but the
/// asker, by client URL.
fn join_answer(
    state: &mut State,
    obs: &Observation,
    name: &str,
    members: &[PdMember],
) -> (u16, String) {
    if members.iter().any(|m| m.name == name) {
        state.lost_data.insert(name.to_string());
    }
    let join: Vec<String> = members
        .iter()
        .filter(|m| m.name != name)
        .filter_map(|m| client_url_of(obs, m))
        .collect();
    state.peers.remove(name);
    (200, format!("--join={}", join.join(",")))
}

/// tidb-operator swaps the port of a member's first peer URL for the
/// client port; members here differ by address, so the slot that owns
/// the peer URL gives its client URL.
fn client_url_of(obs: &Observation, member: &PdMember) -> Option<String> {
    let peer = member.peer_urls.first()?;
    obs.slots
        .iter()
        .find(|s| s.peer_url.trim_end_matches('/') == peer.trim_end_matches('/'))
        .map(|s| s.client_url.clone())
}

impl Deployer for PdDiscovery {
    fn reconcile(&mut self, obs: &Observation) -> Result<Vec<Action>, DeployerError> {
        self.service.check()?;
        let lost_data = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.observation = Some(obs.clone());
            state.lost_data.clone()
        };
        let script = |slot: &SlotView| Action::Start {
            slot: slot.name.clone(),
            spec: self.service.script_spec(PD_START_SCRIPT, obs, slot),
        };
        // The StatefulSet starts pods in parallel; at genesis, all of them.
        if cluster_absent(obs) {
            return Ok(obs.desired_slots().map(script).collect());
        }
        let mut actions: Vec<Action> = obs
            .desired_slots()
            .filter(|s| s.phase == Phase::Empty && (s.has_data || obs.member_of(s).is_some()))
            .map(script)
            .collect();
        if obs.members.is_none() || !actions.is_empty() {
            return Ok(actions);
        }
        for slot in obs.desired_slots() {
            if !slot.has_data
                && lost_data.contains(&slot.name)
                && let Some(member) = obs.member_of(slot)
                && member.is_started()
            {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                state.lost_data.remove(&slot.name);
                return Ok(vec![Action::MemberRemove {
                    id: member.id.clone(),
                }]);
            }
        }
        if scale_in(obs, &mut actions) {
            return Ok(actions);
        }
        // Scale-out: one more pod per sync, once PD's status synced.
        if let Some(slot) = obs
            .desired_slots()
            .filter(|s| s.phase == Phase::Empty)
            .min_by_key(|s| s.ordinal)
        {
            actions.push(script(slot));
        }
        Ok(actions)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{seed_only, slot};
    use super::*;

    fn pd(mut obs: Observation) -> Observation {
        obs.engine.kind = "pd".into();
        obs
    }

    fn counted(state: &mut State, obs: &Observation, name: &str) -> Option<(u16, String)> {
        state.observation = Some(obs.clone());
        match count_asker(state, name) {
            Counted::Answer(code, body) => Some((code, body)),
            Counted::AskPd { .. } => None,
        }
    }

    fn member(name: &str, ordinal: u32) -> PdMember {
        PdMember {
            name: name.into(),
            peer_urls: vec![format!("http://127.0.0.{}:2380", 10 + ordinal)],
        }
    }

    #[test]
    fn the_asker_that_completes_the_replicas_bootstraps_alone_and_the_rest_ask_pd() {
        let mut obs = pd(seed_only(None));
        obs.members = None;
        obs.slots = (0..3).map(|o| slot(o, Phase::Running)).collect();
        let mut state = State::default();
        assert_eq!(counted(&mut state, &obs, "m0"), None);
        assert_eq!(counted(&mut state, &obs, "m2"), None);
        assert_eq!(
            counted(&mut state, &obs, "m1"),
            Some((200, "--initial-cluster=m1=http://127.0.0.11:2380".into()))
        );
        // m0 and m2 ask again: still two askers.
        assert_eq!(counted(&mut state, &obs, "m0"), None);
    }

    #[test]
    fn as_many_askers_as_replicas_bootstrap_again_even_while_a_cluster_answers() {
        // tidb-operator #3349's shape: the askers are counted, the running
        // cluster is not looked at first.
        let mut obs = pd(seed_only(Some("3.5.0")));
        obs.desired_replicas = 1;
        obs.slots[0].has_data = false;
        let mut state = State::default();
        assert_eq!(
            counted(&mut state, &obs, "m0"),
            Some((200, "--initial-cluster=m0=http://127.0.0.10:2380".into()))
        );
    }

    #[test]
    fn a_change_of_the_replicas_forgets_the_askers() {
        let mut obs = pd(seed_only(None));
        obs.members = None;
        let mut state = State::default();
        assert_eq!(counted(&mut state, &obs, "m1"), None);
        assert_eq!(counted(&mut state, &obs, "m2"), None);
        obs.desired_replicas = 5;
        assert_eq!(counted(&mut state, &obs, "m0"), None);
        assert_eq!(state.peers.len(), 1);
    }

    #[test]
    fn a_joiner_gets_the_client_urls_of_every_other_member_named_or_not() {
        let obs = pd(seed_only(Some("3.5.0")));
        let mut state = State::default();
        state.peers.insert("m2".into());
        let members = [member("m0", 0), member("", 1), member("m2", 2)];
        assert_eq!(
            join_answer(&mut state, &obs, "m2", &members),
            (
                200,
                "--join=http://127.0.0.10:2379,http://127.0.0.11:2379".into()
            )
        );
        assert!(state.peers.is_empty());
        assert!(state.lost_data.contains("m2"), "m2 is listed by name");
    }

    #[test]
    fn the_only_member_asking_gets_an_empty_join() {
        let obs = pd(seed_only(Some("3.5.0")));
        let mut state = State::default();
        assert_eq!(
            join_answer(&mut state, &obs, "m0", &[member("m0", 0)]),
            (200, "--join=".into())
        );
    }

    #[test]
    fn the_members_answer_of_pd_parses() {
        let json = r#"{"header":{"cluster_id":1},"members":[{"name":"m0","member_id":2,
            "peer_urls":["http://127.0.0.10:2380"],"client_urls":["http://127.0.0.10:2379"]},
            {"member_id":3,"peer_urls":["http://127.0.0.11:2380"]}]}"#;
        let parsed: PdMembers = serde_json::from_str(json).expect("members JSON");
        assert_eq!(parsed.members.len(), 2);
        assert_eq!(parsed.members[1].name, "");
    }
}
