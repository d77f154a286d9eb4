use super::discovery_service::DiscoveryService;
use super::*;
use crate::subject::deployer::DeployerError;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// Runs at every start of a member and decides its flags then, like
/// tidb-operator's PD start script (`startscript/v1/template.go`): with a
/// WAL, start as is; without, ask the discovery service until it answers.
const START_SCRIPT: &str = r#"if [ -d "$DATA_DIR/member/wal" ]; then
  exec "$ENGINE_BIN" "$@"
fi
until flags=$(fetch "$DISCOVERY_URL/new/$MEMBER_NAME"); do
  echo "waiting for discovery service to return start args ..." >&2
  sleep 0.5
done
echo "discovery returned: $flags" >&2
exec "$ENGINE_BIN" "$@" $flags
"#;

#[derive(Default)]
struct State {
    observation: Option<Observation>,
    /// Distinct members that asked and were not answered yet; in memory
    /// only, as in tidb-operator, so a restart of the service forgets them.
    askers: BTreeSet<String>,
    /// Askers that need a MemberAdd before they can be answered.
    pending_add: BTreeSet<String>,
}

/// All members start at once and ask a discovery service.
///
/// Follows tidb-operator v1 `pkg/discovery/discovery.go` `Discover`: the
/// last distinct asker, once the askers reach the desired replicas, gets a
/// single-member initial cluster; every other asker joins. For etcd the
/// join needs a MemberAdd first, which this deployer issues from its
/// reconcile loop. Unlike tidb-operator, it never bootstraps while a member
/// answers, so a reset of its memory cannot cause a second genesis.
pub struct Discovery {
    state: Arc<Mutex<State>>,
    service: DiscoveryService,
}

impl Discovery {
    pub fn start(ctx: &DeployerContext) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let service = DiscoveryService::start(
            ctx,
            Arc::new(move |name: String| {
                let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
                let answer = discover(&mut guard, &name);
                Box::pin(std::future::ready(answer))
            }),
        );
        Discovery { state, service }
    }
}

/// The answer of `GET /new/<name>`: status code and body.
fn discover(state: &mut State, name: &str) -> (u16, String) {
    let Some(obs) = state.observation.clone() else {
        return (503, "no observation yet".into());
    };
    let Some(slot) = obs.slots.iter().find(|s| s.name == name) else {
        return (404, format!("unknown member {name}"));
    };
    state.askers.insert(name.to_string());
    if obs.members.is_none() {
        if state.askers.len() as u32 >= obs.desired_replicas {
            state.askers.remove(name);
            let flags = new_cluster_flags(format!("{}={}", slot.name, slot.peer_url), &obs.token);
            return (200, flags.join(" "));
        }
        return (
            503,
            format!(
                "{} of {} members asked",
                state.askers.len(),
                obs.desired_replicas
            ),
        );
    }
    match obs.member_of(slot) {
        Some(member) if !member.is_started() => {
            state.askers.remove(name);
            state.pending_add.remove(name);
            (200, join_flags(&obs).join(" "))
        }
        Some(_) => (
            500,
            format!("{name} is registered and started: missing data or a duplicated member"),
        ),
        None => {
            state.pending_add.insert(name.to_string());
            (503, format!("member add pending for {name}"))
        }
    }
}

impl Deployer for Discovery {
    fn reconcile(&mut self, obs: &Observation) -> Result<Vec<Action>, DeployerError> {
        self.service.check()?;
        let (pending, askers) = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.observation = Some(obs.clone());
            (state.pending_add.clone(), state.askers.clone())
        };
        let mut actions = Vec::new();
        // Every desired pod runs the start script; all start in parallel.
        for slot in obs.desired_slots() {
            if slot.phase == Phase::Empty {
                actions.push(Action::Start {
                    slot: slot.name.clone(),
                    spec: self.service.script_spec(START_SCRIPT, obs, slot),
                });
            }
        }
        if obs.members.is_none() || !actions.is_empty() {
            return Ok(actions);
        }
        // A pod asking again while its old member is registered lost its
        // data: remove the old member so it can join anew.
        for slot in obs.desired_slots() {
            if !slot.has_data
                && askers.contains(&slot.name)
                && let Some(member) = obs.member_of(slot)
                && member.is_started()
            {
                return Ok(vec![Action::MemberRemove {
                    id: member.id.clone(),
                }]);
            }
        }
        if has_unstarted_member(obs) {
            return Ok(actions);
        }
        if scale_in(obs, &mut actions) || !obs.cluster_version_decided() {
            return Ok(actions);
        }
        if let Some(slot) = obs
            .desired_slots()
            .filter(|s| pending.contains(&s.name) && obs.member_of(s).is_none())
            .min_by_key(|s| s.ordinal)
        {
            actions.push(Action::MemberAdd {
                peer_url: slot.peer_url.clone(),
                learner: false,
            });
        }
        Ok(actions)
    }
}
