//! The store: the source of truth (DESIGN.md decision 1), on PostgreSQL or
//! the embedded SQLite file.
//!
//! - [`db`]: the [`Db`] handle on either engine, creating the database and
//!   applying migrations.
//! - [`log`]: the global, gap-safe event log that catch-up readers tail.
//! - [`commands`]: the one command path (cqrs-es over postgres-es or
//!   sqlite-es) used by the API, the catalog feed and the saga worker alike.
//! - [`upcast`]: older stored event versions read as the current one.
//! - [`access`]: tokens, idempotency records and server secrets.
//! - [`health`]: whether the log's readers move, for `/readyz`.
//!
//! Engine-specific SQL stays inside this module, the read model and audit.

pub mod access;
pub mod bind;
pub mod chain;
pub mod commands;
pub mod db;
pub mod health;
pub mod ids;
pub mod lease;
pub mod log;
pub mod sqlite_fns;
pub mod tokens;
pub mod upcast;
pub mod uploads;

pub use db::{Db, Engine, Tx};
