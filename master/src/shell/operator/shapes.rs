//! The master's state in the JSON shapes of Mesos' v1 operator API: agents, frameworks,
//! tasks, task statuses, roles and quotas, as the read calls and the event stream send
//! them.

use serde_json::{Value, json};

use fleet_proto::resources::{Resources, Value as ResourceValue};
use fleet_proto::task::TaskStatus;

use crate::core::MasterState;
use crate::core::state::{AgentState, FrameworkState, TaskView};

/// An id in Mesos' shape, `{"value": "..."}`.
pub fn id(value: impl std::fmt::Display) -> Value {
    json!({ "value": value.to_string() })
}

/// Mesos' Duration, `{"nanoseconds": N}`.
fn duration_ms(ms: u64) -> Value {
    json!({ "nanoseconds": u128::from(ms) * 1_000_000 })
}

/// One agent as GET_AGENTS lists it.
pub fn agent(a: &AgentState) -> Value {
    let mut allocated = a.used.clone();
    allocated.add(&a.offered);
    let mut agent = json!({
        "agent_info": {
            "id": id(&a.id),
            "hostname": a.hostname,
            "resources": a.total,
        },
        "active": a.active,
        "deactivated": a.deactivated,
        "pid": a.http_address,
        "total_resources": a.total,
        "allocated_resources": allocated,
        "offered_resources": a.offered,
    });
    if let Some(drain) = &a.drain {
        let mut config = json!({ "mark_gone": drain.mark_gone });
        if let Some(ms) = drain.max_grace_ms {
            config["max_grace_period"] = duration_ms(ms);
        }
        agent["drain_info"] = json!({ "state": drain.state, "config": config });
    }
    agent
}

/// A framework's FrameworkInfo.
pub fn framework_info(f: &FrameworkState) -> Value {
    json!({
        "id": id(&f.id),
        "name": f.name,
        "user": f.user,
        "roles": f.roles,
        "failover_timeout": f.failover_timeout_ms as f64 / 1000.0,
        "capabilities": if f.partition_aware {
            json!([{ "type": "PARTITION_AWARE" }])
        } else {
            json!([])
        },
    })
}

/// One framework as GET_FRAMEWORKS lists it.
pub fn framework(f: &FrameworkState) -> Value {
    json!({
        "framework_info": framework_info(f),
        "active": f.active,
        "connected": f.active,
        "recovered": f.recovered,
        "allocated_resources": f.used,
        "offered_resources": f.offered,
    })
}

/// A task status (`timestamp` in seconds, as Mesos sends it).
pub fn status(s: &TaskStatus) -> Value {
    let mut status = json!({
        "task_id": id(&s.task_id),
        "state": s.state,
        "source": s.source,
    });
    if let Some(agent) = &s.agent_id {
        status["agent_id"] = id(agent);
    }
    if let Some(reason) = s.reason {
        status["reason"] = json!(reason);
    }
    if !s.message.is_empty() {
        status["message"] = json!(s.message);
    }
    if let Some(code) = s.exit_code {
        status["exit_code"] = json!(code);
    }
    let millis = if s.timestamp_ms == 0 {
        // The core reads no clock: statuses it makes itself are stamped on their way out.
        fleet_proto::task::unix_millis()
    } else {
        s.timestamp_ms
    };
    status["timestamp"] = json!(millis as f64 / 1000.0);
    status
}

/// One task as GET_TASKS lists it.
pub fn task(t: &TaskView) -> Value {
    let mut status = json!({
        "task_id": id(&t.id),
        "state": t.state,
        "agent_id": id(&t.agent_id),
    });
    if let Some(reason) = t.reason {
        status["reason"] = json!(reason);
    }
    if !t.message.is_empty() {
        status["message"] = json!(t.message);
    }
    json!({
        "name": t.name,
        "task_id": id(&t.id),
        "framework_id": id(&t.framework_id),
        "agent_id": id(&t.agent_id),
        "state": t.state,
        "resources": t.resources,
        "statuses": [status],
    })
}

