//! deployd: records and runs the deploys of a hosting platform.
//!
//! See ARCHITECTURE.md for the map of these modules.

pub mod api;
pub mod domain;
pub mod ids;
pub mod query;
pub mod read_model;
pub mod time;
