//! The log as evidence: rebuilding the read model from it (`replay`),
//! reading it out (`export`) and into another store (`import`), and proving
//! it was not changed (`chain`). `cli` holds the commands (`deployd
//! replay`, `deployd events export`, `deployd events import`, `deployd audit
//! verify`).

pub mod export;
pub mod import;
pub mod replay;
