//! The registry as the Raft state machine (`fleet_raft::Apply` for [`RegistryState`]):
//! committed ops applied in log order, and the whole state written to and restored from
//! snapshot bytes. Both ops and snapshots are rkyv archives, validated (bytecheck) when
//! read back; a snapshot starts with a magic and a format version.

use fleet_proto::ids::{AgentId, FrameworkId};
use fleet_proto::messages::agent::AgentInfo;
use fleet_proto::messages::scheduler::FrameworkInfo;
use rkyv::rancor;
use rkyv::util::AlignedVec;
use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;

use super::{AgentMarks, QuotaConfig, RegistryOp, RegistryState, Reservation};
use crate::core::Maintenance;

/// Snapshot bytes start with this, then the format version (u32 little-endian).
const MAGIC: &[u8; 8] = b"FLEETREG";
const VERSION: u32 = 3;
const HEADER: usize = MAGIC.len() + 4;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot encode the registry snapshot: {0}")]
    Encode(String),
    #[error("registry snapshot is not one: it does not start with {MAGIC:?}")]
    Magic,
    #[error("registry snapshot has format version {0}; this build reads version {VERSION}")]
    Version(u32),
    #[error("registry snapshot does not decode: {0}")]
    Decode(String),
}

/// What a snapshot archives: the state as lists, in key order.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Snapshot {
    agents: Vec<(AgentId, AgentInfo)>,
    frameworks: Vec<(FrameworkId, FrameworkInfo)>,
    weights: Vec<(String, f64)>,
    quotas: Vec<(String, QuotaConfig)>,
    reservations: Vec<(AgentId, Vec<Reservation>)>,
    marks: Vec<(AgentId, AgentMarks)>,
    gone: Vec<AgentId>,
    maintenance: Maintenance,
}

fn aligned(bytes: &[u8]) -> AlignedVec {
    let mut out = AlignedVec::with_capacity(bytes.len());
    out.extend_from_slice(bytes);
    out
}

impl fleet_raft::Apply for RegistryState {
    type Op = RegistryOp;
    /// Registry ops are idempotent and never refused by the state: nothing to answer.
    type Outcome = ();
    type Error = SnapshotError;

    fn apply(&mut self, op: RegistryOp) {
        RegistryState::apply(self, op);
    }

    fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        let snapshot = Snapshot {
            agents: self.agents.clone().into_iter().collect(),
            frameworks: self.frameworks.clone().into_iter().collect(),
            weights: self.weights.clone().into_iter().collect(),
            quotas: self.quotas.clone().into_iter().collect(),
            reservations: self.reservations.clone().into_iter().collect(),
            marks: self.marks.clone().into_iter().collect(),
            gone: self.gone.iter().cloned().collect(),
            maintenance: self.maintenance.clone(),
        };
        let archive = rkyv::to_bytes::<rancor::Error>(&snapshot)
            .map_err(|e| SnapshotError::Encode(e.to_string()))?;
        let mut out = Vec::with_capacity(HEADER + archive.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&archive);
        Ok(out)
    }

    fn restore(bytes: &[u8]) -> Result<Self, SnapshotError> {
        if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
            return Err(SnapshotError::Magic);
        }
        let mut version = [0u8; 4];
        version.copy_from_slice(&bytes[MAGIC.len()..HEADER]);
        let version = u32::from_le_bytes(version);
        if version != VERSION {
            return Err(SnapshotError::Version(version));
        }
        let snapshot = rkyv::from_bytes::<Snapshot, rancor::Error>(&aligned(&bytes[HEADER..]))
            .map_err(|e| SnapshotError::Decode(e.to_string()))?;
        Ok(RegistryState {
            agents: snapshot.agents.into_iter().collect(),
            frameworks: snapshot.frameworks.into_iter().collect(),
            weights: snapshot.weights.into_iter().collect(),
            quotas: snapshot.quotas.into_iter().collect(),
            reservations: snapshot.reservations.into_iter().collect(),
            marks: snapshot.marks.into_iter().collect(),
            gone: snapshot.gone.into_iter().collect(),
            maintenance: snapshot.maintenance,
        })
    }
}

impl serde::Serialize for RegistryOp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = rkyv::to_bytes::<rancor::Error>(self)
            .map_err(|e| <S::Error as serde::ser::Error>::custom(e.to_string()))?;
        serializer.serialize_bytes(&bytes)
    }
}

