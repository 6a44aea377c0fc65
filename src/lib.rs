//! deployd: records and runs the deploys of a hosting platform.
//!
//! See ARCHITECTURE.md for the map of these modules and the rule of which
//! may import which.

pub mod api;
pub mod app;
pub mod audit;
pub mod bus;
pub mod catalog;
pub mod cli;
pub mod domain;
pub mod feeds;
pub mod hosting;
pub mod read_model;
pub mod readers;
pub mod schemas;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod webhooks;
pub mod worker;
