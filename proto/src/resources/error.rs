//! The one error type of the resource model: every parse or validation failure names the
//! offending token and the text it came from.

/// A resource, range, scalar or attribute that could not be parsed or is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    /// A scalar on its own (`Scalar::from_str`).
    #[error("invalid scalar: {reason}")]
    InvalidScalar { reason: String },
    /// One range inside a list of ranges; `text` is the resource (or ranges) it sits in.
    #[error("invalid range '{range}' in '{text}': {reason}")]
    InvalidRange {
        range: String,
        text: String,
        reason: String,
    },
    /// One `name(role):value` entry, or one element of the JSON form.
    #[error("invalid resource '{resource}': {reason}")]
    InvalidResource { resource: String, reason: String },
    /// The same resource name given with two value types.
    #[error("invalid resources: '{name}' is given as both {first} and {second}")]
    ConflictingTypes {
        name: String,
        first: String,
        second: String,
    },
    /// One `name:value` attribute entry, or one element of the JSON form.
    #[error("invalid attribute '{attribute}': {reason}")]
    InvalidAttribute { attribute: String, reason: String },
    /// A role name.
    #[error("invalid role '{role}': {reason}")]
    InvalidRole { role: String, reason: String },
    /// JSON that is not the Mesos resource or attribute form.
    #[error("invalid JSON: {reason}")]
    InvalidJson { reason: String },
}
