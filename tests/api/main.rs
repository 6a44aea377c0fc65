//! HTTP tests: the real server on port 0, a fresh PostgreSQL database and a
//! NATS prefix of its own per test, so tests run in parallel and twice.

#[path = "../support/mod.rs"]
mod support;

mod helpers;

mod audit;
mod catalog;
mod client;
mod create;
mod deploys;
mod list;
mod log;
mod openapi;
mod ops;
mod resilience;
mod saga;
