//! The read model: the rows the API serves, and the projections that write
//! them from the event log.

mod row;

pub use row::{DeployRow, StepRow, DEPLOY_COLUMNS};
