//! The store: PostgreSQL as the source of truth (DESIGN.md decision 1).
//!
//! - [`db`]: the pool, creating the database and applying migrations.
//! - [`log`]: the global, gap-safe event log that catch-up readers tail.
//! - [`commands`]: the one command path (cqrs-es over postgres-es) used by
//!   the API, the catalog feed and the saga worker alike.
//! - [`upcast`]: older stored event versions read as the current one.
//!
//! PostgreSQL-specific SQL stays inside this module and the projections.

pub mod commands;
pub mod db;
pub mod log;
pub mod upcast;