pub fn get_agents(state: &MasterState) -> Value {
    json!({
        "agents": state.agents.iter().map(agent).collect::<Vec<_>>(),
        "recovered_agents": state.recovered_agents.iter()
            .map(|a| json!({ "id": id(a) }))
            .collect::<Vec<_>>(),
    })
}

pub fn get_frameworks(state: &MasterState) -> Value {
    json!({
        "frameworks": state.frameworks.iter().map(framework).collect::<Vec<_>>(),
        "completed_frameworks": state.completed_frameworks.iter().map(framework)
            .collect::<Vec<_>>(),
    })
}

pub fn get_tasks(state: &MasterState) -> Value {
    json!({
        "tasks": state.tasks.iter().map(task).collect::<Vec<_>>(),
        "completed_tasks": state.completed_tasks.iter().map(task).collect::<Vec<_>>(),
    })
}

/// GET_STATE's body: tasks, executors (none: Fleet's command executor is the agent),
/// frameworks and agents.
pub fn get_state(state: &MasterState) -> Value {
    json!({
        "get_tasks": get_tasks(state),
        "get_executors": { "executors": [] },
        "get_frameworks": get_frameworks(state),
        "get_agents": get_agents(state),
    })
}

/// Roles in use (with frameworks or allocations), weighted, or with a quota, as Mesos'
/// GET_ROLES lists them.
pub fn get_roles(state: &MasterState) -> Value {
    let mut names: std::collections::BTreeSet<&String> = state.shares.roles.keys().collect();
    names.extend(state.weights.keys());
    names.extend(state.quotas.keys());
    let roles: Vec<Value> = names
        .into_iter()
        .map(|name| {
            let share = state.shares.roles.get(name);
            let weight = share
                .map(|s| s.weight)
                .or_else(|| state.weights.get(name).copied())
                .unwrap_or(1.0);
            let mut role = json!({
                "name": name,
                "weight": weight,
                "frameworks": share
                    .map(|s| s.frameworks.keys().map(id).collect::<Vec<_>>())
                    .unwrap_or_default(),
                "share": share.map_or(0.0, |s| s.share),
            });
            if let Some(q) = state.quotas.get(name) {
                role["quota"] = json!({
                    "guarantees": quota_shape(&q.guarantees),
                    "limits": q.limits.as_ref().map(quota_shape),
                });
            }
            role
        })
        .collect();
    json!({ "roles": roles })
}

/// Scalar resources in Mesos' quota shape, `{"cpus": {"value": 4}}`.
pub fn quota_shape(resources: &Resources) -> Value {
    let mut map = serde_json::Map::new();
    for r in resources.iter() {
        if let ResourceValue::Scalar(value) = &r.value {
            map.insert(
                r.name.clone(),
                json!({ "value": value.milli() as f64 / 1000.0 }),
            );
        }
    }
    Value::Object(map)
}

pub fn get_quota(state: &MasterState) -> Value {
    let configs: Vec<Value> = state
        .quotas
        .iter()
        .map(|(role, q)| {
            let mut config = json!({ "role": role, "guarantees": quota_shape(&q.guarantees) });
            if let Some(limits) = &q.limits {
                config["limits"] = quota_shape(limits);
            }
            config
        })
        .collect();
    let infos: Vec<Value> = state
        .quotas
        .iter()
        .map(|(role, q)| json!({ "role": role, "guarantee": q.guarantees }))
        .collect();
    json!({ "status": { "infos": infos, "configs": configs } })
}

/// Weights as Mesos' GET_WEIGHTS and `/weights` list them: `[{"role", "weight"}]`.
pub fn weight_infos(state: &MasterState) -> Value {
    let infos: Vec<Value> = state
        .weights
        .iter()
        .map(|(role, weight)| json!({ "role": role, "weight": weight }))
        .collect();
    Value::Array(infos)
}
