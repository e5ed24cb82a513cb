//! The Fleet master: the DRF allocator, the master's decisions as a sans-I/O core, the
//! registry behind a trait, who may do what (`auth`), and the I/O shell (QUIC endpoint,
//! HTTP API) around them.

pub mod allocator;
pub mod auth;
pub mod core;
pub mod registry;
pub mod shell;
