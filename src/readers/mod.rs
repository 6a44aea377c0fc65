//! Catch-up readers of the event log: one loop ([`runner`]) and its uses,
//! the projector (the read model) and the relay (the bus).

pub mod projector;
pub mod relay;
pub mod runner;
