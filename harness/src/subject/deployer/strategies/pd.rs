use super::*;

/// PD's own way in: a member started with `--join` runs the MemberAdd
/// itself (`server/join/join.go` `PrepareJoinCluster`), so the deployer
/// only picks who starts with `--initial-cluster` and who with `--join`.
///
/// `Genesis::Static` follows tidb-operator v2 (`pkg/configs/pd/config.go`
/// `Overlay`: every bootstrapping PD gets one `initial-cluster`, later ones
/// `join` the cluster's PD URL); `Genesis::Seed` starts one PD alone and
/// joins the rest one by one.
pub struct PdJoin {
    genesis: Genesis,
}

impl PdJoin {
    pub fn seed() -> Self {
        PdJoin {
            genesis: Genesis::Seed,
        }
    }

    pub fn static_bootstrap() -> Self {
        PdJoin {
            genesis: Genesis::Static,
        }
    }
}

impl Deployer for PdJoin {
    fn reconcile(&mut self, obs: &Observation) -> Result<Vec<Action>, super::super::DeployerError> {
        Ok(pd_one_change_at_a_time(obs, &self.genesis))
    }
}

/// `--initial-cluster` for every genesis member; PD has no flag for the
/// state (`new` is its default) or the token.
fn pd_genesis(obs: &Observation, genesis: &Genesis) -> Vec<Action> {
    let members = genesis_members(obs, genesis);
    let initial = members
        .iter()
        .map(|s| format!("{}={}", s.name, s.peer_url))
        .collect::<Vec<_>>()
        .join(",");
    members
        .into_iter()
        .map(|slot| Action::Start {
            slot: slot.name.clone(),
            spec: engine_spec(obs, slot, vec![format!("--initial-cluster={initial}")]),
        })
        .collect()
}

/// The client URLs of started members whose slot runs: what a Service in
/// front of ready PD pods would reach.
fn join_targets(obs: &Observation) -> Vec<String> {
    obs.members()
        .iter()
        .filter(|m| m.is_started())
        .filter(|m| obs.slot_of(m).is_some_and(|s| s.phase == Phase::Running))
        .flat_map(|m| m.client_urls.iter().cloned())
        .collect()
}

/// A desired slot with a process but no started member yet: a joiner
/// still on its way in (PD adds itself, so the list lags its start).
fn joiner_in_flight(obs: &Observation) -> bool {
    obs.desired_slots().any(|s| {
        s.phase != Phase::Empty
            && s.spec.is_some()
            && obs.member_of(s).is_none_or(|m| !m.is_started())
    })
}

fn pd_one_change_at_a_time(obs: &Observation, genesis: &Genesis) -> Vec<Action> {
    if cluster_absent(obs) {
        return pd_genesis(obs, genesis);
    }
    let mut actions = Vec::new();
    restart_slots_with_data(obs, &mut actions);
    if obs.members.is_none() || !actions.is_empty() {
        return actions;
    }
    if joiner_in_flight(obs) || has_unstarted_member(obs) {
        return actions;
    }
    if remove_members_that_lost_data(obs, &mut actions) || scale_in(obs, &mut actions) {
        return actions;
    }
    // As for etcd: a member added before the cluster decided its version
    // fails its compatibility check at every start.
    if !obs.cluster_version_decided() {
        return actions;
    }
    let targets = join_targets(obs);
    if targets.is_empty() {
        return actions;
    }
    if let Some(slot) = obs
        .desired_slots()
        .filter(|s| s.phase == Phase::Empty && !s.has_data && obs.member_of(s).is_none())
        .min_by_key(|s| s.ordinal)
    {
        actions.push(Action::Start {
            slot: slot.name.clone(),
            spec: engine_spec(obs, slot, vec![format!("--join={}", targets.join(","))]),
        });
    }
    actions
}
