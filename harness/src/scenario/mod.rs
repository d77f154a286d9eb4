//! Scenarios: the suite model (YAML steps with settle deadlines, faults
//! from the registry, the invariants a scenario exists to test).

pub mod model;

pub use model::{Scenario, Step, StepAction, Suite, SuiteError};
