use super::*;
use fleet_proto::ids::UpdateUuid;
use fleet_proto::task::{Source, TaskState};

fn status(agent: Option<&str>, uuid: Option<UpdateUuid>) -> TaskStatus {
    TaskStatus {
        task_id: TaskId::from("t1"),
        agent_id: agent.map(AgentId::from),
        state: TaskState::Running,
        reason: None,
        message: String::new(),
        source: Source::Agent,
        uuid,
        exit_code: None,
        sandbox: None,
        timestamp_ms: 0,
    }
}

#[test]
fn acknowledgement_needs_agent_and_uuid() {
    let uuid = UpdateUuid([7; 16]);
    assert_eq!(
        acknowledgement(&status(Some("a1"), Some(uuid))),
        Some(Call::Acknowledge {
            agent_id: AgentId::from("a1"),
            task_id: TaskId::from("t1"),
            uuid,
        })
    );
    assert_eq!(acknowledgement(&status(None, Some(uuid))), None);
    assert_eq!(acknowledgement(&status(Some("a1"), None)), None);
}

#[test]
fn application_close_is_a_refusal_with_the_reason_verbatim() {
    let addr: SocketAddr = "127.0.0.1:5050".parse().unwrap();
    let close = quinn::ApplicationClose {
        error_code: 3u32.into(),
        reason: bytes_of("role 'eng' is not authorized for principal 'bob'"),
    };
    let err = connection_error(addr, quinn::ConnectionError::ApplicationClosed(close), "x");
    assert_eq!(
        err.to_string(),
        "master at 127.0.0.1:5050 refused the framework: \
         role 'eng' is not authorized for principal 'bob'"
    );
}

#[test]
fn connect_timeout_names_the_address() {
    let addr: SocketAddr = "127.0.0.1:5050".parse().unwrap();
    let err = connection_error(addr, quinn::ConnectionError::TimedOut, "connecting");
    assert_eq!(
        err.to_string(),
        "cannot reach master at 127.0.0.1:5050: timed out after 4 s"
    );
}

#[test]
fn a_follower_s_close_names_the_leader() {
    let addr: SocketAddr = "127.0.0.1:5050".parse().unwrap();
    let leader: SocketAddr = "127.0.0.1:5052".parse().unwrap();
    let close = quinn::ApplicationClose {
        error_code: fleet_proto::frame::close::NOT_LEADER.into(),
        reason: bytes_of(&fleet_proto::leader::reason(Some(leader))),
    };
    let err = connection_error(addr, quinn::ConnectionError::ApplicationClosed(close), "x");
    assert!(
        matches!(err, ClientError::NotLeader { leader: Some(l), .. } if l == leader),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "master at 127.0.0.1:5050 is not the leader; the leader is 127.0.0.1:5052"
    );
}

fn bytes_of(s: &str) -> bytes::Bytes {
    bytes::Bytes::from(s.to_owned())
}
