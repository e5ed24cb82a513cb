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
            {"id": "t1", "name": "fleet-run", "state": "TASK_RUNNING", "agent_id": "A-1"}
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
  ID  NAME       STATE         AGENT
  t1  fleet-run  TASK_RUNNING  A-1
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
