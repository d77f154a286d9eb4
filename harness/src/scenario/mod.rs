//! Scenarios: the suite model and the runner that drives one run.

pub mod model;
pub mod runner;

pub use model::{MemberSelector, Scenario, Step, StepAction, Suite, SuiteError};
pub use runner::{RunSpec, StrategyChoice, run_scenario};
