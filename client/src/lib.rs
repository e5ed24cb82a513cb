//! The client side of Fleet: the scheduler SDK framework authors build on
//! ([`scheduler`]), the one-task framework behind `fleet run` ([`run`]), and the operator
//! client behind `fleet status` ([`operator`]).

pub mod credential;
pub mod error;
pub mod operator;
pub mod run;
pub mod scheduler;

pub use credential::Credential;
pub use error::ClientError;
pub use scheduler::{EventStream, MasterEndpoint, SchedulerClient};
