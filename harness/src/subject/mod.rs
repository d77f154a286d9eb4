//! Subjects: who reconciles the cluster under test. A deployer (a built-in
//! strategy, a library user's, or an external process speaking protocol v1)
//! is driven tick by tick and its actions are carried out on the substrate;
//! an operator reconciles on its own, and the driver only sets the replica
//! count it is asked for and restarts it as a fault.

pub mod deployer;
pub mod operator;

use crate::model::{Action, Observation};
use crate::substrate::kube::profile::{KubeFault, Profile};
use crate::substrate::kube::{KubeError, KubeSubstrate};
use crate::trace::Recorder;
use deployer::strategies::StrategyInfo;
use deployer::{Deployer, DeployerContext, DeployerError};
use std::sync::Arc;
use std::time::Duration;

/// Builds a fresh deployer; called again after a deployer crash.
pub type DeployerFactory = Arc<dyn Fn(&DeployerContext) -> Box<dyn Deployer> + Send + Sync>;

/// Who reconciles, chosen before the run.
#[derive(Clone)]
pub enum SubjectChoice {
    Builtin(&'static StrategyInfo),
    /// A deployer supplied by a library user or a test.
    Custom {
        name: String,
        factory: DeployerFactory,
    },
    /// A deployer process speaking protocol v1.
    External {
        command: String,
        timeout: Duration,
    },
    /// The operator (or controllers) of a profile's deployment.
    Operator(Arc<Profile>),
}

impl SubjectChoice {
    pub fn name(&self) -> String {
        match self {
            SubjectChoice::Builtin(info) => info.name.to_string(),
            SubjectChoice::Custom { name, .. } => name.clone(),
            SubjectChoice::External { command, .. } => deployer::external::short_name(command),
            SubjectChoice::Operator(profile) => profile.name.clone(),
        }
    }

    /// Whether it deploys `engine`: a built-in strategy knows one engine's
    /// flags; deployers read the engine from each observation.
    pub fn deploys(&self, engine: crate::engine::EngineKind) -> bool {
        match self {
            SubjectChoice::Builtin(info) => info.deploys(engine),
            _ => true,
        }
    }

    /// Whether the subject can be crashed as a fault; the reason if not.
    pub fn offers_crash(&self) -> Result<(), String> {
        match self {
            SubjectChoice::Operator(profile) => {
                if profile.operator.is_none() {
                    Err(format!("profile {} names no operator pods", profile.name))
                } else if !profile.faults.contains(&KubeFault::CrashOperator) {
                    Err(format!(
                        "profile {} does not allow crash-operator",
                        profile.name
                    ))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn build(&self, ctx: &DeployerContext) -> Result<Box<dyn Deployer>, SubjectError> {
        match self {
            SubjectChoice::Builtin(info) => Ok(info.build(ctx)),
            // These bind the service address themselves: a listener held
            // beside theirs would take half the connections.
            SubjectChoice::Custom { factory, .. } => {
                drop(ctx.service_listener.take());
                Ok(factory(ctx))
            }
            SubjectChoice::External { command, timeout } => {
                drop(ctx.service_listener.take());
                deployer::external::ExternalDeployer::spawn(
                    command,
                    &ctx.log_dir.join("deployer.log"),
                    *timeout,
                )
                .map(|d| Box::new(d) as Box<dyn Deployer>)
                .map_err(SubjectError::Deployer)
            }
            SubjectChoice::Operator(profile) => {
                Err(SubjectError::NotADeployer(profile.name.clone()))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubjectError {
    #[error("{0}")]
    Deployer(#[from] DeployerError),
    #[error("operator: {0}")]
    Operator(#[from] KubeError),
    #[error("{0} is an operator profile: it runs on --backend kube only")]
    NotADeployer(String),
}

/// The subject of a run in progress.
pub enum Subject {
    Deployer(DeployerSubject),
    Operator(Box<operator::OperatorSubject>),
}

impl Subject {
    /// A deployer subject, started.
    pub fn deployer(choice: SubjectChoice, ctx: DeployerContext) -> Result<Subject, SubjectError> {
        let deployer = choice.build(&ctx)?;
        Ok(Subject::Deployer(DeployerSubject {
            choice,
            ctx,
            deployer,
            reconciles: 0,
            idle: false,
        }))
    }

    /// The operator of a profile, for a run on `substrate`.
    pub fn operator(substrate: &KubeSubstrate) -> Result<Subject, SubjectError> {
        Ok(Subject::Operator(Box::new(operator::OperatorSubject::new(
            substrate,
        )?)))
    }

    /// A bootstrap (`first`) or scale step's replica count.
    pub async fn set_replicas(&mut self, replicas: u32, first: bool) -> Result<(), SubjectError> {
        match self {
            // A deployer reads the count from its observations.
            Subject::Deployer(_) => Ok(()),
            Subject::Operator(op) => Ok(op.set_replicas(replicas, first).await?),
        }
    }

    /// The reconciler restarts with no memory.
    pub async fn crash(&mut self) -> Result<(), SubjectError> {
        match self {
            Subject::Deployer(d) => d.crash(),
            Subject::Operator(op) => Ok(op.crash().await?),
        }
    }

    /// Whether the subject has nothing left to do: a deployer's last
    /// reconcile asked for nothing; an operator is judged by the cluster.
    pub fn idle(&self) -> bool {
        match self {
            Subject::Deployer(d) => d.idle,
            Subject::Operator(_) => true,
        }
    }

    /// How long a step gets, from the suite's deadline.
    pub fn settle_deadline(&self, suite: Duration) -> Duration {
        match self {
            Subject::Deployer(_) => suite,
            Subject::Operator(op) => op.settle_deadline(suite),
        }
    }

    /// How long a settled step waits for the subject's own status to agree
    /// with the cluster (operators publish status after the fact).
    pub fn status_grace(&self) -> Option<Duration> {
        match self {
            Subject::Deployer(_) => None,
            Subject::Operator(op) => op.status_grace(),
        }
    }
}

/// A deployer in a run: the instance, and what it asked for last.
pub struct DeployerSubject {
    choice: SubjectChoice,
    ctx: DeployerContext,
    deployer: Box<dyn Deployer>,
    /// Reconciles of the current instance.
    pub reconciles: u64,
    idle: bool,
}

impl DeployerSubject {
    /// One reconcile; an external deployer blocks on its pipe, so the
    /// runtime is told.
    pub fn reconcile(&mut self, observation: &Observation) -> Result<Vec<Action>, DeployerError> {
        let deployer = &mut self.deployer;
        let actions = match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| deployer.reconcile(observation))
            }
            _ => deployer.reconcile(observation),
        }?;
        self.idle = actions.is_empty();
        Ok(actions)
    }

    fn crash(&mut self) -> Result<(), SubjectError> {
        // Drop first: a discovery service must free its address.
        self.deployer = Box::new(NoDeployer);
        self.reconciles = 0;
        self.idle = false;
        self.deployer = self.choice.build(&self.ctx)?;
        Ok(())
    }
}

/// Stands in while a crashed deployer is replaced.
struct NoDeployer;
impl Deployer for NoDeployer {
    fn reconcile(&mut self, _: &Observation) -> Result<Vec<Action>, DeployerError> {
        Ok(Vec::new())
    }
}

/// Records that a subject misbehaved (protocol error, crash, timeout).
pub fn record_deployer_error(recorder: &Recorder, message: &str) {
    recorder.record(crate::trace::EventKind::DeployerError {
        message: message.to_string(),
    });
}
