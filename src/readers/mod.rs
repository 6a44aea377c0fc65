//! Catch-up readers of the event log: the projector (the read model) and
//! the relay (the bus).

pub mod projector;
pub mod relay;
