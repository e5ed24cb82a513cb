//! Identifiers of agents, frameworks, offers, tasks and containers.
//!
//! All ids are short strings on the wire so that Mesos-style ids chosen by frameworks
//! (task ids) and ids minted by the master look alike. Ids minted by Fleet carry a random
//! part so that an id is never reused across master restarts.

use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize,
            rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
        )]
        #[rkyv(derive(Debug, PartialEq, Eq, Hash))]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }
    };
}

string_id!(
    /// An agent, minted by the master at first registration and kept across restarts.
    AgentId
);
string_id!(
    /// A framework, minted by the master at first SUBSCRIBE.
    FrameworkId
);
string_id!(
    /// A task, chosen by its framework; unique within the framework.
    TaskId
);
string_id!(
    /// An executor; for command tasks Fleet uses the task id.
    ExecutorId
);
string_id!(
    /// A container on an agent, minted by the agent.
    ContainerId
);

/// An offer. It names the shard that made it, so a reply can be routed without a lookup.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Hash))]
pub struct OfferId {
    pub shard: u16,
    pub seq: u64,
}

impl fmt::Display for OfferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "O{}-{}", self.shard, self.seq)
    }
}

impl fmt::Debug for OfferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OfferId({self})")
    }
}

/// A status update's unique id, used to acknowledge it and to recognise duplicates.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Hash))]
pub struct UpdateUuid(pub [u8; 16]);

impl UpdateUuid {
    /// A fresh random uuid (version 4 layout).
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        // A failing OS random source leaves zeros plus the clock below; still unique enough
        // per process to tell duplicates apart, and never a reason to stop a status update.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            bytes = nanos.to_le_bytes();
        }
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Self(bytes)
    }
}

impl fmt::Display for UpdateUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for UpdateUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UpdateUuid({self})")
    }
}

/// A random id with a readable prefix, e.g. `random_id("A")` -> "A-6f1c0e2d9ab34c57".
pub fn random_id(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        bytes = nanos.to_le_bytes();
    }
    format!("{prefix}-{:016x}", u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_prints_in_canonical_form() {
        let u = UpdateUuid([0xab; 16]);
        assert_eq!(u.to_string().len(), 36);
        assert_ne!(UpdateUuid::random(), UpdateUuid::random());
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(random_id("A"), random_id("A"));
        assert!(random_id("F").starts_with("F-"));
    }
}
