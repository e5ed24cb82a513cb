//! Maintenance in Mesos' JSON: the schedule (`{"windows": [{"machine_ids": [{"hostname",
//! "ip"}], "unavailability": {"start": {"nanoseconds"}, "duration": {"nanoseconds"}}}]}`),
//! lists of machines (`[{"hostname", "ip"}]`) and the status (`{"draining_machines",
//! "down_machines"}`), for `/maintenance/*`, `/machine/*` and the v1 maintenance calls.

use serde_json::{Value, json};

use crate::core::{MachineId, Maintenance, Window};

fn machine_json(m: &MachineId) -> Value {
    let mut id = serde_json::Map::new();
    if !m.hostname.is_empty() {
        id.insert("hostname".into(), json!(m.hostname));
    }
    if !m.ip.is_empty() {
        id.insert("ip".into(), json!(m.ip));
    }
    Value::Object(id)
}

/// A list of machines, `[{"hostname": H, "ip": I}]`; `what` names it in errors.
pub fn machines(value: &Value, what: &str) -> Result<Vec<MachineId>, String> {
    let list = value
        .as_array()
        .ok_or_else(|| format!("{what} must be a list of {{\"hostname\", \"ip\"}}: {value}"))?;
    list.iter()
        .map(|m| {
            let text = |key: &str| -> Result<&str, String> {
                match m.get(key) {
                    None | Some(Value::Null) => Ok(""),
                    Some(Value::String(s)) => Ok(s),
                    Some(other) => Err(format!("{what}: \"{key}\" must be a string: {other}")),
                }
            };
            if !m.is_object() {
                return Err(format!(
                    "{what}: a machine is {{\"hostname\", \"ip\"}}: {m}"
                ));
            }
            MachineId::new(text("hostname")?, text("ip")?).map_err(|e| format!("{what}: {e}: {m}"))
        })
        .collect()
}

fn nanoseconds(value: Option<&Value>, what: &str) -> Result<i64, String> {
    value
        .and_then(|v| v.get("nanoseconds"))
        .and_then(Value::as_i64)
        .ok_or_else(|| {
            format!(
                "{what} needs {{\"nanoseconds\": N}}: {}",
                value.map_or_else(|| "nothing".to_owned(), Value::to_string)
            )
        })
}

/// A schedule, `{"windows": [...]}`.
pub fn schedule(value: &Value) -> Result<Vec<Window>, String> {
    let windows = value
        .get("windows")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("a schedule is {{\"windows\": [...]}}: {value}"))?;
    windows
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let what = format!("windows[{i}]");
            let ids = w
                .get("machine_ids")
                .ok_or_else(|| format!("{what} needs \"machine_ids\": {w}"))?;
            let unavailability = w
                .get("unavailability")
                .ok_or_else(|| format!("{what} needs \"unavailability\": {w}"))?;
            Ok(Window {
                machines: machines(ids, &format!("{what}.machine_ids"))?,
                start_ns: nanoseconds(
                    unavailability.get("start"),
                    &format!("{what}.unavailability.start"),
                )?,
                // Mesos: no duration means unavailable indefinitely.
                duration_ns: match unavailability.get("duration") {
                    None => i64::MAX,
                    Some(d) => nanoseconds(Some(d), &format!("{what}.unavailability.duration"))?,
                },
            })
        })
        .collect()
}

pub fn schedule_json(m: &Maintenance) -> Value {
    let windows: Vec<Value> = m
        .windows
        .iter()
        .map(|w| {
            json!({
                "machine_ids": w.machines.iter().map(machine_json).collect::<Vec<_>>(),
                "unavailability": {
                    "start": { "nanoseconds": w.start_ns },
                    "duration": { "nanoseconds": w.duration_ns },
                },
            })
        })
        .collect();
    json!({ "windows": windows })
}

/// Mesos' ClusterStatus: draining machines (with the inverse offer statuses Fleet does not
/// send: none) and down machines.
pub fn status_json(m: &Maintenance) -> Value {
    json!({
        "draining_machines": m.draining().into_iter()
            .map(|id| json!({ "id": machine_json(id), "statuses": [] }))
            .collect::<Vec<_>>(),
        "down_machines": m.down.iter().map(machine_json).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_read_and_print_in_mesos_shapes() {
        let sent = json!({"windows": [{
            "machine_ids": [{"hostname": "Machine1", "ip": "10.0.0.1"}, {"hostname": "m2"}],
            "unavailability": {"start": {"nanoseconds": 1443830400000000000i64},
                               "duration": {"nanoseconds": 3600000000000i64}}}]});
        let windows = schedule(&sent).unwrap();
        assert_eq!(windows[0].machines[0].hostname, "machine1");
        let mut m = Maintenance {
            windows,
            ..Maintenance::default()
        };
        let back = schedule_json(&m);
        assert_eq!(
            back["windows"][0]["machine_ids"][1],
            json!({"hostname": "m2"})
        );
        assert_eq!(
            back["windows"][0]["unavailability"]["duration"]["nanoseconds"],
            3600000000000i64
        );
        m.down.insert(m.windows[0].machines[1].clone());
        let status = status_json(&m);
        assert_eq!(
            status["draining_machines"][0]["id"],
            json!({"hostname": "machine1", "ip": "10.0.0.1"})
        );
        assert_eq!(status["down_machines"], json!([{"hostname": "m2"}]));
    }

    #[test]
    fn bad_schedules_and_machines_name_the_field() {
        for (value, says) in [
            (json!({}), "windows"),
            (json!({"windows": [{"unavailability": {}}]}), "machine_ids"),
            (
                json!({"windows": [{"machine_ids": [{"hostname": "a"}]}]}),
                "unavailability",
            ),
            (
                json!({"windows": [{"machine_ids": [{"hostname": "a"}], "unavailability": {"start": 5}}]}),
                "windows[0].unavailability.start",
            ),
            (
                json!({"windows": [{"machine_ids": [{}], "unavailability": {"start": {"nanoseconds": 0}}}]}),
                "windows[0].machine_ids",
            ),
        ] {
            let e = schedule(&value).unwrap_err();
            assert!(e.contains(says), "{value}: {e}");
        }
        assert!(
            machines(&json!([{"ip": "nope"}]), "body")
                .unwrap_err()
                .contains("nope")
        );
        assert!(machines(&json!({"hostname": "a"}), "body").is_err());
    }
}
