//! Catch-up readers of the event log: one loop ([`runner`]) and its uses,
//! the projector (the read model), the relay (the bus) and the webhooks'
//! fan-out (delivery rows).

pub mod projector;
pub mod relay;
pub mod runner;
pub mod webhooks;
