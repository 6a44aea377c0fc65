//! deployd's integration tests, one binary: the real server on port 0 (or
//! the binary itself), a fresh database and a NATS prefix of its own per
//! test, so tests run in parallel and twice in a row.

mod support;

mod helpers;

mod audit;
mod catalog;
mod cli;
mod client;
mod cloudflare;
mod create;
mod dashboard;
mod deploy_cli;
mod deploys;
mod embedded;
mod entities;
mod feeds;
mod fuzz;
mod list;
mod list_indexes;
mod locations;
mod log;
mod machines;
mod openapi;
mod ops;
mod query_pagination;
mod releases;
mod resilience;
mod safety;
mod saga;
mod schema_parity;
mod schemas;
mod sites;
mod uploads;
mod webhooks;
