//! Wire messages, one enum per direction of each stream. Every message is an rkyv archive
//! carried in a frame (see `frame`).

pub mod agent;
pub mod scheduler;
