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
    genesis_starts(obs, genesis, |initial| {
        vec![format!("--initial-cluster={initial}")]
    })
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{seed_only, slot};
    use super::*;

    fn pd(mut obs: Observation) -> Observation {
        obs.engine.kind = "pd".into();
        obs
    }

    fn start_args(actions: &[Action]) -> Vec<(String, Vec<String>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Start { slot, spec } => Some((slot.clone(), spec.args.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_static_genesis_starts_every_member_with_one_initial_cluster_and_nothing_else() {
        let mut obs = pd(seed_only(None));
        obs.members = None;
        obs.slots = (0..3).map(|o| slot(o, Phase::Empty)).collect();
        let starts = start_args(&PdJoin::static_bootstrap().reconcile(&obs).expect("actions"));
        let initial = "--initial-cluster=m0=http://127.0.0.10:2380,m1=http://127.0.0.11:2380,\
                       m2=http://127.0.0.12:2380";
        assert_eq!(starts.len(), 3);
        for (_, args) in &starts {
            assert_eq!(args[1..], [initial.to_string()], "{args:?}");
        }
        let seed = start_args(&PdJoin::seed().reconcile(&obs).expect("actions"));
        assert_eq!(
            seed,
            vec![(
                "m0".to_string(),
                vec![
                    "--name=m0".into(),
                    "--initial-cluster=m0=http://127.0.0.10:2380".into()
                ]
            )]
        );
    }

    #[test]
    fn a_joiner_joins_through_the_running_members_once_the_version_is_decided() {
        let undecided = pd(seed_only(None));
        assert!(
            PdJoin::seed()
                .reconcile(&undecided)
                .expect("actions")
                .is_empty()
        );
        let decided = pd(seed_only(Some("3.5.0")));
        let starts = start_args(&PdJoin::seed().reconcile(&decided).expect("actions"));
        assert_eq!(
            starts,
            vec![(
                "m1".to_string(),
                vec!["--name=m1".into(), "--join=http://127.0.0.10:2379".into()]
            )]
        );
    }

    #[test]
    fn no_second_joiner_while_one_is_on_its_way_in() {
        // m1 runs with --join but PD has not listed it yet.
        let mut obs = pd(seed_only(Some("3.5.0")));
        let spec = engine_spec(&obs, &obs.slots[1], vec!["--join=x".into()]);
        obs.slots[1].phase = Phase::Running;
        obs.slots[1].spec = Some(spec);
        assert!(
            PdJoin::static_bootstrap()
                .reconcile(&obs)
                .expect("actions")
                .is_empty()
        );
    }
}
