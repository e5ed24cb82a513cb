use super::*;
use serde_json::json;

fn render(state: &Value, json: bool) -> String {
    let mut out = Vec::new();
    print_status(state, json, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn tables_show_agents_frameworks_and_tasks() {
    let state = json!({
        "agents": [
            {"id": "A-1", "hostname": "node1", "resources": "cpus:4;mem:8192",
             "used": {"cpus": 0.5, "mem": 128}},
            {"id": "A-2", "hostname": "node2",
             "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 2}}]}
        ],
        "frameworks": [
            {"id": "F-1", "name": "fleet-run", "roles": ["eng"], "active": true},
            {"id": "F-2", "name": "idle", "roles": [], "active": false}
        ],
        "tasks": [
            {"id": "t1", "name": "fleet-run", "state": "TASK_RUNNING", "agent_id": "A-1",
             "pid": 4242}
        ]
    });
    let text = render(&state, false);
    let expected = "\
AGENTS (2)
  ID   HOSTNAME  RESOURCES        USED
  A-1  node1     cpus:4;mem:8192  cpus:0.5;mem:128
  A-2  node2     cpus:2           -

FRAMEWORKS (2)
  ID   NAME       ROLES  ACTIVE
  F-1  fleet-run  eng    true
  F-2  idle       *      false

TASKS (1)
  ID  NAME       STATE         AGENT  PID
  t1  fleet-run  TASK_RUNNING  A-1    4242
";
    assert_eq!(text, expected);
}

#[test]
fn mesos_shapes_and_missing_fields_are_tolerated() {
    let state = json!({
        "slaves": [{"id": "S1"}],
        "frameworks": [{"id": {"value": "F"}, "role": "*",
            "tasks": [{"task_id": {"value": "t"}, "state": "TASK_FINISHED", "slave_id": "S1"}]}]
    });
    let text = render(&state, false);
    assert!(text.contains("  S1  -         -          -"), "{text}");
    assert!(text.contains("  F   -     *      -"), "{text}");
    assert!(text.contains("  t   -     TASK_FINISHED  S1"), "{text}");

    let empty = render(&json!({}), false);
    assert!(empty.contains("AGENTS (0)\n  (none)"), "{empty}");
}

#[test]
fn json_output_is_the_state_itself() {
    let state = json!({"agents": [], "frameworks": [], "tasks": []});
    let text = render(&state, true);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), state);
}

#[test]
fn an_unreachable_master_is_named() {
    // A port just released: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = status(addr).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("cannot read http://{addr}/state: ")),
        "{err}"
    );
    assert!(
        err.contains("unreachable") || err.contains("refused"),
        "{err}"
    );
}

#[test]
fn quota_amounts_take_the_mesos_shape_and_refuse_non_scalars() {
    let q = quota_quantities("cpus:0.5;mem:256", "--guarantee").unwrap();
    assert_eq!(q["cpus"]["value"], 0.5);
    assert_eq!(q["mem"]["value"], 256.0);
    let err = quota_quantities("ports:[1-2]", "--limit").unwrap_err();
    assert!(err.to_string().contains("--limit"), "{err}");
    let err = quota_quantities("cpus(web):1", "--limit").unwrap_err();
    assert!(err.to_string().contains("reservation"), "{err}");
}

#[test]
fn quota_and_roles_print_as_tables() {
    let answer = serde_json::json!({ "get_quota": { "status": { "configs": [
        { "role": "dev", "guarantees": { "cpus": { "value": 2.0 }, "mem": { "value": 256.0 } },
          "limits": { "cpus": { "value": 4.0 } } }
    ] } } });
    let mut out = Vec::new();
    print_quota(&answer, false, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("QUOTAS (1)"), "{text}");
    assert!(
        text.contains("cpus:2;mem:256") && text.contains("cpus:4"),
        "{text}"
    );
    let roles = serde_json::json!({ "get_roles": { "roles": [
        { "name": "web", "weight": 3.0, "share": 0.25, "frameworks": [{ "value": "F-1" }] }
    ] } });
    let mut out = Vec::new();
    print_roles(&roles, false, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("web") && text.contains("0.250") && text.contains("3.0"),
        "{text}"
    );
}
