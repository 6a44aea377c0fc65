//! deployd: records and runs the deploys of a hosting platform.
//!
//! See ARCHITECTURE.md for the map of these modules.

pub mod api;
pub mod domain;
pub mod ids;
pub mod read_model;
pub mod time;
pub mod projector;
pub mod store;
pub mod catalog;
pub mod bus;
pub mod tokens;
pub mod app;
pub mod cli;
