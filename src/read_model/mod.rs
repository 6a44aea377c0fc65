//! The read model: the rows the API serves, and the projections that write
//! them from the event log.

mod catalog;
pub mod catalog_pages;
mod deploys;
pub mod fold;
pub mod list;
pub mod lookups;
pub mod releases;
mod row;

use std::sync::Arc;

pub use catalog::CatalogProjection;
pub use deploys::DeploysProjection;
pub use row::{DeployRow, StepRow, DEPLOY_COLUMNS};

use crate::readers::projector::Projection;

/// Every projection of the read model.
pub fn projections() -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(CatalogProjection), Arc::new(DeploysProjection)]
}
