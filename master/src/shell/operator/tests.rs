//! The operator calls' parsing and read answers.

use fleet_proto::resources::Resources;

use super::*;

fn empty() -> MasterState {
    crate::core::Master::new(
        crate::core::MasterConfig::default(),
        Box::new(crate::registry::InMemoryRegistry::default()),
    )
    .state()
}

/// Answers a read call in `body` from `state` (a change is refused: the HTTP handler
/// routes those to the core).
fn answer(body: &[u8], state: &MasterState) -> Answer {
    match parse(body) {
        Ok(Call::Read(kind)) => read(&kind, state),
        Ok(other) => error(500, format!("{other:?} must go to the core")),
        Err(refused) => refused,
    }
}

#[test]
fn read_calls_answer_in_mesos_shapes() {
    let p = empty();
    let a = answer(br#"{"type": "GET_HEALTH"}"#, &p);
    assert_eq!(a.status, 200);
    assert_eq!(
        a.body,
        json!({"type": "GET_HEALTH", "get_health": {"healthy": true}})
    );
    let a = answer(br#"{"type": "GET_STATE"}"#, &p);
    assert_eq!(a.status, 200);
    for key in ["get_tasks", "get_executors", "get_frameworks", "get_agents"] {
        assert!(
            a.body["get_state"].get(key).is_some(),
            "{key} missing: {}",
            a.body
        );
    }
    for call in READ_CALLS {
        let a = answer(format!(r#"{{"type": "{call}"}}"#).as_bytes(), &p);
        assert_eq!(a.status, 200, "{call}: {}", a.body);
        assert_eq!(a.body["type"], call);
    }
}

#[test]
fn bad_calls_are_refused_naming_the_problem() {
    let p = empty();
    let a = answer(b"{not json", &p);
    assert_eq!(a.status, 400);
    assert!(
        a.body["error"]
            .as_str()
            .unwrap()
            .contains("not a JSON call")
    );
    let a = answer(br#"{"kind": "GET_STATE"}"#, &p);
    assert_eq!(a.status, 400);
    assert!(a.body["error"].as_str().unwrap().contains("\"type\""));
    let a = answer(br#"{"type": "GET_EVERYTHING"}"#, &p);
    assert_eq!(a.status, 400);
    assert!(a.body["error"].as_str().unwrap().contains("GET_EVERYTHING"));
    let a = answer(br#"{"type": "RESERVE_RESOURCES"}"#, &p);
    assert_eq!(a.status, 400);
    assert!(
        a.body["error"]
            .as_str()
            .unwrap()
            .contains("RESERVE_RESOURCES needs \"reserve_resources\"")
    );
    let bad = parse(br#"{"type": "UPDATE_WEIGHTS", "update_weights": {}}"#).unwrap_err();
    assert_eq!(bad.status, 400);
    assert!(bad.body["error"].as_str().unwrap().contains("weight_infos"));
    let bad = parse(
        br#"{"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [{"role": "a"}]}}"#,
    )
    .unwrap_err();
    assert!(bad.body["error"].as_str().unwrap().contains("\"weight\""));
}

#[test]
fn update_weights_parses_mesos_weight_infos() {
    let call = parse(
        br#"{"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [
            {"role": "light", "weight": 1}, {"role": "heavy", "weight": 3.0}]}}"#,
    )
    .unwrap();
    assert_eq!(
        call,
        Call::Change(
            "UPDATE_WEIGHTS",
            OperatorCall::UpdateWeights(vec![("light".into(), 1.0), ("heavy".into(), 3.0)])
        )
    );
    assert_eq!(changed("UPDATE_WEIGHTS", Ok(())).status, 200);
    assert_eq!(changed("UPDATE_WEIGHTS", Err("no".into())).status, 400);
}

#[test]
fn update_quota_parses_mesos_quota_configs() {
    let call = parse(
        br#"{"type": "UPDATE_QUOTA", "update_quota": {"force": false, "quota_configs": [
            {"role": "dev", "guarantees": {"cpus": {"value": 2}, "mem": {"value": 1024}},
             "limits": {"cpus": {"value": 4.5}}}]}}"#,
    )
    .unwrap();
    let Call::Change("UPDATE_QUOTA", OperatorCall::UpdateQuota(configs)) = call else {
        panic!("{call:?}");
    };
    assert_eq!(configs.len(), 1);
    assert_eq!(configs[0].0, "dev");
    assert_eq!(
        configs[0].1.guarantees,
        Resources::parse("cpus:2;mem:1024").unwrap()
    );
    assert_eq!(
        configs[0].1.limits,
        Some(Resources::parse("cpus:4.5").unwrap())
    );
    for (body, says) in [
        (r#"{"type": "UPDATE_QUOTA"}"#, "quota_configs"),
        (
            r#"{"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [{"guarantees": {}}]}}"#,
            "\"role\"",
        ),
        (
            r#"{"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [{"role": "a", "guarantees": {"cpus": 2}}]}}"#,
            "guarantees.cpus",
        ),
        (
            r#"{"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [{"role": "a", "guarantees": {"cpus": {"value": -1}}}]}}"#,
            "-1",
        ),
        (
            r#"{"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [{"role": "a", "limits": {"ports": {"value": 3}}}]}}"#,
            "ports",
        ),
    ] {
        let bad = parse(body.as_bytes()).unwrap_err();
        assert_eq!(bad.status, 400, "{body}");
        let message = bad.body["error"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
}

#[test]
fn agent_and_framework_calls_parse_mesos_bodies() {
    use fleet_proto::ids::{AgentId, FrameworkId, TaskId};
    let call = |body: &str| parse(body.as_bytes());
    assert_eq!(
        call(r#"{"type": "TEARDOWN", "teardown": {"framework_id": {"value": "F-1"}}}"#),
        Ok(Call::Change(
            "TEARDOWN",
            OperatorCall::Teardown {
                framework_id: FrameworkId("F-1".into())
            }
        ))
    );
    assert_eq!(
        call(r#"{"type": "KILL_TASK", "kill_task": {"task_id": {"value": "t"}}}"#),
        Ok(Call::Change(
            "KILL_TASK",
            OperatorCall::KillTask {
                task_id: TaskId("t".into()),
                framework_id: None,
                grace: None
            }
        ))
    );
    assert_eq!(
        call(
            r#"{"type": "KILL_TASK", "kill_task": {"task_id": {"value": "t"},
                "framework_id": {"value": "F"}, "grace_period": {"nanoseconds": 1500000000}}}"#
        ),
        Ok(Call::Change(
            "KILL_TASK",
            OperatorCall::KillTask {
                task_id: TaskId("t".into()),
                framework_id: Some(FrameworkId("F".into())),
                grace: Some(Duration::from_millis(1500))
            }
        ))
    );
    let agent = || AgentId("A-1".into());
    for (kind, expected) in [
        (
            "DEACTIVATE_AGENT",
            OperatorCall::DeactivateAgent { agent_id: agent() },
        ),
        (
            "REACTIVATE_AGENT",
            OperatorCall::ReactivateAgent { agent_id: agent() },
        ),
        (
            "MARK_AGENT_GONE",
            OperatorCall::MarkAgentGone { agent_id: agent() },
        ),
        (
            "DRAIN_AGENT",
            OperatorCall::DrainAgent {
                agent_id: agent(),
                max_grace: None,
                mark_gone: false,
            },
        ),
    ] {
        let field = kind.to_ascii_lowercase();
        let body =
            format!(r#"{{"type": "{kind}", "{field}": {{"agent_id": {{"value": "A-1"}}}}}}"#);
        assert_eq!(call(&body), Ok(Call::Change(kind, expected)), "{body}");
    }
    for (mark_gone, grace) in [
        (r#"true"#, r#"{"seconds": 2}"#),
        (r#"{"value": true}"#, r#"2"#),
        (r#"true"#, r#"{"nanoseconds": 2000000000}"#),
    ] {
        let body = format!(
            r#"{{"type": "DRAIN_AGENT", "drain_agent": {{"agent_id": {{"value": "A-1"}},
                "max_grace_period": {grace}, "mark_gone": {mark_gone}}}}}"#
        );
        assert_eq!(
            call(&body),
            Ok(Call::Change(
                "DRAIN_AGENT",
                OperatorCall::DrainAgent {
                    agent_id: agent(),
                    max_grace: Some(Duration::from_secs(2)),
                    mark_gone: true,
                }
            )),
            "{body}"
        );
    }
}

#[test]
fn malformed_change_bodies_name_the_field() {
    for (body, says) in [
        (r#"{"type": "TEARDOWN"}"#, "\"teardown\""),
        (
            r#"{"type": "TEARDOWN", "teardown": {"framework_id": 7}}"#,
            "framework_id",
        ),
        (r#"{"type": "KILL_TASK", "kill_task": {}}"#, "task_id"),
        (
            r#"{"type": "KILL_TASK", "kill_task": {"task_id": {"value": "t"}, "grace_period": "soon"}}"#,
            "grace_period",
        ),
        (r#"{"type": "DRAIN_AGENT", "drain_agent": {}}"#, "agent_id"),
        (
            r#"{"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": "A"}, "mark_gone": "yes"}}"#,
            "mark_gone",
        ),
        (
            r#"{"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": "A"}, "max_grace_period": -3}}"#,
            "max_grace_period",
        ),
        (r#"{"type": "MARK_AGENT_GONE"}"#, "mark_agent_gone"),
        (
            r#"{"type": "SUBSCRIBE", "subscribe": {"heartbeat_interval_seconds": 0}}"#,
            "heartbeat_interval_seconds",
        ),
    ] {
        let refused = parse(body.as_bytes()).unwrap_err();
        assert_eq!(refused.status, 400, "{body}");
        let message = refused.body["error"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
}

#[test]
fn subscribe_takes_an_optional_heartbeat() {
    assert_eq!(
        parse(br#"{"type": "SUBSCRIBE"}"#),
        Ok(Call::Subscribe {
            heartbeat: events::DEFAULT_HEARTBEAT
        })
    );
    assert_eq!(
        parse(br#"{"type": "SUBSCRIBE", "subscribe": {"heartbeat_interval_seconds": 0.5}}"#),
        Ok(Call::Subscribe {
            heartbeat: Duration::from_millis(500)
        })
    );
}
