//! The REST API.

pub mod problem;
