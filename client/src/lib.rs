//! The client side of Fleet: the scheduler SDK framework authors build on
//! ([`scheduler`]), the one-task framework behind `fleet run` ([`run`]), and the operator
//! client behind `fleet status` ([`operator`]), the calls that change the cluster
//! ([`calls`]) and the operator event stream ([`events`]).

pub mod calls;
pub mod credential;
pub mod error;
pub mod events;
pub mod masters;
pub mod operator;
pub mod run;
pub mod scheduler;

pub use credential::Credential;
pub use error::ClientError;
pub use scheduler::{EventStream, MasterEndpoint, SchedulerClient};
