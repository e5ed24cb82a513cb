//! `fleet quota` and `fleet weights` against `fleet dev`: set, show (tables and JSON),
//! remove, and clear errors for bad input and an unreachable master.

use anyhow::Result;
use fleet_tests::{Dev, text};
use serde_json::Value;

#[test]
fn quota_and_weights_are_set_and_shown() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let out = dev
        .fleet()
        .args([
            "quota",
            "set",
            "analytics",
            "--guarantee",
            "cpus:0.5;mem:256",
            "--limit",
            "cpus:1",
        ])
        .output()?;
    let printed = text(&out);
    assert!(out.status.success(), "{printed}\n{}", dev.log());
    assert!(printed.contains("QUOTAS (1)"), "{printed}");
    assert!(printed.contains("analytics"), "{printed}");
    assert!(printed.contains("cpus:0.5"), "{printed}");

    let out = dev.fleet().args(["quota", "--json"]).output()?;
    assert!(out.status.success(), "{}", text(&out));
    let configs: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(configs[0]["role"], "analytics", "{configs}");
    assert_eq!(configs[0]["limits"]["cpus"]["value"], 1.0, "{configs}");
    assert_eq!(configs[0]["guarantees"]["mem"]["value"], 256.0, "{configs}");

    // A guarantee above the limit: the master's reason comes through.
    let out = dev
        .fleet()
        .args([
            "quota",
            "set",
            "x",
            "--guarantee",
            "cpus:4",
            "--limit",
            "cpus:1",
        ])
        .output()?;
    assert!(!out.status.success());
    assert!(text(&out).contains("exceeds the limit"), "{}", text(&out));
    // Not a scalar: refused before any call, naming the flag.
    let out = dev
        .fleet()
        .args(["quota", "set", "x", "--limit", "ports:[1-2]"])
        .output()?;
    assert!(!out.status.success());
    assert!(text(&out).contains("--limit"), "{}", text(&out));

    let out = dev
        .fleet()
        .args(["quota", "remove", "analytics"])
        .output()?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("QUOTAS (0)"), "{}", text(&out));

    let out = dev
        .fleet()
        .args(["weights", "set", "web=3", "batch=0.5"])
        .output()?;
    let printed = text(&out);
    assert!(out.status.success(), "{printed}\n{}", dev.log());
    let out = dev.fleet().args(["weights", "--json"]).output()?;
    assert!(out.status.success(), "{}", text(&out));
    let roles: Value = serde_json::from_slice(&out.stdout)?;
    // Weighted roles are listed before any framework uses them, as in Mesos.
    let weight = |name: &str| {
        roles
            .as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == name))
            .map(|r| r["weight"].clone())
    };
    assert_eq!(weight("web"), Some(serde_json::json!(3.0)), "{roles}");
    assert_eq!(weight("batch"), Some(serde_json::json!(0.5)), "{roles}");
    let out = dev.fleet().args(["weights"]).output()?;
    let printed = text(&out);
    assert!(
        printed.contains("ROLES (2)") && printed.contains("web"),
        "{printed}"
    );
    let out = dev.fleet().args(["weights", "set", "web"]).output()?;
    assert!(!out.status.success());
    assert!(text(&out).contains("ROLE=WEIGHT"), "{}", text(&out));
    let out = dev.fleet().args(["weights", "set", "web=-2"]).output()?;
    assert!(!out.status.success());
    assert!(text(&out).contains("weight -2"), "{}", text(&out));
    Ok(())
}

#[test]
fn an_unreachable_master_is_named() -> Result<()> {
    let out = std::process::Command::new(fleet_tests::fleet_bin())
        .args(["quota", "--master", "127.0.0.1:9"])
        .output()?;
    assert!(!out.status.success());
    let printed = text(&out);
    assert!(printed.contains("127.0.0.1"), "{printed}");
    assert!(
        printed.contains("unreachable") || printed.contains("refused"),
        "{printed}"
    );
    Ok(())
}

#[test]
fn agents_and_tasks_are_listed() -> Result<()> {
    let mut dev = Dev::start(&[])?;
    let out = dev.fleet().args(["run", "--", "true"]).output()?;
    assert!(out.status.success(), "{}\n{}", text(&out), dev.log());
    let out = dev.fleet().args(["agents"]).output()?;
    let printed = text(&out);
    assert!(
        out.status.success() && printed.contains("AGENTS (1)"),
        "{printed}"
    );
    let out = dev.fleet().args(["agents", "--json"]).output()?;
    let agents: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(agents.as_array().map(Vec::len), Some(1), "{agents}");
    // The task may take a moment to reach the published state.
    let mut listed = Value::Null;
    for _ in 0..10 {
        let out = dev.fleet().args(["tasks", "--json"]).output()?;
        listed = serde_json::from_slice(&out.stdout)?;
        if listed.as_array().is_some_and(|t| !t.is_empty()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(listed[0]["state"], "TASK_FINISHED", "{listed}");
    let out = dev.fleet().args(["tasks"]).output()?;
    let printed = text(&out);
    assert!(
        printed.contains("TASKS (1)") && printed.contains("TASK_FINISHED"),
        "{printed}"
    );
    Ok(())
}