impl<'de> serde::Deserialize<'de> for RegistryOp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = deserializer.deserialize_byte_buf(Bytes)?;
        rkyv::from_bytes::<RegistryOp, rancor::Error>(&aligned(&bytes))
            .map_err(|e| de::Error::custom(format!("registry op does not decode: {e}")))
    }
}

/// Reads a byte string however the format hands it over.
struct Bytes;

impl<'de> Visitor<'de> for Bytes {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the bytes of an archived registry op")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use fleet_proto::resources::{Attributes, Resources};
    use fleet_raft::Apply;

    use super::*;

    fn state() -> RegistryState {
        let mut state = RegistryState::default();
        state.apply(RegistryOp::AdmitAgent {
            id: AgentId::from("A-1"),
            info: AgentInfo {
                hostname: "h1".into(),
                http_address: "127.0.0.1:5051".into(),
                resources: Resources::parse("cpus:4;mem:1024;ports:[31000-32000]").unwrap(),
                attributes: Attributes::parse("rack:a").unwrap(),
            },
        });
        state.apply(RegistryOp::AddFramework {
            id: FrameworkId::from("F-1"),
            info: FrameworkInfo {
                name: "web".into(),
                failover_timeout_ms: 60_000,
                ..FrameworkInfo::default()
            },
        });
        state.apply(RegistryOp::SetWeight {
            role: "eng".into(),
            weight: 2.5,
        });
        state.apply(RegistryOp::SetQuota {
            role: "eng".into(),
            quota: QuotaConfig {
                guarantees: Resources::parse("cpus:2").unwrap(),
                limits: Some(Resources::parse("cpus:8").unwrap()),
            },
        });
        state.apply(RegistryOp::SetReservations {
            agent: AgentId::from("A-1"),
            reservations: vec![Reservation {
                principal: Some("ops".into()),
                resources: Resources::parse("cpus(eng):1;mem(eng):256").unwrap(),
            }],
        });
        state.apply(RegistryOp::SetAgentMarks {
            id: AgentId::from("A-1"),
            marks: AgentMarks {
                unreachable: true,
                deactivated: true,
                drain: Some(crate::core::DrainInfo {
                    state: crate::core::DrainState::Draining,
                    max_grace_ms: Some(5_000),
                    mark_gone: true,
                }),
            },
        });
        state.apply(RegistryOp::MarkAgentGone {
            id: AgentId::from("A-0"),
        });
        state.apply(RegistryOp::SetMaintenance {
            maintenance: Maintenance {
                windows: vec![crate::core::Window {
                    machines: vec![crate::core::MachineId::new("h1", "10.0.0.1").unwrap()],
                    start_ns: 1,
                    duration_ns: 3_600_000_000_000,
                }],
                down: Default::default(),
            },
        });
        state
    }

    #[test]
    fn a_snapshot_restores_the_same_state() {
        let state = state();
        let bytes = Apply::snapshot(&state).unwrap();
        assert_eq!(&bytes[..8], b"FLEETREG");
        assert_eq!(RegistryState::restore(&bytes).unwrap(), state);
    }

    #[test]
    fn a_damaged_snapshot_is_refused() {
        let mut bytes = Apply::snapshot(&state()).unwrap();
        assert!(matches!(
            RegistryState::restore(&bytes[..4]),
            Err(SnapshotError::Magic)
        ));
        bytes[8] = 9;
        assert!(matches!(
            RegistryState::restore(&bytes),
            Err(SnapshotError::Version(9))
        ));
        bytes[8] = 1;
        let len = bytes.len();
        bytes.truncate(len - 3);
        assert!(RegistryState::restore(&bytes).is_err());
    }

    #[test]
    fn ops_cross_the_log_codec() {
        let op = RegistryOp::AdmitAgent {
            id: AgentId::from("A-2"),
            info: AgentInfo {
                hostname: "h2".into(),
                http_address: "127.0.0.1:5052".into(),
                resources: Resources::parse("cpus:1;mem:512").unwrap(),
                attributes: Attributes::default(),
            },
        };
        let bytes = fleet_raft::codec::encode("op", &op).unwrap();
        let back: RegistryOp = fleet_raft::codec::decode("op", &bytes).unwrap();
        assert_eq!(back, op);
    }
}
