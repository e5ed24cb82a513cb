//! The resource model: fixed-point scalars, port ranges, sets, role reservations and
//! the `Resources` arithmetic the allocator runs on, agent attributes, and the Mesos
//! text (`cpus:2;mem:1024;ports:[31000-32000]`) and JSON syntaxes for both.
//!
//! Every type here is serde (the Mesos JSON form) and rkyv (wire messages).

mod arithmetic;
mod attributes;
mod error;
mod json;
mod ranges;
mod resource;
mod scalar;
mod text;

#[cfg(test)]
mod tests;

pub use arithmetic::{ArchivedResources, Resources};
pub use attributes::{
    ArchivedAttribute, ArchivedAttributeValue, ArchivedAttributes, Attribute, AttributeValue,
    Attributes,
};
pub use error::ResourceError;
pub use ranges::{ArchivedRange, ArchivedRanges, Range, Ranges};
pub use resource::{
    ArchivedResource, ArchivedValue, ArchivedValueKind, DEFAULT_ROLE, Resource, Value, ValueKind,
    check_role, is_allocatable_to,
};
pub use scalar::{ArchivedScalar, Scalar};
