//! deployd: records and runs the deploys of a hosting platform.
//!
//! See ARCHITECTURE.md for the map of these modules.

pub mod api;
pub mod app;
pub mod audit;
pub mod bus;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod domain;
pub mod hosting;
pub mod ids;
pub mod projector;
pub mod query;
pub mod read_model;
pub mod relay;
pub mod schemas;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod tokens;
pub mod worker;
